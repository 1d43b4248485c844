// N-API addon: C_SignInit + C_Sign as ONE job on a libuv worker thread.
//
// pkcs11js offers C_SignInit only synchronously, so every signature used to run C_SignInit on Node's main thread
// (SoftHSM resolves and unwraps the key there) and then hand C_Sign to a worker: two boundary crossings and the
// heavier half of the work on the one thread that also serves gRPC. Measured on the KeyManager bench, the main
// thread was the bottleneck (~90% busy at concurrency 32, workers ~3% each). This addon runs both calls on the
// worker. It does not initialise anything: it dlopen()s the module pkcs11js already loaded and initialised (the
// same handle, reference counted) and calls through its C_GetFunctionList table with pkcs11js's session and object
// handles. Types below are the PKCS#11 2.40 ABI on Unix (CK_ULONG = unsigned long), written from the spec.
#include <node_api.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef struct {
  CK_ULONG mechanism;
  void *pParameter;
  CK_ULONG ulParameterLen;
} CK_MECHANISM;
typedef CK_RV (*sign_init_fn)(CK_ULONG session, CK_MECHANISM *mech, CK_ULONG key);
typedef CK_RV (*sign_fn)(CK_ULONG session, unsigned char *data, CK_ULONG len, unsigned char *sig, CK_ULONG *siglen);
typedef CK_RV (*get_function_list_fn)(void **list);

// CK_FUNCTION_LIST: a CK_VERSION (2 bytes) followed by the 68 function pointers in the spec's order.
// C_SignInit is entry 42 and C_Sign entry 43 (after C_Initialize … C_DigestFinal).
typedef struct {
  unsigned char major, minor;
  void *fns[68];
} function_list;
#define IDX_SIGN_INIT 42
#define IDX_SIGN 43

typedef struct {
  void *dl;
  sign_init_fn sign_init;
  sign_fn sign;
} module_t;

typedef struct {
  napi_async_work work;
  napi_ref cb;
  module_t *mod;
  CK_ULONG session, key;
  CK_MECHANISM mech;
  unsigned char *param;
  unsigned char *data;
  size_t data_len;
  unsigned char *out;
  CK_ULONG out_len;
  CK_RV rv;
  const char *failed;
} job_t;

#define CHECK(env, call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error((env), NULL, "pkcs11sign: N-API call failed: " #call); \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static void module_finalize(napi_env env, void *data, void *hint) {
  module_t *m = (module_t *)data;
  if (m->dl) dlclose(m->dl);
  free(m);
}

// open(modulePath) -> external. The module must already be loaded and C_Initialize'd by pkcs11js.
static napi_value open_module(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "pkcs11sign.open: module path (string) required");
    return NULL;
  }
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char *e = dlerror();
    napi_throw_error(env, NULL, e ? e : "pkcs11sign.open: dlopen failed");
    return NULL;
  }
  get_function_list_fn gfl = (get_function_list_fn)dlsym(dl, "C_GetFunctionList");
  function_list *fl = NULL;
  if (!gfl || gfl((void **)&fl) != 0 || !fl || !fl->fns[IDX_SIGN_INIT] || !fl->fns[IDX_SIGN]) {
    dlclose(dl);
    napi_throw_error(env, NULL, "pkcs11sign.open: C_GetFunctionList unavailable or incomplete");
    return NULL;
  }
  module_t *m = (module_t *)calloc(1, sizeof *m);
  if (!m) {
    dlclose(dl);
    napi_throw_error(env, NULL, "pkcs11sign.open: out of memory");
    return NULL;
  }
  m->dl = dl;
  m->sign_init = (sign_init_fn)fl->fns[IDX_SIGN_INIT];
  m->sign = (sign_fn)fl->fns[IDX_SIGN];
  napi_value ext;
  if (napi_create_external(env, m, module_finalize, NULL, &ext) != napi_ok) {
    module_finalize(env, m, NULL);
    napi_throw_error(env, NULL, "pkcs11sign.open: napi_create_external failed");
    return NULL;
  }
  return ext;
}

static void execute(napi_env env, void *data) {
  job_t *j = (job_t *)data;
  j->rv = j->mod->sign_init(j->session, &j->mech, j->key);
  if (j->rv != 0) {
    j->failed = "C_SignInit";
    return;
  }
  CK_ULONG cap = j->out_len;
  j->rv = j->mod->sign(j->session, j->data, (CK_ULONG)j->data_len, j->out, &j->out_len);
  // CKR_BUFFER_TOO_SMALL leaves the operation active (PKCS#11 5.2 length convention) with the needed length in
  // out_len: grow once and finish it, so the session is never left with a signing operation in progress.
  if (j->rv == 0x150 && j->out_len > cap && j->out_len <= 65536) {
    unsigned char *bigger = (unsigned char *)realloc(j->out, j->out_len);
    if (bigger) {
      j->out = bigger;
      j->rv = j->mod->sign(j->session, j->data, (CK_ULONG)j->data_len, j->out, &j->out_len);
    }
  }
  if (j->rv != 0) j->failed = "C_Sign";
}

static void free_job(napi_env env, job_t *j) {
  if (j->cb) napi_delete_reference(env, j->cb);
  if (j->work) napi_delete_async_work(env, j->work);
  free(j->param);
  free(j->data);
  free(j->out);
  free(j);
}

