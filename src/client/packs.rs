//! Staging a change's content the cheapest verifiable way: for each bundle whose version
//! changes, its pack (deltas against installed files, or whole files) where most of what
//! the pack holds is needed, and fullfiles for the rest, all downloaded in parallel;
//! then fullfiles for whatever a pack did not give. Every file still passes the hash
//! check in `chain` before it is staged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;

use super::Client;
use crate::chain::{PackJob, PackOutcome, StagedFile, VerifiedManifest};
use crate::hash::Hash;
use crate::manifest::{Entry, EntryType};
use crate::plan::FileSet;
use crate::progress::{Event, Transfer};
use crate::{Error, Result};

/// At most this many reasons are listed when files fall back to fullfiles.
const NOTES_SHOWN: usize = 8;

enum Job<'j, 'e> {
    Pack(&'j PackJob<'e>),
    Full(&'e Entry),
}

enum Done {
    Pack(PackOutcome),
    Full(StagedFile),
}

impl Client<'_> {
    /// Stages `needed` into `dir` for a move from `old` (bundle versions and files) to
    /// `new`; see the module documentation.
    pub(super) fn stage_content(
        &self,
        needed: &[&Entry],
        dir: &Path,
        bound: u64,
        old: (&BTreeMap<String, u32>, &FileSet),
        new: &[VerifiedManifest],
    ) -> Result<HashMap<Hash, StagedFile>> {
        let jobs = plan_packs(needed, old.0, old.1, new);
        let in_packs: HashSet<Hash> = jobs.iter().flat_map(|j| j.wanted.keys().copied()).collect();
        let mut sources: HashMap<Hash, Vec<&str>> = HashMap::new();
        for e in old.1.entries() {
            if e.is_present() && e.etype == EntryType::File && e.image().is_none() {
                sources.entry(e.hash).or_default().push(&e.path);
            }
        }
        // A delta applies only to an installed file whose content hashes to its from-hash,
        // hashed from the descriptor the delta then reads.
        let from_file = |h: Hash| {
            sources
                .get(&h)?
                .iter()
                .find_map(|p| match self.root.open_file(p) {
                    Ok(Some((file, got))) if got == h => Some(file),
                    _ => None,
                })
        };
        self.observer.event(Event::Phase {
            name: "Downloading",
            total: needed.len() as u64,
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.settings.max_parallel_downloads.max(1))
            .build()
            .map_err(|e| Error::Usage(format!("cannot start download workers: {e}")))?;
        let first: Vec<Job> = jobs
            .iter()
            .map(Job::Pack)
            .chain(
                needed
                    .iter()
                    .filter(|e| !in_packs.contains(&e.hash))
                    .map(|e| Job::Full(e)),
            )
            .collect();
        let run = |job: &Job| -> Result<Done> {
            match job {
                Job::Pack(p) => {
                    let out = self.chain.stage_pack(p, &from_file, dir, bound)?;
                    let bytes = out.staged.iter().map(|s| s.meta().size).sum();
                    self.observer.event(Event::Advance {
                        items: out.staged.len() as u64,
                        bytes,
                    });
                    Ok(Done::Pack(out))
                }
                Job::Full(e) => self.stage_one(e, dir, bound).map(Done::Full),
            }
        };
        let results: Result<Vec<Done>> = pool.install(|| first.par_iter().map(run).collect());
        let mut transfer = Transfer::default();
        let mut staged: HashMap<Hash, StagedFile> = HashMap::new();
        let mut notes = Vec::new();
        for done in results? {
            match done {
                Done::Pack(out) => {
                    if out.bytes > 0 {
                        transfer.packs += 1;
                    }
                    transfer.pack_bytes += out.bytes;
                    transfer.deltas += out.deltas;
                    transfer.delta_bytes += out.delta_bytes;
                    transfer.pack_files += out.staged.len() as u64 - out.deltas;
                    notes.extend(out.notes);
                    staged.extend(out.staged.into_iter().map(|s| (s.hash(), s)));
                }
                Done::Full(s) => {
                    staged.insert(s.hash(), s);
                }
            }
        }
        let missing: Vec<&Entry> = needed
            .iter()
            .filter(|e| !staged.contains_key(&e.hash))
            .copied()
            .collect();
        if !missing.is_empty() {
            let more = notes.len().saturating_sub(NOTES_SHOWN);
            let mut why: Vec<String> = notes.into_iter().take(NOTES_SHOWN).collect();
            if more > 0 {
                why.push(format!("and {more} more"));
            }
            self.observer.event(Event::Warning(format!(
                "{} files did not come from packs; fetching their fullfiles ({})",
                missing.len(),
                why.join("; ")
            )));
            let again: Result<Vec<StagedFile>> = pool.install(|| {
                missing
                    .par_iter()
                    .map(|e| self.stage_one(e, dir, bound))
                    .collect()
            });
            staged.extend(again?.into_iter().map(|s| (s.hash(), s)));
        }
        self.observer.event(Event::PhaseDone);
        for s in staged.values().filter(|s| s.fetched() > 0) {
            transfer.fullfiles += 1;
            transfer.fullfile_bytes += s.fetched();
        }
        if !needed.is_empty() {
            self.observer.event(Event::Transfer(transfer));
            if let Err(e) = self.state.record_transfer(&transfer) {
                self.observer.event(Event::Warning(format!(
                    "cannot record the download figures: {e}"
                )));
            }
        }
        Ok(staged)
    }

    fn stage_one(&self, e: &Entry, dir: &Path, bound: u64) -> Result<StagedFile> {
        let s = self.chain.stage(e, dir, bound)?;
        crate::failpoint::point("stage::file")?;
        self.observer.event(Event::Advance {
            items: 1,
            bytes: s.meta().size,
        });
        Ok(s)
    }
}

/// The packs worth reading: per bundle whose version changes, the pack from its installed
/// version (the zero pack for a bundle not installed), if more than half of the regular
/// files it holds (as the publisher decides: changed after the old version, content new)
/// are needed. Each needed file is read from one pack at most.
fn plan_packs<'e>(
    needed: &[&'e Entry],
    old_versions: &BTreeMap<String, u32>,
    old_files: &FileSet,
    new: &'e [VerifiedManifest],
) -> Vec<PackJob<'e>> {
    let needed: HashMap<Hash, &Entry> = needed
        .iter()
        .filter(|e| e.etype == EntryType::File && e.image().is_none())
        .map(|e| (e.hash, *e))
        .collect();
    let old_hashes: HashSet<Hash> = old_files.entries().map(|e| e.hash).collect();
    let mut assigned: HashSet<Hash> = HashSet::new();
    let mut jobs = Vec::new();
    for m in new {
        let to = m.manifest().header.version;
        let from = old_versions.get(m.name()).copied().unwrap_or(0);
        if from >= to {
            continue;
        }
        let held: HashSet<Hash> = m
            .manifest()
            .present()
            .filter(|e| e.etype == EntryType::File && e.image().is_none() && e.version > from)
            .filter(|e| from == 0 || !old_hashes.contains(&e.hash))
            .map(|e| e.hash)
            .collect();
        let wanted: HashMap<Hash, &Entry> = held
            .iter()
            .filter(|h| !assigned.contains(h))
            .filter_map(|h| Some((*h, *needed.get(h)?)))
            .collect();
        if wanted.is_empty() || wanted.len() * 2 < held.len() {
            continue;
        }
        assigned.extend(wanted.keys().copied());
        jobs.push(PackJob {
            bundle: m.name().to_string(),
            from,
            to,
            wanted,
            members: held.len() as u64,
        });
    }
    jobs
}
