//! Progress through the real binary: the JSON stream in swupd's shape with real
//! completion figures, and the bars on a pseudo-terminal (util-linux `script`) with bytes
//! done and total, a rate with its unit and an ETA, for downloads, the install and the
//! write of an A/B core image.

#[path = "common/fixture.rs"]
mod fixture;
#[path = "common/server.rs"]
mod server;

use std::path::PathBuf;
use std::process::{Command, Output};

use fixture::{ok, run, text, World, BUNDLES};
use serde_json::Value;

/// Files in the sample's os-core besides its own: enough for percentages between 0 and 100.
const FILES: usize = 40;

/// Release 10 with `FILES` more files of a few KiB each, published.
fn world() -> World {
    let w = World::new();
    w.sample(10);
    for i in 0..FILES {
        let body = format!("file {i}\n").repeat(500 + 37 * i);
        w.file(
            10,
            "os-core",
            &format!("/usr/share/data/f{i:02}"),
            body.as_bytes(),
            0o644,
        );
    }
    ok(w.publish(10, &[]));
    w
}

/// The whole `--json-output` stream, which must parse as one JSON array.
fn parse_events(out: &Output) -> Vec<Value> {
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(v)) => v,
        other => panic!("not a JSON array ({other:?}):\n{}", text(out)),
    }
}

/// Checks the progress events of a stream and returns the steps, in order, with their
/// completion figures.
#[track_caller]
fn check_steps(events: &[Value]) -> Vec<(String, Vec<i64>)> {
    let progress: Vec<&Value> = events.iter().filter(|e| e["type"] == "progress").collect();
    assert!(!progress.is_empty());
    let total = progress[0]["totalSteps"].as_u64().unwrap();
    let mut steps: Vec<(u64, String, Vec<i64>)> = Vec::new();
    for p in &progress {
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5, "{p}");
        assert_eq!(p["totalSteps"], total, "{p}");
        let (n, name) = (
            p["currentStep"].as_u64().unwrap(),
            p["stepDescription"].as_str().unwrap(),
        );
        let c = p["stepCompletion"].as_i64().unwrap();
        assert!((-1..=100).contains(&c), "{p}");
        match steps.last_mut() {
            Some((last, s, figures)) if *last == n => {
                assert_eq!(s, name);
                assert!(
                    *figures.last().unwrap() < c,
                    "completion rises: {figures:?} then {c}"
                );
                figures.push(c);
            }
            last => {
                let prev = last.map_or(0, |(l, ..)| *l);
                assert_eq!(n, prev + 1, "steps are numbered in order: {p}");
                steps.push((n, name.to_string(), vec![c]));
            }
        }
    }
    for (_, name, figures) in &steps {
        assert_eq!(
            figures.last(),
            Some(&100),
            "{name} ends at 100: {figures:?}"
        );
    }
    steps.into_iter().map(|(_, s, f)| (s, f)).collect()
}

#[test]
fn json_progress_has_swupds_shape_and_real_completion_figures() {
    let w = world();
    let out = ok(w.chainup(&["os-install", "-V", "10", "--json-output"]));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        stdout.starts_with("[\n{ \"type\" : \"start\", \"section\" : \"os-install\" },\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("{ \"type\" : \"progress\", \"currentStep\" : 1, \"totalSteps\" : 3, \"stepCompletion\" : 0, \"stepDescription\" : \"download_fullfiles\" },\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            ",\n{ \"type\" : \"end\", \"section\" : \"os-install\", \"status\" : 0 }\n]\n"
        ),
        "{stdout}"
    );

    let events = parse_events(&out);
    let steps = check_steps(&events);
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "download_fullfiles",
            "install_files",
            "run_postupdate_scripts"
        ]
    );
    for (name, figures) in &steps[..2] {
        assert_eq!(figures[0], 0, "{name}");
        // Real figures, not a jump from 0 to 100 (a pack brings many files at once, so
        // downloads move in fewer steps than the install).
        assert!(
            figures.iter().any(|&f| 0 < f && f < 100),
            "{name}: {figures:?}"
        );
    }
    assert!(
        steps[1].1.len() > 10,
        "the install counts every file: {:?}",
        steps[1].1
    );

    // An update: its own step names; the image step, with nothing to do, is passed over.
    w.derive(10, 20);
    for i in 0..FILES {
        w.file(
            20,
            "os-core",
            &format!("/usr/share/data/f{i:02}"),
            format!("v20 {i}\n").repeat(300).as_bytes(),
            0o644,
        );
    }
    ok(w.publish(20, &[]));
    let out = ok(w.chainup(&["update", "--json-output"]));
    let events = parse_events(&out);
    let steps = check_steps(&events);
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "download_fullfiles",
            "write_image",
            "update_files",
            "run_postupdate_scripts"
        ]
    );
    assert_eq!(steps[1].1, [100]);
    assert_eq!(events.last().unwrap()["status"], 0);
}

