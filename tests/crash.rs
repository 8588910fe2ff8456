//! A crash sweep: `update` killed with SIGKILL at many seeded moments spread over an update
//! of a few thousand files (downloading, placing, renaming, deleting, finishing), each
//! followed by a rerun that must end at the new release with `diagnose` clean and no
//! temporary left. Long: run with `cargo test --test crash -- --ignored` (CI runs it as its
//! own step). The A/B image counterpart is `crash_sweep_over_an_image_update` in ab.rs.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use fixture::{expected, ok, run, snapshot, text, World};

const FILES: usize = 3000;
/// Files release 20 changes (every third), deletes and adds.
const CHANGED: usize = FILES / 3;
const DELETED: usize = 100;
const ADDED: usize = 100;

fn file_path(i: usize) -> String {
    format!("/usr/share/bulk/d{:02}/f{i:04}", i % 60)
}

/// Release 10 with `FILES` files in 60 directories; release 20 changes every third file,
/// deletes `DELETED`, adds `ADDED` in new directories, and edits a config file.
fn sweep_world() -> World {
    let w = World::on_tmpfs();
    w.sample(10);
    w.file(10, "os-core", "/etc/bulk.conf", b"bulk=10\n", 0o644);
    for i in 0..FILES {
        let data = format!("file {i} release 10\n");
        w.file(10, "os-core", &file_path(i), data.as_bytes(), 0o644);
    }
    ok(w.publish(10, &[]));
    w.derive(10, 20);
    w.change_hello(20);
    w.file(20, "os-core", "/etc/bulk.conf", b"bulk=20\n", 0o644);
    for i in (0..FILES).step_by(3) {
        let data = format!("file {i} release 20, a little longer\n");
        w.file(20, "os-core", &file_path(i), data.as_bytes(), 0o600);
    }
    for i in 0..DELETED {
        w.remove(20, "os-core", &file_path(3 * i + 1));
    }
    for i in 0..ADDED {
        let path = format!("/usr/share/added/a{:02}/n{i:03}", i % 10);
        w.file(20, "os-core", &path, format!("new {i}\n").as_bytes(), 0o644);
    }
    ok(w.publish(20, &[]));
    w
}

fn cmd(w: &World, root: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(fixture::bin("chainup"));
    cmd.args(args)
        .arg("--path")
        .arg(root)
        .arg("--statedir")
        .arg(state)
        .args(["--url", &w.server.url(), "--allow-insecure-http"])
        .arg("--certpath")
        .arg(&w.keys.root)
        .args(["--max-retries", "1", "--retry-delay", "0", "--no-progress"]);
    cmd
}

/// splitmix64.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The failpoint settings of the sweep: every fixed commit point once, then seeded
/// moments among the downloads, the placements and the renames.
fn moments(seed: u64, count: usize) -> Vec<String> {
    let mut out: Vec<String> = [
        "txn::begin",
        "txn::dirs",
        "txn::placed",
        "txn::deleted",
        "txn::version",
        "txn::raised",
        "txn::finished",
    ]
    .iter()
    .map(|p| format!("{p}=return"))
    .collect();
    let mut x = seed;
    while out.len() < count {
        x = mix(x);
        // Release 20's changed files come from its delta pack, one pack member each.
        let point = ["stage::member", "txn::place", "txn::commit"][(x % 3) as usize];
        // Every one of these points is passed at least CHANGED times.
        let n = mix(x) % CHANGED as u64;
        out.push(format!("{point}={n}*off->return"));
    }
    out
}

#[test]
#[ignore = "long: run with --ignored (CI runs it as its own step)"]
fn crash_sweep_over_an_update_of_thousands_of_files() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (seed, count) = (
        env("CHAINUP_CRASH_SEED", 20261202),
        env("CHAINUP_CRASH_MOMENTS", 60),
    );
    let w = sweep_world();
    let pristine = w.dir.path().join("pristine");
    let (root0, state0) = (pristine.join("root"), pristine.join("state"));
    ok(run(&mut cmd(
        &w,
        &root0,
        &state0,
        &["os-install", "-V", "10"],
    )));
    let want = expected(&w, 20, &["os-core"]);
    assert!(want.len() > FILES);

    for (i, moment) in moments(seed, count as usize).iter().enumerate() {
        let here = w.dir.path().join(format!("m{i}"));
        std::fs::create_dir_all(&here).unwrap();
        ok(run(Command::new("cp")
            .arg("-a")
            .arg(&root0)
            .arg(&state0)
            .arg(&here)));
        let (root, state) = (here.join("root"), here.join("state"));

        let out = cmd(&w, &root, &state, &["update"])
            .env("FAILPOINTS", moment)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{moment} (seed {seed}): {}",
            text(&out)
        );
        let out = ok(run(&mut cmd(&w, &root, &state, &["update"])));
        assert!(
            snapshot(&root, &[]) == want,
            "{moment} (seed {seed}): the rerun did not end at release 20:\n{}",
            text(&out)
        );
        ok(run(&mut cmd(&w, &root, &state, &["diagnose"])));
        let debris = fixture::named_like(&root, ".chainup");
        assert!(debris.is_empty(), "{moment}: {debris:?}");
        assert!(!state.join("journal.json").exists(), "{moment}");
        std::fs::remove_dir_all(&here).unwrap();
    }
    println!("crash sweep: {count} moments (seed {seed}), each rerun clean");
}
