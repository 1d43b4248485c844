#!/usr/bin/env bash
# Installs what a fresh machine lacks for the tests and the demo, saying what it does.
# Idempotent: each step checks first and is skipped when already satisfied.
#   - Debian packages: swtpm, swtpm-tools, softhsm2, tpm2-tools, opensc, gnutls-bin (swtpm_localca needs certtool),
#     protobuf-compiler (only for `npm run gen:proto`), build-essential/python3 (pkcs11js is a node-gyp addon)
#   - npm dependencies (npm ci)
#   - the pinned SPIRE v1.15.3 server and agent, built from the Go module proxy into a cache under $HOME
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

APT_PKGS=(swtpm swtpm-tools softhsm2 libsofthsm2 tpm2-tools opensc gnutls-bin protobuf-compiler make g++ python3)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >&2
else
  say "Debian packages present (${APT_PKGS[*]})"
fi

# The only dependencies whose install scripts run (.npmrc sets ignore-scripts): pkcs11js builds its addon with
# node-gyp. protobufjs (under @grpc/grpc-js) has a postinstall that only prints a version-scheme hint: never run.
NPM_BUILD_SCRIPTS=(pkcs11js)

cd "$here"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies (npm ci; no install scripts, see .npmrc)"
  npm ci --no-audit --no-fund >&2
  say "building the native dependencies that need their install script: ${NPM_BUILD_SCRIPTS[*]}"
  npm rebuild --ignore-scripts=false --no-audit --no-fund "${NPM_BUILD_SCRIPTS[@]}" >&2
else
  say "npm dependencies present"
fi

bash "$here/simulators/spire/ensure-spire.sh" >&2
