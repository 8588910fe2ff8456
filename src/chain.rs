//! The chain of trust, one step per function: signature → MoM version → bundle manifest
//! hash → file hash. Each step returns a type only this module can build, and the
//! installer accepts only those types, so unverified bytes cannot reach the target.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::archive;
use crate::error::Subject;
use crate::hash::{self, Hash, Hasher, Kind, Meta};
use crate::limits;
use crate::manifest::{self, Entry, Manifest};
use crate::signature::TrustStore;
use crate::source::{download_error, Source};
use crate::version;
use crate::{Error, Result};

mod cached;
pub use cached::CachedText;
mod chunk_index;
pub(crate) mod chunks;
pub use chunk_index::IndexCache;
mod fullfile;
pub(crate) mod image;
pub use chunks::{ChunkPlan, SlotReads, Transfer, VerifiedIndex};
pub use fullfile::unpack_fullfile;
mod manifest_delta;
mod pack;
pub use image::{
    Block, CopyCheck, ImageStream, StagedImage, VerifiedImage, BLOCK_ALIGN, IMAGE_BUF,
};
pub use manifest_delta::{DeltaMiss, ManifestText};
pub use pack::{FromFile, PackJob, PackOutcome};
mod rollout;
pub use rollout::VerifiedSchedule;

/// Largest signature file accepted (the caps and their reasons are in `limits`).
const MAX_SIG_BYTES: u64 = limits::SIGNATURE;
/// Largest `latest` / `latest_version` file accepted.
const MAX_VERSION_BYTES: u64 = limits::VERSION_FILE;

/// How signatures are treated.
pub enum Signatures {
    /// Every MoM and `latest` must carry a valid signature chaining to this store.
    Verify(TrustStore),
    /// `--nosigcheck`: signatures are not checked (hashes still are).
    Skip,
}

/// The verification chain over a content source and a version source.
pub struct Chain {
    content: Source,
    versions: Source,
    signatures: Signatures,
    format: crate::format::Format,
    /// `--nosigcheck-latest`: the `latest` files are taken unsigned (the MoM still is not).
    unsigned_latest: bool,
}

/// A Manifest-of-Manifests whose signature verified and whose version is the one asked for.
#[derive(Debug)]
pub struct VerifiedMom {
    manifest: Manifest,
    /// The signed text and its signature (none under `--nosigcheck`), for the cache.
    text: std::sync::Arc<[u8]>,
    signature: Option<std::sync::Arc<[u8]>>,
}

/// A bundle manifest whose hash matched its line in a verified MoM.
#[derive(Debug)]
pub struct VerifiedManifest {
    name: String,
    manifest: Manifest,
    /// The text that hashed right (the base for manifest deltas).
    text: std::sync::Arc<[u8]>,
    /// The metadata it hashed with (mode and owner from its tar or delta).
    meta: Meta,
}

/// A fullfile in the staging area whose content and metadata hashed to its manifest hash.
/// It is known by the inode that hashed right, not by its path: the installer opens it
/// through [`StagedFile::open_verified`], which refuses any other object at that path.
#[derive(Debug, Clone)]
pub struct StagedFile {
    hash: Hash,
    path: PathBuf,
    meta: Meta,
    /// Device, inode and change time (which no user can set) of the object whose hash
    /// matched: a recycled inode number carries a new change time.
    identity: (u64, u64, i64, i64),
    /// The verified target of a symlink (held here, so placing it reads nothing back).
    link_target: Option<PathBuf>,
    /// Bytes downloaded for it as a fullfile (0 when reused, or made from a pack).
    fetched: u64,
}

impl VerifiedMom {
    /// The MoM's version.
    pub fn version(&self) -> u32 {
        self.manifest.header.version
    }

    /// The signed build time (unix seconds).
    pub fn timestamp(&self) -> u64 {
        self.manifest.header.timestamp
    }

    /// The content format its header names.
    pub fn format(&self) -> u32 {
        self.manifest.header.format
    }

