#!/bin/bash
# Benchmark of the A/B core image install (docs/ab.md): `chainup update` streaming a
# core image from a loopback server into the inactive slot (download, decompress, hash,
# write, fsync, read back from the device and hash again, EFI binary to the ESP), against
# `dd bs=4M conv=fsync` copying the same image alone, in the same run. Prints wall times,
# their ratio (target: within 1.5x) and chainup's peak RSS (target: under 100 MiB).
#
# Usage: tools/bench/image.sh [SIZE_MIB]   (default 2048; BENCH_RUNS runs each, default 3)
# Needs: openssl, python3, GNU time (/usr/bin/time; `apt-get install time`), ~4x SIZE free
# disk in $TMPDIR. As root it also runs with a loop device as the slot.
# Env: BENCH_URL=http (default: tools/bench/serve.sh on 127.0.0.1, nginx when installed,
# else python3 -m http.server) or file (file://);
# BENCH_KEEP=1 keeps the work directory; BENCH_DROP_CACHES=1 (root) drops the page cache
# before each timed run. Set RUST_LOG=chainup=debug to see write and read-back times.
set -euo pipefail

SIZE_MIB=${1:-2048}
RUNS=${BENCH_RUNS:-3}
MODE=${BENCH_URL:-http}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
[[ -x /usr/bin/time ]] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }

echo "building release binaries..." >&2
cargo build --release --quiet --manifest-path "$REPO/Cargo.toml" --workspace
BIN=$REPO/target/release

