//! `repair`: fetch what diagnose found wrong through the verified chain, install it with
//! the update installer under the journal, remove what must go, and check the result.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;

use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::Mode;

use rayon::prelude::*;

use super::{scan, Finding, Options, Problem, Report, Scope};
use crate::chain::StagedFile;
use crate::client::Client;
use crate::hash::{Hash, Kind};
use crate::install::{Applied, Transaction};
use crate::manifest::{Entry, EntryType};
use crate::plan::Plan;
use crate::state::JournalRecord;
use crate::{Error, Result};

/// The outcome of a repair.
#[derive(Debug, Clone, Default)]
pub struct Repaired {
    /// What was found before repairing (mismatches carry the exact differences).
    pub found: Report,
    /// What the installer did.
    pub applied: Applied,
    /// What is still wrong afterwards.
    pub unfixed: Vec<Finding>,
}

/// `repair`: diagnoses, then fixes every problem found. The caller holds the lock.
pub fn repair(client: &Client, opts: &Options) -> Result<Repaired> {
    if opts.images {
        // A slot is rewritten only by an update, under the A/B state machine.
        return Err(Error::Usage(
            "--images is for diagnose; a broken slot is rewritten by the next update".into(),
        ));
    }
    // A root whose os-release is gone can still be repaired to the version named by -V.
    let current = match opts.version {
        Some(_) => crate::version::installed(client.root().path())?,
        None => Some(client.current_version()?),
    };
    // An interrupted update is finished first; one that cannot be is set aside, since
    // repair puts the root in order from its actual state anyway.
    client.settle(opts.version.or(current))?;
    if let (Some(now), Some(to)) = (current, opts.version) {
        if now != to && !(opts.force || opts.picky) {
            // swupd refuses a release in another format first (14), then the version (15).
            super::same_format(client, &client.verified_mom(to)?, false)?;
            return Err(Error::Usage(format!(
                "the root holds version {now}; repairing to version {to} needs --force or --picky"
            )));
        }
    }
    let (mut found, scope) = scan(client, opts)?;
    let (plan, mut unfixed) = plan(client, &scope, &found);
    if plan.is_empty() {
        return Ok(Repaired {
            found,
            applied: Applied::default(),
            unfixed,
        });
    }
    // Journaled as `update` is. Interrupted at the same version, the next run's recovery
    // has nothing to move (the next repair checks everything again); to another version
    // (--force), it finishes the move like an interrupted update.
    let record = JournalRecord {
        from: current,
        from_bundles: client.installed_bundles()?,
        to: found.version,
        bundles: scope.installed.clone(),
        temp_dirs: Vec::new(),
        config: Default::default(),
    };
    let txn = Transaction::prepare(
        client.root(),
        client.state(),
        client.observer(),
        plan,
        &scope.all,
        record,
    )?;
    let staging = client.state().staged()?;
    let bound = client.content_bound(&scope.manifests);
    let staged = client.stage_all(&txn.needed(), &staging, bound)?;
    describe(client, &mut found, &scope, &staged);
    client.ensure_install_space(&txn, &staged, &staging)?;
    let placed: Vec<Entry> = txn.placed().cloned().collect();
    let deletions: Vec<String> = txn.deletions().map(|d| d.to_string()).collect();
    let applied = txn.apply(&staged)?;

    let removed = found
        .problems()
        .filter(|f| matches!(f.problem, Problem::NotDeleted | Problem::Extra))
        .map(|f| (f.path.clone(), f.problem.clone()))
        .collect();
    unfixed.extend(recheck(client, &placed, &deletions, &removed));
    Ok(Repaired {
        found,
        applied,
        unfixed,
    })
}

/// The plan that fixes the problems in `report`, and the problems it cannot fix.
fn plan(client: &Client, scope: &Scope, report: &Report) -> (Plan, Vec<Finding>) {
    let mut put: BTreeMap<String, Entry> = BTreeMap::new();
    let mut deletions = Vec::new();
    let mut unfixed = Vec::new();
    for f in report.problems() {
        match &f.problem {
            Problem::NotDeleted | Problem::Extra => deletions.push(f.path.clone()),
            _ => match scope.all.get(&f.path).filter(|e| e.is_present()) {
                Some(e) => {
                    put.insert(e.path.clone(), e.clone());
                }
                None => unfixed.push(f.clone()),
            },
        }
    }
    add_broken_parents(client, scope, &mut put, &mut unfixed);
    let mut plan = Plan::default();
    for e in put.into_values() {
        if e.etype == EntryType::Dir {
            plan.dirs.push(e);
        } else {
            plan.files.push(e);
        }
    }
    // Children before parents, so emptied directories can go too.
    deletions.sort_unstable_by(|a, b| b.cmp(a));
    plan.deletions = deletions;
    (plan, unfixed)
}

