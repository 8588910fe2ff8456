//! Step 3 of the A/B install at disk speed: the core image goes into the inactive slot
//! while a second thread reads it back from the device, a little behind the writer, and
//! hashes it again.
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

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};

use nix::fcntl::{fcntl, posix_fadvise, FcntlArg, OFlag, PosixFadviseAdvice};

use crate::chain::{Block, CopyCheck, BLOCK_ALIGN, IMAGE_BUF};
use crate::{Error, Result};

/// Buffered blocks whose writeback may be under way at once before the writer waits for
/// the oldest: the disk works while the next block arrives, and dirty memory stays small.
const WRITE_WINDOW: usize = 16;

/// Ranges announced to the reader and not yet taken, at most (they are only offsets).
pub const READ_BEHIND: usize = 64;

/// Turns direct I/O on or off for `file`; `Ok(false)` if the file refuses it.
fn set_direct(file: &File, on: bool) -> io::Result<bool> {
    let flags = OFlag::from_bits_truncate(fcntl(file.as_fd(), FcntlArg::F_GETFL)?);
    let want = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags - OFlag::O_DIRECT
    };
    match fcntl(file.as_fd(), FcntlArg::F_SETFL(want)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EINVAL) if on => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether a write or read of `len` bytes at `pos` from `buf` qualifies for direct I/O.
fn aligned(buf: &[u8], pos: u64) -> bool {
    buf.as_ptr() as usize % BLOCK_ALIGN == 0
        && buf.len() % BLOCK_ALIGN == 0
        && pos % BLOCK_ALIGN as u64 == 0
}

/// Writes the image into a slot from its start and tells the reader, in order, how far
/// the slot is on the device.
pub struct SlotWriter<'f> {
    file: &'f File,
    pos: u64,
    /// Whether O_DIRECT is set on the descriptor now; `None` once the slot refused it.
    direct: Option<bool>,
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
            direct: Some(false),
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

    fn mode(&mut self, on: bool) -> io::Result<bool> {
        match self.direct {
            Some(now) if now == on => Ok(true),
            Some(_) => {
                let done = set_direct(self.file, on)?;
                self.direct = done.then_some(on);
                Ok(done)
            }
            None => Ok(!on),
        }
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
        if !aligned(buf, self.pos) || !self.mode(true)? {
            return Ok(false);
        }
        match self.file.write_all_at(buf, self.pos) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                log::debug!("direct I/O refused ({e}); writing through the page cache");
                self.mode(false)?;
                self.direct = None;
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
        if self.write_direct(buf)? {
            return Ok(buf.len());
        }
        self.mode(false)?;
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
/// reading; the caller finishes the check with the writer's proof.
pub fn read_behind(
    copy: File,
    path: &Path,
    mut check: CopyCheck,
    on_device: &Receiver<u64>,
) -> Result<CopyCheck> {
    let io_err = |e: io::Error| Error::io(path, e);
    let mut direct = set_direct(&copy, true).map_err(io_err)?;
    let mut block = Block::new();
    let mut pos = 0u64;
    for end in on_device {
        let end = end.min(pos + check.left());
        while pos < end {
            let want = (end - pos).min(IMAGE_BUF as u64) as usize;
            // A direct read takes whole device blocks; past the end of the slot it stops short.
            let len = want.next_multiple_of(BLOCK_ALIGN);
            let buf = block.fill(len);
            if direct && aligned(buf, pos) {
                match read_at_least(&copy, buf, pos, want) {
                    Ok(()) => {
                        check.update(&buf[..want]);
                        pos += want as u64;
                        continue;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        log::debug!("direct read-back refused ({e}); dropping cached pages");
                        set_direct(&copy, false).map_err(io_err)?;
                        direct = false;
                    }
                    Err(e) => return Err(io_err(e)),
                }
            }
            // The range is written back, so its pages are clean and can be dropped: the
            // read below goes to the device.
            let _ = posix_fadvise(
                copy.as_fd(),
                pos as i64,
                want as i64,
                PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
            copy.read_exact_at(&mut buf[..want], pos).map_err(io_err)?;
            check.update(&buf[..want]);
            pos += want as u64;
        }
    }
    Ok(check)
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
