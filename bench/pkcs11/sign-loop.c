/*
 * Raw PKCS#11 signing loop: the "raw C" baseline for bench/pkcs11/sign.ts.
 * dlopen the module, C_Initialize(CKF_OS_LOCKING_OK), log in once on an anchor session, start T threads, each with its
 * own CKF_SERIAL_SESSION and the key handle found once, loop C_SignInit + C_Sign (CKM_ECDSA over a fixed 32-byte
 * digest) for S seconds, print total ops/s.
 * Usage: sign-loop <module> <token-label> <pin> <key-label> <threads> <seconds>
 * Build: gcc -O2 -I node_modules/pkcs11js/includes/pkcs11 sign-loop.c -o sign-loop -ldl -lpthread
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pkcs11.h"

static CK_FUNCTION_LIST_PTR p;
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE key;
static volatile int stop_flag;
static double seconds;

#define CHECK(call)                                                        \
  do {                                                                     \
    CK_RV rv_ = (call);                                                    \
    if (rv_ != CKR_OK) {                                                   \
      fprintf(stderr, "%s failed: 0x%lx\n", #call, (unsigned long)rv_);   \
      exit(1);                                                             \
    }                                                                      \
  } while (0)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void *worker(void *arg) {
  long *count = (long *)arg;
  CK_SESSION_HANDLE s;
  CK_BYTE digest[32], sig[256];
  CK_MECHANISM mech = {CKM_ECDSA, NULL_PTR, 0};
  memset(digest, 0x5a, sizeof digest);
  CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL_PTR, NULL_PTR, &s));
  while (!stop_flag) {
    CK_ULONG siglen = sizeof sig;
    CHECK(p->C_SignInit(s, &mech, key));
    CHECK(p->C_Sign(s, digest, sizeof digest, sig, &siglen));
    (*count)++;
  }
  p->C_CloseSession(s);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s <module> <token-label> <pin> <key-label> <threads> <seconds>\n", argv[0]);
    return 2;
  }
  int threads = atoi(argv[5]);
  seconds = atof(argv[6]);
  void *lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
  CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
  CHECK(gfl(&p));
  CK_C_INITIALIZE_ARGS ia;
  memset(&ia, 0, sizeof ia);
  ia.flags = CKF_OS_LOCKING_OK;
  CHECK(p->C_Initialize(&ia));
  CK_SLOT_ID slots[64];
  CK_ULONG n = 64;
  CHECK(p->C_GetSlotList(CK_TRUE, slots, &n));
  int found = 0;
  for (CK_ULONG i = 0; i < n && !found; i++) {
    CK_TOKEN_INFO ti;
    if (p->C_GetTokenInfo(slots[i], &ti) != CKR_OK) continue;
    size_t len = strlen(argv[2]);
    if (len <= 32 && memcmp(ti.label, argv[2], len) == 0 && (len == 32 || ti.label[len] == ' ')) { slot = slots[i]; found = 1; }
  }
  if (!found) { fprintf(stderr, "token not found\n"); return 1; }
  CK_SESSION_HANDLE anchor;
  CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL_PTR, NULL_PTR, &anchor));
  CHECK(p->C_Login(anchor, CKU_USER, (CK_UTF8CHAR_PTR)argv[3], strlen(argv[3])));
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, argv[4], strlen(argv[4])}};
  CK_ULONG got = 0;
  CHECK(p->C_FindObjectsInit(anchor, tmpl, 2));
  CHECK(p->C_FindObjects(anchor, &key, 1, &got));
  CHECK(p->C_FindObjectsFinal(anchor));
  if (got != 1) { fprintf(stderr, "key not found\n"); return 1; }
  pthread_t th[64];
  long counts[64] = {0};
  if (threads < 1 || threads > 64) threads = 1;
  double t0 = now();
  for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, &counts[i]);
  struct timespec d = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
  nanosleep(&d, NULL);
  stop_flag = 1;
  long total = 0;
  for (int i = 0; i < threads; i++) { pthread_join(th[i], NULL); total += counts[i]; }
  double el = now() - t0;
  printf("{\"threads\":%d,\"ops\":%ld,\"seconds\":%.3f,\"ops_per_sec\":%.1f}\n", threads, total, el, total / el);
  p->C_Logout(anchor);
  p->C_CloseSession(anchor);
  p->C_Finalize(NULL_PTR);
  return 0;
}