    /// The M line of a bundle.
    pub fn bundle(&self, name: &str) -> Option<&Entry> {
        self.manifest.entries.iter().find(|e| e.path == name)
    }

    /// All bundle lines.
    pub fn bundles(&self) -> impl Iterator<Item = &Entry> {
        self.manifest.entries.iter()
    }
}

impl VerifiedManifest {
    /// The bundle name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    #[cfg(test)]
    pub(crate) fn for_test(name: &str, manifest: Manifest) -> VerifiedManifest {
        VerifiedManifest {
            name: name.into(),
            manifest,
            text: Vec::new().into(),
            meta: Meta::file(0o644, 0, 0, 0),
        }
    }
}

impl StagedFile {
    /// The verified hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// Where the verified object sits in the staging area.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its type, owner and mode, as hashed.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Bytes its fullfile took on the wire (0 if it came another way).
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// The verified target, for a symlink.
    pub fn link_target(&self) -> Option<&Path> {
        self.link_target.as_deref()
    }

    /// Opens a staged regular file for placement and checks that it is still the inode
    /// whose hash matched, unchanged since (same change time, type, owner, mode and size):
    /// a path swapped or an inode changed since the check is refused, and the open
    /// descriptor is what the installer links or copies. Open it once, before the first
    /// hard link to it changes its change time.
    pub fn open_verified(&self) -> Result<File> {
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        let md = file.metadata().map_err(|e| Error::io(&self.path, e))?;
        if identity(&md) != self.identity || Meta::from_metadata(&md) != self.meta {
            return Err(Error::UnsafePath {
                path: self.path.display().to_string(),
                reason: "the staged object changed after its hash was checked".into(),
            });
        }
        Ok(file)
    }

    /// A staged object known by what is at `path` now (unit tests of the installer).
    #[cfg(test)]
    pub(crate) fn for_test(path: &Path) -> StagedFile {
        StagedFile::at(Hash::default(), path.to_path_buf()).unwrap()
    }

    fn at(hash: Hash, path: PathBuf) -> Result<StagedFile> {
        let md = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        let link_target = if md.file_type().is_symlink() {
            Some(std::fs::read_link(&path).map_err(|e| Error::io(&path, e))?)
        } else {
            None
        };
        Ok(StagedFile {
            hash,
            identity: identity(&md),
            meta: Meta::from_metadata(&md),
            link_target,
            path,
            fetched: 0,
        })
    }
}

impl Chain {
    /// A chain over `content` (MoM, manifests, fullfiles) and `versions` (latest).
    pub fn new(
        content: Source,
        versions: Source,
        signatures: Signatures,
        format: impl Into<crate::format::Format>,
    ) -> Chain {
        Chain {
            content,
            versions,
            signatures,
            format: format.into(),
            unsigned_latest: false,
        }
    }

    /// swupd's `--nosigcheck-latest`: the version number is read without its signature.
    /// Safe to the extent that the MoM it leads to is still verified and held to the
    /// high-water mark, so a forged `latest` can only offer a release that is signed.
    pub fn unsigned_latest(mut self) -> Chain {
        self.unsigned_latest = true;
        self
    }

    /// The content source.
    pub fn content(&self) -> &Source {
        &self.content
    }

    fn check_signature(
        &self,
        url: &str,
        data: &[u8],
        sig_rel: &str,
        source: &Source,
    ) -> Result<()> {
        match &self.signatures {
            Signatures::Skip => Ok(()),
            Signatures::Verify(store) => {
                let sig = self.fetch_signature(url, sig_rel, source)?;
                store.verify(url, data, &sig)
            }
        }
    }

    /// The signature of `url` at `sig_rel`. One the server does not have is a failed
    /// signature check, not a mere download problem; an unreachable server stays a
    /// connection error.
    fn fetch_signature(&self, url: &str, sig_rel: &str, source: &Source) -> Result<Vec<u8>> {
        source.fetch(sig_rel, MAX_SIG_BYTES).map_err(|e| match e {
            Error::Download {
                url: sig_url,
                reason,
            } => Error::Signature {
                what: url.to_string(),
                reason: format!("cannot fetch its signature {sig_url}: {reason}"),
            },
            other => other,
        })
    }

