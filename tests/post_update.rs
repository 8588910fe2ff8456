//! Post-update actions through the real binary: drop-ins of the root run after a change
//! with its facts in their environment, a failing or sleeping one does not undo it, and
//! `--no-scripts` skips them; what ldconfig and systemd would get is decided from the
//! changed paths and shown in the JSON stream (with `-p ROOT` systemd is never touched and
//! this root has no ldconfig, so neither can run here).

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::path::PathBuf;
use std::process::Output;

use fixture::{ok, text, World};
use serde_json::Value;

const DROP_INS: &str = "/usr/lib/chainup/post-update.d";

/// A drop-in that records its arguments and environment beside the root, per command.
const RECORD: &str = "#!/bin/sh\necho recorded on stdout\n{ echo \"ARG1=$1\"; env; } > \"$1/../post-update-$CHAINUP_COMMAND.env\"\n";

/// Release 10 with the recording drop-in, installed; release 20 with a new library and a
/// new unit (and whatever `extra` adds), published.
fn world(extra: impl FnOnce(&World)) -> World {
    let w = World::new();
    w.sample(10);
    w.file(
        10,
        "os-core",
        &format!("{DROP_INS}/10-record"),
        RECORD.as_bytes(),
        0o755,
    );
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10"]));
    w.derive(10, 20);
    w.file(
        20,
        "os-core",
        "/usr/lib64/libdemo.so.1",
        b"\x7fELF demo",
        0o755,
    );
    w.file(
        20,
        "os-core",
        "/usr/lib/systemd/system/demo.service",
        b"[Service]\n",
        0o644,
    );
    extra(&w);
    ok(w.publish(20, &[]));
    w
}

/// The environment a drop-in recorded for `command`, as lines.
fn recorded(w: &World, command: &str) -> Option<Vec<String>> {
    let path = w.root.join(format!("../post-update-{command}.env"));
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().map(str::to_string).collect())
}

/// The whole `--json-output` stream, which must parse as one JSON array.
fn events(out: &Output) -> Vec<Value> {
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(v)) => v,
        other => panic!("not a JSON array ({other:?}):\n{}", text(out)),
    }
}

/// The post-update records, by action name.
fn actions(events: &[Value]) -> Vec<(String, String, Value)> {
    events
        .iter()
        .filter(|e| e["type"] == "post-update")
        .map(|e| {
            let name = e["action"].as_str().unwrap().to_string();
            (name, e["status"].as_str().unwrap().to_string(), e.clone())
        })
        .collect()
}

fn version(w: &World) -> String {
    std::fs::read_to_string(w.root.join("usr/lib/os-release")).unwrap()
}

#[test]
fn a_drop_in_runs_after_os_install_and_update_with_the_change_in_its_environment() {
    let w = world(|_| {});
    let env = recorded(&w, "os-install").expect("the drop-in ran after os-install");
    assert!(
        env.contains(&"CHAINUP_TO_VERSION=10".to_string()),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|l| l.starts_with("CHAINUP_FROM_VERSION=")),
        "{env:?}"
    );

    let out = ok(w.chainup(&["update", "--json-output"]));
    let env = recorded(&w, "update").expect("the drop-in ran after the update");
    let root = w.root.display().to_string();
    for line in [
        format!("ARG1={root}"),
        format!("CHAINUP_ROOT={root}"),
        "CHAINUP_COMMAND=update".into(),
        "CHAINUP_FROM_VERSION=10".into(),
        "CHAINUP_TO_VERSION=20".into(),
        "CHAINUP_TRIGGERS=libraries units".into(),
    ] {
        assert!(env.contains(&line), "{line} not in {env:?}");
    }
    // The drop-in's own stdout went to stderr: the JSON stream still parses.
    let events = events(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("recorded on stdout"));
    let actions = actions(&events);
    let names: Vec<&str> = actions.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(names, ["ldconfig", "daemon-reload", "drop-in 10-record"]);
    assert_eq!(actions[0].2["reason"], "/usr/lib64/libdemo.so.1 changed");
    assert_eq!(
        actions[1].2["reason"],
        "/usr/lib/systemd/system/demo.service changed"
    );
    assert_eq!(actions[1].1, "skipped");
    assert_eq!(actions[1].2["detail"], "ROOT is not the running system");
    assert_eq!(actions[0].1, "skipped", "this root has no ldconfig to run");
    assert_eq!(actions[2].1, "done");
    assert_eq!(actions[2].2["command"][1], root.as_str());
}

#[test]
fn an_update_that_touches_no_library_or_unit_plans_neither() {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    ok(w.chainup(&["os-install", "-V", "10"]));
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    let out = ok(w.chainup(&["update", "--json-output"]));
    assert_eq!(actions(&events(&out)), vec![]);
}

