//! https:// (and, when allowed, http://) through one pooled reqwest client.

use std::io::{self, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LOCATION, RANGE};
use reqwest::{StatusCode, Url};

use super::{error_chain, Fault, Opened, SourceConfig, Transport};
use crate::error::IoContext;
use crate::{Error, Result};

/// Redirects followed for one request, as curl's and reqwest's defaults.
const MAX_REDIRECTS: usize = 10;

/// Clients built in this process, by the settings that shape them. Building one loads the
/// system's trust roots (tens of milliseconds, a tenth of a small update), and the version
/// and content sources of a run have the same settings. A clone shares its client's
/// connection pool; the identity headers are set per request, so sharing a client shares
/// nothing else between sources.
static CLIENTS: Mutex<Vec<(ClientKey, Client)>> = Mutex::new(Vec::new());

/// What [`HttpTransport::new`] builds a client from (the extra CA by content, not path).
#[derive(PartialEq)]
struct ClientKey {
    allow_insecure_http: bool,
    connect_timeout: Duration,
    timeout: Duration,
    ca_pem: Option<Vec<u8>>,
}

/// Fetches over HTTP(S); HTTP/2 where the server offers it through ALPN. Redirects are
/// followed here rather than by reqwest, so that the headers identifying the machine go
/// to the base URL's own origin only.
pub(super) struct HttpTransport {
    client: Client,
    min_rate: (u64, Duration),
    /// Sent only to `origin`.
    identity: HeaderMap,
    origin: Origin,
    allow_insecure_http: bool,
}

