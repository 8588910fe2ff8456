//! Unit tests: scheme rules, URL joining, and the retry/resume logic over a scripted
//! transport (the network paths are exercised in tests/source.rs).

use std::sync::Mutex;

use super::*;

fn cfg() -> SourceConfig {
    SourceConfig {
        retry_delay: Duration::from_millis(1),
        ..SourceConfig::default()
    }
}

fn bad_url_reason(r: Result<Source>) -> String {
    match r {
        Err(Error::BadUrl { reason, .. }) => reason,
        other => panic!("expected BadUrl, got {other:?}"),
    }
}

#[test]
fn schemes() {
    assert!(Source::new("https://example.com/update", &cfg()).is_ok());
    assert!(Source::new("file:///srv/update", &cfg()).is_ok());
    assert_eq!(
        bad_url_reason(Source::new("http://example.com", &cfg())),
        "plain http:// needs --allow-insecure-http"
    );
    let insecure = SourceConfig {
        allow_insecure_http: true,
        ..cfg()
    };
    assert!(Source::new("http://example.com", &insecure).is_ok());
    bad_url_reason(Source::new("ftp://example.com", &cfg()));
    bad_url_reason(Source::new("example.com/update", &cfg()));
    bad_url_reason(Source::new("file://srv/update", &cfg()));
    bad_url_reason(Source::new("https://", &cfg()));
}

#[test]
fn url_joins_with_one_slash() {
    let s = Source::new("https://example.com/update/", &cfg()).unwrap();
    assert_eq!(
        s.url("10/Manifest.MoM"),
        "https://example.com/update/10/Manifest.MoM"
    );
    assert_eq!(
        s.url("/version/latest"),
        "https://example.com/update/version/latest"
    );
    let f = Source::new("file:///srv/", &cfg()).unwrap();
    assert_eq!(f.url("a/b"), "file:///srv/a/b");
}

#[test]
fn unsafe_relative_paths_are_refused() {
    let s = Source::new("file:///srv", &cfg()).unwrap();
    for rel in [
        "../etc/passwd",
        "10/../../x",
        "a//b",
        "a/./b",
        "a?b",
        "a#b",
        "a\nb",
        "",
    ] {
        assert!(
            matches!(s.open(rel, 10), Err(Error::BadUrl { .. })),
            "{rel:?} accepted"
        );
    }
}

#[test]
fn file_source_reads_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("obj"), b"0123456789").unwrap();
    let base = format!("file://{}", dir.path().display());
    let s = Source::new(&base, &cfg()).unwrap();
    assert_eq!(s.fetch("obj", 10).unwrap(), b"0123456789");
    match s.fetch("obj", 9) {
        Err(Error::Download { url, reason }) => {
            assert_eq!(url, format!("{base}/obj"));
            assert!(
                reason.contains("more than the limit of 9 bytes"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    match s.fetch("missing", 10) {
        Err(Error::Download { url, reason }) => {
            assert_eq!(url, format!("{base}/missing"));
            assert_eq!(reason, "not found");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.fetch("", 10), Err(Error::BadUrl { .. })));
}

/// What the scripted transport does on one attempt.
enum Step {
    /// Serve from the requested offset, breaking after this many bytes (if any).
    Serve(Option<usize>),
    /// Serve the whole object from byte 0, as a server ignoring Range does.
    IgnoreRange,
    /// Fail before any body.
    Transient,
    Fatal,
}

/// A transport playing a fixed script of attempts over `data`, recording each offset.
struct Script {
    data: Vec<u8>,
    steps: Mutex<Vec<Step>>,
    offsets: Mutex<Vec<u64>>,
}

/// A body that ends with a reset after its bytes.
struct Broken(io::Cursor<Vec<u8>>);

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")),
            n => Ok(n),
        }
    }
}

impl Transport for Script {
    fn open(&self, url: &str, from: u64, _: Option<&str>) -> Result<Opened, Fault> {
        self.offsets.lock().unwrap().push(from);
        let step = self.steps.lock().unwrap().remove(0);
        let err = || Error::Download {
            url: url.to_string(),
            reason: "scripted".to_string(),
        };
        let total = Some(self.data.len() as u64);
        let rest = self.data[from as usize..].to_vec();
        let body: Box<dyn Read + Send> = match step {
            Step::Serve(None) => Box::new(io::Cursor::new(rest)),
            Step::Serve(Some(n)) => Box::new(Broken(io::Cursor::new(rest[..n].to_vec()))),
            Step::IgnoreRange => {
                let all = self.data.clone();
                return Ok(Opened {
                    body: Box::new(io::Cursor::new(all)),
                    start: 0,
                    total,
                    validator: None,
                });
            }
            Step::Transient => return Err(Fault::Transient(err())),
            Step::Fatal => return Err(Fault::Fatal(err())),
        };
        Ok(Opened {
            body,
            start: from,
            total,
            validator: None,
        })
    }
}

