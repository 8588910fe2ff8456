//! One publishing run: read the inputs and the previous release, build the manifests, then
//! write fullfiles, manifests, the MoM and, last, the `latest` pointers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chainup::hash::{hash_bytes, Hash};
use chainup::manifest::{Entry, EntryType, Kind, Manifest, Misc, Status};
use rayon::prelude::*;

use crate::diff::{self, Release};
use crate::fullfile::{self, Compression};
use crate::previous::{self, Previous};
use crate::release::{self, Bundles, ImageSpec};
use crate::sign::{SignWith, Signing};
use crate::tree::{self, Item};
use crate::webroot::{sync_dir, write_atomic, Layout};

/// Everything the command line decides.
#[derive(Debug, Clone)]
pub struct Options {
    pub webroot: PathBuf,
    pub version: u32,
    pub format: u32,
    pub trees: PathBuf,
    pub bundles: PathBuf,
    pub previous: Option<u32>,
    pub timestamp: u64,
    pub sign: SignWith,
    pub images: Vec<ImageSpec>,
    pub compression: Compression,
    /// Publish a chunk index (and chunks) for each core image (docs/chunks.md).
    pub chunks: bool,
    /// How many earlier releases get delta packs (`--delta-packs`; 0: zero packs only).
    pub delta_packs: u32,
}

/// What a run did, for the closing report.
#[derive(Debug, Default)]
pub struct Summary {
    pub version: u32,
    pub previous: u32,
    pub bundles: usize,
    pub manifests_written: usize,
    pub new_files: usize,
    pub reused_files: usize,
    pub bytes_written: u64,
    /// Packs, file deltas and manifest deltas written.
    pub packs: crate::pack::Written,
    /// Bundles of the previous release that bundles.toml no longer defines.
    pub dropped: Vec<String>,
    /// Directories of the previous release that are files or symlinks now.
    pub dir_type_changes: Vec<diff::DirTypeChange>,
    /// How to sign by hand, with `--no-sign`.
    pub unsigned_note: Option<String>,
    /// One line per chunked core image.
    pub chunk_notes: Vec<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "published version {} (previous {}): {} bundles, {} new manifests, {} new files \
             ({} already present), {} packs with {} deltas, {} manifest deltas, {} bytes written",
            self.version,
            self.previous,
            self.bundles,
            self.manifests_written,
            self.new_files,
            self.reused_files,
            self.packs.packs,
            self.packs.deltas,
            self.packs.manifest_deltas,
            self.bytes_written
        )?;
        self.chunk_notes.iter().try_for_each(|n| writeln!(f, "{n}"))
    }
}

/// A bundle's new manifest and whether it replaces the previous one.
struct Built {
    manifest: Manifest,
    items: Vec<Item>,
    /// `None`: the previous manifest stays; its MoM line is carried over.
    text: Option<String>,
}

