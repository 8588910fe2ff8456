//! After a command changed the root: the post-update actions, or with `--no-scripts` the
//! plan only, each action reported as skipped.

use std::time::Duration;

use super::output::Output;
use super::Global;
use crate::client::Client;
use crate::post_update::{self, Context, Host, Triggers};
use crate::Result;

/// Plans and runs the actions `changed` calls for, and those an interrupted update this
/// run finished still owes; a failing one is only reported.
pub fn run(
    client: &Client,
    g: &Global,
    out: &Output,
    command: &str,
    (from, to): (Option<u32>, u32),
    changed: &Triggers,
) -> Result<()> {
    let mut changed = changed.clone();
    if let Some(finished) = client.take_finished() {
        changed.merge(&finished.changed);
    }
    run_actions(g, out, command, (from, to), &changed)
}

/// The actions owed by an interrupted update this run finished, when the command itself
/// ran none (it found nothing more to do, or failed after finishing it).
pub fn owed(client: &Client, g: &Global, out: &Output) -> Result<()> {
    match client.take_finished() {
        Some(f) => run_actions(g, out, "update", (f.from, f.to), &f.changed),
        None => Ok(()),
    }
}

fn run_actions(
    g: &Global,
    out: &Output,
    command: &str,
    (from, to): (Option<u32>, u32),
    changed: &Triggers,
) -> Result<()> {
    let (root, config) = super::local_config(g)?;
    let timeout = config
        .post_update_timeout
        .map_or(post_update::DEFAULT_TIMEOUT, Duration::from_secs);
    let ctx = Context {
        root: &root,
        command,
        from,
        to,
        timeout,
    };
    let mut actions = post_update::plan(&ctx, Host::detect(&root), changed);
    if g.no_scripts {
        out.warning("post-update actions skipped (--no-scripts)");
        for a in &mut actions {
            a.skip = Some("--no-scripts".into());
        }
    }
    if g.no_boot_update {
        for a in actions.iter_mut().filter(|a| a.name == "boot-manager") {
            a.skip = Some("--no-boot-update".into());
        }
    }
    post_update::run(&ctx, actions, changed, out);
    Ok(())
}
