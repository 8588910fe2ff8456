//! Post-update actions: what swupd's helper does once a change of the root is in (its
//! `scripts.c`), decided from the paths the change touched, plus the executables of the
//! root's drop-in directories. Each action runs with a clean environment, stdin closed,
//! its output on our stderr (so it never mixes into a JSON stream), in a process group of
//! its own that is killed whole at the timeout. A failed or timed-out action is reported;
//! it never undoes the change nor changes the exit code (swupd ignores their status too).
//!
//! With `-p ROOT` other than `/`, as swupd: the boot manager of the root runs with
//! `--path ROOT`; ldconfig runs chrooted (so only as root); systemd is left alone (the
//! root is not the running system); drop-ins run with ROOT as their first argument, not
//! chrooted, like swupd's post-update hook.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::progress::{Event, Observer};

#[cfg(test)]
mod tests;

/// Where drop-ins live, relative to the root: the vendor's, then the admin's; an admin
/// file with the same name replaces the vendor's (a non-executable one masks it).
pub const DROP_IN_DIRS: [&str; 2] = ["usr/lib/chainup/post-update.d", "etc/chainup/post-update.d"];

/// The PATH actions run with: their environment is otherwise only what chainup sets.
const ACTION_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long one action may run by default: clr-boot-manager rewriting an ESP on a slow
/// disk takes tens of seconds; five minutes leaves room without hanging an update forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How often a running action is polled for its end.
const POLL: Duration = Duration::from_millis(10);

/// What a change touched that calls for an action; each holds the first path that did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Triggers {
    /// A shared library or the loader's configuration: ldconfig.
    pub libraries: Option<String>,
    /// A system unit, generator or systemd's configuration: `systemctl daemon-reload`.
    pub units: Option<String>,
    /// systemd itself: `systemctl daemon-reexec` (swupd's rule).
    pub systemd: Option<String>,
    /// A kernel, a boot loader or the boot manager (swupd's rules): the boot manager.
    pub boot: Option<String>,
}

impl Triggers {
    /// Notes one path the change created, replaced or removed.
    pub fn note(&mut self, path: &str) {
        let first = |slot: &mut Option<String>| {
            slot.get_or_insert_with(|| path.to_string());
        };
        if path == "/usr/lib/systemd/systemd" {
            first(&mut self.systemd);
        } else if is_unit(path) {
            first(&mut self.units);
        }
        if is_library(path) {
            first(&mut self.libraries);
        }
        if is_boot(path) {
            first(&mut self.boot);
        }
    }

    /// Adds what `other` calls for (the first path of each stays).
    pub fn merge(&mut self, other: &Triggers) {
        for (slot, theirs) in [
            (&mut self.libraries, &other.libraries),
            (&mut self.units, &other.units),
            (&mut self.systemd, &other.systemd),
            (&mut self.boot, &other.boot),
        ] {
            if slot.is_none() {
                slot.clone_from(theirs);
            }
        }
    }

    /// Calls for the boot manager whatever changed (swupd does after os-install and
    /// repair); `why` says so.
    pub fn force_boot(&mut self, why: &str) {
        self.boot.get_or_insert_with(|| why.to_string());
    }

    /// The names of the triggers set, for the actions' environment.
    pub fn names(&self) -> Vec<&'static str> {
        [
            ("libraries", &self.libraries),
            ("units", &self.units),
            ("systemd", &self.systemd),
            ("boot", &self.boot),
        ]
        .into_iter()
        .filter(|(_, p)| p.is_some())
        .map(|(n, _)| n)
        .collect()
    }
}

