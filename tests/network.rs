//! The client against a misbehaving or dead server, and what it asks the server for.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeSet;

use fixture::{expected, noise, ok, snapshot, text, World};

/// Releases 10 (installed) and 20, where 20 adds a 512 KiB file; returns its fullfile path.
fn big_file_world() -> (World, String) {
    let w = World::new();
    w.install_sample();
    w.derive(10, 20);
    w.file(
        20,
        "os-core",
        "/usr/share/big",
        &noise(512 << 10, 20),
        0o644,
    );
    ok(w.publish(20, &["--delta-packs", "0"]));
    let (_, hash, version) = w.entry(20, "os-core", "/usr/share/big");
    (w, format!("/{version}/files/{hash}.tar"))
}

#[test]
fn dropped_connection_is_resumed_with_a_range_request() {
    let (w, big) = big_file_world();
    let size = std::fs::metadata(w.web(big.trim_start_matches('/')))
        .unwrap()
        .len();
    assert!(size > 256 << 10, "the fullfile is {size} bytes");
    w.server.drop_after(&big, size / 2, 1);
    ok(w.chainup(&["update"]));
    assert_eq!(
        snapshot(&w.root, &[]),
        expected(&w, 20, &["os-core"]),
        "the root is not release 20"
    );
    let requests: Vec<_> = w
        .server
        .log()
        .into_iter()
        .filter(|r| r.path == big)
        .collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range(), None, "{requests:?}");
    let range = requests[1].range().expect("the second request resumes");
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected range {range:?}"));
    assert!(from > 0 && from <= size / 2, "resumed at {from} of {size}");
}

#[test]
fn dead_server_fails_cleanly_and_leaves_the_root() {
    let (mut w, _) = big_file_world();
    let before = snapshot(&w.root, &[]);

    // 503 for everything, for ever: retried, then given up.
    w.server.status("/", 503);
    let out = w.chainup(&["update"]);
    assert_eq!(out.status.code(), Some(17), "{}", text(&out));
    assert!(text(&out).contains("503"), "{}", text(&out));
    assert!(text(&out).contains("after 2 attempts"), "{}", text(&out));
    assert_eq!(snapshot(&w.root, &[]), before);

    // Files missing halfway: nothing installed either.
    w.server.clear_faults();
    w.server.status("/20/files/", 503);
    let out = w.chainup(&["update"]);
    assert_eq!(out.status.code(), Some(17), "{}", text(&out));
    assert!(text(&out).contains("/20/files/"), "{}", text(&out));
    assert_eq!(snapshot(&w.root, &[]), before);

    // Nobody listening at all.
    w.server.stop();
    let out = w.chainup(&["update"]);
    assert_eq!(out.status.code(), Some(16), "{}", text(&out));
    assert!(text(&out).contains(&w.server.url()), "{}", text(&out));
    assert_eq!(snapshot(&w.root, &[]), before);
}

#[test]
fn update_fetches_only_the_changed_fullfiles() {
    const FILES: usize = 2000;
    const CHANGED: usize = 20;
    let w = World::on_tmpfs();
    w.sample(10);
    let path = |i: usize| format!("/usr/share/data/d{:02}/f{i:04}", i % 40);
    for i in 0..FILES {
        w.file(
            10,
            "os-core",
            &path(i),
            format!("file {i}\n").as_bytes(),
            0o644,
        );
    }
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10"]));

    w.derive(10, 20);
    // os-release changes with every release; 19 more files change, spread over the tree.
    let mut changed = vec!["/usr/lib/os-release".to_string()];
    for i in (0..FILES).step_by(FILES / (CHANGED - 1)).take(CHANGED - 1) {
        w.file(
            20,
            "os-core",
            &path(i),
            format!("file {i}, v20\n").as_bytes(),
            0o644,
        );
        changed.push(path(i));
    }
    ok(w.publish(20, &["--delta-packs", "0"]));
    let want: BTreeSet<String> = changed
        .iter()
        .map(|p| {
            let (_, hash, version) = w.entry(20, "os-core", p);
            assert_eq!(version, 20, "{p}");
            format!("/20/files/{hash}.tar")
        })
        .collect();
    assert_eq!(want.len(), CHANGED);

    w.server.clear_log();
    ok(w.chainup(&["update"]));
    let fetched: Vec<String> = w
        .server
        .log()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.contains("/files/"))
        .collect();
    assert_eq!(fetched.len(), CHANGED, "{fetched:?}");
    assert_eq!(fetched.into_iter().collect::<BTreeSet<_>>(), want);
    assert_eq!(w.server.hits_matching("/20/files/"), CHANGED);
    assert_eq!(snapshot(&w.root, &[]), expected(&w, 20, &["os-core"]));
}

#[test]
fn https_with_the_servers_ca_installs_and_without_it_is_refused() {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    let (cert, key) = server::test_certificate(w.dir.path());
    let tls = server::Server::https(&w.web, &cert, &key);
    let https = tls.url();
    assert!(https.starts_with("https://"), "{https}");
    let strict = |extra: &[&str]| {
        let mut cmd = w.chainup_cmd_strict(&["os-install", "-V", "10"]);
        // Content and version URLs win over --url: point them at the TLS server.
        cmd.args(["--contenturl", &https, "--versionurl", &https])
            .args(extra);
        fixture::run(&mut cmd)
    };
    // With -V the MoM is the first thing fetched: one that cannot be had is swupd's
    // "cannot load the MoM" (4), the TLS failure named as its reason.
    let refused = strict(&[]);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused));
    assert!(text(&refused).contains("certificate"), "{}", text(&refused));
    assert!(!w.root.join("usr").exists());

    ok(strict(&["--cacert", cert.to_str().unwrap()]));
    assert_eq!(snapshot(&w.root, &[]), expected(&w, 10, &["os-core"]));
    assert!(tls.hits_matching("/10/files/") > 0);
}

#[test]
fn version_requests_carry_the_current_version_and_an_app_specific_machine_id() {
    let w = World::new();
    w.install_sample();
    let raw_id = "0123456789abcdef0123456789abcdef";
    std::fs::write(w.root.join("etc/machine-id"), format!("{raw_id}\n")).unwrap();
    w.server.clear_log();
    let out = w.chainup(&["check-update"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let log = w.server.log();
    let latest = log
        .iter()
        .find(|r| r.path == "/version/format30/latest")
        .expect("latest was asked for");
    assert_eq!(latest.header("x-chainup-current-version"), Some("10"));
    let id = latest
        .header("x-chainup-machine-id")
        .expect("machine id header");
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        !id.contains(raw_id),
        "the raw machine id must not leave the machine"
    );
    // The same machine gives the same id (a server can keep it on a channel).
    w.server.clear_log();
    w.chainup(&["check-update"]);
    let again = w.server.log();
    let again = again
        .iter()
        .find(|r| r.path == "/version/format30/latest")
        .unwrap();
    assert_eq!(again.header("x-chainup-machine-id"), Some(id));
}
