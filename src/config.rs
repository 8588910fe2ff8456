//! The TOML configuration file: keys are the long option names; the command line wins.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// Where the config lives, relative to the target root.
pub const CONFIG_PATH: &str = "etc/chainup/config.toml";

/// Settings read from the config file; every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub url: Option<String>,
    pub contenturl: Option<String>,
    pub versionurl: Option<String>,
    pub format: Option<crate::format::Format>,
    pub statedir: Option<PathBuf>,
    pub certpath: Option<PathBuf>,
    pub crlpath: Option<PathBuf>,
    pub cacert: Option<PathBuf>,
    pub nosigcheck: Option<bool>,
    pub max_parallel_downloads: Option<usize>,
    pub max_retries: Option<u32>,
    pub retry_delay: Option<u64>,
    pub min_rate: Option<u64>,
    pub min_rate_window: Option<u64>,
    pub allow_insecure_http: Option<bool>,
    pub max_age: Option<u64>,
    pub channel: Option<String>,
    pub mirrors: Option<Vec<String>>,
    pub slots: Option<Slots>,
    /// Seconds one post-update action may run before it is killed.
    pub post_update_timeout: Option<u64>,
}

/// The `[slots]` table: the two core slots, the ESP and how to find the active slot.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Slots {
    /// EFI binaries are named `EFI/Linux/<product>-<version>.efi`.
    pub product: Option<String>,
    pub core_a: Option<PathBuf>,
    pub core_b: Option<PathBuf>,
    /// The ESP mount point (or a directory in tests).
    pub esp: Option<PathBuf>,
    /// Where the kernel command line is read (`/proc/cmdline`).
    pub cmdline: Option<PathBuf>,
    /// Where the mount table is read (`/proc/self/mountinfo`).
    pub mountinfo: Option<PathBuf>,
    /// Whether core images may be assembled from chunks (docs/chunks.md); default true.
    pub chunks: Option<bool>,
}

impl Config {
    /// Reads the config at `path`; a missing file is an empty config unless `required`.
    pub fn load(path: &Path, required: bool) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_slots() {
        let c: Config = toml::from_str(
            "url = \"https://u\"\nmax-parallel-downloads = 4\n[slots]\nproduct = \"clipos\"\ncore_a = \"/dev/a\"\n",
        )
        .unwrap();
        assert_eq!(c.url.as_deref(), Some("https://u"));
        assert_eq!(c.max_parallel_downloads, Some(4));
        assert_eq!(c.slots.unwrap().core_a, Some(PathBuf::from("/dev/a")));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("nosuch = 1\n").is_err());
    }
}
