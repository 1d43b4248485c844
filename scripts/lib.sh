# Sourced by the scripts behind the README's two commands (scripts/test-all.sh, scripts/demo.sh) and
# scripts/ensure-deps.sh: the one place that says how to talk and which Node runs.
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# use_node LINE: put the pinned Node.js LTS of LINE (24 or 26; scripts/ensure-node.sh fetches it from the npm registry
# into the cache once) first on PATH, so that node, npx, the plugins' `#!/usr/bin/env node` and npm's scripts all run
# on it whatever `node` the machine has, and point node-gyp at its headers (no download from nodejs.org).
use_node() {
  local bin
  bin="$(bash "$(dirname "${BASH_SOURCE[0]}")/ensure-node.sh" "$1")"
  case ":$PATH:" in *":$bin:"*) ;; *) export PATH="$bin:$PATH" ;; esac
  export npm_config_nodedir="$(dirname "$bin")"
  say "using Node.js $(node --version) from $bin"
}

# SPIRE_BIN_DIR when it is set (an operator's own SPIRE v1.15.3), else the pinned build (simulators/spire).
spire_bin_dir() {
  if [[ -n "${SPIRE_BIN_DIR:-}" ]]; then
    [[ -x "$SPIRE_BIN_DIR/spire-server" && -x "$SPIRE_BIN_DIR/spire-agent" ]] || {
      echo "SPIRE_BIN_DIR=$SPIRE_BIN_DIR has no spire-server and spire-agent" >&2
      return 1
    }
    say "using SPIRE from SPIRE_BIN_DIR=$SPIRE_BIN_DIR (not building it)"
    echo "$SPIRE_BIN_DIR"
  else
    bash "$(dirname "${BASH_SOURCE[0]}")/../simulators/spire/ensure-spire.sh"
  fi
}
