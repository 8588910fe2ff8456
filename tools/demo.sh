#!/usr/bin/env bash
# The chainup demo, on the built-in sample content (manifests/):
#   1. make a signing PKI (root + intermediate) with openssl,
#   2. build release trees 10 and 20 and publish them, signed, into webroot/,
#   3. serve webroot/ over HTTP on loopback,
#   4. os-install 10 into a sandbox root, update it to 20, and diagnose it,
#   5. with file-backed A/B core slots and an ESP directory: the update writes the new
#      core image into slot B and its EFI binary onto the ESP, then mark-good accepts it.
# Everything it makes lives in webroot/ and target/demo/ (both git-ignored). Run it as root
# or as a normal user (then in a user namespace, see below).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# What a bare Debian with Rust lacks, said before a long build fails on it.
if ! pkg-config --exists openssl 2>/dev/null; then
    echo "building needs OpenSSL's headers: apt-get install pkg-config libssl-dev" >&2
    exit 1
fi
for tool in openssl python3; do
    command -v "$tool" > /dev/null || { echo "the demo needs $tool: apt-get install $tool" >&2; exit 1; }
done

# Installing a release gives its files their owners from the manifests (root). A normal
# user runs the demo in a user namespace where it is root (unshare, util-linux): what it
# makes there belongs to that user outside, and nothing outside the repository changes.
if [ "$(id -u)" != 0 ]; then
    if ! unshare --map-root-user true 2>/dev/null; then
        echo "The demo installs root-owned files: run it as root, or enable user namespaces" >&2
        echo "(unshare --map-root-user failed)." >&2
        exit 1
    fi
    echo "(not root: running the demo in a user namespace, unshare --map-root-user)"
    exec unshare --map-root-user bash "$0" "$@"
fi

say "Building chainup and chainup-publish (the first build takes several minutes)"
# cargo's own progress (Compiling ... and its bar), so a first build does not look hung.
cargo build --workspace
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
        --allow-insecure-http --certpath "$certs/Swupd_Root.pem" --no-progress \
        --config "$demo/slots/config.toml"
}

say "A/B slots: two 8 MiB image files, an ESP directory, slot A running version 10"
slots=$demo/slots
mkdir -p "$slots/esp/EFI/Linux"
cp "$demo/r10/images/core.img" "$slots/core_a.img"      # as provisioned
truncate -s 8M "$slots/core_a.img"
truncate -s 8M "$slots/core_b.img"
cp "$demo/r10/images/linux.efi" "$slots/esp/EFI/Linux/clipos-10.efi"
echo "BOOT_IMAGE=/vmlinuz quiet chainup.slot=a" > "$slots/cmdline"
echo "27 1 254:99 / / rw,relatime - ext4 /dev/vda rw" > "$slots/mountinfo"
cat > "$slots/config.toml" <<CONF
[slots]
product = "clipos"
core_a = "$slots/core_a.img"
core_b = "$slots/core_b.img"
esp = "$slots/esp"
cmdline = "$slots/cmdline"
mountinfo = "$slots/mountinfo"
CONF
cat "$slots/config.toml"

say "os-install version 10 (os-core + editors + core-image) into $root"
chainup os-install -V 10 -B editors,core-image
cat "$root/usr/lib/os-release"

say "check-update"
chainup check-update || true

say "update to the latest version"
echo "edited locally" >> "$root/etc/hostname"
echo "(edited /etc/hostname locally: the update must keep it)"
chainup update
cat "$root/usr/lib/os-release"
echo "ESP after the update (the new entry has three boot tries):"
ls "$slots/esp/EFI/Linux"
cmp -n "$(stat -c %s "$demo/r20/images/core.img")" "$demo/r20/images/core.img" "$slots/core_b.img" \
    && echo "slot B holds the version 20 core image"
echo "(the core image was assembled from chunks: the lines above say how many bytes came"
echo " from the running slot A and how many from the network; the full image is $(stat -c %s "$demo/r20/images/core.img") bytes)"

say "reboot into slot B (simulated), then mark-good"
echo "BOOT_IMAGE=/vmlinuz quiet chainup.slot=b" > "$slots/cmdline"
chainup mark-good
ls "$slots/esp/EFI/Linux"
chainup info

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
