//! swupd's `os-install --statedir-cache` with no network: another state directory in
//! swupd's layout (`cache/<url>/manifest/<V>/`, `cache/<url>/staged/`) gives the MoM,
//! the manifests and the files, each verified as if downloaded. chainup runs under the
//! name `swupd` against content made by chainup-publish.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::path::Path;
use std::process::{Command, Output};

use fixture::{ok, run, skip_unless_root, text, World};

/// A URL nothing listens on.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// `swupd os-install -V 10 ROOT` with `url`, a fresh state directory and `extra`.
fn os_install(w: &World, url: &str, state: &Path, root: &Path, extra: &[&str]) -> Output {
    run(Command::new(w.swupd_bin())
        .args(["os-install", "-V", "10"])
        .args(extra)
        .arg("--statedir")
        .arg(state)
        .arg("--certpath")
        .arg(&w.keys.root)
        .args(["--allow-insecure-http", "--no-progress", "-r", "0"])
        .arg("--url")
        .arg(url)
        .arg(root))
}

/// Copies `from` into `to` as root:root 0644, as swupd's suite copies its cache files.
fn put(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
    std::os::unix::fs::chown(to, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
}

#[test]
fn statedir_cache_in_swupds_layout_installs_with_no_network() {
    // Manifests hash with root's ownership: only root can lay them out so.
    if skip_unless_root(
        "statedir_cache_in_swupds_layout_installs_with_no_network",
        "cached manifests owned by root",
    ) {
        return;
    }
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    // The files, staged and verified by a download-only install from the server.
    let first = w.dir.path().join("first-state");
    ok(os_install(
        &w,
        &w.server.url(),
        &first,
        &w.dir.path().join("unused"),
        &["--download"],
    ));

    // A swupd state directory for a server that is gone.
    let url = dead_url();
    let cache = w.dir.path().join("statedir-cache");
    let by_url = cache
        .join("cache")
        .join(url.replace([':', '/'], "_"))
        .to_path_buf();
    let manifests = by_url.join("manifest/10");
    for name in ["Manifest.MoM", "Manifest.MoM.sig", "Manifest.os-core"] {
        put(&w.web(&format!("10/{name}")), &manifests.join(name));
    }
    ok(run(Command::new("cp")
        .arg("-a")
        .arg(first.join("staged"))
        .arg(by_url.join("staged"))));

    let state = w.dir.path().join("state");
    let root = w.dir.path().join("root-a");
    let out = ok(os_install(
        &w,
        &url,
        &state,
        &root,
        &["-s", cache.to_str().unwrap()],
    ));
    assert!(root.join("usr/bin/hello").exists(), "{}", text(&out));
    assert!(std::fs::read_to_string(root.join("usr/lib/os-release"))
        .unwrap()
        .contains("VERSION_ID=10"));

    // A manifest that does not hash to the MoM's line is not used: with no server the
    // install fails and the root stays empty.
    let core = manifests.join("Manifest.os-core");
    let good = std::fs::read(&core).unwrap();
    let mut bad = good.clone();
    bad.extend_from_slice(b"\n");
    std::fs::write(&core, &bad).unwrap();
    let root = w.dir.path().join("root-b");
    let out = os_install(
        &w,
        &url,
        &w.dir.path().join("state-b"),
        &root,
        &["-s", cache.to_str().unwrap()],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("Manifest.os-core"), "{}", text(&out));
    assert!(!root.join("usr/bin/hello").exists());
    std::fs::write(&core, &good).unwrap();

    // A MoM whose signature does not verify is not used either.
    let sig = manifests.join("Manifest.MoM.sig");
    std::fs::write(&sig, b"\x30\x82garbage").unwrap();
    let root = w.dir.path().join("root-c");
    let out = os_install(
        &w,
        &url,
        &w.dir.path().join("state-c"),
        &root,
        &["-s", cache.to_str().unwrap()],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("Manifest.MoM"), "{}", text(&out));
    assert!(!root.join("usr/bin/hello").exists());
}
