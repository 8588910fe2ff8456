//! Clear Linux's bsdiff container (libbsdiff 1.0.4, what swupd's bspatch reads): a packed
//! little-endian header (`BSDIFF4U` with 64-bit lengths, `BSDIFF4V` with 16-bit ones for
//! small files) carrying the new file's mode, owner and group, then three blocks, each in
//! its own encoding: control (triples of signed 64-bit words), diff (bytes added to the
//! old file's) and extra (new bytes). See docs/formats.md.
//!
//! Applying streams: the old file is read by position, the new one is written and hashed
//! as it is produced, so a delta costs a few buffers of memory whatever the file size.
//! Nothing here decides trust: the caller hashes the output against the manifest.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use crate::limits;

/// Magic of the version 2.0 header (64-bit lengths).
pub const MAGIC_V20: &[u8; 8] = b"BSDIFF4U";
/// Magic of the version 2.1 header (16-bit lengths, small files).
pub const MAGIC_V21: &[u8; 8] = b"BSDIFF4V";
/// Length of the packed v2.0 header.
pub const V20_LEN: usize = 67;
/// Length of the packed v2.1 header.
pub const V21_LEN: usize = 32;
/// Bytes of one control triple.
const CONTROL_LEN: usize = 24;
/// Chunk in which diff and extra bytes are produced.
const CHUNK: usize = 64 * 1024;

/// How one block is stored. The header flags each block's encoding with one bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    None,
    Bzip2,
    Gzip,
    Xz,
    /// The block is one little-endian u64: that many zero bytes (diff and extra only).
    Zeros,
}

/// Bit offsets of the three blocks' flags in the encoding field (control, diff, extra),
/// in libbsdiff's order none, bzip2, gzip, xz, zeros.
const FLAG_BASE: [u32; 3] = [0, 5, 10];
const ENCODINGS: [Encoding; 5] = [
    Encoding::None,
    Encoding::Bzip2,
    Encoding::Gzip,
    Encoding::Xz,
    Encoding::Zeros,
];

/// A parsed header: sizes, the new file's metadata and the three blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub old_size: u64,
    pub new_size: u64,
    /// `st_mode` of the new file (type bits included, as libbsdiff writes it).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Offset of the control block (the header's length).
    pub offset: u64,
    /// Stored lengths of the control, diff and extra blocks.
    pub lengths: [u64; 3],
    pub encodings: [Encoding; 3],
}

/// Why a delta cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The header claims more than the caps allow: refused before anything is allocated.
    #[error("the delta claims {what} of {size} bytes, over the cap of {cap} bytes")]
    OverCap {
        what: &'static str,
        size: u64,
        cap: u64,
    },
    /// A malformed header or block, or a control word outside the files.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn invalid(msg: impl Into<String>) -> DeltaError {
    DeltaError::Invalid(msg.into())
}

