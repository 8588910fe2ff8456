//! diagnose and repair as swupd 7.0.0 runs them: `--bundles` naming bundles that are not
//! installed or not in the version, the options it refuses together, and manifests as
//! swupd's own generator edits them (an entry marked deleted that keeps its hash). Through
//! the real binary, against content made by chainup-publish on a loopback server.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::process::Output;

use fixture::{ok, text, World};

/// Release 10 published, with /usr/share/common in os-core and in editors.
fn published() -> World {
    let w = World::new();
    w.sample(10);
    for b in ["os-core", "editors"] {
        w.file(10, b, "/usr/share/common", b"shared\n", 0o644);
    }
    ok(w.publish(10, &[]));
    w
}

fn at(w: &World, path: &str) -> std::path::PathBuf {
    w.root.join(path.trim_start_matches('/'))
}

#[track_caller]
fn exits(out: &Output, want: i32) {
    assert_eq!(out.status.code(), Some(want), "{}", text(out));
}

/// The output lines that name `path` exactly.
fn naming(out: &Output, path: &str) -> Vec<String> {
    text(out)
        .lines()
        .filter(|l| l.contains(&format!(" {path}")) && !l.contains(&format!(" {path}/")))
        .map(String::from)
        .collect()
}

#[test]
fn bundles_not_installed_are_skipped_and_unknown_ones_need_force() {
    let w = published();
    ok(w.chainup(&["os-install", "-V", "10", "-B", "editors"]));
    std::fs::remove_file(at(&w, "/usr/bin/vim")).unwrap();

    // Only bundles that are not installed: each named, nothing checked, success.
    let out = w.chainup(&["diagnose", "--bundles", "devtools"]);
    exits(&out, 0);
    assert!(
        text(&out).contains("\"devtools\" is not installed"),
        "{}",
        text(&out)
    );
    assert!(naming(&out, "/usr/bin/vim").is_empty(), "{}", text(&out));
    // One not installed among installed ones: skipped, the others checked.
    let out = w.chainup(&["diagnose", "--bundles", "devtools,editors"]);
    exits(&out, 1);
    assert!(
        naming(&out, "/usr/bin/vim")[0].contains("Missing"),
        "{}",
        text(&out)
    );

    // A name the version does not have fails the command (3) before anything is checked
    // or changed, unless --force skips it.
    for cmd in ["diagnose", "repair"] {
        let out = w.chainup(&[cmd, "--bundles", "bad-name,editors"]);
        exits(&out, 3);
        assert!(text(&out).contains("\"bad-name\""), "{}", text(&out));
        assert!(naming(&out, "/usr/bin/vim").is_empty(), "{}", text(&out));
    }
    assert!(!at(&w, "/usr/bin/vim").exists());
    let out = w.chainup(&["diagnose", "--bundles", "bad-name,editors", "--force"]);
    exits(&out, 1);
    assert!(
        naming(&out, "/usr/bin/vim")[0].contains("Missing"),
        "{}",
        text(&out)
    );

    // repair with a bundle that is not installed repairs the installed ones.
    exits(&w.chainup(&["repair", "--bundles", "devtools,editors"]), 0);
    assert_eq!(std::fs::read(at(&w, "/usr/bin/vim")).unwrap(), b"vim\n");
    exits(&w.chainup(&["diagnose"]), 0);
}

#[test]
fn options_swupd_refuses_together_are_usage_errors() {
    let w = published();
    ok(w.chainup(&["os-install", "-V", "10", "-B", "editors"]));
    // diagnose refuses --bundles with --picky (repair only warns in swupd, and chainup's
    // picky search is over every installed bundle anyway).
    for args in [
        &["diagnose", "--bundles", "editors", "--picky"][..],
        &["diagnose", "--picky", "--bundles", "editors"],
        &["diagnose", "--bundles", "editors", "--extra-files-only"],
        &["diagnose", "--quick", "--picky"],
        &["diagnose", "--picky", "--extra-files-only"],
        &["repair", "--quick", "--extra-files-only"],
        &["diagnose", "--version=latest"],
        &["repair", "-V", "latest"],
    ] {
        exits(&w.chainup(args), 15);
    }
    exits(
        &w.chainup(&["repair", "--bundles", "editors", "--picky"]),
        0,
    );
}

#[test]
fn an_entry_marked_deleted_that_keeps_its_hash_reads_as_deleted() {
    let w = published();
    // As swupd's test generator marks entries deleted: the status flag flips, the hash
    // stays. /usr/share/common is still shipped by os-core, which editors includes.
    w.resign_manifest(10, "editors", |text| {
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                match f.as_slice() {
                    [flags, hash, v, path]
                        if *path == "/usr/bin/vim" || *path == "/usr/share/common" =>
                    {
                        assert!(!hash.starts_with("0000"), "{l}");
                        format!(".d{}\t{hash}\t{v}\t{path}\n", &flags[2..])
                    }
                    _ => format!("{l}\n"),
                }
            })
            .collect()
    });
    ok(w.chainup(&["os-install", "-V", "10", "-B", "editors"]));
    assert!(!at(&w, "/usr/bin/vim").exists());
    assert!(at(&w, "/usr/share/common").exists());
    std::fs::write(at(&w, "/usr/bin/vim"), b"left behind\n").unwrap();

    let out = w.chainup(&["diagnose", "--bundles", "editors"]);
    exits(&out, 1);
    assert!(
        naming(&out, "/usr/bin/vim")[0].contains("Not deleted"),
        "{}",
        text(&out)
    );
    assert!(
        naming(&out, "/usr/share/common").is_empty(),
        "{}",
        text(&out)
    );
    exits(&w.chainup(&["repair", "--bundles", "editors"]), 0);
    assert!(!at(&w, "/usr/bin/vim").exists());
    assert_eq!(
        std::fs::read(at(&w, "/usr/share/common")).unwrap(),
        b"shared\n"
    );
    exits(&w.chainup(&["diagnose"]), 0);
}

#[test]
fn bundle_add_installs_a_bundle_the_installed_os_core_came_to_include() {
    // As swupd's DIA014/REP032: os-core is installed, then its release is re-signed with
    // an `includes:` of editors, which the root does not hold.
    let w = World::new();
    std::fs::write(
        &w.bundles_toml,
        "[bundles.os-core]\n[bundles.editors]\n[bundles.devtools]\n",
    )
    .unwrap();
    w.sample(10);
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10"]));
    w.resign_manifest(10, "os-core", |text| {
        let (header, body) = text.split_once("\n\n").unwrap();
        format!("{header}\nincludes:\teditors\n\n{body}")
    });
    // The cached MoM would hide the new one.
    std::fs::remove_dir_all(&w.state).unwrap();
    assert!(!at(&w, "/usr/bin/vim").exists());
    exits(&w.chainup(&["bundle-add", "editors"]), 0);
    assert_eq!(std::fs::read(at(&w, "/usr/bin/vim")).unwrap(), b"vim\n");
    assert!(at(&w, "/usr/share/clear/bundles/editors").exists());
    exits(&w.chainup(&["diagnose"]), 0);
}
