//! Step 2 by another road: `<V>/Manifest-<bundle>-delta-from-<old>`, a Clear bsdiff
//! delta from a manifest text this run already verified to the bundle's text at `V`
//! (docs/formats.md). The result passes the same check as a manifest tar: its hash, with
//! the metadata the delta gives, must be the MoM's line. Until then it is unverified, so it
//! is written to an unnamed temporary file, not held in memory; anything short of a
//! verified manifest is a [`DeltaMiss`], and the caller fetches the manifest tar.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::pack::HashingWriter;
use super::{hashed_manifest, Chain, VerifiedManifest, VerifiedMom};
use crate::bsdiff::{self, Header};
use crate::hash::{Hasher, Meta};
use crate::limits;

/// The verified text of a bundle manifest at one version, kept as a delta base.
#[derive(Debug, Clone)]
pub struct ManifestText {
    name: String,
    version: u32,
    text: Arc<[u8]>,
}

impl ManifestText {
    /// The bundle's manifest version this text is.
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl VerifiedManifest {
    /// Its text, to apply a later release's manifest delta to.
    pub fn text(&self) -> ManifestText {
        ManifestText {
            name: self.name.clone(),
            version: self.manifest.header.version,
            text: self.text.clone(),
        }
    }
}

/// Why no manifest came from a delta.
#[derive(Debug)]
pub enum DeltaMiss {
    /// The server has none from this base (publishers write them only where they pay),
    /// or it could not be downloaded.
    Absent,
    /// One came and could not be used: the reason.
    Unusable(String),
}

impl Chain {
    /// The manifest of `bundle` in `mom`, made by applying its delta to `base`, an older
    /// text of the same bundle.
    pub fn manifest_by_delta(
        &self,
        mom: &VerifiedMom,
        bundle: &str,
        base: &ManifestText,
    ) -> Result<VerifiedManifest, DeltaMiss> {
        let line = mom.bundle(bundle).ok_or(DeltaMiss::Absent)?;
        if base.name != bundle || base.version >= line.version {
            return Err(DeltaMiss::Absent);
        }
        let rel = format!(
            "{}/Manifest-{bundle}-delta-from-{}",
            line.version, base.version
        );
        let url = self.content.url(&rel);
        let unusable = |why: String| DeltaMiss::Unusable(format!("{url}: {why}"));
        let local = |e: std::io::Error| unusable(format!("a temporary file: {e}"));
        // A delta is never larger than the manifest tar it stands for.
        let mut download = match self.content.open_if_exists(&rel, limits::MANIFEST_DOWNLOAD) {
            Ok(Some(download)) => download,
            Ok(None) | Err(_) => return Err(DeltaMiss::Absent),
        };
        let mut delta = tempfile::tempfile().map_err(local)?;
        let size = std::io::copy(&mut download, &mut delta)
            .map_err(|e| unusable(format!("the download broke off: {e}")))?;
        let mut head = vec![0u8; bsdiff::V20_LEN.min(size as usize)];
        delta.read_exact_at(&mut head, 0).map_err(local)?;
        let header = Header::parse(&head, size).map_err(|e| unusable(e.to_string()))?;
        if header.new_size > limits::MANIFEST_TEXT {
            return Err(unusable(format!(
                "it claims a manifest of {} bytes, over the cap of {}",
                header.new_size,
                limits::MANIFEST_TEXT
            )));
        }
        let mut old = tempfile::tempfile().map_err(local)?;
        old.write_all(&base.text).map_err(local)?;
        let (actual, mut out) = apply(&header, &delta, &old).map_err(unusable)?;
        if actual != line.hash {
            return Err(unusable(format!(
                "its result hashes to {actual}, not {}",
                line.hash
            )));
        }
        // Verified: read back, exactly the size the header gave (at most the cap).
        let mut text = Vec::with_capacity(header.new_size as usize);
        out.rewind()
            .and_then(|_| out.read_to_end(&mut text))
            .map_err(local)?;
        let meta = Meta::file(header.mode, header.uid, header.gid, header.new_size);
        hashed_manifest(mom, bundle, &url, text, meta).map_err(|e| unusable(e.to_string()))
    }
}

/// Applies the delta into an unnamed temporary file through the hash, with the metadata
/// the delta gives the new file; returns the hash and the file.
fn apply(header: &Header, delta: &File, old: &File) -> Result<(crate::hash::Hash, File), String> {
    let meta = Meta::file(header.mode, header.uid, header.gid, header.new_size);
    let file = tempfile::tempfile().map_err(|e| format!("a temporary file: {e}"))?;
    let mut w = HashingWriter {
        out: std::io::BufWriter::new(file),
        hasher: Hasher::new(&meta, &[]),
    };
    bsdiff::apply(header, delta, old, &mut w).map_err(|e| e.to_string())?;
    let file = w.out.into_inner().map_err(|e| e.error().to_string())?;
    Ok((w.hasher.finish(), file))
}
