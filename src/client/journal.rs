//! A journal an interrupted run left (docs/install.md, "Journal and recovery"): finished,
//! superseded by the command's own target, or, when neither works, an error that names the
//! way out. It never blocks the way forward.

use super::{Client, Installed};
use crate::install::transaction;
use crate::plan::FileSet;
use crate::post_update::Triggers;
use crate::progress::Event;
use crate::state::JournalRecord;
use crate::{Error, Result};

/// An interrupted update this run finished: the post-update actions it would have run are
/// owed.
#[derive(Debug, Clone)]
pub struct Finished {
    pub from: Option<u32>,
    pub to: u32,
    pub changed: Triggers,
}

/// What became of the journal a previous run left.
#[derive(Debug)]
pub enum Pending {
    /// There was none, or its update is now finished.
    Clear,
    /// Its release cannot be finished, or the command goes beyond it: the command installs
    /// its own target over it, from the actual state of the root.
    Superseded(JournalRecord),
}

impl Client<'_> {
    /// Deals with a journal an interrupted run left, before a command heading to `target`
    /// (`None`: a command that stays at the installed version). The journal's update is
    /// finished (placing again what is already in place) unless `target` is newer; when it
    /// cannot be finished (its release refused, or withdrawn from the server) and the
    /// command has a target of its own, that target supersedes it. Otherwise the error says
    /// how to get out.
    pub fn settle(&self, target: Option<u32>) -> Result<Pending> {
        let Some(record) = self.state.journal()? else {
            return Ok(Pending::Clear);
        };
        // The killed run's temporaries go first, before anything is staged: some may be
        // links to staged files, whose change time their removal moves.
        transaction::sweep(&self.root, &record)?;
        if target.is_some_and(|t| t > record.to) {
            return Ok(self.supersede(record, "a newer release supersedes it"));
        }
        self.observer.event(Event::Warning(format!(
            "finishing the interrupted update to version {}",
            record.to
        )));
        match self.finish_journal(&record) {
            Ok(()) => Ok(Pending::Clear),
            Err(e @ Error::Locked(_)) => Err(e),
            Err(e) if target.is_some_and(|t| t != record.to) => {
                Ok(self.supersede(record, &format!("it cannot be finished: {e}")))
            }
            Err(e) => Err(Error::Interrupted {
                to: record.to,
                from: record.from,
                source: Box::new(e),
            }),
        }
    }

    fn supersede(&self, record: JournalRecord, why: &str) -> Pending {
        self.observer.event(Event::Warning(format!(
            "the interrupted update to version {} is abandoned ({why}); installing from the actual state of the root",
            record.to
        )));
        Pending::Superseded(record)
    }

    fn finish_journal(&self, record: &JournalRecord) -> Result<()> {
        let old = self.old_state(record);
        let mom = self.verified_mom(record.to)?;
        let new = self.resolve(&mom, &record.bundles, false)?;
        let applied = self.transition(&old, &new, &mom, 0, false, true)?;
        // What the killed run placed is no longer a change on disk, so the triggers come
        // from the two releases, as the uninterrupted run would have noted them.
        let mut changed = applied.map(|a| a.changed).unwrap_or_default();
        for path in old.files.changed_paths(&FileSet::from_manifests(&new)) {
            changed.note(path);
        }
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) = Some(Finished {
            from: record.from,
            to: record.to,
            changed,
        });
        Ok(())
    }

    /// The interrupted update this run finished, if any, whose post-update actions are
    /// still owed (taken once).
    pub fn take_finished(&self) -> Option<Finished> {
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// What the root held before the journal's update began, as far as the server still
    /// knows; without it nothing is deleted, and everything is compared with the disk.
    pub(super) fn old_state(&self, record: &JournalRecord) -> Installed {
        let mut old = match self.installed_state(record.from, &record.from_bundles) {
            Ok(old) => old,
            Err(e) => {
                self.observer.event(Event::Warning(format!(
                    "the release the interrupted update started from cannot be read ({e}); files it alone had are not removed"
                )));
                Installed {
                    version: record.from,
                    bundles: record.from_bundles.clone(),
                    ..Installed::default()
                }
            }
        };
        // A config file still holding what the interrupted update placed is not an
        // admin's edit: it is replaced (or removed) like an unmodified one.
        old.placed = record
            .config
            .iter()
            .filter_map(|(path, hash)| Some((path.clone(), hash.parse().ok()?)))
            .collect();
        old
    }
}
