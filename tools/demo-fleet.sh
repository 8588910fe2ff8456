#!/usr/bin/env bash
# A staged rollout over a simulated fleet (docs/fleets.md), serverless: the webroot is
# read through file://, as it would be from a CDN.
#   1. publish releases 10, 20 and 30 once; channel `stable` follows 10;
#   2. a fleet of machines (roots with their own /etc/machine-id) os-installs 10;
#   3. release 20 rolls out in waves: 10% now, the rest in a day; every machine runs
#      `chainup update` and only its wave moves;
#   4. the second wave's start is brought forward: everyone moves to 20;
#   5. release 30 rolls out, its first wave moves, then the rollout is halted: nobody
#      else takes 30, and the machines already on it stay.
# Everything it makes lives in target/demo-fleet/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
machines=${MACHINES:-30}

say "Building chainup and chainup-publish"
cargo build --workspace --quiet
bin=$PWD/target/debug
demo=$PWD/target/demo-fleet
rm -rf "$demo"
mkdir -p "$demo"

say "Signing PKI (certs/make-certs.sh)"
KEYBITS=2048 certs/make-certs.sh "$demo/certs" > /dev/null
certs=$demo/certs
sign=(--cert "$certs/intermediate.pem" --key "$certs/intermediate.key" --chain "$certs/intermediate.pem")
printf '[bundles.os-core]\n' > "$demo/bundles.toml"
web=$demo/webroot

for v in 10 20 30; do
    say "Release $v -> $web"
    t=$demo/trees$v/os-core
    mkdir -p "$t/usr/lib" "$t/usr/bin" "$t/usr/share/clear/bundles"
    printf 'NAME=fleet demo\nVERSION_ID=%s\n' "$v" > "$t/usr/lib/os-release"
    printf '#!/bin/sh\necho release %s\n' "$v" > "$t/usr/bin/hello"
    chmod 755 "$t/usr/bin/hello"
    : > "$t/usr/share/clear/bundles/os-core"
    "$bin/chainup-publish" --webroot "$web" --version "$v" --trees "$demo/trees$v" \
        --bundles "$demo/bundles.toml" --timestamp "$((1700000000 + v))" "${sign[@]}" > /dev/null
done

promote() { "$bin/chainup-publish" promote --webroot "$web" --channel stable "${sign[@]}" "$@"; }
chainup() {
    local root=$1; shift
    "$bin/chainup" "$@" --path "$root" --url "file://$web" --channel stable \
        --certpath "$certs/Swupd_Root.pem" --no-progress --quiet
}
# Every machine runs `chainup update`; then the fleet is counted by version.
update_fleet() {
    for i in $(seq -w 1 "$machines"); do
        chainup "$demo/fleet/m$i" update "$@" > "$demo/fleet/m$i.log" 2>&1
    done
    echo "fleet: $(for i in $(seq -w 1 "$machines"); do
        sed -n 's/^VERSION_ID=//p' "$demo/fleet/m$i/usr/lib/os-release"; done | sort | uniq -c |
        awk '{printf "%s on %s  ", $1, $2}')"
}

say "Channel stable follows 10; $machines machines install it"
promote --version 10
for i in $(seq -w 1 "$machines"); do
    root=$demo/fleet/m$i
    mkdir -p "$root/etc"
    printf 'f1eed%027d\n' "$((10#$i))" > "$root/etc/machine-id"
    chainup "$root" os-install > /dev/null
done
update_fleet

say "Release 20 rolls out: 10% now, everyone in a day"
promote --version 20 --waves '10%@now,100%@+1d'
update_fleet
echo "check-update on a machine still on 10:"
for i in $(seq -w 1 "$machines"); do
    if grep -q "VERSION_ID=10" "$demo/fleet/m$i/usr/lib/os-release"; then
        "$bin/chainup" check-update --path "$demo/fleet/m$i" --url "file://$web" --channel stable \
            --certpath "$certs/Swupd_Root.pem" || true
        break
    fi
done

say "The second wave is brought forward (it started an hour ago): everyone takes 20"
promote --version 20 --start "$(( $(date +%s) - 7200 ))" --waves '10%@0h,100%@1h'
update_fleet
promote --version 20 > /dev/null   # the rollout is over: latest is 20

say "Release 30 rolls out: 10% now, everyone in a day"
promote --version 30 --waves '10%@now,100%@+1d'
update_fleet

say "Release 30 is halted: machines not yet on it stay on 20, the others keep 30"
promote --halt
update_fleet
echo "check-update on a machine still on 20:"
for i in $(seq -w 1 "$machines"); do
    if grep -q "VERSION_ID=20" "$demo/fleet/m$i/usr/lib/os-release"; then
        "$bin/chainup" check-update --path "$demo/fleet/m$i" --url "file://$web" --channel stable \
            --certpath "$certs/Swupd_Root.pem" || true
        break
    fi
done
echo "(update --ignore-waves would still not take a halted release)"
