#!/usr/bin/env bash
# Makes a swupd-style signing PKI with the openssl CLI:
#   Swupd_Root.pem + root.key                   the trust anchor clients ship
#   intermediate.pem + intermediate.key         the signing certificate (signed by the root)
#   new_intermediate.pem + new_intermediate.key a second one, for rotation
# Usage: make-certs.sh OUTDIR [DAYS]     (DAYS: validity of every certificate, default 3650)
# Env:   KEYBITS (RSA key size, default 3072), ORG (subject O=, default "chainup").
# Idempotent: an existing key or certificate is kept, only missing files are made, so a
# second run never replaces the root key.
set -euo pipefail

usage() {
    echo "usage: $0 OUTDIR [DAYS]" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
out=$1
days=${2:-3650}
keybits=${KEYBITS:-3072}
org=${ORG:-chainup}
[[ $days =~ ^[1-9][0-9]*$ ]] || { echo "DAYS must be a positive integer, got '$days'" >&2; exit 2; }
[[ $keybits =~ ^[1-9][0-9]*$ ]] || { echo "KEYBITS must be a positive integer, got '$keybits'" >&2; exit 2; }

mkdir -p "$out"
cd "$out"
ext=$(mktemp)
trap 'rm -f "$ext"' EXIT

make_key() {
    local key=$1
    if [[ -e $key ]]; then
        echo "kept    $out/$key"
        return
    fi
    # Keys are readable by their owner only, from the moment they exist.
    (umask 077 && openssl genpkey -quiet -algorithm RSA -pkeyopt "rsa_keygen_bits:$keybits" -out "$key")
    echo "made    $out/$key (RSA $keybits)"
}

make_root() {
    make_key root.key
    if [[ -e Swupd_Root.pem ]]; then
        echo "kept    $out/Swupd_Root.pem"
        return
    fi
    cat >"$ext" <<'CONF'
[req]
distinguished_name = dn
x509_extensions = root
[dn]
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CONF
    openssl req -new -x509 -sha256 -days "$days" -key root.key -subj "/O=$org/CN=Swupd_Root" \
        -config "$ext" -out Swupd_Root.pem
    echo "made    $out/Swupd_Root.pem (CN=Swupd_Root, $days days)"
}

# An intermediate signed by the root. CA:TRUE so it may also issue a CRL or a leaf later;
# pathlen:0 keeps it from creating further CAs.
make_intermediate() {
    local name=$1
    make_key "$name.key"
    if [[ -e $name.pem ]]; then
        echo "kept    $out/$name.pem"
        return
    fi
    cat >"$ext" <<'CONF'
[req]
distinguished_name = dn
[dn]
[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, digitalSignature, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CONF
    openssl req -new -key "$name.key" -subj "/O=$org/CN=$name" -config "$ext" -out "$name.csr"
    # The serial file gives every certificate of this root its own serial: PKCS#7 names
    # the signer by issuer + serial, and a CRL revokes by serial, so duplicates would mix
    # the two intermediates up.
    openssl x509 -req -sha256 -days "$days" -in "$name.csr" -CA Swupd_Root.pem -CAkey root.key \
        -CAserial Swupd_Root.srl -CAcreateserial -extfile "$ext" -extensions intermediate -out "$name.pem" 2>/dev/null
    rm -f "$name.csr"
    echo "made    $out/$name.pem (CN=$name, signed by Swupd_Root, $days days)"
}

make_root
make_intermediate intermediate
make_intermediate new_intermediate

# A kept intermediate from an older root would sign content no client accepts: check now.
for name in intermediate new_intermediate; do
    openssl verify -purpose any -CAfile Swupd_Root.pem "$name.pem" >/dev/null ||
        { echo "$out/$name.pem does not chain to $out/Swupd_Root.pem" >&2; exit 1; }
done
echo "checked intermediate.pem and new_intermediate.pem chain to Swupd_Root.pem"
