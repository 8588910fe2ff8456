//! The `chainup` command line: arguments, settings from config and flags, dispatch, output.

pub mod args;
mod bundles;
mod check;
pub mod commands;
mod format_bump;
mod man;
pub mod output;
mod post;
mod stale_mirror;
pub mod swupd_compat;
mod urls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::CommandFactory;
use serde_json::json;

pub use args::{Cli, Command, Global};
use output::Output;
use swupd_compat::Requested;

use crate::client::{Access, Client, Settings, Updated};
use crate::config::{Config, CONFIG_PATH};
use crate::install::boot;
use crate::install::esp::ENTRY_DIR;
use crate::slots::{Slot, Slots};
use crate::source::SourceConfig;
use crate::state::StateDir;
use crate::{hash, Error, Result};

/// The trust store swupd uses by default.
pub const DEFAULT_CERT: &str = "/usr/share/clear/update-ca/Swupd_Root.pem";
/// `mark-good --has-slots` when it cannot tell: what fails systemd's `ExecCondition=`.
pub const EXIT_CONDITION_FAILED: i32 = 255;
/// Content format used when neither flag, config nor root names one.
pub const DEFAULT_FORMAT: crate::format::Format = crate::format::Format::Number(30);

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let section = cli.command.name();
    let g = &cli.global;
    let out = Output::new(g.json_output, g.quiet, g.no_progress, section);
    let started = std::time::Instant::now();
    let code = match dispatch(&cli, &out) {
        Ok(code) => code,
        Err(e) => {
            out.error(&e.to_string());
            e.exit_code()
        }
    };
    if g.time {
        out.result(&format!(
            "Time spent: {:.3} s",
            started.elapsed().as_secs_f64()
        ));
    }
    out.end(section, code);
    code
}

