//! The chunk index of a core image and the chunk store it points into (docs/chunks.md):
//! the image is cut by FastCDC ([`chainup::chunks`] holds the sizes and the format), each
//! chunk is stored once, zstd-compressed, under `W/chunks/` (shared by every version, so a
//! chunk an earlier release stored is not written again), and the index is written to a
//! file that the publisher then publishes as the image payload `/core.index`.

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{bail, Context, Result};
use chainup::chunks::{self, chunk_id, Chunk, Delta, Index};
use chainup::direct_io::{DirectWriter, BLOCK_ALIGN};
use chainup::hash::{hash_bytes, Hash, Hasher, Meta};
use chainup::limits;
use chainup::manifest::{Entry, ImageKind, Manifest};
use fastcdc::v2020::StreamCDC;
use rayon::prelude::*;

use crate::fullfile::{Compression, HashingReader, ImageFrames};
use crate::tree::{self, Item, Source};
use crate::webroot::{write_atomic, write_atomic_with, Layout};

/// zstd level of a chunk: as the fullfiles' (fullfile.rs), most of the ratio at speed.
const ZSTD_LEVEL: i32 = 9;
/// Chunks cut before they are hashed and stored together, in parallel: 64 of at most
/// 256 KiB are 16 MiB, and a few batches are in flight (`index_reader`), whatever the
/// image size.
const BATCH: usize = 64;
/// Threads storing chunks per core: a thread waits while its chunk goes to the disk
/// (direct I/O), and another one compresses meanwhile.
const STORERS_PER_CORE: usize = 2;

/// What chunking one image did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub chunks: usize,
    /// Chunks written to the store now (the others were there already).
    pub stored: usize,
    /// Bytes those took in the store (compressed).
    pub stored_bytes: u64,
}

/// Where the fullfile of a core image goes while it is chunked, when the release needs it.
#[derive(Debug, Clone, Copy)]
pub struct Fullfiles<'a> {
    pub layout: &'a Layout,
    pub version: u32,
    pub compression: Compression,
    pub mtime: u64,
}

/// The `/core.index` payload for each core image among `images`: the image chunked into
/// the store of `webroot`, its index written into `scratch`. One line per image for the
/// report goes to `notes`.
/// `old` is the bundle's manifest in the previous release: when it has a `/core.index`,
/// the delta from that index to the new one is stored too (docs/chunks.md).
/// When the release publishes the image's fullfile (the image is new in it), the fullfile
/// is written now, from the same read of the image and the same compressed chunks
/// (compressing is most of publishing's time); its hash and size go to `written`.
pub fn index_items(
    webroot: &Path,
    images: &[Item],
    scratch: &Path,
    old: Option<&Manifest>,
    fullfiles: Fullfiles<'_>,
    notes: &mut Vec<String>,
    written: &mut Vec<(Hash, u64)>,
) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    for item in images.iter().filter(|i| i.image == Some(ImageKind::Core)) {
        let Source::Image(path) = &item.source else {
            continue;
        };
        let index_path = scratch.join(format!("{}.index", item.hash));
        let fullfile = needs_fullfile(item, old, &fullfiles);
        let (stats, index, bytes) = publish_image(webroot, item, &index_path, fullfile)?;
        if let Some(bytes) = bytes {
            written.push((item.hash, bytes));
        }
        notes.push(format!(
            "core image {}: {} chunks, {} new in the chunk store ({} bytes)",
            path.display(),
            stats.chunks,
            stats.stored,
            stats.stored_bytes
        ));
        let index_item = tree::image_item(ImageKind::CoreIndex, &index_path)?;
        let previous = old.and_then(|m| {
            m.entries
                .iter()
                .find(|e| e.image() == Some(ImageKind::CoreIndex))
        });
        if let Some(prev) = previous.filter(|p| p.hash != index_item.hash) {
            match read_index(&Layout::new(webroot), prev)? {
                Some(base) => {
                    let bytes = write_delta(webroot, prev.hash, index_item.hash, &base, &index)?;
                    notes.push(format!(
                        "chunk index delta from version {}: {bytes} bytes",
                        prev.version
                    ));
                }
                None => notes.push(format!(
                    "no chunk index delta: the index of version {} is not in the webroot",
                    prev.version
                )),
            }
        }
        out.push(index_item);
    }
    Ok(out)
}

