//! `chainup::source` through the real network stack, against the loopback test server.

#[path = "common/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chainup::source::{download_error, Download, Source, SourceConfig};
use chainup::Error;
use server::{test_certificate, Server};

/// Tests wait milliseconds, not the 10 s of production.
fn cfg() -> SourceConfig {
    SourceConfig {
        allow_insecure_http: true,
        retry_delay: Duration::from_millis(5),
        ..SourceConfig::default()
    }
}

/// Deterministic bytes that differ at every offset modulo a large period, so a splice at
/// the wrong offset cannot go unnoticed.
fn content(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

fn webroot(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    dir
}

fn download_reason(r: chainup::Result<impl Sized>) -> (String, String) {
    match r {
        Err(Error::Download { url, reason }) => (url, reason),
        Err(e) => panic!("expected a Download error, got {e:?}"),
        Ok(_) => panic!("expected a Download error, got success"),
    }
}

fn read_all(mut d: Download) -> chainup::Result<Vec<u8>> {
    let mut out = Vec::new();
    d.read_to_end(&mut out)
        .map_err(|e| download_error(d.url(), e))?;
    Ok(out)
}

#[test]
fn http_fetch_with_the_flag_sends_user_agent() {
    let data = content(70_000, 1);
    let root = webroot(&[("10/Manifest.MoM", &data)]);
    let server = Server::new(root.path());
    let source = Source::new(&server.url(), &cfg()).unwrap();
    assert_eq!(source.fetch("10/Manifest.MoM", 70_000).unwrap(), data);
    let log = server.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].path, "/10/Manifest.MoM");
    let agent = log[0].header("user-agent").unwrap();
    assert_eq!(agent, format!("chainup/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(log[0].range(), None);
}

#[test]
fn http_is_refused_without_the_flag() {
    let root = webroot(&[]);
    let server = Server::new(root.path());
    let secure = SourceConfig::default();
    match Source::new(&server.url(), &secure) {
        Err(Error::BadUrl { url, reason }) => {
            assert_eq!(url, server.url());
            assert_eq!(reason, "plain http:// needs --allow-insecure-http");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.log().len(), 0);
}

#[test]
fn file_urls_read_files_and_name_missing_ones() {
    let data = content(5000, 2);
    let root = webroot(&[("version/latest", b"20\n"), ("20/pack", &data)]);
    let base = format!("file://{}", root.path().display());
    let source = Source::new(&base, &cfg()).unwrap();
    assert_eq!(source.fetch("version/latest", 100).unwrap(), b"20\n");
    let d = source.open("20/pack", 5000).unwrap();
    assert_eq!(d.url(), format!("{base}/20/pack"));
    assert_eq!(read_all(d).unwrap(), data);
    let (url, reason) = download_reason(source.fetch("20/missing", 100));
    assert_eq!(url, format!("{base}/20/missing"));
    assert_eq!(reason, "not found");
    let relative = Source::new("file://webroot", &cfg());
    assert!(
        matches!(relative, Err(Error::BadUrl { .. })),
        "{relative:?}"
    );
}

#[test]
fn https_needs_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = test_certificate(dir.path());
    let root = webroot(&[("version/latest", b"30\n")]);
    let server = Server::https(root.path(), &cert, &key);
    assert!(server.url().starts_with("https://127.0.0.1:"));

    let trusted = SourceConfig {
        allow_insecure_http: false,
        ca_file: Some(cert.clone()),
        ..cfg()
    };
    let source = Source::new(&server.url(), &trusted).unwrap();
    assert_eq!(source.fetch("version/latest", 100).unwrap(), b"30\n");

    let untrusted = SourceConfig {
        allow_insecure_http: false,
        ..cfg()
    };
    let source = Source::new(&server.url(), &untrusted).unwrap();
    match source.fetch("version/latest", 100) {
        Err(Error::Connect { url, reason }) => {
            assert_eq!(url, format!("{}/version/latest", server.url()));
            assert!(reason.contains("certificate verify failed"), "{reason}");
            // Not retried: a certificate does not become trusted by asking again.
            assert!(!reason.contains("attempts"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Only the trusted client got as far as sending a request.
    assert_eq!(server.hits("/version/latest"), 1);
}

#[test]
fn bad_ca_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let with = |path: &Path| SourceConfig {
        ca_file: Some(path.to_path_buf()),
        ..cfg()
    };
    let r = Source::new("https://127.0.0.1:1", &with(&junk));
    assert!(matches!(r, Err(Error::TrustStore { .. })), "{r:?}");
    let r = Source::new("https://127.0.0.1:1", &with(&dir.path().join("absent.pem")));
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
}

#[test]
fn drops_are_resumed_with_ranges_at_the_right_offsets() {
    let data = content(300_000, 3);
    let root = webroot(&[("40/files/abc", &data)]);
    let server = Server::new(root.path());
    server.drop_after("/40/files/", 100_000, 2);
    let source = Source::new(&server.url(), &cfg()).unwrap();
    let d = source.open("40/files/abc", 300_000).unwrap();
    assert_eq!(read_all(d).unwrap(), data);
    let ranges: Vec<Option<String>> = server
        .log()
        .iter()
        .map(|r| r.range().map(str::to_string))
        .collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=100000-".to_string()),
            Some("bytes=200000-".to_string())
        ]
    );
}

#[test]
fn a_decompressor_never_sees_the_break() {
    let data = content(200_000, 4);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&data).unwrap();
    let packed = gz.finish().unwrap();
    let root = webroot(&[("50/files/abc.gz", &packed)]);
    let server = Server::new(root.path());
    server.drop_after("/50/", packed.len() as u64 / 3, 2);
    let source = Source::new(&server.url(), &cfg()).unwrap();
    let d = source.open("50/files/abc.gz", packed.len() as u64).unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(d)
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, data);
    assert_eq!(server.hits("/50/files/abc.gz"), 3);
}

