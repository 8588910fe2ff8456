//! Man pages: `chainup(1)` and one `chainup-<command>(1)` per subcommand, generated from
//! the clap definition, plus the sections clap cannot know (EXIT STATUS, FILES,
//! CONFIGURATION, EXAMPLES), each from one table here or in the module that owns the fact,
//! so that the pages stay true: the tests below hold the tables to the code.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use roff::{bold, italic, roman, Roff};

use super::{Cli, DEFAULT_CERT};
use crate::config::CONFIG_PATH;
use crate::error::EXIT_CODES;
use crate::{Error, Result};

/// What a subcommand's page says beyond its options.
struct Page {
    command: &'static str,
    /// What exit 1 means for this command, where it is not an error.
    exit_one: Option<&'static str>,
    /// Command lines (without the leading `chainup`) and what they do.
    examples: &'static [(&'static str, &'static str)],
}

/// Every visible subcommand, in the order of `chainup --help`.
const PAGES: &[Page] = &[
    Page {
        command: "update",
        exit_one: None,
        examples: &[
            ("update", "Update the root / to the latest version."),
            (
                "update -V 40 --path /mnt/root",
                "Update the root mounted at /mnt/root to version 40.",
            ),
            (
                "update --download",
                "Download and verify the next version without installing it.",
            ),
        ],
    },
    Page {
        command: "check-update",
        exit_one: Some("no newer version is available"),
        examples: &[(
            "check-update --url https://updates.example.com",
            "Tell whether the server offers a newer version.",
        )],
    },
    Page {
        command: "bundle-add",
        exit_one: None,
        examples: &[("bundle-add editors devtools", "Install two bundles and what they include.")],
    },
    Page {
        command: "bundle-remove",
        exit_one: None,
        examples: &[(
            "bundle-remove editors",
            "Remove a bundle, keeping files other installed bundles own.",
        )],
    },
    Page {
        command: "bundle-list",
        exit_one: None,
        examples: &[
            ("bundle-list", "List the installed bundles."),
            ("bundle-list --all", "List every bundle of the installed version."),
        ],
    },
    Page {
        command: "os-install",
        exit_one: None,
        examples: &[(
            "os-install --path /mnt/new -V 30 -B editors",
            "Install version 30 with os-core and editors into the empty root /mnt/new.",
        )],
    },
    Page {
        command: "diagnose",
        exit_one: Some("problems were found"),
        examples: &[
            ("diagnose", "Check every installed file of / against the verified manifests."),
            (
                "diagnose --picky --images",
                "Also list files under /usr that no manifest lists, and check the running A/B slot.",
            ),
        ],
    },
    Page {
        command: "repair",
        exit_one: Some("problems are left after the repair"),
        examples: &[
            ("repair", "Fix what diagnose finds, with verified content."),
            ("repair --picky", "Also remove files under /usr that no manifest lists."),
        ],
    },
    Page {
        command: "verify",
        exit_one: Some("problems were found (or, with --fix, are left)"),
        examples: &[("verify --fix", "The legacy spelling of repair.")],
    },
    Page {
        command: "hashdump",
        exit_one: None,
        examples: &[(
            "hashdump --path /mnt/root /usr/bin/hello",
            "Print the swupd hash of /mnt/root/usr/bin/hello.",
        )],
    },
    Page {
        command: "info",
        exit_one: None,
        examples: &[("info", "Show the installed version, the URLs, the state and the bundles.")],
    },
    Page {
        command: "mark-good",
        exit_one: Some(
            "with --has-slots: the config has no [slots] table (and 255: the config cannot be read)",
        ),
        examples: &[
            (
                "mark-good",
                "Accept the running A/B boot entry once the boot is known good (a no-op without slots).",
            ),
            ("mark-good --has-slots", "Tell whether there are A/B slots to mark."),
        ],
    },
    Page {
        command: "bundle-info",
        exit_one: None,
        examples: &[(
            "bundle-info editors --dependencies --files",
            "Show a bundle's status, what it includes and the files it holds.",
        )],
    },
    Page {
        command: "search-file",
        exit_one: Some("nothing matched"),
        examples: &[(
            "search-file --binary gcc",
            "Find the bundles, installed or not, that hold a program named gcc.",
        )],
    },
    Page {
        command: "clean",
        exit_one: None,
        examples: &[(
            "clean --all --dry-run",
            "List what cleaning the whole cache would remove, removing nothing.",
        )],
    },
    Page {
        command: "mirror",
        exit_one: None,
        examples: &[(
            "mirror --set https://mirror.example.com/update",
            "Take content and versions from a mirror (swupd's mirror files).",
        )],
    },
    Page {
        command: "autoupdate",
        exit_one: Some("automatic updates are disabled (--status)"),
        examples: &[("autoupdate --disable", "Stop automatic updates (masks the timer).")],
    },
    Page {
        command: "3rd-party",
        exit_one: None,
        examples: &[(
            "3rd-party add myrepo https://repo.example.com/update -C myrepo.pem",
            "Add a repository pinned to its own certificate and install its os-core.",
        )],
    },
];

