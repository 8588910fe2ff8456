//! Output of swupd's bundle commands: `bundle-list` in its forms, `bundle-remove`.

use serde_json::json;

use super::output::Output;
use super::swupd_compat::{ListArgs, RemoveArgs};
use crate::client::{Client, ListOptions, RemoveOptions};
use crate::swupd_config::aliases;
use crate::Result;

/// `bundle-list [--all] [--deps B | --has-dep B | --orphans] [--status]`.
pub(super) fn list(client: &Client, args: &ListArgs, out: &Output) -> Result<i32> {
    let opts = ListOptions {
        all: args.all,
        deps: args.deps.clone(),
        has_dep: args.has_dep.clone(),
        orphans: args.orphans,
    };
    let listed = client.list_bundles(&opts)?;
    client.cache_downloaded();
    if let Some(b) = &args.deps {
        if listed.is_empty() {
            out.result(&format!("No included bundles: {b} includes only os-core"));
        }
    }
    if let Some(b) = &args.has_dep {
        if listed.is_empty() {
            out.result(&format!("No bundles have {b} as a dependency"));
        }
    }
    for b in &listed {
        let mut notes = Vec::new();
        // Installed is implied when only installed bundles are listed.
        if args.status && (args.all || b.installed) {
            match (b.installed, b.tracked) {
                (true, true) => notes.push("explicitly installed"),
                (true, false) => notes.push("installed"),
                _ => {}
            }
        } else if args.all && b.installed && args.deps.is_none() && args.has_dep.is_none() {
            notes.push("installed");
        }
        if b.experimental {
            notes.push("experimental");
        }
        let text = match notes.is_empty() {
            true => b.name.clone(),
            false => format!("{} ({})", b.name, notes.join(", ")),
        };
        out.record(
            &text,
            json!({"type": "bundle", "name": b.name, "installed": b.installed,
                   "tracked": b.tracked, "experimental": b.experimental}),
        );
    }
    Ok(0)
}

/// `bundle-remove [-x] [-R] BUNDLE... | --orphans`.
pub(super) fn remove(
    client: &Client,
    names: &[String],
    args: &RemoveArgs,
    out: &Output,
) -> Result<i32> {
    let opts = RemoveOptions {
        force: args.force,
        recursive: args.recursive,
        orphans: args.orphans,
    };
    let removed = client.bundle_remove_with(names, &opts)?;
    for e in &removed.skipped {
        out.error(&format!("{e}; skipped"));
    }
    // As swupd: the others are removed, and the exit code tells of the last skipped
    // (its loop overwrites the code with each bad name's).
    let code = removed.skipped.last().map_or(0, |e| e.exit_code());
    if removed.bundles.is_empty() {
        out.result("No orphaned bundles found, nothing was removed");
        return Ok(0);
    }
    let extra: Vec<&String> = removed
        .bundles
        .iter()
        .filter(|b| !names.contains(b))
        .collect();
    if !args.orphans && !extra.is_empty() {
        let why = match args.force {
            true => "they depend on the bundles named",
            false => "they were installed only as dependencies",
        };
        out.result(&format!(
            "Also removed ({why}): {}",
            extra
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.result(&format!(
        "Removed {}: {} entries deleted",
        removed.bundles.join(", "),
        removed.applied.deleted
    ));
    Ok(code)
}

/// `update --update-search-file-index`: every manifest of `version` (the one the update
/// reached), fetched, verified and kept in the manifest cache for search-file.
pub(super) fn search_file_index(client: &Client, out: &Output, version: u32) -> Result<()> {
    let n = client.fetch_all_manifests(version)?;
    out.result(&format!(
        "Search index: {n} bundle manifests of version {version} fetched and verified"
    ));
    Ok(())
}

/// `bundle-add`'s names with swupd's aliases (`alias.d` in the root) replaced by the
/// bundles they stand for, each alias used named as swupd does.
pub(super) fn expand_aliases(
    client: &Client,
    names: &[String],
    out: &Output,
) -> Result<Vec<String>> {
    let (bundles, used) = aliases::expand(client.root().path(), names)?;
    for a in &used {
        let text = format!(
            "Alias {} will install bundle(s): {}",
            a.name,
            a.bundles.join(", ")
        );
        let record = json!({"type": "info", "msg": text, "alias": a.name, "bundles": a.bundles});
        out.record(&text, record);
    }
    Ok(bundles)
}
