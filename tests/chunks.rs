//! Chunked core-image updates end to end (docs/chunks.md): the real publisher chunks the
//! images into a store, the real client assembles the new image from the running slot and
//! downloaded chunks into the inactive slot (image files, and loop devices when root).

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chainup::chunks::{delta_path, store_path, Delta, Index};
use chainup::hash::Hash;
use chainup::hash::{hash_bytes, Meta};
use fixture::{ok, run, text, World, BUNDLES};

const PRODUCT: &str = "clipos";
/// 32 MiB and a bit: eight 4 MiB writes and a short one.
const CORE_SIZE: usize = (32 << 20) + 4321;
const SLOT_SIZE: usize = 40 << 20;
/// Why the image tests skip without root: the image bundle holds only the entries the
/// publisher makes itself (bundle marker, directories), owned by root, and installing
/// them needs root to chown.
const IMAGE_BUNDLE_OWNER: &str = "the image bundle's publisher-made entries are owned by root";
const OTHER_ROOT: &str = "27 1 254:99 / / rw,relatime - ext4 /dev/other rw\n";

/// Deterministic, incompressible bytes (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Release 10's core image.
fn core10() -> Vec<u8> {
    noise(10, CORE_SIZE)
}

/// Release 20's: 3% of 10's bytes rewritten in four places, 40 KiB inserted (shifting
/// everything after it) and 24 KiB removed.
fn core20() -> Vec<u8> {
    let mut c = core10();
    for (i, at) in [3usize << 20, 9 << 20, 17 << 20, 27 << 20]
        .into_iter()
        .enumerate()
    {
        let len = CORE_SIZE * 3 / 100 / 4;
        c[at..at + len].copy_from_slice(&noise(100 + i as u64, len));
    }
    c.splice(12 << 20..12 << 20, noise(200, 40 << 10));
    c.drain(22 << 20..(22 << 20) + (24 << 10));
    c
}

fn efi(v: u32) -> Vec<u8> {
    let mut b = format!("MZ chainup test kernel image {v}\n").into_bytes();
    b.resize(64 * 1024, b'k');
    b
}

fn image_hash(data: &[u8]) -> String {
    hash_bytes(&Meta::file(0o644, 0, 0, data.len() as u64), data).to_hex()
}

/// Releases 10 and 20 (and 30 when given) with chunked images, the root at 10, slot A
/// provisioned with core 10 and its entry, slot B blank.
struct Chunked {
    w: World,
    core_a: PathBuf,
    core_b: PathBuf,
    esp: PathBuf,
    cmdline: PathBuf,
    mountinfo: PathBuf,
    config: PathBuf,
}

impl Chunked {
    fn new(core30: Option<Vec<u8>>) -> Chunked {
        let w = World::new();
        std::fs::write(
            &w.bundles_toml,
            format!("{BUNDLES}\n[bundles.core-image]\n"),
        )
        .unwrap();
        let images = w.dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        let mut releases = vec![(10, core10()), (20, core20())];
        releases.extend(core30.map(|c| (30, c)));
        for (v, core) in releases {
            if v == 10 {
                w.sample(v);
            } else {
                w.derive(10, v);
            }
            let (c, e) = (
                images.join(format!("core{v}")),
                images.join(format!("efi{v}")),
            );
            std::fs::write(&c, core).unwrap();
            std::fs::write(&e, efi(v)).unwrap();
            let out = ok(w.publish_images(v, "core-image", &c, &e));
            assert!(text(&out).contains("chunks"), "{}", text(&out));
        }
        let dev = w.dir.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let t = Chunked {
            core_a: dev.join("core_a.img"),
            core_b: dev.join("core_b.img"),
            esp: w.dir.path().join("esp"),
            cmdline: dev.join("cmdline"),
            mountinfo: dev.join("mountinfo"),
            config: dev.join("config.toml"),
            w,
        };
        let mut a = core10();
        a.resize(SLOT_SIZE, 0);
        std::fs::write(&t.core_a, a).unwrap();
        std::fs::write(&t.core_b, vec![0u8; SLOT_SIZE]).unwrap();
        std::fs::create_dir_all(t.linux()).unwrap();
        std::fs::write(t.linux().join("clipos-10.efi"), efi(10)).unwrap();
        std::fs::write(&t.cmdline, "quiet chainup.slot=a\n").unwrap();
        std::fs::write(&t.mountinfo, OTHER_ROOT).unwrap();
        t.write_config(&t.core_a.clone(), &t.core_b.clone(), "");
        ok(t.chainup(&["os-install", "-V", "10", "-B", "core-image"]));
        t
    }

