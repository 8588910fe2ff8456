//! swupd's commands besides installing and updating: bundle-info, search-file, clean,
//! mirror, autoupdate and 3rd-party. Each module does one command's work and returns what
//! it found or did; the command line (src/cli/commands/) shows it.

pub mod autoupdate;
pub mod bundle_info;
pub mod clean;
pub mod mirror;
pub mod search_file;
pub mod third_party;
