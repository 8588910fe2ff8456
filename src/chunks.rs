//! The chunk index of a core image and the chunk store (docs/chunks.md), one definition
//! for the publisher and the client.
//!
//! A core image is cut by content-defined chunking (FastCDC 2020, normalisation level 1,
//! [`MIN`]/[`AVG`]/[`MAX`] bytes), so an insertion shifts only the chunks around it. Each
//! chunk is named by the SHA-256 of its bytes and stored once, zstd-compressed, at
//! [`store_path`] under the content URL, shared by every version. The index lists the
//! chunks in image order; it is published as the image payload `/core.index`, so its hash
//! is on a manifest line and it chains to the signed MoM like any payload. This module
//! only reads and writes the text: trusting it is [`crate::chain`]'s job.

use std::fmt::Write as _;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::hash::Hash;
use crate::limits;

/// Smallest chunk the chunker cuts (but the last): 16 KiB, a few device blocks.
pub const MIN: usize = 16 << 10;
/// Target average chunk: 48 KiB. FastCDC's normalised cuts land above the target (about
/// 60 KiB on average with these bounds), as casync's 64 KiB default does: small enough
/// that a change costs little, large enough that a request per chunk carries its overhead.
pub const AVG: usize = 48 << 10;
/// Largest chunk: 256 KiB; also the most a chunk in an index may claim.
pub const MAX: usize = 256 << 10;

/// First line of an index, with the format version.
const MAGIC: &str = "chainup-chunk-index 1";
/// The chunker and its parameters, as written on the third line.
const CHUNKER: &str = "chunker fastcdc2020 16384 49152 262144";

/// One chunk of an image: the SHA-256 of its bytes and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub id: Hash,
    pub len: u32,
}

/// The chunks of one image, in order: they cover the image exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The image's swupd hash (its `/core` manifest line).
    pub image: Hash,
    /// The image size: the sum of the chunk lengths.
    pub size: u64,
    pub chunks: Vec<Chunk>,
}

/// The SHA-256 of a chunk's bytes: its name in the store.
pub fn chunk_id(data: &[u8]) -> Hash {
    Hash(Sha256::digest(data).into())
}

/// Where a chunk lives, relative to the content URL: `chunks/<2 hex>/<64 hex>.zst` (the
/// two-digit fan-out keeps directories small on any server).
pub fn store_path(id: &Hash) -> String {
    let hex = id.to_hex();
    format!("chunks/{}/{hex}.zst", &hex[..2])
}

impl Index {
    /// The index text (docs/chunks.md).
    pub fn serialize(&self) -> String {
        let mut out = String::with_capacity(80 * (self.chunks.len() + 3));
        let _ = writeln!(out, "{MAGIC}");
        let _ = writeln!(out, "image {} {}", self.image, self.size);
        let _ = writeln!(out, "{CHUNKER}");
        for c in &self.chunks {
            let _ = writeln!(out, "{} {}", c.id, c.len);
        }
        out
    }

    /// Parses an index strictly: the exact header, one `<sha256> <length>` line per chunk,
    /// each length 1 to [`MAX`], the lengths summing to the declared size.
    pub fn parse(text: &[u8]) -> Result<Index, String> {
        if text.len() as u64 > limits::CHUNK_INDEX {
            return Err(format!("over {} bytes", limits::CHUNK_INDEX));
        }
        let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
        let body = text
            .strip_suffix('\n')
            .ok_or("does not end with a newline")?;
        let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        let mut next = |what: &str| {
            lines
                .next()
                .ok_or_else(|| format!("ends before the {what} line"))
        };
        let (_, magic) = next("first")?;
        if magic != MAGIC {
            return Err(format!("line 1: expected {MAGIC:?}"));
        }
        let (_, image) = next("image")?;
        let (image, size) = match image.split(' ').collect::<Vec<_>>()[..] {
            ["image", hash, size] => (parse_hash(hash, 2)?, parse_num(size, 2)?),
            _ => return Err("line 2: expected \"image <hash> <size>\"".into()),
        };
        let (_, chunker) = next("chunker")?;
        if chunker != CHUNKER {
            return Err(format!("line 3: expected {CHUNKER:?}"));
        }
        let mut chunks = Vec::new();
        let mut total = 0u64;
        for (n, line) in lines {
            let (id, len) = line
                .split_once(' ')
                .ok_or_else(|| format!("line {n}: expected \"<sha256> <length>\""))?;
            let id = parse_hash(id, n)?;
            let len = parse_num(len, n)?;
            if len == 0 || len > MAX as u64 {
                return Err(format!("line {n}: chunk length {len} is not 1 to {MAX}"));
            }
            total += len;
            chunks.push(Chunk {
                id,
                len: len as u32,
            });
        }
        if total != size {
            return Err(format!(
                "the chunks cover {total} bytes, the image is {size}"
            ));
        }
        Ok(Index {
            image,
            size,
            chunks,
        })
    }
}

fn parse_hash(s: &str, line: usize) -> Result<Hash, String> {
    Hash::from_str(s).map_err(|e| format!("line {line}: {e}"))
}

/// A decimal number with no sign or leading zeros.
fn parse_num(s: &str, line: usize) -> Result<u64, String> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    s.parse()
        .ok()
        .filter(|_| canonical)
        .ok_or_else(|| format!("line {line}: {s:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        Index {
            image: Hash([7; 32]),
            size: 70_000,
            chunks: vec![
                Chunk {
                    id: chunk_id(b"a"),
                    len: 65_536,
                },
                Chunk {
                    id: chunk_id(b"b"),
                    len: 4_464,
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_names_chunks_by_sha256() {
        assert_eq!(CHUNKER, format!("chunker fastcdc2020 {MIN} {AVG} {MAX}"));
        let i = sample();
        assert_eq!(Index::parse(i.serialize().as_bytes()).unwrap(), i);
        assert_eq!(
            chunk_id(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let p = store_path(&chunk_id(b"abc"));
        assert!(
            p.starts_with("chunks/ba/ba7816bf") && p.ends_with(".zst"),
            "{p}"
        );
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        let good = sample().serialize();
        let bad = [
            good.replace("70000", "70001"),
            good.replace(" 4464", " 04464"),
            good.replace("65536", "300000"),
            good.replace("chainup-chunk-index 1", "chainup-chunk-index 2"),
            good.replace("fastcdc2020", "fastcdc2016"),
            good.trim_end().to_string(),
            format!("{good}\n"),
            good.replace(" 4464", "  4464"),
        ];
        for b in bad {
            assert!(Index::parse(b.as_bytes()).is_err(), "{b}");
        }
    }
}
