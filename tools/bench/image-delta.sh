#!/bin/bash
# Benchmark of chunked core-image updates (docs/chunks.md), all in one run, on the same
# images served by nginx on loopback: image 20 is image 10 with 3% of its bytes rewritten
# in 24 places, 64 KiB inserted and 64 KiB removed (shifting what follows).
#
#   chunks:  `chainup update` 10 -> 20, assembling slot B from slot A and the chunk store
#   full:    the same with `chunks = false` (the whole image fullfile)
#   casync:  `casync extract --seed=<image 10> --store=http://.../castore` of an index
#            made by `casync make` (the reference of issue 11)
#
# Prints per method: bytes on the wire (nginx's $bytes_sent, headers included), wall time,
# peak RSS, and the ratios chunks/casync and chunks/full. Targets: bytes at most casync's,
# wall time at most half of casync's and at most the full update's, peak RSS < 100 MiB.
# Also times publishing release 20 against `zstd -9` of its image (single thread, as the
# fullfile is compressed).
#
# The chunked update's bytes are also broken down by kind (chunks, index deltas, index
# payloads, manifests, other) from nginx's log. BENCH_PUBLISH_ONLY=1 only times publishing
# release 10 (every chunk new) against `zstd -9` of its image (issue 11's "publishing a
# 2 GiB image takes about as long as compressing it": `tools/bench/image-delta.sh 2048`).
#
# Usage: tools/bench/image-delta.sh [SIZE_MIB]   (default 1024; BENCH_RUNS runs, default 3)
# Needs: nginx (apt-get install nginx-light), casync, GNU time, openssl, python3, zstd,
# ~8x SIZE free disk in $TMPDIR. BENCH_KEEP=1 keeps the work directory.
set -euo pipefail

SIZE_MIB=${1:-1024}
RUNS=${BENCH_RUNS:-3}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
for tool in nginx casync /usr/bin/time zstd; do
    command -v "$tool" >/dev/null || {
        echo "needs $tool: apt-get install nginx-light casync time zstd" >&2
        exit 2
    }
done

echo "building release binaries..." >&2
cargo build --release --quiet --manifest-path "$REPO/Cargo.toml" --workspace
BIN=$REPO/target/release