fn dispatch(cli: &Cli, out: &Output) -> Result<i32> {
    // swupd's `os-install PATH` names the root as -p does.
    let with_root;
    let g = match &cli.command {
        Command::OsInstall {
            root: Some(root), ..
        } => {
            if cli.global.path.is_some() {
                return Err(Error::Usage(
                    "os-install takes the root as PATH or as --path, not both".into(),
                ));
            }
            with_root = Global {
                path: Some(root.clone()),
                ..cli.global.clone()
            };
            &with_root
        }
        _ => &cli.global,
    };
    match &cli.command {
        Command::Hashdump { no_xattrs, file } => {
            // swupd's `hashdump -n` means --no-xattrs; here -n is the global short flag.
            hashdump(g, *no_xattrs || g.nosigcheck, file, out)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "chainup",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        // Run late in boot: needs neither a server URL nor a trust store.
        Command::MarkGood { has_slots } => mark_good(g, *has_slots, out),
        // Local only, so it also works on a machine not yet pointed at a server.
        Command::Info => info(g, out),
        Command::Clean(a) => commands::clean(g, a, out),
        Command::Mirror(a) => commands::mirror(g, a, out),
        Command::Autoupdate(a) => commands::autoupdate(g, a, out),
        Command::ThirdParty(a) => commands::third_party(g, a, out),
        Command::Man { dir: None } => man::write_main(&mut std::io::stdout()).map(|()| 0),
        Command::Man { dir: Some(dir) } => man::write_pages(dir).map(|_| 0),
        cmd => {
            let mut settings = settings(g)?;
            settings.keepcache = matches!(cmd, Command::Update { swupd, .. } if swupd.keepcache);
            if matches!(cmd, Command::Update { swupd, .. } if !swupd.status) {
                stale_mirror::check(g, &local_config(g)?.1, &mut settings, out)?;
            }
            if settings.nosigcheck {
                out.loud_warning(
                    "signature checks are OFF (--nosigcheck): content is not authenticated; lab use only",
                );
            }
            let access = match cmd {
                Command::OsInstall { .. } => Access::Install,
                Command::Update { swupd, .. } if swupd.status => Access::Read,
                Command::CheckUpdate
                | Command::BundleList { .. }
                | Command::BundleInfo(_)
                | Command::Diagnose(_)
                | Command::Verify { fix: false, .. } => Access::Read,
                _ => Access::Write,
            };
            let client = Client::new(settings, out, access)?;
            run_client(cmd, &client, g, out)
        }
    }
}

fn run_client(cmd: &Command, client: &Client, g: &Global, out: &Output) -> Result<i32> {
    let result = run_command(cmd, client, g, out);
    // Also after a failure: the finished update is in place whatever came next.
    post::owed(client, g, out)?;
    result
}

fn run_command(cmd: &Command, client: &Client, g: &Global, out: &Output) -> Result<i32> {
    match cmd {
        Command::Update {
            version,
            download,
            swupd,
        } => {
            // As swupd, --incremental leaves the 3rd-party repositories alone.
            let third_party = swupd.third_party && !swupd.incremental;
            if swupd.status {
                let code = check_update(client, out)?;
                if !third_party {
                    return Ok(code);
                }
                out.result("Checking update status of content from 3rd-party repositories");
                let any = commands::third_party_check_update(g, &None, out)?;
                return Ok(if code == 0 || any { 0 } else { 1 });
            }
            let _lock = client.lock()?;
            let target = version.and_then(Requested::version);
            let done = match swupd.incremental {
                true => client.update_incremental(target, *download)?,
                false => vec![client.update(target, *download)?],
            };
            for step in &done {
                report(out, step);
                if let Updated::Done { from, to, applied } = step {
                    post::run(client, g, out, cmd.name(), (*from, *to), &applied.changed)?;
                }
            }
            let mut reached = done.last().map(|step| match step {
                Updated::UpToDate { current, .. } => *current,
                Updated::Downloaded { to } | Updated::Done { to, .. } => *to,
            });
            if let ([step], None, false) = (done.as_slice(), target, swupd.incremental) {
                reached = format_bump::follow(g, out, client, step)?.or(reached);
            }
            // The release just reached: the root's os-release may not say it (swupd's
            // test content does not always carry one).
            if let (true, Some(version)) = (swupd.update_search_file_index, reached) {
                bundles::search_file_index(client, out, version)?;
            }
            // Only after the system's own update succeeded, as swupd.
            if third_party {
                out.result("Updating content from 3rd-party repositories");
                commands::third_party_update(g, &None, None, *download, out)?;
            }
            Ok(0)
        }
        Command::OsInstall {
            version,
            bundles,
            swupd,
            ..
        } => {
            let _lock = client.lock()?;
            let opts = crate::client::InstallOptions {
                skip_optional: swupd.skip_optional,
                download_only: swupd.download,
                force: swupd.force,
                statedir_cache: swupd.statedir_cache.clone(),
            };
            let target = version.and_then(Requested::version);
            let updated = client.os_install_with(target, bundles, &opts)?;
            report(out, &updated);
            if let Updated::Done { from, to, applied } = &updated {
                let mut changed = applied.changed.clone();
                changed.force_boot("always after os-install, as swupd");
                post::run(client, g, out, cmd.name(), (*from, *to), &changed)?;
            }
            Ok(0)
        }
        Command::CheckUpdate => check_update(client, out),
        Command::BundleAdd {
            bundles,
            skip_optional,
        } => {
            let _lock = client.lock()?;
            let bundles = bundles::expand_aliases(client, bundles, out)?;
            let added = client.bundle_add_with(&bundles, *skip_optional)?;
            let applied = &added.applied;
            out.result(&format!(
                "Installed {}: {} files, {} directories",
                added.bundles.join(", "),
                applied.files,
                applied.dirs
            ));
            if applied.files + applied.dirs + applied.deleted > 0 {
                let v = client.current_version()?;
                post::run(client, g, out, cmd.name(), (Some(v), v), &applied.changed)?;
            }
            // As swupd: the others are installed, and a skipped name's code is the command's.
            Ok(added.skipped.last().map_or(0, |e| e.exit_code()))
        }
        Command::BundleRemove { bundles, opts } => {
            let _lock = client.lock()?;
            bundles::remove(client, bundles, opts, out)
        }
        Command::BundleList(args) => bundles::list(client, args, out),
        Command::Diagnose(args)
        | Command::Verify {
            fix: false,
            check: args,
        } => {
            // Keeps an update from changing the root under the check; a state directory
            // that does not exist has no update running and is not created.
            let _lock = match client.state().exists() {
                true => Some(client.lock()?),
                false => None,
            };
            check::diagnose(
                client,
                &swupd_compat::check_options(client, cmd, args)?,
                out,
            )
        }
        Command::Repair(args)
        | Command::Verify {
            fix: true,
            check: args,
        } => {
            let _lock = client.lock()?;
            check::repair(
                client,
                &swupd_compat::check_options(client, cmd, args)?,
                g,
                out,
            )
        }
        Command::BundleInfo(a) => commands::bundle_info(client, a, out),
        Command::SearchFile(a) => commands::search_file(client, a, out),
        Command::Hashdump { .. }
        | Command::Clean(_)
        | Command::Mirror(_)
        | Command::Autoupdate(_)
        | Command::ThirdParty(_)
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::MarkGood { .. }
        | Command::Info => {
            unreachable!("handled before")
        }
    }
}

/// `check-update` (and swupd's `update --status`): exit 0 when a newer version is there.
fn check_update(client: &Client, out: &Output) -> Result<i32> {
    let (current, target) = client.check_update()?;
    let latest = target.version;
    let newer = latest > current;
    let mut text = if newer {
        format!("Update available: version {latest} (current {current})")
    } else {
        format!("No update available (current {current}, server {latest})")
    };
    let mut record = json!({"type": "info", "current": current, "latest": latest, "signed_latest": target.latest});
    if let Some(wave) = &target.wave {
        text = format!("{text}; {}", wave.describe());
        record["rollout"] = rollout_json(wave);
    }
    record["msg"] = json!(text);
    out.record(&text, record);
    Ok(if newer { 0 } else { 1 })
}

/// A machine's place in a rollout, for `--json-output`.
fn rollout_json(wave: &crate::client::WaveStanding) -> serde_json::Value {
    use crate::rollout::Standing;
    let (n, start, state) = match wave.standing {
        Standing::Started { wave } => (wave, None, "started"),
        Standing::Waiting { wave, start } => (wave, Some(start), "waiting"),
        Standing::Halted { wave } => (wave, None, "halted"),
    };
    json!({"channel": wave.channel, "version": wave.version, "wave": n, "waves": wave.waves,
           "state": state, "wave_start": start, "ignored": wave.ignored})
}

fn report(out: &Output, updated: &Updated) {
    let text = match updated {
        Updated::UpToDate { current, target } if current == target => {
            format!("Version {current} is the latest; nothing to do")
        }
        Updated::UpToDate { current, target } => format!(
            "Version {current} is installed and {target} is not newer; nothing to do (--allow-downgrade to go back)"
        ),
        Updated::Downloaded { to } => {
            format!("Content for version {to} is downloaded and verified")
        }
        Updated::Done { from, to, applied } => format!(
            "{} version {to}: {} files and {} directories installed, {} removed",
            match from {
                Some(f) => format!("Updated from version {f} to"),
                None => "Installed".to_string(),
            },
            applied.files,
            applied.dirs,
            applied.deleted
        ),
    };
    out.result(&text);
}

/// `info` lines about the A/B slots: the active one, what each holds, the boot entries.
fn slots_info(slots: &Slots, state: &StateDir, out: &Output) -> Result<()> {
    let status = boot::status(slots, state)?;
    let active = match &status.active {
        Ok(a) => format!("{} ({})", a.slot, a.evidence.join("; ")),
        Err(why) => format!("unknown: {why}"),
    };
    out.result(&format!("Active slot: {active}"));
    for slot in Slot::ALL {
        out.result(&boot::describe(slots, &status, slot));
    }
    let names: Vec<&str> = status.entries.iter().map(|e| e.name.as_str()).collect();
    out.result(&format!(
        "Boot entries in {}: {}",
        slots.esp.join(ENTRY_DIR).display(),
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    ));
    Ok(())
}

/// `mark-good`: the running slot booted well; its entry keeps no boot counter.
/// `has_slots`: only answer whether the config has slots (exit 0) or not (exit 1).
fn mark_good(g: &Global, has_slots: bool, out: &Output) -> Result<i32> {
    let (root, config) = match local_config(g) {
        Ok(found) => found,
        // systemd's ExecCondition= skips the unit on exits 1 to 254 and fails it on 255:
        // a config that cannot be read must fail it visibly, not leave the boot unblessed.
        Err(e) if has_slots => {
            out.error(&e.to_string());
            return Ok(EXIT_CONDITION_FAILED);
        }
        Err(e) => return Err(e),
    };
    // A machine without A/B slots boots no counted entry: nothing to accept, and the
    // boot-time unit must not fail every boot over it.
    let Some(slots) = config.slots.as_ref() else {
        if !has_slots {
            out.result("Nothing to mark: the config has no [slots] table, so no A/B boot entry");
        }
        return Ok(i32::from(has_slots));
    };
    if has_slots {
        return Ok(0);
    }
    let slots = Slots::from_config(slots)?;
    let state = StateDir::open(&state_dir(g, &config, &root))?;
    let _lock = state.lock()?;
    let text = match boot::mark_good(&slots, &state, crate::version::installed(&root)?)? {
        boot::MarkGood::Marked { from, to } => format!("Boot entry {from} marked good: {to}"),
        boot::MarkGood::AlreadyGood(name) => format!("Boot entry {name} is already marked good"),
    };
    out.result(&text);
    Ok(0)
}

fn hashdump(g: &Global, no_xattrs: bool, file: &Path, out: &Output) -> Result<i32> {
    let full = match &g.path {
        Some(prefix) => {
            std::fs::create_dir_all(prefix).map_err(|e| Error::io(prefix, e))?;
            let real = prefix.canonicalize().map_err(|e| Error::io(prefix, e))?;
            real.join(file.strip_prefix("/").unwrap_or(file))
        }
        None => file.to_path_buf(),
    };
    if !g.quiet {
        let with = if no_xattrs { "without" } else { "with" };
        out.result(&format!(
            "Calculating hash {with} xattrs for: {}",
            full.display()
        ));
    }
    let h = hash::hash_path(&full, !no_xattrs).map_err(|e| Error::io(&full, e))?;
    out.record(
        &h.to_hex(),
        json!({"type": "hash", "path": full, "hash": h.to_hex()}),
    );
    Ok(0)
}

/// `info`: the root, its versions and bundles, the configured server, and the A/B slots.
/// Reads only local state; an unconfigured URL is shown as such.
fn info(g: &Global, out: &Output) -> Result<i32> {
    let (root, config) = local_config(g)?;
    let state_dir = state_dir(g, &config, &root);
    let server = settings(g).ok();
    let show = |v: Option<String>| v.unwrap_or_else(|| "(not configured)".into());
    let current = crate::version::installed(&root)?;
    let lines = [
        format!("Root: {}", root.display()),
        format!(
            "Installed version: {}",
            current.map_or("none".into(), |v| v.to_string())
        ),
        format!(
            "Highest version installed: {}",
            crate::version::HighWaterMark::new(&state_dir).get()?
        ),
        format!(
            "Content URL: {}",
            show(server.as_ref().map(|s| s.content_url.clone()))
        ),
        format!(
            "Version URL: {}",
            show(server.as_ref().map(|s| s.version_url.clone()))
        ),
        format!(
            "Channel: {}",
            server
                .as_ref()
                .and_then(|s| s.channel.clone())
                .unwrap_or_else(|| "(none: the version URL's own latest)".into())
        ),
        format!(
            "Mirrors: {}",
            server
                .as_ref()
                .map(|s| s.mirrors.join(", "))
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "(none)".into())
        ),
        format!(
            "Format: {}",
            show(server.as_ref().map(|s| s.format.to_string()))
        ),
        format!("State directory: {}", state_dir.display()),
        format!(
            "Bundles: {}",
            crate::client::installed_bundles(&root)?.join(", ")
        ),
    ];
    for l in lines {
        out.result(&l);
    }
    if let Some(t) = StateDir::at(&state_dir).last_transfer() {
        out.result(&format!("Last download: {t}"));
    }
    if let Some(slots) = &config.slots {
        slots_info(&Slots::from_config(slots)?, &StateDir::at(&state_dir), out)?;
    }
    Ok(0)
}

