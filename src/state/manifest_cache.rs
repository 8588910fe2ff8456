//! The manifest cache in the state directory, where swupd keeps it:
//! `cache/<content URL>/manifest/<V>/Manifest.MoM` with `Manifest.MoM.sig`, and
//! `cache/<content URL>/manifest/<V>/Manifest.<bundle>` (a one-line header with the mode
//! and owner it hashed with, then the text), `<content URL>` being the URL with each `:`
//! and `/` written `_`, as swupd's `statedir.c` names it. Tools and scripts written for
//! swupd (its own test suite among them) look for the manifests there. This module only
//! stores and reads bytes; nothing read here is trusted until `chain` has checked it
//! against a signature or a verified MoM (`chain::cached`).
//!
//! Entries are written atomically (a temporary in the same directory, then a rename) but
//! not fsynced: after a crash an entry may be missing or torn, which costs one download,
//! since a torn entry fails its check like a tampered one.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{check_private, StateDir};
use crate::chain::CachedText;
use crate::error::IoContext;
use crate::hash::Meta;
use crate::limits;
use crate::manifest::{self, Manifest};
use crate::{Error, Result};

/// The first word of a cached bundle manifest's header line.
const MAGIC: &str = "chainup-manifest";
/// The longest header line read.
const HEADER_MAX: u64 = 64;

/// swupd's cache tree in the state directory: one directory per content URL.
pub const CACHE_DIR: &str = "cache";
/// The manifest cache in a content URL's cache directory.
pub const MANIFEST_DIR: &str = "manifest";
/// Where chainup kept its manifest cache before it took swupd's layout; `clean` still
/// removes it.
pub const OLD_MANIFEST_CACHE: &str = "manifests";
/// The longest cache directory name made from a URL; a longer URL is named by its hash.
const URL_NAME_MAX: usize = 200;

/// What a command may do to the manifest cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheAccess {
    /// Only read it (a reading command on a state directory it may not write).
    Read,
    /// Also add entries, never remove one: a reading command on an existing private state
    /// directory, which fills the cache as swupd's reading commands fill theirs.
    Add,
    /// Add, and remove stale or failing entries: the commands that change the root.
    Full,
}

/// The manifest cache of one content URL in a state directory.
#[derive(Debug, Clone)]
pub struct ManifestCache {
    /// The state directory, where creating the cache's directories starts.
    base: PathBuf,
    /// `cache/<url>/manifest` below `base`.
    rel: PathBuf,
    /// What this command may do to it.
    access: CacheAccess,
}

impl StateDir {
    /// The manifest cache of `content_url`, for a command that may do `access` to it.
    pub fn manifest_cache(&self, content_url: &str, access: CacheAccess) -> ManifestCache {
        ManifestCache {
            base: self.path().to_path_buf(),
            rel: Path::new(CACHE_DIR)
                .join(url_dir_name(content_url))
                .join(MANIFEST_DIR),
            access,
        }
    }

    /// Every manifest cache in the state directory, whatever URL it was kept for, and
    /// the old `manifests/` directory, sorted.
    pub fn manifest_cache_dirs(&self) -> Result<Vec<PathBuf>> {
        let cache = self.path().join(CACHE_DIR);
        let mut dirs = vec![self.path().join(OLD_MANIFEST_CACHE)];
        match std::fs::read_dir(&cache) {
            Ok(entries) => {
                for entry in entries {
                    dirs.push(entry.at(&cache)?.path().join(MANIFEST_DIR));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(cache, e)),
        }
        dirs.sort();
        Ok(dirs)
    }
}

/// The name of a content URL's cache directory: the URL without a trailing `/`, each `:`
/// and `/` written `_` (swupd's `convert_url`). A name that could not be one directory
/// (empty, `.`, `..`, too long for a file name) is `url-<sha256 of the URL>` instead.
pub fn url_dir_name(url: &str) -> String {
    use sha2::Digest;
    let url = url.trim_end_matches('/');
    let name: String = url
        .chars()
        .map(|c| if c == ':' || c == '/' { '_' } else { c })
        .collect();
    let usable = !matches!(name.as_str(), "" | "." | "..")
        && name.len() <= URL_NAME_MAX
        && !name.contains('\0');
    match usable {
        true => name,
        false => format!("url-{}", hex::encode(sha2::Sha256::digest(url.as_bytes()))),
    }
}

impl ManifestCache {
    /// The cache's directory.
    pub fn dir(&self) -> PathBuf {
        self.base.join(&self.rel)
    }

