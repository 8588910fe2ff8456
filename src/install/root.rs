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

use std::os::fd::AsRawFd;

use crate::chain::StagedFile;
use crate::hash::{Hash, Hasher, Kind, Meta};
use crate::manifest::RootPath;
use crate::{Error, Result};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Prefix of the temporary names files are placed under before the atomic rename. The
/// newline puts them in a name space no manifest path can reach (paths with a newline
/// are refused by the parser), so a release can never name, or collide with, one.
pub const TEMP_PREFIX: &str = ".chainup\n";

/// The temporary name of the `slot`-th entry a transaction places.
pub fn temp_name(slot: usize) -> String {
    format!("{TEMP_PREFIX}{slot}")
}

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

/// Whether opening a root may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// os-install: a missing root directory is made (its parents 0755, itself 0755).
    IfMissing,
    /// Every other command: the root must exist.
    Never,
}

impl TargetRoot {
    /// Opens the root directory. A root given as a symlink is refused (the walk below it
    /// never follows one, and the root must not be the one exception).
    pub fn open(path: &Path, create: Create) -> Result<TargetRoot> {
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_symlink() => {
                let to = std::fs::read_link(path).unwrap_or_default();
                return Err(Error::UnsafePath {
                    path: path.display().to_string(),
                    reason: format!(
                        "the root is a symlink (to {}); give the real directory",
                        to.display()
                    ),
                });
            }
            Ok(md) if !md.is_dir() => {
                return Err(Error::UnsafePath {
                    path: path.display().to_string(),
                    reason: "the root is not a directory".into(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create == Create::IfMissing => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(path)
                    .map_err(|e| Error::io(path, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Usage(format!(
                    "the root {} does not exist",
                    path.display()
                )))
            }
            Err(e) => return Err(Error::io(path, e)),
        }
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
        // The walk refuses what a validated path cannot hold, whoever calls it: a relative
        // path, an empty, `.` or `..` component.
        let Some(rel) = path.strip_prefix('/') else {
            return Err(self.unsafe_path(path, "not an absolute path"));
        };
        if rel.split('/').any(|c| matches!(c, "" | "." | "..")) {
            return Err(self.unsafe_path(path, "an empty, `.` or `..` component"));
        }
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
        let meta = meta_of(&st);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(|e| self.errno(path, e))?;
                let mut hasher = Hasher::new(&meta, &[]);
                hasher.update(target.as_bytes());
                Ok(Some((hasher.finish(), meta)))
            }
            libc::S_IFREG => {
                let (_, hash, meta) = self.open_hashed(dir, name, path)?;
                Ok(Some((hash, meta)))
            }
            _ => Ok(Some((Hasher::new(&meta, &[]).finish(), meta))),
        }
    }

    /// Opens the regular file at `path` for reading through safe parents and hashes the
    /// object opened (not the path); `None` if it is missing or not a regular file. A
    /// delta is applied to this descriptor only if the hash is its from-hash.
    pub fn open_file(&self, path: &str) -> Result<Option<(File, Hash)>> {
        let Some(parent) = self.parent(path)? else {
            return Ok(None);
        };
        match self.open_hashed(parent.fd.as_fd(), parent.name, path) {
            Ok((file, hash, meta)) if meta.mode & libc::S_IFMT == libc::S_IFREG => {
                Ok(Some((file, hash)))
            }
            Ok(_) => Ok(None),
            Err(Error::Io { source, .. })
                if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens entry `name` of `dir` without following a symlink and hashes the object
    /// actually opened, with its own metadata, even if the path was swapped since a stat;
    /// a FIFO or device put there is hashed by metadata and never read.
    fn open_hashed(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        path: &str,
    ) -> Result<(File, Hash, Meta)> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(dir, name, flags, Mode::empty()).map_err(|e| self.errno(path, e))?;
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| self.errno(path, e))?;
        let meta = meta_of(&st);
        let mut hasher = Hasher::new(&meta, &[]);
        let mut file = File::from(fd);
        if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            READ_BUF
                .with_borrow_mut(|buf| crate::hash::hash_reader_buf(&mut hasher, &mut file, buf))
                .map_err(|e| Error::io(self.host_path(path), e))?;
        }
        Ok((file, hasher.finish(), meta))
    }

