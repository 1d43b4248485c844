// Windows addon for the `windows` workload attestor: the process-token queries of SPIRE's built-in attestor, in its
// order, as one synchronous call (each step is a local kernel/LSA query; group-name lookups can be slow against a
// domain controller, which is why the caller can skip them).
//
//   queryProcess(pid: number, opts?: { path?: boolean; names?: boolean }): {
//     userSid: string;
//     user?: { account: string; domain: string };      // LookupAccountSidW(NULL, user SID); always attempted
//     userLookupError?: number;                        // Win32 error when that lookup failed (e.g. 1332)
//     groups: Array<{ sid: string; attributes: number; account?: string; domain?: string; lookupError?: number }>;
//     path?: string;                                   // QueryFullProcessImageNameW(h, 0, …) when opts.path
//   }
//   enableSeDebugPrivilege(): { ok: boolean; code?: number }
//
// Steps: OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION) -> OpenProcessToken(TOKEN_QUERY) -> TokenUser -> lookup of the
// user SID -> TokenGroups -> lookup of each group SID (only when opts.names) -> QueryFullProcessImageNameW (only when
// opts.path). A failing step throws an Error with own properties `call` (the step), `code` (Win32 error) and `message`
// (the system's text for the code, as Go's windows.Errno.Error() gives it). Handles are always closed. Bad arguments
// throw a TypeError.
#include "../win/napi-win.h"

#include <windows.h>
#include <sddl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_INFO_MAX (1u << 20)   // 1 MiB: far above any real token (a few KiB with hundreds of groups)
#define NAME_MAX_CHARS 4096u        // account and domain names are at most a few hundred characters
#define MAX_LONG_PATH 32768u        // QueryFullProcessImageNameW buffer, characters (as the built-in)

// ---- small JS helpers ---------------------------------------------------------------------------------------------

