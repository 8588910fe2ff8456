//! The library's error type; each variant maps to one documented exit code.

use std::io;
use std::path::PathBuf;

use crate::hash::Hash;
use crate::manifest::ParseError;

/// What a hash was checked for; decides the exit code of a mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A bundle manifest against its MoM line.
    Manifest,
    /// A fullfile against its manifest line.
    File,
    /// An image payload (core image, EFI binary), or a slot read back after writing.
    Image,
}

/// Every failure the library reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },

    #[error("{path}: not enough free space: {needed} bytes needed, {available} available")]
    DiskSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },

    #[error("{0}: the disk is full")]
    DiskFull(PathBuf),

    #[error("manifest {name}: {source}")]
    Manifest { name: String, source: ParseError },

    #[error("version {version} cannot be installed: {reason}")]
    BadRelease { version: u32, reason: String },

    #[error("the interrupted update to version {to} cannot be finished: {source}; to get out, update to another release (`chainup update -V N`) or put back the installed one (`chainup repair`){}", from.map(|v| format!(", version {v}")).unwrap_or_default())]
    Interrupted {
        to: u32,
        from: Option<u32>,
        source: Box<Error>,
    },

    #[error("Manifest.MoM of version {version}: {reason}")]
    Mom { version: u32, reason: String },

    #[error("the manifest of bundle {bundle} is not on the server: {reason}")]
    ManifestMissing { bundle: String, reason: String },

    #[error("refused: {0}")]
    Policy(String),

    #[error("signature check of {what} failed: {reason}")]
    Signature { what: String, reason: String },

    #[error("trust store {path}: {reason}")]
    TrustStore { path: PathBuf, reason: String },

    #[error("hash mismatch for {what}: expected {expected}, got {actual}")]
    HashMismatch {
        subject: Subject,
        what: String,
        expected: Hash,
        actual: Hash,
    },

    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },

    #[error("cannot reach {url}: {reason}")]
    Connect { url: String, reason: String },

    #[error("{url}: {reason}")]
    BadUrl { url: String, reason: String },

    #[error("archive {what}: {reason}")]
    Archive { what: String, reason: String },

    #[error("another chainup holds the lock {0}")]
    Locked(PathBuf),

    #[error("unknown bundle {0:?}")]
    UnknownBundle(String),

    #[error("bundle {bundle:?} is required by {by:?}")]
    RequiredBundle { bundle: String, by: String },

    #[error("bundle {0:?} is not installed")]
    NotInstalled(String),

    #[error("cannot tell the current version: {0}")]
    VersionUnknown(String),

    #[error("unsafe path {path}: {reason}")]
    UnsafePath { path: String, reason: String },

    #[error("A/B slots: {0}")]
    Slot(String),

    #[error("config {path}: {reason}")]
    Config { path: PathBuf, reason: String },

    #[error("{0}")]
    Usage(String),

    #[error("{0}")]
    Subprocess(String),

    #[error("3rd-party repository {name}: {reason}")]
    Repository { name: String, reason: String },

    #[error("{path} has mode {mode:04o} (setuid, setgid or sticky): refused in 3rd-party content")]
    DangerousMode { path: String, mode: u32 },
}

