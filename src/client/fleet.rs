//! Which version a machine of a fleet runs now: its channel's signed `latest`, or, under a
//! verified rollout schedule whose base is that `latest`, the version rolled out once the
//! machine's wave has started (docs/fleets.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Client;
use crate::progress::Event;
use crate::rollout::{self, ScheduleMark, Standing};
use crate::{version, Error, Result};

/// The version to run now, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What this machine should run now.
    pub version: u32,
    /// The channel's signed `latest`.
    pub latest: u32,
    /// Where the machine stands in a rollout, when one applies.
    pub wave: Option<WaveStanding>,
}

/// A machine's place in a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveStanding {
    pub channel: String,
    /// The version rolled out.
    pub version: u32,
    /// How many waves the schedule has.
    pub waves: usize,
    pub standing: Standing,
    /// `--ignore-waves` made the machine take the version before its wave.
    pub ignored: bool,
}

impl WaveStanding {
    /// One line for people: the wave, and when it starts.
    pub fn describe(&self) -> String {
        let head = format!(
            "version {} is rolling out on channel {}",
            self.version, self.channel
        );
        match self.standing {
            Standing::Started { wave } => {
                format!("{head}; this machine is in wave {wave} of {}, started", self.waves)
            }
            Standing::Waiting { wave, start } if self.ignored => format!(
                "{head}; this machine is in wave {wave} of {}, which starts at {}, taken now (--ignore-waves)",
                self.waves,
                rfc3339(start)
            ),
            Standing::Waiting { wave, start } => format!(
                "{head}; this machine is in wave {wave} of {}, which starts at {} (unix {start})",
                self.waves,
                rfc3339(start)
            ),
            Standing::Halted { wave } => format!(
                "{head}, but the rollout is halted; this machine (wave {wave} of {}) stays",
                self.waves
            ),
        }
    }
}

/// A unix time as RFC 3339 (UTC).
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

impl Client<'_> {
    /// The version this machine runs now under its channel's `latest` and rollout
    /// schedule. A schedule older than one acted on before is refused (replay);
    /// `record` (commands that may write the state directory) raises that mark.
    pub fn fleet_target(&self, record: bool) -> Result<Target> {
        let latest = self.chain.latest()?;
        let plain = Target {
            version: latest,
            latest,
            wave: None,
        };
        let Some(verified) = self.chain.schedule()? else {
            return Ok(plain);
        };
        let s = verified.schedule();
        if let Some(channel) = self.settings.channel.as_ref().filter(|c| **c != s.channel) {
            return Err(Error::Policy(format!(
                "the rollout schedule served for channel {channel} belongs to channel {} (mix-and-match)",
                s.channel
            )));
        }
        let mark = ScheduleMark::new(&self.settings.state_dir);
        let seen = mark.get(&s.channel)?;
        if s.sequence < seen {
            return Err(Error::Policy(format!(
                "rollout schedule {} of channel {} is older than schedule {seen} seen before (a replayed schedule, like a rollback)",
                s.sequence, s.channel
            )));
        }
        if s.previous != latest {
            // A later promote moved `latest`: the schedule is over.
            log::info!(
                "rollout schedule {} rolls out from {} but latest is {latest}: not in force",
                s.sequence,
                s.previous
            );
            return Ok(plain);
        }
        if record {
            mark.raise(&s.channel, s.sequence)?;
        }
        let id = version::machine_id(&self.settings.root)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let standing = s.standing(rollout::placement(id.as_deref()), now);
        let ignored = self.settings.ignore_waves && matches!(standing, Standing::Waiting { .. });
        let take = ignored || matches!(standing, Standing::Started { .. });
        let wave = WaveStanding {
            channel: s.channel.clone(),
            version: s.version,
            waves: s.waves.len(),
            standing,
            ignored,
        };
        if id.is_none() {
            self.observer.event(Event::Warning(
                "this root has no etc/machine-id: it is placed in the last wave".into(),
            ));
        }
        Ok(Target {
            version: if take { s.version } else { latest },
            latest,
            wave: Some(wave),
        })
    }
}
