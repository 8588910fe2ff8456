//! The A/B slots of the `[slots]` config table, and which one is running.
//!
//! The active slot is read from the kernel command line (`chainup.slot=a|b`, or `root=`
//! naming one of the slot devices) and from the device mounted at `/`. Every source that
//! names a slot is evidence; evidence that disagrees, or no evidence at all, is refused
//! with what was seen, never guessed: writing the wrong slot destroys the running system.

use std::fmt;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::config;
use crate::{Error, Result};

/// Default place of the kernel command line.
pub const DEFAULT_CMDLINE: &str = "/proc/cmdline";
/// Default place of the mount table.
pub const DEFAULT_MOUNTINFO: &str = "/proc/self/mountinfo";

// BLKGETSIZE64 = _IOR(0x12, 114, size_t): the size of a block device in bytes.
nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);

/// One of the two core slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// Both slots, in order.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The slot that is not this one.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `a` or `b`, as on the command line and in the record.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

/// What a slot path is on disk: a block device (by device number) or an image file (by
/// filesystem and inode), so that two spellings of one device compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Block { rdev: u64 },
    File { dev: u64, ino: u64 },
}

impl Identity {
    /// The identity of what `path` resolves to (symlinks followed).
    pub fn of(path: &Path) -> Result<Identity> {
        let md = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        Identity::from_metadata(path, &md)
    }

    /// The identity of an opened file, so the check holds for the very descriptor written.
    pub fn of_file(file: &std::fs::File, path: &Path) -> Result<Identity> {
        let md = file.metadata().map_err(|e| Error::io(path, e))?;
        Identity::from_metadata(path, &md)
    }

    fn from_metadata(path: &Path, md: &std::fs::Metadata) -> Result<Identity> {
        if md.file_type().is_block_device() {
            Ok(Identity::Block { rdev: md.rdev() })
        } else if md.is_file() {
            Ok(Identity::File {
                dev: md.dev(),
                ino: md.ino(),
            })
        } else {
            Err(Error::Slot(format!(
                "{} is neither a block device nor an image file",
                path.display()
            )))
        }
    }
}

/// The `[slots]` table, checked and with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    /// EFI binaries are `EFI/Linux/<product>-<version>.efi`.
    pub product: String,
    pub core_a: PathBuf,
    pub core_b: PathBuf,
    /// The ESP mount point.
    pub esp: PathBuf,
    pub cmdline: PathBuf,
    pub mountinfo: PathBuf,
    /// Assemble core images from chunks seeded by the running slot when the release
    /// offers a chunk index (`chunks = false`: always the full image).
    pub chunks: bool,
}

/// The running slot and the evidence it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub slot: Slot,
    /// Each source that named the slot, e.g. `chainup.slot=a in /proc/cmdline`.
    pub evidence: Vec<String>,
}

impl Slots {
    /// Checks the config table: product, both core slots and the ESP are required.
    pub fn from_config(c: &config::Slots) -> Result<Slots> {
        let need = |v: &Option<PathBuf>, key: &str| {
            v.clone()
                .ok_or_else(|| Error::Slot(format!("the [slots] table has no {key}")))
        };
        let product = c
            .product
            .clone()
            .ok_or_else(|| Error::Slot("the [slots] table has no product".into()))?;
        // The product becomes part of file names on the ESP.
        let safe = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-');
        if product.is_empty() || !product.chars().all(safe) || product.starts_with('.') {
            return Err(Error::Slot(format!(
                "product {product:?} must be ASCII letters, digits, '.', '_' or '-'"
            )));
        }
        Ok(Slots {
            product,
            core_a: need(&c.core_a, "core_a")?,
            core_b: need(&c.core_b, "core_b")?,
            esp: need(&c.esp, "esp")?,
            cmdline: c.cmdline.clone().unwrap_or_else(|| DEFAULT_CMDLINE.into()),
            mountinfo: c
                .mountinfo
                .clone()
                .unwrap_or_else(|| DEFAULT_MOUNTINFO.into()),
            chunks: c.chunks.unwrap_or(true),
        })
    }

    /// The configured path of a slot.
    pub fn path(&self, slot: Slot) -> &Path {
        match slot {
            Slot::A => &self.core_a,
            Slot::B => &self.core_b,
        }
    }

    /// Both slots' identities; refuses a config whose two slots are one device or file.
    pub fn identities(&self) -> Result<[Identity; 2]> {
        let a = Identity::of(&self.core_a)?;
        let b = Identity::of(&self.core_b)?;
        if a == b {
            return Err(Error::Slot(format!(
                "core_a ({}) and core_b ({}) are the same {}",
                self.core_a.display(),
                self.core_b.display(),
                describe(a)
            )));
        }
        Ok([a, b])
    }

    /// Which slot an identity is, if either.
    fn which(&self, ids: &[Identity; 2], id: Identity) -> Option<Slot> {
        Slot::ALL.into_iter().find(|s| ids[*s as usize] == id)
    }

