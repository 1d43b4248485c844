// Node-API for Windows addons cross-compiled with mingw-w64, without an import library for "node.exe".
//
// An addon linked against node.lib imports its napi_* functions from the module named "node.exe", so it fails to load
// in a host of another name (the release executable is a renamed Node single executable, spire-hw-plugins.exe).
// Instead, every Node-API function an addon uses is looked up once, at module registration, in the host executable
// (GetModuleHandleW(NULL) + GetProcAddress): node.exe and a Node SEA both export the whole Node-API.
//
// Use: include this header instead of <node_api.h>, start the module's init with NAPI_WIN_RESOLVE_OR_RETURN(env), and
// link native/win/napi-win.c. A napi_* call not listed below fails at link time (undefined reference), so no Node-API
// import can slip into the DLL; native/build-win-addon.sh also checks the import table.
#ifndef SPIRE_HW_NAPI_WIN_H
#define SPIRE_HW_NAPI_WIN_H

#define NAPI_VERSION 8
#define NAPI_EXTERN // plain declarations: the definitions below are pointers filled at run time
#include <node_api.h>

// X(name) for every Node-API function the Windows addons call.
#define NAPI_WIN_FUNCTIONS(X)                                                                                          \
  X(napi_get_cb_info)                                                                                                  \
  X(napi_typeof)                                                                                                       \
  X(napi_get_value_double)                                                                                             \
  X(napi_get_value_bool)                                                                                               \
  X(napi_get_named_property)                                                                                           \
  X(napi_set_named_property)                                                                                           \
  X(napi_set_element)                                                                                                  \
  X(napi_create_object)                                                                                                \
  X(napi_create_array_with_length)                                                                                     \
  X(napi_create_string_utf8)                                                                                           \
  X(napi_create_string_utf16)                                                                                          \
  X(napi_create_uint32)                                                                                                \
  X(napi_get_boolean)                                                                                                  \
  X(napi_get_undefined)                                                                                                \
  X(napi_create_function)                                                                                              \
  X(napi_create_error)                                                                                                 \
  X(napi_create_type_error)                                                                                            \
  X(napi_throw)                                                                                                        \
  X(napi_throw_error)                                                                                                  \
  X(napi_throw_type_error)                                                                                             \
  X(napi_is_exception_pending)                                                                                         \
  X(napi_create_external)                                                                                              \
  X(napi_get_value_external)                                                                                           \
  X(napi_type_tag_object)                                                                                              \
  X(napi_check_object_type_tag)                                                                                        \
  X(napi_is_typedarray)                                                                                                \
  X(napi_get_typedarray_info)                                                                                          \
  X(napi_create_buffer_copy)                                                                                           \
  X(napi_create_promise)                                                                                               \
  X(napi_resolve_deferred)                                                                                             \
  X(napi_reject_deferred)                                                                                              \
  X(napi_create_async_work)                                                                                            \
  X(napi_queue_async_work)                                                                                             \
  X(napi_delete_async_work)

#define NAPI_WIN_DECLARE(name) extern __typeof__(name) *napi_win_p_##name;
NAPI_WIN_FUNCTIONS(NAPI_WIN_DECLARE)
#undef NAPI_WIN_DECLARE

// Calls go through the resolved pointers (one line per function: the preprocessor cannot generate #defines).
#define napi_get_cb_info (*napi_win_p_napi_get_cb_info)
#define napi_typeof (*napi_win_p_napi_typeof)
#define napi_get_value_double (*napi_win_p_napi_get_value_double)
#define napi_get_value_bool (*napi_win_p_napi_get_value_bool)
#define napi_get_named_property (*napi_win_p_napi_get_named_property)
#define napi_set_named_property (*napi_win_p_napi_set_named_property)
#define napi_set_element (*napi_win_p_napi_set_element)
#define napi_create_object (*napi_win_p_napi_create_object)
#define napi_create_array_with_length (*napi_win_p_napi_create_array_with_length)
#define napi_create_string_utf8 (*napi_win_p_napi_create_string_utf8)
#define napi_create_string_utf16 (*napi_win_p_napi_create_string_utf16)
#define napi_create_uint32 (*napi_win_p_napi_create_uint32)
#define napi_get_boolean (*napi_win_p_napi_get_boolean)
#define napi_get_undefined (*napi_win_p_napi_get_undefined)
#define napi_create_function (*napi_win_p_napi_create_function)
#define napi_create_error (*napi_win_p_napi_create_error)
#define napi_create_type_error (*napi_win_p_napi_create_type_error)
#define napi_throw (*napi_win_p_napi_throw)
#define napi_throw_error (*napi_win_p_napi_throw_error)
#define napi_throw_type_error (*napi_win_p_napi_throw_type_error)
#define napi_is_exception_pending (*napi_win_p_napi_is_exception_pending)
#define napi_create_external (*napi_win_p_napi_create_external)
#define napi_get_value_external (*napi_win_p_napi_get_value_external)
#define napi_type_tag_object (*napi_win_p_napi_type_tag_object)
#define napi_check_object_type_tag (*napi_win_p_napi_check_object_type_tag)
#define napi_is_typedarray (*napi_win_p_napi_is_typedarray)
#define napi_get_typedarray_info (*napi_win_p_napi_get_typedarray_info)
#define napi_create_buffer_copy (*napi_win_p_napi_create_buffer_copy)
#define napi_create_promise (*napi_win_p_napi_create_promise)
#define napi_resolve_deferred (*napi_win_p_napi_resolve_deferred)
#define napi_reject_deferred (*napi_win_p_napi_reject_deferred)
#define napi_create_async_work (*napi_win_p_napi_create_async_work)
#define napi_queue_async_work (*napi_win_p_napi_queue_async_work)
#define napi_delete_async_work (*napi_win_p_napi_delete_async_work)

// Resolves every function above in the host executable (idempotent, thread-safe). Returns NULL on success, else the
// name of the first function the host does not export.
const char *napi_win_resolve(void);

// For a module's init: resolve, or throw an Error naming the missing function (when napi_throw_error itself
// resolved) and give the module no exports.
#define NAPI_WIN_RESOLVE_OR_RETURN(env)                                                                                \
  do {                                                                                                                 \
    const char *missing_ = napi_win_resolve();                                                                         \
    if (missing_ != NULL) {                                                                                            \
      if (napi_win_p_napi_throw_error != NULL) napi_throw_error((env), NULL, missing_);                              \
      return NULL;                                                                                                     \
    }                                                                                                                  \
  } while (0)

#endif
