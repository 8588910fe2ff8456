//! The swupd hash of a path or a stream: HMAC-SHA256 keyed by the entry's metadata.
//!
//! hash = HMAC(key = hex(HMAC(key = 40-byte LE record of mode, uid, gid, rdev, size;
//!                            msg = xattr blob)),
//!             msg = file bytes | symlink target | "DIRECTORY")

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes hashed for a directory in place of content.
const DIRECTORY_DATA: &[u8] = b"DIRECTORY";
/// Read buffer for streaming file content: large enough to amortise syscalls.
pub const READ_BUF: usize = 256 * 1024;

/// A 32-byte swupd hash, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash of a missing path and of deleted manifest entries (64 zeros).
    pub const ZERO: Hash = Hash([0; 32]);

    /// True for the all-zero hash.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// Lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// Why a string is not a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 64-digit lowercase hex hash")]
pub struct BadHash;

impl FromStr for Hash {
    type Err = BadHash;
    fn from_str(s: &str) -> Result<Self, BadHash> {
        // Lowercase only: manifests are canonical and an uppercase twin would be a second
        // spelling of the same file name on the server.
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BadHash);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadHash)?;
        Ok(Hash(out))
    }
}

/// What kind of object an entry is; decides the data that is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// The stat fields that enter the hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Full st_mode including the file-type bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    /// Content length (file), target length (symlink); ignored for directories.
    pub size: u64,
}

impl Meta {
    /// Metadata of a regular file with permission bits `perm` (e.g. 0o644).
    pub fn file(perm: u32, uid: u32, gid: u32, size: u64) -> Meta {
        Meta {
            kind: Kind::File,
            mode: libc::S_IFREG | (perm & 0o7777),
            uid,
            gid,
            rdev: 0,
            size,
        }
    }

    /// Metadata of a directory with permission bits `perm`.
    pub fn dir(perm: u32, uid: u32, gid: u32) -> Meta {
        Meta {
            kind: Kind::Dir,
            mode: libc::S_IFDIR | (perm & 0o7777),
            uid,
            gid,
            rdev: 0,
            size: 0,
        }
    }

    /// Metadata of a symlink whose target is `target_len` bytes long.
    pub fn symlink(uid: u32, gid: u32, target_len: u64) -> Meta {
        Meta {
            kind: Kind::Symlink,
            mode: libc::S_IFLNK | 0o777,
            uid,
            gid,
            rdev: 0,
            size: target_len,
        }
    }

    /// Metadata as `lstat` reports it. Types other than directory and symlink hash as files,
    /// as swupd does.
    pub fn from_metadata(md: &std::fs::Metadata) -> Meta {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::File
        };
        Meta {
            kind,
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            rdev: md.rdev(),
            size: md.size(),
        }
    }

    /// The 40-byte little-endian record that keys the inner HMAC.
    fn record(&self) -> [u8; 40] {
        let mode = match self.kind {
            Kind::Symlink => 0,
            _ => self.mode,
        };
        let size = match self.kind {
            Kind::Dir => 0,
            _ => self.size,
        };
        let mut rec = [0u8; 40];
        rec[0..8].copy_from_slice(&u64::from(mode).to_le_bytes());
        rec[8..16].copy_from_slice(&u64::from(self.uid).to_le_bytes());
        rec[16..24].copy_from_slice(&u64::from(self.gid).to_le_bytes());
        rec[24..32].copy_from_slice(&self.rdev.to_le_bytes());
        rec[32..40].copy_from_slice(&size.to_le_bytes());
        rec
    }
}

/// Incremental swupd hash: feed the data (file bytes, link target, or nothing for a
/// directory) and finish.
pub struct Hasher {
    mac: HmacSha256,
    kind: Kind,
}

impl Hasher {
    /// Starts a hash for an entry with this metadata and xattr blob (empty: no xattrs).
    pub fn new(meta: &Meta, xattr_blob: &[u8]) -> Hasher {
        let mut inner = HmacSha256::new_from_slice(&meta.record()).expect("HMAC takes any key");
        inner.update(xattr_blob);
        let key_hex = hex::encode(inner.finalize().into_bytes());
        let mut mac = HmacSha256::new_from_slice(key_hex.as_bytes()).expect("HMAC takes any key");
        if meta.kind == Kind::Dir {
            mac.update(DIRECTORY_DATA);
        }
        Hasher {
            mac,
            kind: meta.kind,
        }
    }

    /// Feeds content bytes (ignored for directories, whose data is fixed).
    pub fn update(&mut self, data: &[u8]) {
        if self.kind != Kind::Dir {
            self.mac.update(data);
        }
    }

    /// The final hash.
    pub fn finish(self) -> Hash {
        Hash(self.mac.finalize().into_bytes().into())
    }
}

impl io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Hash of in-memory data with the given metadata and no xattrs.
pub fn hash_bytes(meta: &Meta, data: &[u8]) -> Hash {
    let mut h = Hasher::new(meta, &[]);
    h.update(data);
    h.finish()
}

/// Streams `reader` into a hasher, returning the number of bytes read.
pub fn hash_reader(hasher: &mut Hasher, reader: &mut impl Read) -> io::Result<u64> {
    hash_reader_buf(hasher, reader, &mut vec![0u8; READ_BUF])
}

