//! Bounds before trust: archives built to blow up when unpacked (xz bombs), served as the
//! MoM and as a bundle manifest, are refused by the real binary with a message naming the
//! cap, the root left as it was, and the child's peak memory kept under 100 MiB.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};

use fixture::{expected, ok, snapshot, text, World};

/// The most the client may hold in memory, whatever the server sends.
const MAX_RSS: u64 = 100 << 20;
const MIB: u64 = 1 << 20;

/// xz's LZMA2 dictionary-size codes (`(2 | (b & 1)) << (b / 2 + 11)`).
const DICT_8M: u8 = 22;
const DICT_64M: u8 = 28;
const DICT_3G: u8 = 39;

/// One xz stream of `data` whose block header declares the dictionary `dict`: the decoder
/// must set that much memory aside, whatever the data needs.
fn xz_stream(data: &[u8], dict: u8) -> Vec<u8> {
    let mut opts = xz2::stream::LzmaOptions::new_preset(1).unwrap();
    opts.dict_size(1 << 20);
    let mut filters = xz2::stream::Filters::new();
    filters.lzma2(&opts);
    let stream =
        xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc32).unwrap();
    let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    std::io::Write::write_all(&mut enc, data).unwrap();
    let mut xz = enc.finish().unwrap();
    // Stream header (12 bytes), then the block header: size, flags 0 (one filter, no
    // sizes), LZMA2 (0x21), one property byte (the dictionary), padding, CRC32.
    assert_eq!(
        &xz[12..16],
        &[0x02, 0x00, 0x21, 0x01],
        "unexpected block header"
    );
    xz[16] = dict;
    let mut crc = flate2::Crc::new();
    crc.update(&xz[12..20]);
    xz[20..24].copy_from_slice(&crc.sum().to_le_bytes());
    xz
}

/// An xz bomb: the raw tar bytes `prefix`, then `zeros` zero bytes, as concatenated xz
/// streams (one per 64 MiB of zeros, compressed once), each declaring dictionary `dict`.
/// Hundreds of MiB unpacked from tens of KB.
fn xz_bomb(prefix: &[u8], zeros: u64, dict: u8) -> Vec<u8> {
    const CHUNK: u64 = 64 << 20;
    let mut out = xz_stream(prefix, dict);
    let full = xz_stream(&vec![0u8; CHUNK as usize], dict);
    for _ in 0..zeros / CHUNK {
        out.extend_from_slice(&full);
    }
    out.extend(xz_stream(&vec![0u8; (zeros % CHUNK) as usize], dict));
    out
}

/// A tar header for a regular file `name` of `size` bytes (0644 root:root).
fn tar_header(name: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A tar of one entry `name` claiming `size` bytes of zeros (data, padding and the end of
/// the archive are all zeros), as an xz bomb.
fn bomb_tar(name: &str, size: u64, dict: u8) -> Vec<u8> {
    xz_bomb(
        &tar_header(name, size),
        size.div_ceil(512) * 512 + 1024,
        dict,
    )
}

/// Runs `cmd` to its end and returns its output and its peak resident set size in bytes.
/// Through GNU time where it is installed (CI installs it): a child spawned straight from
/// this test process inherits the test's own peak (Linux carries the high-water mark of
/// the address space it was cloned from across exec), and the tests here build large
/// bombs in memory. Without it, from the child's rusage (`wait4`).
fn run_measured(cmd: &mut Command) -> (Output, u64) {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        println!("/usr/bin/time is missing: the peak RSS may include the test's own");
        return run_wait4(cmd);
    }
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new(time);
    timed
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed.stdin(Stdio::null()).output().unwrap();
    let kib: u64 = std::fs::read_to_string(report.path())
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("GNU time reports the peak in KiB");
    (out, kib * 1024)
}

/// [`run_measured`] from the child's own rusage (`wait4`).
// wait4 reaps the child itself: std's wait would lose its rusage.
#[allow(clippy::zombie_processes)]
fn run_wait4(cmd: &mut Command) -> (Output, u64) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).unwrap();
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; the child is ours and not yet reaped
    // (std's Child is never waited on after this).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let out = Output {
        status: ExitStatus::from_raw(status),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    // Linux reports ru_maxrss in KiB.
    (out, usage.ru_maxrss as u64 * 1024)
}

