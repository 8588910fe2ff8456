//! The one write path into a root (docs/install.md). Every command that changes a root
//! (update, os-install, bundle-add, bundle-remove, repair) builds a [`Transaction`] from its
//! plan and hands it verified, staged content; nothing else writes to the root.
//!
//! [`Transaction::prepare`] decides everything before the first byte changes: every target
//! entry's parent is a directory the release lists or a real directory of the root, never
//! a file or a symlink (old, or created by the same release); a listed parent that is
//! missing is recreated; directories that files replace are known. A refused release
//! leaves the root and the state directory as they were, and writes no journal.
//! [`Transaction::apply`] then journals, applies in a fixed order and cleans up, also on the
//! error path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::chain::StagedFile;
use crate::failpoint;
use crate::hash::{Hash, Meta};
use crate::install::root::TargetRoot;
use crate::manifest::{Entry, EntryType, RootPath};
use crate::plan::{classify, FileSet, PathClass, Plan};
use crate::progress::{Event, Observer};
use crate::state::{JournalRecord, StateDir};
use crate::{Error, Result};

/// What applying a transaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub dirs: usize,
    pub files: usize,
    pub deleted: usize,
    /// Directories replaced by a file or symlink, or deleted, that held entries no
    /// manifest lists: (where they were, where they are now).
    pub moved_aside: Vec<(String, String)>,
    /// What the changed paths call for once the change is in (ldconfig, systemd, ...).
    pub changed: crate::post_update::Triggers,
}

/// One entry to create or place, with its validated path.
#[derive(Debug)]
struct Step {
    path: RootPath,
    entry: Entry,
}

/// A validated change of one root, owning its plan; see the module documentation.
pub struct Transaction<'a> {
    root: &'a TargetRoot,
    state: &'a StateDir,
    observer: &'a dyn Observer,
    record: JournalRecord,
    /// Directories to create or fix, parents first.
    dirs: Vec<Step>,
    /// Files and symlinks to place, in path order; the index is the temporary's slot.
    files: Vec<Step>,
    /// Paths to remove, children first.
    deletions: Vec<RootPath>,
    /// Planned file or symlink paths where the root has a directory now.
    replaced_dirs: BTreeSet<RootPath>,
}

/// The class of problem a parent has, for the refusal message.
fn kind_word(t: EntryType) -> &'static str {
    match t {
        EntryType::Link => "a symlink",
        EntryType::Dir => "a directory",
        _ => "a file",
    }
}

impl<'a> Transaction<'a> {
    /// Validates `plan` against the whole `target` set and the root as it is now. Reads
    /// only; on refusal nothing anywhere has changed.
    pub fn prepare(
        root: &'a TargetRoot,
        state: &'a StateDir,
        observer: &'a dyn Observer,
        plan: Plan,
        target: &FileSet,
        record: JournalRecord,
    ) -> Result<Transaction<'a>> {
        let version = record.to;
        let refuse = |reason: String| Error::BadRelease { version, reason };
        let step = |e: Entry| {
            RootPath::new(&e.path)
                .map(|path| Step { path, entry: e })
                .map_err(&refuse)
        };
        let mut dirs: BTreeMap<RootPath, Step> = BTreeMap::new();
        for e in plan.dirs {
            let s = step(e)?;
            dirs.insert(s.path.clone(), s);
        }
        let files = plan
            .files
            .into_iter()
            .map(step)
            .collect::<Result<Vec<_>>>()?;
        let mut disk = DiskView::new(root);
        check_tree(target, &mut disk, version)?;
        check_parents(target, &mut disk, version, &mut dirs, &files, &step)?;

        let mut replaced_dirs = BTreeSet::new();
        for s in &files {
            if disk.kind(&s.path)? == Some(OnDisk::Dir) {
                replaced_dirs.insert(s.path.clone());
            }
        }
        // A directory still holding listed entries stays, whatever the deletions say.
        let mut deletions = Vec::new();
        for d in plan.deletions {
            let path = RootPath::new(&d).map_err(&refuse)?;
            if !target.has_present_below(&path) {
                deletions.push(path);
            }
        }
        let mut record = record;
        record.config = files
            .iter()
            .filter(|s| classify(&s.path) == PathClass::Config)
            .map(|s| (s.path.to_string(), s.entry.hash.to_hex()))
            .collect();
        record.temp_dirs = files
            .iter()
            .map(|s| {
                s.path
                    .parent()
                    .map_or_else(|| "/".to_string(), |p| p.to_string())
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(Transaction {
            root,
            state,
            observer,
            record,
            dirs: dirs.into_values().collect(),
            files,
            deletions,
            replaced_dirs,
        })
    }

    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.files.is_empty() && self.deletions.is_empty()
    }

