//! In-process tests: certificates built with the openssl crate (EC P-256 for speed).
//! Signatures made by the openssl CLI are covered in tests/signature.rs.

use super::*;

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::extension::BasicConstraints;
use openssl::x509::{X509Extension, X509Name};
use tempfile::TempDir;

/// 2000-01-01 and 2001-01-01: fixed instants, so "expired" never depends on today.
const Y2000: i64 = 946_684_800;
const Y2001: i64 = 978_307_200;

/// DER of AuthorityInfoAccessSyntax with one OCSP URI, http://o.invalid/.
const AIA_OCSP_DER: &[u8] =
    b"\x30\x1f\x30\x1d\x06\x08\x2b\x06\x01\x05\x05\x07\x30\x01\x86\x11http://o.invalid/";

struct Cert {
    x509: X509,
    key: PKey<Private>,
}

#[derive(Clone, Copy)]
enum Validity {
    Current,
    Expired,
    Future,
}

#[derive(Clone, Copy, PartialEq)]
enum Aia {
    None,
    Plain,
    Critical,
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn times(validity: Validity) -> (Asn1Time, Asn1Time) {
    match validity {
        Validity::Current => (
            Asn1Time::from_unix(Y2000).unwrap(),
            Asn1Time::days_from_now(3650).unwrap(),
        ),
        Validity::Expired => (
            Asn1Time::from_unix(Y2000).unwrap(),
            Asn1Time::from_unix(Y2001).unwrap(),
        ),
        Validity::Future => (
            Asn1Time::days_from_now(3650).unwrap(),
            Asn1Time::days_from_now(7300).unwrap(),
        ),
    }
}

/// A CA certificate for `cn`, self-signed when `issuer` is None.
fn issue(cn: &str, issuer: Option<&Cert>, validity: Validity, aia: Aia) -> Cert {
    issue_with_key(cn, ec_key(), issuer, validity, aia)
}

fn issue_with_key(
    cn: &str,
    key: PKey<Private>,
    issuer: Option<&Cert>,
    validity: Validity,
    aia: Aia,
) -> Cert {
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    // Distinct serials per issuer: PKCS#7 finds the signer by issuer and serial.
    let serial = BigNum::from_u32(cn.bytes().map(u32::from).sum()).unwrap();
    b.set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&*name, |i| i.x509.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    let (from, to) = times(validity);
    b.set_not_before(&from).unwrap();
    b.set_not_after(&to).unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    if aia != Aia::None {
        let oid = Asn1Object::from_str("1.3.6.1.5.5.7.1.1").unwrap();
        let value = Asn1OctetString::new_from_bytes(AIA_OCSP_DER).unwrap();
        b.append_extension(
            X509Extension::new_from_der(&oid, aia == Aia::Critical, &value).unwrap(),
        )
        .unwrap();
    }
    b.sign(issuer.map_or(&key, |i| &i.key), MessageDigest::sha256())
        .unwrap();
    Cert {
        x509: b.build(),
        key,
    }
}

fn root(cn: &str) -> Cert {
    issue(cn, None, Validity::Current, Aia::None)
}

fn write_pem(dir: &TempDir, name: &str, certs: &[&Cert]) -> PathBuf {
    let path = dir.path().join(name);
    let pem: Vec<u8> = certs
        .iter()
        .flat_map(|c| c.x509.to_pem().unwrap())
        .collect();
    fs::write(&path, pem).unwrap();
    path
}

fn write_key(dir: &TempDir, name: &str, cert: &Cert) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, cert.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    path
}

fn store(dir: &TempDir, roots: &[&Cert]) -> TrustStore {
    TrustStore::load(&write_pem(dir, "trust.pem", roots), None).unwrap()
}

fn signer(dir: &TempDir, cert: &Cert, chain: &[&Cert]) -> Signer {
    let chain_path = (!chain.is_empty()).then(|| write_pem(dir, "chain.pem", chain));
    Signer::load(
        &write_pem(dir, "signer.pem", &[cert]),
        &write_key(dir, "signer.key", cert),
        chain_path.as_deref(),
    )
    .unwrap()
}

/// Signs with the raw API, bypassing Signer::load's validity checks.
fn sign_raw(cert: &Cert, chain: &[&Cert], data: &[u8]) -> Vec<u8> {
    let mut stack = Stack::new().unwrap();
    for c in chain {
        stack.push(c.x509.clone()).unwrap();
    }
    let flags = Pkcs7Flags::BINARY | Pkcs7Flags::DETACHED;
    Pkcs7::sign(&cert.x509, &cert.key, &stack, data, flags)
        .unwrap()
        .to_der()
        .unwrap()
}

fn refusal(result: Result<()>) -> String {
    match result {
        Err(Error::Signature { what, reason }) => {
            assert_eq!(what, "Manifest.MoM");
            reason
        }
        other => panic!("expected a signature error, got {other:?}"),
    }
}

fn load_refusal(result: Result<TrustStore>) -> (PathBuf, String) {
    match result {
        Err(Error::TrustStore { path, reason }) => (path, reason),
        Err(other) => panic!("expected a trust store error, got {other:?}"),
        Ok(_) => panic!("expected a trust store error, got a store"),
    }
}

