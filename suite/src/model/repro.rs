//! A standalone C program that performs a failing sequence against the library named by
//! argv[1] and checks every answer: it exits 1 (or dies) where the defect reproduces and 0 on
//! a correct library. Build: `cc -o repro repro.c -ldl -lpthread` on Unix,
//! `x86_64-w64-mingw32-gcc -o repro.exe repro.c` or `cl repro.c` for Windows.

use super::layout::Layout;
use super::oracle::{Expect, Failure};
use ntdsbcli_harness::calls::{self, c, c::c_str, CStep};
use ntdsbcli_harness::program::{Op, Program};
use std::fmt::Write;

const HEADER: &str = r#"#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <windows.h>
#include <tlhelp32.h>
#define API __stdcall
#define LOAD(p) ((void *)LoadLibraryA(p))
#define SYM(l, n) ((void *)GetProcAddress((HMODULE)(l), (n)))
#else
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <sys/mman.h>
#define API
#define LOAD(p) dlopen((p), RTLD_NOW | RTLD_LOCAL)
#define SYM(l, n) dlsym((l), (n))
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MAYBE_UNUSED __attribute__((unused))
#else
#define MAYBE_UNUSED
#endif

typedef int32_t HR;
typedef void *HBC;
typedef uint16_t WCH;
"#;

/// The state a repro keeps, after the C types of the calls (`calls::C_TYPES`).
const STATE: &str = r#"
static void *lib;
static int failed, quiet;
MAYBE_UNUSED static HBC h[32];
MAYBE_UNUSED static int live[32], rlive[32];
/* Sessions still open when a Prepare reused their slot, ended at clean-up. */
MAYBE_UNUSED static HBC orphan[64];
MAYBE_UNUSED static int norphans;
MAYBE_UNUSED static void *b[32];
MAYBE_UNUSED static uint32_t bsz[32];
MAYBE_UNUSED static int bwide[32];

static void *need(const char *name) {
    void *p = SYM(lib, name);
    if (!p) {
        fprintf(stderr, "%s is not exported\n", name);
        exit(2);
    }
    return p;
}

MAYBE_UNUSED static WCH *w(const char *s) {
    size_t n = strlen(s);
    WCH *out = calloc(n + 1, sizeof(WCH));
    for (size_t i = 0; i < n; i++) out[i] = (unsigned char)s[i];
    return out;
}

"#;

/// Entry `index` of a name list in a buffer slot, in C: for this repro and fault.cleanup's.
/// It needs `b`, `bsz`, `bwide` and `MAYBE_UNUSED` defined before it.
pub(crate) const ENTRY_C: &str = r#"/* Entry `index` of a double-NUL-terminated name list, without its BFT character. */
MAYBE_UNUSED static char *entry(int buf, int index) {
    static char out[1024];
    const unsigned char *p = b[buf];
    size_t unit = bwide[buf] ? 2 : 1, n = bsz[buf] / unit, start = 0;
    int at = 0;
    for (size_t i = 0; p && i < n; i++) {
        unsigned c = unit == 2 ? (unsigned)(p[2 * i] | p[2 * i + 1] << 8) : p[i];
        if (c == 0) {
            if (i == start) break;
            if (at++ == index) {
                size_t k = 0;
                for (size_t j = start + 1; j < i && k < sizeof out - 1; j++)
                    out[k++] = (char)(unit == 2 ? p[2 * j] : p[j]);
                out[k] = 0;
                return out;
            }
            start = i + 1;
        }
    }
    fprintf(stderr, "name list b%d has no entry %d\n", buf, index);
    exit(2);
}
"#;

/// Counting a /proc folder's entries (open descriptors, threads), in C: for this repro and
/// fault.cleanup's.
pub(crate) const COUNT_DIR_C: &str = r#"static int count_dir(const char *path) {
    DIR *d = opendir(path);
    int n = 0;
    if (!d) return 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}
"#;

const HEADER_REST: &str = r#"
MAYBE_UNUSED static void report(int step, const char *call, HR rc, int ok, const char *want) {
    if (!quiet || !ok)
        printf("step %d: %s -> 0x%08X (%d)%s%s\n", step, call, (unsigned)rc, (int)rc, ok ? "" : ", expected ", ok ? "" : want);
    if (!ok) failed = 1;
}
/* Threads ending one value at once: what they got, counted (never printed as a code). */
MAYBE_UNUSED static void report_race(int step, const char *call, int n, int wins, int bad, int ok, const char *want) {
    if (!quiet || !ok)
        printf("step %d: %s -> %d of %d threads got S_OK, %d ERROR_INVALID_PARAMETER, %d another code%s%s\n", step, call, wins, n,
               n - wins - bad, bad, ok ? "" : ", expected ", ok ? "" : want);
    if (!ok) failed = 1;
}

