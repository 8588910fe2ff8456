//! Chunked core-image updates (docs/chunks.md): the new image is assembled, in order, from
//! chunks of the running slot (the seed) and chunks downloaded from the store, and handed
//! to the writer as an [`ImageStream`], so the slot is written with the same discipline
//! and the same whole-image hash decides as for a full image.
//!
//! Trust: an index counts only as a [`VerifiedIndex`], whose bytes hashed to a
//! `/core.index` line of a verified manifest. Every chunk, whether read from the running
//! slot, from the slot being written or from the server, is hashed (SHA-256) against the
//! index before it is used; a seed chunk that does not match is downloaded instead. And
//! the slot, read back from the device after writing, is hashed as a whole against the
//! `/core` line ([`crate::chain::CopyCheck::prove`]), as a full image's copy is: a bug in
//! this module can make an update fail, never install a wrong image.
//!
//! Pipeline: the chunks are grouped into pieces: a run of chunks that lie one after the
//! other in the seed too (most of an image that changed little) up to [`RUN_MAX`] bytes,
//! or one chunk from elsewhere. Worker threads take the pieces in image order, at most
//! [`WINDOW`] ahead of the assembler (bounded memory: [`WINDOW`] pieces of at most
//! [`RUN_MAX`] bytes), and fetch each one: a seed run with one read into a recycled
//! buffer, each of its chunks hashed in place; another chunk by a read of the slot being
//! written, or a download and decompression. The assembler thread copies the pieces in
//! order into large aligned blocks and sends the blocks to the writer.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};

use super::image::{Msg, IN_FLIGHT};
use super::{Block, Chain, ImageStream, IMAGE_BUF};
use crate::archive::{self, Bounded};
use crate::chunks::{self, chunk_id, Chunk, Index};
use crate::error::Subject;
use crate::hash::Hash;
use crate::limits;
use crate::manifest::{Entry, ImageKind};
use crate::source::{download_error, Source};
use crate::{Error, Result};

/// Pieces fetched ahead of the assembler, at most: 32 × 512 KiB = 16 MiB at worst, and
/// enough to keep the download workers busy while the writer waits for the disk.
const WINDOW: usize = 32;

/// Bytes of a seed run at most: one read and one hand-over instead of eight of an average
/// chunk (the syscalls, allocations and wake-ups per chunk cost more than the copy).
const RUN_MAX: usize = 512 << 10;

/// Chunk workers at most, whatever `-W` says: each thread gets its own malloc arena, which
/// keeps the chunk buffers it freed, so peak memory grows with the count (15 workers took
/// a 1 GiB update over 100 MiB); 6 keep a loopback or LAN server busy.
const MAX_WORKERS: usize = 6;

/// A chunk index whose bytes hashed to a `/core.index` manifest line.
#[derive(Debug, Clone)]
pub struct VerifiedIndex {
    index: Index,
}

impl VerifiedIndex {
    /// An index whose bytes the caller hashed against a `/core.index` line.
    pub(super) fn from_checked(index: Index) -> VerifiedIndex {
        VerifiedIndex { index }
    }

    pub(super) fn index(&self) -> &Index {
        &self.index
    }

    /// The hash of the image it describes (to compare with a `/core` line).
    pub fn image(&self) -> Hash {
        self.index.image
    }

    /// The image size.
    pub fn size(&self) -> u64 {
        self.index.size
    }

    /// The chunks, in image order.
    pub fn chunks(&self) -> &[Chunk] {
        &self.index.chunks
    }
}

/// Where the assembler takes one chunk from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The running slot, at this offset (it held this chunk there when it was written).
    Seed(u64),
    /// The server's chunk store (after trying the slot being written, at the chunk's own
    /// offset: what an interrupted earlier run left there).
    Store,
}

#[derive(Debug, Clone, Copy)]
struct Op {
    chunk: Chunk,
    /// Offset in the new image.
    at: u64,
    from: Origin,
}

/// How the new image will be put together: which chunks the seed offers.
pub struct ChunkPlan {
    ops: Vec<Op>,
    size: u64,
    seed_bytes: u64,
}