fn le(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

impl Header {
    /// Parses the header at the start of `data` (at least [`V20_LEN`] bytes, or the whole
    /// delta if shorter); `total` is the delta's size, which must be exactly the header
    /// and the three blocks.
    pub fn parse(data: &[u8], total: u64) -> Result<Header, DeltaError> {
        let magic = data
            .get(..8)
            .ok_or_else(|| invalid("shorter than a header"))?;
        let v20 = magic == MAGIC_V20;
        if !v20 && magic != MAGIC_V21 {
            return Err(invalid(format!(
                "not a BSDIFF4U or BSDIFF4V delta (magic {:?})",
                String::from_utf8_lossy(magic)
            )));
        }
        let need = if v20 { V20_LEN } else { V21_LEN };
        let h = data
            .get(..need)
            .ok_or_else(|| invalid("shorter than its header"))?;
        // Packed fields: offset u8, then lengths, sizes (and an unused mtime in v2.0),
        // mode, owner, group as u32, then the encoding flags as u16.
        let (lengths, old_size, new_size, rest) = if v20 {
            let lengths = [le(&h[9..13]), le(&h[13..21]), le(&h[21..29])];
            (lengths, le(&h[29..37]), le(&h[37..45]), 53)
        } else {
            let lengths = [le(&h[9..10]), le(&h[10..12]), le(&h[12..14])];
            (lengths, le(&h[14..16]), le(&h[16..18]), 18)
        };
        let offset = u64::from(h[8]);
        let field = |i: usize| le(&h[rest + 4 * i..rest + 4 * i + 4]) as u32;
        let flags = le(&h[rest + 12..rest + 14]) as u16;
        let mut encodings = [Encoding::None; 3];
        for (block, enc) in encodings.iter_mut().enumerate() {
            let set: Vec<Encoding> = ENCODINGS
                .iter()
                .enumerate()
                .filter(|(bit, _)| flags & (1 << (FLAG_BASE[block] + *bit as u32)) != 0)
                .map(|(_, e)| *e)
                .collect();
            *enc = match set.as_slice() {
                [one] => *one,
                _ => return Err(invalid(format!("block {block} has no single encoding"))),
            };
        }
        if encodings[0] == Encoding::Zeros {
            return Err(invalid("a zeros-encoded control block"));
        }
        let header = Header {
            old_size,
            new_size,
            mode: field(0),
            uid: field(1),
            gid: field(2),
            offset,
            lengths,
            encodings,
        };
        header.check(need as u64, total)?;
        Ok(header)
    }

    fn check(&self, header_len: u64, total: u64) -> Result<(), DeltaError> {
        let cap = limits::DELTA_FILE;
        for (what, size) in [
            ("a new file", self.new_size),
            ("an old file", self.old_size),
        ] {
            if size > cap {
                return Err(DeltaError::OverCap { what, size, cap });
            }
        }
        if self.offset < header_len {
            return Err(invalid("its blocks start inside the header"));
        }
        let sum = self
            .lengths
            .iter()
            .try_fold(self.offset, |acc, l| acc.checked_add(*l));
        if sum != Some(total) {
            return Err(invalid(format!(
                "its header and blocks add up to {sum:?} bytes, but it has {total}"
            )));
        }
        let kind = self.mode & libc::S_IFMT;
        if kind != 0 && kind != libc::S_IFREG {
            return Err(invalid(format!(
                "it makes something other than a regular file (mode {:o})",
                self.mode
            )));
        }
        Ok(())
    }

    /// The packed header, as libbsdiff writes it: `BSDIFF4V` when the sizes fit its
    /// 8- and 16-bit fields, else `BSDIFF4U`. `offset` is set to the header's length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let small = self.lengths[0] < 1 << 8
            && self.lengths[1] < 1 << 16
            && self.lengths[2] < 1 << 16
            && self.old_size < 1 << 16
            && self.new_size < 1 << 16;
        let mut out = Vec::with_capacity(V20_LEN);
        if small {
            out.extend_from_slice(MAGIC_V21);
            out.push(V21_LEN as u8);
            out.push(self.lengths[0] as u8);
            for v in [
                self.lengths[1],
                self.lengths[2],
                self.old_size,
                self.new_size,
            ] {
                out.extend_from_slice(&(v as u16).to_le_bytes());
            }
        } else {
            out.extend_from_slice(MAGIC_V20);
            out.push(V20_LEN as u8);
            out.extend_from_slice(&(self.lengths[0] as u32).to_le_bytes());
            // The mtime field is unused by every reader; it stays 0.
            for v in [
                self.lengths[1],
                self.lengths[2],
                self.old_size,
                self.new_size,
                0,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        for v in [self.mode, self.uid, self.gid] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut flags = 0u16;
        for (block, enc) in self.encodings.iter().enumerate() {
            let bit = ENCODINGS.iter().position(|e| e == enc).expect("listed") as u32;
            flags |= 1 << (FLAG_BASE[block] + bit);
        }
        out.extend_from_slice(&flags.to_le_bytes());
        out
    }
}

/// Reads `len` bytes of `file` from `start` by position (three blocks share one file).
struct Span<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Span<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = (self.end - self.pos).min(buf.len() as u64) as usize;
        if room == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..room], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// One block, decoded. Reads must be filled exactly; a short block is an error.
enum Block<'a> {
    Stream(Box<dyn Read + 'a>),
    /// Zero bytes still to give, read from the block's u64 on first use.
    Zeros(Option<u64>, Span<'a>),
}

impl<'a> Block<'a> {
    fn open(file: &'a File, start: u64, len: u64, enc: Encoding) -> io::Result<Block<'a>> {
        let span = Span {
            file,
            pos: start,
            end: start + len,
        };
        Ok(match enc {
            Encoding::None => Block::Stream(Box::new(span)),
            Encoding::Gzip => Block::Stream(Box::new(flate2::read::MultiGzDecoder::new(span))),
            Encoding::Bzip2 => Block::Stream(Box::new(bzip2::read::MultiBzDecoder::new(span))),
            Encoding::Xz => {
                let stream = xz2::stream::Stream::new_stream_decoder(
                    limits::XZ_DECODER_MEMORY,
                    xz2::stream::CONCATENATED,
                )
                .map_err(io::Error::from)?;
                Block::Stream(Box::new(xz2::read::XzDecoder::new_stream(span, stream)))
            }
            Encoding::Zeros => Block::Zeros(None, span),
        })
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), DeltaError> {
        let short =
            |e: io::Error| invalid(format!("the {what} block ends early or is corrupt: {e}"));
        match self {
            Block::Stream(r) => r.read_exact(buf).map_err(short),
            Block::Zeros(left, span) => {
                let left = match left {
                    Some(n) => n,
                    None => {
                        let mut word = [0u8; 8];
                        span.read_exact(&mut word).map_err(short)?;
                        left.insert(u64::from_le_bytes(word))
                    }
                };
                if (buf.len() as u64) > *left {
                    return Err(invalid(format!("the {what} block has too few zeros")));
                }
                *left -= buf.len() as u64;
                buf.fill(0);
                Ok(())
            }
        }
    }
}

/// Applies a delta: reads `old` (which must be `header.old_size` bytes) by position and
/// writes the new file's `header.new_size` bytes to `out`, in order. Every control word is
/// checked against both files before it is used, as libbsdiff does.
pub fn apply(
    header: &Header,
    delta: &File,
    old: &File,
    out: &mut impl Write,
) -> Result<(), DeltaError> {
    let old_size = old.metadata()?.len();
    if old_size != header.old_size {
        return Err(invalid(format!(
            "it applies to a file of {} bytes, not {old_size}",
            header.old_size
        )));
    }
    let [c, d, _] = header.lengths;
    let starts = [header.offset, header.offset + c, header.offset + c + d];
    let open = |i: usize| Block::open(delta, starts[i], header.lengths[i], header.encodings[i]);
    let (mut control, mut diff, mut extra) = (open(0)?, open(1)?, open(2)?);
    let (new_size, old_size) = (header.new_size as i128, old_size as i128);
    let (mut new_pos, mut old_pos) = (0i128, 0i128);
    let mut buf = vec![0u8; CHUNK];
    let mut old_buf = vec![0u8; CHUNK];
    // A control triple that moves nothing forward is legal, but not without end: a
    // compressed control block could otherwise spin on millions of them.
    let mut idle = 0u32;
    while new_pos < new_size {
        let mut word = [0u8; CONTROL_LEN];
        control.fill(&mut word, "control")?;
        let ctrl: [i128; 3] = std::array::from_fn(|i| {
            i64::from_le_bytes(word[i * 8..i * 8 + 8].try_into().unwrap()) as i128
        });
        if ctrl[0] < 0 || ctrl[1] < 0 || new_pos + ctrl[0] + ctrl[1] > new_size {
            return Err(invalid("a control word reaches past the new file"));
        }
        if ctrl[0] + ctrl[1] == 0 {
            idle += 1;
            if idle > 1024 {
                return Err(invalid("the control block makes no progress"));
            }
        } else {
            idle = 0;
        }
        // Diff bytes are added to the old file's bytes at the same offset; offsets outside
        // the old file add nothing.
        let mut left = ctrl[0];
        while left > 0 {
            let n = left.min(CHUNK as i128) as usize;
            diff.fill(&mut buf[..n], "diff")?;
            let lo = old_pos.clamp(0, old_size);
            let hi = (old_pos + n as i128).clamp(0, old_size);
            if hi > lo {
                let (from, len) = (lo as u64, (hi - lo) as usize);
                old.read_exact_at(&mut old_buf[..len], from)?;
                let at = (lo - old_pos) as usize;
                for (b, o) in buf[at..at + len].iter_mut().zip(&old_buf[..len]) {
                    *b = b.wrapping_add(*o);
                }
            }
            out.write_all(&buf[..n])?;
            old_pos += n as i128;
            left -= n as i128;
        }
        new_pos += ctrl[0];
        if old_pos + ctrl[2] < 0 || old_pos + ctrl[2] > old_size {
            return Err(invalid("a control word seeks outside the old file"));
        }
        let mut left = ctrl[1];
        while left > 0 {
            let n = left.min(CHUNK as i128) as usize;
            extra.fill(&mut buf[..n], "extra")?;
            out.write_all(&buf[..n])?;
            left -= n as i128;
        }
        new_pos += ctrl[1];
        old_pos += ctrl[2];
    }
    Ok(())
}

/// One control triple: `add` bytes from the diff block, `copy` bytes from the extra
/// block, then move the old position by `seek`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub add: u64,
    pub copy: u64,
    pub seek: i64,
}

/// The three raw (unencoded) blocks of a delta, as a diff algorithm produces them.
#[derive(Debug, Default, Clone)]
pub struct Blocks {
    pub control: Vec<u8>,
    pub diff: Vec<u8>,
    pub extra: Vec<u8>,
}

impl Blocks {
    /// Appends one control triple.
    pub fn push_control(&mut self, c: Control) {
        for v in [c.add as i64, c.copy as i64, c.seek] {
            self.control.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Encodes one block in the smallest of the encodings every libbsdiff build reads
/// (none, gzip and, for diff and extra, zeros: bzip2 and xz are build options there).
pub fn encode_block(raw: Vec<u8>, zeros_allowed: bool) -> (Vec<u8>, Encoding) {
    if raw.is_empty() {
        return (raw, Encoding::None);
    }
    if zeros_allowed && raw.iter().all(|b| *b == 0) {
        return ((raw.len() as u64).to_le_bytes().to_vec(), Encoding::Zeros);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let gz = gz.write_all(&raw).and_then(|_| gz.finish());
    match gz {
        Ok(gz) if gz.len() < raw.len() => (gz, Encoding::Gzip),
        _ => (raw, Encoding::None),
    }
}

/// Packs raw blocks into a complete delta for a new file of `meta` made from an old
/// file of `old_size` bytes; `None` when the encoded control block does not fit the
/// header's 32-bit field.
pub fn encode(blocks: Blocks, old_size: u64, meta: &crate::hash::Meta) -> Option<Vec<u8>> {
    let (control, c_enc) = encode_block(blocks.control, false);
    let (diff, d_enc) = encode_block(blocks.diff, true);
    let (extra, e_enc) = encode_block(blocks.extra, true);
    if control.len() as u64 > u64::from(u32::MAX) {
        return None;
    }
    let header = Header {
        old_size,
        new_size: meta.size,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
        offset: 0,
        lengths: [control.len() as u64, diff.len() as u64, extra.len() as u64],
        encodings: [c_enc, d_enc, e_enc],
    };
    let mut out = header.to_bytes();
    out.extend_from_slice(&control);
    out.extend_from_slice(&diff);
    out.extend_from_slice(&extra);
    Some(out)
}

#[cfg(test)]
mod tests;
