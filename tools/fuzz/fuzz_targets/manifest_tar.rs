//! Fuzzes the manifest tar reader (`archive::read_manifest_tar`, which the MoM goes
//! through, and `archive::with_manifest_entry`, which streams a bundle manifest): no
//! panic; what is accepted is one regular file of the name asked for, of the size its
//! header gives, within the cap.
#![no_main]

use chainup::archive::{read_manifest_tar, with_manifest_entry};
use chainup::hash::Kind;
use libfuzzer_sys::fuzz_target;

/// The real caps are MiBs; a small one keeps inputs fast and its refusal reachable.
const LIMIT: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = read_manifest_tar(data, "MoM", "fuzz", LIMIT) {
        assert_eq!(file.meta.kind, Kind::File);
        assert_eq!(file.text.len() as u64, file.meta.size);
        assert!(file.meta.size <= LIMIT);
    }
    let streamed = with_manifest_entry(data, "os-core", "fuzz", LIMIT, |meta, content| {
        let mut n = 0u64;
        let mut buf = [0u8; 4096];
        loop {
            match content.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) => return Err(chainup::archive::read_error("fuzz", e)),
            }
        }
        assert_eq!(n, meta.size);
        Ok(n)
    });
    if let Ok((meta, n)) = streamed {
        assert_eq!(meta.kind, Kind::File);
        assert!(n <= LIMIT);
    }
});
