// Windows addon for the `windows` workload attestor: the process-token queries of SPIRE's built-in attestor, in its
// order, as one call, synchronous or on a worker thread (each step is a local kernel/LSA query; group-name lookups can be slow against a
// domain controller, which is why the caller can skip them).
//
//   queryProcess(pid: number, opts?: { path?: boolean; names?: boolean }): {
//     userSid: string;
//     user?: { account: string; domain: string };      // LookupAccountSidW(NULL, user SID); always attempted
//     userLookupError?: number;                        // Win32 error when that lookup failed (e.g. 1332)
//     groups: Array<{ sid: string; attributes: number; account?: string; domain?: string; lookupError?: number }>;
//     path?: string;                                   // QueryFullProcessImageNameW(h, 0, …) when opts.path
//   }
//   queryProcessAsync(pid, opts?): Promise<the same>     the same query on a worker thread (what the plugin calls)
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

// ---- one query, collected without touching JS (so it can run on a worker thread) ----------------------------------

typedef struct {
  wchar_t *sid;
  DWORD attributes;
  wchar_t *account, *domain; // both set when the lookup succeeded
  DWORD lookup_err;          // 0 = not attempted or found
} group_rec;

typedef struct {
  DWORD pid;
  bool want_path, want_names;
  const char *fail; // the failing step, NULL on success
  DWORD err;
  wchar_t *user_sid, *user_account, *user_domain;
  DWORD user_lookup_err;
  DWORD ngroups;
  group_rec *groups;
  wchar_t *path;
  DWORD path_len;
  napi_async_work work;
  napi_deferred deferred;
} query_rec;

// ConvertSidToStringSidW into a LocalAlloc'd string, or NULL with *err.
static wchar_t *sid_string(PSID sid, DWORD *err) {
  wchar_t *s = NULL;
  if (!ConvertSidToStringSidW(sid, &s)) {
    *err = GetLastError();
    return NULL;
  }
  return s;
}

static wchar_t *dup16(const wchar_t *s) {
  size_t n = wcslen(s) + 1;
  wchar_t *d = malloc(n * sizeof(wchar_t));
  if (d) memcpy(d, s, n * sizeof(wchar_t));
  return d;
}

// LookupAccountSidW(NULL, sid): malloc'd account and domain, or the Win32 error (0 = found).
static DWORD lookup_sid(PSID sid, wchar_t **account, wchar_t **domain) {
  wchar_t name_s[256], dom_s[256];
  wchar_t *name = name_s, *dom = dom_s;
  DWORD name_n = 256, dom_n = 256, rc = 0;
  SID_NAME_USE use;
  *account = *domain = NULL;
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
    *account = dup16(name);
    *domain = dup16(dom);
    if (*account == NULL || *domain == NULL) {
      free(*account);
      free(*domain);
      *account = *domain = NULL;
      rc = ERROR_NOT_ENOUGH_MEMORY;
    }
  }
  if (name != name_s) free(name);
  if (dom != dom_s) free(dom);
  return rc;
}

// Every Win32 step, in the built-in's order; results or the failing step into q. No Node-API here.
static void collect(query_rec *q) {
  HANDLE proc = NULL, token = NULL;
  TOKEN_USER *tu = NULL;
  TOKEN_GROUPS *tg = NULL;
  proc = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, q->pid);
  if (proc == NULL) {
    q->fail = "OpenProcess";
    q->err = GetLastError();
    goto done;
  }
  if (!OpenProcessToken(proc, TOKEN_QUERY, &token)) {
    token = NULL;
    q->fail = "OpenProcessToken";
    q->err = GetLastError();
    goto done;
  }
  tu = token_info(token, TokenUser, &q->err);
  if (tu == NULL || (q->user_sid = sid_string(tu->User.Sid, &q->err)) == NULL) {
    q->fail = "GetTokenInformation(TokenUser)";
    goto done;
  }
  q->user_lookup_err = lookup_sid(tu->User.Sid, &q->user_account, &q->user_domain);
  tg = token_info(token, TokenGroups, &q->err);
  if (tg == NULL) {
    q->fail = "GetTokenInformation(TokenGroups)";
    goto done;
  }
  q->groups = calloc(tg->GroupCount ? tg->GroupCount : 1, sizeof(group_rec));
  if (q->groups == NULL) {
    q->fail = "GetTokenInformation(TokenGroups)";
    q->err = ERROR_NOT_ENOUGH_MEMORY;
    goto done;
  }
  for (DWORD i = 0; i < tg->GroupCount; i++) {
    group_rec *g = &q->groups[i];
    q->ngroups = i + 1;
    if ((g->sid = sid_string(tg->Groups[i].Sid, &q->err)) == NULL) {
      q->fail = "GetTokenInformation(TokenGroups)";
      goto done;
    }
    g->attributes = tg->Groups[i].Attributes;
    if (q->want_names) g->lookup_err = lookup_sid(tg->Groups[i].Sid, &g->account, &g->domain);
  }
  if (q->want_path) {
    q->path = malloc(MAX_LONG_PATH * sizeof(wchar_t));
    q->path_len = MAX_LONG_PATH;
    if (q->path == NULL) {
      q->fail = "QueryFullProcessImageNameW";
      q->err = ERROR_NOT_ENOUGH_MEMORY;
      goto done;
    }
    if (!QueryFullProcessImageNameW(proc, 0, q->path, &q->path_len)) {
      q->fail = "QueryFullProcessImageNameW";
      q->err = GetLastError();
      goto done;
    }
  }
