//! The one write path (docs/install.md) through the real binaries: a release is decided
//! whole before the root changes, journals never block the way forward, nothing nobody
//! published is deleted, and a client killed at any commit point is finished by the next
//! run. "Unchanged" means byte-identical, owners and modes included.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use fixture::{bin, expected, ok, run, snapshot, text, Snapshot, World};

/// Release 10 installed; release 20 derived from it (published by the caller).
fn installed_world() -> World {
    let w = World::on_tmpfs();
    w.install_sample();
    w.derive(10, 20);
    w
}

fn root(w: &World) -> Snapshot {
    snapshot(&w.root, &[])
}

fn state(w: &World) -> Snapshot {
    snapshot(&w.state, &[])
}

/// Every path under `dir` whose name is one of the installer's temporaries.
fn temporaries(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".chainup\n") || n.starts_with(".chainup-"))
        .collect()
}

#[track_caller]
fn exit(out: &std::process::Output, code: i32, causes: &[&str]) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    for c in causes {
        assert!(t.contains(c), "{c:?} not in:\n{t}");
    }
}

/// Release 30 = release 10 with a new hello, published over whatever 20 was.
fn publish_fixed_30(w: &World) {
    w.derive(10, 30);
    w.change_hello(30);
    ok(w.publish(30, &["--previous", "10"]));
}

#[track_caller]
fn refused_whole_then_30_installs(w: &World, args: &[&str], code: i32, causes: &[&str]) {
    let (root_before, state_before) = (root(w), state(w));
    let out = w.chainup(args);
    exit(&out, code, causes);
    assert_eq!(root(w), root_before, "the root changed");
    assert_eq!(state(w), state_before, "the state directory changed");
    assert!(!w.state.join("journal.json").exists());
    publish_fixed_30(w);
    ok(w.chainup(&["update"]));
    assert_eq!(root(w), expected(w, 30, &["os-core"]));
    assert!(temporaries(&w.root).is_empty());
}

#[test]
fn a_file_listed_below_a_file_is_refused_before_anything_changes() {
    let w = installed_world();
    ok(w.publish(20, &[]));
    // A validly signed release whose manifest lists a file below /usr/bin/hello.
    let (_, hash, version) = w.entry(10, "os-core", "/usr/share/doc/readme");
    w.resign_manifest(20, "os-core", |text| {
        format!("{text}F...\t{hash}\t{version}\t/usr/bin/hello/evil\n")
    });
    refused_whole_then_30_installs(
        &w,
        &["update"],
        14,
        &[
            "version 20 cannot be installed",
            "/usr/bin/hello/evil below /usr/bin/hello",
        ],
    );
}

#[test]
fn a_file_listed_below_a_symlink_of_the_same_release_is_refused() {
    let w = installed_world();
    w.remove(20, "os-core", "/usr/share/doc");
    w.symlink(20, "os-core", "/usr/share/doc", "/tmp");
    ok(w.publish(20, &[]));
    // Keep readme present below the new symlink.
    let (_, hash, version) = w.entry(10, "os-core", "/usr/share/doc/readme");
    w.resign_manifest(20, "os-core", |text| {
        text.lines()
            .map(|l| match l.ends_with("\t/usr/share/doc/readme") {
                true => format!("F...\t{hash}\t{version}\t/usr/share/doc/readme\n"),
                false => format!("{l}\n"),
            })
            .collect()
    });
    refused_whole_then_30_installs(
        &w,
        &["update"],
        14,
        &["below /usr/share/doc, which it makes a symlink"],
    );
}

