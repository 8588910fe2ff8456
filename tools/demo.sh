#!/usr/bin/env bash
# The chainup demo, on the built-in sample content (manifests/):
#   1. make a signing PKI (root + intermediate) with openssl,
#   2. build release trees 10 and 20 and publish them, signed, into webroot/,
#   3. serve webroot/ over HTTP on loopback,
#   4. os-install 10 into a sandbox root, update it to 20, and diagnose it,
#   5. update a pair of file-backed A/B core slots and an ESP directory.
# Everything it makes lives in webroot/ and target/demo/ (both git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building chainup and chainup-publish"
cargo build --workspace --quiet
bin=$PWD/target/debug
demo=$PWD/target/demo
rm -rf "$demo" webroot/[0-9]* webroot/version
mkdir -p "$demo" webroot

say "Signing PKI (certs/make-certs.sh)"
KEYBITS=2048 certs/make-certs.sh "$demo/certs" > /dev/null
certs=$demo/certs
echo "trust anchor: $certs/Swupd_Root.pem; signer: intermediate.pem"

for v in 10 20; do
    say "Release $v: sample trees (manifests/make-release.sh) -> webroot/"
    manifests/make-release.sh "$v" "$demo/r$v"
    "$bin/chainup-publish" --webroot webroot --version "$v" --trees "$demo/r$v/trees" \
        --bundles manifests/bundles.toml --timestamp "$((1700000000 + v))" \
        --cert "$certs/intermediate.pem" --key "$certs/intermediate.key" \
        --image "core-image:core=$demo/r$v/images/core.img" \
        --image "core-image:efiboot=$demo/r$v/images/linux.efi"
done

say "Serving webroot/ on loopback"
python3 -u -m http.server --bind 127.0.0.1 0 --directory webroot > "$demo/http.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$demo/http.log" | head -n1)
    [ -n "$port" ] && break
    sleep 0.1
done
url=http://127.0.0.1:$port
echo "$url"

root=$demo/root
chainup() {
    "$bin/chainup" "$@" --path "$root" --statedir "$demo/state" --url "$url" \
        --allow-insecure-http --certpath "$certs/Swupd_Root.pem" --no-progress
}

say "os-install version 10 (os-core + editors) into $root"
chainup os-install -V 10 -B editors
cat "$root/usr/lib/os-release"

say "check-update"
chainup check-update || true

say "update to the latest version"
echo "edited locally" >> "$root/etc/hostname"
echo "(edited /etc/hostname locally: the update must keep it)"
chainup update
cat "$root/usr/lib/os-release"

say "bundle-list --all"
chainup bundle-list --all

say "diagnose: tamper with the root, find it, repair it"
echo "tampered" > "$root/usr/bin/hello"
chmod 0600 "$root/usr/share/doc/os-core.txt"
rm "$root/usr/bin/edit"
chainup diagnose || echo "(diagnose exit $?: problems found, as expected)"
chainup repair
chainup diagnose && echo "(diagnose exit 0: clean)"

say "Done: webroot/ holds the signed content; $root the updated root"
