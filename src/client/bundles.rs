//! Bundles and how they depend on each other: swupd's `bundle-list --deps/--has-dep/
//! --orphans/--status` and `bundle-remove --force/--recursive/--orphans`, from the
//! verified manifests' `includes` and `also-add` and the tracking of `tracking.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::tracking::Tracking;
use super::{Client, Installed, OS_CORE};
use crate::chain::VerifiedMom;
use crate::install::Applied;
use crate::plan::FileSet;
use crate::progress::Event;
use crate::{Error, Result};

/// What `bundle-list` shows.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Every bundle of the current version, not only the installed ones.
    pub all: bool,
    /// The bundles this one includes, directly or not.
    pub deps: Option<String>,
    /// The bundles that include this one, directly or not.
    pub has_dep: Option<String>,
    /// Installed bundles that nothing tracked needs.
    pub orphans: bool,
}

/// A bundle in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub installed: bool,
    /// Installed on purpose (not only as another bundle's dependency).
    pub tracked: bool,
    pub experimental: bool,
}

/// How `bundle-remove` chooses what goes.
#[derive(Debug, Clone, Default)]
pub struct RemoveOptions {
    /// Also remove the installed bundles that require the named ones.
    pub force: bool,
    /// Also remove the named bundles' dependencies that nothing else needs.
    pub recursive: bool,
    /// Remove the orphans (no names are given).
    pub orphans: bool,
}

/// What a removal did.
#[derive(Debug, Default)]
pub struct Removed {
    /// Every bundle removed, the named ones and those taken with them, in name order.
    pub bundles: Vec<String>,
    pub applied: Applied,
    /// Named bundles left alone, and why (unknown, not installed, required by another):
    /// as swupd, one bad name does not stop the others.
    pub skipped: Vec<Error>,
}

/// What a `bundle-add` did.
#[derive(Debug, Default)]
pub struct Added {
    /// The named bundles the version has (installed now or already before).
    pub bundles: Vec<String>,
    pub applied: Applied,
    /// Named bundles the version does not have: as swupd, each is skipped with a warning
    /// and the others are installed; the command then exits with the skipped one's code.
    pub skipped: Vec<Error>,
}

/// `names` split into the bundles `mom` has and the errors of those it lacks, each of
/// those named in a warning. When none is known, the last unknown one's error (as swupd:
/// nothing to install, exit 3).
pub(super) fn known_names(
    client: &Client,
    mom: &VerifiedMom,
    names: &[String],
) -> Result<(Vec<String>, Vec<Error>)> {
    let (known, mut unknown): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|b| mom.bundle(b).is_some());
    let last = match known.is_empty() {
        true => unknown.pop(),
        false => None,
    };
    let skipped: Vec<Error> = unknown.into_iter().map(Error::UnknownBundle).collect();
    for e in &skipped {
        client
            .observer
            .event(Event::Warning(format!("{e}; skipping it")));
    }
    match last {
        Some(b) => Err(Error::UnknownBundle(b)),
        None => Ok((known, skipped)),
    }
}

/// Each bundle's dependencies: `includes`, and `also-add` when `optional`.
type Graph = BTreeMap<String, Vec<String>>;

/// `starts` and everything they depend on in `graph`.
fn closure<'a>(graph: &Graph, starts: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = starts.into_iter().cloned().collect();
    while let Some(b) = todo.pop() {
        if seen.insert(b.clone()) {
            todo.extend(graph.get(&b).into_iter().flatten().cloned());
        }
    }
    seen
}