    /// The entries whose content must be fetched and verified, one per hash.
    pub fn needed(&self) -> Vec<&Entry> {
        let mut seen = HashSet::new();
        self.dirs
            .iter()
            .chain(&self.files)
            .map(|s| &s.entry)
            .filter(|e| seen.insert(e.hash))
            .collect()
    }

    /// The planned entries that are placed or made (for re-checking afterwards).
    pub fn placed(&self) -> impl Iterator<Item = &Entry> {
        self.dirs.iter().chain(&self.files).map(|s| &s.entry)
    }

    /// The planned deletions.
    pub fn deletions(&self) -> impl Iterator<Item = &RootPath> {
        self.deletions.iter()
    }

    /// Bytes the installer will write beyond what it hard-links from the staging area:
    /// every second use of a staged file, or every use if `same_fs` is false.
    pub fn copy_bytes(&self, staged: &HashMap<Hash, StagedFile>, same_fs: bool) -> u64 {
        let mut seen = HashSet::new();
        self.files
            .iter()
            .filter(|s| !(same_fs && seen.insert(s.entry.hash)))
            .filter_map(|s| staged.get(&s.entry.hash))
            .map(|s| s.meta().size)
            .sum()
    }

    /// Journals, applies and cleans up: the record first, then directories, every file
    /// placed under a temporary name, sync, the renames (os-release last), deletions, the
    /// high-water mark and the end of the record; the staging area is emptied last. On an
    /// error every temporary is removed and the journal stays, so the next run finishes.
    pub fn apply(self, staged: &HashMap<Hash, StagedFile>) -> Result<Applied> {
        for s in self.dirs.iter().chain(&self.files) {
            if !staged.contains_key(&s.entry.hash) {
                return Err(Error::Archive {
                    what: s.path.to_string(),
                    reason: format!("content {} was not staged", s.entry.hash),
                });
            }
        }
        self.state.begin(&self.record)?;
        failpoint::point("txn::begin")?;
        let result = self.apply_journaled(staged);
        if result.is_err() {
            if let Err(e) = sweep(self.root, &self.record) {
                log::warn!("cannot remove the temporaries of the failed install: {e}");
            }
            return result;
        }
        self.state.high_water_mark().raise(self.record.to)?;
        failpoint::point("txn::raised")?;
        self.state.finish()?;
        failpoint::point("txn::finished")?;
        self.state.clear_staged()?;
        result
    }

    fn apply_journaled(&self, staged: &HashMap<Hash, StagedFile>) -> Result<Applied> {
        let get = |s: &Step| &staged[&s.entry.hash];
        let mut applied = Applied::default();
        self.observer.event(Event::Phase {
            name: "Installing",
            total: (self.dirs.len() + self.files.len() + self.deletions.len()) as u64,
        });
        self.observer.event(Event::PhaseSize {
            bytes: self.files.iter().map(|s| get(s).meta().size).sum(),
        });
        for s in &self.dirs {
            self.root.make_dir(&s.path, get(s).meta())?;
            applied.dirs += 1;
            applied.changed.note(&s.path);
            self.advance(0);
        }
        failpoint::point("txn::dirs")?;

        // Place everything first, so the renames below are a short run of atomic steps.
        // The first user of a staged inode takes it by hard link; later ones get copies, so
        // two paths with equal content never become one file. A staged file is opened and
        // checked once, before that link, and its descriptor kept until its last user.
        let mut last_use: HashMap<Hash, usize> = HashMap::new();
        for (slot, s) in self.files.iter().enumerate() {
            last_use.insert(s.entry.hash, slot);
        }
        let mut open: HashMap<Hash, std::fs::File> = HashMap::new();
        for (slot, s) in self.files.iter().enumerate() {
            let staged = get(s);
            let first = !open.contains_key(&s.entry.hash);
            if first && staged.meta().kind == crate::hash::Kind::File {
                open.insert(s.entry.hash, staged.open_verified()?);
            }
            let file = open.get(&s.entry.hash);
            self.root.place(&s.path, slot, staged, file, first)?;
            if last_use[&s.entry.hash] == slot {
                open.remove(&s.entry.hash);
            }
            failpoint::point("txn::place")?;
        }
        self.root.sync()?;
        failpoint::point("txn::placed")?;

        let mut deleted: HashSet<RootPath> = HashSet::new();
        let (version_files, others): (Vec<_>, Vec<_>) = self
            .files
            .iter()
            .enumerate()
            .partition(|(_, s)| carries_version(&s.path));
        for (slot, s) in others {
            if self.replaced_dirs.contains(&s.path) {
                self.clear_dir(&s.path, &mut deleted, &mut applied)?;
            }
            self.root.commit(&s.path, slot)?;
            applied.files += 1;
            applied.changed.note(&s.path);
            self.advance(get(s).meta().size);
            failpoint::point("txn::commit")?;
        }
        for path in &self.deletions {
            if deleted.contains(path) {
                continue;
            }
            self.delete(path, &mut applied)?;
        }
        self.root.sync()?;
        failpoint::point("txn::deleted")?;
        // The version is written last: until this rename the root still reads as the old
        // release, and an interrupted update is finished from the journal.
        for (slot, s) in version_files {
            self.root.commit(&s.path, slot)?;
            applied.files += 1;
            applied.changed.note(&s.path);
            self.advance(get(s).meta().size);
        }
        self.root.sync()?;
        failpoint::point("txn::version")?;
        self.observer.event(Event::PhaseDone);
        Ok(applied)
    }

