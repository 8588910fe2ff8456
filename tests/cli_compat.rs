//! swupd's command line, taken as it is: chainup run under the name `swupd` against a
//! loopback server with content made by chainup-publish, each swupd option through the
//! real binary.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::path::Path;
use std::process::{Command, Output};

use fixture::{ok, run, sign_file, text, World};

/// Bundles with an optional one: devtools includes editors and also-adds docs.
const BUNDLES: &str = r#"
[bundles.os-core]
[bundles.editors]
includes = ["os-core"]
[bundles.devtools]
includes = ["editors"]
also-add = ["docs"]
[bundles.docs]
includes = ["os-core"]
"#;

/// The sample release `version` with the docs bundle, published.
fn publish(w: &World, version: u32) {
    w.sample(version);
    w.file(version, "docs", "/usr/share/doc/manual", b"manual\n", 0o644);
    w.file(version, "docs", "/usr/share/clear/bundles/docs", b"", 0o644);
    ok(w.publish(version, &[]));
}

fn world() -> World {
    let w = World::new();
    std::fs::write(&w.bundles_toml, BUNDLES).unwrap();
    publish(&w, 10);
    w
}

/// `swupd ARGS` with only what swupd's test suite passes: the state directory, the trust
/// store, plain http allowed, no progress bars. No URL: the root's files give it.
fn swupd_bare(w: &World, args: &[&str]) -> Command {
    let mut cmd = Command::new(w.swupd_bin());
    cmd.args(args)
        .arg("--statedir")
        .arg(&w.state)
        .arg("--certpath")
        .arg(&w.keys.root)
        .args(["--allow-insecure-http", "--no-progress"]);
    cmd
}

/// `swupd ARGS -p ROOT -u URL` with the world's state directory and trust store.
fn swupd(w: &World, args: &[&str]) -> Output {
    run(swupd_bare(w, args)
        .arg("--path")
        .arg(&w.root)
        .arg("--url")
        .arg(w.server.url()))
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn lines(out: &Output) -> Vec<String> {
    stdout(out).lines().map(str::to_string).collect()
}

/// A URL nothing listens on.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn os_version(root: &Path) -> String {
    std::fs::read_to_string(root.join("usr/lib/os-release")).unwrap_or_default()
}

#[test]
fn urls_and_format_come_from_swupd_files_and_the_mirror_files_win() {
    let w = world();
    // `-F staging` reads version/formatstaging/latest, as swupd.
    ok(run(Command::new("cp")
        .arg("-a")
        .arg(w.web("version/format30"))
        .arg(w.web("version/formatstaging"))));
    std::fs::remove_dir_all(w.web("version/format30")).unwrap();
    let url = w.server.url();
    write(
        &w.root.join("usr/share/defaults/swupd/contenturl"),
        &format!("{url}\n"),
    );
    write(
        &w.root.join("usr/share/defaults/swupd/versionurl"),
        &format!("{url}\n"),
    );
    write(&w.root.join("usr/share/defaults/swupd/format"), "staging\n");
    let root = w.root.to_str().unwrap();
    // The root as PATH and as --path at once: refused (15), as swupd.
    let out = run(&mut swupd_bare(&w, &["os-install", "-p", root, root]));
    assert_eq!(code(&out), 15, "{}", text(&out));
    assert!(text(&out).contains("not both"), "{}", text(&out));
    // os-install ROOT: the root as swupd's positional argument; -V latest.
    ok(run(&mut swupd_bare(
        &w,
        &["os-install", "-V", "latest", root],
    )));
    assert!(os_version(&w.root).contains("VERSION_ID=10"));

    // A mirror's files win over the distribution's, which now point nowhere.
    let dead = dead_url();
    let mirror = server::Server::new(&w.web);
    write(&w.root.join("usr/share/defaults/swupd/contenturl"), &dead);
    write(&w.root.join("usr/share/defaults/swupd/versionurl"), &dead);
    write(&w.root.join("etc/swupd/mirror_contenturl"), &mirror.url());
    write(&w.root.join("etc/swupd/mirror_versionurl"), &mirror.url());
    let info = ok(run(&mut swupd_bare(&w, &["info", "-p", root])));
    assert!(
        stdout(&info).contains(&format!("Content URL: {}", mirror.url())),
        "{}",
        stdout(&info)
    );
    assert!(
        stdout(&info).contains("Format: staging"),
        "{}",
        stdout(&info)
    );
    mirror.clear_log();
    let out = run(&mut swupd_bare(&w, &["check-update", "-p", root]));
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(mirror.hits("/version/formatstaging/latest") > 0);

    // The command line wins over every file, chainup's TOML over swupd's files.
    let info = ok(run(&mut swupd_bare(
        &w,
        &["info", "-p", root, "-u", "http://cli.invalid"],
    )));
    assert!(stdout(&info).contains("Content URL: http://cli.invalid"));
    assert!(stdout(&info).contains("Version URL: http://cli.invalid"));
    write(
        &w.root.join("etc/chainup/config.toml"),
        "contenturl = \"http://toml.invalid\"\nformat = 7\n",
    );
    let info = ok(run(&mut swupd_bare(&w, &["info", "-p", root])));
    assert!(stdout(&info).contains("Content URL: http://toml.invalid"));
    assert!(stdout(&info).contains(&format!("Version URL: {}", mirror.url())));
    assert!(stdout(&info).contains("Format: 7"));
    let info = ok(run(&mut swupd_bare(&w, &["info", "-p", root, "-F", "9"])));
    assert!(stdout(&info).contains("Format: 9"));
    // A format that is neither a number nor "staging" is a usage error.
    let out = run(&mut swupd_bare(&w, &["info", "-p", root, "-F", "stage"]));
    assert_eq!(code(&out), 15);
}

