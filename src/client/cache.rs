//! swupd's `os-install --statedir-cache`: another state directory's MoM, manifests and
//! staged files spare their download, so a release can be installed with no network. The
//! other directory is chainup's (`staged/`) or swupd's (`cache/<url>/manifest/<V>/` and
//! `cache/<url>/staged/`, `<url>` the content URL with `:` and `/` as `_`). Nothing is
//! trusted for being there: the MoM must verify against the trust store, each manifest
//! must hash to the MoM's line, and the chain hashes every staged file before using it
//! (`reuse_staged`), so a wrong or tampered cache costs a download, never a wrong file.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Client;
use crate::chain::{CachedText, VerifiedManifest};
use crate::hash::Meta;
use crate::limits;
use crate::manifest::EntryType;
use crate::progress::Event;
use crate::state::parse_cached;
use crate::{Error, Result};

impl Client<'_> {
    /// Copies the regular files of `manifests` that `cache/staged/` holds (named by
    /// hash, as swupd and chainup stage them) into this state directory's staging area,
    /// with their mode and, where allowed, their owner: files, directories and symlinks, as staged.
    pub(super) fn seed_from_cache(
        &self,
        cache: &Path,
        manifests: &[VerifiedManifest],
    ) -> Result<()> {
        let places: Vec<PathBuf> = [cache.join("staged"), self.swupd_cache(cache).join("staged")]
            .into_iter()
            .filter(|d| d.is_dir())
            .collect();
        if places.is_empty() {
            self.observer.event(Event::Warning(format!(
                "--statedir-cache {}: no staged files there; downloading everything",
                cache.display()
            )));
            return Ok(());
        }
        let staging = self.state.staged()?;
        let mut copied = 0usize;
        for entry in manifests.iter().flat_map(|m| m.manifest().entries.iter()) {
            if !entry.is_present() || entry.image().is_some() {
                continue;
            }
            let name = entry.hash.to_hex();
            let dst = staging.join(&name);
            for from in &places {
                if std::fs::symlink_metadata(&dst).is_ok() {
                    break;
                }
                let src = from.join(&name);
                if copy_object(&src, &dst, entry.etype).map_err(|e| Error::io(&src, e))? {
                    copied += 1;
                }
            }
        }
        self.info(format!(
            "{copied} files taken from the state directory cache {}",
            cache.display()
        ));
        Ok(())
    }
}

impl Client<'_> {
    /// swupd's cache directory for this client's content URL under `statedir`.
    fn swupd_cache(&self, statedir: &Path) -> PathBuf {
        let url = self.chain.content().url("");
        statedir
            .join("cache")
            .join(crate::state::url_dir_name(&url))
    }

    /// Takes the MoM of `version` and the manifests it names from the swupd layout of the
    /// state directory `cache` into this state directory's manifest cache, each only once
    /// it has verified (the MoM against the trust store, a manifest against the MoM's
    /// line). What is missing or does not verify is left to be downloaded, with a warning
    /// for what does not verify.
    pub(super) fn seed_manifests_from_cache(&self, cache: &Path, version: u32) {
        let dir = self.swupd_cache(cache).join("manifest");
        let mom_path = dir.join(version.to_string()).join("Manifest.MoM");
        let Some((text, _)) = read_regular(&mom_path, limits::MOM_TEXT) else {
            return;
        };
        let Some((sig, _)) = read_regular(&mom_path.with_extension("MoM.sig"), limits::SIGNATURE)
        else {
            return;
        };
        let mom = match self.chain.cached_mom(version, text, sig, &mom_path) {
            Ok(mom) => mom,
            Err(e) => {
                self.observer.event(Event::Warning(format!(
                    "--statedir-cache: {} is not used: {e}",
                    mom_path.display()
                )));
                return;
            }
        };
        let mut taken = 0usize;
        let mut stored = match mom.signed_text() {
            (text, Some(sig)) => self.cache.store_mom(version, text, sig),
            (_, None) => return,
        };
        for line in mom.bundles() {
            let path = dir
                .join(line.version.to_string())
                .join(format!("Manifest.{}", line.path));
            let Some((text, md)) = read_regular(&path, limits::MANIFEST_TEXT) else {
                continue;
            };
            // chainup's own cache (a state directory it used) or swupd's bare text,
            // hashed with the file's own metadata as swupd does.
            let cached = parse_cached(&text).unwrap_or_else(|| CachedText {
                text,
                meta: Meta::from_metadata(&md),
            });
            let (text, meta) = (cached.text.clone(), cached.meta);
            match self.chain.cached_manifest(&mom, &line.path, cached, &path) {
                Ok(_) => {
                    stored = stored.and_then(|()| {
                        self.cache
                            .store_manifest(&line.path, line.version, &text, &meta)
                    });
                    taken += 1;
                }
                Err(e) => self.observer.event(Event::Warning(format!(
                    "--statedir-cache: {} is not used: {e}",
                    path.display()
                ))),
            }
        }
        match stored {
            Ok(()) => self.info(format!(
                "The MoM of version {version} and {taken} manifests taken from the state directory cache {}",
                cache.display()
            )),
            Err(e) => log::warn!("cannot keep the manifests of {}: {e}", cache.display()),
        }
    }
}

/// The bytes (at most `cap`) and metadata of the regular file `path`, read through one
/// descriptor; `None` when it is missing, not a regular file, unreadable or too big.
fn read_regular(path: &Path, cap: u64) -> Option<(Vec<u8>, std::fs::Metadata)> {
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let md = file.metadata().ok()?;
    if !md.is_file() {
        return None;
    }
    let mut data = Vec::new();
    file.take(cap + 1).read_to_end(&mut data).ok()?;
    (data.len() as u64 <= cap).then_some((data, md))
}

/// Copies one staged object of type `etype` from `src` to `dst` through a temporary
/// name; false when the cache has no such object.
fn copy_object(src: &Path, dst: &Path, etype: EntryType) -> std::io::Result<bool> {
    let Ok(md) = std::fs::symlink_metadata(src) else {
        return Ok(false);
    };
    let tmp = dst.with_extension("cache");
    let remove = |tmp: &Path| {
        let _ = std::fs::remove_dir_all(tmp);
        let _ = std::fs::remove_file(tmp);
    };
    remove(&tmp);
    // Nothing is left under the temporary name when the copy fails part way.
    let copied = place_object(src, &md, &tmp, etype).and_then(|placed| match placed {
        true => std::fs::rename(&tmp, dst).map(|()| true),
        false => Ok(false),
    });
    if !matches!(copied, Ok(true)) {
        remove(&tmp);
    }
    copied
}

/// [`copy_object`]'s copy of `src` (whose metadata is `md`) to `tmp`; false when the
/// cache's object is not of type `etype`.
fn place_object(
    src: &Path,
    md: &std::fs::Metadata,
    tmp: &Path,
    etype: EntryType,
) -> std::io::Result<bool> {
    match etype {
        EntryType::File if md.is_file() => {
            std::fs::copy(src, tmp)?;
        }
        EntryType::Dir if md.is_dir() => {
            std::fs::create_dir(tmp)?;
            std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
        EntryType::Link if md.file_type().is_symlink() => {
            std::os::unix::fs::symlink(std::fs::read_link(src)?, tmp)?;
        }
        _ => return Ok(false),
    }
    // Only root may give an object away; otherwise the hash decides (an object with the
    // wrong owner is downloaded again).
    let _ = std::os::unix::fs::lchown(tmp, Some(md.uid()), Some(md.gid()));
    if etype == EntryType::Dir {
        // chown may clear set-id bits; the mode is set again after it.
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    Ok(true)
}
