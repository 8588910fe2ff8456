//! Several content URLs serving the same webroot (docs/fleets.md). Each download goes to
//! a healthy mirror, the least busy one, in turn, so parallel downloads spread over them;
//! a mirror that fails, stalls (the transfer-rate floor) or serves bytes whose hash does
//! not match is set aside for the rest of the run and the object is fetched from another.
//! No mirror is trusted more than another: everything they serve is checked by the chain.
//! While another healthy mirror remains, a failure moves on at once; the last one gets
//! the configured retries, so several mirrors are never less patient than one server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::Source;
use crate::{Error, Result};

/// The mirrors behind one [`Source`].
pub(super) struct Mirrors {
    members: Vec<Member>,
    /// Where the next pick starts looking, so equally busy mirrors take turns.
    turn: AtomicUsize,
}

struct Member {
    /// The mirror without retries: another mirror is the better retry.
    source: Source,
    /// The same with the configured retries, for when it is the last healthy one.
    patient: Source,
    /// Downloads in progress from this mirror.
    busy: AtomicUsize,
    /// Why it was set aside, once it was.
    aside: Mutex<Option<String>>,
}

/// Counts a download as in progress for as long as it lives.
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Mirrors {
    /// A set over single-URL sources (with their configured retries).
    pub(super) fn new(sources: Vec<Source>) -> Mirrors {
        Mirrors {
            members: sources
                .into_iter()
                .map(|patient| Member {
                    source: Source {
                        retries: 0,
                        ..patient.clone()
                    },
                    patient,
                    busy: AtomicUsize::new(0),
                    aside: Mutex::new(None),
                })
                .collect(),
            turn: AtomicUsize::new(0),
        }
    }

    /// The base URLs, in order.
    pub(super) fn bases(&self) -> Vec<String> {
        self.members.iter().map(|m| m.source.base.clone()).collect()
    }

    /// The mirrors set aside so far, with the reason.
    pub(super) fn set_aside(&self) -> Vec<(String, String)> {
        self.members
            .iter()
            .filter_map(|m| {
                let why = m.aside.lock().expect("not poisoned").clone()?;
                Some((m.source.base.clone(), why))
            })
            .collect()
    }

    /// A healthy mirror, the least busy, starting from the one whose turn it is, and
    /// whether it is the last healthy one.
    fn pick(&self) -> Option<(&Member, bool)> {
        let n = self.members.len();
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        let healthy: Vec<&Member> = (0..n)
            .map(|i| &self.members[(first + i) % n])
            .filter(|m| m.aside.lock().expect("not poisoned").is_none())
            .collect();
        let last = healthy.len() == 1;
        let member = healthy
            .into_iter()
            .min_by_key(|m| m.busy.load(Ordering::SeqCst))?;
        Some((member, last))
    }

    /// Runs `attempt` against healthy mirrors until one succeeds or the error is not the
    /// mirror's fault; each mirror that fails is set aside, named in a warning.
    pub(super) fn each<T>(&self, mut attempt: impl FnMut(&Source) -> Result<T>) -> Result<T> {
        let mut last = None;
        while let Some((member, alone)) = self.pick() {
            member.busy.fetch_add(1, Ordering::SeqCst);
            let busy = Busy(&member.busy);
            let result = attempt(if alone {
                &member.patient
            } else {
                &member.source
            });
            drop(busy);
            match result {
                Err(e) if blames_the_mirror(&e) => {
                    let mut aside = member.aside.lock().expect("not poisoned");
                    if aside.is_none() {
                        log::warn!(
                            "mirror {} set aside for the rest of this run: {e}",
                            member.source.base
                        );
                        *aside = Some(e.to_string());
                    }
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::Connect {
            url: self.bases().join(", "),
            reason: "every mirror was set aside earlier in this run".into(),
        }))
    }
}

/// Errors about what a server sent or failed to send (another mirror may do better), as
/// opposed to local ones (disk, policy, the request itself) that no mirror changes.
fn blames_the_mirror(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect { .. }
            | Error::Download { .. }
            | Error::Archive { .. }
            | Error::HashMismatch { .. }
            | Error::Manifest { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceConfig;

    fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, data) in files {
            std::fs::write(d.path().join(name), data).unwrap();
        }
        d
    }

    fn url(d: &tempfile::TempDir) -> String {
        format!("file://{}", d.path().display())
    }

    #[test]
    fn a_failing_mirror_is_set_aside_and_the_object_comes_from_another() {
        let empty = dir_with(&[]);
        let good = dir_with(&[("a", b"hello")]);
        let src =
            Source::with_mirrors(&url(&empty), &[url(&good)], &SourceConfig::default()).unwrap();
        for _ in 0..4 {
            assert_eq!(src.fetch("a", 100).unwrap(), b"hello");
        }
        let aside = src.mirrors_set_aside();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(aside[0].0, url(&empty));
    }

    #[test]
    fn bad_bytes_set_a_mirror_aside_through_each_mirror() {
        let bad = dir_with(&[("a", b"HELLO")]);
        let good = dir_with(&[("a", b"hello")]);
        let src =
            Source::with_mirrors(&url(&bad), &[url(&good)], &SourceConfig::default()).unwrap();
        for _ in 0..3 {
            let got = src
                .each_mirror(|m| {
                    let data = m.fetch("a", 100)?;
                    match data == b"hello" {
                        true => Ok(data),
                        false => Err(Error::Archive {
                            what: m.url("a"),
                            reason: "wrong bytes".into(),
                        }),
                    }
                })
                .unwrap();
            assert_eq!(got, b"hello");
        }
        assert_eq!(src.mirrors_set_aside().len(), 1);
    }

    #[test]
    fn when_every_mirror_fails_the_last_error_is_returned() {
        let a = dir_with(&[]);
        let b = dir_with(&[]);
        let src = Source::with_mirrors(&url(&a), &[url(&b)], &SourceConfig::default()).unwrap();
        assert!(matches!(src.fetch("x", 10), Err(Error::Download { .. })));
        assert!(matches!(src.fetch("x", 10), Err(Error::Connect { .. })));
    }
}