/// The files chainup reads and writes, relative to the target root (`--path`) where
/// they live in it.
fn files() -> Vec<(String, &'static str)> {
    vec![
        (
            format!("ROOT/{CONFIG_PATH}"),
            "The configuration file (--config names another one); see CONFIGURATION.",
        ),
        (
            DEFAULT_CERT.to_string(),
            "The trust store: the root certificates a Manifest.MoM signature must chain to (--certpath).",
        ),
        (
            "ROOT/var/lib/chainup".to_string(),
            "The state directory (--statedir): lock, journal, staged content, the highest version installed.",
        ),
        (
            format!("ROOT/{}", crate::version::OS_RELEASE[0]),
            "The installed version (VERSION_ID), also read from ROOT/etc/os-release.",
        ),
        (
            "ROOT/usr/share/defaults/swupd/format".to_string(),
            "The content format when neither --format nor the config names one.",
        ),
        (
            format!("ROOT/{}", crate::client::BUNDLES_DIR),
            "One marker file per installed bundle.",
        ),
        (
            crate::slots::DEFAULT_CMDLINE.to_string(),
            "With [slots]: the kernel command line that names the running slot.",
        ),
    ]
}

/// The config keys and what they set; a test holds this list to `config::Config`.
const CONFIG_KEYS: &[(&str, &str)] = &[
    ("url", "Base URL for both version and content (--url)."),
    ("contenturl", "Base URL for content (--contenturl)."),
    ("versionurl", "Base URL for version files (--versionurl)."),
    ("format", "Content format number (--format)."),
    ("statedir", "State directory (--statedir)."),
    ("certpath", "PEM trust store for MoM signatures (--certpath)."),
    ("crlpath", "PEM certificate revocation list (--crlpath)."),
    ("cacert", "Extra PEM CA for the TLS server (--cacert)."),
    ("nosigcheck", "true: do not check signatures (lab builds only)."),
    ("max-parallel-downloads", "Downloads at a time (--max-parallel-downloads)."),
    ("max-retries", "Retries per download (--max-retries)."),
    ("retry-delay", "Seconds before the first retry (--retry-delay)."),
    ("min-rate", "Slowest accepted transfer, bytes per second (--min-rate)."),
    ("min-rate-window", "Seconds over which min-rate is measured (--min-rate-window)."),
    ("allow-insecure-http", "true: allow plain http:// URLs."),
    ("max-age", "Refuse a MoM built more than this many days ago (--max-age)."),
    ("channel", "The channel to follow (--channel)."),
    ("mirrors", "A list of further content URLs serving the same webroot (--mirror)."),
    (
        "slots",
        "The [slots] table: product, core_a, core_b, esp, cmdline, mountinfo, chunks (the A/B core image install).",
    ),
    (
        "post-update-timeout",
        "Seconds each post-update action may run before it is killed (default 300).",
    ),
];

/// Writes `chainup.1` and `chainup-<command>.1` for every visible subcommand into `dir`.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    for (name, text) in pages()? {
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the top page, `chainup(1)`, to `w`.
pub fn write_main(w: &mut dyn Write) -> Result<()> {
    let (_, text) = pages()?.swap_remove(0);
    w.write_all(text.as_bytes())
        .map_err(|e| Error::io("stdout", e))
}

/// Every page as (name, roff text), `chainup` first.
fn pages() -> Result<Vec<(String, String)>> {
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    let mut out = vec![("chainup".to_string(), render(&top, None)?)];
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = PAGES.iter().find(|p| p.command == sub.get_name());
        let name = format!("chainup-{}", sub.get_name());
        // Subcommands carry no version of their own; their pages show the program's.
        let sub = sub.clone().version(env!("CARGO_PKG_VERSION"));
        out.push((name, render(&sub, page)?));
    }
    Ok(out)
}

