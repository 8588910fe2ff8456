//! The target root, reached only through directory handles: every path is walked one
//! component at a time with O_NOFOLLOW, so a symlink planted in a parent directory can
//! never send a write outside the root.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, FileStat, Mode};
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use std::os::unix::ffi::OsStrExt;

use nix::fcntl::readlinkat;

use crate::hash::{Hash, Hasher, Kind, Meta};
use crate::{Error, Result};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Prefix of the temporary names files are placed under before the atomic rename.
pub const NEW_PREFIX: &str = ".chainup-new.";

/// An open handle on the target root directory.
pub struct TargetRoot {
    fd: OwnedFd,
    path: PathBuf,
}

/// An open parent directory and the last component of a manifest path.
pub struct Parent<'a> {
    pub fd: OwnedFd,
    pub name: &'a str,
}

impl Parent<'_> {
    /// The temporary name a new version of this entry is placed under.
    pub fn new_name(&self) -> String {
        format!("{NEW_PREFIX}{}", self.name)
    }
}

impl TargetRoot {
    /// Opens (creating if needed) the root directory.
    pub fn open(path: &Path) -> Result<TargetRoot> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let fd = nix::fcntl::open(path, DIR_FLAGS, Mode::empty())
            .map_err(|e| Error::io(path, e.into()))?;
        Ok(TargetRoot {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of a manifest path, for messages and read-only tools.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.path.join(path.trim_start_matches('/'))
    }

    fn unsafe_path(&self, path: &str, reason: impl Into<String>) -> Error {
        Error::UnsafePath {
            path: self.host_path(path).display().to_string(),
            reason: reason.into(),
        }
    }

    fn errno(&self, path: &str, e: Errno) -> Error {
        Error::io(self.host_path(path), e.into())
    }

    /// Opens the parent directory of a (validated, absolute) manifest path. Fails with
    /// `Ok(None)` if a parent is missing, and with an unsafe-path error if one is a symlink
    /// or not a directory.
    pub fn parent<'p>(&self, path: &'p str) -> Result<Option<Parent<'p>>> {
        let rel = path.trim_start_matches('/');
        let (dirs, name) = match rel.rsplit_once('/') {
            Some((dirs, name)) => (Some(dirs), name),
            None => (None, rel),
        };
        let mut fd = self.fd.try_clone().map_err(|e| Error::io(&self.path, e))?;
        if let Some(dirs) = dirs {
            let mut walked = String::new();
            for comp in dirs.split('/') {
                walked.push('/');
                walked.push_str(comp);
                fd = match openat(fd.as_fd(), comp, DIR_FLAGS, Mode::empty()) {
                    Ok(next) => next,
                    Err(Errno::ENOENT) => return Ok(None),
                    Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                        return Err(self.unsafe_path(
                            path,
                            format!("parent {walked} is a symlink or not a directory"),
                        ))
                    }
                    Err(e) => return Err(self.errno(&walked, e)),
                };
            }
        }
        Ok(Some(Parent { fd, name }))
    }

    /// lstat of a manifest path through safe parents; `None` if it or a parent is missing.
    pub fn lstat(&self, path: &str) -> Result<Option<FileStat>> {
        let Some(parent) = self.parent(path)? else {
            return Ok(None);
        };
        self.lstat_at(parent.fd.as_fd(), parent.name, path)
    }

    /// lstat of entry `name` of a parent opened with [`TargetRoot::parent`]; `path` is
    /// for messages.
    pub fn lstat_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        path: &str,
    ) -> Result<Option<FileStat>> {
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.errno(path, e)),
        }
    }

    /// The swupd hash of what is at `path` now, reached through safe parents; `None` if
    /// it or a parent is missing. Device nodes and other special files hash by metadata
    /// alone (no manifest lists them, and reading one could block forever).
    pub fn hash(&self, path: &str) -> Result<Option<Hash>> {
        let Some(parent) = self.parent(path)? else {
            return Ok(None);
        };
        let found = self.hash_at(parent.fd.as_fd(), parent.name, path)?;
        Ok(found.map(|(h, _)| h))
    }

    /// Like [`TargetRoot::hash`] for entry `name` of a parent directory opened with
    /// [`TargetRoot::parent`], also returning the metadata hashed (callers hashing many
    /// entries of one directory walk its path once). `path` is for messages.
    pub fn hash_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        path: &str,
    ) -> Result<Option<(Hash, Meta)>> {
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.errno(path, e)),
        };
        let mut meta = meta_of(&st);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(|e| self.errno(path, e))?;
                let mut hasher = Hasher::new(&meta, &[]);
                hasher.update(target.as_bytes());
                Ok(Some((hasher.finish(), meta)))
            }
            libc::S_IFREG => {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
                let fd =
                    openat(dir, name, flags, Mode::empty()).map_err(|e| self.errno(path, e))?;
                // Hash the object actually opened, with its own metadata, even if the path
                // was swapped since the stat (never read a FIFO or device put there).
                let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| self.errno(path, e))?;
                meta = meta_of(&st);
                let mut hasher = Hasher::new(&meta, &[]);
                if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                    READ_BUF
                        .with_borrow_mut(|buf| {
                            crate::hash::hash_reader_buf(&mut hasher, &mut File::from(fd), buf)
                        })
                        .map_err(|e| Error::io(self.host_path(path), e))?;
                }
                Ok(Some((hasher.finish(), meta)))
            }
            _ => Ok(Some((Hasher::new(&meta, &[]).finish(), meta))),
        }
    }

    /// Creates the directory `path` (its parent must exist) or, if it exists, brings its
    /// owner and mode to `meta`. Whatever else is in the way is removed first.
    pub fn make_dir(&self, path: &str, meta: &Meta) -> Result<()> {
        let parent = self.require_parent(path)?;
        match fstatat(parent.fd.as_fd(), parent.name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => {}
            Ok(st) => {
                self.remove_at(&parent, path, &st)?;
                self.mkdir_at(&parent, path)?;
            }
            Err(Errno::ENOENT) => self.mkdir_at(&parent, path)?,
            Err(e) => return Err(self.errno(path, e)),
        }
        let dir = openat(parent.fd.as_fd(), parent.name, DIR_FLAGS, Mode::empty())
            .map_err(|e| self.errno(path, e))?;
        apply_owner_mode(&dir, meta).map_err(|e| self.errno(path, e))
    }

    fn mkdir_at(&self, parent: &Parent, path: &str) -> Result<()> {
        // Created private; the real mode is applied after the owner, on the open handle.
        mkdirat(
            parent.fd.as_fd(),
            parent.name,
            Mode::from_bits_truncate(0o700),
        )
        .map_err(|e| self.errno(path, e))
    }

    fn require_parent<'p>(&self, path: &'p str) -> Result<Parent<'p>> {
        self.parent(path)?
            .ok_or_else(|| self.unsafe_path(path, "its parent directory does not exist"))
    }

    /// Places a verified staged object at the temporary name beside `path`, ready for
    /// [`TargetRoot::commit`]. Files are hard-linked from the staging area when `link` is
    /// set and the filesystems allow, else copied.
    pub fn place(&self, path: &str, staged: &Path, meta: &Meta, link: bool) -> Result<()> {
        let parent = self.require_parent(path)?;
        let tmp = parent.new_name();
        match unlinkat(parent.fd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.errno(path, e)),
        }
        match meta.kind {
            Kind::Symlink => {
                let target = std::fs::read_link(staged).map_err(|e| Error::io(staged, e))?;
                symlinkat(&target, parent.fd.as_fd(), tmp.as_str())
                    .map_err(|e| self.errno(path, e))?;
                fchownat(
                    parent.fd.as_fd(),
                    tmp.as_str(),
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.errno(path, e))
            }
            Kind::File => {
                if link {
                    let linked = linkat(
                        nix::fcntl::AT_FDCWD,
                        staged,
                        parent.fd.as_fd(),
                        tmp.as_str(),
                        AtFlags::empty(),
                    );
                    match linked {
                        Ok(()) => return Ok(()),
                        Err(Errno::EXDEV) | Err(Errno::EPERM) | Err(Errno::EMLINK) => {}
                        Err(e) => return Err(self.errno(path, e)),
                    }
                }
                self.copy_file(&parent, path, staged, meta)
            }
            Kind::Dir => Err(self.unsafe_path(path, "a directory cannot be placed as a file")),
        }
    }

    fn copy_file(&self, parent: &Parent, path: &str, staged: &Path, meta: &Meta) -> Result<()> {
        let tmp = parent.new_name();
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            parent.fd.as_fd(),
            tmp.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.errno(path, e))?;
        let mut out = File::from(fd);
        let mut src = File::open(staged).map_err(|e| Error::io(staged, e))?;
        std::io::copy(&mut src, &mut out).map_err(|e| Error::io(self.host_path(path), e))?;
        apply_owner_mode(&out, meta).map_err(|e| self.errno(path, e))
    }

    /// Atomically renames the placed temporary over `path`. A directory in the way is
    /// removed first (its tracked contents are deleted by the plan; anything else with it).
    pub fn commit(&self, path: &str) -> Result<()> {
        let parent = self.require_parent(path)?;
        if let Ok(st) = fstatat(parent.fd.as_fd(), parent.name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            if is_dir(&st) {
                self.remove_at(&parent, path, &st)?;
            }
        }
        let tmp = parent.new_name();
        renameat(
            parent.fd.as_fd(),
            tmp.as_str(),
            parent.fd.as_fd(),
            parent.name,
        )
        .map_err(|e| self.errno(path, e))?;
        // rename(2) does nothing when both names are links to one inode (a file linked
        // from the staging area by an interrupted run, placed again when finishing it):
        // the temporary name must not be left behind.
        match unlinkat(parent.fd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.errno(path, e)),
        }
    }

    /// Removes `path` if present. A directory is removed only when empty; a non-empty one
    /// is left in place and reported with `Ok(false)`.
    pub fn remove(&self, path: &str) -> Result<bool> {
        let parent = match self.parent(path) {
            Ok(Some(parent)) => parent,
            Ok(None) => return Ok(true),
            // A parent that is now a file or a symlink (a directory that became a file in
            // this release, or a local change): nothing is at `path` inside the root, and
            // the symlink is never followed.
            Err(Error::UnsafePath { .. }) => return Ok(true),
            Err(e) => return Err(e),
        };
        match fstatat(parent.fd.as_fd(), parent.name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => {
                match unlinkat(parent.fd.as_fd(), parent.name, UnlinkatFlags::RemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => Ok(true),
                    Err(Errno::ENOTEMPTY) | Err(Errno::EEXIST) => Ok(false),
                    Err(e) => Err(self.errno(path, e)),
                }
            }
            Ok(st) => self.remove_at(&parent, path, &st).map(|()| true),
            Err(Errno::ENOENT) => Ok(true),
            Err(e) => Err(self.errno(path, e)),
        }
    }

    /// Removes whatever is at the parent's name; directories recursively (without following
    /// symlinks, which std's remove_dir_all guarantees), after a rename out of the way.
    fn remove_at(&self, parent: &Parent, path: &str, st: &FileStat) -> Result<()> {
        if !is_dir(st) {
            return match unlinkat(parent.fd.as_fd(), parent.name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(self.errno(path, e)),
            };
        }
        let aside = format!(".chainup-old.{}", parent.name);
        renameat(
            parent.fd.as_fd(),
            parent.name,
            parent.fd.as_fd(),
            aside.as_str(),
        )
        .map_err(|e| self.errno(path, e))?;
        // The renamed directory sits beside `path`, whose parents were just walked safely.
        let host = self.host_path(path).with_file_name(&aside);
        std::fs::remove_dir_all(&host).map_err(|e| Error::io(host, e))
    }

    /// Flushes the root's filesystem to disk.
    pub fn sync(&self) -> Result<()> {
        nix::unistd::syncfs(self.fd.as_fd()).map_err(|e| Error::io(&self.path, e.into()))
    }
}

