//! Packs and deltas through the real binaries: an update of a few changed bytes costs a
//! fraction of the fullfiles; broken, stale or missing packs fall back to fullfiles and say
//! so; hostile packs are refused with the root untouched; and packs in mixer's layout from
//! an independent generator (`tests/gen_pack.py`) are applied.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use fixture::{expected, noise, ok, run, snapshot, text, World};

const GEN_PACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gen_pack.py");

/// Release 10 with `n` data files in os-core, release 20 with every `step`-th changed by
/// two bytes; both published.
fn releases(w: &World, n: usize, size: usize, step: usize) -> Vec<String> {
    w.sample(10);
    for i in 0..n {
        let path = format!("/usr/lib/data/{i:04}");
        w.file(10, "os-core", &path, &noise(size, i as u64), 0o644);
    }
    ok(w.publish(10, &[]));
    w.derive(10, 20);
    let mut changed = Vec::new();
    for i in (0..n).step_by(step) {
        let path = format!("/usr/lib/data/{i:04}");
        let mut data = noise(size, i as u64);
        data[7] ^= 1;
        data[size / 2] ^= 0x80;
        w.file(20, "os-core", &path, &data, 0o644);
        changed.push(path);
    }
    ok(w.publish(20, &[]));
    changed
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_few_changed_bytes_cost_a_tenth_of_the_fullfiles() {
    let w = World::on_tmpfs();
    releases(&w, 2000, 32 * 1024, 20);
    ok(w.chainup(&["os-install", "-V", "10"]));
    let other = w.dir.path().join("root-fullfiles");
    ok(run(
        &mut w.chainup_cmd_at(&other, &["os-install", "-V", "10"])
    ));

    // Fullfiles only: the packs are missing, and the client says so.
    w.server.status("/20/pack-", 404);
    w.server.clear_log();
    let out = ok(run(&mut w.chainup_cmd_at(&other, &["update"])));
    let fullfile_bytes = w.server.bytes_sent();
    assert!(
        stderr(&out).contains("did not come from packs"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&other, &["/var"]), expected(&w, 20, &["os-core"]));

    // The same update with the packs, from an empty staging area.
    let _ = std::fs::remove_dir_all(w.state.join("staged"));
    w.server.clear_faults();
    w.server.clear_log();
    let out = ok(w.chainup(&["update"]));
    let delta_bytes = w.server.bytes_sent();
    println!("bytes served: {delta_bytes} with deltas, {fullfile_bytes} with fullfiles only");
    // The changed files and os-release.
    assert!(
        text(&out).contains("101 files from deltas"),
        "{}",
        text(&out)
    );
    assert_eq!(w.server.hits_matching("/20/files/"), 0);
    assert!(
        delta_bytes * 10 < fullfile_bytes,
        "{delta_bytes} bytes with deltas, {fullfile_bytes} without"
    );
    assert_eq!(snapshot(&w.root, &["/var"]), expected(&w, 20, &["os-core"]));
    ok(w.chainup(&["diagnose"]));
    let info = text(&ok(w.chainup(&["info"])));
    assert!(info.contains("Last download: "), "{info}");
    assert!(info.contains("101 files from deltas"), "{info}");
}

/// A pack member: its header, full name and data.
type Member = (tar::Header, Vec<u8>, Vec<u8>);

/// The pack's members, unpacked (the publisher compresses it).
fn pack_members(path: &Path) -> Vec<Member> {
    let plain = chainup::archive::decompress(std::fs::File::open(path).unwrap()).unwrap();
    let mut ar = tar::Archive::new(plain);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path_bytes().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (e.header().clone(), name, data)
        })
        .collect()
}

/// Writes members as an uncompressed tar; short names byte for byte (even `..`), long
/// ones as GNU long names.
fn write_pack(path: &Path, members: &[Member]) {
    let mut out = Vec::new();
    {
        let mut b = tar::Builder::new(&mut out);
        for (h, name, data) in members {
            let mut h = h.clone();
            h.set_size(data.len() as u64);
            if name.len() < 100 {
                let field = &mut h.as_old_mut().name;
                field.fill(0);
                field[..name.len()].copy_from_slice(name);
                h.set_cksum();
                b.append(&h, &data[..]).unwrap();
            } else {
                let name = String::from_utf8(name.clone()).unwrap();
                b.append_data(&mut h, name, &data[..]).unwrap();
            }
        }
        b.finish().unwrap();
    }
    std::fs::File::create(path)
        .unwrap()
        .write_all(&out)
        .unwrap();
}