#[test]
fn repeated_options_take_the_last_and_long_options_take_a_prefix() {
    let w = world();
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    // `-V 20 -V 10`: the last wins; --allow-insec, --no-prog and --certp are prefixes
    // (and --statedir is exact, though os-install also has --statedir-cache).
    let out = run(Command::new(w.swupd_bin())
        .args([
            "os-install",
            "-V",
            "20",
            "-V",
            "10",
            "--allow-insec",
            "--no-prog",
        ])
        .arg("--certp")
        .arg(&w.keys.root)
        .arg("--statedir")
        .arg(&w.state)
        .arg("--url")
        .arg(w.server.url())
        .arg(&w.root));
    ok(out);
    assert!(os_version(&w.root).contains("VERSION_ID=10"));
    // An ambiguous prefix (--ver: --version or --verbose) is refused, as getopt does.
    assert_eq!(code(&swupd(&w, &["update", "--ver", "20"])), 15);
    // -P/--port: every request goes to that port, whatever the URL says.
    let port = w.server.url().rsplit(':').next().unwrap().to_string();
    let wrong_port = dead_url();
    let root = w.root.to_str().unwrap();
    let check = [
        "check-update",
        "-r",
        "0",
        "-d",
        "0",
        "-p",
        root,
        "-u",
        &wrong_port,
    ];
    let out = run(&mut swupd_bare(&w, &check));
    assert_eq!(code(&out), 16, "{}", text(&out));
    let out = run(swupd_bare(&w, &check).args(["-P", &port]));
    assert_eq!(code(&out), 0, "{}", text(&out));
    // -m is swupd's other name for -V.
    ok(swupd(&w, &["update", "-m", "20"]));
    assert!(os_version(&w.root).contains("VERSION_ID=20"));
}

