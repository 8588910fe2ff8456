#!/usr/bin/env bash
# os-install from three mirrors (one dead, one serving corrupt fullfiles, one good) beside
# os-install from the good mirror alone, in one run, alternating: both median of RUNS. Prints
# the wall times, their spread and their ratio (target: 1.0 within noise).
# Env: FILES (5000), SIZE_MIB (256), RUNS (3). Serves with nginx when installed
# (apt-get install nginx-light), else python3 -m http.server.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=${FILES:-5000}
size=${SIZE_MIB:-256}
runs=${RUNS:-3}
cargo build --release --quiet --workspace
bin=$PWD/target/release
work=$(mktemp -d /var/tmp/chainup-bench.XXXXXX)
servers=()
cleanup() { for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "generating $files files, $size MiB"
python3 tools/bench/gen_tree.py "$work/trees/os-core" 10 "$files" "$size"
printf '[bundles.os-core]\n' > "$work/bundles.toml"
KEYBITS=2048 certs/make-certs.sh "$work/certs" > /dev/null
"$bin/chainup-publish" --webroot "$work/web" --version 10 --trees "$work/trees" \
    --bundles "$work/bundles.toml" --cert "$work/certs/intermediate.pem" \
    --key "$work/certs/intermediate.key" --timestamp 1700000000 > /dev/null

# The corrupt mirror: every fullfile holds other bytes under its own name.
cp -a "$work/web" "$work/corrupt"
python3 - "$work/corrupt/10/files" <<'PY'
import io, os, sys, tarfile
d = sys.argv[1]
for name in os.listdir(d):
    data = b"not what was published\n"
    info = tarfile.TarInfo(name[:-4]); info.size = len(data); info.mode = 0o644
    with tarfile.open(os.path.join(d, name), "w") as t:
        t.addfile(info, io.BytesIO(data))
PY

read -r good pid < <(tools/bench/serve.sh "$work/web" "$work/s1"); servers+=("$pid")
read -r corrupt pid < <(tools/bench/serve.sh "$work/corrupt" "$work/s2"); servers+=("$pid")
dead=http://127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "good $good, corrupt $corrupt, dead $dead"

# SECONDS of one os-install with the given URL options
once() {
    rm -rf "$work/root" "$work/state"
    start=$(date +%s.%N)
    "$bin/chainup" os-install -p "$work/root" -S "$work/state" --allow-insecure-http \
        -C "$work/certs/Swupd_Root.pem" --no-progress "$@" > /dev/null 2> "$work/err"
    end=$(date +%s.%N)
    [ -f "$work/root/usr/lib/os-release" ] || { cat "$work/err" >&2; exit 1; }
    awk -v a="$start" -v b="$end" 'BEGIN { print b - a }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# The two set-ups alternate, so that whatever else the machine does weighs on both alike.
for i in $(seq "$runs"); do
    once -u "$good" >> "$work/one"
    once -v "$good" -c "$dead" --mirror "$corrupt" --mirror "$good" >> "$work/three"
done
one=$(median < "$work/one")
three=$(median < "$work/three")
grep -o "mirror [^ ]* set aside" "$work/err" | sort -u
spread() { sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%.2f-%.2f", v[1], v[NR] }'; }
printf '%-44s %7.2f s (runs %s s)\n' "os-install, the good mirror alone" "$one" "$(spread "$work/one")" \
    "os-install, dead + corrupt + good mirrors" "$three" "$(spread "$work/three")"
awk -v a="$three" -v b="$one" 'BEGIN { printf "ratio three mirrors / one: %.2f (target 1.0 within noise)\n", a / b }'
