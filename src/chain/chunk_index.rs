//! Where a core image's chunk index comes from (docs/chunks.md): the state directory's
//! cache of indexes this machine verified before, a delta from an index it holds, or the
//! `/core.index` payload itself. Whatever the road, the bytes count only once they hash to
//! the `/core.index` manifest line, exactly as a downloaded payload's do: the cache and
//! the delta are unauthenticated, so a wrong file there costs a download, never trust.
//!
//! Why a cache: the running slot's index is the seed's map, and downloading it on every
//! update costs as much as the new index. An update keeps the index of the image it wrote,
//! so the next update finds its seed's index here and only fetches the new one, as a delta.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::chunks::VerifiedIndex;
use super::image::image_meta;
use super::Chain;
use crate::archive;
use crate::chunks::{self, Delta, Index};
use crate::hash::{hash_bytes, Hash};
use crate::limits;
use crate::manifest::{Entry, ImageKind};
use crate::{Error, Result};

/// Verified indexes kept between runs, one file per `/core.index` payload hash, in
/// `<statedir>/chunk-indexes/`.
pub struct IndexCache {
    dir: PathBuf,
}

impl IndexCache {
    pub fn new(statedir: &Path) -> IndexCache {
        IndexCache {
            dir: statedir.join("chunk-indexes"),
        }
    }

    fn path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    /// The bytes cached under `hash`, unchecked; `None` when absent or too large.
    fn read(&self, hash: &Hash) -> Option<Vec<u8>> {
        let file = std::fs::File::open(self.path(hash)).ok()?;
        let mut data = Vec::new();
        file.take(limits::CHUNK_INDEX + 1)
            .read_to_end(&mut data)
            .ok()?;
        (data.len() as u64 <= limits::CHUNK_INDEX).then_some(data)
    }

    /// Keeps `index` under `hash`. Best effort: a cache that cannot be written costs the
    /// next update a download. Written under a temporary name and renamed, so a reader
    /// never sees half a file; not synced, since a torn file fails its hash and is
    /// downloaded again.
    fn store(&self, hash: &Hash, index: &Index) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempfile_in(&self.dir)?;
            std::io::Write::write_all(&mut tmp, index.serialize().as_bytes())?;
            tmp.persist(self.path(hash)).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            log::warn!("cannot cache a chunk index in {}: {e}", self.dir.display());
        }
    }

    /// Removes every cached index but those of `keep` (the images the slots hold), so the
    /// cache stays at two or three files.
    pub fn keep_only(&self, keep: &[Hash]) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let names: Vec<String> = keep.iter().map(Hash::to_hex).collect();
        for e in dir.flatten() {
            if !names.iter().any(|n| e.file_name() == n.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// `bytes` as the index `entry` names, if they hash to its line and parse.
fn verify(entry: &Entry, bytes: &[u8]) -> std::result::Result<VerifiedIndex, String> {
    let actual = hash_bytes(&image_meta(bytes.len() as u64), bytes);
    if actual != entry.hash {
        return Err(format!("hashes to {actual}, not {}", entry.hash));
    }
    Index::parse(bytes).map(VerifiedIndex::from_checked)
}

impl Chain {
    /// The index `entry` (a `/core.index` line) names: from `cache` when it holds a copy
    /// that hashes right, else downloaded (and then cached).
    pub fn chunk_index_cached(&self, entry: &Entry, cache: &IndexCache) -> Result<VerifiedIndex> {
        check_kind(entry)?;
        if let Some(bytes) = cache.read(&entry.hash) {
            match verify(entry, &bytes) {
                Ok(index) => return Ok(index),
                Err(e) => log::warn!("the cached chunk index {}: {e}; downloading it", entry.hash),
            }
        }
        let index = self.chunk_index(entry)?;
        cache.store(&entry.hash, index.index());
        Ok(index)
    }

    /// The index `entry` names, made from `base` (the verified index of `base_entry`) by
    /// the server's delta between the two when there is one and it makes exactly the
    /// index of the line; else as [`Chain::chunk_index_cached`]. Cached either way.
    pub fn chunk_index_from(
        &self,
        entry: &Entry,
        base_entry: &Entry,
        base: &VerifiedIndex,
        cache: &IndexCache,
    ) -> Result<VerifiedIndex> {
        check_kind(entry)?;
        if cache.read(&entry.hash).is_none() && base_entry.hash != entry.hash {
            match self.index_by_delta(entry, base_entry, base) {
                Ok(Some(index)) => {
                    cache.store(&entry.hash, index.index());
                    return Ok(index);
                }
                Ok(None) => {}
                Err(e) => log::warn!("{e}; downloading the whole chunk index"),
            }
        }
        self.chunk_index_cached(entry, cache)
    }

    /// `Ok(None)` when the server has no delta; `Err` with the reason when one came and
    /// could not be used.
    fn index_by_delta(
        &self,
        entry: &Entry,
        base_entry: &Entry,
        base: &VerifiedIndex,
    ) -> std::result::Result<Option<VerifiedIndex>, String> {
        let rel = chunks::delta_path(&base_entry.hash, &entry.hash);
        let url = self.content.url(&rel);
        let packed = match self
            .content
            .fetch_if_exists(&rel, archive::compressed_bound(limits::CHUNK_INDEX))
        {
            Ok(Some(packed)) => packed,
            // Not there, or the server failed: the whole index is the way.
            Ok(None) | Err(_) => return Ok(None),
        };
        let unusable = |why: String| format!("chunk index delta {url}: {why}");
        let mut text = Vec::new();
        archive::decompress(&packed[..])
            .and_then(|r| r.take(limits::CHUNK_INDEX + 1).read_to_end(&mut text))
            .map_err(|e| unusable(e.to_string()))?;
        let index = Delta::parse(&text)
            .and_then(|d| d.apply(base.index()))
            .map_err(unusable)?;
        verify(entry, index.serialize().as_bytes())
            .map(Some)
            .map_err(unusable)
    }
}

fn check_kind(entry: &Entry) -> Result<()> {
    if entry.image() != Some(ImageKind::CoreIndex) {
        return Err(Error::Archive {
            what: entry.path.clone(),
            reason: "is not a chunk index".into(),
        });
    }
    Ok(())
}