fn name(m: &Member) -> String {
    String::from_utf8_lossy(&m.1).into_owned()
}

#[test]
fn corrupt_deltas_modified_sources_and_missing_packs_fall_back_to_fullfiles() {
    let w = World::on_tmpfs();
    let changed = releases(&w, 40, 4096, 4);
    ok(w.chainup(&["os-install", "-V", "10"]));
    let pack = w.web("20/pack-os-core-from-10.tar");
    let mut members = pack_members(&pack);
    // Corrupt the first delta's last byte; locally modify the source of another one.
    let first = members
        .iter_mut()
        .find(|m| name(m).starts_with("delta/") && m.0.entry_type().is_file())
        .unwrap();
    // A byte in the middle of the diff block.
    let h = chainup::bsdiff::Header::parse(&first.2, first.2.len() as u64).unwrap();
    let at = (h.offset + h.lengths[0] + h.lengths[1] / 2) as usize;
    first.2[at] ^= 0x55;
    write_pack(&pack, &members);
    let local = w.root.join(changed[3].trim_start_matches('/'));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&local)
        .unwrap();
    f.write_all(b"local edit").unwrap();

    w.server.clear_log();
    let out = ok(w.chainup(&["update"]));
    let err = stderr(&out);
    assert!(err.contains("cannot be used"), "{err}");
    assert!(err.contains("changed locally or missing"), "{err}");
    assert!(err.contains("2 files did not come from packs"), "{err}");
    assert_eq!(w.server.hits_matching("/20/files/"), 2);
    assert_eq!(snapshot(&w.root, &["/var"]), expected(&w, 20, &["os-core"]));
    ok(w.chainup(&["diagnose"]));
}

