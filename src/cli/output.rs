//! What the user sees: progress bars on a terminal, plain lines when piped, nothing with
//! `--quiet`, or a stream of JSON events (a JSON array, one object a line, as swupd).
//!
//! Every step (download, image write, install, post-update actions) counts its items and
//! bytes; bars and the closing line of a step show bytes done and total (estimated from
//! the items when the total is not known beforehand, as for downloads), the rate with
//! its unit and the ETA. JSON progress events have swupd's shape and real percentages.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde_json::json;

use crate::post_update::{Outcome, Report};
use crate::progress::{Event, Observer};

mod steps;
use steps::{Step, Steps};

/// How output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars with rate and ETA (stderr is a terminal).
    Bars,
    /// One line per step.
    Plain,
    /// Errors only.
    Quiet,
    /// JSON events on stdout.
    Json,
}

/// The command-line observer.
pub struct Output {
    mode: Mode,
    section: String,
    inner: Mutex<Inner>,
}

/// What several threads of the library update together.
struct Inner {
    json_first: bool,
    bar: Option<ProgressBar>,
    /// The step under way.
    step: Option<Step>,
    /// swupd's step numbering for JSON.
    steps: Steps,
}

const BAR_EXACT: &str =
    "{msg:>13} [{bar:25}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {prefix}";
const BAR_ITEMS: &str = "{msg:>13} [{bar:25}] {pos}/{len} ETA {eta}";
const BAR_ESTIMATED: &str =
    "{msg:>13} [{bar:25}] {binary_bytes}/~{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {prefix}";

