//! Fuzzes PKCS#7 input (`signature::TrustStore::verify`): arbitrary signature bytes
//! against fixed data and a fixed trust store (tools/fuzz/seeds/trust, made once by
//! make-seeds.sh with the openssl CLI). No panic; and a signature accepted must really
//! bind that data to that store: it is refused for the data with one byte changed and
//! by a store holding only an unrelated root.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use chainup::signature::TrustStore;
use libfuzzer_sys::fuzz_target;

const DATA: &[u8] = include_bytes!("../seeds/trust/data");

struct Stores {
    trusted: TrustStore,
    other: TrustStore,
}

fn stores() -> &'static Stores {
    static STORES: OnceLock<Stores> = OnceLock::new();
    STORES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/trust");
        let load = |name: &str| TrustStore::load(&dir.join(name), None).expect("trust store");
        Stores {
            trusted: load("root.pem"),
            other: load("other.pem"),
        }
    })
}

fuzz_target!(|sig: &[u8]| {
    let stores = stores();
    if stores.trusted.verify("fuzz", DATA, sig).is_err() {
        return;
    }
    let mut changed = DATA.to_vec();
    changed[0] ^= 1;
    assert!(
        stores.trusted.verify("fuzz", &changed, sig).is_err(),
        "a signature accepted for other data"
    );
    assert!(
        stores.other.verify("fuzz", DATA, sig).is_err(),
        "a signature accepted by an unrelated trust store"
    );
});
