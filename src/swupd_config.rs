//! swupd's own configuration, read so a machine set up for swupd works unchanged: its INI
//! file of default options and its one-line URL and format files, all under the root.

pub mod aliases;

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// swupd's INI files, least important first (a later file overrides an earlier one).
pub const INI_FILES: [&str; 2] = ["usr/share/defaults/swupd/config", "etc/swupd/config"];
/// The distribution's content URL.
pub const CONTENTURL: &str = "usr/share/defaults/swupd/contenturl";
/// The distribution's version URL.
pub const VERSIONURL: &str = "usr/share/defaults/swupd/versionurl";
/// A mirror's content URL, set by `swupd mirror`; it wins over the distribution's.
pub const MIRROR_CONTENTURL: &str = "etc/swupd/mirror_contenturl";
/// A mirror's version URL, set by `swupd mirror`.
pub const MIRROR_VERSIONURL: &str = "etc/swupd/mirror_versionurl";
/// The content format the root follows.
pub const FORMAT: &str = "usr/share/defaults/swupd/format";

/// One option from an INI file: the long option name, its value and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniOption {
    pub key: String,
    pub value: String,
    pub file: PathBuf,
    pub section: String,
}

/// The options `command` takes from swupd's INI files under `root`: the `[global]`
/// section, then the `[command]` section (which wins, as swupd's manual says), file after
/// file. Keys are lower-cased and `_` becomes `-`, as swupd does; a later setting of the
/// same key replaces an earlier one. Missing files are skipped.
pub fn ini_options(root: &Path, command: &str) -> Result<Vec<IniOption>> {
    let mut out: Vec<IniOption> = Vec::new();
    for rel in INI_FILES {
        let path = root.join(rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        let parsed = parse_ini(&text);
        for wanted in ["global", command] {
            for (section, key, value) in parsed.iter().filter(|(s, _, _)| s == wanted) {
                out.retain(|o| &o.key != key);
                out.push(IniOption {
                    key: key.clone(),
                    value: value.clone(),
                    file: path.clone(),
                    section: section.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// swupd's INI dialect (src/lib/config_file.c): `[section]` headers, `key=value` lines,
/// `#` and `;` comments; sections and keys are case-insensitive; a key before any
/// section is global; lines with an empty key or value, or a second `=`, are skipped.
pub fn parse_ini(text: &str) -> Vec<(String, String, String)> {
    let mut section = "global".to_string();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_lowercase();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.is_empty() || value.is_empty() || value.contains('=') {
            log::warn!("swupd config: invalid key/value pair {line:?} skipped");
            continue;
        }
        out.push((
            section.clone(),
            key.to_lowercase().replace('_', "-"),
            value.to_string(),
        ));
    }
    out
}

/// swupd's reading of a boolean option's value (`str_to_bool`): "true" in any case
/// sets it; anything else leaves it unset.
pub fn truthy(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// The first line of a one-line swupd file under `root`, if the file exists and holds one.
pub fn read_value(root: &Path, rel: &str) -> Result<Option<String>> {
    let path = root.join(rel);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t
            .lines()
            .next()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| v.trim_end_matches('/').to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A URL from swupd's files, as swupd looks for it: the mirror file in the root, then
/// the distribution's file in the root, then the distribution's file of the running
/// system (when the root is not `/`). Returns the URL and the file it came from.
pub fn url_from_files(
    root: &Path,
    mirror: &str,
    default: &str,
) -> Result<Option<(String, PathBuf)>> {
    let mut places = vec![(root, mirror), (root, default)];
    if root != Path::new("/") {
        places.push((Path::new("/"), default));
    }
    for (base, rel) in places {
        if let Some(url) = read_value(base, rel)? {
            return Ok(Some((url, base.join(rel))));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_comments_and_bad_lines() {
        let got = parse_ini(
            "# c\nurl=http://a\n[GLOBAL]\nmax_retries=2\n; c\n[Update]\nkeepcache=true\nbad\n=x\ny=\na=b=c\n",
        );
        assert_eq!(
            got,
            vec![
                ("global".into(), "url".into(), "http://a".into()),
                ("global".into(), "max-retries".into(), "2".into()),
                ("update".into(), "keepcache".into(), "true".into()),
            ]
        );
    }

    #[test]
    fn command_section_beats_global_and_etc_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in [
            (
                INI_FILES[0],
                "[update]\nmax-retries=1\n[global]\nformat=7\n",
            ),
            (
                INI_FILES[1],
                "[global]\nmax-retries=5\n[bundle-add]\nformat=9\n",
            ),
        ] {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let update = ini_options(dir.path(), "update").unwrap();
        let get =
            |opts: &[IniOption], k: &str| opts.iter().find(|o| o.key == k).map(|o| o.value.clone());
        assert_eq!(get(&update, "max-retries").as_deref(), Some("5"));
        assert_eq!(get(&update, "format").as_deref(), Some("7"));
        let add = ini_options(dir.path(), "bundle-add").unwrap();
        assert_eq!(get(&add, "format").as_deref(), Some("9"));
    }
}
