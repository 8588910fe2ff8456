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