/// The command line of `World::chainup_cmd` without `--no-progress`.
fn tty_args(w: &World, extra: &[&str]) -> Vec<String> {
    let cmd = w.chainup_cmd(extra);
    let mut args: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args.retain(|a| a != "--no-progress");
    args
}

/// Runs a command on a pseudo-terminal and returns what the terminal got, escape
/// sequences and carriage returns turned into line ends; `None` without `script`.
fn on_tty(args: &[String]) -> Option<String> {
    if run(Command::new("sh").args(["-c", "command -v script"]))
        .stdout
        .is_empty()
    {
        println!("skipped: `script` (bsdutils or util-linux) is not installed; it provides the pseudo-terminal");
        return None;
    }
    let line: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let out = ok(run(Command::new("script")
        .args(["-q", "-e", "-c", &line.join(" "), "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "160")));
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(plain_text(&raw))
}

/// The text of a terminal stream: CSI sequences dropped, `\r` as a line end.
fn plain_text(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => out.push('\n'),
            c => out.push(c),
        }
    }
    out
}

/// A size with a binary unit, as indicatif and chainup print them: `12 B`, `3.50 KiB`.
fn is_size(s: &str) -> bool {
    let Some((n, unit)) = s.split_once(' ') else {
        return false;
    };
    n.parse::<f64>().is_ok() && ["B", "KiB", "MiB", "GiB"].contains(&unit)
}

/// The lines of `screen` that start with `name`, trimmed.
fn lines<'a>(screen: &'a str, name: &str) -> Vec<&'a str> {
    screen
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(name))
        .collect()
}

/// Checks a bar line: `NAME [===] DONE/TOTAL RATE/s ETA Ns ...` (`/~TOTAL` when the
/// total is estimated from the items done).
#[track_caller]
fn check_bar(line: &str) {
    let rest = line
        .split_once(']')
        .unwrap_or_else(|| panic!("no bar in {line:?}"))
        .1;
    let w: Vec<&str> = rest.split_whitespace().collect();
    assert!(w.len() >= 6, "{line:?}");
    let (unit, total) = w[1]
        .split_once('/')
        .unwrap_or_else(|| panic!("no total in {line:?}"));
    assert!(
        is_size(&format!("{} {unit}", w[0])),
        "bytes done in {line:?}"
    );
    assert!(
        is_size(&format!("{} {}", total.trim_start_matches('~'), w[2])),
        "total in {line:?}"
    );
    let rate_unit = w[4]
        .strip_suffix("/s")
        .unwrap_or_else(|| panic!("rate in {line:?}"));
    assert!(
        is_size(&format!("{} {rate_unit}", w[3])),
        "rate in {line:?}"
    );
    assert_eq!(w[5], "ETA", "{line:?}");
}

/// Checks a closing line: `NAME: [N of M items, ]DONE[ of TOTAL] in TIME (RATE/s)`.
#[track_caller]
fn check_summary(line: &str, exact_total: bool) {
    let (_, rest) = line.split_once(": ").unwrap();
    let rest = rest.split_once(" items, ").map_or(rest, |(_, r)| r);
    let (sizes, rate) = rest.split_once(" in ").unwrap();
    match sizes.split_once(" of ") {
        Some((done, total)) => assert!(is_size(done) && is_size(total), "{line:?}"),
        None => assert!(!exact_total && is_size(sizes), "{line:?}"),
    }
    let rate = rate.split_once('(').unwrap().1.trim_end_matches(')');
    assert!(
        rate.ends_with("/s") && is_size(rate.trim_end_matches("/s")),
        "rate in {line:?}"
    );
}

#[test]
fn bars_on_a_terminal_show_bytes_total_rate_and_eta() {
    let w = world();
    let Some(screen) = on_tty(&tty_args(&w, &["os-install", "-V", "10"])) else {
        return;
    };
    assert!(w.root.join("usr/share/data/f00").exists(), "{screen}");
    for (name, exact) in [("Downloading", false), ("Installing", true)] {
        let summaries: Vec<&str> = lines(&screen, &format!("{name}:"));
        assert_eq!(summaries.len(), 1, "{name} in {screen}");
        check_summary(summaries[0], exact);
        let (done, total) = summaries[0]
            .split_once(" items")
            .unwrap()
            .0
            .split_once(" of ")
            .unwrap();
        assert_eq!(
            done.split_once(": ").unwrap().1,
            total,
            "all items done: {screen}"
        );
        assert!(total.parse::<usize>().unwrap() > FILES, "{screen}");
        let bars: Vec<&str> = lines(&screen, &format!("{name} ["));
        assert!(!bars.is_empty(), "a bar for {name} in {screen}");
        bars.iter().for_each(|l| check_bar(l));
    }
}

