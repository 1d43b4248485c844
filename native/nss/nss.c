// Minimal N-API addon: user/group name lookups through the C library's NSS (getpwuid_r / getgrgid_r), run on the
// libuv thread pool (napi_create_async_work) so a slow back end (LDAP, SSSD, AD) never blocks the event loop.
//
//   getpwuid(uid: number): Promise<string | null>   // null = no such user
//   getgrgid(gid: number): Promise<string | null>   // null = no such group
// Rejects with an Error whose `code` is the errno name-ish text for lookup failures other than "not found".
//
// Build: gcc -shared -fPIC -O2 -I/usr/include/node native/nss/nss.c -o <out>/nss.node (see build.sh)
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BUF (16u * 1024u * 1024u)

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int is_group;
  uint32_t id;
  int rc;      // 0 ok, else errno
  int found;   // 1 when an entry was found
  char *name;  // malloc'd name when found
} lookup_t;

static size_t initial_size(int is_group) {
  long s = sysconf(is_group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
  if (s <= 0 || s > 65536) s = 1024;
  return (size_t)s;
}

static void execute(napi_env env, void *data) {
  (void)env;
  lookup_t *l = (lookup_t *)data;
  size_t size = initial_size(l->is_group);
  char *buf = NULL;
  for (;;) {
    char *nb = (char *)realloc(buf, size);
    if (nb == NULL) {
      l->rc = ENOMEM;
      break;
    }
    buf = nb;
    int rc;
    const char *name = NULL;
    if (l->is_group) {
      struct group gr, *res = NULL;
      rc = getgrgid_r((gid_t)l->id, &gr, buf, size, &res);
      if (rc == 0 && res != NULL) name = res->gr_name;
    } else {
      struct passwd pw, *res = NULL;
      rc = getpwuid_r((uid_t)l->id, &pw, buf, size, &res);
      if (rc == 0 && res != NULL) name = res->pw_name;
    }
    if (rc == ERANGE && size < MAX_BUF) {
      size *= 2;
      continue;
    }
    if (rc == 0 && name != NULL) {
      l->name = strdup(name);
      if (l->name == NULL) {
        l->rc = ENOMEM;
      } else {
        l->found = 1;
      }
    } else if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM) {
      // POSIX: "not found" is rc 0 with a NULL result; glibc/musl also report these errnos for a missing entry.
      l->found = 0;
    } else {
      l->rc = rc;
    }
    break;
  }
  free(buf);
}

static void complete(napi_env env, napi_status status, void *data) {
  lookup_t *l = (lookup_t *)data;
  napi_value v;
  if (status != napi_ok) {
    napi_value msg;
    napi_create_string_utf8(env, "lookup cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, l->deferred, v);
  } else if (l->rc != 0) {
    napi_value msg, code;
    napi_create_string_utf8(env, strerror(l->rc), NAPI_AUTO_LENGTH, &msg);
    napi_create_int32(env, l->rc, &code);
    napi_create_error(env, NULL, msg, &v);
    napi_set_named_property(env, v, "errno", code);
    napi_reject_deferred(env, l->deferred, v);
  } else if (l->found) {
    napi_create_string_utf8(env, l->name, NAPI_AUTO_LENGTH, &v);
    napi_resolve_deferred(env, l->deferred, v);
  } else {
    napi_get_null(env, &v);
    napi_resolve_deferred(env, l->deferred, v);
  }
  napi_delete_async_work(env, l->work);
  free(l->name);
  free(l);
}

static napi_value start(napi_env env, napi_callback_info info, int is_group) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  double d = -1;
  napi_valuetype t;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_number ||
      napi_get_value_double(env, argv[0], &d) != napi_ok || d < 0 || d > 4294967295.0 || d != (double)(uint32_t)d) {
    napi_throw_type_error(env, NULL, "id must be an integer in [0, 2^32-1]");
    return NULL;
  }
  lookup_t *l = (lookup_t *)calloc(1, sizeof(lookup_t));
  if (l == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  l->is_group = is_group;
  l->id = (uint32_t)d;
  napi_value promise, resource_name;
  if (napi_create_promise(env, &l->deferred, &promise) != napi_ok) {
    free(l);
    return NULL;
  }
  napi_create_string_utf8(env, is_group ? "nss.getgrgid" : "nss.getpwuid", NAPI_AUTO_LENGTH, &resource_name);
  if (napi_create_async_work(env, NULL, resource_name, execute, complete, l, &l->work) != napi_ok ||
      napi_queue_async_work(env, l->work) != napi_ok) {
    napi_value msg, err;
    napi_create_string_utf8(env, "cannot queue lookup", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, l->deferred, err);
    free(l);
  }
  return promise;
}

static napi_value getpwuid_js(napi_env env, napi_callback_info info) { return start(env, info, 0); }
static napi_value getgrgid_js(napi_env env, napi_callback_info info) { return start(env, info, 1); }

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"getpwuid", NULL, getpwuid_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getgrgid", NULL, getgrgid_js, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
