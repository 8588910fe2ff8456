//! From the installed manifests and the target ones to what must change on disk, with
//! swupd's path heuristics for configuration and state.

use std::collections::BTreeMap;

use crate::chain::VerifiedManifest;
use crate::hash::Hash;
use crate::manifest::{Entry, EntryType, ImageKind, Status};
use crate::Result;

/// How chainup treats a path, following swupd's heuristics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathClass {
    /// Installed, replaced and removed as the manifests say.
    Normal,
    /// `/etc`: installed when missing or unmodified; a local edit is kept.
    Config,
    /// Machine state (`/var`, `/home`, ...): created when missing, never replaced or removed.
    State,
    /// Kernels and modules: installed and replaced, never removed.
    Boot,
}

const STATE_PREFIXES: [&str; 11] = [
    "/var/",
    "/home/",
    "/tmp/",
    "/run/",
    "/dev/",
    "/proc/",
    "/sys/",
    "/root/",
    "/data/",
    "/lost+found/",
    "/usr/src/",
];
const BOOT_PREFIXES: [&str; 3] = ["/boot/", "/usr/lib/modules/", "/usr/lib/kernel/"];

/// The class of a manifest path. The state roots are state themselves: `/home` is never
/// replaced by a symlink or removed, whatever a release says.
pub fn classify(path: &str) -> PathClass {
    let under = |prefixes: &[&str]| {
        prefixes
            .iter()
            .any(|p| path.starts_with(p) || Some(path) == p.strip_suffix('/'))
    };
    if path.starts_with("/etc/") {
        PathClass::Config
    } else if under(&STATE_PREFIXES) {
        PathClass::State
    } else if under(&BOOT_PREFIXES) {
        PathClass::Boot
    } else {
        PathClass::Normal
    }
}

/// The consolidated view of several bundle manifests: one entry per path (plain CPU
/// variant only), and the image payloads apart.
#[derive(Debug, Default)]
pub struct FileSet {
    files: BTreeMap<String, Entry>,
    images: BTreeMap<ImageKindKey, Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ImageKindKey(u8);

impl From<ImageKind> for ImageKindKey {
    fn from(k: ImageKind) -> Self {
        ImageKindKey(k as u8)
    }
}

impl FileSet {
    /// Merges verified manifests as swupd does: present beats deleted, the newest
    /// deletion wins, and two bundles that disagree on a present path resolve to the newer
    /// entry (with a warning).
    pub fn from_manifests<'a>(
        manifests: impl IntoIterator<Item = &'a VerifiedManifest>,
    ) -> FileSet {
        let mut set = FileSet::default();
        for m in manifests {
            for e in &m.manifest().entries {
                if !e.is_plain_variant() {
                    continue;
                }
                if let Some(kind) = e.image() {
                    merge(&mut set.images, ImageKindKey::from(kind), e, m.name());
                } else {
                    merge(&mut set.files, e.path.clone(), e, m.name());
                }
            }
        }
        set
    }

    /// The entry for a path, present or deleted.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.files.get(path)
    }

    /// All entries in path order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.files.values()
    }

    /// The present image payload of this kind, if any bundle carries one.
    pub fn image(&self, kind: ImageKind) -> Option<&Entry> {
        self.images
            .get(&ImageKindKey::from(kind))
            .filter(|e| e.is_present())
    }

    /// True when some present entry lies below the directory `dir`.
    pub fn has_present_below(&self, dir: &str) -> bool {
        let (lo, hi) = (format!("{dir}/"), format!("{dir}0"));
        self.files.range(lo..hi).any(|(_, e)| e.is_present())
    }

    /// The paths whose entry differs between `self` (a release) and `new` (another): added,
    /// removed, or with other content, type or status.
    pub fn changed_paths<'a>(&'a self, new: &'a FileSet) -> impl Iterator<Item = &'a str> {
        let differs = move |a: Option<&Entry>, b: Option<&Entry>| match (a, b) {
            (Some(a), Some(b)) => {
                (a.is_present(), a.hash, a.etype) != (b.is_present(), b.hash, b.etype)
            }
            (a, b) => a.or(b).is_some_and(Entry::is_present),
        };
        let gone = self
            .files
            .iter()
            .filter(|(p, _)| !new.files.contains_key(*p));
        new.files
            .iter()
            .filter(move |(p, e)| differs(self.files.get(*p), Some(e)))
            .chain(gone.filter(|(_, e)| e.is_present()))
            .map(|(p, _)| p.as_str())
    }

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no path is tracked.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

