//! A/B image updates end to end through the real binaries: image-file slots (and loop
//! devices when root), an ESP directory, a kernel command line file naming the active slot.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chainup::hash::{hash_bytes, Meta};
use fixture::{ok, run, text, World, BUNDLES};

const PRODUCT: &str = "clipos";
/// Larger than one 4 MiB write, and not a multiple of it.
const CORE_SIZE: usize = (6 << 20) + 123;
const SLOT_SIZE: u64 = 8 << 20;
const VERSIONS: [u32; 3] = [10, 20, 30];
/// A root mount that is neither slot, so only the command line decides.
/// Why the image tests skip without root: the image bundle holds only the entries the
/// publisher makes itself (bundle marker, directories), owned by root, and installing
/// them needs root to chown.
const IMAGE_BUNDLE_OWNER: &str = "the image bundle's publisher-made entries are owned by root";
const OTHER_ROOT: &str = "27 1 254:99 / / rw,relatime - ext4 /dev/other rw\n";

/// Deterministic, incompressible bytes (xorshift64*), so compressed offsets track raw ones.
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

fn core(v: u32) -> Vec<u8> {
    noise(u64::from(v), CORE_SIZE)
}

fn efi(v: u32) -> Vec<u8> {
    let mut b = format!("MZ chainup test kernel image {v}\n").into_bytes();
    b.resize(64 * 1024, b'k');
    b
}

/// The swupd hash images are published under (regular file, 0644, root:root).
fn image_hash(data: &[u8]) -> String {
    hash_bytes(&Meta::file(0o644, 0, 0, data.len() as u64), data).to_hex()
}

/// A world with releases 10, 20, 30 carrying images, root installed at 10, slot A
/// provisioned with release 10 and its boot entry, slot B blank.
struct Ab {
    w: World,
    core_a: PathBuf,
    core_b: PathBuf,
    esp: PathBuf,
    cmdline: PathBuf,
    mountinfo: PathBuf,
    config: PathBuf,
}

impl Ab {
    fn new() -> Ab {
        let w = World::new();
        std::fs::write(
            &w.bundles_toml,
            format!("{BUNDLES}\n[bundles.core-image]\n"),
        )
        .unwrap();
        let images = w.dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        for v in VERSIONS {
            if v == VERSIONS[0] {
                w.sample(v);
            } else {
                w.derive(VERSIONS[0], v);
            }
            let (c, e) = (
                images.join(format!("core{v}")),
                images.join(format!("efi{v}")),
            );
            std::fs::write(&c, core(v)).unwrap();
            std::fs::write(&e, efi(v)).unwrap();
            ok(w.publish_images(v, "core-image", &c, &e));
        }
        let dev = w.dir.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let ab = Ab {
            core_a: dev.join("core_a.img"),
            core_b: dev.join("core_b.img"),
            esp: w.dir.path().join("esp"),
            cmdline: dev.join("cmdline"),
            mountinfo: dev.join("mountinfo"),
            config: dev.join("config.toml"),
            w,
        };
        let mut a = core(10);
        a.resize(SLOT_SIZE as usize, 0);
        std::fs::write(&ab.core_a, a).unwrap();
        std::fs::write(&ab.core_b, vec![0u8; SLOT_SIZE as usize]).unwrap();
        std::fs::create_dir_all(ab.linux()).unwrap();
        std::fs::write(ab.linux().join("clipos-10.efi"), efi(10)).unwrap();
        std::fs::write(&ab.cmdline, "BOOT_IMAGE=/vmlinuz quiet chainup.slot=a\n").unwrap();
        std::fs::write(&ab.mountinfo, OTHER_ROOT).unwrap();
        ab.write_config(&ab.core_a.clone(), &ab.core_b.clone());
        ok(ab.chainup(&["os-install", "-V", "10", "-B", "core-image"]));
        ab
    }

