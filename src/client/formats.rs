//! Format bumps, as swupd handles them. A release that changes the content format is
//! published twice: the last release of the old format (say 20) carries the new format's
//! content and `format` file, and the first release of the new format (30) the same
//! content; `version/format<old>/latest` stops at 20, and `version/latest_version` names
//! the newest release in any format. An update follows its format to 20, finds the root's
//! format file changed, and updates again in the new format (`cli::format_bump`).

use super::{Client, Target};
use crate::{Error, Result};

impl Client<'_> {
    /// What `check-update` compares the installed version with: the version this client
    /// would update to in its format or, when no rollout applies, the newest release in
    /// any format (the signed `latest_version`, which is what swupd's check-update reads)
    /// when that is newer or the format publishes no `latest` at all (swupd's `-F staging`
    /// against a server with no staging content). Only a signed version number is taken
    /// from it; an update still verifies every release it goes through.
    pub(super) fn newest_version(&self) -> Result<Target> {
        let in_format = self.fleet_target(false);
        if matches!(&in_format, Ok(t) if t.wave.is_some()) {
            return in_format;
        }
        let any_format = self.chain.latest_any_format();
        let newest = |v: u32| Target {
            version: v,
            latest: v,
            wave: None,
        };
        match (in_format, any_format) {
            (Ok(t), Ok(v)) if v > t.version => Ok(newest(v)),
            (Ok(t), Ok(_)) => Ok(t),
            (Ok(t), Err(e)) => {
                log::debug!("no newest version in any format: {e}");
                Ok(t)
            }
            // The format's `latest` is missing or could not be had (not forged: a failed
            // signature check is never passed over).
            (Err(Error::Connect { .. } | Error::Download { .. }), Ok(v)) => Ok(newest(v)),
            (Err(e), _) => Err(e),
        }
    }
}
