//! `diagnose --images`: the running A/B slot and its EFI binary against the verified
//! manifests of the version the slot holds, read (streaming) from the slot and the ESP.
//!
//! The slot holds the version the slot record says (the root may already hold a newer one
//! waiting for a reboot), else the root's own version. The image size, which the hash
//! covers, comes from the fullfile's tar header; a server lying about it only makes the
//! hash differ.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::client::Client;
use crate::hash::{self, Hash, Hasher, Meta};
use crate::install::boot::SlotRecord;
use crate::install::esp::Esp;
use crate::manifest::{EntryType, ImageKind};
use crate::plan::FileSet;
use crate::{Error, Result};

use super::{Finding, Problem};

/// What the image check looked at and found.
pub(super) struct Checked {
    pub checked: usize,
    pub findings: Vec<Finding>,
}

/// Checks the running slot's core image and EFI binary.
pub(super) fn check(client: &Client, installed: &[String]) -> Result<Checked> {
    let slots = client
        .slots()?
        .ok_or_else(|| Error::Slot("--images needs a [slots] table in the config".into()))?;
    let active = slots.active()?;
    let recorded = SlotRecord::load(client.state())?
        .get(active.slot)
        .map(|c| c.version);
    let version = match recorded {
        Some(v) => v,
        None => client.current_version()?,
    };
    // Signed and of the right version, but older than the high-water mark when the root
    // already moved on: fine for a read-only check of what the slot holds.
    let mom = client.chain().mom(version)?;
    let manifests = client.resolve(&mom, installed, false)?;
    let set = FileSet::from_manifests(&manifests);
    let mut out = Checked {
        checked: 0,
        findings: Vec::new(),
    };
    let slot_name = format!(
        "slot {} ({})",
        active.slot,
        slots.path(active.slot).display()
    );
    if let Some(core) = set.image(ImageKind::Core) {
        out.checked += 1;
        let size = client
            .chain()
            .open_image(core, client.content_bound(&manifests))?
            .size();
        let path = slots.path(active.slot);
        let mut slot = File::open(path).map_err(|e| Error::io(path, e))?;
        let actual = image_hash(&mut slot.by_ref().take(size), size, path)?;
        if actual != core.hash {
            out.findings.push(mismatch(
                "/core", core.hash, actual, size, &slot_name, version,
            ));
        }
    }
    if let Some(efi) = set.image(ImageKind::EfiBoot) {
        out.checked += 1;
        let entry = Esp::open_existing(&slots.esp, &slots.product)?
            .map(|esp| esp.entries())
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.version == version);
        match entry {
            None => {
                let mut f = Finding::new("/efiboot", Problem::Missing, Some(EntryType::File));
                f.details.push(format!(
                    "no boot entry for version {version} on {}",
                    slots.esp.display()
                ));
                out.findings.push(f);
            }
            Some(entry) => {
                let path = slots.esp.join("EFI/Linux").join(&entry.name);
                let size = std::fs::metadata(&path)
                    .map_err(|e| Error::io(&path, e))?
                    .len();
                let mut file = File::open(&path).map_err(|e| Error::io(&path, e))?;
                let actual = image_hash(&mut file, size, &path)?;
                if actual != efi.hash {
                    let what = format!("boot entry {}", path.display());
                    out.findings
                        .push(mismatch("/efiboot", efi.hash, actual, size, &what, version));
                }
            }
        }
    }
    Ok(out)
}

/// The swupd hash of `size` bytes of an image payload (hashed as a 0644 root file).
fn image_hash(reader: &mut impl Read, size: u64, path: &Path) -> Result<Hash> {
    let mut hasher = Hasher::new(&Meta::file(0o644, 0, 0, size), &[]);
    let read = hash::hash_reader(&mut hasher, reader).map_err(|e| Error::io(path, e))?;
    if read != size {
        return Err(Error::Slot(format!(
            "{} holds {read} bytes, less than the {size}-byte image",
            path.display()
        )));
    }
    Ok(hasher.finish())
}

fn mismatch(path: &str, expected: Hash, actual: Hash, size: u64, where_: &str, v: u32) -> Finding {
    let mut f = Finding::new(
        path,
        Problem::Mismatch {
            expected,
            actual,
            found: Meta::file(0o644, 0, 0, size),
        },
        Some(EntryType::File),
    );
    f.details
        .push(format!("{where_} does not hold the image of version {v}"));
    f
}
