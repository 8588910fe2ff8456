//! swupd's bundle aliases (`alias.d`): a name that `bundle-add` turns into one or more
//! bundles, defined by the distribution under `usr/share/defaults/swupd/alias.d` and by
//! the administrator under `etc/swupd/alias.d`, both in the root. Read as swupd 7.0.0
//! reads them (src/swupd_lib/alias.c), so a machine's alias files mean the same thing to
//! both programs:
//! - a file is lines `ALIAS<TAB>BUNDLE[<TAB>BUNDLE...]`; lines starting with `#`, lines
//!   without a tab and lines naming no bundle are skipped;
//! - an administrator's file masks the distribution's file of the same name (a link to
//!   `/dev/null` masks it with nothing);
//! - the administrator's files come first, then the distribution's, each set in byte
//!   order of the file names; the first file defining an alias wins, and within one file
//!   the last line does (swupd prepends each line to its list);
//! - an alias's bundles are listed last to first, as swupd prints them.
//!
//! An alias only chooses names: every bundle it names is still looked up in the verified
//! MoM, so an alias file cannot bring in anything the signed release does not have.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::limits::ALIAS_FILE;
use crate::{Error, Result};

/// The distribution's alias files, under the root.
pub const SYSTEM_DIR: &str = "usr/share/defaults/swupd/alias.d";
/// The administrator's alias files, under the root; they win over the distribution's.
pub const USER_DIR: &str = "etc/swupd/alias.d";

/// One alias and the bundles it stands for, in swupd's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub name: String,
    pub bundles: Vec<String>,
}

/// Every alias definition under `root`, most important first (the first for a name wins).
pub fn definitions(root: &Path) -> Result<Vec<Alias>> {
    let user = sorted_files(&root.join(USER_DIR))?;
    let mut system = sorted_files(&root.join(SYSTEM_DIR))?;
    system.retain(|s| !user.iter().any(|u| u.file_name() == s.file_name()));
    let mut out = Vec::new();
    for file in user.iter().chain(&system) {
        out.extend(read_file(file)?);
    }
    Ok(out)
}

/// The bundles `names` stand for: each alias replaced by its bundles, each other name kept.
/// Returns the bundles (sorted, without repeats, as swupd hands them on) and, for each
/// name that was an alias, the alias and its bundles, for the message swupd prints.
pub fn expand(root: &Path, names: &[String]) -> Result<(Vec<String>, Vec<Alias>)> {
    let defs = definitions(root)?;
    let mut bundles = Vec::new();
    let mut used = Vec::new();
    for name in names {
        match defs.iter().find(|a| &a.name == name) {
            // swupd prints nothing for an alias that names just itself.
            Some(a) if a.bundles != [name.clone()] => {
                bundles.extend(a.bundles.iter().cloned());
                used.push(a.clone());
            }
            _ => bundles.push(name.clone()),
        }
    }
    bundles.sort();
    bundles.dedup();
    Ok((bundles, used))
}

/// The entries of `dir` in byte order of their names; none when it does not exist.
fn sorted_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for e in entries {
        out.push(e.map_err(|e| Error::io(dir, e))?.path());
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

/// The definitions of one file, last line first. A file that cannot be read (a link to
/// `/dev/null` reads empty; a directory or a dangling link does not read) defines nothing,
/// as in swupd; one over the size cap is an error rather than half read.
fn read_file(path: &Path) -> Result<Vec<Alias>> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(Vec::new());
    };
    let mut bytes = Vec::new();
    if file.take(ALIAS_FILE + 1).read_to_end(&mut bytes).is_err() {
        return Ok(Vec::new());
    }
    if bytes.len() as u64 > ALIAS_FILE {
        return Err(Error::Config {
            path: path.to_path_buf(),
            reason: format!(
                "alias file larger than {}",
                crate::limits::describe(ALIAS_FILE)
            ),
        });
    }
    let mut out = parse(&String::from_utf8_lossy(&bytes));
    out.reverse();
    Ok(out)
}

/// The definitions of one file's text, in line order.
pub fn parse(text: &str) -> Vec<Alias> {
    text.split_inclusive('\n')
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, rest) = line.split_once('\t')?;
            let rest = rest.strip_suffix('\n').unwrap_or(rest);
            let mut bundles: Vec<String> = rest
                .split('\t')
                .filter(|b| !b.is_empty())
                .map(str::to_string)
                .collect();
            bundles.reverse();
            (!bundles.is_empty()).then(|| Alias {
                name: name.to_string(),
                bundles,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lines_comments_and_tabs() {
        let got = parse("# a\tb\nnotab\na1\tb1\t\tb2\nempty\t\na2\tb3");
        assert_eq!(
            got,
            vec![
                Alias {
                    name: "a1".into(),
                    bundles: names(&["b2", "b1"])
                },
                Alias {
                    name: "a2".into(),
                    bundles: names(&["b3"])
                },
            ]
        );
    }

    #[test]
    fn user_masks_and_wins_then_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, &format!("{SYSTEM_DIR}/a1"), "x\tsys-a1\n");
        write(root, &format!("{SYSTEM_DIR}/b1"), "x\tsys-b1\ny\tsys-y\n");
        write(root, &format!("{USER_DIR}/a1"), "");
        write(root, &format!("{USER_DIR}/c1"), "y\tuser-y\n");
        let (bundles, used) = expand(root, &names(&["x", "y", "plain"])).unwrap();
        assert_eq!(bundles, names(&["plain", "sys-b1", "user-y"]));
        assert_eq!(used.len(), 2);
    }

    #[test]
    fn last_line_of_a_file_wins_and_no_dirs_is_no_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let (bundles, used) = expand(dir.path(), &names(&["b"])).unwrap();
        assert_eq!((bundles, used.len()), (names(&["b"]), 0));
        write(
            dir.path(),
            &format!("{USER_DIR}/a"),
            "x\tfirst\nx\tsecond\n",
        );
        let (bundles, _) = expand(dir.path(), &names(&["x"])).unwrap();
        assert_eq!(bundles, names(&["second"]));
    }
}
