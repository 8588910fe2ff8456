//! A loopback HTTP/1.1 server (plain or TLS) for integration tests: serves a directory,
//! records every request, and misbehaves on demand, per path prefix, or at random from a
//! seed ([`Server::chaos`]), so that a failure can be replayed.
//!
//! Include with `#[path = "common/server.rs"] mod server;`. std threads only; every
//! loop is bounded by the stop flag, a deadline or a byte cap, and dropping the
//! [`Server`] stops it and joins all its threads.
#![allow(dead_code)] // each test crate uses a different part of it

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(20);
/// A connection idle (or a peer not reading) for this long is closed.
const IDLE: Duration = Duration::from_secs(10);
/// How long a stalled response hangs before giving up by itself.
const STALL: Duration = Duration::from_secs(60);
/// Bound of an endless body, in case a client never hangs up.
const ENDLESS_CAP: u64 = 1 << 30;
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent (`/10/Manifest.MoM`).
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The Range header, if sent.
    pub fn range(&self) -> Option<&str> {
        self.header("range")
    }
}

/// A misbehaviour for the paths under one prefix.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Send the headers and this many body bytes, then close; for `times` requests.
    DropAfter { bytes: u64, times: u32 },
    /// No Content-Length, and bytes until the client hangs up.
    Endless,
    /// Answer with this status and an empty body.
    Status(u16),
    /// Answer Range requests with the whole object (200).
    IgnoreRange,
    /// Send the headers and this many body bytes, then nothing.
    Stall(u64),
    /// Answer 302 to the same path under another base URL (index into `Shared::bases`).
    Redirect(usize),
    /// Send the body one byte every this many milliseconds.
    Drip(u64),
}

/// What a chaotic server does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chaos {
    /// Serve it properly.
    Fine,
    /// 500 or 503 with an empty body.
    ServerError(u16),
    /// Send half of the body, then close the connection.
    Reset,
    /// Send a little of the body, then nothing for a while, then close.
    Stall,
    /// Announce more bytes than are sent, then close.
    LongLength,
    /// Announce and send fewer bytes than the object has.
    ShortLength,
    /// Send as many random bytes as the object has.
    Garbage,
    /// Answer a Range request with the whole object.
    IgnoreRange,
    /// Send the body in small pieces with pauses.
    SlowDrip,
}

impl Chaos {
    const ALL: [Chaos; 8] = [
        Chaos::ServerError(503),
        Chaos::Reset,
        Chaos::Stall,
        Chaos::LongLength,
        Chaos::ShortLength,
        Chaos::Garbage,
        Chaos::IgnoreRange,
        Chaos::SlowDrip,
    ];
}

/// Seeded randomness for the chaos mode: splitmix64, so no crate is needed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn mix_str(seed: u64, s: &str) -> u64 {
    s.bytes().fold(mix(seed), |h, b| mix(h ^ u64::from(b)))
}

/// The chaos configuration: a seed, the share of requests that misbehave (percent), how
/// long a stall lasts, and how many requests each path got so far (the decision for a
/// request depends on the seed, the path and that count, not on thread timing).
struct ChaosState {
    seed: u64,
    percent: u64,
    stall: Duration,
    attempts: std::collections::HashMap<String, u64>,
    /// What was decided, in order: (path, attempt, decision).
    decisions: Vec<(String, u64, Chaos)>,
}

/// The parts of the server the test and the connection threads share.
struct Shared {
    root: PathBuf,
    tls: Option<SslAcceptor>,
    stop: AtomicBool,
    connections: AtomicUsize,
    /// Bytes written to clients (headers and bodies) since the log was last cleared.
    sent: AtomicU64,
    log: Mutex<Vec<Request>>,
    faults: Mutex<Vec<(String, Fault)>>,
    chaos: Mutex<Option<ChaosState>>,
    /// Base URLs redirects may point to.
    bases: Mutex<Vec<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running server; see the module documentation.
pub struct Server {
    shared: Arc<Shared>,
    url: String,
    accept: Option<JoinHandle<()>>,
}

/// Makes a self-signed certificate for `localhost` / 127.0.0.1 in `dir` with the openssl
/// CLI; returns (certificate, key) PEM paths. The certificate is its own CA.
pub fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(status.status.success(), "openssl: {status:?}");
    (cert, key)
}

impl Server {
    /// Serves `root` over plain HTTP on 127.0.0.1.
    pub fn new(root: impl Into<PathBuf>) -> Server {
        Server::start(root.into(), None)
    }

    /// Serves `root` over HTTPS with the PEM certificate and key (see [`test_certificate`]).
    pub fn https(root: impl Into<PathBuf>, cert: &Path, key: &Path) -> Server {
        let mut tls = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        tls.set_private_key_file(key, SslFiletype::PEM).unwrap();
        tls.set_certificate_chain_file(cert).unwrap();
        tls.check_private_key().unwrap();
        Server::start(root.into(), Some(tls.build()))
    }

