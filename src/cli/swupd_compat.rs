//! What makes `chainup` a drop-in for swupd 7's command line: its value forms
//! (`-V latest`, `--assume=no`), its subcommand options, and its INI configuration file
//! turned into options before the command line (which then wins, as in swupd).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{ArgAction, Args, CommandFactory, Parser};

use super::args::Cli;
use crate::config::CONFIG_PATH;
use crate::swupd_config::{self, IniOption};

/// A version on the command line: a number, or swupd's `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    Latest,
    Version(u32),
}

impl Requested {
    /// The version asked for; `None` for the server's latest.
    pub fn version(self) -> Option<u32> {
        match self {
            Requested::Latest => None,
            Requested::Version(v) => Some(v),
        }
    }
}

impl FromStr for Requested {
    type Err = String;

    fn from_str(s: &str) -> Result<Requested, String> {
        if s == "latest" {
            return Ok(Requested::Latest);
        }
        match s.parse::<u32>() {
            Ok(v) if v > 0 => Ok(Requested::Version(v)),
            _ => Err(format!(
                "invalid version {s:?}: a positive number or \"latest\""
            )),
        }
    }
}

/// `--assume=yes|no` (also `y`, `n`, in any case), as swupd's `set_assume_option`.
pub fn parse_assume(s: &str) -> Result<bool, String> {
    match s.to_lowercase().as_str() {
        "y" | "yes" => Ok(true),
        "n" | "no" => Ok(false),
        _ => Err("choose either 'yes' or 'no'".into()),
    }
}

impl super::Global {
    /// The answer to give every question: `--assume`, else `-y` (yes), else none (ask).
    pub fn assume(&self) -> Option<bool> {
        self.assume.or(self.yes.then_some(true))
    }
}

/// diagnose's, repair's and verify's options, refused as swupd refuses them: `-V latest`
/// for diagnose and repair (they check against a version named, or the installed one),
/// `--bundles` with `--picky` for diagnose. verify (chainup's legacy alias) reads
/// `-V latest` as the server's latest version.
pub fn check_options(
    client: &crate::client::Client,
    command: &super::args::Command,
    args: &super::args::CheckArgs,
) -> crate::Result<crate::diagnose::Options> {
    use super::args::Command;
    let usage = |msg: &str| Err(crate::Error::Usage(msg.into()));
    if args.version == Some(Requested::Latest) && !matches!(command, Command::Verify { .. }) {
        return usage("'latest' is not supported for --version of diagnose and repair");
    }
    if matches!(command, Command::Diagnose(_)) && args.picky && !args.bundles.is_empty() {
        return usage("--bundles and --picky options are mutually exclusive");
    }
    let mut opts = args.options();
    if args.version == Some(Requested::Latest) {
        opts.version = Some(client.chain().latest()?);
    }
    Ok(opts)
}

/// swupd's `update` options beyond chainup's own.
#[derive(Debug, Clone, Default, Args)]
pub struct UpdateArgs {
    /// Show the current version and the server's latest (as check-update)
    #[arg(short = 's', long)]
    pub status: bool,
    /// Keep the downloaded content in the state directory after updating
    #[arg(short = 'k', long)]
    pub keepcache: bool,
    /// Also download and verify every bundle manifest of the new version (search-file's
    /// index)
    #[arg(long)]
    pub update_search_file_index: bool,
    /// Also update (with --status: check) every 3rd-party repository, after the system
    #[arg(long = "3rd-party")]
    pub third_party: bool,
    /// Step through each version the server's `latest` file lists, one at a time
    #[arg(long)]
    pub incremental: bool,
}

/// swupd's `bundle-remove` options.
#[derive(Debug, Clone, Default, Args)]
pub struct RemoveArgs {
    /// Also remove every installed bundle that requires these
    #[arg(short = 'x', long)]
    pub force: bool,
    /// Also remove the dependencies nothing else needs any more
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Remove every orphaned bundle (installed as a dependency, needed by none)
    #[arg(long, conflicts_with_all = ["force", "recursive"])]
    pub orphans: bool,
}

/// swupd's `bundle-list` options.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// List every bundle of the current version
    #[arg(short = 'a', long)]
    pub all: bool,
    /// List the bundles BUNDLE includes, directly or not (optional ones too)
    #[arg(long, value_name = "BUNDLE", conflicts_with = "has_dep")]
    pub deps: Option<String>,
    /// List the installed (with --all: all) bundles that include BUNDLE
    #[arg(short = 'D', long, value_name = "BUNDLE")]
    pub has_dep: Option<String>,
    /// Show whether each bundle is installed, and installed explicitly
    #[arg(long, conflicts_with_all = ["deps", "has_dep"])]
    pub status: bool,
    /// List orphaned bundles (installed as a dependency, needed by none)
    #[arg(long, conflicts_with_all = ["all", "deps", "has_dep"])]
    pub orphans: bool,
}

/// swupd's `os-install` options beyond chainup's own.
#[derive(Debug, Clone, Default, Args)]
pub struct InstallArgs {
    /// Skip -B bundles the version does not have (with a warning) instead of failing
    #[arg(short = 'x', long)]
    pub force: bool,
    /// Another state directory whose staged content is used before downloading
    #[arg(short = 's', long, value_name = "PATH")]
    pub statedir_cache: Option<PathBuf>,
    /// Only download and verify, do not install
    #[arg(long)]
    pub download: bool,
    /// Do not install optional bundles (their `also-add`)
    #[arg(long)]
    pub skip_optional: bool,
}