    /// Step 0: the newest version in our format, from the signed `latest` file.
    pub fn latest(&self) -> Result<u32> {
        self.signed_version(&format!("version/format{}/latest", self.format))
    }

    /// Every version the signed `latest` file lists (swupd's `--incremental` reads a
    /// file of one version a line, newest first), in the file's order.
    pub fn latest_all(&self) -> Result<Vec<u32>> {
        let rel = format!("version/format{}/latest", self.format);
        let url = self.versions.url(&rel);
        let text = self.versions.fetch(&rel, MAX_VERSION_BYTES)?;
        if !self.unsigned_latest {
            self.check_signature(&url, &text, &format!("{rel}.sig"), &self.versions)?;
        }
        let first = version::parse_latest(&text, &url)?;
        let mut out = vec![first];
        for line in String::from_utf8_lossy(&text).lines().skip(1) {
            match line.trim().parse::<u32>() {
                Ok(v) if v > 0 => out.push(v),
                _ if line.trim().is_empty() => {}
                _ => {
                    return Err(Error::Download {
                        url,
                        reason: format!("not a version number: {line:?}"),
                    })
                }
            }
        }
        Ok(out)
    }

    /// The newest version in any format, from the signed `latest_version` file.
    pub fn latest_any_format(&self) -> Result<u32> {
        self.signed_version("version/latest_version")
    }

    fn signed_version(&self, rel: &str) -> Result<u32> {
        let url = self.versions.url(rel);
        // No version file there: swupd's "unable to determine the server version" is its
        // connection error (16); a file the server fails to send stays a download error.
        let text =
            self.versions.fetch(rel, MAX_VERSION_BYTES).map_err(
                |e| match crate::source::is_absent(&e) {
                    true => Error::Connect {
                        url: url.clone(),
                        reason: "no version file there, so the server's version cannot be told"
                            .into(),
                    },
                    false => e,
                },
            )?;
        if !self.unsigned_latest {
            self.check_signature(&url, &text, &format!("{rel}.sig"), &self.versions)?;
        }
        version::parse_latest(&text, &url)
    }

    /// Step 1: the MoM of `version`, its signature checked, and its own `version:`
    /// required to be the one asked for (a validly signed MoM of another release is a
    /// mix-and-match attack).
    pub fn mom(&self, version: u32) -> Result<VerifiedMom> {
        let rel = format!("{version}/Manifest.MoM.tar");
        let url = self.content.url(&rel);
        // Streamed, so the compressed tar is never held whole; the text is, for the
        // signature check, within its cap.
        // A MoM the server does not have is swupd's "cannot load the MoM" (exit 4).
        // So is one it cannot reach once the version is known (swupd names the object).
        let download = self.content.open(&rel, limits::MOM_DOWNLOAD).map_err(|e| {
            match (crate::source::is_absent(&e), e) {
                (true, e) => Error::Mom {
                    version,
                    reason: format!("not on the server ({e})"),
                },
                (false, e @ Error::Connect { .. }) => mom_refused(version, e),
                (false, e) => e,
            }
        })?;
        let file = archive::read_manifest_tar(download, "MoM", &url, limits::MOM_TEXT)?;
        let mom_url = self.content.url(&format!("{version}/Manifest.MoM"));
        let signature = match &self.signatures {
            Signatures::Skip => None,
            Signatures::Verify(_) => Some(
                self.fetch_signature(
                    &mom_url,
                    &format!("{version}/Manifest.MoM.sig"),
                    &self.content,
                )
                .map_err(|e| mom_refused(version, e))?,
            ),
        };
        self.signed_mom(version, file.text, signature, (&mom_url, &url))
    }

