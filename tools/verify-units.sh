#!/usr/bin/env bash
# Checks the systemd units installed by tools/install.sh with `systemd-analyze verify`:
# their syntax, the executables they name (the installed ones) and their man: links (the
# installed pages). Any message counts as a failure: systemd-analyze only warns about an
# unknown key. Usage: tools/verify-units.sh DESTDIR
set -euo pipefail
dest=$(cd "$1" && pwd)
units=$dest/usr/lib/systemd/system
# A root for --root: the host's own units (the targets ours order against) with ours
# and our binaries in it, so the check does not depend on what this machine installed.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd/system" "$root/usr/bin" "$root/etc"
cp -a /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
cp -a "$units"/chainup-* "$root/usr/lib/systemd/system/"
cp -a "$dest"/usr/bin/chainup* "$root/usr/bin/"
names=$(cd "$units" && ls chainup-*)
out=$(cd "$root" && MANPATH=$dest/usr/share/man systemd-analyze verify --root="$root" $names 2>&1) || {
    echo "$out"
    exit 1
}
if [ -n "$out" ]; then
    echo "$out"
    exit 1
fi
echo "systemd-analyze verify: ok ($(echo $names))"