    fn start(root: PathBuf, tls: Option<SslAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        // Non-blocking, so that the accept loop sees the stop flag.
        listener.set_nonblocking(true).unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            root,
            tls,
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            log: Mutex::default(),
            faults: Mutex::default(),
            chaos: Mutex::default(),
            bases: Mutex::default(),
            threads: Mutex::default(),
        });
        let s = Arc::clone(&shared);
        let accept = thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        s.connections.fetch_add(1, Ordering::SeqCst);
                        let conn = Arc::clone(&s);
                        let handle = thread::spawn(move || serve(&conn, tcp));
                        lock(&s.threads).push(handle);
                    }
                    Err(_) => thread::sleep(TICK / 4),
                }
            }
        });
        Server {
            shared,
            url,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every request so far, oldest first.
    pub fn log(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the requests (and the bytes sent) so far.
    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
        self.shared.sent.store(0, Ordering::SeqCst);
    }

    /// Bytes sent to clients since the log was last cleared.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }

    /// How many requests asked for exactly `path`.
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// How many requests asked for a path starting with `prefix`.
    pub fn hits_matching(&self, prefix: &str) -> usize {
        let log = lock(&self.shared.log);
        log.iter().filter(|r| r.path.starts_with(prefix)).count()
    }

    /// How many TCP connections were accepted (to observe connection reuse).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The next `times` requests under `prefix` get the headers and `bytes` body bytes,
    /// then the connection closes.
    pub fn drop_after(&self, prefix: &str, bytes: u64, times: u32) {
        self.add(prefix, Fault::DropAfter { bytes, times });
    }

    /// Requests under `prefix` get a body without length that never ends.
    pub fn endless(&self, prefix: &str) {
        self.add(prefix, Fault::Endless);
    }

    /// Requests under `prefix` get status `code` and an empty body.
    pub fn status(&self, prefix: &str, code: u16) {
        self.add(prefix, Fault::Status(code));
    }

    /// Requests under `prefix` get the whole object even when they ask for a range.
    pub fn ignore_range(&self, prefix: &str) {
        self.add(prefix, Fault::IgnoreRange);
    }

    /// Requests under `prefix` get the headers and `bytes` body bytes, then silence.
    pub fn stall(&self, prefix: &str, bytes: u64) {
        self.add(prefix, Fault::Stall(bytes));
    }

    /// Requests under `prefix` get a 302 to the same path under `base` (another server).
    pub fn redirect(&self, prefix: &str, base: &str) {
        let mut bases = lock(&self.shared.bases);
        bases.push(base.trim_end_matches('/').to_string());
        let index = bases.len() - 1;
        drop(bases);
        self.add(prefix, Fault::Redirect(index));
    }

    /// Requests under `prefix` get their body one byte every `every`.
    pub fn drip(&self, prefix: &str, every: Duration) {
        self.add(prefix, Fault::Drip(every.as_millis() as u64));
    }

    /// From now on, `percent` of the requests misbehave in one of the [`Chaos`] ways,
    /// chosen from `seed`, the path and how often that path was asked for; stalls last
    /// `stall`. The same seed and the same requests per path give the same faults.
    pub fn chaos(&self, seed: u64, percent: u64, stall: Duration) {
        *lock(&self.shared.chaos) = Some(ChaosState {
            seed,
            percent,
            stall,
            attempts: Default::default(),
            decisions: Vec::new(),
        });
    }

    /// The chaos decisions taken so far that were not [`Chaos::Fine`].
    pub fn chaos_log(&self) -> Vec<(String, u64, Chaos)> {
        lock(&self.shared.chaos)
            .as_ref()
            .map(|c| c.decisions.clone())
            .unwrap_or_default()
    }

    /// Removes every fault, and the chaos mode.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
        *lock(&self.shared.chaos) = None;
    }

    fn add(&self, prefix: &str, fault: Fault) {
        lock(&self.shared.faults).push((prefix.to_string(), fault));
    }

    /// Stops accepting, ends every connection and joins all threads.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Locks, shrugging off poisoning: a panicking test thread must not hide its own message
/// behind a second panic here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A plain or TLS byte stream.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One client connection.
struct Conn<'a> {
    shared: &'a Shared,
    stream: Box<dyn Stream>,
    /// Bytes received past the last request head (pipelining).
    pending: Vec<u8>,
}

