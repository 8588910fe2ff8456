//! `chainup-publish man DIR`: the man pages of the publisher and of `promote`, generated
//! from their clap definitions (tools/install.sh installs them).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::CommandFactory;

/// Writes `chainup-publish.1` and `chainup-publish-promote.1` into `dir`.
pub fn write(dir: Option<OsString>) -> ExitCode {
    let Some(dir) = dir else {
        eprintln!("usage: chainup-publish man DIR");
        return ExitCode::from(2);
    };
    let pages = [
        crate::Args::command(),
        crate::promote::Args::command().name("chainup-publish-promote"),
    ];
    for page in pages {
        let man = clap_mangen::Man::new(page);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| man.generate_to(&dir)) {
            eprintln!("chainup-publish man: {}: {e}", man.get_filename());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