const MOM: &[u8] = b"MANIFEST\t1\nversion:\t10\n\nM...\tabc\t10\tos-core\n";

#[test]
fn root_signs_and_verifies_raw_bytes() {
    let dir = TempDir::new().unwrap();
    let root = root("root");
    let sig = signer(&dir, &root, &[]).sign(MOM).unwrap();
    let trust = store(&dir, &[&root]);
    trust.verify("Manifest.MoM", MOM, &sig).unwrap();
    let mut tampered = MOM.to_vec();
    tampered[0] ^= 1;
    let reason = refusal(trust.verify("Manifest.MoM", &tampered, &sig));
    assert_eq!(reason, "content does not match the signature");
}

#[test]
fn embedded_intermediate_chains_to_root() {
    let dir = TempDir::new().unwrap();
    let root = root("root");
    let inter = issue("intermediate", Some(&root), Validity::Current, Aia::None);
    let sig = signer(&dir, &inter, &[]).sign(MOM).unwrap();
    store(&dir, &[&root])
        .verify("Manifest.MoM", MOM, &sig)
        .unwrap();
}

#[test]
fn leaf_needs_the_chain_file_to_reach_the_root() {
    let dir = TempDir::new().unwrap();
    let root = root("root");
    let inter = issue("intermediate", Some(&root), Validity::Current, Aia::None);
    let leaf = issue("leaf", Some(&inter), Validity::Current, Aia::None);
    let trust = store(&dir, &[&root]);
    let with_chain = signer(&dir, &leaf, &[&inter]).sign(MOM).unwrap();
    trust.verify("Manifest.MoM", MOM, &with_chain).unwrap();
    let without = signer(&dir, &leaf, &[]).sign(MOM).unwrap();
    let reason = refusal(trust.verify("Manifest.MoM", MOM, &without));
    assert!(
        reason.contains("does not end in the trust store"),
        "{reason}"
    );
    assert!(reason.contains("CN=leaf"), "{reason}");
}

#[test]
fn another_root_is_refused() {
    let dir = TempDir::new().unwrap();
    let (root, other) = (root("root"), root("other root"));
    let sig = signer(&dir, &other, &[]).sign(MOM).unwrap();
    let reason = refusal(store(&dir, &[&root]).verify("Manifest.MoM", MOM, &sig));
    assert!(
        reason.contains("does not end in the trust store"),
        "{reason}"
    );
    assert!(reason.contains("CN=other root"), "{reason}");
}

#[test]
fn second_root_of_the_store_is_trusted() {
    let dir = TempDir::new().unwrap();
    let (root, other) = (root("root"), root("other root"));
    let sig = signer(&dir, &other, &[]).sign(MOM).unwrap();
    store(&dir, &[&root, &other])
        .verify("Manifest.MoM", MOM, &sig)
        .unwrap();
}

#[test]
fn expired_and_future_intermediates_are_refused() {
    let dir = TempDir::new().unwrap();
    let root = root("root");
    let trust = store(&dir, &[&root]);
    for (validity, cause) in [
        (
            Validity::Expired,
            "certificate has expired (subject CN=intermediate)",
        ),
        (
            Validity::Future,
            "certificate is not yet valid (subject CN=intermediate)",
        ),
    ] {
        let inter = issue("intermediate", Some(&root), validity, Aia::None);
        let reason = refusal(trust.verify("Manifest.MoM", MOM, &sign_raw(&inter, &[], MOM)));
        assert_eq!(reason, cause);
    }
}

#[test]
fn critical_aia_is_refused_anywhere_in_the_chain() {
    let dir = TempDir::new().unwrap();
    let root = root("root");
    let trust = store(&dir, &[&root]);
    let aia = issue(
        "ocsp intermediate",
        Some(&root),
        Validity::Current,
        Aia::Critical,
    );
    let reason = refusal(trust.verify("Manifest.MoM", MOM, &sign_raw(&aia, &[], MOM)));
    assert!(
        reason.contains("critical Authority Information Access"),
        "{reason}"
    );
    assert!(reason.contains("CN=ocsp intermediate"), "{reason}");
    // Embedded as the leaf's issuer rather than as the signer.
    let leaf = issue("leaf", Some(&aia), Validity::Current, Aia::None);
    let reason = refusal(trust.verify("Manifest.MoM", MOM, &sign_raw(&leaf, &[&aia], MOM)));
    assert!(
        reason.contains("critical Authority Information Access"),
        "{reason}"
    );
}

#[test]
fn non_critical_aia_is_accepted() {
    let dir = TempDir::new().unwrap();
    let root = root("root");
    let inter = issue("intermediate", Some(&root), Validity::Current, Aia::Plain);
    assert!(!has_critical_extension(&inter.x509, Nid::INFO_ACCESS));
    store(&dir, &[&root])
        .verify("Manifest.MoM", MOM, &sign_raw(&inter, &[], MOM))
        .unwrap();
}

