#!/usr/bin/env bash
# Prepares everything the Wine tier of the tests needs and caches it under $SPIRE_HW_CACHE/wine (default
# $HOME/.cache/spire-hw/wine, never in the repository). Idempotent: each step checks its stamp first. Progress goes to
# stderr; stdout is the cache dir, which holds env.json (read by simulators/wine/index.ts):
#   prefix/                   a 64-bit Wine prefix in Windows 10 mode, headless, with the ProcessPrng shim in system32
#   node-v<ver>/node.exe      node.exe of each pinned line (scripts/ensure-node.sh --windows), adjusted for Wine 8.0
#                             only when the unmodified one does not start (see below)
#   env.json                  { prefix, wine, wineserver, wineVersion, node: {24, 26}, spireAgentExe }
# spire-agent.exe v1.15.3 is cross-compiled (GOOS=windows, CGO_ENABLED=0) in the throw-away module of
# simulators/spire/ensure-spire.sh into $SPIRE_HW_CACHE/spire-v1.15.3/windows/.
#
# Wine 8.0 facts behind the steps:
#   - Debian's prefix defaults to Windows 7, and node.exe >= 20 refuses to start there: `winecfg -v win10`.
#   - Go >= 1.22 Windows binaries import ProcessPrng from bcryptprimitives.dll, which Wine only has from 8.13: a shim
#     DLL (shim/bcryptprimitives.c, built with x86_64-w64-mingw32-gcc) goes into system32.
#   - V8 in Node >= 24 reserves address space with VirtualAlloc2 placeholders when kernelbase exports VirtualAlloc2;
#     Wine 8.0 exports it but cannot make placeholders, so node.exe dies at start-up ("SegmentedTable::
#     InitializeTable (subspace allocation)"). V8 finds the function with GetProcAddress by name and has a fallback
#     for Windows versions without it. When the unmodified node.exe fails, the cached copy has that one name string
#     renamed (VirtualAlloc2 -> VirtualAllocX, same length), so V8 takes its fallback; nothing else is changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
cache="${SPIRE_HW_CACHE:-$HOME/.cache/spire-hw}"
W="$cache/wine"
SPIRE_VERSION=v1.15.3
mkdir -p "$W"

WINE="$(command -v wine64 || true)"
[[ -n "$WINE" ]] || WINE=/usr/lib/wine/wine64
WINESERVER=/usr/lib/wine/wineserver64
[[ -x "$WINE" && -x "$WINESERVER" ]] || { echo "ensure-wine.sh: wine64 is not installed (apt-get install wine wine64)" >&2; exit 1; }
command -v x86_64-w64-mingw32-gcc >/dev/null || { echo "ensure-wine.sh: x86_64-w64-mingw32-gcc is not installed (apt-get install gcc-mingw-w64-x86-64-win32)" >&2; exit 1; }
wine_version="$("$WINE" --version)"

# One ensure at a time (two test files may start at once on a fresh machine).
exec 9>"$W/.lock"
flock 9

# Headless and quiet: no X display, no Wine debug channels, no Mono/Gecko install prompts.
unset DISPLAY WAYLAND_DISPLAY
export WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="

# ---- the ProcessPrng shim
shim_src="$here/shim/bcryptprimitives.c"
shim_sum="$(sha256sum "$shim_src" | cut -c1-16)"
shim="$W/shim-$shim_sum/bcryptprimitives.dll"
if [[ ! -s "$shim" ]]; then
  say "building the ProcessPrng shim (bcryptprimitives.dll) with x86_64-w64-mingw32-gcc"
  mkdir -p "$(dirname "$shim")"
  x86_64-w64-mingw32-gcc -shared -O2 -Wall -Wextra -Werror -s -static-libgcc -o "$shim.partial" "$shim_src" -lbcrypt
  mv "$shim.partial" "$shim"
fi

# ---- the prefix (stamp: Wine version + shim)
prefix="$W/prefix"
want_stamp="$wine_version win10 shim-$shim_sum"
if [[ "$(cat "$prefix/.spire-hw-stamp" 2>/dev/null)" != "$want_stamp" ]]; then
  say "creating a Wine prefix ($wine_version, win64, Windows 10 mode, ProcessPrng shim) in $prefix"
  t0=$SECONDS
  tmpp="$W/prefix.partial"
  rm -rf "$tmpp"
  (
    export WINEPREFIX="$tmpp"
    "$WINE" wineboot --init >/dev/null 2>&1
    "$WINE" winecfg -v win10 >/dev/null 2>&1
    cp "$shim" "$tmpp/drive_c/windows/system32/bcryptprimitives.dll"
    # Wait for this prefix's wineserver to write the registry and exit.
    "$WINESERVER" -w
  )
  # Debian's Wine records the wineserver's private /tmp/wine-XXXXXX dir in <prefix>/wineserver; a copy must not
  # inherit it.
  rm -rf "/tmp/$(cat "$tmpp/wineserver" 2>/dev/null || echo none)" "$tmpp/wineserver"
  grep -q '"CurrentBuild"="1' "$tmpp/system.reg" || { echo "ensure-wine.sh: the prefix is not in Windows 10 mode" >&2; exit 1; }
  echo "$want_stamp" >"$tmpp/.spire-hw-stamp"
  rm -rf "$prefix"
  mv "$tmpp" "$prefix"
  say "prefix ready in $((SECONDS - t0)) s ($(du -sh "$prefix" | cut -f1))"
