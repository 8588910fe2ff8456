//! The command line, with swupd's names and short flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::swupd_compat::{parse_assume, Requested};
use crate::format::Format;

/// chainup: verified, swupd-compatible OS updates with A/B core images.
#[derive(Debug, Parser)]
#[command(
    name = "chainup",
    version,
    max_term_width = 100,
    // As swupd's getopt_long: `--stat` for `--statedir`, and the last of a repeated
    // option wins.
    infer_long_args = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes (they may come before or after it).
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Target root (default /)
    #[arg(short = 'p', long = "path", global = true, value_name = "ROOT")]
    pub path: Option<PathBuf>,
    /// Base URL for both version and content
    #[arg(short = 'u', long, global = true)]
    pub url: Option<String>,
    /// Base URL for content (MoM, manifests, fullfiles)
    #[arg(short = 'c', long, global = true)]
    pub contenturl: Option<String>,
    /// Base URL for version files (latest)
    #[arg(short = 'v', long, global = true)]
    pub versionurl: Option<String>,
    /// Port for every request, replacing the URLs' own (as swupd's -P)
    #[arg(short = 'P', long, global = true)]
    pub port: Option<u16>,
    /// Content format: a number or "staging"
    #[arg(short = 'F', long, global = true)]
    pub format: Option<Format>,
    /// State directory (default ROOT/var/lib/chainup)
    #[arg(short = 'S', long, global = true)]
    pub statedir: Option<PathBuf>,
    /// PEM trust store for MoM signatures
    #[arg(short = 'C', long, global = true)]
    pub certpath: Option<PathBuf>,
    /// PEM certificate revocation list
    #[arg(long, global = true)]
    pub crlpath: Option<PathBuf>,
    /// Extra PEM CA for the TLS server (system roots are trusted too)
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// Do not check signatures (lab builds only; hashes are still enforced)
    #[arg(short = 'n', long, global = true)]
    pub nosigcheck: bool,
    /// Read the `latest` version files without their signatures (the MoM is still checked)
    #[arg(long, global = true)]
    pub nosigcheck_latest: bool,
    /// Downloads at a time (default 15, at most 128)
    #[arg(short = 'W', long, global = true)]
    pub max_parallel_downloads: Option<usize>,
    /// Retries per download (default 3)
    #[arg(short = 'r', long, global = true)]
    pub max_retries: Option<u32>,
    /// Seconds before the first retry, doubling (default 10, at most 60)
    #[arg(short = 'd', long, global = true)]
    pub retry_delay: Option<u64>,
    /// Abort (and retry) a transfer slower than this many bytes per second over the
    /// window (default 1, as swupd; e.g. 10240 on fleets with good links)
    #[arg(long, global = true, value_name = "BYTES_PER_SEC")]
    pub min_rate: Option<u64>,
    /// Seconds over which --min-rate is measured (default 120, as swupd)
    #[arg(long, global = true, value_name = "SECS")]
    pub min_rate_window: Option<u64>,
    /// Accepted for swupd compatibility
    #[arg(short = 'I', long, global = true)]
    pub ignore_time: bool,
    /// Machine-readable JSON events on stdout
    #[arg(short = 'j', long, global = true)]
    pub json_output: bool,
    /// Allow plain http:// URLs
    #[arg(long, global = true)]
    pub allow_insecure_http: bool,
    /// Accept a MoM older than the highest version installed (lab use)
    #[arg(long, global = true)]
    pub allow_downgrade: bool,
    /// Refuse a MoM built more than DAYS ago (freeze defence)
    #[arg(long, global = true, value_name = "DAYS")]
    pub max_age: Option<u64>,
    /// Print only errors
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Print debugging detail
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Print all debugging detail, tracing included
    #[arg(long, global = true)]
    pub debug: bool,
    /// Print the time the command took
    #[arg(short = 't', long, global = true)]
    pub time: bool,
    /// Do not update the boot loader after an update
    #[arg(short = 'b', long, global = true)]
    pub no_boot_update: bool,
    /// Do not run post-update actions (ldconfig, systemd, boot manager, drop-ins)
    #[arg(short = 'N', long, global = true)]
    pub no_scripts: bool,
    /// Wait for the post-update scripts to finish
    #[arg(long, global = true)]
    pub wait_for_scripts: bool,
    /// Answer yes to every question (as --assume=yes)
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// Answer every question with yes or no, non-interactively
    #[arg(long, global = true, value_name = "yes|no", value_parser = parse_assume)]
    pub assume: Option<bool>,
    /// No progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Config file (default ROOT/etc/chainup/config.toml)
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Follow channel NAME: the version URL becomes CONTENTURL/channels/NAME
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        conflicts_with = "versionurl"
    )]
    pub channel: Option<String>,
    /// Another content URL serving the same webroot (repeatable)
    #[arg(long = "mirror", global = true, value_name = "URL")]
    pub mirrors: Vec<String>,
    /// update, check-update: take a version being rolled out before this machine's wave
    #[arg(long, global = true)]
    pub ignore_waves: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Update to the latest (or a given) version
    Update {
        /// Target version, or "latest" (-m/--manifest works too, as in swupd)
        #[arg(short = 'V', long = "version", short_alias = 'm', alias = "manifest")]
        version: Option<Requested>,
        /// Only download and verify, do not install
        #[arg(long)]
        download: bool,
        #[command(flatten)]
        swupd: super::swupd_compat::UpdateArgs,
    },
    /// Exit 0 if a newer version is available, 1 if not
    CheckUpdate,
    /// Install bundles
    BundleAdd {
        #[arg(required = true)]
        bundles: Vec<String>,
        /// Do not install the bundles' optional bundles (their `also-add`)
        #[arg(long)]
        skip_optional: bool,
    },
    /// Remove bundles
    BundleRemove {
        #[arg(required_unless_present = "orphans", conflicts_with = "orphans")]
        bundles: Vec<String>,
        #[command(flatten)]
        opts: super::swupd_compat::RemoveArgs,
    },
    /// List installed bundles
    BundleList(super::swupd_compat::ListArgs),
    /// Install a release into an empty root
    OsInstall {
        /// Version to install (default: latest; -m/--manifest works too)
        #[arg(short = 'V', long = "version", short_alias = 'm', alias = "manifest")]
        version: Option<Requested>,
        /// Bundles to install, comma-separated (os-core is always installed)
        #[arg(short = 'B', long, value_delimiter = ',')]
        bundles: Vec<String>,
        #[command(flatten)]
        swupd: super::swupd_compat::InstallArgs,
        /// The root to install into (as -p/--path; swupd's positional PATH)
        #[arg(value_name = "PATH")]
        root: Option<PathBuf>,
    },
    /// Check the root against the manifests of its installed bundles (exit 1 if anything is wrong)
    Diagnose(CheckArgs),
    /// Fix what diagnose finds, with content fetched through the verified chain
    Repair(CheckArgs),
    /// Legacy alias: diagnose, or repair with --fix
    Verify {
        /// Repair what is found
        #[arg(long)]
        fix: bool,
        #[command(flatten)]
        check: CheckArgs,
    },
    /// Print the swupd hash of a file
    Hashdump {
        /// Leave extended attributes out of the hash (`-n` works too, as in swupd)
        #[arg(long)]
        no_xattrs: bool,
        file: PathBuf,
    },
    /// Show versions, URLs and state
    Info,
    /// Accept the running A/B slot: drop the boot counter of its EFI entry
    MarkGood {
        /// Only tell whether there is anything to mark: exit 0 if the config has a
        /// [slots] table, 1 if not (the unit's ExecCondition)
        #[arg(long)]
        has_slots: bool,
    },
    /// Show a bundle's status, versions, size, dependencies and files
    BundleInfo(super::commands::BundleInfoArgs),
    /// Find the bundles, installed or not, that hold a matching file
    SearchFile(super::commands::SearchFileArgs),
    /// Remove cached manifests and staged content from the state directory
    Clean(super::commands::CleanArgs),
    /// Show, set or unset the mirror URLs (swupd's /etc/swupd/mirror_* files)
    Mirror(super::commands::MirrorArgs),
    /// Turn automatic updates (chainup-update.timer) on or off, or show whether they are on
    Autoupdate(super::commands::AutoupdateArgs),
    /// 3rd-party repositories under /opt/3rd-party: add, remove, list, bundle-add, update
    #[command(name = "3rd-party", subcommand)]
    ThirdParty(super::commands::ThirdParty),
    /// Print shell completions
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page, or write one per subcommand into DIR
    #[command(hide = true)]
    Man { dir: Option<PathBuf> },
}