W=$(mktemp -d "${TMPDIR:-/tmp}/chainup-bench.XXXXXX")
LOOPS=()
SERVER=
cleanup() {
    [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null || true
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
[[ -n ${BENCH_KEEP:-} ]] && trap - EXIT && echo "keeping $W" >&2

# BENCH_DROP_CACHES=1 (root): start each timed run with a cold page cache. Off by default:
# it slows down everything else on a shared machine.
drop_caches() {
    sync
    if [[ -n ${BENCH_DROP_CACHES:-} && $(id -u) -eq 0 ]]; then
        echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    fi
}

# --- signing key, trees, images, two releases ------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=bench \
    -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
cat >"$W/bundles.toml" <<'EOF'
[bundles.os-core]
[bundles.core-image]
EOF
mkdir -p "$W/img"
for v in 10 20; do
    mkdir -p "$W/trees/$v/os-core/usr/lib" "$W/trees/$v/os-core/usr/share/clear/bundles"
    printf 'NAME=bench\nVERSION_ID=%s\n' "$v" >"$W/trees/$v/os-core/usr/lib/os-release"
    : >"$W/trees/$v/os-core/usr/share/clear/bundles/os-core"
    { printf 'MZ bench kernel %s\n' "$v"; head -c 1048576 /dev/zero; } >"$W/img/efi$v"
done
head -c 1048576 /dev/urandom >"$W/img/core10"
echo "generating a ${SIZE_MIB} MiB core image..." >&2
# AES-CTR over zeros: fast, incompressible (the worst case for the download).
head -c $((SIZE_MIB << 20)) /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 0 >"$W/img/core20"
for v in 10 20; do
    echo "publishing $v..." >&2
    "$BIN/chainup-publish" --webroot "$W/web" --version "$v" --trees "$W/trees/$v" \
        --bundles "$W/bundles.toml" --cert "$W/cert.pem" --key "$W/key.pem" \
        --image "core-image:core=$W/img/core$v" --image "core-image:efiboot=$W/img/efi$v" \
        >/dev/null
done

if [[ $MODE == http ]]; then
    read -r URL SERVER < <("$REPO/tools/bench/serve.sh" "$W/web" "$W")
    echo "server: $URL ($(command -v nginx >/dev/null && echo nginx || echo python3 http.server))" >&2
else
    URL=file://$W/web
fi

SLOT_BYTES=$(( (SIZE_MIB + 16) << 20 ))
# run_one LABEL SLOT_B DD_TARGET: one chainup install into SLOT_B, one dd into DD_TARGET.
run_one() {
    local label=$1 slot_b=$2 dd_target=$3 t="$W/run-$1"
    rm -rf "$t"; mkdir -p "$t/esp/EFI/Linux"
    truncate -s "$SLOT_BYTES" "$t/core_a"
    cp "$W/img/efi10" "$t/esp/EFI/Linux/bench-10.efi"
    echo "chainup.slot=a" >"$t/cmdline"
    echo "1 1 0:1 / / rw - tmpfs none rw" >"$t/mountinfo"
    cat >"$t/config.toml" <<EOF
[slots]
product = "bench"
core_a = "$t/core_a"
core_b = "$slot_b"
esp = "$t/esp"
cmdline = "$t/cmdline"
mountinfo = "$t/mountinfo"
EOF
    local common=(--path "$t/root" --statedir "$t/state" --url "$URL" --allow-insecure-http
        --certpath "$W/cert.pem" --config "$t/config.toml" --no-progress --quiet)
    "$BIN/chainup" os-install -V 10 -B core-image "${common[@]}" >/dev/null
    drop_caches
    /usr/bin/time -v -o "$t/time" "$BIN/chainup" update -V 20 "${common[@]}" >/dev/null
    cmp -n $((SIZE_MIB << 20)) "$W/img/core20" "$slot_b"
    [[ -f $t/esp/EFI/Linux/bench-20+3.efi ]]
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$t/time" |
        awk -F: '{s=0; for (i=1;i<=NF;i++) s=s*60+$i; print s}')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$t/time")
    drop_caches
    local start end ddwall
    start=$(date +%s.%N)
    dd if="$W/img/core20" of="$dd_target" bs=4M conv=fsync,notrunc status=none
    end=$(date +%s.%N)
    ddwall=$(echo "$end - $start" | bc -l)
    printf '%-6s chainup update %6.2f s   dd %6.2f s   ratio %.2fx   peak RSS %d MiB\n' \
        "$label" "$wall" "$ddwall" "$(echo "$wall / $ddwall" | bc -l)" $((rss / 1024)) >&2
    echo "$label $wall $ddwall $((rss / 1024))" >>"$W/results"
}

# median LABEL COLUMN: the median of one column over the runs of a label.
median() {
    awk -v l="$1" -v c="$2" '$1 == l {print $c}' "$W/results" | sort -g |
        awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'
}

summary() {
    local wall dd
    wall=$(median "$1" 2); dd=$(median "$1" 3)
    printf '%-6s median of %d: chainup update %6.2f s   dd %6.2f s   ratio %.2fx   peak RSS %d MiB\n' \
        "$1" "$RUNS" "$wall" "$dd" "$(echo "$wall / $dd" | bc -l)" "$(median "$1" 4)"
}

echo "image: ${SIZE_MIB} MiB, incompressible; server: $MODE" >&2
# Both targets preallocated alike, so neither pays for block allocation the other does not.
fallocate -l "$SLOT_BYTES" "$W/slot_b"
fallocate -l "$SLOT_BYTES" "$W/dd_b"
LABELS=(file)
if [[ $(id -u) -eq 0 ]] && command -v losetup >/dev/null; then
    LB=$(losetup --find --show "$W/slot_b"); LOOPS+=("$LB")
    LD=$(losetup --find --show "$W/dd_b"); LOOPS+=("$LD")
    LABELS+=(loop)
else
    echo "loop-device run skipped: needs root and losetup" >&2
fi
# Runs alternate, so load from elsewhere on the machine hits both sides alike.
for _ in $(seq "$RUNS"); do
    run_one file "$W/slot_b" "$W/dd_b"
    [[ ${#LABELS[@]} -gt 1 ]] && run_one loop "$LB" "$LD"
done
for l in "${LABELS[@]}"; do summary "$l"; done