impl ChunkPlan {
    /// Plans `new` against the index of the image the running slot holds (`seed`).
    pub fn new(new: &VerifiedIndex, seed: Option<&VerifiedIndex>) -> ChunkPlan {
        let mut in_seed: HashMap<Hash, u64> = HashMap::new();
        if let Some(seed) = seed {
            let mut at = 0u64;
            for c in seed.chunks() {
                in_seed.entry(c.id).or_insert(at);
                at += u64::from(c.len);
            }
        }
        let mut at = 0u64;
        let mut seed_bytes = 0u64;
        let ops = new
            .chunks()
            .iter()
            .map(|&chunk| {
                let from = match in_seed.get(&chunk.id) {
                    Some(&off) => {
                        seed_bytes += u64::from(chunk.len);
                        Origin::Seed(off)
                    }
                    None => Origin::Store,
                };
                let op = Op { chunk, at, from };
                at += u64::from(chunk.len);
                op
            })
            .collect();
        ChunkPlan {
            ops,
            size: new.size(),
            seed_bytes,
        }
    }

    /// Bytes of the new image the seed offers.
    pub fn seed_bytes(&self) -> u64 {
        self.seed_bytes
    }

    /// The new image's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Chunks in the new image.
    pub fn chunk_count(&self) -> usize {
        self.ops.len()
    }
}

/// The slots a chunked write reads from: the running slot (read only) and the slot being
/// written, opened a second time for reading. Both were checked to be what they claim.
pub struct SlotReads {
    pub seed: File,
    pub seed_path: PathBuf,
    pub target: File,
}

/// What a chunked write took from where, counted as it goes.
#[derive(Debug, Default)]
pub struct Transfer {
    /// Bytes read from the running slot and verified.
    pub seed: AtomicU64,
    /// Bytes found already in place in the slot being written (an interrupted run).
    pub in_place: AtomicU64,
    /// Bytes of chunks downloaded (uncompressed).
    pub downloaded: AtomicU64,
    /// Bytes those downloads took on the wire (compressed).
    pub wire: AtomicU64,
    /// Chunks of the seed that did not match the index (the running slot is damaged);
    /// they were downloaded instead.
    pub seed_damaged: AtomicU64,
}

impl Chain {
    /// Fetches the chunk index a `/core.index` line names, streams it through its hash
    /// (as any image payload) and parses it.
    pub fn chunk_index(&self, entry: &Entry) -> Result<VerifiedIndex> {
        if entry.image() != Some(ImageKind::CoreIndex) {
            return Err(Error::Archive {
                what: entry.path.clone(),
                reason: "is not a chunk index".into(),
            });
        }
        let stream = self.open_image(entry, limits::CHUNK_INDEX)?;
        let url = stream.url().to_string();
        let mut text = Vec::with_capacity(stream.size() as usize);
        stream.write_to(&mut text, Path::new(&entry.path))?;
        let index = Index::parse(&text).map_err(|reason| Error::Archive {
            what: url,
            reason: format!("bad chunk index: {reason}"),
        })?;
        Ok(VerifiedIndex { index })
    }

