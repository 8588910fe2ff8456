//! Packaging through the real scripts and binaries: `tools/install.sh DESTDIR` lays out
//! the binaries, one man page per subcommand, the completions and the units;
//! `tools/verify-units.sh` runs `systemd-analyze verify` on what it installed; the pages
//! render with `man -l`; `mark-good` without slots is a no-op; `--version` works.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn chainup() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chainup"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}\n{}",
        out.status.code(),
        text(&out)
    );
    out
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `tools/install.sh DEST` with the binaries this test run built.
fn install(dest: &Path) -> Output {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_chainup"));
    ok(Command::new("bash")
        .arg(Path::new(REPO).join("tools/install.sh"))
        .arg(dest)
        .env("BINARIES", built.parent().unwrap())
        .output()
        .unwrap())
}

/// The visible subcommands, as `chainup --help` lists them.
fn subcommands() -> Vec<String> {
    let out = ok(chainup().arg("--help").output().unwrap());
    let help = String::from_utf8(out.stdout).unwrap();
    let list = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands: section")
        .split("\n\n")
        .next()
        .unwrap();
    // A command's line starts with two spaces; its wrapped description is indented more.
    list.lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

#[test]
fn install_sh_lays_out_binaries_pages_completions_and_units() {
    let dest = tempfile::TempDir::new().unwrap();
    let d = dest.path();
    install(d);

    for bin in ["usr/bin/chainup", "usr/bin/chainup-publish"] {
        let out = ok(Command::new(d.join(bin)).arg("--help").output().unwrap());
        assert!(!out.stdout.is_empty(), "{bin} --help printed nothing");
    }
    let man = d.join("usr/share/man/man1");
    let subs = subcommands();
    assert!(subs.len() >= 10, "{subs:?}");
    let mut pages = vec!["chainup.1".to_string()];
    pages.extend(subs.iter().map(|s| format!("chainup-{s}.1")));
    for page in &pages {
        let roff =
            std::fs::read_to_string(man.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        for section in [
            "NAME",
            "SYNOPSIS",
            "OPTIONS",
            "EXIT STATUS",
            "FILES",
            "CONFIGURATION",
            "EXAMPLES",
        ] {
            assert!(
                roff.contains(&format!(".SH {section}\n"))
                    || roff.contains(&format!(".SH \"{section}\"\n")),
                "{page} has no {section} section"
            );
        }
    }
    let mut installed: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    installed.sort();
    pages.extend([
        "chainup-publish.1".into(),
        "chainup-publish-promote.1".into(),
    ]);
    pages.sort();
    assert_eq!(installed, pages, "one page per subcommand, and no other");
    let publish = std::fs::read_to_string(man.join("chainup-publish.1")).unwrap();
    assert!(
        publish.contains("webroot"),
        "chainup-publish.1 lacks its options"
    );
    if have("man") {
        for page in &pages {
            let out = ok(Command::new("man")
                .arg("-l")
                .arg(man.join(page))
                .env("PAGER", "cat")
                .output()
                .unwrap());
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("NAME"),
                "{page}"
            );
        }
    }

    let completions = [
        (
            "usr/share/bash-completion/completions/chainup",
            "complete -F",
        ),
        (
            "usr/share/zsh/vendor-completions/_chainup",
            "#compdef chainup",
        ),
        (
            "usr/share/fish/vendor_completions.d/chainup.fish",
            "complete -c chainup",
        ),
    ];
    for (path, marker) in completions {
        let text = std::fs::read_to_string(d.join(path)).unwrap();
        assert!(text.contains(marker), "{path} lacks {marker:?}");
        assert!(
            text.contains("bundle-add"),
            "{path} does not complete subcommands"
        );
    }
    for unit in [
        "chainup-update.service",
        "chainup-update.timer",
        "chainup-mark-good.service",
    ] {
        let installed = std::fs::read(d.join("usr/lib/systemd/system").join(unit)).unwrap();
        let source = std::fs::read(Path::new(REPO).join("tools/systemd").join(unit)).unwrap();
        assert_eq!(installed, source, "{unit}");
    }
}

#[test]
fn the_installed_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!("SKIP the_installed_units_pass_systemd_analyze_verify: systemd-analyze is missing (apt-get install systemd)");
        return;
    }
    let dest = tempfile::TempDir::new().unwrap();
    install(dest.path());
    let out = ok(Command::new("bash")
        .arg(Path::new(REPO).join("tools/verify-units.sh"))
        .arg(dest.path())
        .output()
        .unwrap());
    assert!(
        text(&out).contains("systemd-analyze verify: ok"),
        "{}",
        text(&out)
    );

    // The check can fail: a misspelt key is only a warning to systemd-analyze, and the
    // script turns it into a failure.
    let unit = dest
        .path()
        .join("usr/lib/systemd/system/chainup-update.service");
    let good = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, good.replace("IOWeight=", "IOWieght=")).unwrap();
    let out = Command::new("bash")
        .arg(Path::new(REPO).join("tools/verify-units.sh"))
        .arg(dest.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("IOWieght"), "{}", text(&out));
}

