//! `chainup-publish promote`: points a channel at a published release, at once or in
//! signed waves, or halts its rollout (docs/fleets.md). Content is never touched: a
//! channel is only `W/channels/<NAME>/version/...`, a version URL of its own over the
//! shared content.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use chainup::rollout::{self, Schedule, Wave};
use clap::{ArgGroup, Parser};

use crate::sign::{SignWith, Signing};
use crate::webroot::{self, remove_if_exists, sig_path, write_atomic, Layout};

/// Points channel NAME at release V: writes W/channels/NAME/version/format<F>/latest and
/// W/channels/NAME/version/latest_version (each with .sig). With --waves, `latest` stays
/// on the channel's current version and a signed rollout schedule
/// (W/channels/NAME/version/format<F>/rollout) lets machines move to V wave by wave;
/// --halt re-signs that schedule so machines not yet updated stay.
#[derive(Debug, Parser)]
#[command(
    name = "chainup-publish promote",
    disable_version_flag = true,
    group(ArgGroup::new("what").required(true).args(["version", "halt"])),
)]
pub struct Args {
    /// Webroot holding the published releases.
    #[arg(long, value_name = "W")]
    webroot: PathBuf,

    /// Channel name (letters, digits, '-', '_', '.').
    #[arg(long, value_name = "NAME")]
    channel: String,

    /// Release to promote; it must be published in the webroot.
    #[arg(long, value_name = "V")]
    version: Option<u32>,

    /// Roll V out in waves: SHARE@WHEN,... with WHEN `now`, an offset from --start
    /// (`0h`, `+24h`, `30d`) or an RFC 3339 time; shares grow to 100%.
    /// Example: 1%@0h,10%@24h,100%@72h
    #[arg(long, value_name = "WAVES", requires = "version")]
    waves: Option<String>,

    /// Time the wave offsets count from: `now` (default), unix seconds or RFC 3339.
    #[arg(long, value_name = "TIME", requires = "waves")]
    start: Option<String>,

    /// Halt the channel's rollout: machines not yet on the new version stay.
    #[arg(long, conflicts_with_all = ["version", "waves"])]
    halt: bool,

    /// Manifest format number (default: the release's W/V/format, else 30).
    #[arg(long, value_name = "F")]
    format: Option<u32>,

    /// Signing certificate (PEM); without it nothing is signed.
    #[arg(long, value_name = "C", requires = "key")]
    cert: Option<PathBuf>,

    /// Private key of the signing certificate (PEM, unencrypted).
    #[arg(long, value_name = "K", requires = "cert")]
    key: Option<PathBuf>,

    /// Intermediate certificates to embed in signatures (PEM).
    #[arg(long, value_name = "I", requires = "cert")]
    chain: Option<PathBuf>,
}

/// Runs `promote` and returns what it did, for the user.
pub fn run(args: Args) -> Result<String> {
    rollout::check_channel(&args.channel).map_err(anyhow::Error::msg)?;
    let _lock = webroot::lock(&args.webroot)?;
    let content = Layout::new(&args.webroot);
    let channel_root = args.webroot.join("channels").join(&args.channel);
    let channel = Layout::new(&channel_root);
    let format = match (args.format, args.version) {
        (Some(f), _) => f,
        (None, Some(v)) => read_number(&content.version_dir(v).join("format"))?.unwrap_or(30),
        (None, None) => 30,
    };
    let mut signing = Signing::load(&match (args.cert, args.key) {
        (Some(cert), Some(key)) => SignWith::Key {
            cert,
            key,
            chain: args.chain,
        },
        _ => SignWith::Nothing,
    })?;
    let rollout_path = channel.format_dir(format).join("rollout");
    let current = read_number(&channel.latest(format))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let summary = if args.halt {
        let Some(mut s) = read_schedule(&rollout_path)? else {
            bail!("channel {} has no rollout to halt", args.channel);
        };
        if Some(s.previous) != current || s.halted {
            bail!(
                "the rollout of version {} on channel {} is not in force (already halted, or promoted since)",
                s.version,
                args.channel
            );
        }
        s.halted = true;
        s.sequence = (s.sequence + 1).max(now);
        write_signed(&mut signing, &rollout_path, s.to_text().as_bytes())?;
        format!(
            "channel {}: rollout of version {} halted (schedule {}); machines not yet updated stay on {}\n",
            args.channel, s.version, s.sequence, s.previous
        )
    } else {
        let version = args
            .version
            .expect("clap requires --version without --halt");
        let mom = content.manifest(version, "MoM");
        if !mom.exists() {
            bail!(
                "version {version} is not published in {}",
                args.webroot.display()
            );
        }
        match args.waves {
            None => {
                let text = format!("{version}\n");
                write_signed(&mut signing, &channel.latest(format), text.as_bytes())?;
                write_signed(&mut signing, &channel.latest_version(), text.as_bytes())?;
                // A schedule from an earlier rollout would now be out of force; drop it.
                remove_if_exists(&sig_path(&rollout_path))?;
                remove_if_exists(&rollout_path)?;
                format!(
                    "channel {}: latest is now version {version}\n",
                    args.channel
                )
            }
            Some(spec) => {
                let Some(previous) = current else {
                    bail!(
                        "channel {} has no version yet to roll out from: promote one without --waves first",
                        args.channel
                    );
                };
                let start = match &args.start {
                    Some(t) => parse_time(t, now)?,
                    None => now,
                };
                let earlier = read_schedule(&rollout_path)?.map_or(0, |s| s.sequence);
                let s = Schedule {
                    channel: args.channel.clone(),
                    sequence: (earlier + 1).max(now),
                    version,
                    previous,
                    halted: false,
                    waves: parse_waves(&spec, start, now)?,
                };
                s.check().map_err(anyhow::Error::msg)?;
                write_signed(&mut signing, &rollout_path, s.to_text().as_bytes())?;
                let mut out = format!(
                    "channel {}: version {version} rolls out from {previous} (schedule {}):\n",
                    args.channel, s.sequence
                );
                for (i, w) in s.waves.iter().enumerate() {
                    out.push_str(&format!(
                        "  wave {}: {} of the fleet from {}\n",
                        i + 1,
                        rollout::format_share(w.share),
                        humantime::format_rfc3339_seconds(
                            UNIX_EPOCH + Duration::from_secs(w.start)
                        )
                    ));
                }
                out
            }
        }
    };
    webroot::sync_dir(&channel.format_dir(format)).ok();
    Ok(match signing.note() {
        Some(note) => format!("{summary}{note}"),
        None => summary,
    })
}

