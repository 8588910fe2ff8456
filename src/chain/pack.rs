//! Step 3 by another road: a swupd pack (`<V>/pack-<bundle>-from-<old>.tar`), streamed
//! member by member. A `staged/<hash>` member and the output of a `delta/` member become
//! [`StagedFile`]s only through the same hash check as a fullfile; nothing else in a pack
//! is trusted. A pack whose structure breaks the rules (a link, a name outside `delta/`
//! and `staged/`, two members of one name that differ in type or size, a member or delta
//! header over its cap) is refused whole; a repeated name of the same type and size is
//! skipped; a member that merely fails its hash, or a delta without a matching
//! installed file, is dropped and its file fetched as a fullfile (docs/formats.md).

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{
    remove_any, reuse_staged, set_owner_mode, write_staged, Chain, StageError, StagedFile,
};
use crate::archive::{self, Bounded};
use crate::bsdiff::{self, DeltaError};
use crate::hash::{Hash, Hasher, Kind, Meta};
use crate::limits;
use crate::manifest::{Entry, EntryType};
use crate::{Error, Result};

/// One pack to read and the files it is expected to provide.
#[derive(Debug)]
pub struct PackJob<'a> {
    pub bundle: String,
    /// The bundle's installed version (0: the zero pack).
    pub from: u32,
    /// The bundle's new version, where the pack lives.
    pub to: u32,
    /// The needed regular files this pack is read for, by hash.
    pub wanted: HashMap<Hash, &'a Entry>,
    /// How many files the publisher put into the pack (the verified manifest says which),
    /// for the bound on its size.
    pub members: u64,
}

/// What reading a pack gave.
#[derive(Debug, Default)]
pub struct PackOutcome {
    pub staged: Vec<StagedFile>,
    /// Bytes of the pack downloaded.
    pub bytes: u64,
    /// Files made from deltas, and the delta bytes they took.
    pub deltas: u64,
    pub delta_bytes: u64,
    /// Why some wanted files did not come from the pack (they are fetched as fullfiles).
    pub notes: Vec<String>,
}

/// An installed regular file whose content hashes to a delta's from-hash, opened.
pub type FromFile<'f> = &'f (dyn Fn(Hash) -> Option<File> + Sync);

impl<'a> PackJob<'a> {
    /// The pack's path under the content URL.
    pub fn rel(&self) -> String {
        format!("{}/pack-{}-from-{}.tar", self.to, self.bundle, self.from)
    }
}

enum Member {
    /// `delta/` or `staged/` itself.
    Top,
    Delta {
        from: Hash,
        to: Hash,
    },
    Staged(Hash),
}

/// Names as swupd reads them: `delta/[<a>-<b>-]<from>-<to>`, `staged/<hash>` (mixer
/// writes directories as `staged/<hash>/`).
fn classify(name: &str) -> Option<Member> {
    if name == "delta/" || name == "staged/" {
        return Some(Member::Top);
    }
    if let Some(rest) = name.strip_prefix("staged/") {
        return rest.trim_end_matches('/').parse().ok().map(Member::Staged);
    }
    let rest = name.strip_prefix("delta/")?;
    let parts: Vec<&str> = rest.split('-').collect();
    let hashes = match parts.as_slice() {
        [from, to] => (from, to),
        [a, b, from, to]
            if [a, b]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())) =>
        {
            (from, to)
        }
        _ => return None,
    };
    Some(Member::Delta {
        from: hashes.0.parse().ok()?,
        to: hashes.1.parse().ok()?,
    })
}

impl Chain {
    /// Reads the pack of `job`, staging every wanted file it carries into `dir`. Files
    /// staged by an interrupted run are used as they are, and a pack with nothing left to
    /// give is not downloaded. A missing or broken download is not an error (the files
    /// come as fullfiles); a pack that breaks the rules is ([`Error::Archive`]).
    pub fn stage_pack(
        &self,
        job: &PackJob,
        from_file: FromFile,
        dir: &Path,
        bound: u64,
    ) -> Result<PackOutcome> {
        let mut out = PackOutcome::default();
        let mut done: HashSet<Hash> = HashSet::new();
        for (hash, entry) in &job.wanted {
            if let Some(s) = reuse_staged(entry, &dir.join(hash.to_hex()))? {
                done.insert(*hash);
                out.staged.push(s);
            }
        }
        if done.len() == job.wanted.len() {
            return Ok(out);
        }
        let rel = job.rel();
        let url = self.content.url(&rel);
        // Content (staged files, or deltas no larger than them) plus each member's tar
        // overhead, which dominates a pack of many small files.
        let overhead = job.members.saturating_mul(limits::PACK_MEMBER_OVERHEAD);
        let limit = archive::compressed_bound(bound.saturating_mul(2).saturating_add(overhead));
        let mut download = match self.content.open_if_exists(&rel, limit) {
            Ok(Some(d)) => d,
            Ok(None) => {
                out.notes.push(format!("no pack: {url}: not found"));
                return Ok(out);
            }
            Err(e) => {
                out.notes.push(format!("no pack: {e}"));
                return Ok(out);
            }
        };
        let result = self.read_pack(
            job,
            &mut download,
            limit,
            from_file,
            dir,
            bound,
            &mut done,
            &mut out,
        );
        out.bytes = download.bytes_read();
        match result {
            Ok(()) => Ok(out),
            Err(Broken::Refused(reason)) => Err(Error::Archive {
                what: url,
                reason: format!("pack refused: {reason}"),
            }),
            Err(Broken::Abandoned(reason)) => {
                out.notes.push(format!("{url}: {reason}"));
                Ok(out)
            }
            Err(Broken::Fatal(e)) => Err(e),
        }
    }

