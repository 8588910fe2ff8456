//! `3rd-party`: its subcommands, and the client settings of a repository.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use crate::cli::output::Output;
use crate::cli::{local_config, report, settings, state_dir, Global};
use crate::client::{Access, Client, Settings};
use crate::commands::third_party::{self, Repo};
use crate::progress::{Event, Observer};
use crate::state::StateDir;
use crate::{Error, Result};

/// `3rd-party` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ThirdParty {
    /// Add a repository (its certificate with -C) and install its os-core
    Add {
        /// Repository name
        name: String,
        /// Its URL (content and version)
        url: String,
    },
    /// Remove a repository and everything installed from it
    Remove {
        /// Repository name
        name: String,
    },
    /// List the repositories
    List,
    /// Install bundles from a repository
    BundleAdd {
        /// The repository (default: the one that has the bundles)
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
        #[arg(required = true)]
        bundles: Vec<String>,
    },
    /// Remove bundles installed from a repository
    BundleRemove {
        /// The repository (default: the one the bundles are installed from)
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
        #[arg(required = true)]
        bundles: Vec<String>,
    },
    /// List the bundles installed from the repositories
    BundleList {
        /// Only this repository
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
        /// Every bundle the repositories have, installed or not
        #[arg(long)]
        all: bool,
    },
    /// Exit 0 if a repository has a newer version, 1 if none has
    CheckUpdate {
        /// Only this repository
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
    },
    /// Update the repositories' content
    Update {
        /// Only this repository
        #[arg(short = 'R', long = "repo")]
        repo: Option<String>,
        /// Target version (needs --repo)
        #[arg(short = 'V', long = "version", requires = "repo")]
        version: Option<u32>,
        /// Only download and verify
        #[arg(long)]
        download: bool,
    },
}

