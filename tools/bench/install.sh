#!/usr/bin/env bash
# os-install of a 20,000-file, 1 GiB release from a loopback HTTP server, beside
# `cp -a` of the same tree + sync and beside hashing it with `openssl dgst`, in one run.
# Prints wall times, the ratio against (cp -a + hash), and chainup's peak RSS.
# Env: FILES (20000), SIZE_MIB (1024). Needs GNU time (apt-get install time); serves with
# nginx when installed (apt-get install nginx-light), else python3 -m http.server.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=${FILES:-20000}
size=${SIZE_MIB:-1024}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --quiet --workspace
bin=$PWD/target/release
work=$(mktemp -d /var/tmp/chainup-bench.XXXXXX)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "generating $files files, $size MiB"
python3 tools/bench/gen_tree.py "$work/trees/os-core" 10 "$files" "$size"
printf '[bundles.os-core]\n' > "$work/bundles.toml"
KEYBITS=2048 certs/make-certs.sh "$work/certs" > /dev/null
"$bin/chainup-publish" --webroot "$work/web" --version 10 --trees "$work/trees" \
    --bundles "$work/bundles.toml" --cert "$work/certs/intermediate.pem" \
    --key "$work/certs/intermediate.key" --timestamp 1700000000 --compression zstd > /dev/null

read -r url server < <(tools/bench/serve.sh "$work/web" "$work")
echo "server: $url ($(command -v nginx > /dev/null && echo nginx || echo python3 http.server))"

# secs CMD...: runs CMD (its output to $work/log), prints "seconds peak-KiB"; fails with it.
secs() {
    /usr/bin/time -f '%e %M' -o "$work/t" "$@" > "$work/log" 2>&1 || { cat "$work/log" >&2; return 1; }
    cat "$work/t"
}
tree=$work/trees/os-core
find "$tree" -type f -print0 | xargs -0 cat > /dev/null   # same warm page cache for all

t=$(secs sh -c "cp -a '$tree' '$work/copy' && sync"); cp_s=${t% *}
t=$(secs sh -c "find '$tree' -type f -print0 | xargs -0 -n 256 openssl dgst -sha256"); hash_s=${t% *}
t=$(secs "$bin/chainup" os-install -p "$work/root" -S "$work/state" \
    -u "$url" --allow-insecure-http -C "$work/certs/Swupd_Root.pem" --no-progress)
ci_s=${t% *}; ci_kb=${t#* }
[ "$(cat "$work/root/usr/lib/os-release" | sed -n 's/VERSION_ID=//p')" = 10 ] || { echo "os-install failed" >&2; exit 1; }
t=$(secs "$bin/chainup" os-install -p "$work/root2" -S "$work/state2" \
    -u "file://$work/web" -C "$work/certs/Swupd_Root.pem" --no-progress); ci_file_s=${t% *}

ref=$(awk -v a="$cp_s" -v b="$hash_s" 'BEGIN { print a + b }')
printf '%-44s %7.2f s\n' "cp -a + sync" "$cp_s" "openssl dgst -sha256 of every file" "$hash_s" \
    "reference (cp -a + hashing)" "$ref" "chainup os-install (http://127.0.0.1)" "$ci_s" \
    "chainup os-install (file://)" "$ci_file_s"
awk -v c="$ci_s" -v r="$ref" 'BEGIN { printf "ratio os-install/reference: %.2f (target <= 2.0)\n", c / r }'
awk -v k="$ci_kb" 'BEGIN { printf "chainup peak RSS: %.1f MiB (target < 100)\n", k / 1024 }'