impl Client<'_> {
    /// The dependency graph of `names` and everything they reach, from verified manifests.
    fn graph(&self, mom: &VerifiedMom, names: &[String], optional: bool) -> Result<Graph> {
        Ok(self
            .resolve(mom, names, optional)?
            .iter()
            .map(|m| {
                let h = &m.manifest().header;
                let mut deps = h.includes.clone();
                if optional {
                    deps.extend(h.also_add.iter().cloned());
                }
                (m.name().to_string(), deps)
            })
            .collect())
    }

    /// The installed bundles the current version knows (a stray marker names nothing).
    fn known_installed(&self, mom: &VerifiedMom) -> Result<Vec<String>> {
        let mut installed = self.installed_bundles()?;
        installed.retain(|b| mom.bundle(b).is_some());
        Ok(installed)
    }

    /// Installed bundles that no tracked bundle needs, even optionally (os-core never).
    fn orphans(&self, mom: &VerifiedMom) -> Result<Vec<String>> {
        let installed = self.known_installed(mom)?;
        let mut roots: Vec<String> = Tracking::new(self.state())
            .tracked(&installed)?
            .into_iter()
            .filter(|b| installed.contains(b))
            .collect();
        roots.push(OS_CORE.to_string());
        let graph = self.graph(mom, &installed, true)?;
        let needed = closure(&graph, &roots);
        Ok(installed
            .into_iter()
            .filter(|b| !needed.contains(b))
            .collect())
    }

    /// `update --update-search-file-index`: fetches and verifies every bundle manifest of
    /// `version`, installed or not (what swupd's search-file reads). Returns how many.
    pub fn fetch_all_manifests(&self, version: u32) -> Result<usize> {
        let mom = self.verified_mom(version)?;
        let all: Vec<String> = mom.bundles().map(|e| e.path.clone()).collect();
        let n = self.resolve(&mom, &all, false)?.len();
        // Kept for search-file, which then reads them from the state directory.
        self.keep_manifests(version);
        Ok(n)
    }

    /// `bundle-list` with swupd's options.
    pub fn list_bundles(&self, opts: &ListOptions) -> Result<Vec<Listed>> {
        let installed = self.installed_bundles()?;
        let tracked = Tracking::new(self.state()).tracked(&installed)?;
        let listed = |name: &str, experimental: bool| Listed {
            name: name.to_string(),
            installed: installed.iter().any(|b| b == name),
            tracked: installed.iter().any(|b| b == name) && tracked.contains(name),
            experimental,
        };
        let plain = opts.deps.is_none() && opts.has_dep.is_none() && !opts.orphans;
        if plain && !opts.all {
            return Ok(installed.iter().map(|b| listed(b, false)).collect());
        }
        let mom = self.verified_mom(self.current_version()?)?;
        let experimental = |name: &str| {
            mom.bundle(name)
                .is_some_and(|e| e.status == crate::manifest::Status::Experimental)
        };
        let known = |name: &str| {
            mom.bundle(name)
                .map(|_| ())
                .ok_or_else(|| Error::UnknownBundle(name.to_string()))
        };
        let names: Vec<String> = if let Some(b) = &opts.deps {
            known(b)?;
            let graph = self.graph(&mom, std::slice::from_ref(b), true)?;
            let mut deps = closure(&graph, [b]);
            deps.remove(b);
            // swupd counts os-core among every bundle's dependencies, and reports a
            // bundle that includes nothing else as including nothing.
            if deps.iter().all(|d| d == OS_CORE) {
                Vec::new()
            } else {
                deps.insert(OS_CORE.to_string());
                deps.into_iter().collect()
            }
        } else if let Some(b) = &opts.has_dep {
            known(b)?;
            if !opts.all && !installed.contains(b) {
                return Err(Error::NotInstalled(b.clone()));
            }
            let candidates: Vec<String> = match opts.all {
                true => mom.bundles().map(|e| e.path.clone()).collect(),
                false => self.known_installed(&mom)?,
            };
            let graph = self.graph(&mom, &candidates, true)?;
            candidates
                .into_iter()
                .filter(|c| c != b && closure(&graph, [c]).contains(b))
                .collect()
        } else if opts.orphans {
            self.orphans(&mom)?
        } else {
            mom.bundles().map(|e| e.path.clone()).collect()
        };
        let mut out: Vec<Listed> = names.iter().map(|n| listed(n, experimental(n))).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `bundle-remove` with swupd's options: the named bundles (or the orphans), with
    /// `force` what requires them, with `recursive` their dependencies that nothing left
    /// needs. Files another remaining bundle lists stay.
    pub fn bundle_remove_with(&self, names: &[String], opts: &RemoveOptions) -> Result<Removed> {
        self.settle(None)?;
        let current = self.current_version()?;
        let installed = self.installed_bundles()?;
        let mom = self.verified_mom(current)?;
        let names = match opts.orphans {
            true => self.orphans(&mom)?,
            false => names.to_vec(),
        };
        if names.is_empty() {
            return Ok(Removed::default());
        }
        let mut skipped = Vec::new();
        let mut names: Vec<String> = names
            .into_iter()
            .filter(|b| {
                let why = if b == OS_CORE {
                    // swupd's exit code: os-core is required by the system itself.
                    Some(Error::RequiredBundle {
                        bundle: b.clone(),
                        by: "every root (os-core cannot be removed)".into(),
                    })
                } else if mom.bundle(b).is_none() {
                    Some(Error::UnknownBundle(b.clone()))
                } else if !installed.contains(b) {
                    Some(Error::NotInstalled(b.clone()))
                } else {
                    None
                };
                let keep = why.is_none();
                skipped.extend(why);
                keep
            })
            .collect();
        let known = self.known_installed(&mom)?;
        let includes = self.graph(&mom, &known, false)?;
        // A bundle another one still needs stays (and so do the ones it needs), unless
        // `force` takes the requirers along.
        let mut remove: BTreeSet<String> = names.iter().cloned().collect();
        loop {
            let required = known.iter().filter(|b| !remove.contains(*b)).find_map(|b| {
                let needs = closure(&includes, [b]);
                names
                    .iter()
                    .find(|n| needs.contains(*n))
                    .map(|n| (n.clone(), b.clone()))
            });
            let Some((dep, by)) = required else {
                break;
            };
            if opts.force && by != OS_CORE {
                remove.insert(by);
            } else {
                names.retain(|n| *n != dep);
                remove.remove(&dep);
                skipped.push(Error::RequiredBundle { bundle: dep, by });
            }
        }
        if remove.is_empty() {
            // Nothing left to remove: each bad name is named, and the last one's error
            // is the command's (swupd's loop keeps the last code).
            let last = skipped.pop();
            for e in skipped {
                self.observer
                    .event(Event::Warning(format!("skipping it: {e}")));
            }
            return match last {
                Some(e) => Err(e),
                None => Ok(Removed::default()),
            };
        }
        let tracking = Tracking::new(self.state());
        if opts.recursive {
            let tracked = tracking.tracked(&installed)?;
            let optional = self.graph(&mom, &known, true)?;
            let candidates: BTreeSet<String> = closure(&optional, &remove)
                .into_iter()
                .filter(|d| {
                    !remove.contains(d)
                        && d != OS_CORE
                        && !tracked.contains(d)
                        && installed.contains(d)
                })
                .collect();
            let rest: Vec<String> = known
                .iter()
                .filter(|b| !remove.contains(*b) && !candidates.contains(*b))
                .cloned()
                .collect();
            let needed = closure(&optional, &rest);
            remove.extend(candidates.into_iter().filter(|d| !needed.contains(d)));
        }
        let old_manifests = self.resolve(&mom, &known, false)?;
        let old = Installed {
            version: Some(current),
            bundles: installed.clone(),
            files: FileSet::from_manifests(&old_manifests),
            ..Installed::default()
        };
        let keep: Vec<String> = known
            .iter()
            .filter(|b| !remove.contains(*b))
            .cloned()
            .collect();
        let new = self.resolve(&mom, &keep, false)?;
        let applied = self
            .transition(&old, &new, &mom, 0, false, false)?
            .unwrap_or_default();
        let removed: Vec<String> = remove.into_iter().collect();
        tracking.untrack(&removed, &installed)?;
        Ok(Removed {
            bundles: removed,
            applied,
            skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_follows_every_edge_once() {
        let g: Graph = [
            ("a".to_string(), vec!["b".to_string()]),
            ("b".to_string(), vec!["c".to_string(), "a".to_string()]),
            ("c".to_string(), vec![]),
        ]
        .into_iter()
        .collect();
        let got = closure(&g, &["a".to_string()]);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
