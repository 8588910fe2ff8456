//! End-to-end updates through the real binaries over a loopback HTTP server.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::os::unix::fs::MetadataExt;

use fixture::{expected, ok, snapshot, text, World};

const STATE_PATHS: [&str; 1] = ["/var/lib/chainup"];

#[test]
fn os_install_then_update_matches_the_published_trees() {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    w.derive(10, 20);
    w.file(
        20,
        "os-core",
        "/usr/bin/hello",
        b"#!/bin/sh\necho new\n",
        0o755,
    );
    std::fs::remove_file(w.tree(20, "editors").join("usr/bin/vim")).unwrap();
    w.file(20, "editors", "/usr/bin/nano", b"nano\n", 0o755);
    ok(w.publish(20, &["--delta-packs", "0"]));

    ok(w.chainup(&["os-install", "-V", "10", "-B", "editors"]));
    assert_eq!(
        snapshot(&w.root, &STATE_PATHS),
        expected(&w, 10, &["os-core", "editors"])
    );

    let out = ok(w.chainup(&["update"]));
    assert!(text(&out).contains("to version 20"), "{}", text(&out));
    let got = snapshot(&w.root, &STATE_PATHS);
    assert_eq!(got, expected(&w, 20, &["os-core", "editors"]));
    assert!(!w.root.join("usr/bin/vim").exists());
}

/// The release trees of the full flow: owners, a sticky directory, a script, symlink
/// retargets, type changes, deletions and configuration files.
fn flow_world() -> World {
    let w = World::new();
    w.sample(10);
    w.file(10, "os-core", "/etc/other.conf", b"other=10\n", 0o644);
    w.dir(10, "os-core", "/usr/share/sticky", 0o1777);
    w.dir(10, "os-core", "/usr/share/owned", 0o750);
    w.file(10, "os-core", "/usr/share/owned/data", b"hello\n", 0o640);
    w.file(
        10,
        "os-core",
        "/usr/share/owned/later",
        b"mine later\n",
        0o644,
    );
    w.file(
        10,
        "os-core",
        "/usr/share/f2d",
        b"a file, then a directory\n",
        0o644,
    );
    w.file(
        10,
        "os-core",
        "/usr/share/d2f/inner",
        b"inside a directory\n",
        0o644,
    );
    w.file(
        10,
        "os-core",
        "/usr/share/gone.txt",
        b"deleted in 20\n",
        0o644,
    );
    w.file(
        10,
        "os-core",
        "/usr/share/gonedir/x",
        b"deleted with its dir\n",
        0o644,
    );
    w.file(10, "os-core", "/usr/share/mode", b"mode changes\n", 0o644);
    if fixture::is_root() {
        w.chown(10, "os-core", "/usr/share/owned", 1000, 201);
        w.chown(10, "os-core", "/usr/share/owned/data", 1000, 201);
    } else {
        println!("not root: owner changes (1000:201) are left out of this run");
    }
    ok(w.publish(10, &[]));

    w.derive(10, 20);
    w.file(20, "os-core", "/etc/app.conf", b"setting=2\n", 0o644);
    w.file(20, "os-core", "/etc/other.conf", b"other=20\n", 0o644);
    w.file(
        20,
        "os-core",
        "/usr/bin/hello2",
        b"#!/bin/sh\necho two\n",
        0o755,
    );
    w.symlink(20, "os-core", "/usr/bin/hi", "hello2");
    w.remove(20, "os-core", "/usr/share/gone.txt");
    w.remove(20, "os-core", "/usr/share/gonedir");
    w.file(20, "os-core", "/usr/share/mode", b"mode changes\n", 0o600);
    w.file(20, "editors", "/usr/bin/vim", b"vim 20\n", 0o755);
    if fixture::is_root() {
        w.chown(20, "os-core", "/usr/share/owned/later", 1000, 201);
    }
    ok(w.publish(20, &["--delta-packs", "0"]));

    w.derive(20, 30);
    w.remove(30, "os-core", "/usr/share/f2d");
    w.file(30, "os-core", "/usr/share/f2d/now", b"now inside\n", 0o644);
    w.remove(30, "os-core", "/usr/share/d2f");
    w.file(30, "os-core", "/usr/share/d2f", b"now a file\n", 0o644);
    w.symlink(30, "os-core", "/usr/bin/hi", "/usr/bin/hello");
    w.file(30, "os-core", "/etc/app.conf", b"setting=3\n", 0o644);
    ok(w.publish(30, &[]));
    w
}