/// `3rd-party ...`.
pub fn third_party(g: &Global, cmd: &ThirdParty, out: &Output) -> Result<i32> {
    let (root, config) = local_config(g)?;
    let main_state = state_dir(g, &config, &root);
    match cmd {
        ThirdParty::List => {
            let repos = third_party::read_repos(&root)?;
            for r in &repos {
                out.record(
                    &format!("{}: {}", r.name, r.url),
                    json!({"type": "repository", "name": r.name, "url": r.url}),
                );
            }
            Ok(0)
        }
        ThirdParty::Add { name, url } => {
            let repo = Repo {
                name: name.clone(),
                url: url.clone(),
            };
            third_party::check_new(&root, &repo)?;
            let nosigcheck = g.nosigcheck || config.nosigcheck.unwrap_or(false);
            if g.certpath.is_none() && !nosigcheck {
                return Err(Error::Usage(format!(
                    "give the certificate of repository {name} with -C/--certpath: chainup does not trust a certificate fetched from the repository itself"
                )));
            }
            let main = StateDir::open(&main_state)?;
            let _lock = main.lock()?;
            let repo_state = StateDir::open(&third_party::repo_state(&main_state, name))?;
            let added = (|| {
                if let Some(cert) = &g.certpath {
                    third_party::pin_certificate(repo_state.path(), cert)?;
                }
                out.result(&format!(
                    "Adding 3rd-party repository {name}: installing its os-core into {}",
                    third_party::repo_root(&root, name).display()
                ));
                let client = Client::new(repo_settings(g, &repo)?, out, Access::Install)?;
                let _lock = client.lock()?;
                report(out, &client.os_install(None, &[])?);
                let mut repos = third_party::read_repos(&root)?;
                repos.push(repo.clone());
                third_party::write_repos(&root, &repos)
            })();
            if let Err(e) = added {
                // Nothing half-added stays behind: not its content, not its pinned cert.
                if let Err(cleanup) = third_party::remove_content(&root, &main_state, name) {
                    out.event(Event::Warning(format!("cleaning up after {e}: {cleanup}")));
                }
                return Err(e);
            }
            out.result("Repository added successfully");
            Ok(0)
        }
        ThirdParty::Remove { name } => {
            third_party::check_name(name)?;
            third_party::find(&root, name)?;
            let main = StateDir::open(&main_state)?;
            let _lock = main.lock()?;
            // Not while an operation on the repository itself is running.
            let repo_state = third_party::repo_state(&main_state, name);
            let _repo_lock = match repo_state.is_dir() {
                true => Some(StateDir::open(&repo_state)?.lock()?),
                false => None,
            };
            let repos: Vec<Repo> = third_party::read_repos(&root)?
                .into_iter()
                .filter(|r| r.name != *name)
                .collect();
            third_party::write_repos(&root, &repos)?;
            third_party::remove_content(&root, &main_state, name)?;
            out.result(&format!("Repository {name} and its content removed"));
            Ok(0)
        }
        ThirdParty::BundleAdd { repo, bundles } => {
            let groups = match repo {
                Some(name) => vec![(third_party::find(&root, name)?, bundles.clone())],
                None => locate_bundles(g, &root, bundles, out)?,
            };
            for (repo, names) in groups {
                let client = Client::new(repo_settings(g, &repo)?, out, Access::Write)?;
                let _lock = client.lock()?;
                let applied = client.bundle_add(&names)?;
                out.result(&format!(
                    "Installed {} from repository {}: {} files, {} directories",
                    names.join(", "),
                    repo.name,
                    applied.files,
                    applied.dirs
                ));
            }
            Ok(0)
        }
        ThirdParty::BundleRemove { repo, bundles } => {
            let repo = match repo {
                Some(name) => third_party::find(&root, name)?,
                None => installed_from(&root, bundles)?,
            };
            let client = Client::new(repo_settings(g, &repo)?, out, Access::Write)?;
            let _lock = client.lock()?;
            let applied = client.bundle_remove(bundles)?;
            out.result(&format!(
                "Removed {} from repository {}: {} entries deleted",
                bundles.join(", "),
                repo.name,
                applied.deleted
            ));
            Ok(0)
        }
        ThirdParty::BundleList { repo, all } => {
            for repo in selected(&root, repo)? {
                out.result(&format!("Repository {}:", repo.name));
                let client = Client::new(repo_settings(g, &repo)?, out, Access::Read)?;
                for b in client.bundle_list(*all)? {
                    let mark = if *all && b.installed {
                        " (installed)"
                    } else {
                        ""
                    };
                    out.record(
                        &format!(" - {}{mark}", b.name),
                        json!({"type": "bundle", "repository": repo.name, "name": b.name,
                               "installed": b.installed, "experimental": b.experimental}),
                    );
                }
            }
            Ok(0)
        }
        ThirdParty::CheckUpdate { repo } => Ok(if check_update(g, repo, out)? { 0 } else { 1 }),
        ThirdParty::Update {
            repo,
            version,
            download,
        } => {
            update(g, repo, *version, *download, out)?;
            Ok(0)
        }
    }
}

/// `3rd-party check-update` (and swupd's `update --3rd-party --status`): whether any
/// selected repository has a newer version.
pub fn check_update(g: &Global, repo: &Option<String>, out: &Output) -> Result<bool> {
    let (root, _) = local_config(g)?;
    let mut any = false;
    for repo in selected(&root, repo)? {
        let client = Client::new(repo_settings(g, &repo)?, out, Access::Read)?;
        let (current, target) = client.check_update()?;
        let newer = target.version > current;
        any |= newer;
        let text = match newer {
            true => format!(
                "Repository {}: update available: version {} (current {current})",
                repo.name, target.version
            ),
            false => format!(
                "Repository {}: no update available (current {current}, server {})",
                repo.name, target.version
            ),
        };
        out.record(
            &text,
            json!({"type": "info", "repository": repo.name, "current": current,
                   "latest": target.version, "msg": text}),
        );
    }
    Ok(any)
}

/// `3rd-party update` (and swupd's `update --3rd-party`): each selected repository in
/// turn, through the ordinary client on its own root. No post-update actions run for a
/// repository's content, as swupd forces `--no-scripts` there.
pub fn update(
    g: &Global,
    repo: &Option<String>,
    version: Option<u32>,
    download: bool,
    out: &Output,
) -> Result<()> {
    let (root, _) = local_config(g)?;
    for repo in selected(&root, repo)? {
        out.result(&format!("Updating repository {}", repo.name));
        let client = Client::new(repo_settings(g, &repo)?, out, Access::Write)?;
        let _lock = client.lock()?;
        report(out, &client.update(version, download)?);
    }
    Ok(())
}