/// A shared library (`lib*.so`, `lib*.so.N`) under a library directory, or the loader's
/// configuration.
fn is_library(path: &str) -> bool {
    if path == "/etc/ld.so.conf" || path.starts_with("/etc/ld.so.conf.d/") {
        return true;
    }
    let in_lib = ["/lib", "/usr/lib", "/usr/local/lib"].iter().any(|d| {
        path.strip_prefix(d).is_some_and(|rest| {
            rest.starts_with('/') || rest.starts_with("32/") || rest.starts_with("64/")
        })
    });
    let name = path.rsplit('/').next().unwrap_or(path);
    in_lib && name.starts_with("lib") && (name.ends_with(".so") || name.contains(".so."))
}

/// What `systemctl daemon-reload` reads: system units, generators, systemd's config.
fn is_unit(path: &str) -> bool {
    const DIRS: [&str; 7] = [
        "/usr/lib/systemd/system/",
        "/usr/lib/systemd/system-generators/",
        "/usr/lib/systemd/system.conf.d/",
        "/lib/systemd/system/",
        "/usr/local/lib/systemd/system/",
        "/etc/systemd/system/",
        "/etc/systemd/system.conf.d/",
    ];
    DIRS.iter().any(|d| path.starts_with(d))
        || path == "/usr/lib/systemd/system.conf"
        || path == "/etc/systemd/system.conf"
}

/// swupd's boot-manager heuristics (heuristics.c).
fn is_boot(path: &str) -> bool {
    const EXACT: [&str; 5] = [
        "/usr/bin/bootctl",
        "/usr/bin/clr-boot-manager",
        "/usr/bin/gummiboot",
        "/usr/lib/gummiboot",
        "/usr/share/syslinux/ldlinux.c32",
    ];
    EXACT.contains(&path)
        || path.starts_with("/usr/lib/kernel/")
        || path.starts_with("/usr/lib/systemd/boot")
}

/// Facts about the machine that decide what may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// The root is `/`: the running system.
    pub running_system: bool,
    /// systemd is the running init (`/run/systemd/system` exists).
    pub systemd: bool,
    /// Running in a container: the boot manager is left alone, as swupd does.
    pub container: bool,
    /// Running as root, which chroot needs.
    pub superuser: bool,
}

impl Host {
    /// The facts for `root` on this machine.
    pub fn detect(root: &Path) -> Host {
        let running_system = root.canonicalize().is_ok_and(|r| r == Path::new("/"));
        Host {
            running_system,
            systemd: Path::new("/run/systemd/system").is_dir(),
            container: [
                "/run/systemd/container",
                "/run/.containerenv",
                "/.dockerenv",
            ]
            .iter()
            .any(|p| Path::new(p).exists()),
            superuser: nix::unistd::geteuid().is_root(),
        }
    }
}

/// The change the actions follow.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The root as given (`/` or `-p ROOT`).
    pub root: &'a Path,
    /// The command that changed it (`update`, `os-install`, ...).
    pub command: &'a str,
    pub from: Option<u32>,
    pub to: u32,
    /// How long one action may run before its process group is killed.
    pub timeout: Duration,
}

/// One action, planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// `boot-manager`, `ldconfig`, `daemon-reload`, `daemon-reexec` or `drop-in NAME`.
    pub name: String,
    /// The program and its arguments.
    pub argv: Vec<OsString>,
    /// Why it is planned (the path that called for it, or the drop-in directory).
    pub why: String,
    /// Set when it is not run, with the reason.
    pub skip: Option<String>,
}

impl Action {
    fn new(name: &str, argv: Vec<OsString>, why: String) -> Action {
        Action {
            name: name.to_string(),
            argv,
            why,
            skip: None,
        }
    }

    fn skipped(mut self, reason: impl Into<String>) -> Action {
        self.skip.get_or_insert(reason.into());
        self
    }
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// It ran and failed: its exit status, or why it could not start.
    Failed(String),
    /// It was killed at the timeout.
    TimedOut(Duration),
    Skipped(String),
}

impl Outcome {
    /// The word for JSON and messages.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed(_) => "failed",
            Outcome::TimedOut(_) => "timeout",
            Outcome::Skipped(_) => "skipped",
        }
    }
}

