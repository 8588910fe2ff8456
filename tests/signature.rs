//! Signature checks against signatures made by the real openssl command line, and
//! chainup's own signatures checked by it.

#[path = "common/pki.rs"]
mod pki;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use chainup::signature::{Signer, TrustStore};
use chainup::Error;
use pki::{sign_cms, sign_smime, sign_smime_text, smime_verify, Pki};
use tempfile::TempDir;

const WHAT: &str = "https://example.invalid/10/Manifest.MoM";
/// A MoM-like text with LF line endings, so a text-mode signature differs from a binary one.
const MOM: &str = "MANIFEST\t1\nversion:\t10\nprevious:\t0\n\nM...\tabc\t10\tos-core\n";

/// One PKI for the whole binary: making it costs a dozen RSA keys.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("signature-pki");
        let _ = fs::remove_dir_all(&dir);
        Pki::new(&dir)
    })
}

/// A directory holding `Manifest.MoM` with `content`.
fn mom(content: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("Manifest.MoM");
    fs::write(&path, content).unwrap();
    (dir, path)
}

fn trust(pem: &Path) -> TrustStore {
    TrustStore::load(pem, None).unwrap()
}

fn verify(store: &TrustStore, data: &Path, sig: &Path) -> chainup::Result<()> {
    store.verify(WHAT, &fs::read(data).unwrap(), &fs::read(sig).unwrap())
}

/// The reason of a signature refusal, which must name the signed object.
fn refusal(result: chainup::Result<()>) -> String {
    match result {
        Err(Error::Signature { what, reason }) => {
            assert_eq!(what, WHAT);
            reason
        }
        other => panic!("expected a signature refusal, got {other:?}"),
    }
}

fn assert_refused(result: chainup::Result<()>, causes: &[&str]) {
    let reason = refusal(result);
    for cause in causes {
        assert!(reason.contains(cause), "{reason:?} does not name {cause:?}");
    }
}

// ---- accepted ----

#[test]
fn root_signer_with_and_without_embedded_certificate() {
    let pki = pki();
    let store = trust(&pki.root);
    let (_dir, data) = mom(MOM);
    for extra in [&[][..], &["-nocerts"]] {
        let sig = sign_smime(&data, &pki.root, &pki.root_key, extra);
        verify(&store, &data, &sig).unwrap();
    }
}

#[test]
fn embedded_intermediate_and_rotated_intermediate() {
    let pki = pki();
    let store = trust(&pki.root);
    let (_dir, data) = mom(MOM);
    for (cert, key) in [
        (&pki.inter, &pki.inter_key),
        (&pki.new_inter, &pki.new_inter_key),
    ] {
        let sig = sign_smime(&data, cert, key, &[]);
        verify(&store, &data, &sig).unwrap();
    }
}

#[test]
fn leaf_with_embedded_chain() {
    let pki = pki();
    let store = trust(&pki.root);
    let (_dir, data) = mom(MOM);
    let chain = pki.inter.to_str().unwrap();
    let sig = sign_smime(&data, &pki.leaf, &pki.leaf_key, &["-certfile", chain]);
    verify(&store, &data, &sig).unwrap();
    let sig = sign_smime(&data, &pki.leaf, &pki.leaf_key, &[]);
    assert_refused(
        verify(&store, &data, &sig),
        &["does not end in the trust store", "CN=leaf"],
    );
}

#[test]
fn cms_and_sha512_signatures() {
    let pki = pki();
    let store = trust(&pki.root);
    let (_dir, data) = mom(MOM);
    let sig = sign_cms(&data, &pki.inter, &pki.inter_key, &[]);
    verify(&store, &data, &sig).unwrap();
    let sig = sign_smime(&data, &pki.inter, &pki.inter_key, &["-md", "sha512"]);
    verify(&store, &data, &sig).unwrap();
}

#[test]
fn opaque_signature_is_checked_against_the_given_bytes() {
    let pki = pki();
    let store = trust(&pki.root);
    let (_dir, data) = mom(MOM);
    // swupd accepts an opaque signature: the embedded copy is ignored, the served bytes
    // are digested.
    let sig = sign_smime(&data, &pki.inter, &pki.inter_key, &["-nodetach"]);
    verify(&store, &data, &sig).unwrap();
    let sig_bytes = fs::read(&sig).unwrap();
    let other = MOM.replace("10", "11");
    assert_refused(
        store.verify(WHAT, other.as_bytes(), &sig_bytes),
        &["content does not match the signature"],
    );
}

