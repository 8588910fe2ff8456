//! A reader that yields at most a fixed number of bytes and fails if there are more.

use std::io::{self, Read};

use crate::Error;

/// Wraps a reader so that a server cannot make us read (or decompress) more than `limit`
/// bytes: past the limit, a read fails instead of silently truncating, because a
/// truncated object would only be caught later, by a hash mismatch with a vaguer message.
pub(crate) struct Limit<R> {
    inner: R,
    limit: u64,
    read: u64,
    url: String,
}

impl<R: Read> Limit<R> {
    /// Bounds `inner`, whose content comes from `url` (named in the error), to `limit` bytes.
    pub(crate) fn new(inner: R, limit: u64, url: &str) -> Limit<R> {
        Limit {
            inner,
            limit,
            read: 0,
            url: url.to_string(),
        }
    }

    /// The wrapped reader.
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes yielded so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read
    }
}

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than the room left: getting it proves the object is too
        // large, while an exact-size object then reads its end of file as usual.
        let room = self.limit - self.read;
        let want = usize::try_from(room.saturating_add(1)).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > room {
            return Err(io::Error::other(Error::Download {
                url: self.url.clone(),
                reason: format!("server sent more than {} bytes", self.limit),
            }));
        }
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], limit: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Limit::new(data, limit, "file:///x").read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn exact_size_and_smaller_pass() {
        assert_eq!(read_all(b"hello", 5).unwrap(), b"hello");
        assert_eq!(read_all(b"hello", 6).unwrap(), b"hello");
        assert_eq!(read_all(b"", 0).unwrap(), b"");
    }

    #[test]
    fn larger_fails_naming_the_url() {
        let err = read_all(b"hello", 4).unwrap_err();
        let inner = err.into_inner().unwrap().downcast::<Error>().unwrap();
        assert!(matches!(*inner, Error::Download { ref url, ref reason }
            if url == "file:///x" && reason == "server sent more than 4 bytes"));
        assert!(read_all(b"x", 0).is_err());
    }

    #[test]
    fn counts_bytes_and_yields_no_more_than_the_limit() {
        let mut r = Limit::new(&b"abcdef"[..], 3, "u");
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(r.bytes_read(), 2);
        // One byte of room left: the reader asks for two and sees the overflow.
        assert!(r.read(&mut [0u8; 16]).is_err());
        assert_eq!(r.bytes_read(), 2);
    }
}