#[test]
fn swupd_ini_config_gives_options_chainup_toml_and_the_command_line_win() {
    let w = world();
    let root = w.root.to_str().unwrap();
    write(
        &w.root.join("etc/swupd/config"),
        &format!(
            "# swupd's configuration\n[GLOBAL]\nurl={}\nallow_insecure_http=true\nno_progress=true\nnosuch=1\n[bundle-add]\nskip_optional=true\n",
            w.server.url()
        ),
    );
    // Only what a swupd user types: no URL, no --allow-insecure-http, no --no-progress.
    let bare = |args: &[&str]| {
        let mut cmd = Command::new(w.swupd_bin());
        cmd.args(args)
            .arg("--statedir")
            .arg(&w.state)
            .arg("--certpath")
            .arg(&w.keys.root);
        cmd
    };
    let out = ok(run(&mut bare(&["os-install", "-V", "10", root])));
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));
    ok(run(&mut bare(&["bundle-add", "devtools", "-p", root])));
    // [bundle-add] skip_optional: devtools came without its optional docs.
    assert!(w.root.join("usr/bin/gcc").exists());
    assert!(!w.root.join("usr/share/doc/manual").exists());

    let info = ok(run(&mut bare(&["info", "-p", root])));
    assert!(stdout(&info).contains(&format!("Content URL: {}", w.server.url())));
    write(
        &w.root.join("etc/chainup/config.toml"),
        "url = \"http://toml.invalid\"\n",
    );
    let info = ok(run(&mut bare(&["info", "-p", root])));
    assert!(
        stdout(&info).contains("Content URL: http://toml.invalid"),
        "{}",
        stdout(&info)
    );
    let info = ok(run(&mut bare(&[
        "info",
        "-u",
        "http://cli.invalid",
        "-p",
        root,
    ])));
    assert!(stdout(&info).contains("Content URL: http://cli.invalid"));
}

