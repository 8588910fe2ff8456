//! The EFI System Partition, bootupd style: reached through a handle on `EFI/Linux` (no
//! symlink followed), a new binary written under a temporary name, fsynced, renamed into
//! place and the directory fsynced, stale temporaries removed at start.
//!
//! Boot entries are systemd-boot unified kernel images with automatic boot assessment:
//! `<product>-<version>+<left>[-<done>].efi` while on trial, `<product>-<version>.efi`
//! once `mark-good` accepted it. Temporaries do not end in `.efi`, so the boot loader never
//! sees a half-written binary.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::{Error, Result};

/// Prefix of binaries being copied; anything under it at start is a crash's leftover.
pub const TMP_PREFIX: &str = ".chainup-tmp.";
/// Tries systemd-boot gives a new entry before falling back (docs/ab.md).
pub const INITIAL_TRIES: u32 = 3;
/// Where unified kernel images live on the ESP.
pub const ENTRY_DIR: &str = "EFI/Linux";

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// A boot entry of our product on the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    /// The file name in `EFI/Linux`.
    pub name: String,
    pub version: u32,
    /// Tries left, while the entry is on trial (`+N`).
    pub tries_left: Option<u32>,
    /// Tries used so far (`-M`), once the boot loader counted one.
    pub tries_done: Option<u32>,
}

impl BootEntry {
    /// True once `mark-good` (or the installer) removed the counter.
    pub fn is_good(&self) -> bool {
        self.tries_left.is_none()
    }
}

/// The name of an entry: `<product>-<version>[+<tries>].efi`.
pub fn entry_name(product: &str, version: u32, tries: Option<u32>) -> String {
    match tries {
        Some(n) => format!("{product}-{version}+{n}.efi"),
        None => format!("{product}-{version}.efi"),
    }
}

/// Reads `<product>-<version>[+<left>[-<done>]].efi`; other names are not ours.
pub fn parse_entry(product: &str, name: &str) -> Option<BootEntry> {
    let stem = name.strip_prefix(product)?.strip_prefix('-')?;
    let stem = stem
        .strip_suffix(".efi")
        .or_else(|| stem.strip_suffix(".EFI"))?;
    let (version, counter) = match stem.split_once('+') {
        Some((v, c)) => (v, Some(c)),
        None => (stem, None),
    };
    let number = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let version = number(version).filter(|v| *v > 0)?;
    let (tries_left, tries_done) = match counter {
        None => (None, None),
        Some(c) => match c.split_once('-') {
            Some((left, done)) => (Some(number(left)?), Some(number(done)?)),
            None => (Some(number(c)?), None),
        },
    };
    Some(BootEntry {
        name: name.to_string(),
        version,
        tries_left,
        tries_done,
    })
}

/// The error of opening `path` as an ESP directory without following symlinks: a
/// symlink there (which `O_NOFOLLOW | O_DIRECTORY` reports as "Not a directory") is
/// named as such.
fn open_error(path: &Path, e: Errno, is_symlink: impl FnOnce() -> bool) -> Error {
    if matches!(e, Errno::ENOTDIR | Errno::ELOOP) && is_symlink() {
        return Error::Slot(format!(
            "{} is a symlink: the ESP and its {ENTRY_DIR} must be real directories (give the ESP's mount point)",
            path.display()
        ));
    }
    Error::io(path, e.into())
}

/// An open handle on `<esp>/EFI/Linux`.
pub struct Esp {
    dir: OwnedFd,
    path: PathBuf,
    product: String,
}

impl Esp {
    /// Opens `<esp>/EFI/Linux`, creating the two directories if they are missing (never
    /// through a symlink).
    pub fn open(esp: &Path, product: &str) -> Result<Esp> {
        Esp::open_inner(esp, product, true).map(|e| e.expect("created"))
    }

    /// Opens `<esp>/EFI/Linux` if it exists (for reading: `info`).
    pub fn open_existing(esp: &Path, product: &str) -> Result<Option<Esp>> {
        Esp::open_inner(esp, product, false)
    }

