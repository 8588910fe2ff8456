//! Where the server's URLs and the content format come from: the command line, then
//! chainup's TOML config, then swupd's files under the root (a mirror's first), then the
//! running system's swupd files, as swupd looks for them.

use std::path::Path;

use super::Global;
use crate::config::Config;
use crate::format::Format;
use crate::swupd_config::{
    self as swupd, CONTENTURL, MIRROR_CONTENTURL, MIRROR_VERSIONURL, VERSIONURL,
};
use crate::{Error, Result};

/// The content and version URLs found, if any.
pub(super) struct Urls {
    pub content: Option<String>,
    pub version: Option<String>,
}

/// The first value set, and where it was set.
fn first(choices: [(Option<&String>, &str); 4]) -> Option<(String, String)> {
    choices
        .into_iter()
        .find_map(|(v, from)| v.map(|v| (v.clone(), from.to_string())))
}

/// Resolves both URLs. `-u` and the config's `url` stand for both, after the specific
/// ones at the same level; swupd's files come only after the command line and the config.
pub(super) fn resolve(g: &Global, config: &Config, root: &Path) -> Result<Urls> {
    let from_files = |mirror: &str, default: &str| -> Result<Option<(String, String)>> {
        Ok(swupd::url_from_files(root, mirror, default)?
            .map(|(url, file)| (url, file.display().to_string())))
    };
    let content = match first([
        (g.contenturl.as_ref(), "-c/--contenturl"),
        (g.url.as_ref(), "-u/--url"),
        (config.contenturl.as_ref(), "the config's contenturl"),
        (config.url.as_ref(), "the config's url"),
    ]) {
        Some(found) => Some(found),
        None => from_files(MIRROR_CONTENTURL, CONTENTURL)?,
    };
    let version = match first([
        (g.versionurl.as_ref(), "-v/--versionurl"),
        (g.url.as_ref(), "-u/--url"),
        (config.versionurl.as_ref(), "the config's versionurl"),
        (config.url.as_ref(), "the config's url"),
    ]) {
        Some(found) => Some(found),
        None => from_files(MIRROR_VERSIONURL, VERSIONURL)?,
    };
    for (what, found) in [("content", &content), ("version", &version)] {
        if let Some((url, from)) = found {
            log::debug!("{what} URL {url} (from {from})");
        }
    }
    Ok(Urls {
        content: content.map(|c| c.0),
        version: version.map(|v| v.0),
    })
}

/// `url` with its port replaced by swupd's `-P/--port`, when given (a `file://` URL has
/// no port and stays as it is).
pub(super) fn with_port(url: String, port: Option<u16>) -> Result<String> {
    let Some(port) = port else {
        return Ok(url);
    };
    let mut parsed = reqwest::Url::parse(&url).map_err(|e| Error::BadUrl {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    if parsed.scheme() == "file" {
        return Ok(url);
    }
    parsed
        .set_port(Some(port))
        .map_err(|()| Error::Usage(format!("--port {port}: {url} cannot take a port")))?;
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// The content format: `-F`, the config's `format`, swupd's format file in the root,
/// then the running system's, then chainup's default.
pub(super) fn format(g: &Global, config: &Config, root: &Path, default: Format) -> Result<Format> {
    if let Some(f) = g.format.or(config.format) {
        return Ok(f);
    }
    let mut places = vec![root];
    if root != Path::new("/") {
        places.push(Path::new("/"));
    }
    for base in places {
        if let Some(text) = swupd::read_value(base, swupd::FORMAT)? {
            let format = text.parse().map_err(|reason| Error::Config {
                path: base.join(swupd::FORMAT),
                reason,
            })?;
            log::debug!(
                "format {format} (from {})",
                base.join(swupd::FORMAT).display()
            );
            return Ok(format);
        }
    }
    Ok(default)
}
