//! file:// URLs: a local directory (a mounted medium, a test webroot) as the server.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::PathBuf;

use super::{Fault, Opened, Transport};
use crate::{Error, Result};

/// Reads objects from the local filesystem.
pub(super) struct FileTransport;

impl FileTransport {
    /// Checks that `base_url` names an absolute path (`file:///srv/update`).
    pub(super) fn new(base_url: &str) -> Result<FileTransport> {
        path_of(base_url).map_err(|reason| Error::BadUrl {
            url: base_url.to_string(),
            reason,
        })?;
        Ok(FileTransport)
    }
}

/// The local path a file:// URL names; only the empty host is accepted, so that the path
/// is always absolute and never silently relative to the working directory.
fn path_of(url: &str) -> Result<PathBuf, String> {
    let rest = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("file://"))
        .map(|_| &url[7..])
        .ok_or_else(|| "not a file:// URL".to_string())?;
    if !rest.starts_with('/') {
        return Err("a file:// URL needs an absolute path (file:///dir)".to_string());
    }
    Ok(PathBuf::from(rest))
}

impl Transport for FileTransport {
    fn open(&self, url: &str, from: u64, _validator: Option<&str>) -> Result<Opened, Fault> {
        let fatal = |reason: String| {
            Fault::Fatal(Error::Download {
                url: url.to_string(),
                reason,
            })
        };
        let path = path_of(url).map_err(fatal)?;
        let mut file = File::open(&path).map_err(|e| {
            fatal(match e.kind() {
                io::ErrorKind::NotFound => "not found".to_string(),
                _ => e.to_string(),
            })
        })?;
        let meta = file.metadata().map_err(|e| fatal(e.to_string()))?;
        if !meta.is_file() {
            return Err(fatal("not a regular file".to_string()));
        }
        file.seek(SeekFrom::Start(from))
            .map_err(|e| fatal(e.to_string()))?;
        Ok(Opened {
            body: Box::new(file),
            start: from,
            total: Some(meta.len()),
            validator: None,
        })
    }
}
