// A FAKE tbs.dll for tests (never shipped): TPM Base Services over a swtpm data channel on loopback TCP.
//
// Exports Tbsi_Context_Create, Tbsip_Submit_Command, Tbsip_Context_Close and Tbsi_GetDeviceInfo with the TBS
// signatures. Each context opens its own TCP connection to SPIRE_HW_FAKE_TBS_TPM (host:port, IPv4 literal, e.g.
// 127.0.0.1:2321: swtpm's `--server type=tcp` data channel, which carries raw TPM 2.0 command/response frames), and
// each submit writes the command and reads one response (10-byte header, then the size it announces).
//
// SPIRE_HW_FAKE_TBS_FAIL injects TBS errors: a comma-separated list of <what>:<TBS_RESULT>, what = create | submit |
// close | info; e.g. `submit:0x80284008` or `create:0x8028400F`. It is read on every call (Node on Windows updates
// the process environment when process.env changes, so a test can switch it between calls).
// Without a reachable TPM, Tbsi_Context_Create fails with TBS_E_TPM_NOT_FOUND, as TBS does on a machine without one.
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef UINT32 TBS_RESULT;
// TBS_SUCCESS and most TBS_E_* codes come from <winerror.h> (mingw-w64); this one it lacks.
#ifndef TBS_E_INVALID_CONTEXT
#define TBS_E_INVALID_CONTEXT 0x80284004u
#endif

#define MAX_FRAME (1u << 20)

typedef struct {
  SOCKET s;
  CRITICAL_SECTION lock;
} fake_ctx;

// The injected result for `what`, or 0.
static TBS_RESULT injected(const char *what) {
  char buf[512];
  DWORD n = GetEnvironmentVariableA("SPIRE_HW_FAKE_TBS_FAIL", buf, sizeof buf);
  if (n == 0 || n >= sizeof buf) return 0;
  size_t wl = strlen(what);
  for (char *p = buf; p && *p;) {
    char *next = strchr(p, ',');
    if (next) *next++ = '\0';
    if (strncmp(p, what, wl) == 0 && p[wl] == ':') return (TBS_RESULT)strtoul(p + wl + 1, NULL, 0);
    p = next;
  }
  return 0;
}

static int send_all(SOCKET s, const BYTE *b, UINT32 n) {
  while (n > 0) {
    int k = send(s, (const char *)b, (int)(n > 65536 ? 65536 : n), 0);
    if (k <= 0) return 0;
    b += k;
    n -= (UINT32)k;
  }
  return 1;
}

static int recv_all(SOCKET s, BYTE *b, UINT32 n) {
  while (n > 0) {
    int k = recv(s, (char *)b, (int)(n > 65536 ? 65536 : n), 0);
    if (k <= 0) return 0;
    b += k;
    n -= (UINT32)k;
  }
  return 1;
}

__declspec(dllexport) TBS_RESULT WINAPI Tbsi_Context_Create(const void *params, void **ctx) {
  if (params == NULL || ctx == NULL) return TBS_E_BAD_PARAMETER;
  TBS_RESULT inj = injected("create");
  if (inj) return inj;
  char target[128];
  DWORD n = GetEnvironmentVariableA("SPIRE_HW_FAKE_TBS_TPM", target, sizeof target);
  if (n == 0 || n >= sizeof target) return TBS_E_TPM_NOT_FOUND;
  char *colon = strrchr(target, ':');
  if (colon == NULL) return TBS_E_TPM_NOT_FOUND;
  *colon = '\0';
  WSADATA wsa;
  if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return TBS_E_INTERNAL_ERROR;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((u_short)strtoul(colon + 1, NULL, 10));
  if (inet_pton(AF_INET, target, &sa.sin_addr) != 1) {
    WSACleanup();
    return TBS_E_TPM_NOT_FOUND;
  }
  SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  if (s == INVALID_SOCKET || connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
    if (s != INVALID_SOCKET) closesocket(s);
    WSACleanup();
    return TBS_E_TPM_NOT_FOUND;
  }
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
  fake_ctx *c = calloc(1, sizeof *c);
  if (c == NULL) {
    closesocket(s);
    WSACleanup();
    return TBS_E_INTERNAL_ERROR;
  }
  c->s = s;
  InitializeCriticalSection(&c->lock);
  *ctx = c;
  return TBS_SUCCESS;
}

