//! The download bound: the archive module's bounded reader with a download error.

use std::io::{self, Read};

use crate::archive::Bounded;
use crate::Error;

/// Bounds a download from `url` to `limit` bytes: past it, a read fails with a download
/// error naming the URL, carried inside the `io::Error` (see `download_error`).
pub(crate) fn limit<R: Read>(inner: R, limit: u64, url: &str) -> Bounded<R> {
    let url = url.to_string();
    Bounded::with_error(inner, limit, move |limit| {
        io::Error::other(Error::Download {
            url: url.clone(),
            reason: format!("server sent more than {limit} bytes"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], bound: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        limit(data, bound, "file:///x").read_to_end(&mut out)?;
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
        let mut r = limit(&b"abcdef"[..], 3, "u");
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(r.bytes_read(), 2);
        // One byte of room left: the reader asks for two and sees the overflow.
        assert!(r.read(&mut [0u8; 16]).is_err());
        assert_eq!(r.bytes_read(), 2);
    }
}
