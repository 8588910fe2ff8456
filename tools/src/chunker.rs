//! The chunk index of a core image and the chunk store it points into (docs/chunks.md):
//! the image is cut by FastCDC ([`chainup::chunks`] holds the sizes and the format), each
//! chunk is stored once, zstd-compressed, under `W/chunks/` (shared by every version, so a
//! chunk an earlier release stored is not written again), and the index is written to a
//! file that the publisher then publishes as the image payload `/core.index`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{bail, Context, Result};
use chainup::chunks::{self, chunk_id, Chunk, Delta, Index};
use chainup::hash::{hash_bytes, Hash, Meta};
use chainup::limits;
use chainup::manifest::{Entry, ImageKind, Manifest};
use fastcdc::v2020::StreamCDC;
use rayon::prelude::*;

use crate::fullfile::{self, Compression};
use crate::tee;
use crate::tree::{self, Item, Source};
use crate::webroot::{write_atomic, Layout};

/// zstd level of a chunk: as the fullfiles' (fullfile.rs), most of the ratio at speed.
const ZSTD_LEVEL: i32 = 9;
/// Chunks cut before they are hashed and stored together, in parallel: 64 of at most
/// 256 KiB bound the memory to 16 MiB whatever the image size.
const BATCH: usize = 64;

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
/// is written now, from the same read of the image and in parallel with the chunking
/// (the two compressions are most of publishing's time); its hash and size go to
/// `written`.
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
/// manifest has the same image (its line keeps the old version, as diff.rs decides) or
/// the file is there already.
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
    (!kept && !dest.exists()).then_some((dest, *f))
}

/// Chunks the image `item` and, when `fullfile` says where, writes its fullfile in
/// parallel, both from one read of the image; returns the chunking's stats, the index and
/// the fullfile's size.
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
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (tee, mut readers) = tee::tee(2);
    let (for_chunks, for_fullfile) = (readers.pop(), readers.pop());
    let (for_chunks, for_fullfile) = (for_chunks.expect("two"), for_fullfile.expect("two"));
    let (read, chunked, packed) = std::thread::scope(|s| {
        let chunker = s.spawn(|| {
            index_reader(webroot, for_chunks, item.hash, index_out)
                .with_context(|| format!("chunking {}", path.display()))
        });
        let packer =
            s.spawn(|| fullfile::write_image(item, for_fullfile, &dest, f.compression, f.mtime));
        let read = tee.run(file);
        (read, joined(chunker.join()), joined(packer.join()))
    });
    // The consumers' own errors say more than the reader's "a consumer stopped", and the
    // one that failed first more than the one the stopped read failed.
    let (stats, index, bytes) = match (chunked, packed) {
        (Ok((stats, index)), Ok(bytes)) => (stats, index, bytes),
        (Err(c), Err(p)) if tee::is_stop(&c) => return Err(p),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let read = read.with_context(|| format!("reading {}", path.display()))?;
    if read != item.meta.size || index.size != read {
        bail!("{} changed size while it was published", path.display());
    }
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

fn joined<T>(r: std::thread::Result<Result<T>>) -> Result<T> {
    r.unwrap_or_else(|_| Err(anyhow::anyhow!("a publishing thread panicked")))
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
    let done = index_reader(webroot, file, hash, index_out).with_context(ctx)?;
    if done.1.size != std::fs::metadata(image).with_context(ctx)?.len() {
        bail!("{} changed size while it was chunked", image.display());
    }
    Ok(done)
}

/// [`index_image`] over the image's bytes as a reader. Cutting runs on this thread while
/// the batch cut before is hashed, compressed and stored on the rayon pool.
fn index_reader<R: Read>(
    webroot: &Path,
    image: R,
    hash: Hash,
    index_out: &Path,
) -> Result<(Stats, Index)> {
    // One batch stored while the next is cut: at most three batches in memory.
    let (tx, batches) = sync_channel::<Vec<Vec<u8>>>(1);
    let (cut, stored) = std::thread::scope(|s| {
        let storer = s.spawn(move || store_batches(webroot, hash, batches));
        let cut = cut_batches(image, &tx);
        drop(tx);
        let stored = storer
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the chunk store thread panicked")));
        (cut, stored)
    });
    // The store's error first: a failed store stops the cutting, whose error only says so.
    let (stats, index) = stored?;
    cut?;
    sync_store(webroot)?;
    std::fs::write(index_out, index.serialize())
        .with_context(|| format!("writing {}", index_out.display()))?;
    Ok((stats, index))
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

/// Stores the batches as they come, in parallel within each, and builds the index.
fn store_batches(
    webroot: &Path,
    hash: Hash,
    batches: Receiver<Vec<Vec<u8>>>,
) -> Result<(Stats, Index)> {
    let mut index = Index {
        image: hash,
        size: 0,
        chunks: Vec::new(),
    };
    let mut stats = Stats::default();
    for batch in batches {
        let stored = batch
            .par_iter()
            .map(|data| store(webroot, data))
            .collect::<Result<Vec<_>>>()?;
        for (data, (id, written)) in batch.iter().zip(stored) {
            index.chunks.push(Chunk {
                id,
                len: data.len() as u32,
            });
            index.size += data.len() as u64;
            stats.chunks += 1;
            if let Some(bytes) = written {
                stats.stored += 1;
                stats.stored_bytes += bytes;
            }
        }
    }
    Ok((stats, index))
}

/// Stores one chunk unless the store has it; returns its id and the bytes written.
fn store(webroot: &Path, data: &[u8]) -> Result<(Hash, Option<u64>)> {
    let id = chunk_id(data);
    let path = webroot.join(chunks::store_path(&id));
    if path.exists() {
        return Ok((id, None));
    }
    let packed = zstd::bulk::compress(data, ZSTD_LEVEL).context("compressing a chunk")?;
    let dir = path.parent().expect("store paths have a parent");
    let ctx = || format!("writing {}", path.display());
    std::fs::create_dir_all(dir).with_context(ctx)?;
    // Not synced one by one (tens of thousands per image): the whole filesystem is synced
    // once at the end, before the manifests that name the chunks are written.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(ctx)?;
    tmp.write_all(&packed).with_context(ctx)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(ctx)?;
    tmp.persist(&path).map_err(|e| e.error).with_context(ctx)?;
    Ok((id, Some(packed.len() as u64)))
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
