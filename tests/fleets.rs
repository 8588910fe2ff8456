//! Fleets through the real binaries: channels, staged rollouts with a halt, mirrors, and
//! channels chosen per machine by a real nginx (docs/fleets.md).

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chainup::rollout::Schedule;
use fixture::{bin, expected, ok, run, snapshot, text, World};
use server::Server;

/// Releases 10 and 20 (20 changes /usr/bin/hello), published, channel `stable` on 10.
fn world_with_stable() -> World {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    ok(promote(&w, &["--channel", "stable", "--version", "10"]));
    w
}

/// `chainup-publish promote` on the world's webroot, signed with its key.
fn promote(w: &World, args: &[&str]) -> Output {
    run(Command::new(bin("chainup-publish"))
        .arg("promote")
        .arg("--webroot")
        .arg(&w.web)
        .arg("--cert")
        .arg(&w.keys.root)
        .arg("--key")
        .arg(&w.keys.root_key)
        .args(args))
}

/// A simulated machine: a root holding version 10's os-release and its own machine id.
fn machine(w: &World, i: u32) -> PathBuf {
    let root = w.dir.path().join(format!("fleet/m{i:03}"));
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("usr/lib/os-release"),
        "NAME=chainup test\nVERSION_ID=10\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/machine-id"), machine_id(i)).unwrap();
    root
}

/// A made-up /etc/machine-id for machine `i` (32 hex digits, as systemd writes).
fn machine_id(i: u32) -> String {
    format!(
        "{:016x}{:016x}\n",
        0x5eed_0000_u64 + u64::from(i),
        u64::from(i) * 2_654_435_761
    )
}

/// `chainup` against the world's server for the machine at `root` (its own state
/// directory), on channel `stable`.
fn at(w: &World, root: &Path, args: &[&str]) -> Output {
    at_url(w, &w.server.url(), root, args)
}

/// [`at`] with another URL for the same webroot. The fleet-wide passes read it through
/// `file://`: the decision per machine is the same, and 600 runs do not each pay for an
/// HTTPS client's set-up (the real updates of the sample go over HTTP).
fn at_url(w: &World, url: &str, root: &Path, args: &[&str]) -> Output {
    run(Command::new(bin("chainup"))
        .args(args)
        .arg("--path")
        .arg(root)
        .arg("--statedir")
        .arg(root.join("var/lib/chainup"))
        .args(["--url", url])
        .args(["--channel", "stable", "--allow-insecure-http", "--certpath"])
        .arg(&w.keys.root)
        .args(["--max-retries", "1", "--retry-delay", "0", "--no-progress"]))
}

