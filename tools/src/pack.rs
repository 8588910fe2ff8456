//! swupd packs and manifest deltas for the bundles a release changes (docs/formats.md):
//! `<V>/pack-<bundle>-from-<old>.tar` from the bundle's version in each of the last few
//! releases, and the zero pack `from-0`; each holds `delta/<a>-<b>-<from>-<to>` (Clear
//! bsdiff) and `staged/<hash>` (the file itself, for those without a useful delta).
//! `<V>/Manifest-<bundle>-delta-from-<old>` where it is smaller than the manifest tar.
//! Deltas are computed once per pair of hashes, in parallel, and kept in `<V>/delta/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chainup::hash::{Hash, Meta};
use chainup::limits::DELTA_FILE;
use chainup::manifest::{Entry, EntryType, Manifest};
use rayon::prelude::*;

use crate::fullfile::{self, Compression};
use crate::previous::{self, Previous};
use crate::tree::Item;
use crate::webroot::{write_atomic, write_atomic_with, Layout};

/// What the pack step needs from a publishing run.
pub struct Inputs<'a> {
    pub layout: &'a Layout,
    pub version: u32,
    pub timestamp: u64,
    /// How many earlier releases get a delta pack (0: zero packs only).
    pub releases: u32,
    pub compression: Compression,
}

/// A changed bundle: its new manifest (text and parsed) and its hashed items.
pub struct Changed<'a> {
    pub name: &'a str,
    pub manifest: &'a Manifest,
    pub text: &'a str,
    pub items: &'a [Item],
}

/// What was written.
#[derive(Debug, Default)]
pub struct Written {
    pub packs: usize,
    pub deltas: usize,
    pub manifest_deltas: usize,
    pub bytes: u64,
}

/// One pack to write: its from-version and members.
struct PackPlan<'a> {
    bundle: &'a str,
    from: u32,
    deltas: Vec<(&'a Entry, &'a Entry)>,
    staged: Vec<&'a Item>,
}

/// Writes packs and manifest deltas for every changed bundle.
pub fn write(input: &Inputs, changed: &[Changed], prev: Option<&Previous>) -> Result<Written> {
    let froms = previous_versions(input, prev)?;
    let mut written = Written::default();
    // Old manifests, by (bundle, version), read once.
    let mut old: BTreeMap<(&str, u32), (Manifest, Vec<u8>)> = BTreeMap::new();
    for c in changed {
        for mom in &froms {
            let Some(line) = mom.entries.iter().find(|e| e.path == c.name) else {
                continue;
            };
            if line.version >= input.version || old.contains_key(&(c.name, line.version)) {
                continue;
            }
            match previous::read_bundle(input.layout, c.name, line.version) {
                Ok(m) => {
                    old.insert((c.name, line.version), m);
                }
                Err(e) => log::warn!("no delta pack for {} from {}: {e:#}", c.name, line.version),
            }
        }
    }
    let mut plans = Vec::new();
    for c in changed {
        plans.push(plan(c, 0, None));
        for ((bundle, from), (m, _)) in old.range((c.name, 0)..=(c.name, u32::MAX)) {
            debug_assert_eq!(*bundle, c.name);
            plans.push(plan(c, *from, Some(m)));
        }
    }
    // Every pair of hashes once, on all cores; `None` where no delta pays.
    let pairs: BTreeMap<(Hash, Hash), (&Entry, &Entry)> = plans
        .iter()
        .flat_map(|p| p.deltas.iter())
        .map(|(from, to)| ((from.hash, to.hash), (*from, *to)))
        .collect();
    let items: BTreeMap<Hash, &Item> = changed
        .iter()
        .flat_map(|c| c.items.iter())
        .map(|i| (i.hash, i))
        .collect();
    let made: BTreeMap<(Hash, Hash), Option<PathBuf>> = pairs
        .par_iter()
        .map(|(key, (from, to))| Ok((*key, make_delta(input, from, to, items[&to.hash])?)))
        .collect::<Result<_>>()?;
    written.deltas = made.values().flatten().count();
    let results = plans
        .par_iter()
        .map(|p| write_pack(input, p, &made, &items))
        .collect::<Result<Vec<u64>>>()?;
    written.packs = results.len();
    written.bytes += results.iter().sum::<u64>();
    for c in changed {
        for ((_, from), (_, old_text)) in old.range((c.name, 0)..=(c.name, u32::MAX)) {
            if let Some(bytes) = manifest_delta(input, c, *from, old_text)? {
                written.manifest_deltas += 1;
                written.bytes += bytes;
            }
        }
    }
    Ok(written)
}