#[test]
fn ignored_range_after_consumed_bytes_restarts_from_byte_0() {
    let data = content(50_000, 5);
    let root = webroot(&[("obj", &data)]);
    let server = Server::new(root.path());
    server.drop_after("/obj", 1000, 1);
    server.ignore_range("/obj");
    let source = Source::new(&server.url(), &cfg()).unwrap();
    let mut d = source.open("obj", 50_000).unwrap();
    let mut got = Vec::new();
    d.read_to_end(&mut got).unwrap();
    // One uninterrupted stream: the first 1000 bytes of the second body were dropped.
    assert_eq!(got, data);
    assert_eq!(d.bytes_read(), 50_000);
    assert_eq!(server.log()[1].range(), Some("bytes=1000-"));
    assert_eq!(server.hits("/obj"), 2);
}

#[test]
fn ignored_range_on_an_object_that_changed_size_fails_cleanly() {
    let data = content(50_000, 5);
    let root = webroot(&[("obj", &data)]);
    let server = Server::new(root.path());
    server.drop_after("/obj", 1000, 1);
    server.ignore_range("/obj");
    let source = Source::new(&server.url(), &cfg()).unwrap();
    let mut d = source.open("obj", 60_000).unwrap();
    let mut first = vec![0u8; 1000];
    d.read_exact(&mut first).unwrap();
    std::fs::write(root.path().join("obj"), content(40_000, 9)).unwrap();
    let mut rest = Vec::new();
    let e = d.read_to_end(&mut rest).unwrap_err();
    assert_eq!(first, data[..1000]);
    assert!(rest.is_empty());
    let (url, reason) = download_reason(Err::<(), _>(download_error(d.url(), e)));
    assert_eq!(url, format!("{}/obj", server.url()));
    assert!(reason.contains("another size"), "{reason}");
}

#[test]
fn ignored_range_with_nothing_consumed_restarts() {
    let data = content(50_000, 6);
    let root = webroot(&[("obj", &data)]);
    let server = Server::new(root.path());
    server.drop_after("/obj", 0, 1);
    server.ignore_range("/obj");
    let source = Source::new(&server.url(), &cfg()).unwrap();
    assert_eq!(source.fetch("obj", 50_000).unwrap(), data);
    assert_eq!(server.hits("/obj"), 2);
}

#[test]
fn endless_body_is_cut_off_at_the_limit() {
    let root = webroot(&[("60/Manifest.full", &content(10_000, 7))]);
    let server = Server::new(root.path());
    server.endless("/60/");
    let source = Source::new(&server.url(), &cfg()).unwrap();
    let started = Instant::now();
    let (url, reason) = download_reason(source.fetch("60/Manifest.full", 1_000_000));
    assert_eq!(url, format!("{}/60/Manifest.full", server.url()));
    assert_eq!(reason, "server sent more than 1000000 bytes");
    assert!(started.elapsed() < Duration::from_secs(20));
    // Exceeding the limit is the server's fault, not a transient one: no retry.
    assert_eq!(server.hits("/60/Manifest.full"), 1);
}

#[test]
fn announced_size_over_the_limit_fails_before_reading() {
    let root = webroot(&[("big", &content(10_000, 8))]);
    let server = Server::new(root.path());
    let source = Source::new(&server.url(), &cfg()).unwrap();
    let (_, reason) = download_reason(source.open("big", 9_999));
    assert!(reason.contains("10000 bytes"), "{reason}");
}

