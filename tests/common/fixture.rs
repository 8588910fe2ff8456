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

/// Without root, prints why `test` skips (`why`: what needs root) and returns true.
pub fn skip_unless_root(test: &str, why: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIP {test}: needs root ({why})");
    true
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
        World::in_dir(tempfile::tempdir().unwrap())
    }

    /// Like [`World::new`], under /dev/shm when it is there: big worlds are created, synced
    /// and removed many times faster on tmpfs than on a disk mounted with `discard`.
    pub fn on_tmpfs() -> World {
        let shm = Path::new("/dev/shm");
        match tempfile::tempdir_in(shm) {
            Ok(dir) => World::in_dir(dir),
            Err(_) => World::new(),
        }
    }

    fn in_dir(dir: tempfile::TempDir) -> World {
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

    /// The sample release 10, published and os-installed into the world's root.
    pub fn install_sample(&self) {
        self.sample(10);
        ok(self.publish(10, &[]));
        ok(self.chainup(&["os-install", "-V", "10"]));
    }

    /// Gives release `version`'s `/usr/bin/hello` new content (naming the version).
    pub fn change_hello(&self, version: u32) {
        let script = format!("#!/bin/sh\necho {version}\n");
        self.file(
            version,
            "os-core",
            "/usr/bin/hello",
            script.as_bytes(),
            0o755,
        );
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
        self.chainup_cmd_at(&self.root, args)
    }

    /// [`World::chainup_cmd`] for another target root (same state directory).
    pub fn chainup_cmd_at(&self, root: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("chainup"));
        cmd.args(args)
            .arg("--path")
            .arg(root)
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

/// Every path under `dir` whose name starts with `prefix` (temporaries, debris), sorted.
pub fn named_like(dir: &Path, prefix: &str) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path().display().to_string())
        .collect()
}

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

impl World {
    /// Like [`World::new`], but signing with `keys` (e.g. a root from the test PKI).
    pub fn with_keys(keys: Keys) -> World {
        let mut w = World::new();
        w.keys = keys;
        w
    }

    /// The manifest cache, where swupd keeps it: `STATEDIR/cache/<content URL with ':'
    /// and '/' as '_'>/manifest` (written out here, not taken from the library, so the
    /// tests hold the client to swupd's layout).
    pub fn manifest_cache(&self) -> PathBuf {
        let name = self
            .server
            .url()
            .trim_end_matches('/')
            .replace([':', '/'], "_");
        self.state.join("cache").join(name).join("manifest")
    }

    /// A path under the webroot (`"20/Manifest.MoM"`).
    pub fn web(&self, rel: &str) -> PathBuf {
        self.web.join(rel)
    }

    /// Changes owner (not following symlinks) of a path in a release tree; as root only.
    pub fn chown(&self, version: u32, bundle: &str, path: &str, uid: u32, gid: u32) {
        let p = self
            .tree(version, bundle)
            .join(path.trim_start_matches('/'));
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    }

