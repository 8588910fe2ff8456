//! The client against content made by an independent generator (`tests/gen_content.py`,
//! written from the format description alone): mixer's line order, uncompressed, gzip and
//! xz fullfiles, directory entries named `<hash>/`.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::path::Path;

use fixture::{expected, ok, snapshot, text, World};

#[test]
fn independently_generated_content_installs_and_updates() {
    let w = World::on_tmpfs();
    w.sample(10);
    // Only os-core is used: the generator makes one bundle per run.
    w.dir(10, "os-core", "/usr/share/sticky", 0o1777);
    for i in 0..12 {
        // Enough files that every fullfile compression the generator picks is used.
        let data = format!("file {i}\n").repeat(i + 1);
        w.file(
            10,
            "os-core",
            &format!("/usr/share/many/{i}"),
            data.as_bytes(),
            0o644,
        );
    }
    w.file(10, "os-core", "/usr/share/owned", b"hello\n", 0o640);
    w.file(10, "os-core", "/usr/share/gone", b"deleted in 20\n", 0o644);
    if fixture::is_root() {
        w.chown(10, "os-core", "/usr/share/owned", 1000, 201);
    } else {
        println!("not root: the 1000:201 owner is left out");
    }
    w.generate_independently(10, None);
    let compressions: std::collections::BTreeSet<&str> = std::fs::read_dir(w.web("10/files"))
        .unwrap()
        .map(|e| {
            let head = std::fs::read(e.unwrap().path()).unwrap();
            match head[..6] {
                [0x1f, 0x8b, ..] => "gzip",
                [0xfd, b'7', b'z', b'X', b'Z', 0] => "xz",
                _ => "none",
            }
        })
        .collect();
    assert_eq!(compressions.len(), 3, "{compressions:?}");

    ok(w.chainup(&["os-install", "-V", "10"]));
    assert_eq!(snapshot(&w.root, &[]), expected(&w, 10, &["os-core"]));

    w.derive(10, 20);
    w.file(
        20,
        "os-core",
        "/usr/bin/hello",
        b"#!/bin/sh\necho gen 20\n",
        0o755,
    );
    w.file(20, "os-core", "/usr/share/many/3", b"changed\n", 0o600);
    w.remove(20, "os-core", "/usr/share/gone");
    w.symlink(20, "os-core", "/usr/bin/hi", "/usr/bin/hello");
    w.file(20, "os-core", "/usr/share/new/file", b"new in 20\n", 0o644);
    w.generate_independently(20, Some(10));
    let manifest = w.manifest_text(20, "os-core");
    assert!(manifest.contains(".d..\t"), "{manifest}");
    assert!(manifest.contains("\t10\t/usr/share/many/0\n"), "{manifest}");

    w.server.clear_log();
    let out = ok(w.chainup(&["update"]));
    assert!(text(&out).contains("to version 20"), "{}", text(&out));
    assert_eq!(snapshot(&w.root, &[]), expected(&w, 20, &["os-core"]));
    assert!(!Path::new(&w.root.join("usr/share/gone")).exists());
    // Unchanged entries were not fetched again.
    assert_eq!(w.server.hits_matching("/10/files/"), 0);
}
