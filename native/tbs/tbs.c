// Windows addon: TPM Base Services (tbs.dll), the transport lib/tpm2 uses on Windows as SPIRE's tpm_devid does.
//
//   contextCreate(): object       Tbsi_Context_Create(TBS_CONTEXT_PARAMS2{ version 2, includeTpm20 }); an opaque
//                                 handle (a type-tagged napi external)
//   submit(ctx, command: Uint8Array, maxResponse: number): Promise<Buffer>
//                                 Tbsip_Submit_Command(locality 0, normal priority) on a libuv worker thread
//   close(ctx): void              Tbsip_Context_Close; idempotent; also done when the handle is garbage collected
//                                 (after the submits still queued on it)
//
// Errors carry own properties `call` and `code`: contextCreate throws {call:'LoadLibrary(tbs.dll)' |
// 'GetProcAddress(<name>)', code: GetLastError()} or {call:'Tbsi_Context_Create', code: TBS_RESULT}; submit rejects
// with {call:'Tbsip_Submit_Command', code: TBS_RESULT (unsigned)}; a closed ctx rejects with TBS_E_INVALID_CONTEXT
// (0x80284004), what TBS answers for a closed handle. Bad arguments throw a TypeError.
//
// tbs.dll is loaded at first use from System32 or the executable's directory (LOAD_LIBRARY_SEARCH_*: never the
// current directory or PATH); the tests put a fake tbs.dll (native/tbs/fake) beside their node.exe.
//
// Concurrency: the caller serialises submits per context, but overlapping ones are still safe: a per-context lock
// runs them one after the other, and a close() during a submit takes effect when the submit returns (the handle is
// never closed under a running Tbsip_Submit_Command). Contexts are reference counted (the JS handle, and every queued
// submit), so collecting the handle while a submit is queued is safe too: the submit completes, then the handle
// is closed.
#include "../win/napi-win.h"

#include <windows.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TBS_MAX_BYTES (1u << 20) // command and response size bound, far above any TPM 2.0 frame (usually 4 KiB)
#define TBS_INVALID_CONTEXT 0x80284004u // TBS_E_INVALID_CONTEXT
#define TBS_INTERNAL_ERROR 0x80284001u  // TBS_E_INTERNAL_ERROR

typedef UINT32 TBS_RESULT;
typedef void *TBS_HCONTEXT;
typedef struct {
  UINT32 version;   // 2 = TBS_CONTEXT_VERSION_TWO
  UINT32 flags;     // bit 0 requestRaw, bit 1 includeTpm12, bit 2 includeTpm20
} tbs_context_params2;
#define TBS_CONTEXT_VERSION_TWO 2u
#define TBS_INCLUDE_TPM20 (1u << 2)
#define TBS_COMMAND_LOCALITY_ZERO 0u
#define TBS_COMMAND_PRIORITY_NORMAL 200u

typedef TBS_RESULT(WINAPI *context_create_fn)(const tbs_context_params2 *, TBS_HCONTEXT *);
typedef TBS_RESULT(WINAPI *submit_fn)(TBS_HCONTEXT, UINT32, UINT32, const BYTE *, UINT32, BYTE *, UINT32 *);
typedef TBS_RESULT(WINAPI *context_close_fn)(TBS_HCONTEXT);

static struct {
  INIT_ONCE once;
  context_create_fn create;
  submit_fn submit;
  context_close_fn close;
  const char *fail_call; // NULL when loaded
  DWORD fail_code;
} tbs = {INIT_ONCE_STATIC_INIT, NULL, NULL, NULL, NULL, 0};

static BOOL CALLBACK load_tbs(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once;
  (void)param;
  (void)ctx;
  HMODULE m = LoadLibraryExW(L"tbs.dll", NULL, LOAD_LIBRARY_SEARCH_APPLICATION_DIR | LOAD_LIBRARY_SEARCH_SYSTEM32);
  if (m == NULL) {
    tbs.fail_code = GetLastError();
    tbs.fail_call = "LoadLibrary(tbs.dll)";
    return TRUE;
  }
  struct {
    const char *name, *call;
    FARPROC *slot;
  } syms[] = {
      {"Tbsi_Context_Create", "GetProcAddress(Tbsi_Context_Create)", (FARPROC *)&tbs.create},
      {"Tbsip_Submit_Command", "GetProcAddress(Tbsip_Submit_Command)", (FARPROC *)&tbs.submit},
      {"Tbsip_Context_Close", "GetProcAddress(Tbsip_Context_Close)", (FARPROC *)&tbs.close},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    *syms[i].slot = GetProcAddress(m, syms[i].name);
    if (*syms[i].slot == NULL) {
      tbs.fail_code = GetLastError();
      tbs.fail_call = syms[i].call;
      return TRUE; // the module stays loaded; nothing else will use it
    }
  }
  return TRUE;
}

