//! PKCS#7 trust store, verify, sign: swupd's `signature.c` semantics on the `openssl` crate.
//!
//! Verification is `PKCS7_verify` with flags 0 against an X509 store of purpose "any",
//! the trust certificates passed as the signer search list (as swupd does). Before it, the
//! signer's chain is verified on its own so that a refusal names the certificate and the
//! cause, and the Authority-Information-Access check swupd does is made explicit.

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};

use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::{Stack, StackRef};
use openssl::x509::store::{X509Lookup, X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{
    X509NameRef, X509PurposeId, X509Ref, X509StoreContext, X509StoreContextRef, X509,
};

use crate::error::IoContext;
use crate::{Error, Result};

/// `ERR_LIB_PKCS7` and reason codes from `<openssl/err.h>` / `<openssl/pkcs7err.h>`
/// (stable ABI values; openssl-sys does not export them).
const ERR_LIB_PKCS7: i32 = 33;
const PKCS7_R_DIGEST_FAILURE: i32 = 101;
const PKCS7_R_SIGNATURE_FAILURE: i32 = 105;
const PKCS7_R_SIGNER_CERTIFICATE_NOT_FOUND: i32 = 128;

/// The certificates a client trusts, as an OpenSSL store with purpose "any".
pub struct TrustStore {
    store: X509Store,
    /// Also the first place `PKCS7_verify` looks for the signer, so a root can sign with
    /// `-nocerts`.
    certs: Stack<X509>,
}

impl TrustStore {
    /// Loads a PEM file of CA certificates (and a PEM CRL file, which turns on CRL checks for the whole chain).
    ///
    /// Refuses an empty file, unparsable PEM, a trust certificate that is expired or not yet
    /// valid, or one with a critical Authority-Information-Access extension. With a CRL file,
    /// every certificate of a chain needs a current CRL from its issuer in that file.
    pub fn load(pem: &Path, crl: Option<&Path>) -> Result<TrustStore> {
        let refuse = |reason: String| Error::TrustStore {
            path: pem.to_path_buf(),
            reason,
        };
        let bytes = fs::read(pem).map_err(|e| refuse(format!("cannot read: {e}")))?;
        let certs = parse_certs(&bytes).map_err(refuse)?;
        for cert in &certs {
            refuse_critical_aia(cert).map_err(refuse)?;
        }
        let mut builder = store_builder(&certs).map_err(|e| refuse(openssl_reason(&e)))?;
        if let Some(crl) = crl {
            load_crls(&mut builder, crl).map_err(|reason| Error::TrustStore {
                path: crl.to_path_buf(),
                reason,
            })?;
        }
        let store = builder.build();
        // As swupd's signature_init: a trust certificate that does not verify by itself
        // (expired, not yet valid, revoked) makes the store unusable, so fail early.
        let none = Stack::new().map_err(|e| refuse(openssl_reason(&e)))?;
        for cert in &certs {
            verify_chain(&store, cert, &none)
                .map_err(|r| refuse(format!("trust certificate refused: {r}")))?;
        }
        let mut stack = Stack::new().map_err(|e| refuse(openssl_reason(&e)))?;
        for cert in certs {
            stack.push(cert).map_err(|e| refuse(openssl_reason(&e)))?;
        }
        Ok(TrustStore {
            store,
            certs: stack,
        })
    }

    /// Verifies a detached DER PKCS#7 signature over exactly `data`; `what` names the signed object in errors.
    pub fn verify(&self, what: &str, data: &[u8], sig_der: &[u8]) -> Result<()> {
        self.check(data, sig_der)
            .map_err(|reason| Error::Signature {
                what: what.to_owned(),
                reason,
            })
    }

    fn check(&self, data: &[u8], sig_der: &[u8]) -> Result<(), String> {
        if sig_der.is_empty() {
            return Err("the signature is empty".into());
        }
        let p7 = Pkcs7::from_der(sig_der).map_err(|_| "not a DER PKCS#7 structure".to_owned())?;
        let signed = p7
            .signed()
            .ok_or("not a PKCS#7 signedData structure (wrong content type)")?;
        let none = Stack::new().map_err(|e| openssl_reason(&e))?;
        let embedded: &StackRef<X509> = signed.certificates().unwrap_or(&none);
        // The chain OpenSSL builds is drawn only from these and the trust certificates
        // (checked at load), so this covers every certificate of it. Checked before the
        // chain so the refusal says "AIA", not OpenSSL's "unhandled critical extension".
        for cert in embedded {
            refuse_critical_aia(cert)?;
        }
        let signers = p7
            .signers(&self.certs, Pkcs7Flags::empty())
            .map_err(|e| describe_signer_lookup(&e))?;
        for signer in &signers {
            verify_chain(&self.store, signer, embedded)?;
        }
        p7.verify(
            &self.certs,
            &self.store,
            Some(data),
            None,
            Pkcs7Flags::empty(),
        )
        .map_err(|e| describe_pkcs7_failure(&e, &signers))
    }
}

/// A signing certificate and key, with the intermediates to embed in each signature.
pub struct Signer {
    cert: X509,
    key: PKey<Private>,
    chain: Stack<X509>,
    key_path: PathBuf,
}

impl Signer {
    /// Loads a signing certificate PEM, its unencrypted private key PEM, and an optional PEM file of intermediates.
    pub fn load(cert: &Path, key: &Path, chain: Option<&Path>) -> Result<Signer> {
        let refuse = |path: &Path, reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let cert_pem = fs::read(cert).at(cert)?;
        let signer_cert = X509::from_pem(&cert_pem).map_err(|e| {
            refuse(
                cert,
                format!("not a PEM certificate: {}", openssl_reason(&e)),
            )
        })?;
        check_validity(&signer_cert).map_err(|r| refuse(cert, r))?;
        let private = parse_private_key(&fs::read(key).at(key)?).map_err(|r| refuse(key, r))?;
        let public = signer_cert
            .public_key()
            .map_err(|e| refuse(cert, openssl_reason(&e)))?;
        if !public.public_eq(&private) {
            let reason = format!(
                "private key does not match the certificate ({})",
                subject(&signer_cert)
            );
            return Err(refuse(key, reason));
        }
        let mut stack = Stack::new().map_err(|e| refuse(cert, openssl_reason(&e)))?;
        if let Some(path) = chain {
            for extra in parse_certs(&fs::read(path).at(path)?).map_err(|r| refuse(path, r))? {
                check_validity(&extra).map_err(|r| refuse(path, r))?;
                stack
                    .push(extra)
                    .map_err(|e| refuse(path, openssl_reason(&e)))?;
            }
        }
        Ok(Signer {
            cert: signer_cert,
            key: private,
            chain: stack,
            key_path: key.to_path_buf(),
        })
    }

    /// Makes a detached DER PKCS#7 signature over exactly `data` (as `openssl smime -sign -binary -outform DER`).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        // BINARY: digest the raw bytes; without it OpenSSL would sign a CRLF-canonicalised
        // copy that no client verifies against the file as served.
        let flags = Pkcs7Flags::BINARY | Pkcs7Flags::DETACHED;
        Pkcs7::sign(&self.cert, &self.key, &self.chain, data, flags)
            .and_then(|p7| p7.to_der())
            .map_err(|e| Error::Config {
                path: self.key_path.clone(),
                reason: format!("signing failed: {}", openssl_reason(&e)),
            })
    }
}

