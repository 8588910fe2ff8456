//! Refusals through the real binaries: each attack on the content or the server ends in a
//! non-zero exit, a message naming the cause, and a root left byte for byte as it was.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/pki.rs"]
mod pki;
#[path = "common/server.rs"]
mod server;

use std::process::Output;

use fixture::{expected, ok, snapshot, text, Keys, Snapshot, World};

const NEW_HELLO: &[u8] = b"#!/bin/sh\necho twenty\n";

/// Releases 10 and 20 published (20 changes /usr/bin/hello); with `install`, 10 is installed.
fn world_with(w: World, install: bool) -> World {
    w.sample(10);
    ok(w.publish(10, &[]));
    w.derive(10, 20);
    w.file(20, "os-core", "/usr/bin/hello", NEW_HELLO, 0o755);
    // Fullfiles only: these attacks are on the fullfile path (packs: tests/deltas.rs).
    ok(w.publish(20, &["--delta-packs", "0"]));
    if install {
        ok(w.chainup(&["os-install", "-V", "10"]));
    }
    w
}

fn world() -> World {
    world_with(World::on_tmpfs(), true)
}

fn root(w: &World) -> Snapshot {
    snapshot(&w.root, &[])
}

/// Runs chainup with `args` and checks the refusal: exit `code` (or any non-zero), every
/// one of `causes` in the output, and the root unchanged. Returns the output text.
#[track_caller]
fn refused(w: &World, args: &[&str], code: Option<i32>, causes: &[&str]) -> String {
    let before = root(w);
    let out = w.chainup(args);
    check_refusal(&out, code, causes);
    assert_eq!(root(w), before, "the root changed");
    text(&out)
}

#[track_caller]
fn check_refusal(out: &Output, code: Option<i32>, causes: &[&str]) {
    let t = text(out);
    match code {
        Some(c) => assert_eq!(out.status.code(), Some(c), "{t}"),
        None => assert!(
            !out.status.success() && out.status.code().is_some(),
            "expected a clean failure: {:?}\n{t}",
            out.status
        ),
    }
    for cause in causes {
        assert!(t.contains(cause), "{cause:?} not in:\n{t}");
    }
}

/// After the attack is undone, the same update goes through: the refusal was for that cause.
#[track_caller]
fn then_update_works(w: &World) {
    ok(w.chainup(&["update"]));
    assert_eq!(root(w), expected(w, 20, &["os-core"]));
}

#[test]
fn bad_mom_signatures_are_refused() {
    let w = world();
    let sig = w.web("20/Manifest.MoM.sig");
    let good = std::fs::read(&sig).unwrap();
    // A valid signature by the right key, over other bytes (release 10's MoM).
    std::fs::copy(w.web("10/Manifest.MoM.sig"), &sig).unwrap();
    refused(&w, &["update"], Some(4), &["signature", "20/Manifest.MoM"]);
    // Garbage.
    std::fs::write(&sig, b"\x30\x82garbage").unwrap();
    refused(&w, &["update"], Some(4), &["signature", "not a DER PKCS#7"]);
    // No signature at all.
    std::fs::remove_file(&sig).unwrap();
    refused(&w, &["update"], Some(4), &["Manifest.MoM.sig", "HTTP 404"]);
    std::fs::write(&sig, good).unwrap();
    then_update_works(&w);
}

#[test]
fn mom_signed_under_another_root_is_refused() {
    let w = world();
    let other = Keys::new(&w.dir.path().join("other"), "other root");
    w.sign_mom(20, &other.root, &other.root_key, &[]);
    refused(
        &w,
        &["update"],
        Some(4),
        &["signature", "does not end in the trust store"],
    );
    w.sign_mom(20, &w.keys.root, &w.keys.root_key, &[]);
    then_update_works(&w);
}

#[test]
fn expired_signer_is_refused_and_a_valid_intermediate_accepted() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::new(pki_dir.path());
    let keys = Keys {
        root: pki.root.clone(),
        root_key: pki.root_key.clone(),
    };
    let w = world_with(World::with_keys(keys), false);
    // Signed by an intermediate embedded in the signature: accepted.
    w.sign_mom(10, &pki.inter, &pki.inter_key, &[]);
    ok(w.chainup(&["os-install", "-V", "10"]));
    // Signed by an expired intermediate, embedded the same way: refused.
    w.sign_mom(20, &pki.expired_inter, &pki.expired_inter_key, &[]);
    refused(&w, &["update"], Some(4), &["signature", "expired"]);
    w.sign_mom(20, &pki.inter, &pki.inter_key, &[]);
    then_update_works(&w);
}

#[test]
fn tampered_bundle_manifest_is_refused() {
    let w = world();
    let (_, hello, _) = w.entry(20, "os-core", "/usr/bin/hello");
    let (_, other, _) = w.entry(10, "os-core", "/usr/bin/hello");
    let text = w.manifest_text(20, "os-core").replace(&hello, &other);
    w.put_manifest(20, "os-core", &text);
    refused(
        &w,
        &["update"],
        Some(14),
        &["hash mismatch", "20/Manifest.os-core.tar"],
    );
}