/// Slot images, an ESP and the files naming the running slot: an A/B world with images
/// in releases 10 and 20, installed at 10 with slot A running (as in tests/ab.rs).
struct Ab {
    w: World,
    config: PathBuf,
}

const CORE_SIZE: usize = (6 << 20) + 123;

fn image(v: u32) -> Vec<u8> {
    let mut x = u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(CORE_SIZE + 8);
    while out.len() < CORE_SIZE {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(CORE_SIZE);
    out
}

impl Ab {
    fn new() -> Ab {
        let w = World::new();
        std::fs::write(
            &w.bundles_toml,
            format!("{BUNDLES}\n[bundles.core-image]\n"),
        )
        .unwrap();
        let d = w.dir.path().join("dev");
        std::fs::create_dir_all(d.join("esp/EFI/Linux")).unwrap();
        for v in [10, 20] {
            match v {
                10 => w.sample(v),
                _ => w.derive(10, v),
            }
            let (core, efi) = (d.join(format!("core{v}")), d.join(format!("efi{v}")));
            std::fs::write(&core, image(v)).unwrap();
            std::fs::write(&efi, format!("MZ kernel {v}\n")).unwrap();
            ok(w.publish_images(v, "core-image", &core, &efi));
        }
        let mut a = image(10);
        a.resize(8 << 20, 0);
        std::fs::write(d.join("core_a.img"), a).unwrap();
        std::fs::write(d.join("core_b.img"), vec![0u8; 8 << 20]).unwrap();
        std::fs::write(d.join("esp/EFI/Linux/clipos-10.efi"), "MZ kernel 10\n").unwrap();
        std::fs::write(d.join("cmdline"), "quiet chainup.slot=a\n").unwrap();
        std::fs::write(
            d.join("mountinfo"),
            "27 1 254:99 / / rw - ext4 /dev/other rw\n",
        )
        .unwrap();
        let config = d.join("config.toml");
        let p = |n: &str| format!("{:?}", d.join(n));
        std::fs::write(
            &config,
            format!(
                "[slots]\nproduct = \"clipos\"\ncore_a = {}\ncore_b = {}\nesp = {}\ncmdline = {}\nmountinfo = {}\n",
                p("core_a.img"), p("core_b.img"), p("esp"), p("cmdline"), p("mountinfo")
            ),
        )
        .unwrap();
        let ab = Ab { w, config };
        ok(run(&mut ab.cmd(&[
            "os-install",
            "-V",
            "10",
            "-B",
            "core-image",
        ])));
        ab
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.w.chainup_cmd(args);
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    fn slot_b(&self) -> Vec<u8> {
        let mut b = std::fs::read(self.config.with_file_name("core_b.img")).unwrap();
        b.truncate(CORE_SIZE);
        b
    }
}

#[test]
fn the_image_write_reports_its_progress_in_json_and_on_a_terminal() {
    if fixture::skip_unless_root(
        "the_image_write_reports_its_progress_in_json_and_on_a_terminal",
        "the publisher gives the image bundle's entries to root, and only root can install them",
    ) {
        return;
    }
    let ab = Ab::new();
    let out = ok(run(&mut ab.cmd(&["update", "-V", "20", "--json-output"])));
    assert!(ab.slot_b() == image(20), "slot B holds the new image");
    let events = parse_events(&out);
    let steps = check_steps(&events);
    let (_, figures) = steps
        .iter()
        .find(|(s, _)| s == "write_image")
        .expect("a write_image step");
    assert_eq!(figures[0], 0);
    assert!(figures.len() > 2, "figures between 0 and 100: {figures:?}");

    // Again on a terminal, into slot A this time (slot B now runs).
    let ab = Ab::new();
    let mut args = tty_args(&ab.w, &["update", "-V", "20"]);
    args.extend(["--config".to_string(), ab.config.display().to_string()]);
    let Some(screen) = on_tty(&args) else {
        return;
    };
    assert!(ab.slot_b() == image(20), "{screen}");
    let summary = lines(&screen, "Writing image:");
    assert_eq!(summary.len(), 1, "{screen}");
    check_summary(summary[0], true);
    assert!(summary[0].contains(" of 6.00 MiB in "), "{screen}");
    let bars = lines(&screen, "Writing image [");
    assert!(!bars.is_empty(), "{screen}");
    bars.iter().for_each(|l| check_bar(l));
}