    /// Checks a MoM text against `signature` and the version asked for. `what` names
    /// the signed text and where it was read from, for messages. Without a signature the
    /// check is refused unless signatures are not checked at all.
    fn signed_mom(
        &self,
        version: u32,
        text: Vec<u8>,
        signature: Option<Vec<u8>>,
        (signed, url): (&str, &str),
    ) -> Result<VerifiedMom> {
        if let Signatures::Verify(store) = &self.signatures {
            let Some(sig) = &signature else {
                return Err(mom_refused(
                    version,
                    Error::Signature {
                        what: signed.to_string(),
                        reason: "no signature".into(),
                    },
                ));
            };
            store
                .verify(signed, &text, sig)
                .map_err(|e| mom_refused(version, e))?;
        }
        let manifest =
            Manifest::parse(&text, manifest::Kind::Mom).map_err(|source| Error::Manifest {
                name: url.to_string(),
                source,
            })?;
        if manifest.header.version != version {
            return Err(Error::Mom {
                version,
                reason: format!(
                    "it says version {} (a signed MoM of another release: mix-and-match)",
                    manifest.header.version
                ),
            });
        }
        Ok(VerifiedMom {
            manifest,
            text: text.into(),
            signature: signature.map(Into::into),
        })
    }

    /// Step 2: a bundle manifest, whose swupd hash (text plus the metadata its tar
    /// records) must equal the MoM's line for it.
    pub fn manifest(&self, mom: &VerifiedMom, bundle: &str) -> Result<VerifiedManifest> {
        let line = mom
            .bundle(bundle)
            .ok_or_else(|| Error::UnknownBundle(bundle.to_string()))?;
        let rel = format!("{}/Manifest.{bundle}.tar", line.version);
        let url = self.content.url(&rel);
        // A mirror whose manifest does not hash right is set aside; another is asked.
        let text = self
            .content
            .each_mirror(|content| {
                let url = content.url(&rel);
                let download = content.open(&rel, limits::MANIFEST_DOWNLOAD)?;
                hashed_manifest_text(download, bundle, &url, line.hash)
            })
            // A manifest the signed MoM lists but the server lacks, or that cannot be
            // reached once the MoM was: swupd's RECURSE_MANIFEST (exit 8).
            .map_err(|e| match crate::source::is_absent(&e) || is_connect(&e) {
                true => Error::ManifestMissing {
                    bundle: bundle.to_string(),
                    reason: e.to_string(),
                },
                false => e,
            })?;
        hashed_manifest(mom, bundle, &url, text.0, text.1)
    }

    /// Step 3: a fullfile, streamed from the server through decompression and the hash
    /// into `dir/<hash>`; `bound` caps both the download and the unpacked size. Nothing
    /// is left under the final name unless the hash matched.
    pub fn stage(&self, entry: &Entry, dir: &Path, bound: u64) -> Result<StagedFile> {
        let final_path = dir.join(entry.hash.to_hex());
        if let Some(staged) = reuse_staged(entry, &final_path)? {
            return Ok(staged);
        }
        // A mirror whose bytes fail here is set aside and the file fetched from another.
        // A server that cannot be reached by now fails a download (swupd's 17, naming the
        // object), not the connection the version check made.
        self.content
            .each_mirror(|content| Self::stage_from(content, entry, dir, bound, &final_path))
            .map_err(|e| match e {
                Error::Connect { url, reason } => Error::Download {
                    url,
                    reason: format!("cannot connect: {reason}"),
                },
                e => e,
            })
    }

