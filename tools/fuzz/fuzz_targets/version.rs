//! Fuzzes the version files: `latest` (`version::parse_latest`) and os-release
//! (`version::parse_os_release`). No panic, and a version accepted is never 0.
#![no_main]

use chainup::version::{parse_latest, parse_os_release};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = parse_latest(data, "fuzz") {
        assert!(v > 0);
        let text = std::str::from_utf8(data).expect("accepted text is UTF-8");
        let first = text.lines().next().expect("a first line").trim();
        assert_eq!(first.parse::<u32>().ok(), Some(v));
    }
    let text = String::from_utf8_lossy(data);
    if let Some(v) = parse_os_release(&text) {
        assert!(v > 0);
        assert!(text.contains("VERSION_ID="));
    }
});