/// The fullfile `item` needs in this release, with its settings: none when the previous
/// manifest has the same image (its line keeps the old version, as diff.rs decides), the
/// file is there already, or fullfiles are not zstd (the chunks' frames are zstd; the
/// publisher then writes the fullfile on its own, publish.rs).
fn needs_fullfile<'a>(
    item: &Item,
    old: Option<&Manifest>,
    f: &Fullfiles<'a>,
) -> Option<(PathBuf, Fullfiles<'a>)> {
    let kept = old.is_some_and(|m| {
        m.entries.iter().any(|e| {
            e.path == item.path
                && e.modifier == b'.'
                && e.is_present()
                && e.hash == item.hash
                && e.etype == item.etype
                && e.image() == item.image
        })
    });
    let dest = f.layout.fullfile(f.version, &item.hash);
    let zstd = f.compression == Compression::Zstd;
    (zstd && !kept && !dest.exists()).then_some((dest, *f))
}

/// Chunks the image `item` and, when `fullfile` says where, writes its fullfile from the
/// same read and the same compressed chunks ([`ImageFrames`]), re-hashing the image as it
/// is read: if it changed since it was scanned, publishing fails instead of serving a
/// fullfile that does not match its name. Returns the chunking's stats, the index and the
/// fullfile's size.
fn publish_image(
    webroot: &Path,
    item: &Item,
    index_out: &Path,
    fullfile: Option<(PathBuf, Fullfiles<'_>)>,
) -> Result<(Stats, Index, Option<u64>)> {
    let Source::Image(path) = &item.source else {
        bail!("{} is not an image", item.path);
    };
    let Some((dest, f)) = fullfile else {
        let (stats, index) = index_image(webroot, path, item.hash, index_out)?;
        return Ok((stats, index, None));
    };
    let frames = ImageFrames::new(item, f.mtime)?;
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut chunked = None;
    let bytes = write_atomic_with(&dest, |out| {
        out.write_all(&frames.head)?;
        let mut hasher = Hasher::new(&item.meta, &[]);
        let mut image = HashingReader::new(file, &mut hasher);
        let done = index_reader(webroot, &mut image, item.hash, index_out, Some(out))
            .with_context(|| format!("chunking {}", path.display()))?;
        if image.count() != item.meta.size {
            bail!("{} changed size while it was published", path.display());
        }
        let got = hasher.finish();
        if got != item.hash {
            bail!(
                "{}: the image hashes to {got} now, but {} when it was scanned; did it change?",
                path.display(),
                item.hash
            );
        }
        out.write_all(&frames.tail)?;
        chunked = Some(done);
        Ok(())
    })
    .with_context(|| format!("fullfile of {}", item.path))?;
    let (stats, index) = chunked.expect("set when the fullfile was written");
    Ok((stats, index, Some(bytes)))
}

/// The index an earlier manifest line names, read back from its fullfile and checked
/// against the line; `None` when the fullfile is missing or does not match.
fn read_index(layout: &Layout, e: &Entry) -> Result<Option<Index>> {
    let path = layout.fullfile(e.version, &e.hash);
    let ctx = || format!("reading {}", path.display());
    let Ok(file) = File::open(&path) else {
        return Ok(None);
    };
    let plain = chainup::archive::decompress(file).with_context(ctx)?;
    let mut tar = tar::Archive::new(plain);
    let mut entry = tar
        .entries()
        .with_context(ctx)?
        .next()
        .with_context(ctx)?
        .with_context(ctx)?;
    let mut text = Vec::new();
    (&mut entry)
        .take(limits::CHUNK_INDEX + 1)
        .read_to_end(&mut text)
        .with_context(ctx)?;
    let meta = Meta::file(0o644, 0, 0, text.len() as u64);
    if hash_bytes(&meta, &text) != e.hash {
        return Ok(None);
    }
    Ok(Index::parse(&text).ok())
}

/// Stores the delta from `base` (payload hash `from`) to `index` (hash `to`) under
/// `webroot`, durably; returns its size.
fn write_delta(webroot: &Path, from: Hash, to: Hash, base: &Index, index: &Index) -> Result<u64> {
    let text = Delta::diff(base, index).serialize();
    // Small and written once per release: the strongest level costs little here.
    let packed = zstd::bulk::compress(text.as_bytes(), 19).context("compressing a delta")?;
    let path = webroot.join(chunks::delta_path(&from, &to));
    write_atomic(&path, &packed)?;
    sync_store(webroot)?;
    Ok(packed.len() as u64)
}

/// Cuts `image` (whose swupd hash is `hash`) into chunks, stores the new ones under
/// `webroot`, and writes the index text to `index_out`.
pub fn index_image(
    webroot: &Path,
    image: &Path,
    hash: Hash,
    index_out: &Path,
) -> Result<(Stats, Index)> {
    let ctx = || format!("chunking {}", image.display());
    let file = File::open(image).with_context(ctx)?;
    let done = index_reader(webroot, file, hash, index_out, None).with_context(ctx)?;
    if done.1.size != std::fs::metadata(image).with_context(ctx)?.len() {
        bail!("{} changed size while it was chunked", image.display());
    }
    Ok(done)
}

/// [`index_image`] over the image's bytes as a reader; with `frames`, each chunk's
/// compressed frame is also written there, in order (the image's fullfile). A pipeline:
/// this thread cuts, a pool stores the batch cut before (hash, compress, write), another
/// thread writes the batch stored before that to `frames`.
fn index_reader<R: Read>(
    webroot: &Path,
    image: R,
    hash: Hash,
    index_out: &Path,
    frames: Option<&mut (dyn Write + Send)>,
) -> Result<(Stats, Index)> {
    // One batch waiting between steps: at most three of chunks (cutting, waiting, being
    // stored) and three of frames (being stored, waiting, being written).
    let (tx, batches) = sync_channel::<Vec<Vec<u8>>>(1);
    let (frames_tx, frames_rx) = sync_channel::<Vec<Vec<u8>>>(1);
    let frames_tx = frames.is_some().then_some(frames_tx);
    let storers = rayon::ThreadPoolBuilder::new()
        .num_threads(STORERS_PER_CORE * rayon::current_num_threads())
        .thread_name(|i| format!("chunk-store-{i}"))
        .build()
        .context("starting the chunk store's threads")?;
    let (cut, stored, written) = std::thread::scope(|s| {
        let writer = frames.map(|out| s.spawn(move || write_frames(out, frames_rx)));
        let storer =
            s.spawn(move || storers.install(|| store_batches(webroot, hash, batches, frames_tx)));
        let cut = cut_batches(image, &tx);
        drop(tx);
        let stored = storer
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the chunk store thread panicked")));
        let written = writer.map_or(Ok(()), |w| {
            w.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the fullfile writer panicked")))
        });
        (cut, stored, written)
    });
    // Each step's own error first: a step that fails stops the one before it, whose error
    // only says so.
    written?;
    let (stats, index) = stored?;
    cut?;
    sync_store(webroot)?;
    std::fs::write(index_out, index.serialize())
        .with_context(|| format!("writing {}", index_out.display()))?;
    Ok((stats, index))
}

/// Writes the frames of each batch to `out`, in order, until the storers are done.
fn write_frames(out: &mut (dyn Write + Send), batches: Receiver<Vec<Vec<u8>>>) -> Result<()> {
    for batch in batches {
        for frame in batch {
            out.write_all(&frame)
                .context("writing the image's fullfile")?;
        }
    }
    Ok(())
}

/// Cuts `image` by FastCDC and sends the chunks in batches of [`BATCH`].
fn cut_batches<R: Read>(image: R, tx: &SyncSender<Vec<Vec<u8>>>) -> Result<()> {
    let cdc = StreamCDC::new(image, chunks::MIN, chunks::AVG, chunks::MAX);
    let mut batch = Vec::with_capacity(BATCH);
    for c in cdc {
        batch.push(c.context("cutting chunks")?.data);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.send(full).is_err() {
                bail!("the chunk store stopped");
            }
        }
    }
    if !batch.is_empty() && tx.send(batch).is_err() {
        bail!("the chunk store stopped");
    }
    Ok(())
}

