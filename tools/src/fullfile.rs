//! Deterministic tars: fullfiles (`files/<hash>.tar`, one entry named by its hash) and
//! manifest tars (`Manifest.<name>.tar`, xz). The client hashes what a tar header says,
//! so headers carry exactly the metadata that was hashed, and nothing that varies.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use chainup::hash::{Hash, Hasher, Kind, Meta};

use crate::tree::{Item, Source};

/// Compression of fullfiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Zstd,
    Xz,
    Gzip,
    None,
}

/// zstd level for file content: 19 takes minutes per GiB on one core, 9 keeps most of
/// the ratio at several times the speed.
const ZSTD_LEVEL: i32 = 9;
/// Content at least this large is zstd-compressed by several threads (a large file of a
/// tree; a chunked core image's fullfile is its chunks' frames, chunker.rs). zstd's
/// output does not depend on the number of threads, as long as there is at least one
/// worker (tested below), so the fullfile is the same on every machine; smaller files
/// are not worth the threads.
const MT_MIN: u64 = 32 << 20;
/// xz preset, for manifests and `--compression xz`.
const XZ_PRESET: u32 = 6;
/// Longest symlink target that fits the tar header itself (longer ones need GNU longlink).
const LINKNAME_FIELD: usize = 100;

/// A compressor over `W` that must be finished to flush its trailer.
pub(crate) enum Encoder<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Xz(xz2::write::XzEncoder<W>),
    Gzip(flate2::write::GzEncoder<W>),
    None(W),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(inner: W, compression: Compression) -> io::Result<Encoder<W>> {
        Ok(match compression {
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?;
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
            Compression::Xz => Encoder::Xz(xz2::write::XzEncoder::new(inner, XZ_PRESET)),
            // GzEncoder writes mtime 0 and no file name: deterministic.
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                inner,
                flate2::Compression::best(),
            )),
            Compression::None => Encoder::None(inner),
        })
    }

    /// A compressor for `size` bytes of file content: multi-threaded zstd from [`MT_MIN`].
    pub(crate) fn for_content(
        inner: W,
        compression: Compression,
        size: u64,
    ) -> io::Result<Encoder<W>> {
        let mut e = Encoder::new(inner, compression)?;
        if let Encoder::Zstd(z) = &mut e {
            if size >= MT_MIN {
                z.multithread(zstd_workers())?;
            }
        }
        Ok(e)
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// zstd worker threads: one per core (the output is the same for any count from 1).
fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16) as u32)
}

/// A tar header with no user/group names, no device numbers, and a fixed mtime.
pub(crate) fn header(meta: &Meta, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.mode & 0o7777);
    h.set_uid(u64::from(meta.uid));
    h.set_gid(u64::from(meta.gid));
    h.set_mtime(mtime);
    match meta.kind {
        Kind::File => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.size);
        }
        Kind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        }
        Kind::Symlink => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
        }
    }
    h
}

/// Writes the fullfile of `item` to `dest`, re-hashing the bytes as they go into the tar:
/// if the tree changed since it was scanned, publishing fails instead of serving a
/// fullfile that does not match its name. Returns the size written.
pub fn write(item: &Item, dest: &Path, compression: Compression, mtime: u64) -> Result<u64> {
    // Mixer gzips directories and symlinks: they are tiny and gzip is cheapest to open.
    let compression = match (item.meta.kind, compression) {
        (_, Compression::None) | (Kind::File, _) => compression,
        _ => Compression::Gzip,
    };
    crate::webroot::write_atomic_with(dest, |out| {
        let encoder = Encoder::for_content(out, compression, item.meta.size)?;
        let mut tar = tar::Builder::new(encoder);
        let got = append_item(&mut tar, item, &item.hash.to_hex(), mtime)?;
        if got != item.hash {
            bail!(
                "{}: content hashes to {got} now, but {} when it was scanned; did the tree change?",
                item.path,
                item.hash
            );
        }
        tar.into_inner()?.finish()?;
        Ok(())
    })
    .with_context(|| format!("fullfile of {}", item.path))
}

/// A core image's fullfile, made of zstd frames (chunker.rs): a frame holding the tar
/// header, then the image's chunks as the chunk store holds them (each a frame), then a
/// frame holding the tar's padding and end. zstd decoders (libarchive's, swupd's, the
/// client's) read concatenated frames as one stream, so the tar inside is byte for byte
/// what [`write`] would put there, and the image is compressed once for both uses.
pub(crate) struct ImageFrames {
    /// The frame before the chunks.
    pub head: Vec<u8>,
    /// The frame after them.
    pub tail: Vec<u8>,
}

