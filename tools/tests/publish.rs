//! Drives the real chainup-publish binary over the sample releases of manifests/ and
//! checks what it writes with chainup's own reader, the openssl CLI, and the independent
//! generator tests/gen_content.py.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chainup::archive::{decompress, header_meta, read_manifest_tar};
use chainup::hash::{hash_bytes, hash_path, Hash};
use chainup::limits::MANIFEST_TEXT;
use chainup::manifest::{Entry, EntryType, Kind, Manifest, Status};

const TS: &str = "1700000000";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A self-signed root that signs directly: (cert, key).
fn make_root(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("root.pem"), dir.join("root.key"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        ])
        .args(["-subj", "/CN=test"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

/// manifests/make-release.sh V DIR/rV; returns that directory.
fn make_release(dir: &Path, v: u32) -> PathBuf {
    let out = dir.join(format!("r{v}"));
    run(Command::new(repo().join("manifests/make-release.sh"))
        .arg(v.to_string())
        .arg(&out));
    out
}

fn publisher() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chainup-publish"));
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

/// The publish command for a sample release `rel` (from make_release) as version `v`.
fn sample(w: &Path, v: u32, rel: &Path, root: Option<&(PathBuf, PathBuf)>) -> Command {
    let mut c = publisher();
    c.arg("--webroot")
        .arg(w)
        .args(["--version", &v.to_string()]);
    c.arg("--trees").arg(rel.join("trees"));
    c.arg("--bundles")
        .arg(repo().join("manifests/bundles.toml"));
    let mut image = OsString::from("core-image:core=");
    image.push(rel.join("images/core.img"));
    c.arg("--image").arg(image);
    let mut image = OsString::from("core-image:efiboot=");
    image.push(rel.join("images/linux.efi"));
    c.arg("--image").arg(image);
    match root {
        Some((cert, key)) => c.arg("--cert").arg(cert).arg("--key").arg(key),
        None => c.arg("--no-sign"),
    };
    c
}

/// Runs a publish that must fail with exit 1; returns stderr.
fn refused(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected failure, got: {stderr}"
    );
    stderr
}

/// Checks one fullfile the way a client would: one entry named by the hash whose header
/// metadata and content hash to that name.
fn verify_fullfile(path: &Path, expected: &Hash) {
    let mut ar = tar::Archive::new(decompress(File::open(path).unwrap()).unwrap());
    let mut entries = ar.entries().unwrap();
    let mut e = entries.next().expect("one entry").unwrap();
    let name = e.path_bytes().into_owned();
    let is_dir = e.header().entry_type() == tar::EntryType::Directory;
    // Mixer (GNU tar) and Python's tarfile name a directory `<hash>/`; swupd accepts both.
    let name = match name.strip_suffix(b"/") {
        Some(n) if is_dir => n,
        _ => &name[..],
    };
    assert_eq!(name, expected.to_hex().as_bytes(), "{path:?}");
    let mut meta = header_meta(e.header()).unwrap();
    let mut data = Vec::new();
    if e.header().entry_type() == tar::EntryType::Symlink {
        // header_meta reads the target length from the 100-byte header field; a GNU long
        // link is only visible through the entry (see the report on archive.rs).
        data = e.link_name_bytes().unwrap().into_owned();
        meta.size = data.len() as u64;
    } else {
        e.read_to_end(&mut data).unwrap();
    }
    drop(e);
    assert!(entries.next().is_none(), "{path:?} has more than one entry");
    assert_eq!(&hash_bytes(&meta, &data), expected, "{path:?}");
}

/// Reads release `v` from `w` along the chain of trust (MoM -> manifest tars -> fullfiles),
/// checking every hash; returns the MoM and the bundle manifests.
fn check_release(w: &Path, v: u32) -> (Manifest, BTreeMap<String, Manifest>) {
    let read = |ver: u32, name: &str, kind| {
        let tar = File::open(w.join(format!("{ver}/Manifest.{name}.tar"))).unwrap();
        let mf = read_manifest_tar(tar, name, name, MANIFEST_TEXT).unwrap();
        let plain = std::fs::read(w.join(format!("{ver}/Manifest.{name}"))).unwrap();
        assert_eq!(
            plain, mf.text,
            "plain and tar copies of Manifest.{name} differ"
        );
        (
            Manifest::parse(&mf.text, kind).unwrap(),
            hash_bytes(&mf.meta, &mf.text),
        )
    };
    let (mom, _) = read(v, "MoM", Kind::Mom);
    assert_eq!(mom.header.version, v);
    assert_eq!(mom.header.filecount, mom.entries.len() as u64);
    let mut bundles = BTreeMap::new();
    for line in &mom.entries {
        let (m, hash) = read(line.version, &line.path, Kind::Bundle);
        assert_eq!(hash, line.hash, "MoM line of {}", line.path);
        assert_eq!(m.header.filecount, m.entries.len() as u64);
        let mut size = 0;
        for e in m.present() {
            let f = w.join(format!("{}/files/{}.tar", e.version, e.hash));
            verify_fullfile(&f, &e.hash);
            if e.etype == EntryType::File {
                size += file_size(&f);
            }
        }
        assert_eq!(m.header.contentsize, size, "contentsize of {}", line.path);
        bundles.insert(line.path.clone(), m);
    }
    (mom, bundles)
}

/// The content size recorded inside a file fullfile.
fn file_size(fullfile: &Path) -> u64 {
    let mut ar = tar::Archive::new(decompress(File::open(fullfile).unwrap()).unwrap());
    let e = ar.entries().unwrap().next().unwrap().unwrap();
    e.header().size().unwrap()
}

fn line<'a>(m: &'a Manifest, path: &str) -> &'a Entry {
    m.entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no line for {path}"))
}