/// Release 10 installed, release 20 published (a new /usr/bin/hello).
fn world() -> World {
    let w = World::on_tmpfs();
    w.install_sample();
    w.derive(10, 20);
    w.change_hello(20);
    ok(w.publish(20, &[]));
    w
}

/// `chainup update` is refused with exit `code` and every one of `causes` in its output,
/// the root unchanged and the peak memory under [`MAX_RSS`]. Returns the peak.
#[track_caller]
fn refused_in_bounded_memory(w: &World, code: i32, causes: &[&str]) -> u64 {
    let before = snapshot(&w.root, &[]);
    let (out, rss) = run_measured(&mut w.chainup_cmd(&["update"]));
    let t = text(&out);
    eprintln!("peak RSS {} MiB: {t}", rss / MIB);
    assert_eq!(out.status.code(), Some(code), "{t}");
    for cause in causes {
        assert!(t.contains(cause), "{cause:?} not in:\n{t}");
    }
    assert_eq!(snapshot(&w.root, &[]), before, "the root changed");
    assert!(
        rss < MAX_RSS,
        "peak RSS {} MiB is over {} MiB",
        rss / MIB,
        MAX_RSS / MIB
    );
    rss
}

#[test]
fn mom_xz_bombs_are_refused_in_bounded_memory() {
    let w = world();
    let mom = w.web("20/Manifest.MoM.tar");
    let good = std::fs::read(&mom).unwrap();

    // 510 MiB of "MoM" behind a declared 3 GiB dictionary: the decoder's memory cap
    // refuses it before the first byte is unpacked.
    std::fs::write(&mom, bomb_tar("Manifest.MoM", 510 * MIB, DICT_3G)).unwrap();
    assert!(std::fs::metadata(&mom).unwrap().len() < 100_000);
    refused_in_bounded_memory(&w, 18, &["20/Manifest.MoM.tar", "memory", "MiB"]);

    // The same with an ordinary dictionary: its tar header is over the MoM cap.
    std::fs::write(&mom, bomb_tar("Manifest.MoM", 510 * MIB, DICT_8M)).unwrap();
    refused_in_bounded_memory(&w, 18, &["20/Manifest.MoM.tar", "16777216"]);

    // A small MoM followed by a 500 MiB "signature" entry: skipping it runs into the cap
    // on the unpacked tar.
    let mut prefix = tar_header("Manifest.MoM", 512);
    prefix.extend_from_slice(&[b'x'; 512]);
    prefix.extend(tar_header("Manifest.MoM.sig", 500 * MIB));
    std::fs::write(&mom, xz_bomb(&prefix, 500 * MIB + 1024, DICT_64M)).unwrap();
    refused_in_bounded_memory(&w, 18, &["20/Manifest.MoM.tar", "16777216"]);

    // More than 8 MiB on the wire.
    let noise: Vec<u8> = (0..9 * MIB).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&mom, noise).unwrap();
    refused_in_bounded_memory(&w, 17, &["20/Manifest.MoM.tar", "8388608"]);

    std::fs::write(&mom, good).unwrap();
    ok(w.chainup(&["update"]));
    assert_eq!(snapshot(&w.root, &[]), expected(&w, 20, &["os-core"]));
}

#[test]
fn manifest_xz_bombs_are_refused_in_bounded_memory() {
    let w = world();
    let tar = w.web("20/Manifest.os-core.tar");
    let good = std::fs::read(&tar).unwrap();
    // Without its delta from 10, the update has to read the manifest tar.
    std::fs::remove_file(w.web("20/Manifest-os-core-delta-from-10")).unwrap();

    // 255 MiB, under the 256 MiB cap, behind a 64 MiB dictionary (the most the decoder
    // allows): unpacked through the hash into a temporary file, never into memory, and
    // refused because it is not the manifest the signed MoM lists.
    std::fs::write(&tar, bomb_tar("Manifest.os-core", 255 * MIB, DICT_64M)).unwrap();
    refused_in_bounded_memory(&w, 14, &["hash mismatch", "20/Manifest.os-core.tar"]);

    // Over the cap: refused from its tar header.
    std::fs::write(&tar, bomb_tar("Manifest.os-core", 1024 * MIB, DICT_8M)).unwrap();
    refused_in_bounded_memory(&w, 18, &["20/Manifest.os-core.tar", "268435456"]);

    std::fs::write(&tar, good).unwrap();
    ok(w.chainup(&["update"]));
    assert_eq!(snapshot(&w.root, &[]), expected(&w, 20, &["os-core"]));
}
