//! `chainup hashdump` against the known values of docs/formats.md, on real files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn hashdump(args: &[&str], file: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chainup"))
        .arg("hashdump")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let hash = stdout.lines().last().unwrap_or("").to_string();
    (stdout, hash)
}

fn hash_of(file: &Path) -> String {
    hashdump(&["--quiet"], file).1
}

fn make_file(dir: &Path, name: &str, content: &[u8], mode: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn known_values_with_owners() {
    if !is_root() {
        eprintln!("skipped: chown to the owners of the known values needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // (name, content, mode, uid, gid, expected hash)
    type Case<'a> = (&'a str, &'a [u8], u32, u32, u32, &'a str);
    let cases: [Case; 4] = [
        (
            "test-data",
            b"test-data",
            0o644,
            0,
            0,
            "8286279c93f45c7ffa6b9ed440066de09716527346d9dd0239f50948e0e554f0",
        ),
        (
            "empty",
            b"",
            0o644,
            1000,
            1000,
            "b85f1dc2c2317a20f47a36d3257313b131124ffa6d4f19bb060d43014fd386b0",
        ),
        (
            "hello",
            b"hello\n",
            0o644,
            1000,
            201,
            "53b40563c1162a14d9ce0233a6b346cd0a4cbce54c40affbdf0fc286fd3bfe7b",
        ),
        (
            "script",
            b"#!/bin/sh\necho hi\n",
            0o755,
            0,
            0,
            "6abb171d997ab8ad7a761e3f49805a14aa9b9acbdd8cb26f0e2a359e281edbb5",
        ),
    ];
    for (name, content, mode, uid, gid, want) in cases {
        let p = make_file(dir.path(), name, content, mode);
        chown(&p, uid, gid);
        assert_eq!(hash_of(&p), want, "{name}");
    }
    for (mode, want) in [
        (
            0o755,
            "6c27df6efcd6fc401ff1bc67c970b83eef115f6473db4fb9d57e5de317eba96e",
        ),
        (
            0o1777,
            "d93a5e9129361e28b9e244fe422234e3a1794b001a082aeb78e16fd881673a2b",
        ),
    ] {
        let d = dir.path().join(format!("dir{mode:o}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        chown(&d, 0, 0);
        assert_eq!(hash_of(&d), want, "dir {mode:o}");
    }
    for (name, target, want) in [
        (
            "link",
            "hello",
            "73e470325111055609cd39644a852f4d7c516994eba9c2657c7c8aa208c7d9a9",
        ),
        (
            "abs",
            "/usr/lib/os-release",
            "473051264d28c798ab633c35ef42242a426e35444141dca4e12d53e1f1bef348",
        ),
        (
            "dangling",
            "../dangling",
            "23979ca627dd11734b169501ef52b9d56d657d51b4a684a81eac4a5f6fc91d6e",
        ),
    ] {
        let l = dir.path().join(name);
        std::os::unix::fs::symlink(target, &l).unwrap();
        chown(&l, 0, 0);
        assert_eq!(hash_of(&l), want, "symlink {name}");
    }
}

#[test]
fn missing_path_is_zero_and_exit_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(hash_of(&dir.path().join("nothing-here")), ZERO);
}

#[test]
fn output_matches_swupd() {
    let dir = tempfile::tempdir().unwrap();
    let p = make_file(dir.path(), "f", b"x", 0o644);
    let (out, hash) = hashdump(&[], &p);
    assert_eq!(
        out,
        format!(
            "Calculating hash with xattrs for: {}\n{hash}\n",
            p.display()
        )
    );
    let (out, _) = hashdump(&["--no-xattrs"], &p);
    assert!(
        out.starts_with("Calculating hash without xattrs for: "),
        "{out}"
    );
    let (out, _) = hashdump(&["-n"], &p);
    assert!(
        out.starts_with("Calculating hash without xattrs for: "),
        "{out}"
    );
    let (out, quiet) = hashdump(&["--quiet"], &p);
    assert_eq!(out, format!("{quiet}\n"));
    assert_eq!(quiet, hash);
}

#[test]
fn path_prefix_is_joined_and_created() {
    let dir = tempfile::tempdir().unwrap();
    make_file(dir.path(), "f", b"content", 0o644);
    let direct = hash_of(&dir.path().join("f"));
    let (out, hash) = hashdump(&["--path", dir.path().to_str().unwrap()], Path::new("/f"));
    assert_eq!(hash, direct);
    assert!(
        out.contains(&dir.path().join("f").display().to_string()),
        "{out}"
    );
    let fresh = dir.path().join("new/prefix");
    let (_, hash) = hashdump(
        &["--quiet", "--path", fresh.to_str().unwrap()],
        Path::new("x"),
    );
    assert_eq!(hash, ZERO);
    assert!(fresh.is_dir());
}

#[test]
fn xattrs_enter_the_hash_unless_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let p = make_file(dir.path(), "f", b"hello\n", 0o644);
    let plain = hash_of(&p);
    if xattr::set(&p, "user.a", b"one\0").is_err() {
        eprintln!("skipped: this filesystem has no user xattrs");
        return;
    }
    xattr::set(&p, "user.b", b"two").unwrap();
    let with = hash_of(&p);
    let without = hashdump(&["--quiet", "--no-xattrs"], &p).1;
    assert_ne!(with, plain);
    assert_eq!(without, plain);
    if is_root() {
        chown(&p, 0, 0);
        assert_eq!(
            hash_of(&p),
            "249fa485e18ca038b74656a407ff70d6a03b7f195badf6b26c23028c099e0530"
        );
    }
}

#[test]
fn streams_a_large_sparse_file() {
    // 600 MiB of holes under a 300 MB address-space limit: only a streaming hash succeeds.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(600 << 20).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 300000; exec {} hashdump --quiet {}",
            env!("CARGO_BIN_EXE_chainup"),
            p.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().len(), 64);
}

/// `hashdump --quiet --no-xattrs FILE`, killed and failed if it runs over 20 seconds.
fn hashdump_within_20s(file: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chainup"))
        .args(["hashdump", "--quiet", "--no-xattrs"])
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("hashdump {} did not return within 20 s", file.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The swupd hash of `path`'s stat record alone, no content (as swupd hashes special files).
fn metadata_hash(path: &Path) -> String {
    let md = std::fs::symlink_metadata(path).unwrap();
    let meta = chainup::hash::Meta::from_metadata(&md);
    chainup::hash::hash_bytes(&meta, b"").to_hex()
}

#[test]
fn device_nodes_hash_by_metadata_without_being_read() {
    let zero = Path::new("/dev/zero");
    assert_eq!(hashdump_within_20s(zero), metadata_hash(zero));
}

#[test]
fn fifos_hash_by_metadata_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // Held open read-write (which does not block on Linux) with bytes waiting in it: a
    // hashdump that read the FIFO would consume them, or fail on the empty pipe after.
    let mut held = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    std::io::Write::write_all(&mut held, b"still here").unwrap();
    assert_eq!(hashdump_within_20s(&fifo), metadata_hash(&fifo));
    let mut back = [0u8; 10];
    std::io::Read::read_exact(&mut held, &mut back).unwrap();
    assert_eq!(&back, b"still here");
}
