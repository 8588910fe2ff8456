//! Staged rollouts (docs/fleets.md): a signed schedule of waves, where each machine
//! places itself, and which version it should run now.
//!
//! A schedule sits next to a channel's `latest` as `version/format<F>/rollout` (+ `.sig`).
//! During a rollout `latest` keeps naming the previous version, so a client that ignores
//! or never gets the schedule (swupd, a server that drops the file) stays where it is; only
//! a verified schedule whose `previous` is that `latest` moves a machine on, once its wave
//! has started. The schedule's fields are all under the signature, so a server cannot move
//! a machine into an earlier wave; its `sequence` only grows, and the client keeps the
//! highest one it acted on ([`ScheduleMark`]), so an older schedule replayed is refused.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The first line of every schedule: the format and its version.
const MAGIC: &str = "chainup-rollout 1";
/// Hashed with the app-specific machine id to place a machine in the fleet: a label of its
/// own, so the placement says nothing about the id sent to the server.
const PLACEMENT_LABEL: &[u8] = b"chainup rollout placement v1\n";
/// Shares are in basis points: 10000 is the whole fleet.
pub const WHOLE_FLEET: u32 = 10_000;
/// More waves than this is a mistake, not a rollout plan.
const MAX_WAVES: usize = 64;

/// One wave: the share of the fleet (cumulative, in basis points) that may update once
/// `start` (unix seconds) has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wave {
    pub share: u32,
    pub start: u64,
}

/// A rollout schedule, as published (the client gets it only as `VerifiedSchedule`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The channel it belongs to.
    pub channel: String,
    /// Grows with every schedule of the channel (the publisher uses its clock, and one more
    /// than the previous schedule's when the clock says less).
    pub sequence: u64,
    /// The version rolled out.
    pub version: u32,
    /// The version machines stay on until their wave starts: the channel's `latest`.
    pub previous: u32,
    /// A halted rollout moves no further machine.
    pub halted: bool,
    /// Waves by start time; the last covers the whole fleet.
    pub waves: Vec<Wave>,
}

/// Where a machine stands in a schedule at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its wave (1-based) has started: it takes the new version.
    Started { wave: usize },
    /// Its wave has not started: it stays on the previous version until `start`.
    Waiting { wave: usize, start: u64 },
    /// The rollout is halted: machines not yet updated stay.
    Halted { wave: usize },
}

impl Schedule {
    /// Parses and checks a schedule's text (strict: every line known, in order).
    pub fn parse(text: &[u8], url: &str) -> Result<Schedule> {
        let bad = |reason: String| Error::Download {
            url: url.to_string(),
            reason: format!("not a rollout schedule: {reason}"),
        };
        let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8".into()))?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad(format!("the first line is not {MAGIC:?}")));
        }
        let mut field = |key: &str| -> Result<String> {
            let line = lines.next().unwrap_or_default();
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(": "))
                .map(str::to_string)
                .ok_or_else(|| bad(format!("expected {key}: where it says {line:?}")))
        };
        let number = |v: String, key: &str| {
            v.parse::<u64>()
                .map_err(|_| bad(format!("{key}: {v:?} is not a number")))
        };
        let channel = field("channel")?;
        let sequence = number(field("sequence")?, "sequence")?;
        let version = number(field("version")?, "version")?;
        let previous = number(field("previous")?, "previous")?;
        let halted = match field("halted")?.as_str() {
            "yes" => true,
            "no" => false,
            other => return Err(bad(format!("halted: {other:?} is neither yes nor no"))),
        };
        let mut waves = Vec::new();
        for line in lines {
            let (share, start) = line
                .strip_prefix("wave: ")
                .and_then(|w| w.split_once(' '))
                .ok_or_else(|| bad(format!("expected wave: SHARE START where it says {line:?}")))?;
            waves.push(Wave {
                share: parse_share(share).map_err(bad)?,
                start: number(start.to_string(), "wave start")?,
            });
        }
        let schedule = Schedule {
            channel,
            sequence,
            version: u32::try_from(version).map_err(|_| bad("version too large".into()))?,
            previous: u32::try_from(previous).map_err(|_| bad("previous too large".into()))?,
            halted,
            waves,
        };
        schedule.check().map_err(bad)?;
        Ok(schedule)
    }

    /// The rules every schedule meets; the publisher checks them before signing.
    pub fn check(&self) -> std::result::Result<(), String> {
        check_channel(&self.channel)?;
        if self.version <= self.previous || self.previous == 0 {
            return Err(format!(
                "version {} must be newer than previous {} (and both above 0)",
                self.version, self.previous
            ));
        }
        if self.waves.is_empty() || self.waves.len() > MAX_WAVES {
            return Err(format!("1 to {MAX_WAVES} waves, not {}", self.waves.len()));
        }
        for pair in self.waves.windows(2) {
            if pair[1].share <= pair[0].share || pair[1].start < pair[0].start {
                return Err(
                    "each wave must cover more of the fleet than the one before, and start no earlier"
                        .into(),
                );
            }
        }
        if self.waves[0].share == 0 || self.waves.last().map(|w| w.share) != Some(WHOLE_FLEET) {
            return Err("the first wave must hold some of the fleet and the last all of it".into());
        }
        Ok(())
    }

    /// The exact text that is signed and served.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{MAGIC}\nchannel: {}\nsequence: {}\nversion: {}\nprevious: {}\nhalted: {}\n",
            self.channel,
            self.sequence,
            self.version,
            self.previous,
            if self.halted { "yes" } else { "no" }
        );
        for w in &self.waves {
            out.push_str(&format!("wave: {} {}\n", format_share(w.share), w.start));
        }
        out
    }

    /// The wave (1-based) of a machine at `placement` (see [`placement`]).
    pub fn wave_of(&self, placement: u32) -> usize {
        self.waves
            .iter()
            .position(|w| placement < w.share)
            .unwrap_or(self.waves.len() - 1)
            + 1
    }

    /// Where a machine at `placement` stands at time `now` (unix seconds).
    pub fn standing(&self, placement: u32, now: u64) -> Standing {
        let wave = self.wave_of(placement);
        let start = self.waves[wave - 1].start;
        if self.halted {
            Standing::Halted { wave }
        } else if now >= start {
            Standing::Started { wave }
        } else {
            Standing::Waiting { wave, start }
        }
    }
}