#[test]
fn the_units_run_the_updater_in_the_background_on_a_calendar() {
    let unit = |name: &str| {
        std::fs::read_to_string(Path::new(REPO).join("tools/systemd").join(name)).unwrap()
    };
    let keys = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    let service = keys(&unit("chainup-update.service"));
    for want in [
        "Nice=19",
        "CPUWeight=20",
        "IOWeight=10",
        "IOSchedulingClass=best-effort",
        "IOSchedulingPriority=7",
    ] {
        assert!(
            service.iter().any(|l| l == want),
            "chainup-update.service lacks {want}"
        );
    }
    let timer = keys(&unit("chainup-update.timer"));
    assert!(
        timer.iter().any(|l| l.starts_with("OnCalendar=")),
        "no OnCalendar="
    );
    assert!(
        timer.iter().any(|l| l == "Persistent=true"),
        "no Persistent=true"
    );
    let mark = keys(&unit("chainup-mark-good.service"));
    assert!(
        mark.iter()
            .any(|l| l == "ExecCondition=/usr/bin/chainup mark-good --has-slots --no-progress"),
        "chainup-mark-good.service does not condition on slots"
    );
    if have("systemd-analyze") {
        let calendar = timer
            .iter()
            .find_map(|l| l.strip_prefix("OnCalendar="))
            .unwrap();
        ok(Command::new("systemd-analyze")
            .args(["calendar", calendar])
            .output()
            .unwrap());
    }
}

#[test]
fn man_renders_every_page_with_exit_codes_files_configuration_and_examples() {
    if !have("man") {
        eprintln!("SKIP man_renders_every_page_with_exit_codes_files_configuration_and_examples: man is missing (apt-get install man-db)");
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    ok(chainup().arg("man").arg(dir.path()).output().unwrap());
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    // The README's exit-code table: the man pages list the same codes.
    let codes: Vec<String> = readme
        .split("### Exit codes")
        .nth(1)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(' ').next())
        .filter(|c| c.chars().all(|ch| ch.is_ascii_digit()))
        .map(String::from)
        .collect();
    assert!(codes.len() > 10, "{codes:?}");
    for sub in std::iter::once("chainup".to_string())
        .chain(subcommands().iter().map(|s| format!("chainup-{s}")))
    {
        let page = dir.path().join(format!("{sub}.1"));
        let out = ok(Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "100")
            .env("PAGER", "cat")
            .output()
            .unwrap());
        let shown = String::from_utf8_lossy(&out.stdout);
        for section in ["EXIT STATUS", "FILES", "CONFIGURATION", "EXAMPLES"] {
            assert!(shown.contains(section), "{sub}: no {section}:\n{shown}");
        }
        let exit_status = shown
            .split("EXIT STATUS")
            .nth(1)
            .unwrap()
            .split("FILES")
            .next()
            .unwrap();
        for code in &codes {
            if code == "1" && sub != "chainup" {
                continue; // each command says what its own 1 means, or has none
            }
            assert!(
                exit_status
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))
                        || l.trim() == code.as_str()),
                "{sub}: exit code {code} missing:\n{exit_status}"
            );
        }
        assert!(
            shown.contains("/etc/chainup/config.toml"),
            "{sub}: no config path"
        );
        assert!(
            shown.contains(&format!("chainup {}", sub.trim_start_matches("chainup-")))
                || sub == "chainup",
            "{sub}: no example of itself"
        );
    }
    let check = std::fs::read_to_string(dir.path().join("chainup-check-update.1")).unwrap();
    assert!(
        check.contains("no newer version is available"),
        "check-update's exit 1"
    );
}

#[test]
fn version_prints_the_version() {
    for flag in ["--version", "-V"] {
        let out = ok(chainup().arg(flag).output().unwrap());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("chainup {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
    // -V after a subcommand is still that subcommand's target version.
    let out = chainup()
        .args(["update", "-V", "notanumber"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(15), "{}", text(&out));
    assert!(
        text(&out).contains("invalid value 'notanumber'"),
        "{}",
        text(&out)
    );
}

#[test]
fn mark_good_without_slots_is_a_clean_no_op() {
    let root = tempfile::TempDir::new().unwrap();
    let config = root.path().join("etc/chainup/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "url = \"https://updates.example.com\"\n").unwrap();
    let before = snapshot(root.path());

    let out = ok(chainup()
        .args(["mark-good", "--no-progress", "--path"])
        .arg(root.path())
        .output()
        .unwrap());
    assert!(text(&out).contains("Nothing to mark"), "{}", text(&out));
    assert_eq!(
        snapshot(root.path()),
        before,
        "mark-good without slots changed the root"
    );

    // The unit's condition: no slots, exit 1 (skip); slots, exit 0 (run).
    let out = chainup()
        .args(["mark-good", "--has-slots", "--path"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::fs::write(&config, "[slots]\nproduct = \"clipos\"\n").unwrap();
    let out = chainup()
        .args(["mark-good", "--has-slots", "--path"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // And a broken config is still an error, not "nothing to mark"; for the condition,
    // 255, which fails the unit instead of skipping it.
    std::fs::write(&config, "[slots\n").unwrap();
    for (args, code) in [
        (&["mark-good"][..], 15),
        (&["mark-good", "--has-slots"][..], 255),
    ] {
        let out = chainup()
            .args(args)
            .arg("--path")
            .arg(root.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("config.toml"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// Every path under `dir` with its content (files) or nothing (others).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut all: Vec<_> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let content = e
                .file_type()
                .is_file()
                .then(|| std::fs::read(e.path()).unwrap());
            (e.path().to_path_buf(), content)
        })
        .collect();
    all.sort();
    all
}
