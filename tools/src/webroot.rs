//! The server layout (docs/formats.md) and atomic writes into it: every file appears under
//! its final name complete and synced, or not at all.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chainup::direct_io::DirectWriter;

/// Paths of the swupd server layout below a webroot.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout below `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// `W/<V>`.
    pub fn version_dir(&self, version: u32) -> PathBuf {
        self.root.join(version.to_string())
    }

    /// `W/<V>/files`.
    pub fn files_dir(&self, version: u32) -> PathBuf {
        self.version_dir(version).join("files")
    }

    /// `W/<V>/files/<hash>.tar`.
    pub fn fullfile(&self, version: u32, hash: &chainup::hash::Hash) -> PathBuf {
        self.files_dir(version).join(format!("{hash}.tar"))
    }

    /// `W/<V>/Manifest.<name>` (plain text).
    pub fn manifest(&self, version: u32, name: &str) -> PathBuf {
        self.version_dir(version).join(format!("Manifest.{name}"))
    }

    /// `W/<V>/Manifest.<name>.tar`.
    pub fn manifest_tar(&self, version: u32, name: &str) -> PathBuf {
        self.version_dir(version)
            .join(format!("Manifest.{name}.tar"))
    }

    /// `W/version/format<F>`.
    pub fn format_dir(&self, format: u32) -> PathBuf {
        self.root.join("version").join(format!("format{format}"))
    }

    /// `W/version/format<F>/latest`.
    pub fn latest(&self, format: u32) -> PathBuf {
        self.format_dir(format).join("latest")
    }

    /// `W/version/latest_version`.
    pub fn latest_version(&self) -> PathBuf {
        self.root.join("version").join("latest_version")
    }
}

/// `path` with `.sig` appended.
pub fn sig_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Writes `data` to `path` atomically; returns the number of bytes written.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<u64> {
    write_atomic_with(path, |w| Ok(w.write_all(data)?))?;
    Ok(data.len() as u64)
}

/// Bytes a big file is written in, with direct I/O: a published core image or pack would
/// otherwise pass through the page cache, gigabytes that no one reads back soon.
const DIRECT_WRITE: usize = 1 << 20;

/// Creates `path` atomically from what `fill` writes: a temporary file in the same
/// directory, synced, made world-readable (a web server serves it), then renamed. The
/// directory itself is synced later by [`sync_dir`], once per batch of files.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut DirectWriter<'_>) -> Result<()>,
) -> Result<u64> {
    let dir = path.parent().expect("webroot paths have a parent");
    let ctx = || format!("writing {}", path.display());
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(ctx)?;
    let mut w = DirectWriter::new(tmp.as_file(), DIRECT_WRITE);
    fill(&mut w).with_context(ctx)?;
    let len = w.finish().with_context(ctx)?;
    let file = tmp.as_file();
    file.set_permissions(Permissions::from_mode(0o644))
        .with_context(ctx)?;
    file.sync_all().with_context(ctx)?;
    tmp.persist(path).map_err(|e| e.error).with_context(ctx)?;
    Ok(len)
}

/// Holds an exclusive lock on the webroot for the life of the returned file, so two
/// publishers cannot interleave their `latest` updates.
pub fn lock(root: &Path) -> Result<File> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let path = root.join(".chainup-publish.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(e).with_context(|| {
            format!(
                "locking {}: is another chainup-publish running?",
                path.display()
            )
        });
    }
    Ok(file)
}

/// Syncs a directory so the renames into it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Removes `path` if it exists (a stale signature must not sit next to new content).
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/latest");
        assert_eq!(write_atomic(&p, b"10\n").unwrap(), 3);
        write_atomic(&p, b"20\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"20\n");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_fill_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let r = write_atomic_with(&p, |_| anyhow::bail!("boom"));
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path()).unwrap();
        let e = format!("{:#}", lock(dir.path()).unwrap_err());
        assert!(e.contains("another chainup-publish"), "{e}");
    }

    #[test]
    fn layout_paths() {
        let l = Layout::new("/w");
        assert_eq!(
            l.manifest_tar(20, "MoM"),
            Path::new("/w/20/Manifest.MoM.tar")
        );
        assert_eq!(l.latest(30), Path::new("/w/version/format30/latest"));
        assert_eq!(
            sig_path(&l.latest(30)),
            Path::new("/w/version/format30/latest.sig")
        );
        assert_eq!(l.latest_version(), Path::new("/w/version/latest_version"));
    }
}
