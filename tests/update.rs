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
    ok(w.publish(20, &[]));

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
    ok(w.publish(20, &[]));

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
    w.sample(10);
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10"]));
    let out = w.chainup(&["check-update"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("No update available"), "{}", text(&out));

    w.derive(10, 20);
    ok(w.publish(20, &[]));
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
    ok(w.publish(20, &[]));
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
