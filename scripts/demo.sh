#!/usr/bin/env bash
# `npm run demo [-- --keep | --break devid-ca | --break hsm-pin | --help]` (README: "The two commands").
# Installs what a fresh machine lacks (scripts/ensure-deps.sh: Debian packages, npm ci, the pinned SPIRE build, all
# cached), builds, then runs the demo (scripts/demo/main.ts -> dist/scripts/demo/main.js). Flags are passed through.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
source scripts/lib.sh

# --help needs no installation when the demo is already built.
for a in "$@"; do
  if [[ "$a" == "-h" || "$a" == "--help" ]] && [ -f dist/scripts/demo/main.js ]; then
    exec node dist/scripts/demo/main.js "$@"
  fi
done

bash scripts/ensure-deps.sh
SPIRE_BIN_DIR="$(spire_bin_dir 2>/dev/null)"
export SPIRE_BIN_DIR
use_node "${SPIRE_HW_NODE:-24}"
say "building TypeScript (npm run build)"
if ! npm run --silent build >&2; then
  # tsc emits JavaScript even when it reports type errors (e.g. in a test file being edited); the demo checks what
  # it needs at run time and fails at the step that breaks, so run it anyway, saying so.
  say "warning: the build reported errors (above); running the demo with the JavaScript that tsc emitted"
  node scripts/postbuild.mjs
  [ -f dist/scripts/demo/main.js ] || { echo "dist/scripts/demo/main.js was not built" >&2; exit 1; }
fi
for a in "$@"; do
  if [[ "$a" == "--release" ]]; then
    say "building the release executable (npm run package)"
    node scripts/package.mjs
  fi
done
say "running the demo"
exec node dist/scripts/demo/main.js "$@"
