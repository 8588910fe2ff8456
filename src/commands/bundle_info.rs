//! `bundle-info BUNDLE [-V V|latest] [--dependencies] [--files]`: a bundle's status, the
//! version it last changed in, its size, what it pulls in and what it holds, read from
//! verified manifests (swupd's bundle_info.c).

use std::collections::BTreeSet;

use crate::chain::VerifiedManifest;
use crate::client::Client;
use crate::{Error, Result};

/// Which release a read-only command looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The one installed in the root.
    Current,
    /// The newest on the server.
    Latest,
    /// This one.
    Exact(u32),
}

impl std::str::FromStr for Release {
    type Err = String;
    fn from_str(s: &str) -> Result<Release, String> {
        if s == "latest" {
            return Ok(Release::Latest);
        }
        match s.parse::<u32>() {
            Ok(v) if v > 0 => Ok(Release::Exact(v)),
            _ => Err(format!(
                "{s:?} is not a version (a positive number or 'latest')"
            )),
        }
    }
}

/// A bundle another one pulls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    /// Pulled in only through `also-add` (installed by default, removable).
    pub optional: bool,
    pub installed: bool,
}

/// What `bundle-info` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    pub name: String,
    /// The release looked at.
    pub version: u32,
    pub installed: bool,
    pub experimental: bool,
    /// The version the bundle's manifest last changed in, in the release looked at.
    pub manifest_version: u32,
    /// The same in the server's newest release (`None` if that release dropped it).
    pub latest_manifest_version: Option<u32>,
    /// The bundle's own content size (signed `contentsize:`).
    pub size: u64,
    /// Installed: what the bundle and all it pulls in take; not installed: what
    /// installing it would add.
    pub closure_size: u64,
    /// `includes:` then `also-add:` of the bundle itself.
    pub direct: Vec<Dependency>,
    /// Everything else it pulls in, by name.
    pub indirect: Vec<Dependency>,
    /// Present paths of the bundle (with `dependencies`, of everything it pulls in),
    /// sorted, when asked for.
    pub files: Option<Vec<String>>,
}

/// Gathers [`BundleInfo`] for `bundle`; `files` lists its paths, `dependencies` widens
/// that list to everything the bundle pulls in.
pub fn bundle_info(
    client: &Client,
    bundle: &str,
    release: Release,
    dependencies: bool,
    files: bool,
) -> Result<BundleInfo> {
    crate::manifest::validate_bundle_name(bundle)
        .map_err(|_| Error::UnknownBundle(bundle.to_string()))?;
    let latest = client.chain().latest()?;
    let version = match release {
        Release::Current => client.current_version()?,
        Release::Latest => latest,
        Release::Exact(v) => v,
    };
    let mom = client.verified_mom(version)?;
    let line = mom
        .bundle(bundle)
        .ok_or_else(|| Error::UnknownBundle(bundle.to_string()))?;
    let experimental = line.status == crate::manifest::Status::Experimental;
    let manifest_version = line.version;
    let latest_manifest_version = match latest == version {
        true => Some(manifest_version),
        false => client
            .verified_mom(latest)?
            .bundle(bundle)
            .map(|l| l.version),
    };
    let installed_list = client.installed_bundles()?;
    let is_installed = |b: &str| installed_list.iter().any(|i| i == b);
    let names = [bundle.to_string()];
    let required: BTreeSet<String> = client
        .resolve(&mom, &names, false)?
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let all = client.resolve(&mom, &names, true)?;
    let own = all
        .iter()
        .find(|m| m.name() == bundle)
        .expect("resolve returns the bundle asked for");
    let installed = is_installed(bundle);
    let closure_size = all
        .iter()
        .filter(|m| installed || !is_installed(m.name()))
        .map(|m| m.manifest().header.contentsize)
        .sum();
    let dep = |name: &str| Dependency {
        name: name.to_string(),
        optional: !required.contains(name),
        installed: is_installed(name),
    };
    let header = &own.manifest().header;
    let mut direct: Vec<Dependency> = header.includes.iter().map(|n| dep(n)).collect();
    direct.extend(header.also_add.iter().map(|n| Dependency {
        optional: true,
        ..dep(n)
    }));
    let indirect = all
        .iter()
        .map(|m| m.name())
        .filter(|n| *n != bundle && !direct.iter().any(|d| d.name == *n))
        .map(dep)
        .collect();
    let files = files.then(|| match dependencies {
        true => present_paths(&all),
        false => present_paths(std::slice::from_ref(own)),
    });
    Ok(BundleInfo {
        name: bundle.to_string(),
        version,
        installed,
        experimental,
        manifest_version,
        latest_manifest_version,
        size: header.contentsize,
        closure_size,
        direct,
        indirect,
        files,
    })
}

/// Present paths of `manifests` (image payloads are not paths of the root), sorted, once.
fn present_paths(manifests: &[VerifiedManifest]) -> Vec<String> {
    let paths: BTreeSet<String> = manifests
        .iter()
        .flat_map(|m| m.manifest().present())
        .filter(|e| e.image().is_none())
        .map(|e| e.path.clone())
        .collect();
    paths.into_iter().collect()
}
