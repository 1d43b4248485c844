// N-API addon: C_SignInit + C_Sign as ONE job on a signing thread of the addon's own.
//
// pkcs11js offers C_SignInit only synchronously, so every signature used to run C_SignInit on Node's main thread
// (SoftHSM resolves and unwraps the key there) and then hand C_Sign to a worker: two boundary crossings and the
// heavier half of the work on the one thread that also serves gRPC. This addon runs both calls off the main thread.
// It does not initialise anything: it dlopen()s the module pkcs11js already loaded and initialised (the same handle,
// reference counted) and calls through its C_GetFunctionList table with pkcs11js's session and object handles.
// Types below are the PKCS#11 2.40 ABI on Unix (CK_ULONG = unsigned long), written from the spec.
//
// Threads: a pool owns N signing threads (N chosen by the caller) and two queues. The main thread appends a job and
// wakes a thread only if one is idle; a thread that finishes a job takes the next one without sleeping, so under load
// the threads sign back to back like a plain C loop. Finished jobs go to a second queue and ONE uv_async wake-up
// delivers every job finished since the last one, in one callback scope. libuv's shared pool (one mutex and condition
// variable for all of Node's background work, 16 threads here) cost several context switches per signature: measured
// with perf on 2 vCPUs, worker threads spent most of their samples switching.
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <pthread.h>
#include <stdint.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>

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

typedef struct job {
  struct job *next;
  double id;
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

typedef struct pool {
  struct pool *gnext;  // registry of live pools, for the exit handler (g_mu)
  module_t *mod;
  napi_env env;
  napi_ref mod_ref;  // keeps the module external (and its dlopen handle) alive as long as the pool
  napi_ref cb;       // cb(id, rv, failedFn, sig?) for each finished job
  napi_async_context actx;
  pthread_mutex_t mu;  // guards the job queue, idle, stopping
  pthread_cond_t cv;
  job_t *head, *tail;
  int idle, stopping;
  int busy;              // jobs inside the PKCS#11 module right now (mu)
  int abandoned;         // the process is exiting: queued jobs were dropped (mu)
  pthread_cond_t quiet;  // signalled when busy drops to 0 after abandoned
  pthread_mutex_t dmu;  // guards the done queue
  job_t *dhead, *dtail;
  uv_async_t async;
  int async_open;
  double inflight;  // main thread only
  int nthreads;
  pthread_t *threads;
  int closed;
} pool_t;

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

static void execute(job_t *j, module_t *mod) {
  j->rv = mod->sign_init(j->session, &j->mech, j->key);
  if (j->rv != 0) {
    j->failed = "C_SignInit";
    return;
  }
  CK_ULONG cap = j->out_len;
  j->rv = mod->sign(j->session, j->data, (CK_ULONG)j->data_len, j->out, &j->out_len);
  // CKR_BUFFER_TOO_SMALL leaves the operation active (PKCS#11 5.2 length convention) with the needed length in
  // out_len: grow once and finish it, so the session is never left with a signing operation in progress.
  if (j->rv == 0x150 && j->out_len > cap && j->out_len <= 65536) {
    unsigned char *bigger = (unsigned char *)realloc(j->out, j->out_len);
    if (bigger) {
      j->out = bigger;
      j->rv = mod->sign(j->session, j->data, (CK_ULONG)j->data_len, j->out, &j->out_len);
    }
  }
  if (j->rv != 0) j->failed = "C_Sign";
}

static void free_job(job_t *j) {
  free(j->param);
  free(j->data);
  free(j->out);
  free(j);
}

static void *signing_thread(void *arg) {
  pool_t *p = (pool_t *)arg;
  pthread_setname_np(pthread_self(), "pkcs11sign");  // visible in top -H / ps -L; the benchmarks account CPU by it
  int had_job = 0;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    if (had_job) {
      had_job = 0;
      if (--p->busy == 0 && p->abandoned) pthread_cond_signal(&p->quiet);
    }
    while (!p->head && !p->stopping) {
      p->idle++;
      pthread_cond_wait(&p->cv, &p->mu);
      p->idle--;
    }
    job_t *j = p->head;
    if (!j) {  // stopping and nothing left
      pthread_mutex_unlock(&p->mu);
      return NULL;
    }
    p->head = j->next;
    if (!p->head) p->tail = NULL;
    p->busy++;
    had_job = 1;
    pthread_mutex_unlock(&p->mu);

    j->next = NULL;
    execute(j, p->mod);

    pthread_mutex_lock(&p->dmu);
    int was_empty = p->dhead == NULL;
    if (p->dtail) p->dtail->next = j;
    else p->dhead = j;
    p->dtail = j;
    pthread_mutex_unlock(&p->dmu);
    // An empty done queue means the main thread has taken (or will take) everything before this job, so exactly one
    // wake-up is owed; otherwise one is already pending and will deliver this job too.
    if (was_empty) uv_async_send(&p->async);
  }
}

