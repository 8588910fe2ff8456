//! A whole test world: a signing root made with openssl, release trees, a webroot
//! published by the real `chainup-publish`, a loopback HTTP server over it, and a target
//! root and state directory for the real `chainup` binary.
//!
//! Include with `#[path = "common/server.rs"] mod server;` and
//! `#[path = "common/fixture.rs"] mod fixture;` (fixture uses `crate::server`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::server::Server;

/// A built binary of this workspace (`cargo test --workspace` builds them all first).
pub fn bin(name: &str) -> PathBuf {
    let chainup = PathBuf::from(env!("CARGO_BIN_EXE_chainup"));
    let path = chainup.with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// True when running as root; tests that need it print why they skip.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a command and returns its output, with stdout/stderr shown on failure of `ok`.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Panics with the command's output unless it exited 0.
#[track_caller]
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Stdout and stderr together, for message checks.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The signing material of a world: a root CA and its key.
pub struct Keys {
    pub root: PathBuf,
    pub root_key: PathBuf,
}

impl Keys {
    /// A fresh RSA root, valid ten years, made with the openssl CLI.
    pub fn new(dir: &Path, name: &str) -> Keys {
        std::fs::create_dir_all(dir).unwrap();
        let root = dir.join(format!("{name}.pem"));
        let root_key = dir.join(format!("{name}.key"));
        ok(run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
            ])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&root_key)
            .arg("-out")
            .arg(&root)));
        Keys { root, root_key }
    }
}

/// One test world.
pub struct World {
    pub dir: tempfile::TempDir,
    pub keys: Keys,
    pub web: PathBuf,
    pub trees: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub bundles_toml: PathBuf,
    pub server: Server,
}

/// The bundle definitions most tests use.
pub const BUNDLES: &str = r#"
[bundles.os-core]
[bundles.editors]
includes = ["os-core"]
[bundles.devtools]
includes = ["editors"]
"#;

