//! `autoupdate --enable/--disable/--status`: turns chainup-update.timer on and off with
//! systemctl, as swupd does with its own timer (swupd's autoupdate.c): unmask and enable,
//! or mask. With a root other than `/` it works on that root's unit files
//! (`systemctl --root=ROOT`), where no timer can be started or stopped.

use std::path::Path;
use std::process::Command;

use crate::{Error, Result};

/// The units, as tools/systemd ships them.
pub const SERVICE: &str = "chainup-update.service";
pub const TIMER: &str = "chainup-update.timer";

/// What `--status` finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Timer enabled (and, on the running system, active).
    Enabled,
    /// Timer enabled but not running (running system only).
    EnabledNotRunning,
    /// Disabled or masked.
    Disabled,
}

/// systemctl against `root` (`None`: the running system).
struct Systemctl<'a> {
    root: Option<&'a Path>,
}

impl Systemctl<'_> {
    /// Runs `systemctl [--root ROOT] ARGS`; stdout and the exit code.
    fn run(&self, args: &[&str]) -> Result<(String, i32)> {
        let mut cmd = Command::new("systemctl");
        if let Some(root) = self.root {
            cmd.arg("--root").arg(root);
        }
        cmd.args(args);
        let out = cmd.output().map_err(|e| {
            Error::Subprocess(format!("cannot run systemctl: {e} (is systemd installed?)"))
        })?;
        let code = out.status.code().unwrap_or(-1);
        Ok((
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            code,
        ))
    }

    /// Runs a command that must succeed.
    fn must(&self, args: &[&str]) -> Result<()> {
        let (_, code) = self.run(args)?;
        match code {
            0 => Ok(()),
            _ => Err(Error::Subprocess(format!(
                "systemctl {} failed (exit {code})",
                args.join(" ")
            ))),
        }
    }
}

/// The running system needs a running systemd; a root given with `-p` does not.
fn systemctl(root: Option<&Path>) -> Result<Systemctl<'_>> {
    if root.is_none() && !Path::new("/run/systemd/system").is_dir() {
        return Err(Error::Subprocess(
            "systemd is not running - unable to proceed".into(),
        ));
    }
    Ok(Systemctl { root })
}

/// Unmasks both units and enables the timer (and starts it, on the running system).
pub fn enable(root: Option<&Path>) -> Result<()> {
    let s = systemctl(root)?;
    s.must(&["unmask", SERVICE, TIMER])?;
    match root {
        Some(_) => s.must(&["enable", TIMER]),
        None => s.must(&["enable", "--now", TIMER]),
    }
}

/// Masks both units (and stops them, on the running system).
pub fn disable(root: Option<&Path>) -> Result<()> {
    let s = systemctl(root)?;
    match root {
        Some(_) => s.must(&["mask", SERVICE, TIMER]),
        None => s.must(&["mask", "--now", SERVICE, TIMER]),
    }
}

/// Whether automatic updates are on.
pub fn status(root: Option<&Path>) -> Result<Status> {
    let s = systemctl(root)?;
    let (state, _) = s.run(&["is-enabled", TIMER])?;
    // systemctl prints the unit file state; nothing means it could not tell (no unit).
    let enabled = match state.as_str() {
        "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated" => true,
        "disabled" | "masked" | "masked-runtime" | "linked" | "linked-runtime" => false,
        other => {
            return Err(Error::Subprocess(format!(
                "unable to determine the autoupdate status: {TIMER} is {:?}",
                if other.is_empty() {
                    "not installed"
                } else {
                    other
                }
            )))
        }
    };
    if !enabled {
        return Ok(Status::Disabled);
    }
    if root.is_some() {
        return Ok(Status::Enabled);
    }
    let (_, active) = s.run(&["is-active", "--quiet", TIMER])?;
    Ok(match active {
        0 => Status::Enabled,
        _ => Status::EnabledNotRunning,
    })
}
