//! Fuzzes compression detection and the bounded decoders (`archive::decompress` under
//! `archive::Bounded`): no panic, no memory past the decoders' caps (libFuzzer's RSS
//! limit), and a stream without a known magic passes through unchanged.
#![no_main]

use std::io::Read;

use chainup::archive::{decompress, Bounded, Compression};
use libfuzzer_sys::fuzz_target;

/// The most read from one input: enough to cross every decoder's internal buffers.
const BOUND: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let kind = Compression::detect(data);
    let Ok(plain) = decompress(data) else { return };
    let mut out = Vec::new();
    let result = Bounded::new(plain, BOUND, "fuzz").read_to_end(&mut out);
    assert!(out.len() as u64 <= BOUND);
    if kind == Compression::None {
        assert!(result.is_ok() || data.len() as u64 > BOUND);
        assert_eq!(out[..], data[..out.len()]);
    }
});
