//! `mirror`: its options, URL checks, and the URLs it shows.

use clap::Args;
use serde_json::json;

use crate::cli::output::Output;
use crate::cli::{local_config, settings, Global};
use crate::commands::mirror;
use crate::progress::{Event, Observer};
use crate::source::{Source, SourceConfig};
use crate::{Error, Result};

/// `mirror` (swupd's options).
#[derive(Debug, Clone, Args)]
pub struct MirrorArgs {
    /// Set the mirror to URL (or to -c/-v, or -u)
    #[arg(short = 's', long = "set")]
    pub set: bool,
    /// Remove the mirror
    #[arg(short = 'U', long = "unset", conflicts_with = "set")]
    pub unset: bool,
    /// The mirror URL (with --set)
    #[arg(requires = "set")]
    pub url: Option<String>,
}

/// `mirror`: without options, the mirror files and the URLs in force.
pub fn mirror(g: &Global, a: &MirrorArgs, out: &Output) -> Result<i32> {
    let (root, config) = local_config(g)?;
    if !root.is_dir() {
        return Err(Error::Usage(format!(
            "the root {} does not exist",
            root.display()
        )));
    }
    let from_flags = g.url.is_some() || g.contenturl.is_some() || g.versionurl.is_some();
    if a.set {
        let content = a.url.clone().or(g.contenturl.clone()).or(g.url.clone());
        let version = a.url.clone().or(g.versionurl.clone()).or(g.url.clone());
        if content.is_none() && version.is_none() {
            return Err(Error::Usage("--set needs a URL (or -u, -c or -v)".into()));
        }
        let check = SourceConfig {
            allow_insecure_http: g.allow_insecure_http
                || config.allow_insecure_http.unwrap_or(false),
            ..SourceConfig::default()
        };
        for url in content.iter().chain(version.iter()) {
            Source::new(url, &check)?;
            if url.starts_with("http://") {
                out.event(Event::Warning(format!(
                    "the mirror {url} is plain HTTP: automatic updates need allow-insecure-http = true in the config"
                )));
            }
        }
        mirror::set(&root, &mirror::Mirror { content, version })?;
        out.result("Mirror url set");
    } else if a.unset {
        let removed = mirror::unset(&root)?;
        out.result(match removed {
            true => "Mirror url unset",
            false => "No mirror was set",
        });
    } else if from_flags {
        return Err(Error::Usage(
            "-u, -c and -v can only be used with mirror --set".into(),
        ));
    }
    let m = mirror::get(&root)?;
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
    out.record(
        &format!(
            "Mirror version URL: {}\nMirror content URL: {}",
            show(&m.version),
            show(&m.content)
        ),
        json!({"type": "mirror", "versionurl": m.version, "contenturl": m.content}),
    );
    if !a.set && !a.unset {
        if let Ok(s) = settings(g) {
            out.result(&format!("Version URL: {}", s.version_url));
            out.result(&format!("Content URL: {}", s.content_url));
        }
    }
    Ok(0)
}