/// Parses one or more PEM certificates, refusing a file that holds none.
fn parse_certs(bytes: &[u8]) -> Result<Vec<X509>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".into());
    }
    let certs = X509::stack_from_pem(bytes)
        .map_err(|e| format!("unparsable PEM: {}", openssl_reason(&e)))?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

/// The store swupd builds: the trust certificates, purpose "any".
fn store_builder(certs: &[X509]) -> Result<X509StoreBuilder, ErrorStack> {
    let mut builder = X509StoreBuilder::new()?;
    builder.set_purpose(X509PurposeId::ANY)?;
    for cert in certs {
        builder.add_cert(cert.clone())?;
    }
    Ok(builder)
}

/// Adds the CRLs of a PEM file and turns on CRL checks for every certificate of a chain.
fn load_crls(builder: &mut X509StoreBuilder, path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read CRL file: {e}"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the CRL file is empty".into());
    }
    // The lookup panics on a path that is not UTF-8; refuse it instead.
    let utf8 = path.to_str().ok_or("the CRL path is not valid UTF-8")?;
    let lookup = builder
        .add_lookup(X509Lookup::file())
        .map_err(|e| openssl_reason(&e))?;
    match lookup.load_crl_file(utf8, openssl::ssl::SslFiletype::PEM) {
        Ok(n) if n > 0 => {}
        Ok(_) => return Err("no PEM CRL in the file".into()),
        Err(e) if is_no_pem_start(&e) => return Err("no PEM CRL in the file".into()),
        Err(e) => return Err(format!("unparsable PEM CRL: {}", openssl_reason(&e))),
    }
    builder
        .set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL)
        .map_err(|e| openssl_reason(&e))
}

/// Verifies `cert`'s chain up to the store, with `untrusted` as candidate intermediates.
fn verify_chain(
    store: &X509Store,
    cert: &X509Ref,
    untrusted: &StackRef<X509>,
) -> Result<(), String> {
    let mut ctx = X509StoreContext::new().map_err(|e| openssl_reason(&e))?;
    ctx.init(store, cert, untrusted, |ctx| {
        Ok(if ctx.verify_cert()? {
            Ok(())
        } else {
            Err(describe_chain_error(ctx, cert))
        })
    })
    .map_err(|e| openssl_reason(&e))?
}

fn describe_chain_error(ctx: &X509StoreContextRef, leaf: &X509Ref) -> String {
    use openssl_sys as ffi;
    let err = ctx.error();
    let at = subject(ctx.current_cert().unwrap_or(leaf));
    match err.as_raw() {
        ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        | ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | ffi::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        | ffi::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN => {
            format!(
                "the chain does not end in the trust store: {} ({at})",
                err.error_string()
            )
        }
        _ => format!("{} ({at})", err.error_string()),
    }
}