done:
  free(tg);
  free(tu);
  if (token) CloseHandle(token);
  if (proc) CloseHandle(proc);
}

static void free_rec(query_rec *q) {
  if (q == NULL) return;
  LocalFree(q->user_sid);
  free(q->user_account);
  free(q->user_domain);
  for (DWORD i = 0; i < q->ngroups; i++) {
    LocalFree(q->groups[i].sid);
    free(q->groups[i].account);
    free(q->groups[i].domain);
  }
  free(q->groups);
  free(q->path);
  free(q);
}

// The JS answer for q: *out = the result object, or *err_out = Error{ call, code, message }. Returns 0 only when
// Node-API itself failed (exception pending).
static int build(napi_env env, query_rec *q, napi_value *out, napi_value *err_out) {
  *out = *err_out = NULL;
  if (q->fail) {
    napi_value msg = win32_message(env, q->err), e, v;
    if (msg == NULL || napi_create_error(env, NULL, msg, &e) != napi_ok) return 0;
    if (napi_create_string_utf8(env, q->fail, NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, e, "call", v);
    set_u32(env, e, "code", q->err);
    *err_out = e;
    return 1;
  }
  napi_value result, user, groups;
  if (napi_create_object(env, &result) != napi_ok) return 0;
  set_str16(env, result, "userSid", q->user_sid);
  if (q->user_lookup_err == 0) {
    if (napi_create_object(env, &user) != napi_ok) return 0;
    set_str16(env, user, "account", q->user_account);
    set_str16(env, user, "domain", q->user_domain);
    napi_set_named_property(env, result, "user", user);
  } else {
    set_u32(env, result, "userLookupError", q->user_lookup_err);
  }
  if (napi_create_array_with_length(env, q->ngroups, &groups) != napi_ok) return 0;
  for (DWORD i = 0; i < q->ngroups; i++) {
    group_rec *g = &q->groups[i];
    napi_value o;
    if (napi_create_object(env, &o) != napi_ok) return 0;
    set_str16(env, o, "sid", g->sid);
    set_u32(env, o, "attributes", g->attributes);
    if (g->account) {
      set_str16(env, o, "account", g->account);
      set_str16(env, o, "domain", g->domain);
    } else if (g->lookup_err != 0) {
      set_u32(env, o, "lookupError", g->lookup_err);
    }
    napi_set_element(env, groups, i, o);
  }
  napi_set_named_property(env, result, "groups", groups);
  if (q->want_path) {
    napi_value p;
    if (napi_create_string_utf16(env, (const char16_t *)q->path, q->path_len, &p) == napi_ok)
      napi_set_named_property(env, result, "path", p);
  }
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return 0;
  *out = result;
  return 1;
}

// Arguments of both entry points: (pid, opts?) into a new query_rec, or NULL with a TypeError pending.
static query_rec *parse_args(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
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
  query_rec *q = calloc(1, sizeof *q);
  if (q == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  q->pid = pid;
  q->want_path = want_path;
  q->want_names = want_names;
  return q;
}

static napi_value query_process(napi_env env, napi_callback_info info) {
  query_rec *q = parse_args(env, info);
  if (q == NULL) return NULL;
  collect(q);
  napi_value result = NULL, err = NULL;
  int ok = build(env, q, &result, &err);
  free_rec(q);
  if (ok && err) napi_throw(env, err);
  return ok && !err ? result : NULL;
}

// queryProcessAsync: the same query on a libuv worker thread (name lookups can wait on a domain controller; the
// event loop, and so every other attestation and the plugin's gRPC server, keeps running meanwhile).
static void async_execute(napi_env env, void *data) {
  (void)env;
  collect((query_rec *)data);
}

static void async_complete(napi_env env, napi_status status, void *data) {
  query_rec *q = data;
  napi_value result = NULL, err = NULL;
  if (status == napi_ok && build(env, q, &result, &err) && !err) {
    napi_resolve_deferred(env, q->deferred, result);
  } else {
    if (err == NULL) {
      napi_value msg;
      napi_create_string_utf8(env, status == napi_cancelled ? "query cancelled" : "Node-API failure", NAPI_AUTO_LENGTH,
                              &msg);
      napi_create_error(env, NULL, msg, &err);
    }
    napi_reject_deferred(env, q->deferred, err);
  }
  napi_delete_async_work(env, q->work);
  free_rec(q);
}

static napi_value query_process_async(napi_env env, napi_callback_info info) {
  query_rec *q = parse_args(env, info);
  if (q == NULL) return NULL;
  napi_value promise, name;
  if (napi_create_promise(env, &q->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "winproc.queryProcessAsync", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, async_execute, async_complete, q, &q->work) != napi_ok) {
    free_rec(q);
    return NULL;
  }
  if (napi_queue_async_work(env, q->work) != napi_ok) {
    napi_delete_async_work(env, q->work);
    free_rec(q);
    return NULL;
  }
  return promise;
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
  if (napi_create_function(env, "queryProcessAsync", NAPI_AUTO_LENGTH, query_process_async, NULL, &fn) != napi_ok)
    return NULL;
  napi_set_named_property(env, exports, "queryProcessAsync", fn);
  if (napi_create_function(env, "enableSeDebugPrivilege", NAPI_AUTO_LENGTH, enable_se_debug_privilege, NULL, &fn) !=
      napi_ok)
    return NULL;
  napi_set_named_property(env, exports, "enableSeDebugPrivilege", fn);
  return exports;
}
