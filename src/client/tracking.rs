//! Which bundles were installed on purpose, as swupd records them: one empty file per
//! bundle in `STATEDIR/bundles/`. A bundle installed only because another includes it is
//! not tracked; it becomes an orphan once nothing tracked needs it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::state::StateDir;
use crate::{fsutil, Error, Result};

/// The tracking directory of one state directory.
pub struct Tracking {
    dir: PathBuf,
}

impl Tracking {
    /// The tracking of `state` (nothing is created until something is tracked).
    pub fn new(state: &StateDir) -> Tracking {
        Tracking {
            dir: state.path().join("bundles"),
        }
    }

    /// The tracked bundles among `installed`. A root whose state directory tracks
    /// nothing (installed before tracking, or by another tool; no `bundles/` or an empty
    /// one) counts every installed bundle as tracked, as swupd does, so nothing is taken
    /// for an orphan by default.
    pub fn tracked(&self, installed: &[String]) -> Result<BTreeSet<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(installed.iter().cloned().collect())
            }
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut out = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                if crate::manifest::validate_bundle_name(name).is_ok() {
                    out.insert(name.to_string());
                }
            }
        }
        if out.is_empty() {
            return Ok(installed.iter().cloned().collect());
        }
        Ok(out)
    }

    /// Records `names` as installed on purpose. The first record also tracks what was
    /// installed before (`installed`), which counted as tracked until then.
    pub fn track(&self, names: &[String], installed: &[String]) -> Result<()> {
        let before = self.tracked(installed)?;
        self.ensure_dir()?;
        for name in before.iter().chain(names) {
            let path = self.dir.join(name);
            if !path.exists() {
                fsutil::write_atomic(&path, b"")?;
            }
        }
        Ok(())
    }

    /// Forgets `names` (removed bundles), keeping the rest of what counted as tracked.
    pub fn untrack(&self, names: &[String], installed: &[String]) -> Result<()> {
        let keep: Vec<String> = self
            .tracked(installed)?
            .into_iter()
            .filter(|b| !names.contains(b))
            .collect();
        self.track(&keep, &[])?;
        for name in names {
            match std::fs::remove_file(self.dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(self.dir.join(name), e)),
            }
        }
        Ok(())
    }

    fn ensure_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))
    }
}
