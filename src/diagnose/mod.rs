//! `diagnose` and `repair`: compare the root with the verified manifests of its installed
//! bundles, and put back what differs through the same chain and installer as `update`.
//!
//! Heuristics (as swupd's `ignore()` in `verify.c`, see `plan::classify`): a missing entry
//! is a problem whatever its class; a changed `/etc` (config) or state entry is reported as
//! a kept local change that neither counts as a problem nor is replaced; entries the
//! manifests mark deleted count only outside config, state and boot paths (swupd leaves
//! those to the admin and the boot manager). Ghosted entries are ignored.
//!
//! Image payloads (`FileSet::image`) are not part of the root; `--images` checks the running
//! slot and its EFI binary instead (`images.rs`), reported as `/core` and `/efiboot`.

mod check;
mod images;
mod picky;
mod repair;

use std::collections::BTreeSet;

use crate::chain::{VerifiedManifest, VerifiedMom};
use crate::client::{Client, OS_CORE};
use crate::format::Format;
use crate::hash::{Hash, Kind, Meta};
use crate::manifest::{self, EntryType};
use crate::plan::FileSet;
use crate::progress::Event;
use crate::{Error, Result};

pub use repair::{repair, Repaired};

/// Where `--picky` looks by default (swupd's default too).
pub const DEFAULT_PICKY_TREE: &str = "/usr";
/// What `--picky` leaves alone by default: plain path prefixes (a path is skipped when it
/// equals one or lies below it). swupd takes a regex; prefixes cover its default.
pub const DEFAULT_PICKY_WHITELIST: [&str; 4] = [
    "/usr/lib/modules",
    "/usr/lib/kernel",
    "/usr/local",
    "/usr/src",
];

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// Version to check against (default: the installed one).
    pub version: Option<u32>,
    /// Only the entries of these installed bundles (and their includes); empty: all.
    pub bundles: Vec<String>,
    /// Only this manifest path, and for a directory everything under it.
    pub file: Option<String>,
    /// Only look for missing entries (no hashing, no deleted or extra entries).
    pub quick: bool,
    /// Also look for entries under `picky_tree` that no installed manifest lists.
    pub picky: bool,
    /// swupd's `--extra-files-only`: only the `picky` search; tracked entries are not
    /// checked (so repair only removes extras).
    pub extra_files_only: bool,
    /// Where `picky` looks (the CLI makes it `file` when only that is given, as swupd).
    pub picky_tree: String,
    /// Path prefixes `picky` leaves alone.
    pub picky_whitelist: Vec<String>,
    /// Allow repairing to a version other than the installed one.
    pub force: bool,
    /// diagnose only: also check the running A/B slot and its EFI binary.
    pub images: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            version: None,
            bundles: Vec::new(),
            file: None,
            quick: false,
            picky: false,
            extra_files_only: false,
            picky_tree: DEFAULT_PICKY_TREE.into(),
            picky_whitelist: DEFAULT_PICKY_WHITELIST.map(String::from).to_vec(),
            force: false,
            images: false,
        }
    }
}

/// What is wrong with one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A tracked entry is not there.
    Missing,
    /// A tracked entry hashes differently; `found` is what is on disk.
    Mismatch {
        expected: Hash,
        actual: Hash,
        found: Meta,
    },
    /// A tracked entry cannot be checked: a parent is a symlink or not a directory, or
    /// reading it failed.
    Unreachable { reason: String },
    /// An entry the manifests mark deleted is still there.
    NotDeleted,
    /// `--picky`: an entry no installed manifest lists.
    Extra,
    /// A config or state entry changed locally; kept, as `update` keeps it (not a problem).
    LocalChange { expected: Hash, actual: Hash },
}

/// One path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub problem: Problem,
    /// The manifest's type, for tracked entries.
    pub expected_type: Option<EntryType>,
    /// Exact differences learnt from the verified object (repair), e.g. "mode 0600, expected 0755".
    pub details: Vec<String>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The version checked against.
    pub version: u32,
    /// Tracked entries looked at.
    pub checked: usize,
    /// Everything found, in path order (extras last).
    pub findings: Vec<Finding>,
}

impl Report {
    /// The findings that are problems (local config and state changes are not).
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_problem())
    }

    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems().next().is_none()
    }
}

impl Finding {
    fn new(path: &str, problem: Problem, expected_type: Option<EntryType>) -> Finding {
        Finding {
            path: path.to_string(),
            problem,
            expected_type,
            details: Vec::new(),
        }
    }

