//! Fuzzes the chunk index and index delta decoders (`chunks::Index::parse`,
//! `chunks::Delta::parse` and `Delta::apply`, docs/chunks.md). No panic; what is accepted
//! is canonical (it serialises back to the same bytes), and a delta applied to an index
//! makes one whose chunks cover exactly the size it declares.
#![no_main]

use chainup::chunks::{chunk_id, Chunk, Delta, Index};
use chainup::hash::Hash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = Index::parse(data) {
        assert_eq!(index.serialize().as_bytes(), data);
    }
    if let Ok(delta) = Delta::parse(data) {
        assert_eq!(delta.serialize().as_bytes(), data);
        let base = Index {
            image: Hash([1; 32]),
            size: 3 << 16,
            chunks: (0u8..3)
                .map(|i| Chunk {
                    id: chunk_id(&[i]),
                    len: 1 << 16,
                })
                .collect(),
        };
        if let Ok(made) = delta.apply(&base) {
            let total: u64 = made.chunks.iter().map(|c| u64::from(c.len)).sum();
            assert_eq!(total, made.size);
            assert_eq!(made.size, delta.size);
        }
    }
});
