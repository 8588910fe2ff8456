//! diagnose and repair against a release this client cannot take as it is, with swupd
//! 7.0.0's exit codes: a release in another format (14 before any version check, unless
//! `--force`), and a manifest the MoM lists but the server lacks (14, not a failed
//! download). Through the real binary, against content made by chainup-publish on a
//! loopback server.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::process::Output;

use fixture::{expected, ok, snapshot, text, World};

#[track_caller]
fn exits(out: &Output, want: i32) {
    assert_eq!(out.status.code(), Some(want), "{}", text(out));
}

/// Release 10 installed with editors.
fn installed() -> World {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10", "-B", "editors"]));
    w
}

#[test]
fn a_release_in_another_format_is_refused_unless_forced() {
    let w = installed();
    w.derive(10, 40);
    w.change_hello(40);
    ok(w.publish(40, &["--format", "31"]));
    let before = snapshot(&w.root, &[]);
    // The format is checked before the version (which alone would be 15).
    for cmd in ["diagnose", "repair"] {
        let out = w.chainup(&[cmd, "-V", "40"]);
        exits(&out, 14);
        assert!(text(&out).contains("format 31"), "{}", text(&out));
    }
    assert_eq!(snapshot(&w.root, &[]), before);
    let out = w.chainup(&["diagnose", "-V", "40", "--force"]);
    exits(&out, 1);
    assert!(text(&out).contains("/usr/bin/hello"), "{}", text(&out));
    exits(&w.chainup(&["repair", "-V", "40", "--force"]), 0);
    assert_eq!(
        snapshot(&w.root, &[]),
        expected(&w, 40, &["os-core", "editors"])
    );
    exits(&w.chainup(&["diagnose", "-F", "31"]), 0);
}

#[test]
fn a_manifest_the_server_lacks_is_a_bad_release() {
    let w = installed();
    for f in ["Manifest.editors", "Manifest.editors.tar"] {
        std::fs::remove_file(w.web(&format!("10/{f}"))).unwrap();
    }
    // Nothing cached either: the manifest must come from the server.
    std::fs::remove_dir_all(&w.state).unwrap();
    let before = snapshot(&w.root, &[]);
    for cmd in ["diagnose", "repair"] {
        let out = w.chainup(&[cmd]);
        exits(&out, 14);
        assert!(text(&out).contains("editors"), "{}", text(&out));
    }
    assert_eq!(snapshot(&w.root, &[]), before);
}

#[test]
fn an_installed_bundle_the_version_lacks_is_refused_unless_forced() {
    let w = World::new();
    // Release 10 has no devtools; 20 adds it, and the root runs 20 with it.
    std::fs::write(
        &w.bundles_toml,
        "[bundles.os-core]\n[bundles.editors]\nincludes = [\"os-core\"]\n",
    )
    .unwrap();
    w.sample(10);
    std::fs::remove_dir_all(w.tree(10, "devtools")).unwrap();
    ok(w.publish(10, &[]));
    std::fs::write(&w.bundles_toml, fixture::BUNDLES).unwrap();
    w.derive(10, 20);
    w.sample(20);
    ok(w.publish(20, &[]));
    ok(w.chainup(&["os-install", "-V", "20", "-B", "devtools"]));
    let before = snapshot(&w.root, &[]);
    // Unchecked, devtools' files would be extras to --picky, and removed. (10 is older
    // than the release this state directory saw: a rollback, allowed here on purpose.)
    for args in [
        &["repair", "--picky", "-V", "10", "--allow-downgrade"][..],
        &["diagnose", "-V", "10", "--allow-downgrade"],
    ] {
        let out = w.chainup(args);
        exits(&out, 3);
        assert!(text(&out).contains("devtools"), "{}", text(&out));
    }
    assert_eq!(snapshot(&w.root, &[]), before);
    let out = w.chainup(&["diagnose", "-V", "10", "--force", "--allow-downgrade"]);
    exits(&out, 1);
    assert!(text(&out).contains("/usr/lib/os-release"), "{}", text(&out));
}