/// Writes `data` at `path` with its signature beside it (signature first, so a reader
/// never finds new data with no signature at all).
fn write_signed(signing: &mut Signing, path: &Path, data: &[u8]) -> Result<()> {
    signing.sign_file(path, data)?;
    write_atomic(path, data)?;
    Ok(())
}

/// The first line of a version file as a number, `None` if the file is missing.
fn read_number(path: &Path) -> Result<Option<u32>> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let first = t.lines().next().unwrap_or_default().trim();
            let n = first
                .parse()
                .with_context(|| format!("{}: {first:?} is not a number", path.display()))?;
            Ok(Some(n))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn read_schedule(path: &Path) -> Result<Option<Schedule>> {
    match std::fs::read(path) {
        Ok(text) => Ok(Some(Schedule::parse(&text, &path.display().to_string())?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `SHARE@WHEN,...` into waves.
fn parse_waves(spec: &str, start: u64, now: u64) -> Result<Vec<Wave>> {
    spec.split(',')
        .map(|item| {
            let (share, when) = item
                .split_once('@')
                .with_context(|| format!("wave {item:?}: expected SHARE@WHEN, e.g. 10%@24h"))?;
            let share = rollout::parse_share(share.trim()).map_err(anyhow::Error::msg)?;
            Ok(Wave {
                share,
                start: parse_when(when.trim(), start, now)
                    .with_context(|| format!("wave {item:?}"))?,
            })
        })
        .collect()
}

/// A wave's start: `now`, an offset from `start` (`24h`, `+30d`), or a time.
fn parse_when(when: &str, start: u64, now: u64) -> Result<u64> {
    if when == "now" {
        return Ok(now);
    }
    let offset = when.strip_prefix('+').unwrap_or(when);
    if let Ok(d) = humantime::parse_duration(offset) {
        return Ok(start + d.as_secs());
    }
    parse_time(when, now)
}

/// `now`, unix seconds, or an RFC 3339 time.
fn parse_time(text: &str, now: u64) -> Result<u64> {
    if text == "now" {
        return Ok(now);
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let t = humantime::parse_rfc3339_weak(text).with_context(|| {
        format!("{text:?} is neither now, an offset such as 24h, unix seconds nor an RFC 3339 time")
    })?;
    Ok(t.duration_since(UNIX_EPOCH)?.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_relative_and_absolute() {
        let w = parse_waves("1%@0h,10%@+24h,100%@2024-01-01T00:00:00Z", 1000, 5).unwrap();
        assert_eq!(
            w[0],
            Wave {
                share: 100,
                start: 1000
            }
        );
        assert_eq!(
            w[1],
            Wave {
                share: 1000,
                start: 1000 + 86_400
            }
        );
        assert_eq!(w[2].start, 1_704_067_200);
        assert_eq!(parse_waves("10%@now", 1000, 5).unwrap()[0].start, 5);
        assert!(parse_waves("10%", 0, 0).is_err());
        assert!(parse_waves("10%@soon", 0, 0).is_err());
    }
}
