//! swupd's other commands through the real binary, against content made by
//! chainup-publish on a loopback server: bundle-info, search-file, clean, mirror,
//! autoupdate and 3rd-party.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use fixture::{bin, ok, run, text, World};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path under `dir` with its size, sorted.
fn listing(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut all: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            (e.path().to_path_buf(), e.metadata().unwrap().len())
        })
        .collect();
    all.sort();
    all
}

/// How many files are under `dir` (0 when it does not exist).
fn files_under(dir: &Path) -> usize {
    match dir.exists() {
        true => listing(dir).iter().filter(|(p, _)| p.is_file()).count(),
        false => 0,
    }
}

#[test]
fn bundle_info_reports_status_versions_dependencies_and_files() {
    let w = World::new();
    w.install_sample();
    let state_before = listing(&w.state);

    let out = ok(w.chainup(&["bundle-info", "devtools", "--dependencies", "--files"]));
    let s = stdout(&out);
    assert!(s.contains("Info for bundle: devtools"), "{s}");
    assert!(s.contains("Status: Not installed"), "{s}");
    assert!(s.contains("Latest available version: 10"), "{s}");
    assert!(s.contains("Direct dependencies (1):\n - editors"), "{s}");
    assert!(s.contains("Indirect dependencies (1):\n - os-core"), "{s}");
    // With --dependencies, the files of everything it pulls in.
    for f in ["/usr/bin/gcc", "/usr/bin/vim", "/usr/bin/hello"] {
        assert!(s.contains(&format!(" - {f}\n")), "{f} missing:\n{s}");
    }
    let own = stdout(&ok(w.chainup(&["bundle-info", "devtools", "--files"])));
    assert!(
        own.contains(" - /usr/bin/gcc\n") && !own.contains("/usr/bin/vim"),
        "{own}"
    );
    assert!(own.contains("will take if installed"), "{own}");

    // An installed bundle, then a newer release that changes it.
    let s = stdout(&ok(w.chainup(&["bundle-info", "os-core"])));
    assert!(s.contains("Status: Installed"), "{s}");
    assert!(s.contains("Bundle os-core is up to date:"), "{s}");
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    let s = stdout(&ok(w.chainup(&["bundle-info", "os-core"])));
    assert!(s.contains("There is an update for bundle os-core:"), "{s}");
    assert!(
        s.contains(" - Installed bundle last updated in version: 10"),
        "{s}"
    );
    assert!(s.contains(" - Latest available version: 20"), "{s}");
    let s = stdout(&ok(w.chainup(&["bundle-info", "os-core", "-V", "latest"])));
    assert!(
        s.contains("Installed bundle last updated in version: 20"),
        "{s}"
    );

    // swupd's exit codes: an unknown bundle is 3, a bad version argument 15.
    assert_eq!(w.chainup(&["bundle-info", "nosuch"]).status.code(), Some(3));
    assert_eq!(
        w.chainup(&["bundle-info", "os-core", "-V", "x"])
            .status
            .code(),
        Some(15)
    );
    // JSON: one record with the same facts.
    let out = ok(w.chainup(&["bundle-info", "editors", "--dependencies", "-j"]));
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let info = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "bundle-info")
        .unwrap();
    assert_eq!(info["bundle"], "editors");
    assert_eq!(info["installed"], false);
    assert_eq!(info["version"], 10);
    assert_eq!(info["direct"][0]["name"], "os-core");
    assert_eq!(info["direct"][0]["installed"], true);

    // A reading command: nothing in the state directory is made or changed for it.
    assert_eq!(listing(&w.state), state_before);
}