#[test]
fn hostile_packs_are_refused_and_the_next_release_installs() {
    if fixture::skip_unless_root(
        "hostile_packs_are_refused_and_the_next_release_installs",
        "the pack's staged/ directory is owned by root",
    ) {
        return;
    }
    let w = World::on_tmpfs();
    releases(&w, 20, 4096, 4);
    ok(w.chainup(&["os-install", "-V", "10"]));
    let pack = w.web("20/pack-os-core-from-10.tar");
    let good = pack_members(&pack);
    let (dirs, rest) = good.split_at(2);
    let delta = rest.iter().find(|m| name(m).starts_with("delta/")).unwrap();
    let to_hash = &name(delta)[name(delta).len() - 64..];
    let staged: Member = (
        delta.0.clone(),
        format!("staged/{to_hash}").into_bytes(),
        b"content".to_vec(),
    );

    let mut link = staged.0.clone();
    link.set_entry_type(tar::EntryType::Link);
    link.set_link_name("/etc/passwd").unwrap();
    let hostile: Vec<(&str, Vec<Member>)> = vec![
        ("a hard link", vec![(link, staged.1.clone(), Vec::new())]),
        (
            "not a delta/ or staged/ member",
            vec![(
                staged.0.clone(),
                b"staged/../../../escaped".to_vec(),
                staged.2.clone(),
            )],
        ),
        (
            "claims a new file",
            vec![(delta.0.clone(), delta.1.clone(), huge100gb(&delta.2))],
        ),
        (
            "two different members of one name",
            vec![
                staged.clone(),
                (
                    staged.0.clone(),
                    staged.1.clone(),
                    b"longer content".to_vec(),
                ),
            ],
        ),
    ];
    let before = snapshot(&w.root, &[]);
    for (why, extra) in hostile {
        let mut members = dirs.to_vec();
        members.extend(extra);
        write_pack(&pack, &members);
        let out = w.chainup(&["update"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(18), "{why}: {err}");
        assert!(
            err.contains("pack refused") && err.contains(why),
            "{why}: {err}"
        );
        assert_eq!(snapshot(&w.root, &[]), before, "{why}");
    }

    w.derive(20, 30);
    ok(w.publish(30, &[]));
    let out = ok(w.chainup(&["update"]));
    assert!(text(&out).contains("files from deltas"), "{}", text(&out));
    assert_eq!(snapshot(&w.root, &["/var"]), expected(&w, 30, &["os-core"]));
}

/// Tar appends repeat members (swupd's own test generator writes packs so): a repeated
/// name is skipped, so the pack is read, not refused, and a second copy is never used,
/// even one whose bytes differ.
#[test]
fn a_pack_repeating_members_is_read_and_the_repeats_are_skipped() {
    if fixture::skip_unless_root(
        "a_pack_repeating_members_is_read_and_the_repeats_are_skipped",
        "the pack's staged/ directory is owned by root",
    ) {
        return;
    }
    let w = World::on_tmpfs();
    releases(&w, 20, 4096, 4);
    ok(w.chainup(&["os-install", "-V", "10"]));
    let pack = w.web("20/pack-os-core-from-10.tar");
    let good = pack_members(&pack);
    let (dirs, rest) = good.split_at(2);
    assert!(dirs.iter().all(|m| m.0.entry_type().is_dir()));
    assert!(!rest.is_empty());
    let mut members = dirs.to_vec();
    members.extend(dirs.iter().cloned());
    members.extend(rest.iter().cloned());
    // The same names again with other bytes of the same size: never read.
    members.extend(
        rest.iter()
            .map(|(header, name, data)| (header.clone(), name.clone(), vec![b'x'; data.len()])),
    );
    write_pack(&pack, &members);
    w.server.clear_log();
    let out = ok(w.chainup(&["update"]));
    assert!(text(&out).contains("files from deltas"), "{}", text(&out));
    assert!(!text(&out).contains("pack refused"), "{}", text(&out));
    assert!(!text(&out).contains("cannot be used"), "{}", text(&out));
    assert!(!text(&out).contains("does not match"), "{}", text(&out));
    assert_eq!(w.server.hits_matching("/20/files/"), 0);
    assert_eq!(snapshot(&w.root, &["/var"]), expected(&w, 20, &["os-core"]));
}

/// A delta claiming a 100 GB result: the v2.0 header with the new size set.
fn huge100gb(delta: &[u8]) -> Vec<u8> {
    let h = chainup::bsdiff::Header::parse(delta, delta.len() as u64).unwrap();
    let blocks = &delta[h.offset as usize..];
    let mut header = h.clone();
    header.new_size = 100 << 30;
    // Force the v2.0 layout, whose 64-bit size field can say 100 GB.
    header.old_size = header.old_size.max(1 << 16);
    let mut bytes = header.to_bytes();
    bytes.extend_from_slice(blocks);
    bytes
}

fn generate_pack(w: &World, from: u32, to: u32) {
    ok(run(Command::new("python3")
        .arg(GEN_PACK)
        .arg("--webroot")
        .arg(&w.web)
        .args(["--bundle", "os-core"])
        .args([
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
        ])));
}

/// Hashes of the regular files a manifest lists as new in `version`.
fn new_files(w: &World, version: u32) -> Vec<String> {
    w.manifest_text(version, "os-core")
        .lines()
        .filter(|l| l.starts_with("F.") && l.split('\t').nth(2) == Some(&version.to_string()))
        .map(|l| l.split('\t').nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn packs_in_mixers_layout_from_an_independent_generator_are_applied() {
    let w = World::on_tmpfs();
    w.sample(10);
    for i in 0..10 {
        let path = format!("/usr/share/many/{i}");
        w.file(
            10,
            "os-core",
            &path,
            &noise(3000 + i * 5000, i as u64),
            0o644,
        );
    }
    w.generate_independently(10, None);
    generate_pack(&w, 0, 10);
    w.server.clear_log();
    ok(w.chainup(&["os-install", "-V", "10"]));
    assert_eq!(snapshot(&w.root, &["/var"]), expected(&w, 10, &["os-core"]));
    for h in new_files(&w, 10) {
        assert_eq!(w.server.hits(&format!("/10/files/{h}.tar")), 0, "{h}");
    }

    w.derive(10, 20);
    for i in 0..10 {
        let mut data = noise(3000 + i * 5000, i as u64);
        data.splice(100..100 + i, b"changed".iter().copied());
        w.file(20, "os-core", &format!("/usr/share/many/{i}"), &data, 0o600);
    }
    w.file(20, "os-core", "/usr/share/new", b"new in 20\n", 0o644);
    w.symlink(20, "os-core", "/usr/bin/hi2", "hello");
    w.generate_independently(20, Some(10));
    generate_pack(&w, 10, 20);
    w.server.clear_log();
    let out = ok(w.chainup(&["update"]));
    // The ten changed files and os-release.
    assert!(
        text(&out).contains("11 files from deltas"),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&w.root, &["/var"]), expected(&w, 20, &["os-core"]));
    for h in new_files(&w, 20) {
        assert_eq!(w.server.hits(&format!("/20/files/{h}.tar")), 0, "{h}");
    }
}

/// Release 10 installed with 300 small files, 20 and 30 published with a few of them
/// changed each time (so os-core's manifests differ by a few lines).
fn manifest_world() -> World {
    let w = World::on_tmpfs();
    releases(&w, 300, 512, 30);
    ok(w.chainup(&["os-install", "-V", "10"]));
    w.derive(20, 30);
    w.file(
        30,
        "os-core",
        "/usr/lib/data/0001",
        b"changed in 30\n",
        0o644,
    );
    ok(w.publish(30, &[]));
    w
}

#[test]
fn an_update_reads_the_manifest_delta_instead_of_the_manifest() {
    let w = manifest_world();
    let delta = "/20/Manifest-os-core-delta-from-10";
    let tar = w.web("20/Manifest.os-core.tar");
    let tar_size = std::fs::metadata(&tar).unwrap().len();
    assert!(
        std::fs::metadata(w.web(&delta[1..])).unwrap().len() < tar_size,
        "the publisher writes manifest deltas where they pay"
    );
    w.server.clear_log();
    let out = ok(w.chainup(&["update", "-V", "20"]));
    assert_eq!(w.server.hits(delta), 1, "{}", stderr(&out));
    assert_eq!(w.server.hits("/20/Manifest.os-core.tar"), 0);
    assert!(!stderr(&out).contains("manifest delta"), "{}", stderr(&out));
    assert_eq!(snapshot(&w.root, &["/var"]), expected(&w, 20, &["os-core"]));
    ok(w.chainup(&["diagnose"]));
}

#[test]
fn a_manifest_delta_that_does_not_give_the_manifest_falls_back_to_the_tar() {
    // A well-formed delta from the same text to another release's (it applies, and the
    // result fails the MoM's hash), and one whose header is not a Clear delta's.
    for (case, why) in [
        ("another text", "its result hashes to"),
        ("broken header", "not a BSDIFF4U or BSDIFF4V delta"),
    ] {
        let w = manifest_world();
        let delta = w.web("20/Manifest-os-core-delta-from-10");
        if case == "another text" {
            std::fs::copy(w.web("30/Manifest-os-core-delta-from-10"), &delta).unwrap();
        } else {
            let mut broken = std::fs::read(&delta).unwrap();
            broken[..8].copy_from_slice(b"BSDIFF40");
            std::fs::write(&delta, broken).unwrap();
        }
        w.server.clear_log();
        let out = ok(w.chainup(&["update", "-V", "20"]));
        assert!(
            stderr(&out).contains("manifest delta cannot be used") && stderr(&out).contains(why),
            "{case}: {}",
            stderr(&out)
        );
        assert_eq!(w.server.hits("/20/Manifest-os-core-delta-from-10"), 1);
        assert_eq!(w.server.hits("/20/Manifest.os-core.tar"), 1, "{case}");
        assert_eq!(snapshot(&w.root, &["/var"]), expected(&w, 20, &["os-core"]));
    }
}

/// A pack of many small files is mostly tar headers: its size bound must count them, or
/// the client gives up on the pack and fetches every file whole (found by the crash sweep).
#[test]
fn a_pack_of_many_small_files_is_read_whole() {
    let w = World::on_tmpfs();
    // 1,000 files of 40 bytes, every one changed: the pack holds 1,000 members.
    releases(&w, 1000, 40, 1);
    ok(w.chainup(&["os-install", "-V", "10"]));
    let out = ok(w.chainup(&["update"]));
    let t = text(&out);
    assert!(t.contains("0 bytes in 0 fullfiles"), "{t}");
    assert!(!t.contains("did not come from packs"), "{t}");
    assert_eq!(snapshot(&w.root, &[]), expected(&w, 20, &["os-core"]));
}
