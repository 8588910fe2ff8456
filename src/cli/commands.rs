//! The command line of swupd's other commands (src/commands/): bundle-info, search-file,
//! clean, mirror, autoupdate and 3rd-party; their options, and how results are shown.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{Mode, Output};
use super::{local_config, report, settings, state_dir, Global};
use crate::client::{Access, Client, Settings};
use crate::commands::bundle_info::{self, Release};
use crate::commands::search_file::{self, Order, Query};
use crate::commands::third_party::{self, Repo};
use crate::commands::{autoupdate, clean, mirror};
use crate::progress::{Event, Observer};
use crate::source::{Source, SourceConfig};
use crate::state::StateDir;
use crate::{version, Error, Result};

/// `bundle-info` (swupd's options).
#[derive(Debug, Clone, Args)]
pub struct BundleInfoArgs {
    /// Show the bundle as of version V (a number or 'latest'; default: the installed one)
    #[arg(short = 'V', long = "version", value_name = "V")]
    pub version: Option<Release>,
    /// Show the bundles it pulls in
    #[arg(long)]
    pub dependencies: bool,
    /// List its files (with --dependencies, those of everything it pulls in)
    #[arg(long)]
    pub files: bool,
    /// The bundle
    pub bundle: String,
}

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

/// `mirror` (swupd's options).
#[derive(Debug, Clone, Args)]
pub struct MirrorArgs {
    /// Set the mirror to URL (or to -c/-v, or -u)
    #[arg(short = 's', long = "set")]
    pub set: bool,
    /// Remove the mirror
    #[arg(short = 'U', long = "unset", conflicts_with = "set")]
    pub unset: bool,
    /// The mirror URL (with --set)
    #[arg(requires = "set")]
    pub url: Option<String>,
}

/// `autoupdate` (swupd's options; without one, the status).
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct AutoupdateArgs {
    /// Turn automatic updates on (unmask and enable chainup-update.timer)
    #[arg(long)]
    pub enable: bool,
    /// Turn automatic updates off (mask the timer and the service)
    #[arg(long)]
    pub disable: bool,
    /// Say whether automatic updates are on (exit 1 if not); the default
    #[arg(long)]
    pub status: bool,
}

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

/// `bundle-info`.
pub fn bundle_info(client: &Client, a: &BundleInfoArgs, out: &Output) -> Result<i32> {
    let release = a.version.unwrap_or(Release::Current);
    let info = bundle_info::bundle_info(client, &a.bundle, release, a.dependencies, a.files)?;
    let deps = |d: &[bundle_info::Dependency]| -> Vec<serde_json::Value> {
        d.iter()
            .map(|d| json!({"name": d.name, "optional": d.optional, "installed": d.installed}))
            .collect()
    };
    if out.mode() == Mode::Json {
        out.record(
            "",
            json!({"type": "bundle-info", "bundle": info.name, "version": info.version,
                   "installed": info.installed, "experimental": info.experimental,
                   "manifest_version": info.manifest_version,
                   "latest_manifest_version": info.latest_manifest_version,
                   "size": info.size, "closure_size": info.closure_size,
                   "direct": deps(&info.direct), "indirect": deps(&info.indirect),
                   "files": info.files}),
        );
        return Ok(0);
    }
    let mut lines = vec![format!("Info for bundle: {}", info.name)];
    lines.push(format!(
        "Status: {}{}",
        if info.installed {
            "Installed"
        } else {
            "Not installed"
        },
        if info.experimental {
            " (experimental)"
        } else {
            ""
        }
    ));
    let latest = info
        .latest_manifest_version
        .unwrap_or(info.manifest_version);
    lines.push(String::new());
    if info.installed {
        lines.push(match latest > info.manifest_version {
            true => format!("There is an update for bundle {}:", info.name),
            false => format!("Bundle {} is up to date:", info.name),
        });
        lines.push(format!(
            " - Installed bundle last updated in version: {}",
            info.manifest_version
        ));
        lines.push(format!(" - Latest available version: {latest}"));
    } else {
        lines.push(format!("Latest available version: {latest}"));
    }
    lines.push(String::new());
    lines.push("Bundle size:".into());
    lines.push(format!(" - Size of bundle: {}", size(info.size)));
    lines.push(match info.installed {
        true => format!(
            " - Size bundle takes on disk (includes dependencies): {}",
            size(info.closure_size)
        ),
        false => format!(
            " - Maximum amount of disk size the bundle will take if installed (includes dependencies): {}",
            size(info.closure_size)
        ),
    });
    if a.dependencies {
        let show = |d: &bundle_info::Dependency| match (d.optional, info.installed) {
            (false, _) => format!(" - {}", d.name),
            (true, false) => format!(" - {} (optional)", d.name),
            (true, true) => format!(
                " - {} (optional, {})",
                d.name,
                if d.installed {
                    "installed"
                } else {
                    "not installed"
                }
            ),
        };
        if !info.direct.is_empty() {
            lines.push(String::new());
            lines.push(format!("Direct dependencies ({}):", info.direct.len()));
            lines.extend(info.direct.iter().map(show));
        }
        if !info.indirect.is_empty() {
            lines.push(String::new());
            lines.push(format!("Indirect dependencies ({}):", info.indirect.len()));
            lines.extend(info.indirect.iter().map(show));
        }
    }
    if let Some(files) = &info.files {
        lines.push(String::new());
        lines.push(match a.dependencies {
            true => "Files in bundle (includes dependencies):".into(),
            false => "Files in bundle:".into(),
        });
        lines.extend(files.iter().map(|f| format!(" - {f}")));
        lines.push(String::new());
        lines.push(format!("Total files: {}", files.len()));
    }
    for l in lines {
        out.result(&l);
    }
    Ok(0)
}