/// One page: clap's sections, then ours, then clap's version.
fn render(cmd: &clap::Command, page: Option<&Page>) -> Result<String> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    let top = page.is_none();
    let clap_part = (|| {
        man.render_title(&mut buf)?;
        man.render_name_section(&mut buf)?;
        man.render_synopsis_section(&mut buf)?;
        man.render_description_section(&mut buf)?;
        man.render_options_section(&mut buf)?;
        if top {
            man.render_subcommands_section(&mut buf)?;
        }
        Ok::<_, std::io::Error>(())
    })();
    clap_part.map_err(|e| Error::io("man page", e))?;
    buf.extend(ours(page).render().into_bytes());
    man.render_version_section(&mut buf)
        .map_err(|e| Error::io("man page", e))?;
    Ok(String::from_utf8(buf).expect("roff output is UTF-8"))
}

/// EXIT STATUS, FILES, CONFIGURATION, EXAMPLES and SEE ALSO.
fn ours(page: Option<&Page>) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    let exit_one = page.and_then(|p| p.exit_one);
    for &(code, meaning) in EXIT_CODES {
        let meaning = match (code, exit_one) {
            (1, Some(this)) => this,
            (1, None) if page.is_some() => continue,
            _ => meaning,
        };
        r.control("TP", [])
            .text([bold(code.to_string())])
            .text([roman(meaning)]);
    }
    r.control("SH", ["FILES"]);
    for (path, what) in files() {
        r.control("TP", []).text([italic(path)]).text([roman(what)]);
    }
    r.control("SH", ["CONFIGURATION"]);
    r.text([roman(format!(
        "TOML at ROOT/{CONFIG_PATH} (or --config FILE). The keys are the long option names; \
         unknown keys are refused; an option on the command line wins over the file."
    ))]);
    for &(key, what) in CONFIG_KEYS {
        r.control("TP", []).text([bold(key)]).text([roman(what)]);
    }
    r.control("SH", ["EXAMPLES"]);
    let examples: Vec<_> = match page {
        Some(p) => p.examples.iter().collect(),
        // The top page shows the first example of every command.
        None => PAGES.iter().filter_map(|p| p.examples.first()).collect(),
    };
    for (line, what) in examples {
        r.control("TP", [])
            .text([bold(format!("chainup {line}"))])
            .text([roman(*what)]);
    }
    r.control("SH", ["SEE ALSO"]);
    let see: Vec<String> = match page {
        Some(_) => vec!["chainup(1)".into()],
        None => PAGES
            .iter()
            .map(|p| format!("chainup-{}(1)", p.command))
            .collect(),
    };
    r.text([roman(see.join(", "))]);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn every_visible_subcommand_has_a_page_and_every_page_a_subcommand() {
        let cmd = Cli::command();
        let visible: Vec<&str> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name())
            .collect();
        let pages: Vec<&str> = PAGES.iter().map(|p| p.command).collect();
        assert_eq!(visible, pages);
    }

    #[test]
    fn every_example_parses() {
        for page in PAGES {
            assert!(!page.examples.is_empty(), "{} has no example", page.command);
            for (line, _) in page.examples {
                let args = std::iter::once("chainup").chain(line.split_whitespace());
                let cli = Cli::try_parse_from(args)
                    .unwrap_or_else(|e| panic!("example `chainup {line}`: {e}"));
                assert_eq!(cli.command.name(), page.command, "example `chainup {line}`");
            }
        }
    }

    #[test]
    fn config_keys_are_the_config_fields() {
        let documented: Vec<&str> = CONFIG_KEYS.iter().map(|(k, _)| *k).collect();
        assert_eq!(documented, config_fields());
    }

    /// The keys `config::Config` accepts, as serde names them.
    fn config_fields() -> Vec<&'static str> {
        use serde::de::{self, Deserialize, Visitor};
        struct Capture(Vec<&'static str>);
        impl<'de> de::Deserializer<'de> for &mut Capture {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                self.0 = fields.to_vec();
                Err(de::Error::custom("captured"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char str string bytes byte_buf
                option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut capture = Capture(Vec::new());
        let _ = crate::config::Config::deserialize(&mut capture);
        capture.0
    }

    #[test]
    fn every_subcommand_has_a_page() {
        // The sections of each page are checked on the installed pages (tests/packaging.rs).
        let pages = pages().unwrap();
        assert_eq!(pages.len(), PAGES.len() + 1);
        assert!(pages
            .iter()
            .all(|(_, text)| text.contains(".SH EXAMPLES\n")));
    }
}