/// The target root and the config file that applies to it.
fn local_config(g: &Global) -> Result<(PathBuf, Config)> {
    let root = g.path.clone().unwrap_or_else(|| PathBuf::from("/"));
    let config = match &g.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(&root.join(CONFIG_PATH), false)?,
    };
    Ok((root, config))
}

/// The state directory: flag, then config, then `ROOT/var/lib/chainup`.
fn state_dir(g: &Global, config: &Config, root: &Path) -> PathBuf {
    g.statedir
        .clone()
        .or(config.statedir.clone())
        .unwrap_or_else(|| root.join("var/lib/chainup"))
}

/// Resolves flags over the config file over defaults.
pub fn settings(g: &Global) -> Result<Settings> {
    let (root, config) = local_config(g)?;
    let found = urls::resolve(g, &config, &root)?;
    let content_url = found.content.ok_or_else(|| {
        Error::Usage(
            "no content URL: give -u/--url or -c/--contenturl, set url in the config, or write swupd's usr/share/defaults/swupd/contenturl".into(),
        )
    })?;
    let content_url = urls::with_port(content_url, g.port)?;
    let channel = channel(g, &config, &root)?;
    let version_url = match &channel {
        Some(name) => format!("{}/channels/{name}", content_url.trim_end_matches('/')),
        None => urls::with_port(found.version.unwrap_or_else(|| content_url.clone()), g.port)?,
    };
    let format = urls::format(g, &config, &root, DEFAULT_FORMAT)?;
    let retries = g.max_retries.or(config.max_retries).unwrap_or(3);
    let delay = g.retry_delay.or(config.retry_delay).unwrap_or(10);
    if delay > 60 {
        return Err(Error::Usage(format!(
            "--retry-delay {delay} is over 60 seconds"
        )));
    }
    let max_parallel_downloads = parallel_downloads(g, &config, &root)?;
    let defaults = SourceConfig::default();
    let min_rate = g
        .min_rate
        .or(config.min_rate)
        .unwrap_or(defaults.min_rate.0);
    let window = g
        .min_rate_window
        .or(config.min_rate_window)
        .unwrap_or(defaults.min_rate.1.as_secs());
    if !(1..=3600).contains(&window) {
        return Err(Error::Usage(format!(
            "--min-rate-window {window} must be between 1 and 3600 seconds"
        )));
    }
    let mirrors = mirrors(g, &config, &root)?
        .into_iter()
        .map(|m| urls::with_port(m, g.port))
        .collect::<Result<Vec<_>>>()?;
    let source = SourceConfig {
        allow_insecure_http: g.allow_insecure_http || config.allow_insecure_http.unwrap_or(false),
        ca_file: g.cacert.clone().or(config.cacert.clone()),
        retries,
        retry_delay: Duration::from_secs(delay),
        min_rate: (min_rate, Duration::from_secs(window)),
        ..defaults
    };
    Ok(Settings {
        state_dir: state_dir(g, &config, &root),
        root,
        content_url,
        version_url,
        format,
        unsigned_latest: g.nosigcheck_latest,
        keepcache: false,
        post_update: crate::client::PostUpdate {
            no_boot_update: g.no_boot_update,
            no_scripts: g.no_scripts,
            wait_for_scripts: g.wait_for_scripts,
        },
        cert_path: g
            .certpath
            .clone()
            .or(config.certpath.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CERT)),
        crl_path: g.crlpath.clone().or(config.crlpath.clone()),
        nosigcheck: g.nosigcheck || config.nosigcheck.unwrap_or(false),
        source,
        max_parallel_downloads,
        allow_downgrade: g.allow_downgrade,
        max_age_days: g.max_age.or(config.max_age),
        fullfile_cap: crate::limits::FULLFILE,
        mirrors,
        channel,
        ignore_waves: g.ignore_waves,
        slots: config.slots.clone(),
        refuse_special_modes: false,
    })
}