fn scripted(retries: u32, steps: Vec<Step>) -> (Source, Arc<Script>) {
    let script = Arc::new(Script {
        data: (0..=255u8).cycle().take(5000).collect(),
        steps: Mutex::new(steps),
        offsets: Mutex::new(Vec::new()),
    });
    let source = Source {
        base: "https://example.com".to_string(),
        transport: Arc::clone(&script) as Arc<dyn Transport>,
        retries,
        retry_delay: Duration::from_millis(1),
        mirrors: None,
    };
    (source, script)
}

#[test]
fn breaks_are_resumed_at_the_consumed_offset() {
    let steps = vec![
        Step::Transient,
        Step::Serve(Some(1000)),
        Step::Serve(Some(1500)),
        Step::Serve(None),
    ];
    let (source, script) = scripted(3, steps);
    let got = source.fetch("obj", 5000).unwrap();
    assert_eq!(got, script.data);
    assert_eq!(*script.offsets.lock().unwrap(), [0, 0, 1000, 2500]);
}

#[test]
fn retries_are_a_budget_per_object() {
    let steps = vec![
        Step::Serve(Some(10)),
        Step::Serve(Some(10)),
        Step::Serve(None),
    ];
    let (source, script) = scripted(1, steps);
    match source.fetch("obj", 5000) {
        Err(Error::Download { reason, .. }) => {
            assert!(
                reason.contains("reset") && reason.contains("after 2 attempts"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*script.offsets.lock().unwrap(), [0, 10]);
}

#[test]
fn zero_retries_is_one_attempt() {
    let (source, script) = scripted(0, vec![Step::Transient, Step::Serve(None)]);
    assert!(source.open("obj", 5000).is_err());
    assert_eq!(script.offsets.lock().unwrap().len(), 1);
}

#[test]
fn fatal_failures_are_not_retried() {
    let (source, script) = scripted(3, vec![Step::Fatal, Step::Serve(None)]);
    assert!(source.open("obj", 5000).is_err());
    assert_eq!(script.offsets.lock().unwrap().len(), 1);
}

#[test]
fn ignored_range_restarts_from_byte_0_and_drops_what_was_consumed() {
    // Broken before the first byte: starting over from 0.
    let (source, script) = scripted(3, vec![Step::Serve(Some(0)), Step::IgnoreRange]);
    assert_eq!(source.fetch("obj", 5000).unwrap(), script.data);

    // Broken after 100 bytes: the object is read again from 0 and the first 100 bytes
    // are dropped, so the consumer sees one uninterrupted stream.
    let (source, script) = scripted(3, vec![Step::Serve(Some(100)), Step::IgnoreRange]);
    assert_eq!(source.fetch("obj", 5000).unwrap(), script.data);
    assert_eq!(*script.offsets.lock().unwrap(), vec![0, 100]);
}

#[test]
fn announced_size_over_the_limit_fails_at_open() {
    let (source, script) = scripted(3, vec![Step::Serve(None)]);
    match source.open("obj", 4999) {
        Err(Error::Download { reason, .. }) => assert!(reason.contains("5000 bytes"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(script.offsets.lock().unwrap().len(), 1);
}

#[test]
fn backoff_doubles_and_is_capped() {
    let secs: Vec<u64> = (1..=8)
        .map(|k| backoff_delay(Duration::from_secs(10), k).as_secs())
        .collect();
    assert_eq!(secs, [10, 20, 40, 60, 60, 60, 60, 60]);
    // Tiny test delays still double; huge retry counts do not overflow.
    assert_eq!(
        backoff_delay(Duration::from_millis(2), 3),
        Duration::from_millis(8)
    );
    assert_eq!(
        backoff_delay(Duration::from_millis(2), 400),
        MAX_RETRY_DELAY
    );
}

#[test]
fn download_error_recovers_the_typed_error() {
    let typed = io::Error::other(Error::Connect {
        url: "https://x/y".to_string(),
        reason: "refused".to_string(),
    });
    assert!(matches!(
        download_error("https://x/y", typed),
        Error::Connect { .. }
    ));
    let plain = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
    match download_error("https://x/y", plain) {
        Error::Download { url, reason } => {
            assert_eq!((url.as_str(), reason.as_str()), ("https://x/y", "eof"))
        }
        other => panic!("{other:?}"),
    }
}
