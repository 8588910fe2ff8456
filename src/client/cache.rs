//! swupd's `os-install --statedir-cache`: another state directory's staged files spare
//! their download. They are only copied into the staging area; the chain hashes every
//! staged file before using it (`reuse_staged`), so a wrong or tampered cache costs a
//! download, never a wrong file.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::Client;
use crate::chain::VerifiedManifest;
use crate::manifest::EntryType;
use crate::progress::Event;
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
        let from = cache.join("staged");
        if !from.is_dir() {
            self.observer.event(Event::Warning(format!(
                "--statedir-cache {}: no staged/ directory there; downloading everything",
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
            let (src, dst) = (from.join(&name), staging.join(&name));
            if std::fs::symlink_metadata(&dst).is_ok() {
                continue;
            }
            if copy_object(&src, &dst, entry.etype).map_err(|e| Error::io(&src, e))? {
                copied += 1;
            }
        }
        self.info(format!(
            "{copied} files taken from the state directory cache {}",
            cache.display()
        ));
        Ok(())
    }
}

/// Copies one staged object of type `etype` from `src` to `dst` through a temporary
/// name; false when the cache has no such object.
fn copy_object(src: &Path, dst: &Path, etype: EntryType) -> std::io::Result<bool> {
    let Ok(md) = std::fs::symlink_metadata(src) else {
        return Ok(false);
    };
    let tmp = dst.with_extension("cache");
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_file(&tmp);
    match etype {
        EntryType::File if md.is_file() => {
            std::fs::copy(src, &tmp)?;
        }
        EntryType::Dir if md.is_dir() => {
            std::fs::create_dir(&tmp)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
        EntryType::Link if md.file_type().is_symlink() => {
            std::os::unix::fs::symlink(std::fs::read_link(src)?, &tmp)?;
        }
        _ => return Ok(false),
    }
    // Only root may give an object away; otherwise the hash decides (an object with the
    // wrong owner is downloaded again).
    let _ = std::os::unix::fs::lchown(&tmp, Some(md.uid()), Some(md.gid()));
    if etype == EntryType::Dir {
        // chown may clear set-id bits; the mode is set again after it.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    std::fs::rename(&tmp, dst)?;
    Ok(true)
}
