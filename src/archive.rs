//! Reading swupd's archives: compression detection and the single-entry tars that carry
//! manifests and fullfiles. Every reader is bounded so hostile input cannot grow without end.

use std::io::{self, BufRead, BufReader, Read};

use crate::hash::{Kind, Meta};
use crate::limits::{self, describe};
use crate::{Error, Result};

pub use crate::limits::{compressed_bound, TAR_SLACK};

/// Compression formats a `.tar` from the server may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    /// Recognises the format from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }
}

/// Wraps `reader` in the decompressor its magic bytes call for (or none). Every decoder's
/// memory is capped (see `limits`): a stream that needs more fails on its first read.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(128 * 1024, reader);
    let kind = Compression::detect(buffered.fill_buf()?);
    Ok(match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Xz => {
            // Concatenated streams, as `xz` writes and reads them; the default decoder's
            // memory limit is unlimited.
            let stream = xz2::stream::Stream::new_stream_decoder(
                limits::XZ_DECODER_MEMORY,
                xz2::stream::CONCATENATED,
            )
            .map_err(io::Error::from)?;
            Box::new(MemoryCapped(xz2::bufread::XzDecoder::new_stream(
                buffered, stream,
            )))
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(buffered)?;
            decoder.window_log_max(limits::ZSTD_WINDOW_LOG_MAX)?;
            Box::new(MemoryCapped(decoder))
        }
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
    })
}

/// A decoder whose refusal to take more memory than its cap is reported as such, with
/// the cap, rather than as liblzma's or zstd's terse code.
struct MemoryCapped<R>(R);

impl<R: Read> Read for MemoryCapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            let xz_cap = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<xz2::stream::Error>())
                .is_some_and(|x| matches!(x, xz2::stream::Error::MemLimit));
            // zstd says "Frame requires too much memory for decoding".
            let zstd_cap = e.to_string().contains("too much memory");
            if xz_cap || zstd_cap {
                let cap = if xz_cap {
                    limits::XZ_DECODER_MEMORY
                } else {
                    1 << limits::ZSTD_WINDOW_LOG_MAX
                };
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the compressed stream needs more memory to unpack than the decoder's cap of {}",
                        describe(cap)
                    ),
                )
            } else {
                e
            }
        })
    }
}

/// A reader that yields at most `limit` bytes and fails if there are more, so an
/// oversized or endless stream is cut off instead of filling memory or disk (and instead
/// of being silently truncated, which a hash would only catch later, more vaguely).
pub struct Bounded<R> {
    inner: R,
    limit: u64,
    read: u64,
    excess: Box<dyn Fn(u64) -> io::Error + Send>,
}

