//! swupd's mirror check before an update. When the URLs come from swupd's mirror files
//! (`/etc/swupd/mirror_contenturl` and `mirror_versionurl`, written by `mirror --set`),
//! the mirror's signed `latest` is compared with the central server's (the
//! distribution's `contenturl` and `versionurl`): a mirror whose version cannot be told
//! (no `latest`, or one whose signature is missing or bad) or that is more than
//! [`UNSET_AFTER`] versions behind is passed over, and the update uses the central
//! server. Unlike swupd, which deletes the mirror files then, chainup leaves the
//! administrator's configuration alone and passes the mirror over for this run only.
//! Nothing here is trusted more than before: whichever server is used, the MoM it leads
//! to is verified as always.

use std::path::Path;

use super::output::Output;
use super::{urls, Global};
use crate::chain::{Chain, Signatures};
use crate::client::Settings;
use crate::config::Config;
use crate::signature::TrustStore;
use crate::source::{Source, SourceConfig};
use crate::swupd_config::{self as swupd, CONTENTURL, MIRROR_VERSIONURL, VERSIONURL};
use crate::Result;

/// Versions a mirror may lag before it is passed over (swupd's `MIRROR_STALE_UNSET`).
const UNSET_AFTER: u32 = 500;
/// Versions a mirror may lag before a warning (swupd's `MIRROR_STALE_WARN`).
const WARN_AFTER: u32 = 20;

/// Points `settings` at the central server when its URLs came from swupd's mirror files
/// and the mirror is unusable or stale; otherwise leaves them as they are.
pub(super) fn check(
    g: &Global,
    config: &Config,
    settings: &mut Settings,
    out: &Output,
) -> Result<()> {
    let Some(central) = central_urls(g, config, settings)? else {
        return Ok(());
    };
    out.result("Checking mirror status");
    let mirror = signed_latest(settings, &settings.version_url);
    let upstream = match signed_latest(settings, &central.1) {
        Ok(v) => v,
        Err(e) => {
            out.warning(&format!(
                "unable to determine if the mirror is up to date: {e}"
            ));
            return Ok(());
        }
    };
    match mirror {
        Ok(m) if upstream.saturating_sub(m) <= UNSET_AFTER => {
            if upstream.saturating_sub(m) > WARN_AFTER {
                out.warning(&format!(
                    "mirror version ({m}) is behind upstream version ({upstream})"
                ));
            }
            return Ok(());
        }
        Ok(m) => out.warning(&format!(
            "the mirror version ({m}) is too far behind upstream version ({upstream})"
        )),
        Err(e) => out.warning(&format!("the mirror version could not be determined: {e}")),
    }
    out.result(&format!(
        "Using the central server {} for this update (the mirror configuration is kept)",
        central.0
    ));
    let mirror = std::mem::replace(
        &mut settings.content_url,
        urls::with_port(central.0, g.port)?,
    );
    settings.version_url = urls::with_port(central.1, g.port)?;
    // Nor is the mirror a further content URL for this run (cli/mod.rs adds swupd's
    // mirror file as one).
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    settings.mirrors.retain(|m| !same(m, &mirror));
    Ok(())
}

/// The central content and version URLs, when the settings' URLs are the mirror's from
/// swupd's files: nothing on the command line or in chainup's config named a URL, no
/// channel is followed, and the root has a mirror file.
fn central_urls(
    g: &Global,
    config: &Config,
    settings: &Settings,
) -> Result<Option<(String, String)>> {
    let named = [&g.url, &g.contenturl, &g.versionurl]
        .into_iter()
        .chain([&config.url, &config.contenturl, &config.versionurl])
        .any(Option::is_some);
    let root = settings.root.as_path();
    if named || settings.channel.is_some() || swupd::read_value(root, MIRROR_VERSIONURL)?.is_none()
    {
        return Ok(None);
    }
    let central = |rel: &str| -> Result<Option<String>> {
        match swupd::read_value(root, rel)? {
            Some(url) => Ok(Some(url)),
            None if root != Path::new("/") => swupd::read_value(Path::new("/"), rel),
            None => Ok(None),
        }
    };
    let (Some(content), Some(version)) = (central(CONTENTURL)?, central(VERSIONURL)?) else {
        return Ok(None);
    };
    Ok(Some((content, version)))
}

/// The version the signed `latest` at `version_url` names, checked as an update checks it.
/// Asked once, without retries: a central server out of reach (the reason many sites run
/// a mirror) must not hold up every update by the retry delays.
fn signed_latest(settings: &Settings, version_url: &str) -> Result<u32> {
    let signatures = match settings.nosigcheck {
        true => Signatures::Skip,
        false => Signatures::Verify(TrustStore::load(
            &settings.cert_path,
            settings.crl_path.as_deref(),
        )?),
    };
    let once = SourceConfig {
        retries: 0,
        ..settings.source.clone()
    };
    let source = || Source::new(version_url, &once);
    let mut chain = Chain::new(source()?, source()?, signatures, settings.format);
    if settings.unsigned_latest {
        chain = chain.unsigned_latest();
    }
    chain.latest()
}
