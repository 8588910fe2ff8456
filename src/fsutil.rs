//! Small filesystem helpers: atomic writes, free space, directory fsync, early writeback.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::IoContext;
use crate::{Error, Result};

/// Writes `data` to `path` so that a crash leaves either the old or the new file: a
/// temporary in the same directory, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).at(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".chainup-tmp.")
        .tempfile_in(dir)
        .at(dir)?;
    tmp.write_all(data).at(tmp.path())?;
    tmp.as_file().sync_all().at(tmp.path())?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir)
}

/// fsyncs a directory so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn available_space(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| Error::io(path, e.into()))?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Fails with a disk-space error unless `needed` bytes are free at `path`.
pub fn ensure_space(path: &Path, needed: u64) -> Result<()> {
    let available = available_space(path)?;
    if available < needed {
        return Err(Error::DiskSpace {
            path: path.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Starts writing `file`'s dirty pages to disk without waiting (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`). A staged file is synced by the transaction before it is
/// renamed into place; started as soon as it is written, that writeback overlaps the
/// staging of the next files instead of stalling the sync. It promises nothing about
/// durability, so a failure is ignored.
pub fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor `file` keeps open; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}