    fn write_config(&self, a: &Path, b: &Path) {
        let cfg = format!(
            "[slots]\nproduct = \"{PRODUCT}\"\ncore_a = {:?}\ncore_b = {:?}\nesp = {:?}\ncmdline = {:?}\nmountinfo = {:?}\n",
            a, b, self.esp, self.cmdline, self.mountinfo
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

    /// Every file in `EFI/Linux`, with its content.
    fn entries(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.linux())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect()
    }

    fn root_version(&self) -> String {
        std::fs::read_to_string(self.w.root.join("usr/lib/os-release")).unwrap()
    }

    /// The slot record's state for a slot, if recorded.
    fn recorded(&self, slot: &str) -> Option<String> {
        let data = std::fs::read(self.w.state.join("slots.json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
        v[slot]["state"].as_str().map(String::from)
    }

    /// The server path of a version's image fullfile.
    fn fullfile(v: u32, data: &[u8]) -> String {
        format!("/{v}/files/{}.tar", image_hash(data))
    }
}

fn expect_entries(ab: &Ab, want: &[(&str, Vec<u8>)]) {
    let got = ab.entries();
    let want: BTreeMap<String, Vec<u8>> = want
        .iter()
        .map(|(n, d)| (n.to_string(), d.clone()))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(got == want, "boot entry contents differ");
}

fn starts_with(slot: &Path, data: &[u8]) -> bool {
    let got = std::fs::read(slot).unwrap();
    got.len() >= data.len() && got[..data.len()] == *data
}

#[test]
fn update_writes_the_inactive_slot_then_alternates() {
    if fixture::skip_unless_root(
        "update_writes_the_inactive_slot_then_alternates",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let ab = Ab::new();
    let a_before = std::fs::read(&ab.core_a).unwrap();

    let out = ok(ab.chainup(&["update", "-V", "20"]));
    assert!(text(&out).contains("into slot b"), "{}", text(&out));
    assert!(starts_with(&ab.core_b, &core(20)), "slot B holds core 20");
    assert_eq!(
        std::fs::read(&ab.core_a).unwrap(),
        a_before,
        "slot A untouched"
    );
    expect_entries(
        &ab,
        &[("clipos-10.efi", efi(10)), ("clipos-20+3.efi", efi(20))],
    );
    assert!(ab.root_version().contains("VERSION_ID=20"));
    assert_eq!(ab.recorded("b").as_deref(), Some("installed"));
    assert_eq!(ab.recorded("a").as_deref(), Some("installed"));

    let info = text(&ok(ab.chainup(&["info"])));
    assert!(info.contains("Active slot: a (chainup.slot=a"), "{info}");
    assert!(
        info.contains("(inactive): version 20 (installed)"),
        "{info}"
    );
    assert!(info.contains("clipos-10.efi, clipos-20+3.efi"), "{info}");

    // Still running A: its entry has no counter.
    let out = ok(ab.chainup(&["mark-good"]));
    assert!(text(&out).contains("clipos-10.efi is already marked good"));

    // Reboot into B: systemd-boot counts one try, then mark-good accepts the entry.
    std::fs::rename(
        ab.linux().join("clipos-20+3.efi"),
        ab.linux().join("clipos-20+2-1.efi"),
    )
    .unwrap();
    std::fs::write(&ab.cmdline, "quiet chainup.slot=b\n").unwrap();
    // Slot A is the fallback until this boot is accepted: no update may overwrite it.
    let out = ab.chainup(&["update", "-V", "30"]);
    assert_eq!(out.status.code(), Some(40), "{}", text(&out));
    assert!(text(&out).contains("still on trial"), "{}", text(&out));
    assert!(starts_with(&ab.core_a, &core(10)));
    let out = ok(ab.chainup(&["mark-good"]));
    assert!(
        text(&out).contains("clipos-20+2-1.efi marked good: clipos-20.efi"),
        "{}",
        text(&out)
    );
    expect_entries(
        &ab,
        &[("clipos-10.efi", efi(10)), ("clipos-20.efi", efi(20))],
    );

    let b_before = std::fs::read(&ab.core_b).unwrap();
    let out = ok(ab.chainup(&["update", "-V", "30"]));
    assert!(text(&out).contains("into slot a"), "{}", text(&out));
    assert!(starts_with(&ab.core_a, &core(30)), "slot A holds core 30");
    assert_eq!(
        std::fs::read(&ab.core_b).unwrap(),
        b_before,
        "slot B untouched"
    );
    expect_entries(
        &ab,
        &[("clipos-20.efi", efi(20)), ("clipos-30+3.efi", efi(30))],
    );
}

#[test]
fn corrupt_core_image_fails_and_leaves_the_running_slot_alone() {
    if fixture::skip_unless_root(
        "corrupt_core_image_fails_and_leaves_the_running_slot_alone",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let ab = Ab::new();
    // A well-formed fullfile under the right name whose bytes are not the published ones.
    let path =
        ab.w.web
            .join(Ab::fullfile(20, &core(20)).trim_start_matches('/'));
    let good = std::fs::read(&path).unwrap();
    let mut evil = core(20);
    evil[CORE_SIZE / 2] ^= 1;
    let mut h = tar::Header::new_gnu();
    h.set_size(evil.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut t = tar::Builder::new(Vec::new());
    t.append_data(&mut h, image_hash(&core(20)), &evil[..])
        .unwrap();
    std::fs::write(
        &path,
        zstd::encode_all(&t.into_inner().unwrap()[..], 1).unwrap(),
    )
    .unwrap();
    let a_before = std::fs::read(&ab.core_a).unwrap();

    let out = ab.chainup(&["update", "-V", "20"]);
    assert_eq!(out.status.code(), Some(38), "{}", text(&out));
    assert!(
        text(&out).contains("hash mismatch for /core"),
        "{}",
        text(&out)
    );
    expect_entries(&ab, &[("clipos-10.efi", efi(10))]);
    assert_eq!(std::fs::read(&ab.core_a).unwrap(), a_before);
    assert_eq!(ab.recorded("b").as_deref(), Some("invalid"));
    assert!(
        ab.root_version().contains("VERSION_ID=10"),
        "root files untouched"
    );

    std::fs::write(&path, good).unwrap();
    ok(ab.chainup(&["update", "-V", "20"]));
    assert!(starts_with(&ab.core_b, &core(20)));
    expect_entries(
        &ab,
        &[("clipos-10.efi", efi(10)), ("clipos-20+3.efi", efi(20))],
    );
}

#[test]
fn image_larger_than_the_slot_is_refused_before_anything_is_touched() {
    if fixture::skip_unless_root(
        "image_larger_than_the_slot_is_refused_before_anything_is_touched",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let ab = Ab::new();
    let small = vec![7u8; 1 << 20];
    std::fs::write(&ab.core_b, &small).unwrap();
    let a_before = std::fs::read(&ab.core_a).unwrap();
    let esp_before = ab.entries();

    let out = ab.chainup(&["update", "-V", "20"]);
    assert_eq!(out.status.code(), Some(40), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("is {CORE_SIZE} bytes, but slot b")),
        "{}",
        text(&out)
    );
    assert_eq!(ab.entries(), esp_before);
    assert_eq!(std::fs::read(&ab.core_b).unwrap(), small);
    assert_eq!(std::fs::read(&ab.core_a).unwrap(), a_before);
    assert_eq!(ab.recorded("b"), None);
    assert!(ab.root_version().contains("VERSION_ID=10"));
}

/// Polls `cond` for up to 30 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_at_each_step_keeps_the_fallback_and_a_rerun_completes() {
    if fixture::skip_unless_root(
        "sigkill_at_each_step_keeps_the_fallback_and_a_rerun_completes",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let core20 = core(20);
    // (what blocks the update, how many bytes get through, what to wait for)
    let points: [(&str, &str, u64); 3] = [
        ("slot invalidated, nothing written", "core", 256 << 10),
        ("mid-write", "core", 5 << 20),
        ("written, EFI binary downloading", "efi", 0),
    ];
    for (point, which, bytes) in points {
        let ab = Ab::new();
        let a_before = std::fs::read(&ab.core_a).unwrap();
        let stalled = match which {
            "core" => Ab::fullfile(20, &core20),
            _ => Ab::fullfile(20, &efi(20)),
        };
        ab.w.server.stall(&stalled, bytes);
        let mut child = ab
            .cmd(&["update", "-V", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        match point {
            "mid-write" => wait_for(point, || starts_with(&ab.core_b, &core20[..4 << 20])),
            "slot invalidated, nothing written" => {
                wait_for(point, || ab.recorded("b").as_deref() == Some("invalid"))
            }
            _ => wait_for(point, || ab.recorded("b").as_deref() == Some("written")),
        }
        child.kill().unwrap();
        child.wait().unwrap();

        expect_entries(&ab, &[("clipos-10.efi", efi(10))]);
        assert_eq!(std::fs::read(&ab.core_a).unwrap(), a_before, "{point}");
        // A copy killed half-way leaves a temporary; the next run must clean it.
        std::fs::write(ab.linux().join(".chainup-tmp.clipos-20"), b"MZ half").unwrap();

        ab.w.server.clear_faults();
        let out = ok(ab.chainup(&["update", "-V", "20"]));
        assert!(
            text(&out).contains("into slot b"),
            "{point}: {}",
            text(&out)
        );
        assert!(starts_with(&ab.core_b, &core20), "{point}");
        assert_eq!(std::fs::read(&ab.core_a).unwrap(), a_before, "{point}");
        expect_entries(
            &ab,
            &[("clipos-10.efi", efi(10)), ("clipos-20+3.efi", efi(20))],
        );
    }
}

#[test]
fn unknown_or_conflicting_active_slot_is_refused_with_what_was_seen() {
    if fixture::skip_unless_root(
        "unknown_or_conflicting_active_slot_is_refused_with_what_was_seen",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let ab = Ab::new();
    let a_before = std::fs::read(&ab.core_a).unwrap();
    let b_before = std::fs::read(&ab.core_b).unwrap();
    let untouched = |ab: &Ab| {
        expect_entries(ab, &[("clipos-10.efi", efi(10))]);
        assert_eq!(std::fs::read(&ab.core_a).unwrap(), a_before);
        assert_eq!(std::fs::read(&ab.core_b).unwrap(), b_before);
        assert!(ab.root_version().contains("VERSION_ID=10"));
    };

    std::fs::write(&ab.cmdline, "quiet root=/dev/nonexistent-disk\n").unwrap();
    let out = ab.chainup(&["update", "-V", "20"]);
    assert_eq!(out.status.code(), Some(40), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("cannot tell the active slot"), "{msg}");
    assert!(msg.contains("root=/dev/nonexistent-disk"), "{msg}");
    assert!(msg.contains("/dev/other (254:99)"), "{msg}");
    untouched(&ab);
    let info = text(&ok(ab.chainup(&["info"])));
    assert!(info.contains("Active slot: unknown"), "{info}");

    let root_b = format!("chainup.slot=a root={}\n", ab.core_b.display());
    std::fs::write(&ab.cmdline, root_b).unwrap();
    let out = ab.chainup(&["update", "-V", "20"]);
    assert_eq!(out.status.code(), Some(40), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("conflicting information"), "{msg}");
    assert!(
        msg.contains("chainup.slot=a") && msg.contains("is core_b"),
        "{msg}"
    );
    untouched(&ab);

    std::fs::write(&ab.cmdline, "chainup.slot=c\n").unwrap();
    let out = ab.chainup(&["update", "-V", "20"]);
    assert_eq!(out.status.code(), Some(40), "{}", text(&out));
    assert!(text(&out).contains("chainup.slot=c"), "{}", text(&out));
    untouched(&ab);
}

#[test]
fn a_slot_that_is_the_running_one_is_refused() {
    if fixture::skip_unless_root(
        "a_slot_that_is_the_running_one_is_refused",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let ab = Ab::new();
    let alias = ab.w.dir.path().join("dev/alias-of-a");
    std::os::unix::fs::symlink(&ab.core_a, &alias).unwrap();
    ab.write_config(&ab.core_a, &alias);
    let a_before = std::fs::read(&ab.core_a).unwrap();
    let out = ab.chainup(&["update", "-V", "20"]);
    assert_eq!(out.status.code(), Some(40), "{}", text(&out));
    assert!(text(&out).contains("are the same"), "{}", text(&out));
    assert_eq!(std::fs::read(&ab.core_a).unwrap(), a_before);
    expect_entries(&ab, &[("clipos-10.efi", efi(10))]);
}

#[test]
fn without_a_slots_table_images_are_skipped_and_files_update() {
    if fixture::skip_unless_root(
        "without_a_slots_table_images_are_skipped_and_files_update",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let ab = Ab::new();
    std::fs::write(&ab.config, "").unwrap();
    let b_before = std::fs::read(&ab.core_b).unwrap();
    let out = ok(ab.chainup(&["update", "-V", "20"]));
    assert!(
        text(&out).contains("no [slots] table: images skipped"),
        "{}",
        text(&out)
    );
    assert!(ab.root_version().contains("VERSION_ID=20"));
    assert_eq!(std::fs::read(&ab.core_b).unwrap(), b_before);
    expect_entries(&ab, &[("clipos-10.efi", efi(10))]);
}

/// Loop devices and mounts made by a test, undone on drop.
#[derive(Default)]
struct Loops {
    devices: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Loops {
    fn attach(&mut self, file: &Path) -> String {
        let out = ok(run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)));
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        self.devices.push(dev.clone());
        dev
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        for d in self.devices.iter().rev() {
            let _ = Command::new("losetup").args(["-d", d]).status();
        }
    }
}

/// `major:minor` of a block device.
fn devno(dev: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(dev).unwrap().rdev();
    format!("{}:{}", libc::major(rdev), libc::minor(rdev))
}

/// Mounts a fresh vfat image at `esp`, or says why not.
fn vfat_esp(loops: &mut Loops, dir: &Path, esp: &Path) -> Result<(), String> {
    let img = dir.join("esp.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(64 << 20).unwrap();
    let mkfs = match Command::new("mkfs.vfat").arg(&img).output() {
        Ok(out) => out,
        Err(e) => {
            return Err(format!(
                "mkfs.vfat is not available ({e}); apt-get install dosfstools"
            ))
        }
    };
    if !mkfs.status.success() {
        return Err(format!("mkfs.vfat failed: {}", text(&mkfs)));
    }
    let dev = loops.attach(&img);
    std::fs::create_dir_all(esp).unwrap();
    let mount = run(Command::new("mount").args(["-t", "vfat", &dev]).arg(esp));
    if !mount.status.success() {
        return Err(format!("cannot mount vfat: {}", text(&mount).trim()));
    }
    loops.mounts.push(esp.to_path_buf());
    Ok(())
}

#[test]
fn loop_device_slots_and_a_vfat_esp() {
    if !fixture::is_root() {
        eprintln!("SKIP loop_device_slots_and_a_vfat_esp: needs root for losetup and mount");
        return;
    }
    let ab = Ab::new();
    let mut loops = Loops::default();
    let dev_a = loops.attach(&ab.core_a);
    let dev_b = loops.attach(&ab.core_b);
    // The ESP: a mounted vfat image where the kernel allows, else the directory as set up.
    let vfat = ab.w.dir.path().join("vfat");
    let esp = match vfat_esp(&mut loops, ab.w.dir.path(), &vfat) {
        Ok(()) => {
            std::fs::create_dir_all(vfat.join("EFI/Linux")).unwrap();
            std::fs::write(vfat.join("EFI/Linux/clipos-10.efi"), efi(10)).unwrap();
            vfat
        }
        Err(why) => {
            eprintln!("vfat ESP skipped, using a directory: {why}");
            ab.esp.clone()
        }
    };
    let ab = Ab { esp, ..ab };
    // root= through a symlink (as /dev/mapper/... or /dev/vg/lv are), agreeing with mountinfo.
    let alias = ab.w.dir.path().join("dev/mainvg-core_a");
    std::os::unix::fs::symlink(&dev_a, &alias).unwrap();
    ab.write_config(Path::new(&dev_a), Path::new(&dev_b));
    std::fs::write(&ab.cmdline, format!("ro root={}\n", alias.display())).unwrap();
    let mi = |dev: &str| format!("27 1 {} / / rw - ext4 {dev} rw\n", devno(dev));
    std::fs::write(&ab.mountinfo, mi(&dev_a)).unwrap();
    let a_before = std::fs::read(&dev_a).unwrap();

    let out = ok(ab.chainup(&["update", "-V", "20"]));
    assert!(text(&out).contains("into slot b"), "{}", text(&out));
    assert!(starts_with(Path::new(&dev_b), &core(20)));
    assert_eq!(std::fs::read(&dev_a).unwrap(), a_before);
    expect_entries(
        &ab,
        &[("clipos-10.efi", efi(10)), ("clipos-20+3.efi", efi(20))],
    );

    // The mount table contradicting the command line is refused.
    std::fs::write(&ab.mountinfo, mi(&dev_b)).unwrap();
    let out = ab.chainup(&["mark-good"]);
    assert_eq!(out.status.code(), Some(40), "{}", text(&out));
    assert!(text(&out).contains("conflicting"), "{}", text(&out));

    // Boot into B (found by the mount table alone), accept it, update into A.
    std::fs::write(&ab.cmdline, "ro quiet\n").unwrap();
    ok(ab.chainup(&["mark-good"]));
    let b_before = std::fs::read(&dev_b).unwrap();
    ok(ab.chainup(&["update", "-V", "30"]));
    assert!(starts_with(Path::new(&dev_a), &core(30)));
    assert_eq!(std::fs::read(&dev_b).unwrap(), b_before);
    expect_entries(
        &ab,
        &[("clipos-20.efi", efi(20)), ("clipos-30+3.efi", efi(30))],
    );
}

#[test]
fn diagnose_images_checks_the_running_slot_and_its_entry() {
    if fixture::skip_unless_root(
        "diagnose_images_checks_the_running_slot_and_its_entry",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let ab = Ab::new();
    ok(ab.chainup(&["update", "-V", "20"]));
    // Still running A (version 10) with the root at 20: A is checked against version 10.
    let out = ok(ab.chainup(&["diagnose", "--images"]));
    assert!(text(&out).contains("no problems"), "{}", text(&out));

    std::fs::write(&ab.cmdline, "quiet chainup.slot=b\n").unwrap();
    ok(ab.chainup(&["mark-good"]));
    ok(ab.chainup(&["diagnose", "--images"]));

    // One flipped byte in the running slot, then a missing boot entry.
    let mut b = std::fs::read(&ab.core_b).unwrap();
    b[4096] ^= 0xff;
    std::fs::write(&ab.core_b, &b).unwrap();
    let out = ab.chainup(&["diagnose", "--images"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("/core"), "{}", text(&out));
    assert!(text(&out).contains("slot b"), "{}", text(&out));
    b[4096] ^= 0xff;
    std::fs::write(&ab.core_b, &b).unwrap();
    std::fs::remove_file(ab.linux().join("clipos-20.efi")).unwrap();
    let out = ab.chainup(&["diagnose", "--images"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Missing: /efiboot"), "{}", text(&out));

    // repair does not rewrite slots.
    let out = ab.chainup(&["repair", "--images"]);
    assert_eq!(out.status.code(), Some(15), "{}", text(&out));
}

#[test]
fn a_symlinked_esp_is_refused_naming_the_symlink() {
    if fixture::skip_unless_root(
        "a_symlinked_esp_is_refused_naming_the_symlink",
        IMAGE_BUNDLE_OWNER,
    ) {
        return;
    }
    let ab = Ab::new();
    // The configured ESP is a symlink to the real directory.
    let real = ab.w.dir.path().join("real-esp");
    std::fs::rename(&ab.esp, &real).unwrap();
    std::os::unix::fs::symlink(&real, &ab.esp).unwrap();
    let a_before = std::fs::read(&ab.core_a).unwrap();
    let b_before = std::fs::read(&ab.core_b).unwrap();
    let out = ab.chainup(&["update", "-V", "20"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(40), "{t}");
    assert!(
        t.contains("symlink") && t.contains(&ab.esp.display().to_string()),
        "{t}"
    );
    assert_eq!(std::fs::read(&ab.core_a).unwrap(), a_before);
    assert_eq!(std::fs::read(&ab.core_b).unwrap(), b_before);
    assert!(ab.root_version().contains("VERSION_ID=10"));
    let entries: Vec<_> = std::fs::read_dir(real.join("EFI/Linux"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["clipos-10.efi"]);

    // EFI/Linux inside the ESP as a symlink is refused the same way.
    std::fs::remove_file(&ab.esp).unwrap();
    std::fs::create_dir_all(ab.esp.join("EFI")).unwrap();
    std::os::unix::fs::symlink(real.join("EFI/Linux"), ab.linux()).unwrap();
    let out = ab.chainup(&["update", "-V", "20"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(40), "{t}");
    assert!(t.contains("symlink") && t.contains("EFI/Linux"), "{t}");
    assert!(ab.root_version().contains("VERSION_ID=10"));
}

/// The A/B invariant: every boot entry on the ESP names a version whose image the slot
/// holding it really has (slot A keeps 10; slot B may hold 20 only once written whole).
#[track_caller]
fn every_entry_boots_a_good_image(ab: &Ab, moment: &str) {
    for (name, data) in ab.entries() {
        let Some(rest) = name.strip_prefix("clipos-") else {
            continue;
        };
        let Some(rest) = rest.strip_suffix(".efi") else {
            continue; // a temporary, which systemd-boot does not load
        };
        let v: u32 = rest.split('+').next().unwrap().parse().unwrap();
        assert_eq!(data, efi(v), "{moment}: entry {name} holds another binary");
        let slot = if v == 10 { &ab.core_a } else { &ab.core_b };
        assert!(
            starts_with(slot, &core(v)),
            "{moment}: entry {name} on the ESP, but its slot does not hold image {v}"
        );
    }
}

#[test]
fn crash_sweep_over_an_image_update() {
    if fixture::skip_unless_root("crash_sweep_over_an_image_update", IMAGE_BUNDLE_OWNER) {
        return;
    }
    let moments = [
        "stage::member=return",
        "img::entries-removed=return",
        "img::invalidated=return",
        "img::block=return",
        "img::block=1*off->return",
        "img::checked=return",
        "img::written=return",
        "esp::temporary=return",
        "img::entry=return",
        "img::installed=return",
        "txn::begin=return",
        "txn::placed=return",
        "txn::version=return",
        "txn::finished=return",
    ];
    for moment in moments {
        let ab = Ab::new();
        let a_before = std::fs::read(&ab.core_a).unwrap();
        let out = ab
            .cmd(&["update", "-V", "20"])
            .env("FAILPOINTS", moment)
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(9), "{moment}: {}", text(&out));
        every_entry_boots_a_good_image(&ab, moment);
        assert_eq!(std::fs::read(&ab.core_a).unwrap(), a_before, "{moment}");

        let out = ok(ab.chainup(&["update", "-V", "20"]));
        every_entry_boots_a_good_image(&ab, moment);
        assert!(starts_with(&ab.core_b, &core(20)), "{moment}");
        assert_eq!(std::fs::read(&ab.core_a).unwrap(), a_before, "{moment}");
        expect_entries(
            &ab,
            &[("clipos-10.efi", efi(10)), ("clipos-20+3.efi", efi(20))],
        );
        assert!(
            ab.root_version().contains("VERSION_ID=20"),
            "{moment}: {}",
            text(&out)
        );
        ok(ab.chainup(&["diagnose"]));
    }
}