#[test]
fn a_failing_drop_in_is_reported_and_the_update_stands() {
    let w = world(|w| {
        w.file(
            20,
            "os-core",
            &format!("{DROP_INS}/05-fail"),
            b"#!/bin/sh\nexit 7\n",
            0o755,
        );
    });
    let out = w.chainup(&["update"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: post-update action drop-in 05-fail")
            && stderr.contains("failed: exit status 7"),
        "{stderr}"
    );
    assert!(version(&w).contains("VERSION_ID=20"));
    assert!(
        recorded(&w, "update").is_some(),
        "the next drop-in still ran"
    );
}

#[test]
fn a_sleeping_drop_in_is_killed_at_the_timeout_with_what_it_started() {
    let sleeper =
        "#!/bin/sh\nsleep 60 &\necho $! > \"$1/../sleeper.pid\"\nwait\ntouch \"$1/../woke\"\n";
    let w = world(|w| {
        w.file(
            20,
            "os-core",
            &format!("{DROP_INS}/20-sleep"),
            sleeper.as_bytes(),
            0o755,
        )
    });
    let config = w.dir.path().join("config.toml");
    std::fs::write(&config, "post-update-timeout = 1\n").unwrap();
    let mut cmd = w.chainup_cmd(&["update", "--json-output"]);
    let out = ok(fixture::run(cmd.arg("--config").arg(&config)));
    let actions = actions(&events(&out));
    let (_, status, record) = actions
        .iter()
        .find(|(n, ..)| n == "drop-in 20-sleep")
        .unwrap();
    assert_eq!(status, "timeout", "{record}");
    assert_eq!(record["timeout"], 1.0);
    let events = events(&out);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "warning"
                && e["msg"].as_str().unwrap().contains("drop-in 20-sleep"))
    );
    assert_eq!(events.last().unwrap()["status"], 0);
    assert!(version(&w).contains("VERSION_ID=20"));
    let pid: i32 = std::fs::read_to_string(w.root.join("../sleeper.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(pid), "the drop-in's child {pid} was killed with it");
    assert!(!w.root.join("../woke").exists());
}

#[test]
fn no_scripts_runs_nothing_and_still_shows_the_plan() {
    let w = world(|_| {});
    std::fs::remove_file(w.root.join("../post-update-os-install.env")).unwrap();
    let out = ok(w.chainup(&["update", "--no-scripts", "--json-output"]));
    assert!(recorded(&w, "update").is_none(), "the drop-in did not run");
    let actions = actions(&events(&out));
    assert_eq!(actions.len(), 3);
    for (name, status, record) in &actions {
        assert_eq!(
            (status.as_str(), &record["detail"]),
            ("skipped", &Value::from("--no-scripts")),
            "{name}"
        );
    }
    let out = ok(w.chainup(&["bundle-add", "editors", "-N"]));
    assert!(recorded(&w, "bundle-add").is_none(), "{}", text(&out));
    assert!(text(&out).contains("post-update actions skipped (--no-scripts)"));
}

#[test]
fn bundle_add_and_repair_run_the_drop_ins_and_repair_asks_for_the_boot_manager() {
    let w = world(|_| {});
    ok(w.chainup(&["bundle-add", "editors"]));
    assert!(recorded(&w, "bundle-add")
        .unwrap()
        .contains(&"CHAINUP_TO_VERSION=10".to_string()));

    std::fs::remove_file(w.root.join("usr/bin/vim")).unwrap();
    let out = ok(w.chainup(&["repair", "--json-output"]));
    assert!(recorded(&w, "repair").is_some());
    let actions = actions(&events(&out));
    let (_, status, record) = &actions[0];
    assert_eq!(record["action"], "boot-manager");
    assert_eq!(record["reason"], "always after repair, as swupd");
    assert_eq!(status, "skipped");
    assert!(record["detail"]
        .as_str()
        .unwrap()
        .contains("clr-boot-manager is not installed"));
    let cbm = w.root.join("usr/bin/clr-boot-manager");
    assert_eq!(record["command"][0], cbm.display().to_string());
    assert_eq!(
        record["command"][3],
        w.root.display().to_string(),
        "--path ROOT"
    );
}

/// True when `pid` no longer runs (gone, or a zombie waiting to be reaped).
fn gone(pid: i32) -> bool {
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    for _ in 0..500 {
        match std::fs::read_to_string(&stat) {
            Err(_) => return true,
            Ok(s) if zombie(&s) => return true,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    false
}

fn zombie(stat: &str) -> bool {
    stat.rsplit(')')
        .next()
        .is_some_and(|s| s.trim_start().starts_with('Z'))
}

#[test]
fn an_interrupted_update_finished_later_runs_the_actions_it_owed() {
    let w = world(|_| {});
    // Killed after every file is in place, before the new version is written: on the
    // rerun nothing differs on disk, yet the library and the unit did change.
    let killed = w
        .chainup_cmd(&["update"])
        .env("FAILPOINTS", "txn::version=return")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "{}", text(&killed));
    assert!(
        recorded(&w, "update").is_none(),
        "the killed run ran no action"
    );
    assert!(w.state.join("journal.json").exists(), "{}", text(&killed));

    let out = ok(w.chainup(&["update", "--json-output"]));
    assert!(text(&out).contains("finishing the interrupted update"));
    assert!(!w.state.join("journal.json").exists());
    let actions = actions(&events(&out));
    let names: Vec<&str> = actions.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(names, ["ldconfig", "daemon-reload", "drop-in 10-record"]);
    assert_eq!(actions[0].2["reason"], "/usr/lib64/libdemo.so.1 changed");
    let env = recorded(&w, "update").expect("the drop-in ran after the finished update");
    for line in [
        "CHAINUP_FROM_VERSION=10",
        "CHAINUP_TO_VERSION=20",
        "CHAINUP_TRIGGERS=libraries units",
    ] {
        assert!(env.contains(&line.to_string()), "{line} not in {env:?}");
    }
}