    fn open_inner(esp: &Path, product: &str, create: bool) -> Result<Option<Esp>> {
        // The ESP itself is not followed either: a symlink there could be repointed to
        // make the boot entries land outside the partition the firmware reads.
        let mut fd = nix::fcntl::open(esp, DIR_FLAGS, Mode::empty()).map_err(|e| {
            open_error(esp, e, || {
                std::fs::symlink_metadata(esp).is_ok_and(|md| md.file_type().is_symlink())
            })
        })?;
        let mut path = esp.to_path_buf();
        for comp in ENTRY_DIR.split('/') {
            path.push(comp);
            let at = |e| {
                open_error(&path, e, || {
                    nix::sys::stat::fstatat(fd.as_fd(), comp, AtFlags::AT_SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
                })
            };
            fd = match openat(fd.as_fd(), comp, DIR_FLAGS, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(fd.as_fd(), comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(Error::io(&path, e.into())),
                    }
                    sync_fd(&fd, path.parent().unwrap_or(esp))?;
                    openat(fd.as_fd(), comp, DIR_FLAGS, Mode::empty())
                        .map_err(|e| Error::io(&path, e.into()))?
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(at(e)),
            };
        }
        Ok(Some(Esp {
            dir: fd,
            path,
            product: product.to_string(),
        }))
    }

    /// The `EFI/Linux` path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn names(&self) -> Result<Vec<String>> {
        let mut dir = nix::dir::Dir::openat(
            self.dir.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(&self.path, e.into()))?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| Error::io(&self.path, e.into()))?;
            if let Ok(name) = entry.file_name().to_str() {
                if name != "." && name != ".." {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Our product's boot entries, oldest version first.
    pub fn entries(&self) -> Result<Vec<BootEntry>> {
        let mut out: Vec<BootEntry> = self
            .names()?
            .iter()
            .filter_map(|n| parse_entry(&self.product, n))
            .collect();
        out.sort_by(|a, b| (a.version, &a.name).cmp(&(b.version, &b.name)));
        Ok(out)
    }

    /// Removes temporaries a killed copy left behind; returns how many.
    pub fn clean_temporaries(&self) -> Result<usize> {
        let stale: Vec<String> = self
            .names()?
            .into_iter()
            .filter(|n| n.starts_with(TMP_PREFIX))
            .collect();
        for name in &stale {
            self.unlink(name)?;
        }
        if !stale.is_empty() {
            self.sync()?;
        }
        Ok(stale.len())
    }

    /// Removes an entry (not yet durable: call [`Esp::sync`]).
    pub fn remove(&self, entry: &BootEntry) -> Result<()> {
        self.unlink(&entry.name)
    }

    fn unlink(&self, name: &str) -> Result<()> {
        match unlinkat(self.dir.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::io(self.path.join(name), e.into())),
        }
    }

    /// fsyncs `EFI/Linux`, making removals and renames in it durable.
    pub fn sync(&self) -> Result<()> {
        sync_fd(&self.dir, &self.path)
    }

    /// Copies a verified binary in as `<product>-<version>+3.efi`: a temporary name, fsync,
    /// rename, fsync of the directory. Returns the entry's name.
    pub fn install(&self, mut binary: impl Read, version: u32) -> Result<String> {
        let tmp = format!("{TMP_PREFIX}{}-{version}", self.product);
        let tmp_path = self.path.join(&tmp);
        self.unlink(&tmp)?;
        let fd = openat(
            self.dir.as_fd(),
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| Error::io(&tmp_path, e.into()))?;
        let mut out = File::from(fd);
        let copied = std::io::copy(&mut binary, &mut out)
            .and_then(|_| out.flush())
            .and_then(|()| out.sync_all());
        if let Err(e) = copied {
            let _ = self.unlink(&tmp);
            return Err(Error::io(&tmp_path, e));
        }
        drop(out);
        crate::failpoint::point("esp::temporary")?;
        let name = entry_name(&self.product, version, Some(INITIAL_TRIES));
        renameat(
            self.dir.as_fd(),
            tmp.as_str(),
            self.dir.as_fd(),
            name.as_str(),
        )
        .map_err(|e| Error::io(self.path.join(&name), e.into()))?;
        self.sync()?;
        Ok(name)
    }

    /// Drops the boot counter of `entry` (`+N[-M]`), durably; returns the new name.
    pub fn mark_good(&self, entry: &BootEntry) -> Result<String> {
        let name = entry_name(&self.product, entry.version, None);
        if entry.name != name {
            renameat(
                self.dir.as_fd(),
                entry.name.as_str(),
                self.dir.as_fd(),
                name.as_str(),
            )
            .map_err(|e| Error::io(self.path.join(&entry.name), e.into()))?;
            self.sync()?;
        }
        Ok(name)
    }
}

fn sync_fd(fd: &OwnedFd, path: &Path) -> Result<()> {
    nix::unistd::fsync(fd.as_fd()).map_err(|e| Error::io(path, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_round_trip() {
        let e = parse_entry("clip-os", "clip-os-20+3.efi").unwrap();
        assert_eq!((e.version, e.tries_left, e.tries_done), (20, Some(3), None));
        let e = parse_entry("clip-os", "clip-os-20+2-1.efi").unwrap();
        assert_eq!((e.tries_left, e.tries_done), (Some(2), Some(1)));
        assert!(parse_entry("clip-os", "clip-os-20.efi").unwrap().is_good());
        for bad in [
            "clip-os-.efi",
            "clip-os-x.efi",
            "clip-os-20+.efi",
            "clip-os-20+a.efi",
            "other-20.efi",
            "clip-os-20.conf",
            "clip-os-0.efi",
            ".chainup-tmp.clip-os-20",
        ] {
            assert_eq!(parse_entry("clip-os", bad), None, "{bad}");
        }
        assert_eq!(entry_name("p", 7, Some(3)), "p-7+3.efi");
    }

    #[test]
    fn install_clean_and_mark_good() {
        let dir = tempfile::tempdir().unwrap();
        let esp = Esp::open(dir.path(), "os").unwrap();
        let linux = dir.path().join(ENTRY_DIR);
        std::fs::write(linux.join(".chainup-tmp.os-9"), b"half").unwrap();
        assert_eq!(esp.clean_temporaries().unwrap(), 1);
        let name = esp.install(&b"MZ new"[..], 20).unwrap();
        assert_eq!(name, "os-20+3.efi");
        assert_eq!(std::fs::read(linux.join(&name)).unwrap(), b"MZ new");
        std::fs::rename(linux.join(&name), linux.join("os-20+2-1.efi")).unwrap();
        let entries = esp.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(esp.mark_good(&entries[0]).unwrap(), "os-20.efi");
        assert!(linux.join("os-20.efi").exists());
        assert_eq!(std::fs::read_dir(&linux).unwrap().count(), 1);
    }
}
