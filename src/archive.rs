//! Reading swupd's archives: compression detection and the single-entry tars that carry
//! manifests and fullfiles. Every reader is bounded so hostile input cannot grow without end.

use std::io::{self, BufRead, BufReader, Read};

use crate::hash::{Kind, Meta};
use crate::{Error, Result};

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

/// Wraps `reader` in the decompressor its magic bytes call for (or none).
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(128 * 1024, reader);
    let kind = Compression::detect(buffered.fill_buf()?);
    Ok(match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
    })
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

/// Room for tar headers, padding and a small extra entry beyond a bounded payload.
pub const TAR_SLACK: u64 = 64 * 1024;

/// The most a compressed fullfile of `plain` unpacked bytes may take on the wire: an
/// incompressible payload grows a little in every format (stored deflate blocks add 5
/// bytes per 64 KiB), so the download bound allows 1/32 on top of the tar's own slack.
pub fn compressed_bound(plain: u64) -> u64 {
    plain.saturating_add(plain / 32).saturating_add(TAR_SLACK)
}

/// The one file of a manifest tar: its text and the metadata its tar header records,
/// which is part of the manifest's hash.
pub struct ManifestFile {
    pub text: Vec<u8>,
    pub meta: Meta,
}

/// Reads `Manifest.<name>` out of a (compressed) manifest tar. The tar may also carry a
/// `Manifest.MoM.sig` (mixer puts one in the MoM tar); anything else is refused.
pub fn read_manifest_tar(reader: impl Read, name: &str, limit: u64) -> Result<ManifestFile> {
    let what = format!("Manifest.{name}.tar");
    let bad = |reason: String| Error::Archive {
        what: what.clone(),
        reason,
    };
    let wanted = format!("Manifest.{name}");
    let plain = decompress(reader).map_err(|e| bad(e.to_string()))?;
    // Headers, padding and a signature entry come on top of the manifest text itself.
    let mut archive = tar::Archive::new(Bounded::new(plain, limit + TAR_SLACK, &what));
    let mut found = None;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
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
        if found.is_some() {
            return Err(bad(format!("{wanted} appears twice")));
        }
        found = Some(read_regular(entry, limit).map_err(|e| bad(e.to_string()))?);
    }
    found.ok_or_else(|| bad(format!("no {wanted} inside")))
}

fn read_regular<R: Read>(mut entry: tar::Entry<'_, R>, limit: u64) -> io::Result<ManifestFile> {
    let meta = header_meta(entry.header())?;
    if meta.kind != Kind::File {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "manifest entry is not a regular file",
        ));
    }
    if meta.size > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("manifest is {} bytes, over the bound of {limit}", meta.size),
        ));
    }
    let mut text = Vec::with_capacity(meta.size as usize);
    entry.read_to_end(&mut text)?;
    Ok(ManifestFile { text, meta })
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
        let m = read_manifest_tar(&tar[..], "os-core", 1 << 20).unwrap();
        assert_eq!(m.text, b"MANIFEST\t30\n");
        assert_eq!(m.meta, Meta::file(0o644, 0, 0, 12));
    }

    #[test]
    fn refuses_strays_and_oversize() {
        let tar = manifest_tar(&[("Manifest.os-core", b"x"), ("evil", b"y")]);
        assert!(read_manifest_tar(&tar[..], "os-core", 1 << 20).is_err());
        let tar = manifest_tar(&[("Manifest.os-core", &[b'x'; 100])]);
        assert!(read_manifest_tar(&tar[..], "os-core", 99).is_err());
        let tar = manifest_tar(&[("Manifest.other", b"x")]);
        assert!(read_manifest_tar(&tar[..], "os-core", 1 << 20).is_err());
    }

    #[test]
    fn bounded_cuts_off() {
        let mut out = Vec::new();
        let r = Bounded::new(&[1u8; 10][..], 10, "x").read_to_end(&mut out);
        assert_eq!(r.unwrap(), 10);
        let r = Bounded::new(&[1u8; 11][..], 10, "x").read_to_end(&mut Vec::new());
        assert!(r.unwrap_err().to_string().contains("larger than its bound"));
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