    /// Creates the directory `path` (its parent must exist) or, if it exists, brings its
    /// owner and mode to `meta`. A file or symlink in the way is removed first (a release
    /// that turns a file into a directory); a directory in the way is kept.
    pub(in crate::install) fn make_dir(&self, path: &RootPath, meta: &Meta) -> Result<()> {
        let parent = self.require_parent(path)?;
        match fstatat(parent.fd.as_fd(), parent.name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_dir(&st) => {}
            Ok(_) => {
                self.unlink(&parent, path)?;
                self.mkdir_at(&parent, path)?;
            }
            Err(Errno::ENOENT) => self.mkdir_at(&parent, path)?,
            Err(e) => return Err(self.errno(path, e)),
        }
        let dir = openat(parent.fd.as_fd(), parent.name, DIR_FLAGS, Mode::empty())
            .map_err(|e| self.errno(path, e))?;
        apply_owner_mode(&dir, meta).map_err(|e| self.errno(path, e))
    }

    /// Creates the empty file `path` unless it exists: a fixed bookkeeping path of the
    /// installed system (swupd's tracking of the bundles asked for), never release content.
    /// Missing directories on the way are made 0755; each step is [`TargetRoot::parent`]'s
    /// walk, so none may be a symlink.
    pub fn touch_state_file(&self, path: &str) -> Result<()> {
        let dirs = path.match_indices('/').skip(1).map(|(end, _)| &path[..end]);
        for dir in dirs {
            let parent = self.require_parent(dir)?;
            match mkdirat(
                parent.fd.as_fd(),
                parent.name,
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(self.errno(dir, e)),
            }
        }
        let parent = self.require_parent(path)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        openat(
            parent.fd.as_fd(),
            parent.name,
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map(drop)
        .map_err(|e| self.errno(path, e))
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

    /// Places a verified staged object under the temporary name `temp_name(slot)` beside
    /// `path`, ready for [`TargetRoot::commit`]. A file is taken from `opened`, the
    /// descriptor [`StagedFile::open_verified`] checked (opened here when `None`):
    /// hard-linked when `link` is set and the filesystems allow, else copied.
    pub(in crate::install) fn place(
        &self,
        path: &RootPath,
        slot: usize,
        staged: &StagedFile,
        opened: Option<&File>,
        link: bool,
    ) -> Result<()> {
        let parent = self.require_parent(path)?;
        let tmp = temp_name(slot);
        match unlinkat(parent.fd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.errno(path, e)),
        }
        let meta = staged.meta();
        match meta.kind {
            Kind::Symlink => {
                let target = staged.link_target().ok_or_else(|| {
                    self.unsafe_path(path, "the staged symlink has no verified target")
                })?;
                symlinkat(target, parent.fd.as_fd(), tmp.as_str())
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
                let own;
                let src = match opened {
                    Some(f) => f,
                    None => {
                        own = staged.open_verified()?;
                        &own
                    }
                };
                if link {
                    // Links the inode behind the checked descriptor, whatever its name is now.
                    let proc = format!("/proc/self/fd/{}", src.as_raw_fd());
                    let linked = linkat(
                        nix::fcntl::AT_FDCWD,
                        proc.as_str(),
                        parent.fd.as_fd(),
                        tmp.as_str(),
                        AtFlags::AT_SYMLINK_FOLLOW,
                    );
                    match linked {
                        Ok(()) => return Ok(()),
                        Err(Errno::EXDEV | Errno::EPERM | Errno::EMLINK | Errno::ENOENT) => {}
                        Err(e) => return Err(self.errno(path, e)),
                    }
                }
                self.copy_file(&parent, path, tmp.as_str(), src, meta)
            }
            Kind::Dir => Err(self.unsafe_path(path, "a directory cannot be placed as a file")),
        }
    }

    fn copy_file(
        &self,
        parent: &Parent,
        path: &str,
        tmp: &str,
        mut src: &File,
        meta: &Meta,
    ) -> Result<()> {
        use std::io::Seek;
        // The descriptor may serve several paths with the same content.
        src.rewind()
            .map_err(|e| Error::io(self.host_path(path), e))?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            parent.fd.as_fd(),
            tmp,
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.errno(path, e))?;
        let mut out = File::from(fd);
        std::io::copy(&mut src, &mut out).map_err(|e| Error::io(self.host_path(path), e))?;
        apply_owner_mode(&out, meta).map_err(|e| self.errno(path, e))
    }

    /// Atomically renames the temporary placed for `slot` over `path`. The transaction
    /// has cleared a directory out of the way first; one still there fails the rename.
    pub(in crate::install) fn commit(&self, path: &RootPath, slot: usize) -> Result<()> {
        let parent = self.require_parent(path)?;
        let tmp = temp_name(slot);
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

    /// What is at `path` now: `None` when missing, else whether it is a directory.
    pub fn is_dir(&self, path: &str) -> Result<Option<bool>> {
        Ok(self.lstat(path)?.map(|st| is_dir(&st)))
    }

    /// Removes `path` if present. A directory is removed only when empty; a non-empty one
    /// is left in place and reported with `Ok(false)`. Nothing is removed recursively.
    pub(in crate::install) fn remove(&self, path: &RootPath) -> Result<bool> {
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
            Ok(_) => self.unlink(&parent, path).map(|()| true),
            Err(Errno::ENOENT) => Ok(true),
            Err(e) => Err(self.errno(path, e)),
        }
    }

