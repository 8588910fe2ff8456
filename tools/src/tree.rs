//! A bundle's new content: its release tree walked and hashed, the bundle marker that swupd
//! tracks installs by, and its image payloads.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chainup::hash::{hash_path, hash_reader, Hash, Hasher, Meta};
use chainup::manifest::{validate_path, EntryType, ImageKind};
use rayon::prelude::*;

/// Where the bytes of an item come from when its fullfile is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file, directory or symlink in a release tree, published with its own metadata.
    Tree(PathBuf),
    /// An image payload, published as a regular file 0644 root:root.
    Image(PathBuf),
    /// Made up by the publisher (bundle marker and its directories); `meta` says which.
    Synthetic,
}

/// One present entry of a bundle, hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Manifest path (absolute, validated).
    pub path: String,
    pub etype: EntryType,
    /// `Some` for an image payload (`F..i` line).
    pub image: Option<ImageKind>,
    /// The metadata the hash was computed over; the fullfile's tar header repeats it.
    pub meta: Meta,
    pub hash: Hash,
    pub source: Source,
}

/// Directories that lead to the bundle marker files.
const MARKER_DIRS: [&str; 4] = [
    "/usr",
    "/usr/share",
    "/usr/share/clear",
    "/usr/share/clear/bundles",
];

/// The marker file swupd uses to know that `bundle` is installed.
pub fn marker_path(bundle: &str) -> String {
    format!("/usr/share/clear/bundles/{bundle}")
}

/// Walks `root` (sorted by name, never following symlinks) and hashes every entry below
/// it in parallel. `root` itself is not an entry, as in mixer.
pub fn scan(root: &Path) -> Result<Vec<Item>> {
    let mut found = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.with_context(|| format!("walking {}", root.display()))?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir stays below its root");
        let path = manifest_path(rel).with_context(|| format!("{}", entry.path().display()))?;
        found.push((path, entry.into_path()));
    }
    found
        .into_par_iter()
        .map(|(path, fs_path)| {
            tree_item(path, &fs_path).with_context(|| format!("{}", fs_path.display()))
        })
        .collect()
}

/// The manifest path for a path relative to the tree root, refusing names a manifest
/// line cannot carry.
fn manifest_path(rel: &Path) -> Result<String> {
    let Some(rel) = rel.to_str() else {
        bail!("the name is not valid UTF-8, which a manifest cannot carry");
    };
    if rel.contains(['\n', '\r']) {
        bail!("the name contains a line break, which a manifest line cannot carry");
    }
    let path = format!("/{rel}");
    validate_path(&path).map_err(anyhow::Error::msg)?;
    Ok(path)
}

fn tree_item(path: String, fs_path: &Path) -> Result<Item> {
    let md = std::fs::symlink_metadata(fs_path)?;
    let ft = md.file_type();
    let etype = if ft.is_file() {
        EntryType::File
    } else if ft.is_dir() {
        EntryType::Dir
    } else if ft.is_symlink() {
        EntryType::Link
    } else {
        let what = if ft.is_fifo() {
            "a fifo"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device node"
        } else {
            "of an unknown type"
        };
        bail!("{what}: only files, directories and symlinks can be published");
    };
    // Mixer never hashes xattrs, and neither does a default swupd client.
    let hash = hash_path(fs_path, false)?;
    let mut meta = Meta::from_metadata(&md);
    if etype == EntryType::Dir {
        // swupd hashes directories with size 0, and that is what their tar header says.
        meta.size = 0;
    }
    Ok(Item {
        path,
        etype,
        image: None,
        meta,
        hash,
        source: Source::Tree(fs_path.to_path_buf()),
    })
}

