#!/usr/bin/env bash
# The one command that runs every test on a fresh machine (README: `npm test`).
# Installs what is missing, builds, then runs unit, simulator (swtpm, SoftHSM2) and real-SPIRE tests
# in a single `node --test` run so that one summary line covers all of them.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
bash scripts/ensure-deps.sh
export SPIRE_BIN_DIR="$(bash simulators/spire/ensure-spire.sh 2>/dev/null)"
say "checking the formatting (prettier --check; npm run format fixes it)"
npx --no-install prettier --check --log-level=warn .
say "building TypeScript (tsc)"
npm run --silent build
shopt -s globstar nullglob
files=(dist/test/**/*.test.js)
say "running ${#files[@]} test files with node --test"
# No --test-force-exit: under CPU load it ended files early with status 0. Every test releases what it holds, and
# scripts/test-counts.ts fails the run if a file reports fewer tests than test/expected-counts.json records.
# node's own report (spec on a terminal, TAP otherwise, as without --test-reporter) keeps its summary on stdout.
reporter=tap; [ -t 1 ] && reporter=spec
exec node --test --test-concurrency=1 --test-timeout=600000 \
  --test-reporter="$reporter" --test-reporter-destination=stdout \
  --test-reporter=./dist/scripts/test-counts.js --test-reporter-destination=stderr "${files[@]}"
