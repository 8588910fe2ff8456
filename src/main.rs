//! `chainup`: parse the command line, run it, exit with its code.

use clap::Parser;

/// swupd's exit code for an invalid option.
const EXIT_INVALID_OPTION: i32 = 15;

fn main() {
    // Reads FAILPOINTS in test builds (src/failpoint.rs); absent from release builds.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    raise_open_file_limit();
    // swupd's INI config supplies options before the command line's own.
    let (args, config_warnings) =
        chainup::cli::swupd_compat::with_swupd_config(std::env::args_os().collect());
    let cli = match chainup::cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                EXIT_INVALID_OPTION
            } else {
                0
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let level = match (cli.global.debug, cli.global.verbose, cli.global.quiet) {
        (true, _, _) => "trace",
        (false, true, _) => "debug",
        (false, false, true) => "error",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
    for w in config_warnings {
        log::warn!("{w}");
    }
    std::process::exit(chainup::cli::run(cli));
}

/// The installer keeps a staged file open from its check to its last placement; a release
/// with many repeated contents can need more descriptors than the usual soft limit of 1024.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