fi

rm -f "$prefix/wineserver"

# Runs WINE ARGS... in a throw-away hard-linked copy of the prefix (the cached one is never run in, see index.ts),
# with stdout+stderr into a file (node.exe cannot write to a Unix pipe under Wine 8.0); prints the output.
run_in_scratch() {
  local scratch out rc=0
  scratch="$(mktemp -d "${TMPDIR:-/tmp}/wine-ensure.XXXXXX")"
  cp -al "$prefix/." "$scratch/"
  for f in system.reg user.reg userdef.reg .update-timestamp; do rm -f "$scratch/$f" && cp -p "$prefix/$f" "$scratch/$f"; done
  out="$scratch/.out"
  WINEPREFIX="$scratch" timeout 120 "$WINE" "$@" >"$out" 2>&1 </dev/null || rc=$?
  WINEPREFIX="$scratch" "$WINESERVER" -k 2>/dev/null || true
  WINEPREFIX="$scratch" "$WINESERVER" -w 2>/dev/null || true
  [[ -s "$scratch/wineserver" ]] && rm -rf "/tmp/$(cat "$scratch/wineserver")"
  cat "$out"
  rm -rf "$scratch"
  return $rc
}

# ---- node.exe per pinned line
declare -A NODE_EXE=()
for line in 24 26; do
  src="$(bash "$repo/scripts/ensure-node.sh" --windows "$line")/node.exe"
  ver="$(basename "$(dirname "$(dirname "$src")")")"
  ver="${ver#node-win-v}"
  dst_dir="$W/node-v$ver"
  dst="$dst_dir/node.exe"
  stamp="$wine_version $(stat -c '%s %Y' "$src")"
  if [[ "$(cat "$dst_dir/.stamp" 2>/dev/null)" != "$stamp" || ! -s "$dst" ]]; then
    rm -rf "$dst_dir" && mkdir -p "$dst_dir"
    probe='require("fs").writeSync(1, process.platform + " " + process.version)'
    cp "$src" "$dst.partial"
    got="$(run_in_scratch "$dst.partial" -e "$probe" || true)"
    if [[ "$got" != "win32 v$ver" ]]; then
      say "node.exe $ver does not start under $wine_version (V8 needs VirtualAlloc2 placeholders); caching a copy with V8's lookup of VirtualAlloc2 renamed"
      node "$here/v8-fallback.cjs" "$src" "$dst.partial"
      got="$(run_in_scratch "$dst.partial" -e "$probe" || true)"
      [[ "$got" == "win32 v$ver" ]] || { echo "ensure-wine.sh: node.exe $ver does not run under Wine: $got" >&2; exit 1; }
    fi
    mv "$dst.partial" "$dst"
    echo "$stamp" >"$dst_dir/.stamp"
    say "node.exe $ver runs under Wine ($got)"
  fi
  NODE_EXE[$line]="$dst"
done

# ---- spire-agent.exe
spire_bin="$(bash "$repo/simulators/spire/ensure-spire.sh")"
mod="$(dirname "$spire_bin")/module"
agent_dir="$(dirname "$spire_bin")/windows"
agent="$agent_dir/spire-agent.exe"
if [[ ! -s "$agent" ]]; then
  [[ -f "$mod/go.mod" ]] || { echo "ensure-wine.sh: no SPIRE build module in $mod (run simulators/spire/ensure-spire.sh)" >&2; exit 1; }
  say "cross-compiling spire-agent.exe $SPIRE_VERSION (GOOS=windows GOARCH=amd64 CGO_ENABLED=0) in $mod; the first build takes several minutes"
  t0=$SECONDS
  mkdir -p "$agent_dir"
  (cd "$mod" && GOOS=windows GOARCH=amd64 CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN="${GOTOOLCHAIN:-local}" \
    go build -o "$agent.partial" github.com/spiffe/spire/cmd/spire-agent >&2)
  mv "$agent.partial" "$agent"
  say "spire-agent.exe built in $((SECONDS - t0)) s ($(du -h "$agent" | cut -f1))"
fi
if [[ "$(cat "$agent_dir/.checked" 2>/dev/null)" != "$wine_version $(stat -c '%s %Y' "$agent")" ]]; then
  got="$(run_in_scratch "$agent" --version || true)"
  [[ "$got" == *"${SPIRE_VERSION#v}"* ]] || { echo "ensure-wine.sh: spire-agent.exe does not run under Wine: $got" >&2; exit 1; }
  echo "$wine_version $(stat -c '%s %Y' "$agent")" >"$agent_dir/.checked"
  say "spire-agent.exe runs under Wine (version ${got//[$'\r\n']/})"
fi

node -e '
  const [file, prefix, wine, wineserver, wineVersion, n24, n26, agent] = process.argv.slice(1);
  const v = { prefix, wine, wineserver, wineVersion, node: { 24: n24, 26: n26 }, spireAgentExe: agent };
  require("fs").writeFileSync(file + ".partial", JSON.stringify(v, null, 2) + "\n");
  require("fs").renameSync(file + ".partial", file);' \
  "$W/env.json" "$prefix" "$WINE" "$WINESERVER" "$wine_version" "${NODE_EXE[24]}" "${NODE_EXE[26]}" "$agent"
say "Wine tier ready in $W"
echo "$W"
