//! The new bundle manifest, versioned against the previous one: unchanged entries keep
//! their version (and so their old fullfile), changed and new ones get the new version,
//! and paths that disappeared become deleted lines.

use std::collections::{HashMap, HashSet};

use chainup::hash::Hash;
use chainup::manifest::{Entry, EntryType, Header, Manifest, Misc, Status};

use crate::tree::Item;

/// Header fields shared by every manifest of a release.
#[derive(Debug, Clone, Copy)]
pub struct Release {
    pub format: u32,
    pub version: u32,
    /// 0 when there is no previous release.
    pub previous: u32,
    pub timestamp: u64,
}

impl Release {
    /// A header with this release's fields and no counts yet.
    pub fn header(&self) -> Header {
        Header {
            format: self.format,
            version: self.version,
            previous: self.previous,
            timestamp: self.timestamp,
            ..Header::default()
        }
    }
}

/// The manifest of one bundle for `rel`, given its items and its previous manifest.
pub fn bundle_manifest(
    rel: &Release,
    items: &[Item],
    includes: &[String],
    also_add: &[String],
    prev: Option<&Manifest>,
) -> Manifest {
    // Optimised variants share a path, so a line is identified by path and modifier.
    let old: HashMap<(&str, u8), &Entry> = prev
        .map(|m| {
            m.entries
                .iter()
                .map(|e| ((e.path.as_str(), e.modifier), e))
                .collect()
        })
        .unwrap_or_default();
    let mut entries = Vec::with_capacity(items.len());
    let mut contentsize = 0u64;
    for item in items {
        let misc = if item.image.is_some() {
            Misc::Image
        } else {
            Misc::None
        };
        let version = match old.get(&(item.path.as_str(), b'.')) {
            Some(e)
                if e.is_present()
                    && e.hash == item.hash
                    && e.etype == item.etype
                    && e.misc == misc =>
            {
                e.version
            }
            _ => rel.version,
        };
        if item.etype == EntryType::File {
            contentsize += item.meta.size;
        }
        entries.push(Entry {
            etype: item.etype,
            status: Status::Present,
            modifier: b'.',
            misc,
            hash: item.hash,
            version,
            path: item.path.clone(),
        });
    }
    let now: HashSet<&str> = items.iter().map(|i| i.path.as_str()).collect();
    for e in prev.iter().flat_map(|m| &m.entries) {
        if e.modifier == b'.' && now.contains(e.path.as_str()) {
            continue;
        }
        if !e.is_present() {
            // Kept so a client that skips this release still removes the path.
            entries.push(e.clone());
        } else {
            entries.push(Entry {
                etype: EntryType::Unset,
                status: Status::Deleted,
                modifier: e.modifier,
                // A vanished image stays marked as one, so no client mistakes it for a
                // file `/core` to delete from the root.
                misc: if e.misc == Misc::Image {
                    Misc::Image
                } else {
                    Misc::None
                },
                hash: Hash::ZERO,
                version: rel.version,
                path: e.path.clone(),
            });
        }
    }
    let mut m = Manifest {
        header: Header {
            filecount: entries.len() as u64,
            contentsize,
            includes: includes.to_vec(),
            also_add: also_add.to_vec(),
            ..rel.header()
        },
        entries,
    };
    m.sort_entries();
    m
}

/// True when `new` says the same as `old` apart from the release fields of the header, so
/// the old manifest can stay in place.
pub fn unchanged(new: &Manifest, old: &Manifest) -> bool {
    let key = |m: &Manifest| {
        let mut v: Vec<_> = m.entries.iter().collect();
        v.sort_by(|a, b| (&a.path, a.modifier).cmp(&(&b.path, b.modifier)));
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    new.header.format == old.header.format
        && new.header.includes == old.header.includes
        && new.header.also_add == old.header.also_add
        && key(new) == key(old)
}

/// A path that was a directory in the previous release and is something else now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirTypeChange {
    pub path: String,
    /// What it became: a file or a symlink.
    pub now: EntryType,
}