    fn unlink(&self, parent: &Parent, path: &str) -> Result<()> {
        match unlinkat(parent.fd.as_fd(), parent.name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(self.errno(path, e)),
        }
    }

    /// Moves the directory at `path` to `to` (whose parent exists), never removing
    /// anything. `Ok(false)` when the two are on different filesystems.
    pub(in crate::install) fn move_dir(&self, path: &RootPath, to: &RootPath) -> Result<bool> {
        let from = self.require_parent(path)?;
        let dest = self.require_parent(to)?;
        match renameat(from.fd.as_fd(), from.name, dest.fd.as_fd(), dest.name) {
            Ok(()) => Ok(true),
            Err(Errno::EXDEV) => Ok(false),
            Err(e) => Err(self.errno(path, e)),
        }
    }

    /// Renames the directory at `path` to a free name beside it (`<name>.chainup-saved-<tag>`,
    /// then `.1`, `.2`...), for when it cannot move to another directory; returns the name.
    pub(in crate::install) fn save_beside(&self, path: &RootPath, tag: &str) -> Result<RootPath> {
        self.rename_beside(path, |name, n| match n {
            0 => format!("{name}.chainup-saved-{tag}"),
            n => format!("{name}.chainup-saved-{tag}.{n}"),
        })
    }

    /// Renames the directory a release deletes but that still holds entries no manifest
    /// lists to `.deleted.<tag>.<name>` beside itself, as swupd does
    /// (`.deleted.<time>.<name>`): the data stays, out of the way of later releases.
    pub(in crate::install) fn set_deleted_aside(
        &self,
        path: &RootPath,
        tag: &str,
    ) -> Result<RootPath> {
        self.rename_beside(path, |name, n| match n {
            0 => format!(".deleted.{tag}.{name}"),
            n => format!(".deleted.{tag}.{n}.{name}"),
        })
    }

    /// Renames `path` within its directory to the first free name `name_for(name, n)`
    /// gives for n = 0, 1, ...
    fn rename_beside(
        &self,
        path: &RootPath,
        name_for: impl Fn(&str, u32) -> String,
    ) -> Result<RootPath> {
        let parent = self.require_parent(path)?;
        for n in 0..1000 {
            let name = name_for(parent.name, n);
            match fstatat(
                parent.fd.as_fd(),
                name.as_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(_) => continue,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(self.errno(path, e)),
            }
            renameat(
                parent.fd.as_fd(),
                parent.name,
                parent.fd.as_fd(),
                name.as_str(),
            )
            .map_err(|e| self.errno(path, e))?;
            let saved = match path.parent() {
                Some(dir) => format!("{dir}/{name}"),
                None => format!("/{name}"),
            };
            return RootPath::new(&saved).map_err(|reason| self.unsafe_path(path, reason));
        }
        Err(self.unsafe_path(path, "no free name to move it aside"))
    }

    /// Removes the temporaries an installer placed in directory `dir` (`None`: the root
    /// itself). Their names hold a newline, which no manifest path can, so nothing
    /// published is ever taken for one. A directory that is gone or unsafe holds none.
    pub(in crate::install) fn sweep_temps(&self, dir: Option<&RootPath>) -> Result<usize> {
        let fd = match dir {
            None => self.fd.try_clone().map_err(|e| Error::io(&self.path, e))?,
            Some(dir) => match self.parent(dir) {
                Ok(Some(p)) => match openat(p.fd.as_fd(), p.name, DIR_FLAGS, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => return Ok(0),
                    Err(e) => return Err(self.errno(dir, e)),
                },
                Ok(None) | Err(Error::UnsafePath { .. }) => return Ok(0),
                Err(e) => return Err(e),
            },
        };
        let label = dir.map_or("/", |d| d.as_str());
        let mut listing =
            nix::dir::Dir::from_fd(fd.try_clone().map_err(|e| Error::io(&self.path, e))?)
                .map_err(|e| self.errno(label, e))?;
        let names: Vec<std::ffi::CString> = listing
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes().starts_with(TEMP_PREFIX.as_bytes()))
            .collect();
        for name in &names {
            match unlinkat(fd.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(self.errno(label, e)),
            }
        }
        Ok(names.len())
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

    fn rp(p: &str) -> RootPath {
        RootPath::new(p).unwrap()
    }

