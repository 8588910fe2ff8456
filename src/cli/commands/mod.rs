//! The command line of swupd's other commands (src/commands/): bundle-info, search-file,
//! clean, mirror, autoupdate and 3rd-party; one module each for their options and for how
//! their results are shown.

mod autoupdate;
mod bundle_info;
mod clean;
mod mirror;
mod search_file;
mod third_party;

pub use autoupdate::{autoupdate, AutoupdateArgs};
pub use bundle_info::{bundle_info, BundleInfoArgs};
pub use clean::{clean, CleanArgs};
pub use mirror::{mirror, MirrorArgs};
pub use search_file::{search_file, SearchFileArgs};
pub use third_party::{
    check_update as third_party_check_update, third_party, update as third_party_update, ThirdParty,
};

/// A size as people read it, with the exact byte count.
fn size(bytes: u64) -> String {
    format!("{} ({bytes} bytes)", indicatif::HumanBytes(bytes))
}