// process.exit() on Node's main thread calls exit() without running env cleanup hooks, so the signing threads would
// still be inside the PKCS#11 module while exit() runs the module's (and its crypto library's) destructors: a
// SIGSEGV in an exiting process, seen in CI. This atexit handler (registered after the module was loaded, so it runs
// before the module's destructors) drops every queued job, which nobody is left to receive, and waits until no
// thread is inside the module, at most EXIT_WAIT_S seconds so that a hung device cannot hold the process. Threads are
// not joined: they find the queue empty and return, and the process takes them with it.
#define EXIT_WAIT_S 5
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pool_t *g_pools;
static int g_atexit_registered;

static void quiesce_at_exit(void) {
  pthread_mutex_lock(&g_mu);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += EXIT_WAIT_S;
  for (pool_t *p = g_pools; p; p = p->gnext) {
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    p->abandoned = 1;
    p->head = p->tail = NULL;  // dropped, not freed: the process is going away
    pthread_cond_broadcast(&p->cv);
    while (p->busy > 0)
      if (pthread_cond_timedwait(&p->quiet, &p->mu, &deadline) == ETIMEDOUT) break;
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_unlock(&g_mu);
}

static void registry_add(pool_t *p) {
  pthread_mutex_lock(&g_mu);
  if (!g_atexit_registered) g_atexit_registered = atexit(quiesce_at_exit) == 0;
  p->gnext = g_pools;
  g_pools = p;
  pthread_mutex_unlock(&g_mu);
}

static void registry_remove(pool_t *p) {
  pthread_mutex_lock(&g_mu);
  for (pool_t **q = &g_pools; *q; q = &(*q)->gnext)
    if (*q == p) {
      *q = p->gnext;
      break;
    }
  pthread_mutex_unlock(&g_mu);
}

// Calls cb(id, rv, failedFn, sig|undefined) for each finished job; runs on the main thread inside a handle scope and
// a callback scope (promise reactions run when the scope closes).
static void deliver(pool_t *p, job_t *list) {
  napi_env env = p->env;
  napi_value cb, global;
  if (napi_get_reference_value(env, p->cb, &cb) != napi_ok || napi_get_global(env, &global) != napi_ok) {
    while (list) {
      job_t *n = list->next;
      free_job(list);
      list = n;
    }
    return;
  }
  while (list) {
    job_t *j = list;
    list = j->next;
    napi_value args[4], ignored;
    napi_create_double(env, j->id, &args[0]);
    napi_create_double(env, (double)j->rv, &args[1]);
    napi_create_string_utf8(env, j->failed ? j->failed : "", NAPI_AUTO_LENGTH, &args[2]);
    void *copy;
    if (j->rv != 0 || napi_create_buffer_copy(env, j->out_len, j->out, &copy, &args[3]) != napi_ok) napi_get_undefined(env, &args[3]);
    free_job(j);
    p->inflight--;
    if (napi_call_function(env, global, cb, 4, args, &ignored) == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  if (p->inflight <= 0 && p->async_open) uv_unref((uv_handle_t *)&p->async);
}

static job_t *take_done(pool_t *p) {
  pthread_mutex_lock(&p->dmu);
  job_t *list = p->dhead;
  p->dhead = p->dtail = NULL;
  pthread_mutex_unlock(&p->dmu);
  return list;
}

static void on_async(uv_async_t *h) {
  pool_t *p = (pool_t *)h->data;
  job_t *list = take_done(p);
  if (!list) return;
  napi_handle_scope hs;
  if (napi_open_handle_scope(p->env, &hs) != napi_ok) return;
  napi_value resource;
  napi_callback_scope cs;
  int scoped = napi_create_object(p->env, &resource) == napi_ok && napi_open_callback_scope(p->env, resource, p->actx, &cs) == napi_ok;
  deliver(p, list);
  if (scoped) napi_close_callback_scope(p->env, cs);
  napi_close_handle_scope(p->env, hs);
}

static void on_closed(uv_handle_t *h) { free(h->data); }

// Stops the threads after the queued jobs ran. Called from close() (JS), the finalizer, or the env cleanup hook.
static void stop_threads(pool_t *p) {
  if (p->closed) return;
  p->closed = 1;
  registry_remove(p);
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
  free(p->threads);
  p->threads = NULL;
  p->nthreads = 0;
}

static void release_pool(pool_t *p, int can_call_js) {
  stop_threads(p);
  job_t *left = take_done(p);
  if (can_call_js && left) {
    deliver(p, left);
  } else {
    while (left) {
      job_t *n = left->next;
      free_job(left);
      left = n;
    }
  }
  if (p->cb) napi_delete_reference(p->env, p->cb);
  if (p->mod_ref) napi_delete_reference(p->env, p->mod_ref);
  if (p->actx) napi_async_destroy(p->env, p->actx);
  p->cb = p->mod_ref = NULL;
  p->actx = NULL;
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_cond_destroy(&p->quiet);
  pthread_mutex_destroy(&p->dmu);
  if (p->async_open) {
    p->async_open = 0;
    uv_close((uv_handle_t *)&p->async, on_closed);  // frees p
  } else {
    free(p);
  }
}

typedef struct {
  pool_t *p;  // NULL once released
} pool_box;

static void env_cleanup(void *arg) {
  pool_box *b = (pool_box *)arg;
  if (b->p) {
    stop_threads(b->p);  // threads must not outlive the environment; memory goes with the process
    b->p = NULL;
  }
}

static void pool_finalize(napi_env env, void *data, void *hint) {
  pool_box *b = (pool_box *)data;
  napi_remove_env_cleanup_hook(env, env_cleanup, b);
  if (b->p) release_pool(b->p, 0);  // never closed: stop the threads here
  free(b);
}

static pool_box *get_pool(napi_env env, napi_value v) {
  napi_valuetype t;
  pool_box *b = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, (void **)&b) != napi_ok) return NULL;
  return b;
}

// pool(module, threads, cb) -> external. cb(id, rv, failedFn, sig?) is called on the main thread per finished job.
static napi_value create_pool(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  module_t *m = NULL;
  napi_valuetype t;
  double threads = 0;
  if (argc < 3 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external || napi_get_value_external(env, argv[0], (void **)&m) != napi_ok || !m) {
    napi_throw_type_error(env, NULL, "pkcs11sign.pool: module handle required");
    return NULL;
  }
  if (napi_get_value_double(env, argv[1], &threads) != napi_ok || threads < 1 || threads > 256 || threads != (int)threads) {
    napi_throw_range_error(env, NULL, "pkcs11sign.pool: threads must be an integer 1..256");
    return NULL;
  }
  if (napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, NULL, "pkcs11sign.pool: callback required");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(env, napi_get_uv_event_loop(env, &loop));
  pool_t *p = (pool_t *)calloc(1, sizeof *p);
  pool_box *b = (pool_box *)calloc(1, sizeof *b);
  if (!p || !b) {
    free(p);
    free(b);
    napi_throw_error(env, NULL, "pkcs11sign.pool: out of memory");
    return NULL;
  }
  p->mod = m;
  p->env = env;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  pthread_cond_init(&p->quiet, NULL);
  pthread_mutex_init(&p->dmu, NULL);
  napi_value name;
  if (napi_create_reference(env, argv[0], 1, &p->mod_ref) != napi_ok || napi_create_reference(env, argv[2], 1, &p->cb) != napi_ok ||
      napi_create_string_utf8(env, "pkcs11sign", NAPI_AUTO_LENGTH, &name) != napi_ok || napi_async_init(env, NULL, name, &p->actx) != napi_ok ||
      uv_async_init(loop, &p->async, on_async) != 0) {
    release_pool(p, 0);
    free(b);
    napi_throw_error(env, NULL, "pkcs11sign.pool: could not set up the completion handle");
    return NULL;
  }
  p->async.data = p;
  p->async_open = 1;
  uv_unref((uv_handle_t *)&p->async);  // referenced only while jobs are in flight
  p->threads = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
  if (!p->threads) {
    release_pool(p, 0);
    free(b);
    napi_throw_error(env, NULL, "pkcs11sign.pool: out of memory");
    return NULL;
  }
  for (int i = 0; i < (int)threads; i++) {
    if (pthread_create(&p->threads[i], NULL, signing_thread, p) != 0) break;
    p->nthreads++;
  }
  if (p->nthreads == 0) {
    release_pool(p, 0);
    free(b);
    napi_throw_error(env, NULL, "pkcs11sign.pool: could not start a signing thread");
    return NULL;
  }
  registry_add(p);
  b->p = p;
  napi_value ext;
  if (napi_create_external(env, b, pool_finalize, NULL, &ext) != napi_ok) {
    release_pool(p, 0);
    free(b);
    napi_throw_error(env, NULL, "pkcs11sign.pool: napi_create_external failed");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, env_cleanup, b);
  return ext;
}

// threads(pool) -> number of signing threads running (0 once closed).
static napi_value pool_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  pool_box *b = argc ? get_pool(env, argv[0]) : NULL;
  CHECK(env, napi_create_int32(env, b && b->p ? b->p->nthreads : 0, &out));
  return out;
}

