//! ELF: the library's GOT entries for the C runtime's allocation, handle, thread and I/O
//! functions point at counting wrappers (plthook). Each wrapper calls the function the dynamic
//! linker would have bound, found with `dlsym(RTLD_DEFAULT)`: under lazy binding the GOT still
//! holds the resolver's stub, which would bind over the wrapper on its first call.
use super::RouteError;
use libc::{c_char, c_int, c_uint, c_void, mode_t, off_t, size_t, ssize_t};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One routable function: its name, the wrapper, and where the original and the count live.
struct Entry {
    name: &'static str,
    hook: *const c_void,
    original: &'static AtomicUsize,
    calls: &'static AtomicU64,
}

// SAFETY: the table holds function addresses and statics only.
unsafe impl Sync for Entry {}

macro_rules! wrappers {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty;)*) => {
        $(
            mod $name {
                use super::*;
                pub static ORIGINAL: AtomicUsize = AtomicUsize::new(0);
                pub static CALLS: AtomicU64 = AtomicU64::new(0);
                pub unsafe extern "C" fn hook($($arg: $ty),*) -> $ret {
                    CALLS.fetch_add(1, Ordering::Relaxed);
                    // SAFETY: set to the function of this signature before the GOT entry
                    // was pointed here.
                    let f: unsafe extern "C" fn($($ty),*) -> $ret =
                        unsafe { std::mem::transmute(ORIGINAL.load(Ordering::Relaxed)) };
                    unsafe { f($($arg),*) }
                }
            }
        )*
        static TABLE: &[Entry] = &[
            $(Entry {
                name: stringify!($name),
                hook: $name::hook as *const c_void,
                original: &$name::ORIGINAL,
                calls: &$name::CALLS,
            },)*
        ];
        /// The functions a library's imports of which are routed, by name.
        pub const ROUTABLE: &[&str] = &[$(stringify!($name)),*];
    };
}

// open and openat are variadic in C; on x86-64 and AArch64 the mode travels in the register
// of a third (fourth) fixed argument, which is read whether or not the caller set it.
wrappers! {
    malloc(n: size_t) -> *mut c_void;
    calloc(n: size_t, size: size_t) -> *mut c_void;
    realloc(p: *mut c_void, n: size_t) -> *mut c_void;
    free(p: *mut c_void) -> ();
    strdup(s: *const c_char) -> *mut c_char;
    posix_memalign(out: *mut *mut c_void, align: size_t, n: size_t) -> c_int;
    aligned_alloc(align: size_t, n: size_t) -> *mut c_void;
    open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    openat(dir: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    openat64(dir: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int;
    pipe(fds: *mut c_int) -> c_int;
    pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    socketpair(domain: c_int, kind: c_int, protocol: c_int, fds: *mut c_int) -> c_int;
    dup(fd: c_int) -> c_int;
    dup2(fd: c_int, to: c_int) -> c_int;
    eventfd(initial: c_uint, flags: c_int) -> c_int;
    pthread_create(t: *mut libc::pthread_t, attr: *const libc::pthread_attr_t, start: *mut c_void, arg: *mut c_void) -> c_int;
    mmap(addr: *mut c_void, n: size_t, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void;
    mmap64(addr: *mut c_void, n: size_t, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void;
    read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t;
    write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t;
    recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t;
    send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t;
}

/// What was routed in one library: the names of the functions it imports that now go
/// through the wrappers. Empty for a library that imports none of them, with the reason when
/// it has no import table that could be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routed {
    pub path: String,
    pub names: Vec<&'static str>,
    pub unreadable: Option<String>,
}

/// Routes the imports of the loaded library that holds `any_export`. Routing stays for the
/// life of the process: the library is never unloaded by the worker.
///
/// # Safety
///
/// `any_export` is an address inside a loaded library that stays loaded for the life of the
/// process: its import table is written, and its calls come back through the wrappers.
pub unsafe fn route(any_export: *const c_void) -> Result<Routed, RouteError> {
    // SAFETY: dladdr only reads the loader's tables; the name it gives lives as long as
    // the library stays loaded.
    let path = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(any_export, &mut info) == 0 || info.dli_fname.is_null() {
            return Err(RouteError::NoModule(any_export as usize));
        }
        std::ffi::CStr::from_ptr(info.dli_fname)
            .to_string_lossy()
            .into_owned()
    };
    // A library without a PLT (linked with -nostdlib, say) has no imports to route.
    let object = match plthook::ObjectFile::open_file(&path) {
        Ok(o) => o,
        Err(e) => {
            return Ok(Routed {
                path,
                names: Vec::new(),
                unreadable: Some(e.to_string()),
            })
        }
    };
    let imported: Vec<String> = object
        .symbols()
        .filter_map(|s| {
            s.name
                .to_str()
                .ok()
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .collect();
    let mut names = Vec::new();
    for e in TABLE {
        if !imported.iter().any(|n| n == e.name) {
            continue;
        }
        let cname = std::ffi::CString::new(e.name).expect("no NUL in a C name");
        // SAFETY: looks up a C runtime function by name in the default scope.
        let original = unsafe { libc::dlsym(libc::RTLD_DEFAULT, cname.as_ptr()) };
        if original.is_null() {
            continue;
        }
        e.original.store(original as usize, Ordering::Relaxed);
        // SAFETY: the wrapper has the signature of the function it replaces, and calls it.
        let replaced =
            unsafe { object.replace(e.name, e.hook) }.map_err(|err| RouteError::Replace {
                name: e.name,
                path: path.clone(),
                message: err.to_string(),
            })?;
        // Dropping the replacement would restore the entry: routing is for good.
        std::mem::forget(replaced);
        names.push(e.name);
    }
    Ok(Routed {
        path,
        names,
        unreadable: None,
    })
}

/// How many times the routed library has called `name` so far (0 for a name not routed).
pub fn calls(name: &str) -> u64 {
    TABLE
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.calls.load(Ordering::Relaxed))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_routable_name_is_in_the_table_once() {
        for name in ROUTABLE {
            assert_eq!(
                TABLE.iter().filter(|e| e.name == *name).count(),
                1,
                "{name}"
            );
        }
        assert_eq!(TABLE.len(), ROUTABLE.len());
    }

    #[test]
    fn a_name_never_routed_has_no_calls() {
        assert_eq!(calls("no_such_function"), 0);
    }
}
