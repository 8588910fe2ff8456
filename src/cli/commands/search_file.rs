//! `search-file`: its options and how matches are shown (swupd's text, CSV, quiet, JSON).

use clap::Args;
use serde_json::json;

use crate::cli::output::{Mode, Output};
use crate::client::Client;
use crate::commands::search_file::{self, Order, Query};
use crate::progress::Event;
use crate::Result;

/// `search-file` (swupd's options).
#[derive(Debug, Clone, Args)]
pub struct SearchFileArgs {
    /// Search the bundles of version V (default: the installed one)
    #[arg(short = 'V', long = "version", value_name = "V")]
    pub version: Option<u32>,
    /// Only where libraries are (/usr/lib)
    #[arg(short = 'l', long)]
    pub library: bool,
    /// Only where binaries are (/usr/bin)
    #[arg(short = 'B', long)]
    pub binary: bool,
    /// Show at most NUM paths per bundle
    #[arg(short = 'T', long, value_name = "NUM")]
    pub top: Option<usize>,
    /// One `path,bundle` line per match
    #[arg(short = 'm', long)]
    pub csv: bool,
    /// Only fetch (and cache) every manifest of the version, then exit
    #[arg(short = 'i', long)]
    pub init: bool,
    /// Order of the bundles
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub order: Order,
    /// TERM is an extended regular expression
    #[arg(long)]
    pub regexp: bool,
    /// A substring (any case) of the paths to find
    #[arg(required_unless_present = "init")]
    pub term: Option<String>,
}

/// `search-file`: 0 found, 1 not found, 8 when some manifest could not be had.
pub fn search_file(client: &Client, a: &SearchFileArgs, out: &Output) -> Result<i32> {
    if a.init {
        let (mom, manifests, failed) = search_file::load_all(client, a.version)?;
        out.result(&format!(
            "Cached {} manifests of version {}",
            manifests.len(),
            mom.version()
        ));
        return Ok(if failed.is_empty() { 0 } else { 8 });
    }
    let query = Query {
        version: a.version,
        term: a.term.clone().unwrap_or_default(),
        regexp: a.regexp,
        library: a.library,
        binary: a.binary,
        top: a.top,
        order: a.order,
    };
    let quiet = out.mode() == Mode::Quiet;
    if !a.csv && !quiet {
        out.result(&format!("Searching for '{}'", query.term));
        if let Some(n) = a.top {
            out.result(&format!(
                "Displaying only top {n} file results per bundle; results may be truncated"
            ));
        }
    }
    let found = search_file::search(client, &query)?;
    for hit in &found.hits {
        if out.mode() == Mode::Json {
            out.record(
                "",
                json!({"type": "search-result", "bundle": hit.bundle, "installed": hit.installed,
                       "experimental": hit.experimental, "size": hit.size, "paths": hit.paths}),
            );
            continue;
        }
        if a.csv {
            for p in &hit.paths {
                out.result(&format!("{p},{}", hit.bundle));
            }
            continue;
        }
        match quiet {
            true => out.result(&format!("[{}]", hit.bundle)),
            false => out.result(&format!(
                "\nBundle {}{} {}({} MB{})",
                hit.bundle,
                if hit.experimental {
                    " (experimental)"
                } else {
                    ""
                },
                if hit.installed { "[installed] " } else { "" },
                hit.size / 1_000_000,
                if hit.installed {
                    " on system"
                } else {
                    " to install"
                }
            )),
        }
        for p in &hit.paths {
            match quiet {
                true => out.result(p),
                false => out.result(&format!("\t{p}")),
            }
        }
    }
    if !found.failed.is_empty() {
        client.observer().event(Event::Warning(format!(
            "{} manifests could not be had ({}): the results are partial",
            found.failed.len(),
            found.failed.join(", ")
        )));
        return Ok(8);
    }
    if found.hits.is_empty() {
        if !quiet && !a.csv {
            out.result("Search term not found");
        }
        return Ok(1);
    }
    Ok(0)
}