/// Every exit code with its meaning: what the man pages' EXIT STATUS and the README's
/// table say. The test below holds it to [`Error::exit_code`].
pub const EXIT_CODES: &[(i32, &str)] = &[
    (0, "success"),
    (1, "\"no\": no update available (check-update), problems found (diagnose) or left (repair)"),
    (2, "a bundle to remove is required by another installed bundle"),
    (3, "unknown bundle"),
    (4, "the MoM could not be loaded as trustworthy: not on the server or not reachable, its signature missing or not verifying, mix-and-match version, rollback below the high-water mark, older than --max-age"),
    (8, "update: a bundle manifest the MoM lists is not on the server or not reachable (os-install, diagnose, repair: 14); search-file: some bundle manifests could not be had, the results are partial"),
    (9, "another chainup holds the lock"),
    (10, "unsafe path: a parent in the root is a symlink or not a directory, the root is a symlink, or the state directory is not private"),
    (13, "bundle not installed"),
    (14, "bad manifest: parse error, hash mismatch against the MoM, a release that contradicts itself, or (os-install, diagnose, repair) a manifest the MoM lists that cannot be had"),
    (15, "invalid option, URL or config"),
    (16, "server unreachable when its version is asked, or it has no version file (later, what cannot be had is named: 4, 8 or 14, 17)"),
    (17, "download failed (HTTP status, too large, too slow, the server gone after the version check)"),
    (18, "bad archive (fullfile or manifest tar)"),
    (20, "current version unknown"),
    (21, "signature or certificate verification failed (the trust store, latest, a rollout schedule; a MoM's is 4)"),
    (25, "not enough disk space, or the disk filled up"),
    (28, "autoupdate: systemctl failed, is missing, or cannot tell the timer's state"),
    (32, "other I/O error (the message names the path)"),
    (37, "3rd-party: no such repository, or content left where a new one goes"),
    (38, "a fullfile or image did not match its hash, or 3rd-party content with a setuid, setgid or sticky mode"),
    (40, "A/B slot error"),
];

/// Library result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error (swupd's codes where one fits).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted { source, .. } => source.exit_code(),
            Error::RequiredBundle { .. } => 2,
            Error::UnknownBundle(_) => 3,
            Error::Mom { .. } | Error::Policy(_) => 4,
            Error::ManifestMissing { .. } => 8,
            Error::Locked(_) => 9,
            Error::UnsafePath { .. } => 10,
            Error::NotInstalled(_) => 13,
            Error::Manifest { .. } | Error::BadRelease { .. } => 14,
            Error::HashMismatch {
                subject: Subject::Manifest,
                ..
            } => 14,
            Error::Usage(_) | Error::BadUrl { .. } | Error::Config { .. } => 15,
            Error::Connect { .. } => 16,
            Error::Download { .. } => 17,
            Error::Archive { .. } => 18,
            Error::VersionUnknown(_) => 20,
            Error::Signature { .. } | Error::TrustStore { .. } => 21,
            Error::DiskSpace { .. } | Error::DiskFull(_) => 25,
            Error::Io { .. } => 32,
            Error::HashMismatch { .. } | Error::DangerousMode { .. } => 38,
            Error::Slot(_) => 40,
            Error::Subprocess(_) => 28,
            Error::Repository { .. } => 37,
        }
    }

    /// A manifest the MoM lists that cannot be had (the server lacks it, or cannot be
    /// reached after the MoM was): the release of `version` cannot be loaded, which
    /// swupd's diagnose, repair and os-install call "cannot load manifest" (14), where
    /// its update says "recurse manifest" (8, [`Error::ManifestMissing`] as it is).
    pub fn manifest_unloadable(self, version: u32) -> Error {
        match self {
            Error::ManifestMissing { bundle, reason } => Error::BadRelease {
                version,
                reason: format!(
                    "its MoM lists the manifest of {bundle}, which cannot be had: {reason}"
                ),
            },
            e => e,
        }
    }

    /// The typed error an `io::Error` carries (a reader deep in a stack of readers, such
    /// as a download under a decompressor, wraps its own error so), or the `io::Error`.
    pub fn carried(e: io::Error) -> Result<Error, io::Error> {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Err(e);
        }
        let inner = e.into_inner().expect("checked to carry an error");
        Ok(*inner
            .downcast::<Error>()
            .expect("checked to be a crate::Error"))
    }

    /// An I/O error at `path`; a full disk or quota becomes [`Error::DiskFull`].
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::DiskFull(path.into()),
            _ => Error::Io {
                path: path.into(),
                source,
            },
        }
    }
}