    /// [`Chain::stage`] from one server.
    fn stage_from(
        content: &Source,
        entry: &Entry,
        dir: &Path,
        bound: u64,
        final_path: &Path,
    ) -> Result<StagedFile> {
        let rel = format!("{}/files/{}.tar", entry.version, entry.hash);
        let url = content.url(&rel);
        let mut download = content.open(&rel, archive::compressed_bound(bound))?;
        let tmp = dir.join(format!(".partial.{}.{}", entry.hash, std::process::id()));
        // The temporary is removed on every failure once something may have been written.
        let mut wrote = false;
        let unpacked = unpack_fullfile(
            &mut download,
            entry,
            bound,
            &url,
            |meta, target, mut item| {
                remove_any(&tmp)?;
                match write_staged(&mut item, meta, target, &tmp) {
                    Ok(h) => {
                        wrote = true;
                        Ok(h)
                    }
                    Err(e) => {
                        let _ = remove_any(&tmp);
                        Err(match e {
                            StageError::Read(e) => download_error(&url, e),
                            StageError::Write(e) => Error::io(&tmp, e),
                        })
                    }
                }
            },
        );
        if let Err(e) = unpacked {
            if wrote {
                remove_any(&tmp)?;
            }
            return Err(e);
        }
        std::fs::rename(&tmp, final_path).map_err(|e| Error::io(final_path, e))?;
        // The identity is read after the rename, which updates the change time; the
        // staging area is private, so nobody else can have put another object there.
        let mut staged = StagedFile::at(entry.hash, final_path.to_path_buf())?;
        staged.fetched = download.bytes_read();
        Ok(staged)
    }
}

fn identity(md: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (md.dev(), md.ino(), md.ctime(), md.ctime_nsec())
}

/// Parses the text of `bundle` that hashed to its MoM line (fetched from `url`), and
/// checks it names the version the line gives.
fn hashed_manifest(
    mom: &VerifiedMom,
    bundle: &str,
    url: &str,
    text: Vec<u8>,
    meta: Meta,
) -> Result<VerifiedManifest> {
    let line = mom
        .bundle(bundle)
        .ok_or_else(|| Error::UnknownBundle(bundle.to_string()))?;
    let manifest =
        Manifest::parse(&text, manifest::Kind::Bundle).map_err(|source| Error::Manifest {
            name: url.to_string(),
            source,
        })?;
    if manifest.header.version != line.version {
        return Err(Error::Mom {
            version: mom.version(),
            reason: format!(
                "{url} says version {} but the MoM lists {}",
                manifest.header.version, line.version
            ),
        });
    }
    Ok(VerifiedManifest {
        name: bundle.to_string(),
        manifest,
        text: text.into(),
        meta,
    })
}

/// The text of a bundle manifest whose swupd hash (text plus the metadata its tar
/// records) equals `expected`. Until that is known the text is unverified, so it is
/// unpacked through the hash into an unnamed temporary file rather than into memory: a
/// bomb costs at most `limits::MANIFEST_TEXT` of temporary disk and a decoder's memory.
/// Only verified text is read back.
fn hashed_manifest_text(
    download: impl Read,
    bundle: &str,
    url: &str,
    expected: Hash,
) -> Result<(Vec<u8>, Meta)> {
    let spool_dir = std::env::temp_dir();
    let mut spool = tempfile::tempfile().map_err(|e| Error::io(&spool_dir, e))?;
    let (meta, actual) = archive::with_manifest_entry(
        download,
        bundle,
        url,
        limits::MANIFEST_TEXT,
        |meta, content| {
            let mut hasher = Hasher::new(meta, &[]);
            let mut buf = vec![0u8; hash::READ_BUF];
            loop {
                let n = match content.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(archive::read_error(url, e)),
                };
                hasher.update(&buf[..n]);
                spool
                    .write_all(&buf[..n])
                    .map_err(|e| Error::io(&spool_dir, e))?;
            }
            Ok(hasher.finish())
        },
    )?;
    if actual != expected {
        return Err(Error::HashMismatch {
            subject: Subject::Manifest,
            what: url.to_string(),
            expected,
            actual,
        });
    }
    // The tar entry yielded exactly the size its header gave, within the cap.
    let mut text = Vec::with_capacity(meta.size as usize);
    spool
        .seek(std::io::SeekFrom::Start(0))
        .and_then(|_| spool.read_to_end(&mut text))
        .map_err(|e| Error::io(&spool_dir, e))?;
    Ok((text, meta))
}

/// A staged file left by an earlier, interrupted run is used only if it still hashes right.
fn reuse_staged(entry: &Entry, path: &Path) -> Result<Option<StagedFile>> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    if hash::hash_path(path, false).map_err(|e| Error::io(path, e))? == entry.hash {
        return StagedFile::at(entry.hash, path.to_path_buf()).map(Some);
    }
    remove_any(path)?;
    Ok(None)
}