#[test]
fn dead_port_is_a_connect_error_after_the_retries() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = SourceConfig {
        retries: 2,
        ..cfg()
    };
    let source = Source::new(&format!("http://127.0.0.1:{port}"), &config).unwrap();
    let started = Instant::now();
    match source.fetch("version/latest", 100) {
        Err(Error::Connect { url, reason }) => {
            assert_eq!(url, format!("http://127.0.0.1:{port}/version/latest"));
            assert!(reason.contains("after 3 attempts"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Two pauses of 5 ms and 10 ms, not seconds.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn not_found_names_the_status_and_is_not_retried() {
    let root = webroot(&[]);
    let server = Server::new(root.path());
    let source = Source::new(&server.url(), &cfg()).unwrap();
    let (url, reason) = download_reason(source.fetch("70/Manifest.os-core", 100));
    assert_eq!(url, format!("{}/70/Manifest.os-core", server.url()));
    assert_eq!(reason, "HTTP 404 Not Found");
    assert_eq!(server.hits("/70/Manifest.os-core"), 1);

    server.status("/forbidden", 403);
    let (_, reason) = download_reason(source.fetch("forbidden", 100));
    assert_eq!(reason, "HTTP 403 Forbidden");
    assert_eq!(server.hits("/forbidden"), 1);
}

#[test]
fn server_errors_are_retried_then_reported() {
    let root = webroot(&[("version/latest", b"80\n")]);
    let server = Server::new(root.path());
    server.status("/version/", 503);
    let source = Source::new(&server.url(), &cfg()).unwrap();
    let (_, reason) = download_reason(source.fetch("version/latest", 100));
    assert!(
        reason.starts_with("HTTP 503 Service Unavailable"),
        "{reason}"
    );
    assert_eq!(server.hits("/version/latest"), 4);

    let once = SourceConfig {
        retries: 0,
        ..cfg()
    };
    server.clear_log();
    let source = Source::new(&server.url(), &once).unwrap();
    assert_eq!(
        download_reason(source.fetch("version/latest", 100)).1,
        "HTTP 503 Service Unavailable"
    );
    assert_eq!(server.hits("/version/latest"), 1);
}

#[test]
fn a_stalled_transfer_is_too_slow_and_resumed() {
    let data = content(1000, 9);
    let root = webroot(&[("slow", &data)]);
    let server = Server::new(root.path());
    server.stall("/slow", 10);
    let config = SourceConfig {
        retries: 1,
        min_rate: (1, Duration::from_millis(300)),
        ..cfg()
    };
    let source = Source::new(&server.url(), &config).unwrap();
    let (_, reason) = download_reason(source.fetch("slow", 1000));
    assert!(reason.contains("too slow"), "{reason}");
    let ranges: Vec<_> = server
        .log()
        .iter()
        .map(|r| r.range().map(str::to_string))
        .collect();
    assert_eq!(ranges, [None, Some("bytes=10-".to_string())]);
}

#[test]
fn configured_headers_reach_the_server() {
    let root = webroot(&[("version/latest", b"90\n")]);
    let server = Server::new(root.path());
    let config = SourceConfig {
        headers: vec![
            ("X-Chainup-Version".to_string(), "80".to_string()),
            ("X-Chainup-Machine".to_string(), "0f1e2d".to_string()),
        ],
        ..cfg()
    };
    let source = Source::new(&server.url(), &config).unwrap();
    source.fetch("version/latest", 100).unwrap();
    let log = server.log();
    assert_eq!(log[0].header("x-chainup-version"), Some("80"));
    assert_eq!(log[0].header("x-chainup-machine"), Some("0f1e2d"));
}

#[test]
fn sequential_requests_reuse_one_connection() {
    let root = webroot(&[("a", b"1"), ("b", b"22"), ("c", b"333")]);
    let server = Server::new(root.path());
    let source = Source::new(&server.url(), &cfg()).unwrap();
    for _ in 0..5 {
        for (name, len) in [("a", 1), ("b", 2), ("c", 3)] {
            assert_eq!(source.fetch(name, 3).unwrap().len(), len);
        }
    }
    assert_eq!(server.log().len(), 15);
    // hyper hands a finished connection back to the pool asynchronously, so a request
    // may now and then race it and open another; without reuse this would be 15.
    assert!(server.connections() <= 3, "{}", server.connections());
}

#[test]
fn eight_threads_share_one_source() {
    let files: Vec<(String, Vec<u8>)> = (0..32)
        .map(|i| {
            (
                format!("100/files/{i:02}"),
                content(20_000 + i * 997, i as u32),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let root = webroot(&refs);
    let server = Server::new(root.path());
    // Some downloads break midway, so resumes run concurrently with plain transfers.
    server.drop_after("/100/files/1", 5000, 6);
    let source = Arc::new(Source::new(&server.url(), &cfg()).unwrap());
    let files = Arc::new(files);
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let (source, files) = (Arc::clone(&source), Arc::clone(&files));
            thread::spawn(move || {
                for (name, data) in files.iter().skip(t).step_by(8) {
                    let got = source.fetch(name, data.len() as u64).unwrap();
                    assert!(got == *data, "{name} differs");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(server.hits_matching("/100/files/"), 32 + 6);
    // 38 requests: one connection per worker plus one per drop, with slack for pool races.
    assert!(server.connections() <= 20, "{}", server.connections());
}

#[test]
fn public_types_cross_threads() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync_clone::<Source>();
    send::<Download>();
}