/// A machine with release 10 really installed (os-install), with machine id `i`.
fn installed_machine(w: &World, i: u32) -> PathBuf {
    let root = w.dir.path().join(format!("installed/m{i:03}"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/machine-id"), machine_id(i)).unwrap();
    ok(at(w, &root, &["os-install", "-V", "10"]));
    root
}

fn hello(root: &Path) -> String {
    std::fs::read_to_string(root.join("usr/bin/hello")).unwrap()
}

/// The schedule as published on channel `stable`.
fn published_schedule(w: &World) -> Schedule {
    let path = w.web("channels/stable/version/format30/rollout");
    Schedule::parse(&std::fs::read(path).unwrap(), "test").unwrap()
}

#[test]
fn a_channel_is_promoted_without_touching_content_and_followed_by_name() {
    let w = world_with_stable();
    let content = snapshot(&w.web, &["/channels", "/.chainup-publish.lock"]);
    ok(promote(&w, &["--channel", "beta", "--version", "20"]));
    assert_eq!(
        snapshot(&w.web, &["/channels", "/.chainup-publish.lock"]),
        content
    );
    assert_eq!(
        std::fs::read_to_string(w.web("channels/beta/version/format30/latest")).unwrap(),
        "20\n"
    );
    assert!(w.web("channels/beta/version/latest_version.sig").exists());
    let out = promote(&w, &["--channel", "beta", "--version", "99"]);
    assert!(!out.status.success(), "an unpublished version is refused");

    let m = machine(&w, 1);
    // The root version URL says 20, channel stable says 10.
    let stable = at(&w, &m, &["check-update"]);
    assert_eq!(stable.status.code(), Some(1), "{}", text(&stable));
    let mut beta = Command::new(bin("chainup"));
    beta.args(["check-update", "--channel", "beta", "--path"])
        .arg(&m)
        .arg("--url")
        .arg(w.server.url())
        .args(["--allow-insecure-http", "--certpath"])
        .arg(&w.keys.root);
    let beta = run(&mut beta);
    assert_eq!(beta.status.code(), Some(0), "{}", text(&beta));
    assert!(text(&beta).contains("version 20"), "{}", text(&beta));
    assert!(w.server.hits("/channels/beta/version/format30/latest") > 0);

    let info = ok(at(&w, &m, &["info"]));
    let info = text(&info);
    assert!(info.contains("Channel: stable"), "{info}");
    assert!(
        info.contains(&format!("{}/channels/stable", w.server.url())),
        "{info}"
    );
}

#[test]
fn waves_over_200_machines_then_ignore_waves_then_halt() {
    let w = world_with_stable();
    ok(promote(
        &w,
        &[
            "--channel",
            "stable",
            "--version",
            "20",
            "--waves",
            "10%@now,100%@+30d",
        ],
    ));
    let schedule = published_schedule(&w);
    let (first, last) = (schedule.waves[0], schedule.waves[1]);
    assert_eq!(last.start - first.start, 30 * 86_400);
    // `latest` stays on the version the fleet rolls out from.
    assert_eq!(
        std::fs::read_to_string(w.web("channels/stable/version/format30/latest")).unwrap(),
        "10\n"
    );

    let fleet: Vec<PathBuf> = (0..200).map(|i| machine(&w, i)).collect();
    let local = format!("file://{}", w.web.display());
    let check = |root: &Path, args: &[&str]| at_url(&w, &local, root, args);
    let mut first_wave = Vec::new();
    for (i, root) in fleet.iter().enumerate() {
        let out = check(root, &["check-update"]);
        let t = text(&out);
        match out.status.code() {
            Some(0) => {
                assert!(t.contains("Update available: version 20"), "{t}");
                assert!(t.contains("wave 1 of 2, started"), "{t}");
                first_wave.push(i as u32);
            }
            Some(1) => {
                assert!(
                    t.contains("No update available (current 10, server 10)"),
                    "{t}"
                );
                assert!(t.contains("wave 2 of 2, which starts at"), "{t}");
                assert!(t.contains(&format!("(unix {})", last.start)), "{t}");
            }
            other => panic!("machine {i}: exit {other:?}\n{t}"),
        }
    }
    let n = first_wave.len();
    eprintln!("{n} of 200 machines in the 10% wave");
    assert!(
        (10..=30).contains(&n),
        "{n} of 200 machines in the 10% wave"
    );

    // A sample of real updates: a machine of the first wave moves, one of the second
    // stays until --ignore-waves.
    let early = installed_machine(&w, first_wave[0]);
    let late_id = (0..200).find(|i| !first_wave.contains(i)).unwrap();
    let late = installed_machine(&w, late_id);
    let out = ok(at(&w, &early, &["update"]));
    assert!(
        text(&out).contains("Updated from version 10 to version 20"),
        "{}",
        text(&out)
    );
    assert_eq!(hello(&early), "#!/bin/sh\necho 20\n");
    let out = ok(at(&w, &late, &["update"]));
    assert!(
        text(&out).contains("wave 2 of 2, which starts at"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    assert_eq!(hello(&late), "#!/bin/sh\necho hello 10\n");
    let out = ok(at(&w, &late, &["update", "--ignore-waves"]));
    assert!(
        text(&out).contains("taken now (--ignore-waves)"),
        "{}",
        text(&out)
    );
    assert_eq!(hello(&late), "#!/bin/sh\necho 20\n");

    // --ignore-waves: every machine is offered 20.
    for root in &fleet {
        let out = check(root, &["check-update", "--ignore-waves"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }

    // Halted: no machine that has not updated does, not even the first wave's.
    ok(promote(&w, &["--channel", "stable", "--halt"]));
    assert!(published_schedule(&w).halted);
    for root in &fleet {
        let out = check(root, &["check-update"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("the rollout is halted"),
            "{}",
            text(&out)
        );
    }
    let stays = installed_machine(&w, first_wave[1]);
    let out = ok(at(&w, &stays, &["update"]));
    assert!(text(&out).contains("halted"), "{}", text(&out));
    assert_eq!(hello(&stays), "#!/bin/sh\necho hello 10\n");
    // Machines already updated stay on 20.
    let out = ok(at(&w, &early, &["update"]));
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    assert_eq!(hello(&early), "#!/bin/sh\necho 20\n");
}

#[test]
fn an_altered_schedule_is_a_bad_signature_and_a_replayed_one_a_rollback() {
    let w = world_with_stable();
    ok(promote(
        &w,
        &[
            "--channel",
            "stable",
            "--version",
            "20",
            "--waves",
            "10%@now,100%@+30d",
        ],
    ));
    let rollout = w.web("channels/stable/version/format30/rollout");
    let sig = w.web("channels/stable/version/format30/rollout.sig");
    let (old_text, old_sig) = (
        std::fs::read(&rollout).unwrap(),
        std::fs::read(&sig).unwrap(),
    );
    let m = installed_machine(&w, 7);
    ok(at(&w, &m, &["update"]));

    // Everyone in the first wave: the signature no longer matches.
    let s = published_schedule(&w);
    let altered = String::from_utf8(old_text.clone()).unwrap().replace(
        &format!("wave: 100% {}", s.waves[1].start),
        &format!("wave: 100% {}", s.waves[0].start),
    );
    assert_ne!(altered.as_bytes(), &old_text[..]);
    std::fs::write(&rollout, &altered).unwrap();
    for args in [&["check-update"][..], &["update"]] {
        let out = at(&w, &m, args);
        assert_eq!(out.status.code(), Some(21), "{}", text(&out));
        assert!(text(&out).contains("signature check of"), "{}", text(&out));
    }
    std::fs::write(&rollout, &old_text).unwrap();

    // Halted (a newer schedule), acted on; then the older one comes back.
    ok(promote(&w, &["--channel", "stable", "--halt"]));
    ok(at(&w, &m, &["update"]));
    std::fs::write(&rollout, &old_text).unwrap();
    std::fs::write(&sig, &old_sig).unwrap();
    let before = snapshot(&m, &[]);
    for args in [&["check-update"][..], &["update"]] {
        let out = at(&w, &m, args);
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        assert!(text(&out).contains("replayed schedule"), "{}", text(&out));
    }
    assert_eq!(snapshot(&m, &[]), before);
}

#[test]
fn three_mirrors_one_dead_one_corrupt_one_good() {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    // Without packs every file is a fullfile, so each mirror serves some of them.
    for e in std::fs::read_dir(w.web.join("10")).unwrap() {
        let path = e.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("pack-")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    // A mirror whose every fullfile holds the wrong bytes under the right name.
    let corrupt = w.dir.path().join("corrupt");
    ok(run(Command::new("cp").arg("-a").arg(&w.web).arg(&corrupt)));
    let files = corrupt.join("10/files");
    let mut corrupted = 0;
    for e in std::fs::read_dir(&files).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        let hash = name.strip_suffix(".tar").unwrap();
        let tar = fixture::one_entry_tar(hash, b"not what was published\n", 0o644, 0, 0);
        std::fs::write(&path, tar).unwrap();
        corrupted += 1;
    }
    assert!(corrupted > 5);
    let corrupt_server = Server::new(&corrupt);
    // Nothing listens on a port just released.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let root = w.dir.path().join("mirrored");
    let out = run(Command::new(bin("chainup"))
        .args(["os-install", "-V", "10", "-B", "editors", "--path"])
        .arg(&root)
        .arg("--statedir")
        .arg(w.dir.path().join("mirrored-state"))
        .arg("--versionurl")
        .arg(w.server.url())
        .arg("--contenturl")
        .arg(&dead)
        .arg("--mirror")
        .arg(corrupt_server.url())
        .arg("--mirror")
        .arg(w.server.url())
        .args(["--allow-insecure-http", "--certpath"])
        .arg(&w.keys.root)
        .args([
            "--max-retries",
            "3",
            "--retry-delay",
            "0",
            "--no-progress",
            "-W",
            "4",
        ]));
    let t = text(&ok(out));
    assert!(t.contains(&format!("mirror {dead} set aside")), "{t}");
    assert!(
        t.contains(&format!("mirror {} set aside", corrupt_server.url())),
        "{t}"
    );
    assert!(
        !t.contains(&format!("mirror {} set aside", w.server.url())),
        "{t}"
    );
    assert!(corrupt_server.hits_matching("/10/files/") > 0);
    assert_eq!(
        snapshot(&root, &["/var", "/usr/share/clear/bundles"]),
        expected(&w, 10, &["os-core", "editors"])
            .into_iter()
            .filter(|(p, _)| !p.starts_with("/usr/share/clear/bundles"))
            .collect()
    );
}

/// A failing mirror is left at once while another is healthy, but the last healthy one
/// is retried (and resumed) as a single server would be: one dead mirror must not make the
/// good one's first dropped connection fatal.
#[test]
fn the_last_healthy_mirror_is_retried_like_a_single_server() {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    // Each of the first three requests for content breaks off after a few bytes.
    w.server.drop_after("/10/", 20, 3);
    let root = w.dir.path().join("r");
    let out = ok(run(Command::new(bin("chainup"))
        .args(["os-install", "-V", "10", "-B", "editors", "--path"])
        .arg(&root)
        .args(["--contenturl", &dead, "--mirror", &w.server.url()])
        .args(["--versionurl", &w.server.url()])
        .args(["--max-retries", "3", "--retry-delay", "0", "-W", "1"])
        .args(["--allow-insecure-http", "--no-progress", "--certpath"])
        .arg(&w.keys.root)));
    let t = text(&out);
    assert!(t.contains(&format!("mirror {dead} set aside")), "{t}");
    assert!(
        !t.contains(&format!("mirror {} set aside", w.server.url())),
        "{t}"
    );
    assert!(t.contains("retry 1/3"), "{t}");
    assert_eq!(hello(&root), "#!/bin/sh\necho hello 10\n");
}

#[test]
fn a_mirror_serving_a_corrupt_manifest_is_set_aside() {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    let corrupt = w.dir.path().join("corrupt");
    ok(run(Command::new("cp").arg("-a").arg(&w.web).arg(&corrupt)));
    for bundle in ["os-core", "editors"] {
        // One more newline: parses the same, hashes differently.
        let text = format!("{}\n", w.manifest_text(10, bundle));
        std::fs::write(
            corrupt.join(format!("10/Manifest.{bundle}.tar")),
            fixture::manifest_tar(&format!("Manifest.{bundle}"), text.as_bytes()),
        )
        .unwrap();
    }
    let corrupt_server = Server::new(&corrupt);
    let root = w.dir.path().join("r");
    let out = ok(run(Command::new(bin("chainup"))
        .args(["os-install", "-V", "10", "-B", "editors", "--path"])
        .arg(&root)
        .args(["--url", &corrupt_server.url(), "--mirror", &w.server.url()])
        .args(["--versionurl", &w.server.url()])
        .args(["--allow-insecure-http", "--no-progress", "--certpath"])
        .arg(&w.keys.root)));
    let t = text(&out);
    assert!(
        t.contains(&format!("mirror {} set aside", corrupt_server.url())),
        "{t}"
    );
    assert!(t.contains("hash mismatch for"), "{t}");
    assert_eq!(hello(&root), "#!/bin/sh\necho hello 10\n");
}

#[test]
fn swupd_mirror_file_adds_a_content_url() {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    let root = w.dir.path().join("r");
    std::fs::create_dir_all(root.join("etc/swupd")).unwrap();
    std::fs::write(
        root.join("etc/swupd/mirror_contenturl"),
        format!("{}\n", w.server.url()),
    )
    .unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let info = ok(run(Command::new(bin("chainup"))
        .args(["info", "--path"])
        .arg(&root)
        .args(["--contenturl", &dead])));
    assert!(
        text(&info).contains(&format!("Mirrors: {}", w.server.url())),
        "{}",
        text(&info)
    );
    ok(run(Command::new(bin("chainup"))
        .args(["os-install", "-V", "10", "--path"])
        .arg(&root)
        .args(["--contenturl", &dead, "--versionurl", &w.server.url()])
        .args(["--allow-insecure-http", "--no-progress", "--certpath"])
        .arg(&w.keys.root)));
    assert_eq!(hello(&root), "#!/bin/sh\necho hello 10\n");
}

/// nginx on loopback with tools/nginx/chainup.conf: two machine ids, two channels, two
/// versions.
#[test]
fn nginx_maps_machine_ids_to_channels() {
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        eprintln!("skipped: nginx is not installed (apt-get install nginx-light)");
        return;
    };
    let w = world_with_stable();
    ok(promote(&w, &["--channel", "beta", "--version", "20"]));
    let (a, b) = (machine(&w, 1), machine(&w, 2));
    let id = |root: &Path| chainup::version::machine_id(root).unwrap().unwrap();
    let dir = w.dir.path().join("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("machines.map"),
        format!("{} beta;\n{} stable;\n", id(&a), id(&b)),
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tools/nginx/chainup.conf"
    ))
    .unwrap()
    .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
    .replace("/srv/chainup/webroot", w.web.to_str().unwrap())
    .replace(
        "/etc/nginx/chainup-machines.map",
        dir.join("machines.map").to_str().unwrap(),
    );
    std::fs::write(dir.join("chainup.conf"), conf).unwrap();
    let d = dir.display();
    let user = if fixture::is_root() { "user root;" } else { "" };
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             include {d}/chainup.conf;\n}}\n"
        ),
    )
    .unwrap();
    let child = Command::new(&nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Stop(std::process::Child);
    impl Drop for Stop {
        // SIGTERM, not SIGKILL: the master stops its workers (a killed master leaves them).
        fn drop(&mut self) {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
    let mut nginx = Stop(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = nginx.0.try_wait() {
            panic!(
                "nginx exited {status}: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
        }
        assert!(std::time::Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = format!("http://127.0.0.1:{port}");
    let check = |root: &Path| {
        run(Command::new(bin("chainup"))
            .args(["check-update", "--path"])
            .arg(root)
            .args([
                "--url",
                &url,
                "--allow-insecure-http",
                "--no-progress",
                "--certpath",
            ])
            .arg(&w.keys.root))
    };
    let (on_beta, on_stable) = (check(&a), check(&b));
    assert_eq!(on_beta.status.code(), Some(0), "{}", text(&on_beta));
    assert!(
        text(&on_beta).contains("Update available: version 20"),
        "{}",
        text(&on_beta)
    );
    assert_eq!(on_stable.status.code(), Some(1), "{}", text(&on_stable));
    assert!(
        text(&on_stable).contains("server 10"),
        "{}",
        text(&on_stable)
    );
    // And the beta machine really installs 20 from the shared content through nginx.
    let root = w.dir.path().join("via-nginx");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(a.join("etc/machine-id"), root.join("etc/machine-id")).unwrap();
    ok(run(Command::new(bin("chainup"))
        .args(["os-install", "--path"])
        .arg(&root)
        .args([
            "--url",
            &url,
            "--allow-insecure-http",
            "--no-progress",
            "--certpath",
        ])
        .arg(&w.keys.root)));
    assert_eq!(hello(&root), "#!/bin/sh\necho 20\n");
}