    /// False for kept local changes, true for everything diagnose fails on.
    pub fn is_problem(&self) -> bool {
        !matches!(self.problem, Problem::LocalChange { .. })
    }

    /// A short machine name for the kind of finding.
    pub fn kind(&self) -> &'static str {
        match self.problem {
            Problem::Missing => "missing",
            Problem::Mismatch { .. } => "mismatch",
            Problem::Unreachable { .. } => "unreachable",
            Problem::NotDeleted => "not-deleted",
            Problem::Extra => "extra",
            Problem::LocalChange { .. } => "local-change",
        }
    }

    /// The type found on disk when it is not the one the manifest lists.
    pub fn type_differs(&self) -> Option<(Kind, Kind)> {
        let Problem::Mismatch { found, .. } = &self.problem else {
            return None;
        };
        let expected = kind_of(self.expected_type?)?;
        (expected != found.kind).then_some((expected, found.kind))
    }

    /// One line for people.
    pub fn message(&self) -> String {
        let p = &self.path;
        let mut msg = match &self.problem {
            Problem::Missing => format!("Missing: {p}"),
            Problem::Mismatch {
                expected, actual, ..
            } => format!("Hash mismatch: {p} (expected {expected}, actual {actual})"),
            Problem::Unreachable { reason } => format!("Cannot check: {p} ({reason})"),
            Problem::NotDeleted => format!("Not deleted: {p} (the manifests mark it deleted)"),
            Problem::Extra => format!("Extra: {p} (in no installed manifest)"),
            Problem::LocalChange { expected, actual } => format!(
                "Local change kept: {p} (expected {expected}, actual {actual}; config and state are not replaced)"
            ),
        };
        if let Some((expected, found)) = self.type_differs() {
            msg.push_str(&format!(
                "; type differs: expected {}, found {}",
                kind_name(expected),
                kind_name(found)
            ));
        }
        for d in &self.details {
            msg.push_str("; ");
            msg.push_str(d);
        }
        msg
    }
}

/// The on-disk kind a manifest type stands for.
fn kind_of(t: EntryType) -> Option<Kind> {
    match t {
        EntryType::File => Some(Kind::File),
        EntryType::Dir => Some(Kind::Dir),
        EntryType::Link => Some(Kind::Symlink),
        EntryType::Manifest | EntryType::Unset => None,
    }
}

/// "file", "directory" or "symlink".
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Symlink => "symlink",
    }
}

/// The verified view the root is checked against.
struct Scope {
    mom: VerifiedMom,
    /// The bundles the root holds (as recorded, those still in this version).
    installed: Vec<String>,
    manifests: Vec<VerifiedManifest>,
    /// Every installed bundle consolidated, so `--bundles` never misreads a path another
    /// bundle still ships as deleted.
    all: FileSet,
    /// The paths to check (`None`: all of `all`).
    only: Option<BTreeSet<String>>,
}

impl Scope {
    fn load(client: &Client, opts: &Options) -> Result<Scope> {
        let version = match opts.version {
            Some(v) => v,
            None => client.current_version()?,
        };
        let mom = client.verified_mom(version)?;
        same_format(client, &mom, opts.force)?;
        let mut installed = client.installed_bundles()?;
        if installed.is_empty() {
            installed.push(OS_CORE.to_string());
        }
        // An installed bundle the version lacks is refused (3) unless --force skips it, as
        // swupd: unchecked, its files would be extras to --picky, which removes them.
        let mut unknown = None;
        installed.retain(|b| {
            let known = mom.bundle(b).is_some();
            if !known {
                client.observer().event(Event::Warning(format!(
                    "bundle {b} is installed but not in version {version}; {}",
                    if opts.force {
                        "not checked (--force)"
                    } else {
                        "--force skips it"
                    }
                )));
                unknown = Some(b.clone());
            }
            known
        });
        if let (Some(b), false) = (unknown, opts.force) {
            return Err(Error::UnknownBundle(b));
        }
        let manifests = client
            .resolve(&mom, &installed, false)
            .map_err(|e| e.manifest_unloadable(version))?;
        let all = FileSet::from_manifests(&manifests);
        let mut only: Option<BTreeSet<String>> = None;
        if !opts.bundles.is_empty() {
            let named = chosen_bundles(client, &mom, &manifests, opts)?;
            let chosen = match named.is_empty() {
                true => Vec::new(),
                false => client
                    .resolve(&mom, &named, false)
                    .map_err(|e| e.manifest_unloadable(version))?,
            };
            only = Some(
                chosen
                    .iter()
                    .flat_map(|m| m.manifest().entries.iter())
                    .map(|e| e.path.clone())
                    .collect(),
            );
        }
        if let Some(file) = &opts.file {
            // As swupd: the path itself and, for a directory, everything under it; a path
            // no manifest lists checks nothing (only --picky may find it extra).
            manifest::validate_path(file).map_err(Error::Usage)?;
            let chosen = all
                .entries()
                .filter(|e| is_under(&e.path, file))
                .filter(|e| only.as_ref().is_none_or(|o| o.contains(&e.path)))
                .map(|e| e.path.clone())
                .collect();
            only = Some(chosen);
        }
        Ok(Scope {
            mom,
            installed,
            manifests,
            all,
            only,
        })
    }
}

