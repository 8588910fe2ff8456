//! Fuzzes the fullfile reader of step 3 (`chain::unpack_fullfile`, what `Chain::stage`
//! runs on a `files/<hash>.tar`): compression detection, the bounded decoders, the tar
//! entry, its name, type and metadata checks, the hash and the end of the archive. It
//! must never panic, and it may accept an archive only for an entry whose content and
//! metadata hash to the manifest's hash.
#![no_main]

use chainup::chain::unpack_fullfile;
use chainup::hash::{Hash, Hasher, Kind};
use chainup::manifest::{Entry, EntryType, Misc, Status};
use libfuzzer_sys::fuzz_target;

/// The entries of the release the seeds come from (tools/fuzz/make-seeds.sh): each seed
/// is the real fullfile of one of them, so the fuzzer starts past the name and hash checks.
const ENTRIES: [(EntryType, &str); 6] = [
    (
        EntryType::File,
        "eafcb5275a8b9347123568c8abfcd85ba0b8a105406a08cde8269b38d53cf517",
    ),
    (
        EntryType::File,
        "28cb7c6cad23920f344157f48ae353caca34e9a2f5cff934a4fdaaf7509f2062",
    ),
    (
        EntryType::File,
        "f4c4d6548aa5e1adc9231b30731a09351950eb139b28b326591213fe2c1cafe8",
    ),
    (
        EntryType::Dir,
        "6c27df6efcd6fc401ff1bc67c970b83eef115f6473db4fb9d57e5de317eba96e",
    ),
    (
        EntryType::Link,
        "73e470325111055609cd39644a852f4d7c516994eba9c2657c7c8aa208c7d9a9",
    ),
    (
        EntryType::Link,
        "46f2e03b4ce601ef0ab1762a33dbfc54ed23390ccb3411575e99746208836be7",
    ),
];

/// Small, so that each input is quick and the over-the-bound paths are reachable.
const BOUND: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    for (etype, hex) in ENTRIES {
        let entry = Entry {
            etype,
            status: Status::Present,
            modifier: b'.',
            misc: Misc::None,
            hash: hex.parse::<Hash>().expect("a valid hash"),
            version: 10,
            path: "/fuzz".into(),
        };
        let mut kind = None;
        let result = unpack_fullfile(data, &entry, BOUND, "fuzz", |meta, target, content| {
            // What the stager writes, hashed the way it hashes it, into memory.
            let mut hasher = Hasher::new(meta, &[]);
            if let Some(target) = target {
                hasher.update(target);
            }
            let mut buf = Vec::new();
            content
                .read_to_end(&mut buf)
                .map_err(|e| chainup::source::download_error("fuzz", e))?;
            if meta.kind == Kind::File {
                assert_eq!(
                    buf.len() as u64,
                    meta.size,
                    "content of the size its header says"
                );
                hasher.update(&buf);
            }
            kind = Some(meta.kind);
            Ok(hasher.finish())
        });
        if result.is_ok() {
            let expected = match etype {
                EntryType::Dir => Kind::Dir,
                EntryType::Link => Kind::Symlink,
                _ => Kind::File,
            };
            assert_eq!(kind, Some(expected), "accepted only as the type listed");
        }
    }
});
