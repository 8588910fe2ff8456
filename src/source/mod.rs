//! Where content comes from: a base URL (https://, http:// when allowed, file://) and
//! bounded, retrying, resuming downloads from it.
//!
//! Each scheme is a [`Transport`] that opens an object from a byte offset; the retry and
//! resume logic above it is shared, so a consumer (a decompressor, a hasher) reads one
//! uninterrupted stream however many connections it took.

mod file;
mod http;
mod limit;
mod mirrors;

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::archive::Bounded;
use crate::{Error, Result};

/// The longest pause between two attempts, whatever the configured delay.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How to reach the server: schemes allowed, trust, retries, timeouts, headers.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Accept plain `http://` URLs (lab use: content is still signed, but not private).
    pub allow_insecure_http: bool,
    /// An extra PEM CA (bundle) trusted for the TLS server, in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Further attempts after a transient failure (0: exactly one attempt).
    pub retries: u32,
    /// Pause before the first retry; it doubles per retry, up to 60 s.
    pub retry_delay: Duration,
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// A transfer fails (and is retried) when it averages fewer than `.0` bytes per
    /// second over a window of `.1`; `.1` also bounds the wait for response headers and
    /// for each read.
    pub min_rate: (u64, Duration),
    /// Headers that identify the machine, sent with every request to the base URL's own
    /// host (scheme, host and port) and never across a redirect to another.
    pub headers: Vec<(String, String)>,
}

impl Default for SourceConfig {
    fn default() -> SourceConfig {
        // swupd's curl settings: 3 retries from 10 s, 30 s connect, < 1 B/s over 120 s.
        SourceConfig {
            allow_insecure_http: false,
            ca_file: None,
            retries: 3,
            retry_delay: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            min_rate: (1, Duration::from_secs(120)),
            headers: Vec::new(),
        }
    }
}

/// An opened object: a body positioned at `start`.
struct Opened {
    /// The content from byte `start` on.
    body: Box<dyn Read + Send>,
    /// Offset of the body's first byte in the object: the requested one, or 0 when a
    /// server ignored the range.
    start: u64,
    /// Size of the whole object, when the server said.
    total: Option<u64>,
    /// A strong validator (ETag) tying a resumed request to the same object.
    validator: Option<String>,
}

/// Why an attempt failed: worth another attempt or not.
enum Fault {
    /// Connection trouble, timeouts, 5xx: another attempt may succeed.
    Transient(Error),
    /// 404, a bad certificate, a local file error: retrying cannot help.
    Fatal(Error),
}

/// One way of fetching objects (one per scheme).
trait Transport: Send + Sync {
    /// Opens `url` from byte `from`; `validator` is the one the first response carried.
    fn open(&self, url: &str, from: u64, validator: Option<&str>) -> Result<Opened, Fault>;
}

/// A base URL and the shared connection pool behind it; clones share the pool.
#[derive(Clone)]
pub struct Source {
    base: String,
    transport: Arc<dyn Transport>,
    retries: u32,
    retry_delay: Duration,
    /// With several content URLs: the mirrors every download goes through.
    mirrors: Option<Arc<mirrors::Mirrors>>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source").field("base", &self.base).finish()
    }
}

impl Source {
    /// A source for `base_url` (https://, http:// with `allow_insecure_http`, or file://).
    pub fn new(base_url: &str, cfg: &SourceConfig) -> Result<Source> {
        let bad = |reason: &str| Error::BadUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let scheme = base_url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .ok_or_else(|| bad("not a URL (expected https://, http:// or file://)"))?;
        let base = base_url.trim_end_matches('/').to_string();
        let (transport, retries): (Arc<dyn Transport>, u32) = match scheme.as_str() {
            "file" => {
                // A local file does not fail transiently; retrying only delays the error.
                (Arc::new(file::FileTransport::new(base_url)?), 0)
            }
            "https" | "http" if scheme == "https" || cfg.allow_insecure_http => (
                Arc::new(http::HttpTransport::new(base_url, cfg)?),
                cfg.retries,
            ),
            "http" => return Err(bad("plain http:// needs --allow-insecure-http")),
            _ => {
                return Err(bad(
                    "unsupported scheme (expected https://, http:// or file://)",
                ))
            }
        };
        Ok(Source {
            base,
            transport,
            retries,
            retry_delay: cfg.retry_delay,
            mirrors: None,
        })
    }