#[test]
fn install_and_two_updates_reproduce_the_trees_and_keep_local_config() {
    let w = flow_world();
    ok(w.chainup(&["os-install", "-V", "10", "-B", "editors"]));
    let bundles = ["os-core", "editors"];
    assert_eq!(snapshot(&w.root, &STATE_PATHS), expected(&w, 10, &bundles));
    let sticky = w.root.join("usr/share/sticky");
    assert_eq!(sticky.metadata().unwrap().mode() & 0o7777, 0o1777);
    if fixture::is_root() {
        let md = w.root.join("usr/share/owned/data").metadata().unwrap();
        assert_eq!((md.uid(), md.gid()), (1000, 201));
    }

    // A local edit of one configuration file; the other one stays as installed.
    let local = w.root.join("etc/app.conf");
    std::fs::write(&local, b"setting=mine\n").unwrap();

    let out = ok(w.chainup(&["update", "-V", "20"]));
    let t = text(&out);
    assert!(t.contains("from version 10 to version 20"), "{t}");
    assert!(t.contains("/etc/app.conf was changed locally"), "{t}");
    let got = snapshot(&w.root, &STATE_PATHS);
    let mut want = expected(&w, 20, &bundles);
    assert_eq!(got["/etc/app.conf"].4, b"setting=mine\n");
    want.insert("/etc/app.conf".into(), got["/etc/app.conf"].clone());
    assert_eq!(got, want);
    assert_eq!(
        std::fs::read(w.root.join("etc/other.conf")).unwrap(),
        b"other=20\n"
    );
    assert!(!w.root.join("usr/share/gone.txt").exists());
    assert!(!w.root.join("usr/share/gonedir").exists());
    assert_eq!(
        std::fs::read_link(w.root.join("usr/bin/hi")).unwrap(),
        std::path::Path::new("hello2")
    );

    let out = ok(w.chainup(&["update"]));
    assert!(
        text(&out).contains("from version 20 to version 30"),
        "{}",
        text(&out)
    );
    let got = snapshot(&w.root, &STATE_PATHS);
    let mut want = expected(&w, 30, &bundles);
    want.insert("/etc/app.conf".into(), got["/etc/app.conf"].clone());
    assert_eq!(got["/etc/app.conf"].4, b"setting=mine\n");
    assert_eq!(got, want);
    assert!(w.root.join("usr/share/f2d/now").is_file());
    assert!(w.root.join("usr/share/d2f").is_file());
}

/// The sample release with one path owned, with the same content, by editors and devtools.
fn bundles_world() -> World {
    let w = World::new();
    w.sample(10);
    for b in ["editors", "devtools"] {
        w.file(10, b, "/usr/share/common/shared.txt", b"shared\n", 0o644);
    }
    ok(w.publish(10, &[]));
    w
}

fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bundle_add_follows_includes_and_remove_keeps_shared_files() {
    let w = bundles_world();
    ok(w.chainup(&["os-install", "-V", "10"]));
    assert_eq!(
        snapshot(&w.root, &STATE_PATHS),
        expected(&w, 10, &["os-core"])
    );
    assert_eq!(lines(&ok(w.chainup(&["bundle-list"]))), ["os-core"]);
    assert_eq!(
        lines(&ok(w.chainup(&["bundle-list", "--all"]))),
        ["devtools", "editors", "os-core (installed)"]
    );

    // devtools includes editors, which includes os-core.
    ok(w.chainup(&["bundle-add", "devtools"]));
    let all = ["os-core", "editors", "devtools"];
    assert_eq!(snapshot(&w.root, &STATE_PATHS), expected(&w, 10, &all));
    assert_eq!(
        lines(&ok(w.chainup(&["bundle-list"]))),
        ["devtools", "editors", "os-core"]
    );

    // editors is required by devtools: refused, nothing touched.
    let before = snapshot(&w.root, &STATE_PATHS);
    let out = w.chainup(&["bundle-remove", "editors"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("required by \"devtools\""),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&w.root, &STATE_PATHS), before);

    // devtools goes; the file editors also owns stays.
    ok(w.chainup(&["bundle-remove", "devtools"]));
    let got = snapshot(&w.root, &STATE_PATHS);
    assert_eq!(got, expected(&w, 10, &["os-core", "editors"]));
    assert!(got.contains_key("/usr/share/common/shared.txt"));
    assert!(!got.contains_key("/usr/bin/gcc"));
    assert_eq!(
        lines(&ok(w.chainup(&["bundle-list"]))),
        ["editors", "os-core"]
    );
}

#[test]
fn check_update_says_yes_then_no() {
    let w = World::new();
    w.install_sample();
    let out = w.chainup(&["check-update"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("No update available"), "{}", text(&out));

    w.derive(10, 20);
    ok(w.publish(20, &["--delta-packs", "0"]));
    let out = w.chainup(&["check-update"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("version 20"), "{}", text(&out));
    // check-update changes nothing.
    assert_eq!(
        snapshot(&w.root, &STATE_PATHS),
        expected(&w, 10, &["os-core"])
    );
}

/// The whole stdout as one JSON array; checks its start and end events.
fn json_events(out: &std::process::Output, section: &str) -> Vec<serde_json::Value> {
    let events: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON array ({e}):\n{}", text(out)));
    let first = events.first().expect("a start event");
    assert_eq!(first["type"], "start", "{first}");
    assert_eq!(first["section"], section, "{first}");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "end", "{last}");
    assert_eq!(last["section"], section, "{last}");
    assert_eq!(last["status"], out.status.code().unwrap(), "{last}");
    events
}

#[test]
fn json_output_is_one_array_with_start_end_and_status() {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    w.derive(10, 20);
    ok(w.publish(20, &["--delta-packs", "0"]));
    let out = ok(w.chainup(&["os-install", "-V", "10", "--json-output"]));
    json_events(&out, "os-install");

    let out = ok(w.chainup(&["update", "--json-output"]));
    let events = json_events(&out, "update");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "info" && e["msg"].as_str().unwrap().contains("version 20")),
        "{events:?}"
    );

    // A failure still closes the array, with the exit status.
    w.derive(20, 30);
    ok(w.publish(30, &[]));
    std::fs::remove_file(w.web("30/Manifest.MoM.tar")).unwrap();
    let out = w.chainup(&["update", "-j"]);
    assert_ne!(out.status.code(), Some(0));
    let events = json_events(&out, "update");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "error"
                && e["msg"].as_str().unwrap().contains("30/Manifest.MoM.tar")),
        "{events:?}"
    );
}

/// Waits (polling, with a generous deadline that only catches a hang) until `cond` holds.
#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Release 10 installed, 20 published (with `publish` options) with a changed
/// /usr/bin/hello and a removed directory; returns the world and the URL path of hello's
/// fullfile in 20.
fn interrupted_world(publish: &[&str]) -> (World, String) {
    let w = World::on_tmpfs();
    w.sample(10);
    w.file(10, "os-core", "/usr/share/olddir/tracked", b"old\n", 0o644);
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10"]));
    w.derive(10, 20);
    w.change_hello(20);
    w.remove(20, "os-core", "/usr/share/olddir");
    ok(w.publish(20, publish));
    let (_, hash, version) = w.entry(20, "os-core", "/usr/bin/hello");
    (w, format!("/{version}/files/{hash}.tar"))
}