/* Calls are judged by the handle value passed, as the verifier does: the slot of the live
   session whose handle is v, or -1 when v is no live handle (a library may hand an ended
   value out again). */
MAYBE_UNUSED static int target(HBC v) {
    for (int k = 0; v && k < 32; k++)
        if (live[k] && h[k] == v) return k;
    return -1;
}
MAYBE_UNUSED static int rtarget(HBC v) {
    for (int k = 0; v && k < 32; k++)
        if (rlive[k] && h[k] == v) return k;
    return -1;
}
MAYBE_UNUSED static void vacate(int slot) {
    if (live[slot] && norphans < 64) orphan[norphans++] = h[slot];
    live[slot] = 0;
}
MAYBE_UNUSED static void differs(int step, int t) {
    if (!quiet) printf("step %d: the handle is live session h%d in this run, not as in the verifier's run: not judged\n", step, t);
}

MAYBE_UNUSED static int invalid(HR rc) {
#ifdef ACCEPT_HRESULT
    if (rc == (HR)0x80070057u) return 1;
#endif
    return rc == 87;
}

MAYBE_UNUSED static void *junk_memory(int fill, unsigned long long seed) {
    unsigned char *m = malloc(4096);
    for (int i = 0; i < 4096; i++) {
        if (fill >= 0) {
            m[i] = (unsigned char)fill;
        } else {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            m[i] = (unsigned char)seed;
        }
    }
    return m;
}

MAYBE_UNUSED static void *unmapped(void) {
#ifdef _WIN32
    void *p = VirtualAlloc(NULL, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    VirtualFree(p, 0, MEM_RELEASE);
#else
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p, 4096);
#endif
    return p;
}

#ifdef _WIN32
/* Live handles. GetProcessHandleCount answers 0 under Wine; then probe the handle table, which
   hands out values lowest first, until a long run of unused values. */
MAYBE_UNUSED static int count_handles(void) {
    DWORD n = 0;
    if (GetProcessHandleCount(GetCurrentProcess(), &n) && n) return (int)n;
    int live = 0, misses = 0;
    for (uintptr_t v = 4; misses < 1024; v += 4) {
        DWORD flags;
        if (GetHandleInformation((HANDLE)v, &flags)) { live++; misses = 0; } else misses++;
    }
    return live;
}
MAYBE_UNUSED static void nap(void) { Sleep(1); }
MAYBE_UNUSED static int count_threads(void) {
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
    THREADENTRY32 e;
    int n = 0;
    if (snap == INVALID_HANDLE_VALUE) return 0;
    e.dwSize = sizeof e;
    for (BOOL more = Thread32First(snap, &e); more; more = Thread32Next(snap, &e))
        if (e.th32OwnerProcessID == GetCurrentProcessId()) n++;
    CloseHandle(snap);
    return n;
}
#else
"#;

/// The rest of the header, after `COUNT_DIR_C`.
const HEADER_END: &str = r#"MAYBE_UNUSED static int count_handles(void) { return count_dir("/proc/self/fd"); }
MAYBE_UNUSED static void nap(void) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
}
MAYBE_UNUSED static int count_threads(void) { return count_dir("/proc/self/task"); }
#endif

#ifdef _WIN32
struct racer { HBC h; HR rc; HANDLE go; };
MAYBE_UNUSED static DWORD WINAPI race(LPVOID arg) {
    struct racer *r = arg;
    WaitForSingleObject(r->go, INFINITE);
    r->rc = ((hbc_t)need("DsBackupEnd"))(r->h);
    return 0;
}
/* Starts n threads that all call End(h) at once; returns how many got S_OK, and in *bad how
   many got something other than S_OK or the invalid-handle code. */
