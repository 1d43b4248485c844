#!/usr/bin/env bash
# Builds one of SPIRE's built-in plugins as an EXTERNAL Go plugin, for the benchmarks' "floor for any external
# plugin" comparisons: bench/build-go-external.sh DIR, where DIR holds a main.go that serves the built-in with
# spire-plugin-sdk (bench/unix/go-external, bench/pkcs11/go-disk). Builds through a throw-away module, as
# simulators/spire/ensure-spire.sh builds SPIRE; prints the binary path. Cached by SPIRE version and main.go's hash.
set -euo pipefail
SPIRE_VERSION="${SPIRE_VERSION:-v1.15.3}"
here="$(cd "${1:?usage: bench/build-go-external.sh DIR}" && pwd)"
name="$(basename "$(dirname "$here")")-$(basename "$here")"
out="${SPIRE_CACHE_DIR:-$HOME/.cache/spire-hw}/bench-$name"
bin="$out/$name-${SPIRE_VERSION}-$(sha256sum "$here/main.go" | cut -c1-12)"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
printf '\033[1m==> building %s (SPIRE %s built-in as an external Go plugin) -> %s\033[0m\n' "$here/main.go" "$SPIRE_VERSION" "$bin" >&2
mod="$(mktemp -d)"
trap 'rm -rf "$mod"' EXIT
cp "$here/main.go" "$mod/"
cd "$mod"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
go mod init "bench-$name" >/dev/null 2>&1
# Only SPIRE's ejbca UpstreamAuthority uses this module and the proxy does not serve v1.1.0 (see ensure-spire.sh).
go mod edit -replace github.com/Keyfactor/ejbca-go-client-sdk=github.com/Keyfactor/ejbca-go-client-sdk@v1.0.2
go get "github.com/spiffe/spire@${SPIRE_VERSION}" >&2
go mod tidy >&2
mkdir -p "$out"
go build -o "$bin.tmp" . >&2
mv "$bin.tmp" "$bin"
echo "$bin"