/// [`hash_reader`] with a caller's buffer (reused across many small files).
pub fn hash_reader_buf(
    hasher: &mut Hasher,
    reader: &mut impl Read,
    buf: &mut [u8],
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// True for device nodes, FIFOs and sockets: they hash by their stat record alone (as
/// swupd's, whose size is 0), since reading one could block or never end (`/dev/zero`).
fn is_special(ft: std::fs::FileType) -> bool {
    ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket()
}

/// The swupd hash of whatever is at `path` (not following a final symlink); a missing
/// path gives [`Hash::ZERO`]. With `xattrs`, extended attributes enter the key as swupd's
/// `--enable-xattr` build does. Device nodes, FIFOs and sockets are never opened.
pub fn hash_path(path: &Path, xattrs: bool) -> io::Result<Hash> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Hash::ZERO),
        Err(e) => return Err(e),
    };
    let blob = if xattrs { xattr_blob(path) } else { Vec::new() };
    let meta = Meta::from_metadata(&md);
    if is_special(md.file_type()) {
        return Ok(Hasher::new(&meta, &blob).finish());
    }
    match meta.kind {
        Kind::Dir => Ok(Hasher::new(&meta, &blob).finish()),
        Kind::Symlink => {
            let target = std::fs::read_link(path)?;
            let mut h = Hasher::new(&meta, &blob);
            h.update(std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()));
            Ok(h.finish())
        }
        Kind::File => {
            // O_NOFOLLOW and fstat: hash the object we actually read, with its own metadata,
            // even if the path was swapped since the lstat.
            let mut file = File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)?;
            let md = file.metadata()?;
            let meta = Meta::from_metadata(&md);
            if meta.kind != Kind::File {
                return hash_path(path, xattrs);
            }
            let mut h = Hasher::new(&meta, &blob);
            // A special file swapped in since the lstat is opened (O_NONBLOCK keeps a
            // FIFO from blocking there) but not read.
            if !is_special(md.file_type()) {
                hash_reader(&mut h, &mut file)?;
            }
            Ok(h.finish())
        }
    }
}

/// swupd's xattr blob: names sorted bytewise, each NUL-terminated, then the values in the
/// same order, each NUL-terminated unless it already ends in NUL. Any read failure gives
/// the empty blob, as in swupd.
pub fn xattr_blob(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut names: Vec<std::ffi::OsString> = names.collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut blob = Vec::new();
    let mut values = Vec::with_capacity(names.len());
    for name in &names {
        match xattr::get(path, name) {
            Ok(v) => values.push(v.unwrap_or_default()),
            Err(_) => return Vec::new(),
        }
        blob.extend_from_slice(name.as_bytes());
        blob.push(0);
    }
    for v in values {
        blob.extend_from_slice(&v);
        if !v.is_empty() && v.last() != Some(&0) {
            blob.push(0);
        }
    }
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        s.parse().unwrap()
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            hash_bytes(&Meta::file(0o644, 0, 0, 9), b"test-data"),
            h("8286279c93f45c7ffa6b9ed440066de09716527346d9dd0239f50948e0e554f0")
        );
        assert_eq!(
            hash_bytes(&Meta::dir(0o755, 0, 0), b""),
            h("6c27df6efcd6fc401ff1bc67c970b83eef115f6473db4fb9d57e5de317eba96e")
        );
        assert_eq!(
            hash_bytes(&Meta::dir(0o1777, 0, 0), b""),
            h("d93a5e9129361e28b9e244fe422234e3a1794b001a082aeb78e16fd881673a2b")
        );
        assert_eq!(
            hash_bytes(&Meta::file(0o644, 1000, 1000, 0), b""),
            h("b85f1dc2c2317a20f47a36d3257313b131124ffa6d4f19bb060d43014fd386b0")
        );
        assert_eq!(
            hash_bytes(&Meta::file(0o644, 1000, 201, 6), b"hello\n"),
            h("53b40563c1162a14d9ce0233a6b346cd0a4cbce54c40affbdf0fc286fd3bfe7b")
        );
        assert_eq!(
            hash_bytes(&Meta::symlink(0, 0, 5), b"hello"),
            h("73e470325111055609cd39644a852f4d7c516994eba9c2657c7c8aa208c7d9a9")
        );
    }

    #[test]
    fn xattr_vector() {
        let meta = Meta::file(0o644, 0, 0, 6);
        let mut hasher = Hasher::new(&meta, b"user.a\0user.b\0one\0two\0");
        hasher.update(b"hello\n");
        assert_eq!(
            hasher.finish(),
            h("249fa485e18ca038b74656a407ff70d6a03b7f195badf6b26c23028c099e0530")
        );
    }

    #[test]
    fn parse_rejects_bad_hex() {
        assert!("abc".parse::<Hash>().is_err());
        assert!("G".repeat(64).parse::<Hash>().is_err());
        assert!("A".repeat(64).parse::<Hash>().is_err());
        assert_eq!("0".repeat(64).parse::<Hash>().unwrap(), Hash::ZERO);
    }

    #[test]
    fn missing_path_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            hash_path(&dir.path().join("nope"), false).unwrap(),
            Hash::ZERO
        );
    }
}
