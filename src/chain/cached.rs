//! Steps 1 and 2 from the state directory's manifest cache (`state::ManifestCache`).
//! The cache is an optimisation, never trusted by itself: a cached MoM passes the same
//! signature and version check as a downloaded one, and a cached manifest the same hash
//! check against the line of a MoM verified in this run. Anything short of that is an
//! error, and the caller downloads instead.

use std::path::Path;

use super::{hashed_manifest, Chain, Signatures, VerifiedManifest, VerifiedMom};
use crate::error::Subject;
use crate::hash::{Hasher, Meta};
use crate::{Error, Result};

/// A manifest text as the cache keeps it, with the metadata it was verified with.
pub struct CachedText {
    pub text: Vec<u8>,
    pub meta: Meta,
}

impl VerifiedMom {
    /// The signed text and its signature (`None` when signatures are not checked).
    pub fn signed_text(&self) -> (&[u8], Option<&[u8]>) {
        (&self.text, self.signature.as_deref())
    }
}

impl VerifiedManifest {
    /// The text that hashed to the MoM's line and the metadata it hashed with.
    pub fn hashed_text(&self) -> (&[u8], &Meta) {
        (&self.text, &self.meta)
    }
}

impl Chain {
    /// The MoM of `version` from a cached text and signature read from `path`. Without
    /// signature checks a cached MoM cannot be told from a planted one, so it is refused.
    pub fn cached_mom(
        &self,
        version: u32,
        text: Vec<u8>,
        signature: Vec<u8>,
        path: &Path,
    ) -> Result<VerifiedMom> {
        let what = path.display().to_string();
        if matches!(self.signatures, Signatures::Skip) {
            return Err(Error::Signature {
                what,
                reason: "signatures are not checked, so a cached MoM is not used".into(),
            });
        }
        self.signed_mom(version, text, Some(signature), (&what, &what))
    }

    /// The manifest of `bundle` in `mom` from a cached text read from `path`: its hash,
    /// with the metadata it was first verified with, must be the MoM's line.
    pub fn cached_manifest(
        &self,
        mom: &VerifiedMom,
        bundle: &str,
        cached: CachedText,
        path: &Path,
    ) -> Result<VerifiedManifest> {
        let line = mom
            .bundle(bundle)
            .ok_or_else(|| Error::UnknownBundle(bundle.to_string()))?;
        let what = path.display().to_string();
        let meta = Meta {
            size: cached.text.len() as u64,
            ..cached.meta
        };
        let mut hasher = Hasher::new(&meta, &[]);
        hasher.update(&cached.text);
        let actual = hasher.finish();
        if actual != line.hash {
            return Err(Error::HashMismatch {
                subject: Subject::Manifest,
                what,
                expected: line.hash,
                actual,
            });
        }
        hashed_manifest(mom, bundle, &what, cached.text, meta)
    }
}