    fn advance(&self, bytes: u64) {
        self.observer.event(Event::Advance { items: 1, bytes });
    }

    fn delete(&self, path: &RootPath, applied: &mut Applied) -> Result<()> {
        if self.root.remove(path)? {
            applied.deleted += 1;
            applied.changed.note(path);
        } else {
            let to = self
                .root
                .set_deleted_aside(path, &self.record.to.to_string())?;
            self.observer.event(Event::Warning(format!(
                "{path} holds files no manifest lists; moved to {to}"
            )));
            applied.moved_aside.push((path.to_string(), to.to_string()));
        }
        self.advance(0);
        Ok(())
    }

    /// Empties the way for a file or symlink that replaces the directory at `path`: the
    /// entries the release deletes below it go (children first); if anything is left, the
    /// directory is moved aside, never removed with what nobody published.
    fn clear_dir(
        &self,
        path: &RootPath,
        deleted: &mut HashSet<RootPath>,
        applied: &mut Applied,
    ) -> Result<()> {
        for d in self.deletions.iter().filter(|d| d.is_below(path)) {
            if deleted.insert(d.clone()) && self.root.remove(d)? {
                applied.deleted += 1;
                applied.changed.note(d);
            }
        }
        if self.root.remove(path)? {
            return Ok(());
        }
        let to = self.move_aside(path)?;
        self.observer.event(Event::Warning(format!(
            "{path} held files no manifest lists; moved to {to} (version {} replaces it)",
            self.record.to
        )));
        applied.moved_aside.push((path.to_string(), to.to_string()));
        Ok(())
    }

    /// Moves a directory to `/lost+found/chainup-<version><path>` (swupd's convention),
    /// or beside itself when that is not possible (another filesystem, a name taken).
    fn move_aside(&self, path: &RootPath) -> Result<RootPath> {
        let dest = RootPath::new(&format!("/lost+found/chainup-{}{path}", self.record.to));
        if let Ok(dest) = dest {
            if self.make_private_parents(&dest)?
                && self.root.lstat(&dest)?.is_none()
                && self.root.move_dir(path, &dest)?
            {
                return Ok(dest);
            }
        }
        self.root.save_beside(path, &self.record.to.to_string())
    }