/// What became of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub action: Action,
    pub outcome: Outcome,
}

impl Report {
    /// The command as text, one string per argument.
    pub fn command(&self) -> Vec<String> {
        self.action
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = &self.action.name;
        let why = &self.action.why;
        match &self.outcome {
            Outcome::Done => write!(f, "post-update action {name} ({why}): done"),
            Outcome::Failed(e) => write!(f, "post-update action {name} ({why}) failed: {e}"),
            Outcome::TimedOut(t) => write!(
                f,
                "post-update action {name} ({why}) was killed after {}s",
                t.as_secs_f64()
            ),
            Outcome::Skipped(r) => write!(f, "post-update action {name} ({why}) not run: {r}"),
        }
    }
}

/// The actions `triggers` call for, in swupd's order (boot manager, ldconfig, systemd),
/// then the drop-ins in name order.
pub fn plan(ctx: &Context<'_>, host: Host, triggers: &Triggers) -> Vec<Action> {
    let root = ctx.root;
    let in_root = |p: &str| root.join(p.trim_start_matches('/'));
    let mut out = Vec::new();
    if let Some(path) = &triggers.boot {
        let why = match path.starts_with('/') {
            true => format!("{path} changed"),
            false => path.clone(),
        };
        let action = if host.running_system {
            Action::new(
                "boot-manager",
                vec!["/usr/bin/clr-boot-manager".into(), "update".into()],
                why,
            )
        } else {
            let prog = in_root("/usr/bin/clr-boot-manager");
            Action::new(
                "boot-manager",
                vec![prog.into(), "update".into(), "--path".into(), root.into()],
                why,
            )
        };
        let action = match () {
            _ if host.running_system && host.container => action.skipped("running in a container"),
            _ if !is_executable(Path::new(&action.argv[0])) => {
                let prog = Path::new(&action.argv[0]).display().to_string();
                action.skipped(format!("{prog} is not installed"))
            }
            _ => action,
        };
        out.push(action);
    }
    if let Some(path) = &triggers.libraries {
        let why = format!("{path} changed");
        let found = ["/usr/bin/ldconfig", "/usr/sbin/ldconfig", "/sbin/ldconfig"]
            .into_iter()
            .find(|p| is_executable(&in_root(p)));
        let action = match (host.running_system, found) {
            (true, Some(p)) => Action::new("ldconfig", vec![p.into()], why),
            (false, Some(p)) => Action::new(
                "ldconfig",
                vec!["chroot".into(), root.into(), p.into()],
                why,
            ),
            (_, None) => Action::new("ldconfig", vec!["ldconfig".into()], why)
                .skipped(format!("no ldconfig in {}", root.display())),
        };
        let action = match host.running_system || host.superuser {
            true => action,
            false => action.skipped("running it chrooted in ROOT needs root"),
        };
        out.push(action);
    }
    let systemd = match (&triggers.systemd, &triggers.units) {
        (Some(path), _) => Some(("daemon-reexec", path)),
        (None, Some(path)) => Some(("daemon-reload", path)),
        (None, None) => None,
    };
    if let Some((verb, path)) = systemd {
        let action = Action::new(
            verb,
            vec!["systemctl".into(), verb.into()],
            format!("{path} changed"),
        );
        out.push(match (host.running_system, host.systemd) {
            (false, _) => action.skipped("ROOT is not the running system"),
            (true, false) => action.skipped("systemd is not running"),
            (true, true) => action,
        });
    }
    out.extend(drop_ins(root, host));
    out
}

