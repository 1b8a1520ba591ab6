//! The C repro of a fault.cleanup finding: a program that loads the library, fails the same
//! resource call by itself and judges as the verifier does. Its own definitions of malloc,
//! pipe, read and the rest interpose on the whole process; a call counts only when it comes
//! from the library's code, which is what routing the library's imports counts.

use crate::model::lib_range_c;
use ntdsbcli_harness::program::Op;

const HEADER: &str = concat!(
    r#"#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

typedef int32_t HR;
typedef void *HBC;
typedef uint16_t WCH;
#define MAYBE_UNUSED __attribute__((unused))

/* How long the faulted runs may take before they count as hung. */
#ifndef HANG_SECONDS
#define HANG_SECONDS 30
#endif

/* The library's code, and the armed fault: the AT-th call it makes to a routed function. */
static uintptr_t lib_lo, lib_hi;
static volatile int armed, step, hit_step = -1;
static unsigned long seen, at, hit_nth, calls[32];
static const char *hit_fn;
static int hit_id = -1; /* the wrapper that failed: 0..5 are the allocations */
static long blocks;

static int mine(void *ret) { return (uintptr_t)ret >= lib_lo && (uintptr_t)ret < lib_hi; }
static int strike(void *ret, int id, const char *fn) {
    if (!armed || !mine(ret)) return 0;
    calls[id]++;
    if (++seen != at) return 0;
    hit_fn = fn;
    hit_id = id;
    hit_nth = calls[id];
    hit_step = step;
    return 1;
}
#define NEXT(name) static __typeof__(&name) real_##name; if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)
#define RET __builtin_return_address(0)

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

void *malloc(size_t n) {
    void *r = RET;
    if (strike(r, 0, "malloc")) { errno = ENOMEM; return NULL; }
    void *p = __libc_malloc(n);
    if (p && mine(r)) blocks++;
    return p;
}
void *calloc(size_t n, size_t s) {
    void *r = RET;
    if (strike(r, 1, "calloc")) { errno = ENOMEM; return NULL; }
    void *p = __libc_calloc(n, s);
    if (p && mine(r)) blocks++;
    return p;
}
void *realloc(void *o, size_t n) {
    void *r = RET;
    if (strike(r, 2, "realloc")) { errno = ENOMEM; return NULL; }
    void *p = __libc_realloc(o, n);
    if (mine(r)) { if (p && !o) blocks++; else if (!p && n == 0 && o) blocks--; }
    return p;
}
void free(void *p) {
    if (p && mine(RET)) blocks--;
    __libc_free(p);
}
char *strdup(const char *s) {
    void *r = RET;
    NEXT(strdup);
    if (strike(r, 3, "strdup")) { errno = ENOMEM; return NULL; }
    char *p = real_strdup(s);
    if (p && mine(r)) blocks++;
    return p;
}
int posix_memalign(void **out, size_t a, size_t n) {
    void *r = RET;
    NEXT(posix_memalign);
    if (strike(r, 4, "posix_memalign")) return ENOMEM;
    int rc = real_posix_memalign(out, a, n);
    if (rc == 0 && mine(r)) blocks++;
    return rc;
}
void *aligned_alloc(size_t a, size_t n) {
    void *r = RET;
    NEXT(aligned_alloc);
    if (strike(r, 5, "aligned_alloc")) { errno = ENOMEM; return NULL; }
    void *p = real_aligned_alloc(a, n);
    if (p && mine(r)) blocks++;
    return p;
}
static int mode_of(int flags, va_list ap) { return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, int) : 0; }
int open(const char *p, int flags, ...) {
    va_list ap; va_start(ap, flags); int mode = mode_of(flags, ap); va_end(ap);
    NEXT(open);
    if (strike(RET, 6, "open")) { errno = EMFILE; return -1; }
    return real_open(p, flags, mode);
}
int open64(const char *p, int flags, ...) {
    va_list ap; va_start(ap, flags); int mode = mode_of(flags, ap); va_end(ap);
    NEXT(open64);
    if (strike(RET, 7, "open64")) { errno = EMFILE; return -1; }
    return real_open64(p, flags, mode);
}
int openat(int d, const char *p, int flags, ...) {
    va_list ap; va_start(ap, flags); int mode = mode_of(flags, ap); va_end(ap);
    NEXT(openat);
    if (strike(RET, 8, "openat")) { errno = EMFILE; return -1; }
    return real_openat(d, p, flags, mode);
}
int openat64(int d, const char *p, int flags, ...) {
    va_list ap; va_start(ap, flags); int mode = mode_of(flags, ap); va_end(ap);
    NEXT(openat64);
    if (strike(RET, 9, "openat64")) { errno = EMFILE; return -1; }
    return real_openat64(d, p, flags, mode);
}
#define HANDLE(id, name, type, args, call) \
    type name args { NEXT(name); if (strike(RET, id, #name)) { errno = EMFILE; return -1; } return real_##name call; }
HANDLE(10, pipe, int, (int f[2]), (f))
HANDLE(11, pipe2, int, (int f[2], int fl), (f, fl))
HANDLE(12, socket, int, (int d, int t, int p), (d, t, p))
HANDLE(13, socketpair, int, (int d, int t, int p, int f[2]), (d, t, p, f))
HANDLE(14, dup, int, (int f), (f))
HANDLE(15, dup2, int, (int f, int t), (f, t))
HANDLE(16, eventfd, int, (unsigned int i, int fl), (i, fl))
int pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *arg) {
    NEXT(pthread_create);
    if (strike(RET, 17, "pthread_create")) return EAGAIN;
    return real_pthread_create(t, a, f, arg);
}
#define IO(id, name, args, call) \
    ssize_t name args { NEXT(name); if (strike(RET, id, #name)) { errno = EIO; return -1; } return real_##name call; }
IO(18, read, (int f, void *b, size_t n), (f, b, n))
IO(19, write, (int f, const void *b, size_t n), (f, b, n))
IO(20, recv, (int f, void *b, size_t n, int fl), (f, b, n, fl))
IO(21, send, (int f, const void *b, size_t n, int fl), (f, b, n, fl))
#define MAP(name) \
    void *name(void *a, size_t n, int p, int f, int d, off_t o) { \
        void *r = RET; NEXT(name); void *m = real_##name(a, n, p, f, d, o); \
        if (m != MAP_FAILED && mine(r)) { blocks++; } return m; }
MAP(mmap)
MAP(mmap64)
int munmap(void *a, size_t n) {
    void *r = RET;
    NEXT(munmap);
    int rc = real_munmap(a, n);
    if (rc == 0 && mine(r)) blocks--;
    return rc;
}

static void *lib;
static void *need(const char *name) {
    void *p = dlsym(lib, name);
    if (!p) { fprintf(stderr, "%s is not exported\n", name); exit(2); }
    return p;
}
"#,
    lib_range_c!(),
    r#"
__attribute__((unused)) static WCH *w(const char *s) {
    static WCH out[4][1024];
    static int next;
    WCH *o = out[next++ % 4];
    size_t k = 0;
    for (; s[k] && k < 1023; k++) o[k] = (unsigned char)s[k];
    o[k] = 0;
    return o;
}
static HBC h[32];
static int live[32], rlive[32];
static void *b[32];
static uint32_t bsz[32];
static int bwide[32];
"#
);

/// The rest of the header, after the shared name-list helper.
const HEADER_REST: &str = r#"static int bad;
/* An End returned a failure after its own call failed, which the documentation allows ("a
   Win32 or RPC error code otherwise"): its retry may then find the handle gone (87). */
static int end_failed_own;
static void end_code(const char *call, HR rc) {
    if (rc == 0) return;
    if (hit_step == step) {
        printf("%s returned 0x%08X after its own call failed (allowed; it is tried again)\n", call, (unsigned)rc);
        end_failed_own = 1;
        return;
    }
    if (end_failed_own && rc == 87) return;
    printf("%s returned 0x%08X, expected 0 (S_OK) for a handle Prepare gave out%s\n", call, (unsigned)rc,
           end_failed_own ? ", or 87 from a retry" : "");
    bad = 1;
}
/* A Prepare that fails before the fault landed, though it succeeds with no fault, meets what
   an earlier run's End left held. */
static void prepare_code(const char *call, HR rc, int at_step) {
    if (rc != 0 && (hit_step < 0 || hit_step > at_step)) {
        printf("%s returned 0x%08X before any call failed: what an earlier run's End was given is still held\n", call, (unsigned)rc);
        bad = 1;
    }
    /* REQ-26: an allocation that failed inside Prepare is reported as memory running out. */
    uint32_t u = (uint32_t)rc;
    if (rc != 0 && hit_step == at_step && hit_id >= 0 && hit_id <= 5 && u != 8 && u != 14 && u != 0x8007000Eu && u != 0x80070008u) {
        printf("%s returned 0x%08X, expected 8 (ERROR_NOT_ENOUGH_MEMORY) for an allocation that failed\n", call, (unsigned)rc);
        bad = 1;
    }
}
static void hung(int sig) {
    (void)sig;
    const char msg[] = "DEFECT REPRODUCED: a call did not return in time after the fault\n";
    if (write(1, msg, sizeof msg - 1) < 0) _exit(1);
    _exit(1);
}
static const char *th(unsigned long n) {
    return n % 100 / 10 == 1 ? "th" : n % 10 == 1 ? "st" : n % 10 == 2 ? "nd" : n % 10 == 3 ? "rd" : "th";
}
static void died(int sig) {
    char msg[160];
    int n = snprintf(msg, sizeof msg, "DEFECT REPRODUCED: signal %d (%s) after the fault\n", sig, strsignal(sig));
    if (write(1, msg, (size_t)n) < 0) _exit(1);
    _exit(1);
}
"#;

/// The rest of the header, after `COUNT_DIR_C`.
const HEADER_END: &str = r#"static void nap(void) { struct timespec ms = {0, 1000000}; nanosleep(&ms, NULL); }
/* Threads the library lets exit on their own get time to go: 100 ms after the last one. */
static int threads_towards(int want) {
    int n = count_dir("/proc/self/task");
    for (int waited = 0, total = 0; n > want && waited < 100 && total < 5000; waited++, total++) {
        nap();
        int m = count_dir("/proc/self/task");
        if (m < n) waited = 0;
        n = m;
    }
    return n;
}
static void path(void);
struct grown { long handles, threads, blocks; };
static struct grown run(unsigned long k, int rest) {
    int t0 = threads_towards(rest);
    int f0 = count_dir("/proc/self/fd");
    long b0 = blocks;
    memset(calls, 0, sizeof calls);
    seen = 0; at = k; hit_fn = NULL; hit_id = -1; hit_step = -1; end_failed_own = 0; armed = 1;
    path();
    armed = 0;
    struct grown g = {count_dir("/proc/self/fd") - f0, threads_towards(t0) - t0, blocks - b0};
    return g;
}
static long beyond(long got, long base) { return got - (base > 0 ? base : 0); }
"#;

/// One body op as C, as its family writes it for a fault repro: it sets `rc` (when it calls
/// something that returns one).
fn op_code(op: &Op) -> String {
    match op.call() {
        Some(c) => c.c_fault(),
        None => format!("/* {} is not part of a session path */", op.describe()),
    }
}

/// The whole repro for the failure of resource call `k` on a path with `body`.
pub fn render(path: &str, body: &[Op], k: u64, finding: &str) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "/* ntdsbcli-conform fault.cleanup repro: {path}, resource call {k} failed.\n   Seen: {}\n   Build: cc -o repro fault.cleanup.repro.c -ldl -lpthread [-DHANG_SECONDS=30]\n   Run:   ./repro path/to/library.so   (exit 1: reproduced; 0: not) */\n",
        finding.replace("*/", "* /")
    ));
    s.push_str(HEADER);
    s.push_str(crate::model::repro::ENTRY_C);
    s.push_str(HEADER_REST);
    s.push_str(crate::model::repro::COUNT_DIR_C);
    s.push_str(HEADER_END);
    s.push_str(
        "\nstatic void path(void) {\n    HR rc = 0;\n    int prepared = 0;\n    (void)prepared;\n",
    );
    for (i, op) in body.iter().enumerate() {
        // A path goes on after a call only while nothing stopped it: a failed Prepare, or the
        // call whose resource failed.
        let stop = match op {
            Op::Prepare(_) => format!(
                "if (rc != 0) {{ prepare_code(\"{}\", rc, {i}); goto done; }}",
                op.export().unwrap_or("DsBackupPrepare")
            ),
            Op::RestorePrepare(_) => "if (rc != 0) goto done;".to_string(),
            _ => format!("if (rc != 0 && hit_step == {i}) goto done;"),
        };
        s.push_str(&format!(
            "    /* {} */\n    step = {i}; rc = 0;\n    {}\n    {stop}\n",
            op.describe().replace("*/", "* /"),
            op_code(op)
        ));
    }
    s.push_str(&format!(
        r#"done:
    /* The clean-up of a caller that gives up: end what is open, free what is held. */
    step = {n};
    for (int k = 0; k < 32; k++) {{
        for (int restore = 0; restore < 2; restore++) {{
            int *open = restore ? &rlive[k] : &live[k];
            if (!*open) continue;
            *open = 0;
            const char *name = restore ? "DsRestoreEnd" : "DsBackupEnd";
            HR (*end)(HBC) = (HR (*)(HBC))need(name);
            HR r = end(h[k]);
            end_code(restore ? "DsRestoreEnd (clean-up)" : "DsBackupEnd (clean-up)", r);
            if (r != 0 && hit_step == step) {{
                /* Its own call failed: tried once more, with no fault. */
                step = {n} + 1;
                end_code(restore ? "DsRestoreEnd (retry)" : "DsBackupEnd (retry)", end(h[k]));
                step = {n};
            }}
        }}
        if (b[k]) {{ ((void (*)(void *))need("DsBackupFree"))(b[k]); b[k] = NULL; }}
    }}
}}

int main(int argc, char **argv) {{
    if (argc != 2) {{ fprintf(stderr, "usage: %s LIBRARY\n", argv[0]); return 2; }}
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {{ fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror()); return 2; }}
    Dl_info info;
    if (!dladdr(need("DsBackupEnd"), &info)) return 2;
    struct lib_range r = {{info.dli_fbase, 0, 0}};
    dl_iterate_phdr(lib_range, &r);
    lib_lo = r.lo;
    lib_hi = r.hi;
    setvbuf(stdout, NULL, _IONBF, 0);
    int sigs[] = {{SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE}};
    for (int i = 0; i < 5; i++) signal(sigs[i], died);
    signal(SIGALRM, hung);
    int rest = count_dir("/proc/self/task");
    path();                                    /* warm-up: what a first call caches */
    struct grown base = run(0, rest);          /* what the path holds with no fault */
    alarm(HANG_SECONDS);
    run({k}, rest);                            /* the first failure may cache something */
    if (hit_fn) printf("the %lu%s %s (step %d) failed\n", hit_nth, th(hit_nth), hit_fn, hit_step);
    struct grown g = run({k}, rest);
    alarm(0);
    long fd = beyond(g.handles, base.handles), th = beyond(g.threads, base.threads), bl = beyond(g.blocks, base.blocks);
    if (fd > 0 || th > 0 || bl > 0) {{
        printf("once the path was over, %ld handles, %ld threads and %ld heap blocks more were held\n", fd, th, bl);
        bad = 1;
    }}
    printf(bad ? "DEFECT REPRODUCED\n" : "not reproduced\n");
    return bad;
}}
"#,
        n = body.len()
    ));
    s
}
