//! The manifest cache in the state directory, through the real binaries: an update reads
//! the installed release's MoM and manifests from the cache instead of the server (the
//! server's log and byte count show it), and a tampered or stale entry is noticed,
//! downloaded again, and the update succeeds.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use fixture::{expected, ok, run, snapshot, text, World};

/// Release 10 (os-core with 200 small files, editors) installed with both bundles, and
/// release 20 in which only os-core changes; both published.
fn world() -> World {
    let w = World::on_tmpfs();
    w.sample(10);
    for i in 0..200 {
        let data = format!("file {i}\n").repeat(8);
        w.file(
            10,
            "os-core",
            &format!("/usr/lib/data/{i:03}"),
            data.as_bytes(),
            0o644,
        );
    }
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10", "-B", "editors"]));
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    w
}

fn cached(w: &World, rel: &str) -> PathBuf {
    w.manifest_cache().join(rel)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

/// Copies a directory tree as it is (owners, modes, links).
fn copy(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    ok(run(Command::new("cp").arg("-a").arg(from).arg(to)));
}

/// The server's requests (paths) since the log was last cleared.
fn paths(w: &World) -> Vec<String> {
    w.server.log().into_iter().map(|r| r.path).collect()
}

#[test]
fn an_update_fetches_no_manifest_that_did_not_change() {
    let w = world();
    for rel in [
        "10/Manifest.MoM",
        "10/Manifest.MoM.sig",
        "10/Manifest.os-core",
        "10/Manifest.editors",
    ] {
        assert!(cached(&w, rel).is_file(), "os-install caches {rel}");
    }
    let mode = std::fs::metadata(w.manifest_cache())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "the cache is as private as the state directory"
    );
    let (root10, state10) = (w.dir.path().join("root10"), w.dir.path().join("state10"));
    copy(&w.root, &root10);
    copy(&w.state, &state10);

    // With the cache: release 10's MoM and manifests, and editors' (unchanged in 20), are
    // not asked for; os-core's new manifest comes once, as a delta or a tar.
    w.server.clear_log();
    ok(w.chainup(&["update"]));
    let with_cache = w.server.bytes_sent();
    let asked = paths(&w);
    assert!(!asked.iter().any(|p| p.starts_with("/10/")), "{asked:?}");
    assert!(!asked.iter().any(|p| p.contains("editors")), "{asked:?}");
    assert_eq!(w.server.hits("/20/Manifest.MoM.tar"), 1, "{asked:?}");
    let os_core = w.server.hits("/20/Manifest.os-core.tar")
        + w.server.hits("/20/Manifest-os-core-delta-from-10");
    assert_eq!(os_core, 1, "{asked:?}");
    assert_eq!(
        snapshot(&w.root, &["/var"]),
        expected(&w, 20, &["os-core", "editors"])
    );
    ok(w.chainup(&["diagnose"]));
    // Pruned to what release 20 names: its MoM, os-core at 20, editors still at 10.
    assert!(!cached(&w, "10/Manifest.MoM").exists());
    assert!(!cached(&w, "10/Manifest.os-core").exists());
    assert!(cached(&w, "10/Manifest.editors").is_file());
    assert!(cached(&w, "20/Manifest.MoM").is_file());
    assert!(cached(&w, "20/Manifest.os-core").is_file());

    // The same update without a cache: it pays at least for release 10's MoM, its
    // signature and both manifests more.
    copy(&root10, &w.root);
    copy(&state10, &w.state);
    std::fs::remove_dir_all(w.manifest_cache()).unwrap();
    w.server.clear_log();
    ok(w.chainup(&["update"]));
    let without_cache = w.server.bytes_sent();
    let old: u64 = [
        "10/Manifest.MoM.tar",
        "10/Manifest.MoM.sig",
        "10/Manifest.os-core.tar",
        "10/Manifest.editors.tar",
    ]
    .iter()
    .map(|rel| size(&w.web(rel)))
    .sum();
    assert!(
        without_cache >= with_cache + old,
        "with the cache {with_cache} bytes, without {without_cache}, old manifests {old}"
    );
    assert_eq!(w.server.hits("/10/Manifest.os-core.tar"), 1);
    assert_eq!(
        snapshot(&w.root, &["/var"]),
        expected(&w, 20, &["os-core", "editors"])
    );
}

/// Spoils cache entries of a world.
type Spoil = fn(&World);

#[test]
fn tampered_or_stale_cache_entries_are_downloaded_again() {
    let w = world();
    // `--download` caches release 20 and keeps 10 (the root's release).
    ok(w.chainup(&["update", "--download"]));
    assert!(cached(&w, "10/Manifest.MoM").is_file());
    assert!(cached(&w, "20/Manifest.os-core").is_file());
    let (root10, state10) = (w.dir.path().join("root10"), w.dir.path().join("state10"));
    copy(&w.root, &root10);
    copy(&w.state, &state10);

    let cases: [(&str, Spoil); 3] = [
        ("a tampered MoM and manifest", |w| {
            let mom = cached(w, "10/Manifest.MoM");
            let text = std::fs::read_to_string(&mom).unwrap();
            std::fs::write(&mom, text.replace("editors", "editorz")).unwrap();
            let m = cached(w, "10/Manifest.os-core");
            let mut data = std::fs::read(&m).unwrap();
            let last = data.len() - 2;
            data[last] ^= 1;
            std::fs::write(&m, data).unwrap();
        }),
        // Another release's validly signed MoM and verified manifest, under 10's names.
        ("stale entries of another release", |w| {
            for name in ["Manifest.MoM", "Manifest.MoM.sig", "Manifest.os-core"] {
                let from = cached(w, &format!("20/{name}"));
                std::fs::copy(from, cached(w, &format!("10/{name}"))).unwrap();
            }
        }),
        ("a manifest header with another mode", |w| {
            let m = cached(w, "10/Manifest.os-core");
            let data = std::fs::read_to_string(&m).unwrap();
            let (head, rest) = data.split_once('\n').unwrap();
            let head = head.replacen(" 644 ", " 600 ", 1);
            assert!(head.contains(" 600 "), "{head}");
            std::fs::write(&m, format!("{head}\n{rest}")).unwrap();
        }),
    ];
    for (case, spoil) in cases {
        copy(&root10, &w.root);
        copy(&state10, &w.state);
        spoil(&w);
        w.server.clear_log();
        let out = ok(w.chainup(&["update"]));
        let said = text(&out);
        assert!(said.contains("does not verify"), "{case}: {said}");
        assert_eq!(
            w.server.hits("/10/Manifest.os-core.tar"),
            1,
            "{case}: {:?}",
            paths(&w)
        );
        if case != "a manifest header with another mode" {
            assert_eq!(w.server.hits("/10/Manifest.MoM.tar"), 1, "{case}");
        }
        assert_eq!(
            snapshot(&w.root, &["/var"]),
            expected(&w, 20, &["os-core", "editors"]),
            "{case}"
        );
        ok(w.chainup(&["diagnose"]));
    }
}
