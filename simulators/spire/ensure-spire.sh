#!/usr/bin/env bash
# Builds the pinned SPIRE server and agent once and caches them under $HOME (never in the repo).
# Prints the bin directory on stdout; progress goes to stderr. Re-runs are instant when both binaries are cached.
#
# SPIRE's source is used unmodified, from the Go module proxy. `go install pkg@version` cannot be used here because
# the proxy reachable from these machines refuses the module *list* endpoint that go install reads for deprecation
# notices, so the build goes through a throw-away module that requires github.com/spiffe/spire at the pinned version.
# One transitive dependency, github.com/Keyfactor/ejbca-go-client-sdk v1.1.0 (used only by SPIRE's `ejbca`
# UpstreamAuthority, which this suite never loads), is not served by that proxy; when its download fails the build
# substitutes v1.0.2 of the same module and says so.
set -euo pipefail
SPIRE_VERSION="${SPIRE_VERSION:-v1.15.3}"
ROOT="${SPIRE_CACHE_DIR:-$HOME/.cache/spire-hw}"
CACHE="$ROOT/spire-${SPIRE_VERSION}"
BIN="$CACHE/bin"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
if [ -x "$BIN/spire-server" ] && [ -x "$BIN/spire-agent" ]; then
  say "SPIRE ${SPIRE_VERSION} cached in $BIN"
  echo "$BIN"; exit 0
fi
command -v go >/dev/null || { echo "go is required to build SPIRE ${SPIRE_VERSION}" >&2; exit 1; }
say "building SPIRE ${SPIRE_VERSION} (spire-server, spire-agent) from the Go module proxy into $BIN; the first build takes several minutes"
mod="$CACHE/module"
mkdir -p "$mod" "$BIN"
cd "$mod"
if [ ! -f go.mod ]; then
  go mod init spire-hw-build >/dev/null 2>&1
fi
export CGO_ENABLED=1 GOFLAGS=-buildvcs=false GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
pkgs=("github.com/spiffe/spire/cmd/spire-server@${SPIRE_VERSION}" "github.com/spiffe/spire/cmd/spire-agent@${SPIRE_VERSION}")
if ! out=$(go get "${pkgs[@]}" 2>&1); then
  if grep -q 'Keyfactor/ejbca-go-client-sdk' <<<"$out"; then
    say "the proxy does not serve github.com/Keyfactor/ejbca-go-client-sdk v1.1.0 (only SPIRE's ejbca UpstreamAuthority uses it); substituting v1.0.2"
    go mod edit -replace github.com/Keyfactor/ejbca-go-client-sdk=github.com/Keyfactor/ejbca-go-client-sdk@v1.0.2
    go get "${pkgs[@]}" >&2
  else
    echo "$out" >&2; exit 1
  fi
fi
say "compiling (cgo on, for SQLite)"
go build -o "$BIN.partial/" github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent >&2
mv "$BIN.partial/spire-server" "$BIN.partial/spire-agent" "$BIN/" && rmdir "$BIN.partial"
say "SPIRE ${SPIRE_VERSION} built: $("$BIN/spire-server" --version 2>&1 | head -1)"
echo "$BIN"
