//! diagnose and repair `--file PATH` as swupd 7.0.0 runs them: a directory is checked
//! with everything under it, a partial name matches nothing, an unlisted path checks
//! nothing, and `--picky`/`--extra-files-only` look under PATH unless `--picky-tree`
//! says otherwise. Through the real binary, against content made by chainup-publish on a
//! loopback server.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::process::Output;

use fixture::{ok, text, World};

/// Release 20 installed, where 20 deleted /usr/share/bar/file_2 and added file_4,
/// bat/file_5 and /usr/share/baz/file_3; then the root damaged as swupd's diagnose-path
/// tests damage theirs: 20's additions under /usr/share/bar missing, file_2 back, and
/// untracked files in /usr/share/bar, /usr and /usr/share/barn.
fn damaged() -> World {
    let w = World::new();
    w.sample(10);
    w.file(10, "os-core", "/usr/share/foo/file_1", b"one\n", 0o644);
    w.file(10, "os-core", "/usr/share/bar/file_2", b"two\n", 0o644);
    ok(w.publish(10, &[]));
    w.derive(10, 20);
    std::fs::remove_file(w.tree(20, "os-core").join("usr/share/bar/file_2")).unwrap();
    w.file(20, "os-core", "/usr/share/bar/file_4", b"four\n", 0o644);
    w.file(20, "os-core", "/usr/share/bar/bat/file_5", b"five\n", 0o644);
    w.file(20, "os-core", "/usr/share/baz/file_3", b"three\n", 0o644);
    ok(w.publish(20, &[]));
    ok(w.chainup(&["os-install", "-V", "20"]));
    std::fs::remove_dir_all(at(&w, "/usr/share/bar/bat")).unwrap();
    std::fs::remove_file(at(&w, "/usr/share/bar/file_4")).unwrap();
    std::fs::write(at(&w, "/usr/share/bar/file_2"), b"two\n").unwrap();
    std::fs::write(at(&w, "/usr/share/bar/untracked_file2"), b"").unwrap();
    std::fs::write(at(&w, "/usr/untracked_file3"), b"").unwrap();
    std::fs::create_dir(at(&w, "/usr/share/barn")).unwrap();
    std::fs::write(at(&w, "/usr/share/barn/x"), b"").unwrap();
    w
}

fn at(w: &World, path: &str) -> std::path::PathBuf {
    w.root.join(path.trim_start_matches('/'))
}

#[track_caller]
fn exits(out: &Output, want: i32) {
    assert_eq!(out.status.code(), Some(want), "{}", text(out));
}

/// The finding lines of a run, as (kind word, path) sorted: "Missing", "Not deleted",
/// "Extra", "Hash mismatch".
fn findings(out: &Output) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (kind, rest) = l.split_once(": ")?;
            let path = rest.split(' ').next()?;
            ["Missing", "Not deleted", "Extra", "Hash mismatch"]
                .contains(&kind)
                .then(|| (kind.to_string(), path.to_string()))
        })
        .collect();
    found.sort();
    found
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = want
        .iter()
        .map(|(k, p)| (k.to_string(), p.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn file_names_a_directory_recursively_and_never_a_partial_name() {
    let w = damaged();
    let out = w.chainup(&["diagnose", "--file", "/usr/share/bar"]);
    exits(&out, 1);
    assert_eq!(
        findings(&out),
        pairs(&[
            ("Missing", "/usr/share/bar/bat"),
            ("Missing", "/usr/share/bar/bat/file_5"),
            ("Missing", "/usr/share/bar/file_4"),
            ("Not deleted", "/usr/share/bar/file_2"),
        ]),
        "{}",
        text(&out)
    );
    // One file; a partial name (/usr/share/ba is not above /usr/share/bar) and a path no
    // manifest lists check nothing.
    let out = w.chainup(&["diagnose", "--file", "/usr/share/bar/file_4"]);
    exits(&out, 1);
    assert_eq!(
        findings(&out),
        pairs(&[("Missing", "/usr/share/bar/file_4")])
    );
    for path in ["/usr/share/ba", "/usr/untracked_file3"] {
        let out = w.chainup(&["diagnose", "--file", path]);
        exits(&out, 0);
        assert_eq!(findings(&out), pairs(&[]), "{}", text(&out));
    }
}

#[test]
fn picky_looks_under_the_file_unless_a_tree_is_given() {
    let w = damaged();
    // Only extras under /usr/share/bar: the untracked file and the one 20 deleted.
    let out = w.chainup(&["diagnose", "--file", "/usr/share/bar", "--extra-files-only"]);
    exits(&out, 1);
    assert_eq!(
        findings(&out),
        pairs(&[
            ("Extra", "/usr/share/bar/file_2"),
            ("Extra", "/usr/share/bar/untracked_file2"),
        ]),
        "{}",
        text(&out)
    );
    // An untracked file named by --file is its own picky tree.
    let out = w.chainup(&[
        "diagnose",
        "--extra-files-only",
        "--file",
        "/usr/untracked_file3",
    ]);
    exits(&out, 1);
    assert_eq!(findings(&out), pairs(&[("Extra", "/usr/untracked_file3")]));
    // --picky-tree wins over --file for where extras are looked for (under it: the tree
    // itself is not a finding).
    let out = w.chainup(&[
        "diagnose",
        "--file",
        "/usr/share/bar/file_4",
        "--picky",
        "--picky-tree",
        "/usr/share/barn",
    ]);
    exits(&out, 1);
    assert_eq!(
        findings(&out),
        pairs(&[
            ("Extra", "/usr/share/barn/x"),
            ("Missing", "/usr/share/bar/file_4"),
        ]),
        "{}",
        text(&out)
    );
}

#[test]
fn repair_file_picky_fixes_that_directory_and_nothing_else() {
    let w = damaged();
    exits(
        &w.chainup(&["repair", "--file", "/usr/share/bar", "--picky"]),
        0,
    );
    assert_eq!(
        std::fs::read(at(&w, "/usr/share/bar/bat/file_5")).unwrap(),
        b"five\n"
    );
    assert_eq!(
        std::fs::read(at(&w, "/usr/share/bar/file_4")).unwrap(),
        b"four\n"
    );
    assert!(!at(&w, "/usr/share/bar/file_2").exists());
    assert!(!at(&w, "/usr/share/bar/untracked_file2").exists());
    // Outside the path: left alone.
    assert!(at(&w, "/usr/untracked_file3").exists());
    assert!(at(&w, "/usr/share/barn/x").exists());
    exits(
        &w.chainup(&["diagnose", "--file", "/usr/share/bar", "--picky"]),
        0,
    );
    let out = w.chainup(&["diagnose", "--picky"]);
    exits(&out, 1);
    assert_eq!(
        findings(&out),
        pairs(&[
            ("Extra", "/usr/share/barn"),
            ("Extra", "/usr/share/barn/x"),
            ("Extra", "/usr/untracked_file3"),
        ]),
        "{}",
        text(&out)
    );
}
