//! chainup-publish: release trees -> signed, swupd-compatible webroot.

mod chunker;
mod delta;
mod diff;
mod fullfile;
mod man;
mod pack;
mod previous;
mod promote;
mod publish;
mod release;
mod sign;
mod tree;
mod webroot;

use std::path::PathBuf;
use std::process::ExitCode;

use chainup::manifest::EntryType;
use clap::{ArgGroup, Parser};

use crate::fullfile::Compression;
use crate::release::ImageSpec;
use crate::sign::SignWith;

/// Publishes one release as swupd content: per-bundle manifests, a signed
/// Manifest.MoM, fullfiles for what changed since the previous release, and the signed
/// version/format<F>/latest and version/latest_version pointers (written last).
///
/// Exit status: 0 on success, 1 on any failure, 2 on a usage error.
#[derive(Debug, Parser)]
#[command(
    name = "chainup-publish",
    disable_version_flag = true,
    after_long_help = "Writes W/<V>/{Manifest.MoM,Manifest.MoM.sig,Manifest.<bundle>,format}, \
        the .tar form of each manifest, W/<V>/files/<hash>.tar, then \
        W/version/format<F>/latest and W/version/latest_version (each with .sig). \
        Set RUST_LOG=info for per-bundle notes.",
    group(ArgGroup::new("signing").required(true).args(["cert", "no_sign"])),
)]
struct Args {
    /// Webroot to publish into (the swupd server layout; created if missing).
    #[arg(long, value_name = "W")]
    webroot: PathBuf,

    /// Version to publish; must be newer than the previous and the latest version.
    #[arg(long, value_name = "V")]
    version: u32,

    /// Directory holding one root tree per bundle: TREES/<bundle>/...
    #[arg(long, value_name = "T")]
    trees: PathBuf,

    /// Bundle definitions: [bundles.<name>] with optional includes = [...] and
    /// also-add = [...].
    #[arg(long, value_name = "B.toml")]
    bundles: PathBuf,

    /// Manifest format number.
    #[arg(long, value_name = "F", default_value_t = 30)]
    format: u32,

    /// Previous version to diff against (read from the webroot); default: the version in
    /// W/version/format<F>/latest, if any.
    #[arg(long, value_name = "P")]
    previous: Option<u32>,

    /// Build time in Unix seconds, recorded in manifests and tar headers; default:
    /// $SOURCE_DATE_EPOCH, else now. Same inputs and timestamp give the same bytes.
    #[arg(long, value_name = "SECS", env = "SOURCE_DATE_EPOCH")]
    timestamp: Option<u64>,

    /// Signing certificate (PEM).
    #[arg(long, value_name = "C", requires = "key")]
    cert: Option<PathBuf>,

    /// Private key of the signing certificate (PEM, unencrypted).
    #[arg(long, value_name = "K", requires = "cert")]
    key: Option<PathBuf>,

    /// Intermediate certificates to embed in signatures (PEM).
    #[arg(long, value_name = "I", requires = "cert")]
    chain: Option<PathBuf>,

    /// Publish without signatures (prints how to sign afterwards).
    #[arg(long, conflicts_with_all = ["cert", "key", "chain"])]
    no_sign: bool,

    /// Image payload: BUNDLE:core=PATH (core image for the inactive A/B slot) or
    /// BUNDLE:efiboot=PATH (EFI binary for the ESP). Repeatable.
    #[arg(long, value_name = "BUNDLE:KIND=PATH")]
    image: Vec<ImageSpec>,

    /// Publish core images only as fullfiles, without the chunk index `/core.index` and
    /// its chunks (chainup clients older than chunked updates refuse a manifest with it).
    #[arg(long)]
    no_image_chunks: bool,

    /// Compression of file fullfiles (directories and symlinks are always gzip, unless none).
    #[arg(long, value_enum, default_value_t = Compression::Zstd)]
    compression: Compression,

    /// Write delta packs (pack-<bundle>-from-<old>.tar) from the bundle versions of this
    /// many earlier releases; 0 writes only zero packs.
    #[arg(long, value_name = "N", default_value_t = 3)]
    delta_packs: u32,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // `promote` is a subcommand of its own; without it the arguments publish a release,
    // as they always have.
    if std::env::args_os().nth(1).is_some_and(|a| a == "promote") {
        let args = promote::Args::parse_from(std::env::args_os().skip(1));
        return match promote::run(args) {
            Ok(summary) => {
                print!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chainup-publish promote: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // `man DIR`: this program's man pages, for tools/install.sh.
    if std::env::args_os().nth(1).is_some_and(|a| a == "man") {
        return man::write(std::env::args_os().nth(2));
    }
    // clap exits 2 on a usage error and 0 for --help.
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chainup-publish: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let sign = match (args.cert, args.key) {
        (Some(cert), Some(key)) => SignWith::Key {
            cert,
            key,
            chain: args.chain,
        },
        _ => SignWith::Nothing,
    };
    let timestamp = match args.timestamp {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    };
    let summary = publish::run(&publish::Options {
        webroot: args.webroot,
        version: args.version,
        format: args.format,
        trees: args.trees,
        bundles: args.bundles,
        previous: args.previous,
        timestamp,
        sign,
        images: args.image,
        compression: args.compression,
        chunks: !args.no_image_chunks,
        delta_packs: args.delta_packs,
    })?;
    for b in &summary.dropped {
        eprintln!("chainup-publish: warning: bundle {b:?} is no longer defined; it is left out of the Manifest.MoM");
    }
    for c in &summary.dir_type_changes {
        let now = if c.now == EntryType::Link {
            "a symlink"
        } else {
            "a file"
        };
        eprintln!(
            "chainup-publish: warning: {} was a directory in version {} and is {now} in version {}: \
             clients must remove the directory to install it, and files under it that no manifest lists stand in the way",
            c.path, summary.previous, summary.version
        );
    }
    if let Some(note) = &summary.unsigned_note {
        eprint!("{note}");
    }
    print!("{summary}");
    Ok(())
}