/// Serves requests on one connection until it closes, idles out or the server stops.
fn serve(shared: &Shared, tcp: TcpStream) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_nodelay(true);
    let Ok(socket) = tcp.try_clone() else { return };
    let stream: Box<dyn Stream> = match &shared.tls {
        Some(acceptor) => {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
            match acceptor.accept(tcp) {
                Ok(tls) => Box::new(tls),
                Err(_) => return, // the test was about a refused handshake
            }
        }
        None => Box::new(tcp),
    };
    // Short timeouts turn blocking calls into polls of the stop flag.
    let _ = socket.set_read_timeout(Some(TICK));
    let _ = socket.set_write_timeout(Some(TICK));
    let mut conn = Conn {
        shared,
        stream,
        pending: Vec::new(),
    };
    while let Some(request) = conn.read_request() {
        lock(&shared.log).push(request.clone());
        match conn.respond(&request) {
            Ok(true) => continue,
            _ => break,
        }
    }
    let _ = socket.shutdown(Shutdown::Both);
}

impl Conn<'_> {
    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// The next request head, or None when the connection is done.
    fn read_request(&mut self) -> Option<Request> {
        let mut last = Instant::now();
        let end = loop {
            if let Some(i) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.pending.len() > MAX_HEAD || self.stopped() || last.elapsed() > IDLE {
                return None;
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    last = Instant::now();
                }
                Err(e) if is_timeout(&e) => continue,
                Err(_) => return None,
            }
        };
        let head: Vec<u8> = self.pending.drain(..end + 4).collect();
        let head = String::from_utf8_lossy(&head);
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(Request {
            method,
            path,
            headers,
        })
    }

    /// Answers one request; Ok(true) when the connection may serve another.
    fn respond(&mut self, req: &Request) -> io::Result<bool> {
        let keep = !req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let path = req.path.split('?').next().unwrap_or_default();
        if req.method != "GET" && req.method != "HEAD" {
            return self.empty(405, keep);
        }
        if !path.starts_with('/') || path.split('/').any(|s| s == "..") {
            return self.empty(400, keep);
        }
        if let Some(Fault::Status(code)) = self.fault(path, |f| matches!(f, Fault::Status(_))) {
            return self.empty(code, keep);
        }
        if let Some(Fault::Redirect(i)) = self.fault(path, |f| matches!(f, Fault::Redirect(_))) {
            let base = lock(&self.shared.bases)[i].clone();
            let extra = format!("Location: {base}{}\r\n", req.path);
            self.send(&head(302, 0, &extra, keep))?;
            return Ok(keep);
        }
        let chaos = self.decide(path);
        if let Chaos::ServerError(code) = chaos {
            return self.empty(code, false);
        }
        let file = self.shared.root.join(&path[1..]);
        let data = file.is_file().then(|| std::fs::read(&file).ok()).flatten();
        let Some(data) = data else {
            return self.empty(404, keep);
        };
        if self.fault(path, |f| matches!(f, Fault::Endless)).is_some() {
            self.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let chunk = if data.is_empty() { vec![0; 4096] } else { data };
            let mut sent = 0;
            while sent < ENDLESS_CAP && !self.stopped() {
                self.send(&chunk)?;
                sent += chunk.len() as u64;
            }
            return Ok(false);
        }
        let ignore_range = chaos == Chaos::IgnoreRange
            || self
                .fault(path, |f| matches!(f, Fault::IgnoreRange))
                .is_some();
        let len = data.len() as u64;
        let range = req.range().filter(|_| !ignore_range).and_then(parse_range);
        let (status, start, end) = match range {
            Some((start, _)) if start >= len => {
                let extra = format!("Content-Range: bytes */{len}\r\n");
                self.send(&head(416, 0, &extra, keep))?;
                return Ok(keep);
            }
            Some((start, end)) => (206, start, end.map_or(len, |e| (e + 1).min(len))),
            None => (200, 0, len),
        };
        let body = &data[start as usize..end as usize];
        let extra = match status {
            206 => format!("Content-Range: bytes {start}-{}/{len}\r\n", end - 1),
            _ => String::new(),
        };
        if req.method == "GET" && chaos != Chaos::Fine && chaos != Chaos::IgnoreRange {
            return self.misbehave(chaos, status, body, &extra, path);
        }
        self.send(&head(status, body.len() as u64, &extra, keep))?;
        if req.method == "HEAD" {
            return Ok(keep);
        }
        if let Some(Fault::Drip(ms)) = self.fault(path, |f| matches!(f, Fault::Drip(_))) {
            for b in body.chunks(1) {
                if self.stopped() {
                    break;
                }
                self.send(b)?;
                thread::sleep(Duration::from_millis(ms));
            }
            return Ok(false);
        }
        let stall = self.fault(path, |f| matches!(f, Fault::Stall(_)));
        match self.take_drop(path).or(stall) {
            Some(Fault::DropAfter { bytes, .. }) => {
                self.send(&body[..body.len().min(bytes as usize)])?;
                Ok(false)
            }
            Some(Fault::Stall(bytes)) => {
                self.send(&body[..body.len().min(bytes as usize)])?;
                let since = Instant::now();
                while !self.stopped() && since.elapsed() < STALL {
                    thread::sleep(TICK);
                }
                Ok(false)
            }
            _ => {
                self.send(body)?;
                Ok(keep)
            }
        }
    }

    /// The chaos decision for this request of `path` ([`Chaos::Fine`] without chaos).
    fn decide(&self, path: &str) -> Chaos {
        let mut guard = lock(&self.shared.chaos);
        let Some(state) = guard.as_mut() else {
            return Chaos::Fine;
        };
        let attempt = state.attempts.entry(path.to_string()).or_insert(0);
        *attempt += 1;
        let attempt = *attempt;
        let roll = mix(mix_str(state.seed, path) ^ attempt);
        if roll % 100 >= state.percent {
            return Chaos::Fine;
        }
        let pick = Chaos::ALL[(mix(roll) % Chaos::ALL.len() as u64) as usize];
        let pick = match pick {
            Chaos::ServerError(_) if roll % 2 == 0 => Chaos::ServerError(500),
            other => other,
        };
        state.decisions.push((path.to_string(), attempt, pick));
        pick
    }

    /// Answers one GET the way `chaos` says; the connection is closed after it.
    fn misbehave(
        &mut self,
        chaos: Chaos,
        status: u16,
        body: &[u8],
        extra: &str,
        path: &str,
    ) -> io::Result<bool> {
        let len = body.len() as u64;
        match chaos {
            Chaos::LongLength => {
                self.send(&head(status, len + 4096, extra, false))?;
                self.send(body)?;
            }
            Chaos::ShortLength if status == 200 && len > 1 => {
                self.send(&head(status, len - 1, extra, false))?;
                self.send(&body[..body.len() - 1])?;
            }
            Chaos::Garbage => {
                self.send(&head(status, len, extra, false))?;
                let seed = mix_str(len, path);
                let junk: Vec<u8> = (0..len).map(|i| mix(seed ^ i) as u8).collect();
                self.send(&junk)?;
            }
            Chaos::Reset => {
                self.send(&head(status, len, extra, false))?;
                self.send(&body[..body.len() / 2])?;
            }
            Chaos::Stall => {
                self.send(&head(status, len, extra, false))?;
                self.send(&body[..body.len() / 4])?;
                let stall = lock(&self.shared.chaos)
                    .as_ref()
                    .map_or(Duration::ZERO, |c| c.stall);
                let since = Instant::now();
                while !self.stopped() && since.elapsed() < stall {
                    thread::sleep(TICK);
                }
            }
            Chaos::SlowDrip => {
                // Slow at first, then at full speed: small objects drip, big ones finish.
                self.send(&head(status, len, extra, false))?;
                let slow = body.len().min(2048);
                for piece in body[..slow].chunks(128) {
                    self.send(piece)?;
                    thread::sleep(Duration::from_millis(15));
                }
                self.send(&body[slow..])?;
            }
            _ => {
                self.send(&head(status, len, extra, false))?;
                self.send(body)?;
            }
        }
        Ok(false)
    }

    /// The first fault under a prefix of `path` that `pick` selects.
    fn fault(&self, path: &str, pick: fn(&Fault) -> bool) -> Option<Fault> {
        let faults = lock(&self.shared.faults);
        let matching = faults.iter().filter(|(p, _)| path.starts_with(p.as_str()));
        matching.map(|(_, f)| *f).find(pick)
    }

    /// Uses up one of the remaining drops for `path`, if any.
    fn take_drop(&self, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.shared.faults);
        faults.iter_mut().find_map(|(prefix, f)| match f {
            Fault::DropAfter { times, .. } if *times > 0 && path.starts_with(prefix.as_str()) => {
                *times -= 1;
                Some(*f)
            }
            _ => None,
        })
    }

    /// A response with no body.
    fn empty(&mut self, code: u16, keep: bool) -> io::Result<bool> {
        self.send(&head(code, 0, "", keep))?;
        Ok(keep)
    }

    /// Writes all of `data`, waiting out a slow reader but not a stopped server or a
    /// reader gone for longer than [`IDLE`].
    fn send(&mut self, mut data: &[u8]) -> io::Result<()> {
        let mut last = Instant::now();
        while !data.is_empty() {
            if self.stopped() || last.elapsed() > IDLE {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match self.stream.write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.shared.sent.fetch_add(n as u64, Ordering::SeqCst);
                    data = &data[n..];
                    last = Instant::now();
                }
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        self.stream.flush()
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// `bytes=N-` or `bytes=N-M` → (N, M).
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    let end = match end.trim() {
        "" => None,
        e => Some(e.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, end))
}

/// A response head with a Content-Length.
fn head(code: u16, len: u64, extra: &str, keep: bool) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        302 => "Found",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let connection = if keep { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\n\
         Connection: {connection}\r\n{extra}\r\n"
    )
    .into_bytes()
}
