#!/usr/bin/env bash
# The one command that runs every test on a fresh machine (README: `npm test`).
# Installs what is missing, builds, then runs unit, simulator (swtpm, SoftHSM2) and real-SPIRE tests
# in one `node --test` run per supported Node LTS line, so that one summary line per runtime covers all of them.
#   SPIRE_HW_NODE_LINES="24 26" (default): the Node LTS lines to run the whole suite on, each a pinned release
#   (scripts/ensure-node.sh). The build (tsc, the Node-API addons, the release executable) is made once and serves
#   every line.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
source scripts/lib.sh
read -r -a lines <<<"${SPIRE_HW_NODE_LINES:-24 26}"
SPIRE_HW_NODE="${lines[0]}" bash scripts/ensure-deps.sh
export SPIRE_BIN_DIR="$(spire_bin_dir 2>/dev/null)"
use_node "${lines[0]}"
say "checking the formatting (prettier --check; npm run format fixes it)"
npx --no-install prettier --check --log-level=warn .
say "building TypeScript (tsc) and the native addons"
npm run --silent build
say "building the release executable and bundle (npm run package, which the release tests run)"
node scripts/package.mjs
shopt -s globstar nullglob
files=(dist/test/**/*.test.js)
status=0
for line in "${lines[@]}"; do
  use_node "$line"
  say "running ${#files[@]} test files with node --test on Node.js $(node --version)"
  # No --test-force-exit: under CPU load it ended files early with status 0. Every test releases what it holds, and
  # scripts/test-counts.ts fails the run if a file reports fewer tests than test/expected-counts.json records.
  # node's own report (spec on a terminal, TAP otherwise, as without --test-reporter) keeps its summary on stdout.
  reporter=tap; [ -t 1 ] && reporter=spec
  node --test --test-concurrency=1 --test-timeout=600000 \
    --test-reporter="$reporter" --test-reporter-destination=stdout \
    --test-reporter=./dist/scripts/test-counts.js --test-reporter-destination=stderr "${files[@]}" && rc=0 || rc=$?
  say "Node.js $(node --version): node --test exited with $rc"
  ((rc == 0)) || status=$rc
done
exit "$status"
