//! Step 2 for `resolve`: a bundle manifest by its delta from a text of the same bundle
//! this run already verified (an update verifies the installed release's manifests first),
//! and by its tar when there is no such text, no delta, or an unusable one.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::Client;
use crate::chain::{DeltaMiss, ManifestText, VerifiedManifest, VerifiedMom};
use crate::progress::Event;
use crate::Result;

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

impl Client<'_> {
    pub(super) fn manifest(&self, mom: &VerifiedMom, bundle: &str) -> Result<VerifiedManifest> {
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
        let m = self.chain.manifest(mom, bundle)?;
        self.manifest_texts.remember(&m);
        Ok(m)
    }
}
