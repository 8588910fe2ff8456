//! `autoupdate`: its options and what it says.

use std::path::Path;

use clap::Args;
use serde_json::json;

use crate::cli::output::Output;
use crate::cli::Global;
use crate::commands::autoupdate;
use crate::progress::{Event, Observer};
use crate::Result;

/// `autoupdate` (swupd's options; without one, the status).
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct AutoupdateArgs {
    /// Turn automatic updates on (unmask and enable chainup-update.timer)
    #[arg(long)]
    pub enable: bool,
    /// Turn automatic updates off (mask the timer and the service)
    #[arg(long)]
    pub disable: bool,
    /// Say whether automatic updates are on (exit 1 if not); the default
    #[arg(long)]
    pub status: bool,
}

/// `autoupdate`: 0 on, 1 off.
pub fn autoupdate(g: &Global, a: &AutoupdateArgs, out: &Output) -> Result<i32> {
    // A root of `/` is the running system.
    let root = g.path.as_deref().filter(|p| *p != Path::new("/"));
    if a.enable {
        out.result("Running systemctl to enable updates");
        autoupdate::enable(root)?;
        if root.is_some() {
            out.event(Event::Warning(format!(
                "with --path, {} is enabled but not started: that happens when the root boots",
                autoupdate::TIMER
            )));
        }
        return Ok(0);
    }
    if a.disable {
        out.event(Event::Warning(
            "disabling automatic updates may take you out of compliance with your IT policy".into(),
        ));
        out.result("Running systemctl to disable updates");
        autoupdate::disable(root)?;
        return Ok(0);
    }
    let (text, code) = match autoupdate::status(root)? {
        autoupdate::Status::Enabled => ("Enabled", 0),
        autoupdate::Status::Disabled => ("Disabled", 1),
        autoupdate::Status::EnabledNotRunning => ("Enabled, but the timer is not running", 1),
    };
    out.record(
        text,
        json!({"type": "autoupdate", "enabled": code == 0, "msg": text}),
    );
    Ok(code)
}