#[test]
fn a_parent_symlinked_locally_is_refused_before_anything_changes() {
    let w = installed_world();
    w.file(20, "os-core", "/usr/share/doc/new", b"new\n", 0o644);
    ok(w.publish(20, &[]));
    let outside = w.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let doc = w.root.join("usr/share/doc");
    std::fs::rename(&doc, w.dir.path().join("doc-was")).unwrap();
    std::os::unix::fs::symlink(&outside, &doc).unwrap();
    let (root_before, state_before) = (root(&w), state(&w));
    let out = w.chainup(&["update"]);
    exit(&out, 10, &["usr/share/doc", "symlink", "chainup repair"]);
    assert_eq!(root(&w), root_before);
    assert_eq!(state(&w), state_before);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // The way out the message names: repair puts the directory back, then 20 installs.
    ok(w.chainup(&["repair"]));
    ok(w.chainup(&["update"]));
    assert_eq!(root(&w), expected(&w, 20, &["os-core"]));
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn a_temporary_name_is_out_of_reach_of_manifest_paths() {
    let w = installed_world();
    w.file(
        20,
        "os-core",
        "/usr/bin/.chainup-new.tool",
        b"not tool\n",
        0o700,
    );
    w.file(20, "os-core", "/usr/bin/tool", b"tool\n", 0o755);
    w.file(20, "os-core", "/usr/bin/.chainup-new.hello", b"x\n", 0o600);
    ok(w.publish(20, &[]));
    ok(w.chainup(&["update"]));
    assert_eq!(root(&w), expected(&w, 20, &["os-core"]));
    ok(w.chainup(&["diagnose"]));
}

#[test]
fn a_state_root_is_never_replaced() {
    let w = World::on_tmpfs();
    w.sample(10);
    w.dir(10, "os-core", "/home", 0o755);
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10"]));
    std::fs::create_dir_all(w.root.join("home/alice")).unwrap();
    std::fs::write(w.root.join("home/alice/notes"), b"mine\n").unwrap();
    w.derive(10, 20);
    w.remove(20, "os-core", "/home");
    w.symlink(20, "os-core", "/home", "/var/home");
    ok(w.publish(20, &[]));
    ok(w.chainup(&["update"]));
    assert!(w.root.join("home").symlink_metadata().unwrap().is_dir());
    assert_eq!(
        std::fs::read(w.root.join("home/alice/notes")).unwrap(),
        b"mine\n"
    );
}

/// A directory the change deletes that still holds what nobody published is renamed to
/// `.deleted.<version>.<name>` beside itself (swupd's `.deleted.<time>.<name>`), with that
/// content, and named: the data stays, the path is free.
#[test]
fn a_deleted_directory_with_local_files_is_set_aside_beside_itself() {
    let w = World::on_tmpfs();
    w.sample(10);
    w.file(10, "devtools", "/usr/lib/gcc/plugin.so", b"plugin\n", 0o644);
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10", "-B", "devtools"]));
    std::fs::write(w.root.join("usr/lib/gcc/local.conf"), b"mine\n").unwrap();

    let out = ok(w.chainup(&["bundle-remove", "devtools"]));
    let t = text(&out);
    assert!(
        t.contains("/usr/lib/gcc holds files no manifest lists; moved to /usr/lib/.deleted.10.gcc"),
        "{t}"
    );
    assert!(!w.root.join("usr/lib/gcc").exists());
    let aside = w.root.join("usr/lib/.deleted.10.gcc");
    assert_eq!(std::fs::read(aside.join("local.conf")).unwrap(), b"mine\n");
    assert!(
        !aside.join("plugin.so").exists(),
        "the tracked file is deleted"
    );

    // Again: the name is taken, the next one is used.
    ok(w.chainup(&["bundle-add", "devtools"]));
    std::fs::write(w.root.join("usr/lib/gcc/local.conf"), b"again\n").unwrap();
    ok(w.chainup(&["bundle-remove", "devtools"]));
    assert_eq!(
        std::fs::read(w.root.join("usr/lib/.deleted.10.1.gcc/local.conf")).unwrap(),
        b"again\n"
    );
}

#[test]
fn a_directory_replaced_by_a_file_is_moved_aside_with_what_nobody_published() {
    let w = World::on_tmpfs();
    w.sample(10);
    w.file(10, "os-core", "/etc/app/app.conf", b"a=1\n", 0o644);
    w.file(10, "os-core", "/usr/share/olddir/tracked", b"t\n", 0o644);
    w.file(10, "os-core", "/usr/share/emptied/tracked", b"t\n", 0o644);
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10"]));
    std::fs::write(w.root.join("etc/app/local.conf"), b"admin\n").unwrap();
    std::fs::create_dir(w.root.join("usr/share/olddir/sub")).unwrap();
    std::fs::write(w.root.join("usr/share/olddir/sub/mine"), b"mine\n").unwrap();
    w.derive(10, 20);
    for d in ["/etc/app", "/usr/share/olddir", "/usr/share/emptied"] {
        w.remove(20, "os-core", d);
    }
    w.file(20, "os-core", "/etc/app", b"now a file\n", 0o644);
    w.symlink(20, "os-core", "/usr/share/olddir", "emptied");
    w.file(20, "os-core", "/usr/share/emptied", b"file\n", 0o644);
    ok(w.publish(20, &[]));

    let out = ok(w.chainup(&["update"]));
    let t = text(&out);
    assert!(
        t.contains(
            "/etc/app held files no manifest lists; moved to /lost+found/chainup-20/etc/app"
        ),
        "{t}"
    );
    assert!(
        t.contains("moved to /lost+found/chainup-20/usr/share/olddir"),
        "{t}"
    );
    let aside = w.root.join("lost+found/chainup-20");
    assert_eq!(
        std::fs::read(aside.join("etc/app/local.conf")).unwrap(),
        b"admin\n"
    );
    assert_eq!(
        std::fs::read(aside.join("usr/share/olddir/sub/mine")).unwrap(),
        b"mine\n"
    );
    // Tracked entries were deleted, not carried aside.
    assert!(!aside.join("etc/app/app.conf").exists());
    assert!(!aside.join("usr/share/olddir/tracked").exists());
    assert!(!aside.join("usr/share/emptied").exists());
    assert_eq!(
        w.root.join("lost+found").metadata().unwrap().mode() & 0o777,
        0o700
    );
    assert_eq!(
        snapshot(&w.root, &["/lost+found"]),
        expected(&w, 20, &["os-core"])
    );
    ok(w.chainup(&["diagnose"]));
}

#[test]
fn a_state_directory_others_can_write_or_that_is_a_symlink_is_refused() {
    let w = World::on_tmpfs();
    w.install_sample();
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    let before = root(&w);
    std::fs::set_permissions(&w.state, std::fs::Permissions::from_mode(0o777)).unwrap();
    exit(&w.chainup(&["update"]), 10, &["state directory", "0777"]);
    std::fs::set_permissions(&w.state, std::fs::Permissions::from_mode(0o700)).unwrap();

    let staged = w.state.join("staged");
    let elsewhere = w.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let _ = std::fs::remove_dir_all(&staged);
    std::os::unix::fs::symlink(&elsewhere, &staged).unwrap();
    exit(&w.chainup(&["update"]), 10, &["staged", "symlink"]);
    assert_eq!(root(&w), before);
    std::fs::remove_file(&staged).unwrap();

    if fixture::is_root() {
        std::os::unix::fs::chown(&w.state, Some(1000), None).unwrap();
        exit(&w.chainup(&["update"]), 10, &["belongs to uid 1000"]);
        assert_eq!(root(&w), before);
        std::os::unix::fs::chown(&w.state, Some(0), None).unwrap();
    } else {
        println!("skipping the foreign-owner case: needs root to chown");
    }
    ok(w.chainup(&["update"]));
    assert_eq!(root(&w), expected(&w, 20, &["os-core"]));
}

#[test]
fn max_age_holds_when_there_is_nothing_to_update() {
    let w = World::on_tmpfs();
    w.install_sample();
    // Release 10 was built in 2023 (the fixture's timestamps); latest still names it.
    exit(
        &w.chainup(&["update", "--max-age", "30"]),
        4,
        &["--max-age 30", "freeze"],
    );
    exit(
        &w.chainup(&["check-update", "--max-age", "30"]),
        4,
        &["freeze"],
    );
    ok(w.chainup(&["update"]));
}

#[test]
fn reading_commands_create_nothing_and_a_symlinked_root_is_named() {
    let w = World::on_tmpfs();
    w.install_sample();
    let typo = w.dir.path().join("no/such/root");
    for args in [&["check-update"][..], &["diagnose"], &["bundle-list"]] {
        let out = run(Command::new(bin("chainup"))
            .args(args)
            .arg("--path")
            .arg(&typo)
            .args(["--url", &w.server.url(), "--allow-insecure-http"])
            .arg("--certpath")
            .arg(&w.keys.root));
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("does not exist"), "{}", text(&out));
        assert!(
            !w.dir.path().join("no").exists(),
            "{args:?} created the root"
        );
    }
    let state = w.dir.path().join("fresh-state");
    ok(run(Command::new(bin("chainup"))
        .args(["diagnose", "--statedir"])
        .arg(&state)
        .arg("--path")
        .arg(&w.root)
        .args(["--url", &w.server.url(), "--allow-insecure-http"])
        .arg("--certpath")
        .arg(&w.keys.root)));
    assert!(!state.exists(), "diagnose created its state directory");

    let link = w.dir.path().join("root-link");
    std::os::unix::fs::symlink(&w.root, &link).unwrap();
    let out = w.chainup_cmd_at(&link, &["update"]).output().unwrap();
    exit(&out, 10, &["symlink"]);
}

