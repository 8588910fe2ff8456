//! Step 3 for image payloads (`/core`, `/efiboot`): the fullfile's single tar entry is
//! streamed through the hash into a sink (a slot, a staging file) without ever being held
//! whole, and only a matching hash yields a [`VerifiedImage`].
//!
//! The header is read first ([`Chain::open_image`]), so the installer learns the size and
//! can refuse an image too large for its slot before anything is touched.
//!
//! A thread works ahead of the caller: it downloads, decompresses and hashes, so the
//! caller's thread only writes. Its hash is compared here, in [`ImageStream::write_to`],
//! and nowhere else. A copy of the image (the slot, read back) is checked with a
//! [`CopyCheck`], which can hash the copy while it is being written but passes only
//! together with the [`VerifiedImage`] of the same hash.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::{remove_any, Chain};
use crate::archive::{self, Bounded, TAR_SLACK};
use crate::error::Subject;
use crate::hash::{Hash, Hasher, Meta};
use crate::manifest::Entry;
use crate::source::download_error;
use crate::{Error, Result};

/// Bytes moved per read and write: large, so a block device sees few, big requests.
pub const IMAGE_BUF: usize = 4 << 20;
/// Where the bytes of a [`Block`] start in memory, ready for direct I/O.
pub use crate::direct_io::BLOCK_ALIGN;
const BLOCK: usize = 512;

/// The metadata an image payload is hashed with (docs/formats.md): a regular file, 0644,
/// root:root, whatever the tar header says about mode and owner.
pub(super) fn image_meta(size: u64) -> Meta {
    Meta::file(0o644, 0, 0, size)
}

/// Blocks of the image queued between the download thread and the writer, at most.
pub(super) const IN_FLIGHT: usize = 2;
/// Bytes decompressed and hashed at a time: small enough to stay in the CPU cache.
const HASH_PIECE: usize = 128 << 10;

/// A buffer of up to [`IMAGE_BUF`] bytes whose contents start at a [`BLOCK_ALIGN`]
/// boundary, so it can go to a slot opened for direct I/O without a copy.
pub struct Block {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Block {
    /// An empty block; its memory is allocated once and reused.
    pub fn new() -> Block {
        let buf = vec![0u8; IMAGE_BUF + BLOCK_ALIGN];
        let start = buf.as_ptr().align_offset(BLOCK_ALIGN);
        Block { buf, start, len: 0 }
    }

    /// The first `len` bytes (at most [`IMAGE_BUF`]), to fill.
    pub fn fill(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= IMAGE_BUF, "a block holds at most IMAGE_BUF bytes");
        self.len = len;
        &mut self.buf[self.start..self.start + len]
    }

    /// The bytes filled last.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl Default for Block {
    fn default() -> Block {
        Block::new()
    }
}

/// What the download thread hands over.
pub(super) enum Msg {
    /// The tar header was read: the image is this many bytes.
    Header(u64),
    /// The next bytes of the image.
    Block(Block),
    /// All bytes were sent and only tar padding followed; the hash of all of them, or
    /// `None` from a producer that verified every piece (chunks) but not the whole: then
    /// only the hash of the copy read back can prove the image.
    End(Option<Hash>),
}

/// An image payload's fullfile, opened: its tar header read and checked, its bytes not yet.
/// A thread downloads and decompresses ahead while the caller hashes and writes.
pub struct ImageStream {
    hash: Hash,
    path: String,
    url: String,
    size: u64,
    blocks: Receiver<Result<Msg>>,
    spare: SyncSender<Block>,
}

/// The hash of a copy of an image, taken as the copy is read back (possibly while it is
/// still being written); it passes only with the [`VerifiedImage`] of the same image.
pub struct CopyCheck {
    hash: Hash,
    size: u64,
    seen: u64,
    hasher: Hasher,
}

/// An image payload whose bytes hashed to its manifest line as they went into a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedImage {
    hash: Hash,
    size: u64,
}