static napi_value str16(napi_env env, const wchar_t *s) {
  napi_value v = NULL;
  napi_create_string_utf16(env, (const char16_t *)s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static void set_u32(napi_env env, napi_value obj, const char *key, uint32_t n) {
  napi_value v;
  if (napi_create_uint32(env, n, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}

static void set_str16(napi_env env, napi_value obj, const char *key, const wchar_t *s) {
  napi_value v = str16(env, s);
  if (v) napi_set_named_property(env, obj, key, v);
}

// The system message for a Win32 error, as Go's Errno.Error(): English (US) if available, else the default language,
// trailing CR/LF trimmed, "winapi error #N" when the system has no text.
static napi_value win32_message(napi_env env, DWORD code) {
  wchar_t buf[300];
  DWORD flags = FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_ARGUMENT_ARRAY | FORMAT_MESSAGE_IGNORE_INSERTS;
  DWORD n = FormatMessageW(flags, NULL, code, MAKELANGID(LANG_ENGLISH, SUBLANG_ENGLISH_US), buf, 300, NULL);
  if (n == 0) n = FormatMessageW(flags, NULL, code, 0, buf, 300, NULL);
  if (n == 0) {
    char a[48];
    snprintf(a, sizeof a, "winapi error #%lu", (unsigned long)code);
    napi_value v = NULL;
    napi_create_string_utf8(env, a, NAPI_AUTO_LENGTH, &v);
    return v;
  }
  while (n > 0 && (buf[n - 1] == L'\n' || buf[n - 1] == L'\r')) n--;
  napi_value v = NULL;
  napi_create_string_utf16(env, (const char16_t *)buf, n, &v);
  return v;
}

// Throws Error{ call, code, message }.
static void throw_win32(napi_env env, const char *call, DWORD code) {
  napi_value msg = win32_message(env, code), err, v;
  if (msg == NULL || napi_create_error(env, NULL, msg, &err) != napi_ok) {
    napi_throw_error(env, NULL, call);
    return;
  }
  if (napi_create_string_utf8(env, call, NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, err, "call", v);
  set_u32(env, err, "code", code);
  napi_throw(env, err);
}

// ---- argument parsing ----------------------------------------------------------------------------------------------

// An own-or-inherited boolean property; undefined counts as false, anything else but a boolean is a TypeError.
static int opt_bool(napi_env env, napi_value opts, const char *key, bool *out) {
  napi_value v;
  napi_valuetype t;
  *out = false;
  if (napi_get_named_property(env, opts, key, &v) != napi_ok) return 0; // a throwing getter: exception pending
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_undefined) return 1;
  if (t != napi_boolean) {
    char m[64];
    snprintf(m, sizeof m, "opts.%s must be a boolean", key);
    napi_throw_type_error(env, NULL, m);
    return 0;
  }
  return napi_get_value_bool(env, v, out) == napi_ok;
}

static int arg_pid(napi_env env, napi_value v, DWORD *pid) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok ||
      !(d >= 0 && d <= 4294967295.0) || d != (double)(uint32_t)d) {
    napi_throw_type_error(env, NULL, "pid must be an integer from 0 to 4294967295");
    return 0;
  }
  *pid = (DWORD)d;
  return 1;
}

// ---- Win32 steps ---------------------------------------------------------------------------------------------------

// GetTokenInformation with a size probe; the size is capped. Returns the malloc'd buffer or NULL with *err set.
static void *token_info(HANDLE token, TOKEN_INFORMATION_CLASS cls, DWORD *err) {
  DWORD need = 0;
  for (int attempt = 0; attempt < 4; attempt++) {
    if (GetTokenInformation(token, cls, NULL, 0, &need)) {
      *err = ERROR_INVALID_DATA; // cannot succeed with no buffer
      return NULL;
    }
    DWORD e = GetLastError();
    if (e != ERROR_INSUFFICIENT_BUFFER) {
      *err = e;
      return NULL;
    }
    if (need == 0 || need > TOKEN_INFO_MAX) {
      *err = ERROR_NOT_ENOUGH_MEMORY;
      return NULL;
    }
    void *buf = malloc(need);
    if (buf == NULL) {
      *err = ERROR_NOT_ENOUGH_MEMORY;
      return NULL;
    }
    DWORD got = 0;
    if (GetTokenInformation(token, cls, buf, need, &got)) return buf;
    e = GetLastError();
    free(buf);
    if (e != ERROR_INSUFFICIENT_BUFFER) { // the token grew in between: probe again
      *err = e;
      return NULL;
    }
  }
  *err = ERROR_INSUFFICIENT_BUFFER;
  return NULL;
}

// Sets sid: string (ConvertSidToStringSidW). Returns 0 with *err on failure.
static int set_sid(napi_env env, napi_value obj, const char *key, PSID sid, DWORD *err) {
  wchar_t *s = NULL;
  if (!ConvertSidToStringSidW(sid, &s)) {
    *err = GetLastError();
    return 0;
  }
  set_str16(env, obj, key, s);
  LocalFree(s);
  return 1;
}

// LookupAccountSidW(NULL, sid): sets `account` and `domain` on obj, or returns the Win32 error (0 = found).
static DWORD lookup_sid(napi_env env, napi_value obj, PSID sid) {
  wchar_t name_s[256], dom_s[256];
  wchar_t *name = name_s, *dom = dom_s;
  DWORD name_n = 256, dom_n = 256, rc = 0;
  SID_NAME_USE use;
  if (!LookupAccountSidW(NULL, sid, name, &name_n, dom, &dom_n, &use)) {
    rc = GetLastError();
    if (rc != ERROR_INSUFFICIENT_BUFFER) return rc;
    if (name_n == 0 || dom_n == 0 || name_n > NAME_MAX_CHARS || dom_n > NAME_MAX_CHARS) return ERROR_INSUFFICIENT_BUFFER;
    name = malloc(name_n * sizeof(wchar_t));
    dom = malloc(dom_n * sizeof(wchar_t));
    rc = 0;
    if (name == NULL || dom == NULL)
      rc = ERROR_NOT_ENOUGH_MEMORY;
    else if (!LookupAccountSidW(NULL, sid, name, &name_n, dom, &dom_n, &use))
      rc = GetLastError();
  }
  if (rc == 0) {
    set_str16(env, obj, "account", name);
    set_str16(env, obj, "domain", dom);
  }
  if (name != name_s) free(name);
  if (dom != dom_s) free(dom);
  return rc;
}

static napi_value query_process(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  DWORD pid;
  if (!arg_pid(env, argv[0], &pid)) return NULL; // a missing argument is undefined: a TypeError too
  bool want_path = false, want_names = false;
  if (argc >= 2) {
    napi_valuetype t;
    if (napi_typeof(env, argv[1], &t) != napi_ok) return NULL;
    if (t == napi_object) {
      if (!opt_bool(env, argv[1], "path", &want_path) || !opt_bool(env, argv[1], "names", &want_names)) return NULL;
    } else if (t != napi_undefined) {
      napi_throw_type_error(env, NULL, "opts must be an object");
      return NULL;
    }
  }

  HANDLE proc = NULL, token = NULL;
  TOKEN_USER *tu = NULL;
  TOKEN_GROUPS *tg = NULL;
  wchar_t *path = NULL;
  const char *fail = NULL;
  DWORD err = 0;

  proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
  if (proc == NULL) {
    fail = "OpenProcess";
    err = GetLastError();
    goto done;
  }
  if (!OpenProcessToken(proc, TOKEN_QUERY, &token)) {
    token = NULL;
    fail = "OpenProcessToken";
    err = GetLastError();
    goto done;
  }
  if (napi_create_object(env, &result) != napi_ok) goto done;

  tu = token_info(token, TokenUser, &err);
  if (tu == NULL || !set_sid(env, result, "userSid", tu->User.Sid, &err)) {
    fail = "GetTokenInformation(TokenUser)";
    goto done;
  }
  napi_value user;
  if (napi_create_object(env, &user) != napi_ok) goto done;
  DWORD lerr = lookup_sid(env, user, tu->User.Sid);
  if (lerr == 0)
    napi_set_named_property(env, result, "user", user);
  else
    set_u32(env, result, "userLookupError", lerr);

  tg = token_info(token, TokenGroups, &err);
  if (tg == NULL) {
    fail = "GetTokenInformation(TokenGroups)";
    goto done;
  }
  napi_value groups;
  if (napi_create_array_with_length(env, tg->GroupCount, &groups) != napi_ok) goto done;
  for (DWORD i = 0; i < tg->GroupCount; i++) {
    napi_value g;
    if (napi_create_object(env, &g) != napi_ok) goto done;
    if (!set_sid(env, g, "sid", tg->Groups[i].Sid, &err)) {
      fail = "GetTokenInformation(TokenGroups)";
      goto done;
    }
    set_u32(env, g, "attributes", tg->Groups[i].Attributes);
    if (want_names) {
      DWORD ge = lookup_sid(env, g, tg->Groups[i].Sid);
      if (ge != 0) set_u32(env, g, "lookupError", ge);
    }
    napi_set_element(env, groups, i, g);
  }
  napi_set_named_property(env, result, "groups", groups);

  if (want_path) {
    path = malloc(MAX_LONG_PATH * sizeof(wchar_t));
    DWORD n = MAX_LONG_PATH;
    if (path == NULL) {
      fail = "QueryFullProcessImageNameW";
      err = ERROR_NOT_ENOUGH_MEMORY;
      goto done;
    }
    if (!QueryFullProcessImageNameW(proc, 0, path, &n)) {
      fail = "QueryFullProcessImageNameW";
      err = GetLastError();
      goto done;
    }
    napi_value p;
    if (napi_create_string_utf16(env, (const char16_t *)path, n, &p) == napi_ok)
      napi_set_named_property(env, result, "path", p);
  }

done:
  free(path);
  free(tg);
  free(tu);
  if (token) CloseHandle(token);
  if (proc) CloseHandle(proc);
  if (fail) {
    throw_win32(env, fail, err);
    return NULL;
  }
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  return pending ? NULL : result;
}

static napi_value enable_se_debug_privilege(napi_env env, napi_callback_info info) {
  (void)info;
  HANDLE token = NULL;
  DWORD code = 0;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY, &token)) {
    code = GetLastError();
  } else {
    TOKEN_PRIVILEGES tp;
    tp.PrivilegeCount = 1;
    tp.Privileges[0].Attributes = SE_PRIVILEGE_ENABLED;
    if (!LookupPrivilegeValueW(NULL, L"SeDebugPrivilege", &tp.Privileges[0].Luid)) {
      code = GetLastError();
    } else if (!AdjustTokenPrivileges(token, FALSE, &tp, 0, NULL, NULL)) {
      code = GetLastError();
    } else {
      code = GetLastError(); // success, but ERROR_NOT_ALL_ASSIGNED (1300) when the token lacks the privilege
    }
    CloseHandle(token);
  }
  napi_value result, ok;
  if (napi_create_object(env, &result) != napi_ok) return NULL;
  napi_get_boolean(env, code == ERROR_SUCCESS, &ok);
  napi_set_named_property(env, result, "ok", ok);
  if (code != ERROR_SUCCESS) set_u32(env, result, "code", code);
  return result;
}

NAPI_MODULE_INIT() {
  NAPI_WIN_RESOLVE_OR_RETURN(env);
  napi_value fn;
  if (napi_create_function(env, "queryProcess", NAPI_AUTO_LENGTH, query_process, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "queryProcess", fn);
  if (napi_create_function(env, "enableSeDebugPrivilege", NAPI_AUTO_LENGTH, enable_se_debug_privilege, NULL, &fn) !=
      napi_ok)
    return NULL;
  napi_set_named_property(env, exports, "enableSeDebugPrivilege", fn);
  return exports;
}
