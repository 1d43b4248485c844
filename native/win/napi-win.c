// The run-time half of napi-win.h: the function pointers and the one lookup in the host executable.
#include "napi-win.h"

#include <windows.h>

#define NAPI_WIN_DEFINE(name) __typeof__(name) *napi_win_p_##name = NULL;
NAPI_WIN_FUNCTIONS(NAPI_WIN_DEFINE)
#undef NAPI_WIN_DEFINE

static INIT_ONCE resolve_once = INIT_ONCE_STATIC_INIT;
static const char *resolve_missing = NULL;

static BOOL CALLBACK resolve_all(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once;
  (void)param;
  (void)ctx;
  HMODULE host = GetModuleHandleW(NULL); // the executable that loaded us: node.exe or a renamed Node SEA
#define NAPI_WIN_LOOKUP(name)                                                                                          \
  if (resolve_missing == NULL) {                                                                                       \
    FARPROC p_ = host ? GetProcAddress(host, #name) : NULL;                                                            \
    if (p_ == NULL)                                                                                                    \
      resolve_missing = "Node-API function " #name " is not exported by the host executable";                         \
    else                                                                                                               \
      napi_win_p_##name = (__typeof__(name) *)(void *)p_;                                                              \
  }
  NAPI_WIN_FUNCTIONS(NAPI_WIN_LOOKUP)
#undef NAPI_WIN_LOOKUP
  // napi_throw_error is needed to report a failure; keep it even if a later function is missing.
  return TRUE;
}

const char *napi_win_resolve(void) {
  InitOnceExecuteOnce(&resolve_once, resolve_all, NULL, NULL);
  return resolve_missing;
}