enum StageError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Writes one tar entry as the object it describes, hashing as it goes.
fn write_staged(
    item: &mut impl Read,
    meta: &Meta,
    link_target: Option<&[u8]>,
    tmp: &Path,
) -> Result<Hash, StageError> {
    let mut hasher = Hasher::new(meta, &[]);
    match meta.kind {
        Kind::Dir => {
            std::fs::create_dir(tmp).map_err(StageError::Write)?;
            set_owner_mode(tmp, meta).map_err(StageError::Write)?;
        }
        Kind::Symlink => {
            let target = link_target.unwrap_or_default();
            hasher.update(target);
            symlink(std::ffi::OsStr::from_bytes(target), tmp).map_err(StageError::Write)?;
            set_owner_mode(tmp, meta).map_err(StageError::Write)?;
        }
        Kind::File => {
            let mut out = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(tmp)
                .map_err(StageError::Write)?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match item.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(StageError::Read(e)),
                };
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(StageError::Write)?;
            }
            crate::fsutil::start_writeback(&out);
            drop(out);
            set_owner_mode(tmp, meta).map_err(StageError::Write)?;
        }
    }
    Ok(hasher.finish())
}

fn set_owner_mode(path: &Path, meta: &Meta) -> std::io::Result<()> {
    lchown(path, Some(meta.uid), Some(meta.gid)).map_err(|e| {
        match e.kind() {
            // Content owned by others (root, as a rule) staged by an unprivileged user.
            std::io::ErrorKind::PermissionDenied => std::io::Error::new(
                e.kind(),
                format!(
                    "cannot give a staged file owner {}:{} as uid {}: installing this content needs root ({e})",
                    meta.uid,
                    meta.gid,
                    nix::unistd::geteuid()
                ),
            ),
            _ => e,
        }
    })?;
    if meta.kind != Kind::Symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode & 0o7777))?;
    }
    Ok(())
}

fn remove_any(path: &Path) -> Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    result.map_err(|e| Error::io(path, e))
}

/// Freshness and rollback rules on a verified MoM (docs/trust.md).
pub struct Freshness {
    /// The highest version ever installed here.
    pub high_water_mark: u32,
    /// `--allow-downgrade`: lab use only.
    pub allow_downgrade: bool,
    /// `--max-age`: refuse a MoM built longer ago than this many days.
    pub max_age_days: Option<u64>,
    /// The current time, unix seconds.
    pub now: u64,
}

impl Freshness {
    /// Refuses a MoM below the high-water mark or older than the allowed age.
    pub fn check(&self, mom: &VerifiedMom) -> Result<()> {
        if mom.version() < self.high_water_mark && !self.allow_downgrade {
            return Err(Error::Policy(format!(
                "version {} is older than version {} installed before (rollback); --allow-downgrade overrides",
                mom.version(),
                self.high_water_mark
            )));
        }
        if let Some(days) = self.max_age_days {
            let age = self.now.saturating_sub(mom.timestamp());
            if age > days.saturating_mul(86_400) {
                return Err(Error::Policy(format!(
                    "the MoM of version {} was built {} days ago, more than --max-age {days} (freeze attack?)",
                    mom.version(),
                    age / 86_400
                )));
            }
        }
        Ok(())
    }
}

fn is_connect(e: &Error) -> bool {
    matches!(e, Error::Connect { .. })
}

/// A MoM whose signature is missing or does not verify, or that cannot be reached, is a
/// MoM that cannot be loaded: swupd's exit code 4 for it, the fault kept as the reason.
/// A trust store that cannot be read stays its own error (21), as in swupd.
fn mom_refused(version: u32, e: Error) -> Error {
    match e {
        Error::Signature { .. } | Error::Connect { .. } => Error::Mom {
            version,
            reason: e.to_string(),
        },
        other => other,
    }
}
