/*
 * ntdsbcli.h: the Directory Backup client API (Ntdsbcli.dll) as ntdsbcli-conform verifies it.
 *
 * Build a library against this header on Linux or Windows and the compiler checks every
 * export's signature. It follows the public documentation (docs/spec.md §1) and the public
 * domain mingw-w64 SDK header: the same names, the same Windows type widths on every platform
 * (HRESULT and LONG 32-bit signed, ULONG and DWORD 32-bit unsigned, BOOL int, WCHAR a 16-bit
 * UTF-16 code unit, never wchar_t, LARGE_INTEGER 64-bit), the system calling convention.
 *
 *   Windows: #define NTDSBCLI_BUILD before the #include in the library's own sources (the
 *            exports get __declspec(dllexport)); a caller includes it as it is.
 *   Unix:    cc -shared -fPIC -Iinclude -o libyours.so yours.c
 *
 * There are no generic names (DsBackupPrepare, ...): the DLL exports only the A and W forms of
 * the functions that take strings, and the verifier looks up those.
 */
#ifndef NTDSBCLI_CONFORM_H
#define NTDSBCLI_CONFORM_H

#ifdef _WIN32
#include <windows.h>
#ifdef NTDSBCLI_BUILD
#define NTDSBCLI_API __declspec(dllexport) WINAPI
#else
#define NTDSBCLI_API __declspec(dllimport) WINAPI
#endif
#else /* Unix: the Windows widths, spelled with <stdint.h> */
#include <stdint.h>
typedef int32_t HRESULT;
typedef int32_t LONG;
typedef uint32_t ULONG;
typedef uint32_t DWORD;
typedef int32_t BOOL;
typedef uint16_t WCHAR; /* UTF-16, NUL-terminated; wchar_t is 32-bit here */
typedef char CHAR;
typedef void VOID;
typedef void *PVOID;
typedef DWORD *LPDWORD;
typedef DWORD *PDWORD;
typedef const CHAR *LPCSTR;
typedef CHAR *LPSTR;
typedef const WCHAR *LPCWSTR;
typedef WCHAR *LPWSTR;
typedef union _LARGE_INTEGER {
    struct {
        DWORD LowPart;
        LONG HighPart;
    } u;
    int64_t QuadPart;
} LARGE_INTEGER;
#ifndef S_OK
#define S_OK ((HRESULT)0)
#endif
#define NTDSBCLI_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The handle of a backup or a restore session: an opaque value, never dereferenced by a caller. */
typedef void *HBC;

/* btBackupType of DsBackupPrepare: only FULL is supported (INCREMENTAL gets 87). */
#define BACKUP_TYPE_FULL 0x01
#define BACKUP_TYPE_LOGS_ONLY 0x02
#define BACKUP_TYPE_INCREMENTAL 0x04
/* rtFlag of DsRestorePrepare (the misspelling is the SDK's). */
#define RESTORE_TYPE_AUTHORATATIVE 0x01
#define RESTORE_TYPE_ONLINE 0x02
#define RESTORE_TYPE_CATCHUP 0x04
#define BACKUP_DISABLE_INCREMENTAL 0xffffffff

/* The type character before each name in a returned list: one CHAR in the A forms, one WCHAR in
   the W forms. */
#define BFT_DIRECTORY 0x80
#define BFT_DATABASE_DIRECTORY 0x40
#define BFT_LOG_DIRECTORY 0x20
#define BFT_LOG 0x21
#define BFT_LOG_DIR 0x82
#define BFT_CHECKPOINT_DIR 0x83
#define BFT_NTDS_DATABASE 0x44
#define BFT_PATCH_FILE 0x25
#define BFT_UNKNOWN 0x0F

/* The codes the checks compare. Win32 and RPC codes travel raw, not wrapped as HRESULTs: 87 is
   ERROR_INVALID_PARAMETER, and SUCCEEDED(87) is true, so compare values, never use FAILED(). */
#ifndef ERROR_ACCESS_DENIED
#define ERROR_ACCESS_DENIED 5L
#endif
#ifndef ERROR_NOT_ENOUGH_MEMORY
#define ERROR_NOT_ENOUGH_MEMORY 8L
#endif
#ifndef ERROR_HANDLE_EOF
#define ERROR_HANDLE_EOF 38L
#endif
#ifndef ERROR_INVALID_PARAMETER
#define ERROR_INVALID_PARAMETER 87L
#endif
#ifndef RPC_S_INVALID_BINDING
#define RPC_S_INVALID_BINDING 1702L
#endif
#ifndef RPC_S_SERVER_UNAVAILABLE
#define RPC_S_SERVER_UNAVAILABLE 1722L
#endif
/* From ntdsbmsg.h. */
#define hrInvalidParam ((HRESULT)0xC7FF0001L)
#define hrInvalidHandle ((HRESULT)0xC7FF0003L)
#define hrAlreadyOpen ((HRESULT)0xC7FF0005L)
#define hrCouldNotConnect ((HRESULT)0xC7FF0007L)
#define hrMissingExpiryToken ((HRESULT)0xC7FF000FL)
#define hrBackupInProgress ((HRESULT)0xC80001F9L)

typedef struct tagEDB_RSTMAPA {
    CHAR *szDatabaseName;
    CHAR *szNewDatabaseName;
} EDB_RSTMAPA, *PEDB_RSTMAPA;