#[test]
fn search_file_finds_a_file_in_a_bundle_that_is_not_installed() {
    let w = World::new();
    w.install_sample();

    let out = ok(w.chainup(&["search-file", "gcc"]));
    let s = stdout(&out);
    assert!(
        s.contains("Bundle devtools (0 MB to install)\n\t/usr/bin/gcc"),
        "{s}"
    );
    assert!(!s.contains("[installed]"), "{s}");
    let s = stdout(&ok(w.chainup(&["search-file", "HELLO"])));
    assert!(
        s.contains("Bundle os-core [installed] (0 MB on system)\n\t/usr/bin/hello"),
        "{s}"
    );

    // Filters, CSV, regular expressions.
    let csv = stdout(&ok(w.chainup(&["search-file", "--csv", "-B", "vim"])));
    assert_eq!(csv.trim(), "/usr/bin/vim,editors");
    assert_eq!(
        w.chainup(&["search-file", "-l", "vim"]).status.code(),
        Some(1)
    );
    let re = stdout(&ok(w.chainup(&[
        "search-file",
        "--regexp",
        "-m",
        "^/usr/bin/(gcc|vim)$",
    ])));
    assert_eq!(re.trim(), "/usr/bin/gcc,devtools\n/usr/bin/vim,editors");
    let out = ok(w.chainup(&["search-file", "-j", "usr/bin/"]));
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hits: Vec<(String, bool, usize)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "search-result")
        .map(|e| {
            let paths = e["paths"].as_array().unwrap().len();
            (
                e["bundle"].as_str().unwrap().to_string(),
                e["installed"] == true,
                paths,
            )
        })
        .collect();
    assert_eq!(
        hits,
        [
            ("devtools".to_string(), false, 1),
            ("editors".to_string(), false, 1),
            ("os-core".to_string(), true, 2)
        ]
    );
    let top = stdout(&ok(w.chainup(&["search-file", "-T", "1", "usr/bin/"])));
    assert!(
        top.contains("\t/usr/bin/hello\n") && !top.contains("/usr/bin/hi\n"),
        "{top}"
    );
    let out = w.chainup(&["search-file", "no-such-file-anywhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("Search term not found"));

    // The manifests are cached in the state directory: a server that lost them does
    // not matter to the next search.
    let cached = w.manifest_cache().join("10/Manifest.devtools");
    assert!(cached.is_file());
    std::fs::rename(
        w.web("10/Manifest.devtools.tar"),
        w.web("10/Manifest.devtools.tar.away"),
    )
    .unwrap();
    w.server.clear_log();
    let s = stdout(&ok(w.chainup(&["search-file", "gcc"])));
    assert!(s.contains("\t/usr/bin/gcc"), "{s}");
    assert_eq!(w.server.hits_matching("/10/Manifest.devtools"), 0);

    // The cache is not trusted: a tampered entry is dropped and fetched again, and
    // when the server cannot give it either, the search says it is partial (exit 8).
    std::fs::write(&cached, b"not a manifest").unwrap();
    let out = w.chainup(&["search-file", "gcc"]);
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    assert!(!stdout(&out).contains("/usr/bin/gcc"));
    assert!(text(&out).contains("results are partial"), "{}", text(&out));
    std::fs::rename(
        w.web("10/Manifest.devtools.tar.away"),
        w.web("10/Manifest.devtools.tar"),
    )
    .unwrap();
    ok(w.chainup(&["search-file", "gcc"]));
    assert_ne!(std::fs::read(&cached).unwrap(), b"not a manifest");

    // --init fetches everything and searches nothing.
    std::fs::remove_dir_all(w.manifest_cache()).unwrap();
    ok(w.chainup(&["search-file", "--init"]));
    assert!(w.manifest_cache().join("10/Manifest.editors").is_file());
}

#[test]
fn clean_removes_caches_and_keeps_what_an_interrupted_update_needs() {
    let w = World::new();
    w.install_sample();
    ok(w.chainup(&["search-file", "--init"]));
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &["--delta-packs", "0"]));
    ok(w.chainup(&["update", "--download"]));
    let staged = w.state.join("staged");
    let staged_files = std::fs::read_dir(&staged).unwrap().count();
    assert!(staged_files > 0);
    // The downloaded release's MoM and changed manifest are cached too; without --all,
    // clean keeps only the installed release's.
    let newer = files_under(&w.manifest_cache().join("20"));
    assert!(newer > 0);
    let kept = files_under(&w.manifest_cache().join("10"));

    let out = ok(w.chainup(&["clean", "--dry-run"]));
    let s = stdout(&out);
    assert!(
        s.contains(&format!("Would remove {} files", staged_files + newer)),
        "{s}"
    );
    assert!(s.contains(staged.to_str().unwrap()), "{s}");
    assert!(staged.is_dir(), "a dry run removes nothing");

    let s = stdout(&ok(w.chainup(&["clean"])));
    assert!(
        s.contains(&format!("{} files removed", staged_files + newer)),
        "{s}"
    );
    assert!(!staged.exists());
    // The installed release's manifests stay for the next search; --all takes them.
    assert!(w.manifest_cache().join("10/Manifest.os-core").is_file());
    assert!(w.state.join("version-high-water-mark").exists());
    let s = stdout(&ok(w.chainup(&["clean", "--all"])));
    assert!(s.contains(&format!("{kept} files removed")), "{s}");
    assert!(!w.manifest_cache().exists());

    // An update killed after it wrote its journal: its staging area is kept.
    let out = w
        .chainup_cmd(&["update"])
        .env("FAILPOINTS", "txn::placed=return")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{}", text(&out));
    assert!(w.state.join("journal.json").exists());
    let s = stdout(&ok(w.chainup(&["clean", "--all"])));
    assert!(
        s.contains("an unfinished update to version 20 needs it"),
        "{s}"
    );
    assert!(staged.is_dir());
    ok(w.chainup(&["update"]));
    ok(w.chainup(&["diagnose"]));
    assert!(std::fs::read_to_string(w.root.join("usr/lib/os-release"))
        .unwrap()
        .contains("VERSION_ID=20"));

    // Another client at work: clean waits for nothing and removes nothing (exit 9).
    let lock = std::fs::File::open(w.state.join("lock")).unwrap();
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map(|held| {
            assert_eq!(w.chainup(&["clean"]).status.code(), Some(9));
            drop(held);
        })
        .unwrap();
}

