#!/usr/bin/env bash
# Deltas against fullfiles, same run, same content, nginx on loopback:
#  1. `chainup update` 10 -> 20 where 5% of FILES files (SIZE_MIB in all) changed by two
#     bytes: bytes on the wire (all responses with their headers, from nginx's log; with
#     python3's server, the content bytes of chainup's JSON transfer event) and wall time,
#     with deltas and with fullfiles only (a webroot published with --delta-packs 0);
#  2. publishing release 30, in which every file changed by two bytes: the publisher's own
#     timing of its pack step (all deltas), and its whole run with and without packs.
#  3. with SWUPD=/path/to/swupd (a swupd 7 built elsewhere; nothing here builds one),
#     `swupd update` 10 -> 20 from the same webroot as chainup with deltas: bytes and time.
# Every update starts from a copy of a root installed at 10 and written back to disk (a
# machine installed earlier); the tools alternate RUNS times and the medians are compared.
# Env: FILES (2000), SIZE_MIB (1024), RUNS (3), SWUPD. Serves with nginx when installed, else python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=${FILES:-2000}
size=${SIZE_MIB:-1024}
cargo build --release --quiet --workspace
bin=$PWD/target/release
work=$(mktemp -d /var/tmp/chainup-deltas.XXXXXX)
servers=()
cleanup() { for s in "${servers[@]}"; do kill "$s" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# change TREE VERSION EVERY: flips two bytes in every EVERY-th file, sets os-release.
change() {
    python3 - "$1" "$2" "$3" <<'PY'
import os, sys
tree, version, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(tree, "usr/share/bench")) for f in fs)
assert paths, f"no files under {tree}/usr/share/bench"
for p in paths[::every]:
    with open(p, "r+b") as f:
        data = bytearray(f.read())
        data[7] ^= 1
        data[len(data) // 2] ^= 0x80
        f.seek(0)
        f.write(data)
with open(os.path.join(tree, "usr/lib/os-release"), "w") as f:
    f.write(f"NAME=bench\nVERSION_ID={version}\n")
PY
}
echo "generating $files files, $size MiB"
python3 tools/bench/gen_tree.py "$work/t10/os-core" 10 "$files" "$size"
printf '[bundles.os-core]\n' > "$work/bundles.toml"
KEYBITS=2048 certs/make-certs.sh "$work/certs" > /dev/null
publish() { # WEB VERSION EXTRA...
    local web=$1 v=$2; shift 2
    "$bin/chainup-publish" --webroot "$web" --version "$v" --trees "$work/t$v" \
        --bundles "$work/bundles.toml" --cert "$work/certs/intermediate.pem" \
        --key "$work/certs/intermediate.key" --timestamp $((1700000000 + v)) "$@"
}
cp -a "$work/t10" "$work/t20" && change "$work/t20/os-core" 20 20
cp -a "$work/t20" "$work/t30" && change "$work/t30/os-core" 30 1
for v in 10 20; do
    publish "$work/web" $v > /dev/null
    publish "$work/full" $v --delta-packs 0 > /dev/null
done

read -r url server < <(tools/bench/serve.sh "$work/web" "$work/s1"); servers+=("$server")
read -r url_full server < <(tools/bench/serve.sh "$work/full" "$work/s2"); servers+=("$server")
echo "servers: $url $url_full ($(command -v nginx > /dev/null && echo nginx || echo python3 http.server))"
client() { # ROOT URL ARGS...
    local root=$1 u=$2; shift 2
    "$bin/chainup" "$@" -p "$root" -S "$root.state" -u "$u" --allow-insecure-http \
        -C "$work/certs/Swupd_Root.pem" --no-progress
}
client "$work/a0" "$url" os-install -V 10 > /dev/null
client "$work/b0" "$url_full" os-install -V 10 > /dev/null
sw() { # swupd with the same server, certificate and format as chainup's delta webroot
    "$SWUPD" "$@" --path "$work/c" --url "$url" -F 30 -S "$work/c.state" \
        -C "$work/certs/Swupd_Root.pem" --no-progress --allow-insecure-http --ignore-time
}
if [ -n "${SWUPD:-}" ]; then
    mkdir -p "$work/c"
    sw os-install -V 10 > "$work/c-install.log" 2>&1
    mv "$work/c" "$work/c0" && mv "$work/c.state" "$work/c0.state"
