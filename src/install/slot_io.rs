//! Step 3 of the A/B install at disk speed: the core image goes into the inactive slot
//! while two more threads read it back from the device, a little behind the writer, and
//! hash it again (one reads the next block while the other hashes the last). Memory stays
//! bounded: a few blocks in flight on each side, offsets in between.
//!
//! The writer uses direct I/O where the slot takes it (block devices, most filesystems):
//! a direct write returns only once the device has the bytes, and no page cache holds
//! them. Where direct I/O is refused (tmpfs, some filesystems, a block not aligned, the
//! image's tail), it writes through the page cache, starts the writeback of each block at
//! once (`sync_file_range`), and waits for it a window of blocks later.
//!
//! Why this read-back is as strong as reading the whole slot after the final fsync: a
//! range is handed to the reader only once it is on the device (a direct write returned,
//! or its writeback completed), and the reader fetches it from the device, not from
//! memory: with direct I/O where the slot takes it, else after dropping the range's pages
//! from the cache, which are clean by then. The reader sees what a read after the fsync
//! would see, only earlier. What the read-back does not prove, durability, the fsync
//! still provides: it runs after the last block, before the read-back's last range, and
//! the slot is made bootable (step 4) only after both the fsync and the read-back passed.
//! (The reader also flushes the slot now and then; that only leaves the final fsync less
//! to do.) A mismatch fails the install as before: exit 38, the slot left unbootable.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};

use crate::chain::{Block, CopyCheck, BLOCK_ALIGN, IMAGE_BUF};
use crate::direct_io::{aligned, Direct};
use crate::{Error, Result};

/// Buffered blocks whose writeback may be under way at once before the writer waits for
/// the oldest: the disk works while the next block arrives, and dirty memory stays small.
const WRITE_WINDOW: usize = 16;

/// The largest page size Linux uses: the reader stops short of a page the writer may
/// still be filling, whose cached copy could not be dropped.
const PAGE_MAX: u64 = 64 << 10;

/// Bytes after which the reader flushes the slot, so that little is left for the final
/// fsync: the dirty backing file of a loop device, a disk's volatile cache.
const FLUSH_EVERY: u64 = 256 << 20;

/// Ranges announced to the reader and not yet taken, at most (they are only offsets).
pub const READ_BEHIND: usize = 64;

/// Writes the image into a slot from its start and tells the reader, in order, how far
/// the slot is on the device.
pub struct SlotWriter<'f> {
    file: &'f File,
    pos: u64,
    direct: Direct,
    /// Buffered ranges whose writeback was started, oldest first.
    pending: VecDeque<(u64, u64)>,
    on_device: SyncSender<u64>,
}

