#!/usr/bin/env bash
# Installs what a fresh machine lacks for the tests and the demo, saying what it does.
# Idempotent: each step checks first and is skipped when already satisfied.
#   - Debian packages: swtpm, swtpm-tools, softhsm2, tpm2-tools, opensc, gnutls-bin (swtpm_localca needs certtool),
#     protobuf-compiler (only for `npm run gen:proto`), build-essential/python3 (pkcs11js is a node-gyp addon),
#     wine/wine64/gcc-mingw-w64-x86-64-win32 (the Windows tier under Wine, simulators/wine)
#   - the pinned Node.js LTS (scripts/ensure-node.sh, from the npm registry into $HOME/.cache/spire-hw)
#   - npm dependencies (npm ci)
#   - the pinned SPIRE v1.15.3 server and agent, built from the Go module proxy into a cache under $HOME, unless
#     SPIRE_BIN_DIR names an existing build
#   - the Wine tier (simulators/wine/ensure-wine.sh): a Wine prefix, node.exe, spire-agent.exe cross-compiled
# SPIRE_HW_NO_APT=1 never runs apt-get (an operator's host): missing packages are listed and the script stops.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
source "$here/scripts/lib.sh"

APT_PKGS=(swtpm swtpm-tools softhsm2 libsofthsm2 tpm2-tools opensc gnutls-bin postgresql protobuf-compiler make g++ python3 wine wine64 gcc-mingw-w64-x86-64-win32 g++-mingw-w64-x86-64-win32)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})) && [[ "${SPIRE_HW_NO_APT:-}" == 1 ]]; then
  echo "SPIRE_HW_NO_APT=1: not running apt-get; these Debian packages are missing: ${missing[*]}" >&2
  echo "install them (apt-get install ${missing[*]}), or unset SPIRE_HW_NO_APT to let this script do it" >&2
  exit 1
elif ((${#missing[@]})); then
  say "these Debian packages are missing and will be installed with apt-get (set SPIRE_HW_NO_APT=1 to stop instead): ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >&2
else
  say "Debian packages present (${APT_PKGS[*]})"
fi

# The only dependencies whose install scripts run (.npmrc sets ignore-scripts): pkcs11js builds its addon with
# node-gyp. protobufjs (under @grpc/grpc-js) has a postinstall that only prints a version-scheme hint: never run.
# esbuild (the release bundler) has a postinstall that only checks its binary, which @esbuild/linux-x64 provides: never run.
NPM_BUILD_SCRIPTS=(pkcs11js)

# Node: the pinned LTS (use_node puts it first on PATH for the rest of this script; callers do the same).
use_node "${SPIRE_HW_NODE:-24}"

cd "$here"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies (npm ci; no install scripts, see .npmrc)"
  npm ci --no-audit --no-fund >&2
  say "building the native dependencies that need their install script: ${NPM_BUILD_SCRIPTS[*]}"
  npm rebuild --ignore-scripts=false --no-audit --no-fund "${NPM_BUILD_SCRIPTS[@]}" >&2
else
  say "npm dependencies present"
fi

spire_bin_dir >/dev/null
bash "$here/simulators/wine/ensure-wine.sh" >/dev/null
