//! 3rd-party repositories, laid out as swupd lays them out (3rd_party_repos.c):
//! `ROOT/opt/3rd-party/repo.ini` lists them (`[name]` / `url=URL`), and each one is a root
//! of its own, `ROOT/opt/3rd-party/bundles/<name>`, with its own os-core, os-release and
//! bundles, installed and updated by the ordinary client (the same chain and the same
//! transaction) with the repository's URL and state directory `STATEDIR/3rd-party/<name>`.
//!
//! Trust differs from swupd on purpose: swupd fetches the repository's certificate from
//! the repository itself (unverified) and asks the user to accept it; chainup takes the
//! certificate from the administrator (`3rd-party add -C CERT`), keeps a copy in the
//! repository's private state directory, and checks every later MoM of that repository
//! against it (and only it).

use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::{fsutil, Error, Result};

/// The 3rd-party tree, relative to the root.
pub const DIR: &str = "opt/3rd-party";
/// The repository list, relative to the root.
pub const REPO_INI: &str = "opt/3rd-party/repo.ini";
/// Where each repository's root lives, relative to the root.
pub const BUNDLES_DIR: &str = "opt/3rd-party/bundles";
/// Where each repository's state directory lives, relative to the state directory.
pub const STATE_DIR: &str = "3rd-party";
/// The pinned trust store in a repository's state directory.
pub const PINNED_CERT: &str = "Swupd_Root.pem";

/// One repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    pub url: String,
}

/// A repository name is one path component, as a bundle name is.
pub fn check_name(name: &str) -> Result<()> {
    crate::manifest::validate_bundle_name(name).map_err(|reason| {
        Error::Usage(format!("{name:?} is not a valid repository name: {reason}"))
    })
}

/// The repository's root under `root`.
pub fn repo_root(root: &Path, name: &str) -> PathBuf {
    root.join(BUNDLES_DIR).join(name)
}

/// The repository's state directory under the root's state directory.
pub fn repo_state(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(STATE_DIR).join(name)
}

/// The repositories listed in `ROOT/opt/3rd-party/repo.ini` (none if it is missing), in
/// file order. Keys other than `url` are ignored, as swupd does.
pub fn read_repos(root: &Path) -> Result<Vec<Repo>> {
    let path = root.join(REPO_INI);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let bad = |line: usize, reason: &str| Error::Config {
        path: path.clone(),
        reason: format!("line {line}: {reason}"),
    };
    let mut repos: Vec<Repo> = Vec::new();
    let mut section: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            check_name(name).map_err(|e| bad(i + 1, &e.to_string()))?;
            section = Some(match repos.iter().position(|r| r.name == name) {
                Some(at) => at,
                None => {
                    repos.push(Repo {
                        name: name.to_string(),
                        url: String::new(),
                    });
                    repos.len() - 1
                }
            });
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad(i + 1, "expected [name] or key=value"))?;
        let at = section.ok_or_else(|| bad(i + 1, "a key outside a [repository] section"))?;
        if key.trim().eq_ignore_ascii_case("url") {
            repos[at].url = value.trim().to_string();
        }
    }
    if let Some(r) = repos.iter().find(|r| r.url.is_empty()) {
        return Err(Error::Config {
            path,
            reason: format!("repository {} has no url", r.name),
        });
    }
    Ok(repos)
}

/// Rewrites `repo.ini` (atomically) with `repos`, in swupd's format.
pub fn write_repos(root: &Path, repos: &[Repo]) -> Result<()> {
    let dir = root.join(DIR);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let text: Vec<String> = repos
        .iter()
        .map(|r| format!("[{}]\nurl={}\n", r.name, r.url))
        .collect();
    fsutil::write_atomic(&root.join(REPO_INI), text.join("\n").as_bytes())
}

/// The repository called `name`.
pub fn find(root: &Path, name: &str) -> Result<Repo> {
    read_repos(root)?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Error::Repository {
            name: name.to_string(),
            reason: "not found (see `3rd-party list`)".into(),
        })
}

/// Checks that `repo` can be added to `root`: a new name, a new URL, no content left
/// where its root goes.
pub fn check_new(root: &Path, repo: &Repo) -> Result<()> {
    check_name(&repo.name)?;
    let repos = read_repos(root)?;
    if repos.iter().any(|r| r.name == repo.name) {
        return Err(Error::Usage(format!(
            "a 3rd-party repository called {:?} already exists",
            repo.name
        )));
    }
    if let Some(other) = repos.iter().find(|r| r.url == repo.url) {
        return Err(Error::Usage(format!(
            "the URL {} is already the repository {:?}",
            repo.url, other.name
        )));
    }
    let content = repo_root(root, &repo.name);
    let non_empty = std::fs::read_dir(&content).is_ok_and(|mut d| d.next().is_some());
    if non_empty {
        return Err(Error::Repository {
            name: repo.name.clone(),
            reason: format!(
                "its content directory {} already exists and is not empty",
                content.display()
            ),
        });
    }
    Ok(())
}

/// Checks `cert` is a usable trust store and keeps a copy of it as the repository's
/// pinned certificate.
pub fn pin_certificate(repo_state: &Path, cert: &Path) -> Result<()> {
    crate::signature::TrustStore::load(cert, None)?;
    let data = std::fs::read(cert).at(cert)?;
    fsutil::write_atomic(&repo_state.join(PINNED_CERT), &data)
}

/// Removes a repository's root and state directory, neither of which may be reached
/// through a symlink (the walk does not follow symlinks inside them either).
pub fn remove_content(root: &Path, state_dir: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    for (base, rel) in [
        (root, PathBuf::from(BUNDLES_DIR).join(name)),
        (state_dir, PathBuf::from(STATE_DIR).join(name)),
    ] {
        let mut at = base.to_path_buf();
        let mut reachable = true;
        for part in rel.components() {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    return Err(Error::UnsafePath {
                        path: at.display().to_string(),
                        reason: "not a directory (a symlink is not followed)".into(),
                    })
                }
                Err(_) => {
                    reachable = false;
                    break;
                }
            }
        }
        if reachable {
            std::fs::remove_dir_all(&at).at(&at)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ini_round_trips_in_swupds_format() {
        let dir = tempfile::tempdir().unwrap();
        let repos = vec![
            Repo {
                name: "one".into(),
                url: "file:///srv/one".into(),
            },
            Repo {
                name: "two".into(),
                url: "https://example.com/two".into(),
            },
        ];
        write_repos(dir.path(), &repos).unwrap();
        let text = std::fs::read_to_string(dir.path().join(REPO_INI)).unwrap();
        assert_eq!(
            text,
            "[one]\nurl=file:///srv/one\n\n[two]\nurl=https://example.com/two\n"
        );
        assert_eq!(read_repos(dir.path()).unwrap(), repos);
        assert!(check_new(dir.path(), &repos[0]).is_err());
        assert!(check_name("../x").is_err());
    }
}
