//! Making one bsdiff delta in Clear Linux's container. The matching (suffix sorting and
//! the bsdiff scan) is bidiff's; the blocks and the container are written here
//! (`chainup::bsdiff`), since no crate writes libbsdiff's format.

use chainup::bsdiff::{self, Blocks, Control};
use chainup::hash::Meta;
use chainup::limits::DELTA_FILE;

/// A same-length file with at most one changed byte in this many is diffed byte by byte:
/// one control word, a diff block of mostly zeros that gzip shrinks to almost nothing,
/// and no suffix sort.
const SPARSE_CHANGE: usize = 64;

/// The delta from `old` to `new` (whose metadata is `meta`), or `None` when Clear's rules
/// allow none: an empty or over-cap file.
pub fn make(old: &[u8], new: &[u8], meta: &Meta) -> Option<Vec<u8>> {
    let cap = DELTA_FILE as usize;
    if old.is_empty() || new.is_empty() || old.len() > cap || new.len() > cap {
        return None;
    }
    let blocks = if old.len() == new.len() && sparse(old, new) {
        bytewise(old, new)
    } else {
        matched(old, new)
    };
    bsdiff::encode(blocks, old.len() as u64, meta)
}

fn sparse(old: &[u8], new: &[u8]) -> bool {
    let changed = old.iter().zip(new).filter(|(a, b)| a != b).count();
    changed <= old.len() / SPARSE_CHANGE
}

fn bytewise(old: &[u8], new: &[u8]) -> Blocks {
    let mut b = Blocks::default();
    b.push_control(Control {
        add: new.len() as u64,
        copy: 0,
        seek: 0,
    });
    b.diff = new
        .iter()
        .zip(old)
        .map(|(n, o)| n.wrapping_sub(*o))
        .collect();
    b
}

/// bsdiff over the part between the common prefix and suffix (which become plain
/// diff runs of zeros): most changes are local, and the suffix sort is the cost.
fn matched(old: &[u8], new: &[u8]) -> Blocks {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let max_suffix = old.len().min(new.len()) - prefix;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    let (old_mid, new_mid) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut controls = vec![Control {
        add: prefix as u64,
        copy: 0,
        seek: 0,
    }];
    let mut blocks = Blocks {
        diff: vec![0; prefix],
        ..Blocks::default()
    };
    // Old position relative to the middle, to aim the last seek at the suffix.
    let mut old_pos: i64 = 0;
    if old_mid.is_empty() {
        controls.push(Control {
            add: 0,
            copy: new_mid.len() as u64,
            seek: 0,
        });
        blocks.extra.extend_from_slice(new_mid);
    } else if !new_mid.is_empty() {
        let mut on_control = |c: &bidiff::Control| -> Result<(), std::io::Error> {
            controls.push(Control {
                add: c.add.len() as u64,
                copy: c.copy.len() as u64,
                seek: c.seek,
            });
            blocks.diff.extend_from_slice(c.add);
            blocks.extra.extend_from_slice(c.copy);
            old_pos += c.add.len() as i64 + c.seek;
            Ok(())
        };
        let mut translator = bidiff::Translator::new(old_mid, new_mid, &mut on_control);
        let params = bidiff::DiffParams::default();
        bidiff::diff(old_mid, new_mid, &params, |m| translator.translate(m))
            .and_then(|()| translator.close())
            .expect("collecting controls cannot fail");
    }
    if suffix > 0 {
        let last = controls.last_mut().expect("the prefix control");
        last.seek += old_mid.len() as i64 - old_pos;
        controls.push(Control {
            add: suffix as u64,
            copy: 0,
            seek: 0,
        });
        blocks.diff.extend(std::iter::repeat_n(0, suffix));
    }
    for c in controls {
        blocks.push_control(c);
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn apply(delta: &[u8], old: &[u8]) -> Vec<u8> {
        let header = bsdiff::Header::parse(delta, delta.len() as u64).unwrap();
        let file = |data: &[u8]| {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(data).unwrap();
            f
        };
        let mut out = Vec::new();
        bsdiff::apply(&header, &file(delta), &file(old), &mut out).unwrap();
        out
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn deltas_round_trip_and_are_small() {
        let old = pseudo_random(200_000, 1);
        let meta = |n: &[u8]| Meta::file(0o644, 0, 0, n.len() as u64);
        // A few bytes changed in place: the byte-wise path.
        let mut new = old.clone();
        new[10] ^= 1;
        new[150_000] ^= 0x40;
        let d = make(&old, &new, &meta(&new)).unwrap();
        assert_eq!(apply(&d, &old), new);
        assert!(d.len() < 2_000, "{}", d.len());
        // Bytes inserted and removed: the suffix sort.
        let mut new = old.clone();
        new.splice(5_000..5_010, b"inserted a longer run".iter().copied());
        new.drain(100_000..100_300);
        new.extend_from_slice(b"tail");
        let d = make(&old, &new, &meta(&new)).unwrap();
        assert_eq!(apply(&d, &old), new);
        assert!(d.len() < 4_000, "{}", d.len());
        // Only a prefix changed, only a suffix, everything.
        for new in [
            [b"head".as_slice(), &old].concat(),
            [&old[..], b"more"].concat(),
            pseudo_random(1000, 9),
        ] {
            let d = make(&old, &new, &meta(&new)).unwrap();
            assert_eq!(apply(&d, &old), new);
        }
        assert!(make(&[], &old, &meta(&old)).is_none());
    }
}