/// Attaches a path to I/O results.
pub trait IoContext<T> {
    /// Maps an `io::Error` to [`Error::Io`] naming `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant; the match makes a new variant fail to compile here
    /// until it is added (and its code documented).
    fn one_of_each() -> Vec<Error> {
        let s = || String::from("x");
        let p = || PathBuf::from("/x");
        let hash = |subject| Error::HashMismatch {
            subject,
            what: s(),
            expected: Hash::ZERO,
            actual: Hash::ZERO,
        };
        let all = vec![
            Error::io(p(), io::Error::other("x")),
            Error::DiskSpace {
                path: p(),
                needed: 1,
                available: 0,
            },
            Error::DiskFull(p()),
            Error::Manifest {
                name: s(),
                source: ParseError {
                    line: 1,
                    reason: s(),
                },
            },
            Error::BadRelease {
                version: 1,
                reason: s(),
            },
            Error::Interrupted {
                to: 2,
                from: None,
                source: Box::new(Error::Locked(p())),
            },
            Error::Mom {
                version: 1,
                reason: s(),
            },
            Error::Policy(s()),
            Error::ManifestMissing {
                bundle: s(),
                reason: s(),
            },
            Error::Signature {
                what: s(),
                reason: s(),
            },
            Error::TrustStore {
                path: p(),
                reason: s(),
            },
            hash(Subject::Manifest),
            hash(Subject::File),
            hash(Subject::Image),
            Error::Download {
                url: s(),
                reason: s(),
            },
            Error::Connect {
                url: s(),
                reason: s(),
            },
            Error::BadUrl {
                url: s(),
                reason: s(),
            },
            Error::Archive {
                what: s(),
                reason: s(),
            },
            Error::Locked(p()),
            Error::UnknownBundle(s()),
            Error::RequiredBundle {
                bundle: s(),
                by: s(),
            },
            Error::NotInstalled(s()),
            Error::VersionUnknown(s()),
            Error::UnsafePath {
                path: s(),
                reason: s(),
            },
            Error::Slot(s()),
            Error::Config {
                path: p(),
                reason: s(),
            },
            Error::Usage(s()),
            Error::Subprocess(s()),
            Error::Repository {
                name: s(),
                reason: s(),
            },
            Error::DangerousMode { path: s(), mode: 0 },
        ];
        for e in &all {
            match e {
                Error::Io { .. }
                | Error::DiskSpace { .. }
                | Error::DiskFull(_)
                | Error::Manifest { .. }
                | Error::BadRelease { .. }
                | Error::Interrupted { .. }
                | Error::Mom { .. }
                | Error::Policy(_)
                | Error::ManifestMissing { .. }
                | Error::Signature { .. }
                | Error::TrustStore { .. }
                | Error::HashMismatch { .. }
                | Error::Download { .. }
                | Error::Connect { .. }
                | Error::BadUrl { .. }
                | Error::Archive { .. }
                | Error::Locked(_)
                | Error::UnknownBundle(_)
                | Error::RequiredBundle { .. }
                | Error::NotInstalled(_)
                | Error::VersionUnknown(_)
                | Error::UnsafePath { .. }
                | Error::Slot(_)
                | Error::Config { .. }
                | Error::Usage(_)
                | Error::Subprocess(_)
                | Error::Repository { .. }
                | Error::DangerousMode { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_exit_code_is_documented_and_every_documented_code_is_used() {
        let documented: Vec<i32> = EXIT_CODES.iter().map(|(c, _)| *c).collect();
        let mut used: Vec<i32> = one_of_each().iter().map(Error::exit_code).collect();
        for code in &used {
            assert!(
                documented.contains(code),
                "exit code {code} is not in EXIT_CODES"
            );
        }
        // 0 and 1 are the commands' own answers, not errors.
        used.extend([0, 1]);
        for code in &documented {
            assert!(
                used.contains(code),
                "EXIT_CODES lists {code}, which nothing returns"
            );
        }
    }
}