#[test]
fn tampered_fullfile_is_refused_with_both_hashes() {
    let w = world();
    let (_, hash, version) = w.entry(20, "os-core", "/usr/bin/hello");
    let evil = b"#!/bin/sh\nrm -rf /\n";
    let path = w.web(&format!("{version}/files/{hash}.tar"));
    let good = std::fs::read(&path).unwrap();
    // Owned by whoever runs the test: the chown then succeeds without root too, and
    // the hash check is what refuses the file.
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    std::fs::write(
        &path,
        fixture::one_entry_tar(&hash, evil, 0o755, uid.into(), gid.into()),
    )
    .unwrap();
    let meta = chainup::hash::Meta::file(0o755, uid, gid, evil.len() as u64);
    let actual = chainup::hash::hash_bytes(&meta, evil).to_hex();
    refused(
        &w,
        &["update"],
        Some(38),
        &["/usr/bin/hello", &format!("expected {hash}"), &actual],
    );
    // Nothing unverified is left where a later run could pick it up.
    std::fs::write(&path, good).unwrap();
    then_update_works(&w);
}

#[test]
fn mom_of_another_version_is_mix_and_match() {
    let w = world();
    for f in ["Manifest.MoM.tar", "Manifest.MoM.sig"] {
        std::fs::copy(w.web(&format!("10/{f}")), w.web(&format!("20/{f}"))).unwrap();
    }
    refused(&w, &["update"], Some(4), &["mix-and-match", "version 10"]);
}

#[test]
fn versions_below_the_high_water_mark_are_refused() {
    let w = world();
    w.derive(20, 30);
    ok(w.publish(30, &[]));
    // Another root installed 30 with the same state directory: the mark is 30.
    let other = w.dir.path().join("other-root");
    ok(fixture::run(
        &mut w.chainup_cmd_at(&other, &["os-install", "-V", "30"]),
    ));

    // This root is at 10: updating to 20 (newer than it, older than the mark) is a rollback.
    refused(&w, &["update", "-V", "20"], Some(4), &["rollback", "30"]);
    // An install of 20 into an empty root is refused the same way.
    let empty = w.dir.path().join("empty-root");
    let out = fixture::run(&mut w.chainup_cmd_at(&empty, &["os-install", "-V", "20"]));
    check_refusal(&out, Some(4), &["rollback"]);
    assert!(snapshot(&empty, &[]).is_empty());
    // The mark does not stop the newest version.
    ok(w.chainup(&["update"]));
    assert_eq!(root(&w), expected(&w, 30, &["os-core"]));
}

#[test]
fn plain_http_needs_allow_insecure_http() {
    let w = world();
    let before = root(&w);
    let out = fixture::run(&mut w.chainup_cmd_strict(&["update"]));
    check_refusal(&out, Some(15), &["http://", "--allow-insecure-http"]);
    assert_eq!(root(&w), before);
    assert_eq!(w.server.hits_matching("/20/"), 0);
}

#[test]
fn signed_manifest_with_dotdot_path_is_refused_before_any_download() {
    let w = world();
    let mut line_no = 0;
    w.resign_manifest(20, "os-core", |text| {
        let out: String = text
            .lines()
            .map(|l| {
                format!(
                    "{}\n",
                    l.replace("\t/usr/bin/hello", "\t/usr/bin/../../etc/evil")
                )
            })
            .collect();
        line_no = 1 + out
            .lines()
            .position(|l| l.ends_with("/etc/evil"))
            .expect("the hello line");
        out
    });
    w.server.clear_log();
    refused(
        &w,
        &["update"],
        Some(14),
        &["Manifest.os-core", &format!("line {line_no}"), "\"..\""],
    );
    assert_eq!(w.server.hits_matching("/20/files/"), 0);
}

#[test]
fn endless_responses_are_cut_off() {
    let w = world();
    w.server.endless("/20/files/");
    refused(&w, &["update"], None, &["/20/files/"]);
    w.server.clear_faults();
    w.server.endless("/version/");
    refused(&w, &["update"], None, &["version/format30/latest"]);
    w.server.clear_faults();
    then_update_works(&w);
}

#[test]
fn nosigcheck_warns_loudly_but_still_checks_hashes() {
    let w = world();
    std::fs::write(w.web("20/Manifest.MoM.sig"), b"garbage").unwrap();
    std::fs::write(w.web("version/format30/latest.sig"), b"garbage").unwrap();
    // A bad file hash is still refused.
    let (_, hash, version) = w.entry(20, "os-core", "/usr/bin/hello");
    let path = w.web(&format!("{version}/files/{hash}.tar"));
    let good = std::fs::read(&path).unwrap();
    // Owned by whoever runs the test: the chown then succeeds without root too, and
    // the hash check is what refuses the file.
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    std::fs::write(
        &path,
        fixture::one_entry_tar(&hash, b"evil\n", 0o755, uid.into(), gid.into()),
    )
    .unwrap();
    let t = refused(
        &w,
        &["update", "--nosigcheck"],
        Some(38),
        &["hash mismatch"],
    );
    assert!(t.contains("WARNING"), "{t}");

    // With the file back, the update proceeds despite the bad signatures, loudly.
    std::fs::write(&path, good).unwrap();
    let out = ok(w.chainup(&["update", "-n"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING: signature checks are OFF"),
        "{stderr}"
    );
    assert_eq!(root(&w), expected(&w, 20, &["os-core"]));
}
