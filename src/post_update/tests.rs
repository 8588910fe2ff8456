use std::os::unix::fs::PermissionsExt;

use super::*;

fn triggers(paths: &[&str]) -> Triggers {
    let mut t = Triggers::default();
    for p in paths {
        t.note(p);
    }
    t
}

#[test]
fn libraries_units_systemd_and_boot_files_are_told_apart() {
    let t = triggers(&[
        "/usr/bin/hello",
        "/usr/lib/systemd/systemd-journald",
        "/usr/lib/python3.12/site-packages/_ssl.cpython-312.so",
        "/usr/libexec/libhelper.so",
        "/usr/lib/modules/6.1/kernel/fs/ext4.ko",
    ]);
    assert_eq!(t, Triggers::default(), "none of these calls for an action");

    let t = triggers(&["/usr/lib64/libz.so.1.3", "/usr/lib/libc.so"]);
    assert_eq!(t.libraries.as_deref(), Some("/usr/lib64/libz.so.1.3"));
    assert_eq!(t.names(), ["libraries"]);
    assert!(triggers(&["/etc/ld.so.conf.d/local.conf"])
        .libraries
        .is_some());
    assert!(triggers(&["/usr/lib/x86_64-linux-gnu/libssl.so.3"])
        .libraries
        .is_some());

    let t = triggers(&["/usr/lib/systemd/system/chainup.timer"]);
    assert!(t.units.is_some() && t.systemd.is_none());
    assert!(
        triggers(&["/etc/systemd/system/multi-user.target.wants/x.service"])
            .units
            .is_some()
    );
    assert!(triggers(&["/usr/lib/systemd/system-generators/gen"])
        .units
        .is_some());
    let t = triggers(&["/usr/lib/systemd/systemd"]);
    assert!(t.systemd.is_some() && t.units.is_none());

    for boot in [
        "/usr/lib/kernel/org.clearlinux.native.6.1",
        "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
        "/usr/bin/clr-boot-manager",
    ] {
        assert_eq!(triggers(&[boot]).boot.as_deref(), Some(boot));
    }
}

fn host(running_system: bool) -> Host {
    Host {
        running_system,
        systemd: true,
        container: false,
        superuser: true,
    }
}

fn ctx(root: &Path) -> Context<'_> {
    Context {
        root,
        command: "update",
        from: Some(10),
        to: 20,
        timeout: Duration::from_secs(5),
    }
}

fn exe(path: &Path, body: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_running_system_reloads_systemd_and_a_root_elsewhere_does_not() {
    let dir = tempfile::tempdir().unwrap();
    exe(&dir.path().join("usr/bin/ldconfig"), "", 0o755);
    let t = triggers(&[
        "/usr/lib/libfoo.so.1",
        "/usr/lib/systemd/system/foo.service",
    ]);

    let plan = plan(&ctx(dir.path()), host(false), &t);
    let names: Vec<&str> = plan.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["ldconfig", "daemon-reload"]);
    let root: OsString = dir.path().into();
    assert_eq!(
        plan[0].argv,
        ["chroot".into(), root, "/usr/bin/ldconfig".into()]
    );
    assert_eq!(plan[0].skip, None);
    assert_eq!(plan[0].why, "/usr/lib/libfoo.so.1 changed");
    assert_eq!(
        plan[1].skip.as_deref(),
        Some("ROOT is not the running system")
    );

    // Not root: chroot is impossible, so ldconfig is not run at all.
    let user = Host {
        superuser: false,
        ..host(false)
    };
    assert!(plan_for(dir.path(), user, &t)[0].skip.is_some());

    let running = plan_for(Path::new("/"), host(true), &t);
    let reload = running.iter().find(|a| a.name == "daemon-reload").unwrap();
    assert_eq!(reload.argv, ["systemctl", "daemon-reload"]);
    assert_eq!(reload.skip, None);
    let no_systemd = Host {
        systemd: false,
        ..host(true)
    };
    let reload = plan_for(Path::new("/"), no_systemd, &t);
    assert!(reload
        .iter()
        .any(|a| a.name == "daemon-reload" && a.skip.is_some()));

    let t = triggers(&[
        "/usr/lib/systemd/systemd",
        "/usr/lib/systemd/system/a.service",
    ]);
    let names: Vec<String> = plan_for(dir.path(), host(false), &t)
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["daemon-reexec"]);
}

fn plan_for(root: &Path, host: Host, t: &Triggers) -> Vec<Action> {
    plan(&ctx(root), host, t)
}

