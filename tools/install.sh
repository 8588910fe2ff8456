#!/usr/bin/env bash
# Installs chainup into DESTDIR as a distribution package would lay it out:
#   usr/bin/chainup, usr/bin/chainup-publish       the release binaries
#   usr/share/man/man1/chainup*.1                  one page per subcommand (`chainup man DIR`),
#                                                  and chainup-publish's (`chainup-publish man DIR`)
#   usr/share/bash-completion/completions/chainup  \
#   usr/share/zsh/vendor-completions/_chainup       } shell completions (`chainup completions SHELL`)
#   usr/share/fish/vendor_completions.d/chainup.fish/
#   usr/lib/systemd/system/chainup-*.{service,timer}  the units of tools/systemd
# Usage: tools/install.sh DESTDIR   (DESTDIR=/ installs into the running system)
# BINARIES=DIR installs the binaries already built in DIR (the tests pass target/debug)
# instead of building the release ones.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 DESTDIR" >&2
    exit 2
fi
dest=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${BINARIES:-}" ]; then
    release=$BINARIES
else
    release=${CARGO_TARGET_DIR:-$repo/target}/release
    echo "building the release binaries (cargo build --release)"
    (cd "$repo" && cargo build --release --workspace --bins)
fi
for b in chainup chainup-publish; do
    [ -x "$release/$b" ] || { echo "$release/$b is not built" >&2; exit 1; }
done

install -d "$dest/usr/bin" "$dest/usr/share/man/man1" "$dest/usr/lib/systemd/system" \
    "$dest/usr/share/bash-completion/completions" "$dest/usr/share/zsh/vendor-completions" \
    "$dest/usr/share/fish/vendor_completions.d"
install -m 0755 "$release/chainup" "$release/chainup-publish" "$dest/usr/bin/"

# Generated from the clap definitions of the binaries just installed, so they match them.
pages=$(mktemp -d)
trap 'rm -rf "$pages"' EXIT
"$release/chainup" man "$pages"
"$release/chainup-publish" man "$pages"
install -m 0644 "$pages"/*.1 "$dest/usr/share/man/man1/"
"$release/chainup" completions bash > "$dest/usr/share/bash-completion/completions/chainup"
"$release/chainup" completions zsh > "$dest/usr/share/zsh/vendor-completions/_chainup"
"$release/chainup" completions fish > "$dest/usr/share/fish/vendor_completions.d/chainup.fish"

install -m 0644 "$repo"/tools/systemd/*.service "$repo"/tools/systemd/*.timer \
    "$dest/usr/lib/systemd/system/"

echo "installed into $dest:"
(cd "$dest" && find usr -type f | sort)
if [ "$dest" = / ]; then
    echo "enable the updates with: systemctl enable --now chainup-update.timer chainup-mark-good.service"
fi
