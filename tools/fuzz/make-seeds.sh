#!/bin/sh
# Regenerates the seed inputs of the fuzz targets (tools/fuzz/seeds/<target>/) and the
# fixed trust store and signed data of the `signature` target (seeds/trust/), from a tiny
# release published by the real chainup-publish and signatures made by the openssl CLI.
# The seeds are committed; run this only to change them (the keys are new each time, so
# every signature seed changes with them).
#
# Usage: tools/fuzz/make-seeds.sh [PATH-TO-chainup-publish]
# (default: $CARGO_TARGET_DIR/debug/chainup-publish, else target/debug/chainup-publish)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
publish=${1:-${CARGO_TARGET_DIR:-$repo/target}/debug/chainup-publish}
[ -x "$publish" ] || { echo "no chainup-publish at $publish (cargo build --workspace)" >&2; exit 2; }
seeds=$here/seeds
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# Keys: a root (the trust store), an intermediate and a leaf under it, and an unrelated
# root. A century of validity: the trust store must not expire under the fuzzer.
ca_ext='basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign'
printf '%s\n' "$ca_ext" > ca.ext
openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj /CN=fuzz-root \
    -keyout root.key -out root.pem 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj /CN=fuzz-other-root \
    -keyout other.key -out other.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=fuzz-intermediate \
    -keyout inter.key -out inter.csr 2>/dev/null
openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -CAcreateserial \
    -days 36500 -extfile ca.ext -out inter.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=fuzz-leaf \
    -keyout leaf.key -out leaf.csr 2>/dev/null
openssl x509 -req -in leaf.csr -CA inter.pem -CAkey inter.key -CAcreateserial \
    -days 36500 -out leaf.pem 2>/dev/null

# A tiny release: a file, an empty file, directories, a short and a long symlink.
tree=trees/10/os-core
mkdir -p "$tree/usr/lib" "$tree/usr/share/fuzz"
printf 'NAME=fuzz\nVERSION_ID=10\n' > "$tree/usr/lib/os-release"
printf 'hello fuzz\n' > "$tree/usr/share/fuzz/hello"
ln -s hello "$tree/usr/share/fuzz/link"
long=$(printf '%060d/%060d/hello' 0 0)
ln -s "$long" "$tree/usr/share/fuzz/longlink"
printf '[bundles.os-core]\n' > bundles.toml
for c in zstd xz gzip none; do
    "$publish" --webroot "web-$c" --version 10 --trees trees/10 --bundles bundles.toml \
        --cert root.pem --key root.key --timestamp 1700000000 --compression "$c" >/dev/null
done
"$publish" --webroot web-chain --version 10 --trees trees/10 --bundles bundles.toml \
    --cert leaf.pem --key leaf.key --chain inter.pem --timestamp 1700000000 >/dev/null

rm -rf "$seeds/fullfile" "$seeds/compression" "$seeds/manifest_tar" "$seeds/version" \
    "$seeds/signature" "$seeds/trust"
mkdir -p "$seeds/fullfile" "$seeds/compression" "$seeds/manifest_tar" "$seeds/version" \
    "$seeds/signature" "$seeds/trust"

