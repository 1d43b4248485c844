#!/usr/bin/env bash
# Builds the Windows (x64) Node-API addons of native/, cross-compiled with mingw-w64:
#   native/build-win-addon.sh NAME [OUT_DIR]   native/NAME/NAME.c + native/win/napi-win.c -> OUT_DIR/NAME.node
#                                              (default OUT_DIR: <repo>/dist/native-win/NAME)
#   native/build-win-addon.sh all              every Windows addon, the fake tbs.dll and the test helper exe
#   native/build-win-addon.sh fake-tbs [DIR]   native/tbs/fake/fake-tbs.c -> DIR/tbs.dll (default dist/native-win/fake-tbs)
#   native/build-win-addon.sh test-helpers [DIR]  native/winproc/test/*.c -> DIR/*.exe (default dist/native-win/test)
#   native/build-win-addon.sh check FILE...    fails unless FILE imports only allowed system DLLs (never node.exe)
# Addons: winproc (the `windows` workload attestor's token queries), tbs (TPM Base Services for lib/tpm2).
# Needs x86_64-w64-mingw32-gcc (Debian package gcc-mingw-w64-x86-64-win32) and the Node headers (node_api.h, from
# the Node used to build; override with NODE_INCLUDE=<dir>). No import library for node.exe is used: see napi-win.h.
set -euo pipefail
native="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$native/.." && pwd)"
WIN_ADDONS=(winproc tbs)
CC="${MINGW_CC:-x86_64-w64-mingw32-gcc}"
OBJDUMP="${MINGW_OBJDUMP:-x86_64-w64-mingw32-objdump}"
# What a Windows addon may import: system DLLs only.
ALLOWED_DLLS='^(kernel32|advapi32|msvcrt|ws2_32)\.dll$'

need_cc() {
  command -v "$CC" >/dev/null || {
    echo "native/build-win-addon.sh: $CC not found: install the Debian package gcc-mingw-w64-x86-64-win32 (apt-get install gcc-mingw-w64-x86-64-win32)" >&2
    exit 1
  }
}

node_include() {
  local inc="${NODE_INCLUDE:-}"
  if [[ -z "$inc" ]]; then
    for d in "$(dirname "$(dirname "$(command -v node)")")/include/node" /usr/include/node /usr/local/include/node; do
      if [[ -f "$d/node_api.h" ]]; then inc="$d"; break; fi
    done
  fi
  [[ -n "$inc" && -f "$inc/node_api.h" ]] || { echo "native/build-win-addon.sh: node_api.h not found (set NODE_INCLUDE)" >&2; exit 1; }
  echo "$inc"
}

# The DLL names FILE imports, lower case, one a line.
imports() { "$OBJDUMP" -p "$1" | sed -n 's/^[[:space:]]*DLL Name: //p' | tr 'A-Z' 'a-z'; }

check() {
  local f bad=0
  for f in "$@"; do
    local dlls
    dlls="$(imports "$f")"
    while read -r d; do
      [[ -z "$d" ]] && continue
      if ! [[ "$d" =~ $ALLOWED_DLLS ]]; then echo "native/build-win-addon.sh: $f imports $d" >&2; bad=1; fi
    done <<<"$dlls"
  done
  return $bad
}

CFLAGS=(-O2 -Wall -Wextra -Wno-unused-parameter -municode -D_WIN32_WINNT=0x0A00 -DUNICODE -D_UNICODE)
# -static-libgcc: no libgcc DLL beside the addon; the C runtime is msvcrt (part of Windows).
LDFLAGS=(-shared -static-libgcc -Wl,--no-insert-timestamp)

build_addon() {
  local name="$1" out="${2:-$repo/dist/native-win/$1}" libs=()
  [[ -f "$native/$name/$name.c" ]] || { echo "native/build-win-addon.sh: no $native/$name/$name.c" >&2; exit 1; }
  case "$name" in
    winproc) libs=(-ladvapi32) ;;
    tbs) libs=() ;;
  esac
  need_cc
  local inc
  inc="$(node_include)"
  mkdir -p "$out"
  "$CC" "${CFLAGS[@]}" -I"$inc" "${LDFLAGS[@]}" "$native/$name/$name.c" "$native/win/napi-win.c" -o "$out/$name.node.tmp" "${libs[@]}"
  check "$out/$name.node.tmp"
  mv -f "$out/$name.node.tmp" "$out/$name.node"
  echo "$out/$name.node"
}

build_fake_tbs() {
  local out="${1:-$repo/dist/native-win/fake-tbs}"
  need_cc
  mkdir -p "$out"
  "$CC" "${CFLAGS[@]}" "${LDFLAGS[@]}" "$native/tbs/fake/fake-tbs.c" -o "$out/tbs.dll.tmp" -lws2_32
  check "$out/tbs.dll.tmp"
  mv -f "$out/tbs.dll.tmp" "$out/tbs.dll"
  echo "$out/tbs.dll"
}

build_test_helpers() {
  local out="${1:-$repo/dist/native-win/test}" c
  need_cc
  mkdir -p "$out"
  for c in "$native"/winproc/test/*.c; do
    local exe
    exe="$out/$(basename "$c" .c).exe"
    "$CC" "${CFLAGS[@]}" -static-libgcc "$c" -o "$exe.tmp" -ladvapi32
    mv -f "$exe.tmp" "$exe"
    echo "$exe"
  done
}

cmd="${1:?usage: native/build-win-addon.sh NAME|all|fake-tbs|test-helpers|check [OUT_DIR|FILE...]}"
case "$cmd" in
  all)
    for a in "${WIN_ADDONS[@]}"; do build_addon "$a"; done
    build_fake_tbs
    build_test_helpers
    ;;
  fake-tbs) build_fake_tbs "${2:-}" ;;
  test-helpers) build_test_helpers "${2:-}" ;;
  check)
    shift
    check "$@"
    ;;
  *) build_addon "$cmd" "${2:-}" ;;
esac