impl<R: Read> Bounded<R> {
    /// Bounds `inner` to `limit` bytes; `what` names it in the error.
    pub fn new(inner: R, limit: u64, what: impl Into<String>) -> Bounded<R> {
        let what = what.into();
        Bounded::with_error(inner, limit, move |limit| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what} is larger than its bound of {limit} bytes"),
            )
        })
    }

    /// Bounds `inner` to `limit` bytes; `excess(limit)` makes the error past the bound.
    pub fn with_error(
        inner: R,
        limit: u64,
        excess: impl Fn(u64) -> io::Error + Send + 'static,
    ) -> Bounded<R> {
        Bounded {
            inner,
            limit,
            read: 0,
            excess: Box::new(excess),
        }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes yielded so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than the room left: getting it proves the stream is too
        // long, while one of exactly the bound then reads its end as usual.
        let room = self.limit - self.read;
        let want = usize::try_from(room.saturating_add(1)).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > room {
            return Err((self.excess)(self.limit));
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// A tar entry's content, held to exactly the size its header gives (and the hash
/// covers): the tar crate ends an entry cut short by the end of the archive quietly, as
/// if it were shorter, and reads as many bytes as a pax `size` record says, which may
/// differ from the header's.
pub struct ExactSize<R> {
    inner: R,
    size: u64,
    left: u64,
}

impl<R: Read> ExactSize<R> {
    /// Holds `inner` to `size` bytes.
    pub fn new(inner: R, size: u64) -> ExactSize<R> {
        ExactSize {
            inner,
            size,
            left: size,
        }
    }
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte more than is left, to see an entry longer than its header says.
        let want =
            usize::try_from(self.left.saturating_add(1)).map_or(buf.len(), |w| w.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        let bad = |reason: String| io::Error::new(io::ErrorKind::InvalidData, reason);
        if n == 0 && self.left > 0 {
            return Err(bad(format!(
                "the archive is cut off inside an entry of {} bytes (by its tar header)",
                self.size
            )));
        }
        if n as u64 > self.left {
            return Err(bad(format!(
                "the entry is longer than the {} bytes its tar header gives",
                self.size
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The one file of a manifest tar: its text and the metadata its tar header records,
/// which is part of the manifest's hash.
pub struct ManifestFile {
    pub text: Vec<u8>,
    pub meta: Meta,
}

/// Reads `Manifest.<name>` into memory out of a (compressed) manifest tar read from
/// `what` (a URL or path, for messages); its text may be at most `limit` bytes.
pub fn read_manifest_tar(
    reader: impl Read,
    name: &str,
    what: &str,
    limit: u64,
) -> Result<ManifestFile> {
    let (meta, text) = with_manifest_entry(reader, name, what, limit, |meta, content| {
        // The size comes from the tar header, already checked against the limit.
        let mut text = Vec::with_capacity(meta.size as usize);
        content
            .read_to_end(&mut text)
            .map_err(|e| read_error(what, e))?;
        Ok(text)
    })?;
    Ok(ManifestFile { text, meta })
}

/// Finds `Manifest.<name>` in a (compressed) manifest tar read from `what` and hands its
/// metadata and content to `take`, which decides where the text goes. The text may be
/// at most `limit` bytes and the unpacked tar `limit` plus [`TAR_SLACK`]; past either,
/// the archive is refused. The tar may also carry a `Manifest.MoM.sig` (mixer puts one in
/// the MoM tar); anything else is refused.
pub fn with_manifest_entry<T>(
    reader: impl Read,
    name: &str,
    what: &str,
    limit: u64,
    take: impl FnOnce(&Meta, &mut dyn Read) -> Result<T>,
) -> Result<(Meta, T)> {
    let bad = |reason: String| Error::Archive {
        what: what.to_string(),
        reason,
    };
    let io = |e: io::Error| read_error(what, e);
    let wanted = format!("Manifest.{name}");
    let plain = decompress(reader).map_err(io)?;
    // Headers, padding and a signature entry come on top of the manifest text itself.
    let unpacked = Bounded::with_error(plain, limit + TAR_SLACK, move |_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "unpacked, it is larger than the cap of {} plus {TAR_SLACK} bytes of tar headers",
                describe(limit)
            ),
        )
    });
    let mut archive = tar::Archive::new(unpacked);
    let mut take = Some(take);
    let mut found = None;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path_bytes().into_owned();
        if path == b"Manifest.MoM.sig" {
            continue;
        }
        if path != wanted.as_bytes() {
            return Err(bad(format!(
                "unexpected entry {:?}",
                String::from_utf8_lossy(&path)
            )));
        }
        let Some(take) = take.take() else {
            return Err(bad(format!("{wanted} appears twice")));
        };
        let meta = header_meta(entry.header()).map_err(io)?;
        if meta.kind != Kind::File {
            return Err(bad(format!("{wanted} is not a regular file")));
        }
        if meta.size > limit {
            return Err(bad(format!(
                "{wanted} is {} bytes, over the cap of {}",
                meta.size,
                describe(limit)
            )));
        }
        found = Some((
            meta,
            take(&meta, &mut ExactSize::new(&mut entry, meta.size))?,
        ));
    }
    found.ok_or_else(|| bad(format!("no {wanted} inside")))
}

/// The error of a failed read from an archive: the typed error a download carries (too
/// large, connection lost), or else a bad archive naming `what`.
pub fn read_error(what: &str, e: io::Error) -> Error {
    match Error::carried(e) {
        Ok(typed) => typed,
        Err(e) => Error::Archive {
            what: what.to_string(),
            reason: e.to_string(),
        },
    }
}

/// The hash metadata a tar header records: type, permission bits, numeric owner, size.
pub fn header_meta(h: &tar::Header) -> io::Result<Meta> {
    let perm = h.mode()? & 0o7777;
    let (uid, gid) = (to_u32(h.uid()?)?, to_u32(h.gid()?)?);
    Ok(match h.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            Meta::file(perm, uid, gid, h.size()?)
        }
        tar::EntryType::Directory => Meta::dir(perm, uid, gid),
        tar::EntryType::Symlink => {
            let target = h.link_name_bytes().unwrap_or_default();
            Meta::symlink(uid, gid, target.len() as u64)
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unsupported tar entry type {other:?}"),
            ))
        }
    })
}

/// The hash metadata of a tar entry and, for a symlink, its target (long targets from the
/// GNU extension included).
pub fn entry_meta<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<(Meta, Option<Vec<u8>>)> {
    let mut meta = header_meta(entry.header())?;
    if meta.kind != Kind::Symlink {
        return Ok((meta, None));
    }
    let target = entry
        .link_name_bytes()
        .map(|t| t.into_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "symlink without a target"))?;
    meta.size = target.len() as u64;
    Ok((meta, Some(target)))
}

