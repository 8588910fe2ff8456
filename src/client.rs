//! The client's operations: update, os-install, bundle-add/remove/list, check-update.
//! Each one walks the chain to verified manifests, plans, stages and installs.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::chain::{Chain, Freshness, Signatures, StagedFile, VerifiedManifest, VerifiedMom};
use crate::install::transaction::Transaction;
use crate::install::{Applied, Create, TargetRoot};
use crate::plan::{self, Baseline, FileSet};
use crate::progress::{Event, Observer};
use crate::signature::TrustStore;
use crate::slots::Slots;
use crate::source::{Source, SourceConfig};
use crate::state::{CacheAccess, JournalRecord, Lock, ManifestCache, StateDir};
use crate::{fsutil, version, Error, Result};

/// swupd's configuration directory in a root: its presence makes the root a swupd system.
const SWUPD_DEFAULTS: &str = "/usr/share/defaults/swupd";

mod bundles;
mod cache;
pub use bundles::{Added, ListOptions, Listed, RemoveOptions, Removed};
mod fleet;
mod formats;
mod incremental;
pub use fleet::{Target, WaveStanding};
mod options;
pub use options::{InstallOptions, PostUpdate};
mod tracking;
pub use tracking::Tracking;
mod journal;
pub use journal::Pending;
mod manifests;
mod packs;

/// Where swupd-compatible roots list their installed bundles.
pub const BUNDLES_DIR: &str = "usr/share/clear/bundles";
/// The bundle every root has.
pub const OS_CORE: &str = "os-core";
/// HTTP headers that tell a dynamic version server who is asking (CLIP OS channels).
pub const VERSION_HEADER: &str = "X-Chainup-Current-Version";
pub const MACHINE_HEADER: &str = "X-Chainup-Machine-Id";

/// Everything the client needs to know, resolved from config and command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub content_url: String,
    pub version_url: String,
    pub format: crate::format::Format,
    /// `--nosigcheck-latest`: the `latest` files are read unsigned (the MoM is not).
    pub unsigned_latest: bool,
    /// `update -k/--keepcache`: staged content stays in the state directory.
    pub keepcache: bool,
    /// What runs after an update (swupd's `-b`, `-N`, `--wait-for-scripts`).
    pub post_update: PostUpdate,
    pub cert_path: PathBuf,
    pub crl_path: Option<PathBuf>,
    pub nosigcheck: bool,
    pub source: SourceConfig,
    pub max_parallel_downloads: usize,
    pub allow_downgrade: bool,
    pub max_age_days: Option<u64>,
    /// Cap on one fullfile when the manifests give no content size.
    pub fullfile_cap: u64,
    /// The `[slots]` table: where A/B images go; without it images are skipped.
    pub slots: Option<crate::config::Slots>,
    /// The channel followed (its version URL is `<content>/channels/<name>`), if named.
    pub channel: Option<String>,
    /// Further content URLs serving the same webroot (docs/fleets.md).
    pub mirrors: Vec<String>,
    /// `--ignore-waves`: take the version a rollout schedule rolls out, whatever the wave.
    pub ignore_waves: bool,
    /// Refuse content with setuid, setgid or sticky modes (3rd-party repositories, as
    /// swupd's "dangerous permissions"), before anything is installed.
    pub refuse_special_modes: bool,
}

/// The outcome of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated {
    /// Nothing to do: the root holds `current`, and `target` (the server's latest or the
    /// one asked for) is not newer.
    UpToDate { current: u32, target: u32 },
    /// Content for `to` was downloaded and verified but not installed (`--download`).
    Downloaded { to: u32 },
    /// The root moved from one version to another.
    Done {
        from: Option<u32>,
        to: u32,
        applied: Applied,
    },
}

/// An installed or available bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    pub name: String,
    pub installed: bool,
    pub experimental: bool,
}

/// The bundles installed in `root` (swupd's marker files), sorted.
pub fn installed_bundles(root: &std::path::Path) -> Result<Vec<String>> {
    let dir = root.join(BUNDLES_DIR);
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if crate::manifest::validate_bundle_name(name).is_ok() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// What a command may do to the root and the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// check-update, diagnose, bundle-list: nothing is created, nothing written, except
    /// that bundle-list adds what it downloaded to the manifest cache of a state directory
    /// that exists (as swupd's does; the cache is checked on every read).
    Read,
    /// update, bundle-add, bundle-remove, repair: the root must exist; the state directory
    /// is created if needed and must be private.
    Write,
    /// os-install: like `Write`, and a missing root directory is made.
    Install,
}