    fn version_dir(&self, version: u32) -> PathBuf {
        self.dir().join(version.to_string())
    }

    /// Where the MoM of `version` is kept.
    pub fn mom_path(&self, version: u32) -> PathBuf {
        self.version_dir(version).join("Manifest.MoM")
    }

    /// Where the manifest of `bundle` at `version` is kept.
    pub fn manifest_path(&self, bundle: &str, version: u32) -> PathBuf {
        self.version_dir(version).join(format!("Manifest.{bundle}"))
    }

    /// The cached MoM text and signature of `version`, if both are there.
    pub fn mom(&self, version: u32) -> Option<(Vec<u8>, Vec<u8>)> {
        let path = self.mom_path(version);
        let text = read_capped(&path, limits::MOM_TEXT)?;
        let sig = read_capped(&path.with_extension("MoM.sig"), limits::SIGNATURE)?;
        Some((text, sig))
    }

    /// The cached text of `bundle` at `version`, with the metadata it hashed with.
    pub fn manifest(&self, bundle: &str, version: u32) -> Option<CachedText> {
        manifest::validate_bundle_name(bundle).ok()?;
        let path = self.manifest_path(bundle, version);
        parse_cached(&read_capped(&path, HEADER_MAX + limits::MANIFEST_TEXT)?)
    }

    /// Keeps a verified MoM's text and signature.
    pub fn store_mom(&self, version: u32, text: &[u8], signature: &[u8]) -> Result<()> {
        let path = self.mom_path(version);
        self.store(&path.with_extension("MoM.sig"), &[signature])?;
        self.store(&path, &[text])
    }

    /// Keeps a verified manifest's text with the metadata it hashed with.
    pub fn store_manifest(
        &self,
        bundle: &str,
        version: u32,
        text: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        if manifest::validate_bundle_name(bundle).is_err() {
            return Ok(());
        }
        let header = format!(
            "{MAGIC} {:o} {} {}\n",
            meta.mode & 0o7777,
            meta.uid,
            meta.gid
        );
        self.store(
            &self.manifest_path(bundle, version),
            &[header.as_bytes(), text],
        )
    }

    /// Removes an entry that failed its check.
    pub fn forget(&self, path: &Path) {
        if self.access == CacheAccess::Full {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Removes every entry but the MoMs of `versions` and the manifests those MoMs name
    /// (at the versions they name). A kept MoM is read unverified: it only decides what is
    /// not deleted, and all that is kept is checked again before any use.
    pub fn prune(&self, versions: &[u32]) -> Result<()> {
        if self.access != CacheAccess::Full {
            return Ok(());
        }
        let mut keep: BTreeSet<(u32, String)> = BTreeSet::new();
        for &v in versions {
            keep.insert((v, "Manifest.MoM".into()));
            keep.insert((v, "Manifest.MoM.sig".into()));
            let Some((text, _)) = self.mom(v) else {
                continue;
            };
            if let Ok(mom) = Manifest::parse(&text, manifest::Kind::Mom) {
                for e in &mom.entries {
                    keep.insert((e.version, format!("Manifest.{}", e.path)));
                }
            }
        }
        let dir = self.dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.at(&dir)?;
            let path = entry.path();
            let version = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok());
            let Some(version) = version.filter(|_| path.is_dir()) else {
                remove_any(&path)?;
                continue;
            };
            for file in std::fs::read_dir(&path).at(&path)? {
                let file = file.at(&path)?;
                let name = file.file_name().to_string_lossy().into_owned();
                if !keep.contains(&(version, name)) {
                    remove_any(&file.path())?;
                }
            }
            // Fails, as it should, while the directory still holds a kept entry.
            let _ = std::fs::remove_dir(&path);
        }
        Ok(())
    }