__declspec(dllexport) TBS_RESULT WINAPI Tbsip_Submit_Command(void *ctx, UINT32 locality, UINT32 priority,
                                                             const BYTE *cmd, UINT32 cmd_len, BYTE *rsp,
                                                             UINT32 *rsp_len) {
  (void)locality;
  (void)priority;
  fake_ctx *c = ctx;
  if (c == NULL) return TBS_E_INVALID_CONTEXT;
  if (cmd == NULL || rsp == NULL || rsp_len == NULL || cmd_len < 10 || cmd_len > MAX_FRAME) return TBS_E_BAD_PARAMETER;
  TBS_RESULT inj = injected("submit");
  if (inj) return inj;
  TBS_RESULT r = TBS_SUCCESS;
  EnterCriticalSection(&c->lock);
  BYTE hdr[10];
  if (c->s == INVALID_SOCKET || !send_all(c->s, cmd, cmd_len) || !recv_all(c->s, hdr, 10)) {
    r = TBS_E_IOERROR;
  } else {
    UINT32 size = ((UINT32)hdr[2] << 24) | ((UINT32)hdr[3] << 16) | ((UINT32)hdr[4] << 8) | hdr[5];
    if (size < 10 || size > MAX_FRAME) {
      r = TBS_E_IOERROR;
    } else if (size > *rsp_len) { // read and drop the rest, so the channel stays in step; TBS reports the size
      BYTE sink[4096];
      UINT32 left = size - 10;
      while (left > 0 && r == TBS_SUCCESS) {
        UINT32 k = left > sizeof sink ? sizeof sink : left;
        if (!recv_all(c->s, sink, k)) r = TBS_E_IOERROR;
        left -= k;
      }
      if (r == TBS_SUCCESS) r = TBS_E_INSUFFICIENT_BUFFER;
    } else {
      memcpy(rsp, hdr, 10);
      if (!recv_all(c->s, rsp + 10, size - 10))
        r = TBS_E_IOERROR;
      else
        *rsp_len = size;
    }
  }
  if (r == (TBS_RESULT)TBS_E_IOERROR && c->s != INVALID_SOCKET) { // the frame boundary is lost: this context is unusable
    closesocket(c->s);
    c->s = INVALID_SOCKET;
  }
  LeaveCriticalSection(&c->lock);
  return r;
}

__declspec(dllexport) TBS_RESULT WINAPI Tbsip_Context_Close(void *ctx) {
  fake_ctx *c = ctx;
  if (c == NULL) return TBS_E_INVALID_CONTEXT;
  TBS_RESULT inj = injected("close");
  if (c->s != INVALID_SOCKET) closesocket(c->s);
  DeleteCriticalSection(&c->lock);
  free(c);
  WSACleanup();
  return inj; // an injected close error is reported after the context is released, as a real handle would be gone
}

// TPM_DEVICE_INFO: structVersion, tpmVersion (2 = TPM 2.0), tpmInterfaceType (1 = TIS), tpmImpRevision.
__declspec(dllexport) TBS_RESULT WINAPI Tbsi_GetDeviceInfo(UINT32 size, void *info) {
  TBS_RESULT inj = injected("info");
  if (inj) return inj;
  if (info == NULL || size < 16) return TBS_E_BAD_PARAMETER;
  UINT32 v[4] = {1, 2, 1, 0};
  memcpy(info, v, sizeof v);
  return TBS_SUCCESS;
}
