#!/usr/bin/env bash
# Hashing throughput: `chainup hashdump` beside `openssl dgst -sha256` on the same 1 GiB
# file, in the same run, page cache warm for both. Prints best-of-N times and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
size_mib=${SIZE_MIB:-1024}
runs=${RUNS:-5}
cargo build --release --quiet --bin chainup
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file=$work/data
head -c $((size_mib << 20)) /dev/urandom > "$file"

best() { # best wall time in seconds of "$@" over $runs runs
    local best=999999 t
    for _ in $(seq "$runs"); do
        local s e
        s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N)
        best=$(awk -v s="$s" -v e="$e" -v b="$best" 'BEGIN { t = e - s; print (t < b ? t : b) }')
    done
    printf '%.3f' "$best"
}

cat "$file" > /dev/null
openssl_s=$(best openssl dgst -sha256 "$file")
chainup_s=$(best target/release/chainup hashdump --quiet "$file")
calc() { awk "BEGIN { print $1 }"; }
ratio=$(calc "$chainup_s / $openssl_s")
printf 'file: %d MiB, best of %d runs\n' "$size_mib" "$runs"
printf 'openssl dgst -sha256   %6.3f s  %7.0f MiB/s\n' "$openssl_s" "$(calc "$size_mib / $openssl_s")"
printf 'chainup hashdump       %6.3f s  %7.0f MiB/s\n' "$chainup_s" "$(calc "$size_mib / $chainup_s")"
printf 'ratio chainup/openssl  %6.2f  (target <= 1.10)\n' "$ratio"