/// A verified image payload in the staging area (the EFI binary, which is small).
#[derive(Debug, Clone)]
pub struct StagedImage {
    image: VerifiedImage,
    path: PathBuf,
}

impl Chain {
    /// Opens the fullfile of an image payload and reads its tar header (which gives the
    /// size); no payload byte is read yet. `bound` caps the download and the image.
    pub fn open_image(&self, entry: &Entry, bound: u64) -> Result<ImageStream> {
        let rel = format!("{}/files/{}.tar", entry.version, entry.hash);
        let url = self.content.url(&rel);
        let bad = |reason: String| Error::Archive {
            what: url.clone(),
            reason,
        };
        if entry.image().is_none() {
            return Err(bad(format!("{} is not an image payload", entry.path)));
        }
        let download = self.content.open(&rel, archive::compressed_bound(bound))?;
        let (tx, blocks) = sync_channel(IN_FLIGHT);
        // Every block in flight, plus the one each side holds, can come back.
        let (spare, spare_rx) = sync_channel(IN_FLIGHT + 2);
        let (hex, thread_url) = (entry.hash.to_hex(), url.clone());
        std::thread::Builder::new()
            .name("image-download".into())
            .spawn(move || {
                let bad = |reason: String| Error::Archive {
                    what: thread_url.clone(),
                    reason,
                };
                // A send fails only when the writer gave up; then there is nobody to tell.
                if let Err(e) = produce(download, &hex, bound, &thread_url, &tx, &spare_rx, bad) {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| bad(format!("cannot start the download thread: {e}")))?;
        let size = match blocks.recv() {
            Ok(Ok(Msg::Header(size))) => size,
            Ok(Err(e)) => return Err(e),
            _ => return Err(bad("the download thread stopped".into())),
        };
        Ok(ImageStream {
            hash: entry.hash,
            path: entry.path.clone(),
            url,
            size,
            blocks,
            spare,
        })
    }

    /// Streams an image payload into `sink` (named `target` in errors) and returns the
    /// proof that the bytes written are the ones the manifest lists.
    pub fn stream_image(
        &self,
        entry: &Entry,
        sink: &mut dyn Write,
        target: &Path,
        bound: u64,
    ) -> Result<VerifiedImage> {
        self.open_image(entry, bound)?.write_to(sink, target)
    }

    /// Streams a small image payload (the EFI binary) into `dir` and verifies it; nothing
    /// stays there unless the hash matched.
    pub fn stage_image(&self, entry: &Entry, dir: &Path, bound: u64) -> Result<StagedImage> {
        let hex = entry.hash.to_hex();
        let final_path = dir.join(format!("image.{hex}"));
        let tmp = dir.join(format!(".partial.image.{hex}.{}", std::process::id()));
        remove_any(&tmp)?;
        let stream = self.open_image(entry, bound)?;
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        let image = match stream.write_to(&mut out, &tmp) {
            Ok(image) => image,
            Err(e) => {
                drop(out);
                let _ = remove_any(&tmp);
                return Err(e);
            }
        };
        drop(out);
        std::fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
        Ok(StagedImage {
            image,
            path: final_path,
        })
    }
}

/// The download thread: decompresses, checks the tar header, then sends the image in
/// blocks (reusing the buffers the writer hands back) and checks the padding after it.
fn produce(
    download: crate::source::Download,
    hex: &str,
    bound: u64,
    url: &str,
    tx: &SyncSender<Result<Msg>>,
    spare: &Receiver<Block>,
    bad: impl Fn(String) -> Error,
) -> Result<()> {
    let read_err = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => bad("the archive ends before the image does".into()),
        _ => download_error(url, e),
    };
    let plain = archive::decompress(download).map_err(|e| download_error(url, e))?;
    let mut body = Bounded::new(plain, bound + TAR_SLACK, url);
    let mut block = [0u8; BLOCK];
    body.read_exact(&mut block).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => bad("the archive is empty".into()),
        _ => download_error(url, e),
    })?;
    let size = check_header(tar::Header::from_byte_slice(&block), hex).map_err(&bad)?;
    if size > bound {
        return Err(bad(format!(
            "the image is {size} bytes, over the bound of {bound}"
        )));
    }
    if tx.send(Ok(Msg::Header(size))).is_err() {
        return Ok(());
    }
    let mut hasher = Hasher::new(&image_meta(size), &[]);
    let mut left = size;
    while left > 0 {
        let n = IMAGE_BUF.min(usize::try_from(left).unwrap_or(usize::MAX));
        let mut chunk = spare.try_recv().unwrap_or_default();
        // Hashed piece by piece as they are decompressed, while they are in the cache:
        // hashing a cold 4 MiB block costs a third more.
        for piece in chunk.fill(n).chunks_mut(HASH_PIECE) {
            body.read_exact(piece).map_err(read_err)?;
            hasher.update(piece);
        }
        if tx.send(Ok(Msg::Block(chunk))).is_err() {
            return Ok(());
        }
        left -= n as u64;
    }
    // Padding and the end-of-archive blocks are zeros; anything else is a second entry.
    let mut rest = Bounded::new(&mut body, TAR_SLACK, url);
    loop {
        let n = match rest.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(download_error(url, e)),
        };
        if block[..n].iter().any(|&b| b != 0) {
            return Err(bad("holds more than the image entry".into()));
        }
    }
    let _ = tx.send(Ok(Msg::End(Some(hasher.finish()))));
    Ok(())
}