/// A size as people read it, with the exact byte count.
fn size(bytes: u64) -> String {
    format!("{} ({bytes} bytes)", indicatif::HumanBytes(bytes))
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

/// `mirror`: without options, the mirror files and the URLs in force.
pub fn mirror(g: &Global, a: &MirrorArgs, out: &Output) -> Result<i32> {
    let (root, config) = local_config(g)?;
    if !root.is_dir() {
        return Err(Error::Usage(format!(
            "the root {} does not exist",
            root.display()
        )));
    }
    let from_flags = g.url.is_some() || g.contenturl.is_some() || g.versionurl.is_some();
    if a.set {
        let content = a.url.clone().or(g.contenturl.clone()).or(g.url.clone());
        let version = a.url.clone().or(g.versionurl.clone()).or(g.url.clone());
        if content.is_none() && version.is_none() {
            return Err(Error::Usage("--set needs a URL (or -u, -c or -v)".into()));
        }
        let check = SourceConfig {
            allow_insecure_http: g.allow_insecure_http
                || config.allow_insecure_http.unwrap_or(false),
            ..SourceConfig::default()
        };
        for url in content.iter().chain(version.iter()) {
            Source::new(url, &check)?;
            if url.starts_with("http://") {
                out.event(Event::Warning(format!(
                    "the mirror {url} is plain HTTP: automatic updates need allow-insecure-http = true in the config"
                )));
            }
        }
        mirror::set(&root, &mirror::Mirror { content, version })?;
        out.result("Mirror url set");
    } else if a.unset {
        let removed = mirror::unset(&root)?;
        out.result(match removed {
            true => "Mirror url unset",
            false => "No mirror was set",
        });
    } else if from_flags {
        return Err(Error::Usage(
            "-u, -c and -v can only be used with mirror --set".into(),
        ));
    }
    let m = mirror::get(&root)?;
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
    out.record(
        &format!(
            "Mirror version URL: {}\nMirror content URL: {}",
            show(&m.version),
            show(&m.content)
        ),
        json!({"type": "mirror", "versionurl": m.version, "contenturl": m.content}),
    );
    if !a.set && !a.unset {
        if let Ok(s) = settings(g) {
            out.result(&format!("Version URL: {}", s.version_url));
            out.result(&format!("Content URL: {}", s.content_url));
        }
    }
    Ok(0)
}

/// `autoupdate`: 0 on, 1 off.
pub fn autoupdate(g: &Global, a: &AutoupdateArgs, out: &Output) -> Result<i32> {
    // A root of `/` is the running system.
    let root = g.path.as_deref().filter(|p| *p != Path::new("/"));
    if a.enable {
        out.result("Running systemctl to enable updates");
        autoupdate::enable(root)?;
        if root.is_some() {
            out.event(Event::Warning(format!(
                "with --path, {} is enabled but not started: that happens when the root boots",
                autoupdate::TIMER
            )));
        }
        return Ok(0);
    }
    if a.disable {
        out.event(Event::Warning(
            "disabling automatic updates may take you out of compliance with your IT policy".into(),
        ));
        out.result("Running systemctl to disable updates");
        autoupdate::disable(root)?;
        return Ok(0);
    }
    let (text, code) = match autoupdate::status(root)? {
        autoupdate::Status::Enabled => ("Enabled", 0),
        autoupdate::Status::Disabled => ("Disabled", 1),
        autoupdate::Status::EnabledNotRunning => ("Enabled, but the timer is not running", 1),
    };
    out.record(
        text,
        json!({"type": "autoupdate", "enabled": code == 0, "msg": text}),
    );
    Ok(code)
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
                report(out, client.os_install(None, &[])?);
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
        ThirdParty::CheckUpdate { repo } => {
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
            Ok(if any { 0 } else { 1 })
        }
        ThirdParty::Update {
            repo,
            version,
            download,
        } => {
            for repo in selected(&root, repo)? {
                out.result(&format!("Updating repository {}", repo.name));
                let client = Client::new(repo_settings(g, &repo)?, out, Access::Write)?;
                let _lock = client.lock()?;
                report(out, client.update(*version, *download)?);
            }
            Ok(0)
        }
    }
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
