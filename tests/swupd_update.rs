//! swupd's update behaviours that its own functional suite checks, through the real
//! binaries against content made by chainup-publish on a loopback server: the manifest
//! cache where swupd keeps it (`STATEDIR/cache/<url>/manifest/<V>/`), filled also by
//! `bundle-list`; `update --update-search-file-index` for the release reached; format
//! bumps (check-update reads `latest_version`, update follows the root's new format); and
//! `update --3rd-party`.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fixture::{bin, ok, run, text, World};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The manifest cache of `url` in `state`, where swupd keeps it: `cache/<url with ':'
/// and '/' as '_'>/manifest`.
fn cache_dir(state: &Path, url: &str) -> PathBuf {
    let name = url.trim_end_matches('/').replace([':', '/'], "_");
    state.join("cache").join(name).join("manifest")
}

fn os_release(root: &Path) -> String {
    read(&root.join("usr/lib/os-release"))
}

#[test]
fn the_manifest_cache_is_where_swupd_keeps_it_and_bundle_list_fills_it() {
    let w = World::new();
    w.install_sample();
    let cache = cache_dir(&w.state, &w.server.url());
    // os-install caches what it verified; devtools is not installed, so not its manifest.
    for rel in ["Manifest.MoM", "Manifest.MoM.sig", "Manifest.os-core"] {
        assert!(cache.join("10").join(rel).is_file(), "{rel}");
    }
    assert!(!cache.join("10/Manifest.devtools").exists());

    // A reading command adds what it downloaded to an existing state directory...
    std::fs::remove_dir_all(w.state.join("cache")).unwrap();
    let s = stdout(&ok(w.chainup(&["bundle-list", "--all"])));
    assert!(s.contains("devtools"), "{s}");
    assert!(cache.join("10/Manifest.MoM").is_file());
    assert!(cache.join("10/Manifest.MoM.sig").is_file());
    // ...and the server losing the MoM then does not matter to it.
    std::fs::rename(
        w.web("10/Manifest.MoM.tar"),
        w.web("10/Manifest.MoM.tar.away"),
    )
    .unwrap();
    ok(w.chainup(&["bundle-list", "--all"]));
    // A forged cached MoM is not believed: with the server's gone too, the command fails.
    std::fs::write(
        cache.join("10/Manifest.MoM"),
        b"MANIFEST\t30\nversion:\t10\n",
    )
    .unwrap();
    let out = w.chainup(&["bundle-list", "--all"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::rename(
        w.web("10/Manifest.MoM.tar.away"),
        w.web("10/Manifest.MoM.tar"),
    )
    .unwrap();
    ok(w.chainup(&["bundle-list", "--all"]));

    // ...but never creates a state directory that is not there.
    let elsewhere = w.dir.path().join("no-state");
    ok(run(w
        .chainup_cmd(&["bundle-list", "--all"])
        .arg("--statedir")
        .arg(&elsewhere)));
    assert!(!elsewhere.exists());
}

#[test]
fn search_file_index_is_kept_for_the_release_reached() {
    let w = World::new();
    w.install_sample();
    w.derive(10, 20);
    w.change_hello(20);
    // As in swupd's own test content, the new release does not change os-release: the
    // root still says 10 after the update, and the index must still be release 20's.
    w.file(
        20,
        "os-core",
        "/usr/lib/os-release",
        b"NAME=chainup test\nVERSION_ID=10\n",
        0o644,
    );
    w.file(20, "devtools", "/usr/bin/gcc", b"gcc 20\n", 0o755);
    ok(w.publish(20, &[]));
    let cache = cache_dir(&w.state, &w.server.url());
    ok(w.chainup(&["update"]));
    assert!(!cache.join("20/Manifest.devtools").exists());
    assert!(os_release(&w.root).contains("VERSION_ID=10"));

    w.derive(20, 30);
    w.change_hello(30);
    w.file(
        30,
        "os-core",
        "/usr/lib/os-release",
        b"NAME=chainup test\nVERSION_ID=10\n",
        0o644,
    );
    ok(w.publish(30, &[]));
    let s = stdout(&ok(w.chainup(&["update", "--update-search-file-index"])));
    assert!(s.contains("bundle manifests of version 30"), "{s}");
    // Each manifest is kept under the version it last changed in, as swupd keeps it.
    assert!(cache.join("30/Manifest.MoM").is_file());
    assert!(cache.join("30/Manifest.os-core").is_file());
    assert!(cache.join("20/Manifest.devtools").is_file());
    assert!(cache.join("10/Manifest.editors").is_file());
    assert_eq!(read(&w.root.join("usr/bin/hello")), "#!/bin/sh\necho 30\n");
}

/// Release `version` of `w` in content format `format`, whose root says it is format
/// `format_file` and version `os_version`.
fn publish_in_format(w: &World, version: u32, format: u32, format_file: u32, os_version: u32) {
    w.file(
        version,
        "os-core",
        "/usr/share/defaults/swupd/format",
        format!("{format_file}\n").as_bytes(),
        0o644,
    );
    w.file(
        version,
        "os-core",
        "/usr/lib/os-release",
        format!("NAME=chainup test\nVERSION_ID={os_version}\n").as_bytes(),
        0o644,
    );
    ok(w.publish(version, &["--format", &format.to_string()]));
}

/// A format bump as swupd's suite makes one: 10 in format 29; 20, the last of format 29,
/// with format 30's content (its format file says 30, its os-release 30); 30, the first of
/// format 30, the same content; 40 in format 30. Release 10 is installed.
fn bumped_world(os_version_of_20: u32) -> World {
    let w = World::new();
    w.sample(10);
    publish_in_format(&w, 10, 29, 29, 10);
    ok(w.chainup(&["os-install", "-V", "10"]));
    w.derive(10, 20);
    w.change_hello(20);
    publish_in_format(&w, 20, 29, 30, os_version_of_20);
    w.derive(20, 30);
    publish_in_format(&w, 30, 30, 30, 30);
    w.derive(30, 40);
    w.change_hello(40);
    publish_in_format(&w, 40, 30, 30, 40);
    w
}

#[test]
fn a_format_bump_is_seen_by_check_update_and_followed_by_update() {
    let w = bumped_world(30);
    assert!(w.web("version/format29/latest").is_file());
    assert_eq!(read(&w.web("version/format29/latest")).trim(), "20");
    assert_eq!(read(&w.web("version/latest_version")).trim(), "40");

    // check-update names the newest release in any format, as swupd's: the root's
    // format (29), an explicit one, or `staging`, which this server does not publish.
    for extra in [&[][..], &["-F", "29"], &["-F", "staging"]] {
        let args = [&["check-update"][..], extra].concat();
        let out = w.chainup(&args);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", text(&out));
        assert!(stdout(&out).contains("version 40"), "{}", stdout(&out));
    }
    // A format with nothing at all is still an error, not "no update": swupd's "unable
    // to determine the server version", 16.
    std::fs::rename(
        w.web("version/latest_version"),
        w.web("latest_version.away"),
    )
    .unwrap();
    let out = w.chainup(&["check-update", "-F", "staging"]);
    assert_eq!(out.status.code(), Some(16), "{}", text(&out));
    let out = w.chainup(&["update", "-F", "staging"]);
    assert_eq!(out.status.code(), Some(16), "{}", text(&out));
    std::fs::rename(
        w.web("latest_version.away"),
        w.web("version/latest_version"),
    )
    .unwrap();

    // With the format given, update follows it and stops at its last release.
    let kept = w.dir.path().join("kept");
    ok(run(Command::new("cp").arg("-a").arg(&w.root).arg(&kept)));
    ok(w.chainup(&["update", "-F", "29"]));
    assert!(os_release(&w.root).contains("VERSION_ID=30"));
    assert_eq!(
        read(&w.root.join("usr/share/defaults/swupd/format")).trim(),
        "30"
    );

    // From the root's own format, update goes through 20 and again in format 30 to 40.
    std::fs::remove_dir_all(&w.root).unwrap();
    std::fs::rename(&kept, &w.root).unwrap();
    let s = stdout(&ok(w.chainup(&["update"])));
    assert!(s.contains("to format 30"), "{s}");
    assert!(os_release(&w.root).contains("VERSION_ID=40"));
    assert_eq!(read(&w.root.join("usr/bin/hello")), "#!/bin/sh\necho 40\n");
    ok(w.chainup(&["diagnose"]));
    let out = w.chainup(&["check-update"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn a_format_bump_whose_release_leaves_an_older_version_stops_with_exit_20() {
    // Release 20 brings format 30 but an os-release that still says 10: swupd's
    // "inconsistency between version files"; nothing of format 30 is installed.
    let w = bumped_world(10);
    let out = w.chainup(&["update"]);
    assert_eq!(out.status.code(), Some(20), "{}", text(&out));
    assert!(
        text(&out).contains("inconsistent version files"),
        "{}",
        text(&out)
    );
    assert_eq!(read(&w.root.join("usr/bin/hello")), "#!/bin/sh\necho 20\n");
    assert!(os_release(&w.root).contains("VERSION_ID=10"));
}

/// `chainup ARGS` on the world's root and state directory with no URL or trust store on
/// the command line: the root's TOML config names the system's, and each 3rd-party
/// repository has its own.
fn configured(w: &World, args: &[&str]) -> Output {
    run(Command::new(bin("chainup"))
        .args(args)
        .arg("--path")
        .arg(&w.root)
        .arg("--statedir")
        .arg(&w.state)
        .args(["--max-retries", "1", "--retry-delay", "0", "--no-progress"]))
}

#[test]
fn update_3rd_party_updates_the_system_then_each_repository() {
    let w = World::new();
    w.install_sample();
    let config = w.root.join("etc/chainup/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "url = \"{}\"\ncertpath = \"{}\"\nallow-insecure-http = true\n",
            w.server.url(),
            w.keys.root.display()
        ),
    )
    .unwrap();
    let repo = World::new();
    repo.sample(5);
    ok(repo.publish(5, &[]));
    let cert = repo.keys.root.to_str().unwrap();
    ok(configured(
        &w,
        &["3rd-party", "add", "tools", &repo.server.url(), "-C", cert],
    ));
    let repo_root = w.root.join("opt/3rd-party/bundles/tools");
    assert!(os_release(&repo_root).contains("VERSION_ID=5"));

    // Nothing newer anywhere: --status says no (1).
    let out = configured(&w, &["update", "--status", "--3rd-party"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Only the repository has something newer: yes (0), and the system's own --status
    // still says no.
    repo.derive(5, 6);
    repo.change_hello(6);
    ok(repo.publish(6, &[]));
    let out = configured(&w, &["update", "--status", "--3rd-party"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("Repository tools"), "{}", text(&out));
    let out = configured(&w, &["update", "--status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // update --3rd-party: the system, then the repository, each with its own key.
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    let s = stdout(&ok(configured(&w, &["update", "--3rd-party"])));
    assert!(s.contains("3rd-party"), "{s}");
    assert!(os_release(&w.root).contains("VERSION_ID=20"));
    assert!(os_release(&repo_root).contains("VERSION_ID=6"));
    assert_eq!(
        read(&repo_root.join("usr/bin/hello")),
        "#!/bin/sh\necho 6\n"
    );
    // The repository's content never lands in the system's root, nor the reverse.
    assert_eq!(read(&w.root.join("usr/bin/hello")), "#!/bin/sh\necho 20\n");

    // When the system's update fails, the repositories are left alone (as swupd).
    repo.derive(6, 7);
    repo.change_hello(7);
    ok(repo.publish(7, &[]));
    w.derive(20, 30);
    w.change_hello(30);
    ok(w.publish(30, &[]));
    w.sign_mom(30, &repo.keys.root, &repo.keys.root_key, &[]);
    let out = configured(&w, &["update", "--3rd-party"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(os_release(&w.root).contains("VERSION_ID=20"));
    assert!(os_release(&repo_root).contains("VERSION_ID=6"));
    // Without --3rd-party, a repository is not touched.
    w.sign_mom(30, &w.keys.root, &w.keys.root_key, &[]);
    ok(configured(&w, &["update"]));
    assert!(os_release(&w.root).contains("VERSION_ID=30"));
    assert!(os_release(&repo_root).contains("VERSION_ID=6"));
    ok(configured(&w, &["update", "--3rd-party"]));
    assert!(os_release(&repo_root).contains("VERSION_ID=7"));
}

#[test]
fn a_mom_or_manifest_the_server_lacks_gives_swupds_exit_codes() {
    let w = World::new();
    w.install_sample();
    ok(w.chainup(&["bundle-add", "editors"]));
    w.derive(10, 20);
    w.change_hello(20);
    w.file(20, "editors", "/usr/bin/vim", b"vim 20\n", 0o755);
    ok(w.publish(20, &[]));
    let before = fixture::snapshot(&w.root, &[]);
    let away = |rel: &str| {
        let from = w.web(rel);
        let to = w.dir.path().join("away");
        std::fs::rename(&from, &to).unwrap();
        move || std::fs::rename(&to, &from).unwrap()
    };
    // The installed release's MoM (not cached) or the new one missing: swupd's "cannot
    // load the MoM", 4.
    for rel in ["10/Manifest.MoM.tar", "20/Manifest.MoM.tar"] {
        let _ = std::fs::remove_dir_all(w.state.join("cache"));
        let back = away(rel);
        let out = w.chainup(&["update"]);
        assert_eq!(out.status.code(), Some(4), "{rel}: {}", text(&out));
        assert!(text(&out).contains("not on the server"), "{}", text(&out));
        assert_eq!(fixture::snapshot(&w.root, &[]), before, "{rel}");
        back();
    }
    // A MoM the server fails to send is a download failure, as before (17).
    w.server.status("/20/Manifest.MoM.tar", 503);
    let out = w.chainup(&["update"]);
    assert_eq!(out.status.code(), Some(17), "{}", text(&out));
    w.server.clear_faults();
    // A manifest the new MoM lists but the server lacks (and no delta to make it from):
    // swupd's "recurse manifest" error, 8.
    for e in std::fs::read_dir(w.web("20")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("Manifest-editors-delta-from-") {
            std::fs::remove_file(w.web(&format!("20/{name}"))).unwrap();
        }
    }
    let back = away("20/Manifest.editors.tar");
    let out = w.chainup(&["update"]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    assert!(text(&out).contains("editors"), "{}", text(&out));
    assert_eq!(fixture::snapshot(&w.root, &[]), before);
    back();
    ok(w.chainup(&["update"]));
    assert_eq!(read(&w.root.join("usr/bin/vim")), "vim 20\n");
}
