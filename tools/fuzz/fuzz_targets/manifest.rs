//! Fuzzes the manifest parser: it must never panic, and whatever it accepts must
//! serialise back to a text that parses to the same manifest.
#![no_main]

use chainup::manifest::{Kind, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [Kind::Bundle, Kind::Mom] {
        if let Ok(m) = Manifest::parse(data, kind) {
            let text = m.serialize();
            let again = Manifest::parse(text.as_bytes(), kind).expect("serialised form parses");
            assert_eq!(again.entries, m.entries);
            assert_eq!(again.header.version, m.header.version);
        }
    }
});