/// The channel: `--channel`, else the config's `channel` (which a `-v` on the command
/// line overrides, and a `versionurl` in the same config contradicts).
fn channel(g: &Global, config: &Config, root: &Path) -> Result<Option<String>> {
    let name = match (&g.channel, &config.channel) {
        (Some(name), _) => name.clone(),
        (None, Some(_)) if g.versionurl.is_some() => return Ok(None),
        (None, Some(name)) if config.versionurl.is_some() => {
            return Err(Error::Config {
                path: g.config.clone().unwrap_or_else(|| root.join(CONFIG_PATH)),
                reason: format!("channel {name:?} and versionurl both name the version URL"),
            })
        }
        (None, Some(name)) => name.clone(),
        (None, None) => return Ok(None),
    };
    crate::rollout::check_channel(&name).map_err(Error::Usage)?;
    Ok(Some(name))
}

/// Further content URLs: swupd's `ROOT/etc/swupd/mirror_contenturl`, the config's
/// `mirrors`, then each `--mirror`.
fn mirrors(g: &Global, config: &Config, root: &Path) -> Result<Vec<String>> {
    let path = root.join("etc/swupd/mirror_contenturl");
    let mut out = match std::fs::read_to_string(&path) {
        Ok(t) => t
            .lines()
            .next()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .into_iter()
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    out.extend(config.mirrors.iter().flatten().cloned());
    out.extend(g.mirrors.iter().cloned());
    Ok(out)
}

/// `-W` over the config's `max-parallel-downloads` over swupd's 15, within 1 to
/// [`MAX_PARALLEL_DOWNLOADS`](crate::limits::MAX_PARALLEL_DOWNLOADS).
fn parallel_downloads(g: &Global, config: &Config, root: &Path) -> Result<usize> {
    let max = crate::limits::MAX_PARALLEL_DOWNLOADS;
    let check = |n: usize| {
        if (1..=max).contains(&n) {
            Ok(n)
        } else {
            Err(format!(
                "max-parallel-downloads {n} is out of range: at least 1, at most {max}"
            ))
        }
    };
    if let Some(n) = g.max_parallel_downloads {
        return check(n).map_err(|reason| Error::Usage(format!("-W/--{reason}")));
    }
    match config.max_parallel_downloads {
        Some(n) => check(n).map_err(|reason| Error::Config {
            path: g.config.clone().unwrap_or_else(|| root.join(CONFIG_PATH)),
            reason,
        }),
        None => Ok(15),
    }
}