/// Adds the bundle marker file and the directories leading to it where the tree lacks them.
pub fn add_marker(items: &mut Vec<Item>, bundle: &str) -> Result<()> {
    for dir in MARKER_DIRS {
        match items.iter().find(|i| i.path == dir) {
            Some(i) if i.etype == EntryType::Dir => {}
            Some(_) => bail!("{dir} is not a directory in the tree of bundle {bundle:?}"),
            None => items.push(synthetic(dir, Meta::dir(0o755, 0, 0))),
        }
    }
    let marker = marker_path(bundle);
    if !items.iter().any(|i| i.path == marker) {
        items.push(synthetic(&marker, Meta::file(0o644, 0, 0, 0)));
    }
    Ok(())
}

fn synthetic(path: &str, meta: Meta) -> Item {
    let etype = match meta.kind {
        chainup::hash::Kind::Dir => EntryType::Dir,
        chainup::hash::Kind::File => EntryType::File,
        chainup::hash::Kind::Symlink => EntryType::Link,
    };
    Item {
        path: path.to_string(),
        etype,
        image: None,
        meta,
        hash: chainup::hash::hash_bytes(&meta, b""),
        source: Source::Synthetic,
    }
}

/// Hashes an image payload as a regular file 0644 root:root, whatever its owner on disk,
/// streaming it (images may be GiBs).
pub fn image_item(kind: ImageKind, path: &Path) -> Result<Item> {
    let ctx = || format!("image {}", path.display());
    let mut file = File::open(path).with_context(ctx)?;
    let md = file.metadata().with_context(ctx)?;
    if !md.is_file() {
        bail!("image {} is not a regular file", path.display());
    }
    let meta = Meta::file(0o644, 0, 0, md.len());
    let mut hasher = Hasher::new(&meta, &[]);
    let read = hash_reader(&mut hasher, &mut file).with_context(ctx)?;
    if read != md.len() {
        return Err(io::Error::other("the file changed size while it was read")).with_context(ctx);
    }
    Ok(Item {
        path: kind.path().to_string(),
        etype: EntryType::File,
        image: Some(kind),
        meta,
        hash: hasher.finish(),
        source: Source::Image(path.to_path_buf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn scans_sorted_and_hashes_like_hash_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/b"), "b").unwrap();
        std::fs::write(root.join("usr/bin/a"), "a").unwrap();
        std::os::unix::fs::symlink("a", root.join("usr/bin/c")).unwrap();
        let items = scan(root).unwrap();
        let paths: Vec<_> = items.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/usr", "/usr/bin", "/usr/bin/a", "/usr/bin/b", "/usr/bin/c"]
        );
        assert_eq!(items[4].etype, EntryType::Link);
        for i in &items {
            let on_disk = root.join(&i.path[1..]);
            assert_eq!(i.hash, hash_path(&on_disk, false).unwrap());
        }
    }

    #[test]
    fn refuses_bad_names_and_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a\nb"), "").unwrap();
        let e = format!("{:#}", scan(dir.path()).unwrap_err());
        assert!(e.contains("line break") && e.contains("a\nb"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = format!("{:#}", scan(dir.path()).unwrap_err());
        assert!(e.contains("a socket") && e.contains("sock"), "{e}");
    }

    #[test]
    fn marker_added_once_and_kept_if_present() {
        let mut items = Vec::new();
        add_marker(&mut items, "os-core").unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!(items[4].path, "/usr/share/clear/bundles/os-core");
        assert_eq!(items[4].meta, Meta::file(0o644, 0, 0, 0));
        add_marker(&mut items, "os-core").unwrap();
        assert_eq!(items.len(), 5);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("usr"), "").unwrap();
        let mut items = scan(dir.path()).unwrap();
        assert!(add_marker(&mut items, "x").is_err());
    }

    #[test]
    fn image_hash_ignores_owner_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("core.img");
        std::fs::write(&p, b"test-data").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let item = image_item(ImageKind::Core, &p).unwrap();
        assert_eq!(item.path, "/core");
        assert_eq!(
            item.hash.to_hex(),
            "8286279c93f45c7ffa6b9ed440066de09716527346d9dd0239f50948e0e554f0"
        );
    }
}
