//! The slot record (`<statedir>/slots.json`): what chainup last did to each slot, and
//! the two read-mostly operations built on it, `info` (slot status) and `mark-good`.
//!
//! The record names, per slot, the version it holds, the image hashes and how far the
//! install got (`invalid` → `written` → `installed`). It is replaced atomically (temporary,
//! fsync, rename, fsync of the directory) after each step has become durable on disk, so
//! it never claims more than is there. Which boot entry belongs to which slot follows from
//! it: entries are named by version, and a slot's entry is the one of the version it holds.
//! A slot chainup never wrote (the one provisioned at install time) has no record until the
//! first image update, which records it as holding the root's version then.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::install::esp::{BootEntry, Esp};
use crate::slots::{Slot, Slots};
use crate::state::StateDir;
use crate::{Error, Result};

const RECORD: &str = "slots.json";

/// How far an install into a slot got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// Being written: its boot entry was removed; its bytes are not to be trusted.
    Invalid,
    /// Holds the verified core image (read back), but has no boot entry yet.
    Written,
    /// Holds the core image and its boot entry is on the ESP.
    Installed,
}

/// What one slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotContent {
    pub state: SlotState,
    pub version: u32,
    /// Hash of the core image, when known (hex).
    pub core: Option<String>,
    /// Hash of the EFI binary, when known (hex).
    pub efiboot: Option<String>,
    /// How the core image got there, for `info` (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferRecord>,
}

impl SlotContent {
    /// The same release and images in the same state, however they were transferred.
    pub fn holds(&self, other: &SlotContent) -> bool {
        (self.state, self.version, &self.core, &self.efiboot)
            == (other.state, other.version, &other.core, &other.efiboot)
    }
}

/// Where the bytes of a core image came from when chainup wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    /// `chunks` (assembled from the seed and the chunk store) or `full` (the fullfile).
    pub method: String,
    /// The image size.
    pub size: u64,
    /// Bytes taken from the running slot, or already in place in the slot written.
    pub reused: u64,
    /// Bytes downloaded (uncompressed).
    pub downloaded: u64,
    /// Bytes on the wire for them, when known (compressed chunks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<u64>,
}

impl TransferRecord {
    /// One line for people: how much was reused and how much came from the network.
    pub fn describe(&self) -> String {
        let wire = self
            .wire
            .map(|w| format!(" ({w} bytes on the wire)"))
            .unwrap_or_default();
        format!(
            "{} bytes from {}: {} reused from the slots, {} downloaded{wire}",
            self.size,
            if self.method == "chunks" {
                "chunks"
            } else {
                "the full image"
            },
            self.reused,
            self.downloaded
        )
    }
}

/// The record of both slots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotRecord {
    #[serde(default)]
    pub a: Option<SlotContent>,
    #[serde(default)]
    pub b: Option<SlotContent>,
}

