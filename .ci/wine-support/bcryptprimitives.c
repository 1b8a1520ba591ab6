/* Stand-in for bcryptprimitives.dll, which Wine 8 lacks and Rust's std imports for its one
   function ProcessPrng. RtlGenRandom (advapi32's SystemFunction036) gives the same bytes. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