/// The command line with swupd's INI options for its subcommand put in front of the
/// user's own (so those win, as swupd's getopt pass after its config pass), and
/// warnings about INI keys that name no option of the subcommand. A key that chainup's
/// TOML config also sets is left out: the TOML takes precedence over swupd's file. A
/// command line that does not parse is returned as it is, for clap to report.
pub fn with_swupd_config(args: Vec<OsString>) -> (Vec<OsString>, Vec<String>) {
    let Ok(cli) = Cli::try_parse_from(&args) else {
        return (args, Vec::new());
    };
    let root = root_of(&cli);
    let name = cli.command.name();
    let options = match swupd_config::ini_options(&root, name) {
        Ok(o) => o,
        Err(e) => return (args, vec![format!("swupd config not read: {e}")]),
    };
    if options.is_empty() {
        return (args, Vec::new());
    }
    let toml_keys = toml_keys(&cli, &root);
    let mut warnings = Vec::new();
    let mut tokens = Vec::new();
    let command = Cli::command();
    let sub = command.find_subcommand(name);
    for opt in options {
        if toml_keys.contains(&opt.key) {
            continue;
        }
        let arg = sub
            .into_iter()
            .flat_map(|s| s.get_arguments())
            .chain(command.get_arguments())
            .find(|a| a.get_long() == Some(opt.key.as_str()));
        match arg {
            Some(arg) if matches!(arg.get_action(), ArgAction::SetTrue) => {
                if swupd_config::truthy(&opt.value) {
                    tokens.push(OsString::from(format!("--{}", opt.key)));
                }
            }
            Some(_) => tokens.push(OsString::from(format!("--{}={}", opt.key, opt.value))),
            None => warnings.push(unrecognized(&opt)),
        }
    }
    // The options go right after the subcommand: global ones are accepted there too,
    // and the `--key=value` form cannot swallow the user's next word.
    let at = args
        .iter()
        .skip(1)
        .position(|a| a == name)
        .map_or(args.len(), |i| i + 2);
    let mut out = args[..at].to_vec();
    out.extend(tokens);
    out.extend_from_slice(&args[at..]);
    (out, warnings)
}

fn unrecognized(opt: &IniOption) -> String {
    format!(
        "unrecognized option {}={} in section [{}] of {}",
        opt.key,
        opt.value,
        opt.section,
        opt.file.display()
    )
}

/// The target root the command line names.
fn root_of(cli: &Cli) -> PathBuf {
    if let super::Command::OsInstall {
        root: Some(root), ..
    } = &cli.command
    {
        return root.clone();
    }
    cli.global
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The top-level keys chainup's TOML config sets (none when it is missing or broken:
/// loading it later reports that).
fn toml_keys(cli: &Cli, root: &Path) -> Vec<String> {
    let path = cli
        .global
        .config
        .clone()
        .unwrap_or_else(|| root.join(CONFIG_PATH));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_and_numbers() {
        assert_eq!("latest".parse(), Ok(Requested::Latest));
        assert_eq!("10".parse(), Ok(Requested::Version(10)));
        assert!("0".parse::<Requested>().is_err());
        assert!("newest".parse::<Requested>().is_err());
        assert_eq!(parse_assume("NO"), Ok(false));
        assert_eq!(parse_assume("y"), Ok(true));
        assert!(parse_assume("maybe").is_err());
        let cli = Cli::try_parse_from(["swupd", "info", "-y"]).unwrap();
        assert_eq!(cli.global.assume(), Some(true));
        let cli = Cli::try_parse_from(["swupd", "info", "-y", "--assume=no"]).unwrap();
        assert_eq!(cli.global.assume(), Some(false));
        let cli = Cli::try_parse_from(["swupd", "info"]).unwrap();
        assert_eq!(cli.global.assume(), None);
    }

    #[test]
    fn repeated_options_and_prefixes_parse_as_getopt() {
        let cli = Cli::try_parse_from([
            "swupd", "update", "-V", "10", "--manif", "latest", "--keepc", "-F", "3", "-F",
            "staging", "--stated", "/s", "-m", "20",
        ])
        .unwrap();
        let super::super::Command::Update { version, swupd, .. } = cli.command else {
            panic!("not update");
        };
        assert_eq!(version, Some(Requested::Version(20)));
        assert!(swupd.keepcache);
        assert_eq!(cli.global.format, Some(crate::format::Format::Staging));
        assert_eq!(cli.global.statedir, Some(PathBuf::from("/s")));
        // `--ver` could be --version or --verbose.
        assert!(Cli::try_parse_from(["swupd", "update", "--ver", "1"]).is_err());
    }

    #[test]
    fn ini_options_go_after_the_subcommand_and_lose_to_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc/swupd");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("config"),
            "[GLOBAL]\nmax_retries=4\nquiet=true\nnosuch=1\n[bundle-add]\nskip_optional=true\n[update]\nkeepcache=true\n",
        )
        .unwrap();
        let root = dir.path().to_str().unwrap();
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let (got, warnings) =
            with_swupd_config(args(&["swupd", "-p", root, "bundle-add", "-r", "2", "b"]));
        assert_eq!(
            got,
            args(&[
                "swupd",
                "-p",
                root,
                "bundle-add",
                "--max-retries=4",
                "--quiet",
                "--skip-optional",
                "-r",
                "2",
                "b"
            ])
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let cli = Cli::try_parse_from(&got).unwrap();
        assert_eq!(cli.global.max_retries, Some(2));
    }
}
