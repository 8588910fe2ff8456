//! Signing the MoM, `latest` and `latest_version`: detached DER PKCS#7 next to each file,
//! or, with `--no-sign`, nothing but a note on how to sign by hand.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chainup::signature::Signer;

use crate::webroot::{remove_if_exists, sig_path, write_atomic};

/// Where signing keys come from, as given on the command line.
#[derive(Debug, Clone)]
pub enum SignWith {
    /// Certificate, key and optional intermediates (PEM).
    Key {
        cert: PathBuf,
        key: PathBuf,
        chain: Option<PathBuf>,
    },
    /// `--no-sign`: lab content without signatures.
    Nothing,
}

/// Signs files, or records which ones were left unsigned.
pub struct Signing {
    signer: Option<Signer>,
    unsigned: Vec<PathBuf>,
}

impl Signing {
    /// Loads the key up front, so a bad key fails before anything is written.
    pub fn load(with: &SignWith) -> Result<Signing> {
        let signer = match with {
            SignWith::Key { cert, key, chain } => Some(
                Signer::load(cert, key, chain.as_deref())
                    .with_context(|| format!("loading signing certificate {}", cert.display()))?,
            ),
            SignWith::Nothing => None,
        };
        Ok(Signing {
            signer,
            unsigned: Vec::new(),
        })
    }

    /// Writes `<path>.sig` over `data` (the bytes about to be written at `path`); returns
    /// the bytes written. Unsigned, any stale `.sig` is removed instead, since it would not
    /// match the new content.
    pub fn sign_file(&mut self, path: &Path, data: &[u8]) -> Result<u64> {
        let sig = sig_path(path);
        match &self.signer {
            Some(signer) => {
                let der = signer
                    .sign(data)
                    .with_context(|| format!("signing {}", path.display()))?;
                write_atomic(&sig, &der)
            }
            None => {
                remove_if_exists(&sig)?;
                self.unsigned.push(path.to_path_buf());
                Ok(0)
            }
        }
    }

    /// With `--no-sign`: the commands that sign what was left unsigned.
    pub fn note(&self) -> Option<String> {
        if self.unsigned.is_empty() {
            return None;
        }
        let mut note = String::from("not signed (--no-sign); to sign, run:\n");
        for p in &self.unsigned {
            let p = p.display();
            note.push_str(&format!(
                "  openssl smime -sign -binary -in {p} -signer CERT.pem -inkey KEY.pem \
                 -outform DER -out {p}.sig\n"
            ));
        }
        Some(note)
    }
}