/// Where a machine sits in the fleet, in basis points (0 to 9999): a hash of its
/// app-specific machine id under a label of its own, so it is stable, uniform, and tells
/// nothing about the id. A machine without an id sits last (the last wave).
pub fn placement(app_machine_id: Option<&str>) -> u32 {
    let Some(id) = app_machine_id else {
        return WHOLE_FLEET - 1;
    };
    let digest = Sha256::new()
        .chain_update(PLACEMENT_LABEL)
        .chain_update(id.as_bytes())
        .finalize();
    let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    // Scale the 64-bit value onto 0..10000 without the bias of a modulo.
    ((u128::from(head) * u128::from(WHOLE_FLEET)) >> 64) as u32
}

/// A channel name: what may appear in a URL path segment and a file name.
pub fn check_channel(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "channel {name:?}: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )),
    }
}

/// `10%`, `2.5%`, `100%` (at most two decimals) as basis points.
pub fn parse_share(text: &str) -> std::result::Result<u32, String> {
    let bad = || format!("share {text:?}: expected a percentage such as 10% or 2.5%");
    let num = text.strip_suffix('%').ok_or_else(bad)?;
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !(whole.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let bp = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    if bp > WHOLE_FLEET {
        return Err(format!("share {text:?} is over 100%"));
    }
    Ok(bp)
}

/// Basis points as a percentage (`10%`, `2.5%`).
pub fn format_share(bp: u32) -> String {
    match bp % 100 {
        0 => format!("{}%", bp / 100),
        f if f % 10 == 0 => format!("{}.{}%", bp / 100, f / 10),
        f => format!("{}.{f:02}%", bp / 100),
    }
}

/// The highest schedule sequence acted on, per channel, in the state directory: a
/// schedule below it is a replay and is refused, like a release below the version
/// high-water mark.
pub struct ScheduleMark {
    path: PathBuf,
}

impl ScheduleMark {
    /// The marks stored in `state_dir`.
    pub fn new(state_dir: &Path) -> ScheduleMark {
        ScheduleMark {
            path: state_dir.join("rollout-high-water-mark"),
        }
    }

    fn read(&self) -> Result<Vec<(String, u64)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        text.lines()
            .map(|l| {
                l.split_once(' ')
                    .and_then(|(c, s)| Some((c.to_string(), s.parse().ok()?)))
                    .ok_or_else(|| {
                        Error::VersionUnknown(format!("{} is damaged: {l:?}", self.path.display()))
                    })
            })
            .collect()
    }

    /// The mark of `channel`, 0 if none.
    pub fn get(&self, channel: &str) -> Result<u64> {
        Ok(self
            .read()?
            .into_iter()
            .find(|(c, _)| c == channel)
            .map_or(0, |(_, s)| s))
    }

    /// Raises the mark of `channel` to `sequence` (never lowers it), durably.
    pub fn raise(&self, channel: &str, sequence: u64) -> Result<()> {
        let mut marks = self.read()?;
        match marks.iter_mut().find(|(c, _)| c == channel) {
            Some((_, s)) if *s >= sequence => return Ok(()),
            Some((_, s)) => *s = sequence,
            None => marks.push((channel.to_string(), sequence)),
        }
        let text: String = marks.iter().map(|(c, s)| format!("{c} {s}\n")).collect();
        crate::fsutil::write_atomic(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Schedule {
        Schedule {
            channel: "stable".into(),
            sequence: 7,
            version: 30,
            previous: 20,
            halted: false,
            waves: vec![
                Wave {
                    share: 100,
                    start: 1000,
                },
                Wave {
                    share: 1000,
                    start: 2000,
                },
                Wave {
                    share: WHOLE_FLEET,
                    start: 3000,
                },
            ],
        }
    }

    #[test]
    fn text_round_trips() {
        let s = sample();
        let text = s.to_text();
        assert!(
            text.contains("wave: 1% 1000\nwave: 10% 2000\nwave: 100% 3000\n"),
            "{text}"
        );
        assert_eq!(Schedule::parse(text.as_bytes(), "u").unwrap(), s);
    }

    #[test]
    fn bad_schedules_are_refused() {
        let text = sample().to_text();
        for broken in [
            text.replace("halted: no", "halted: maybe"),
            text.replace("wave: 100% 3000\n", ""),
            text.replace("wave: 10% 2000", "wave: 10% 500"),
            text.replace("previous: 20", "previous: 30"),
            text.replace("channel: stable", "channel: ../x"),
            text.replace("sequence: 7\n", ""),
            format!("{text}extra\n"),
        ] {
            assert!(Schedule::parse(broken.as_bytes(), "u").is_err(), "{broken}");
        }
    }

    #[test]
    fn shares() {
        assert_eq!(parse_share("10%").unwrap(), 1000);
        assert_eq!(parse_share("2.5%").unwrap(), 250);
        assert_eq!(parse_share("0.01%").unwrap(), 1);
        assert_eq!(parse_share("100%").unwrap(), WHOLE_FLEET);
        for bad in ["10", "101%", "1.234%", "%", "-1%", "a%"] {
            assert!(parse_share(bad).is_err(), "{bad}");
        }
        assert_eq!(format_share(250), "2.5%");
        assert_eq!(format_share(1), "0.01%");
    }

    #[test]
    fn standing_follows_waves_time_and_halt() {
        let mut s = sample();
        assert_eq!(
            s.standing(50, 999),
            Standing::Waiting {
                wave: 1,
                start: 1000
            }
        );
        assert_eq!(s.standing(50, 1000), Standing::Started { wave: 1 });
        assert_eq!(
            s.standing(500, 1500),
            Standing::Waiting {
                wave: 2,
                start: 2000
            }
        );
        assert_eq!(s.standing(9999, 3000), Standing::Started { wave: 3 });
        s.halted = true;
        assert_eq!(s.standing(50, 5000), Standing::Halted { wave: 1 });
    }

    #[test]
    fn placement_is_stable_uniform_and_not_the_id() {
        let ids: Vec<String> = (0..4000).map(|i| format!("{:064x}", i * 7919)).collect();
        let p: Vec<u32> = ids.iter().map(|id| placement(Some(id))).collect();
        assert_eq!(placement(Some(&ids[3])), p[3]);
        let in_tenth = p.iter().filter(|&&x| x < 1000).count();
        assert!(
            (300..500).contains(&in_tenth),
            "{in_tenth} of 4000 in the first 10%"
        );
        assert!(p.iter().all(|&x| x < WHOLE_FLEET));
        assert_eq!(placement(None), WHOLE_FLEET - 1);
    }

    #[test]
    fn mark_only_rises_per_channel() {
        let dir = tempfile::tempdir().unwrap();
        let m = ScheduleMark::new(dir.path());
        assert_eq!(m.get("a").unwrap(), 0);
        m.raise("a", 5).unwrap();
        m.raise("b", 2).unwrap();
        m.raise("a", 3).unwrap();
        assert_eq!((m.get("a").unwrap(), m.get("b").unwrap()), (5, 2));
    }
}