    /// Makes the missing parents of `dest` private to the running user; false when one
    /// of them is not a real directory.
    fn make_private_parents(&self, dest: &RootPath) -> Result<bool> {
        let mut chain = Vec::new();
        let mut next = dest.parent();
        while let Some(dir) = next {
            next = dir.parent();
            chain.push(dir);
        }
        let me = Meta::dir(
            0o700,
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        for dir in chain.iter().rev() {
            match self.root.is_dir(dir) {
                Ok(Some(true)) => {}
                Ok(None) => self.root.make_dir(dir, &me)?,
                Ok(Some(false)) | Err(Error::UnsafePath { .. }) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// The release must be a tree: every present entry hangs below a directory it lists, or
/// below a real directory of the root that no manifest lists.
fn check_tree(target: &FileSet, disk: &mut DiskView, version: u32) -> Result<()> {
    let refuse = |reason: String| Error::BadRelease { version, reason };
    for e in target.entries().filter(|e| e.is_present()) {
        let path = RootPath::new(&e.path).map_err(refuse)?;
        let Some(parent) = path.parent() else {
            continue;
        };
        match target.get(&parent).filter(|p| p.is_present()) {
            Some(p) if p.etype == EntryType::Dir => {}
            Some(p) => {
                return Err(refuse(format!(
                    "it lists {path} below {parent}, which it makes {}",
                    kind_word(p.etype)
                )))
            }
            None => match disk.kind(&parent)? {
                Some(OnDisk::Dir) => {}
                Some(OnDisk::Other) => {
                    return Err(disk.unsafe_path(
                        &parent,
                        format!(
                            "it is not a directory, and version {version} lists {path} below it"
                        ),
                    ))
                }
                None => {
                    return Err(refuse(format!(
                        "the parent of {path} is in no manifest and not in the root"
                    )))
                }
            },
        }
    }
    Ok(())
}

/// Every parent of what is placed must be a real directory when its turn comes: there
/// already, or made by this transaction. A listed parent that is missing (deleted
/// locally) is added to `dirs`, as swupd recreates it; one that the root has as a file or
/// symlink is refused.
fn check_parents(
    target: &FileSet,
    disk: &mut DiskView,
    version: u32,
    dirs: &mut BTreeMap<RootPath, Step>,
    files: &[Step],
    step: &dyn Fn(Entry) -> Result<Step>,
) -> Result<()> {
    let mut todo: Vec<RootPath> = dirs
        .keys()
        .chain(files.iter().map(|s| &s.path))
        .cloned()
        .collect();
    let mut checked: HashSet<RootPath> = HashSet::new();
    while let Some(path) = todo.pop() {
        let Some(parent) = path.parent() else {
            continue;
        };
        if dirs.contains_key(&parent) || !checked.insert(parent.clone()) {
            continue;
        }
        match disk.kind(&parent)? {
            Some(OnDisk::Dir) => {}
            // `check_tree` refused a missing parent that no manifest lists.
            None => {
                if let Some(e) = target.get(&parent).filter(|p| p.is_present()) {
                    dirs.insert(parent.clone(), step(e.clone())?);
                    todo.push(parent);
                }
            }
            Some(OnDisk::Other) => {
                return Err(disk.unsafe_path(
                    &parent,
                    format!(
                        "it is a symlink or a file, and version {version} installs {path} below it (`chainup repair` puts the directory back)"
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Removes every temporary the journal's transaction may have placed.
pub(crate) fn sweep(root: &TargetRoot, record: &JournalRecord) -> Result<usize> {
    let mut n = 0;
    for dir in &record.temp_dirs {
        let dir = match dir.as_str() {
            "/" => None,
            d => Some(RootPath::new(d).map_err(|reason| Error::UnsafePath {
                path: d.to_string(),
                reason,
            })?),
        };
        n += root.sweep_temps(dir.as_ref())?;
    }
    Ok(n)
}

/// The files that tell which release the root holds.
fn carries_version(path: &str) -> bool {
    crate::version::OS_RELEASE
        .iter()
        .any(|rel| path.strip_prefix('/') == Some(rel))
}

/// What a path of the root is, as far as placing below it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDisk {
    /// A real directory, reached without following a symlink.
    Dir,
    /// A file, a symlink, or below one.
    Other,
}

/// lstat results of the root, cached per path.
struct DiskView<'r> {
    root: &'r TargetRoot,
    seen: HashMap<String, Option<OnDisk>>,
}

impl<'r> DiskView<'r> {
    fn new(root: &'r TargetRoot) -> DiskView<'r> {
        DiskView {
            root,
            seen: HashMap::new(),
        }
    }

    fn unsafe_path(&self, path: &RootPath, reason: String) -> Error {
        Error::UnsafePath {
            path: self.root.host_path(path).display().to_string(),
            reason,
        }
    }

    /// `None` when the path (or a parent) is missing.
    fn kind(&mut self, path: &RootPath) -> Result<Option<OnDisk>> {
        if let Some(k) = self.seen.get(path.as_str()) {
            return Ok(*k);
        }
        let k = match self.root.is_dir(path) {
            Ok(Some(true)) => Some(OnDisk::Dir),
            Ok(Some(false)) | Err(Error::UnsafePath { .. }) => Some(OnDisk::Other),
            Ok(None) => None,
            Err(e) => return Err(e),
        };
        self.seen.insert(path.to_string(), k);
        Ok(k)
    }
}