/// Checks the one tar header of an image fullfile; returns the payload size.
fn check_header(h: &tar::Header, hex: &str) -> Result<u64, String> {
    let bytes = h.as_bytes();
    // The checksum counts its own field as spaces.
    let sum: u32 = bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    if h.cksum().ok() != Some(sum) {
        return Err("the tar header checksum is wrong".into());
    }
    if !h.entry_type().is_file() {
        return Err(format!(
            "holds a {:?} entry where an image (a regular file) is expected",
            h.entry_type()
        ));
    }
    let name = h.path_bytes();
    if name.as_ref() != hex.as_bytes() {
        return Err(format!(
            "holds {:?} instead of {hex}",
            String::from_utf8_lossy(&name)
        ));
    }
    h.size()
        .map_err(|e| format!("bad size in the tar header: {e}"))
}

impl ImageStream {
    /// A stream whose blocks another producer sends (the chunk assembler of
    /// [`super::chunks`]): `blocks` carries [`Msg::Block`]s and the final [`Msg::End`] with
    /// the hash of all of them; `spare` takes the writer's used blocks back.
    pub(super) fn assembled(
        entry: &Entry,
        url: String,
        size: u64,
        blocks: Receiver<Result<Msg>>,
        spare: SyncSender<Block>,
    ) -> ImageStream {
        ImageStream {
            hash: entry.hash,
            path: entry.path.clone(),
            url,
            size,
            blocks,
            spare,
        }
    }

    /// The payload size the tar header announces.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The URL of the fullfile.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A check for a copy of this image, to feed while the copy is read back.
    pub fn copy_check(&self) -> CopyCheck {
        CopyCheck {
            hash: self.hash,
            size: self.size,
            seen: 0,
            hasher: Hasher::new(&image_meta(self.size), &[]),
        }
    }

    /// Copies the payload into `sink` in large blocks (each starting at a [`BLOCK_ALIGN`]
    /// boundary in memory), which the download thread hashed; the result is verified only
    /// if the hash matched and nothing but tar padding followed. A sink that must not hold
    /// unverified bytes must not be bootable while this runs.
    pub fn write_to(self, sink: &mut dyn Write, target: &Path) -> Result<VerifiedImage> {
        let url = self.url.clone();
        self.write_unproven(sink, target)?
            .ok_or_else(|| Error::Archive {
                what: url,
                reason: "an image assembled from chunks is proven only by reading it back".into(),
            })
    }

