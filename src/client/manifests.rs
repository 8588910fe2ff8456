//! Steps 1 and 2 for `resolve`: a MoM from the manifest cache when its signature still
//! verifies, else downloaded; a bundle manifest from the cache when it still hashes to the
//! MoM's line, else by its delta from a text of the same bundle this run already verified
//! (an update verifies the installed release's manifests first), and by its tar when
//! there is no such text, no delta, or an unusable one. What is downloaded is written to
//! the cache only once the change it serves is done (or downloaded, with `--download`):
//! a refused release leaves the state directory as it was.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::Client;
use crate::chain::{DeltaMiss, ManifestText, VerifiedManifest, VerifiedMom};
use crate::hash::Meta;
use crate::progress::Event;
use crate::{Error, Result};

/// Verified manifest texts of this run, by bundle and version.
#[derive(Default)]
pub(super) struct ManifestTexts(Mutex<BTreeMap<(String, u32), ManifestText>>);

impl ManifestTexts {
    /// The newest text of `bundle` older than `version`.
    fn base(&self, bundle: &str, version: u32) -> Option<ManifestText> {
        let texts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let low = (bundle.to_string(), 0);
        let high = (bundle.to_string(), version);
        texts.range(low..high).next_back().map(|(_, t)| t.clone())
    }

    fn remember(&self, m: &VerifiedManifest) {
        let text = m.text();
        let key = (m.name().to_string(), text.version());
        let mut texts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        texts.insert(key, text);
    }
}

/// A downloaded MoM: version, text and signature.
type MomFiles = (u32, Vec<u8>, Vec<u8>);
/// A downloaded manifest: bundle, version, text and the metadata it hashed with.
type ManifestFile = (String, u32, Vec<u8>, Meta);

/// MoMs and manifests downloaded in this run, to be cached once the change is done.
#[derive(Default)]
pub(super) struct Downloaded {
    moms: Mutex<Vec<MomFiles>>,
    manifests: Mutex<Vec<ManifestFile>>,
}

impl Client<'_> {
    /// The MoM of `version`, signature and version checked, from the cache or the server.
    pub(super) fn mom(&self, version: u32) -> Result<VerifiedMom> {
        // Without signature checks a cached MoM cannot be told from a planted one.
        if !self.settings.nosigcheck {
            if let Some((text, sig)) = self.cache.mom(version) {
                let path = self.cache.mom_path(version);
                match self.chain.cached_mom(version, text, sig, &path) {
                    Ok(mom) => return Ok(mom),
                    Err(e) => self.distrust(&path, &e),
                }
            }
        }
        let mom = self.chain.mom(version)?;
        if let (text, Some(sig)) = mom.signed_text() {
            let mut moms = self
                .downloaded
                .moms
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            moms.push((version, text.to_vec(), sig.to_vec()));
        }
        Ok(mom)
    }

    /// The verified manifest of `bundle` in `mom`: from the cache, by delta, or whole.
    pub fn manifest(&self, mom: &VerifiedMom, bundle: &str) -> Result<VerifiedManifest> {
        let m = match self.cached_manifest(mom, bundle) {
            Some(m) => m,
            None => {
                let m = self.download_manifest(mom, bundle)?;
                let (text, meta) = m.hashed_text();
                let version = m.manifest().header.version;
                let mut manifests = self
                    .downloaded
                    .manifests
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                manifests.push((bundle.to_string(), version, text.to_vec(), *meta));
                m
            }
        };
        self.manifest_texts.remember(&m);
        Ok(m)
    }

    /// The cached manifest of `bundle` at the version `mom` lists, if it hashes right.
    fn cached_manifest(&self, mom: &VerifiedMom, bundle: &str) -> Option<VerifiedManifest> {
        let version = mom.bundle(bundle)?.version;
        let cached = self.cache.manifest(bundle, version)?;
        let path = self.cache.manifest_path(bundle, version);
        match self.chain.cached_manifest(mom, bundle, cached, &path) {
            Ok(m) => Some(m),
            Err(e) => {
                self.distrust(&path, &e);
                None
            }
        }
    }

    /// Says that a cache entry failed its check and removes it; it is downloaded instead.
    fn distrust(&self, path: &std::path::Path, e: &Error) {
        self.observer.event(Event::Warning(format!(
            "the cached {} does not verify ({e}); downloading it",
            path.display()
        )));
        self.cache.forget(path);
    }

    fn download_manifest(&self, mom: &VerifiedMom, bundle: &str) -> Result<VerifiedManifest> {
        let base = mom
            .bundle(bundle)
            .and_then(|line| self.manifest_texts.base(bundle, line.version));
        if let Some(base) = base {
            match self.chain.manifest_by_delta(mom, bundle, &base) {
                Ok(m) => return Ok(m),
                Err(DeltaMiss::Absent) => {}
                Err(DeltaMiss::Unusable(why)) => self.observer.event(Event::Warning(format!(
                    "the manifest delta cannot be used ({why}); fetching the manifest"
                ))),
            }
        }
        self.chain.manifest(mom, bundle)
    }

    /// Caches what this run downloaded, then drops the entries no longer needed: every
    /// MoM but those of `versions` (the root's release and the one being downloaded), and
    /// the manifests those MoMs do not name. The cache only saves downloads, so a failure
    /// here is only logged.
    pub(super) fn update_manifest_cache(&self, versions: &[Option<u32>]) {
        let versions: Vec<u32> = versions.iter().flatten().copied().collect();
        let stored = self
            .store_downloaded(Some(&versions))
            .and_then(|()| self.cache.prune(&versions));
        if let Err(e) = stored {
            log::warn!("cannot update the manifest cache: {e}");
        }
    }

    /// Caches what this run downloaded and removes nothing: what a reading command
    /// (`bundle-list`) does, so that tools reading swupd's cache find the MoM there.
    pub fn cache_downloaded(&self) {
        if let Err(e) = self.store_downloaded(None) {
            log::warn!("cannot update the manifest cache: {e}");
        }
    }

    /// Writes the MoMs (of `versions`, or all) and manifests this run downloaded to the
    /// cache, once.
    fn store_downloaded(&self, versions: Option<&[u32]>) -> Result<()> {
        let moms = std::mem::take(
            &mut *self
                .downloaded
                .moms
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let manifests = std::mem::take(
            &mut *self
                .downloaded
                .manifests
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        moms.iter()
            .filter(|(v, _, _)| versions.is_none_or(|vs| vs.contains(v)))
            .try_for_each(|(v, text, sig)| self.cache.store_mom(*v, text, sig))?;
        manifests.iter().try_for_each(|(bundle, v, text, meta)| {
            self.cache.store_manifest(bundle, *v, text, meta)
        })
    }

    /// Keeps the MoMs and manifests this run downloaded in the manifest cache, with the
    /// root's release and `version` (search-file, which reads a whole release); every entry
    /// is checked again when it is read.
    pub fn keep_manifests(&self, version: u32) {
        let installed = self.current_version().ok();
        self.update_manifest_cache(&[installed, Some(version)]);
    }
}