// Calls cb(rv, failedFunction, signature|undefined).
static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = (job_t *)data;
  napi_value cb, global, args[3];
  if (napi_get_reference_value(env, j->cb, &cb) == napi_ok && napi_get_global(env, &global) == napi_ok) {
    CK_RV rv = status == napi_ok ? j->rv : 0x5 /* CKR_GENERAL_ERROR */;
    const char *fn = status == napi_ok ? (j->failed ? j->failed : "") : "C_SignInit";
    napi_create_double(env, (double)rv, &args[0]);
    napi_create_string_utf8(env, fn, NAPI_AUTO_LENGTH, &args[1]);
    if (rv == 0) {
      void *copy;
      if (napi_create_buffer_copy(env, j->out_len, j->out, &copy, &args[2]) != napi_ok) napi_get_undefined(env, &args[2]);
    } else {
      napi_get_undefined(env, &args[2]);
    }
    napi_value ignored;
    if (napi_call_function(env, global, cb, 3, args, &ignored) == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  free_job(env, j);
}

static int read_handle(napi_env env, napi_value v, CK_ULONG *out) {
  bool is_buf = false;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf) return 0;
  void *p;
  size_t len;
  if (napi_get_buffer_info(env, v, &p, &len) != napi_ok || len != sizeof(CK_ULONG)) return 0;
  memcpy(out, p, sizeof(CK_ULONG));
  return 1;
}

static unsigned char *copy_buffer(napi_env env, napi_value v, size_t *len_out, int *ok) {
  bool is_buf = false;
  *ok = 0;
  *len_out = 0;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf) return NULL;
  void *p;
  size_t len;
  if (napi_get_buffer_info(env, v, &p, &len) != napi_ok) return NULL;
  unsigned char *c = (unsigned char *)malloc(len ? len : 1);
  if (!c) return NULL;
  if (len) memcpy(c, p, len);
  *len_out = len;
  *ok = 1;
  return c;
}

// sign(module, session: Buffer, key: Buffer, mechanism: number, param: Buffer | null, data: Buffer, maxOut: number,
//      cb: (rv: number, failedFn: string, sig?: Buffer) => void): undefined
static napi_value sign(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 8) {
    napi_throw_type_error(env, NULL, "pkcs11sign.sign: 8 arguments required");
    return NULL;
  }
  module_t *m = NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external || napi_get_value_external(env, argv[0], (void **)&m) != napi_ok || !m) {
    napi_throw_type_error(env, NULL, "pkcs11sign.sign: module handle required");
    return NULL;
  }
  job_t *j = (job_t *)calloc(1, sizeof *j);
  if (!j) {
    napi_throw_error(env, NULL, "pkcs11sign.sign: out of memory");
    return NULL;
  }
  j->mod = m;
  const char *bad = NULL;
  double mech = 0, max_out = 0;
  int ok = 0;
  size_t plen = 0;
  if (!read_handle(env, argv[1], &j->session)) bad = "session handle (8-byte Buffer)";
  else if (!read_handle(env, argv[2], &j->key)) bad = "key handle (8-byte Buffer)";
  else if (napi_get_value_double(env, argv[3], &mech) != napi_ok || mech < 0 || mech > 4294967295.0) bad = "mechanism (number)";
  else if (napi_get_value_double(env, argv[6], &max_out) != napi_ok || max_out < 1 || max_out > 65536) bad = "maxOut (1..65536)";
  else if (napi_typeof(env, argv[7], &t) != napi_ok || t != napi_function) bad = "callback";
  if (!bad) {
    napi_valuetype pt;
    napi_typeof(env, argv[4], &pt);
    if (pt != napi_null && pt != napi_undefined) {
      j->param = copy_buffer(env, argv[4], &plen, &ok);
      if (!ok) bad = "mechanism parameter (Buffer or null)";
    }
  }
  if (!bad) {
    j->data = copy_buffer(env, argv[5], &j->data_len, &ok);
    if (!ok) bad = "data (Buffer)";
  }
  if (!bad) {
    j->out = (unsigned char *)malloc((size_t)max_out);
    if (!j->out) bad = "memory for the signature";
    j->out_len = (CK_ULONG)max_out;
  }
  if (bad) {
    free_job(env, j);
    char msg[128];
    strcpy(msg, "pkcs11sign.sign: invalid ");
    strncat(msg, bad, sizeof msg - strlen(msg) - 1);
    napi_throw_type_error(env, NULL, msg);
    return NULL;
  }
  j->mech.mechanism = (CK_ULONG)mech;
  j->mech.pParameter = j->param;
  j->mech.ulParameterLen = (CK_ULONG)plen;
  napi_value name;
  if (napi_create_reference(env, argv[7], 1, &j->cb) != napi_ok ||
      napi_create_string_utf8(env, "pkcs11sign", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    free_job(env, j);
    napi_throw_error(env, NULL, "pkcs11sign.sign: could not queue the job");
    return NULL;
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "open", NAPI_AUTO_LENGTH, open_module, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "open", fn);
  if (napi_create_function(env, "sign", NAPI_AUTO_LENGTH, sign, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "sign", fn);
  return exports;
}
