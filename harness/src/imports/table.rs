//! What routing keeps alike on every platform: the table of routable functions (each
//! platform's `wrappers!` fills it), arming a fault over it, its counts, and what a library
//! had routed. Reaches no loader: `unix.rs` / `windows.rs` do.
use super::fault;
use super::platform::TABLE;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One routable function: its name, the wrapper, and where the original and the counts live.
pub(super) struct Entry {
    pub(super) name: &'static str,
    pub(super) hook: *const c_void,
    pub(super) original: &'static AtomicUsize,
    pub(super) calls: &'static AtomicU64,
    pub(super) armed_calls: &'static AtomicU64,
}

// SAFETY: the table holds function addresses and statics only.
unsafe impl Sync for Entry {}

/// Arms a fault at the `at`-th faultable call the library makes from now (0: count only).
pub fn arm(at: u64) {
    for e in TABLE {
        e.armed_calls.store(0, Ordering::Relaxed);
    }
    fault::start(at);
}

/// How many times the routed library has called `name` so far (0 for a name not routed).
pub fn routed_calls(name: &str) -> u64 {
    TABLE
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.calls.load(Ordering::Relaxed))
        .unwrap_or(0)
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

/// What a platform knows of an import before its entry is replaced.
pub(super) enum Bound {
    /// The address the dynamic linker would bind (ELF: under lazy binding the entry may still
    /// hold the resolver's stub).
    #[cfg(unix)]
    At(usize),
    /// The runtime has no such function: nothing to route.
    #[cfg(unix)]
    Absent,
    /// The entry itself holds the original (PE: bound at load).
    #[cfg(windows)]
    InEntry,
}

/// Points each import of `object` that the table wraps at its wrapper, for good. `bound` says
/// where each original is; `routed` sees each entry and its original once it is routed. An
/// object whose imports cannot be read has nothing routed, and says why.
pub(super) fn route_object(
    path: String,
    object: plthook::Result<plthook::ObjectFile>,
    bound: impl Fn(&Entry) -> Bound,
    mut routed: impl FnMut(&Entry, usize),
) -> Result<Routed, super::RouteError> {
    let object = match object {
        Ok(o) => o,
        Err(e) => {
            return Ok(Routed {
                path,
                names: Vec::new(),
                unreadable: Some(e.to_string()),
            })
        }
    };
    // ELF names may carry a version ("malloc@GLIBC_2.2.5"); PE names never do.
    let imported: Vec<String> = object
        .symbols()
        .filter_map(|s| {
            let n = s.name.to_str().ok()?;
            Some(n.split('@').next().unwrap_or(n).to_string())
        })
        .collect();
    let mut names = Vec::new();
    for e in TABLE {
        if !imported.iter().any(|n| n == e.name) {
            continue;
        }
        let before = match bound(e) {
            #[cfg(unix)]
            Bound::Absent => continue,
            #[cfg(unix)]
            Bound::At(a) => Some(a),
            #[cfg(windows)]
            Bound::InEntry => None,
        };
        // SAFETY: the wrapper has the signature of the function it replaces, and calls it.
        let mut replaced = unsafe { object.replace(e.name, e.hook) }.map_err(|err| {
            super::RouteError::Replace {
                name: e.name,
                path: path.clone(),
                message: err.to_string(),
            }
        })?;
        let original = before.unwrap_or(replaced.original_address() as usize);
        e.original.store(original, Ordering::Relaxed);
        // Routing is for good: the entry is not restored.
        replaced.discard();
        routed(e, original);
        names.push(e.name);
    }
    Ok(Routed {
        path,
        names,
        unreadable: None,
    })
}

/// The wrappers of a platform's routable functions and their `TABLE`. Each entry: the calling
/// convention and signature, the fault class with the value and error (errno, or last error)
/// a fault returns, and statements run before and after the real call (heap accounting), which
/// see the arguments and, after, the result. The platform file that expands it provides
/// `set_error`, `Class` and the types.
macro_rules! wrappers {
    ($($abi:literal $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty,
        $class:ident($fail:expr, $error:expr) {$($pre:tt)*} |$r:ident| {$($post:tt)*};)*) => {
        $(
            #[allow(non_snake_case)]
            mod $name {
                use super::*;
                pub static ORIGINAL: AtomicUsize = AtomicUsize::new(0);
                pub static CALLS: AtomicU64 = AtomicU64::new(0);
                pub static ARMED_CALLS: AtomicU64 = AtomicU64::new(0);
                #[allow(unreachable_code, clippy::unused_unit)]
                pub unsafe extern $abi fn hook($($arg: $ty),*) -> $ret {
                    CALLS.fetch_add(1, Ordering::Relaxed);
                    if fault::armed() {
                        let nth = ARMED_CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                        if fault::strike(Class::$class, stringify!($name), || nth) {
                            set_error($error);
                            return $fail;
                        }
                    }
                    $($pre)*
                    let f: unsafe extern $abi fn($($ty),*) -> $ret =
                        // SAFETY: set to the function of this signature before the import
                        // table's entry was pointed here.
                        unsafe { std::mem::transmute(ORIGINAL.load(Ordering::Relaxed)) };
                    // SAFETY: the original function, given the arguments its caller passed.
                    let $r: $ret = unsafe { f($($arg),*) };
                    $($post)*
                    $r
                }
            }
        )*
        pub(super) static TABLE: &[Entry] = &[
            $(Entry {
                name: stringify!($name),
                hook: $name::hook as *const c_void,
                original: &$name::ORIGINAL,
                calls: &$name::CALLS,
                armed_calls: &$name::ARMED_CALLS,
            },)*
        ];
        /// The functions a library's imports of which are routed, by name.
        pub const ROUTABLE: &[&str] = &[$(stringify!($name)),*];
    };
}
pub(super) use wrappers;

#[cfg(test)]
mod tests {
    use super::super::platform::ROUTABLE;
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
        assert_eq!(routed_calls("no_such_function"), 0);
    }
}
