#!/bin/bash
# Runs inside the VM (as root): builds chainup, turns the extra disk into an ESP (vfat)
# plus a volume group with two core slots, publishes releases 10, 20 and 30 with core
# images and EFI binaries, serves them on 127.0.0.1:8000, and runs the A/B cycle end to
# end: update 10 -> 20 into slot b, "reboot" into b, mark-good, update 20 -> 30 into slot a.
# Every step is checked; any failure stops the provisioning with a message.
# The VM's own boot is never touched: the test ESP is mounted at /srv/ab/esp and the
# active slot is read from /srv/ab/cmdline.
set -euo pipefail

SRC=/chainup
AB=/srv/ab
VG=mainvg
SLOT_SIZE=1G
PORT=8000
PRODUCT=clipos

say() { printf '\n=== %s\n' "$*"; }
die() { echo "provision: $*" >&2; exit 1; }

say "packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq build-essential pkg-config libssl-dev liblzma-dev curl ca-certificates \
    openssl python3 lvm2 dosfstools parted zstd >/dev/null

say "rust and the build"
if ! command -v cargo >/dev/null && [[ ! -x $HOME/.cargo/bin/cargo ]]; then
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
export PATH=$HOME/.cargo/bin:$PATH
cargo build --release --workspace --manifest-path "$SRC/Cargo.toml"
BIN=$SRC/target/release
install -m 0755 "$BIN/chainup" /usr/local/bin/chainup

say "the A/B disk"
if ! vgs "$VG" >/dev/null 2>&1; then
    DISK=
    root_disk=$(lsblk -npo PKNAME "$(findmnt -no SOURCE /)" | head -n1)
    for d in $(lsblk -dnpo NAME,TYPE | awk '$2 == "disk" {print $1}'); do
        [[ $d == "$root_disk" ]] && continue
        # Only a disk with no partitions and nothing on it is ours to format.
        if [[ $(lsblk -npo NAME "$d" | wc -l) -eq 1 ]] && ! blkid "$d" >/dev/null 2>&1; then
            DISK=$d
            break
        fi
    done
    [[ -n $DISK ]] || die "no blank extra disk found (lsblk: $(lsblk -dnpo NAME | xargs))"
    echo "using $DISK"
    parted -s "$DISK" mklabel gpt \
        mkpart ESP fat32 1MiB 257MiB set 1 esp on \
        mkpart slots 257MiB 100%
    udevadm settle
    part() { lsblk -npo NAME "$DISK" | sed -n "$(($1 + 1))p"; }
    mkfs.vfat -F 32 -n ABESP "$(part 1)"
    pvcreate -q "$(part 2)"
    vgcreate -q "$VG" "$(part 2)"
    lvcreate -q -y -L "$SLOT_SIZE" -n core_a "$VG"
    lvcreate -q -y -L "$SLOT_SIZE" -n core_b "$VG"
fi
ESP_DEV=$(blkid -L ABESP) || die "no ESP labelled ABESP"

say "a fresh test area"
PIDFILE=/run/chainup-ab-http.pid
if [[ -f $PIDFILE ]]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; fi
if mountpoint -q "$AB/esp"; then umount "$AB/esp"; fi
rm -rf "$AB"
mkdir -p "$AB/esp" "$AB/rel" "$AB/web"
mount -t vfat "$ESP_DEV" "$AB/esp"
find "$AB/esp" -mindepth 1 -delete

say "signing keys and releases"
KEYBITS=2048 "$SRC/certs/make-certs.sh" "$AB/pki" 30 >/dev/null
# publish VERSION: the sample release VERSION with its core image and EFI binary.
publish() {
    "$SRC/manifests/make-release.sh" "$1" "$AB/rel/$1"
    "$BIN/chainup-publish" --webroot "$AB/web" --version "$1" --trees "$AB/rel/$1/trees" \
        --bundles "$SRC/manifests/bundles.toml" \
        --cert "$AB/pki/intermediate.pem" --key "$AB/pki/intermediate.key" \
        --image "core-image:core=$AB/rel/$1/images/core.img" \
        --image "core-image:efiboot=$AB/rel/$1/images/linux.efi" >/dev/null
}
publish 10
publish 20
setsid python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$AB/web" \
    >/dev/null 2>&1 </dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$PORT/version/format30/latest" >/dev/null && break
    sleep 0.2
done

say "slot a provisioned with release 10, its boot entry on the ESP"
SLOT_A=/dev/mapper/$VG-core_a
SLOT_B=/dev/$VG/core_b          # a symlink form: chainup compares device numbers
dd if="$AB/rel/10/images/core.img" of="$SLOT_A" bs=4M conv=fsync status=none
dd if=/dev/zero of="$SLOT_B" bs=4M count=8 conv=fsync status=none
mkdir -p "$AB/esp/EFI/Linux"
cp "$AB/rel/10/images/linux.efi" "$AB/esp/EFI/Linux/$PRODUCT-10.efi"
sync
echo "BOOT_IMAGE=/vmlinuz quiet chainup.slot=a" >"$AB/cmdline"

ROOT=$AB/root
mkdir -p "$ROOT/etc/chainup"
cat >"$ROOT/etc/chainup/config.toml" <<EOF
url = "http://127.0.0.1:$PORT"
allow-insecure-http = true
certpath = "$AB/pki/Swupd_Root.pem"
retry-delay = 1

[slots]
product = "$PRODUCT"
core_a = "$SLOT_A"
core_b = "$SLOT_B"
esp = "$AB/esp"
cmdline = "$AB/cmdline"
EOF
CU=(chainup -p "$ROOT" --no-progress)
"${CU[@]}" os-install -V 10 -B core-image,editors

# check_slot SLOT VERSION: the slot starts with the core image of VERSION.
check_slot() {
    local img=$AB/rel/$2/images/core.img
    cmp -n "$(stat -c %s "$img")" "$img" "$1" || die "$1 does not hold the core image of $2"
}
# check_entries NAME...: EFI/Linux holds exactly these entries.
check_entries() {
    local got want
    got=$(ls "$AB/esp/EFI/Linux" | sort | xargs)
    want=$(printf '%s\n' "$@" | sort | xargs)
    [[ $got == "$want" ]] || die "ESP entries: got '$got', want '$want'"
}

say "update 10 -> 20: into slot b"
"${CU[@]}" update
check_slot "$SLOT_B" 20
check_slot "$SLOT_A" 10
check_entries "$PRODUCT-10.efi" "$PRODUCT-20+3.efi"
cmp "$AB/rel/20/images/linux.efi" "$AB/esp/EFI/Linux/$PRODUCT-20+3.efi"
"${CU[@]}" info

say "reboot into slot b (systemd-boot counts a try), mark-good"
mv "$AB/esp/EFI/Linux/$PRODUCT-20+3.efi" "$AB/esp/EFI/Linux/$PRODUCT-20+2-1.efi"
echo "BOOT_IMAGE=/vmlinuz quiet chainup.slot=b" >"$AB/cmdline"
"${CU[@]}" mark-good
check_entries "$PRODUCT-10.efi" "$PRODUCT-20.efi"

say "release 30 appears; update 20 -> 30: into slot a"
publish 30
"${CU[@]}" update
check_slot "$SLOT_A" 30
check_slot "$SLOT_B" 20
check_entries "$PRODUCT-20.efi" "$PRODUCT-30+3.efi"
cmp "$AB/rel/30/images/linux.efi" "$AB/esp/EFI/Linux/$PRODUCT-30+3.efi"
"${CU[@]}" info

say "A/B end to end: OK"
