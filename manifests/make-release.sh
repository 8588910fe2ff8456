#!/bin/bash
# Builds the sample release trees of VERSION into OUTDIR, deterministically:
#   OUTDIR/trees/<bundle>/...   one root tree per bundle of manifests/bundles.toml
#   OUTDIR/images/core.img      core image payload (4 MiB; 96 KiB of it change at 20, more at 30)
#   OUTDIR/images/linux.efi     EFI binary payload (changes from 30 on)
# Versions 10, 20 and 30 differ: from 20 a file is deleted, one added, one changed, a
# symlink retargeted and a mode changed; devtools and the EFI binary change only at 30;
# docs never changes. Run as root to get root:root owners (swupd content is root-owned).
# Usage: make-release.sh VERSION OUTDIR
set -euo pipefail

if [[ $# -ne 2 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 VERSION OUTDIR" >&2
    exit 2
fi
V=$1
OUT=$2
if [[ -e $OUT/trees || -e $OUT/images ]]; then
    echo "$0: $OUT/trees or $OUT/images exists already; use a fresh OUTDIR" >&2
    exit 1
fi
umask 022
export LC_ALL=C

T=$OUT/trees
# dir PATH MODE: a directory with an explicit mode (parents 0755).
dir() { mkdir -p "$1"; chmod "$2" "$1"; }
# file PATH MODE CONTENT: a file with exact bytes (printf %b) and mode.
file() { mkdir -p "$(dirname "$1")"; printf '%b' "$3" >"$1"; chmod "$2" "$1"; }
# marker BUNDLE: the file swupd tracks an installed bundle by.
marker() { file "$T/$1/usr/share/clear/bundles/$1" 0644 ''; }

# --- os-core: the base system
R=$T/os-core
for d in usr usr/bin usr/lib usr/share usr/share/clear usr/share/clear/bundles \
         usr/share/doc etc var; do
    dir "$R/$d" 0755
done
dir "$R/var/tmp" 1777
file "$R/usr/lib/os-release" 0644 \
    "NAME=\"chainup sample OS\"\nID=chainup-sample\nVERSION_ID=$V\n"
ln -s ../usr/lib/os-release "$R/etc/os-release"
# What swupd itself reads from the root (mixer adds these to os-core): the build time
# that swupd's clock check compares against, the release and the content format.
file "$R/usr/share/clear/versionstamp" 0644 "$((1700000000 + V))\n"
file "$R/usr/share/clear/version" 0644 "$V\n"
dir "$R/usr/share/defaults" 0755
dir "$R/usr/share/defaults/swupd" 0755
file "$R/usr/share/defaults/swupd/format" 0644 '30\n'
file "$R/usr/bin/hello" 0755 '#!/bin/sh\necho hello\n'
file "$R/usr/bin/hello-v2" 0755 '#!/bin/sh\necho "hello, again"\n'
file "$R/etc/hostname" 0644 'sample\n'
file "$R/usr/share/doc/os-core.txt" 0644 'The chainup sample OS base.\n'
if (( V < 20 )); then
    file "$R/etc/old.conf" 0644 'legacy=yes\n'      # deleted from 20 on
    ln -s hello "$R/usr/bin/greet"                  # retargeted at 20
    file "$R/usr/bin/tool" 0755 '#!/bin/sh\necho tool\n'
else
    file "$R/etc/new.conf" 0644 'modern=yes\n'      # added at 20
    ln -s hello-v2 "$R/usr/bin/greet"
    file "$R/usr/bin/tool" 0750 '#!/bin/sh\necho tool\n'   # mode change only
fi
if (( V < 30 )); then
    file "$R/etc/motd" 0644 'Welcome.\n'
else
    file "$R/etc/motd" 0644 'Welcome to release 30 and later.\n'
fi
marker os-core

# --- editors: changes at 20
R=$T/editors
dir "$R/usr/share/editors" 0755
file "$R/usr/bin/edit" 0755 '#!/bin/sh\nexec vi "$@"\n'
if (( V < 20 )); then
    file "$R/usr/share/editors/defaults" 0644 'tabstop=8\n'
else
    file "$R/usr/share/editors/defaults" 0644 'tabstop=4\nexpandtab\n'
fi
marker editors

# --- devtools: changes at 30 only
R=$T/devtools
file "$R/usr/bin/build" 0755 "#!/bin/sh\necho building with devtools $(( V < 30 ? 1 : 2 ))\n"
file "$R/usr/lib/devtools/rules.mk" 0644 'all:\n\t@echo ok\n'
marker devtools

# --- docs: never changes
R=$T/docs
file "$R/usr/share/doc/manual.txt" 0644 'Read the source.\n'
marker docs

# Directories made by file() get the umask's 0755; set them all explicitly anyway so
# the result does not depend on the caller's umask.
find "$T" -type d ! -path "$T/os-core/var/tmp" -exec chmod 0755 {} +

# --- image payloads: AES-CTR over zeros is a deterministic, incompressible stream.
dir "$OUT/images" 0755
# noise KEY BYTES: deterministic incompressible bytes (AES-CTR of zeros).
noise() {
    head -c "$2" /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "$1")" \
            -iv 00000000000000000000000000000000
}
# One base image for every version, with a small part rewritten per release (a 96 KiB
# region from 20 on, another from 30 on), as a real release changes a little of the
# image: chunked updates (docs/chunks.md) fetch only those parts.
noise 1 $((4 << 20)) >"$OUT/images/core.img"
if (( V >= 20 )); then
    noise "$V" $((96 << 10)) | dd of="$OUT/images/core.img" bs=64K seek=16 conv=notrunc status=none
fi
if (( V >= 30 )); then
    noise "$((V + 1))" $((96 << 10)) | dd of="$OUT/images/core.img" bs=64K seek=48 conv=notrunc status=none
fi
efi_gen=$(( V < 30 ? 1 : 2 ))
{
    printf 'MZ chainup sample unified kernel image, generation %d\n' "$efi_gen"
    head -c 65536 /dev/zero | tr '\0' 'k'
} >"$OUT/images/linux.efi"
chmod 0644 "$OUT/images/core.img" "$OUT/images/linux.efi"

if [[ $(id -u) -eq 0 ]]; then
    chown -hR root:root "$T" "$OUT/images"
fi
