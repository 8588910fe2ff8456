//! `clean [--all] [--dry-run]`: removes what the state directory caches (swupd's clean.c):
//! the staging area and the manifest cache, in the state directory of the root and of each
//! 3rd-party repository. What a later run needs to stay safe is never touched: the lock,
//! the journal, the high-water marks, the A/B record, and the staging area while a journal
//! says an update is unfinished.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::state::StateDir;
use crate::Result;

/// The staging area's directory in a state directory.
const STAGED: &str = "staged";

/// What `clean` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// Files removed, in the order they were found (sorted per directory).
    pub files: Vec<PathBuf>,
    /// Bytes freed: sizes of the removed files that had no other hard link (a staged
    /// file linked into the root frees nothing).
    pub bytes: u64,
    /// State directories whose staging area was kept for an unfinished update, with the
    /// version it heads for.
    pub kept_for_journal: Vec<(PathBuf, u32)>,
}

/// Cleans `state`; `version` is the installed release of its root (`None` if unknown),
/// whose manifests a plain `clean` keeps so that the next search need not fetch them.
pub fn clean(state: &StateDir, version: Option<u32>, all: bool, dry_run: bool) -> Result<Cleaned> {
    let mut out = Cleaned::default();
    clean_one(state, version, all, dry_run, &mut out)?;
    Ok(out)
}

/// Cleans one state directory into `out`.
pub fn clean_one(
    state: &StateDir,
    version: Option<u32>,
    all: bool,
    dry_run: bool,
    out: &mut Cleaned,
) -> Result<()> {
    if !state.exists() {
        return Ok(());
    }
    let staged = state.path().join(STAGED);
    match state.journal()? {
        Some(record) if staged.exists() => {
            out.kept_for_journal
                .push((state.path().to_path_buf(), record.to));
        }
        _ => remove_tree(&staged, dry_run, out)?,
    }
    // One manifest cache per content URL the state directory was used with.
    for cache in state.manifest_cache_dirs()? {
        match all {
            true => remove_tree(&cache, dry_run, out)?,
            false => clean_manifests(&cache, version, dry_run, out)?,
        }
    }
    Ok(())
}

/// Without `--all`: for each bundle, the newest cached manifest at or below the installed
/// version stays (it is that release's manifest, or the one it still uses); older ones,
/// newer ones and partial downloads go. With no known version, everything goes.
fn clean_manifests(
    cache: &Path,
    version: Option<u32>,
    dry_run: bool,
    out: &mut Cleaned,
) -> Result<()> {
    let Some(version) = version else {
        return remove_tree(cache, dry_run, out);
    };
    let mut keep: BTreeMap<String, u32> = BTreeMap::new();
    for (v, dir) in version_dirs(cache)? {
        if v > version {
            continue;
        }
        for name in sorted_names(&dir)? {
            if let Some(bundle) = name.strip_prefix("Manifest.") {
                let best = keep.entry(bundle.to_string()).or_insert(v);
                *best = (*best).max(v);
            }
        }
    }
    for (v, dir) in version_dirs(cache)? {
        for name in sorted_names(&dir)? {
            let bundle = name.strip_prefix("Manifest.");
            if bundle.is_some_and(|b| keep.get(b) == Some(&v)) {
                continue;
            }
            remove_tree(&dir.join(&name), dry_run, out)?;
        }
        // An emptied version directory goes too (not counted: it holds no data).
        if !dry_run {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    Ok(())
}

/// The numbered subdirectories of the cache, by version.
fn version_dirs(cache: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let mut out: Vec<(u32, PathBuf)> = sorted_names(cache)?
        .into_iter()
        .filter_map(|n| Some((n.parse().ok()?, cache.join(n))))
        .filter(|(_, p): &(u32, PathBuf)| p.symlink_metadata().is_ok_and(|m| m.is_dir()))
        .collect();
    out.sort();
    Ok(out)
}

/// Entry names of `dir`, sorted; none if it does not exist.
fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crate::Error::io(dir, e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.at(dir)?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Counts every file under `path` (itself included, symlinks not followed) into `out`,
/// then removes it unless `dry_run`.
fn remove_tree(path: &Path, dry_run: bool, out: &mut Cleaned) -> Result<()> {
    let Ok(md) = path.symlink_metadata() else {
        return Ok(());
    };
    for entry in walkdir::WalkDir::new(path)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let at = e.path().unwrap_or(path).to_path_buf();
            crate::Error::io(at, e.into())
        })?;
        let emd = entry
            .metadata()
            .map_err(|e| crate::Error::io(entry.path(), e.into()))?;
        if emd.is_dir() {
            continue;
        }
        if emd.is_file() && emd.nlink() == 1 {
            out.bytes += emd.len();
        }
        out.files.push(entry.path().to_path_buf());
    }
    if dry_run {
        return Ok(());
    }
    if md.is_dir() {
        std::fs::remove_dir_all(path).at(path)?;
    } else {
        std::fs::remove_file(path).at(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(path: &Path, data: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    #[test]
    fn keeps_the_installed_releases_manifests_and_a_journals_staging_area() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("s")).unwrap();
        let s = state.path();
        put(&s.join("manifests/10/Manifest.os-core.tar"), b"old");
        put(&s.join("manifests/20/Manifest.os-core.tar"), b"current");
        put(&s.join("manifests/10/Manifest.editors.tar"), b"still used");
        put(&s.join("manifests/30/Manifest.os-core.tar"), b"newer");
        put(&s.join("staged/abc"), b"12345");
        put(&s.join("version-high-water-mark"), b"20");

        let dry = clean(&state, Some(20), false, true).unwrap();
        assert_eq!(dry.files.len(), 3, "{dry:?}");
        assert_eq!(dry.bytes, 3 + 5 + 5);
        assert!(s.join("staged/abc").exists(), "a dry run removes nothing");

        let done = clean(&state, Some(20), false, false).unwrap();
        assert_eq!(done.files, dry.files);
        assert!(s.join("manifests/20/Manifest.os-core.tar").exists());
        assert!(s.join("manifests/10/Manifest.editors.tar").exists());
        assert!(!s.join("manifests/10/Manifest.os-core.tar").exists());
        assert!(!s.join("manifests/30").exists());
        assert!(!s.join("staged").exists());
        assert!(s.join("version-high-water-mark").exists());

        put(&s.join("staged/def"), b"x");
        state
            .begin(&crate::state::JournalRecord {
                from: Some(20),
                from_bundles: vec![],
                to: 30,
                bundles: vec![],
                temp_dirs: vec![],
                config: Default::default(),
            })
            .unwrap();
        let all = clean(&state, Some(20), true, false).unwrap();
        assert_eq!(all.kept_for_journal, vec![(s.to_path_buf(), 30)]);
        assert!(s.join("staged/def").exists());
        assert!(!s.join("manifests").exists());
        assert!(s.join("journal.json").exists());
    }
}
