//! A test PKI made at test time with the real `openssl` command line: roots, intermediates
//! (valid, rotated, expired, not yet valid, with a critical AIA), a leaf under an
//! intermediate, PKCS#7 signatures and CRLs. Keys are RSA 2048 for speed.
//!
//! Include with `#[path = "common/pki.rs"] mod pki;`.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Validity of every certificate meant to be valid; far from both ends of "now".
const DAYS: &str = "3650";
/// Fixed instants, so that expiry never depends on the day the tests run.
const EXPIRED: (&str, &str) = ("20000101000000Z", "20010101000000Z");
const FUTURE: (&str, &str) = ("20990101000000Z", "21000101000000Z");

/// `openssl ca` settings: one database for every certificate issued here (so each gets
/// its own serial), any subject, and the extension sections certificates are made with.
const CA_CONFIG: &str = "\
[ca]
default_ca = test_ca
[test_ca]
database = ca/index.txt
new_certs_dir = ca
serial = ca/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
[policy_any]
commonName = supplied
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_aia]
basicConstraints = critical, CA:TRUE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
authorityInfoAccess = critical, OCSP;URI:http://ocsp.invalid/
";

/// `openssl ca` settings for a CRL: its own revocation database.
const CRL_CONFIG: &str = "\
[ca]
default_ca = crl
[crl]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 3650
";

/// When a certificate is valid.
#[derive(Clone, Copy)]
enum Validity {
    Days,
    Expired,
    Future,
}

/// Certificates (PEM) and their keys, all under `dir`. Subjects are `CN=<field name>`
/// with `_` as a space, e.g. `CN=expired inter`.
pub struct Pki {
    pub dir: PathBuf,
    /// Self-signed root, the trust anchor.
    pub root: PathBuf,
    pub root_key: PathBuf,
    /// Signing intermediate issued by `root`.
    pub inter: PathBuf,
    pub inter_key: PathBuf,
    /// A second intermediate issued by `root`, as after a rotation.
    pub new_inter: PathBuf,
    pub new_inter_key: PathBuf,
    /// Issued by `root`, valid only in 2000.
    pub expired_inter: PathBuf,
    pub expired_inter_key: PathBuf,
    /// Issued by `root`, valid only from 2099.
    pub future_inter: PathBuf,
    pub future_inter_key: PathBuf,
    /// Issued by `root`, with a critical Authority-Information-Access (OCSP) extension.
    pub aia_inter: PathBuf,
    pub aia_inter_key: PathBuf,
    /// Issued by `inter`: its chain needs `inter` embedded to reach `root`.
    pub leaf: PathBuf,
    pub leaf_key: PathBuf,
    /// A self-signed root unrelated to `root`.
    pub other_root: PathBuf,
    pub other_root_key: PathBuf,
    /// A self-signed root valid only in 2000.
    pub expired_root: PathBuf,
    pub expired_root_key: PathBuf,
}

impl Pki {
    /// Makes the whole PKI in `dir` (created if missing; should be empty).
    pub fn new(dir: &Path) -> Pki {
        fs::create_dir_all(dir.join("ca")).unwrap();
        fs::write(dir.join("ca.cnf"), CA_CONFIG).unwrap();
        fs::write(dir.join("ca/index.txt"), "").unwrap();
        fs::write(dir.join("ca/serial"), "1000\n").unwrap();
        let ca = Ca { dir };
        let (root, root_key) = ca.issue("root", None, Validity::Days, "v3_ca");
        let by_root = Some((root.as_path(), root_key.as_path()));
        let (inter, inter_key) = ca.issue("inter", by_root, Validity::Days, "v3_ca");
        let (new_inter, new_inter_key) = ca.issue("new_inter", by_root, Validity::Days, "v3_ca");
        let (expired_inter, expired_inter_key) =
            ca.issue("expired_inter", by_root, Validity::Expired, "v3_ca");
        let (future_inter, future_inter_key) =
            ca.issue("future_inter", by_root, Validity::Future, "v3_ca");
        let (aia_inter, aia_inter_key) = ca.issue("aia_inter", by_root, Validity::Days, "v3_aia");
        let by_inter = Some((inter.as_path(), inter_key.as_path()));
        let (leaf, leaf_key) = ca.issue("leaf", by_inter, Validity::Days, "v3_ca");
        let (other_root, other_root_key) = ca.issue("other_root", None, Validity::Days, "v3_ca");
        let (expired_root, expired_root_key) =
            ca.issue("expired_root", None, Validity::Expired, "v3_ca");
        Pki {
            dir: dir.to_path_buf(),
            root,
            root_key,
            inter,
            inter_key,
            new_inter,
            new_inter_key,
            expired_inter,
            expired_inter_key,
            future_inter,
            future_inter_key,
            aia_inter,
            aia_inter_key,
            leaf,
            leaf_key,
            other_root,
            other_root_key,
            expired_root,
            expired_root_key,
        }
    }

