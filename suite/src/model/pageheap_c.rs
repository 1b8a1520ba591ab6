//! The page heap of a seq.model repro, in C, for a failure the verifier's page heap found: the
//! library's blocks get pages of their own ending at an inaccessible page, freed blocks become
//! inaccessible and are never reused, and a second free or a touch of a freed block ends the
//! program with the reason. Its malloc family interposes on the whole program; only calls
//! from the library's code get pages. Unix only: a Windows repro runs without it.

/// C that finds the address range of the loaded library whose base is `base`: its PT_LOAD
/// segments. Both Unix repros need it to tell the library's calls from their own.
macro_rules! lib_range_c {
    () => {
        r#"struct lib_range { void *base; uintptr_t lo, hi; };
static int lib_range(struct dl_phdr_info *i, size_t size, void *data) {
    struct lib_range *r = data;
    (void)size;
    if ((void *)i->dlpi_addr != r->base) return 0;
    for (int k = 0; k < i->dlpi_phnum; k++) {
        const ElfW(Phdr) *ph = &i->dlpi_phdr[k];
        if (ph->p_type != PT_LOAD) continue;
        uintptr_t lo = i->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (!r->lo || lo < r->lo) r->lo = lo;
        if (hi > r->hi) r->hi = hi;
    }
    return 1;
}
"#
    };
}
pub(crate) use lib_range_c;

/// Goes before every include: dladdr and dl_iterate_phdr need it.
pub const PRELUDE: &str = "#define _GNU_SOURCE\n";

/// Defines the allocator and `page_heap_on()`, which main calls once the library is loaded.
/// It needs `lib` and `SYM` defined before it.
pub const BODY: &str = concat!(
    r#"
#ifndef _WIN32
#include <link.h>
#include <signal.h>
#include <unistd.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static uintptr_t ph_lo, ph_hi;
struct ph_block { uintptr_t base, len, ptr, size; int freed; };
#define PH_MAX 65536
static struct ph_block ph[PH_MAX];
static size_t ph_n;
static pthread_mutex_t ph_mu = PTHREAD_MUTEX_INITIALIZER;
static int ph_mine(void *ret) { return (uintptr_t)ret >= ph_lo && (uintptr_t)ret < ph_hi; }
static void ph_say(const char *msg) {
    if (write(1, msg, strlen(msg)) < 0) _exit(1);
}
static void *ph_alloc(size_t n, size_t align) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), data = (n + page - 1) / page * page;
    if (align < 16) align = 16;
    if (!data) data = page;
    if (align > page) data += align;
    char *base = mmap(NULL, data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    mprotect(base + data, page, PROT_NONE);
    uintptr_t p = ((uintptr_t)base + data - n) & ~(uintptr_t)(align - 1);
    pthread_mutex_lock(&ph_mu);
    if (ph_n < PH_MAX) ph[ph_n++] = (struct ph_block){(uintptr_t)base, data + page, p, n, 0};
    pthread_mutex_unlock(&ph_mu);
    return (void *)p;
}
static struct ph_block *ph_at(uintptr_t a, int start) {
    for (size_t i = ph_n; i-- > 0;)
        if (start ? ph[i].ptr == a : a >= ph[i].base && a < ph[i].base + ph[i].len) return &ph[i];
    return NULL;
}
/* 1: the page heap's block, now freed; 0: not one of its blocks. */
static int ph_free(void *p) {
    pthread_mutex_lock(&ph_mu);
    struct ph_block *b = ph_at((uintptr_t)p, 1);
    if (!b) { pthread_mutex_unlock(&ph_mu); return 0; }
    if (b->freed) {
        char msg[160];
        snprintf(msg, sizeof msg, "DEFECT REPRODUCED: page heap: invalid free: a %zu-byte block freed a second time (a double free)\n", (size_t)b->size);
        ph_say(msg);
        _exit(1);
    }
    b->freed = 1;
    mmap((void *)b->base, b->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    pthread_mutex_unlock(&ph_mu);
    return 1;
}
static void ph_fault(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    struct ph_block *b = ph_at((uintptr_t)si->si_addr, 0);
    if (b && si->si_code > 0) {
        char msg[200];
        if (b->freed)
            snprintf(msg, sizeof msg, "DEFECT REPRODUCED: page heap: use after free: byte %ld of a %zu-byte block the library had freed\n", (long)((uintptr_t)si->si_addr - b->ptr), (size_t)b->size);
        else
            snprintf(msg, sizeof msg, "DEFECT REPRODUCED: page heap: heap overrun: the guard page past the end of a %zu-byte block\n", (size_t)b->size);
        ph_say(msg);
        _exit(1);
    }
    signal(sig, SIG_DFL);
}
"#,
    lib_range_c!(),
    r#"static void page_heap_on(void) {
    const char *exports[] = {"DsBackupEnd", "DsBackupPrepareW", "DsBackupPrepareA"};
    void *sym = NULL;
    for (int i = 0; i < 3 && !sym; i++) sym = SYM(lib, exports[i]);
    Dl_info info;
    if (!sym || !dladdr(sym, &info)) return;
    struct lib_range r = {info.dli_fbase, 0, 0};
    dl_iterate_phdr(lib_range, &r);
    ph_lo = r.lo;
    ph_hi = r.hi;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = ph_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}
#define PH_RET __builtin_return_address(0)
void *malloc(size_t n) { return ph_mine(PH_RET) ? ph_alloc(n, 16) : __libc_malloc(n); }
void *calloc(size_t n, size_t s) {
    if (!ph_mine(PH_RET)) return __libc_calloc(n, s);
    return s && n > (size_t)-1 / s ? NULL : ph_alloc(n * s, 16);
}
void free(void *p) {
    if (p && !ph_free(p)) __libc_free(p);
}
void *realloc(void *o, size_t n) {
    if (!o) return ph_mine(PH_RET) ? ph_alloc(n, 16) : __libc_malloc(n);
    pthread_mutex_lock(&ph_mu);
    struct ph_block *b = ph_at((uintptr_t)o, 1);
    size_t old = b ? b->size : 0;
    int freed = b && b->freed;
    pthread_mutex_unlock(&ph_mu);
    if (!b) return __libc_realloc(o, n);
    if (freed || n == 0) { free(o); return NULL; }
    void *q = ph_alloc(n, 16);
    if (q) { memcpy(q, o, old < n ? old : n); free(o); }
    return q;
}
char *strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *q = ph_mine(PH_RET) ? ph_alloc(n, 1) : __libc_malloc(n);
    if (q) memcpy(q, s, n);
    return q;
}
extern void *__libc_memalign(size_t, size_t);
int posix_memalign(void **out, size_t a, size_t n) {
    void *q = ph_mine(PH_RET) ? ph_alloc(n, a) : __libc_memalign(a, n);
    if (!q) return 12;
    *out = q;
    return 0;
}
void *aligned_alloc(size_t a, size_t n) { return ph_mine(PH_RET) ? ph_alloc(n, a) : __libc_memalign(a, n); }
#endif
"#
);
