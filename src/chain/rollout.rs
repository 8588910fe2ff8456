//! The rollout schedule's step of the chain: fetched next to `latest` from the version
//! source, its signature checked like `latest`'s, and held as a type only this step
//! builds (docs/fleets.md).

use super::Chain;
use crate::rollout::Schedule;
use crate::{limits, Result};

/// A rollout schedule whose signature verified (or `--nosigcheck`) and which parsed.
#[derive(Debug, Clone)]
pub struct VerifiedSchedule {
    schedule: Schedule,
}

impl VerifiedSchedule {
    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

impl Chain {
    /// The channel's rollout schedule, `None` when the version source has none (a plain
    /// channel, or a server that dropped it: `latest` then names the version to run).
    pub fn schedule(&self) -> Result<Option<VerifiedSchedule>> {
        let rel = format!("version/format{}/rollout", self.format);
        let url = self.versions.url(&rel);
        let Some(text) = self.versions.fetch_if_exists(&rel, limits::ROLLOUT)? else {
            return Ok(None);
        };
        self.check_signature(&url, &text, &format!("{rel}.sig"), &self.versions)?;
        Ok(Some(VerifiedSchedule {
            schedule: Schedule::parse(&text, &url)?,
        }))
    }
}