impl Command {
    /// The subcommand's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Update { .. } => "update",
            Command::CheckUpdate => "check-update",
            Command::BundleAdd { .. } => "bundle-add",
            Command::BundleRemove { .. } => "bundle-remove",
            Command::BundleList(_) => "bundle-list",
            Command::OsInstall { .. } => "os-install",
            Command::Diagnose(_) => "diagnose",
            Command::Repair(_) => "repair",
            Command::Verify { .. } => "verify",
            Command::Hashdump { .. } => "hashdump",
            Command::Info => "info",
            Command::MarkGood { .. } => "mark-good",
            Command::BundleInfo(_) => "bundle-info",
            Command::SearchFile(_) => "search-file",
            Command::Clean(_) => "clean",
            Command::Mirror(_) => "mirror",
            Command::Autoupdate(_) => "autoupdate",
            Command::ThirdParty(_) => "3rd-party",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }
}

/// What diagnose, repair and verify check (swupd's short flags).
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Version to check against (default: the installed one; -m/--manifest works too)
    #[arg(short = 'V', long = "version", short_alias = 'm', alias = "manifest")]
    pub version: Option<Requested>,
    /// Only these installed bundles and what they include, comma-separated
    #[arg(short = 'B', long, value_delimiter = ',')]
    pub bundles: Vec<String>,
    /// Only this path: a file, or a directory and everything under it
    #[arg(long, value_name = "PATH")]
    pub file: Option<String>,
    /// Only look for missing entries (no hashing)
    #[arg(short = 'q', long, conflicts_with = "picky")]
    pub quick: bool,
    /// Also look for (repair: remove) entries under --picky-tree that no manifest lists
    #[arg(short = 'Y', long)]
    pub picky: bool,
    /// Like --picky, but only that: tracked entries are not checked
    #[arg(long, conflicts_with_all = ["picky", "quick", "bundles"])]
    pub extra_files_only: bool,
    /// Where --picky looks (default: the --file path if given, else /usr)
    #[arg(short = 'X', long, value_name = "PATH")]
    pub picky_tree: Option<String>,
    /// Path prefixes --picky leaves alone, comma-separated (plain prefixes, not regexes)
    #[arg(
        short = 'w',
        long,
        value_name = "PREFIXES",
        value_delimiter = ',',
        default_value = "/usr/lib/modules,/usr/lib/kernel,/usr/local,/usr/src"
    )]
    pub picky_whitelist: Vec<String>,
    /// Allow repairing to a version other than the installed one
    #[arg(short = 'x', long)]
    pub force: bool,
    /// diagnose: also check the running A/B slot's core image and its EFI binary
    #[arg(long)]
    pub images: bool,
}

impl CheckArgs {
    /// The library's options.
    pub fn options(&self) -> crate::diagnose::Options {
        crate::diagnose::Options {
            version: self.version.and_then(Requested::version),
            bundles: self.bundles.clone(),
            file: self.file.clone(),
            quick: self.quick,
            picky: self.picky || self.extra_files_only,
            extra_files_only: self.extra_files_only,
            // As swupd: --file is where --picky looks unless --picky-tree says otherwise.
            picky_tree: (self.picky_tree.as_ref().or(self.file.as_ref()))
                .map_or_else(|| crate::diagnose::DEFAULT_PICKY_TREE.into(), Clone::clone),
            picky_whitelist: self.picky_whitelist.clone(),
            force: self.force,
            images: self.images,
        }
    }
}