impl<'f> SlotWriter<'f> {
    /// A writer at the start of `file`, reporting to the reader through `on_device`.
    pub fn new(file: &'f File, on_device: SyncSender<u64>) -> SlotWriter<'f> {
        SlotWriter {
            file,
            pos: 0,
            direct: Direct::new(),
            pending: VecDeque::new(),
            on_device,
        }
    }

    /// Makes everything written durable (fsync), then hands the rest to the reader.
    pub fn finish(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        self.pending.clear();
        self.announce(self.pos);
        Ok(())
    }

    /// The slot is on the device up to `end`. A reader that stopped has its own error.
    fn announce(&self, end: u64) {
        let _ = self.on_device.send(end);
    }

    fn sync_range(&self, (pos, len): (u64, u64), flags: libc::c_uint) -> io::Result<()> {
        let (pos, len) = (pos as libc::off64_t, len as libc::off64_t);
        // SAFETY: a plain system call on a descriptor this writer borrows.
        let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), pos, len, flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Waits for the writeback of the oldest buffered range and hands it to the reader.
    fn settle_oldest(&mut self) -> io::Result<()> {
        if let Some(old) = self.pending.pop_front() {
            let all = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            self.sync_range(old, all)?;
            self.announce(old.0 + old.1);
        }
        Ok(())
    }

    fn write_direct(&mut self, buf: &[u8]) -> io::Result<bool> {
        if !aligned(buf, self.pos) || !self.direct.set(self.file, true)? {
            return Ok(false);
        }
        match self.file.write_all_at(buf, self.pos) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct.refused(self.file, &e)?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        while !self.pending.is_empty() {
            self.settle_oldest()?;
        }
        self.pos += buf.len() as u64;
        self.announce(self.pos);
        Ok(true)
    }
}

impl Write for SlotWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::failpoint::point("img::block").map_err(io::Error::other)?;
        if self.write_direct(buf)? {
            return Ok(buf.len());
        }
        self.direct.set(self.file, false)?;
        self.file.write_all_at(buf, self.pos)?;
        let range = (self.pos, buf.len() as u64);
        self.pos += buf.len() as u64;
        self.sync_range(range, libc::SYNC_FILE_RANGE_WRITE)?;
        self.pending.push_back(range);
        if self.pending.len() > WRITE_WINDOW {
            self.settle_oldest()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reader: reads each range the writer announces back from the device, in order, into
/// `check`, until the writer is done (the channel closes). `copy` is the slot, opened for
/// reading; the caller finishes the check with the writer's proof. A second thread reads
/// the next block from the device while this one hashes the last.
pub fn read_behind(
    copy: File,
    path: &Path,
    mut check: CopyCheck,
    on_device: Receiver<u64>,
) -> Result<CopyCheck> {
    let size = check.left();
    let (out, filled) = sync_channel::<(Block, usize)>(1);
    let (empty, spare) = sync_channel(2);
    let read = std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("image-read".into())
            .spawn_scoped(s, move || {
                read_ranges(&copy, size, &on_device, &out, &spare)
            })?;
        for (block, want) in &filled {
            check.update(&block.bytes()[..want]);
            let _ = empty.try_send(block);
        }
        reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reader panicked")))
    });
    read.map_err(|e| Error::io(path, e))?;
    Ok(check)
}