fi
content() { python3 -c 'import json,sys
for e in json.load(open(sys.argv[1])):
    if e.get("type") == "transfer": print(e["pack_bytes"] + e["fullfile_bytes"])' "$1"; }
# wire LOG FIRST_LINE JSON: bytes sent from line FIRST_LINE of nginx's log on.
wire() {
    if [ -f "$1" ]; then tail -n +"$2" "$1" | awk '{ n += $2 } END { print n + 0 }'
    else content "$3"; fi
}
# manifest_bytes LOG FIRST_LINE: the part of wire's bytes that were MoMs and manifests.
manifest_bytes() {
    if [ -f "$1" ]; then tail -n +"$2" "$1" | awk '$1 ~ /Manifest/ { n += $2 } END { print n + 0 }'
    else echo "?"; fi
}
lines() { if [ -f "$1" ]; then echo $(( $(wc -l < "$1") + 1 )); else echo 1; fi; }
now() { date +%s.%N; }
# at_rest NAME: a fresh copy of the root and state installed at 10, written back to disk,
# so each update starts from a machine installed earlier (not one whose install is still
# being written back) and pays for its own writes and deletions only.
at_rest() {
    rm -rf "$work/$1" "$work/$1.state"
    cp -a "$work/${1}0" "$work/$1" && cp -a "$work/${1}0.state" "$work/$1.state" && sync
}
# timed_run NAME OUT COMMAND...: the wall time of COMMAND (its output to OUT) from a root
# at rest.
timed_run() {
    local name=$1 out=$2 s; shift 2
    at_rest "$name"; s=$(now); "$@" > "$out"
    awk -v s="$s" -v e="$(now)" 'BEGIN { printf "%.2f", e - s }'
}
sw_update() { sw update > "$work/c.log" 2>&1 || { cat "$work/c.log" >&2; return 1; }; }
log_a=$work/s1/nginx/access.log log_b=$work/s2/nginx/access.log
runs=${RUNS:-3}
declare -a t_delta t_full t_swupd swupd_own
for run in $(seq "$runs"); do # the tools alternate, so a busy moment weighs on all alike
    first_a=$(lines "$log_a") first_b=$(lines "$log_b")
    t_delta+=("$(timed_run a "$work/a.json" client "$work/a" "$url" update -j)")
    b_delta=$(wire "$log_a" "$first_a" "$work/a.json") m_delta=$(manifest_bytes "$log_a" "$first_a")
    t_full+=("$(timed_run b "$work/b.json" client "$work/b" "$url_full" update -j)")
    b_full=$(wire "$log_b" "$first_b" "$work/b.json") m_full=$(manifest_bytes "$log_b" "$first_b")
    diff -r "$work/a/usr" "$work/t20/os-core/usr" > /dev/null || { echo "root a differs" >&2; exit 1; }
    diff -r "$work/b/usr" "$work/t20/os-core/usr" > /dev/null || { echo "root b differs" >&2; exit 1; }
    if [ -n "${SWUPD:-}" ]; then
        first_c=$(lines "$log_a")
        t_swupd+=("$(timed_run c /dev/null sw_update)")
        b_swupd=$(wire "$log_a" "$first_c" /dev/null) m_swupd=$(manifest_bytes "$log_a" "$first_c")
        # swupd's own timer stops before it empties its download cache
        swupd_own+=("$(sed -n 's/^Update took \([0-9.]*\) seconds.*/\1/p' "$work/c.log")")
        diff -r "$work/c/usr" "$work/t20/os-core/usr" > /dev/null || { echo "root c differs" >&2; exit 1; }
    fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf '%-40s %12s bytes %8s s (runs: %s)  (manifests: %s bytes, content: %s bytes)\n' \
    "update 10->20 with deltas" "$b_delta" "$(median "${t_delta[@]}")" "${t_delta[*]}" \
    "$m_delta" "$(content "$work/a.json")" \
    "update 10->20 fullfiles only" "$b_full" "$(median "${t_full[@]}")" "${t_full[*]}" \
    "$m_full" "$(content "$work/b.json")"
awk -v a="$b_delta" -v b="$b_full" -v c="$(median "${t_delta[@]}")" -v d="$(median "${t_full[@]}")" \
    'BEGIN { printf "bytes ratio %.4f (target < 0.10), time ratio %.2f (medians)\n", a / b, c / d }'
if [ -n "${SWUPD:-}" ]; then
    printf '%-40s %12s bytes %8s s (runs: %s; swupd'"'"'s own "Update took": %s)  (manifests: %s bytes)\n' \
        "swupd update 10->20 (same packs)" "$b_swupd" "$(median "${t_swupd[@]}")" \
        "${t_swupd[*]}" "${swupd_own[*]}" "$m_swupd"
    awk -v a="$b_delta" -v b="$b_swupd" -v c="$(median "${t_delta[@]}")" -v d="$(median "${t_swupd[@]}")" \
        -v o="$(median "${swupd_own[@]}")" \
        'BEGIN { printf "chainup/swupd: bytes %.2f (target <= 1), wall time %.2f (target <= 0.5; against swupd'"'"'s own timer %.2f)\n", a / b, c / d, c / o }'
fi

cp -a "$work/full" "$work/full30"
t_pub=$( { timed publish "$work/web" 30 > /dev/null; } 2>&1 )
t_nopack=$( { timed publish "$work/full30" 30 --delta-packs 0 > /dev/null; } 2>&1 )
deltas=$(ls "$work/web/30/delta" | wc -l)
printf 'publish 30 (%s files changed): %s s with packs (%s deltas), %s s with --delta-packs 0: delta step %.1f s (target < 60)\n' \
    "$files" "$t_pub" "$deltas" "$t_nopack" "$(awk -v a="$t_pub" -v b="$t_nopack" 'BEGIN { print a - b }')"