#[test]
fn the_boot_manager_of_the_root_runs_with_its_path_when_it_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let t = triggers(&["/usr/lib/kernel/vmlinuz"]);
    let plan = plan_for(dir.path(), host(false), &t);
    assert_eq!(plan.len(), 1);
    assert!(plan[0].skip.as_deref().unwrap().contains("not installed"));

    let cbm = dir.path().join("usr/bin/clr-boot-manager");
    exe(&cbm, "", 0o755);
    let plan = plan_for(dir.path(), host(false), &t);
    let root: OsString = dir.path().into();
    assert_eq!(
        plan[0].argv,
        [cbm.into(), "update".into(), "--path".into(), root]
    );
    assert_eq!(plan[0].skip, None);

    let container = Host {
        container: true,
        ..host(true)
    };
    let plan = plan_for(Path::new("/"), container, &t);
    assert_eq!(plan[0].skip.as_deref(), Some("running in a container"));
}

#[test]
fn drop_ins_run_in_name_order_and_the_admin_replaces_or_masks_the_vendor() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = dir.path().join(DROP_IN_DIRS[0]);
    let admin = dir.path().join(DROP_IN_DIRS[1]);
    exe(&vendor.join("20-b"), "", 0o755);
    exe(&vendor.join("10-a"), "", 0o755);
    exe(&vendor.join("30-masked"), "", 0o755);
    exe(&admin.join("30-masked"), "", 0o644);
    exe(&admin.join("15-admin.sh"), "", 0o755);
    exe(&vendor.join(".hidden"), "", 0o755);
    exe(&vendor.join("40-x.dpkg-old"), "", 0o755);
    exe(&vendor.join("50-open"), "", 0o777);

    let plan = plan_for(dir.path(), host(false), &Triggers::default());
    let names: Vec<&str> = plan.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "drop-in 10-a",
            "drop-in 15-admin.sh",
            "drop-in 20-b",
            "drop-in 30-masked",
            "drop-in 50-open"
        ]
    );
    let root: OsString = dir.path().into();
    assert_eq!(plan[1].argv, [admin.join("15-admin.sh").into(), root]);
    assert_eq!(plan[3].skip.as_deref(), Some("not executable"));
    assert!(plan[4]
        .skip
        .as_deref()
        .unwrap()
        .contains("writable by group or others"));
    assert!(plan[..3].iter().all(|a| a.skip.is_none()));
}

/// Records events for the tests.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl Observer for Recorder {
    fn event(&self, event: Event<'_>) {
        if let Event::PostUpdate(r) = event {
            self.0.lock().unwrap().push(r.outcome.status().to_string());
        }
    }
}

#[test]
fn actions_get_the_change_in_their_environment_and_a_sleeper_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join(DROP_IN_DIRS[0]);
    let out = dir.path().join("env");
    let pid = dir.path().join("pid");
    exe(
        &d.join("10-env"),
        &format!("#!/bin/sh\nenv > {}\necho \"$1\" >> {0}\n", out.display()),
        0o755,
    );
    exe(&d.join("20-fail"), "#!/bin/sh\nexit 3\n", 0o755);
    exe(
        &d.join("30-sleep"),
        &format!("#!/bin/sh\nsleep 60 &\necho $! > {}\nwait\n", pid.display()),
        0o755,
    );
    let mut c = ctx(dir.path());
    c.timeout = Duration::from_millis(500);
    let t = triggers(&["/usr/lib/libz.so.1"]);
    let actions: Vec<Action> = plan(&c, host(false), &t)
        .into_iter()
        .filter(|a| a.name.starts_with("drop-in"))
        .collect();
    let seen = Recorder::default();
    let reports = run(&c, actions, &t, &seen);
    let outcomes: Vec<&Outcome> = reports.iter().map(|r| &r.outcome).collect();
    assert_eq!(outcomes[0], &Outcome::Done);
    assert_eq!(outcomes[1], &Outcome::Failed("exit status 3".into()));
    assert_eq!(outcomes[2], &Outcome::TimedOut(Duration::from_millis(500)));
    assert_eq!(*seen.0.lock().unwrap(), ["done", "failed", "timeout"]);

    let env = std::fs::read_to_string(&out).unwrap();
    for line in [
        "CHAINUP_COMMAND=update",
        "CHAINUP_FROM_VERSION=10",
        "CHAINUP_TO_VERSION=20",
        "CHAINUP_TRIGGERS=libraries",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in {env}");
    }
    assert!(env
        .lines()
        .any(|l| l == format!("CHAINUP_ROOT={}", dir.path().display())));
    assert!(
        env.ends_with(&format!("{}\n", dir.path().display())),
        "ROOT is the first argument"
    );
    assert!(!env.contains("HOME="), "the environment is clean: {env}");

    let sleeper: i32 = std::fs::read_to_string(&pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        gone(sleeper),
        "the sleeping child {sleeper} was killed with the group"
    );
}

/// True when `pid` no longer runs (gone, or a zombie waiting for init).
fn gone(pid: i32) -> bool {
    for _ in 0..200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z')) =>
            {
                return true
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}
