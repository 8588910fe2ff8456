//! Options of single operations, as swupd names them.

use std::path::PathBuf;

/// What runs after files change (swupd's `-b`, `-N`, `--wait-for-scripts`). Recorded
/// here for the post-update actions; the operations themselves do not read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PostUpdate {
    /// `-b/--no-boot-update`: leave the boot loader alone.
    pub no_boot_update: bool,
    /// `-N/--no-scripts`: run no post-update action.
    pub no_scripts: bool,
    /// `--wait-for-scripts`: wait for the actions to end before returning.
    pub wait_for_scripts: bool,
}

/// `os-install` options.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// `--skip-optional`: the bundles' `also-add` are not installed.
    pub skip_optional: bool,
    /// `--download`: download and verify only.
    pub download_only: bool,
    /// `-x/--force`: bundles the version does not have are skipped with a warning.
    pub force: bool,
    /// `-s/--statedir-cache`: a state directory whose staged files (still hashed
    /// before use) spare their download.
    pub statedir_cache: Option<PathBuf>,
}