fn to_u32(v: u64) -> io::Result<u32> {
    u32::try_from(v)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "owner id out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn manifest_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        let raw = b.into_inner().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&raw).unwrap();
        xz.finish().unwrap()
    }

    #[test]
    fn reads_manifest_and_meta() {
        let tar = manifest_tar(&[("Manifest.os-core", b"MANIFEST\t30\n")]);
        let m = read_manifest_tar(&tar[..], "os-core", "t", 1 << 20).unwrap();
        assert_eq!(m.text, b"MANIFEST\t30\n");
        assert_eq!(m.meta, Meta::file(0o644, 0, 0, 12));
    }

    #[test]
    fn refuses_strays_and_oversize() {
        let tar = manifest_tar(&[("Manifest.os-core", b"x"), ("evil", b"y")]);
        assert!(read_manifest_tar(&tar[..], "os-core", "t", 1 << 20).is_err());
        let tar = manifest_tar(&[("Manifest.os-core", &[b'x'; 100])]);
        assert!(read_manifest_tar(&tar[..], "os-core", "t", 99).is_err());
        let tar = manifest_tar(&[("Manifest.other", b"x")]);
        assert!(read_manifest_tar(&tar[..], "os-core", "t", 1 << 20).is_err());
    }

    /// An uncompressed tar of `Manifest.os-core` whose header gives `header_size` and
    /// whose content is `content`, after a pax `size` record of `pax_size` if any.
    fn raw_manifest_tar(header_size: u64, pax_size: Option<u64>, content: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        if let Some(size) = pax_size {
            let body = format!(" size={size}\n");
            let record = format!("{}{body}", body.len() + 2);
            assert_eq!(record.len(), body.len() + 2);
            let mut h = tar::Header::new_ustar();
            h.set_size(record.len() as u64);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_cksum();
            b.append_data(&mut h, "pax", record.as_bytes()).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(header_size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, "Manifest.os-core", content).unwrap();
        b.into_inner().unwrap()
    }

    /// Found with the fuzz targets (an accepted entry must have its header's size): the
    /// tar crate ends an entry that the end of the archive cuts short as if it were
    /// shorter, so the text came back shorter than the size its metadata (and hash) says.
    #[test]
    fn entry_cut_off_by_the_end_of_the_archive_is_refused() {
        let whole = raw_manifest_tar(100, None, &[b'x'; 100]);
        assert_eq!(
            read_manifest_tar(&whole[..], "os-core", "t", 1 << 20)
                .unwrap()
                .text
                .len(),
            100
        );
        let cut = &whole[..512 + 40];
        let err = read_manifest_tar(cut, "os-core", "t", 1 << 20)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("cut off"), "{err}");
    }

    /// A pax `size` record makes the tar crate read more than the header's size, which is
    /// what the cap and the hash were checked against.
    #[test]
    fn entry_longer_than_its_header_is_refused() {
        let tar = raw_manifest_tar(100, Some(200), &[b'x'; 200]);
        let err = read_manifest_tar(&tar[..], "os-core", "t", 1 << 20)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("longer than the 100 bytes"),
            "{err}"
        );
    }

    #[test]
    fn bounded_cuts_off() {
        let mut out = Vec::new();
        let r = Bounded::new(&[1u8; 10][..], 10, "x").read_to_end(&mut out);
        assert_eq!(r.unwrap(), 10);
        let r = Bounded::new(&[1u8; 11][..], 10, "x").read_to_end(&mut Vec::new());
        assert!(r.unwrap_err().to_string().contains("larger than its bound"));
    }

    fn unpack(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompress(data)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn zstd_windows_over_the_cap_are_refused() {
        let zstd_with_window = |log: u32| {
            let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            enc.window_log(log).unwrap();
            enc.write_all(b"hello").unwrap();
            enc.finish().unwrap()
        };
        assert_eq!(
            unpack(&zstd_with_window(limits::ZSTD_WINDOW_LOG_MAX)).unwrap(),
            b"hello"
        );
        let err = unpack(&zstd_with_window(limits::ZSTD_WINDOW_LOG_MAX + 1)).unwrap_err();
        assert!(err.to_string().contains("cap of 67108864 bytes"), "{err}");
    }

    /// "hello" as xz whose block header declares the dictionary of LZMA2 code `dict`:
    /// the LZMA2 property byte (after the 12-byte stream header) patched, its CRC32 redone.
    fn xz_declaring(dict: u8) -> Vec<u8> {
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(b"hello").unwrap();
        let mut data = xz.finish().unwrap();
        assert_eq!(&data[12..16], &[0x02, 0x00, 0x21, 0x01]);
        data[16] = dict;
        let mut crc = flate2::Crc::new();
        crc.update(&data[12..20]);
        data[20..24].copy_from_slice(&crc.sum().to_le_bytes());
        data
    }

    #[test]
    fn xz_over_the_memory_cap_is_refused() {
        // 64 MiB, as `xz -9` declares, is the most the presets make, and decodes.
        assert_eq!(unpack(&xz_declaring(28)).unwrap(), b"hello");
        let err = unpack(&xz_declaring(30)).unwrap_err();
        assert!(err.to_string().contains("cap of 68157440 bytes"), "{err}");
    }

    #[test]
    fn detects_compression() {
        for (data, kind) in [
            (vec![0x1f, 0x8b, 8], Compression::Gzip),
            (vec![0xfd, b'7', b'z', b'X', b'Z', 0], Compression::Xz),
            (vec![0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
            (b"BZh9".to_vec(), Compression::Bzip2),
            (b"ustar".to_vec(), Compression::None),
        ] {
            assert_eq!(Compression::detect(&data), kind);
        }
    }
}
