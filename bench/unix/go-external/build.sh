#!/usr/bin/env bash
# Builds bench/unix/go-external (SPIRE's own unix attestor as an external plugin) through a throw-away module, as
# simulators/spire/ensure-spire.sh builds SPIRE; prints the binary path. Cached by SPIRE version.
set -euo pipefail
SPIRE_VERSION="${SPIRE_VERSION:-v1.15.3}"
here="$(cd "$(dirname "$0")" && pwd)"
out="${SPIRE_CACHE_DIR:-$HOME/.cache/spire-hw}/bench-unix-go-external"
bin="$out/unix-go-${SPIRE_VERSION}-$(sha256sum "$here/main.go" | cut -c1-12)"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
printf '\033[1m==> building SPIRE %s unix attestor as an external Go plugin -> %s\033[0m\n' "$SPIRE_VERSION" "$bin" >&2
mod="$(mktemp -d)"
trap 'rm -rf "$mod"' EXIT
cp "$here/main.go" "$mod/"
cd "$mod"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
go mod init bench-unix-go-external >/dev/null 2>&1
# Only SPIRE's ejbca UpstreamAuthority uses this module and the proxy does not serve v1.1.0 (see ensure-spire.sh).
go mod edit -replace github.com/Keyfactor/ejbca-go-client-sdk=github.com/Keyfactor/ejbca-go-client-sdk@v1.0.2
go get "github.com/spiffe/spire@${SPIRE_VERSION}" >&2
go mod tidy >&2
mkdir -p "$out"
go build -o "$bin.tmp" . >&2
mv "$bin.tmp" "$bin"
echo "$bin"