    /// A source over `base_url` and `mirrors` (source/mirrors.rs); without mirrors, the
    /// same as [`Source::new`]. With several, a failing mirror is not retried while another
    /// healthy one remains: the next one is tried at once, which is what makes a dead
    /// mirror cost nothing; the last healthy one is retried as a single source would be.
    pub fn with_mirrors(base_url: &str, mirrors: &[String], cfg: &SourceConfig) -> Result<Source> {
        let mut urls = vec![base_url.trim_end_matches('/')];
        for m in mirrors {
            let m = m.trim_end_matches('/');
            if !urls.contains(&m) {
                urls.push(m);
            }
        }
        let mut primary = Source::new(base_url, cfg)?;
        if urls.len() == 1 {
            return Ok(primary);
        }
        let members = urls
            .iter()
            .map(|u| Source::new(u, cfg))
            .collect::<Result<Vec<_>>>()?;
        primary.mirrors = Some(Arc::new(mirrors::Mirrors::new(members)));
        Ok(primary)
    }

    /// The base URLs downloads go to (one, or every mirror).
    pub fn mirror_urls(&self) -> Vec<String> {
        match &self.mirrors {
            Some(m) => m.bases(),
            None => vec![self.base.clone()],
        }
    }

    /// The mirrors set aside in this run, with the reason.
    pub fn mirrors_set_aside(&self) -> Vec<(String, String)> {
        self.mirrors
            .as_ref()
            .map_or_else(Vec::new, |m| m.set_aside())
    }

    /// Runs `attempt` against one healthy mirror after another until it succeeds or fails
    /// for a reason no mirror changes; a mirror it fails on is set aside for the run. For
    /// work that consumes a download and checks it (staging a fullfile against its hash).
    /// Without mirrors, `attempt` runs once against this source.
    pub fn each_mirror<T>(&self, attempt: impl FnMut(&Source) -> Result<T>) -> Result<T> {
        match &self.mirrors {
            Some(m) => m.each(attempt),
            None => {
                let mut attempt = attempt;
                attempt(self)
            }
        }
    }

    /// The URL of `rel` under the base.
    pub fn url(&self, rel: &str) -> String {
        format!("{}/{}", self.base, rel.trim_start_matches('/'))
    }

    /// Opens `rel` for streaming; the reader yields at most `limit` bytes and fails if the
    /// object is larger. Transient failures (connection reset, timeout, 5xx, short body)
    /// are retried with backoff and resumed with an HTTP Range request from the current
    /// offset, invisibly to the consumer. 404, 403 and the like are not retried.
    pub fn open(&self, rel: &str, limit: u64) -> Result<Download> {
        if let Some(m) = &self.mirrors {
            return m.each(|mirror| mirror.open(rel, limit));
        }
        let url = self.url(rel);
        check_rel(&url, rel)?;
        let mut resume = Resume {
            url: url.clone(),
            transport: Arc::clone(&self.transport),
            limit,
            body: None,
            pos: 0,
            skip: 0,
            total: None,
            validator: None,
            failures: 0,
            retries: self.retries,
            retry_delay: self.retry_delay,
        };
        // Open now rather than on the first read, so that a 404 or an unreachable server
        // surfaces here as a typed error.
        resume.reopen()?;
        Ok(Download {
            reader: limit::limit(resume, limit, &url),
            url,
        })
    }

    /// The whole object `rel` in memory, bounded by `limit`.
    pub fn fetch(&self, rel: &str, limit: u64) -> Result<Vec<u8>> {
        let mut download = self.open(rel, limit)?;
        // Preallocate from the announced size, but never more than the limit allows.
        let hint = download
            .reader_total()
            .unwrap_or(0)
            .min(limit)
            .min(64 << 20);
        let mut out = Vec::with_capacity(hint as usize);
        download
            .read_to_end(&mut out)
            .map_err(|e| download_error(&download.url, e))?;
        Ok(out)
    }
}