#[test]
fn garbage_empty_and_unsigned_pkcs7_are_refused() {
    let dir = TempDir::new().unwrap();
    let trust = store(&dir, &[&root("root")]);
    assert_eq!(
        refusal(trust.verify("Manifest.MoM", MOM, b"")),
        "the signature is empty"
    );
    assert_eq!(
        refusal(trust.verify("Manifest.MoM", MOM, b"\x30\x03garbage")),
        "not a DER PKCS#7 structure"
    );
    // An enveloped (encrypted) PKCS#7 is well-formed DER but signs nothing.
    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let recipient = issue_with_key("recipient", rsa, None, Validity::Current, Aia::None);
    let mut certs = Stack::new().unwrap();
    certs.push(recipient.x509.clone()).unwrap();
    let enveloped = Pkcs7::encrypt(&certs, MOM, Cipher::aes_128_cbc(), Pkcs7Flags::BINARY).unwrap();
    let reason = refusal(trust.verify("Manifest.MoM", MOM, &enveloped.to_der().unwrap()));
    assert!(reason.contains("not a PKCS#7 signedData"), "{reason}");
}

#[test]
fn trust_store_refuses_bad_files() {
    let dir = TempDir::new().unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("empty.pem", b"\n", "the file is empty"),
        (
            "text.pem",
            b"not a certificate\n",
            "no PEM certificate in the file",
        ),
        (
            "broken.pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "unparsable PEM",
        ),
    ];
    for (name, content, cause) in cases {
        let path = dir.path().join(name);
        fs::write(&path, content).unwrap();
        let (at, reason) = load_refusal(TrustStore::load(&path, None));
        assert_eq!(at, path);
        assert!(reason.starts_with(cause), "{name}: {reason}");
    }
    let missing = dir.path().join("missing.pem");
    let (at, reason) = load_refusal(TrustStore::load(&missing, None));
    assert_eq!(at, missing);
    assert!(reason.starts_with("cannot read"), "{reason}");
}

#[test]
fn trust_store_refuses_invalid_roots() {
    let dir = TempDir::new().unwrap();
    let cases = [
        (
            Validity::Expired,
            Aia::None,
            "certificate has expired (subject CN=bad root)",
        ),
        (
            Validity::Future,
            Aia::None,
            "certificate is not yet valid (subject CN=bad root)",
        ),
        (
            Validity::Current,
            Aia::Critical,
            "critical Authority Information Access",
        ),
    ];
    for (validity, aia, cause) in cases {
        let bad = issue("bad root", None, validity, aia);
        // A valid root first: one bad certificate spoils the whole store.
        let path = write_pem(&dir, "trust.pem", &[&root("good root"), &bad]);
        let (_, reason) = load_refusal(TrustStore::load(&path, None));
        assert!(reason.contains(cause), "{reason}");
    }
}

#[test]
fn crl_file_errors_name_the_crl() {
    let dir = TempDir::new().unwrap();
    let trust = write_pem(&dir, "trust.pem", &[&root("root")]);
    for (content, cause) in [
        (&b""[..], "the CRL file is empty"),
        (b"junk\n", "no PEM CRL"),
    ] {
        let crl = dir.path().join("crl.pem");
        fs::write(&crl, content).unwrap();
        let (at, reason) = load_refusal(TrustStore::load(&trust, Some(&crl)));
        assert_eq!(at, crl);
        assert!(reason.starts_with(cause), "{reason}");
    }
}

#[test]
fn signer_refuses_mismatched_expired_and_encrypted_keys() {
    let dir = TempDir::new().unwrap();
    let (root, other) = (root("root"), root("other"));
    let cert = write_pem(&dir, "root.pem", &[&root]);
    let wrong_key = write_key(&dir, "other.key", &other);
    let reason = config_refusal(Signer::load(&cert, &wrong_key, None), &wrong_key);
    assert!(
        reason.contains("does not match the certificate"),
        "{reason}"
    );

    let expired = issue("old", None, Validity::Expired, Aia::None);
    let expired_pem = write_pem(&dir, "old.pem", &[&expired]);
    let key = write_key(&dir, "old.key", &expired);
    let reason = config_refusal(Signer::load(&expired_pem, &key, None), &expired_pem);
    assert_eq!(reason, "certificate has expired (subject CN=old)");

    let encrypted = dir.path().join("encrypted.key");
    let pem = root
        .key
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"secret")
        .unwrap();
    fs::write(&encrypted, pem).unwrap();
    let reason = config_refusal(Signer::load(&cert, &encrypted, None), &encrypted);
    assert!(reason.contains("encrypted"), "{reason}");
}

fn config_refusal(result: Result<Signer>, expected_path: &Path) -> String {
    match result {
        Err(Error::Config { path, reason }) => {
            assert_eq!(path, expected_path);
            reason
        }
        Err(other) => panic!("expected a config error, got {other:?}"),
        Ok(_) => panic!("expected a config error, got a signer"),
    }
}

#[test]
fn store_and_signer_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<TrustStore>();
    shareable::<Signer>();
}