/// Publishes one release.
pub fn run(opts: &Options) -> Result<Summary> {
    let bundles = release::load_bundles(&opts.bundles)?;
    release::check_images(&bundles, &opts.images)?;
    check_format(opts.format, &bundles)?;
    check_trees(&opts.trees, &bundles)?;
    let mut signing = Signing::load(&opts.sign)?;
    let layout = Layout::new(&opts.webroot);
    let _lock = crate::webroot::lock(&opts.webroot)?;

    let prev = load_previous(opts, &layout)?;
    let rel = Release {
        format: opts.format,
        version: opts.version,
        previous: prev.as_ref().map_or(0, |p| p.version),
        timestamp: opts.timestamp,
    };

    let mut built = BTreeMap::new();
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let mut chunk_notes = Vec::new();
    // Image fullfiles written while their images were chunked (chunker.rs).
    let mut prewritten = Vec::new();
    for (name, def) in &bundles {
        let old = prev.as_ref().and_then(|p| p.bundles.get(name));
        let mut images = (&mut chunk_notes, &mut prewritten);
        let items = bundle_items(opts, name, scratch.path(), old, &mut images)?;
        let manifest = diff::bundle_manifest(&rel, &items, &def.includes, &def.also_add, old);
        let text = match old {
            Some(old) if diff::unchanged(&manifest, old) => {
                log::info!(
                    "{name}: unchanged, keeps Manifest.{name} of {}",
                    old.header.version
                );
                None
            }
            _ => Some(checked_text(&manifest, Kind::Bundle, name)?),
        };
        built.insert(
            name.clone(),
            Built {
                manifest,
                items,
                text,
            },
        );
    }
    let mom = build_mom(&rel, &built, prev.as_ref());
    let mom_text = checked_text(&mom, Kind::Mom, "MoM")?;

    let mut summary = Summary {
        version: rel.version,
        previous: rel.previous,
        bundles: built.len(),
        dropped: prev
            .iter()
            .flat_map(|p| p.bundles.keys())
            .filter(|b| !bundles.contains_key(*b))
            .cloned()
            .collect(),
        dir_type_changes: diff::dirs_changing_type(
            prev.iter().flat_map(|p| p.bundles.values()),
            built.values().map(|b| &b.manifest),
        ),
        chunk_notes,
        ..Summary::default()
    };
    let prewritten = prewritten.into_iter().collect();
    write_fullfiles(opts, &layout, &built, &prewritten, &mut summary)?;
    write_manifests(opts, &layout, &built, &mom_text, &mut signing, &mut summary)?;
    write_packs(opts, &layout, &built, prev.as_ref(), &mut summary)?;
    write_pointers(&layout, &rel, &mut signing, &mut summary)?;
    summary.unsigned_note = signing.note();
    Ok(summary)
}

fn check_format(format: u32, bundles: &Bundles) -> Result<()> {
    if format == 0 {
        bail!("--format must be greater than 0");
    }
    // Older manifest formats have no also-add header, so the dependency would be lost.
    if format < 29 {
        if let Some((name, _)) = bundles.iter().find(|(_, d)| !d.also_add.is_empty()) {
            bail!("bundle {name:?} has also-add, which needs --format 29 or later");
        }
    }
    Ok(())
}

/// Refuses a tree that no bundle claims: a misspelt bundle name would otherwise drop its
/// content from the release without a word.
fn check_trees(trees: &Path, bundles: &Bundles) -> Result<()> {
    let entries = match std::fs::read_dir(trees) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", trees.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", trees.display()))?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| bundles.contains_key(n)) {
            bail!(
                "{} is not a bundle defined in the bundle definitions",
                entry.path().display()
            );
        }
    }
    Ok(())
}

/// The previous release (`--previous`, else `latest`), after checking the new version
/// is newer than both it and what `latest` announces.
fn load_previous(opts: &Options, layout: &Layout) -> Result<Option<Previous>> {
    let v = opts.version;
    if v == 0 {
        bail!("--version must be greater than 0");
    }
    let latest = previous::latest(layout, opts.format)?;
    if let Some(l) = latest.filter(|&l| v <= l) {
        bail!(
            "version {v} is not newer than {l}, the latest version in {}",
            layout.latest(opts.format).display()
        );
    }
    let Some(p) = opts.previous.or(latest) else {
        return Ok(None);
    };
    if v <= p {
        bail!("version {v} is not newer than the previous version {p}");
    }
    previous::load(layout, p).map(Some)
}