    fn store(&self, path: &Path, parts: &[&[u8]]) -> Result<()> {
        if self.access == CacheAccess::Read {
            return Ok(());
        }
        let dir = path
            .parent()
            .expect("cache entries live in a version directory");
        let mut at = self.base.clone();
        for part in dir
            .strip_prefix(&self.base)
            .expect("below the state directory")
        {
            at.push(part);
            make_private_dir(&at)?;
        }
        let mut tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
        for part in parts {
            tmp.write_all(part).at(tmp.path())?;
        }
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }
}

/// Reads a whole file of at most `cap` bytes; `None` if it is missing, unreadable,
/// larger, not a regular file, or a symlink (the state directory itself is checked
/// private).
fn read_capped(path: &Path, cap: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut data = Vec::new();
    file.take(cap + 1).read_to_end(&mut data).ok()?;
    (data.len() as u64 <= cap).then_some(data)
}

/// The text of a manifest as this cache keeps it and the metadata it hashed with (its
/// size left 0: the caller sets it); `None` when `data` is not in that form (swupd
/// keeps the bare text).
pub fn parse_cached(data: &[u8]) -> Option<CachedText> {
    let end = data
        .iter()
        .take(HEADER_MAX as usize)
        .position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&data[..end]).ok()?;
    let meta = parse_header(header)?;
    Some(CachedText {
        text: data[end + 1..].to_vec(),
        meta,
    })
}

/// `chainup-manifest <mode in octal> <uid> <gid>`.
fn parse_header(line: &str) -> Option<Meta> {
    let mut words = line.split(' ');
    if words.next()? != MAGIC {
        return None;
    }
    let mode = u32::from_str_radix(words.next()?, 8).ok()?;
    let uid = words.next()?.parse().ok()?;
    let gid = words.next()?.parse().ok()?;
    if words.next().is_some() || mode > 0o7777 {
        return None;
    }
    // The size is the text's; the caller sets it.
    Some(Meta::file(mode, uid, gid, 0))
}

/// Creates `dir` (0700) if missing and holds it to the state directory's rules.
fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    check_private(dir)
}

fn remove_any(path: &Path) -> Result<()> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let removed = match md.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    };
    removed.at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("s")).unwrap();
        let cache = state.manifest_cache("file:///srv/update/", CacheAccess::Full);
        let mom = format!(
            "MANIFEST\t30\nversion:\t20\nprevious:\t10\nfilecount:\t1\ntimestamp:\t1\ncontentsize:\t0\n\nM...\t{}\t10\tos-core\n",
            "11".repeat(32)
        );
        let mom = mom.as_bytes();
        Manifest::parse(mom, manifest::Kind::Mom).expect("a MoM");
        cache.store_mom(20, mom, b"sig").unwrap();
        let meta = Meta::file(0o640, 1, 2, 0);
        cache.store_manifest("os-core", 10, b"text", &meta).unwrap();
        cache.store_manifest("editors", 10, b"gone", &meta).unwrap();
        cache.store_mom(10, b"old", b"sig").unwrap();
        assert_eq!(cache.mom(20).unwrap(), (mom.to_vec(), b"sig".to_vec()));
        // swupd's layout: the URL names the directory, ':' and '/' written '_'.
        let at = dir.path().join("s/cache/file____srv_update/manifest/20");
        assert!(at.join("Manifest.MoM").is_file());
        assert!(at.join("Manifest.MoM.sig").is_file());
        let got = cache.manifest("os-core", 10).unwrap();
        assert_eq!((got.text.as_slice(), got.meta), (&b"text"[..], meta));
        cache.prune(&[20]).unwrap();
        assert!(cache.mom(10).is_none());
        assert!(cache.manifest("editors", 10).is_none());
        assert!(cache.manifest("os-core", 10).is_some());
        assert!(cache.mom(20).is_some());
    }

    #[test]
    fn url_names_are_one_directory() {
        assert_eq!(
            url_dir_name("https://example.com:8080/update"),
            "https___example.com_8080_update"
        );
        for odd in ["", "/", ".", "..", &"x".repeat(300)] {
            let name = url_dir_name(odd);
            assert!(
                name.starts_with("url-") && name.len() == 68,
                "{odd}: {name}"
            );
        }
    }

    #[test]
    fn a_reading_cache_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let cache = state.manifest_cache("https://example.com/update", CacheAccess::Read);
        cache.store_mom(20, b"text", b"sig").unwrap();
        assert!(cache.mom(20).is_none());
        assert!(!dir.path().join("cache").exists());
    }
}