    fn write_config(&self, a: &Path, b: &Path, extra: &str) {
        let cfg = format!(
            "[slots]\nproduct = \"{PRODUCT}\"\ncore_a = {a:?}\ncore_b = {b:?}\nesp = {:?}\ncmdline = {:?}\nmountinfo = {:?}\n{extra}",
            self.esp, self.cmdline, self.mountinfo
        );
        std::fs::write(&self.config, cfg).unwrap();
    }

    fn linux(&self) -> PathBuf {
        self.esp.join("EFI/Linux")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.w.chainup_cmd(args);
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    fn chainup(&self, args: &[&str]) -> Output {
        run(&mut self.cmd(args))
    }

    fn entries(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.linux())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    fn expect_entries(&self, want: &[&str]) {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(self.entries(), want);
    }

    fn root_version(&self) -> String {
        std::fs::read_to_string(self.w.root.join("usr/lib/os-release")).unwrap()
    }

    fn recorded(&self, slot: &str) -> Option<String> {
        let data = std::fs::read(self.w.state.join("slots.json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
        v[slot]["state"].as_str().map(String::from)
    }

    /// The published chunk index of a release's core image, read back from the webroot.
    fn index(&self, v: u32) -> Index {
        let (_, hash, from) = self.w.entry(v, "core-image", "/core.index");
        let tar = std::fs::read(self.w.web.join(format!("{from}/files/{hash}.tar"))).unwrap();
        let plain = zstd::decode_all(&tar[..]).unwrap();
        let mut archive = tar::Archive::new(&plain[..]);
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let mut text = Vec::new();
        entry.read_to_end(&mut text).unwrap();
        Index::parse(&text).unwrap()
    }

    /// The webroot file of the chunk index delta from release `from` to `to`.
    fn delta(&self, from: u32, to: u32) -> PathBuf {
        let hash = |v| {
            let (_, h, _) = self.w.entry(v, "core-image", "/core.index");
            h.parse::<Hash>().unwrap()
        };
        self.w.web.join(delta_path(&hash(from), &hash(to)))
    }

    /// Store paths of release `v`'s chunks that release 10's image does not have.
    fn new_chunks(&self, v: u32) -> Vec<String> {
        let old: BTreeSet<_> = self.index(10).chunks.iter().map(|c| c.id).collect();
        self.index(v)
            .chunks
            .iter()
            .filter(|c| !old.contains(&c.id))
            .map(|c| store_path(&c.id))
            .collect()
    }

    /// Bytes the server sent since the log was cleared (every request was a full GET).
    fn served(&self) -> u64 {
        self.w
            .server
            .log()
            .iter()
            .filter(|r| r.method == "GET")
            .map(|r| {
                let p = self.w.web.join(r.path.trim_start_matches('/'));
                std::fs::metadata(p).map_or(0, |m| m.len())
            })
            .sum()
    }
}

fn starts_with(slot: &Path, data: &[u8]) -> bool {
    let got = std::fs::read(slot).unwrap();
    got.len() >= data.len() && got[..data.len()] == *data
}

/// The JSON records of one type from `--json-output`.
fn records(out: &Output, kind: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l.trim().trim_end_matches(',')).ok())
        .filter(|v: &serde_json::Value| v["type"] == kind)
        .collect()
}

/// The core update of the first "Done when" item, on whatever slots the config names.
fn update_reuses_the_running_slot(t: &Chunked, a: &Path, b: &Path) {
    let a_before = std::fs::read(a).unwrap();
    t.w.server.clear_log();
    let out = ok(t.chainup(&["update", "-V", "20", "--json-output"]));
    let served = t.served();
    let new = core20();
    assert!(starts_with(b, &new), "slot B holds core 20");
    assert_eq!(std::fs::read(a).unwrap(), a_before, "slot A untouched");
    t.expect_entries(&["clipos-10.efi", "clipos-20+3.efi"]);
    assert!(t.root_version().contains("VERSION_ID=20"));
    assert!(
        served * 10 < new.len() as u64,
        "served {served} bytes for a {}-byte image",
        new.len()
    );
    let full = format!("/20/files/{}.tar", image_hash(&new));
    assert_eq!(t.w.server.hits(&full), 0, "the full image was not fetched");
    let rec = records(&out, "image-transfer");
    assert_eq!(rec.len(), 1, "{}", text(&out));
    eprintln!(
        "served {served} bytes for a {}-byte image: {}",
        new.len(),
        rec[0]
    );
    let r = &rec[0];
    assert_eq!(r["method"], "chunks");
    assert_eq!(r["bytes"], new.len() as u64);
    let (reused, downloaded) = (
        r["bytesReused"].as_u64().unwrap(),
        r["bytesDownloaded"].as_u64().unwrap(),
    );
    assert_eq!(reused + downloaded, new.len() as u64, "{r}");
    assert!(downloaded * 10 < new.len() as u64, "{r}");
    assert!(r["bytesOnWire"].as_u64().unwrap() <= served, "{r}");

    let info = text(&ok(t.chainup(&["info"])));
    assert!(
        info.contains(&format!(
            "{reused} reused from the slots, {downloaded} downloaded"
        )),
        "{info}"
    );
    // Still running A (10): diagnose checks it against 10's image.
    let out = ok(t.chainup(&["diagnose", "--images"]));
    assert!(text(&out).contains("no problems"), "{}", text(&out));
}

#[test]
fn chunked_update_takes_most_of_the_image_from_the_running_slot() {
    if fixture::skip_unless_root(
        "chunked_update_takes_most_of_the_image_from_the_running_slot",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let t = Chunked::new(None);
    update_reuses_the_running_slot(&t, &t.core_a, &t.core_b);
}

#[test]
fn a_damaged_seed_is_completed_from_the_store() {
    if fixture::skip_unless_root(
        "a_damaged_seed_is_completed_from_the_store",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let t = Chunked::new(None);
    let mut a = std::fs::read(&t.core_a).unwrap();
    for at in [1usize << 20, 14 << 20, 30 << 20] {
        a[at] ^= 0x55;
    }
    std::fs::write(&t.core_a, &a).unwrap();
    let out = ok(t.chainup(&["update", "-V", "20"]));
    assert!(
        text(&out).contains("did not match its index"),
        "{}",
        text(&out)
    );
    assert!(starts_with(&t.core_b, &core20()));
    assert_eq!(std::fs::read(&t.core_a).unwrap(), a, "slot A only read");
    t.expect_entries(&["clipos-10.efi", "clipos-20+3.efi"]);
}

#[test]
fn a_tampered_chunk_is_refused_and_the_full_image_still_works() {
    if fixture::skip_unless_root(
        "a_tampered_chunk_is_refused_and_the_full_image_still_works",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let t = Chunked::new(None);
    let a_before = std::fs::read(&t.core_a).unwrap();
    let new = t.new_chunks(20);
    assert!(!new.is_empty());
    let victim = t.w.web.join(&new[new.len() / 2]);
    let good = std::fs::read(&victim).unwrap();
    let mut plain = zstd::decode_all(&good[..]).unwrap();
    plain[100] ^= 1;
    std::fs::write(&victim, zstd::encode_all(&plain[..], 1).unwrap()).unwrap();

    let out = t.chainup(&["update", "-V", "20"]);
    assert_eq!(out.status.code(), Some(38), "{}", text(&out));
    assert!(text(&out).contains("chunk"), "{}", text(&out));
    t.expect_entries(&["clipos-10.efi"]);
    assert_eq!(t.recorded("b").as_deref(), Some("invalid"));
    assert_eq!(std::fs::read(&t.core_a).unwrap(), a_before);
    assert!(t.root_version().contains("VERSION_ID=10"));

    // The operator turns chunks off: the full image path is unaffected.
    t.write_config(&t.core_a, &t.core_b, "chunks = false\n");
    let out = ok(t.chainup(&["update", "-V", "20"]));
    assert!(
        text(&out).contains("written from the full image")
            || text(&out).contains("from the full image"),
        "{}",
        text(&out)
    );
    assert!(starts_with(&t.core_b, &core20()));
    t.expect_entries(&["clipos-10.efi", "clipos-20+3.efi"]);
}

#[test]
fn a_tampered_index_is_refused_and_a_later_release_still_works() {
    if fixture::skip_unless_root(
        "a_tampered_index_is_refused_and_a_later_release_still_works",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    // 30: 20 with one more region changed.
    let mut core30 = core20();
    core30[5 << 20..(5 << 20) + (100 << 10)].copy_from_slice(&noise(300, 100 << 10));
    let t = Chunked::new(Some(core30.clone()));
    let (_, hash, _) = t.w.entry(20, "core-image", "/core.index");
    let path = t.w.web.join(format!("20/files/{hash}.tar"));
    // A well-formed index fullfile under the right name, listing one chunk differently.
    let plain = zstd::decode_all(&std::fs::read(&path).unwrap()[..]).unwrap();
    let mut archive = tar::Archive::new(&plain[..]);
    let mut text_ = String::new();
    archive
        .entries()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .read_to_string(&mut text_)
        .unwrap();
    let mut index = Index::parse(text_.as_bytes()).unwrap();
    let (first, second) = (index.chunks[0], index.chunks[1]);
    index.chunks[0] = second;
    index.chunks[1] = first;
    let evil = index.serialize();
    let mut h = tar::Header::new_gnu();
    h.set_size(evil.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut tb = tar::Builder::new(Vec::new());
    tb.append_data(&mut h, &hash, evil.as_bytes()).unwrap();
    std::fs::write(
        &path,
        zstd::encode_all(&tb.into_inner().unwrap()[..], 1).unwrap(),
    )
    .unwrap();
    // And the delta from 10's index makes the same tampered index.
    let delta = t.delta(10, 20);
    let evil_delta = Delta::diff(&t.index(10), &index).serialize();
    std::fs::write(&delta, zstd::encode_all(evil_delta.as_bytes(), 1).unwrap()).unwrap();
    let b_before = std::fs::read(&t.core_b).unwrap();

    let out = t.chainup(&["update", "-V", "20"]);
    assert_eq!(out.status.code(), Some(38), "{}", text(&out));
    assert!(
        text(&out).contains("hash mismatch for /core.index"),
        "{}",
        text(&out)
    );
    t.expect_entries(&["clipos-10.efi"]);
    // Refused before the slot was touched.
    assert_eq!(std::fs::read(&t.core_b).unwrap(), b_before);
    assert!(t.root_version().contains("VERSION_ID=10"));

    // Release 30 has its own index: chunked again, from slot A.
    t.w.server.clear_log();
    let out = ok(t.chainup(&["update", "-V", "30"]));
    assert!(
        text(&out).contains("Assembling the core image"),
        "{}",
        text(&out)
    );
    assert!(starts_with(&t.core_b, &core30));
    assert!(t.served() * 10 < CORE_SIZE as u64);
    t.expect_entries(&["clipos-10.efi", "clipos-30+3.efi"]);
}

#[test]
fn the_seed_index_comes_from_the_cache_and_the_new_one_as_a_delta() {
    if fixture::skip_unless_root(
        "the_seed_index_comes_from_the_cache_and_the_new_one_as_a_delta",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let t = Chunked::new(None);
    let (_, h10, v10) = t.w.entry(10, "core-image", "/core.index");
    let (_, h20, v20) = t.w.entry(20, "core-image", "/core.index");
    let index10 = format!("/{v10}/files/{h10}.tar");
    let index20 = format!("/{v20}/files/{h20}.tar");
    let delta = format!("/chunks/index-deltas/{h10}-{h20}.zst");
    let cache = t.w.state.join("chunk-indexes");
    assert!(
        cache.join(&h10).is_file(),
        "os-install kept the running image's index"
    );

    // A cached index that no longer hashes right is downloaded again; a delta that does
    // not make the new index is set aside for the whole index: both only cost bytes.
    std::fs::write(cache.join(&h10), b"chainup-chunk-index 1\n").unwrap();
    let good_delta = std::fs::read(t.delta(10, 20)).unwrap();
    let mut text = zstd::decode_all(&good_delta[..]).unwrap();
    let at = text.len() - 3;
    text[at] ^= 1;
    std::fs::write(t.delta(10, 20), zstd::encode_all(&text[..], 1).unwrap()).unwrap();
    t.w.server.clear_log();
    ok(t.chainup(&["update", "-V", "20"]));
    assert!(starts_with(&t.core_b, &core20()));
    assert_eq!(t.w.server.hits(&index10), 1);
    assert_eq!(t.w.server.hits(&delta), 1);
    assert_eq!(t.w.server.hits(&index20), 1);
    let mut kept: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    kept.sort();
    let mut want = vec![h10.clone(), h20.clone()];
    want.sort();
    assert_eq!(
        kept, want,
        "the cache keeps the indexes of the slots' images"
    );

    // The same update on a fresh machine with the delta intact: 10's index from the
    // cache, 20's from the delta, neither index payload downloaded.
    let t = Chunked::new(None);
    t.w.server.clear_log();
    let out = ok(t.chainup(&["update", "-V", "20", "--json-output"]));
    assert!(starts_with(&t.core_b, &core20()));
    assert_eq!(
        t.w.server.hits(&index10),
        0,
        "the seed's index came from the cache"
    );
    assert_eq!(
        t.w.server.hits(&index20),
        0,
        "the new index came as a delta"
    );
    assert_eq!(t.w.server.hits(&delta), 1);
    let r = &records(&out, "image-transfer")[0];
    assert_eq!(r["method"], "chunks", "{r}");
    let size = std::fs::metadata(t.w.web.join(&delta[1..])).unwrap().len();
    let index_size = std::fs::metadata(t.w.web.join(&index20[1..]))
        .unwrap()
        .len();
    assert!(
        size * 10 < index_size,
        "delta {size} bytes, index {index_size}"
    );
}

#[test]
fn sigkill_during_a_chunked_write_then_a_rerun_installs_the_right_image() {
    if fixture::skip_unless_root(
        "sigkill_during_a_chunked_write_then_a_rerun_installs_the_right_image",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let t = Chunked::new(None);
    let a_before = std::fs::read(&t.core_a).unwrap();
    // Killed once the seventh 4 MiB block of the assembled image was handed to the writer:
    // with two blocks in flight, the writer has then written at least the first four
    // (which hold two of the changed regions), whatever the machine's load.
    let out = t
        .cmd(&["update", "-V", "20"])
        .env("FAILPOINTS", "img::chunked-block=6*off->return")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{}", text(&out));
    t.expect_entries(&["clipos-10.efi"]);
    assert_eq!(t.recorded("b").as_deref(), Some("invalid"));
    assert_eq!(std::fs::read(&t.core_a).unwrap(), a_before);
    assert!(t.root_version().contains("VERSION_ID=10"));

    let out = ok(t.chainup(&["update", "-V", "20", "--json-output"]));
    let r = &records(&out, "image-transfer")[0];
    assert_eq!(r["method"], "chunks", "{r}");
    // What the killed run wrote before the kill is found in place, not downloaded again.
    let old: BTreeSet<_> = t.index(10).chunks.iter().map(|c| c.id).collect();
    let not_in_seed: u64 = t
        .index(20)
        .chunks
        .iter()
        .filter(|c| !old.contains(&c.id))
        .map(|c| u64::from(c.len))
        .sum();
    assert!(
        r["bytesDownloaded"].as_u64().unwrap() < not_in_seed,
        "{r}, {not_in_seed} bytes not in the seed"
    );
    assert!(starts_with(&t.core_b, &core20()));
    assert_eq!(std::fs::read(&t.core_a).unwrap(), a_before);
    t.expect_entries(&["clipos-10.efi", "clipos-20+3.efi"]);
    assert_eq!(t.recorded("b").as_deref(), Some("installed"));
}

#[test]
fn a_seed_that_offers_little_falls_back_to_the_full_image() {
    if fixture::skip_unless_root(
        "a_seed_that_offers_little_falls_back_to_the_full_image",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let core30 = noise(30, CORE_SIZE);
    let t = Chunked::new(Some(core30.clone()));
    t.w.server.clear_log();
    let out = ok(t.chainup(&["update", "-V", "30"]));
    assert!(
        text(&out).contains("downloading the full image"),
        "{}",
        text(&out)
    );
    let full = format!("/30/files/{}.tar", image_hash(&core30));
    assert_eq!(t.w.server.hits(&full), 1);
    let deltas = t.w.server.hits_matching("/chunks/index-deltas/");
    assert_eq!(
        t.w.server.hits_matching("/chunks/"),
        deltas,
        "no chunk fetched"
    );
    assert!(starts_with(&t.core_b, &core30));
}

/// Loop devices made by the test, detached on drop.
#[derive(Default)]
struct Loops(Vec<String>);

impl Loops {
    fn attach(&mut self, file: &Path) -> String {
        let out = ok(run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)));
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        self.0.push(dev.clone());
        dev
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = Command::new("losetup").args(["-d", d]).status();
        }
    }
}

#[test]
fn chunked_update_between_loop_device_slots() {
    if !fixture::is_root() {
        eprintln!("SKIP chunked_update_between_loop_device_slots: needs root for losetup");
        return;
    }
    let t = Chunked::new(None);
    let mut loops = Loops::default();
    let (a, b) = (loops.attach(&t.core_a), loops.attach(&t.core_b));
    t.write_config(Path::new(&a), Path::new(&b), "");
    update_reuses_the_running_slot(&t, Path::new(&a), Path::new(&b));
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn publishing_images_twice_gives_the_same_bytes() {
    // The core image's fullfile is compressed by several threads while the image is
    // chunked (above 32 MiB, as CORE_SIZE is): the webroot must not depend on thread timing.
    let w = World::new();
    std::fs::write(
        &w.bundles_toml,
        format!("{BUNDLES}\n[bundles.core-image]\n"),
    )
    .unwrap();
    let images = w.dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    w.sample(10);
    w.derive(10, 20);
    for (v, core) in [(10, core10()), (20, core20())] {
        std::fs::write(images.join(format!("core{v}")), core).unwrap();
        std::fs::write(images.join(format!("efi{v}")), efi(v)).unwrap();
    }
    let publish_all = || {
        for v in [10, 20] {
            let (c, e) = (
                images.join(format!("core{v}")),
                images.join(format!("efi{v}")),
            );
            ok(w.publish_images(v, "core-image", &c, &e));
        }
        snapshot(&w.web)
    };
    let first = publish_all();
    let core20_full = format!("20/files/{}.tar", image_hash(&core20()));
    assert!(
        first.contains_key(Path::new(&core20_full)),
        "no {core20_full}"
    );
    std::fs::remove_dir_all(&w.web).unwrap();
    let second = publish_all();
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    // Signatures are left out: openssl's CMS signature carries its signing time.
    let differ: Vec<_> = first
        .iter()
        .filter(|(path, bytes)| second[*path] != **bytes)
        .map(|(path, _)| path.display().to_string())
        .filter(|p| !p.ends_with(".sig"))
        .collect();
    assert!(differ.is_empty(), "differ: {differ:?}");
    // The fullfile holds the image (the client's own reader, as an old client's would).
    let plain = chainup::archive::decompress(&first[Path::new(&core20_full)][..]).unwrap();
    let mut tar = tar::Archive::new(plain);
    let mut entry = tar.entries().unwrap().next().unwrap().unwrap();
    let mut got = Vec::new();
    entry.read_to_end(&mut got).unwrap();
    assert!(got == core20(), "the fullfile holds another image");
}
