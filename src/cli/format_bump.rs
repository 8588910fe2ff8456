//! swupd's re-update across a format bump (see `client::formats`): after an update, a
//! root whose format file names another format than the one the update followed is
//! updated again in the new format, as swupd re-executes itself with the same arguments.
//! Only when the format came from the root (no `-F`, no `format` in the config) and no
//! version was asked for: a format given by the user is followed as given.

use super::output::Output;
use super::{local_config, post, report, settings, Global};
use crate::client::{Access, Client, Updated};
use crate::{version, Error, Result};

/// At most this many format bumps are followed in one command (each one is a release
/// that moved the root to a newer format; more would mean a server going in circles).
const MAX_FORMAT_BUMPS: usize = 8;

/// Follows the format bumps after `last`, the update `client` made, and returns the
/// version the last of them reached (`None` when there was none to follow). The caller
/// holds the state directory's lock for the whole command.
pub(super) fn follow(
    g: &Global,
    out: &Output,
    client: &Client,
    last: &Updated,
) -> Result<Option<u32>> {
    let Updated::Done { to, .. } = last else {
        return Ok(None);
    };
    let (root, config) = local_config(g)?;
    if g.format.is_some() || config.format.is_some() {
        return Ok(None);
    }
    let mut format = client.settings().format;
    let mut reached = *to;
    let mut moved = false;
    for _ in 0..MAX_FORMAT_BUMPS {
        let next = settings(g)?;
        if next.format == format {
            break;
        }
        // swupd's version_files_consistent: the last release of a format carries the next
        // format's content, whose os-release names the first release of that format, so
        // the root's version is at least the one just installed; anything less means the
        // release did not bring the version files it should have.
        let installed = version::installed(&root)?;
        if installed.is_none_or(|v| v < reached) {
            return Err(Error::VersionUnknown(format!(
                "inconsistent version files after the update to version {reached} (format {}): the root's os-release says {}",
                next.format,
                installed.map_or("nothing".into(), |v| v.to_string())
            )));
        }
        out.result(&format!(
            "Version {reached} moved the root to format {}: updating again in that format",
            next.format
        ));
        format = next.format;
        let client = Client::new(next, out, Access::Write)?;
        let step = client.update(None, false)?;
        report(out, &step);
        let Updated::Done { from, to, applied } = &step else {
            break;
        };
        post::run(&client, g, out, "update", (*from, *to), &applied.changed)?;
        reached = *to;
        moved = true;
    }
    Ok(moved.then_some(reached))
}
