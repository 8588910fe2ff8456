use super::*;

const H1: &str = "8286279c93f45c7ffa6b9ed440066de09716527346d9dd0239f50948e0e554f0";
const Z: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn header() -> String {
    "MANIFEST\t30\nversion:\t20\nprevious:\t10\nfilecount:\t2\ntimestamp:\t1000\ncontentsize:\t9\nincludes:\tos-core\n\n".into()
}

fn bundle(body: &str) -> String {
    format!("{}{body}", header())
}

fn refused(text: &str) -> ParseError {
    Manifest::parse(text.as_bytes(), Kind::Bundle).expect_err("must be refused")
}

#[test]
fn round_trip_is_exact() {
    let text = bundle(&format!(
        "F...\t{H1}\t10\t/usr/bin/a b\tc\n.d..\t{Z}\t20\t/usr/old\nL...\t{H1}\t20\t/usr/lib/link\n"
    ));
    let m = Manifest::parse(text.as_bytes(), Kind::Bundle).unwrap();
    assert_eq!(m.header.version, 20);
    assert_eq!(m.header.includes, vec!["os-core"]);
    assert_eq!(m.entries[0].path, "/usr/bin/a b\tc");
    assert_eq!(m.entries[1].status, Status::Deleted);
    assert_eq!(m.serialize(), text);
}

#[test]
fn a_deleted_or_ghosted_entry_that_keeps_its_hash_reads_as_zero() {
    // swupd's test generator flips the status flag and leaves the hash.
    let text = bundle(&format!(
        ".d..\t{H1}\t20\t/usr/old\n.g..\t{H1}\t20\t/usr/lib/kernel/k\n"
    ));
    let m = Manifest::parse(text.as_bytes(), Kind::Bundle).unwrap();
    let status: Vec<_> = m
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.status))
        .collect();
    assert_eq!(
        status,
        [
            ("/usr/old", Status::Deleted),
            ("/usr/lib/kernel/k", Status::Ghosted)
        ]
    );
    assert!(m.entries.iter().all(|e| e.hash.is_zero()));
}

#[test]
fn image_and_variant_flags() {
    let text = bundle(&format!(
        "F..i\t{H1}\t20\t/core\nF.ai\t{H1}\t20\t/efiboot\nF.e.\t{H1}\t20\t/usr/bin/x\nF.a.\t{H1}\t20\t/usr/bin/x\n"
    ));
    let m = Manifest::parse(text.as_bytes(), Kind::Bundle).unwrap();
    assert_eq!(m.entries[0].image(), Some(ImageKind::Core));
    assert_eq!(m.entries[1].image(), Some(ImageKind::EfiBoot));
    assert!(!m.entries[2].is_plain_variant());
    assert!(m.entries[3].is_plain_variant());
    assert_eq!(m.serialize(), text);
}

#[test]
fn mom_holds_only_m_lines() {
    let mom = format!(
        "{}M...\t{H1}\t10\tos-core\nMe..\t{H1}\t20\teditors\n",
        header()
    );
    let m = Manifest::parse(mom.as_bytes(), Kind::Mom).unwrap();
    assert_eq!(m.entries[1].status, Status::Experimental);
    let bad = format!("{}F...\t{H1}\t10\t/usr/x\n", header());
    assert!(Manifest::parse(bad.as_bytes(), Kind::Mom).is_err());
    let bad = format!("{}M...\t{H1}\t10\t../etc\n", header());
    assert!(Manifest::parse(bad.as_bytes(), Kind::Mom).is_err());
}

