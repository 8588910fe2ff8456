//! The A/B image install of docs/ab.md, as an explicit state machine (updog style):
//!
//! 1. `Fits`: the core image (its size read from the fullfile's tar header) fits the
//!    inactive slot, which is open for writing: nothing has been touched yet;
//! 2. `Unbootable`: every boot entry but the running slot's is gone from the ESP, durably;
//! 3. `Written`: the image was streamed download → decompress → hash → slot, fsynced,
//!    read back from the device and hashed again (the read-back follows the writer a few
//!    blocks behind, as fast as the disk allows; [`crate::install::slot_io`] says why that
//!    is as strong as reading the slot after the fsync);
//! 4. `Bootable`: the EFI binary, staged and verified first, was copied to the ESP under a
//!    temporary name, fsynced and renamed to `<product>-<version>+3.efi`, directory fsynced.
//!
//! Streaming means the slot receives bytes before the final hash is known. That is
//! acceptable only because the slot is the inactive one and step 2 made it unbootable
//! first: until step 4 nothing on the ESP points at it, so unverified bytes in it are never
//! run. On a mismatch the slot stays unbootable and the install fails (exit 38). The
//! running slot is never opened for writing, and its entry is never removed: power loss at
//! any point leaves it bootable as the fallback. Each step is recorded in the slot record
//! (see [`crate::install::boot`]) only after it is durable.

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

use crate::chain::{Chain, ChunkPlan, ImageStream, IndexCache, SlotReads, Transfer, VerifiedImage};
use crate::failpoint;
use crate::hash::Hash;
use crate::install::boot::{running_version, SlotContent, SlotRecord, SlotState, TransferRecord};
use crate::install::esp::Esp;
use crate::install::slot_io::{read_behind, SlotWriter, READ_BEHIND};
use crate::manifest::Entry;
use crate::progress::{Event, Observer};
use crate::slots::{Identity, Slot, Slots};
use crate::state::StateDir;
use crate::{Error, Result};

/// The image payloads of one release.
pub struct Payloads<'a> {
    pub core: &'a Entry,
    pub efiboot: &'a Entry,
    /// The chunk index of `core` (`/core.index`), when the release offers one.
    pub core_index: Option<&'a Entry>,
    /// The release they belong to: the boot entry's version.
    pub version: u32,
}

/// Everything an image install reads from.
pub struct Context<'a> {
    pub chain: &'a Chain,
    pub slots: &'a Slots,
    pub state: &'a StateDir,
    pub observer: &'a dyn Observer,
    /// The root's version now: what a running slot chainup never wrote holds.
    pub root_version: Option<u32>,
    /// The image hashes of the root's version (core, efiboot), for the same purpose.
    pub root_images: (Option<Hash>, Option<Hash>),
    /// The chunk index of the root's version's core image: the seed's index when the
    /// running slot holds that image.
    pub root_core_index: Option<&'a Entry>,
    /// Chunk downloads at a time (`-W`).
    pub workers: usize,
    /// Cap on each download and image.
    pub bound: u64,
}

/// Below this share of the new image offered by the seed (in percent), the full image is
/// streamed instead: chunks compress worse one by one and cost a request each, so a seed
/// that saves little is not worth it.
const MIN_SEED_PERCENT: u64 = 20;

/// What an image install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The images went into `slot`, bootable through `entry` after a reboot.
    Installed { slot: Slot, entry: String },
    /// The running slot already holds these images.
    Running { slot: Slot },
    /// The inactive slot already holds them, with its entry; waiting for a reboot.
    Pending { slot: Slot, entry: String },
}

/// The inactive slot, opened for writing after checking it is not the running one.
struct SlotFile {
    file: File,
    path: PathBuf,
    identity: Identity,
}

/// Where an install stands; each step moves forward or fails, never back.
enum Step {
    /// Nothing checked or touched.
    Start,
    /// 1. The image fits the inactive slot.
    Fits {
        stream: ImageStream,
        target: SlotFile,
        how: How,
    },
    /// 2. The inactive slot has no boot entry.
    Unbootable {
        stream: ImageStream,
        target: SlotFile,
        how: How,
    },
    /// 3. The slot holds the verified image, durably.
    Written { image: VerifiedImage },
    /// 4. Its boot entry is in place, with three tries.
    Bootable { entry: String },
}