W=$(mktemp -d "${TMPDIR:-/tmp}/chainup-delta.XXXXXX")
SERVER=
cleanup() {
    [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
[[ -n ${BENCH_KEEP:-} ]] && trap - EXIT && echo "keeping $W" >&2

# --- images -------------------------------------------------------------------------------
mkdir -p "$W/img"
echo "generating ${SIZE_MIB} MiB images..." >&2
head -c $((SIZE_MIB << 20)) /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 0 >"$W/img/core10"
[[ -z ${BENCH_PUBLISH_ONLY:-} ]] && python3 - "$W/img/core10" "$W/img/core20" <<'PY'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
size = os.path.getsize(src)
regions, share = 24, 0.03
span = int(size * share / regions)
step = size // regions
rnd = os.urandom
with open(src, "rb") as f, open(dst, "wb") as out:
    for i in range(regions):
        block = bytearray(f.read(step if i < regions - 1 else size - step * (regions - 1)))
        at = len(block) // 3
        block[at:at + span] = rnd(span)
        if i == regions // 3:
            block[at + span + 4096:at + span + 4096] = rnd(64 << 10)    # inserted
        if i == 2 * regions // 3:
            del block[at + span + 4096:at + span + 4096 + (64 << 10)]  # removed
        out.write(block)
PY

# --- chainup releases ---------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=bench \
    -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
printf '[bundles.os-core]\n[bundles.core-image]\n' >"$W/bundles.toml"
for v in 10 20; do
    mkdir -p "$W/trees/$v/os-core/usr/lib" "$W/trees/$v/os-core/usr/share/clear/bundles"
    printf 'NAME=bench\nVERSION_ID=%s\n' "$v" >"$W/trees/$v/os-core/usr/lib/os-release"
    : >"$W/trees/$v/os-core/usr/share/clear/bundles/os-core"
    { printf 'MZ bench kernel %s\n' "$v"; head -c 65536 /dev/zero; } >"$W/img/efi$v"
done
publish() {
    "$BIN/chainup-publish" --webroot "${WEB:-$W/web}" --version "$1" --trees "$W/trees/$1" \
        --bundles "$W/bundles.toml" --cert "$W/cert.pem" --key "$W/key.pem" \
        --image "core-image:core=$W/img/core$1" --image "core-image:efiboot=$W/img/efi$1"
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
if [[ -n ${BENCH_PUBLISH_ONLY:-} ]]; then
    # Release 10 alone into an empty webroot: every chunk is new to the store, the most
    # publishing does; on disk the image, and a fullfile and a chunk store per run
    # (2 x SIZE x RUNS). Publishing and `zstd -9` alternate RUNS times, each after
    # a sync, and the medians are compared (single runs vary by a third on this VM).
    # Each run publishes into a webroot of its own, kept until the end: an ext4 without a
    # journal (this VM's) passes over inodes freed in the last 30 s when it creates a
    # file, so deleting the last run's 30,000 chunks just before would slow this one.
    t_pub=() t_zst=() t_zsf=()
    for run in $(seq "$RUNS"); do
        sync
        echo "publishing 10 (run $run)..." >&2
        start=$(date +%s.%N); WEB=$W/web$run publish 10 >&2
        t_pub+=("$(echo "$(date +%s.%N) - $start" | bc -l)")
        sync
        start=$(date +%s.%N); zstd -q -9 -c "$W/img/core10" >/dev/null
        t_zst+=("$(echo "$(date +%s.%N) - $start" | bc -l)")
        # The same compression written where publishing writes, and made durable as
        # publishing makes its output (publishing writes the image twice: fullfile and
        # chunk store).
        start=$(date +%s.%N); zstd -q -9 -f "$W/img/core10" -o "$W/core10.zst"; sync
        t_zsf+=("$(echo "$(date +%s.%N) - $start" | bc -l)")
        rm -f "$W/core10.zst"
    done
    PUB=$(median "${t_pub[@]}") ZST=$(median "${t_zst[@]}") ZSF=$(median "${t_zsf[@]}")
    runs() { printf '%.2f ' "$@" | sed 's/ $//'; }
    echo "${SIZE_MIB} MiB image, medians of $RUNS:"
    printf '  publishing release 10 (all chunks new): %.2f s (runs %s)\n' "$PUB" "$(runs "${t_pub[@]}")"
    printf '  zstd -9 of its image to /dev/null: %.2f s (runs %s); ratio %.2f\n' \
        "$ZST" "$(runs "${t_zst[@]}")" "$(echo "$PUB / $ZST" | bc -l)"
    printf '  zstd -9 of its image to a file, then sync: %.2f s (runs %s); ratio %.2f\n' \
        "$ZSF" "$(runs "${t_zsf[@]}")" "$(echo "$PUB / $ZSF" | bc -l)"
    exit 0
fi
echo "publishing 10..." >&2
publish 10 >/dev/null
echo "publishing 20..." >&2
start=$(date +%s.%N); publish 20 >&2; PUB=$(echo "$(date +%s.%N) - $start" | bc -l)
start=$(date +%s.%N); zstd -q -9 -c "$W/img/core20" >/dev/null; ZST=$(echo "$(date +%s.%N) - $start" | bc -l)
publishing() {
    printf '  publishing release 20: %.2f s; zstd -9 of its image: %.2f s (ratio %.2f)\n' \
        "$PUB" "$ZST" "$(echo "$PUB / $ZST" | bc -l)"
}

# --- casync store and index, in the same webroot -------------------------------------------
echo "casync make..." >&2
casync make --store="$W/web/castore" "$W/web/core20.caibx" "$W/img/core20" >/dev/null

LOG=$W/access.log
: >"$LOG"
read -r URL SERVER < <(BENCH_ACCESS_LOG=$LOG "$REPO/tools/bench/serve.sh" "$W/web" "$W")
echo "server: $URL (nginx)" >&2
wire() { awk '{s += $1} END {print s + 0}' "$LOG"; }

SLOT=$(( (SIZE_MIB + 16) << 20 ))
# chainup_run LABEL EXTRA_CONFIG: one update 10 -> 20 from a fresh state.
chainup_run() {
    local label=$1 extra=$2 t="$W/run"
    rm -rf "$t"; mkdir -p "$t/esp/EFI/Linux"
    cp "$W/img/core10" "$t/core_a"; truncate -s "$SLOT" "$t/core_a"
    fallocate -l "$SLOT" "$t/core_b"
    cp "$W/img/efi10" "$t/esp/EFI/Linux/bench-10.efi"
    echo "chainup.slot=a" >"$t/cmdline"
    echo "1 1 0:1 / / rw - tmpfs none rw" >"$t/mountinfo"
    printf '[slots]\nproduct = "bench"\ncore_a = "%s"\ncore_b = "%s"\nesp = "%s"\ncmdline = "%s"\nmountinfo = "%s"\n%s' \
        "$t/core_a" "$t/core_b" "$t/esp" "$t/cmdline" "$t/mountinfo" "$extra" >"$t/config.toml"
    local common=(--path "$t/root" --statedir "$t/state" --url "$URL" --allow-insecure-http
        --certpath "$W/cert.pem" --config "$t/config.toml" --no-progress --quiet)
    "$BIN/chainup" os-install -V 10 -B core-image "${common[@]}" >/dev/null
    sync
    : >"$LOG"
    local seen
    seen=$(wc -l <"$W/nginx/access.log")
    /usr/bin/time -v -o "$t/time" "$BIN/chainup" update -V 20 "${common[@]}" >/dev/null
    cmp -n "$(stat -c %s "$W/img/core20")" "$W/img/core20" "$t/core_b"
    result "$label" "$t/time"
    # Where the bytes went: the requests of this update in nginx's log ("URI bytes").
    tail -n +$((seen + 1)) "$W/nginx/access.log" | awk '
        $1 ~ /^\/chunks\/index-deltas\// {k = "index-delta"}
        $1 ~ /^\/chunks\/[0-9a-f][0-9a-f]\// {k = "chunks"}
        $1 ~ /\/files\// {k = ($2 > 67108864) ? "image" : "index/efi"}
        $1 ~ /Manifest/ {k = "manifests"}
        {if (k == "") k = "other"; n[k]++; b[k] += $2; k = ""}
        END {for (k in n) printf "          %-12s %5d requests %12d bytes\n", k, n[k], b[k]}' |
        sort >&2
}

casync_run() {
    local t="$W/run"
    rm -rf "$t"; mkdir -p "$t"
    fallocate -l "$SLOT" "$t/out"
    sync
    : >"$LOG"
    # The seed is the running image itself; the output is written in place, then synced,
    # as chainup's slot is.
    /usr/bin/time -v -o "$t/time" sh -c \
        "casync extract --store='$URL/castore' --seed='$W/img/core10' '$URL/core20.caibx' '$t/out' && sync '$t/out'" \
        >/dev/null 2>&1
    cmp -n "$(stat -c %s "$W/img/core20")" "$W/img/core20" "$t/out"
    result casync "$t/time"
}

result() {
    local wall rss bytes
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$2" |
        awk -F: '{s=0; for (i=1;i<=NF;i++) s=s*60+$i; print s}')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$2")
    bytes=$(wire)
    printf '%-7s wire %12d bytes   wall %7.2f s   peak RSS %4d MiB\n' "$1" "$bytes" "$wall" $((rss / 1024)) >&2
    echo "$1 $bytes $wall $((rss / 1024))" >>"$W/results"
}

median() {
    awk -v l="$1" -v c="$2" '$1 == l {print $c}' "$W/results" | sort -g |
        awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'
}

echo "image: ${SIZE_MIB} MiB, 3% changed; runs: $RUNS" >&2
for _ in $(seq "$RUNS"); do
    chainup_run chunks ""
    casync_run
    chainup_run full "chunks = false"$'\n'
done
echo
echo "median of $RUNS, ${SIZE_MIB} MiB image, 3% changed:"
for l in chunks casync full; do
    printf '  %-7s wire %12d bytes   wall %7.2f s   peak RSS %4d MiB\n' \
        "$l" "$(median "$l" 2)" "$(median "$l" 3)" "$(median "$l" 4)"
done
cw=$(median chunks 2); cs=$(median casync 2); ct=$(median chunks 3)
printf '  chunks/casync: bytes %.2f (target <= 1), wall %.2f (target <= 0.5); chunks/full wall %.2f (target <= 1)\n' \
    "$(echo "$cw / $cs" | bc -l)" "$(echo "$ct / $(median casync 3)" | bc -l)" \
    "$(echo "$ct / $(median full 3)" | bc -l)"
publishing