/// Adds to `put` every parent of a planned entry that is missing, a symlink or not a
/// directory: installing a directory there removes the symlink itself (never what it
/// points to). An entry whose broken parent no manifest lists cannot be fixed.
fn add_broken_parents(
    client: &Client,
    scope: &Scope,
    put: &mut BTreeMap<String, Entry>,
    unfixed: &mut Vec<Finding>,
) {
    let root = client.root();
    let mut sound: HashMap<String, bool> = HashMap::new();
    let paths: Vec<String> = put.keys().cloned().collect();
    for path in paths {
        let mut broken = false;
        for (i, _) in path.match_indices('/').skip(1) {
            let parent = &path[..i];
            if !broken {
                broken = !match sound.get(parent) {
                    Some(&ok) => ok,
                    None => {
                        let ok = matches!(root.lstat(parent),
                            Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR);
                        sound.insert(parent.to_string(), ok);
                        ok
                    }
                };
            }
            if !broken || put.contains_key(parent) {
                continue;
            }
            match scope.all.get(parent) {
                Some(e) if e.is_present() && e.etype == EntryType::Dir => {
                    put.insert(parent.to_string(), e.clone());
                }
                _ => {
                    put.remove(&path);
                    unfixed.push(Finding::new(
                        &path,
                        Problem::Unreachable {
                            reason: format!(
                                "its parent {parent} is not a directory and no manifest lists it"
                            ),
                        },
                        None,
                    ));
                    break;
                }
            }
        }
    }
}

/// Adds the exact differences, now that the verified objects are at hand.
fn describe(
    client: &Client,
    report: &mut Report,
    scope: &Scope,
    staged: &HashMap<Hash, StagedFile>,
) {
    for f in &mut report.findings {
        let Problem::Mismatch { found, .. } = &f.problem else {
            continue;
        };
        let Some(want) = scope.all.get(&f.path).and_then(|e| staged.get(&e.hash)) else {
            continue;
        };
        let meta = want.meta();
        if meta.kind != found.kind {
            continue; // the message already says the type differs
        }
        if meta.kind != Kind::Symlink && meta.mode & 0o7777 != found.mode & 0o7777 {
            f.details.push(format!(
                "mode {:04o}, expected {:04o}",
                found.mode & 0o7777,
                meta.mode & 0o7777
            ));
        }
        if (meta.uid, meta.gid) != (found.uid, found.gid) {
            f.details.push(format!(
                "owner {}:{}, expected {}:{}",
                found.uid, found.gid, meta.uid, meta.gid
            ));
        }
        if meta.rdev != found.rdev {
            f.details
                .push(format!("device {}, expected {}", found.rdev, meta.rdev));
        }
        let differs = match meta.kind {
            Kind::Dir => false,
            _ if meta.size != found.size => true,
            _ => !same_content(client, &f.path, want).unwrap_or(false),
        };
        if differs {
            let what = if meta.kind == Kind::Symlink {
                "link target"
            } else {
                "content"
            };
            f.details.push(format!("{what} differs"));
        }
    }
}

/// Whether the object at `path` (reached through safe parents) has the staged object's
/// bytes or link target; `None` when it cannot be read.
fn same_content(client: &Client, path: &str, staged: &StagedFile) -> Option<bool> {
    let parent = client.root().parent(path).ok()??;
    if staged.meta().kind == Kind::Symlink {
        let here = readlinkat(parent.fd.as_fd(), parent.name).ok()?;
        return Some(std::fs::read_link(staged.path()).ok()? == here);
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(parent.fd.as_fd(), parent.name, flags, Mode::empty()).ok()?;
    if !File::from(fd.try_clone().ok()?).metadata().ok()?.is_file() {
        return None;
    }
    let mut here = BufReader::new(File::from(fd));
    let mut there = BufReader::new(File::open(staged.path()).ok()?);
    loop {
        let (a, b) = (here.fill_buf().ok()?, there.fill_buf().ok()?);
        let n = a.len().min(b.len());
        if n == 0 {
            return Some(a.is_empty() && b.is_empty());
        }
        if a[..n] != b[..n] {
            return Some(false);
        }
        here.consume(n);
        there.consume(n);
    }
}

/// What is still wrong after applying `plan`: each placed entry must hash right now and
/// each removed one must be gone (`removed` tells what it was).
fn recheck(
    client: &Client,
    placed: &[Entry],
    deletions: &[String],
    removed: &HashMap<String, Problem>,
) -> Vec<Finding> {
    let root = client.root();
    let mut out: Vec<Finding> = placed
        .par_iter()
        .filter_map(|e| {
            let found = root.parent(&e.path).and_then(|p| match p {
                Some(p) => root.hash_at(p.fd.as_fd(), p.name, &e.path),
                None => Ok(None),
            });
            let problem = match found {
                Ok(Some((actual, _))) if actual == e.hash => return None,
                Ok(Some((actual, found))) => Problem::Mismatch {
                    expected: e.hash,
                    actual,
                    found,
                },
                Ok(None) => Problem::Missing,
                Err(err) => Problem::Unreachable {
                    reason: err.to_string(),
                },
            };
            Some(Finding::new(&e.path, problem, Some(e.etype)))
        })
        .collect();
    for path in deletions {
        if let Ok(Some(st)) = root.lstat(path) {
            let problem = removed.get(path).cloned().unwrap_or(Problem::NotDeleted);
            let mut f = Finding::new(path, problem, None);
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                f.details
                    .push("a directory that still holds untracked entries".into());
            }
            out.push(f);
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