// close(pool): lets queued jobs finish, delivers their results, joins the threads. Idempotent.
static napi_value close_pool(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  pool_box *b = argc ? get_pool(env, argv[0]) : NULL;
  if (!b) {
    napi_throw_type_error(env, NULL, "pkcs11sign.close: pool handle required");
    return NULL;
  }
  if (b->p) {
    pool_t *p = b->p;
    b->p = NULL;
    release_pool(p, 1);
  }
  return NULL;
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

// submit(pool, id: number, session: Buffer, key: Buffer, mechanism: number, param: Buffer | null, data: Buffer,
//        maxOut: number): undefined. The result arrives through the pool's callback with the same id.
static napi_value submit(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 8) {
    napi_throw_type_error(env, NULL, "pkcs11sign.submit: 8 arguments required");
    return NULL;
  }
  pool_box *b = get_pool(env, argv[0]);
  if (!b || !b->p) {
    napi_throw_error(env, NULL, b ? "pkcs11sign.submit: the signing pool is closed" : "pkcs11sign.submit: pool handle required");
    return NULL;
  }
  pool_t *p = b->p;
  job_t *j = (job_t *)calloc(1, sizeof *j);
  if (!j) {
    napi_throw_error(env, NULL, "pkcs11sign.submit: out of memory");
    return NULL;
  }
  const char *bad = NULL;
  double mech = 0, max_out = 0;
  int ok = 0;
  size_t plen = 0;
  napi_valuetype t;
  if (napi_get_value_double(env, argv[1], &j->id) != napi_ok) bad = "id (number)";
  else if (!read_handle(env, argv[2], &j->session)) bad = "session handle (8-byte Buffer)";
  else if (!read_handle(env, argv[3], &j->key)) bad = "key handle (8-byte Buffer)";
  else if (napi_get_value_double(env, argv[4], &mech) != napi_ok || mech < 0 || mech > 4294967295.0) bad = "mechanism (number)";
  else if (napi_get_value_double(env, argv[7], &max_out) != napi_ok || max_out < 1 || max_out > 65536) bad = "maxOut (1..65536)";
  if (!bad) {
    if (napi_typeof(env, argv[5], &t) != napi_ok) bad = "mechanism parameter (Buffer or null)";
    else if (t != napi_null && t != napi_undefined) {
      j->param = copy_buffer(env, argv[5], &plen, &ok);
      if (!ok) bad = "mechanism parameter (Buffer or null)";
    }
  }
  if (!bad) {
    j->data = copy_buffer(env, argv[6], &j->data_len, &ok);
    if (!ok) bad = "data (Buffer)";
  }
  if (!bad) {
    j->out = (unsigned char *)malloc((size_t)max_out);
    if (!j->out) bad = "memory for the signature";
    j->out_len = (CK_ULONG)max_out;
  }
  if (bad) {
    free_job(j);
    char msg[128];
    strcpy(msg, "pkcs11sign.submit: invalid ");
    strncat(msg, bad, sizeof msg - strlen(msg) - 1);
    napi_throw_type_error(env, NULL, msg);
    return NULL;
  }
  j->mech.mechanism = (CK_ULONG)mech;
  j->mech.pParameter = j->param;
  j->mech.ulParameterLen = (CK_ULONG)plen;
  if (p->inflight++ <= 0) uv_ref((uv_handle_t *)&p->async);
  pthread_mutex_lock(&p->mu);
  if (p->tail) p->tail->next = j;
  else p->head = j;
  p->tail = j;
  if (p->idle > 0) pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"open", open_module}, {"pool", create_pool}, {"submit", submit}, {"close", close_pool}, {"threads", pool_threads}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &fn) != napi_ok) return NULL;
    if (napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok) return NULL;
  }
  return exports;
}
