//! chainup: a swupd-compatible, manifest-chained content updater with A/B core images.

/// Compression detection, bounded readers and manifest tars.
pub mod archive;
/// Clear Linux's bsdiff delta container: parse, apply (streaming), encode.
pub mod bsdiff;
/// Verify MoM -> manifests -> files; yields only verified types.
pub mod chain;
/// The chunk index of a core image and the chunk store: one format for both sides.
pub mod chunks;
/// The `chainup` command line.
pub mod cli;
/// The operations: update, os-install, bundle-add/remove/list, check-update.
pub mod client;
/// bundle-info, search-file, clean, mirror, autoupdate, 3rd-party.
pub mod commands;
/// The TOML configuration file.
pub mod config;
/// diagnose and repair: the root against its verified manifests.
pub mod diagnose;
/// Direct I/O where a file takes it, the page cache for the rest.
pub mod direct_io;
/// The library's error type and exit codes.
pub mod error;
/// Named crash points of the write path, for the crash tests.
pub(crate) mod failpoint;
/// The content format: a number or swupd's `staging`.
pub mod format;
/// Atomic writes, free space, directory fsync.
pub mod fsutil;
/// The swupd hash of a path or a stream.
pub mod hash;
/// Installing verified content into the root and the A/B slots.
pub mod install;
/// Every cap on downloads, unpacking and decoder memory, with its reason.
pub mod limits;
/// Manifest and MoM: parse, serialise, validate paths.
pub mod manifest;
/// Old manifests + new manifests -> what to do.
pub mod plan;
/// After a change of the root: ldconfig, systemd, the boot manager, drop-ins.
pub mod post_update;
/// Progress events from the library to its user.
pub mod progress;
/// Staged rollouts: the signed schedule of waves and where a machine stands in it.
pub mod rollout;
/// PKCS#7 trust store, verify, sign.
pub mod signature;
/// The A/B slots from the config and which one is running.
pub mod slots;
/// Where content comes from: https, http, file://, retries, bounds.
pub mod source;
/// State directory, lock, journal.
pub mod state;
/// swupd's INI configuration and its URL and format files.
pub mod swupd_config;
/// Versions, os-release, the high-water mark, the machine id.
pub mod version;

pub use error::{Error, Result};