MAYBE_UNUSED static int end_concurrently(HBC hh, int n, int *bad) {
    struct racer r[64];
    HANDLE t[64], go = CreateEventA(NULL, TRUE, FALSE, NULL);
    int wins = 0;
    *bad = 0;
    for (int k = 0; k < n; k++) { r[k].h = hh; r[k].go = go; t[k] = CreateThread(NULL, 0, race, &r[k], 0, NULL); }
    SetEvent(go);
    WaitForMultipleObjects(n, t, TRUE, INFINITE);
    for (int k = 0; k < n; k++) { CloseHandle(t[k]); if (r[k].rc == 0) wins++; else if (!invalid(r[k].rc)) (*bad)++; }
    CloseHandle(go);
    return wins;
}
#else
struct racer { HBC h; HR rc; pthread_barrier_t *bar; };
MAYBE_UNUSED static void *race(void *arg) {
    struct racer *r = arg;
    pthread_barrier_wait(r->bar);
    r->rc = ((hbc_t)need("DsBackupEnd"))(r->h);
    return NULL;
}
MAYBE_UNUSED static int end_concurrently(HBC hh, int n, int *bad) {
    pthread_t t[64];
    struct racer r[64];
    pthread_barrier_t bar;
    int wins = 0;
    *bad = 0;
    pthread_barrier_init(&bar, NULL, (unsigned)n);
    for (int k = 0; k < n; k++) { r[k].h = hh; r[k].bar = &bar; pthread_create(&t[k], NULL, race, &r[k]); }
    for (int k = 0; k < n; k++) { pthread_join(t[k], NULL); if (r[k].rc == 0) wins++; else if (!invalid(r[k].rc)) bad[0]++; }
    pthread_barrier_destroy(&bar);
    return wins;
}
#endif
"#;

fn c_check(e: &Expect, step: usize, call: &str) -> String {
    let call = c_str(call);
    let want = c_str(&e.describe());
    match e {
        Expect::NewHandle => format!(
            "{{ int dup = 0; for (int k = 0; k < 23; k++) if (live[k] && h[k] == out) dup = 1; report({step}, {call}, rc, rc == 0 && out != NULL && !dup, {want}); }}"
        ),
        Expect::Exact(c) => format!("report({step}, {call}, rc, rc == (HR){c}, {want});"),
        Expect::InvalidParam => format!("report({step}, {call}, rc, invalid(rc), {want});"),
        Expect::NonZero => format!("report({step}, {call}, rc, rc != 0, {want});"),
        Expect::AnyOf(v) => {
            let cond = v.iter().map(|c| format!("rc == (HR){c}")).collect::<Vec<_>>().join(" || ");
            format!("report({step}, {call}, rc, {cond}, {want});")
        }
        Expect::Anything
        | Expect::NoCode
        | Expect::OneWinner
        | Expect::NoWinner
        | Expect::Lenient { .. }
        | Expect::SameBytes(_) => {
            format!("if (!quiet) printf(\"step %d: %s done\\n\", {step}, {call});")
        }
    }
}

/// How the repro runs the sequence.
#[derive(Clone, Debug, Default)]
pub struct Mode {
    /// Repeat the sequence until a round fails (at most 10,000 rounds or 10 s), and why.
    pub repeat: Option<String>,
    /// The verifier's page heap found the failure: the repro brings one of its own (Unix).
    pub page_heap: bool,
}

/// Why a repro did not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {cc}: {source}")]
    Compiler { cc: String, source: std::io::Error },
    /// What the compiler said.
    #[error("{0}")]
    Rejected(String),
}