    /// The running slot, from the kernel command line and the mount table.
    pub fn active(&self) -> Result<Active> {
        let ids = self.identities()?;
        let cmdline = std::fs::read_to_string(&self.cmdline).map_err(|e| {
            Error::Slot(format!(
                "cannot read the kernel command line {}: {e}",
                self.cmdline.display()
            ))
        })?;
        let mut evidence: Vec<(Slot, String)> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let from = self.cmdline.display();
        for (key, value) in cmdline_params(&cmdline) {
            match key {
                "chainup.slot" => {
                    let slot = match value {
                        "a" => Slot::A,
                        "b" => Slot::B,
                        _ => {
                            return Err(Error::Slot(format!(
                                "chainup.slot={value} in {from}: expected a or b"
                            )))
                        }
                    };
                    evidence.push((slot, format!("chainup.slot={value} in {from}")));
                }
                "root" => match self.root_param(&ids, value) {
                    Ok(slot) => {
                        evidence.push((slot, format!("root={value} in {from} is core_{slot}")))
                    }
                    Err(why) => seen.push(format!("root={value} in {from} {why}")),
                },
                _ => {}
            }
        }
        if !cmdline_params(&cmdline).any(|(k, _)| k == "chainup.slot" || k == "root") {
            seen.push(format!("{from} has neither chainup.slot= nor root="));
        }
        match self.root_mount(&ids) {
            Ok((slot, what)) => evidence.push((slot, what)),
            Err(why) => seen.push(why),
        }
        let Some((first, _)) = evidence.first() else {
            return Err(Error::Slot(format!(
                "cannot tell the active slot (core_a is {}, core_b is {}): {}",
                self.core_a.display(),
                self.core_b.display(),
                seen.join("; ")
            )));
        };
        let first = *first;
        let said: Vec<String> = evidence.iter().map(|(_, w)| w.clone()).collect();
        if evidence.iter().any(|(s, _)| *s != first) {
            return Err(Error::Slot(format!(
                "conflicting information about the active slot: {}",
                said.join("; ")
            )));
        }
        Ok(Active {
            slot: first,
            evidence: said,
        })
    }

    /// The slot `root=VALUE` names, or why it names none.
    fn root_param(&self, ids: &[Identity; 2], value: &str) -> Result<Slot, String> {
        let path = match value.split_once('=') {
            // root=UUID=..., PARTUUID=..., LABEL=...: udev's links name the device.
            Some((tag, id)) if !value.starts_with('/') => {
                let dir = match tag {
                    "UUID" => "by-uuid",
                    "PARTUUID" => "by-partuuid",
                    "LABEL" => "by-label",
                    "PARTLABEL" => "by-partlabel",
                    _ => return Err("is not a device path".into()),
                };
                Path::new("/dev/disk").join(dir).join(id)
            }
            _ => PathBuf::from(value),
        };
        if !path.is_absolute() {
            return Err("is not a device path".into());
        }
        let id = Identity::of(&path).map_err(|e| format!("cannot be resolved ({e})"))?;
        self.which(ids, id)
            .ok_or_else(|| format!("is {}, neither slot", describe(id)))
    }

    /// The slot mounted at `/`, or why none is.
    fn root_mount(&self, ids: &[Identity; 2]) -> Result<(Slot, String), String> {
        let path = &self.mountinfo;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let Some(m) = root_mount(&text) else {
            return Err(format!("{} has no mount at /", path.display()));
        };
        let what = format!(
            "/ is mounted from {} ({}:{}) per {}",
            m.source,
            m.major,
            m.minor,
            path.display()
        );
        let rdev = nix::sys::stat::makedev(m.major, m.minor);
        if let Some(slot) = self.which(ids, Identity::Block { rdev }) {
            return Ok((slot, format!("{what}, which is core_{slot}")));
        }
        // An image-file slot is mounted through a loop device; the kernel names its file.
        let backing = format!("/sys/dev/block/{}:{}/loop/backing_file", m.major, m.minor);
        if let Ok(file) = std::fs::read_to_string(&backing) {
            if let Ok(id) = Identity::of(Path::new(file.trim_end())) {
                if let Some(slot) = self.which(ids, id) {
                    return Ok((slot, format!("{what}, a loop device over core_{slot}")));
                }
            }
        }
        Err(format!("{what}, which is neither slot"))
    }

    /// Bytes a slot can hold: the device size, or the image file's size.
    pub fn capacity(file: &std::fs::File, path: &Path) -> Result<u64> {
        let md = file.metadata().map_err(|e| Error::io(path, e))?;
        if md.file_type().is_block_device() {
            let mut size = 0u64;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid.
            unsafe { blkgetsize64(file.as_raw_fd(), &mut size) }
                .map_err(|e| Error::io(path, e.into()))?;
            Ok(size)
        } else {
            Ok(md.len())
        }
    }
}