/// A client as `key` says (`cfg` names the CA file in messages).
fn build_client(key: &ClientKey, cfg: &SourceConfig, base_url: &str) -> Result<Client> {
    let mut builder = Client::builder()
        .user_agent(concat!("chainup/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        // Without this, an https server could redirect us to plain http.
        .https_only(!key.allow_insecure_http)
        .tls_version_min(reqwest::tls::Version::TLS_1_2)
        .connect_timeout(key.connect_timeout)
        // The blocking client applies this to the wait for headers and to each read,
        // which is what turns a silent server into an error for the rate check.
        .timeout(key.timeout);
    if let (Some(pem), Some(path)) = (&key.ca_pem, &cfg.ca_file) {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| Error::TrustStore {
                path: path.clone(),
                reason: "no PEM certificate in the CA file".to_string(),
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| Error::Connect {
        url: base_url.to_string(),
        reason: error_chain(&e),
    })
}

/// Scheme, host and port: what a redirect must keep for the identity headers to follow.
#[derive(Debug, PartialEq, Eq)]
struct Origin(String, Option<String>, Option<u16>);

impl Origin {
    fn of(url: &Url) -> Origin {
        Origin(
            url.scheme().to_string(),
            url.host_str().map(str::to_ascii_lowercase),
            url.port_or_known_default(),
        )
    }
}

impl HttpTransport {
    /// A client for `base_url` configured from `cfg` (trust, timeouts, headers).
    pub(super) fn new(base_url: &str, cfg: &SourceConfig) -> Result<HttpTransport> {
        let base = Url::parse(base_url).map_err(|e| Error::BadUrl {
            url: base_url.to_string(),
            reason: e.to_string(),
        })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Error::Usage(format!("HTTP header name {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| Error::Usage(format!("HTTP header {name}: {e}")))?;
            headers.append(name, value);
        }
        let key = ClientKey {
            allow_insecure_http: cfg.allow_insecure_http,
            connect_timeout: cfg.connect_timeout,
            timeout: cfg.min_rate.1,
            ca_pem: match &cfg.ca_file {
                Some(path) => Some(std::fs::read(path).at(path)?),
                None => None,
            },
        };
        let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
        let client = match clients.iter().find(|(k, _)| *k == key) {
            Some((_, client)) => client.clone(),
            None => {
                let client = build_client(&key, cfg, base_url)?;
                clients.push((key, client.clone()));
                client
            }
        };
        drop(clients);
        Ok(HttpTransport {
            client,
            min_rate: cfg.min_rate,
            identity: headers,
            origin: Origin::of(&base),
            allow_insecure_http: cfg.allow_insecure_http,
        })
    }

    /// Sends GET `url` (with `extra` headers), following redirects; the identity headers
    /// go only to requests on the base URL's origin.
    fn send(&self, url: &str, extra: &HeaderMap) -> Result<Response, Fault> {
        let fatal = |reason: String| {
            Fault::Fatal(Error::Download {
                url: url.to_string(),
                reason,
            })
        };
        let mut target = Url::parse(url).map_err(|e| fatal(e.to_string()))?;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.get(target.clone()).headers(extra.clone());
            if Origin::of(&target) == self.origin {
                request = request.headers(self.identity.clone());
            }
            let response = request.send().map_err(|e| request_fault(url, &e))?;
            let status = response.status();
            if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| fatal(format!("HTTP {status} without a Location")))?;
            let next = target
                .join(location)
                .map_err(|e| fatal(format!("redirect to {location:?}: {e}")))?;
            match next.scheme() {
                "https" => {}
                "http" if self.allow_insecure_http => {}
                s => {
                    return Err(fatal(format!(
                        "refused a redirect to a {s}:// URL ({next})"
                    )))
                }
            }
            target = next;
        }
        Err(fatal(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

impl Transport for HttpTransport {
    fn open(&self, url: &str, from: u64, validator: Option<&str>) -> Result<Opened, Fault> {
        let mut extra = HeaderMap::new();
        if from > 0 {
            extra.insert(RANGE, header_value(&format!("bytes={from}-")));
            if let Some(etag) = validator {
                // The server then answers the range only if the object is still the same.
                extra.insert(IF_RANGE, header_value(etag));
            }
        }
        let response = self.send(url, &extra)?;
        let status = response.status();
        let download = |reason: String| Error::Download {
            url: url.to_string(),
            reason,
        };
        let range = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (start, total) = match status {
            StatusCode::OK => (0, response.content_length()),
            StatusCode::PARTIAL_CONTENT => {
                let (start, total) =
                    range
                        .as_deref()
                        .and_then(parse_content_range)
                        .ok_or_else(|| {
                            Fault::Fatal(download(format!("bad Content-Range {range:?} in a 206")))
                        })?;
                (start, total)
            }
            // Asked to resume exactly at the end of an object whose size we did not know:
            // the object is complete.
            StatusCode::RANGE_NOT_SATISFIABLE
                if from > 0 && range.as_deref() == Some(&format!("bytes */{from}")) =>
            {
                return Ok(Opened {
                    body: Box::new(io::empty()),
                    start: from,
                    total: Some(from),
                    validator: None,
                });
            }
            s => {
                let e = download(format!("HTTP {s}"));
                let transient = s.is_server_error()
                    || s == StatusCode::REQUEST_TIMEOUT
                    || s == StatusCode::TOO_MANY_REQUESTS;
                return Err(if transient {
                    Fault::Transient(e)
                } else {
                    Fault::Fatal(e)
                });
            }
        };
        let validator = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            // A weak ETag does not promise identical bytes, so it cannot guard a resume.
            .filter(|v| !v.starts_with("W/"))
            .map(str::to_string);
        Ok(Opened {
            body: Box::new(RateCheck::new(response, self.min_rate)),
            start,
            total,
            validator,
        })
    }
}

fn header_value(v: &str) -> HeaderValue {
    // Built from numbers or from a header the server sent: always valid.
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Classifies a failed request: an untrusted certificate will be untrusted again; the
/// rest (refused, reset, timed out) may not fail twice.
fn request_fault(url: &str, e: &reqwest::Error) -> Fault {
    let reason = error_chain(e);
    if certificate_rejected(e) {
        return Fault::Fatal(Error::Connect {
            url: url.to_string(),
            reason,
        });
    }
    if e.is_builder() || e.is_redirect() {
        return Fault::Fatal(Error::Download {
            url: url.to_string(),
            reason,
        });
    }
    if e.is_connect() {
        Fault::Transient(Error::Connect {
            url: url.to_string(),
            reason,
        })
    } else {
        Fault::Transient(Error::Download {
            url: url.to_string(),
            reason,
        })
    }
}

/// Whether OpenSSL refused the server's certificate (untrusted, expired, wrong name).
fn certificate_rejected(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(stack) = c.downcast_ref::<openssl::error::ErrorStack>() {
            if stack
                .errors()
                .iter()
                .any(|e| e.reason() == Some("certificate verify failed"))
            {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) → (START, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    // The range must run to the end of the object: we asked for `bytes=N-`.
    let consistent = start <= end && total.is_none_or(|t| end + 1 == t);
    consistent.then_some((start, total))
}

/// A response body that fails when it averages fewer than `min` bytes per second over a
/// `window` (curl's low-speed limit, as swupd sets it), so a trickling server costs one
/// window per attempt, not hours.
struct RateCheck {
    response: Response,
    min: u64,
    window: Duration,
    window_start: Instant,
    window_bytes: u64,
}

impl RateCheck {
    fn new(response: Response, (min, window): (u64, Duration)) -> RateCheck {
        RateCheck {
            response,
            min,
            window,
            window_start: Instant::now(),
            window_bytes: 0,
        }
    }
}

impl Read for RateCheck {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.response.read(buf).map_err(|e| {
            let timed_out = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                .is_some_and(reqwest::Error::is_timeout);
            if timed_out {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("too slow: no data for {:?}", self.window),
                )
            } else {
                e
            }
        })?;
        self.window_bytes += n as u64;
        if self.window_start.elapsed() >= self.window {
            let needed = self.min.saturating_mul(self.window.as_secs().max(1));
            if self.window_bytes < needed && n > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "too slow: {} bytes in {:?}, under {} bytes/s",
                        self.window_bytes, self.window, self.min
                    ),
                ));
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-0/1"), Some((0, Some(1))));
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        // A range that stops short of the end would leave a silent hole.
        assert_eq!(parse_content_range("bytes 10-50/100"), None);
        assert_eq!(parse_content_range("bytes 20-10/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