/// Writes `source` to `dir/name.c` and builds it as the repro's header says, warnings as
/// errors: `$CC` (else `cc`) with `flags`. The executable, or why not. The tests build every
/// repro they check with it.
pub fn build(
    dir: &std::path::Path,
    name: &str,
    source: &str,
    flags: &[&str],
) -> Result<std::path::PathBuf, BuildError> {
    let (c, exe) = (dir.join(format!("{name}.c")), dir.join(name));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&c, source))
        .map_err(|source| BuildError::Write {
            path: c.clone(),
            source,
        })?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = std::process::Command::new(&cc)
        .args(["-Wall", "-Werror"])
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&c)
        .args(["-ldl", "-lpthread"])
        .output()
        .map_err(|source| BuildError::Compiler {
            cc: cc.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(exe)
    } else {
        Err(BuildError::Rejected(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// Rounds and seconds a repeating repro runs at most.
pub const REPEAT_ROUNDS: u32 = 10_000;
pub const REPEAT_SECONDS: u32 = 10;

/// Renders the sequence's ops as C, up to and including the failing step. `targets` holds,
/// per step, the slot of the live session the handle value was in the verifier's run.
pub fn render(
    program: &Program,
    expects: &[Expect],
    targets: &[Option<u8>],
    failure: &Failure,
    mode: &Mode,
    header_note: &str,
) -> String {
    let mut c = String::new();
    let repeat_note = match &mode.repeat {
        Some(why) => format!("\n * It repeats the sequence until a round fails, for at most {REPEAT_ROUNDS} rounds or {REPEAT_SECONDS} s\n * (-DREPEAT_SECONDS=N to change): {why}."),
        None => String::new(),
    };
    let _ = writeln!(c, "/*\n * {header_note}{repeat_note}\n * Build: cc -o repro repro.c -ldl -lpthread\n *   (Windows: x86_64-w64-mingw32-gcc -o repro.exe repro.c, or cl repro.c)\n * Run:   ./repro path/to/library\n * Exits 1 (or dies) when the defect reproduces; 0 when every call answers as documented.\n * Define ACCEPT_HRESULT to accept 0x80070057 where 87 is documented.\n */");
    if mode.page_heap {
        c.push_str(super::pageheap_c::PRELUDE);
    }
    c.push_str(HEADER);
    for types in calls::C_TYPES {
        c.push_str(types);
    }
    c.push_str(STATE);
    if mode.page_heap {
        c.push_str(super::pageheap_c::BODY);
    }
    c.push_str(ENTRY_C);
    c.push_str(HEADER_REST);
    c.push_str(COUNT_DIR_C);
    c.push_str(HEADER_END);
    // Failures found at or after clean-up need the clean-up; a leak also needs the counting.
    let count = matches!(failure, Failure::Leak { .. });
    let repeat = mode.repeat.is_some();
    let whole = count
        || repeat
        || matches!(
            failure,
            Failure::Cleanup { .. } | Failure::Died { step: None, .. }
        );
    let last = match failure {
        Failure::Mismatch { step, .. } => Some(*step),
        Failure::Died { step, .. } => *step,
        _ => None,
    };
    push_round_body(&mut c, program, expects, targets, last);
    c.push_str(CLEANUP_C);
    // One round; a leak is counted in a second round, after one-off set-up in the first.
    let _ = writeln!(
        c,
        "static void one_round(int counted) {{\n    int handles0 = 0, threads0 = 0;\n    (void)counted; (void)handles0; (void)threads0;\n    memset(h, 0, sizeof h);\n{}    round_body();\n{}{}}}\n",
        if count { "    if (counted) { handles0 = count_handles(); threads0 = count_threads(); }\n" } else { "" },
        if whole { "    cleanup();\n" } else { "" },
        if count {
            "    /* A thread the library lets exit on its own after End is gone a moment later. */\n    for (int w = 0; counted && w < 100 && (count_handles() > handles0 || count_threads() > threads0); w++) nap();\n    if (counted && (count_handles() > handles0 || count_threads() > threads0)) {\n        printf(\"the sequence left %+d open handles and %+d threads behind\\n\", count_handles() - handles0, count_threads() - threads0);\n        failed = 1;\n    }\n"
        } else {
            ""
        }
    );
    push_main(&mut c, mode.page_heap, repeat, count);
    c
}

/// The harness's clean-up order: end every live handle, then free every buffer.
const CLEANUP_C: &str = "MAYBE_UNUSED static void cleanup(void) {\n    HR rc;\n    for (int k = 0; k < 32; k++) {\n        if (live[k]) { rc = ((hbc_t)need(\"DsBackupEnd\"))(h[k]); report(900 + k, \"DsBackupEnd at clean-up\", rc, rc == 0, \"0 (S_OK)\"); }\n        if (rlive[k]) { rc = ((hbc_t)need(\"DsRestoreEnd\"))(h[k]); report(900 + k, \"DsRestoreEnd at clean-up\", rc, rc == 0, \"0 (S_OK)\"); }\n        live[k] = rlive[k] = 0;\n    }\n    for (int k = 0; k < norphans; k++) { rc = ((hbc_t)need(\"DsBackupEnd\"))(orphan[k]); report(950 + k, \"DsBackupEnd at clean-up\", rc, rc == 0, \"0 (S_OK)\"); }\n    norphans = 0;\n    for (int k = 0; k < 32; k++) {\n        if (b[k]) ((free_t)need(\"DsBackupFree\"))(b[k]);\n        b[k] = NULL;\n    }\n}\n\n";

/// `round_body`: the sequence's calls up to the one that failed (`last`), each judged.
fn push_round_body(
    c: &mut String,
    program: &Program,
    expects: &[Expect],
    targets: &[Option<u8>],
    last: Option<usize>,
) {
    c.push_str("\n/* One round of the sequence. */\nstatic void round_body(void) {\n    HR rc = 0;\n    (void)rc;\n");
    let layout = Layout::of(program);
    for (step, op) in program.ops[layout.steps()].iter().enumerate() {
        if last.is_some_and(|l| step > l) {
            break;
        }
        let e = expects.get(step).cloned().unwrap_or(Expect::Anything);
        let target = targets.get(step).copied().flatten();
        let call = op.describe();
        let _ = writeln!(c, "    /* step {step}: {call} */");
        c.push_str(&op_code(op, &e, target, step, &call));
    }
    c.push_str("}\n\n");
}

/// `main`: load the library, run one round (two when a leak is counted) or repeat rounds.
fn push_main(c: &mut String, page_heap: bool, repeat: bool, count: bool) {
    c.push_str("int main(int argc, char **argv) {\n");
    c.push_str("    if (argc < 2) {\n        fprintf(stderr, \"usage: %s LIBRARY\\n\", argv[0]);\n        return 2;\n    }\n");
    c.push_str("    lib = LOAD(argv[1]);\n    if (!lib) {\n        fprintf(stderr, \"cannot load %s\\n\", argv[1]);\n        return 2;\n    }\n");
    if page_heap {
        c.push_str("#ifndef _WIN32\n    page_heap_on();\n#endif\n");
    }
    if repeat {
        let _ = writeln!(
            c,
            "#ifndef REPEAT_SECONDS\n#define REPEAT_SECONDS {REPEAT_SECONDS}\n#endif\n    time_t start = time(NULL);\n    int round;\n    for (round = 1; round <= {REPEAT_ROUNDS} && time(NULL) - start < REPEAT_SECONDS; round++) {{\n        one_round({});\n        quiet = 1;\n        if (failed) {{\n            printf(\"DEFECT REPRODUCED in round %d\\n\", round);\n            return 1;\n        }}\n    }}\n    printf(\"no round of %d failed: every call answered as documented\\n\", round - 1);\n    return 0;\n}}",
            if count { "round > 1" } else { "1" }
        );
    } else {
        if count {
            c.push_str("    one_round(0);\n    quiet = 1;\n");
        }
        let _ = writeln!(
            c,
            "    one_round(1);\n    if (failed) {{\n        printf(\"DEFECT REPRODUCED\\n\");\n        return 1;\n    }}\n    printf(\"every call answered as documented\\n\");\n    return 0;\n}}"
        );
    }
}

/// The C that judges a call on a backup handle by its value at run time: as the verifier
/// judged it when the value is the same session, 87 when it is no live handle.
fn by_value(chk: &str, target: Option<u8>, step: usize, call: &str) -> String {
    let t = target.map(|t| t as i32).unwrap_or(-1);
    let call = c_str(call);
    format!(
        "if (t == {t}) {{ {chk} }} else if (t < 0) {{ report({step}, {call}, rc, invalid(rc), \"87 (ERROR_INVALID_PARAMETER)\"); }} else differs({step}, t);"
    )
}

/// One op as C, judged as the oracle judged it: a call as its family writes it.
fn op_code(op: &Op, e: &Expect, target: Option<u8>, step: usize, call: &str) -> String {
    let check = c_check(e, step, call);
    let by_value = by_value(&check, target, step, call);
    if let Some(c) = op.call() {
        return c.c_sequence(&CStep {
            check: &check,
            by_value: &by_value,
            step,
            call,
        });
    }
    match (op, e) {
        (Op::Peek { buf }, Expect::SameBytes(bytes)) => {
            let lit = bytes
                .iter()
                .map(|x| format!("{x}"))
                .collect::<Vec<_>>()
                .join(",");
            c::block(format!(
                "        static const unsigned char want[] = {{{lit}}};\n        int same = b[{buf}] && memcmp(b[{buf}], want, sizeof want) == 0;\n        report({step}, \"the bytes of buffer b{buf}\", same, same, \"unchanged since the library returned it\");\n"
            ))
        }
        (Op::Peek { .. }, _) => String::new(),
        _ => format!("    /* step {step}: not performed by the repro */\n"),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use ntdsbcli_harness::program::{
        Close, End, EndConcurrent, Free, Garbage, HandleArg, ListKind, Names, OpenFile, Prepare,
        Read, ReadToEnd, RestoreEnd, RestorePrepare, Text, Truncate,
    };

    fn prepare(wide: bool, slot: u8) -> Op {
        Op::Prepare(Prepare::full(
            wide,
            Text::Lit("\\\\localhost".into()),
            slot,
            slot,
        ))
    }

    /// One call of every export in each of its forms, with what the oracle would expect.
    /// DsSetAuthIdentity is left out: no transition of the model calls it. Long on purpose:
    /// a flat list of steps reads as the list of exports it covers.
    fn every_call() -> (Program, Vec<Expect>) {
        let s = HandleArg::Slot;
        let mut steps = vec![
            (prepare(false, 0), Expect::NewHandle),
            (prepare(true, 1), Expect::NewHandle),
            (Op::Peek { buf: 0 }, Expect::SameBytes(vec![1, 2, 3])),
        ];
        for (i, (kind, wide)) in [
            (ListKind::DatabaseNames, false),
            (ListKind::DatabaseNames, true),
            (ListKind::BackupLogs, false),
            (ListKind::BackupLogs, true),
        ]
        .into_iter()
        .enumerate()
        {
            let names = Op::Names(Names {
                kind,
                wide,
                h: s(0),
                out: true,
                size: true,
                buf: 2 + i as u8,
            });
            steps.push((names, Expect::Exact(0)));
        }
        for (wide, buf) in [(false, 2), (true, 3)] {
            let open = Op::OpenFile(OpenFile {
                wide,
                h: s(0),
                name: Text::Entry { buf, index: 0 },
                hint: 24_576,
                size: true,
            });
            steps.push((open, Expect::Exact(0)));
        }
        steps.extend([
            (
                Op::Read(Read {
                    h: s(0),
                    cb: 4096,
                    pcb: true,
                }),
                Expect::Exact(0),
            ),
            (
                Op::ReadToEnd(ReadToEnd { h: s(0), cb: 4096 }),
                Expect::NonZero,
            ),
            (Op::Close(Close { h: s(0) }), Expect::Exact(0)),
            (Op::Truncate(Truncate { h: s(0) }), Expect::Exact(0)),
            (Op::Free(Free { buf: Some(2) }), Expect::NoCode),
            (Op::Free(Free { buf: None }), Expect::NoCode),
            (Op::End(End { h: s(0) }), Expect::Exact(0)),
            (Op::End(End { h: HandleArg::Null }), Expect::InvalidParam),
            (
                Op::End(End {
                    h: HandleArg::Garbage(Garbage::Zeroed),
                }),
                Expect::InvalidParam,
            ),
            (
                Op::EndConcurrent(EndConcurrent {
                    h: s(1),
                    threads: 4,
                }),
                Expect::OneWinner,
            ),
        ]);
        for wide in [false, true] {
            let rp = Op::RestorePrepare(RestorePrepare {
                wide,
                server: Text::Lit("\\\\localhost".into()),
                token: Some(0),
                slot: 10 + wide as u8,
            });
            steps.push((rp, Expect::Exact(0)));
            steps.push((
                Op::RestoreEnd(RestoreEnd {
                    h: s(10 + wide as u8),
                }),
                Expect::Exact(0),
            ));
        }
        let (calls, expects): (Vec<Op>, Vec<Expect>) = steps.into_iter().unzip();
        // A sequence's layout: probe, the calls, clean-up, probe.
        let mut ops = vec![Op::Probe];
        ops.extend(calls);
        ops.extend([Op::Cleanup, Op::Probe]);
        (Program::new("every call", ops), expects)
    }

    /// The repro of a sequence holding every export compiles, in each of its modes, and
    /// names every export it calls.
    #[test]
    fn the_repro_of_every_call_compiles() {
        let (program, expects) = every_call();
        let targets = vec![None; expects.len()];
        let failure = Failure::Cleanup { got: "87".into() };
        let dir = std::env::temp_dir().join(format!("ntdsbcli-repro-test-{}", std::process::id()));
        for (n, mode) in [
            Mode {
                repeat: None,
                page_heap: false,
            },
            Mode {
                repeat: Some("a race".into()),
                page_heap: true,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let c = render(&program, &expects, &targets, &failure, &mode, "test");
            for name in program.ops.iter().filter_map(Op::export) {
                assert!(
                    c.contains(&format!("\"{name}\"")),
                    "{name} is missing from the repro"
                );
            }
            if let Err(e) = build(&dir, &format!("repro{n}"), &c, &[]) {
                panic!("repro{n}.c does not compile:\n{e}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
