//! End-to-end updates through the real binaries over a loopback HTTP server.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

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
