#!/usr/bin/env bash
# Builds the NSS lookup addon used by the unix workload attestor when `name_source = "nss"`.
#   native/nss/build.sh [OUT_DIR]     (default: <repo>/dist/native/nss) -> OUT_DIR/nss.node
# Needs gcc and the Node headers (/usr/include/node, Debian package libnode-dev or nodejs headers;
# override with NODE_INCLUDE=<dir>). Exits non-zero with a clear message when either is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/dist/native/nss}"
inc="${NODE_INCLUDE:-}"
if [[ -z "$inc" ]]; then
  for d in /usr/include/node /usr/local/include/node "$(dirname "$(dirname "$(command -v node)")")/include/node"; do
    if [[ -f "$d/node_api.h" ]]; then inc="$d"; break; fi
  done
fi
if [[ -z "$inc" || ! -f "$inc/node_api.h" ]]; then
  echo "native/nss/build.sh: node_api.h not found (set NODE_INCLUDE)" >&2
  exit 1
fi
command -v "${CC:-gcc}" >/dev/null || { echo "native/nss/build.sh: ${CC:-gcc} not found" >&2; exit 1; }
mkdir -p "$out"
"${CC:-gcc}" -shared -fPIC -O2 -Wall -Wextra -Wno-unused-parameter -I"$inc" "$here/nss.c" -o "$out/nss.node.tmp"
mv -f "$out/nss.node.tmp" "$out/nss.node"
echo "$out/nss.node"