    #[allow(clippy::too_many_arguments)] // one call site; the state of one read
    fn read_pack(
        &self,
        job: &PackJob,
        download: &mut impl Read,
        limit: u64,
        from_file: FromFile,
        dir: &Path,
        bound: u64,
        done: &mut HashSet<Hash>,
        out: &mut PackOutcome,
    ) -> Result<(), Broken> {
        let abandon = |e: std::io::Error| match Error::carried(e) {
            Ok(typed) => Broken::Abandoned(typed.to_string()),
            Err(e) => Broken::Abandoned(e.to_string()),
        };
        let plain = Bounded::new(
            archive::decompress(download).map_err(abandon)?,
            limit,
            "the unpacked pack",
        );
        let mut tar = tar::Archive::new(plain);
        let mut names: HashMap<Vec<u8>, (tar::EntryType, u64)> = HashMap::new();
        // Deltas are applied on the other workers while this one reads on: hashing the
        // installed source and the result is most of an update's work. At most `limit`
        // wait at once (each holds its spooled member open); past that, this worker
        // applies the next one itself.
        let applied = Mutex::new(Applied::default());
        let in_flight = AtomicUsize::new(0);
        let limit = 2 * rayon::current_num_threads();
        let work = |delta: Spooled| {
            let result = delta.apply(from_file, dir);
            lock(&applied).add(result, delta.entry, delta.size);
        };
        let read = rayon::in_place_scope(|scope| -> Result<(), Broken> {
            for item in tar.entries().map_err(abandon)? {
                let mut item = item.map_err(abandon)?;
                let raw = item.path_bytes().into_owned();
                let name = String::from_utf8_lossy(&raw).into_owned();
                let etype = item.header().entry_type();
                let size = item.size();
                // A repeated name of the same type and size is skipped: tar appends repeat
                // members (swupd's own test generator writes such packs, and swupd reads
                // them), and a member is used only if it hashes to what its name says, so
                // a second copy can give nothing the first could not. Its bytes still count
                // against the cap. Two members of one name that differ in type or size are
                // no append: the pack is refused.
                match names.entry(raw) {
                    Slot::Vacant(v) => {
                        v.insert((etype, size));
                    }
                    Slot::Occupied(o) if *o.get() == (etype, size) => continue,
                    Slot::Occupied(_) => {
                        return Err(Broken::Refused(format!(
                            "two different members of one name, {name:?}"
                        )))
                    }
                }
                let refuse = |why: &str| Broken::Refused(format!("member {name:?}: {why}"));
                match (classify(&name), etype) {
                    (_, tar::EntryType::Link) => return Err(refuse("a hard link")),
                    (Some(Member::Top), tar::EntryType::Directory) => {}
                    (
                        Some(Member::Staged(_)),
                        tar::EntryType::Directory | tar::EntryType::Symlink,
                    ) => {
                        // Directories and symlinks (mixer packs them) are tiny; they come as
                        // fullfiles, and nothing in a pack is ever followed.
                    }
                    (Some(Member::Staged(hash)), tar::EntryType::Regular) => {
                        if size > bound {
                            return Err(refuse("larger than any file of the release"));
                        }
                        let Some(entry) = job.wanted.get(&hash).filter(|_| !done.contains(&hash))
                        else {
                            continue;
                        };
                        let (meta, _) =
                            archive::entry_meta(&item).map_err(|e| refuse(&e.to_string()))?;
                        match stage_member(&mut item, entry, &meta, dir) {
                            Ok(Some(s)) => {
                                done.insert(hash);
                                out.staged.push(s);
                                crate::failpoint::point("stage::member").map_err(Broken::Fatal)?;
                            }
                            Ok(None) => out.notes.push(format!(
                                "{} in the pack does not match its hash; fetching its fullfile",
                                entry.path
                            )),
                            Err(StageError::Read(e)) => return Err(abandon(e)),
                            Err(StageError::Write(e)) => {
                                return Err(Broken::Fatal(Error::io(dir, e)))
                            }
                        }
                    }
                    (Some(Member::Delta { from, to }), tar::EntryType::Regular) => {
                        if size > limits::DELTA_FILE {
                            return Err(refuse("a delta over the cap"));
                        }
                        let Some(entry) = job.wanted.get(&to).filter(|_| !done.contains(&to))
                        else {
                            continue;
                        };
                        // Claimed now: a second delta to the same file is not tried, and if
                        // this one fails the file comes as a fullfile.
                        done.insert(to);
                        let delta = Spooled {
                            file: spool_member(&mut item, size, entry, dir)?,
                            size,
                            from,
                            entry,
                        };
                        if in_flight.load(Ordering::SeqCst) < limit {
                            in_flight.fetch_add(1, Ordering::SeqCst);
                            let (work, in_flight) = (&work, &in_flight);
                            scope.spawn(move |_| {
                                work(delta);
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                            });
                        } else {
                            work(delta);
                        }
                    }
                    (Some(_), _) => {
                        return Err(refuse(&format!("a {etype:?} where a regular file belongs")))
                    }
                    (None, _) => return Err(refuse("not a delta/ or staged/ member")),
                }
            }
            Ok(())
        });
        let applied = applied.into_inner().unwrap_or_else(|e| e.into_inner());
        done.retain(|h| !applied.failed.contains(h));
        out.deltas += applied.staged.len() as u64;
        out.delta_bytes += applied.bytes;
        out.staged.extend(applied.staged);
        out.notes.extend(applied.notes);
        // A refusal or a local error found while applying stops the pack like one found
        // while reading; the first found is reported.
        match (read, applied.broken) {
            (Err(b), _) | (Ok(()), Some(b)) => Err(b),
            (Ok(()), None) => Ok(()),
        }
    }
}