    /// A PEM CRL signed by `root` that revokes `certs` (none: a valid, empty CRL).
    /// Each call has its own revocation database, so tests may call it in parallel.
    pub fn revoke(&self, certs: &[&Path]) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let db = self
            .dir
            .join(format!("crl-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        fs::create_dir_all(&db).unwrap();
        fs::write(db.join("crl.cnf"), CRL_CONFIG).unwrap();
        fs::write(db.join("index.txt"), "").unwrap();
        fs::write(db.join("crlnumber"), "01\n").unwrap();
        let signer = [
            OsStr::new("-cert"),
            self.root.as_os_str(),
            OsStr::new("-keyfile"),
            self.root_key.as_os_str(),
        ];
        for cert in certs {
            let mut args = vec![
                OsStr::new("ca"),
                OsStr::new("-config"),
                OsStr::new("crl.cnf"),
            ];
            args.extend(signer);
            args.extend([OsStr::new("-revoke"), cert.as_os_str()]);
            openssl_ok_in(&db, &args);
        }
        let crl = db.join("crl.pem");
        let mut args = vec![
            OsStr::new("ca"),
            OsStr::new("-config"),
            OsStr::new("crl.cnf"),
        ];
        args.extend(signer);
        args.extend([OsStr::new("-gencrl"), OsStr::new("-out"), crl.as_os_str()]);
        openssl_ok_in(&db, &args);
        crl
    }
}

/// Issues certificates with `openssl ca` from the database in `dir`.
struct Ca<'a> {
    dir: &'a Path,
}

impl Ca<'_> {
    /// Makes `<name>.key` and `<name>.pem` (self-signed when `issuer` is None).
    fn issue(
        &self,
        name: &str,
        issuer: Option<(&Path, &Path)>,
        validity: Validity,
        extensions: &str,
    ) -> (PathBuf, PathBuf) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let subject = format!("/CN={}", name.replace('_', " "));
        let bits = "rsa_keygen_bits:2048";
        self.run(&[
            "genpkey",
            "-quiet",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            bits,
            "-out",
            &key,
        ]);
        self.run(&[
            "req", "-new", "-config", "ca.cnf", "-key", &key, "-subj", &subject, "-out", &csr,
        ]);
        let mut args = vec![
            "ca", "-config", "ca.cnf", "-batch", "-notext", "-in", &csr, "-out", &pem,
        ];
        args.extend(["-extensions", extensions]);
        match issuer {
            None => args.extend(["-selfsign", "-keyfile", &key]),
            Some((cert, cert_key)) => {
                let (cert, cert_key) = (cert.to_str().unwrap(), cert_key.to_str().unwrap());
                args.extend(["-cert", cert, "-keyfile", cert_key]);
            }
        }
        match validity {
            Validity::Days => args.extend(["-days", DAYS]),
            Validity::Expired => args.extend(["-startdate", EXPIRED.0, "-enddate", EXPIRED.1]),
            Validity::Future => args.extend(["-startdate", FUTURE.0, "-enddate", FUTURE.1]),
        }
        self.run(&args);
        (self.dir.join(pem), self.dir.join(key))
    }

    fn run(&self, args: &[&str]) {
        openssl_ok_in(self.dir, args);
    }
}

/// `openssl smime -sign -binary -outform DER` over `data` into `<data>.sig` (replaced if
/// present), with `extra` arguments such as `-nocerts` or `-certfile F`.
pub fn sign_smime(data: &Path, signer: &Path, key: &Path, extra: &[&str]) -> PathBuf {
    sign_with(
        "smime",
        data,
        signer,
        key,
        &[&["-binary"], extra].concat(),
        "sig",
    )
}

/// `openssl smime -sign -outform DER` without `-binary`: OpenSSL signs the text
/// canonicalised to CRLF line endings. Into `<data>.text.sig`.
pub fn sign_smime_text(data: &Path, signer: &Path, key: &Path) -> PathBuf {
    sign_with("smime", data, signer, key, &[], "text.sig")
}

/// `openssl cms -sign -binary -outform DER` over `data` into `<data>.cms.sig`.
pub fn sign_cms(data: &Path, signer: &Path, key: &Path, extra: &[&str]) -> PathBuf {
    sign_with(
        "cms",
        data,
        signer,
        key,
        &[&["-binary"], extra].concat(),
        "cms.sig",
    )
}

fn sign_with(
    tool: &str,
    data: &Path,
    signer: &Path,
    key: &Path,
    extra: &[&str],
    suffix: &str,
) -> PathBuf {
    let mut sig = data.as_os_str().to_owned();
    sig.push(format!(".{suffix}"));
    let sig = PathBuf::from(sig);
    let mut args: Vec<&OsStr> = [tool, "-sign", "-outform", "DER"].map(OsStr::new).to_vec();
    args.extend([
        OsStr::new("-in"),
        data.as_os_str(),
        OsStr::new("-out"),
        sig.as_os_str(),
    ]);
    args.extend([
        OsStr::new("-signer"),
        signer.as_os_str(),
        OsStr::new("-inkey"),
        key.as_os_str(),
    ]);
    args.extend(extra.iter().map(OsStr::new));
    openssl_ok_in(data.parent().unwrap(), &args);
    sig
}

/// What a swupd client checks: `openssl smime -verify -inform DER -content data -purpose any -CAfile ca`.
pub fn smime_verify(data: &Path, sig: &Path, ca: &Path) -> Output {
    let args = [
        OsStr::new("smime"),
        OsStr::new("-verify"),
        OsStr::new("-inform"),
        OsStr::new("DER"),
        OsStr::new("-in"),
        sig.as_os_str(),
        OsStr::new("-content"),
        data.as_os_str(),
        OsStr::new("-purpose"),
        OsStr::new("any"),
        OsStr::new("-CAfile"),
        ca.as_os_str(),
        OsStr::new("-out"),
        OsStr::new("/dev/null"),
    ];
    openssl_in(data.parent().unwrap(), &args)
}

/// Runs `openssl ARGS` in `dir`.
pub fn openssl_in<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is needed by these tests")
}

/// Runs `openssl ARGS` in `dir`, panicking with its stderr if it fails.
pub fn openssl_ok_in<S: AsRef<OsStr>>(dir: &Path, args: &[S]) {
    let out = openssl_in(dir, args);
    assert!(
        out.status.success(),
        "openssl {:?} failed: {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
}
