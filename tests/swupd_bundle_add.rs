//! swupd's `bundle-add` as its own functional suite drives it: aliases from `alias.d`,
//! names the version lacks skipped while the others install, the exit codes swupd gives.
//! chainup runs under the name `swupd` against a loopback server with content made by
//! chainup-publish.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::path::Path;
use std::process::{Command, Output};

use fixture::{ok, run, text, World};

/// Three leaf bundles beside os-core, so aliases have something to choose between.
const BUNDLES: &str = r#"
[bundles.os-core]
[bundles.editors]
includes = ["os-core"]
[bundles.devtools]
includes = ["os-core"]
[bundles.docs]
includes = ["os-core"]
"#;

/// Release 10 with the three bundles, os-installed with os-core only.
fn world() -> World {
    let w = World::new();
    std::fs::write(&w.bundles_toml, BUNDLES).unwrap();
    w.sample(10);
    w.file(10, "docs", "/usr/share/doc/manual", b"manual\n", 0o644);
    w.file(10, "docs", "/usr/share/clear/bundles/docs", b"", 0o644);
    ok(w.publish(10, &[]));
    ok(swupd(&w, &["os-install", "-V", "10"]));
    w
}

/// `swupd ARGS` with the options swupd's suite passes, against the world's root.
fn swupd(w: &World, args: &[&str]) -> Output {
    run(Command::new(w.swupd_bin())
        .args(args)
        .arg("--statedir")
        .arg(&w.state)
        .arg("--certpath")
        .arg(&w.keys.root)
        .args(["--allow-insecure-http", "--no-progress"])
        .arg("--path")
        .arg(&w.root)
        .arg("--url")
        .arg(w.server.url()))
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Writes an alias file under the root, its directories made as needed.
fn alias_file(w: &World, rel: &str, text: &str) {
    let path = w.root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const SYSTEM: &str = "usr/share/defaults/swupd/alias.d";
const USER: &str = "etc/swupd/alias.d";

fn installed(w: &World, bundle: &str) -> bool {
    w.root.join("usr/share/clear/bundles").join(bundle).exists()
}

/// Removes every bundle but os-core and every alias file, for the next case.
fn reset(w: &World) {
    for b in ["editors", "devtools", "docs"] {
        if installed(w, b) {
            ok(swupd(w, &["bundle-remove", b]));
        }
    }
    for dir in [SYSTEM, USER] {
        let _ = std::fs::remove_dir_all(w.root.join(dir));
    }
}

#[test]
fn aliases_expand_with_swupds_precedence() {
    let w = world();

    // A distribution alias for two bundles, named in the output last to first as swupd.
    alias_file(&w, &format!("{SYSTEM}/a1"), "tools\teditors\tdevtools\n");
    let out = ok(swupd(&w, &["bundle-add", "tools"]));
    assert!(
        text(&out).contains("Alias tools will install bundle(s): devtools, editors"),
        "{}",
        text(&out)
    );
    assert!(installed(&w, "editors") && installed(&w, "devtools"));
    assert!(!installed(&w, "docs"));
    reset(&w);

    // The administrator's file of the same name masks the distribution's; a link to
    // /dev/null masks it with nothing, so the next file in order defines the alias.
    alias_file(&w, &format!("{SYSTEM}/a1"), "x\tdevtools\n");
    alias_file(&w, &format!("{SYSTEM}/b1"), "x\teditors\n");
    std::fs::create_dir_all(w.root.join(USER)).unwrap();
    std::os::unix::fs::symlink("/dev/null", w.root.join(USER).join("a1")).unwrap();
    ok(swupd(&w, &["bundle-add", "x"]));
    assert!(installed(&w, "editors") && !installed(&w, "devtools"));
    reset(&w);

    // An administrator's file wins over a distribution's of an earlier name; among one
    // directory's files the first name wins; a masked file's alias for a real bundle
    // name no longer redirects it.
    alias_file(&w, &format!("{USER}/b1"), "x\teditors\n");
    alias_file(&w, &format!("{USER}/c1"), "x\tdocs\n");
    alias_file(&w, &format!("{SYSTEM}/a1"), "x\tdevtools\n");
    alias_file(&w, &format!("{USER}/d1"), "");
    alias_file(&w, &format!("{SYSTEM}/d1"), "docs\tdevtools\n");
    ok(swupd(&w, &["bundle-add", "x", "docs"]));
    assert!(installed(&w, "editors") && installed(&w, "docs"));
    assert!(!installed(&w, "devtools"));
    reset(&w);

    // Comments, lines without a tab and empty bundle names are skipped; the bundles an
    // alias names are looked up in the verified MoM like any name (unknown: exit 3).
    alias_file(&w, &format!("{USER}/a"), "# y\tdocs\ny\n\ty\nz\tnosuch\n");
    let out = swupd(&w, &["bundle-add", "y"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    let out = swupd(&w, &["bundle-add", "z"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(text(&out).contains("nosuch"), "{}", text(&out));
    assert!(!installed(&w, "docs"));
}

#[test]
fn unknown_names_are_skipped_and_the_others_installed() {
    let w = world();
    // One good, one unknown: the good one is installed, the unknown one named, exit 3.
    let out = swupd(&w, &["bundle-add", "editors", "nosuch"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(text(&out).contains("nosuch"), "{}", text(&out));
    assert!(w.root.join("usr/bin/vim").exists());
    assert!(installed(&w, "editors"));

    // Already installed and unknown: nothing to do, still exit 3.
    let out = swupd(&w, &["bundle-add", "nosuch", "editors"]);
    assert_eq!(code(&out), 3, "{}", text(&out));

    // All unknown: exit 3, each named.
    let out = swupd(&w, &["bundle-add", "nosuch1", "nosuch2"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(text(&out).contains("nosuch1") && text(&out).contains("nosuch2"));

    // A download failure wins over a skipped name's code, and nothing is installed.
    let (_, hash, _) = w.entry(10, "docs", "/usr/share/doc/manual");
    remove_fullfile(&w.web("10/files"), &hash);
    for e in std::fs::read_dir(w.web("10")).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("pack-") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let out = swupd(&w, &["bundle-add", "docs", "nosuch", "-r", "0"]);
    assert_eq!(code(&out), 17, "{}", text(&out));
    assert!(!w.root.join("usr/share/doc/manual").exists());
}

/// Removes the fullfile of `hash` in every form the publisher writes.
fn remove_fullfile(dir: &Path, hash: &str) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with(hash) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}
