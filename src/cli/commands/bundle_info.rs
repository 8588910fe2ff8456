//! `bundle-info`: its options and how its report is shown.

use clap::Args;
use serde_json::json;

use super::size;
use crate::cli::output::{Mode, Output};
use crate::client::Client;
use crate::commands::bundle_info::{self, Release};
use crate::Result;

/// `bundle-info` (swupd's options).
#[derive(Debug, Clone, Args)]
pub struct BundleInfoArgs {
    /// Show the bundle as of version V (a number or 'latest'; default: the installed one)
    #[arg(short = 'V', long = "version", value_name = "V")]
    pub version: Option<Release>,
    /// Show the bundles it pulls in
    #[arg(long)]
    pub dependencies: bool,
    /// List its files (with --dependencies, those of everything it pulls in)
    #[arg(long)]
    pub files: bool,
    /// The bundle
    pub bundle: String,
}

/// `bundle-info`.
pub fn bundle_info(client: &Client, a: &BundleInfoArgs, out: &Output) -> Result<i32> {
    let release = a.version.unwrap_or(Release::Current);
    let info = bundle_info::bundle_info(client, &a.bundle, release, a.dependencies, a.files)?;
    let deps = |d: &[bundle_info::Dependency]| -> Vec<serde_json::Value> {
        d.iter()
            .map(|d| json!({"name": d.name, "optional": d.optional, "installed": d.installed}))
            .collect()
    };
    if out.mode() == Mode::Json {
        out.record(
            "",
            json!({"type": "bundle-info", "bundle": info.name, "version": info.version,
                   "installed": info.installed, "experimental": info.experimental,
                   "manifest_version": info.manifest_version,
                   "latest_manifest_version": info.latest_manifest_version,
                   "size": info.size, "closure_size": info.closure_size,
                   "direct": deps(&info.direct), "indirect": deps(&info.indirect),
                   "files": info.files}),
        );
        return Ok(0);
    }
    let mut lines = vec![format!("Info for bundle: {}", info.name)];
    lines.push(format!(
        "Status: {}{}",
        if info.installed {
            "Installed"
        } else {
            "Not installed"
        },
        if info.experimental {
            " (experimental)"
        } else {
            ""
        }
    ));
    let latest = info
        .latest_manifest_version
        .unwrap_or(info.manifest_version);
    lines.push(String::new());
    if info.installed {
        lines.push(match latest > info.manifest_version {
            true => format!("There is an update for bundle {}:", info.name),
            false => format!("Bundle {} is up to date:", info.name),
        });
        lines.push(format!(
            " - Installed bundle last updated in version: {}",
            info.manifest_version
        ));
        lines.push(format!(" - Latest available version: {latest}"));
    } else {
        lines.push(format!("Latest available version: {latest}"));
    }
    lines.push(String::new());
    lines.push("Bundle size:".into());
    lines.push(format!(" - Size of bundle: {}", size(info.size)));
    lines.push(match info.installed {
        true => format!(
            " - Size bundle takes on disk (includes dependencies): {}",
            size(info.closure_size)
        ),
        false => format!(
            " - Maximum amount of disk size the bundle will take if installed (includes dependencies): {}",
            size(info.closure_size)
        ),
    });
    if a.dependencies {
        let show = |d: &bundle_info::Dependency| match (d.optional, info.installed) {
            (false, _) => format!(" - {}", d.name),
            (true, false) => format!(" - {} (optional)", d.name),
            (true, true) => format!(
                " - {} (optional, {})",
                d.name,
                if d.installed {
                    "installed"
                } else {
                    "not installed"
                }
            ),
        };
        if !info.direct.is_empty() {
            lines.push(String::new());
            lines.push(format!("Direct dependencies ({}):", info.direct.len()));
            lines.extend(info.direct.iter().map(show));
        }
        if !info.indirect.is_empty() {
            lines.push(String::new());
            lines.push(format!("Indirect dependencies ({}):", info.indirect.len()));
            lines.extend(info.indirect.iter().map(show));
        }
    }
    if let Some(files) = &info.files {
        lines.push(String::new());
        lines.push(match a.dependencies {
            true => "Files in bundle (includes dependencies):".into(),
            false => "Files in bundle:".into(),
        });
        lines.extend(files.iter().map(|f| format!(" - {f}")));
        lines.push(String::new());
        lines.push(format!("Total files: {}", files.len()));
    }
    for l in lines {
        out.result(&l);
    }
    Ok(0)
}