/// `chainup` on `root` with only the options the test gives.
fn bare(root: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new(bin("chainup"))
        .args(args)
        .arg("--path")
        .arg(root)
        .arg("--no-progress"))
}

#[test]
fn mirror_writes_swupds_files_and_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = stdout(&ok(bare(root, &["mirror"])));
    assert!(s.contains("Mirror content URL: (not set)"), "{s}");

    let s = stdout(&ok(bare(
        root,
        &["mirror", "--set", "https://mirror.example/os"],
    )));
    assert!(s.contains("Mirror url set"), "{s}");
    for f in ["mirror_contenturl", "mirror_versionurl"] {
        assert_eq!(
            std::fs::read_to_string(root.join("etc/swupd").join(f)).unwrap(),
            "https://mirror.example/os"
        );
    }
    let s = stdout(&ok(bare(root, &["mirror"])));
    assert!(
        s.contains("Mirror version URL: https://mirror.example/os"),
        "{s}"
    );

    // Separate URLs from -c and -v; plain http only when allowed (swupd's exit 15).
    ok(bare(
        root,
        &[
            "mirror",
            "-s",
            "-c",
            "https://c.example",
            "-v",
            "https://v.example",
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/swupd/mirror_contenturl")).unwrap(),
        "https://c.example"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/swupd/mirror_versionurl")).unwrap(),
        "https://v.example"
    );
    assert_eq!(
        bare(root, &["mirror", "-s", "http://plain.example"])
            .status
            .code(),
        Some(15)
    );
    let out = ok(bare(
        root,
        &[
            "mirror",
            "-s",
            "http://plain.example",
            "--allow-insecure-http",
        ],
    ));
    assert!(text(&out).contains("plain HTTP"));
    assert_eq!(
        bare(root, &["mirror", "-u", "https://x"]).status.code(),
        Some(15)
    );

    let s = stdout(&ok(bare(root, &["mirror", "--unset"])));
    assert!(s.contains("Mirror url unset"), "{s}");
    assert!(!root.join("etc/swupd/mirror_contenturl").exists());
    assert!(!root.join("etc/swupd/mirror_versionurl").exists());

    // /etc/swupd a file, or a symlink leading out of the root: refused, nothing written.
    std::fs::remove_dir(root.join("etc/swupd")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("etc/swupd")).unwrap();
    let out = bare(root, &["mirror", "-s", "https://m.example"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).contains("not a directory"), "{}", text(&out));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn mirror_set_is_used_by_the_next_update() {
    let w = World::new();
    w.install_sample();
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    // A second server over the same webroot, set as the mirror.
    let mirror = server::Server::new(&w.web);
    ok(bare(
        &w.root,
        &["mirror", "-s", &mirror.url(), "--allow-insecure-http"],
    ));
    w.server.clear_log();
    ok(w.chainup(&["update"]));
    assert!(mirror.hits_matching("/20/") > 0, "the mirror was not used");
}

#[test]
fn autoupdate_masks_and_enables_the_timer_in_a_root() {
    if Command::new("systemctl").arg("--version").output().is_err() {
        eprintln!("skipped: systemctl is not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let units = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/systemd");
    for u in ["chainup-update.service", "chainup-update.timer"] {
        std::fs::copy(shipped.join(u), units.join(u)).unwrap();
    }
    let status = |expect: i32, says: &str| {
        let out = bare(root, &["autoupdate"]);
        assert_eq!(out.status.code(), Some(expect), "{}", text(&out));
        assert_eq!(stdout(&out).trim(), says);
    };
    status(1, "Disabled");
    ok(bare(root, &["autoupdate", "--enable"]));
    assert!(root
        .join("etc/systemd/system/timers.target.wants/chainup-update.timer")
        .symlink_metadata()
        .is_ok());
    status(0, "Enabled");
    let out = ok(bare(root, &["autoupdate", "--disable"]));
    assert!(text(&out).contains("out of compliance"));
    for u in ["chainup-update.service", "chainup-update.timer"] {
        assert_eq!(
            std::fs::read_link(root.join("etc/systemd/system").join(u)).unwrap(),
            Path::new("/dev/null")
        );
    }
    status(1, "Disabled");
    let out = bare(root, &["autoupdate", "--status"]);
    assert_eq!(out.status.code(), Some(1));
    ok(bare(root, &["autoupdate", "--enable"]));
    assert!(!root
        .join("etc/systemd/system/chainup-update.timer")
        .exists());
    status(0, "Enabled");
    assert_eq!(
        bare(root, &["autoupdate", "--enable", "--disable"])
            .status
            .code(),
        Some(15)
    );
    // Without the units systemctl cannot tell: swupd's subprocess error, 28.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(bare(empty.path(), &["autoupdate"]).status.code(), Some(28));
}

/// `chainup 3rd-party ...` for the main world's root and state directory, without the
/// world's URL or trust store (a repository has its own).
fn third_party(w: &World, args: &[&str]) -> std::process::Output {
    run(Command::new(bin("chainup"))
        .arg("3rd-party")
        .args(args)
        .arg("--path")
        .arg(&w.root)
        .arg("--statedir")
        .arg(&w.state)
        .arg("--allow-insecure-http")
        .args(["--max-retries", "1", "--retry-delay", "0", "--no-progress"]))
}

#[test]
fn third_party_repositories_install_through_the_verified_chain() {
    let w = World::new();
    w.install_sample();
    let main_before = fixture::snapshot(&w.root, &["/opt"]);
    // The repository: another publisher with its own key and server.
    let repo = World::new();
    repo.sample(5);
    repo.file(5, "devtools", "/usr/bin/tool", b"tool\n", 0o755);
    ok(repo.publish(5, &[]));
    let url = repo.server.url();
    let cert = repo.keys.root.to_str().unwrap();
    let repo_root = w.root.join("opt/3rd-party/bundles/tools");

    // No certificate: refused, since chainup does not take one from the repository.
    assert_eq!(
        third_party(&w, &["add", "tools", &url]).status.code(),
        Some(15)
    );
    // The wrong certificate: the repository's MoM does not verify; nothing is left.
    let wrong = w.keys.root.to_str().unwrap();
    let out = third_party(&w, &["add", "tools", &url, "-C", wrong]);
    assert_eq!(out.status.code(), Some(21), "{}", text(&out));
    assert!(!repo_root.exists());
    assert!(!w.root.join("opt/3rd-party/repo.ini").exists());

    ok(third_party(&w, &["add", "tools", &url, "-C", cert]));
    assert_eq!(
        std::fs::read_to_string(w.root.join("opt/3rd-party/repo.ini")).unwrap(),
        format!("[tools]\nurl={url}\n")
    );
    assert!(repo_root.join("usr/share/clear/bundles/os-core").is_file());
    assert!(
        std::fs::read_to_string(repo_root.join("usr/lib/os-release"))
            .unwrap()
            .contains("VERSION_ID=5")
    );
    assert_eq!(
        third_party(&w, &["add", "tools", &url, "-C", cert])
            .status
            .code(),
        Some(15)
    );
    let s = stdout(&ok(third_party(&w, &["list"])));
    assert_eq!(s.trim(), format!("tools: {url}"));

    // Later commands check the repository against its pinned certificate.
    ok(third_party(&w, &["bundle-add", "-R", "tools", "editors"]));
    assert!(repo_root.join("usr/bin/vim").is_file());
    ok(third_party(&w, &["bundle-add", "devtools"]));
    assert_eq!(
        std::fs::read(repo_root.join("usr/bin/tool")).unwrap(),
        b"tool\n"
    );
    assert_eq!(
        third_party(&w, &["bundle-add", "nosuch"]).status.code(),
        Some(3)
    );
    let s = stdout(&ok(third_party(&w, &["bundle-list"])));
    assert_eq!(
        s,
        "Repository tools:\n - devtools\n - editors\n - os-core\n"
    );
    ok(third_party(&w, &["bundle-remove", "devtools"]));
    assert!(!repo_root.join("usr/bin/tool").exists());
    assert!(repo_root.join("usr/bin/vim").is_file());
    assert_eq!(
        third_party(&w, &["bundle-remove", "devtools"])
            .status
            .code(),
        Some(13)
    );
    assert_eq!(third_party(&w, &["check-update"]).status.code(), Some(1));

    // A release signed by someone else is refused (a MoM that cannot be loaded: 4, as
    // swupd); a real one is installed.
    repo.derive(5, 6);
    repo.change_hello(6);
    ok(repo.publish(6, &[]));
    repo.sign_mom(6, &w.keys.root, &w.keys.root_key, &[]);
    assert_eq!(third_party(&w, &["update"]).status.code(), Some(4));
    repo.sign_mom(6, &repo.keys.root, &repo.keys.root_key, &[]);
    assert_eq!(
        third_party(&w, &["check-update", "-R", "tools"])
            .status
            .code(),
        Some(0)
    );
    // `clean` covers the repositories' state directories too.
    ok(third_party(&w, &["update", "--download"]));
    let repo_staged = w.state.join("3rd-party/tools/staged");
    assert!(std::fs::read_dir(&repo_staged).unwrap().count() > 0);
    ok(w.chainup(&["clean"]));
    assert!(!repo_staged.exists());
    ok(third_party(&w, &["update", "-R", "tools"]));
    assert!(
        std::fs::read_to_string(repo_root.join("usr/lib/os-release"))
            .unwrap()
            .contains("VERSION_ID=6")
    );
    assert_eq!(
        std::fs::read(repo_root.join("usr/bin/hello")).unwrap(),
        b"#!/bin/sh\necho 6\n"
    );
    ok(run(Command::new(bin("chainup"))
        .args(["diagnose", "--path"])
        .arg(&repo_root)
        .arg("--statedir")
        .arg(w.state.join("3rd-party/tools"))
        .args([
            "--url",
            &url,
            "--allow-insecure-http",
            "-C",
            cert,
        ])));

    // Setuid, setgid and sticky modes are refused in 3rd-party content, before
    // anything is installed (swupd's "dangerous permissions", exit 38).
    repo.derive(6, 7);
    repo.file(7, "editors", "/usr/bin/vim", b"vim 7\n", 0o4755);
    ok(repo.publish(7, &[]));
    let out = third_party(&w, &["update"]);
    assert_eq!(out.status.code(), Some(38), "{}", text(&out));
    assert!(
        text(&out).contains("/usr/bin/vim has mode 4755"),
        "{}",
        text(&out)
    );
    assert!(
        std::fs::read_to_string(repo_root.join("usr/lib/os-release"))
            .unwrap()
            .contains("VERSION_ID=6")
    );
    assert_eq!(
        std::fs::read(repo_root.join("usr/bin/vim")).unwrap(),
        b"vim\n"
    );

    // The main root was never touched.
    assert_eq!(fixture::snapshot(&w.root, &["/opt"]), main_before);

    ok(third_party(&w, &["remove", "tools"]));
    assert!(!repo_root.exists());
    assert!(!w.state.join("3rd-party/tools").exists());
    assert_eq!(
        std::fs::read_to_string(w.root.join("opt/3rd-party/repo.ini")).unwrap(),
        ""
    );
    assert_eq!(
        third_party(&w, &["remove", "tools"]).status.code(),
        Some(37)
    );
}