thread_local! {
    /// One read buffer per thread: allocating (and zeroing) it per file would cost more
    /// than reading a typical small file.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; crate::hash::READ_BUF]);
}

/// The hashed fields of an lstat/fstat result; special files hash as files, as in swupd.
fn meta_of(st: &FileStat) -> Meta {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::File,
    };
    Meta {
        kind,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size as u64,
    }
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Owner first: chown clears set-id bits, so the mode must come after it.
fn apply_owner_mode(fd: &impl AsFd, meta: &Meta) -> nix::Result<()> {
    fchown(
        fd.as_fd(),
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(meta.mode & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinked_parent() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("usr")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("usr/lib")).unwrap();
        let root = TargetRoot::open(dir.path()).unwrap();
        let err = root.parent("/usr/lib/x").err().unwrap();
        assert!(matches!(err, Error::UnsafePath { .. }), "{err}");
        let me = Meta::dir(
            0o755,
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        assert!(root.make_dir("/usr/lib/x", &me).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn places_and_commits_files() {
        let dir = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let staged = staging.path().join("f");
        std::fs::write(&staged, b"new").unwrap();
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let root = TargetRoot::open(dir.path()).unwrap();
        root.make_dir("/a", &Meta::dir(0o755, uid, gid)).unwrap();
        std::fs::write(dir.path().join("a/f"), b"old").unwrap();
        root.place("/a/f", &staged, &Meta::file(0o640, uid, gid, 3), false)
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/f")).unwrap(), b"old");
        root.commit("/a/f").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/f")).unwrap(), b"new");
        assert!(root.remove("/a/f").unwrap());
        assert!(root.lstat("/a/f").unwrap().is_none());
        assert!(root.remove("/a").unwrap());
    }

    #[test]
    fn committing_a_link_to_the_same_inode_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged");
        std::fs::write(&staged, b"new").unwrap();
        std::fs::hard_link(&staged, dir.path().join("f")).unwrap();
        let md = std::fs::metadata(&staged).unwrap();
        let root = TargetRoot::open(dir.path()).unwrap();
        root.place("/f", &staged, &Meta::from_metadata(&md), true)
            .unwrap();
        root.commit("/f").unwrap();
        assert!(root.lstat(&format!("/{NEW_PREFIX}f")).unwrap().is_none());
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
    }

    #[test]
    fn removing_below_a_file_or_symlink_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x"), b"keep").unwrap();
        std::fs::write(dir.path().join("was-a-dir"), b"now a file").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let root = TargetRoot::open(dir.path()).unwrap();
        assert!(root.remove("/was-a-dir/inner").unwrap());
        assert!(root.remove("/link/x").unwrap());
        assert!(outside.path().join("x").exists());
    }
}
