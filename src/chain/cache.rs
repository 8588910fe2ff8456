//! Step 2 with a local cache of manifest tars (search-file, bundle-info). The cache holds
//! downloaded bytes, not trust: a cached tar is hashed against the verified MoM's line on
//! every read, exactly as a download is, and one that does not match is dropped and fetched
//! again. So a stale, corrupt or planted file costs a download, never a wrong manifest.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{hashed_manifest, hashed_manifest_text, Chain, VerifiedManifest, VerifiedMom};
use crate::error::IoContext;
use crate::{limits, Error, Result};

/// Where the cached tar of `bundle` as of manifest version `version` lives under `dir`.
pub fn cached_manifest_path(dir: &Path, version: u32, bundle: &str) -> PathBuf {
    dir.join(version.to_string())
        .join(format!("Manifest.{bundle}.tar"))
}

impl Chain {
    /// [`Chain::manifest`] through the cache in `dir` (`<version>/Manifest.<bundle>.tar`):
    /// a cached tar that still hashes to the MoM's line is used, anything else is fetched
    /// (into the cache) and checked the same way.
    pub fn manifest_cached(
        &self,
        mom: &VerifiedMom,
        bundle: &str,
        dir: &Path,
    ) -> Result<VerifiedManifest> {
        let line = mom
            .bundle(bundle)
            .ok_or_else(|| Error::UnknownBundle(bundle.to_string()))?;
        let path = cached_manifest_path(dir, line.version, bundle);
        let shown = path.display().to_string();
        if let Some(file) = open_cached(&path)? {
            match hashed_manifest_text(file, bundle, &shown, line.hash) {
                Ok(text) => return hashed_manifest(mom, bundle, &shown, text),
                // Stale or damaged: forget it and download.
                Err(_) => remove_cached(&path)?,
            }
        }
        let rel = format!("{}/Manifest.{bundle}.tar", line.version);
        let url = self.content.url(&rel);
        let parent = path.parent().expect("cache paths have a parent");
        std::fs::create_dir_all(parent).at(parent)?;
        let text = self.content.each_mirror(|content| {
            let url = content.url(&rel);
            // Spooled to a temporary in the cache (bounded by the download cap), checked
            // from there, and given its cache name only once it hashed right.
            let mut tmp = tempfile::Builder::new()
                .prefix(".partial.")
                .tempfile_in(parent)
                .at(parent)?;
            let mut download = content.open(&rel, limits::MANIFEST_DOWNLOAD)?;
            std::io::copy(&mut download, tmp.as_file_mut())
                .map_err(|e| crate::source::download_error(&url, e))?;
            tmp.as_file_mut().seek(SeekFrom::Start(0)).at(tmp.path())?;
            let text = hashed_manifest_text(tmp.as_file(), bundle, &url, line.hash)?;
            tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
            Ok(text)
        })?;
        hashed_manifest(mom, bundle, &url, text)
    }
}

/// The cached file, opened without following a symlink; `None` when there is none.
fn open_cached(path: &Path) -> Result<Option<File>> {
    match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) if f.metadata().at(path)?.is_file() => Ok(Some(f)),
        Ok(_) => {
            remove_cached(path)?;
            Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // A symlink (ELOOP) or anything else unreadable is not a cache entry.
        Err(_) => {
            remove_cached(path)?;
            Ok(None)
        }
    }
}

fn remove_cached(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(path).at(path),
        Ok(_) => std::fs::remove_file(path).at(path),
        Err(_) => Ok(()),
    }
}
