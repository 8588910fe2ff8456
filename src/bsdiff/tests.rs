use std::io::Write;

use super::*;
use crate::hash::Meta;

fn file_with(data: &[u8]) -> File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    f
}

fn patch(delta: &[u8], old: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let header = Header::parse(delta, delta.len() as u64)?;
    let (d, o) = (file_with(delta), file_with(old));
    let mut out = Vec::new();
    apply(&header, &d, &o, &mut out)?;
    Ok(out)
}

/// old "hello world" -> new "hello WORLD!": 6 bytes added to the old (diff), then extra.
fn sample_blocks(old: &[u8], new: &[u8]) -> Blocks {
    let mut b = Blocks::default();
    let same = 6;
    b.push_control(Control {
        add: same,
        copy: (new.len() - same as usize) as u64,
        seek: 0,
    });
    b.diff = new[..6]
        .iter()
        .zip(old)
        .map(|(n, o)| n.wrapping_sub(*o))
        .collect();
    b.extra = new[6..].to_vec();
    b
}

#[test]
fn small_and_large_headers_round_trip() {
    let (old, new) = (b"hello world".to_vec(), b"hello WORLD!".to_vec());
    let meta = Meta::file(0o640, 7, 8, new.len() as u64);
    let delta = encode(sample_blocks(&old, &new), old.len() as u64, &meta).unwrap();
    assert_eq!(&delta[..8], MAGIC_V21);
    let h = Header::parse(&delta, delta.len() as u64).unwrap();
    assert_eq!((h.mode, h.uid, h.gid), (libc::S_IFREG | 0o640, 7, 8));
    assert_eq!(
        h.encodings[1],
        Encoding::Zeros,
        "an unchanged prefix diffs to zeros"
    );
    assert_eq!(patch(&delta, &old).unwrap(), new);

    // Past 64 KiB the v2.0 header is used, and gzip pays for a repetitive extra block.
    let old: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut new = old.clone();
    new.extend(std::iter::repeat_n(b'x', 70_000));
    let mut b = Blocks::default();
    b.push_control(Control {
        add: old.len() as u64,
        copy: 70_000,
        seek: 0,
    });
    b.diff = vec![0; old.len()];
    b.extra = vec![b'x'; 70_000];
    let meta = Meta::file(0o755, 0, 0, new.len() as u64);
    let delta = encode(b, old.len() as u64, &meta).unwrap();
    assert_eq!(&delta[..8], MAGIC_V20);
    let h = Header::parse(&delta, delta.len() as u64).unwrap();
    assert_eq!(
        h.encodings,
        [Encoding::None, Encoding::Zeros, Encoding::Gzip]
    );
    assert_eq!(patch(&delta, &old).unwrap(), new);
}

#[test]
fn a_header_claiming_100_gb_is_refused() {
    let (old, new) = (b"hello world".to_vec(), b"hello WORLD!".to_vec());
    let meta = Meta::file(0o644, 0, 0, 100 << 30);
    let mut b = sample_blocks(&old, &new);
    b.diff = vec![1; 6];
    let delta = encode(b, old.len() as u64, &meta).unwrap();
    match Header::parse(&delta, delta.len() as u64) {
        Err(DeltaError::OverCap { size, .. }) => assert_eq!(size, 100 << 30),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_controls_and_lengths_are_refused() {
    let (old, new) = (b"hello world".to_vec(), b"hello WORLD!".to_vec());
    let meta = Meta::file(0o644, 0, 0, new.len() as u64);
    let delta = encode(sample_blocks(&old, &new), old.len() as u64, &meta).unwrap();
    // One byte more or less than the header says.
    let mut longer = delta.clone();
    longer.push(0);
    assert!(Header::parse(&longer, longer.len() as u64).is_err());
    // The old file must have the size the delta was made from.
    assert!(patch(&delta, b"hello").is_err());

    // A seek before the old file's start.
    let mut b = sample_blocks(&old, &new);
    b.control.clear();
    b.push_control(Control {
        add: 6,
        copy: 6,
        seek: -100,
    });
    let delta = encode(b, old.len() as u64, &meta).unwrap();
    assert!(matches!(patch(&delta, &old), Err(DeltaError::Invalid(_))));

    // A control word reaching past the new file.
    let mut b = sample_blocks(&old, &new);
    b.control.clear();
    b.push_control(Control {
        add: 6,
        copy: 600,
        seek: 0,
    });
    let delta = encode(b, old.len() as u64, &meta).unwrap();
    assert!(matches!(patch(&delta, &old), Err(DeltaError::Invalid(_))));

    // Two encodings flagged for one block.
    let mut delta = encode(sample_blocks(&old, &new), old.len() as u64, &meta).unwrap();
    delta[V21_LEN - 2] |= 0b11;
    assert!(Header::parse(&delta, delta.len() as u64).is_err());
}

#[test]
fn bzip2_and_xz_blocks_are_read() {
    let (old, new) = (b"hello world".to_vec(), b"hello WORLD!".to_vec());
    let b = sample_blocks(&old, &new);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    bz.write_all(&b.extra).unwrap();
    let extra = bz.finish().unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&b.control).unwrap();
    let control = xz.finish().unwrap();
    let header = Header {
        old_size: old.len() as u64,
        new_size: new.len() as u64,
        mode: libc::S_IFREG | 0o644,
        uid: 0,
        gid: 0,
        offset: 0,
        lengths: [
            control.len() as u64,
            b.diff.len() as u64,
            extra.len() as u64,
        ],
        encodings: [Encoding::Xz, Encoding::None, Encoding::Bzip2],
    };
    let mut delta = header.to_bytes();
    delta.extend_from_slice(&control);
    delta.extend_from_slice(&b.diff);
    delta.extend_from_slice(&extra);
    assert_eq!(patch(&delta, &old).unwrap(), new);
}
