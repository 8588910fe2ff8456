//! chainup: a swupd-compatible, manifest-chained content updater with A/B core images.

/// The library's error type and exit codes.
pub mod error;
/// The swupd hash of a path or a stream.
pub mod hash;
/// Manifest and MoM: parse, serialise, validate paths.
pub mod manifest;
/// Where content comes from: https, http, file://, retries, bounds.
pub mod source;

pub use error::{Error, Result};
