//! The inputs of a release: bundle definitions (bundles.toml) and image payload options.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use chainup::manifest::{validate_bundle_name, ImageKind};
use serde::Deserialize;

/// One bundle as bundles.toml defines it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BundleDef {
    /// Bundles this one depends on (`includes:` header lines).
    #[serde(default)]
    pub includes: Vec<String>,
    /// Optional bundles that bundle-add also installs (`also-add:` header lines).
    #[serde(default)]
    pub also_add: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundlesFile {
    bundles: BTreeMap<String, BundleDef>,
}

/// All bundle definitions, by name (sorted, so every walk over them is deterministic).
pub type Bundles = BTreeMap<String, BundleDef>;

/// Reads and checks bundles.toml: valid names, known includes and also-adds, no cycles.
pub fn load_bundles(path: &Path) -> Result<Bundles> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: BundlesFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    check_bundles(&file.bundles).with_context(|| format!("in {}", path.display()))?;
    Ok(file.bundles)
}

/// The rules bundles.toml must follow; split out so they can be tested without files.
pub fn check_bundles(bundles: &Bundles) -> Result<()> {
    if bundles.is_empty() {
        bail!("no bundles are defined");
    }
    for (name, def) in bundles {
        validate_bundle_name(name).map_err(anyhow::Error::msg)?;
        for (key, list) in [("includes", &def.includes), ("also-add", &def.also_add)] {
            let mut seen = std::collections::BTreeSet::new();
            for other in list {
                if !bundles.contains_key(other) {
                    bail!("bundle {name:?}: {key} names unknown bundle {other:?}");
                }
                if !seen.insert(other) {
                    bail!("bundle {name:?}: {key} names {other:?} twice");
                }
            }
        }
    }
    for name in bundles.keys() {
        find_cycle(bundles, name, &mut Vec::new())?;
    }
    Ok(())
}

/// Depth-first search along includes; `stack` is the current chain from the start.
fn find_cycle<'a>(bundles: &'a Bundles, name: &'a str, stack: &mut Vec<&'a str>) -> Result<()> {
    if let Some(pos) = stack.iter().position(|&s| s == name) {
        let mut chain = stack[pos..].to_vec();
        chain.push(name);
        bail!("include cycle: {}", chain.join(" -> "));
    }
    stack.push(name);
    for inc in &bundles[name].includes {
        find_cycle(bundles, inc, stack)?;
    }
    stack.pop();
    Ok(())
}

/// `--image BUNDLE:core=PATH` or `BUNDLE:efiboot=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub bundle: String,
    pub kind: ImageKind,
    pub path: PathBuf,
}

impl FromStr for ImageSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || format!("{s:?}: expected BUNDLE:core=PATH or BUNDLE:efiboot=PATH");
        let (bundle, rest) = s.split_once(':').ok_or_else(usage)?;
        let (kind, path) = rest.split_once('=').ok_or_else(usage)?;
        let kind = match kind {
            "core" => ImageKind::Core,
            "efiboot" => ImageKind::EfiBoot,
            _ => return Err(usage()),
        };
        validate_bundle_name(bundle)?;
        if path.is_empty() {
            return Err(usage());
        }
        Ok(ImageSpec {
            bundle: bundle.to_string(),
            kind,
            path: PathBuf::from(path),
        })
    }
}

/// Checks that every image names a defined bundle and no payload is given twice.
pub fn check_images(bundles: &Bundles, images: &[ImageSpec]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for img in images {
        if !bundles.contains_key(&img.bundle) {
            bail!(
                "--image names bundle {:?}, which bundles.toml does not define",
                img.bundle
            );
        }
        if !seen.insert((&img.bundle, img.kind.path())) {
            bail!(
                "--image gives {} of bundle {:?} twice",
                img.kind.path(),
                img.bundle
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Bundles> {
        let file: BundlesFile = toml::from_str(text)?;
        check_bundles(&file.bundles)?;
        Ok(file.bundles)
    }

    #[test]
    fn reads_includes_and_also_add() {
        let b = parse(
            "[bundles.os-core]\n[bundles.editors]\nincludes = [\"os-core\"]\n\
             [bundles.dev]\nincludes = [\"editors\"]\nalso-add = [\"os-core\"]\n",
        )
        .unwrap();
        assert_eq!(b["dev"].includes, ["editors"]);
        assert_eq!(b["dev"].also_add, ["os-core"]);
        assert!(b["os-core"].includes.is_empty());
    }

    #[test]
    fn refuses_unknown_and_cycles() {
        let e = parse("[bundles.a]\nincludes = [\"zz\"]\n").unwrap_err();
        assert!(e.to_string().contains("unknown bundle \"zz\""), "{e}");
        let e = parse("[bundles.a]\nincludes = [\"b\"]\n[bundles.b]\nincludes = [\"a\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("include cycle: a -> b -> a"), "{e}");
        let e = parse("[bundles.a]\nincludes = [\"a\"]\n").unwrap_err();
        assert!(e.to_string().contains("include cycle"), "{e}");
        assert!(parse("[bundles.a]\nrequires = []\n").is_err());
        assert!(parse("[bundles]\n").is_err());
        assert!(parse("[bundles.\"../x\"]\n").is_err());
    }

    #[test]
    fn image_specs() {
        let s: ImageSpec = "core-image:core=/tmp/a.img".parse().unwrap();
        assert_eq!(s.bundle, "core-image");
        assert_eq!(s.kind, ImageKind::Core);
        assert_eq!(s.path, PathBuf::from("/tmp/a.img"));
        let s: ImageSpec = "b:efiboot=x=y".parse().unwrap();
        assert_eq!(s.path, PathBuf::from("x=y"));
        for bad in ["b:kernel=x", "b=core", "b:core=", ":core=x"] {
            assert!(bad.parse::<ImageSpec>().is_err(), "{bad}");
        }
    }
}
