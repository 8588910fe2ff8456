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

/// First line of an index delta, with the format version.
const DELTA_MAGIC: &str = "chainup-chunk-index-delta 1";

/// Where the delta from the index whose payload hash is `from` to the one whose hash is
/// `to` lives, relative to the content URL. Named by the two hashes, not by versions: a
/// client finds it from the two manifest lines alone, whatever versions they are.
pub fn delta_path(from: &Hash, to: &Hash) -> String {
    format!("chunks/index-deltas/{from}-{to}.zst")
}

/// One step of a [`Delta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOp {
    /// `count` chunks of the old index, from its chunk `start` on.
    Copy { start: u32, count: u32 },
    /// A chunk the old index does not have at this place.
    New(Chunk),
}

/// How to make a new index from an old one: the new index's chunks are runs of the old
/// index's plus the chunks that changed, so a small change in the image is a small delta.
/// A delta is not trusted: what it makes is hashed against the new `/core.index` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub image: Hash,
    pub size: u64,
    pub ops: Vec<DeltaOp>,
}

impl Delta {
    /// The delta from `old` to `new`: each chunk of `new` extends the current run of `old`
    /// when it is the next one there, else starts a run where `old` first has it, else is
    /// new.
    pub fn diff(old: &Index, new: &Index) -> Delta {
        let mut first = std::collections::HashMap::new();
        for (i, c) in old.chunks.iter().enumerate() {
            first.entry(c.id).or_insert(i as u32);
        }
        let mut ops: Vec<DeltaOp> = Vec::new();
        for c in &new.chunks {
            if let Some(DeltaOp::Copy { start, count }) = ops.last_mut() {
                let next = (*start + *count) as usize;
                if old.chunks.get(next) == Some(c) {
                    *count += 1;
                    continue;
                }
            }
            ops.push(match first.get(&c.id) {
                Some(&i) if old.chunks[i as usize] == *c => DeltaOp::Copy { start: i, count: 1 },
                _ => DeltaOp::New(*c),
            });
        }
        Delta {
            image: new.image,
            size: new.size,
            ops,
        }
    }

    /// The delta text (docs/chunks.md).
    pub fn serialize(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{DELTA_MAGIC}");
        let _ = writeln!(out, "image {} {}", self.image, self.size);
        for op in &self.ops {
            let _ = match op {
                DeltaOp::Copy { start, count } => writeln!(out, "c {start} {count}"),
                DeltaOp::New(c) => writeln!(out, "n {} {}", c.id, c.len),
            };
        }
        out
    }

    /// Parses a delta as strictly as an index: the exact header, then `c <start> <count>`
    /// (count at least 1) or `n <sha256> <length>` lines.
    pub fn parse(text: &[u8]) -> Result<Delta, String> {
        if text.len() as u64 > limits::CHUNK_INDEX {
            return Err(format!("over {} bytes", limits::CHUNK_INDEX));
        }
        let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
        let body = text
            .strip_suffix('\n')
            .ok_or("does not end with a newline")?;
        let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        if lines.next().map(|(_, l)| l) != Some(DELTA_MAGIC) {
            return Err(format!("line 1: expected {DELTA_MAGIC:?}"));
        }
        let (image, size) = match lines.next().map(|(_, l)| l.split(' ').collect::<Vec<_>>()) {
            Some(f) if f.len() == 3 && f[0] == "image" => {
                (parse_hash(f[1], 2)?, parse_num(f[2], 2)?)
            }
            _ => return Err("line 2: expected \"image <hash> <size>\"".into()),
        };
        let mut ops = Vec::new();
        for (n, line) in lines {
            let op = match line.split(' ').collect::<Vec<_>>()[..] {
                ["c", start, count] => {
                    let (start, count) = (parse_num(start, n)?, parse_num(count, n)?);
                    if count == 0 || start + count > u64::from(u32::MAX) {
                        return Err(format!("line {n}: bad run {start} {count}"));
                    }
                    DeltaOp::Copy {
                        start: start as u32,
                        count: count as u32,
                    }
                }
                ["n", id, len] => {
                    let (id, len) = (parse_hash(id, n)?, parse_num(len, n)?);
                    if len == 0 || len > MAX as u64 {
                        return Err(format!("line {n}: chunk length {len} is not 1 to {MAX}"));
                    }
                    DeltaOp::New(Chunk {
                        id,
                        len: len as u32,
                    })
                }
                _ => {
                    return Err(format!(
                        "line {n}: expected \"c <start> <count>\" or \"n <sha256> <length>\""
                    ))
                }
            };
            ops.push(op);
        }
        Ok(Delta { image, size, ops })
    }

    /// The new index, made from `old`. Refuses runs outside `old`, more chunks than an
    /// index within [`limits::CHUNK_INDEX`] can list, and lengths that do not add up to the
    /// size; what it returns is still to be hashed against the manifest line.
    pub fn apply(&self, old: &Index) -> Result<Index, String> {
        let mut chunks = Vec::new();
        let mut total = 0u64;
        for op in &self.ops {
            let part = match op {
                DeltaOp::Copy { start, count } => {
                    let (start, end) = (*start as usize, *start as usize + *count as usize);
                    old.chunks
                        .get(start..end)
                        .ok_or_else(|| format!("run {start}..{end} is outside the old index"))?
                }
                DeltaOp::New(c) => std::slice::from_ref(c),
            };
            if chunks.len() + part.len() > MAX_CHUNKS {
                return Err(format!("more than {MAX_CHUNKS} chunks"));
            }
            total += part.iter().map(|c| u64::from(c.len)).sum::<u64>();
            chunks.extend_from_slice(part);
        }
        if total != self.size {
            return Err(format!(
                "the chunks cover {total} bytes, the image is {}",
                self.size
            ));
        }
        Ok(Index {
            image: self.image,
            size: self.size,
            chunks,
        })
    }
}

/// The most chunks an index within [`limits::CHUNK_INDEX`] can list (a line is at least
/// 64 hex digits, a space, a digit and a newline), so a delta cannot make a larger one.
const MAX_CHUNKS: usize = (limits::CHUNK_INDEX / 67) as usize;

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
    fn a_delta_rebuilds_the_new_index_and_refuses_what_does_not_fit() {
        let old = sample();
        let mut new = old.clone();
        let added = Chunk {
            id: chunk_id(b"c"),
            len: 10,
        };
        new.chunks.insert(1, added);
        new.chunks.push(old.chunks[0]);
        new.size += 10 + 65_536;
        let d = Delta::diff(&old, &new);
        assert_eq!(
            d.ops,
            [
                DeltaOp::Copy { start: 0, count: 1 },
                DeltaOp::New(added),
                DeltaOp::Copy { start: 1, count: 1 },
                DeltaOp::Copy { start: 0, count: 1 },
            ]
        );
        let text = d.serialize();
        assert_eq!(Delta::parse(text.as_bytes()).unwrap(), d);
        assert_eq!(d.apply(&old).unwrap(), new);
        for bad in [
            text.replace("c 1 1", "c 1 2"),
            text.replace("c 1 1", "c 1 0"),
            text.replace("c 1 1", "c 01 1"),
            text.replace(" 10\n", " 11\n"),
            text.replace("delta 1", "delta 2"),
            text.replace("c 1 1", "x 1 1"),
        ] {
            let refused = Delta::parse(bad.as_bytes()).and_then(|d| d.apply(&old));
            assert!(refused.is_err(), "{bad}");
        }
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