#[test]
fn trust_store_with_two_roots_accepts_the_second() {
    let pki = pki();
    let dir = TempDir::new().unwrap();
    let both = dir.path().join("roots.pem");
    let pem = [
        fs::read(&pki.other_root).unwrap(),
        fs::read(&pki.root).unwrap(),
    ]
    .concat();
    fs::write(&both, pem).unwrap();
    let (_dir, data) = mom(MOM);
    let sig = sign_smime(&data, &pki.inter, &pki.inter_key, &[]);
    verify(&trust(&both), &data, &sig).unwrap();
}

#[test]
fn chainup_signatures_verify_with_openssl() {
    let pki = pki();
    let (_dir, data) = mom(MOM);
    let chain = Some(pki.inter.as_path());
    for signer in [
        Signer::load(&pki.root, &pki.root_key, None).unwrap(),
        Signer::load(&pki.inter, &pki.inter_key, None).unwrap(),
        Signer::load(&pki.leaf, &pki.leaf_key, chain).unwrap(),
    ] {
        let sig = data.with_extension("chainup.sig");
        fs::write(&sig, signer.sign(MOM.as_bytes()).unwrap()).unwrap();
        let out = smime_verify(&data, &sig, &pki.root);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        verify(&trust(&pki.root), &data, &sig).unwrap();
        // The CLI check can fail: another root does not accept it.
        assert!(!smime_verify(&data, &sig, &pki.other_root).status.success());
    }
}

// ---- refused ----

#[test]
fn tampered_content() {
    let pki = pki();
    let (_dir, data) = mom(MOM);
    let sig = sign_smime(&data, &pki.inter, &pki.inter_key, &[]);
    fs::write(&data, MOM.replace("os-core", "os-cor3")).unwrap();
    assert_refused(
        verify(&trust(&pki.root), &data, &sig),
        &["content does not match the signature"],
    );
}

#[test]
fn another_root() {
    let pki = pki();
    let (_dir, data) = mom(MOM);
    let by_other = sign_smime(&data, &pki.other_root, &pki.other_root_key, &[]);
    assert_refused(
        verify(&trust(&pki.root), &data, &by_other),
        &["does not end in the trust store", "CN=other root"],
    );
    let by_inter = sign_smime(&data, &pki.inter, &pki.inter_key, &[]);
    assert_refused(
        verify(&trust(&pki.other_root), &data, &by_inter),
        &["does not end in the trust store", "CN=inter"],
    );
}

#[test]
fn expired_and_not_yet_valid_intermediates() {
    let pki = pki();
    let store = trust(&pki.root);
    let (_dir, data) = mom(MOM);
    let sig = sign_smime(&data, &pki.expired_inter, &pki.expired_inter_key, &[]);
    assert_refused(
        verify(&store, &data, &sig),
        &["certificate has expired (subject CN=expired inter)"],
    );
    let sig = sign_smime(&data, &pki.future_inter, &pki.future_inter_key, &[]);
    assert_refused(
        verify(&store, &data, &sig),
        &["certificate is not yet valid (subject CN=future inter)"],
    );
}

#[test]
fn intermediate_signature_without_certificates() {
    let pki = pki();
    let (_dir, data) = mom(MOM);
    let sig = sign_smime(&data, &pki.inter, &pki.inter_key, &["-nocerts"]);
    assert_refused(
        verify(&trust(&pki.root), &data, &sig),
        &["signer certificate not found"],
    );
}

#[test]
fn text_mode_signature_over_lf_content() {
    let pki = pki();
    let store = trust(&pki.root);
    let (_dir, data) = mom(MOM);
    let sig = sign_smime_text(&data, &pki.inter, &pki.inter_key);
    assert_refused(
        verify(&store, &data, &sig),
        &["content does not match the signature"],
    );
    // It is refused for its canonicalisation alone: it does sign the CRLF copy.
    let crlf = MOM.replace('\n', "\r\n");
    store
        .verify(WHAT, crlf.as_bytes(), &fs::read(&sig).unwrap())
        .unwrap();
}

#[test]
fn garbage_and_empty_signatures() {
    let pki = pki();
    let store = trust(&pki.root);
    assert_refused(
        store.verify(WHAT, MOM.as_bytes(), b""),
        &["the signature is empty"],
    );
    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_refused(
        store.verify(WHAT, MOM.as_bytes(), &garbage),
        &["not a DER PKCS#7 structure"],
    );
    // A PEM signature is not DER either.
    let (_dir, data) = mom(MOM);
    let pem = sign_smime(&data, &pki.inter, &pki.inter_key, &["-outform", "PEM"]);
    assert_refused(verify(&store, &data, &pem), &["not a DER PKCS#7 structure"]);
}

