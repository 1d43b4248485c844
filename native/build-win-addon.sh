#!/usr/bin/env bash
# Builds the Windows (x64) Node-API addons of native/, cross-compiled with mingw-w64:
#   native/build-win-addon.sh NAME [OUT_DIR]   native/NAME/NAME.c + native/win/napi-win.c -> OUT_DIR/NAME.node
#                                              (default OUT_DIR: <repo>/dist/native-win/NAME)
#   native/build-win-addon.sh pkcs11 [OUT_DIR] pkcs11js's binding from node_modules/pkcs11js/src (default dist/native-win/pkcs11)
#   native/build-win-addon.sh all              every Windows addon, pkcs11js's binding, the fake tbs.dll and the test helper exe
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

# pkcs11js's own binding (node_modules/pkcs11js/src, plain C++ over Node-API, with its own LoadLibrary code for
# Windows), cross-built for the PKCS#11 plugins on Windows. Its sources include <node_api.h> as they are, so calls
# go through `__imp_napi_*` import slots (what a DLL import would be); the slots it needs are read from its object
# files with nm and filled from the host executable by a constructor that runs when the DLL loads (the same lookup as
# napi-win.c, for code we do not edit). A function the host does not export leaves a NULL slot and fails the load.
build_pkcs11js() {
  local out="${1:-$repo/dist/native-win/pkcs11}" src="$repo/node_modules/pkcs11js"
  local CXX="${MINGW_CXX:-x86_64-w64-mingw32-g++}" NM="${MINGW_NM:-x86_64-w64-mingw32-nm}"
  command -v "$CXX" >/dev/null || {
    echo "native/build-win-addon.sh: $CXX not found: install the Debian package g++-mingw-w64-x86-64-win32 (scripts/ensure-deps.sh does)" >&2
    exit 1
  }
  [[ -f "$src/src/main.cpp" ]] || { echo "native/build-win-addon.sh: $src/src is missing (npm ci)" >&2; exit 1; }
  # Up to date: nothing to do (it is third-party code that changes only with its npm version).
  if [[ -s "$out/pkcs11.node" && "$out/pkcs11.node" -nt "$src/package.json" && "$out/pkcs11.node" -nt "$0" ]]; then
    echo "$out/pkcs11.node"
    return
  fi
  local inc tmp
  inc="$(node_include)"
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  local objs=() f
  for f in dl common main; do # the sources of its binding.gyp
    "$CXX" -std=c++17 -O2 -w -DNAPI_DISABLE_CPP_EXCEPTIONS -DNAPI_VERSION=8 -DBUILDING_NODE_EXTENSION \
      -DNODE_GYP_MODULE_NAME=pkcs11 -I"$inc" -I"$src/includes" -c "$src/src/$f.cpp" -o "$tmp/$f.o"
    objs+=("$tmp/$f.o")
  done
  local names
  names="$("$NM" -u "${objs[@]}" | grep -o '__imp_napi_[A-Za-z0-9_]*' | sort -u | sed 's/^__imp_//')"
  [[ -n "$names" ]] || { echo "native/build-win-addon.sh: pkcs11js uses no Node-API function?" >&2; exit 1; }
  {
    echo '#include <windows.h>'
    for n in $names; do echo "void *__imp_$n;"; done
    echo 'static const char *const names[] = {'
    for n in $names; do echo "  \"$n\","; done
    echo '};'
    echo 'static void **const slots[] = {'
    for n in $names; do echo "  &__imp_$n,"; done
    echo '};'
    echo '__attribute__((constructor(101))) static void resolve(void) {'
    echo '  HMODULE host = GetModuleHandleW(NULL);'
    echo '  for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) *slots[i] = (void *)GetProcAddress(host, names[i]);'
    echo '}'
  } >"$tmp/napi-slots.c"
  "$CC" -O2 -c "$tmp/napi-slots.c" -o "$tmp/napi-slots.o"
  mkdir -p "$out"
  "$CXX" -shared -static-libgcc -static-libstdc++ -Wl,--no-insert-timestamp "${objs[@]}" "$tmp/napi-slots.o" \
    -o "$out/pkcs11.node.tmp"
  check "$out/pkcs11.node.tmp"
  mv -f "$out/pkcs11.node.tmp" "$out/pkcs11.node"
  echo "$out/pkcs11.node"
}

cmd="${1:?usage: native/build-win-addon.sh NAME|pkcs11|all|fake-tbs|test-helpers|check [OUT_DIR|FILE...]}"
case "$cmd" in
  all)
    for a in "${WIN_ADDONS[@]}"; do build_addon "$a"; done
    build_pkcs11js
    build_fake_tbs
    build_test_helpers
    ;;
  pkcs11) build_pkcs11js "${2:-}" ;;
  fake-tbs) build_fake_tbs "${2:-}" ;;
  test-helpers) build_test_helpers "${2:-}" ;;
  check)
    shift
    check "$@"
    ;;
  *) build_addon "$cmd" "${2:-}" ;;
esac