/// How the core image reaches the slot.
enum How {
    /// The fullfile, streamed.
    Full,
    /// Assembled from chunks (docs/chunks.md), counting where they came from.
    Chunks(Arc<Transfer>),
}

/// One install into the inactive slot.
struct Install<'a> {
    ctx: &'a Context<'a>,
    p: &'a Payloads<'a>,
    esp: Esp,
    record: SlotRecord,
    active: Slot,
    inactive: Slot,
    ids: [Identity; 2],
    /// The running slot's version: its boot entry is the one kept.
    keep: u32,
    /// Where the core image's bytes came from, once written.
    transfer: Option<TransferRecord>,
}

/// Installs `p` into the inactive slot (or finds it already there).
pub fn install(ctx: &Context<'_>, p: &Payloads<'_>) -> Result<Outcome> {
    let slots = ctx.slots;
    let active = slots.active()?;
    let ids = slots.identities()?;
    let (active, inactive) = (active.slot, active.slot.other());
    let esp = Esp::open(&slots.esp, &slots.product)?;
    let stale = esp.clean_temporaries()?;
    if stale > 0 {
        log::warn!(
            "removed {stale} stale temporaries from {}",
            esp.path().display()
        );
    }
    let mut record = SlotRecord::load(ctx.state)?;
    if record.get(active).is_none() {
        // The first image update: the running slot was provisioned, not written by us.
        let version = ctx.root_version.ok_or_else(|| {
            Error::Slot(format!(
                "slot {active} has no record and the root has no version"
            ))
        })?;
        record.set(
            active,
            SlotContent {
                state: SlotState::Installed,
                version,
                core: ctx.root_images.0.map(|h| h.to_hex()),
                efiboot: ctx.root_images.1.map(|h| h.to_hex()),
                transfer: None,
            },
        );
        record.save(ctx.state)?;
    }
    let keep = running_version(&record, active, ctx.root_version)?;
    let wanted = content(p, SlotState::Installed);
    let running = record.get(active).expect("set above");
    if running.core == wanted.core && running.efiboot == wanted.efiboot {
        cache_index(ctx, p);
        return Ok(Outcome::Running { slot: active });
    }
    if keep == p.version {
        return Err(Error::Slot(format!(
            "the running slot {active} holds version {keep} with other images; its boot entry \
             would share a name with the new one"
        )));
    }
    let entries = esp.entries()?;
    if record.get(inactive).is_some_and(|c| c.holds(&wanted)) {
        if let Some(e) = entries.iter().find(|e| e.version == p.version) {
            return Ok(Outcome::Pending {
                slot: inactive,
                entry: e.name.clone(),
            });
        }
    }
    // The inactive slot is the fallback while the running one is on trial: keep it.
    if let Some(e) = entries.iter().find(|e| e.version == keep && !e.is_good()) {
        return Err(Error::Slot(format!(
            "the running slot {active} boots from {}, which is still on trial; run `chainup \
             mark-good` once this boot is known good, then update",
            e.name
        )));
    }
    if !entries.iter().any(|e| e.version == keep) {
        return Err(Error::Slot(format!(
            "{} has no boot entry {}-{keep}[+N].efi for the running slot {active}; refusing to \
             change the ESP without knowing which entry is the fallback",
            esp.path().display(),
            slots.product
        )));
    }
    let mut job = Install {
        ctx,
        p,
        esp,
        record,
        active,
        inactive,
        ids,
        keep,
        transfer: None,
    };
    let mut step = Step::Start;
    loop {
        step = match job.next(step)? {
            Step::Bootable { entry } => {
                return Ok(Outcome::Installed {
                    slot: inactive,
                    entry,
                })
            }
            other => other,
        };
    }
}

/// Keeps the chunk index of `p`'s core image (a slot now holds that image) in the state
/// directory, so that the update that next uses this slot as its seed does not download
/// it (docs/chunks.md). Best effort: without it, that update downloads the index.
fn cache_index(ctx: &Context<'_>, p: &Payloads<'_>) {
    if let Some(entry) = p.core_index {
        keep_index(ctx.chain, ctx.slots, ctx.state, entry, ctx.root_core_index);
    }
}