/// The tree (if any), images and marker of one bundle, hashed.
fn bundle_items(
    opts: &Options,
    name: &str,
    scratch: &Path,
    old: Option<&Manifest>,
    (notes, written): &mut (&mut Vec<String>, &mut Vec<(Hash, u64)>),
) -> Result<Vec<Item>> {
    let root = opts.trees.join(name);
    let images: Vec<_> = opts.images.iter().filter(|i| i.bundle == name).collect();
    // The tree root may be a symlink to where the tree was built; nothing below it is followed.
    let mut items = match std::fs::metadata(&root) {
        Ok(md) if md.is_dir() => tree::scan(&root)?,
        Ok(_) => bail!("{} is not a directory", root.display()),
        // A bundle that only carries images needs no tree.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !images.is_empty() => Vec::new(),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("bundle {name:?}: no tree at {}", root.display()))
        }
    };
    let mut image_items = images
        .par_iter()
        .map(|i| tree::image_item(i.kind, &i.path))
        .collect::<Result<Vec<_>>>()?;
    if opts.chunks {
        let fullfiles = crate::chunker::Fullfiles {
            layout: &Layout::new(&opts.webroot),
            version: opts.version,
            compression: opts.compression,
            mtime: opts.timestamp,
        };
        let indexes = crate::chunker::index_items(
            &opts.webroot,
            &image_items,
            scratch,
            old,
            fullfiles,
            notes,
            written,
        )?;
        image_items.extend(indexes);
    }
    for img in image_items {
        if items.iter().any(|i| i.path == img.path) {
            bail!(
                "bundle {name:?}: the tree has {}, which is reserved for the image payload",
                img.path
            );
        }
        items.push(img);
    }
    tree::add_marker(&mut items, name)?;
    Ok(items)
}

/// Serialises a manifest and parses it back with the client's parser, so nothing is
/// published that a chainup client would refuse.
fn checked_text(m: &Manifest, kind: Kind, name: &str) -> Result<String> {
    let text = m.serialize();
    let back = Manifest::parse(text.as_bytes(), kind)
        .with_context(|| format!("Manifest.{name} as built is not valid"))?;
    if &back != m {
        bail!("Manifest.{name} does not read back as it was built");
    }
    Ok(text)
}

/// The MoM: one `M...` line per bundle, the old line for a bundle whose manifest stays.
fn build_mom(rel: &Release, built: &BTreeMap<String, Built>, prev: Option<&Previous>) -> Manifest {
    let entries: Vec<Entry> = built
        .iter()
        .map(|(name, b)| {
            let old = prev.and_then(|p| p.mom.entries.iter().find(|e| &e.path == name));
            let (hash, version) = match (&b.text, old) {
                (None, Some(e)) => (e.hash, e.version),
                (Some(text), _) => (manifest_hash(text), rel.version),
                (None, None) => unreachable!("a manifest is only kept if there was one"),
            };
            Entry {
                etype: EntryType::Manifest,
                status: Status::Present,
                modifier: b'.',
                misc: Misc::None,
                hash,
                version,
                path: name.clone(),
            }
        })
        .collect();
    let mut mom = Manifest {
        header: chainup::manifest::Header {
            filecount: entries.len() as u64,
            ..rel.header()
        },
        entries,
    };
    mom.sort_entries();
    mom
}

/// The hash the client computes for a manifest extracted from its tar.
fn manifest_hash(text: &str) -> Hash {
    hash_bytes(&fullfile::manifest_meta(text.as_bytes()), text.as_bytes())
}

/// Writes `files/<hash>.tar` for every entry new in this version, once per hash.
fn write_fullfiles(
    opts: &Options,
    layout: &Layout,
    built: &BTreeMap<String, Built>,
    prewritten: &BTreeMap<Hash, u64>,
    summary: &mut Summary,
) -> Result<()> {
    let mut wanted: BTreeMap<Hash, &Item> = BTreeMap::new();
    for b in built.values().filter(|b| b.text.is_some()) {
        let new: BTreeSet<&str> = b
            .manifest
            .present()
            .filter(|e| e.version == opts.version)
            .map(|e| e.path.as_str())
            .collect();
        for item in b.items.iter().filter(|i| new.contains(i.path.as_str())) {
            wanted.entry(item.hash).or_insert(item);
        }
    }
    let results = wanted
        .par_iter()
        .map(|(hash, item)| {
            if let Some(&bytes) = prewritten.get(hash) {
                return Ok(Some(bytes));
            }
            let dest = layout.fullfile(opts.version, hash);
            if dest.exists() {
                return Ok(None);
            }
            fullfile::write(item, &dest, opts.compression, opts.timestamp).map(Some)
        })
        .collect::<Result<Vec<_>>>()?;
    for r in results {
        match r {
            Some(bytes) => {
                summary.new_files += 1;
                summary.bytes_written += bytes;
            }
            None => summary.reused_files += 1,
        }
    }
    let files = layout.files_dir(opts.version);
    if files.exists() {
        sync_dir(&files)?;
    }
    Ok(())
}