/// The repository named, or all of them.
fn selected(root: &Path, name: &Option<String>) -> Result<Vec<Repo>> {
    match name {
        Some(name) => Ok(vec![third_party::find(root, name)?]),
        None => third_party::read_repos(root),
    }
}

/// The one repository `bundles` are installed from (swupd: 13 if none, 15 if several).
fn installed_from(root: &Path, bundles: &[String]) -> Result<Repo> {
    let mut found: Option<Repo> = None;
    for repo in third_party::read_repos(root)? {
        let marked = crate::client::installed_bundles(&third_party::repo_root(root, &repo.name))?;
        if !bundles.iter().any(|b| marked.contains(b)) {
            continue;
        }
        if let Some(first) = &found {
            return Err(Error::Usage(format!(
                "the bundles are installed from both {} and {}: name one with --repo",
                first.name, repo.name
            )));
        }
        found = Some(repo);
    }
    found.ok_or_else(|| Error::NotInstalled(bundles.join(", ")))
}

/// Which repository has each bundle: exactly one must (swupd: 3 if none, 15 if several).
fn locate_bundles(
    g: &Global,
    root: &Path,
    bundles: &[String],
    out: &Output,
) -> Result<Vec<(Repo, Vec<String>)>> {
    let mut groups: Vec<(Repo, Vec<String>)> = Vec::new();
    let repos = third_party::read_repos(root)?;
    let mut have: Vec<(Repo, Vec<String>)> = Vec::new();
    for repo in repos {
        let client = Client::new(repo_settings(g, &repo)?, out, Access::Read)?;
        let mom = client.verified_mom(client.current_version()?)?;
        let names = mom.bundles().map(|e| e.path.clone()).collect();
        have.push((repo, names));
    }
    for b in bundles {
        let mut found = have.iter().filter(|(_, names)| names.contains(b));
        let Some((repo, _)) = found.next() else {
            return Err(Error::UnknownBundle(b.clone()));
        };
        if found.next().is_some() {
            return Err(Error::Usage(format!(
                "bundle {b} is in more than one 3rd-party repository: name one with --repo"
            )));
        }
        match groups.iter_mut().find(|(r, _)| r.name == repo.name) {
            Some((_, names)) => names.push(b.clone()),
            None => groups.push((repo.clone(), vec![b.clone()])),
        }
    }
    Ok(groups)
}

/// The client settings for a repository: its root and state directory, its URL, its
/// pinned certificate (unless -C names another), and none of the root's channel,
/// mirrors or slots.
fn repo_settings(g: &Global, repo: &Repo) -> Result<Settings> {
    let (root, config) = local_config(g)?;
    let main_state = state_dir(g, &config, &root);
    let state = third_party::repo_state(&main_state, &repo.name);
    let mut rg = g.clone();
    rg.path = Some(third_party::repo_root(&root, &repo.name));
    rg.statedir = Some(state.clone());
    rg.url = Some(repo.url.clone());
    rg.contenturl = None;
    rg.versionurl = None;
    rg.channel = None;
    rg.mirrors.clear();
    // Nothing under the repository's root configures its client: that tree is the
    // repository's own content, and it must not be able to turn off its checks.
    rg.config = Some(PathBuf::from("/dev/null"));
    rg.allow_insecure_http = g.allow_insecure_http || config.allow_insecure_http.unwrap_or(false);
    rg.nosigcheck = g.nosigcheck || config.nosigcheck.unwrap_or(false);
    rg.cacert = g.cacert.clone().or(config.cacert.clone());
    rg.certpath = Some(
        g.certpath
            .clone()
            .unwrap_or_else(|| state.join(third_party::PINNED_CERT)),
    );
    rg.max_age = g.max_age.or(config.max_age);
    let mut s = settings(&rg)?;
    s.mirrors.clear();
    s.slots = None;
    s.refuse_special_modes = true;
    Ok(s)
}
