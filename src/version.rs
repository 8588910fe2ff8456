//! Versions: the installed one from os-release, the high-water mark, and the machine id
//! that tells a dynamic server which channel a machine is on.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::IoContext;
use crate::{Error, Result};

/// Keys the machine-id HMAC so the raw /etc/machine-id never leaves the machine and the
/// value sent is useless to any other application (systemd's app-specific id idea).
const MACHINE_ID_APP_KEY: &[u8] = b"chainup update channel v1";
/// os-release files, in the order swupd reads them.
pub const OS_RELEASE: [&str; 2] = ["usr/lib/os-release", "etc/os-release"];

/// The version installed in `root`: `VERSION_ID` of `usr/lib/os-release`, else
/// `etc/os-release`. `None` for an empty root (os-install).
pub fn installed(root: &Path) -> Result<Option<u32>> {
    for rel in OS_RELEASE {
        let path = root.join(rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        return parse_os_release(&text).map(Some).ok_or_else(|| {
            Error::VersionUnknown(format!("{} has no numeric VERSION_ID", path.display()))
        });
    }
    Ok(None)
}

/// The numeric `VERSION_ID` of an os-release text (quotes allowed).
pub fn parse_os_release(text: &str) -> Option<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\''))
        .find_map(|v| v.parse::<u32>().ok().filter(|&v| v > 0))
}

/// Parses the first line of a `latest` file (newest first) into a version.
pub fn parse_latest(text: &[u8], url: &str) -> Result<u32> {
    let bad = || Error::Download {
        url: url.to_string(),
        reason: "not a version number".into(),
    };
    let text = std::str::from_utf8(text).map_err(|_| bad())?;
    let first = text.lines().next().ok_or_else(bad)?.trim();
    first.parse::<u32>().ok().filter(|&v| v > 0).ok_or_else(bad)
}

/// The highest version ever installed from this state directory, kept so that a server
/// (or an attacker in its place) cannot roll the machine back to an older signed release.
pub struct HighWaterMark {
    path: PathBuf,
}

impl HighWaterMark {
    /// The mark stored in `state_dir`.
    pub fn new(state_dir: &Path) -> HighWaterMark {
        HighWaterMark {
            path: state_dir.join("version-high-water-mark"),
        }
    }

    /// The recorded mark, 0 if none was ever written.
    pub fn get(&self) -> Result<u32> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => t.trim().parse().map_err(|_| {
                Error::VersionUnknown(format!("{} is not a version number", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    /// Raises the mark to `version` (never lowers it), durably.
    pub fn raise(&self, version: u32) -> Result<()> {
        if self.get()? >= version {
            return Ok(());
        }
        crate::fsutil::write_atomic(&self.path, format!("{version}\n").as_bytes())
    }
}

/// The app-specific machine id: HMAC-SHA256 of `<root>/etc/machine-id`, hex. `None`
/// when the machine has no id.
pub fn machine_id(root: &Path) -> Result<Option<String>> {
    let path = root.join("etc/machine-id");
    let raw = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(&path),
    };
    let id = raw.trim();
    if id.is_empty() {
        return Ok(None);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(MACHINE_ID_APP_KEY).expect("HMAC takes any key");
    mac.update(id.as_bytes());
    Ok(Some(hex::encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_forms() {
        assert_eq!(parse_os_release("NAME=x\nVERSION_ID=20\n"), Some(20));
        assert_eq!(parse_os_release("VERSION_ID=\"30\"\n"), Some(30));
        assert_eq!(parse_os_release("VERSION_ID=abc\n"), None);
        assert_eq!(parse_os_release("VERSION_ID=0\n"), None);
    }

    #[test]
    fn latest_takes_first_line() {
        assert_eq!(parse_latest(b"30\n20\n", "u").unwrap(), 30);
        assert!(parse_latest(b"", "u").is_err());
        assert!(parse_latest(b"x\n", "u").is_err());
    }

    #[test]
    fn high_water_mark_only_rises() {
        let dir = tempfile::tempdir().unwrap();
        let hwm = HighWaterMark::new(dir.path());
        assert_eq!(hwm.get().unwrap(), 0);
        hwm.raise(20).unwrap();
        hwm.raise(10).unwrap();
        assert_eq!(hwm.get().unwrap(), 20);
    }

    #[test]
    fn machine_id_is_not_the_raw_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/machine-id"), "0123456789abcdef\n").unwrap();
        let id = machine_id(dir.path()).unwrap().unwrap();
        assert_eq!(id.len(), 64);
        assert!(!id.contains("0123456789abcdef"));
    }
}
