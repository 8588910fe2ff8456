//! Hashing the tracked entries on all cores, each through a parent directory opened once
//! per directory with no-follow semantics (`TargetRoot::parent`).

use std::os::fd::{AsFd, OwnedFd};

use rayon::prelude::*;

use super::{Finding, Problem};
use crate::client::Client;
use crate::hash::Kind;
use crate::install::TargetRoot;
use crate::manifest::{Entry, Status};
use crate::plan::{classify, PathClass};
use crate::progress::Event;
use crate::Error;

/// Rayon splits no finer than this: consecutive entries share parents, so a worker
/// reuses the directory it opened for the previous one.
const MIN_SPLIT: usize = 64;

/// The parent directory a worker opened last.
#[derive(Default)]
pub(super) struct DirCache {
    dir: String,
    state: Option<Opened>,
}

enum Opened {
    Dir(OwnedFd),
    Missing,
    Unreachable(String),
}

/// Checks `entries` (path order) in parallel; findings come back in path order.
pub(super) fn entries(client: &Client, entries: &[&Entry], quick: bool) -> Vec<Finding> {
    let observer = client.observer();
    observer.event(Event::Phase {
        name: if quick { "Looking" } else { "Checking" },
        total: entries.len() as u64,
    });
    let root = client.root();
    let found: Vec<Option<Finding>> = entries
        .par_iter()
        .with_min_len(MIN_SPLIT)
        .map_init(DirCache::default, |cache, e| {
            let (finding, bytes) = one(root, cache, e, quick);
            observer.event(Event::Advance { items: 1, bytes });
            finding
        })
        .collect();
    observer.event(Event::PhaseDone);
    found.into_iter().flatten().collect()
}

/// Checks one entry; returns the finding, if any, and the bytes read.
pub(super) fn one(
    root: &TargetRoot,
    cache: &mut DirCache,
    e: &Entry,
    quick: bool,
) -> (Option<Finding>, u64) {
    let finding = |p| Some(Finding::new(&e.path, p, Some(e.etype)));
    let present = e.is_present();
    if e.status == Status::Ghosted
        || (!present && (quick || classify(&e.path) != PathClass::Normal))
    {
        return (None, 0);
    }
    let (dir, name) = e.path.rsplit_once('/').unwrap_or(("", &e.path));
    if cache.state.is_none() || cache.dir != dir {
        cache.dir = dir.to_string();
        cache.state = Some(match root.parent(&e.path) {
            Ok(Some(parent)) => Opened::Dir(parent.fd),
            Ok(None) => Opened::Missing,
            Err(err) => Opened::Unreachable(reason(&err)),
        });
    }
    let fd = match (cache.state.as_ref().expect("set above"), present) {
        (Opened::Dir(fd), _) => fd,
        // A deleted entry behind a missing or symlinked parent is not in the root.
        (_, false) => return (None, 0),
        (Opened::Missing, true) => return (finding(Problem::Missing), 0),
        (Opened::Unreachable(why), true) => {
            let reason = why.clone();
            return (finding(Problem::Unreachable { reason }), 0);
        }
    };
    if quick || !present {
        return match root.lstat_at(fd.as_fd(), name, &e.path) {
            Ok(None) if present => (finding(Problem::Missing), 0),
            Ok(Some(_)) if !present => (finding(Problem::NotDeleted), 0),
            Ok(_) => (None, 0),
            Err(err) => (
                finding(Problem::Unreachable {
                    reason: reason(&err),
                }),
                0,
            ),
        };
    }
    match root.hash_at(fd.as_fd(), name, &e.path) {
        Ok(None) => (finding(Problem::Missing), 0),
        Ok(Some((actual, found))) => {
            let bytes = if found.kind == Kind::File {
                found.size
            } else {
                0
            };
            if actual == e.hash {
                return (None, bytes);
            }
            let problem = match classify(&e.path) {
                PathClass::Config | PathClass::State => Problem::LocalChange {
                    expected: e.hash,
                    actual,
                },
                PathClass::Normal | PathClass::Boot => Problem::Mismatch {
                    expected: e.hash,
                    actual,
                    found,
                },
            };
            (finding(problem), bytes)
        }
        Err(err) => (
            finding(Problem::Unreachable {
                reason: reason(&err),
            }),
            0,
        ),
    }
}

/// The reason part of an error, without the path the finding already names.
fn reason(err: &Error) -> String {
    match err {
        Error::UnsafePath { reason, .. } => reason.clone(),
        Error::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}