/// What the delta workers of one pack produced.
#[derive(Default)]
struct Applied {
    staged: Vec<StagedFile>,
    bytes: u64,
    notes: Vec<String>,
    /// Hashes whose delta did not give the file.
    failed: HashSet<Hash>,
    broken: Option<Broken>,
}

impl Applied {
    fn add(
        &mut self,
        result: Result<Result<StagedFile, String>, Broken>,
        entry: &Entry,
        size: u64,
    ) {
        match result {
            Ok(Ok(s)) => {
                self.bytes += size;
                self.staged.push(s);
            }
            Ok(Err(note)) => {
                self.failed.insert(entry.hash);
                self.notes.push(note);
            }
            Err(b) => {
                self.failed.insert(entry.hash);
                self.broken.get_or_insert(b);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A delta member copied out of the pack stream, waiting to be applied.
struct Spooled<'e> {
    file: File,
    size: u64,
    from: Hash,
    entry: &'e Entry,
}

impl Spooled<'_> {
    /// Applies the delta to the installed file whose content has its from-hash. The
    /// inner error (a note) drops this delta only; the outer one stops the pack.
    fn apply(&self, from_file: FromFile, dir: &Path) -> Result<Result<StagedFile, String>, Broken> {
        let entry = self.entry;
        let Some(old) = from_file(self.from) else {
            return Ok(Err(format!(
                "no installed file matches the delta's source for {} (changed locally or missing); fetching its fullfile",
                entry.path
            )));
        };
        match apply_member(&self.file, self.size, &old, entry, dir)? {
            Ok(s) => {
                crate::failpoint::point("stage::member").map_err(Broken::Fatal)?;
                Ok(Ok(s))
            }
            Err(DeltaError::OverCap { what, size, cap }) => Err(Broken::Refused(format!(
                "member for {}: a delta header claims {what} of {size} bytes, over the cap of {cap}",
                entry.path
            ))),
            Err(e) => Ok(Err(format!(
                "the delta for {} cannot be used ({e}); fetching its fullfile",
                entry.path
            ))),
        }
    }
}

/// How reading a pack ended early.
enum Broken {
    /// It breaks the rules: the update stops.
    Refused(String),
    /// The download or the archive failed: what came so far is kept.
    Abandoned(String),
    /// A local error.
    Fatal(Error),
}

/// A `staged/<hash>` member staged through the hash; `None` if it hashed wrong.
fn stage_member(
    item: &mut impl Read,
    entry: &Entry,
    meta: &Meta,
    dir: &Path,
) -> Result<Option<StagedFile>, StageError> {
    if entry.etype != EntryType::File || meta.kind != Kind::File {
        return Ok(None);
    }
    let hex = entry.hash.to_hex();
    let tmp = dir.join(format!(".partial.{hex}.{}.pack", std::process::id()));
    let _ = remove_any(&tmp);
    let actual = match write_staged(item, meta, None, &tmp) {
        Ok(h) => h,
        Err(e) => {
            let _ = remove_any(&tmp);
            return Err(e);
        }
    };
    finish(actual, entry, &tmp, dir)
}

/// Renames a verified object to its staged name, or removes it.
fn finish(
    actual: Hash,
    entry: &Entry,
    tmp: &Path,
    dir: &Path,
) -> Result<Option<StagedFile>, StageError> {
    if actual != entry.hash {
        let _ = remove_any(tmp);
        return Ok(None);
    }
    let final_path = dir.join(entry.hash.to_hex());
    std::fs::rename(tmp, &final_path).map_err(StageError::Write)?;
    StagedFile::at(entry.hash, final_path)
        .map(Some)
        .map_err(|e| StageError::Write(std::io::Error::other(e.to_string())))
}

/// Copies a delta member into an unnamed file in the staging area (the pack stream
/// cannot wait while it is applied).
fn spool_member(
    item: &mut impl Read,
    size: u64,
    entry: &Entry,
    dir: &Path,
) -> Result<File, Broken> {
    let hex = entry.hash.to_hex();
    let spool_path = dir.join(format!(".delta.{hex}.{}", std::process::id()));
    let write_err = |e: std::io::Error| Broken::Fatal(Error::io(dir, e));
    let mut spool = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&spool_path)
        .map_err(write_err)?;
    let copied = std::io::copy(&mut item.take(size), &mut spool);
    let _ = remove_any(&spool_path);
    match copied {
        Ok(n) if n == size => Ok(spool),
        Ok(_) => Err(Broken::Abandoned("a delta member ends early".into())),
        Err(e) => Err(Broken::Abandoned(e.to_string())),
    }
}

/// Applies a spooled delta to `old` through the hash, and stages the result if it hashed
/// to the manifest's hash. The outer error stops the pack; the inner one drops this delta
/// only (or, over a cap, refuses the pack).
fn apply_member(
    spool: &File,
    size: u64,
    old: &File,
    entry: &Entry,
    dir: &Path,
) -> Result<Result<StagedFile, DeltaError>, Broken> {
    let hex = entry.hash.to_hex();
    let tmp = dir.join(format!(".partial.{hex}.{}.delta", std::process::id()));
    let cleanup = || {
        let _ = remove_any(&tmp);
    };
    let write_err = |e: std::io::Error| Broken::Fatal(Error::io(dir, e));
    let mut head = vec![0u8; bsdiff::V20_LEN.min(size as usize)];
    use std::os::unix::fs::FileExt;
    spool.read_exact_at(&mut head, 0).map_err(write_err)?;
    let header = match bsdiff::Header::parse(&head, size) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    if entry.etype != EntryType::File {
        return Ok(Err(DeltaError::Invalid(
            "the manifest lists no regular file".into(),
        )));
    }
    let meta = Meta::file(header.mode, header.uid, header.gid, header.new_size);
    let result = (|| -> Result<Hash, DeltaError> {
        let file = File::options().write(true).create_new(true).open(&tmp)?;
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let mut w = HashingWriter {
            out: std::io::BufWriter::with_capacity(256 * 1024, file),
            hasher: Hasher::new(&meta, &[]),
        };
        bsdiff::apply(&header, spool, old, &mut w)?;
        w.out.flush()?;
        crate::fsutil::start_writeback(w.out.get_ref());
        set_owner_mode(&tmp, &meta)?;
        Ok(w.hasher.finish())
    })();
    let actual = match result {
        Ok(h) => h,
        Err(e) => {
            cleanup();
            return Ok(Err(e));
        }
    };
    match finish(actual, entry, &tmp, dir) {
        Ok(Some(s)) => Ok(Ok(s)),
        Ok(None) => Ok(Err(DeltaError::Invalid(format!(
            "its result hashes to {actual}, not {}",
            entry.hash
        )))),
        Err(StageError::Write(e) | StageError::Read(e)) => {
            cleanup();
            Err(write_err(e))
        }
    }
}

/// Hashes what it writes (a delta's output, checked before it is trusted).
pub(super) struct HashingWriter<W> {
    pub(super) out: W,
    pub(super) hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