/// The drop-ins of the root, by name; an admin file replaces the vendor's of that name.
fn drop_ins(root: &Path, host: Host) -> Vec<Action> {
    let mut found: std::collections::BTreeMap<String, PathBuf> = Default::default();
    let mut refused = Vec::new();
    for dir in DROP_IN_DIRS {
        let dir = root.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        if let Err(why) = trusted(&dir) {
            refused.push(
                Action::new(
                    "drop-in",
                    vec![dir.clone().into()],
                    dir.display().to_string(),
                )
                .skipped(why),
            );
            continue;
        }
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if is_drop_in_name(&name) {
                found.insert(name, entry.path());
            }
        }
    }
    let mut out = refused;
    for (name, path) in found {
        let mut argv: Vec<OsString> = vec![path.clone().into()];
        if !host.running_system {
            argv.push(root.into());
        }
        let dir = path.parent().unwrap_or(root).display().to_string();
        let action = Action::new(&format!("drop-in {name}"), argv, dir);
        out.push(match trusted(&path) {
            Ok(()) if is_executable(&path) => action,
            Ok(()) => action.skipped("not executable"),
            Err(why) => action.skipped(why),
        });
    }
    out
}

/// run-parts' rule, with dots allowed inside: no hidden files, backups or package-manager
/// leftovers.
fn is_drop_in_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && ![
            ".dpkg-old",
            ".dpkg-new",
            ".dpkg-dist",
            ".rpmnew",
            ".rpmsave",
            ".swp",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

/// A drop-in (or its directory) runs as root only if no one else could have put it there:
/// not a symlink, owned by root or by us, writable by no group or other user.
fn trusted(path: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.file_type().is_symlink() {
        return Err("a symlink".into());
    }
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!("owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs the planned actions in order (skipped ones are only reported), each bounded by
/// the timeout; tells `observer` about each.
pub fn run(
    ctx: &Context<'_>,
    actions: Vec<Action>,
    triggers: &Triggers,
    observer: &dyn Observer,
) -> Vec<Report> {
    observer.event(Event::Phase {
        name: "Post-update",
        total: actions.len() as u64,
    });
    observer.event(Event::PhaseSize { bytes: 0 });
    let env = environment(ctx, triggers);
    let mut reports = Vec::new();
    for action in actions {
        let outcome = match &action.skip {
            Some(why) => Outcome::Skipped(why.clone()),
            None => run_one(&action.argv, &env, ctx.root, ctx.timeout),
        };
        let report = Report { action, outcome };
        observer.event(Event::PostUpdate(&report));
        observer.event(Event::Advance { items: 1, bytes: 0 });
        reports.push(report);
    }
    observer.event(Event::PhaseDone);
    reports
}

/// Every action's environment: a fixed PATH and the facts of the change.
fn environment(ctx: &Context<'_>, triggers: &Triggers) -> Vec<(&'static str, OsString)> {
    let mut env = vec![
        ("PATH", ACTION_PATH.into()),
        ("LC_ALL", "C".into()),
        ("CHAINUP_ROOT", ctx.root.into()),
        ("CHAINUP_COMMAND", ctx.command.into()),
        ("CHAINUP_TO_VERSION", ctx.to.to_string().into()),
        ("CHAINUP_TRIGGERS", triggers.names().join(" ").into()),
    ];
    if let Some(from) = ctx.from {
        env.push(("CHAINUP_FROM_VERSION", from.to_string().into()));
    }
    env
}

/// Runs one program in its own process group; at the timeout the whole group is killed.
fn run_one(argv: &[OsString], env: &[(&str, OsString)], dir: &Path, timeout: Duration) -> Outcome {
    let stdout = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    };
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start it: {e}")),
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Outcome::Done,
            Ok(Some(status)) => {
                return Outcome::Failed(match (status.code(), status.signal()) {
                    (Some(code), _) => format!("exit status {code}"),
                    (None, Some(sig)) => format!("killed by signal {sig}"),
                    (None, None) => status.to_string(),
                })
            }
            Ok(None) if started.elapsed() < timeout => std::thread::sleep(POLL),
            Ok(None) => break,
            Err(e) => return Outcome::Failed(format!("cannot wait for it: {e}")),
        }
    }
    // The group id is the child's pid (process_group(0)): this reaches what it started.
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    Outcome::TimedOut(timeout)
}