impl Output {
    /// An output for this mode; `section` names the command in JSON output.
    pub fn new(json: bool, quiet: bool, no_progress: bool, section: &str) -> Output {
        let mode = if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else if no_progress || !std::io::stderr().is_terminal() {
            Mode::Plain
        } else {
            Mode::Bars
        };
        let out = Output {
            mode,
            section: section.to_string(),
            inner: Mutex::new(Inner {
                json_first: true,
                bar: None,
                step: None,
                steps: Steps::for_section(section),
            }),
        };
        if mode == Mode::Json {
            println!("[");
            out.json(&[("type", json!("start")), ("section", json!(section))]);
        }
        out
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn json(&self, pairs: &[(&str, serde_json::Value)]) {
        emit(&mut self.lock(), pairs);
    }

    fn json_value(&self, value: serde_json::Value) {
        let pairs: Vec<(&str, serde_json::Value)> = match &value {
            serde_json::Value::Object(map) => {
                // `type` first, as swupd writes it; the rest in key order.
                let mut pairs: Vec<_> = map.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                pairs.sort_by_key(|(k, _)| *k != "type");
                pairs
            }
            other => vec![("value", other.clone())],
        };
        self.json(&pairs);
    }

    /// A result line on stdout (or an info event in JSON).
    pub fn result(&self, msg: &str) {
        match self.mode {
            Mode::Json => self.json(&[("type", json!("info")), ("msg", json!(msg))]),
            _ => self.line(msg),
        }
    }

    /// A structured result: printed as text, or as its own JSON event.
    pub fn record(&self, text: &str, value: serde_json::Value) {
        match self.mode {
            Mode::Json => self.json_value(value),
            _ => self.line(text),
        }
    }

    /// An error, always shown (stderr, or an error event).
    pub fn error(&self, msg: &str) {
        self.finish_bar();
        match self.mode {
            Mode::Json => self.json(&[("type", json!("error")), ("msg", json!(msg))]),
            _ => eprintln!("Error: {msg}"),
        }
    }

    /// A warning that goes to stderr whatever the mode (and into the JSON stream too).
    pub fn loud_warning(&self, msg: &str) {
        eprintln!("WARNING: {msg}");
        if self.mode == Mode::Json {
            self.json(&[("type", json!("warning")), ("msg", json!(msg))]);
        }
    }

    /// A warning: stderr, or a warning event in JSON.
    pub fn warning(&self, msg: &str) {
        match self.mode {
            Mode::Json => self.json(&[("type", json!("warning")), ("msg", json!(msg))]),
            _ => self.suspended(|| eprintln!("Warning: {msg}")),
        }
    }

    /// Closes the JSON array with the exit status.
    pub fn end(&self, section: &str, status: i32) {
        self.finish_bar();
        if self.mode == Mode::Json {
            self.json(&[
                ("type", json!("end")),
                ("section", json!(section)),
                ("status", json!(status)),
            ]);
            println!("\n]");
        }
    }

    /// A line on stdout that does not tear a bar being drawn.
    fn line(&self, msg: &str) {
        self.suspended(|| println!("{msg}"));
    }

    fn suspended(&self, f: impl FnOnce()) {
        let inner = self.lock();
        match inner.bar.as_ref() {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    fn finish_bar(&self) {
        if let Some(bar) = self.lock().bar.take() {
            bar.finish_and_clear();
        }
    }

    fn phase(&self, name: &str, total: u64) {
        let mut inner = self.lock();
        if let Some(bar) = inner.bar.take() {
            bar.finish_and_clear();
        }
        let step = Step::new(name, total);
        match self.mode {
            Mode::Json => {
                let (skipped, number) = inner.steps.enter(&self.section, name);
                let total_steps = inner.steps.total();
                for (n, id) in skipped {
                    emit(&mut inner, &progress(n, total_steps, 100, &id));
                }
                inner.step = Some(step.numbered(number, inner.steps.id(number)));
            }
            Mode::Plain => {
                if total > 0 {
                    println!("{name}: {total} items");
                }
                inner.step = Some(step);
            }
            Mode::Bars => {
                let bar = ProgressBar::new(0);
                bar.set_style(style(BAR_ESTIMATED));
                bar.set_message(name.to_string());
                if total > 0 {
                    bar.set_prefix(format!("0/{total} files"));
                }
                bar.enable_steady_tick(Duration::from_millis(200));
                inner.bar = Some(bar);
                inner.step = Some(step);
            }
            Mode::Quiet => inner.step = Some(step),
        }
    }

    fn phase_size(&self, bytes: u64) {
        let mut inner = self.lock();
        let Some(step) = inner.step.as_mut() else {
            return;
        };
        step.bytes_total = Some(bytes);
        let items = step.items;
        if (bytes, items) == (0, 0) {
            // Nothing to count (no post-update action, say): no bar, no closing line.
            if let Some(bar) = inner.bar.take() {
                bar.finish_and_clear();
            }
        }
        if let Some(bar) = &inner.bar {
            // A step that moves no bytes counts items only.
            match (bytes, items) {
                (0, 1..) => {
                    bar.set_style(style(BAR_ITEMS));
                    bar.set_length(items);
                }
                _ => {
                    bar.set_style(style(BAR_EXACT));
                    bar.set_length(bytes);
                }
            }
        }
        if self.mode == Mode::Json {
            start_json(&mut inner);
        }
    }

    fn advance(&self, items: u64, bytes: u64) {
        let mut inner = self.lock();
        let Some(step) = inner.step.as_mut() else {
            return;
        };
        step.items_done += items;
        step.bytes_done += bytes;
        let (items_done, bytes_done, total_items) = (step.items_done, step.bytes_done, step.items);
        let by_items = step.bytes_total == Some(0) && total_items > 0;
        let length = step.bytes_total.unwrap_or_else(|| step.estimated_bytes());
        if let Some(bar) = &inner.bar {
            if by_items {
                bar.set_position(items_done);
            } else {
                bar.set_length(length.max(bytes_done));
                bar.set_position(bytes_done);
            }
            if total_items > 0 {
                bar.set_prefix(format!("{items_done}/{total_items} files"));
            }
        }
        if self.mode == Mode::Json {
            start_json(&mut inner);
            let total = inner.steps.total();
            let step = inner.step.as_mut().expect("checked above");
            if let Some(p) = step.percent().filter(|&p| p < 100 && p > step.reported) {
                step.reported = p;
                let pairs = step.progress(total, p);
                emit(&mut inner, &pairs);
            }
        }
    }

    fn phase_done(&self) {
        let mut inner = self.lock();
        let Some(step) = inner.step.take() else {
            return;
        };
        match self.mode {
            Mode::Json => {
                inner.step = Some(step);
                start_json(&mut inner);
                let step = inner.step.take().expect("put back above");
                if step.reported < 100 {
                    let pairs = step.progress(inner.steps.total(), 100);
                    emit(&mut inner, &pairs);
                }
            }
            _ if step.is_empty() => {}
            Mode::Plain => println!("{}", step.summary()),
            Mode::Bars => {
                if let Some(bar) = inner.bar.take() {
                    bar.force_draw();
                    bar.finish_and_clear();
                }
                eprintln!("{}", step.summary());
            }
            Mode::Quiet => {}
        }
    }

    fn post_update(&self, report: &Report) {
        let failed = matches!(report.outcome, Outcome::Failed(_) | Outcome::TimedOut(_));
        if self.mode == Mode::Json {
            let mut value = json!({
                "type": "post-update",
                "action": report.action.name,
                "command": report.command(),
                "reason": report.action.why,
                "status": report.outcome.status(),
            });
            match &report.outcome {
                Outcome::Failed(why) | Outcome::Skipped(why) => value["detail"] = json!(why),
                Outcome::TimedOut(t) => value["timeout"] = json!(t.as_secs_f64()),
                Outcome::Done => {}
            }
            self.json_value(value);
        }
        if failed {
            self.warning(&report.to_string());
        } else if !matches!(self.mode, Mode::Json | Mode::Quiet) {
            self.line(&capitalized(&report.to_string()));
        }
    }
}

/// Writes one event in swupd's layout: `{ "key" : value, ... }`, comma-separated lines.
fn emit(inner: &mut Inner, pairs: &[(&str, serde_json::Value)]) {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{} : {v}", json!(k)))
        .collect();
    let sep = if inner.json_first { "" } else { ",\n" };
    inner.json_first = false;
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{sep}{{ {} }}", body.join(", "));
    let _ = stdout.flush();
}

/// The first progress event of the step under way, once: 0, or -1 (swupd's "undefined")
/// for a step that has nothing to count.
fn start_json(inner: &mut Inner) {
    let total = inner.steps.total();
    let Some(step) = inner.step.as_mut() else {
        return;
    };
    if step.reported != steps::NOT_STARTED {
        return;
    }
    step.reported = if step.percent().is_some() { 0 } else { -1 };
    let pairs = step.progress(total, step.reported);
    emit(inner, &pairs);
}

fn progress(
    step: usize,
    total: usize,
    completion: i64,
    id: &str,
) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("type", json!("progress")),
        ("currentStep", json!(step)),
        ("totalSteps", json!(total)),
        ("stepCompletion", json!(completion)),
        ("stepDescription", json!(id)),
    ]
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("static template")
        .progress_chars("=> ")
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `1.50 MiB/s`: bytes per second with a binary unit.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    format!("{}/s", HumanBytes((bytes as f64 / secs) as u64))
}

impl Observer for Output {
    fn event(&self, event: Event<'_>) {
        // Whatever happens first in a step opens it in JSON (its size may come first).
        if self.mode == Mode::Json
            && !matches!(event, Event::PhaseSize { .. } | Event::Phase { .. })
        {
            start_json(&mut self.lock());
        }
        match (self.mode, event) {
            (_, Event::Phase { name, total }) => self.phase(name, total),
            (_, Event::PhaseSize { bytes }) => self.phase_size(bytes),
            (_, Event::Advance { items, bytes }) => self.advance(items, bytes),
            (_, Event::PhaseDone) => self.phase_done(),
            (_, Event::PostUpdate(report)) => self.post_update(report),
            (_, Event::Warning(msg)) => self.warning(&msg),
            (Mode::Json, Event::Info(msg)) => {
                self.json(&[("type", json!("info")), ("msg", json!(msg))])
            }
            (
                Mode::Json,
                Event::ImageTransfer {
                    slot,
                    method,
                    size,
                    reused,
                    downloaded,
                    wire,
                },
            ) => self.json_value(json!({
                "type": "image-transfer", "slot": slot, "method": method, "bytes": size,
                "bytesReused": reused, "bytesDownloaded": downloaded, "bytesOnWire": wire
            })),
            (Mode::Json, Event::Transfer(t)) => self.json_value(json!({
                "type": "transfer", "packs": t.packs, "pack_bytes": t.pack_bytes,
                "deltas": t.deltas, "delta_bytes": t.delta_bytes, "pack_files": t.pack_files,
                "fullfiles": t.fullfiles, "fullfile_bytes": t.fullfile_bytes
            })),
            (Mode::Quiet, _) => {}
            (_, Event::Transfer(t)) => self.line(&format!("Downloaded {t}")),
            (_, Event::Info(msg)) => self.line(&msg),
            // Shown as an info line too; only JSON gets the record.
            (_, Event::ImageTransfer { .. }) => {}
        }
    }
}

impl Step {
    /// True for a step known to have nothing to count.
    fn is_empty(&self) -> bool {
        self.items == 0 && self.bytes_total == Some(0)
    }

    /// The closing line: items, bytes, time and rate.
    fn summary(&self) -> String {
        let elapsed = self.started.elapsed();
        let items = match self.items {
            0 => String::new(),
            n => format!("{} of {n} items, ", self.items_done),
        };
        let secs = elapsed.as_secs_f64();
        let total = match self.bytes_total {
            Some(0) if self.items > 0 => {
                return format!(
                    "{}: {} of {} items in {secs:.1}s",
                    self.name, self.items_done, self.items
                )
            }
            Some(t) => format!(" of {}", HumanBytes(t)),
            None => String::new(),
        };
        format!(
            "{}: {items}{}{total} in {secs:.1}s ({})",
            self.name,
            HumanBytes(self.bytes_done),
            rate(self.bytes_done, elapsed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_carry_binary_units() {
        assert_eq!(rate(0, Duration::from_secs(1)), "0 B/s");
        assert_eq!(rate(3 << 20, Duration::from_secs(2)), "1.50 MiB/s");
        assert_eq!(rate(5 << 30, Duration::from_secs(1)), "5.00 GiB/s");
    }
}
