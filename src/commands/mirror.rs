//! `mirror --set URL / --unset`: swupd's mirror files under the root,
//! `/etc/swupd/mirror_contenturl` and `/etc/swupd/mirror_versionurl` (swupd's mirror.c).
//! A mirror only says where content comes from; the chain decides what is accepted, so
//! the files need no more protection than the rest of `/etc`.

use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::{fsutil, Error, Result};

/// swupd's mirror content URL file, relative to the root.
pub const CONTENT_FILE: &str = "etc/swupd/mirror_contenturl";
/// swupd's mirror version URL file, relative to the root.
pub const VERSION_FILE: &str = "etc/swupd/mirror_versionurl";

/// The mirror URLs set in a root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirror {
    pub content: Option<String>,
    pub version: Option<String>,
}

/// Reads the mirror files of `root` (a missing or empty file is no URL).
pub fn get(root: &Path) -> Result<Mirror> {
    Ok(Mirror {
        content: read_url(&root.join(CONTENT_FILE))?,
        version: read_url(&root.join(VERSION_FILE))?,
    })
}

fn read_url(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t
            .lines()
            .next()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes the given URLs (each one atomically). `/etc/swupd` is made if missing; it
/// and `/etc` must be real directories of the root, not symlinks that could lead the
/// write out of it.
pub fn set(root: &Path, mirror: &Mirror) -> Result<()> {
    let dir = swupd_dir(root)?;
    if let Some(url) = &mirror.version {
        fsutil::write_atomic(&dir.join("mirror_versionurl"), url.as_bytes())?;
    }
    if let Some(url) = &mirror.content {
        fsutil::write_atomic(&dir.join("mirror_contenturl"), url.as_bytes())?;
    }
    Ok(())
}

/// Removes both files; true if there was anything to remove.
pub fn unset(root: &Path) -> Result<bool> {
    let mut removed = false;
    for rel in [CONTENT_FILE, VERSION_FILE] {
        let path = root.join(rel);
        match std::fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(removed)
}

/// `ROOT/etc/swupd`, made (0755) where missing, each level a real directory.
fn swupd_dir(root: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut dir = root.to_path_buf();
    for part in ["etc", "swupd"] {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(Error::UnsafePath {
                    path: dir.display().to_string(),
                    reason: "not a directory".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&dir)
                .at(&dir)?,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    Ok(dir)
}
