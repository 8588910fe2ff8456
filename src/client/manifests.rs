//! Step 2 for `resolve`: a bundle manifest by its delta from a text of the same bundle
//! this run already verified (an update verifies the installed release's manifests first),
//! and by its tar when there is no such text, no delta, or an unusable one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use super::Client;
use crate::chain::{DeltaMiss, ManifestText, VerifiedManifest, VerifiedMom};
use crate::progress::Event;
use crate::Result;

/// Verified manifest texts of this run, by bundle and version, and the manifest cache
/// in force, if a command asked for one.
#[derive(Default)]
pub(super) struct ManifestTexts(
    Mutex<BTreeMap<(String, u32), ManifestText>>,
    OnceLock<PathBuf>,
);

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

impl Client<'_> {
    /// The verified manifest of `bundle` in `mom` (by delta, from the cache, or whole).
    pub fn manifest(&self, mom: &VerifiedMom, bundle: &str) -> Result<VerifiedManifest> {
        let base = mom
            .bundle(bundle)
            .and_then(|line| self.manifest_texts.base(bundle, line.version));
        if let Some(base) = base {
            match self.chain.manifest_by_delta(mom, bundle, &base) {
                Ok(m) => {
                    self.manifest_texts.remember(&m);
                    return Ok(m);
                }
                Err(DeltaMiss::Absent) => {}
                Err(DeltaMiss::Unusable(why)) => self.observer.event(Event::Warning(format!(
                    "the manifest delta cannot be used ({why}); fetching the manifest"
                ))),
            }
        }
        let m = match self.manifest_texts.1.get() {
            Some(dir) => self.chain.manifest_cached(mom, bundle, dir)?,
            None => self.chain.manifest(mom, bundle)?,
        };
        self.manifest_texts.remember(&m);
        Ok(m)
    }

    /// From now on, manifests are kept in (and read from) the state directory's
    /// manifest cache, `<statedir>/manifests` (search-file, bundle-info). Every cached
    /// manifest is still hashed against the verified MoM when it is read.
    pub fn cache_manifests(&self) {
        let _ = self
            .manifest_texts
            .1
            .set(self.state().path().join(MANIFEST_CACHE));
    }
}

/// The manifest cache's directory in the state directory.
pub const MANIFEST_CACHE: &str = "manifests";
