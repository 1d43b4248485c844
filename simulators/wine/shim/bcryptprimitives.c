/*
 * A stand-in for Windows' bcryptprimitives.dll, for Wine 8.0 prefixes (Wine gained its own in 8.13).
 *
 * Go >= 1.22 Windows binaries (spire-agent.exe) import ProcessPrng from bcryptprimitives.dll at load time and refuse
 * to start without it. ProcessPrng(buffer, length) fills the buffer from the system RNG and always returns TRUE on
 * Windows; here it forwards to BCryptGenRandom with the system-preferred RNG, in chunks because that takes a ULONG
 * length, and reports FALSE if the RNG fails.
 *
 * Built by simulators/wine/ensure-wine.sh: x86_64-w64-mingw32-gcc -shared ... -lbcrypt, copied into the prefix's
 * C:\windows\system32. Not for use outside the test prefix.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000u ? 0x40000000u : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