    fn me() -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    #[test]
    fn refuses_symlinked_parent() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("usr")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("usr/lib")).unwrap();
        let root = TargetRoot::open(dir.path(), Create::Never).unwrap();
        let err = root.parent("/usr/lib/x").err().unwrap();
        assert!(matches!(err, Error::UnsafePath { .. }), "{err}");
        let (uid, gid) = me();
        assert!(root
            .make_dir(&rp("/usr/lib/x"), &Meta::dir(0o755, uid, gid))
            .is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_state_file_is_made_with_its_directories_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = TargetRoot::open(dir.path(), Create::Never).unwrap();
        root.touch_state_file("/var/lib/swupd/bundles/os-core")
            .unwrap();
        root.touch_state_file("/var/lib/swupd/bundles/os-core")
            .unwrap();
        let md = std::fs::metadata(dir.path().join("var/lib/swupd/bundles/os-core")).unwrap();
        assert!(md.is_file() && md.len() == 0);

        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("var/lib/other")).unwrap();
        let err = root
            .touch_state_file("/var/lib/other/bundles/x")
            .err()
            .unwrap();
        assert!(matches!(err, Error::UnsafePath { .. }), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_walk_refuses_what_a_root_path_cannot_hold() {
        let dir = tempfile::tempdir().unwrap();
        let root = TargetRoot::open(dir.path(), Create::Never).unwrap();
        for bad in ["relative", "/a/../b", "/a//b", "/./a"] {
            assert!(
                matches!(root.parent(bad), Err(Error::UnsafePath { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_symlinked_or_missing_root_is_refused_and_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let err = TargetRoot::open(&dir.path().join("link"), Create::IfMissing)
            .err()
            .unwrap();
        assert!(err.to_string().contains("symlink"), "{err}");
        let missing = dir.path().join("missing");
        assert!(TargetRoot::open(&missing, Create::Never).is_err());
        assert!(!missing.exists());
    }

    #[test]
    fn places_and_commits_files() {
        let dir = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let staged = staging.path().join("f");
        std::fs::write(&staged, b"new").unwrap();
        let (uid, gid) = me();
        let root = TargetRoot::open(dir.path(), Create::Never).unwrap();
        root.make_dir(&rp("/a"), &Meta::dir(0o755, uid, gid))
            .unwrap();
        std::fs::write(dir.path().join("a/f"), b"old").unwrap();
        root.place(&rp("/a/f"), 0, &StagedFile::for_test(&staged), None, false)
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/f")).unwrap(), b"old");
        root.commit(&rp("/a/f"), 0).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/f")).unwrap(), b"new");
        assert!(root.remove(&rp("/a/f")).unwrap());
        assert!(root.lstat("/a/f").unwrap().is_none());
        assert!(root.remove(&rp("/a")).unwrap());
    }

    #[test]
    fn a_swapped_staged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged");
        std::fs::write(&staged, b"verified").unwrap();
        let file = StagedFile::for_test(&staged);
        std::fs::remove_file(&staged).unwrap();
        std::fs::write(&staged, b"swapped!").unwrap();
        let root = TargetRoot::open(dir.path(), Create::Never).unwrap();
        let err = root.place(&rp("/f"), 0, &file, None, true).err().unwrap();
        assert!(err.to_string().contains("changed after its hash"), "{err}");
        assert!(root.lstat("/f").unwrap().is_none());
    }

    #[test]
    fn committing_a_link_to_the_same_inode_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged");
        std::fs::write(&staged, b"new").unwrap();
        std::fs::hard_link(&staged, dir.path().join("f")).unwrap();
        let root = TargetRoot::open(dir.path(), Create::Never).unwrap();
        root.place(&rp("/f"), 7, &StagedFile::for_test(&staged), None, true)
            .unwrap();
        root.commit(&rp("/f"), 7).unwrap();
        assert!(!dir.path().join(temp_name(7)).exists());
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
    }

    #[test]
    fn sweeping_removes_temporaries_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(temp_name(3)), b"debris").unwrap();
        std::fs::write(dir.path().join(".chainup-new.tool"), b"published").unwrap();
        let root = TargetRoot::open(dir.path(), Create::Never).unwrap();
        assert_eq!(root.sweep_temps(None).unwrap(), 1);
        assert!(dir.path().join(".chainup-new.tool").exists());
    }

    #[test]
    fn removing_below_a_file_or_symlink_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x"), b"keep").unwrap();
        std::fs::write(dir.path().join("was-a-dir"), b"now a file").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let root = TargetRoot::open(dir.path(), Create::Never).unwrap();
        assert!(root.remove(&rp("/was-a-dir/inner")).unwrap());
        assert!(root.remove(&rp("/link/x")).unwrap());
        assert!(outside.path().join("x").exists());
    }
}