    /// Makes a directory (and parents) in a release tree with `mode`.
    pub fn dir(&self, version: u32, bundle: &str, path: &str, mode: u32) {
        let p = self
            .tree(version, bundle)
            .join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Makes (or replaces) a symlink in a release tree.
    pub fn symlink(&self, version: u32, bundle: &str, path: &str, target: &str) {
        let p = self
            .tree(version, bundle)
            .join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    /// Removes a file, symlink or directory tree from a release tree.
    pub fn remove(&self, version: u32, bundle: &str, path: &str) {
        let p = self
            .tree(version, bundle)
            .join(path.trim_start_matches('/'));
        let md = p.symlink_metadata().unwrap();
        if md.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    /// `chainup` with the world's settings but without `--allow-insecure-http`.
    pub fn chainup_cmd_strict(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("chainup"));
        cmd.args(args)
            .arg("--path")
            .arg(&self.root)
            .arg("--statedir")
            .arg(&self.state)
            .arg("--url")
            .arg(self.server.url())
            .arg("--certpath")
            .arg(&self.keys.root)
            .args(["--max-retries", "1", "--retry-delay", "0", "--no-progress"]);
        cmd
    }

    /// The chainup binary under swupd's name (a symlink), so nothing depends on argv[0].
    pub fn swupd_bin(&self) -> PathBuf {
        let link = self.dir.path().join("bin/swupd");
        if !link.exists() {
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(bin("chainup"), &link).unwrap();
        }
        link
    }

    /// Publishes release `version` of os-core from the world's tree with the independent
    /// generator (tests/gen_content.py, written from the format description, not from
    /// chainup's code), signed with the world's root key, manifests chained to `previous`.
    pub fn generate_independently(&self, version: u32, previous: Option<u32>) {
        let generator = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gen_content.py");
        let mut cmd = Command::new("python3");
        cmd.arg(generator)
            .arg("--tree")
            .arg(self.tree(version, "os-core"))
            .args(["--bundle", "os-core", "--version", &version.to_string()])
            .arg("--out")
            .arg(&self.web)
            .arg("--cert")
            .arg(&self.keys.root)
            .arg("--key")
            .arg(&self.keys.root_key)
            .args(["--timestamp", &(1_700_000_000 + version).to_string()]);
        if let Some(p) = previous {
            cmd.arg("--previous-webroot")
                .arg(&self.web)
                .args(["--previous", &p.to_string()]);
        }
        ok(run(&mut cmd));
    }

    /// Re-signs `W/<version>/Manifest.MoM` with `openssl smime -sign -binary -outform
    /// DER` by `cert`/`key` (`extra`: e.g. `-certfile`, `-nocerts`) into `Manifest.MoM.sig`.
    pub fn sign_mom(&self, version: u32, cert: &Path, key: &Path, extra: &[&str]) {
        let mom = self.web(&format!("{version}/Manifest.MoM"));
        sign_file(&mom, cert, key, extra);
    }

    /// Replaces `W/<version>/Manifest.<name>.tar` (and the plain copy) with `text`, and
    /// returns the swupd hash the new manifest has (0644 root:root, as published).
    pub fn put_manifest(&self, version: u32, name: &str, text: &str) -> String {
        let dir = self.web(&version.to_string());
        std::fs::write(dir.join(format!("Manifest.{name}")), text).unwrap();
        std::fs::write(
            dir.join(format!("Manifest.{name}.tar")),
            manifest_tar(&format!("Manifest.{name}"), text.as_bytes()),
        )
        .unwrap();
        let meta = chainup::hash::Meta::file(0o644, 0, 0, text.len() as u64);
        chainup::hash::hash_bytes(&meta, text.as_bytes()).to_hex()
    }

    /// The text of `W/<version>/Manifest.<name>` as published.
    pub fn manifest_text(&self, version: u32, name: &str) -> String {
        std::fs::read_to_string(self.web(&format!("{version}/Manifest.{name}"))).unwrap()
    }

    /// Rewrites bundle `name`'s manifest of `version` with `edit`, points the MoM at it and
    /// re-signs the MoM with the world key: validly signed content with the edit in it.
    pub fn resign_manifest(&self, version: u32, name: &str, edit: impl FnOnce(&str) -> String) {
        let text = edit(&self.manifest_text(version, name));
        let hash = self.put_manifest(version, name, &text);
        let mom: String = self
            .manifest_text(version, "MoM")
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                if f.len() == 4 && f[0].starts_with('M') && f[3] == name {
                    format!("{}\t{hash}\t{version}\t{name}\n", f[0])
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        self.put_manifest(version, "MoM", &mom);
        self.sign_mom(version, &self.keys.root, &self.keys.root_key, &[]);
    }

    /// The manifest line of `path` in bundle `bundle` of `version`: (flags, hash, version).
    pub fn entry(&self, version: u32, bundle: &str, path: &str) -> (String, String, u32) {
        let text = self.manifest_text(version, bundle);
        let line = text
            .lines()
            .find(|l| l.split('\t').nth(3) == Some(path))
            .unwrap_or_else(|| panic!("{path} is not in Manifest.{bundle} of {version}"));
        let f: Vec<&str> = line.split('\t').collect();
        (f[0].into(), f[1].into(), f[2].parse().unwrap())
    }
}

/// `openssl smime -sign -binary -outform DER` over `data` into `<data>.sig`.
pub fn sign_file(data: &Path, cert: &Path, key: &Path, extra: &[&str]) {
    let mut sig = data.as_os_str().to_owned();
    sig.push(".sig");
    ok(run(Command::new("openssl")
        .args(["smime", "-sign", "-binary", "-outform", "DER", "-in"])
        .arg(data)
        .arg("-out")
        .arg(sig)
        .arg("-signer")
        .arg(cert)
        .arg("-inkey")
        .arg(key)
        .args(extra)));
}

/// An xz tar holding one regular file `name` (0644 root:root) with `data`, as manifests are
/// served.
pub fn manifest_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let raw = one_entry_tar(name, data, 0o644, 0, 0);
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut xz, &raw).unwrap();
    xz.finish().unwrap()
}

/// An uncompressed tar with one regular file `name`.
pub fn one_entry_tar(name: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

/// `len` bytes that do not compress (xorshift from `seed`), different per seed, so a
/// fullfile is as large as its content and a delta between two seeds is useless.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
