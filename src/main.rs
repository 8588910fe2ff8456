//! `chainup`: parse the command line, run it, exit with its code.

use clap::Parser;

/// swupd's exit code for an invalid option.
const EXIT_INVALID_OPTION: i32 = 15;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = match chainup::cli::Cli::try_parse() {
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
    std::process::exit(chainup::cli::run(cli));
}
