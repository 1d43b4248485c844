// Test helper (never shipped): starts a copy of itself whose token has BUILTIN\Administrators (S-1-5-32-544) as a
// deny-only group (CreateRestrictedToken with that SID to disable + CreateProcessAsUserW), prints the child's PID on
// stdout, waits until its own stdin closes (or 60 s), then terminates the child and exits.
//   restricted-child.exe          the parent
//   restricted-child.exe --sleep  the child: sleeps up to 60 s
#include <windows.h>
#include <sddl.h>
#include <stdio.h>
#include <wchar.h>

int wmain(int argc, wchar_t **argv) {
  if (argc > 1 && wcscmp(argv[1], L"--sleep") == 0) {
    Sleep(60000);
    return 0;
  }
  HANDLE own = NULL, restricted = NULL;
  PSID admins = NULL;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_DUPLICATE | TOKEN_QUERY | TOKEN_ASSIGN_PRIMARY, &own) ||
      !ConvertStringSidToSidW(L"S-1-5-32-544", &admins)) {
    fprintf(stderr, "setup failed: %lu\n", GetLastError());
    return 2;
  }
  SID_AND_ATTRIBUTES disable = {admins, 0};
  if (!CreateRestrictedToken(own, 0, 1, &disable, 0, NULL, 0, NULL, &restricted)) {
    fprintf(stderr, "CreateRestrictedToken failed: %lu\n", GetLastError());
    return 3;
  }
  wchar_t self[MAX_PATH], cmd[MAX_PATH + 16];
  GetModuleFileNameW(NULL, self, MAX_PATH);
  swprintf(cmd, MAX_PATH + 16, L"\"%ls\" --sleep", self);
  STARTUPINFOW si;
  ZeroMemory(&si, sizeof si);
  si.cb = sizeof si;
  PROCESS_INFORMATION pi;
  if (!CreateProcessAsUserW(restricted, NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi)) {
    fprintf(stderr, "CreateProcessAsUserW failed: %lu\n", GetLastError());
    return 4;
  }
  printf("%lu\n", pi.dwProcessId);
  fflush(stdout);
  HANDLE in = GetStdHandle(STD_INPUT_HANDLE);
  char b[64];
  DWORD n;
  DWORD start = GetTickCount();
  while (GetTickCount() - start < 60000 && ReadFile(in, b, sizeof b, &n, NULL) && n > 0) {
  }
  TerminateProcess(pi.hProcess, 0);
  WaitForSingleObject(pi.hProcess, 5000);
  CloseHandle(pi.hThread);
  CloseHandle(pi.hProcess);
  CloseHandle(restricted);
  CloseHandle(own);
  LocalFree(admins);
  return 0;
}
