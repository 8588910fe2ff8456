#!/usr/bin/env bash
# diagnose throughput: `chainup diagnose` of an installed 20,000-file, 1 GiB root beside
# hashing the same files with openssl, in one run, page cache warmed equally (each command
# runs once untimed first). Prints best-of-N wall times, ratios and chainup's peak RSS.
# Env: FILES (20000), SIZE_MIB (1024), RUNS (3). Needs GNU time (apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/../.."
files=${FILES:-20000}
size=${SIZE_MIB:-1024}
runs=${RUNS:-3}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --quiet --workspace
bin=$PWD/target/release
work=$(mktemp -d /var/tmp/chainup-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "generating $files files, $size MiB; publishing; os-install from file://"
python3 tools/bench/gen_tree.py "$work/trees/os-core" 10 "$files" "$size"
printf '[bundles.os-core]\n' > "$work/bundles.toml"
KEYBITS=2048 certs/make-certs.sh "$work/certs" > /dev/null
"$bin/chainup-publish" --webroot "$work/web" --version 10 --trees "$work/trees" \
    --bundles "$work/bundles.toml" --cert "$work/certs/intermediate.pem" \
    --key "$work/certs/intermediate.key" --timestamp 1700000000 > /dev/null
root=$work/root
client=("$bin/chainup" -p "$root" -S "$work/state" -u "file://$work/web"
    -C "$work/certs/Swupd_Root.pem" --no-progress)
"${client[@]}" os-install -V 10 > /dev/null

parallel='find "$1" -type f -print0 | xargs -0 -P2 -n 64 openssl dgst -sha256'
single='find "$1" -type f -print0 | xargs -0 cat | openssl dgst -sha256'

best() { # best "seconds peak-KiB" of "$@" over $runs runs, after one untimed warm-up run
    "$@" > /dev/null
    local best=999999 kb=0 s k
    for _ in $(seq "$runs"); do
        /usr/bin/time -f '%e %M' -o "$work/t" "$@" > /dev/null
        read -r s k < "$work/t"
        best=$(awk -v s="$s" -v b="$best" 'BEGIN { print (s < b ? s : b) }')
        kb=$(( k > kb ? k : kb ))
    done
    echo "$best $kb"
}

"${client[@]}" diagnose > /dev/null || { echo "diagnose: problems in a fresh install" >&2; exit 1; }
read -r d_s d_kb < <(best "${client[@]}" diagnose)
read -r p_s _ < <(best bash -c "$parallel" _ "$root")
read -r s_s _ < <(best bash -c "$single" _ "$root")

printf 'tree: %d files, %d MiB, %d cores; best of %d runs, page cache warm\n' \
    "$files" "$size" "$(nproc)" "$runs"
printf '%-62s %7.2f s\n' \
    "chainup diagnose" "$d_s" \
    "find | xargs -0 -P2 -n 64 openssl dgst -sha256" "$p_s" \
    "find | xargs -0 cat | openssl dgst -sha256 (one stream)" "$s_s"
awk -v d="$d_s" -v p="$p_s" -v s="$s_s" -v m="$size" 'BEGIN {
    printf "chainup diagnose: %.0f MiB/s\n", m / d
    printf "ratio diagnose / openssl -P2:      %.2f (target <= 1.00)\n", d / p
    printf "ratio diagnose / one openssl stream: %.2f\n", d / s
}'
awk -v k="$d_kb" 'BEGIN { printf "chainup diagnose peak RSS: %.1f MiB (target < 100)\n", k / 1024 }'