fn describe_signer_lookup(e: &ErrorStack) -> String {
    if has_pkcs7_reason(e, PKCS7_R_SIGNER_CERTIFICATE_NOT_FOUND) {
        "signer certificate not found: it is neither embedded in the signature nor in the trust store".into()
    } else {
        format!("no usable signer: {}", openssl_reason(e))
    }
}

fn describe_pkcs7_failure(e: &ErrorStack, signers: &StackRef<X509>) -> String {
    if has_pkcs7_reason(e, PKCS7_R_DIGEST_FAILURE) {
        "content does not match the signature".into()
    } else if has_pkcs7_reason(e, PKCS7_R_SIGNATURE_FAILURE) {
        let who: Vec<String> = signers.iter().map(subject).collect();
        format!(
            "the signature value does not verify for this content and signer ({})",
            who.join("; ")
        )
    } else {
        format!("PKCS#7 verification failed: {}", openssl_reason(e))
    }
}

fn is_no_pem_start(e: &ErrorStack) -> bool {
    e.errors().iter().any(|err| {
        err.library_code() == openssl_sys::ERR_LIB_PEM
            && err.reason_code() == openssl_sys::PEM_R_NO_START_LINE
    })
}

fn has_pkcs7_reason(e: &ErrorStack, reason: i32) -> bool {
    e.errors()
        .iter()
        .any(|err| err.library_code() == ERR_LIB_PKCS7 && err.reason_code() == reason)
}

/// swupd's validate_authority: OCSP is not implemented, so a certificate that makes its
/// AIA (OCSP) extension critical cannot be honoured and is refused.
fn refuse_critical_aia(cert: &X509Ref) -> Result<(), String> {
    if has_critical_extension(cert, Nid::INFO_ACCESS) {
        Err(format!(
            "critical Authority Information Access (OCSP) extension is not supported ({})",
            subject(cert)
        ))
    } else {
        Ok(())
    }
}

fn has_critical_extension(cert: &X509Ref, nid: Nid) -> bool {
    use openssl_sys as ffi;
    // The safe API reads extension values but not their criticality. foreign-types (not a
    // direct dependency, so no `as_ptr`) guarantees a `&X509Ref` is the `X509*` itself.
    let x509 = cert as *const X509Ref as *const ffi::X509;
    let mut pos = -1;
    loop {
        // SAFETY: `x509` is valid for the borrow of `cert`; the extension returned is owned
        // by the certificate and only read before the borrow ends.
        unsafe {
            pos = ffi::X509_get_ext_by_NID(x509, nid.as_raw(), pos);
            if pos < 0 {
                return false;
            }
            let ext = ffi::X509_get_ext(x509, pos);
            if !ext.is_null() && ffi::X509_EXTENSION_get_critical(ext) > 0 {
                return true;
            }
        }
    }
}

/// Refuses a certificate outside its validity period (what a client would refuse).
fn check_validity(cert: &X509Ref) -> Result<(), String> {
    let now = openssl::asn1::Asn1Time::days_from_now(0).map_err(|e| openssl_reason(&e))?;
    if cert.not_after() < now {
        return Err(format!("certificate has expired ({})", subject(cert)));
    }
    if cert.not_before() > now {
        return Err(format!("certificate is not yet valid ({})", subject(cert)));
    }
    Ok(())
}

fn parse_private_key(pem: &[u8]) -> Result<PKey<Private>, String> {
    // A library must not prompt on the terminal, which OpenSSL's default callback does.
    let asked = Cell::new(false);
    let key = PKey::private_key_from_pem_callback(pem, |_| {
        asked.set(true);
        Ok(0)
    });
    key.map_err(|e| {
        if asked.get() {
            "the private key is encrypted; use an unencrypted key or sign outside chainup".into()
        } else {
            format!("not a PEM private key: {}", openssl_reason(&e))
        }
    })
}

/// "subject CN=..., O=..." in the order of the certificate's name.
fn subject(cert: &X509Ref) -> String {
    format!("subject {}", name_line(cert.subject_name()))
}

fn name_line(name: &X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_else(|_| "?".into());
            format!("{key}={value}")
        })
        .collect();
    parts.join(", ")
}

/// OpenSSL's reason strings, without the error-queue codes and file positions.
fn openssl_reason(e: &ErrorStack) -> String {
    let reasons: Vec<String> = e
        .errors()
        .iter()
        .map(|err| match (err.reason(), err.data()) {
            (Some(r), Some(d)) if !d.is_empty() => format!("{r} ({d})"),
            (Some(r), _) => r.to_owned(),
            (None, _) => err.to_string(),
        })
        .collect();
    if reasons.is_empty() {
        "unknown OpenSSL error".into()
    } else {
        reasons.join("; ")
    }
}

#[cfg(test)]
mod tests;