#[test]
fn os_install_gives_created_directories_the_usual_modes() {
    let w = World::on_tmpfs();
    w.sample(10);
    ok(w.publish(10, &[]));
    let target = w.dir.path().join("new/root");
    let out = run(Command::new(bin("chainup"))
        .args(["os-install", "-V", "10", "--path"])
        .arg(&target)
        .args(["--url", &w.server.url(), "--allow-insecure-http"])
        .arg("--certpath")
        .arg(&w.keys.root));
    ok(out);
    let mode = |p: &Path| p.metadata().unwrap().mode() & 0o7777;
    assert_eq!(mode(&w.dir.path().join("new")), 0o755);
    assert_eq!(mode(&target.join("var")), 0o755);
    assert_eq!(mode(&target.join("var/lib")), 0o755);
    assert_eq!(mode(&target.join("var/lib/chainup")), 0o700);
}

/// Runs `update` with the failpoint `spec` (fail crate syntax) and checks it died by
/// SIGKILL there.
#[track_caller]
fn killed_at(w: &World, args: &[&str], spec: &str) {
    let out = w
        .chainup_cmd(args)
        .env("FAILPOINTS", spec)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "not killed at {spec}: {:?}\n{}",
        out.status,
        text(&out)
    );
}

/// Release 20 changes, adds, deletes, turns a directory into a file and a file into a
/// directory, and changes an untouched config file.
fn crash_world() -> World {
    let w = World::on_tmpfs();
    w.sample(10);
    w.file(10, "os-core", "/usr/share/olddir/a", b"a\n", 0o644);
    w.file(10, "os-core", "/usr/share/d2f/x", b"x\n", 0o644);
    w.file(10, "os-core", "/usr/share/f2d", b"f\n", 0o644);
    w.file(10, "os-core", "/etc/other.conf", b"o=10\n", 0o644);
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10"]));
    w.derive(10, 20);
    w.change_hello(20);
    w.remove(20, "os-core", "/usr/share/olddir");
    w.remove(20, "os-core", "/usr/share/d2f");
    w.file(20, "os-core", "/usr/share/d2f", b"now a file\n", 0o644);
    w.remove(20, "os-core", "/usr/share/f2d");
    w.file(20, "os-core", "/usr/share/f2d/inner", b"in\n", 0o600);
    w.file(20, "os-core", "/usr/share/newdir/new", b"new\n", 0o644);
    w.file(
        20,
        "os-core",
        "/usr/share/doc/readme",
        b"read me 20\n",
        0o644,
    );
    w.file(20, "os-core", "/etc/other.conf", b"o=20\n", 0o644);
    ok(w.publish(20, &[]));
    w
}

