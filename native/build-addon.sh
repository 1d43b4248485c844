#!/usr/bin/env bash
# Builds one N-API addon of native/: native/NAME/NAME.c -> OUT_DIR/NAME.node
#   native/build-addon.sh NAME [OUT_DIR]     (default OUT_DIR: <repo>/dist/native/NAME)
# Addons: nss (unix workload attestor, `name_source = "nss"`), pkcs11sign (PKCS#11 KeyManager signing off the
# event loop).
# Needs gcc and the Node headers (/usr/include/node, Debian package libnode-dev or nodejs headers;
# override with NODE_INCLUDE=<dir>). Exits non-zero with a clear message when either is missing.
set -euo pipefail
native="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$native/.." && pwd)"
name="${1:?usage: native/build-addon.sh NAME [OUT_DIR]}"
here="$native/$name"
[[ -f "$here/$name.c" ]] || { echo "native/build-addon.sh: no $here/$name.c" >&2; exit 1; }
out="${2:-$repo/dist/native/$name}"
inc="${NODE_INCLUDE:-}"
if [[ -z "$inc" ]]; then
  for d in /usr/include/node /usr/local/include/node "$(dirname "$(dirname "$(command -v node)")")/include/node"; do
    if [[ -f "$d/node_api.h" ]]; then inc="$d"; break; fi
  done
fi
if [[ -z "$inc" || ! -f "$inc/node_api.h" ]]; then
  echo "native/build-addon.sh: node_api.h not found (set NODE_INCLUDE)" >&2
  exit 1
fi
command -v "${CC:-gcc}" >/dev/null || { echo "native/build-addon.sh: ${CC:-gcc} not found" >&2; exit 1; }
mkdir -p "$out"
"${CC:-gcc}" -shared -fPIC -O2 -Wall -Wextra -Wno-unused-parameter -I"$inc" "$here/$name.c" -o "$out/$name.node.tmp" -ldl -lpthread
mv -f "$out/$name.node.tmp" "$out/$name.node"
echo "$out/$name.node"