/// The `--bundles` to check, as swupd chooses them: a name that is not installed is
/// skipped with a warning (none left: nothing is checked); a name this version does not
/// have is named, and fails the command (exit 3) unless `--force` skips it too.
fn chosen_bundles(
    client: &Client,
    mom: &VerifiedMom,
    installed: &[VerifiedManifest],
    opts: &Options,
) -> Result<Vec<String>> {
    let warn = |msg: String| client.observer().event(Event::Warning(msg));
    let mut unknown = None;
    let mut chosen = Vec::new();
    for b in &opts.bundles {
        if mom.bundle(b).is_none() {
            warn(format!(
                "bundle {b:?} is invalid or not in version {} (--force skips it)",
                mom.version()
            ));
            unknown = Some(b.clone());
        } else if !installed.iter().any(|m| m.name() == b) {
            warn(format!("bundle {b:?} is not installed, skipping it"));
        } else if !chosen.contains(b) {
            chosen.push(b.clone());
        }
    }
    match unknown {
        Some(b) if !opts.force => Err(Error::UnknownBundle(b)),
        _ => {
            if chosen.is_empty() {
                client.observer().event(Event::Info(
                    "no installed bundle was named, nothing to check".into(),
                ));
            }
            Ok(chosen)
        }
    }
}

/// Refuses (14) a release in another format than the client's, as swupd: its content
/// may mean something else to this client. `--force` checks it anyway, with a warning.
fn same_format(client: &Client, mom: &VerifiedMom, force: bool) -> Result<()> {
    let Format::Number(ours) = client.settings().format else {
        return Ok(()); // staging: whatever format the server stages
    };
    if mom.format() == ours {
        return Ok(());
    }
    let reason = format!(
        "it is in format {}, this client follows format {ours}",
        mom.format()
    );
    if !force {
        return Err(Error::BadRelease {
            version: mom.version(),
            reason: format!("{reason} (--force checks it anyway)"),
        });
    }
    client.observer().event(Event::Warning(format!(
        "version {}: {reason}; checked anyway (--force)",
        mom.version()
    )));
    Ok(())
}

/// True when `path` is `top` or lies below it (never a partial name: /ba is not above /bar).
fn is_under(path: &str, top: &str) -> bool {
    path.strip_prefix(top)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `diagnose`: checks the root against the verified manifests of its installed bundles.
/// Changes nothing; the caller holds the lock so no update runs meanwhile.
pub fn diagnose(client: &Client, opts: &Options) -> Result<Report> {
    Ok(scan(client, opts)?.0)
}

fn scan(client: &Client, opts: &Options) -> Result<(Report, Scope)> {
    if let Some(pending) = client.state().journal()? {
        client.observer().event(Event::Warning(format!(
            "an interrupted update to version {} is pending; `repair` or `update` finishes it",
            pending.to
        )));
    }
    let scope = Scope::load(client, opts)?;
    let entries: Vec<_> = scope
        .all
        .entries()
        .filter(|_| !opts.extra_files_only)
        .filter(|e| scope.only.as_ref().is_none_or(|o| o.contains(&e.path)))
        .collect();
    let mut report = Report {
        version: scope.mom.version(),
        checked: entries.iter().filter(|e| e.is_present()).count(),
        findings: check::entries(client, &entries, opts.quick),
    };
    if opts.picky && !opts.quick {
        report.findings.extend(picky::extras(client, &scope, opts)?);
    }
    if opts.images {
        let images = images::check(client, &scope.installed)?;
        report.checked += images.checked;
        report.findings.extend(images.findings);
    }
    Ok((report, scope))
}

#[cfg(test)]
mod tests;
