//! chainup: a swupd-compatible, manifest-chained content updater with A/B core images.

/// Compression detection, bounded readers and manifest tars.
pub mod archive;
/// The library's error type and exit codes.
pub mod error;
/// The swupd hash of a path or a stream.
pub mod hash;
/// Manifest and MoM: parse, serialise, validate paths.
pub mod manifest;
/// PKCS#7 trust store, verify, sign.
pub mod signature;

pub use error::{Error, Result};