/// The MoMs of the last `releases` releases, newest first, following `previous:`.
fn previous_versions(input: &Inputs, prev: Option<&Previous>) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    let Some(prev) = prev else { return Ok(out) };
    let mut next = Some(prev.mom.clone());
    while let Some(mom) = next.take() {
        if out.len() as u32 >= input.releases {
            break;
        }
        let p = mom.header.previous;
        out.push(mom);
        if p > 0 {
            match previous::read_mom(input.layout, p) {
                Ok(m) => next = Some(m),
                Err(e) => log::warn!("release {p} is not readable, no packs from it: {e:#}"),
            }
        }
    }
    Ok(out)
}

/// What a pack from `from` holds, as mixer decides it: the bundle's regular files that
/// changed after `from` and whose content the old manifest does not have; a delta where
/// the old manifest has a regular file at the same path.
fn plan<'a>(c: &Changed<'a>, from: u32, old: Option<&'a Manifest>) -> PackPlan<'a> {
    let old_hashes: BTreeSet<Hash> = old
        .iter()
        .flat_map(|m| m.present())
        .map(|e| e.hash)
        .collect();
    let old_files: BTreeMap<&str, &Entry> = old
        .iter()
        .flat_map(|m| m.present())
        .filter(|e| e.etype == EntryType::File && e.image().is_none())
        .map(|e| (e.path.as_str(), e))
        .collect();
    let items: BTreeMap<&str, &Item> = c.items.iter().map(|i| (i.path.as_str(), i)).collect();
    let mut seen = BTreeSet::new();
    let mut p = PackPlan {
        bundle: c.name,
        from,
        deltas: Vec::new(),
        staged: Vec::new(),
    };
    for e in c.manifest.present() {
        if e.etype != EntryType::File
            || e.image().is_some()
            || e.version <= from
            || old_hashes.contains(&e.hash)
            || !seen.insert(e.hash)
        {
            continue;
        }
        let Some(item) = items.get(e.path.as_str()).filter(|i| i.hash == e.hash) else {
            continue;
        };
        match old_files.get(e.path.as_str()) {
            Some(old) => p.deltas.push((old, e)),
            None => p.staged.push(item),
        }
    }
    p
}

/// Makes the delta `from` -> `to` into `<V>/delta/`, unless it is not smaller than the
/// fullfile or a file is over the cap. An existing one (same inputs) is kept.
fn make_delta(input: &Inputs, from: &Entry, to: &Entry, item: &Item) -> Result<Option<PathBuf>> {
    let dir = input.layout.version_dir(input.version).join("delta");
    let path = dir.join(delta_name(from, to, input.version));
    if path.exists() {
        return Ok(Some(path));
    }
    let full = input.layout.fullfile(to.version, &to.hash);
    let full_size = std::fs::metadata(&full)
        .with_context(|| format!("fullfile of {}", to.path))?
        .len();
    if item.meta.size > DELTA_FILE {
        return Ok(None);
    }
    let Some(old) = read_fullfile(input.layout, from)? else {
        return Ok(None);
    };
    let new =
        read_fullfile(input.layout, to)?.with_context(|| format!("content of {}", to.path))?;
    let Some(delta) = crate::delta::make(&old, &new, &item.meta) else {
        return Ok(None);
    };
    if delta.len() as u64 >= full_size {
        return Ok(None);
    }
    write_atomic(&path, &delta)?;
    Ok(Some(path))
}