#[test]
fn malformed_shapes_name_the_line() {
    let h = header().lines().count() + 1; // first body line
    let cases: Vec<(String, usize, &str)> = vec![
        (bundle(&format!("F...{H1}\t10\t/a\n")), h, "expected flags"),
        (
            bundle(&format!("F...\t{H1}\t10\t/a\n\nF...\t{H1}\t10\t/b\n")),
            h + 1,
            "empty line",
        ),
        (bundle(&format!("F...\t{H1}\t10\t/a")), h, "newline"),
        (bundle(&format!("F...\t{}\t10\t/a\n", &H1[..63])), h, "hash"),
        (
            bundle(&format!("F...\t{}\t10\t/a\n", H1.to_uppercase())),
            h,
            "hash",
        ),
        (bundle(&format!("F...\t{H1}\t0\t/a\n")), h, "version"),
        (bundle(&format!("F...\t{H1}\t-1\t/a\n")), h, "version"),
        (
            bundle(&format!("F...\t{H1}\t99999999999\t/a\n")),
            h,
            "range",
        ),
        (
            bundle(&format!("F...\t{H1}\t10\tusr/a\n")),
            h,
            "not absolute",
        ),
        (
            bundle(&format!("F...\t{H1}\t10\t/usr/../etc/shadow\n")),
            h,
            "\"..\"",
        ),
        (bundle(&format!("F...\t{H1}\t10\t/usr/./a\n")), h, "\".\""),
        (
            bundle(&format!("F...\t{H1}\t10\t/usr//a\n")),
            h,
            "empty component",
        ),
        (
            bundle(&format!("F...\t{H1}\t10\t/usr/a/\n")),
            h,
            "empty component",
        ),
        (bundle(&format!("F...\t{H1}\t10\t/\n")), h, "root"),
        (bundle(&format!("F...\t{H1}\t10\t/a\0b\n")), h, "NUL"),
        (bundle(&format!("Q...\t{H1}\t10\t/a\n")), h, "type flag"),
        (bundle(&format!("F.%.\t{H1}\t10\t/a\n")), h, "modifier"),
        (bundle(&format!("F...\t{Z}\t10\t/a\n")), h, "zero hash"),
        (
            bundle(&format!("F..i\t{H1}\t10\t/usr/core\n")),
            h,
            "neither",
        ),
        (bundle(&format!("M...\t{H1}\t10\tos-core\n")), h, "MoM only"),
        (
            bundle(&format!("F...\t{H1}\t10\t/a\nF...\t{H1}\t10\t/a\n")),
            h + 1,
            "duplicate",
        ),
        ("MANIFEST 30\n".into(), 1, "first line"),
        ("MANIFEST\t0\n".into(), 1, "format"),
        ("MANIFEST\t30\nversion: 20\n\n".into(), 2, "no TAB"),
        ("MANIFEST\t30\nversion:\t20\n".into(), 2, "empty line"),
        (
            "MANIFEST\t30\nversion:\t20\nversion:\t20\n\n".into(),
            3,
            "duplicate",
        ),
        ("MANIFEST\t30\nversion:\t20\n\n".into(), 3, "previous"),
        ("MANIFEST\t30\nversion:\t0\n\n".into(), 2, "greater than 0"),
        (
            "MANIFEST\t30\nfilecount:\t4000001\n\n".into(),
            2,
            "filecount",
        ),
        ("MANIFEST\t30\nincludes:\t../x\n\n".into(), 2, "bundle name"),
        ("".into(), 1, "newline"),
    ];
    for (text, line, reason) in cases {
        let e = refused(&text);
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(
            e.reason.contains(reason),
            "{text:?}: {e} should mention {reason:?}"
        );
    }
}

#[test]
fn invalid_utf8_names_line() {
    let mut text = bundle("").into_bytes();
    text.extend_from_slice(format!("F...\t{H1}\t10\t/a\n").as_bytes());
    text.extend_from_slice(b"F...\t");
    text.extend_from_slice(H1.as_bytes());
    text.extend_from_slice(b"\t10\t/\xff\n");
    let e = Manifest::parse(&text, Kind::Bundle).unwrap_err();
    assert_eq!(e.line, header().lines().count() + 2);
}

#[test]
fn paths() {
    for ok in ["/a", "/usr/bin/x y", "/usr/lib/.hidden", "/a/...", "/a/..b"] {
        validate_path(ok).unwrap();
    }
    for bad in ["", "a", "/", "//a", "/a/", "/a/../b", "/./a", "/a\0"] {
        assert!(validate_path(bad).is_err(), "{bad:?}");
    }
    assert!(validate_path(&format!("/{}", "a".repeat(256))).is_err());
    for ok in ["os-core", "c-basic", "python3.11", "libstdc++"] {
        validate_bundle_name(ok).unwrap();
    }
    for bad in ["", ".", "..", "a/b", "-x", ".hidden", "a b"] {
        assert!(validate_bundle_name(bad).is_err(), "{bad:?}");
    }
}
