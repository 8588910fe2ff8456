use super::*;
use crate::manifest::{Entry, Header, Manifest, Misc};

fn h(n: u8) -> Hash {
    Hash([n; 32])
}

fn entry(etype: EntryType, status: Status, hash: Hash, version: u32, path: &str) -> Entry {
    Entry {
        etype,
        status,
        modifier: b'.',
        misc: Misc::None,
        hash,
        version,
        path: path.into(),
    }
}

fn file(n: u8, path: &str) -> Entry {
    entry(EntryType::File, Status::Present, h(n), 10, path)
}

fn deleted(path: &str) -> Entry {
    entry(EntryType::Unset, Status::Deleted, Hash::ZERO, 20, path)
}

fn set(entries: Vec<Entry>) -> FileSet {
    let m = Manifest {
        header: Header::default(),
        entries,
    };
    FileSet::from_manifests(&[VerifiedManifest::for_test("b", m)])
}

fn no_disk(_: &str) -> Result<Option<Hash>> {
    Ok(None)
}

#[test]
fn changed_new_and_gone_entries() {
    let old = set(vec![
        file(1, "/usr/a"),
        file(2, "/usr/b"),
        file(3, "/usr/c"),
        file(4, "/usr/d"),
    ]);
    let dir = entry(EntryType::Dir, Status::Present, h(9), 20, "/usr/new");
    let new = set(vec![
        file(1, "/usr/a"),
        file(5, "/usr/b"),
        deleted("/usr/c"),
        dir,
        file(6, "/usr/new/x"),
    ]);
    let p = plan(&old, &new, &no_disk, Baseline::Manifests).unwrap();
    let paths = |v: &[Entry]| v.iter().map(|e| e.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&p.dirs), ["/usr/new"]);
    assert_eq!(paths(&p.files), ["/usr/b", "/usr/new/x"]);
    assert_eq!(p.deletions, ["/usr/d", "/usr/c"]);
}

#[test]
fn config_edits_are_kept() {
    let old = set(vec![
        file(1, "/etc/edited"),
        file(2, "/etc/pristine"),
        file(3, "/etc/gone-edited"),
    ]);
    let new = set(vec![
        file(7, "/etc/edited"),
        file(8, "/etc/pristine"),
        file(9, "/etc/fresh"),
    ]);
    let disk = |p: &str| -> Result<Option<Hash>> {
        Ok(match p {
            "/etc/edited" => Some(h(100)),
            "/etc/pristine" => Some(h(2)),
            "/etc/gone-edited" => Some(h(101)),
            _ => None,
        })
    };
    let p = plan(&old, &new, &disk, Baseline::Manifests).unwrap();
    let files: Vec<_> = p.files.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(files, ["/etc/fresh", "/etc/pristine"]);
    assert_eq!(p.kept, ["/etc/edited", "/etc/gone-edited"]);
    assert!(p.deletions.is_empty());
}

#[test]
fn state_is_created_never_replaced_or_removed() {
    let old = set(vec![file(1, "/var/lib/x"), file(2, "/var/lib/y")]);
    let new = set(vec![file(3, "/var/lib/x"), file(4, "/var/lib/z")]);
    let disk = |p: &str| -> Result<Option<Hash>> { Ok((p == "/var/lib/x").then_some(h(1))) };
    let p = plan(&old, &new, &disk, Baseline::Manifests).unwrap();
    let files: Vec<_> = p.files.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(files, ["/var/lib/z"]);
    assert!(p.deletions.is_empty());
}

#[test]
fn consolidation_prefers_present_and_plain() {
    let mut fancy = file(5, "/usr/bin/x");
    fancy.modifier = b'e';
    let a = VerifiedManifest::for_test(
        "a",
        Manifest {
            header: Header::default(),
            entries: vec![deleted("/usr/shared"), fancy, file(6, "/usr/bin/x")],
        },
    );
    let b = VerifiedManifest::for_test(
        "b",
        Manifest {
            header: Header::default(),
            entries: vec![file(7, "/usr/shared")],
        },
    );
    let s = FileSet::from_manifests([&a, &b]);
    assert_eq!(s.get("/usr/shared").unwrap().hash, h(7));
    assert_eq!(s.get("/usr/bin/x").unwrap().hash, h(6));
    assert_eq!(s.len(), 2);
}

#[test]
fn needed_is_deduplicated_by_hash() {
    let new = set(vec![file(1, "/usr/a"), file(1, "/usr/b")]);
    let p = plan(&FileSet::default(), &new, &no_disk, Baseline::Manifests).unwrap();
    assert_eq!(p.files.len(), 2);
    assert_eq!(p.needed().len(), 1);
}

#[test]
fn classes() {
    assert_eq!(classify("/etc/x"), PathClass::Config);
    assert_eq!(classify("/etc"), PathClass::Normal);
    assert_eq!(classify("/var/lib/x"), PathClass::State);
    assert_eq!(classify("/usr/lib/modules/6.1/x"), PathClass::Boot);
    assert_eq!(classify("/usr/bin/x"), PathClass::Normal);
}