/// Kills `update` at `spec`, reruns it, and checks the root is release 20, diagnose is
/// clean and no temporary is left.
fn crash_and_rerun(spec: &str) {
    let w = crash_world();
    killed_at(&w, &["update"], spec);
    let out = ok(w.chainup(&["update"]));
    assert_eq!(root(&w), expected(&w, 20, &["os-core"]), "{}", text(&out));
    ok(w.chainup(&["diagnose"]));
    assert!(
        temporaries(&w.root).is_empty(),
        "{:?}",
        temporaries(&w.root)
    );
    assert!(!w.state.join("journal.json").exists());
}

macro_rules! crash_tests {
    ($($name:ident: $spec:expr,)*) => {$(
        #[test]
        fn $name() {
            crash_and_rerun($spec);
        }
    )*};
}

crash_tests! {
    sigkill_after_the_journal_begins: "txn::begin=return",
    sigkill_after_the_directories: "txn::dirs=return",
    sigkill_after_placing_the_first_file: "txn::place=return",
    sigkill_after_placing_three_files: "txn::place=2*off->return",
    sigkill_after_placing_everything: "txn::placed=return",
    sigkill_after_the_first_rename: "txn::commit=return",
    sigkill_after_four_renames: "txn::commit=3*off->return",
    sigkill_after_the_deletions: "txn::deleted=return",
    sigkill_after_the_version: "txn::version=return",
    sigkill_after_raising_the_high_water_mark: "txn::raised=return",
    sigkill_after_the_journal_ends: "txn::finished=return",
}