# fullfile: every fullfile of the release in each compression (identical ones once), and
# the plain file's tar as bzip2 (swupd's other format).
for c in zstd xz gzip none; do
    for f in "web-$c"/10/files/*.tar; do
        h=$(basename "$f" .tar | cut -c1-8)
        cp "$f" "$seeds/fullfile/$h.$c"
    done
done
# Directories and symlinks are gzip whatever the file compression: keep one copy each.
seen=
for f in "$seeds"/fullfile/*; do
    sum=$(sha256sum < "$f" | cut -c1-64)
    case "$seen" in *"$sum"*) rm "$f" ;; *) seen="$seen $sum" ;; esac
done
for f in web-none/10/files/*.tar; do
    h=$(basename "$f" .tar | cut -c1-8)
    bzip2 -9c "$f" > "$seeds/fullfile/${h%"${h#????????}"}.bzip2"
done

# compression: one text in each format, concatenated streams, and plain bytes.
printf 'hello fuzz, hello decoder\n' > text
cp text "$seeds/compression/plain"
gzip -9nc text > "$seeds/compression/gzip"
xz -c text > "$seeds/compression/xz"
zstd -q --check -c text > "$seeds/compression/zstd"
bzip2 -9c text > "$seeds/compression/bzip2"
cat "$seeds/compression/gzip" "$seeds/compression/gzip" > "$seeds/compression/gzip-twice"
cat "$seeds/compression/xz" "$seeds/compression/xz" > "$seeds/compression/xz-twice"
cat "$seeds/compression/zstd" "$seeds/compression/zstd" > "$seeds/compression/zstd-twice"
cat "$seeds/compression/bzip2" "$seeds/compression/bzip2" > "$seeds/compression/bzip2-twice"

# manifest_tar: the publisher's MoM and bundle tars (xz), unpacked, and a MoM tar that
# also carries the signature entry, as mixer makes it.
cp web-zstd/10/Manifest.MoM.tar "$seeds/manifest_tar/mom.xz"
cp web-zstd/10/Manifest.os-core.tar "$seeds/manifest_tar/os-core.xz"
xz -dc web-zstd/10/Manifest.MoM.tar > "$seeds/manifest_tar/mom.tar"
xz -dc web-zstd/10/Manifest.os-core.tar > "$seeds/manifest_tar/os-core.tar"
cp web-zstd/10/Manifest.MoM web-zstd/10/Manifest.MoM.sig .
tar --owner=0 --group=0 --numeric-owner --mtime=@1700000000 --format=gnu \
    -cf - Manifest.MoM Manifest.MoM.sig | gzip -9n > "$seeds/manifest_tar/mom-with-sig.gz"

# version: latest files and os-release texts.
cp web-zstd/version/format30/latest "$seeds/version/latest"
printf '30\n20\n' > "$seeds/version/latest-two"
printf ' 40 \r\n' > "$seeds/version/latest-spaces"
cp "$tree/usr/lib/os-release" "$seeds/version/os-release"
printf 'NAME="Clear Linux OS"\nID=clear-linux-os\nVERSION_ID="33110"\nPRETTY_NAME=x\n' \
    > "$seeds/version/os-release-quoted"
printf "VERSION_ID='0'\nVERSION_ID=abc\nVERSION_ID=7\n" > "$seeds/version/os-release-later"

# signature: the trust store (root.pem), an unrelated root (other.pem) and the signed
# data (the release's MoM); signatures that verify, and ones that must not.
cp root.pem other.pem "$seeds/trust/"
cp Manifest.MoM "$seeds/trust/data"
sign() { openssl smime -sign -binary -outform DER -in "${DATA:-Manifest.MoM}" "$@"; }
cp web-zstd/10/Manifest.MoM.sig "$seeds/signature/publisher-root"
cp web-chain/10/Manifest.MoM.sig "$seeds/signature/publisher-chain"
sign -signer root.pem -inkey root.key -noattr > "$seeds/signature/noattr"
sign -signer root.pem -inkey root.key -nocerts > "$seeds/signature/nocerts"
sign -signer root.pem -inkey root.key -nodetach > "$seeds/signature/opaque"
sign -signer root.pem -inkey root.key -md sha512 > "$seeds/signature/sha512"
sign -signer leaf.pem -inkey leaf.key -certfile inter.pem > "$seeds/signature/leaf-chain"
sign -signer leaf.pem -inkey leaf.key > "$seeds/signature/leaf-no-intermediate"
sign -signer other.pem -inkey other.key > "$seeds/signature/untrusted"
cp web-zstd/version/format30/latest.sig "$seeds/signature/other-data"

echo "seeds written to $seeds"