/// Stores the batches as they come, in parallel within each, and builds the index; with
/// `frames`, sends each batch's frames there, in order.
fn store_batches(
    webroot: &Path,
    hash: Hash,
    batches: Receiver<Vec<Vec<u8>>>,
    frames: Option<SyncSender<Vec<Vec<u8>>>>,
) -> Result<(Stats, Index)> {
    let mut index = Index {
        image: hash,
        size: 0,
        chunks: Vec::new(),
    };
    let mut stats = Stats::default();
    let want_frames = frames.is_some();
    for batch in batches {
        let stored = batch
            .par_iter()
            .map(|data| store(webroot, data, want_frames))
            .collect::<Result<Vec<_>>>()?;
        let mut batch_frames = Vec::with_capacity(stored.len());
        for (data, s) in batch.iter().zip(stored) {
            index.chunks.push(Chunk {
                id: s.id,
                len: data.len() as u32,
            });
            index.size += data.len() as u64;
            stats.chunks += 1;
            if let Some(bytes) = s.written {
                stats.stored += 1;
                stats.stored_bytes += bytes;
            }
            batch_frames.extend(s.frame);
        }
        if let Some(tx) = &frames {
            if tx.send(batch_frames).is_err() {
                bail!("the fullfile writer stopped");
            }
        }
    }
    Ok((stats, index))
}