#[test]
fn a_withdrawn_release_never_blocks_the_way_forward() {
    let w = crash_world();
    killed_at(&w, &["update"], "txn::commit=2*off->return");
    assert!(w.state.join("journal.json").exists());
    // Release 20 is withdrawn; `latest` still names it for a while.
    std::fs::remove_dir_all(w.web("20")).unwrap();
    // Its MoM is gone: swupd's "cannot load the MoM", 4.
    let out = w.chainup(&["update"]);
    exit(
        &out,
        4,
        &[
            "interrupted update to version 20 cannot be finished",
            "chainup update -V N",
            "chainup repair",
        ],
    );
    assert!(
        temporaries(&w.root).is_empty(),
        "{:?}",
        temporaries(&w.root)
    );

    // The fixed release supersedes it, installed from the actual state of the root.
    publish_fixed_30(&w);
    let out = ok(w.chainup(&["update"]));
    assert!(text(&out).contains("abandoned"), "{}", text(&out));
    let mut want = expected(&w, 30, &["os-core"]);
    // Entries only the withdrawn release had stay (nothing says they can go).
    let got = root(&w);
    for extra in got.keys().filter(|k| !want.contains_key(*k)) {
        assert!(
            extra.starts_with("/usr/share/newdir") || extra.starts_with("/usr/share/f2d"),
            "unexpected {extra}"
        );
    }
    want.retain(|k, _| got.contains_key(k));
    for (k, v) in &want {
        assert_eq!(&got[k], v, "{k}");
    }
    assert_eq!(want.len(), expected(&w, 30, &["os-core"]).len());
    assert!(!w.state.join("journal.json").exists());
    assert!(temporaries(&w.root).is_empty());
    ok(w.chainup(&["diagnose"]));
}

#[test]
fn repair_sets_aside_a_journal_it_cannot_finish() {
    let w = crash_world();
    killed_at(&w, &["update"], "txn::commit=2*off->return");
    std::fs::remove_dir_all(w.web("20")).unwrap();
    let out = ok(w.chainup(&["repair"]));
    assert!(text(&out).contains("abandoned"), "{}", text(&out));
    // Back to release 10 for every tracked path (what 20 added alone stays as extra),
    // but configuration, which repair never replaces (as swupd).
    let got = root(&w);
    for (k, v) in expected(&w, 10, &["os-core"]) {
        if !k.starts_with("/etc/") {
            assert_eq!(got.get(&k), Some(&v), "{k}");
        }
    }
    ok(w.chainup(&["diagnose"]));
    assert!(!w.state.join("journal.json").exists());
}

#[test]
fn a_failed_install_removes_its_temporaries_and_the_next_run_finishes() {
    for spec in [
        "txn::place=2*off->return(error)",
        "txn::commit=1*off->return(error)",
    ] {
        let w = crash_world();
        let out = w
            .chainup_cmd(&["update"])
            .env("FAILPOINTS", spec)
            .output()
            .unwrap();
        exit(&out, 32, &["injected by a failpoint"]);
        assert!(
            temporaries(&w.root).is_empty(),
            "{spec}: {:?}",
            temporaries(&w.root)
        );
        assert!(w.state.join("journal.json").exists(), "{spec}");
        ok(w.chainup(&["update"]));
        assert_eq!(root(&w), expected(&w, 20, &["os-core"]), "{spec}");
        assert!(temporaries(&w.root).is_empty());
    }
}

#[test]
fn an_unprivileged_user_installing_root_owned_content_is_told_it_needs_root() {
    use std::os::unix::process::CommandExt;
    const TEST: &str = "an_unprivileged_user_installing_root_owned_content_is_told_it_needs_root";
    if fixture::skip_unless_root(TEST, "to run the client as nobody") {
        return;
    }
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    let mine = w.dir.path().join("nobody");
    std::fs::create_dir(&mine).unwrap();
    std::os::unix::fs::chown(&mine, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(w.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = w.chainup_cmd_at(&mine.join("root"), &["os-install", "-V", "10"]);
    cmd.arg("--statedir")
        .arg(mine.join("state"))
        .uid(65534)
        .gid(65534);
    let out = run(&mut cmd);
    let t = text(&out);
    if t.contains("Permission denied") && !mine.join("state").exists() {
        eprintln!("SKIP {TEST}: nobody cannot reach the binary or the world ({t})");
        return;
    }
    assert_eq!(out.status.code(), Some(32), "{t}");
    assert!(t.contains("installing this content needs root"), "{t}");
    assert!(t.contains("owner 0:0 as uid 65534"), "{t}");
    // Nothing of the release reached the root, and no temporary stayed behind.
    let root = mine.join("root");
    let left: Vec<_> = std::fs::read_dir(&root)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let staged: Vec<_> = std::fs::read_dir(mine.join("state/staged"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "{staged:?}");
}