    /// As [`ImageStream::write_to`], for a sink that is read back into this stream's
    /// [`CopyCheck`]: `Some` when the stream itself hashed right; `None` for an image
    /// assembled from verified chunks, whose whole hash the copy check alone decides
    /// ([`CopyCheck::prove`]).
    pub fn write_unproven(
        self,
        sink: &mut dyn Write,
        target: &Path,
    ) -> Result<Option<VerifiedImage>> {
        let url = self.url.clone();
        let stopped = || Error::Archive {
            what: url.clone(),
            reason: "the download thread stopped".into(),
        };
        let mut left = self.size;
        let actual = loop {
            match self.blocks.recv().map_err(|_| stopped())?? {
                Msg::Block(block) if block.bytes().len() as u64 <= left => {
                    sink.write_all(block.bytes())
                        .map_err(|e| Error::io(target, e))?;
                    left -= block.bytes().len() as u64;
                    let _ = self.spare.try_send(block);
                }
                Msg::End(actual) if left == 0 => break actual,
                _ => return Err(stopped()),
            }
        };
        sink.flush().map_err(|e| Error::io(target, e))?;
        let Some(actual) = actual else {
            return Ok(None);
        };
        if actual != self.hash {
            return Err(Error::HashMismatch {
                subject: Subject::Image,
                what: format!("{} (from {url})", self.path),
                expected: self.hash,
                actual,
            });
        }
        Ok(Some(VerifiedImage {
            hash: self.hash,
            size: self.size,
        }))
    }
}

impl VerifiedImage {
    /// The verified hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The image size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads a copy back (a slot after fsync) and checks that its first `size` bytes hash
    /// as the image did; `path` names the copy in errors.
    pub fn check_copy(&self, copy: &mut dyn Read, path: &Path) -> Result<()> {
        let mut check = CopyCheck {
            hash: self.hash,
            size: self.size,
            seen: 0,
            hasher: Hasher::new(&image_meta(self.size), &[]),
        };
        let mut buf = vec![0u8; IMAGE_BUF.min(self.size.max(1) as usize)];
        while check.left() > 0 {
            let n = buf
                .len()
                .min(usize::try_from(check.left()).unwrap_or(usize::MAX));
            copy.read_exact(&mut buf[..n])
                .map_err(|e| Error::io(path, e))?;
            check.update(&buf[..n]);
        }
        check.finish(self, path)
    }
}

impl CopyCheck {
    /// Bytes of the image not read back yet.
    pub fn left(&self) -> u64 {
        self.size.saturating_sub(self.seen)
    }

    /// Hashes the next bytes read back; bytes past the image size count, and fail.
    pub fn update(&mut self, bytes: &[u8]) {
        self.seen += bytes.len() as u64;
        self.hasher.update(bytes);
    }

    /// The proof for an image whose stream carried no whole hash (chunks): exactly the
    /// image's bytes were read back from the copy and they hash to the manifest line.
    pub fn prove(self, path: &Path) -> Result<VerifiedImage> {
        let image = VerifiedImage {
            hash: self.hash,
            size: self.size,
        };
        self.finish(&image, path)?;
        Ok(image)
    }

    /// Passes if exactly the image's bytes were read back and they hash as `image`, the
    /// proof that the written bytes were the manifest's; `path` names the copy in errors.
    pub fn finish(self, image: &VerifiedImage, path: &Path) -> Result<()> {
        let what = format!("{} read back after writing", path.display());
        if self.hash != image.hash || self.size != image.size {
            return Err(Error::Slot(format!(
                "{what}: checked against another image ({} instead of {})",
                self.hash.to_hex(),
                image.hash.to_hex()
            )));
        }
        if self.seen != self.size {
            return Err(Error::io(
                path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} bytes read back, {} written", self.seen, self.size),
                ),
            ));
        }
        let actual = self.hasher.finish();
        if actual != image.hash {
            return Err(Error::HashMismatch {
                subject: Subject::Image,
                what,
                expected: image.hash,
                actual,
            });
        }
        Ok(())
    }
}