/// Bundle manifests (plain and tar), the MoM (plain, tar, signature) and `<V>/format`.
fn write_manifests(
    opts: &Options,
    layout: &Layout,
    built: &BTreeMap<String, Built>,
    mom_text: &str,
    signing: &mut Signing,
    summary: &mut Summary,
) -> Result<()> {
    let v = opts.version;
    let mut put = |path: PathBuf, data: &[u8]| -> Result<()> {
        summary.bytes_written += write_atomic(&path, data)?;
        Ok(())
    };
    for (name, b) in built {
        let Some(text) = &b.text else { continue };
        put(layout.manifest(v, name), text.as_bytes())?;
        put(
            layout.manifest_tar(v, name),
            &fullfile::manifest_tar(name, text.as_bytes(), opts.timestamp)?,
        )?;
        summary.manifests_written += 1;
    }
    put(
        layout.manifest_tar(v, "MoM"),
        &fullfile::manifest_tar("MoM", mom_text.as_bytes(), opts.timestamp)?,
    )?;
    let mom_path = layout.manifest(v, "MoM");
    put(mom_path.clone(), mom_text.as_bytes())?;
    put(
        layout.version_dir(v).join("format"),
        format!("{}\n", opts.format).as_bytes(),
    )?;
    summary.bytes_written += signing.sign_file(&mom_path, mom_text.as_bytes())?;
    sync_dir(&layout.version_dir(v))?;
    sync_dir(parent(&layout.version_dir(v)))
}

/// Packs and deltas for the bundles this release changes (after their manifests, which
/// manifest deltas are measured against; before the pointers, so clients find them).
fn write_packs(
    opts: &Options,
    layout: &Layout,
    built: &BTreeMap<String, Built>,
    prev: Option<&Previous>,
    summary: &mut Summary,
) -> Result<()> {
    let changed: Vec<crate::pack::Changed> = built
        .iter()
        .filter_map(|(name, b)| {
            Some(crate::pack::Changed {
                name,
                manifest: &b.manifest,
                text: b.text.as_deref()?,
                items: &b.items,
            })
        })
        .collect();
    let input = crate::pack::Inputs {
        layout,
        version: opts.version,
        timestamp: opts.timestamp,
        releases: opts.delta_packs,
        compression: opts.compression,
    };
    let started = std::time::Instant::now();
    summary.packs = crate::pack::write(&input, &changed, prev)?;
    summary.bytes_written += summary.packs.bytes;
    log::info!("packs and deltas took {:.2?}", started.elapsed());
    sync_dir(&layout.version_dir(opts.version))
}

/// `latest` and `latest_version`, last: until they change, no client looks at the new
/// version. Each signature goes first so the pointer never names a version without one.
fn write_pointers(
    layout: &Layout,
    rel: &Release,
    signing: &mut Signing,
    summary: &mut Summary,
) -> Result<()> {
    let text = format!("{}\n", rel.version);
    let latest = layout.latest(rel.format);
    summary.bytes_written += signing.sign_file(&latest, text.as_bytes())?;
    summary.bytes_written += write_atomic(&latest, text.as_bytes())?;
    sync_dir(parent(&latest))?;

    // latest_version spans formats: never move it back below a newer format's release.
    let lv = layout.latest_version();
    let current = std::fs::read_to_string(&lv)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
    if current.is_none_or(|c| c <= rel.version) {
        summary.bytes_written += signing.sign_file(&lv, text.as_bytes())?;
        summary.bytes_written += write_atomic(&lv, text.as_bytes())?;
        sync_dir(parent(&lv))?;
    }
    Ok(())
}

fn parent(p: &Path) -> &Path {
    p.parent().expect("webroot paths have a parent")
}