fn smime_verify(root: &Path, content: &Path) {
    let mut sig = content.as_os_str().to_owned();
    sig.push(".sig");
    run(Command::new("openssl")
        .args(["smime", "-verify", "-inform", "DER", "-purpose", "any"])
        .arg("-in")
        .arg(&sig)
        .arg("-content")
        .arg(content)
        .arg("-CAfile")
        .arg(root)
        .args(["-out", "/dev/null"]));
}

/// Every file below `dir`, by relative path.
fn files_below(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn incremental_releases_keep_versions_and_chain() {
    let t = tempfile::tempdir().unwrap();
    let root = make_root(t.path());
    let w = t.path().join("www");
    let (r10, r20, r30) = (
        make_release(t.path(), 10),
        make_release(t.path(), 20),
        make_release(t.path(), 30),
    );
    let out = run(sample(&w, 10, &r10, Some(&root)).args(["--timestamp", TS]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("published version 10"));
    // No --previous: the webroot's latest (10) is the base.
    run(sample(&w, 20, &r20, Some(&root)).args(["--timestamp", TS]));

    let (_, m10) = check_release(&w, 10);
    let (mom, m20) = check_release(&w, 20);
    assert_eq!(mom.header.previous, 10);
    let core = &m20["os-core"];
    assert_eq!(core.header.previous, 10);
    let has_20_fullfile = |e: &Entry| w.join(format!("20/files/{}.tar", e.hash)).exists();

    for unchanged in [
        "/etc/hostname",
        "/usr/bin/hello",
        "/var/tmp",
        "/etc/os-release",
    ] {
        let e = line(core, unchanged);
        assert_eq!(e.version, 10, "{unchanged}");
        assert!(!has_20_fullfile(e), "{unchanged} got a new fullfile");
        assert_eq!(e, line(&m10["os-core"], unchanged));
    }
    // Changed content, a new file, a retargeted symlink and a mode change.
    for changed in [
        "/usr/lib/os-release",
        "/etc/new.conf",
        "/usr/bin/greet",
        "/usr/bin/tool",
    ] {
        let e = line(core, changed);
        assert_eq!((e.version, e.status), (20, Status::Present), "{changed}");
        assert!(has_20_fullfile(e), "{changed} has no fullfile in 20");
    }
    assert_eq!(line(core, "/usr/bin/greet").etype, EntryType::Link);
    let old = line(core, "/etc/old.conf");
    assert_eq!(
        (old.status, old.etype, old.hash, old.version),
        (Status::Deleted, EntryType::Unset, Hash::ZERO, 20)
    );
    assert!(core
        .serialize()
        .contains(&format!(".d..\t{}\t20\t/etc/old.conf\n", Hash::ZERO)));
    let release = std::fs::read(r20.join("trees/os-core/usr/lib/os-release")).unwrap();
    assert!(String::from_utf8_lossy(&release).contains("VERSION_ID=20"));

    // Bundles without a change keep their manifest from 10.
    for kept in ["devtools", "docs"] {
        let m = line(&mom, kept);
        assert_eq!(m.version, 10, "{kept}");
        assert!(!w.join(format!("20/Manifest.{kept}.tar")).exists());
        assert_eq!(m20[kept].header.version, 10);
    }
    assert_eq!(line(&mom, "editors").version, 20);
    // The image changed, the EFI binary did not.
    let images = &m20["core-image"];
    assert_eq!(line(images, "/core").version, 20);
    assert_eq!(line(images, "/efiboot").version, 10);
    assert!(!has_20_fullfile(line(images, "/efiboot")));
    assert!(line(images, "/usr/share/clear/bundles/core-image").is_present());

    for signed in [
        "20/Manifest.MoM",
        "version/format30/latest",
        "version/latest_version",
    ] {
        smime_verify(&root.0, &w.join(signed));
    }
    assert_eq!(
        std::fs::read_to_string(w.join("version/format30/latest")).unwrap(),
        "20\n"
    );
    assert_eq!(
        std::fs::read_to_string(w.join("20/format")).unwrap(),
        "30\n"
    );

    // 30: the deletion from 20 is carried over as it was, devtools now changes.
    run(sample(&w, 30, &r30, Some(&root)).args(["--timestamp", TS]));
    let (mom30, m30) = check_release(&w, 30);
    assert_eq!(line(&m30["os-core"], "/etc/old.conf"), old);
    assert_eq!(line(&mom30, "devtools").version, 30);
    assert_eq!(line(&mom30, "docs").version, 10);
    assert_eq!(line(&m30["core-image"], "/efiboot").version, 30);

    // Every fullfile on the server is well formed, referenced or not.
    for (rel, _) in files_below(&w) {
        if rel.parent().is_some_and(|p| p.ends_with("files")) {
            let name = rel.file_stem().unwrap().to_str().unwrap();
            verify_fullfile(&w.join(&rel), &name.parse().unwrap());
        }
    }
}

#[test]
fn same_input_gives_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let root = make_root(t.path());
    let (r10, r20) = (make_release(t.path(), 10), make_release(t.path(), 20));
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for v in [10, 20] {
        let rel = if v == 10 { &r10 } else { &r20 };
        run(sample(&a, v, rel, Some(&root)).args(["--timestamp", TS]));
        let out = run(sample(&b, v, rel, None).env("SOURCE_DATE_EPOCH", TS));
        let note = String::from_utf8_lossy(&out.stderr);
        assert!(note.contains("openssl smime -sign -binary"), "{note}");
    }
    let signed = files_below(&a);
    let unsigned = files_below(&b);
    assert!(unsigned
        .keys()
        .all(|p| p.extension().is_none_or(|x| x != "sig")));
    let without_sigs: BTreeMap<_, _> = signed
        .into_iter()
        .filter(|(p, _)| p.extension().is_none_or(|x| x != "sig"))
        .collect();
    assert_eq!(
        without_sigs.keys().collect::<Vec<_>>(),
        unsigned.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &without_sigs {
        assert!(bytes == &unsigned[path], "{path:?} differs");
    }
    assert!(without_sigs.keys().any(|p| p.starts_with("20/files")));
}

#[test]
fn refusals_name_the_problem() {
    let t = tempfile::tempdir().unwrap();
    let w = t.path().join("www");
    let trees = t.path().join("trees");
    let doc = trees.join("docs/usr/share/doc");
    std::fs::create_dir_all(&doc).unwrap();
    std::fs::write(doc.join("manual.txt"), "read me\n").unwrap();
    let bundles = |text: &str| {
        let p = t.path().join("b.toml");
        std::fs::write(&p, text).unwrap();
        p
    };
    let docs = "[bundles.docs]\n";
    let publish = |b: &str, v: &str| {
        let mut c = publisher();
        c.arg("--webroot").arg(&w).arg("--bundles").arg(bundles(b));
        c.arg("--trees").arg(&trees);
        c.args(["--version", v, "--no-sign", "--timestamp", TS]);
        c
    };

    let e = refused(&mut publish(
        "[bundles.docs]\nincludes = [\"nope\"]\n",
        "10",
    ));
    assert!(e.contains("unknown bundle \"nope\""), "{e}");
    let cyc =
        "[bundles.docs]\nincludes = [\"os-core\"]\n[bundles.os-core]\nincludes = [\"docs\"]\n";
    let e = refused(&mut publish(cyc, "10"));
    assert!(e.contains("include cycle"), "{e}");
    let e = refused(&mut publish("[bundles.docs]\n[bundles.ghost]\n", "10"));
    assert!(e.contains("ghost") && e.contains("no tree"), "{e}");
    let e = refused(&mut publish("[bundles.other]\n", "10"));
    assert!(e.contains("trees/docs is not a bundle defined"), "{e}");

    let fifo = doc.join("pipe");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let e = refused(&mut publish(docs, "10"));
    assert!(
        e.contains("fifo") && e.contains("usr/share/doc/pipe"),
        "{e}"
    );
    std::fs::remove_file(&fifo).unwrap();

    let bad = doc.join(PathBuf::from(OsString::from_vec(b"bad\xffname".to_vec())));
    std::fs::write(&bad, "").unwrap();
    let e = refused(&mut publish(docs, "10"));
    assert!(e.contains("not valid UTF-8"), "{e}");
    std::fs::remove_file(&bad).unwrap();
    assert!(
        !w.join("version").exists(),
        "a refused run published something"
    );

    run(&mut publish(docs, "10"));
    let e = refused(&mut publish(docs, "10"));
    assert!(e.contains("version 10 is not newer than 10"), "{e}");
    let e = refused(publish(docs, "9").args(["--previous", "5"]));
    assert!(e.contains("not newer"), "{e}");
    let e = refused(publish(docs, "20").args(["--previous", "5"]));
    assert!(e.contains("previous release 5"), "{e}");

    // Usage errors exit 2: neither --cert nor --no-sign.
    let out = publisher()
        .arg("--webroot")
        .arg(&w)
        .args(["--version", "30"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn symlink_targets_survive_byte_for_byte() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("trees/os-core");
    std::fs::create_dir_all(&tree).unwrap();
    let long = format!("../{}/target", "x".repeat(180));
    std::os::unix::fs::symlink(&long, tree.join("long")).unwrap();
    std::os::unix::fs::symlink("a//b/./c", tree.join("odd")).unwrap();
    let b = t.path().join("b.toml");
    std::fs::write(&b, "[bundles.os-core]\n").unwrap();
    let w = t.path().join("www");
    run(publisher()
        .arg("--webroot")
        .arg(&w)
        .arg("--trees")
        .arg(t.path().join("trees"))
        .arg("--bundles")
        .arg(&b)
        .args(["--version", "10", "--no-sign", "--timestamp", TS]));
    let (_, m) = check_release(&w, 10);
    for name in ["long", "odd"] {
        let e = line(&m["os-core"], &format!("/{name}"));
        assert_eq!(e.hash, hash_path(&tree.join(name), false).unwrap());
    }
}

#[test]
fn owners_and_modes_are_published_as_on_disk() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to chown files to 1000:201");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("trees/os-core");
    std::fs::create_dir_all(&tree).unwrap();
    let hello = tree.join("hello");
    std::fs::write(&hello, "hello\n").unwrap();
    std::os::unix::fs::chown(&hello, Some(1000), Some(201)).unwrap();
    let img = t.path().join("core.img");
    std::fs::write(&img, "test-data").unwrap();
    std::os::unix::fs::chown(&img, Some(1000), Some(1000)).unwrap();
    let b = t.path().join("b.toml");
    std::fs::write(&b, "[bundles.os-core]\n").unwrap();
    let w = t.path().join("www");
    let mut image = OsString::from("os-core:core=");
    image.push(&img);
    run(publisher()
        .arg("--webroot")
        .arg(&w)
        .arg("--trees")
        .arg(t.path().join("trees"))
        .arg("--bundles")
        .arg(&b)
        .arg("--image")
        .arg(image)
        .args(["--version", "10", "--no-sign", "--timestamp", TS]));
    let (_, m) = check_release(&w, 10);
    let e = line(&m["os-core"], "/hello");
    // Known vector: "hello\n" 0644 1000:201 (docs/formats.md).
    assert_eq!(
        e.hash.to_hex(),
        "53b40563c1162a14d9ce0233a6b346cd0a4cbce54c40affbdf0fc286fd3bfe7b"
    );
    // Images are published as root-owned 0644 whatever their owner: "test-data" vector.
    let e = line(&m["os-core"], "/core");
    assert_eq!(
        e.hash.to_hex(),
        "8286279c93f45c7ffa6b9ed440066de09716527346d9dd0239f50948e0e554f0"
    );
}

#[test]
fn independent_generator_agrees_with_publisher() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = make_root(t.path());
    let r10 = make_release(t.path(), 10);
    let r20 = make_release(t.path(), 20);
    let (g, w) = (t.path().join("gen"), t.path().join("pub"));
    let b = t.path().join("b.toml");
    std::fs::write(&b, "[bundles.os-core]\n").unwrap();
    for (v, rel) in [(10, &r10), (20, &r20)] {
        let tree = rel.join("trees/os-core");
        // The publisher refuses trees no bundle claims: give it os-core alone.
        let only = t.path().join(format!("only{v}"));
        std::fs::create_dir(&only).unwrap();
        std::os::unix::fs::symlink(&tree, only.join("os-core")).unwrap();
        let mut gen = Command::new("python3");
        gen.arg(repo().join("tests/gen_content.py"))
            .arg("--tree")
            .arg(&tree)
            .args([
                "--bundle",
                "os-core",
                "--version",
                &v.to_string(),
                "--timestamp",
                TS,
            ])
            .arg("--out")
            .arg(&g)
            .arg("--cert")
            .arg(&root.0)
            .arg("--key")
            .arg(&root.1);
        if v == 20 {
            gen.arg("--previous-webroot")
                .arg(&g)
                .args(["--previous", "10"]);
        }
        run(&mut gen);
        run(publisher()
            .arg("--webroot")
            .arg(&w)
            .arg("--trees")
            .arg(&only)
            .arg("--bundles")
            .arg(&b)
            .args(["--version", &v.to_string(), "--no-sign", "--timestamp", TS]));

        let (_, gm) = check_release(&g, v);
        for e in gm["os-core"].present() {
            assert_eq!(
                e.hash,
                hash_path(&tree.join(&e.path[1..]), false).unwrap(),
                "{}",
                e.path
            );
        }
        smime_verify(&root.0, &g.join(format!("{v}/Manifest.MoM")));
        // Two implementations of the format, one text.
        for name in ["Manifest.os-core", "Manifest.MoM"] {
            let ours = std::fs::read(w.join(format!("{v}/{name}"))).unwrap();
            let theirs = std::fs::read(g.join(format!("{v}/{name}"))).unwrap();
            assert!(ours == theirs, "{v}/{name} differs");
        }
    }
}

#[test]
fn a_directory_turning_into_a_file_or_symlink_is_warned_about() {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("b.toml");
    std::fs::write(&b, "[bundles.os-core]\n").unwrap();
    let w = t.path().join("www");
    let publish = |v: u32| {
        let trees = t.path().join(format!("trees{v}"));
        run(publisher()
            .arg("--webroot")
            .arg(&w)
            .arg("--trees")
            .arg(&trees)
            .arg("--bundles")
            .arg(&b)
            .args(["--version", &v.to_string(), "--no-sign", "--timestamp", TS]))
    };
    let tree = |v: u32| t.path().join(format!("trees{v}/os-core"));
    for dir in ["usr/share/thing", "usr/lib/other", "usr/lib/kept"] {
        std::fs::create_dir_all(tree(10).join(dir)).unwrap();
    }
    std::fs::write(tree(10).join("usr/share/thing/inside"), "x").unwrap();
    let quiet = publish(10);
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("warning"));

    std::fs::create_dir_all(tree(20).join("usr/lib/kept")).unwrap();
    std::fs::create_dir_all(tree(20).join("usr/share")).unwrap();
    std::fs::write(tree(20).join("usr/share/thing"), "now a file\n").unwrap();
    std::os::unix::fs::symlink("kept", tree(20).join("usr/lib/other")).unwrap();
    let out = publish(20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = |path: &str, what: &str| {
        format!("warning: {path} was a directory in version 10 and is {what} in version 20")
    };
    assert!(
        stderr.contains(&warning("/usr/share/thing", "a file")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&warning("/usr/lib/other", "a symlink")),
        "{stderr}"
    );
    assert!(!stderr.contains("/usr/lib/kept"), "{stderr}");
    // A warning, not a refusal: the release is published with the new types.
    let (_, m) = check_release(&w, 20);
    assert_eq!(
        line(&m["os-core"], "/usr/share/thing").etype,
        EntryType::File
    );
    assert_eq!(line(&m["os-core"], "/usr/lib/other").etype, EntryType::Link);
}
