//! Applies a plan to the root: directories first, then every file and symlink placed
//! beside its target and renamed over it (atomic per file), then deletions, with the
//! os-release files that carry the version renamed last.

use std::collections::{HashMap, HashSet};

use crate::chain::StagedFile;
use crate::hash::Hash;
use crate::install::root::TargetRoot;
use crate::manifest::Entry;
use crate::plan::Plan;
use crate::progress::{Event, Observer};
use crate::{Error, Result};

/// What applying a plan did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub dirs: usize,
    pub files: usize,
    pub deleted: usize,
    /// Directories the plan removes that still hold untracked files, left in place.
    pub left_behind: Vec<String>,
}

/// Applies `plan` to `root` using the verified `staged` content.
pub fn apply(
    root: &TargetRoot,
    plan: &Plan,
    staged: &HashMap<Hash, StagedFile>,
    observer: &dyn Observer,
) -> Result<Applied> {
    let lookup = |path: &str, hash: &Hash| {
        staged.get(hash).ok_or_else(|| Error::Archive {
            what: path.to_string(),
            reason: format!("content {hash} was not staged"),
        })
    };
    let mut applied = Applied::default();
    observer.event(Event::Phase {
        name: "Installing",
        total: (plan.dirs.len() + plan.files.len() + plan.deletions.len()) as u64,
    });
    for dir in &plan.dirs {
        root.make_dir(&dir.path, lookup(&dir.path, &dir.hash)?.meta())?;
        applied.dirs += 1;
        observer.event(Event::Advance { items: 1, bytes: 0 });
    }

    // Place everything first, so the renames below are a short run of atomic steps.
    let mut linked = HashSet::new();
    for file in &plan.files {
        let staged = lookup(&file.path, &file.hash)?;
        // The first user of a staged inode takes it by hard link; later ones get copies, so
        // two paths with equal content never become one file.
        let link = linked.insert(file.hash);
        root.place(&file.path, staged.path(), staged.meta(), link)?;
    }
    root.sync()?;
    let (version_files, others): (Vec<_>, Vec<_>) =
        plan.files.iter().partition(|f| carries_version(&f.path));
    for file in &others {
        commit(root, file, staged, &mut applied, observer)?;
    }
    for path in &plan.deletions {
        if root.remove(path)? {
            applied.deleted += 1;
        } else {
            log::warn!("{path} holds untracked files; left in place");
            applied.left_behind.push(path.clone());
        }
        observer.event(Event::Advance { items: 1, bytes: 0 });
    }
    root.sync()?;
    // The version is written last: until this rename the root still reads as the old
    // release, and an interrupted update is finished from the journal.
    for file in &version_files {
        commit(root, file, staged, &mut applied, observer)?;
    }
    root.sync()?;
    observer.event(Event::PhaseDone);
    Ok(applied)
}

fn commit(
    root: &TargetRoot,
    file: &Entry,
    staged: &HashMap<Hash, StagedFile>,
    applied: &mut Applied,
    observer: &dyn Observer,
) -> Result<()> {
    root.commit(&file.path)?;
    applied.files += 1;
    let bytes = staged.get(&file.hash).map_or(0, |s| s.meta().size);
    observer.event(Event::Advance { items: 1, bytes });
    Ok(())
}

/// The files that tell which release the root holds.
fn carries_version(path: &str) -> bool {
    crate::version::OS_RELEASE
        .iter()
        .any(|rel| path.strip_prefix('/') == Some(rel))
}
