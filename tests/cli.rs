//! The command line itself: generated man page and completions, usage errors, config.

use std::process::Command;

fn chainup(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chainup"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn man_page_and_completions_come_from_the_cli_definition() {
    let man = chainup(&["man"]);
    assert!(man.status.success());
    let man = String::from_utf8(man.stdout).unwrap();
    for word in ["chainup", "update", "nosigcheck", "certpath"] {
        assert!(man.contains(word), "man page lacks {word}");
    }
    let bash = chainup(&["completions", "bash"]);
    assert!(bash.status.success());
    assert!(String::from_utf8_lossy(&bash.stdout).contains("bundle-add"));
}

#[test]
fn usage_errors_exit_15_and_help_exits_0() {
    assert_eq!(
        chainup(&["update", "--no-such-flag"]).status.code(),
        Some(15)
    );
    assert_eq!(chainup(&["frobnicate"]).status.code(), Some(15));
    assert_eq!(chainup(&["--help"]).status.code(), Some(0));
    let out = chainup(&["update", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--download"));
}

#[test]
fn missing_url_and_bad_config_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let out = chainup(&["update", "-p", root]);
    assert_eq!(out.status.code(), Some(15));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no content URL"));

    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "no-such-key = 1\n").unwrap();
    let out = chainup(&["update", "-p", root, "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(15));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("no-such-key"),
        "{err}"
    );
}

#[test]
fn config_file_supplies_options_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/chainup")).unwrap();
    std::fs::write(
        root.join("etc/chainup/config.toml"),
        "url = \"file:///nonexistent/from-config\"\nnosigcheck = true\n",
    )
    .unwrap();
    let root = root.to_str().unwrap();
    let out = chainup(&["info", "-p", root]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("file:///nonexistent/from-config"), "{text}");
    let out = chainup(&["info", "-p", root, "-u", "file:///from-flag"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("file:///from-flag"));
    // nosigcheck from the config still warns loudly on a command that fetches.
    let out = chainup(&["check-update", "-p", root]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosigcheck"));
}

#[test]
fn info_works_without_a_server_or_trust_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let out = chainup(&["info", "-p", root]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Installed version: none"), "{text}");
    assert!(text.contains("Content URL: (not configured)"), "{text}");
    // Reading state creates none.
    assert!(!dir.path().join("var").exists());
}

#[test]
fn max_parallel_downloads_is_capped_at_128_and_at_least_1() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let url = "file:///nonexistent/chainup-test";
    for w in ["100000", "129", "0"] {
        let out = chainup(&["check-update", "-p", root, "-u", url, "-W", w]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(15), "-W {w}: {err}");
        assert!(
            err.contains(&format!("--max-parallel-downloads {w}")) && err.contains("at most 128"),
            "-W {w}: {err}"
        );
    }
    // The limit itself is accepted: the run gets as far as the (missing) server.
    let out = chainup(&["check-update", "-p", root, "-u", url, "-W", "128"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(15), "{err}");
    assert!(!err.contains("max-parallel-downloads"), "{err}");

    // The config key is held to the same range, and the message names the file.
    let cfg = dir.path().join("many.toml");
    std::fs::write(&cfg, "max-parallel-downloads = 1000\n").unwrap();
    let out = chainup(&[
        "check-update",
        "-p",
        root,
        "-u",
        url,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(15), "{err}");
    assert!(
        err.contains("many.toml") && err.contains("1000") && err.contains("at most 128"),
        "{err}"
    );
}