impl World {
    /// Keys, an empty webroot served on loopback, an empty target root.
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::new(&dir.path().join("keys"), "root");
        let web = dir.path().join("web");
        std::fs::create_dir_all(&web).unwrap();
        let bundles_toml = dir.path().join("bundles.toml");
        std::fs::write(&bundles_toml, BUNDLES).unwrap();
        World {
            server: Server::new(&web),
            trees: dir.path().join("trees"),
            root: dir.path().join("root"),
            state: dir.path().join("state"),
            keys,
            web,
            bundles_toml,
            dir,
        }
    }

    /// The tree of `bundle` in release `version`.
    pub fn tree(&self, version: u32, bundle: &str) -> PathBuf {
        self.trees.join(version.to_string()).join(bundle)
    }

    /// Writes a file into a release tree (parents created 0755), with `mode`.
    pub fn file(&self, version: u32, bundle: &str, path: &str, content: &[u8], mode: u32) {
        let p = self
            .tree(version, bundle)
            .join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Makes the usual sample release: os-core with os-release, a config file, a binary
    /// and a symlink; editors and devtools with a file each.
    pub fn sample(&self, version: u32) {
        self.file(
            version,
            "os-core",
            "/usr/lib/os-release",
            format!("NAME=chainup test\nVERSION_ID={version}\n").as_bytes(),
            0o644,
        );
        self.file(version, "os-core", "/etc/app.conf", b"setting=1\n", 0o644);
        self.file(
            version,
            "os-core",
            "/usr/bin/hello",
            format!("#!/bin/sh\necho hello {}\n", version.min(20)).as_bytes(),
            0o755,
        );
        self.file(
            version,
            "os-core",
            "/usr/share/doc/readme",
            b"read me\n",
            0o644,
        );
        let link = self.tree(version, "os-core").join("usr/bin/hi");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("hello", link).unwrap();
        self.file(version, "editors", "/usr/bin/vim", b"vim\n", 0o755);
        self.file(version, "devtools", "/usr/bin/gcc", b"gcc\n", 0o755);
        for b in ["os-core", "editors", "devtools"] {
            self.file(
                version,
                b,
                &format!("/usr/share/clear/bundles/{b}"),
                b"",
                0o644,
            );
        }
    }

    /// Copies release `from`'s trees to `to`, updating os-release.
    pub fn derive(&self, from: u32, to: u32) {
        let src = self.trees.join(from.to_string());
        let dst = self.trees.join(to.to_string());
        ok(run(Command::new("cp").arg("-a").arg(&src).arg(&dst)));
        self.file(
            to,
            "os-core",
            "/usr/lib/os-release",
            format!("NAME=chainup test\nVERSION_ID={to}\n").as_bytes(),
            0o644,
        );
    }

    /// Publishes release `version` with the world's root key; extra args go to the publisher.
    pub fn publish(&self, version: u32, extra: &[&str]) -> Output {
        run(Command::new(bin("chainup-publish"))
            .arg("--webroot")
            .arg(&self.web)
            .arg("--version")
            .arg(version.to_string())
            .arg("--trees")
            .arg(self.trees.join(version.to_string()))
            .arg("--bundles")
            .arg(&self.bundles_toml)
            .arg("--cert")
            .arg(&self.keys.root)
            .arg("--key")
            .arg(&self.keys.root_key)
            .arg("--timestamp")
            .arg((1_700_000_000 + version as u64).to_string())
            .args(extra))
    }

    /// Publishes release `version` with A/B image payloads in `bundle`
    /// (`--image BUNDLE:core=PATH --image BUNDLE:efiboot=PATH`).
    pub fn publish_images(
        &self,
        version: u32,
        bundle: &str,
        core: &Path,
        efiboot: &Path,
    ) -> Output {
        let core = format!("{bundle}:core={}", core.display());
        let efiboot = format!("{bundle}:efiboot={}", efiboot.display());
        self.publish(version, &["--image", &core, "--image", &efiboot])
    }

    /// `chainup` with the world's root, state, server and trust store.
    pub fn chainup_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("chainup"));
        cmd.args(args)
            .arg("--path")
            .arg(&self.root)
            .arg("--statedir")
            .arg(&self.state)
            .arg("--url")
            .arg(self.server.url())
            .arg("--allow-insecure-http")
            .arg("--certpath")
            .arg(&self.keys.root)
            .args(["--max-retries", "1", "--retry-delay", "0", "--no-progress"]);
        cmd
    }

    /// Runs `chainup` (see [`World::chainup_cmd`]).
    pub fn chainup(&self, args: &[&str]) -> Output {
        run(&mut self.chainup_cmd(args))
    }
}

/// What a tree holds: per path, its type, mode, owner and content (or link target).
pub type Snapshot = BTreeMap<String, (String, u32, u32, u32, Vec<u8>)>;

/// Reads every entry under `dir` (not following symlinks), skipping paths under `skip`.
pub fn snapshot(dir: &Path, skip: &[&str]) -> Snapshot {
    let mut out = Snapshot::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name().min_depth(1) {
        let e = e.unwrap();
        let rel = format!("/{}", e.path().strip_prefix(dir).unwrap().display());
        if skip
            .iter()
            .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
        {
            continue;
        }
        let md = e.path().symlink_metadata().unwrap();
        let (kind, data) = if md.is_dir() {
            ("dir", Vec::new())
        } else if md.file_type().is_symlink() {
            (
                "link",
                std::fs::read_link(e.path())
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else {
            ("file", std::fs::read(e.path()).unwrap())
        };
        let mode = if kind == "link" {
            0
        } else {
            md.mode() & 0o7777
        };
        out.insert(rel, (kind.into(), mode, md.uid(), md.gid(), data));
    }
    out
}

/// The union of a release's bundle trees, as the root should look after installing them.
pub fn expected(world: &World, version: u32, bundles: &[&str]) -> Snapshot {
    let mut out = Snapshot::new();
    for b in bundles {
        out.extend(snapshot(&world.tree(version, b), &[]));
    }
    out
}
