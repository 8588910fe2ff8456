#!/bin/sh
# Runs every fuzz target of tools/fuzz for SECONDS each (default 300) and prints one
# summary line per target: inputs executed, coverage, and whether it crashed. Exits
# non-zero if any target crashed (the input is kept in artifacts/<target>/ and the full
# log in artifacts/<target>.log).
#
# Usage: tools/fuzz/run-all.sh [SECONDS] [TARGET...]     (all targets by default)
# The machine may be shared: run it as `nice -n 19 tools/fuzz/run-all.sh`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-300}
[ $# -gt 0 ] && shift
case "$seconds" in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac
cd "$here"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz
fi

# The fuzz workspace builds into its own target directory, with its own flags: never
# into (and over) the main build's.
unset CARGO_TARGET_DIR
# cargo-fuzz needs nightly flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
# No sanitizer: the Rust code under test has no `unsafe` beyond openssl's bindings.
export RUSTC_BOOTSTRAP=1

targets=${*:-$(cargo fuzz list --fuzz-dir .)}
cargo fuzz build --fuzz-dir . -s none

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
failed=0
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t.log"
    echo "fuzzing $t for ${seconds}s (log: tools/fuzz/$log)" >&2
    status=0
    cargo fuzz run --fuzz-dir . -s none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=120 -rss_limit_mb=2048 \
        >"$log" 2>&1 || status=$?
    # libFuzzer's last status line: "#RUNS DONE cov: N ft: N corp: N/SIZE ...".
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    runs=$(printf '%s\n' "$last" | sed -n 's/^#\([0-9]*\).*/\1/p')
    cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s\n' "$last" | sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p')
    if [ "$status" -eq 0 ]; then
        result="no crash"
    else
        failed=1
        crash=$(ls -t "artifacts/$t" 2>/dev/null | head -n 1)
        result="CRASH (exit $status${crash:+, input tools/fuzz/artifacts/$t/$crash})"
    fi
    printf '%-14s %12s inputs in %ss  cov: %-6s ft: %-6s corpus: %-6s %s\n' \
        "$t" "${runs:-?}" "$seconds" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result" \
        | tee -a "$summary" >&2
done

echo
cat "$summary"
exit "$failed"