impl StagedImage {
    /// The verified image.
    pub fn image(&self) -> &VerifiedImage {
        &self.image
    }

    /// Where it waits in the staging area.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chain::Signatures;
    use crate::hash::hash_bytes;
    use crate::manifest::{EntryType, Misc, Status};
    use crate::source::{Source, SourceConfig};

    /// A file:// webroot holding one image fullfile (zstd tar) named by `name`.
    pub(crate) fn served(dir: &Path, name: &str, entries: &[(&str, &[u8])]) -> Chain {
        let files = dir.join("20/files");
        std::fs::create_dir_all(&files).unwrap();
        let mut t = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            t.append_data(&mut h, path, *data).unwrap();
        }
        let tar = zstd::encode_all(&t.into_inner().unwrap()[..], 1).unwrap();
        std::fs::write(files.join(format!("{name}.tar")), tar).unwrap();
        let url = format!("file://{}", dir.display());
        let src = Source::new(&url, &SourceConfig::default()).unwrap();
        Chain::new(src.clone(), src, Signatures::Skip, 30)
    }

    pub(crate) fn entry(data: &[u8]) -> Entry {
        Entry {
            etype: EntryType::File,
            status: Status::Present,
            modifier: b'.',
            misc: Misc::Image,
            hash: hash_bytes(&image_meta(data.len() as u64), data),
            version: 20,
            path: "/core".into(),
        }
    }

    #[test]
    fn streams_verifies_and_checks_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(IMAGE_BUF + 1000)).map(|i| (i % 251) as u8).collect();
        let e = entry(&data);
        let hex = e.hash.to_hex();
        let chain = served(dir.path(), &hex, &[(&hex, &data)]);
        let stream = chain.open_image(&e, 1 << 30).unwrap();
        assert_eq!(stream.size(), data.len() as u64);
        let mut sink = Vec::new();
        let image = stream.write_to(&mut sink, Path::new("sink")).unwrap();
        assert_eq!(sink, data);
        image.check_copy(&mut &data[..], Path::new("copy")).unwrap();
        let mut bad = data.clone();
        bad[IMAGE_BUF] ^= 1;
        let err = image
            .check_copy(&mut &bad[..], Path::new("copy"))
            .unwrap_err();
        assert_eq!(err.exit_code(), 38, "{err}");
        assert!(image
            .check_copy(&mut &data[..10], Path::new("copy"))
            .is_err());
    }

    #[test]
    fn refuses_wrong_bytes_names_extra_entries_and_oversize() {
        let data = b"core image bytes".to_vec();
        let e = entry(&data);
        let hex = e.hash.to_hex();
        let run = |entries: &[(&str, &[u8])], bound: u64| {
            let dir = tempfile::tempdir().unwrap();
            let chain = served(dir.path(), &hex, entries);
            chain.stream_image(&e, &mut Vec::new(), Path::new("sink"), bound)
        };
        let err = run(&[(&hex, b"core image bytez")], 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                Error::HashMismatch {
                    subject: Subject::Image,
                    ..
                }
            ),
            "{err}"
        );
        let err = run(&[("other", &data)], 1 << 20).unwrap_err().to_string();
        assert!(err.contains("instead of"), "{err}");
        let err = run(&[(&hex, &data), ("extra", b"x")], 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the image"), "{err}");
        let err = run(&[(&hex, &data)], 4).unwrap_err().to_string();
        assert!(err.contains("over the bound"), "{err}");
        run(&[(&hex, &data)], 1 << 20).unwrap();
    }
}