typedef struct tagEDB_RSTMAPW {
    WCHAR *wszDatabaseName;
    WCHAR *wszNewDatabaseName;
} EDB_RSTMAPW, *PEDB_RSTMAPW;

/* Required: DsBackupEnd, DsBackupFree and one of DsBackupPrepareA / DsBackupPrepareW. Every
   other export is optional; a check that needs an absent one is skipped. */
HRESULT NTDSBCLI_API DsBackupPrepareA(LPCSTR szBackupServer, ULONG grbit, ULONG btBackupType,
                                      PVOID *ppvExpiryToken, LPDWORD pcbExpiryTokenSize, HBC *phbc);
HRESULT NTDSBCLI_API DsBackupPrepareW(LPCWSTR szBackupServer, ULONG grbit, ULONG btBackupType,
                                      PVOID *ppvExpiryToken, LPDWORD pcbExpiryTokenSize, HBC *phbc);
HRESULT NTDSBCLI_API DsBackupEnd(HBC hbc);
VOID NTDSBCLI_API DsBackupFree(PVOID pvBuffer);

HRESULT NTDSBCLI_API DsBackupGetDatabaseNamesA(HBC hbc, LPSTR *pszAttachmentInfo, LPDWORD pcbSize);
HRESULT NTDSBCLI_API DsBackupGetDatabaseNamesW(HBC hbc, LPWSTR *pszAttachmentInfo, LPDWORD pcbSize);
HRESULT NTDSBCLI_API DsBackupOpenFileA(HBC hbc, LPCSTR szAttachmentName, DWORD cbReadHintSize,
                                       LARGE_INTEGER *pliFileSize);
HRESULT NTDSBCLI_API DsBackupOpenFileW(HBC hbc, LPCWSTR szAttachmentName, DWORD cbReadHintSize,
                                       LARGE_INTEGER *pliFileSize);
HRESULT NTDSBCLI_API DsBackupRead(HBC hbc, PVOID pvBuffer, DWORD cbBuffer, PDWORD pcbRead);
HRESULT NTDSBCLI_API DsBackupClose(HBC hbc);
HRESULT NTDSBCLI_API DsBackupGetBackupLogsA(HBC hbc, LPSTR *pszBackupLogFiles, LPDWORD pcbSize);
HRESULT NTDSBCLI_API DsBackupGetBackupLogsW(HBC hbc, LPWSTR *pszBackupLogFiles, LPDWORD pcbSize);
HRESULT NTDSBCLI_API DsBackupTruncateLogs(HBC hbc);

HRESULT NTDSBCLI_API DsIsNTDSOnlineA(LPCSTR szServerName, BOOL *pfNTDSOnline);
HRESULT NTDSBCLI_API DsIsNTDSOnlineW(LPCWSTR szServerName, BOOL *pfNTDSOnline);
HRESULT NTDSBCLI_API DsSetAuthIdentityA(LPCSTR szUserName, LPCSTR szDomainName, LPCSTR szPassword);
HRESULT NTDSBCLI_API DsSetAuthIdentityW(LPCWSTR szUserName, LPCWSTR szDomainName,
                                        LPCWSTR szPassword);
HRESULT NTDSBCLI_API DsSetCurrentBackupLogA(LPCSTR szServerName, DWORD dwCurrentLog);
HRESULT NTDSBCLI_API DsSetCurrentBackupLogW(LPCWSTR szServerName, DWORD dwCurrentLog);

HRESULT NTDSBCLI_API DsRestorePrepareA(LPCSTR szServerName, ULONG rtFlag, PVOID pvExpiryToken,
                                       DWORD cbExpiryTokenSize, HBC *phbc);
HRESULT NTDSBCLI_API DsRestorePrepareW(LPCWSTR szServerName, ULONG rtFlag, PVOID pvExpiryToken,
                                       DWORD cbExpiryTokenSize, HBC *phbc);
HRESULT NTDSBCLI_API DsRestoreGetDatabaseLocationsA(HBC hbc, LPSTR *pszDatabaseLocationList,
                                                    LPDWORD pcbSize);
HRESULT NTDSBCLI_API DsRestoreGetDatabaseLocationsW(HBC hbc, LPWSTR *pszDatabaseLocationList,
                                                    LPDWORD pcbSize);
HRESULT NTDSBCLI_API DsRestoreRegisterA(HBC hbc, LPCSTR szCheckPointFilePath, LPCSTR szLogPath,
                                        EDB_RSTMAPA rgrstmap[], LONG crstmap,
                                        LPCSTR szBackupLogPath, ULONG genLow, ULONG genHigh);
HRESULT NTDSBCLI_API DsRestoreRegisterW(HBC hbc, LPCWSTR szCheckPointFilePath, LPCWSTR szLogPath,
                                        EDB_RSTMAPW rgrstmap[], LONG crstmap,
                                        LPCWSTR szBackupLogPath, ULONG genLow, ULONG genHigh);
HRESULT NTDSBCLI_API DsRestoreRegisterComplete(HBC hbc, HRESULT hrRestoreState);
HRESULT NTDSBCLI_API DsRestoreEnd(HBC hbc);

#ifdef __cplusplus
}
#endif

#endif /* NTDSBCLI_CONFORM_H */