#[test]
fn critical_authority_information_access() {
    let pki = pki();
    let (_dir, data) = mom(MOM);
    let sig = sign_smime(&data, &pki.aia_inter, &pki.aia_inter_key, &[]);
    assert_refused(
        verify(&trust(&pki.root), &data, &sig),
        &["critical Authority Information Access", "CN=aia inter"],
    );
}

#[test]
fn revoked_intermediate_with_a_crl() {
    let pki = pki();
    let (_dir, data) = mom(MOM);
    let sig = sign_smime(&data, &pki.inter, &pki.inter_key, &[]);
    let crl = pki.revoke(&[&pki.inter]);
    let checked = TrustStore::load(&pki.root, Some(&crl)).unwrap();
    assert_refused(
        verify(&checked, &data, &sig),
        &["certificate revoked (subject CN=inter)"],
    );
    // Only that certificate: the rotated one still signs.
    let rotated = sign_smime(&data, &pki.new_inter, &pki.new_inter_key, &[]);
    verify(&checked, &data, &rotated).unwrap();
    // Without the CRL, or with one that revokes nothing, the signature is good.
    verify(&trust(&pki.root), &data, &sig).unwrap();
    let empty = TrustStore::load(&pki.root, Some(&pki.revoke(&[]))).unwrap();
    verify(&empty, &data, &sig).unwrap();
}

#[test]
fn crl_checking_covers_every_certificate_of_the_chain() {
    let pki = pki();
    // The CRL file holds the root's CRL only, none from `inter`, the leaf's issuer.
    let store = TrustStore::load(&pki.root, Some(&pki.revoke(&[]))).unwrap();
    let (_dir, data) = mom(MOM);
    let chain = pki.inter.to_str().unwrap();
    let sig = sign_smime(&data, &pki.leaf, &pki.leaf_key, &["-certfile", chain]);
    assert_refused(
        verify(&store, &data, &sig),
        &["unable to get certificate CRL (subject CN=leaf)"],
    );
}

#[test]
fn expired_root_in_the_trust_store() {
    let pki = pki();
    match TrustStore::load(&pki.expired_root, None) {
        Err(Error::TrustStore { path, reason }) => {
            assert_eq!(path, pki.expired_root);
            assert!(
                reason.contains("certificate has expired (subject CN=expired root)"),
                "{reason}"
            );
        }
        Err(other) => panic!("expected a trust store error, got {other:?}"),
        Ok(_) => panic!("an expired root was accepted"),
    }
}

// ---- certs/make-certs.sh ----

#[test]
fn make_certs_script_makes_a_working_pki_once() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("pki");
    let run = || {
        let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/make-certs.sh"))
            .arg(&out)
            .arg("30")
            .env("KEYBITS", "2048")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let first = run();
    assert!(
        first.contains("made") && first.contains("Swupd_Root.pem"),
        "{first}"
    );
    let names = [
        "Swupd_Root.pem",
        "root.key",
        "intermediate.pem",
        "intermediate.key",
    ];
    let names = [
        &names[..],
        &["new_intermediate.pem", "new_intermediate.key"],
    ]
    .concat();
    let before: Vec<Vec<u8>> = names
        .iter()
        .map(|n| fs::read(out.join(n)).unwrap())
        .collect();

    let store = trust(&out.join("Swupd_Root.pem"));
    let (_data_dir, data) = mom(MOM);
    for name in ["intermediate", "new_intermediate"] {
        let (cert, key) = (
            out.join(format!("{name}.pem")),
            out.join(format!("{name}.key")),
        );
        verify(&store, &data, &sign_smime(&data, &cert, &key, &[])).unwrap();
        let signer = Signer::load(&cert, &key, None).unwrap();
        store
            .verify(WHAT, MOM.as_bytes(), &signer.sign(MOM.as_bytes()).unwrap())
            .unwrap();
    }

    let second = run();
    assert!(
        !second.contains("made"),
        "a second run remade files:\n{second}"
    );
    let after: Vec<Vec<u8>> = names
        .iter()
        .map(|n| fs::read(out.join(n)).unwrap())
        .collect();
    assert!(before == after, "a second run changed the PKI");
}