/// Keeps the chunk index `entry` names in the state directory (downloading it unless it
/// is there), and drops every other cached index but `also`'s: what the slots hold. Used
/// too by os-install, whose release's core image a provisioned running slot holds. Best
/// effort, and harmless if the slot holds something else: an index is used as a seed only
/// when its image is the one the slot record names.
pub fn keep_index(
    chain: &Chain,
    slots: &Slots,
    state: &StateDir,
    entry: &Entry,
    also: Option<&Entry>,
) {
    if !slots.chunks {
        return;
    }
    let cache = IndexCache::new(state.path());
    if let Err(e) = chain.chunk_index_cached(entry, &cache) {
        log::warn!("cannot keep the chunk index {}: {e}", entry.hash);
    }
    let keep: Vec<Hash> = [Some(entry), also]
        .into_iter()
        .flatten()
        .map(|e| e.hash)
        .collect();
    cache.keep_only(&keep);
}

fn content(p: &Payloads<'_>, state: SlotState) -> SlotContent {
    SlotContent {
        state,
        version: p.version,
        core: Some(p.core.hash.to_hex()),
        efiboot: Some(p.efiboot.hash.to_hex()),
        transfer: None,
    }
}

impl Install<'_> {
    fn info(&self, msg: String) {
        self.ctx.observer.event(Event::Info(msg));
    }

    fn record(&mut self, state: SlotState) -> Result<()> {
        let c = SlotContent {
            transfer: self.transfer.clone(),
            ..content(self.p, state)
        };
        self.record.set(self.inactive, c);
        self.record.save(self.ctx.state)
    }

    /// Performs one step.
    fn next(&mut self, step: Step) -> Result<Step> {
        match step {
            Step::Start => {
                let target = self.open_inactive()?;
                let (stream, how) = self.open_core(&target)?;
                let capacity = Slots::capacity(&target.file, &target.path)?;
                if stream.size() > capacity {
                    return Err(Error::Slot(format!(
                        "the core image of version {} is {} bytes, but slot {} ({}) holds only {capacity}",
                        self.p.version,
                        stream.size(),
                        self.inactive,
                        target.path.display()
                    )));
                }
                Ok(Step::Fits {
                    stream,
                    target,
                    how,
                })
            }
            Step::Fits {
                stream,
                target,
                how,
            } => {
                for e in self.esp.entries()? {
                    if e.version != self.keep {
                        self.info(format!("Removing boot entry {}", e.name));
                        self.esp.remove(&e)?;
                    }
                }
                self.esp.sync()?;
                failpoint::point("img::entries-removed")?;
                self.record(SlotState::Invalid)?;
                failpoint::point("img::invalidated")?;
                Ok(Step::Unbootable {
                    stream,
                    target,
                    how,
                })
            }
            Step::Unbootable {
                stream,
                target,
                how,
            } => {
                self.info(format!(
                    "Writing the core image of version {} ({} bytes) into slot {} ({})",
                    self.p.version,
                    stream.size(),
                    self.inactive,
                    target.path.display()
                ));
                let image = self.write_and_check(stream, &target)?;
                failpoint::point("img::checked")?;
                self.report(&how, image.size());
                if matches!(how, How::Full) {
                    cache_index(self.ctx, self.p);
                }
                self.record(SlotState::Written)?;
                failpoint::point("img::written")?;
                Ok(Step::Written { image })
            }
            Step::Written { image } => {
                log::debug!("slot {} holds core {}", self.inactive, image.hash());
                let staging = self.ctx.state.staged()?;
                let efi = self
                    .ctx
                    .chain
                    .stage_image(self.p.efiboot, &staging, self.ctx.bound)?;
                let binary = File::open(efi.path()).map_err(|e| Error::io(efi.path(), e))?;
                let entry = self.esp.install(binary, self.p.version)?;
                failpoint::point("img::entry")?;
                self.record(SlotState::Installed)?;
                failpoint::point("img::installed")?;
                self.info(format!(
                    "Slot {} holds version {}; boot entry {entry} added (the running slot {} keeps its entry)",
                    self.inactive, self.p.version, self.active
                ));
                Ok(Step::Bootable { entry })
            }
            Step::Bootable { entry } => Ok(Step::Bootable { entry }),
        }
    }

    /// The core image as a stream: assembled from chunks when the release has a chunk
    /// index, the running slot holds an image with one and it offers enough of the new
    /// image; else the fullfile. An index that is unavailable (not on the server) falls back
    /// to the fullfile; one that does not match its hash is refused.
    fn open_core(&self, target: &SlotFile) -> Result<(ImageStream, How)> {
        match self.open_chunked(target) {
            Ok(Some(chunked)) => return Ok(chunked),
            Ok(None) => {}
            Err(e @ (Error::Download { .. } | Error::Connect { .. })) => {
                self.ctx.observer.event(Event::Warning(format!(
                    "chunks unavailable ({e}); downloading the full core image"
                )));
            }
            Err(e) => return Err(e),
        }
        let stream = self.ctx.chain.open_image(self.p.core, self.ctx.bound)?;
        Ok((stream, How::Full))
    }

    fn open_chunked(&self, target: &SlotFile) -> Result<Option<(ImageStream, How)>> {
        let chain = self.ctx.chain;
        let (Some(index_entry), true) = (self.p.core_index, self.ctx.slots.chunks) else {
            return Ok(None);
        };
        let running_core = self.record.get(self.active).and_then(|c| c.core.clone());
        let (Some(seed_entry), Some(running_core)) = (self.ctx.root_core_index, running_core)
        else {
            self.info(format!(
                "No chunk index for the image slot {} holds: downloading the full core image",
                self.active
            ));
            return Ok(None);
        };
        let cache = IndexCache::new(self.ctx.state.path());
        let seed = chain.chunk_index_cached(seed_entry, &cache)?;
        if seed.image().to_hex() != running_core {
            self.info(format!(
                "Slot {} holds another image than the installed release's: downloading the full core image",
                self.active
            ));
            return Ok(None);
        }
        let index = chain.chunk_index_from(index_entry, seed_entry, &seed, &cache)?;
        cache.keep_only(&[seed_entry.hash, index_entry.hash]);
        let plan = ChunkPlan::new(&index, Some(&seed));
        drop(seed);
        if plan.seed_bytes().saturating_mul(100) < plan.size().saturating_mul(MIN_SEED_PERCENT) {
            self.info(format!(
                "Slot {} offers {} of the {} bytes of the new core image: downloading the full image",
                self.active,
                plan.seed_bytes(),
                plan.size()
            ));
            return Ok(None);
        }
        self.info(format!(
            "Assembling the core image from {} chunks: {} of {} bytes from slot {}, the rest from the chunk store",
            plan.chunk_count(),
            plan.seed_bytes(),
            plan.size(),
            self.active
        ));
        let reads = SlotReads {
            seed: self.open_running()?,
            seed_path: self.ctx.slots.path(self.active).to_path_buf(),
            target: self.open_copy(target)?,
        };
        let transfer = Arc::new(Transfer::default());
        let stream = chain.open_chunked(
            self.p.core,
            &index,
            plan,
            reads,
            self.ctx.workers,
            Arc::clone(&transfer),
        )?;
        Ok(Some((stream, How::Chunks(transfer))))
    }

    /// Opens the running slot read-only (the seed), checking it is the running slot.
    fn open_running(&self) -> Result<File> {
        let path = self.ctx.slots.path(self.active);
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if Identity::of_file(&file, path)? != self.ids[self.active as usize] {
            return Err(Error::Slot(format!(
                "{} changed while it was opened (slot {})",
                path.display(),
                self.active
            )));
        }
        Ok(file)
    }

    /// Records and reports where the written image's bytes came from.
    fn report(&mut self, how: &How, size: u64) {
        let t = match how {
            How::Full => TransferRecord {
                method: "full".into(),
                size,
                reused: 0,
                downloaded: size,
                wire: None,
            },
            How::Chunks(t) => {
                let damaged = t.seed_damaged.load(Relaxed);
                if damaged > 0 {
                    self.ctx.observer.event(Event::Warning(format!(
                        "{damaged} chunks of slot {} did not match its index (is it damaged?); they were downloaded",
                        self.active
                    )));
                }
                TransferRecord {
                    method: "chunks".into(),
                    size,
                    reused: t.seed.load(Relaxed) + t.in_place.load(Relaxed),
                    downloaded: t.downloaded.load(Relaxed),
                    wire: Some(t.wire.load(Relaxed)),
                }
            }
        };
        self.info(format!(
            "Core image of slot {}: {}",
            self.inactive,
            t.describe()
        ));
        self.ctx.observer.event(Event::ImageTransfer {
            slot: self.inactive.letter(),
            method: &t.method,
            size: t.size,
            reused: t.reused,
            downloaded: t.downloaded,
            wire: t.wire,
        });
        self.transfer = Some(t);
    }

    /// Opens the inactive slot for writing, asserting on the opened descriptor that it is
    /// the configured inactive slot and not the running one. A block device is opened with
    /// O_EXCL, which the kernel refuses while it is mounted.
    fn open_inactive(&self) -> Result<SlotFile> {
        let path = self.ctx.slots.path(self.inactive).to_path_buf();
        let md = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        let excl = if md.file_type().is_block_device() {
            libc::O_EXCL
        } else {
            0
        };
        let file = File::options()
            .write(true)
            .custom_flags(libc::O_CLOEXEC | excl)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) => Error::Slot(format!(
                    "slot {} ({}) is in use (mounted?); refusing to write it",
                    self.inactive,
                    path.display()
                )),
                _ => Error::io(&path, e),
            })?;
        let identity = Identity::of_file(&file, &path)?;
        self.check_target(identity, &path)?;
        Ok(SlotFile {
            file,
            path,
            identity,
        })
    }

    fn check_target(&self, identity: Identity, path: &Path) -> Result<()> {
        if identity == self.ids[self.active as usize] {
            return Err(Error::Slot(format!(
                "{} resolves to the running slot {}: refusing to write it",
                path.display(),
                self.active
            )));
        }
        if identity != self.ids[self.inactive as usize] {
            return Err(Error::Slot(format!(
                "{} changed while it was opened (slot {})",
                path.display(),
                self.inactive
            )));
        }
        Ok(())
    }

    /// Opens the slot a second time, for the read-back, checking it is the one written.
    fn open_copy(&self, target: &SlotFile) -> Result<File> {
        let copy = File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&target.path)
            .map_err(|e| Error::io(&target.path, e))?;
        if Identity::of_file(&copy, &target.path)? != target.identity {
            return Err(Error::Slot(format!(
                "{} changed while it was opened",
                target.path.display()
            )));
        }
        Ok(copy)
    }

    /// Writes the image into the slot, fsyncs it, and reads it back from the device behind
    /// the writer (see [`crate::install::slot_io`]); passes only if both hashes matched.
    fn write_and_check(&self, stream: ImageStream, target: &SlotFile) -> Result<VerifiedImage> {
        let started = Instant::now();
        let copy = self.open_copy(target)?;
        let check = stream.copy_check();
        let (on_device, announced) = sync_channel(READ_BEHIND);
        let path = target.path.clone();
        let reader = std::thread::Builder::new()
            .name("image-read-back".into())
            .spawn(move || read_behind(copy, &path, check, announced))
            .map_err(|e| Error::io(&target.path, e))?;
        let mut writer = SlotWriter::new(&target.file, on_device);
        let mut wrote = started.elapsed();
        let observer = self.ctx.observer;
        observer.event(Event::Phase {
            name: "Writing image",
            total: 0,
        });
        observer.event(Event::PhaseSize {
            bytes: stream.size(),
        });
        let mut counted = Counted {
            inner: &mut writer,
            observer,
        };
        let written = stream
            .write_unproven(&mut counted, &target.path)
            .and_then(|image| {
                wrote = started.elapsed();
                writer.finish().map_err(|e| Error::io(&target.path, e))?;
                Ok(image)
            });
        let synced = started.elapsed();
        observer.event(Event::PhaseDone);
        // On a failed write the writer is dropped here, which stops the reader.
        let read = reader
            .join()
            .map_err(|_| Error::Slot("the read-back thread panicked".into()))?;
        // A full image hashed right as it streamed and must read back the same; an image
        // assembled from verified chunks is proven by the hash of what was read back.
        let image = match written? {
            Some(image) => {
                read?.finish(&image, &target.path)?;
                image
            }
            None => read?.prove(&target.path)?,
        };
        log::debug!(
            "slot {}: {} bytes written in {wrote:?}, synced {:?} later, read back {:?} later",
            self.inactive,
            image.size(),
            synced - wrote,
            started.elapsed() - synced
        );
        Ok(image)
    }
}

/// A writer that tells the observer how many bytes went through it (the image write's
/// progress: bytes, rate and ETA on the user's side).
struct Counted<'a, W: std::io::Write> {
    inner: W,
    observer: &'a dyn Observer,
}

impl<W: std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.observer.event(Event::Advance {
            items: 0,
            bytes: n as u64,
        });
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
