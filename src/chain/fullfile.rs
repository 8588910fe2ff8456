//! The reading half of step 3: a fullfile tar (`files/<hash>.tar`), its compression, its
//! one entry and that entry's name, type and hash. It takes a reader and hands the entry
//! to a writer, so the parsing of server bytes can be exercised (fuzzed) on its own,
//! without a server or a staging area.

use std::io::Read;

use crate::archive::{self, Bounded, ExactSize, TAR_SLACK};
use crate::error::Subject;
use crate::hash::{Hash, Kind, Meta};
use crate::manifest::{Entry, EntryType};
use crate::source::download_error;
use crate::{Error, Result};

/// Unpacks the fullfile of `entry` from `download` (read from `url`; decompressed to at
/// most `bound` plus [`TAR_SLACK`] bytes). Its first entry must be named after the hash
/// and be of the type the manifest lists; its metadata, symlink target and content go to
/// `write`, which returns the hash of what it wrote. That hash must be `entry.hash`, and
/// the archive must then hold no other entry and end within the bound.
pub fn unpack_fullfile(
    download: impl Read,
    entry: &Entry,
    bound: u64,
    url: &str,
    write: impl FnOnce(&Meta, Option<&[u8]>, &mut dyn Read) -> Result<Hash>,
) -> Result<()> {
    let bad = |reason: String| Error::Archive {
        what: url.to_string(),
        reason,
    };
    let io = |e: std::io::Error| download_error(url, e);
    let plain = Bounded::new(
        archive::decompress(download).map_err(io)?,
        bound + TAR_SLACK,
        "its unpacked content",
    );
    let mut tar = tar::Archive::new(plain);
    let mut entries = tar.entries().map_err(io)?;
    let mut item = entries
        .next()
        .ok_or_else(|| bad("the archive is empty".into()))?
        .map_err(io)?;
    let name = item.path_bytes().into_owned();
    let hex = entry.hash.to_hex();
    if name != hex.as_bytes() && name != format!("{hex}/").as_bytes() {
        return Err(bad(format!(
            "holds {:?} instead of {hex}",
            String::from_utf8_lossy(&name)
        )));
    }
    let (meta, link_target) = archive::entry_meta(&item).map_err(|e| bad(e.to_string()))?;
    let expected_kind = match entry.etype {
        EntryType::Dir => Kind::Dir,
        EntryType::Link => Kind::Symlink,
        _ => Kind::File,
    };
    if meta.kind != expected_kind {
        return Err(bad(format!(
            "holds a {:?} where the manifest lists a {:?}",
            meta.kind, expected_kind
        )));
    }
    // Only a regular file has content; whatever else an entry carries is not read.
    let size = if meta.kind == Kind::File {
        meta.size
    } else {
        0
    };
    let actual = write(
        &meta,
        link_target.as_deref(),
        &mut ExactSize::new(&mut item, size),
    )?;
    if actual != entry.hash {
        return Err(Error::HashMismatch {
            subject: Subject::File,
            what: format!("{} (from {url})", entry.path),
            expected: entry.hash,
            actual,
        });
    }
    if entries.next().is_some() {
        return Err(bad("holds more than one entry".into()));
    }
    // The object must also end (within the bound): a server that keeps sending after
    // the archive is cut off and refused, not silently left hanging.
    drop(item);
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;
    use crate::manifest::{Misc, Status};

    /// The fullfile tar (uncompressed) of `content` as a root-owned 0644 file, and its
    /// manifest entry.
    fn fullfile(content: &[u8]) -> (Vec<u8>, Entry) {
        let hash = hash_bytes(&Meta::file(0o644, 0, 0, content.len() as u64), content);
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut h, hash.to_hex(), content).unwrap();
        let entry = Entry {
            etype: EntryType::File,
            status: Status::Present,
            modifier: b'.',
            misc: Misc::None,
            hash,
            version: 10,
            path: "/f".into(),
        };
        (b.into_inner().unwrap(), entry)
    }

    /// Unpacks into memory, hashing as the stager does.
    fn unpack(tar: &[u8], entry: &Entry) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        unpack_fullfile(tar, entry, 1 << 20, "t", |meta, _, content| {
            content
                .read_to_end(&mut out)
                .map_err(|e| download_error("t", e))?;
            Ok(hash_bytes(meta, &out))
        })?;
        Ok(out)
    }

    #[test]
    fn a_whole_fullfile_unpacks() {
        let (tar, entry) = fullfile(b"hello fuzz\n");
        assert_eq!(unpack(&tar, &entry).unwrap(), b"hello fuzz\n");
    }

    /// Found with the `fullfile` fuzz target: a tar cut off inside its entry was read as a
    /// shorter file and refused only by the hash, as if the content had been tampered with.
    #[test]
    fn a_fullfile_cut_off_inside_its_entry_is_refused_as_such() {
        let (tar, entry) = fullfile(b"hello fuzz\n");
        let err = unpack(&tar[..512 + 6], &entry).unwrap_err();
        assert!(err.to_string().contains("cut off"), "{err}");
    }
}
