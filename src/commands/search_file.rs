//! `search-file TERM`: which bundles of a release hold a matching file, installed or not
//! (swupd's search_file.c). Every bundle manifest of the release comes through the
//! verified chain, kept in the state directory's manifest cache for the next search.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::chain::{VerifiedManifest, VerifiedMom};
use crate::client::Client;
use crate::manifest::EntryType;
use crate::progress::Event;
use crate::{Error, Result};

/// Where matches may be (swupd's `--library` and `--binary`).
const LIB_PREFIXES: &[&str] = &["/usr/lib"];
const BIN_PREFIXES: &[&str] = &["/usr/bin/"];

/// How bundles are ordered in the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Order {
    /// By bundle name (the default).
    #[default]
    Alpha,
    /// By the size a bundle takes (or would take) on disk, smaller first.
    Size,
}

/// What to search for and how.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The release (default: the installed one).
    pub version: Option<u32>,
    /// A case-insensitive substring of the path, or with `regexp` an extended regex.
    pub term: String,
    pub regexp: bool,
    /// Only under the library directories.
    pub library: bool,
    /// Only under the binary directories.
    pub binary: bool,
    /// At most this many paths per bundle.
    pub top: Option<usize>,
    pub order: Order,
}

/// The matches in one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub bundle: String,
    pub installed: bool,
    pub experimental: bool,
    /// Its content size together with what it includes that shares its installed state
    /// (what installing it adds, or what it takes), as swupd shows it.
    pub size: u64,
    /// Matching paths, sorted, cut to `top`.
    pub paths: Vec<String>,
}

/// The outcome of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub version: u32,
    pub hits: Vec<Hit>,
    /// Bundles whose manifest could not be had (the search is partial).
    pub failed: Vec<String>,
}

/// Fetches (or reads from the cache) every bundle manifest of the release. Bundles whose
/// manifest fails are reported in the second list, with a warning, and left out.
pub fn load_all(
    client: &Client,
    version: Option<u32>,
) -> Result<(VerifiedMom, Vec<VerifiedManifest>, Vec<String>)> {
    let version = match version {
        Some(v) => v,
        None => client.current_version()?,
    };
    let mom = client.verified_mom(version)?;
    let names: Vec<String> = mom.bundles().map(|e| e.path.clone()).collect();
    // As many at a time as downloads may run (-W): a release has hundreds of bundles.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(client.settings().max_parallel_downloads.max(1))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start download workers: {e}")))?;
    let results: Vec<(String, Result<VerifiedManifest>)> = pool.install(|| {
        names
            .par_iter()
            .map(|name| (name.clone(), client.manifest(&mom, name)))
            .collect()
    });
    let mut manifests = Vec::new();
    let mut failed = Vec::new();
    for (name, result) in results {
        match result {
            Ok(m) => manifests.push(m),
            Err(e) => {
                client
                    .observer()
                    .event(Event::Warning(format!("manifest of {name}: {e}")));
                failed.push(name);
            }
        }
    }
    // The next search reads them from the state directory (each checked again).
    client.keep_manifests(mom.version());
    Ok((mom, manifests, failed))
}

/// Runs `query` over every bundle of the release.
pub fn search(client: &Client, query: &Query) -> Result<Found> {
    let matcher = Matcher::new(query)?;
    let (mom, manifests, failed) = load_all(client, query.version)?;
    let installed = client.installed_bundles()?;
    let by_name: BTreeMap<&str, &VerifiedManifest> =
        manifests.iter().map(|m| (m.name(), m)).collect();
    let mut hits = Vec::new();
    for m in &manifests {
        let mut paths: Vec<String> = m
            .manifest()
            .present()
            .filter(|e| matches!(e.etype, EntryType::File | EntryType::Link))
            .filter(|e| e.image().is_none() && matcher.matches(&e.path))
            .map(|e| e.path.clone())
            .collect();
        if paths.is_empty() {
            continue;
        }
        paths.sort();
        if let Some(top) = query.top {
            paths.truncate(top);
        }
        let is_installed = installed.iter().any(|b| b == m.name());
        hits.push(Hit {
            bundle: m.name().to_string(),
            installed: is_installed,
            experimental: mom
                .bundle(m.name())
                .is_some_and(|l| l.status == crate::manifest::Status::Experimental),
            size: size_with_includes(m.name(), &by_name, &installed),
            paths,
        });
    }
    match query.order {
        Order::Alpha => hits.sort_by(|a, b| a.bundle.cmp(&b.bundle)),
        Order::Size => hits.sort_by(|a, b| a.size.cmp(&b.size).then(a.bundle.cmp(&b.bundle))),
    }
    Ok(Found {
        version: mom.version(),
        hits,
        failed,
    })
}

/// The content size of `bundle` and of everything it includes with the same installed
/// state (swupd's `compute_bundle_size`).
fn size_with_includes(
    bundle: &str,
    manifests: &BTreeMap<&str, &VerifiedManifest>,
    installed: &[String],
) -> u64 {
    let is_installed = |b: &str| installed.iter().any(|i| i == b);
    let mine = is_installed(bundle);
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![bundle.to_string()];
    let mut size = 0;
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(m) = manifests.get(name.as_str()) else {
            continue;
        };
        if name == bundle || is_installed(&name) == mine {
            size += m.manifest().header.contentsize;
        }
        todo.extend(m.manifest().header.includes.iter().cloned());
    }
    size
}

/// The term and the directory filter.
struct Matcher {
    lower: String,
    regex: Option<regex::Regex>,
    prefixes: Vec<&'static str>,
}

impl Matcher {
    fn new(q: &Query) -> Result<Matcher> {
        let regex = match q.regexp {
            true => Some(
                regex::Regex::new(&q.term)
                    .map_err(|e| Error::Usage(format!("--regexp {:?}: {e}", q.term)))?,
            ),
            false => None,
        };
        let mut prefixes = Vec::new();
        if q.library {
            prefixes.extend(LIB_PREFIXES);
        }
        if q.binary {
            prefixes.extend(BIN_PREFIXES);
        }
        Ok(Matcher {
            lower: q.term.to_lowercase(),
            regex,
            prefixes,
        })
    }

    fn matches(&self, path: &str) -> bool {
        if !self.prefixes.is_empty() && !self.prefixes.iter().any(|p| path.starts_with(p)) {
            return false;
        }
        match &self.regex {
            Some(re) => re.is_match(path),
            None => path.to_lowercase().contains(&self.lower),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_is_case_insensitive_and_filters_by_directory() {
        let q = Query {
            term: "VIM".into(),
            binary: true,
            ..Query::default()
        };
        let m = Matcher::new(&q).unwrap();
        assert!(m.matches("/usr/bin/vim"));
        assert!(!m.matches("/usr/share/vim/doc"));
        let q = Query {
            term: "^/usr/lib/.*\\.so$".into(),
            regexp: true,
            ..Query::default()
        };
        let m = Matcher::new(&q).unwrap();
        assert!(m.matches("/usr/lib/libz.so"));
        assert!(!m.matches("/usr/lib/libz.so.1"));
    }
}