#[test]
fn bundle_list_deps_has_dep_status_and_orphans() {
    let w = world();
    // A root with swupd's configuration directory: a swupd system.
    std::fs::create_dir_all(w.root.join("usr/share/defaults/swupd")).unwrap();
    ok(swupd(&w, &["os-install", "-V", "10", "-B", "devtools"]));
    // devtools came with editors (included) and docs (optional).
    assert!(w.root.join("usr/share/doc/manual").exists());
    // As swupd, the bundle asked for is also tracked where the installed system's swupd
    // keeps its state; what came with it is not, nor is os-core, which was not named.
    let swupd_tracked = std::fs::read_dir(w.root.join("var/lib/swupd/bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(swupd_tracked, ["devtools"]);
    let deps = ok(swupd(&w, &["bundle-list", "--deps", "devtools"]));
    assert_eq!(lines(&deps), ["docs", "editors", "os-core"]);
    let deps = ok(swupd(&w, &["bundle-list", "--deps", "editors"]));
    assert!(
        stdout(&deps).contains("No included bundles"),
        "{}",
        stdout(&deps)
    );
    let has = ok(swupd(&w, &["bundle-list", "-D", "editors"]));
    assert_eq!(lines(&has), ["devtools"]);
    let has = ok(swupd(&w, &["bundle-list", "--has-dep", "os-core", "--all"]));
    assert_eq!(lines(&has), ["devtools", "docs", "editors"]);
    let out = swupd(&w, &["bundle-list", "--has-dep", "nosuch"]);
    assert_eq!(code(&out), 3);
    let status = ok(swupd(&w, &["bundle-list", "--status"]));
    assert_eq!(
        lines(&status),
        [
            "devtools (explicitly installed)",
            "docs (installed)",
            "editors (installed)",
            "os-core (explicitly installed)"
        ]
    );
    let orphans = ok(swupd(&w, &["bundle-list", "--orphans"]));
    assert!(lines(&orphans).is_empty(), "{}", stdout(&orphans));
    assert_eq!(code(&swupd(&w, &["bundle-list", "--orphans", "--all"])), 15);

    // Without devtools, what came only with it is orphaned.
    ok(swupd(&w, &["bundle-remove", "devtools"]));
    let orphans = ok(swupd(&w, &["bundle-list", "--orphans"]));
    assert_eq!(lines(&orphans), ["docs", "editors"]);
    // Adding a bundle on purpose tracks it: it is no orphan any more.
    ok(swupd(&w, &["bundle-add", "editors"]));
    let orphans = ok(swupd(&w, &["bundle-list", "--orphans"]));
    assert_eq!(lines(&orphans), ["docs"]);
    ok(swupd(&w, &["bundle-remove", "--orphans"]));
    assert!(!w.root.join("usr/share/doc/manual").exists());
    assert!(w.root.join("usr/bin/vim").exists());
    assert_eq!(code(&swupd(&w, &["bundle-remove", "--orphans", "-R"])), 15);
    assert_eq!(code(&swupd(&w, &["bundle-remove", "--orphans", "vim"])), 15);

    // An empty tracking directory tracks nothing yet, as a missing one: every installed
    // bundle counts as tracked, and the first bundle-add records them all.
    let tracking = w.state.join("bundles");
    for e in std::fs::read_dir(&tracking).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let orphans = ok(swupd(&w, &["bundle-list", "--orphans"]));
    assert!(lines(&orphans).is_empty(), "{}", stdout(&orphans));
    ok(swupd(&w, &["bundle-add", "docs"]));
    let mut tracked = std::fs::read_dir(&tracking)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    tracked.sort();
    assert_eq!(tracked, ["docs", "editors", "os-core"]);
}

#[test]
fn bundle_remove_recursive_and_force() {
    let w = world();
    ok(swupd(&w, &["os-install", "-V", "10", "-B", "devtools"]));
    ok(swupd(&w, &["bundle-remove", "-R", "devtools"]));
    for gone in ["usr/bin/gcc", "usr/bin/vim", "usr/share/doc/manual"] {
        assert!(!w.root.join(gone).exists(), "{gone}");
    }
    assert!(w.root.join("usr/bin/hello").exists());
    let list = ok(swupd(&w, &["bundle-list"]));
    assert_eq!(lines(&list), ["os-core"]);

    ok(swupd(&w, &["bundle-add", "devtools", "editors"]));
    // editors is tracked itself: -R on devtools keeps it (docs, untracked, goes).
    ok(swupd(&w, &["bundle-remove", "--recursive", "devtools"]));
    assert!(w.root.join("usr/bin/vim").exists());
    assert!(!w.root.join("usr/share/doc/manual").exists());

    ok(swupd(&w, &["bundle-add", "devtools"]));
    let out = swupd(&w, &["bundle-remove", "editors"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(w.root.join("usr/bin/vim").exists());
    // --force takes what requires it along.
    ok(swupd(&w, &["bundle-remove", "-x", "editors"]));
    assert!(!w.root.join("usr/bin/vim").exists());
    assert!(!w.root.join("usr/bin/gcc").exists());

    // As swupd, a bad name does not stop the others; the exit code tells of it.
    ok(swupd(&w, &["bundle-add", "editors", "docs"]));
    let out = swupd(&w, &["bundle-remove", "nosuch", "docs"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(!w.root.join("usr/share/doc/manual").exists());
    assert_eq!(code(&swupd(&w, &["bundle-remove", "os-core"])), 2);
    let out = swupd(&w, &["bundle-remove", "editors", "devtools"]);
    assert_eq!(code(&out), 13, "{}", text(&out));
    assert!(!w.root.join("usr/bin/vim").exists());
    // Several bad names: the last one's code, as swupd's loop leaves it.
    let out = swupd(&w, &["bundle-remove", "nosuch", "devtools"]);
    assert_eq!(code(&out), 13, "{}", text(&out));
    let out = swupd(&w, &["bundle-remove", "devtools", "nosuch"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
}

#[test]
fn skip_optional_leaves_also_add_bundles_out() {
    let w = world();
    ok(swupd(
        &w,
        &[
            "os-install",
            "-V",
            "10",
            "-B",
            "devtools",
            "--skip-optional",
        ],
    ));
    assert!(w.root.join("usr/bin/gcc").exists());
    assert!(!w.root.join("usr/share/doc/manual").exists());
    ok(swupd(&w, &["bundle-remove", "devtools"]));
    ok(swupd(&w, &["bundle-add", "--skip-optional", "devtools"]));
    assert!(!w.root.join("usr/share/doc/manual").exists());
    ok(swupd(&w, &["bundle-remove", "devtools"]));
    ok(swupd(&w, &["bundle-add", "devtools"]));
    assert!(w.root.join("usr/share/doc/manual").exists());
}

#[test]
fn os_install_download_force_and_statedir_cache() {
    let w = world();
    // --download: everything verified into the state directory, nothing installed.
    ok(swupd(
        &w,
        &["os-install", "-V", "10", "-B", "editors", "--download"],
    ));
    assert!(!w.root.join("usr/lib/os-release").exists());
    let staged = w.state.join("staged");
    assert!(std::fs::read_dir(&staged).unwrap().count() > 0);

    // --statedir-cache: another root installs from those staged files, with the
    // server's fullfiles and packs gone.
    let cache = w.dir.path().join("cache");
    ok(run(Command::new("cp").arg("-a").arg(&w.state).arg(&cache)));
    for e in std::fs::read_dir(w.web("10")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name == "files" || name.starts_with("pack-") {
            let _ = std::fs::remove_dir_all(e.path());
            let _ = std::fs::remove_file(e.path());
        }
    }
    let other = w.dir.path().join("other");
    let state2 = w.dir.path().join("state2");
    let install = |extra: &[&str]| {
        run(Command::new(w.swupd_bin())
            .args(["os-install", "-V", "10", "-B", "editors"])
            .args(extra)
            .arg("--statedir")
            .arg(&state2)
            .arg("--certpath")
            .arg(&w.keys.root)
            .args(["--allow-insecure-http", "--no-progress", "-r", "0"])
            .arg("-u")
            .arg(w.server.url())
            .arg(&other))
    };
    let out = install(&[]);
    assert_ne!(code(&out), 0, "installed without fullfiles: {}", text(&out));
    let out = install(&["-s", cache.to_str().unwrap()]);
    ok(out);
    assert!(other.join("usr/bin/vim").exists());

    // --force: a bundle the version lacks is skipped with a warning instead of failing.
    let w = world();
    let out = swupd(&w, &["os-install", "-V", "10", "-B", "nosuch"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(!w.root.join("usr/lib/os-release").exists());
    let out = ok(swupd(
        &w,
        &["os-install", "-V", "10", "-B", "nosuch,editors", "-x"],
    ));
    assert!(text(&out).contains("nosuch"), "{}", text(&out));
    assert!(w.root.join("usr/bin/vim").exists());
}

#[test]
fn update_status_keepcache_3rd_party_and_search_index() {
    let w = world();
    ok(swupd(&w, &["os-install", "-V", "10"]));
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    // -s/--status: as check-update, nothing changes.
    let out = swupd(&w, &["update", "-s"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(stdout(&out).contains("20"));
    assert!(os_version(&w.root).contains("VERSION_ID=10"));
    // --3rd-party with no repositories: the system's own status (tests/swupd_update.rs
    // has the repositories).
    let out = swupd(&w, &["update", "--3rd-party", "-s"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    // -k/--keepcache: the staged content stays.
    let out = ok(swupd(
        &w,
        &["update", "-k", "--update-search-file-index", "-t"],
    ));
    assert!(os_version(&w.root).contains("VERSION_ID=20"));
    assert!(std::fs::read_dir(w.state.join("staged")).unwrap().count() > 0);
    assert!(
        stdout(&out).contains("4 bundle manifests of version 20"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("Time spent:"), "{}", stdout(&out));
    let out = swupd(&w, &["update", "--status"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    // verify -V latest checks against the server's latest, not the installed version;
    // diagnose and repair refuse `latest`, as swupd does.
    w.derive(20, 30);
    w.change_hello(30);
    ok(w.publish(30, &[]));
    ok(swupd(&w, &["diagnose", "-V", "20"]));
    for cmd in ["diagnose", "repair"] {
        let out = swupd(&w, &[cmd, "--version=latest"]);
        assert_eq!(code(&out), 15, "{}", text(&out));
    }
    let out = swupd(&w, &["verify", "-V", "latest"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(stdout(&out).contains("/usr/bin/hello"), "{}", stdout(&out));
}

#[test]
fn update_incremental_steps_through_the_listed_versions() {
    let w = world();
    ok(swupd(&w, &["os-install", "-V", "10"]));
    for v in [20, 30] {
        w.derive(v - 10, v);
        w.change_hello(v);
        ok(w.publish(v, &[]));
    }
    let latest = w.web("version/format30/latest");
    std::fs::write(&latest, "30\n20\n10\n").unwrap();
    sign_file(&latest, &w.keys.root, &w.keys.root_key, &[]);
    let out = ok(swupd(&w, &["update", "--incremental"]));
    let t = stdout(&out);
    assert!(
        t.contains("from version 10 to version 20") && t.contains("from version 20 to version 30"),
        "{t}"
    );
    assert!(os_version(&w.root).contains("VERSION_ID=30"));
}

#[test]
fn nosigcheck_latest_skips_only_the_version_signature() {
    let w = world();
    std::fs::remove_file(w.web("version/format30/latest.sig")).unwrap();
    let out = swupd(&w, &["os-install"]);
    assert_eq!(code(&out), 21, "{}", text(&out));
    ok(swupd(&w, &["os-install", "--nosigcheck-latest"]));
    assert!(os_version(&w.root).contains("VERSION_ID=10"));
}

#[test]
fn global_swupd_flags_are_accepted_and_verbose_logs() {
    let w = world();
    ok(swupd(&w, &["os-install", "-V", "10"]));
    for args in [
        &["check-update", "-b", "-N", "--wait-for-scripts", "-y"][..],
        &["check-update", "--assume=no", "-t"],
        &["check-update", "--assume", "YES", "--debug"],
    ] {
        let out = swupd(&w, args);
        assert_eq!(code(&out), 1, "{args:?}: {}", text(&out));
    }
    assert_eq!(code(&swupd(&w, &["check-update", "--assume=maybe"])), 15);
    let quiet = swupd(&w, &["check-update"]);
    assert!(
        !stderr(&quiet).contains("content URL"),
        "{}",
        stderr(&quiet)
    );
    for flag in ["--verbose", "--debug"] {
        let out = swupd(&w, &["check-update", flag]);
        assert!(
            stderr(&out).contains(&format!("content URL {}", w.server.url())),
            "{flag}: {}",
            stderr(&out)
        );
    }
    // hashdump -n: without xattrs, as swupd.
    let file = w.root.join("usr/bin/hello");
    let out = ok(run(Command::new(w.swupd_bin())
        .args(["hashdump", "-n"])
        .arg(&file)));
    assert!(stdout(&out).contains("without xattrs"), "{}", stdout(&out));
}

#[test]
fn extra_files_only_looks_for_extras_and_nothing_else() {
    let w = world();
    ok(swupd(&w, &["os-install", "-V", "10"]));
    std::fs::write(w.root.join("usr/bin/hello"), "changed\n").unwrap();
    std::fs::write(w.root.join("usr/bin/stray"), "stray\n").unwrap();
    let out = swupd(&w, &["diagnose", "--extra-files-only"]);
    let t = stdout(&out);
    assert_ne!(code(&out), 0);
    assert!(t.contains("/usr/bin/stray"), "{t}");
    assert!(!t.contains("/usr/bin/hello"), "{t}");
    assert_eq!(
        code(&swupd(&w, &["diagnose", "--extra-files-only", "-Y"])),
        15
    );
    ok(swupd(&w, &["repair", "--extra-files-only"]));
    assert!(!w.root.join("usr/bin/stray").exists());
    assert_eq!(
        std::fs::read_to_string(w.root.join("usr/bin/hello")).unwrap(),
        "changed\n"
    );
}

#[test]
fn a_mirror_with_a_bad_latest_or_far_behind_is_passed_over_for_the_central_server() {
    let w = world();
    ok(swupd(&w, &["os-install", "-V", "10"]));
    let central = w.server.url();
    for f in ["contenturl", "versionurl"] {
        write(&w.root.join("usr/share/defaults/swupd").join(f), &central);
    }
    let mirror_web = w.dir.path().join("mirror-web");
    let mirror = server::Server::new(&mirror_web);
    for f in ["mirror_contenturl", "mirror_versionurl"] {
        write(&w.root.join("etc/swupd").join(f), &mirror.url());
    }
    let copy_to_mirror = || {
        let _ = std::fs::remove_dir_all(&mirror_web);
        ok(run(Command::new("cp")
            .arg("-a")
            .arg(&w.web)
            .arg(&mirror_web)));
    };
    let root = w.root.to_str().unwrap();
    let update = || run(&mut swupd_bare(&w, &["update", "-p", root]));

    // The mirror holds 10 with a bad signature on its `latest`: the central server's 20.
    copy_to_mirror();
    publish(&w, 20);
    std::fs::write(mirror_web.join("version/format30/latest.sig"), b"1234").unwrap();
    let out = ok(update());
    assert!(
        text(&out).contains("could not be determined"),
        "{}",
        text(&out)
    );
    assert!(os_version(&w.root).contains("VERSION_ID=20"));

    // A mirror at 20 when the central server has 600: too far behind, passed over.
    copy_to_mirror();
    publish(&w, 600);
    let out = ok(update());
    assert!(text(&out).contains("too far behind"), "{}", text(&out));
    assert!(os_version(&w.root).contains("VERSION_ID=600"));
    // Unlike swupd, the administrator's mirror configuration is left as it was.
    assert!(w.root.join("etc/swupd/mirror_contenturl").exists());

    // A mirror that is current is used, and the central server is asked only its version.
    copy_to_mirror();
    publish(&w, 610);
    ok(run(Command::new("cp")
        .arg("-a")
        .arg(w.web("610"))
        .arg(mirror_web.join("610"))));
    for f in ["latest", "latest.sig"] {
        let rel = format!("version/format30/{f}");
        std::fs::copy(w.web(&rel), mirror_web.join(&rel)).unwrap();
    }
    w.server.clear_log();
    let out = ok(update());
    assert!(!text(&out).contains("behind"), "{}", text(&out));
    assert!(os_version(&w.root).contains("VERSION_ID=610"));
    let asked: Vec<_> = w.server.log().into_iter().map(|r| r.path).collect();
    assert!(
        asked.iter().all(|p| p.starts_with("/version/")),
        "{asked:?}"
    );

    // A central server that fails is asked once, not through the retries (a site may run
    // a mirror because the central server is out of reach): the mirror is used.
    w.server.clear_log();
    w.server.status("/version/format30/latest", 503);
    let out = ok(update());
    assert!(text(&out).contains("unable to determine"), "{}", text(&out));
    assert_eq!(w.server.hits("/version/format30/latest"), 1);
}

#[test]
fn with_the_server_gone_the_exit_code_names_what_the_cache_lacked() {
    let mut w = world();
    ok(swupd(
        &w,
        &["os-install", "-V", "10", "-B", "editors", "--download"],
    ));
    let full = w.dir.path().join("full-cache");
    ok(run(Command::new("cp").arg("-a").arg(&w.state).arg(&full)));
    w.server.stop();
    // A fresh copy of the cache less what `remove` names (a `find` pattern), then an
    // install from it into a fresh root with nothing listening at the URL.
    let install_lacking = |case: &str, remove: Option<&str>| {
        let cache = w.dir.path().join(format!("cache-{case}"));
        ok(run(Command::new("cp").arg("-a").arg(&full).arg(&cache)));
        if let Some(pattern) = remove {
            let found = ok(run(Command::new("find")
                .arg(&cache)
                .args(["-name", pattern, "-print", "-prune"])));
            let found = stdout(&found);
            assert!(!found.is_empty(), "nothing in the cache matches {pattern}");
            for path in found.lines() {
                ok(run(Command::new("rm").arg("-rf").arg(path)));
            }
        }
        let root = w.dir.path().join(format!("root-{case}"));
        let out = run(Command::new(w.swupd_bin())
            .args(["os-install", "-V", "10", "-B", "editors", "-s"])
            .arg(&cache)
            .arg("--statedir")
            .arg(w.dir.path().join(format!("state-{case}")))
            .arg("--certpath")
            .arg(&w.keys.root)
            .args(["--allow-insecure-http", "--no-progress", "-r", "0"])
            .arg("-u")
            .arg(w.server.url())
            .arg(&root));
        (code(&out), text(&out), root)
    };
    let (status, out, root) = install_lacking("whole", None);
    assert_eq!(status, 0, "{out}");
    assert!(root.join("usr/bin/vim").exists());
    // As swupd: the MoM (4), a bundle manifest (14), a file (17); nothing installed.
    for (case, pattern, want) in [
        ("mom", "Manifest.MoM.sig", 4),
        ("manifest", "Manifest.editors*", 14),
        ("files", "staged", 17),
    ] {
        let (status, out, root) = install_lacking(case, Some(pattern));
        assert_eq!(status, want, "{case}: {out}");
        assert!(!root.join("usr/lib/os-release").exists(), "{case}: {out}");
    }
}