impl SlotRecord {
    /// Reads the record; none yet is an empty record.
    pub fn load(state: &StateDir) -> Result<SlotRecord> {
        let path = state.path().join(RECORD);
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::Config {
                path,
                reason: format!("unreadable slot record: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SlotRecord::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Replaces the record durably.
    pub fn save(&self, state: &StateDir) -> Result<()> {
        let data = serde_json::to_vec_pretty(self).expect("record serialises");
        crate::fsutil::write_atomic(&state.path().join(RECORD), &data)
    }

    /// What a slot holds, if recorded.
    pub fn get(&self, slot: Slot) -> Option<&SlotContent> {
        match slot {
            Slot::A => self.a.as_ref(),
            Slot::B => self.b.as_ref(),
        }
    }

    /// Records what a slot holds.
    pub fn set(&mut self, slot: Slot, content: SlotContent) {
        match slot {
            Slot::A => self.a = Some(content),
            Slot::B => self.b = Some(content),
        }
    }
}

/// The version the running slot holds: recorded, or for a slot chainup never wrote, the
/// root's version. A running slot recorded as half-written is refused: its entry cannot
/// be told from the others.
pub fn running_version(
    record: &SlotRecord,
    active: Slot,
    root_version: Option<u32>,
) -> Result<u32> {
    match record.get(active) {
        Some(c) if c.state == SlotState::Installed => Ok(c.version),
        Some(c) => Err(Error::Slot(format!(
            "the running slot {active} is recorded as {:?} with version {}; cannot tell its boot entry",
            c.state, c.version
        ))),
        None => root_version.ok_or_else(|| {
            Error::Slot(format!(
                "slot {active} has no record and the root has no version; cannot tell its boot entry"
            ))
        }),
    }
}

/// What `mark-good` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkGood {
    /// The counter was dropped: `from` is now `to`.
    Marked { from: String, to: String },
    /// The running entry had no counter.
    AlreadyGood(String),
}

/// Drops the boot counter of the running slot's entry (docs/ab.md, step 5).
pub fn mark_good(slots: &Slots, state: &StateDir, root_version: Option<u32>) -> Result<MarkGood> {
    let active = slots.active()?;
    let record = SlotRecord::load(state)?;
    let version = running_version(&record, active.slot, root_version)?;
    let esp = Esp::open_existing(&slots.esp, &slots.product)?
        .ok_or_else(|| no_entry(slots, active.slot, version))?;
    let mine: Vec<BootEntry> = esp
        .entries()?
        .into_iter()
        .filter(|e| e.version == version)
        .collect();
    match mine.as_slice() {
        [] => Err(no_entry(slots, active.slot, version)),
        [one] if one.is_good() => Ok(MarkGood::AlreadyGood(one.name.clone())),
        [one] => Ok(MarkGood::Marked {
            from: one.name.clone(),
            to: esp.mark_good(one)?,
        }),
        many => Err(Error::Slot(format!(
            "several boot entries for version {version} of slot {}: {}",
            active.slot,
            many.iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn no_entry(slots: &Slots, slot: Slot, version: u32) -> Error {
    Error::Slot(format!(
        "no boot entry {}-{version}[+N].efi for the running slot {slot} in {}",
        slots.product,
        slots.esp.join(crate::install::esp::ENTRY_DIR).display()
    ))
}

/// The slots as `info` shows them.
#[derive(Debug, Clone)]
pub struct SlotsStatus {
    /// The running slot, or why it cannot be told.
    pub active: Result<crate::slots::Active, String>,
    pub record: SlotRecord,
    /// Our product's entries on the ESP.
    pub entries: Vec<BootEntry>,
}

/// Reads the slot status without changing anything.
pub fn status(slots: &Slots, state: &StateDir) -> Result<SlotsStatus> {
    let entries = match Esp::open_existing(&slots.esp, &slots.product)? {
        Some(esp) => esp.entries()?,
        None => Vec::new(),
    };
    Ok(SlotsStatus {
        active: slots.active().map_err(|e| e.to_string()),
        record: SlotRecord::load(state)?,
        entries,
    })
}

/// One line per slot for `info`: path, role, recorded content.
pub fn describe(slots: &Slots, status: &SlotsStatus, slot: Slot) -> String {
    let role = match &status.active {
        Ok(a) if a.slot == slot => " (active)",
        Ok(_) => " (inactive)",
        Err(_) => "",
    };
    let content = match status.record.get(slot) {
        Some(c) => {
            let how = c
                .transfer
                .as_ref()
                .map(|t| format!("; core image written from {}", t.describe()))
                .unwrap_or_default();
            format!("version {} ({:?}){how}", c.version, c.state).to_lowercase()
        }
        None => "not written by chainup".into(),
    };
    format!(
        "Slot {slot}: {}{role}: {content}",
        display(slots.path(slot))
    )
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_running_version() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut r = SlotRecord::load(&state).unwrap();
        assert_eq!(r, SlotRecord::default());
        assert_eq!(running_version(&r, Slot::A, Some(10)).unwrap(), 10);
        r.set(
            Slot::B,
            SlotContent {
                state: SlotState::Written,
                version: 20,
                core: Some("ab".into()),
                efiboot: None,
                transfer: None,
            },
        );
        r.save(&state).unwrap();
        let back = SlotRecord::load(&state).unwrap();
        assert_eq!(back, r);
        assert!(running_version(&back, Slot::B, Some(10)).is_err());
        assert!(running_version(&back, Slot::A, None).is_err());
    }
}
