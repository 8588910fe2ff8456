//! The state directory: the one-client lock, the staging area, the update journal, the
//! high-water mark and the manifest cache.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::version::HighWaterMark;
use crate::{Error, Result};

mod manifest_cache;
pub use manifest_cache::{parse_cached, url_dir_name, CacheAccess, ManifestCache};

/// The state directory of one target root.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
    /// `update --keepcache`: the staging area outlives a finished install.
    keep_staged: bool,
}

/// Held while a command may change the root; released on drop.
pub struct Lock {
    _flock: Flock<File>,
}

/// What an update in progress is doing, written before the first change to the root and
/// removed after the last, so a killed update is finished by the next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// The version the root held before (`None` for os-install).
    pub from: Option<u32>,
    /// The bundles the root held before.
    pub from_bundles: Vec<String>,
    /// The version the root is being brought to.
    pub to: u32,
    /// The bundles the root will hold.
    pub bundles: Vec<String>,
    /// The directories the transaction places temporaries in, so that a later run can
    /// sweep them even when this release can no longer be read.
    #[serde(default)]
    pub temp_dirs: Vec<String>,
    /// The configuration files this update places, with the hash it places: found with
    /// that hash later, a file was put there by chainup, not edited by an admin.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
}

impl StateDir {
    /// Opens the state directory for a command that writes, creating it if needed (its
    /// missing parents 0755, itself 0700). It must be a real directory of the running
    /// user that nobody else can write to: another user able to swap a staged object or
    /// the journal would decide what gets installed.
    pub fn open(path: &Path) -> Result<StateDir> {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .at(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        check_private(path)?;
        Ok(StateDir {
            path: path.to_path_buf(),
            keep_staged: false,
        })
    }

    /// The state directory at `path` as it is, for reading (nothing is created).
    pub fn at(path: &Path) -> StateDir {
        StateDir {
            path: path.to_path_buf(),
            keep_staged: false,
        }
    }

    /// swupd's `--keepcache`: [`StateDir::clear_staged`] keeps the verified files (a later
    /// run hashes them again before any use).
    pub fn keeping_staged(self) -> StateDir {
        StateDir {
            keep_staged: true,
            ..self
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the exclusive lock, failing at once if another chainup holds it.
    pub fn lock(&self) -> Result<Lock> {
        let path = self.path.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(Lock { _flock: flock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::Locked(path)),
            Err((_, e)) => Err(Error::io(path, e.into())),
        }
    }

    /// True when the directory exists and passes the checks [`StateDir::open`] makes.
    pub fn is_private(&self) -> bool {
        check_private(&self.path).is_ok()
    }

    /// True when the directory exists (reading commands create nothing).
    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// Where verified fullfiles wait to be installed, created on demand (0700) and held to
    /// the same rules as the state directory.
    pub fn staged(&self) -> Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.path.join("staged");
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(dir, e)),
        }
        check_private(&dir)?;
        Ok(dir)
    }

    /// Removes the staging area and everything in it.
    pub fn clear_staged(&self) -> Result<()> {
        if self.keep_staged {
            return Ok(());
        }
        let dir = self.path.join("staged");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(dir, e)),
        }
    }

    /// The high-water mark of installed versions.
    pub fn high_water_mark(&self) -> HighWaterMark {
        HighWaterMark::new(&self.path)
    }

    /// Records how the last change's content came (for `info`).
    pub fn record_transfer(&self, t: &crate::progress::Transfer) -> Result<()> {
        let data = serde_json::to_vec(t).expect("transfer serialises");
        crate::fsutil::write_atomic(&self.path.join("last-transfer.json"), &data)
    }

    /// How the last change's content came, if recorded and readable.
    pub fn last_transfer(&self) -> Option<crate::progress::Transfer> {
        let data = std::fs::read(self.path.join("last-transfer.json")).ok()?;
        serde_json::from_slice(&data).ok()
    }

    fn journal_path(&self) -> PathBuf {
        self.path.join("journal.json")
    }

    /// The unfinished update, if a previous run was interrupted.
    pub fn journal(&self) -> Result<Option<JournalRecord>> {
        let path = self.journal_path();
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| Error::Config {
                    path,
                    reason: format!("unreadable journal: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Durably records that an update to `record.to` is starting.
    pub fn begin(&self, record: &JournalRecord) -> Result<()> {
        let data = serde_json::to_vec(record).expect("journal serialises");
        crate::fsutil::write_atomic(&self.journal_path(), &data)
    }

    /// Durably records that the update finished.
    pub fn finish(&self) -> Result<()> {
        let path = self.journal_path();
        match std::fs::remove_file(&path) {
            Ok(()) => crate::fsutil::sync_dir(&self.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// Refuses a state path that is a symlink, is not a directory, belongs to another user
/// or can be written by group or others.
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(path).at(path)?;
    let me = nix::unistd::geteuid().as_raw();
    let problem = if md.file_type().is_symlink() {
        Some("it is a symlink".to_string())
    } else if !md.is_dir() {
        Some("it is not a directory".to_string())
    } else if md.uid() != me {
        Some(format!(
            "it belongs to uid {}, not to uid {me} running chainup",
            md.uid()
        ))
    } else if md.mode() & 0o022 != 0 {
        Some(format!(
            "mode {:04o} lets others write to it",
            md.mode() & 0o7777
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(Error::UnsafePath {
            path: path.display().to_string(),
            reason: format!(
                "the state directory must be a private directory of the user running chainup: {why}"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let held = state.lock().unwrap();
        assert!(matches!(state.lock(), Err(Error::Locked(_))));
        drop(held);
        state.lock().unwrap();
    }

    #[test]
    fn journal_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.journal().unwrap(), None);
        let rec = JournalRecord {
            from: Some(10),
            from_bundles: vec!["os-core".into()],
            to: 20,
            bundles: vec!["os-core".into()],
            temp_dirs: vec!["/usr/bin".into()],
            config: [("/etc/a".to_string(), "00".repeat(32))].into(),
        };
        state.begin(&rec).unwrap();
        assert_eq!(state.journal().unwrap(), Some(rec));
        state.finish().unwrap();
        assert_eq!(state.journal().unwrap(), None);
    }
}