// ---- contexts ------------------------------------------------------------------------------------------------------

typedef struct {
  SRWLOCK submit_lock; // held for the duration of one Tbsip_Submit_Command
  SRWLOCK state_lock;  // guards the fields below; never held across a TBS call
  TBS_HCONTEXT h;
  int closed;          // close() was called (or the handle was collected)
  int busy;            // a submit is inside Tbsip_Submit_Command
  int handle_closed;   // Tbsip_Context_Close has been called
  volatile LONG refs;  // the JS handle + each submit not yet completed
} tbs_ctx;

static const napi_type_tag CTX_TAG = {0x8d6b1d2f0c7e4a19ull, 0xa35f90c2e14b7d66ull};

// Marks the context closed; closes the TBS handle now unless a submit is running (that submit closes it).
static void ctx_close_request(tbs_ctx *c) {
  TBS_HCONTEXT to_close = NULL;
  AcquireSRWLockExclusive(&c->state_lock);
  c->closed = 1;
  if (!c->busy && !c->handle_closed) {
    c->handle_closed = 1;
    to_close = c->h;
  }
  ReleaseSRWLockExclusive(&c->state_lock);
  if (to_close) tbs.close(to_close);
}

// Drops one reference (always on the main thread: the finalizer or a submit's completion, after its worker ran). The
// last one closes the TBS handle unless close() did, so a handle collected with submits queued lets them finish.
static void ctx_release(tbs_ctx *c) {
  if (InterlockedDecrement(&c->refs) != 0) return;
  if (!c->handle_closed) tbs.close(c->h);
  free(c);
}

static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ctx_release(data);
}

// ---- errors --------------------------------------------------------------------------------------------------------

static napi_value make_error(napi_env env, const char *call, uint32_t code) {
  char text[160];
  snprintf(text, sizeof text, "%s failed: 0x%08lX", call, (unsigned long)code);
  napi_value msg, err, v;
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg) != napi_ok) return NULL;
  if (napi_create_error(env, NULL, msg, &err) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, call, NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, err, "call", v);
  if (napi_create_uint32(env, code, &v) == napi_ok) napi_set_named_property(env, err, "code", v);
  return err;
}

static void throw_error(napi_env env, const char *call, uint32_t code) {
  napi_value e = make_error(env, call, code);
  if (e)
    napi_throw(env, e);
  else
    napi_throw_error(env, NULL, call);
}

static int ensure_loaded(napi_env env) {
  InitOnceExecuteOnce(&tbs.once, load_tbs, NULL, NULL);
  if (tbs.fail_call == NULL) return 1;
  throw_error(env, tbs.fail_call, tbs.fail_code);
  return 0;
}

// The context behind a handle from contextCreate, or NULL with a TypeError thrown.
static tbs_ctx *arg_ctx(napi_env env, napi_value v) {
  napi_valuetype t;
  bool tagged = false;
  void *data = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
      napi_check_object_type_tag(env, v, &CTX_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "ctx must be a handle returned by contextCreate()");
    return NULL;
  }
  return data;
}

// ---- contextCreate / close -----------------------------------------------------------------------------------------

static napi_value context_create(napi_env env, napi_callback_info info) {
  (void)info;
  if (!ensure_loaded(env)) return NULL;
  tbs_context_params2 params = {TBS_CONTEXT_VERSION_TWO, TBS_INCLUDE_TPM20};
  TBS_HCONTEXT h = NULL;
  TBS_RESULT r = tbs.create(&params, &h);
  if (r != 0) {
    throw_error(env, "Tbsi_Context_Create", r);
    return NULL;
  }
  tbs_ctx *c = calloc(1, sizeof *c);
  if (c == NULL) {
    tbs.close(h);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  InitializeSRWLock(&c->submit_lock);
  InitializeSRWLock(&c->state_lock);
  c->h = h;
  c->refs = 1;
  napi_value ext;
  if (napi_create_external(env, c, ctx_finalize, NULL, &ext) != napi_ok) {
    tbs.close(h);
    free(c);
    return NULL;
  }
  napi_type_tag_object(env, ext, &CTX_TAG);
  return ext;
}

static napi_value context_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  tbs_ctx *c = arg_ctx(env, argv[0]);
  if (c == NULL) return NULL;
  ctx_close_request(c);
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// ---- submit --------------------------------------------------------------------------------------------------------

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  tbs_ctx *ctx;
  BYTE *command;
  UINT32 command_len;
  BYTE *response;
  UINT32 response_len; // in: capacity; out: bytes returned
  TBS_RESULT result;
} submit_job;