/// Reads the ranges announced on `on_device` from the device, in order, and passes each to
/// `out` in a block (with the count of its bytes that belong to the image).
fn read_ranges(
    copy: &File,
    size: u64,
    on_device: &Receiver<u64>,
    out: &SyncSender<(Block, usize)>,
    spare: &Receiver<Block>,
) -> io::Result<()> {
    let mut direct = Direct::new();
    let mut pos = 0u64;
    for end in on_device {
        let end = end.min(size);
        let end = if end == size {
            end
        } else {
            end - end % PAGE_MAX
        };
        while pos < end {
            let want = (end - pos).min(IMAGE_BUF as u64) as usize;
            let mut block = spare.try_recv().unwrap_or_default();
            if pos > 0 && pos % FLUSH_EVERY == 0 {
                // From this thread, so the writer does not wait for it.
                copy.sync_data()?;
            }
            read_one(
                copy,
                &mut direct,
                &mut block,
                pos,
                want,
                pos + want as u64 == size,
            )?;
            pos += want as u64;
            if out.send((block, want)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads `want` bytes at `pos` from the device into `block`; `last`: they end the image.
fn read_one(
    copy: &File,
    direct: &mut Direct,
    block: &mut Block,
    pos: u64,
    want: usize,
    last: bool,
) -> io::Result<()> {
    // A direct read takes whole device blocks; past the end of the slot it stops short.
    let buf = block.fill(want.next_multiple_of(BLOCK_ALIGN));
    if aligned(buf, pos) && direct.set(copy, true)? {
        match read_at_least(copy, buf, pos, want) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => direct.refused(copy, &e)?,
            Err(e) => return Err(e),
        }
    }
    direct.set(copy, false)?;
    // The range is written back, so its pages are clean and can be dropped (whole pages
    // only: to the end of the file for the last range): the read below goes to the device.
    let _ = posix_fadvise(
        copy.as_fd(),
        pos as i64,
        if last { 0 } else { want as i64 },
        PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    copy.read_exact_at(&mut buf[..want], pos)
}

/// Reads from `pos` into `buf` until at least `want` bytes are in.
fn read_at_least(file: &File, buf: &mut [u8], pos: u64, want: usize) -> io::Result<()> {
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..], pos + got as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::image::tests::{entry, served};

    /// Writes `data` as an image into a fresh slot file through [`SlotWriter`], lets
    /// `tamper` change the slot, then reads it back as the install does.
    fn write_then_read(data: &[u8], tamper: impl FnOnce(&File)) -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let e = entry(data);
        let hex = e.hash.to_hex();
        let chain = served(dir.path(), &hex, &[(&hex, data)]);
        let slot = dir.path().join("slot");
        std::fs::write(&slot, vec![0u8; data.len() + 8192]).unwrap();
        let file = File::options().read(true).write(true).open(&slot).unwrap();
        let stream = chain.open_image(&e, 1 << 30).unwrap();
        let check = stream.copy_check();
        // Everything announced is kept, so the reader runs after the tampering.
        let (tx, rx) = sync_channel(1024);
        let mut writer = SlotWriter::new(&file, tx);
        let image = stream.write_to(&mut writer, &slot)?;
        writer.finish().unwrap();
        tamper(&file);
        let check = read_behind(File::open(&slot).unwrap(), &slot, check, rx)?;
        check.finish(&image, &slot)
    }

    #[test]
    fn the_read_back_passes_and_refuses_a_chunk_the_device_got_wrong() {
        let data: Vec<u8> = (0..(2 * IMAGE_BUF + 1000))
            .map(|i| (i % 253) as u8)
            .collect();
        write_then_read(&data, |_| {}).unwrap();
        let err = write_then_read(&data, |f| {
            // One byte of the second chunk differs on the device.
            f.write_all_at(&[data[IMAGE_BUF + 7] ^ 1], IMAGE_BUF as u64 + 7)
                .unwrap();
            f.sync_all().unwrap();
        })
        .unwrap_err();
        assert_eq!(err.exit_code(), 38, "{err}");
        assert!(err.to_string().contains("read back"), "{err}");
        // The tail, written through the page cache, is read back from the device too.
        let err = write_then_read(&data, |f| {
            f.write_all_at(&[data[data.len() - 1] ^ 1], data.len() as u64 - 1)
                .unwrap();
            f.sync_all().unwrap();
        })
        .unwrap_err();
        assert_eq!(err.exit_code(), 38, "{err}");
    }

    #[test]
    fn unaligned_blocks_go_through_the_page_cache_and_are_read_back() {
        let data: Vec<u8> = (0..(40 * 65536 + 77)).map(|i| (i % 239) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let e = entry(&data);
        let hex = e.hash.to_hex();
        let chain = served(dir.path(), &hex, &[(&hex, &data)]);
        let slot = dir.path().join("slot");
        std::fs::write(&slot, b"").unwrap();
        let file = File::options().read(true).write(true).open(&slot).unwrap();
        let stream = chain.open_image(&e, 1 << 30).unwrap();
        let check = stream.copy_check();
        let image = stream.write_to(&mut Vec::new(), &slot).unwrap();
        let (tx, rx) = sync_channel(4);
        let reader = std::thread::spawn(move || {
            let copy = File::open(dir.path().join("slot")).unwrap();
            read_behind(copy, &dir.path().join("slot"), check, rx)
        });
        let mut writer = SlotWriter::new(&file, tx);
        // Pieces at odd offsets: direct I/O never qualifies, the writeback window fills.
        for piece in data.chunks(65536 + 1) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap();
        let check = reader.join().unwrap().unwrap();
        check.finish(&image, &slot).unwrap();
    }

    #[test]
    fn a_read_back_cut_short_is_refused() {
        let data: Vec<u8> = (0..(IMAGE_BUF + 1000)).map(|i| (i % 241) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let e = entry(&data);
        let hex = e.hash.to_hex();
        let chain = served(dir.path(), &hex, &[(&hex, &data)]);
        let slot = dir.path().join("slot");
        let stream = chain.open_image(&e, 1 << 30).unwrap();
        let check = stream.copy_check();
        let image = stream.write_to(&mut Vec::new(), &slot).unwrap();
        std::fs::write(&slot, &data).unwrap();
        // The writer stopped after the first chunk.
        let (tx, rx) = sync_channel(4);
        tx.send(IMAGE_BUF as u64).unwrap();
        drop(tx);
        let check = read_behind(File::open(&slot).unwrap(), &slot, check, rx).unwrap();
        assert!(check.finish(&image, &slot).is_err());
    }
}
