//! A full disk, for real: the root and the state directory on a size-limited tmpfs (needs
//! root to mount). An update that cannot fit is refused with exit 25 before anything is
//! downloaded; one that fills the disk while staging fails cleanly with the root intact;
//! once space is freed, the update goes through.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

use fixture::{expected, noise, ok, run, snapshot, text, World};

/// A tmpfs of `size` mounted on `dir` for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir));
        out.status.success().then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        ok(run(Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run(Command::new("umount").arg("-l").arg(&self.0));
    }
}

/// The world's client against a root and state directory on the small filesystem.
fn cmd(w: &World, disk: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(fixture::bin("chainup"));
    cmd.args(args)
        .arg("--path")
        .arg(disk.join("root"))
        .arg("--statedir")
        .arg(disk.join("state"))
        .args(["--url", &w.server.url(), "--allow-insecure-http"])
        .arg("--certpath")
        .arg(&w.keys.root)
        .args(["--max-retries", "1", "--retry-delay", "0", "--no-progress"]);
    cmd
}

/// A tmpfs of `size` for the world's root and state directory ([`cmd`]).
fn small_disk(w: &World, size: &str) -> Option<Tmpfs> {
    small_disk_at(&w.dir.path().join("disk"), size)
}

/// A tmpfs of `size` on `dir`, or `None` with the reason printed.
fn small_disk_at(dir: &Path, size: &str) -> Option<Tmpfs> {
    if !fixture::is_root() {
        println!("skipping: mounting a size-limited tmpfs needs root");
        return None;
    }
    let disk = Tmpfs::mount(dir, size);
    if disk.is_none() {
        println!("skipping: cannot mount a tmpfs here");
    }
    disk
}

#[test]
fn an_update_that_cannot_fit_is_refused_before_downloading() {
    let w = World::new();
    w.sample(10);
    ok(w.publish(10, &[]));
    w.derive(10, 20);
    w.file(20, "os-core", "/usr/share/big", &noise(6 << 20, 20), 0o644);
    ok(w.publish(20, &[]));
    let Some(disk) = small_disk(&w, "4m") else {
        return;
    };
    ok(run(&mut cmd(&w, &disk.0, &["os-install", "-V", "10"])));
    let before = snapshot(&disk.0.join("root"), &[]);
    w.server.clear_log();

    let out = run(&mut cmd(&w, &disk.0, &["update"]));
    assert_eq!(out.status.code(), Some(25), "{}", text(&out));
    assert!(
        text(&out).contains("not enough free space"),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&disk.0.join("root"), &[]), before);
    assert_eq!(w.server.hits_matching("/20/files/"), 0, "downloaded anyway");

    disk.resize("32m");
    ok(run(&mut cmd(&w, &disk.0, &["update"])));
    assert_eq!(
        snapshot(&disk.0.join("root"), &["/var/lib/chainup"]),
        expected(&w, 20, &["os-core"])
    );
}

#[test]
fn a_disk_that_fills_while_staging_leaves_the_root_intact() {
    let w = World::new();
    w.sample(10);
    w.file(10, "os-core", "/usr/share/big", &noise(3 << 20, 10), 0o644);
    ok(w.publish(10, &[]));
    // Same size, other bytes: the release does not grow, but staging needs 3 MiB more.
    w.derive(10, 20);
    w.file(20, "os-core", "/usr/share/big", &noise(3 << 20, 20), 0o644);
    ok(w.publish(20, &[]));
    let Some(disk) = small_disk(&w, "4m") else {
        return;
    };
    ok(run(&mut cmd(&w, &disk.0, &["os-install", "-V", "10"])));
    let root = disk.0.join("root");
    let before = snapshot(&root, &[]);

    let out = run(&mut cmd(&w, &disk.0, &["update"]));
    assert_eq!(out.status.code(), Some(25), "{}", text(&out));
    assert!(text(&out).contains("full"), "{}", text(&out));
    assert_eq!(snapshot(&root, &[]), before);
    assert!(!disk.0.join("state/journal.json").exists());
    ok(run(&mut cmd(&w, &disk.0, &["diagnose"])));

    disk.resize("32m");
    ok(run(&mut cmd(&w, &disk.0, &["update"])));
    assert_eq!(
        snapshot(&root, &["/var/lib/chainup"]),
        expected(&w, 20, &["os-core"])
    );
    ok(run(&mut cmd(&w, &disk.0, &["diagnose"])));
}

#[test]
fn publishing_onto_a_full_disk_fails_cleanly_and_publishes_nothing() {
    // The webroot on a small filesystem: a new 24 MiB core image needs it twice (fullfile
    // and chunk store), written by the publisher's pipeline (cutting, storing, appending
    // the fullfile); whichever step meets the full disk, the run must fail naming it and
    // leave no release and no half-written file behind.
    let w = World::new();
    let bundles = format!("{}\n[bundles.core-image]\n", fixture::BUNDLES);
    std::fs::write(&w.bundles_toml, bundles).unwrap();
    w.sample(10);
    let images = w.dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let core = noise(24 << 20, 10);
    std::fs::write(images.join("core"), &core).unwrap();
    std::fs::write(images.join("efi"), b"MZ test kernel\n").unwrap();
    let Some(web) = small_disk_at(&w.web, "32m") else {
        return;
    };
    let publish = || w.publish_images(10, "core-image", &images.join("core"), &images.join("efi"));

    let out = publish();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("No space left"), "{}", text(&out));
    assert!(!w.web.join("version/latest_version").exists());
    assert!(!w.web.join("10/Manifest.MoM").exists());
    let left = fixture::named_like(&w.web, ".tmp-");
    assert!(left.is_empty(), "temporaries left: {left:?}");

    // With room, the same release publishes, reusing the chunks stored before the failure.
    web.resize("128m");
    ok(publish());
    let hash = chainup::hash::hash_bytes(
        &chainup::hash::Meta::file(0o644, 0, 0, core.len() as u64),
        &core,
    );
    let fullfile = std::fs::read(w.web.join(format!("10/files/{hash}.tar"))).unwrap();
    let mut tar = tar::Archive::new(chainup::archive::decompress(&fullfile[..]).unwrap());
    let mut got = Vec::new();
    std::io::Read::read_to_end(
        &mut tar.entries().unwrap().next().unwrap().unwrap(),
        &mut got,
    )
    .unwrap();
    assert!(got == core, "the fullfile holds another image");
}
