//! `clean`: its options, the state directories it covers, and its report.

use clap::Args;
use serde_json::json;

use super::size;
use crate::cli::output::Output;
use crate::cli::{local_config, state_dir, Global};
use crate::commands::{clean, third_party};
use crate::state::StateDir;
use crate::{version, Result};

/// `clean` (swupd's options).
#[derive(Debug, Clone, Args)]
pub struct CleanArgs {
    /// Also remove the manifests of the installed version
    #[arg(long)]
    pub all: bool,
    /// Only list what would be removed
    #[arg(long)]
    pub dry_run: bool,
}

/// `clean`: the root's state directory and each 3rd-party repository's.
pub fn clean(g: &Global, a: &CleanArgs, out: &Output) -> Result<i32> {
    let (root, config) = local_config(g)?;
    let mut dirs = vec![(state_dir(g, &config, &root), version::installed(&root)?)];
    for repo in third_party::read_repos(&root)? {
        let repo_root = third_party::repo_root(&root, &repo.name);
        dirs.push((
            third_party::repo_state(&dirs[0].0, &repo.name),
            version::installed(&repo_root)?,
        ));
    }
    let mut done = clean::Cleaned::default();
    let mut locks = Vec::new();
    for (path, version) in &dirs {
        let state = match StateDir::at(path).exists() && !a.dry_run {
            // Removing needs the directory to be private and nobody else at work in it.
            true => {
                let state = StateDir::open(path)?;
                locks.push(state.lock()?);
                state
            }
            false => StateDir::at(path),
        };
        clean::clean_one(&state, *version, a.all, a.dry_run, &mut done)?;
    }
    if a.dry_run {
        for f in &done.files {
            out.record(
                &f.display().to_string(),
                json!({"type": "clean", "path": f}),
            );
        }
    }
    for (dir, to) in &done.kept_for_journal {
        out.result(&format!(
            "Kept {}/staged: an unfinished update to version {to} needs it",
            dir.display()
        ));
    }
    let (n, bytes) = (done.files.len(), done.bytes);
    let text = match a.dry_run {
        true => format!(
            "Would remove {n} files\nApproximately {} would be freed",
            size(bytes)
        ),
        false => format!("{n} files removed\n{} freed", size(bytes)),
    };
    out.record(
        &text,
        json!({"type": "info", "files": n, "bytes": bytes, "dry_run": a.dry_run}),
    );
    Ok(0)
}