/// One chunk as [`store`] left it.
struct Stored {
    id: Hash,
    /// The bytes written to the store, if the chunk was new to it.
    written: Option<u64>,
    /// Its compressed frame, when asked for.
    frame: Option<Vec<u8>>,
}

/// Stores one chunk unless the store has it; with `want_frame`, also returns its frame:
/// the one just written, or the store's own once it decompressed to `data` (a store copy
/// that does not is written again).
fn store(webroot: &Path, data: &[u8], want_frame: bool) -> Result<Stored> {
    let id = chunk_id(data);
    let path = webroot.join(chunks::store_path(&id));
    if path.exists() {
        if !want_frame {
            return Ok(Stored {
                id,
                written: None,
                frame: None,
            });
        }
        if let Some(frame) = stored_frame(&path, data) {
            return Ok(Stored {
                id,
                written: None,
                frame: Some(frame),
            });
        }
    }
    let packed = compress(data).context("compressing a chunk")?;
    let dir = path.parent().expect("store paths have a parent");
    let ctx = || format!("writing {}", path.display());
    std::fs::create_dir_all(dir).with_context(ctx)?;
    // Not synced one by one (tens of thousands per image): the whole filesystem is synced
    // once at the end, before the manifests that name the chunks are written.
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(ctx)?;
    // Its whole blocks straight to the disk (there are gigabytes of chunks in a new image),
    // the tail through the page cache.
    let mut w = DirectWriter::new(tmp.as_file(), packed.len() / BLOCK_ALIGN * BLOCK_ALIGN);
    w.write_all(&packed).with_context(ctx)?;
    w.finish().with_context(ctx)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(ctx)?;
    tmp.persist(&path).map_err(|e| e.error).with_context(ctx)?;
    let written = Some(packed.len() as u64);
    let frame = want_frame.then_some(packed);
    Ok(Stored { id, written, frame })
}

thread_local! {
    /// Each pool thread's zstd context, kept from chunk to chunk: a fresh one per chunk
    /// costs its allocation and page faults tens of thousands of times per image.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

/// `data` as one zstd frame at [`ZSTD_LEVEL`]; the same bytes a fresh context makes.
fn compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        cell.as_mut().expect("set above").compress(data)
    })
}

/// The store's frame at `path` if it is one frame of exactly `data`.
fn stored_frame(path: &Path, data: &[u8]) -> Option<Vec<u8>> {
    let mut frame = Vec::new();
    let bound = zstd::zstd_safe::compress_bound(data.len()) as u64;
    File::open(path)
        .ok()?
        .take(bound + 1)
        .read_to_end(&mut frame)
        .ok()?;
    let one_frame = zstd::zstd_safe::find_frame_compressed_size(&frame).ok() == Some(frame.len());
    let plain = zstd::bulk::decompress(&frame, data.len()).ok()?;
    (one_frame && plain == data).then_some(frame)
}

/// Makes every chunk written so far durable: one syncfs of the store's filesystem.
fn sync_store(webroot: &Path) -> Result<()> {
    let dir = webroot.join("chunks");
    let Ok(d) = File::open(&dir) else {
        return Ok(());
    };
    // SAFETY: a plain system call on a descriptor owned here.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("syncing {}", dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_context_compresses_as_a_fresh_one() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 97) as u8).collect();
        for piece in [&data[..], &data[..5000], &data[1000..150_000], &data[..]] {
            let fresh = zstd::bulk::compress(piece, ZSTD_LEVEL).unwrap();
            assert_eq!(compress(piece).unwrap(), fresh);
        }
    }

    #[test]
    fn an_insertion_keeps_the_other_chunks_and_the_store_keeps_one_copy() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web");
        let mut x = 7u64;
        let old: Vec<u8> = (0..3_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut new = old.clone();
        new.splice(1_000_000..1_000_000, b"inserted bytes".iter().copied());
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, &old).unwrap();
        std::fs::write(&b, &new).unwrap();
        let (sa, _) = index_image(&web, &a, Hash([1; 32]), &dir.path().join("a.idx")).unwrap();
        let (sb, _) = index_image(&web, &b, Hash([2; 32]), &dir.path().join("b.idx")).unwrap();
        assert_eq!(sa.stored, sa.chunks);
        assert!(sb.stored <= 3, "{sb:?}");
        let idx = Index::parse(&std::fs::read(dir.path().join("b.idx")).unwrap()).unwrap();
        assert_eq!(idx.size, new.len() as u64);
        let mut at = 0usize;
        for c in &idx.chunks {
            let packed = std::fs::read(web.join(chunks::store_path(&c.id))).unwrap();
            let data = zstd::decode_all(&packed[..]).unwrap();
            assert_eq!(data, new[at..at + c.len as usize]);
            at += c.len as usize;
        }
    }
}
