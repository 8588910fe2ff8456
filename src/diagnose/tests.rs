use std::os::unix::fs::symlink;
use std::path::Path;

use super::check::{self, DirCache};
use super::picky::{manifest_path, state_inside};
use super::*;
use crate::hash::hash_path;
use crate::install::TargetRoot;
use crate::manifest::{Entry, Misc, Status};

/// An entry for `path` whose hash is what `tree/path` hashes to.
fn entry(tree: &Path, path: &str, etype: EntryType) -> Entry {
    let hash = hash_path(&tree.join(path.trim_start_matches('/')), false).unwrap();
    Entry {
        etype,
        status: Status::Present,
        modifier: b'.',
        misc: Misc::None,
        hash,
        version: 10,
        path: path.into(),
    }
}

fn deleted(path: &str) -> Entry {
    Entry {
        etype: EntryType::Unset,
        status: Status::Deleted,
        modifier: b'.',
        misc: Misc::None,
        hash: Hash::ZERO,
        version: 10,
        path: path.into(),
    }
}

fn run(root: &TargetRoot, entries: &[Entry], quick: bool) -> Vec<Finding> {
    // One cache across all entries, as one worker sees them.
    let mut cache = DirCache::default();
    entries
        .iter()
        .filter_map(|e| check::one(root, &mut cache, e, quick).0)
        .collect()
}

fn kinds(found: &[Finding]) -> Vec<(&str, &str)> {
    found.iter().map(|f| (f.path.as_str(), f.kind())).collect()
}

#[test]
fn each_kind_of_damage_is_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["usr/a", "usr/b", "usr/lib/x", "etc"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    for f in ["usr/a/f", "usr/b/f", "usr/b/g", "usr/lib/x/in", "etc/conf"] {
        std::fs::write(d.join(f), f.as_bytes()).unwrap();
    }
    let entries = vec![
        entry(d, "/etc/conf", EntryType::File),
        entry(d, "/usr/a/f", EntryType::File),
        entry(d, "/usr/b/f", EntryType::File),
        entry(d, "/usr/b/g", EntryType::File),
        entry(d, "/usr/lib/x", EntryType::Dir),
        entry(d, "/usr/lib/x/in", EntryType::File),
        deleted("/usr/old"),
        deleted("/usr/gone"),
        deleted("/usr/lib/x/deleted-behind-link"),
    ];
    let root = TargetRoot::open(d, crate::install::Create::Never).unwrap();
    assert!(run(&root, &entries, false).is_empty());

    std::fs::write(d.join("usr/old"), b"still here").unwrap();
    std::fs::write(d.join("etc/conf"), b"edited").unwrap();
    std::fs::write(d.join("usr/b/f"), b"changed").unwrap();
    std::fs::remove_file(d.join("usr/b/g")).unwrap();
    std::fs::remove_dir_all(d.join("usr/a")).unwrap();
    std::fs::remove_dir_all(d.join("usr/lib/x")).unwrap();
    std::fs::write(outside.path().join("deleted-behind-link"), b"").unwrap();
    symlink(outside.path(), d.join("usr/lib/x")).unwrap();
    let found = run(&root, &entries, false);
    assert_eq!(
        kinds(&found),
        [
            ("/etc/conf", "local-change"),
            ("/usr/a/f", "missing"),
            ("/usr/b/f", "mismatch"),
            ("/usr/b/g", "missing"),
            ("/usr/lib/x", "mismatch"),
            ("/usr/lib/x/in", "unreachable"),
            ("/usr/old", "not-deleted"),
        ]
    );
    assert!(!found[0].is_problem());
    assert_eq!(found[2].type_differs(), None);
    assert_eq!(found[4].type_differs(), Some((Kind::Dir, Kind::Symlink)));
    assert!(
        found[4]
            .message()
            .ends_with("type differs: expected directory, found symlink"),
        "{}",
        found[4].message()
    );

    // Quick: missing entries only.
    assert_eq!(
        kinds(&run(&root, &entries, true)),
        [
            ("/usr/a/f", "missing"),
            ("/usr/b/g", "missing"),
            ("/usr/lib/x/in", "unreachable")
        ]
    );
}

#[test]
fn messages_name_the_path_and_both_hashes() {
    let (expected, actual) = (Hash([1; 32]), Hash([2; 32]));
    let f = Finding::new(
        "/usr/bin/x",
        Problem::Mismatch {
            expected,
            actual,
            found: Meta::file(0o600, 0, 0, 3),
        },
        Some(EntryType::File),
    );
    let msg = f.message();
    assert!(msg.contains("/usr/bin/x"), "{msg}");
    assert!(msg.contains(&format!("expected {expected}")), "{msg}");
    assert!(msg.contains(&format!("actual {actual}")), "{msg}");
    assert!(!msg.contains("type differs"), "{msg}");
    let report = Report {
        version: 10,
        checked: 1,
        findings: vec![
            f,
            Finding::new(
                "/etc/x",
                Problem::LocalChange { expected, actual },
                Some(EntryType::File),
            ),
        ],
    };
    assert_eq!(report.problems().count(), 1);
    assert!(!report.is_clean());
}

#[test]
fn picky_paths() {
    let tree = Path::new("/r/usr");
    assert_eq!(
        manifest_path("/usr", tree, Path::new("/r/usr/a/b")),
        "/usr/a/b"
    );
    assert_eq!(
        state_inside(Path::new("/r"), Path::new("/r/var/lib/chainup")).as_deref(),
        Some("/var/lib/chainup")
    );
    assert_eq!(state_inside(Path::new("/r"), Path::new("/elsewhere")), None);
    assert_eq!(state_inside(Path::new("/r"), Path::new("/r")), None);
}
