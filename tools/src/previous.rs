//! The previous release, read back from the webroot: its MoM and bundle manifests, each
//! checked against the hash that chains it to the MoM before anything is built on it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use chainup::archive::read_manifest_tar;
use chainup::hash::hash_bytes;
use chainup::limits::MANIFEST_TEXT;
use chainup::manifest::{EntryType, Kind, Manifest};
use rayon::prelude::*;

use crate::webroot::Layout;

/// A published release: its MoM and the manifest of every bundle the MoM lists.
#[derive(Debug, Clone)]
pub struct Previous {
    pub version: u32,
    pub mom: Manifest,
    pub bundles: BTreeMap<String, Manifest>,
}

/// The version in `version/format<F>/latest`, if that file exists.
pub fn latest(layout: &Layout, format: u32) -> Result<Option<u32>> {
    let path = layout.latest(format);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    // swupd allows several versions, newest first; the first line is the latest.
    let first = text.lines().next().unwrap_or("").trim();
    let v = first
        .parse::<u32>()
        .ok()
        .filter(|&v| v > 0)
        .with_context(|| format!("{}: {first:?} is not a version", path.display()))?;
    Ok(Some(v))
}

/// Reads release `version` from the webroot.
pub fn load(layout: &Layout, version: u32) -> Result<Previous> {
    let mom_path = layout.manifest_tar(version, "MoM");
    let (mom, _) = read_manifest(&mom_path, "MoM", Kind::Mom, version)
        .with_context(|| format!("previous release {version}"))?;
    let lines: Vec<_> = mom
        .entries
        .iter()
        .filter(|e| e.etype == EntryType::Manifest && e.is_present())
        .collect();
    let bundles = lines
        .par_iter()
        .map(|line| {
            let path = layout.manifest_tar(line.version, &line.path);
            let (manifest, hash) = read_manifest(&path, &line.path, Kind::Bundle, line.version)?;
            if hash != line.hash {
                bail!(
                    "{}: hash {hash} does not match {} in the Manifest.MoM of {version}",
                    path.display(),
                    line.hash
                );
            }
            Ok((line.path.clone(), manifest))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    Ok(Previous {
        version,
        mom,
        bundles,
    })
}

/// The MoM of release `version` (its signature is not checked: the webroot is ours).
pub fn read_mom(layout: &Layout, version: u32) -> Result<Manifest> {
    let path = layout.manifest_tar(version, "MoM");
    read_manifest(&path, "MoM", Kind::Mom, version).map(|(m, _)| m)
}

/// `Manifest.<bundle>` of `version`, parsed, and its exact text.
pub fn read_bundle(layout: &Layout, bundle: &str, version: u32) -> Result<(Manifest, Vec<u8>)> {
    let path = layout.manifest_tar(version, bundle);
    let ctx = || format!("{}", path.display());
    let file = File::open(&path).with_context(ctx)?;
    let mf = read_manifest_tar(file, bundle, &ctx(), MANIFEST_TEXT).with_context(ctx)?;
    let manifest = Manifest::parse(&mf.text, Kind::Bundle).with_context(ctx)?;
    if manifest.header.version != version {
        bail!(
            "{}: says version {}, expected {version}",
            ctx(),
            manifest.header.version
        );
    }
    Ok((manifest, mf.text))
}

/// Reads and parses one manifest tar; returns the manifest and its swupd hash as the
/// client computes it (tar header metadata + text).
fn read_manifest(
    path: &Path,
    name: &str,
    kind: Kind,
    version: u32,
) -> Result<(Manifest, chainup::hash::Hash)> {
    let ctx = || format!("{}", path.display());
    let file = File::open(path).with_context(ctx)?;
    let mf = read_manifest_tar(file, name, &ctx(), MANIFEST_TEXT).with_context(ctx)?;
    let manifest = Manifest::parse(&mf.text, kind).with_context(ctx)?;
    if manifest.header.version != version {
        bail!(
            "{}: says version {}, expected {version}",
            path.display(),
            manifest.header.version
        );
    }
    Ok((manifest, hash_bytes(&mf.meta, &mf.text)))
}