impl ImageFrames {
    /// The frames around the chunks of the image `item`, named by its hash.
    pub(crate) fn new(item: &Item, mtime: u64) -> Result<ImageFrames> {
        let meta = item.meta;
        if meta.kind != Kind::File || !matches!(item.source, Source::Image(_)) {
            bail!("{}: not an image file", item.path);
        }
        let mut h = header(&meta, mtime);
        check_header(&h, item)?;
        h.set_path(item.hash.to_hex())?;
        h.set_cksum();
        // The data is padded to whole 512-byte blocks; two zero blocks end the archive.
        let pad = (512 - meta.size % 512) % 512;
        let end = vec![0u8; pad as usize + 1024];
        let frame =
            |b: &[u8]| zstd::bulk::compress(b, ZSTD_LEVEL).context("compressing a tar frame");
        Ok(ImageFrames {
            head: frame(h.as_bytes())?,
            tail: frame(&end)?,
        })
    }
}

/// Feeds what it reads into a hasher and counts it.
pub(crate) struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut Hasher,
    count: u64,
}

impl<'a, R> HashingReader<'a, R> {
    pub(crate) fn new(inner: R, hasher: &'a mut Hasher) -> HashingReader<'a, R> {
        HashingReader {
            inner,
            hasher,
            count: 0,
        }
    }

    /// The bytes read so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

/// Appends `item` as the entry `name` (its hash in a fullfile, `staged/<hash>` in a
/// pack); returns the hash of what was written.
pub(crate) fn append_item<W: Write>(
    tar: &mut tar::Builder<W>,
    item: &Item,
    name: &str,
    mtime: u64,
) -> Result<Hash> {
    let meta = item.meta;
    if meta.kind != Kind::Symlink {
        check_header(&header(&meta, mtime), item)?;
    }
    let mut hasher = Hasher::new(&meta, &[]);
    match (&item.source, meta.kind) {
        (Source::Synthetic, Kind::File) if meta.size == 0 => {
            tar.append_data(&mut header(&meta, mtime), name, io::empty())?;
        }
        (Source::Synthetic, Kind::Dir) | (Source::Tree(_), Kind::Dir) => {
            tar.append_data(&mut header(&meta, mtime), name, io::empty())?;
        }
        (Source::Tree(path), Kind::Symlink) => {
            let target = std::fs::read_link(path)?;
            let target = target.as_os_str().as_bytes();
            hasher.update(target);
            append_symlink(tar, header(&meta, mtime), name, target)?;
        }
        (Source::Tree(path) | Source::Image(path), Kind::File) => {
            // The operator names image files, possibly through a symlink; tree entries are
            // opened exactly as scanned.
            let follow = matches!(item.source, Source::Image(_));
            let file = open_regular(path, meta.size, follow)?;
            let mut reader = HashingReader::new(file.take(meta.size), &mut hasher);
            tar.append_data(&mut header(&meta, mtime), name, &mut reader)?;
            if reader.count != meta.size {
                bail!(
                    "{}: the file changed size while it was read",
                    path.display()
                );
            }
        }
        (source, kind) => bail!("no content for a {kind:?} from {source:?}"),
    }
    Ok(hasher.finish())
}

/// The client hashes what a tar header says: `h`, read back the way the client reads it,
/// must say `item`'s metadata.
fn check_header(h: &tar::Header, item: &Item) -> Result<()> {
    let said = chainup::archive::header_meta(h)?;
    if said != item.meta {
        bail!(
            "{}: tar header would say {said:?}, not {:?}",
            item.path,
            item.meta
        );
    }
    Ok(())
}

/// Opens a regular file of the expected size; unless `follow`, a symlink planted in its
/// place is not followed. O_NONBLOCK keeps a fifo swapped in from blocking the open.
fn open_regular(path: &Path, size: u64, follow: bool) -> Result<File> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let flags = nofollow | libc::O_NONBLOCK;
    let file = File::options()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let md = file.metadata()?;
    if !md.is_file() || md.len() != size {
        bail!("{} changed since it was scanned", path.display());
    }
    Ok(file)
}

/// Symlink entry with the target byte for byte: the tar crate's `append_link` would
/// normalise `a//b` or `a/./b`, changing what the hash covers.
fn append_symlink<W: Write>(
    tar: &mut tar::Builder<W>,
    mut h: tar::Header,
    name: &str,
    target: &[u8],
) -> Result<()> {
    if target.len() < LINKNAME_FIELD {
        h.set_link_name_literal(target)?;
    } else {
        // GNU long link: a `././@LongLink` entry of type K holding the NUL-terminated target.
        let mut long = tar::Header::new_gnu();
        long.set_path("././@LongLink")?;
        long.set_mode(0o644);
        long.set_uid(0);
        long.set_gid(0);
        long.set_mtime(0);
        long.set_size(target.len() as u64 + 1);
        long.set_entry_type(tar::EntryType::GNULongLink);
        long.set_cksum();
        tar.append(&long, target.chain(&[0u8][..]))?;
        h.set_link_name_literal(&target[..LINKNAME_FIELD])?;
    }
    tar.append_data(&mut h, name, io::empty())?;
    Ok(())
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The metadata every manifest is published with; the MoM hashes it, the client checks it.
pub fn manifest_meta(text: &[u8]) -> Meta {
    Meta::file(0o644, 0, 0, text.len() as u64)
}

/// `Manifest.<name>.tar`: xz tar with the one entry `Manifest.<name>`, 0644 root:root.
pub fn manifest_tar(name: &str, text: &[u8], mtime: u64) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Encoder::new(Vec::new(), Compression::Xz)?);
    let mut h = header(&manifest_meta(text), mtime);
    tar.append_data(&mut h, format!("Manifest.{name}"), text)?;
    Ok(tar.into_inner()?.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainup::archive::{decompress, header_meta, read_manifest_tar};
    use chainup::hash::hash_bytes;
    use chainup::manifest::EntryType;

    fn read_back(path: &Path) -> (Meta, String, Vec<u8>, Vec<u8>) {
        let plain = decompress(File::open(path).unwrap()).unwrap();
        let mut ar = tar::Archive::new(plain);
        let mut entries = ar.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        let meta = header_meta(e.header()).unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        drop(e);
        assert!(entries.next().is_none(), "one entry only");
        (meta, name, data, link)
    }

    fn tree_item(path: &Path) -> Item {
        let md = std::fs::symlink_metadata(path).unwrap();
        let meta = Meta::from_metadata(&md);
        let etype = match meta.kind {
            Kind::File => EntryType::File,
            Kind::Dir => EntryType::Dir,
            Kind::Symlink => EntryType::Link,
        };
        Item {
            path: "/x".into(),
            etype,
            image: None,
            meta,
            hash: chainup::hash::hash_path(path, false).unwrap(),
            source: Source::Tree(path.to_path_buf()),
        }
    }

    #[test]
    fn file_round_trips_in_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, b"hello\n").unwrap();
        let item = tree_item(&src);
        for c in [
            Compression::Zstd,
            Compression::Xz,
            Compression::Gzip,
            Compression::None,
        ] {
            let dest = dir.path().join(format!("{c:?}.tar"));
            write(&item, &dest, c, 1234).unwrap();
            let (meta, name, data, _) = read_back(&dest);
            assert_eq!(name, item.hash.to_hex());
            assert_eq!(hash_bytes(&meta, &data), item.hash);
        }
    }

    #[test]
    fn multithreaded_zstd_is_the_same_for_any_thread_count_and_write_sizes() {
        let data: Vec<u8> = (0..(16u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let packed = |workers: u32, step: usize| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL).unwrap();
            e.include_checksum(true).unwrap();
            e.multithread(workers).unwrap();
            for piece in data.chunks(step) {
                e.write_all(piece).unwrap();
            }
            e.finish().unwrap()
        };
        let one = packed(1, 1 << 20);
        assert_eq!(packed(3, 8192), one);
        assert_eq!(packed(2, 777_777), one);
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
    }

    #[test]
    fn an_image_fullfile_of_frames_holds_the_tar_write_makes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("core");
        for len in [0usize, 511, 512, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&src, &data).unwrap();
            let item = crate::tree::image_item(chainup::manifest::ImageKind::Core, &src).unwrap();
            let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
            write(&item, &a, Compression::None, 5).unwrap();
            let frames = ImageFrames::new(&item, 5).unwrap();
            let mut framed = frames.head.clone();
            for piece in data.chunks(30_000) {
                framed.extend(zstd::bulk::compress(piece, 3).unwrap());
            }
            framed.extend(&frames.tail);
            std::fs::write(&b, &framed).unwrap();
            assert_eq!(
                zstd::decode_all(&framed[..]).unwrap(),
                std::fs::read(&a).unwrap()
            );
            let (meta, name, got, _) = read_back(&b);
            assert_eq!(name, item.hash.to_hex());
            assert_eq!(hash_bytes(&meta, &got), item.hash);
        }
    }

    #[test]
    fn symlink_targets_kept_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("../{}/x", "d".repeat(150));
        for target in ["a//b/./c", long.as_str()] {
            let link = dir.path().join("l");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link).unwrap();
            let item = tree_item(&link);
            let dest = dir.path().join("l.tar");
            write(&item, &dest, Compression::Zstd, 0).unwrap();
            let (_, name, _, got) = read_back(&dest);
            assert_eq!(name, item.hash.to_hex());
            assert_eq!(got, target.as_bytes());
        }
    }

    #[test]
    fn changed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, b"hello\n").unwrap();
        let item = tree_item(&src);
        std::fs::write(&src, b"HELLO\n").unwrap();
        let dest = dir.path().join("f.tar");
        let e = format!(
            "{:#}",
            write(&item, &dest, Compression::Gzip, 0).unwrap_err()
        );
        assert!(e.contains("did the tree change"), "{e}");
        assert!(!dest.exists());
    }

    #[test]
    fn manifest_tar_reads_back_with_fixed_meta() {
        let tar = manifest_tar("os-core", b"MANIFEST\t30\n", 99).unwrap();
        let mf = read_manifest_tar(&tar[..], "os-core", "t", 1 << 20).unwrap();
        assert_eq!(mf.meta, manifest_meta(b"MANIFEST\t30\n"));
        assert_eq!(tar, manifest_tar("os-core", b"MANIFEST\t30\n", 99).unwrap());
    }
}