fn describe(id: Identity) -> String {
    match id {
        Identity::Block { rdev } => format!(
            "block device {}:{}",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev)
        ),
        Identity::File { dev, ino } => format!("file (device {dev}, inode {ino})"),
    }
}

/// `key=value` parameters of a kernel command line; double quotes around a value (or the
/// whole parameter) are dropped as the kernel does.
pub fn cmdline_params(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split_ascii_whitespace().filter_map(|param| {
        let param = param.trim_matches('"');
        let (k, v) = param.split_once('=')?;
        Some((k, v.trim_matches('"')))
    })
}

/// The mount at `/` in a mountinfo table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMount {
    pub major: u64,
    pub minor: u64,
    pub source: String,
}

/// The topmost mount at `/` (a later line mounted over an earlier one wins).
pub fn root_mount(mountinfo: &str) -> Option<RootMount> {
    mountinfo.lines().filter_map(parse_mount_line).next_back()
}

fn parse_mount_line(line: &str) -> Option<RootMount> {
    let mut fields = line.split(' ');
    let devno = fields.nth(2)?;
    let mount_point = fields.nth(1)?;
    if mount_point != "/" {
        return None;
    }
    // Optional fields end at a lone "-"; then come the type and the source.
    let mut rest = fields.skip_while(|f| *f != "-");
    let source = rest.nth(2).unwrap_or("?").to_string();
    let (major, minor) = devno.split_once(':')?;
    Some(RootMount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_params_split_and_unquote() {
        let p: Vec<_> =
            cmdline_params("BOOT_IMAGE=/vmlinuz root=\"/dev/a b\" quiet chainup.slot=b\n")
                .collect();
        assert_eq!(
            p,
            vec![
                ("BOOT_IMAGE", "/vmlinuz"),
                ("root", "/dev/a"),
                ("chainup.slot", "b")
            ]
        );
    }

    #[test]
    fn root_mount_takes_the_topmost() {
        let text = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    30 22 0:5 / /dev rw shared:2 - devtmpfs udev rw\n\
                    40 22 253:3 / / rw shared:1 master:2 - xfs /dev/mapper/vg-core_b rw\n";
        assert_eq!(
            root_mount(text),
            Some(RootMount {
                major: 253,
                minor: 3,
                source: "/dev/mapper/vg-core_b".into()
            })
        );
        assert_eq!(root_mount("30 22 0:5 / /dev rw - devtmpfs udev rw\n"), None);
    }

    fn files(dir: &Path, cmdline: &str, mountinfo: &str) -> Slots {
        for (name, data) in [("a.img", "a"), ("b.img", "b")] {
            std::fs::write(dir.join(name), data).unwrap();
        }
        std::fs::write(dir.join("cmdline"), cmdline).unwrap();
        std::fs::write(dir.join("mountinfo"), mountinfo).unwrap();
        Slots {
            product: "os".into(),
            core_a: dir.join("a.img"),
            core_b: dir.join("b.img"),
            esp: dir.join("esp"),
            cmdline: dir.join("cmdline"),
            mountinfo: dir.join("mountinfo"),
            chunks: true,
        }
    }

    const NO_ROOT: &str = "30 22 0:5 / /dev rw - devtmpfs udev rw\n";

    #[test]
    fn active_from_flag_root_path_and_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let s = files(dir.path(), "quiet chainup.slot=b", NO_ROOT);
        assert_eq!(s.active().unwrap().slot, Slot::B);
        std::os::unix::fs::symlink(dir.path().join("a.img"), dir.path().join("link")).unwrap();
        let cmd = format!("root={}", dir.path().join("link").display());
        let s = files(dir.path(), &cmd, NO_ROOT);
        assert_eq!(s.active().unwrap().slot, Slot::A);
    }

    #[test]
    fn conflicts_and_silence_are_refused_with_what_was_seen() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = format!("chainup.slot=a root={}", dir.path().join("b.img").display());
        let e = files(dir.path(), &cmd, NO_ROOT).active().unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("conflicting") && msg.contains("chainup.slot=a"),
            "{msg}"
        );
        assert_eq!(e.exit_code(), 40);

        let e = files(dir.path(), "quiet root=/nonexistent", NO_ROOT)
            .active()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot tell") && e.contains("root=/nonexistent"),
            "{e}"
        );
        assert!(e.contains("has no mount at /"), "{e}");

        let e = files(dir.path(), "chainup.slot=c", NO_ROOT)
            .active()
            .unwrap_err()
            .to_string();
        assert!(e.contains("chainup.slot=c"), "{e}");
    }

    #[test]
    fn one_file_for_both_slots_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = files(dir.path(), "chainup.slot=a", NO_ROOT);
        std::os::unix::fs::symlink(&s.core_a, dir.path().join("same")).unwrap();
        s.core_b = dir.path().join("same");
        let e = s.active().unwrap_err().to_string();
        assert!(e.contains("are the same"), "{e}");
    }
}