/// The paths that some bundle of the previous release listed as a directory and some
/// bundle of this release lists as a file or symlink. Clients must remove the directory
/// to install the new entry, which fails (or loses local files) when it holds anything no
/// manifest lists, so the publisher warns about each.
pub fn dirs_changing_type<'a>(
    prev: impl IntoIterator<Item = &'a Manifest>,
    new: impl IntoIterator<Item = &'a Manifest>,
) -> Vec<DirTypeChange> {
    let was_dir: HashSet<&str> = prev
        .into_iter()
        .flat_map(|m| &m.entries)
        .filter(|e| e.etype == EntryType::Dir && e.is_present())
        .map(|e| e.path.as_str())
        .collect();
    let mut out: Vec<DirTypeChange> = new
        .into_iter()
        .flat_map(|m| &m.entries)
        .filter(|e| matches!(e.etype, EntryType::File | EntryType::Link) && e.is_present())
        .filter(|e| was_dir.contains(e.path.as_str()))
        .map(|e| DirTypeChange {
            path: e.path.clone(),
            now: e.etype,
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Source;
    use chainup::hash::{hash_bytes, Meta};

    const REL10: Release = Release {
        format: 30,
        version: 10,
        previous: 0,
        timestamp: 1,
    };
    const REL20: Release = Release {
        format: 30,
        version: 20,
        previous: 10,
        timestamp: 2,
    };

    fn file(path: &str, data: &[u8]) -> Item {
        let meta = Meta::file(0o644, 0, 0, data.len() as u64);
        Item {
            path: path.into(),
            etype: EntryType::File,
            image: None,
            meta,
            hash: hash_bytes(&meta, data),
            source: Source::Synthetic,
        }
    }

    fn line<'a>(m: &'a Manifest, path: &str) -> &'a Entry {
        m.entries.iter().find(|e| e.path == path).unwrap()
    }

    #[test]
    fn directories_that_became_files_are_found_across_bundles() {
        let dir = |path: &str| {
            let meta = Meta::dir(0o755, 0, 0);
            Item {
                etype: EntryType::Dir,
                hash: hash_bytes(&meta, b""),
                meta,
                ..file(path, b"")
            }
        };
        let core10 = bundle_manifest(&REL10, &[dir("/d"), dir("/e")], &[], &[], None);
        let core20 = bundle_manifest(&REL20, &[dir("/e")], &[], &[], Some(&core10));
        // /d moved to another bundle, as a file.
        let editors20 = bundle_manifest(&REL20, &[file("/d", b"d")], &[], &[], None);
        assert_eq!(
            dirs_changing_type([&core10], [&core20, &editors20]),
            [DirTypeChange {
                path: "/d".into(),
                now: EntryType::File
            }]
        );
        assert!(dirs_changing_type([&core10], [&core10]).is_empty());
    }

    #[test]
    fn versions_deletions_and_carry_over() {
        let v10 = bundle_manifest(
            &REL10,
            &[file("/a", b"a"), file("/b", b"b"), file("/c", b"c")],
            &[],
            &[],
            None,
        );
        assert!(v10.entries.iter().all(|e| e.version == 10));
        assert_eq!(v10.header.contentsize, 3);

        let v20 = bundle_manifest(
            &REL20,
            &[file("/a", b"a"), file("/b", b"B!"), file("/d", b"d")],
            &["os-core".into()],
            &[],
            Some(&v10),
        );
        assert_eq!(line(&v20, "/a").version, 10);
        assert_eq!(line(&v20, "/b").version, 20);
        assert_eq!(line(&v20, "/d").version, 20);
        let c = line(&v20, "/c");
        assert_eq!(
            (c.status, c.hash, c.version),
            (Status::Deleted, Hash::ZERO, 20)
        );
        assert_eq!(v20.header.filecount, 4);
        assert_eq!(v20.header.contentsize, 4);
        assert_eq!(v20.header.previous, 10);
        // Sorted as mixer does: version, then path.
        let order: Vec<_> = v20.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(order, ["/a", "/b", "/c", "/d"]);

        // The deletion is carried over unchanged; a reappearing path is new.
        let rel30 = Release {
            version: 30,
            previous: 20,
            ..REL20
        };
        let v30 = bundle_manifest(
            &rel30,
            &[file("/a", b"a"), file("/b", b"B!")],
            &[],
            &[],
            Some(&v20),
        );
        assert_eq!(line(&v30, "/c"), c);
        assert_eq!(line(&v30, "/d").status, Status::Deleted);
        let v40 = bundle_manifest(
            &Release {
                version: 40,
                ..rel30
            },
            &[file("/a", b"a"), file("/b", b"B!"), file("/c", b"c")],
            &[],
            &[],
            Some(&v30),
        );
        let c = line(&v40, "/c");
        assert_eq!((c.status, c.version), (Status::Present, 40));
    }

    #[test]
    fn type_or_image_change_is_a_change() {
        let v10 = bundle_manifest(&REL10, &[file("/core", b"x")], &[], &[], None);
        let mut img = file("/core", b"x");
        img.image = Some(chainup::manifest::ImageKind::Core);
        let v20 = bundle_manifest(&REL20, &[img], &[], &[], Some(&v10));
        assert_eq!(line(&v20, "/core").version, 20);
        assert_eq!(line(&v20, "/core").misc, Misc::Image);
        let v30 = bundle_manifest(&REL20, &[], &[], &[], Some(&v20));
        assert_eq!(line(&v30, "/core").misc, Misc::Image);
        assert_eq!(line(&v30, "/core").status, Status::Deleted);
        let text = v30.serialize();
        assert!(text.contains(".d.i\t"), "{text}");
        Manifest::parse(text.as_bytes(), chainup::manifest::Kind::Bundle).unwrap();
    }

    #[test]
    fn unchanged_compares_entries_and_dependencies() {
        let items = [file("/a", b"a")];
        let v10 = bundle_manifest(&REL10, &items, &[], &[], None);
        let v20 = bundle_manifest(&REL20, &items, &[], &[], Some(&v10));
        assert!(unchanged(&v20, &v10));
        let inc = bundle_manifest(&REL20, &items, &["x".into()], &[], Some(&v10));
        assert!(!unchanged(&inc, &v10));
        let add = bundle_manifest(&REL20, &items, &[], &["x".into()], Some(&v10));
        assert!(!unchanged(&add, &v10));
        let changed = bundle_manifest(&REL20, &[file("/a", b"A")], &[], &[], Some(&v10));
        assert!(!unchanged(&changed, &v10));
    }
}