fn spawn_update(w: &World, stderr: std::process::Stdio) -> std::process::Child {
    w.chainup_cmd(&["update"])
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

#[test]
fn a_second_client_exits_9_while_one_holds_the_lock() {
    // Without packs, so that the stalled fullfile is on the update's path.
    let (w, hello) = interrupted_world(&["--delta-packs", "0"]);
    let before = snapshot(&w.root, &STATE_PATHS);
    // The first update blocks on a fullfile that never arrives, holding the lock.
    w.server.stall(&hello, 10);
    let mut first = spawn_update(&w, std::process::Stdio::null());
    wait_until("the first update to fetch hello", || {
        w.server.hits(&hello) > 0
    });
    // The others are pointed at a port nobody listens on: past the lock they would fail
    // at once with another code, instead of stalling too.
    for args in [&["update"][..], &["bundle-add", "editors"], &["os-install"]] {
        let out = fixture::run(
            std::process::Command::new(fixture::bin("chainup"))
                .args(args)
                .arg("--path")
                .arg(&w.root)
                .arg("--statedir")
                .arg(&w.state)
                .arg("--certpath")
                .arg(&w.keys.root)
                .args(["--url", "http://127.0.0.1:9", "--allow-insecure-http"])
                .args(["--max-retries", "0", "--no-progress"]),
        );
        assert_eq!(out.status.code(), Some(9), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("holds the lock"), "{}", text(&out));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(snapshot(&w.root, &STATE_PATHS), before);

    // The same with the lock taken by another process through flock(2).
    let lock = std::fs::File::create(w.state.join("lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let out = w.chainup(&["update"]);
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    drop(held);
    w.server.clear_faults();
    ok(w.chainup(&["update"]));
}

#[test]
fn update_killed_during_download_finishes_on_the_next_run() {
    let (w, hello) = interrupted_world(&["--delta-packs", "0"]);
    let before = snapshot(&w.root, &STATE_PATHS);
    w.server.stall(&hello, 10);
    let mut child = spawn_update(&w, std::process::Stdio::null());
    wait_until("the update to fetch hello", || w.server.hits(&hello) > 0);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(snapshot(&w.root, &STATE_PATHS), before);
    assert!(!w.state.join("journal.json").exists());

    w.server.clear_faults();
    ok(w.chainup(&["update"]));
    assert_eq!(
        snapshot(&w.root, &STATE_PATHS),
        expected(&w, 20, &["os-core"])
    );
}

/// A pipe whose buffer is already full: a child writing to it blocks until it is killed.
fn full_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let (read, write) = nix::unistd::pipe().unwrap();
    fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    for chunk in [4096, 1] {
        while nix::unistd::write(&write, &vec![b'x'; chunk][..]).is_ok() {}
    }
    fcntl(&write, FcntlArg::F_SETFL(OFlag::empty())).unwrap();
    (read, write)
}

#[test]
fn update_killed_during_install_finishes_on_the_next_run() {
    // With packs: without them the client warns (on stderr) that the pack is missing
    // before it downloads anything, and the full pipe below would stop it there.
    let (w, _) = interrupted_world(&[]);
    let pack = "/20/pack-os-core-from-10.tar";
    // An untracked file makes the client set the removed directory aside and warn about
    // it on stderr between renaming the files and writing the new version. With stderr a
    // full pipe, that warning blocks the client exactly there, mid-install.
    let untracked = w.root.join("usr/share/olddir/local");
    std::fs::write(&untracked, b"mine\n").unwrap();
    let (_read_end, write_end) = full_pipe();
    let mut child = spawn_update(&w, write_end.into());
    let journal = w.state.join("journal.json");
    let hello = w.root.join("usr/bin/hello");
    wait_until("the update to rename hello", || {
        std::fs::read(&hello).unwrap() == b"#!/bin/sh\necho 20\n"
    });
    assert!(journal.exists(), "the update is journaled");
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed mid-install: new files, but the old version and the journal.
    let release = std::fs::read_to_string(w.root.join("usr/lib/os-release")).unwrap();
    assert!(release.contains("VERSION_ID=10"), "{release}");
    assert!(journal.exists());
    assert_eq!(w.server.hits(pack), 1, "the content came from the pack");

    // The directory went aside with the local file (named .deleted.<version>.<name>).
    assert!(!untracked.exists());
    std::fs::remove_dir_all(w.root.join("usr/share/.deleted.20.olddir")).unwrap();
    let out = ok(w.chainup(&["update"]));
    assert!(
        text(&out).contains("finishing the interrupted update to version 20"),
        "{}",
        text(&out)
    );
    assert_eq!(
        snapshot(&w.root, &STATE_PATHS),
        expected(&w, 20, &["os-core"])
    );
    assert!(!journal.exists());
    // The rerun used what the killed run staged instead of fetching the pack again.
    assert_eq!(w.server.hits(pack), 1);
}

#[test]
fn bundle_remove_killed_midway_is_finished_on_the_next_run() {
    let w = World::on_tmpfs();
    w.sample(10);
    w.file(
        10,
        "devtools",
        "/usr/share/devdir/x",
        b"devtools only\n",
        0o644,
    );
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10", "-B", "devtools"]));
    // As in the update case: an untracked file makes the client warn on a full stderr
    // while deleting, after /usr/share/devdir/x and before the bundle's marker and gcc.
    let untracked = w.root.join("usr/share/devdir/local");
    std::fs::write(&untracked, b"mine\n").unwrap();
    let (_read_end, write_end) = full_pipe();
    let mut child = w
        .chainup_cmd(&["bundle-remove", "devtools"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(write_end))
        .spawn()
        .unwrap();
    let x = w.root.join("usr/share/devdir/x");
    wait_until("bundle-remove to delete devdir/x", || !x.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        w.root.join("usr/bin/gcc").exists(),
        "killed before gcc went"
    );

    assert!(!untracked.exists());
    std::fs::remove_dir_all(w.root.join("usr/share/.deleted.10.devdir")).unwrap();
    ok(w.chainup(&["update"]));
    assert_eq!(
        snapshot(&w.root, &STATE_PATHS),
        expected(&w, 10, &["os-core", "editors"])
    );
}

#[test]
fn a_stray_bundle_marker_does_not_block_the_update() {
    let w = World::new();
    w.install_sample();
    std::fs::write(w.root.join("usr/share/clear/bundles/no-such-bundle"), b"").unwrap();
    w.derive(10, 20);
    ok(w.publish(20, &["--delta-packs", "0"]));
    let out = ok(w.chainup(&["update"]));
    assert!(text(&out).contains("no-such-bundle"), "{}", text(&out));
    assert!(std::fs::read_to_string(w.root.join("usr/lib/os-release"))
        .unwrap()
        .contains("VERSION_ID=20"));
}

/// As swupd: os-install into a root that already holds a release installs the new one
/// over it (every file of the bundles placed, other files left alone).
#[test]
fn os_install_into_a_root_holding_a_release_installs_over_it() {
    let w = World::new();
    w.install_sample();
    std::fs::write(w.root.join("usr/share/mine"), b"local\n").unwrap();
    std::fs::write(w.root.join("usr/bin/hello"), b"damaged\n").unwrap();
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    let out = ok(w.chainup(&["os-install", "-V", "20"]));
    assert!(
        text(&out).contains("already holds version 10; installing version 20 over it"),
        "{}",
        text(&out)
    );
    let mut got = snapshot(&w.root, &STATE_PATHS);
    assert!(
        got.remove("/usr/share/mine").is_some(),
        "a local file stays"
    );
    assert_eq!(got, expected(&w, 20, &["os-core"]));
    ok(w.chainup(&["diagnose"]));
}