    /// Starts assembling `core` from `plan` (made from its verified index, which must
    /// describe this image) with `workers` threads; the stream's `write_to` writes it and
    /// verifies the whole image. `transfer` counts what came from where.
    pub fn open_chunked(
        &self,
        core: &Entry,
        index: &VerifiedIndex,
        plan: ChunkPlan,
        reads: SlotReads,
        workers: usize,
        transfer: Arc<Transfer>,
    ) -> Result<ImageStream> {
        let url = self.content.url("chunks/");
        if index.image() != core.hash || plan.size != index.size() {
            return Err(Error::Archive {
                what: url,
                reason: format!(
                    "the chunk index describes image {}, not {} ({})",
                    index.image(),
                    core.hash,
                    core.path
                ),
            });
        }
        let size = plan.size;
        let (tx, blocks) = sync_channel(IN_FLIGHT);
        let (spare, spare_rx) = sync_channel(IN_FLIGHT + 2);
        let job = Job {
            content: self.content.clone(),
            pieces: pieces(&plan.ops),
            ops: plan.ops,
            pool: Mutex::default(),
            reads,
            transfer,
            queue: Queue::default(),
        };
        std::thread::Builder::new()
            .name("image-chunks".into())
            .spawn(move || {
                if let Err(e) = job.assemble(size, workers.max(1), &tx, &spare_rx) {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| Error::Archive {
                what: url.clone(),
                reason: format!("cannot start the chunk thread: {e}"),
            })?;
        Ok(ImageStream::assembled(core, url, size, blocks, spare))
    }
}

/// Chunks handed from the workers to the assembler, by position.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    /// The next position a worker takes.
    next: usize,
    /// The position the assembler waits for; workers stay within [`WINDOW`] of it.
    wanted: usize,
    ready: HashMap<usize, Result<Vec<u8>>>,
    stop: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next position to fetch, once it is within the window; `None` when done.
    fn take(&self, total: usize) -> Option<usize> {
        let mut s = self.lock();
        loop {
            if s.stop || s.next >= total {
                return None;
            }
            if s.next < s.wanted + WINDOW {
                s.next += 1;
                return Some(s.next - 1);
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn put(&self, i: usize, data: Result<Vec<u8>>) {
        self.lock().ready.insert(i, data);
        self.changed.notify_all();
    }

    /// Waits for position `i`, and lets the workers move the window past it.
    fn get(&self, i: usize) -> Result<Vec<u8>> {
        let mut s = self.lock();
        s.wanted = i;
        self.changed.notify_all();
        loop {
            if let Some(data) = s.ready.remove(&i) {
                s.wanted = i + 1;
                self.changed.notify_all();
                return data;
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
    }
}

/// The ops of one piece: a range of `Job::ops`.
type Piece = std::ops::Range<usize>;

/// Groups `ops` into pieces: runs of seed chunks that follow each other in the seed, up to
/// [`RUN_MAX`] bytes, and single other chunks.
fn pieces(ops: &[Op]) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    let mut run_end = None::<u64>;
    let mut run_len = 0usize;
    for (i, op) in ops.iter().enumerate() {
        let len = op.chunk.len as usize;
        match (op.from, run_end, out.last_mut()) {
            (Origin::Seed(at), Some(end), Some(last)) if at == end && run_len + len <= RUN_MAX => {
                last.end = i + 1;
                run_len += len;
            }
            _ => {
                out.push(i..i + 1);
                run_len = len;
            }
        }
        run_end = match op.from {
            Origin::Seed(at) => Some(at + len as u64),
            Origin::Store => None,
        };
    }
    out
}

/// Everything the chunk threads share.
struct Job {
    content: Source,
    ops: Vec<Op>,
    pieces: Vec<Piece>,
    /// Seed-run buffers the assembler is done with, for the workers to read into again.
    pool: Mutex<Vec<Vec<u8>>>,
    reads: SlotReads,
    transfer: Arc<Transfer>,
    queue: Queue,
}

impl Job {
    /// The assembler: starts the workers, then copies their chunks in order into blocks,
    /// hashing the image, and sends the blocks; the hash goes last.
    fn assemble(
        &self,
        size: u64,
        workers: usize,
        tx: &SyncSender<Result<Msg>>,
        spare: &Receiver<Block>,
    ) -> Result<()> {
        std::thread::scope(|s| {
            if let Err(e) = posix_fadvise(
                &self.reads.seed,
                0,
                0,
                PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
            ) {
                // Only a hint for the readahead of the seed: its reads work without it.
                log::debug!("no readahead hint for the seed: {e}");
            }
            for n in 0..workers.min(MAX_WORKERS).min(self.pieces.len().max(1)) {
                let spawned = std::thread::Builder::new()
                    .name(format!("image-chunk-{n}"))
                    .spawn_scoped(s, || self.work());
                if let Err(e) = spawned {
                    self.queue.stop();
                    return Err(Error::Slot(format!("cannot start a chunk worker: {e}")));
                }
            }
            // Whatever ends the assembly, the workers stop with it.
            let result = self.copy_in_order(size, tx, spare);
            self.queue.stop();
            result
        })
    }

    fn copy_in_order(
        &self,
        size: u64,
        tx: &SyncSender<Result<Msg>>,
        spare: &Receiver<Block>,
    ) -> Result<()> {
        let mut block = spare.try_recv().unwrap_or_default();
        let mut filled = 0usize;
        for i in 0..self.pieces.len() {
            let data = self.queue.get(i)?;
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rest.len().min(IMAGE_BUF - filled);
                block.fill(IMAGE_BUF)[filled..filled + n].copy_from_slice(&rest[..n]);
                filled += n;
                rest = &rest[n..];
                if filled == IMAGE_BUF {
                    block.fill(filled);
                    if tx.send(Ok(Msg::Block(block))).is_err() {
                        return Ok(());
                    }
                    crate::failpoint::point("img::chunked-block")?;
                    block = spare.try_recv().unwrap_or_default();
                    filled = 0;
                }
            }
            self.recycle(data);
        }
        if filled > 0 {
            block.fill(filled);
            if tx.send(Ok(Msg::Block(block))).is_err() {
                return Ok(());
            }
        }
        // No whole hash here: the slot read back is hashed as a whole against the `/core`
        // line (CopyCheck::prove), which proves what is on the device, so a third SHA-256
        // pass over the image (after the chunks' and the read-back's) would add nothing.
        debug_assert_eq!(
            self.ops.iter().map(|o| u64::from(o.chunk.len)).sum::<u64>(),
            size
        );
        let _ = tx.send(Ok(Msg::End(None)));
        Ok(())
    }

    /// Keeps a seed-run buffer for another run; the pool never holds more than the window.
    fn recycle(&self, mut data: Vec<u8>) {
        if data.capacity() >= RUN_MAX {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < WINDOW {
                data.clear();
                pool.push(data);
            }
        }
    }

    /// A worker: fetches pieces until there are none left or the assembly stopped.
    fn work(&self) {
        while let Some(i) = self.queue.take(self.pieces.len()) {
            let piece = self.pieces[i].clone();
            let data = if piece.len() == 1 {
                self.fetch(&self.ops[piece.start])
            } else {
                self.fetch_run(&self.ops[piece])
            };
            let failed = data.is_err();
            self.queue.put(i, data);
            if failed {
                return;
            }
        }
    }

    /// A run of chunks that follow each other in the seed, verified: one read of the seed,
    /// each chunk hashed where it landed; one that does not match is fetched on its own
    /// (downloaded) into its place.
    fn fetch_run(&self, run: &[Op]) -> Result<Vec<u8>> {
        let Origin::Seed(start) = run[0].from else {
            unreachable!("runs are made of seed chunks")
        };
        let total: usize = run.iter().map(|o| o.chunk.len as usize).sum();
        let taken = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut buf = taken.unwrap_or_else(|| Vec::with_capacity(RUN_MAX));
        // Recycled buffers are cleared: only a new one's bytes are zeroed here, once.
        buf.resize(total, 0);
        if self.reads.seed.read_exact_at(&mut buf, start).is_err() {
            // A seed shorter than its index says: each chunk on its own, downloaded.
            buf.clear();
            for op in run {
                buf.extend_from_slice(&self.fetch(op)?);
            }
            return Ok(buf);
        }
        let mut at = 0usize;
        for op in run {
            let len = op.chunk.len as usize;
            let piece = &mut buf[at..at + len];
            if chunk_id(piece) == op.chunk.id {
                self.transfer.seed.fetch_add(len as u64, Relaxed);
            } else {
                piece.copy_from_slice(&self.fetch(op)?);
            }
            at += len;
        }
        Ok(buf)
    }

    /// One chunk, verified: from the seed if it still matches, else from the slot being
    /// written if an earlier run left it there, else from the store.
    fn fetch(&self, op: &Op) -> Result<Vec<u8>> {
        let len = u64::from(op.chunk.len);
        if let Origin::Seed(at) = op.from {
            match read_verified(&self.reads.seed, at, op.chunk) {
                Some(data) => {
                    self.transfer.seed.fetch_add(len, Relaxed);
                    return Ok(data);
                }
                None => {
                    log::warn!(
                        "{}: the chunk at offset {at} does not match the index; downloading it",
                        self.reads.seed_path.display()
                    );
                    self.transfer.seed_damaged.fetch_add(1, Relaxed);
                }
            }
        } else if let Some(data) = read_verified(&self.reads.target, op.at, op.chunk) {
            self.transfer.in_place.fetch_add(len, Relaxed);
            return Ok(data);
        }
        let data = self.download(op.chunk)?;
        self.transfer.downloaded.fetch_add(len, Relaxed);
        Ok(data)
    }

    /// Downloads a chunk from the store, decompresses it (bounded by its length) and
    /// checks its SHA-256.
    fn download(&self, chunk: Chunk) -> Result<Vec<u8>> {
        let rel = chunks::store_path(&chunk.id);
        let url = self.content.url(&rel);
        let len = u64::from(chunk.len);
        let packed = self.content.fetch(&rel, limits::compressed_bound(len))?;
        self.transfer.wire.fetch_add(packed.len() as u64, Relaxed);
        let mut data = Vec::with_capacity(chunk.len as usize);
        let plain = archive::decompress(&packed[..]).map_err(|e| download_error(&url, e))?;
        Bounded::new(plain, len, &url)
            .read_to_end(&mut data)
            .map_err(|e| Error::Archive {
                what: url.clone(),
                reason: e.to_string(),
            })?;
        let actual = chunk_id(&data);
        if data.len() as u64 != len || actual != chunk.id {
            return Err(Error::HashMismatch {
                subject: Subject::Image,
                what: format!("chunk {url} ({} bytes, {len} expected)", data.len()),
                expected: chunk.id,
                actual,
            });
        }
        Ok(data)
    }
}

/// The chunk's bytes at `at` in `file`, if they are there and hash right.
fn read_verified(file: &File, at: u64, chunk: Chunk) -> Option<Vec<u8>> {
    let mut data = vec![0u8; chunk.len as usize];
    file.read_exact_at(&mut data, at).ok()?;
    (chunk_id(&data) == chunk.id).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::image::image_meta;
    use crate::hash::hash_bytes;

    fn index(data: &[u8], cuts: &[usize]) -> VerifiedIndex {
        let mut chunks = Vec::new();
        let mut at = 0;
        for &end in cuts.iter().chain([data.len()].iter()) {
            chunks.push(Chunk {
                id: chunk_id(&data[at..end]),
                len: (end - at) as u32,
            });
            at = end;
        }
        VerifiedIndex {
            index: Index {
                image: hash_bytes(&image_meta(data.len() as u64), data),
                size: data.len() as u64,
                chunks,
            },
        }
    }

    #[test]
    fn plans_seed_chunks_by_content_not_position() {
        let old: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut new = vec![9u8; 50];
        new.extend_from_slice(&old[100..300]);
        let seed = index(&old, &[100, 200]);
        let plan = ChunkPlan::new(&index(&new, &[50, 150]), Some(&seed));
        let from: Vec<_> = plan.ops.iter().map(|o| o.from).collect();
        assert_eq!(from, [Origin::Store, Origin::Seed(100), Origin::Seed(200)]);
        assert_eq!(plan.seed_bytes(), 200);
        assert_eq!(plan.ops[2].at, 150);
        // The two seed chunks follow each other in the seed too: one run.
        assert_eq!(pieces(&plan.ops), [0..1, 1..3]);
        let none = ChunkPlan::new(&index(&new, &[50, 150]), None);
        assert_eq!(none.seed_bytes(), 0);
    }

    #[test]
    fn runs_follow_the_seed_and_stop_at_their_size() {
        let chunk = |n: u8, len: u32| Chunk {
            id: Hash([n; 32]),
            len,
        };
        let op = |n: u8, len: u32, from: Origin| Op {
            chunk: chunk(n, len),
            at: 0,
            from,
        };
        let big = (RUN_MAX / 2) as u32;
        let ops = [
            op(1, 10, Origin::Seed(0)),
            op(2, 20, Origin::Seed(10)),
            op(3, 5, Origin::Seed(500)), // elsewhere in the seed: a new run
            op(4, 7, Origin::Store),
            op(5, big, Origin::Seed(505)), // after a download: a new run
            op(6, big, Origin::Seed(505 + u64::from(big))),
            op(7, 1, Origin::Seed(505 + 2 * u64::from(big))), // over RUN_MAX: a new run
        ];
        assert_eq!(pieces(&ops), [0..2, 2..3, 3..4, 4..6, 6..7]);
        assert!(pieces(&[]).is_empty());
    }
}
