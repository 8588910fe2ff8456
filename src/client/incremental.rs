//! swupd's `update --incremental`: one release at a time through the versions the signed
//! `latest` file lists (one a line), instead of straight to the newest.

use super::{Client, Updated};
use crate::Result;

impl Client<'_> {
    /// Updates through every listed version above the current one, up to `target`
    /// (default: the version this machine should run), each step a whole update. Returns
    /// each step's outcome, in order. Stops at the first failure: the root then holds
    /// the last step that finished.
    pub fn update_incremental(
        &self,
        target: Option<u32>,
        download_only: bool,
    ) -> Result<Vec<Updated>> {
        let target = match target {
            Some(v) => v,
            None => self.fleet_target(true)?.version,
        };
        let current = self.current_version()?;
        let mut steps: Vec<u32> = self
            .chain()
            .latest_all()?
            .into_iter()
            .filter(|&v| v > current && v < target)
            .collect();
        steps.sort_unstable();
        steps.dedup();
        steps.push(target);
        if download_only {
            // Nothing moves, so only the last step's content is worth fetching.
            return Ok(vec![self.update(Some(target), true)?]);
        }
        let mut done = Vec::new();
        for step in steps {
            self.info(format!("Incremental update: step to version {step}"));
            done.push(self.update(Some(step), false)?);
        }
        Ok(done)
    }
}
