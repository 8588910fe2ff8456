//! What the user sees: progress bars on a terminal, plain lines when piped, nothing with
//! `--quiet`, or a stream of JSON events (a JSON array, one object a line, as swupd).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::progress::{Event, Observer};

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
    bar: Mutex<Option<ProgressBar>>,
    json_first: Mutex<bool>,
    bytes: Mutex<u64>,
}

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
            bar: Mutex::new(None),
            json_first: Mutex::new(true),
            bytes: Mutex::new(0),
        };
        if mode == Mode::Json {
            println!("[");
            out.json(json!({"type": "start", "section": section}));
        }
        out
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn json(&self, value: serde_json::Value) {
        let mut first = self.json_first.lock().unwrap_or_else(|e| e.into_inner());
        let mut stdout = std::io::stdout().lock();
        let sep = if *first { "" } else { ",\n" };
        *first = false;
        let _ = write!(stdout, "{sep}{value}");
        let _ = stdout.flush();
    }

    /// A result line on stdout (or an info event in JSON).
    pub fn result(&self, msg: &str) {
        match self.mode {
            Mode::Json => self.json(json!({"type": "info", "msg": msg})),
            _ => println!("{msg}"),
        }
    }

    /// A structured result: printed as text, or as its own JSON event.
    pub fn record(&self, text: &str, value: serde_json::Value) {
        match self.mode {
            Mode::Json => self.json(value),
            _ => println!("{text}"),
        }
    }

    /// An error, always shown (stderr, or an error event).
    pub fn error(&self, msg: &str) {
        self.finish_bar();
        match self.mode {
            Mode::Json => self.json(json!({"type": "error", "msg": msg})),
            _ => eprintln!("Error: {msg}"),
        }
    }

    /// A warning that goes to stderr whatever the mode (and into the JSON stream too).
    pub fn loud_warning(&self, msg: &str) {
        eprintln!("WARNING: {msg}");
        if self.mode == Mode::Json {
            self.json(json!({"type": "warning", "msg": msg}));
        }
    }

    /// Closes the JSON array with the exit status.
    pub fn end(&self, section: &str, status: i32) {
        self.finish_bar();
        if self.mode == Mode::Json {
            self.json(json!({"type": "end", "section": section, "status": status}));
            println!("\n]");
        }
    }

    fn finish_bar(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Output {
    fn event(&self, event: Event<'_>) {
        match (self.mode, event) {
            (Mode::Json, Event::Info(msg)) => self.json(json!({"type": "info", "msg": msg})),
            (Mode::Json, Event::Warning(msg)) => self.json(json!({"type": "warning", "msg": msg})),
            (Mode::Json, Event::Phase { name, total }) => self.json(json!({
                "type": "progress", "stepDescription": name, "totalItems": total, "stepCompletion": 0
            })),
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
            ) => self.json(json!({
                "type": "image-transfer", "slot": slot, "method": method, "bytes": size,
                "bytesReused": reused, "bytesDownloaded": downloaded, "bytesOnWire": wire
            })),
            (Mode::Json, Event::Transfer(t)) => self.json(json!({
                "type": "transfer", "packs": t.packs, "pack_bytes": t.pack_bytes,
                "deltas": t.deltas, "delta_bytes": t.delta_bytes, "pack_files": t.pack_files,
                "fullfiles": t.fullfiles, "fullfile_bytes": t.fullfile_bytes
            })),
            (Mode::Json, _) => {}
            (_, Event::Warning(msg)) => {
                let bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
                match bar.as_ref() {
                    Some(b) => b.suspend(|| eprintln!("Warning: {msg}")),
                    None => eprintln!("Warning: {msg}"),
                }
            }
            (Mode::Quiet, _) => {}
            (_, Event::Transfer(t)) => println!("Downloaded {t}"),
            (_, Event::Info(msg)) => println!("{msg}"),
            (Mode::Plain, Event::Phase { name, total }) => println!("{name}: {total} items"),
            (Mode::Plain, _) => {}
            (Mode::Bars, Event::Phase { name, total }) => {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg:>12} [{bar:30}] {pos}/{len} files, {prefix} ({per_sec}) ETA {eta}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                bar.set_message(name.to_string());
                *self.bytes.lock().unwrap_or_else(|e| e.into_inner()) = 0;
                bar.enable_steady_tick(Duration::from_millis(200));
                *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
            }
            (Mode::Bars, Event::Advance { items, bytes }) => {
                let mut done = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
                *done += bytes;
                if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    b.set_prefix(indicatif::HumanBytes(*done).to_string());
                    b.inc(items);
                }
            }
            (Mode::Bars, Event::PhaseDone) => self.finish_bar(),
            // Shown as an info line too; only JSON gets the record.
            (Mode::Bars, Event::ImageTransfer { .. }) => {}
        }
    }
}