fn merge<K: Ord>(map: &mut BTreeMap<K, Entry>, key: K, e: &Entry, bundle: &str) {
    match map.get(&key) {
        None => {
            map.insert(key, e.clone());
        }
        Some(old) => {
            let replace = match (old.is_present(), e.is_present()) {
                (false, true) => true,
                (true, false) => false,
                (false, false) => e.version > old.version,
                (true, true) => {
                    if old.hash != e.hash {
                        log::warn!(
                            "bundles disagree on {}; using the newer entry (bundle {bundle} has version {})",
                            e.path,
                            e.version
                        );
                    }
                    e.hash != old.hash && e.version > old.version
                }
            };
            if replace {
                map.insert(key, e.clone());
            }
        }
    }
}

/// What an update, install or removal must do to the root.
#[derive(Debug, Default)]
pub struct Plan {
    /// Directories to create or fix, parents first.
    pub dirs: Vec<Entry>,
    /// Files and symlinks to place, in path order.
    pub files: Vec<Entry>,
    /// Paths to remove, children first.
    pub deletions: Vec<String>,
    /// Locally modified configuration left as it is.
    pub kept: Vec<String>,
}

impl Plan {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.files.is_empty() && self.deletions.is_empty()
    }

    /// The entries whose content must be fetched and verified, one per hash.
    pub fn needed(&self) -> Vec<&Entry> {
        let mut seen = std::collections::HashSet::new();
        self.dirs
            .iter()
            .chain(&self.files)
            .filter(|e| seen.insert(e.hash))
            .collect()
    }

    fn add(&mut self, e: &Entry) {
        if e.etype == EntryType::Dir {
            self.dirs.push(e.clone());
        } else {
            self.files.push(e.clone());
        }
    }
}

/// What the root is taken to hold before a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline<'a> {
    /// What the old manifests list: an entry they did not change is not looked at.
    Manifests,
    /// Anything between the old and the new release (an interrupted or superseded
    /// install): every entry whose disk hash differs from the target is placed. The map
    /// holds the configuration files the interrupted install placed, with their hashes:
    /// one found with that hash is chainup's, not an admin's edit.
    Disk(&'a BTreeMap<String, Hash>),
}

impl Baseline<'_> {
    /// True when `now`, found at a config path, is what an interrupted install put there.
    fn placed(&self, path: &str, now: Hash) -> bool {
        match self {
            Baseline::Manifests => false,
            Baseline::Disk(placed) => placed.get(path) == Some(&now),
        }
    }
}

/// Compares the installed set with the target set. `disk` gives the hash of a path as it
/// is now on disk (`None` if missing); it is consulted for configuration and state paths,
/// whose local changes are kept, and with [`Baseline::Disk`] for every path.
pub fn plan(
    old: &FileSet,
    new: &FileSet,
    disk: &dyn Fn(&str) -> Result<Option<Hash>>,
    baseline: Baseline,
) -> Result<Plan> {
    let pristine = |path: &str, before: Option<&Entry>, now: Hash| {
        before.is_some_and(|o| o.hash == now) || baseline.placed(path, now)
    };
    let mut plan = Plan::default();
    for e in new.entries().filter(|e| e.is_present()) {
        let before = old.get(&e.path).filter(|o| o.is_present());
        if matches!(baseline, Baseline::Manifests) && before.is_some_and(|o| o.hash == e.hash) {
            continue;
        }
        match classify(&e.path) {
            PathClass::Normal | PathClass::Boot => {
                if matches!(baseline, Baseline::Manifests) || disk(&e.path)? != Some(e.hash) {
                    plan.add(e)
                }
            }
            PathClass::State => {
                if disk(&e.path)?.is_none() {
                    plan.add(e);
                }
            }
            PathClass::Config => match disk(&e.path)? {
                None => plan.add(e),
                Some(now) if now == e.hash => {}
                Some(now) if pristine(&e.path, before, now) => plan.add(e),
                Some(_) => plan.kept.push(e.path.clone()),
            },
        }
    }
    for o in old.entries().filter(|o| o.is_present()) {
        let gone = match new.get(&o.path) {
            None => true,
            Some(n) => n.status == Status::Deleted,
        };
        if !gone {
            continue;
        }
        match classify(&o.path) {
            PathClass::Normal => plan.deletions.push(o.path.clone()),
            PathClass::Config => match disk(&o.path)? {
                Some(now) if pristine(&o.path, Some(o), now) => plan.deletions.push(o.path.clone()),
                Some(_) => plan.kept.push(o.path.clone()),
                None => {}
            },
            PathClass::State | PathClass::Boot => {}
        }
    }
    plan.deletions.reverse();
    Ok(plan)
}

#[cfg(test)]
mod tests;