/// What the root holds before a change: the version, the bundles, their files.
#[derive(Debug, Default)]
struct Installed {
    version: Option<u32>,
    bundles: Vec<String>,
    files: FileSet,
    /// The signed content size of those bundles, 0 when unknown.
    contentsize: u64,
    /// The installed bundles' manifest versions (which packs apply).
    versions: std::collections::BTreeMap<String, u32>,
    /// Config files an interrupted install placed, with their hashes.
    placed: std::collections::BTreeMap<String, crate::hash::Hash>,
}

/// A client bound to one root, state directory and server.
pub struct Client<'o> {
    settings: Settings,
    root: TargetRoot,
    state: StateDir,
    chain: Chain,
    observer: &'o dyn Observer,
    /// Manifest texts verified in this run, the bases for manifest deltas.
    manifest_texts: manifests::ManifestTexts,
    /// Verified MoMs and manifests kept between runs (checked again on every read).
    cache: ManifestCache,
    /// What this run downloaded for the cache.
    downloaded: manifests::Downloaded,
    /// An interrupted update this run finished, its post-update actions owed.
    finished: std::sync::Mutex<Option<journal::Finished>>,
}

impl<'o> Client<'o> {
    /// Opens the root and state directory as `access` allows and builds the verification
    /// chain.
    pub fn new(
        settings: Settings,
        observer: &'o dyn Observer,
        access: Access,
    ) -> Result<Client<'o>> {
        let (root, state) = match access {
            Access::Read => (
                TargetRoot::open(&settings.root, Create::Never)?,
                StateDir::at(&settings.state_dir),
            ),
            Access::Write | Access::Install => {
                let create = match access {
                    Access::Install => Create::IfMissing,
                    _ => Create::Never,
                };
                let root = TargetRoot::open(&settings.root, create)?;
                (root, StateDir::open(&settings.state_dir)?)
            }
        };
        let signatures = if settings.nosigcheck {
            Signatures::Skip
        } else {
            Signatures::Verify(TrustStore::load(
                &settings.cert_path,
                settings.crl_path.as_deref(),
            )?)
        };
        let content =
            Source::with_mirrors(&settings.content_url, &settings.mirrors, &settings.source)?;
        let mut version_cfg = settings.source.clone();
        if let Some(v) = version::installed(&settings.root)? {
            version_cfg
                .headers
                .push((VERSION_HEADER.into(), v.to_string()));
        }
        if let Some(id) = version::machine_id(&settings.root)? {
            version_cfg.headers.push((MACHINE_HEADER.into(), id));
        }
        let versions = Source::new(&settings.version_url, &version_cfg)?;
        let mut chain = Chain::new(content, versions, signatures, settings.format);
        if settings.unsigned_latest {
            chain = chain.unsigned_latest();
        }
        let state = match settings.keepcache {
            true => state.keeping_staged(),
            false => state,
        };
        let cache_access = match access {
            Access::Read if state.is_private() => CacheAccess::Add,
            Access::Read => CacheAccess::Read,
            Access::Write | Access::Install => CacheAccess::Full,
        };
        let cache = state.manifest_cache(&settings.content_url, cache_access);
        Ok(Client {
            settings,
            root,
            state,
            chain,
            observer,
            manifest_texts: Default::default(),
            cache,
            downloaded: Default::default(),
            finished: Default::default(),
        })
    }

    /// The verification chain (for diagnose and repair).
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The target root.
    pub fn root(&self) -> &TargetRoot {
        &self.root
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where progress and messages go.
    pub fn observer(&self) -> &'o dyn Observer {
        self.observer
    }

    /// Takes the one-client lock.
    pub fn lock(&self) -> Result<Lock> {
        self.state.lock()
    }

    fn info(&self, msg: String) {
        self.observer.event(Event::Info(msg));
    }

    /// The version the root holds now.
    pub fn current_version(&self) -> Result<u32> {
        version::installed(&self.settings.root)?.ok_or_else(|| {
            Error::VersionUnknown(format!(
                "{} has no usr/lib/os-release or etc/os-release",
                self.settings.root.display()
            ))
        })
    }

    /// The bundles installed in the root (swupd's marker files), sorted.
    pub fn installed_bundles(&self) -> Result<Vec<String>> {
        installed_bundles(&self.settings.root)
    }

    /// The MoM of `version`, verified, and checked against rollback and freeze rules.
    pub fn verified_mom(&self, version: u32) -> Result<VerifiedMom> {
        let mom = self.mom(version)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Freshness {
            high_water_mark: self.state.high_water_mark().get()?,
            allow_downgrade: self.settings.allow_downgrade,
            max_age_days: self.settings.max_age_days,
            now,
        }
        .check(&mom)?;
        Ok(mom)
    }

    /// Verified manifests of `names` and everything they include (and, with
    /// `also_add`, their optional bundles), in name order.
    pub fn resolve(
        &self,
        mom: &VerifiedMom,
        names: &[String],
        also_add: bool,
    ) -> Result<Vec<VerifiedManifest>> {
        let mut todo: Vec<String> = names.to_vec();
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::new();
        while let Some(name) = todo.pop() {
            if !done.insert(name.clone()) {
                continue;
            }
            let m = self.manifest(mom, &name)?;
            let header = &m.manifest().header;
            todo.extend(header.includes.iter().cloned());
            if also_add {
                todo.extend(header.also_add.iter().cloned());
            }
            out.push(m);
        }
        out.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(out)
    }

    /// What `bundles` at `version` put in the root (nothing for an empty root).
    fn installed_state(&self, version: Option<u32>, bundles: &[String]) -> Result<Installed> {
        let files = match version {
            Some(v) => {
                let mom = self.mom(v)?;
                // A marker file for a bundle this release never had (a stray file) names
                // nothing to plan from; it must not block the update.
                let known: Vec<String> = bundles
                    .iter()
                    .filter(|b| {
                        let known = mom.bundle(b).is_some();
                        if !known {
                            self.observer.event(Event::Warning(format!(
                                "bundle {b} is marked installed but version {v} has no such bundle"
                            )));
                        }
                        known
                    })
                    .cloned()
                    .collect();
                let manifests = self.resolve(&mom, &known, false)?;
                (
                    FileSet::from_manifests(&manifests),
                    total_size(&manifests),
                    manifest_versions(&manifests),
                )
            }
            None => Default::default(),
        };
        Ok(Installed {
            version,
            bundles: bundles.to_vec(),
            files: files.0,
            contentsize: files.1,
            versions: files.2,
            ..Installed::default()
        })
    }

    /// `update [-V N] [--download]`: brings the root to `target` (default: latest).
    pub fn update(&self, target: Option<u32>, download_only: bool) -> Result<Updated> {
        let target = match target {
            Some(v) => v,
            None => {
                let fleet = self.fleet_target(true)?;
                if let Some(wave) = &fleet.wave {
                    self.info(wave.describe());
                }
                fleet.version
            }
        };
        // Downloading only changes nothing in the root, so it leaves a journal alone.
        let pending = match download_only {
            true => Pending::Clear,
            false => self.settle(Some(target))?,
        };
        let current = self.current_version()?;
        if matches!(pending, Pending::Clear)
            && target <= current
            && !(self.settings.allow_downgrade && target < current)
        {
            // The freeze defence holds with nothing to do: a replayed old `latest` must
            // not pass for "up to date".
            if self.settings.max_age_days.is_some() {
                self.verified_mom(target)?;
            }
            return Ok(Updated::UpToDate { current, target });
        }
        self.info(format!("Updating from version {current} to {target}"));
        let installed = self.installed_bundles()?;
        let (old, baseline) = match &pending {
            Pending::Superseded(record) => (self.old_state(record), true),
            Pending::Clear => (self.installed_state(Some(current), &installed)?, false),
        };
        let new_mom = self.verified_mom(target)?;
        let keep: Vec<String> = installed
            .iter()
            .filter(|b| {
                let known = new_mom.bundle(b).is_some();
                if !known {
                    self.observer.event(Event::Warning(format!(
                        "bundle {b} is not in version {target}; its files are removed"
                    )));
                }
                known
            })
            .cloned()
            .collect();
        let new = self.resolve(&new_mom, &keep, false)?;
        // The release can only fit if the disk holds what it grows by; an update that
        // cannot fit is refused before anything is downloaded.
        let growth = total_size(&new).saturating_sub(old.contentsize);
        match self.transition(&old, &new, &new_mom, growth, download_only, baseline)? {
            None => Ok(Updated::Downloaded { to: target }),
            Some(applied) => Ok(Updated::Done {
                from: Some(current),
                to: target,
                applied,
            }),
        }
    }

    /// `os-install -V N -B a,b`: installs a release into an empty root.
    pub fn os_install(&self, target: Option<u32>, bundles: &[String]) -> Result<Updated> {
        self.os_install_with(target, bundles, &InstallOptions::default())
    }

    /// `os-install` with swupd's options. The bundles named (and os-core) are tracked.
    pub fn os_install_with(
        &self,
        target: Option<u32>,
        bundles: &[String],
        opts: &InstallOptions,
    ) -> Result<Updated> {
        let target = match target {
            Some(v) => v,
            None => self.chain.latest()?,
        };
        let pending = self.settle(Some(target))?;
        if let (Pending::Clear, Some(v)) = (&pending, version::installed(&self.settings.root)?) {
            // As swupd, a root that holds a release (a half-made image, a test root) gets
            // the new one installed over it: every file of the bundles is placed, nothing
            // else is touched. Never the running system: that is what update and repair
            // are for.
            if self.settings.root == Path::new("/") {
                return Err(Error::Usage(format!(
                    "/ already holds version {v}; use update (or repair) on a running system"
                )));
            }
            self.observer.event(Event::Warning(format!(
                "{} already holds version {v}; installing version {target} over it",
                self.settings.root.display()
            )));
        }
        if let Some(cache) = &opts.statedir_cache {
            self.seed_manifests_from_cache(cache, target);
        }
        let mom = self.verified_mom(target)?;
        let mut names: Vec<String> = bundles.to_vec();
        if !names.iter().any(|b| b == OS_CORE) {
            names.push(OS_CORE.to_string());
        }
        if opts.force {
            names.retain(|b| {
                let known = mom.bundle(b).is_some();
                if !known {
                    self.observer.event(Event::Warning(format!(
                        "bundle {b} is not in version {target}; skipped (--force)"
                    )));
                }
                known
            });
        }
        for b in &names {
            mom.bundle(b)
                .ok_or_else(|| Error::UnknownBundle(b.clone()))?;
        }
        self.info(format!(
            "Installing version {target} ({})",
            names.join(", ")
        ));
        // As swupd's os-install: a manifest that cannot be had fails the release (14).
        let new = self
            .resolve(&mom, &names, !opts.skip_optional)
            .map_err(|e| e.manifest_unloadable(target))?;
        let space = new.iter().map(|m| m.manifest().header.contentsize).sum();
        let (old, baseline) = match &pending {
            Pending::Superseded(record) => (self.old_state(record), true),
            Pending::Clear => (Installed::default(), false),
        };
        if let Some(cache) = &opts.statedir_cache {
            self.seed_from_cache(cache, &new)?;
        }
        let Some(applied) =
            self.transition(&old, &new, &mom, space, opts.download_only, baseline)?
        else {
            return Ok(Updated::Downloaded { to: target });
        };
        Tracking::new(&self.state).track(&names, &[])?;
        // As swupd: on a system that carries swupd's own configuration, the bundles
        // named on the command line are also tracked where its swupd keeps its state, so
        // it knows what was asked for. The install stands whatever happens here: a
        // failure is a warning.
        let swupd_system = self.root.is_dir(SWUPD_DEFAULTS).unwrap_or(None) == Some(true);
        for b in names.iter().filter(|b| swupd_system && bundles.contains(b)) {
            let tracked = crate::manifest::validate_bundle_name(b)
                .map_err(|reason| Error::UnknownBundle(format!("{b}: {reason}")))
                .and_then(|()| {
                    let path = format!("/var/lib/swupd/bundles/{b}");
                    self.root.touch_state_file(&path)
                });
            if let Err(e) = tracked {
                self.observer.event(Event::Warning(format!(
                    "bundle {b} not tracked for swupd: {e}"
                )));
            }
        }
        self.keep_chunk_index(&new);
        Ok(Updated::Done {
            from: None,
            to: target,
            applied,
        })
    }

    /// `bundle-add`: installs bundles (and their includes) at the current version.
    pub fn bundle_add(&self, names: &[String]) -> Result<Applied> {
        Ok(self.bundle_add_with(names, false)?.applied)
    }

    /// `bundle-add`, with `skip_optional` leaving the bundles' `also-add` out. The
    /// named bundles are tracked as installed on purpose, also when they already were.
    /// Names the version lacks are skipped, as swupd does (see [`Added`]).
    pub fn bundle_add_with(&self, names: &[String], skip_optional: bool) -> Result<Added> {
        self.settle(None)?;
        let current = self.current_version()?;
        let mom = self.verified_mom(current)?;
        let (names, skipped) = bundles::known_names(self, &mom, names)?;
        let names = &names[..];
        let installed = self.installed_bundles()?;
        let fresh: Vec<String> = names
            .iter()
            .filter(|b| !installed.contains(b))
            .cloned()
            .collect();
        if fresh.is_empty() {
            self.info("All requested bundles are already installed".into());
            Tracking::new(&self.state).track(names, &installed)?;
            return Ok(Added {
                bundles: names.to_vec(),
                applied: Applied::default(),
                skipped,
            });
        }
        let old_manifests = self.resolve(&mom, &installed, false)?;
        let added = self.resolve(&mom, &fresh, !skip_optional)?;
        // Only the bundles the root holds: an include of an installed bundle that is not
        // installed itself (the release added the include later) has no files there yet.
        let old_manifests: Vec<_> = old_manifests
            .into_iter()
            .filter(|m| installed.iter().any(|b| b == m.name()))
            .collect();
        let space = added
            .iter()
            .filter(|m| !old_manifests.iter().any(|o| o.name() == m.name()))
            .map(|m| m.manifest().header.contentsize)
            .sum();
        let old = Installed {
            version: Some(current),
            bundles: installed.clone(),
            files: FileSet::from_manifests(&old_manifests),
            versions: manifest_versions(&old_manifests),
            ..Installed::default()
        };
        let mut all = installed.clone();
        all.extend(fresh);
        let new = self.resolve(&mom, &all, false)?;
        let new = merge_manifests(new, added);
        let applied = self
            .transition(&old, &new, &mom, space, false, false)?
            .unwrap_or_default();
        Tracking::new(&self.state).track(names, &installed)?;
        Ok(Added {
            bundles: names.to_vec(),
            applied,
            skipped,
        })
    }

    /// `bundle-remove`: removes bundles, keeping files other installed bundles own.
    pub fn bundle_remove(&self, names: &[String]) -> Result<Applied> {
        Ok(self
            .bundle_remove_with(names, &RemoveOptions::default())?
            .applied)
    }

    /// `bundle-list [--all]`: installed bundles, or every bundle of the current version.
    pub fn bundle_list(&self, all: bool) -> Result<Vec<BundleInfo>> {
        let installed = self.installed_bundles()?;
        if !all {
            return Ok(installed
                .into_iter()
                .map(|name| BundleInfo {
                    name,
                    installed: true,
                    experimental: false,
                })
                .collect());
        }
        let mom = self.verified_mom(self.current_version()?)?;
        let mut all: Vec<BundleInfo> = mom
            .bundles()
            .map(|e| BundleInfo {
                name: e.path.clone(),
                installed: installed.contains(&e.path),
                experimental: e.status == crate::manifest::Status::Experimental,
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// `check-update`: the current version and the newest one on the server. With
    /// `--max-age`, the newest MoM must also be fresh, update or not.
    pub fn check_update(&self) -> Result<(u32, Target)> {
        let current = self.current_version()?;
        let target = self.newest_version()?;
        if self.settings.max_age_days.is_some() {
            self.verified_mom(target.version)?;
        }
        Ok((current, target))
    }

    /// Plans, validates, stages and installs the move from `old` to `new`. Returns `None`
    /// when only downloading. `space` is the free space to require before downloading;
    /// `from_disk` plans from the actual state of the root (`Baseline::Disk`).
    fn transition(
        &self,
        old: &Installed,
        new: &[VerifiedManifest],
        mom: &VerifiedMom,
        space: u64,
        download_only: bool,
        from_disk: bool,
    ) -> Result<Option<Applied>> {
        let baseline = match from_disk {
            true => Baseline::Disk(&old.placed),
            false => Baseline::Manifests,
        };
        let new_set = FileSet::from_manifests(new);
        // A path below a file or symlink is not in the root; validation decides about it.
        let disk = |p: &str| match self.root.hash(p) {
            Err(Error::UnsafePath { .. }) => Ok(None),
            found => found,
        };
        let plan = plan::plan(&old.files, &new_set, &disk, baseline)?;
        for kept in &plan.kept {
            self.observer.event(Event::Warning(format!(
                "{kept} was changed locally; kept as it is"
            )));
        }
        let record = JournalRecord {
            from: old.version,
            from_bundles: old.bundles.clone(),
            to: mom.version(),
            bundles: new.iter().map(|m| m.name().to_string()).collect(),
            temp_dirs: Vec::new(),
            config: Default::default(),
        };
        let txn = Transaction::prepare(
            &self.root,
            &self.state,
            self.observer,
            plan,
            &new_set,
            record,
        )?;
        let staging = self.state.staged()?;
        fsutil::ensure_space(&staging, space)?;
        let bound = self.content_bound(new);
        let staged = self.stage_content(
            &txn.needed(),
            &staging,
            bound,
            (&old.versions, &old.files),
            new,
        )?;
        if self.settings.refuse_special_modes {
            refuse_special_modes(&txn.needed(), &staged)?;
        }
        if download_only {
            self.update_manifest_cache(&[old.version, Some(mom.version())]);
            return Ok(None);
        }
        self.ensure_install_space(&txn, &staged, &staging)?;
        self.install_images(&old.files, &new_set, mom, bound)?;
        let applied = txn.apply(&staged)?;
        self.update_manifest_cache(&[Some(mom.version())]);
        Ok(Some(applied))
    }

    /// Checks the root has room for what the transaction copies rather than hard-links.
    pub fn ensure_install_space(
        &self,
        txn: &Transaction,
        staged: &HashMap<crate::hash::Hash, StagedFile>,
        staging: &std::path::Path,
    ) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dev = |p: &std::path::Path| {
            std::fs::metadata(p)
                .map(|m| m.dev())
                .map_err(|e| Error::io(p, e))
        };
        let same_fs = dev(staging)? == dev(&self.settings.root)?;
        fsutil::ensure_space(&self.settings.root, txn.copy_bytes(staged, same_fs))
    }

    /// The bound on one download and its unpacked size: the largest signed content size
    /// of these manifests, or the configured cap when they give none.
    pub fn content_bound(&self, manifests: &[VerifiedManifest]) -> u64 {
        manifests
            .iter()
            .map(|m| m.manifest().header.contentsize)
            .max()
            .filter(|&s| s > 0)
            .unwrap_or(self.settings.fullfile_cap)
    }

    /// The checked `[slots]` table, if the config has one.
    pub fn slots(&self) -> Result<Option<Slots>> {
        self.settings
            .slots
            .as_ref()
            .map(Slots::from_config)
            .transpose()
    }

    /// After an os-install with `[slots]`: keeps the chunk index of the release's core
    /// image, which the provisioned running slot holds, so the first chunked update does
    /// not download it (docs/chunks.md).
    fn keep_chunk_index(&self, new: &[VerifiedManifest]) {
        use crate::manifest::ImageKind::CoreIndex;
        if let (Ok(Some(slots)), Some(entry)) =
            (self.slots(), FileSet::from_manifests(new).image(CoreIndex))
        {
            crate::install::image::keep_index(&self.chain, &slots, &self.state, entry, None);
        }
    }

    /// Writes changed A/B images into the inactive slot (docs/ab.md). This runs after
    /// the files are staged and before any of them is installed: a failed or corrupt image
    /// leaves the root at its old version, and the journal begins only once the images are
    /// in, so recovering from it never redoes them. Only a move of the root to another
    /// version installs images (not os-install, bundle-add or bundle-remove); without a
    /// `[slots]` table they are skipped with a warning and the files still update.
    fn install_images(
        &self,
        old: &FileSet,
        new: &FileSet,
        mom: &VerifiedMom,
        bound: u64,
    ) -> Result<()> {
        use crate::install::image::{self, Outcome, Payloads};
        use crate::manifest::ImageKind::{Core, CoreIndex, EfiBoot};
        let hashes = |s: &FileSet| {
            (
                s.image(Core).map(|e| e.hash),
                s.image(EfiBoot).map(|e| e.hash),
            )
        };
        let (core, efiboot) = (new.image(Core), new.image(EfiBoot));
        if (core.is_none() && efiboot.is_none()) || hashes(old) == hashes(new) {
            return Ok(());
        }
        let root_version = version::installed(&self.settings.root)?;
        if root_version.is_none_or(|v| v == mom.version()) {
            return Ok(());
        }
        let Some(slots) = self.slots()? else {
            self.observer.event(Event::Warning(format!(
                "version {} carries A/B images, but the config has no [slots] table: images skipped, files updated",
                mom.version()
            )));
            return Ok(());
        };
        let (Some(core), Some(efiboot)) = (core, efiboot) else {
            return Err(Error::Slot(format!(
                "version {} carries only one of /core and /efiboot; a slot needs both",
                mom.version()
            )));
        };
        let ctx = image::Context {
            chain: &self.chain,
            slots: &slots,
            state: &self.state,
            observer: self.observer,
            root_version,
            root_images: hashes(old),
            root_core_index: old.image(CoreIndex),
            workers: self.settings.max_parallel_downloads,
            bound,
        };
        let payloads = Payloads {
            core,
            efiboot,
            core_index: new.image(CoreIndex),
            version: mom.version(),
        };
        match image::install(&ctx, &payloads)? {
            Outcome::Installed { .. } => {}
            Outcome::Running { slot } => self.info(format!(
                "The running slot {slot} already holds these images"
            )),
            Outcome::Pending { slot, entry } => self.info(format!(
                "Slot {slot} already holds version {} (boot entry {entry}); reboot to use it",
                mom.version()
            )),
        }
        Ok(())
    }

    /// Downloads, decompresses and verifies content in parallel (one worker per
    /// download slot; decompression and hashing run in the same workers, on all cores),
    /// as fullfiles: no bundle changes version (repair), so no pack applies.
    pub fn stage_all(
        &self,
        needed: &[&crate::manifest::Entry],
        dir: &std::path::Path,
        bound: u64,
    ) -> Result<HashMap<crate::hash::Hash, StagedFile>> {
        let nothing_installed = (&Default::default(), &FileSet::default());
        self.stage_content(needed, dir, bound, nothing_installed, &[])
    }
}

/// Fails on the first staged object with a setuid, setgid or sticky mode.
fn refuse_special_modes(
    needed: &[&crate::manifest::Entry],
    staged: &HashMap<crate::hash::Hash, StagedFile>,
) -> Result<()> {
    for e in needed {
        if let Some(f) = staged.get(&e.hash) {
            if f.meta().mode & 0o7000 != 0 {
                return Err(Error::DangerousMode {
                    path: e.path.clone(),
                    mode: f.meta().mode & 0o7777,
                });
            }
        }
    }
    Ok(())
}

/// The signed content size of `manifests` together.
fn total_size(manifests: &[VerifiedManifest]) -> u64 {
    manifests
        .iter()
        .map(|m| m.manifest().header.contentsize)
        .sum()
}

/// Each manifest's bundle name and version.
fn manifest_versions(manifests: &[VerifiedManifest]) -> std::collections::BTreeMap<String, u32> {
    manifests
        .iter()
        .map(|m| (m.name().to_string(), m.manifest().header.version))
        .collect()
}

/// Adds manifests not already in `base` (by name), keeping name order.
fn merge_manifests(
    mut base: Vec<VerifiedManifest>,
    extra: Vec<VerifiedManifest>,
) -> Vec<VerifiedManifest> {
    for m in extra {
        if !base.iter().any(|b| b.name() == m.name()) {
            base.push(m);
        }
    }
    base.sort_by(|a, b| a.name().cmp(b.name()));
    base
}