/// `<from version>-<to version>-<from hash>-<to hash>`, as mixer names them.
fn delta_name(from: &Entry, to: &Entry, version: u32) -> String {
    format!("{}-{version}-{}-{}", from.version, from.hash, to.hash)
}

/// The content of a regular file's fullfile in the webroot, if it is one under the cap.
fn read_fullfile(layout: &Layout, e: &Entry) -> Result<Option<Vec<u8>>> {
    let path = layout.fullfile(e.version, &e.hash);
    let ctx = || format!("reading {}", path.display());
    let plain =
        chainup::archive::decompress(File::open(&path).with_context(ctx)?).with_context(ctx)?;
    let mut tar = tar::Archive::new(plain);
    let mut entry = tar
        .entries()
        .with_context(ctx)?
        .next()
        .with_context(ctx)?
        .with_context(ctx)?;
    let meta = chainup::archive::header_meta(entry.header()).with_context(ctx)?;
    if meta.kind != chainup::hash::Kind::File || meta.size > DELTA_FILE {
        return Ok(None);
    }
    let mut data = Vec::with_capacity(meta.size as usize);
    entry.read_to_end(&mut data).with_context(ctx)?;
    Ok(Some(data))
}

/// Writes one pack; members in name order, with fixed metadata, so the bytes depend on
/// the content alone.
fn write_pack(
    input: &Inputs,
    p: &PackPlan,
    made: &BTreeMap<(Hash, Hash), Option<PathBuf>>,
    items: &BTreeMap<Hash, &Item>,
) -> Result<u64> {
    let mut deltas: Vec<(String, &PathBuf)> = Vec::new();
    let mut staged: BTreeMap<Hash, &Item> = p.staged.iter().map(|i| (i.hash, *i)).collect();
    for (from, to) in &p.deltas {
        match &made[&(from.hash, to.hash)] {
            Some(path) => deltas.push((delta_name(from, to, input.version), path)),
            None => {
                staged.insert(to.hash, items[&to.hash]);
            }
        }
    }
    deltas.sort();
    let dest = input
        .layout
        .version_dir(input.version)
        .join(format!("pack-{}-from-{}.tar", p.bundle, p.from));
    let mtime = input.timestamp;
    write_atomic_with(&dest, |out| {
        let mut tar = tar::Builder::new(fullfile::Encoder::new(out, input.compression)?);
        for dir in ["delta/", "staged/"] {
            let mut h = fullfile::header(&Meta::dir(0o700, 0, 0), mtime);
            tar.append_data(&mut h, dir, std::io::empty())?;
        }
        for (name, path) in &deltas {
            let data = std::fs::read(path)?;
            let mut h = fullfile::header(&Meta::file(0o644, 0, 0, data.len() as u64), mtime);
            tar.append_data(&mut h, format!("delta/{name}"), &data[..])?;
        }
        for (hash, item) in &staged {
            let got = fullfile::append_item(&mut tar, item, &format!("staged/{hash}"), mtime)?;
            anyhow::ensure!(
                got == *hash,
                "{}: the tree changed while packing",
                item.path
            );
        }
        tar.into_inner()?.finish()?;
        Ok(())
    })
    .with_context(|| format!("pack {}", dest.display()))
}

/// `Manifest-<bundle>-delta-from-<old>`, where it is smaller than the manifest tar.
fn manifest_delta(input: &Inputs, c: &Changed, from: u32, old_text: &[u8]) -> Result<Option<u64>> {
    let new = c.text.as_bytes();
    let meta = fullfile::manifest_meta(new);
    let Some(delta) = crate::delta::make(old_text, new, &meta) else {
        return Ok(None);
    };
    let tar_size = std::fs::metadata(input.layout.manifest_tar(input.version, c.name))
        .map(|m| m.len())
        .unwrap_or(u64::MAX);
    if delta.len() as u64 >= tar_size {
        return Ok(None);
    }
    let path = input
        .layout
        .version_dir(input.version)
        .join(format!("Manifest-{}-delta-from-{from}", c.name));
    write_atomic(&path, &delta).map(Some)
}