impl Source {
    /// Like [`Source::fetch`], but `None` when the server says the object does not exist
    /// (HTTP 404 or 410, a missing file), for objects that are optional.
    pub fn fetch_if_exists(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(mut download) = self.open_if_exists(rel, limit)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        download
            .read_to_end(&mut out)
            .map_err(|e| download_error(&download.url, e))?;
        Ok(Some(out))
    }

    /// Like [`Source::open`], but `None` when the server says the object does not exist
    /// (HTTP 404 or 410, a missing file), for objects that are optional (packs, deltas,
    /// rollout schedules). With mirrors, one that lacks an optional object is not set
    /// aside for it: any of them may lack it.
    pub fn open_if_exists(&self, rel: &str, limit: u64) -> Result<Option<Download>> {
        if let Some(m) = &self.mirrors {
            return m.each(|mirror| mirror.open_if_exists(rel, limit));
        }
        match self.open(rel, limit) {
            Ok(download) => Ok(Some(download)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// True when `e` says the server does not have the object (404, 410, a missing `file://`
/// path), as opposed to failing to send it.
pub fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Download { reason, .. }
        if reason == "not found"
            || reason.starts_with("HTTP 404")
            || reason.starts_with("HTTP 410"))
}

/// Refuses relative paths that could step outside the base or change the URL's meaning.
fn check_rel(url: &str, rel: &str) -> Result<()> {
    let bad_segment = rel
        .trim_start_matches('/')
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..");
    if bad_segment || rel.contains(['?', '#', '\\']) || rel.chars().any(char::is_control) {
        return Err(Error::BadUrl {
            url: url.to_string(),
            reason: format!("unsafe relative path {rel:?}"),
        });
    }
    Ok(())
}

/// A download in progress: a bounded reader over one object.
pub struct Download {
    url: String,
    reader: Bounded<Resume>,
}

impl Download {
    /// The object's full URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bytes handed to the consumer so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.bytes_read()
    }

    fn reader_total(&self) -> Option<u64> {
        self.reader.get_ref().total
    }
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("url", &self.url)
            .field("bytes_read", &self.bytes_read())
            .finish()
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// Turns an io::Error from [`Download::read`] back into the typed error it carries, or
/// into [`Error::Download`] naming `url`.
pub fn download_error(url: &str, e: io::Error) -> Error {
    Error::carried(e).unwrap_or_else(|e| Error::Download {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// The stream under a [`Download`]: reopens the object at the current offset after a
/// transient failure, so its consumer never sees the break.
struct Resume {
    url: String,
    transport: Arc<dyn Transport>,
    limit: u64,
    /// The current connection's body; `None` between a failure and the next attempt.
    body: Option<Box<dyn Read + Send>>,
    /// Bytes handed on so far: where the next attempt must start.
    pos: u64,
    /// Bytes of the current body to drop before handing on more: a server that ignored
    /// the range request sent the object from byte 0 again.
    skip: u64,
    total: Option<u64>,
    validator: Option<String>,
    /// Failed attempts so far; the budget is per object, across opening and resuming.
    failures: u32,
    retries: u32,
    retry_delay: Duration,
}

impl Resume {
    /// Opens the object at `pos`, retrying transient failures within the budget.
    fn reopen(&mut self) -> Result<()> {
        loop {
            let fault = match self
                .transport
                .open(&self.url, self.pos, self.validator.as_deref())
            {
                Ok(opened) => return self.accept(opened),
                Err(Fault::Fatal(e)) => return Err(e),
                Err(Fault::Transient(e)) => e,
            };
            self.backoff(fault)?;
        }
    }

    /// Takes a fresh body if it continues exactly where the consumer is.
    fn accept(&mut self, opened: Opened) -> Result<()> {
        let fail = |reason: String| {
            Err(Error::Download {
                url: self.url.clone(),
                reason,
            })
        };
        let mut skip = 0;
        if opened.start == 0 && self.pos > 0 {
            // The server ignored the range (plain servers and many mirrors do): the
            // transfer restarts from byte 0 and the bytes the consumer already has are read
            // again and dropped. That is the same object only if it has the same size and,
            // when the first response carried one, the same strong validator; beyond that
            // the hash the consumer checks at the end decides, as for any download.
            let same_size = self.total.is_some() && self.total == opened.total;
            let same_tag = self.validator.is_none() || self.validator == opened.validator;
            if !(same_size && same_tag) {
                return fail(format!(
                    "server ignored the range request and sent {} instead of the same object; cannot resume at byte {}",
                    if same_size { "another version" } else { "another size" },
                    self.pos
                ));
            }
            log::info!(
                "{}: server ignored the range request; reading again from byte 0",
                self.url
            );
            skip = self.pos;
        } else if opened.start != self.pos {
            return fail(format!(
                "server resumed at byte {} instead of {}",
                opened.start, self.pos
            ));
        }
        if let (Some(before), Some(now)) = (self.total, opened.total) {
            if before != now {
                return fail(format!(
                    "object changed size while downloading ({before} then {now} bytes)"
                ));
            }
        }
        if let Some(total) = opened.total {
            if total > self.limit {
                return fail(format!(
                    "server announced {total} bytes, more than the limit of {} bytes",
                    self.limit
                ));
            }
        }
        self.total = self.total.or(opened.total);
        if self.pos == 0 {
            self.validator = opened.validator;
        }
        self.body = Some(opened.body);
        self.skip = skip;
        Ok(())
    }

    /// Counts a transient failure: waits before the next attempt, or gives up with `e`
    /// once the retries are spent.
    fn backoff(&mut self, e: Error) -> Result<()> {
        if self.failures >= self.retries {
            return Err(if self.retries == 0 {
                e
            } else {
                with_attempts(e, self.failures + 1)
            });
        }
        self.failures += 1;
        let delay = backoff_delay(self.retry_delay, self.failures);
        log::warn!(
            "{e}; retry {}/{} at byte {} in {delay:?}",
            self.failures,
            self.retries,
            self.pos
        );
        thread::sleep(delay);
        Ok(())
    }
}

/// The pause before retry number `retry` (from 1): `first`, doubling, capped.
fn backoff_delay(first: Duration, retry: u32) -> Duration {
    let doubling = 1u32 << retry.saturating_sub(1).min(16);
    first.saturating_mul(doubling).min(MAX_RETRY_DELAY)
}

/// Appends the number of attempts made to the reason of a final error.
fn with_attempts(e: Error, attempts: u32) -> Error {
    match e {
        Error::Connect { url, reason } => Error::Connect {
            url,
            reason: format!("{reason} (after {attempts} attempts)"),
        },
        Error::Download { url, reason } => Error::Download {
            url,
            reason: format!("{reason} (after {attempts} attempts)"),
        },
        other => other,
    }
}

impl Read for Resume {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.body.is_none() {
                self.reopen().map_err(io::Error::other)?;
            }
            let body = self.body.as_mut().expect("opened above");
            if self.skip > 0 {
                let mut drop = [0u8; 64 * 1024];
                let want = drop.len().min(self.skip.min(usize::MAX as u64) as usize);
                let reason = match body.read(&mut drop[..want]) {
                    Ok(0) => format!(
                        "connection closed while reading again up to byte {}",
                        self.pos
                    ),
                    Ok(n) => {
                        self.skip -= n as u64;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => error_chain(&e),
                };
                self.body = None;
                let e = Error::Download {
                    url: self.url.clone(),
                    reason,
                };
                self.backoff(e).map_err(io::Error::other)?;
                continue;
            }
            let reason = match body.read(buf) {
                Ok(0) => match self.total {
                    // A body that ends early is a broken connection, not the end.
                    Some(total) if self.pos < total => {
                        format!("connection closed after {} of {total} bytes", self.pos)
                    }
                    _ => return Ok(0),
                },
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => error_chain(&e),
            };
            self.body = None;
            let e = Error::Download {
                url: self.url.clone(),
                reason,
            };
            self.backoff(e).map_err(io::Error::other)?;
        }
    }
}

/// An error and its sources, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        // Wrappers often repeat their cause's text; say each thing once.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests;
