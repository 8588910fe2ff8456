//! `--picky`: entries under the picky tree that no installed manifest lists.

use std::path::{Path, PathBuf};

use super::{Finding, Options, Problem, Scope};
use crate::client::Client;
use crate::manifest::{self, Status};
use crate::{Error, Result};

/// Untracked entries under `opts.picky_tree` (the tree itself when it is not a
/// directory), in path order, not following symlinks, skipping the whitelist and the state
/// directory. An entry the manifests mark deleted is untracked too, unless the tracked
/// check already looked at it (it is reported there, as not deleted); a ghosted one is
/// tracked (swupd leaves it to whoever manages it).
pub(super) fn extras(client: &Client, scope: &Scope, opts: &Options) -> Result<Vec<Finding>> {
    let tree = opts.picky_tree.trim_end_matches('/');
    manifest::validate_path(tree).map_err(|e| Error::Usage(format!("--picky-tree: {e}")))?;
    let root = client.root();
    let state = state_inside(root.path(), &client.settings().state_dir);
    let skip = |path: &str| {
        let under = |prefix: &str| {
            let prefix = prefix.trim_end_matches('/');
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        opts.picky_whitelist.iter().any(|p| under(p)) || state.as_deref().is_some_and(under)
    };
    let listed = |path: &str| match scope.all.get(path) {
        None => false,
        Some(e) if e.status == Status::Deleted => {
            !opts.extra_files_only && scope.only.as_ref().is_none_or(|o| o.contains(path))
        }
        Some(_) => true,
    };
    let mut out = Vec::new();
    // A tree that is a file or a symlink is the one entry to look at; a missing one, or
    // one behind a symlinked parent, holds nothing.
    match root.lstat(tree) {
        Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
        Ok(Some(_)) => {
            if !skip(tree) && !listed(tree) {
                out.push(Finding::new(tree, Problem::Extra, None));
            }
            return Ok(out);
        }
        _ => return Ok(out),
    }
    let walk = walkdir::WalkDir::new(root.host_path(tree))
        .follow_links(false)
        .follow_root_links(false)
        .min_depth(1)
        .sort_by_file_name();
    let host_root = root.host_path(tree);
    let mut it = walk.into_iter();
    while let Some(item) = it.next() {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                let path = e
                    .path()
                    .map_or_else(|| tree.to_string(), |p| manifest_path(tree, &host_root, p));
                out.push(Finding::new(
                    &path,
                    Problem::Unreachable {
                        reason: e.to_string(),
                    },
                    None,
                ));
                continue;
            }
        };
        let path = manifest_path(tree, &host_root, item.path());
        if item.path().to_str().is_none() {
            // No manifest can list it, and a lossy name could not address it for removal.
            let reason = "the name is not UTF-8; in no manifest, remove it by hand".into();
            out.push(Finding::new(&path, Problem::Unreachable { reason }, None));
            continue;
        }
        if skip(&path) {
            if item.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if !listed(&path) {
            out.push(Finding::new(&path, Problem::Extra, None));
        }
    }
    Ok(out)
}

/// The manifest path of a host path found under the picky tree.
pub(super) fn manifest_path(tree: &str, host_tree: &Path, host: &Path) -> String {
    match host.strip_prefix(host_tree) {
        Ok(rel) => format!("{tree}/{}", rel.to_string_lossy()),
        Err(_) => host.to_string_lossy().into_owned(),
    }
}

/// The state directory as a manifest path, when it lies inside the root (it is chainup's
/// own, never an extra).
pub(super) fn state_inside(root: &Path, state: &Path) -> Option<String> {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| PathBuf::from(p));
    let rel = canon(state).strip_prefix(canon(root)).ok()?.to_path_buf();
    let rel = rel.to_str()?;
    (!rel.is_empty()).then(|| format!("/{rel}"))
}
