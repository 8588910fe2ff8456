//! The suite's skip logic, run for real: other test binaries of this workspace re-run
//! with `mkfs.vfat` hidden from PATH and as a user that is not root (`nobody` through
//! `setpriv` when this runs as root). The tests that need root, loop devices, mounts or
//! `mkfs.vfat` must say why they skip and pass; none may fail.
//!
//! The binaries are the ones `cargo test --workspace` built before running this one
//! (`target/<profile>/deps/<name>-<hash>`, the newest when several builds left some).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The uid and gid the binaries run as when this test is root: `nobody`.
const NOBODY: u32 = 65534;

/// Tools a dosfstools install puts on PATH: all hidden.
const VFAT_TOOLS: [&str; 4] = ["mkfs.vfat", "mkfs.fat", "mkfs.msdos", "mkdosfs"];

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The newest built test binary `name` (`cargo test --workspace` builds them all first).
fn test_binary(name: &str) -> PathBuf {
    let chainup = PathBuf::from(env!("CARGO_BIN_EXE_chainup"));
    let deps = chainup.parent().unwrap().join("deps");
    let prefix = format!("{name}-");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&deps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            file.strip_prefix(&prefix)
                .is_some_and(|hash| hash.chars().all(|c| c.is_ascii_hexdigit()))
                && p.metadata().unwrap().permissions().mode() & 0o111 != 0
        })
        .map(|p| (p.metadata().unwrap().modified().unwrap(), p))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).unwrap_or_else(|| {
        panic!(
            "no test binary {name} in {}: run `cargo test --workspace`",
            deps.display()
        )
    })
}

/// A directory of links to every program on PATH except the vfat tools.
fn path_without_vfat(dir: &Path) -> PathBuf {
    let farm = dir.join("bin");
    std::fs::create_dir_all(&farm).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut names: Vec<_> = entries.map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let link = farm.join(&name);
            // The first directory on PATH wins, as in a shell.
            if VFAT_TOOLS.iter().any(|t| name == *t) || link.symlink_metadata().is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(d.join(&name), &link).unwrap();
        }
    }
    farm
}

/// Runs test binary `name` (with `args`) without root and without the vfat tools, from
/// the package directory as cargo does; `None` (after saying why) when `nobody` cannot
/// reach the binaries.
fn run_unprivileged(name: &str, args: &[&str]) -> Option<Output> {
    let scratch = tempfile::TempDir::new().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let farm = path_without_vfat(scratch.path());
    let exe = test_binary(name);
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
        ]);
        let reach = Command::new("setpriv")
            .args(c.get_args())
            .arg("test")
            .arg("-x")
            .arg(env!("CARGO_BIN_EXE_chainup"))
            .status()
            .expect("setpriv (util-linux) runs");
        if !reach.success() {
            eprintln!(
                "SKIP: nobody cannot reach {} (a checkout in a private home?)",
                env!("CARGO_BIN_EXE_chainup")
            );
            return None;
        }
        c.arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args)
        .args(["--nocapture", "--test-threads", "2"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", &farm)
        .env("TMPDIR", &tmp)
        .env("HOME", &tmp);
    let out = cmd.output().unwrap();
    assert!(
        Command::new(farm.join("sh"))
            .args(["-c", "! command -v mkfs.vfat"])
            .env("PATH", &farm)
            .status()
            .unwrap()
            .success(),
        "mkfs.vfat is still on the PATH given to {name}"
    );
    Some(out)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every test of the binary passed (skipping ones return early and pass) and each of
/// `skips` printed its reason.
fn check(name: &str, out: &Output, skips: &[&str]) {
    let t = text(out);
    assert!(out.status.success(), "{name} failed unprivileged:\n{t}");
    assert!(
        t.contains("test result: ok.") && !t.contains("FAILED"),
        "{name}:\n{t}"
    );
    for s in skips {
        assert!(t.contains(s), "{name}: no skip line {s:?}:\n{t}");
    }
}

#[test]
fn root_loop_and_vfat_tests_skip_with_a_reason_without_root_or_mkfs_vfat() {
    let Some(out) = run_unprivileged("ab", &[]) else {
        return;
    };
    check(
        "ab",
        &out,
        &[
            "SKIP loop_device_slots_and_a_vfat_esp: needs root",
            "SKIP update_writes_the_inactive_slot_then_alternates: needs root",
            "SKIP crash_sweep_over_an_image_update: needs root",
        ],
    );

    let Some(out) = run_unprivileged("chunks", &[]) else {
        return;
    };
    check(
        "chunks",
        &out,
        &[
            "SKIP chunked_update_between_loop_device_slots: needs root",
            "SKIP chunked_update_takes_most_of_the_image_from_the_running_slot: needs root",
        ],
    );

    let Some(out) = run_unprivileged("disk", &[]) else {
        return;
    };
    check(
        "disk",
        &out,
        &["skipping: mounting a size-limited tmpfs needs root"],
    );

    let Some(out) = run_unprivileged("progress", &[]) else {
        return;
    };
    check(
        "progress",
        &out,
        &["SKIP the_image_write_reports_its_progress_in_json_and_on_a_terminal: needs root"],
    );
}

/// As root with loop devices but no `mkfs.vfat`, the loop-device test keeps going with a
/// directory for its ESP and says so.
#[test]
fn the_loop_device_test_uses_a_directory_esp_without_mkfs_vfat() {
    if !is_root() {
        eprintln!("SKIP the_loop_device_test_uses_a_directory_esp_without_mkfs_vfat: needs root for losetup");
        return;
    }
    let scratch = tempfile::TempDir::new().unwrap();
    let farm = path_without_vfat(scratch.path());
    let out = Command::new(test_binary("ab"))
        .args(["--exact", "loop_device_slots_and_a_vfat_esp", "--nocapture"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", &farm)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("1 passed"), "{t}");
    assert!(
        t.contains("vfat ESP skipped, using a directory: mkfs.vfat is not available"),
        "{t}"
    );
}