static void submit_execute(napi_env env, void *data) {
  (void)env;
  submit_job *j = data;
  tbs_ctx *c = j->ctx;
  AcquireSRWLockExclusive(&c->submit_lock);
  AcquireSRWLockExclusive(&c->state_lock);
  int run = !c->closed;
  if (run) c->busy = 1;
  ReleaseSRWLockExclusive(&c->state_lock);
  if (run) {
    j->result = tbs.submit(c->h, TBS_COMMAND_LOCALITY_ZERO, TBS_COMMAND_PRIORITY_NORMAL, j->command, j->command_len,
                           j->response, &j->response_len);
    TBS_HCONTEXT to_close = NULL;
    AcquireSRWLockExclusive(&c->state_lock);
    c->busy = 0;
    if (c->closed && !c->handle_closed) { // close() came while we were submitting
      c->handle_closed = 1;
      to_close = c->h;
    }
    ReleaseSRWLockExclusive(&c->state_lock);
    if (to_close) tbs.close(to_close);
  } else {
    j->result = TBS_INVALID_CONTEXT;
  }
  ReleaseSRWLockExclusive(&c->submit_lock);
}

static void submit_complete(napi_env env, napi_status status, void *data) {
  submit_job *j = data;
  napi_value v = NULL;
  if (status == napi_ok && j->result == 0 && j->response_len <= TBS_MAX_BYTES &&
      napi_create_buffer_copy(env, j->response_len, j->response, NULL, &v) == napi_ok) {
    napi_resolve_deferred(env, j->deferred, v);
  } else {
    uint32_t code = j->result != 0 ? j->result : TBS_INTERNAL_ERROR; // when Node failed us
    napi_value e = make_error(env, "Tbsip_Submit_Command", code);
    if (e == NULL) napi_get_undefined(env, &e);
    napi_reject_deferred(env, j->deferred, e);
  }
  napi_delete_async_work(env, j->work);
  ctx_release(j->ctx);
  free(j->command);
  free(j->response);
  free(j);
}

static napi_value submit(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  tbs_ctx *c = arg_ctx(env, argv[0]);
  if (c == NULL) return NULL;

  bool is_ta = false;
  napi_typedarray_type ta_type;
  size_t len = 0;
  void *bytes = NULL;
  if (napi_is_typedarray(env, argv[1], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[1], &ta_type, &len, &bytes, NULL, NULL) != napi_ok ||
      ta_type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "command must be a Uint8Array");
    return NULL;
  }
  if (len == 0 || len > TBS_MAX_BYTES) {
    napi_throw_type_error(env, NULL, "command must be 1 to 1048576 bytes");
    return NULL;
  }
  napi_valuetype t;
  double max = 0;
  if (napi_typeof(env, argv[2], &t) != napi_ok || t != napi_number ||
      napi_get_value_double(env, argv[2], &max) != napi_ok || !(max >= 1 && max <= TBS_MAX_BYTES) ||
      max != (double)(uint32_t)max) {
    napi_throw_type_error(env, NULL, "maxResponse must be an integer from 1 to 1048576");
    return NULL;
  }

  submit_job *j = calloc(1, sizeof *j);
  if (j == NULL || (j->command = malloc(len)) == NULL || (j->response = malloc((size_t)max)) == NULL) {
    if (j) free(j->command);
    free(j);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  memcpy(j->command, bytes, len); // the worker never touches JS memory
  j->command_len = (UINT32)len;
  j->response_len = (UINT32)max;
  j->ctx = c;

  napi_value promise, name;
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "spire-hw:tbs.submit", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, submit_execute, submit_complete, j, &j->work) != napi_ok) {
    free(j->command);
    free(j->response);
    free(j);
    return NULL; // a promise created without work is left pending-free for the GC; the exception is pending
  }
  InterlockedIncrement(&c->refs);
  if (napi_queue_async_work(env, j->work) != napi_ok) {
    ctx_release(c);
    napi_delete_async_work(env, j->work);
    free(j->command);
    free(j->response);
    free(j);
    return NULL;
  }
  return promise;
}

NAPI_MODULE_INIT() {
  NAPI_WIN_RESOLVE_OR_RETURN(env);
  struct {
    const char *name;
    napi_callback cb;
  } fns[] = {{"contextCreate", context_create}, {"submit", submit}, {"close", context_close}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok) return NULL;
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
  return exports;
}
