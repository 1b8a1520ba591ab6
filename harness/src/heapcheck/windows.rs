//! Wine's heap ignores a double free (RtlFreeHeap returns FALSE) where Windows 8 and later end
//! the process with STATUS_HEAP_CORRUPTION. The library's `free` (C runtime) and `HeapFree`
//! (kernel32) imports are pointed at checks that validate the block first and raise 0xC0000374
//! when it is not live, as page heap and Application Verifier do, so both give the same outcome.

use crate::imports::module_of;
use crate::sys::C_RUNTIMES;
use std::ffi::{c_void, CStr};
use std::sync::OnceLock;
use windows_sys::Win32::Foundation::{HANDLE, STATUS_HEAP_CORRUPTION};
use windows_sys::Win32::System::Diagnostics::Debug::RaiseException;
use windows_sys::Win32::System::LibraryLoader::GetProcAddress;
use windows_sys::Win32::System::Memory::{
    GetProcessHeaps, HeapValidate, VirtualProtect, PAGE_READWRITE,
};

const EXCEPTION_NONCONTINUABLE: u32 = 1;

type FreeFn = unsafe extern "C" fn(*mut c_void);

struct Hook {
    original: FreeFn,
    heap: usize,
}

static HOOK: OnceLock<Hook> = OnceLock::new();

type HeapFreeFn = unsafe extern "system" fn(HANDLE, u32, *mut c_void) -> i32;
static HEAP_FREE: OnceLock<HeapFreeFn> = OnceLock::new();

fn corrupt() {
    // SAFETY: raises a noncontinuable exception; nothing returns from it.
    unsafe {
        RaiseException(
            STATUS_HEAP_CORRUPTION as u32,
            EXCEPTION_NONCONTINUABLE,
            0,
            std::ptr::null(),
        )
    };
}

unsafe extern "system" fn checked_heap_free(heap: HANDLE, flags: u32, p: *mut c_void) -> i32 {
    let Some(original) = HEAP_FREE.get() else {
        return 0;
    };
    // SAFETY: as in `checked_free`.
    unsafe {
        if !p.is_null() && HeapValidate(heap, 0, p) == 0 {
            corrupt();
        }
        original(heap, flags, p)
    }
}

unsafe extern "C" fn checked_free(p: *mut c_void) {
    let Some(hook) = HOOK.get() else { return };
    // SAFETY: validating a pointer only reads heap metadata; the original free gets only live
    // blocks.
    unsafe {
        if !p.is_null() && HeapValidate(hook.heap as HANDLE, 0, p) == 0 && !live_anywhere(p) {
            corrupt();
        }
        (hook.original)(p)
    }
}

/// Whether `p` is a live block of any heap of the process: a runtime that allocated from
/// another heap than the one it reports is not blamed. No allocation: this runs inside free.
fn live_anywhere(p: *mut c_void) -> bool {
    let mut heaps: [HANDLE; 64] = [std::ptr::null_mut(); 64];
    // SAFETY: fills at most 64 handles; each is validated against the pointer only.
    unsafe {
        let n = GetProcessHeaps(heaps.len() as u32, heaps.as_mut_ptr()) as usize;
        heaps[..n.min(heaps.len())]
            .iter()
            .any(|&h| HeapValidate(h, 0, p) != 0)
    }
}

/// The heap a C runtime allocates from, asked of the runtime that holds `free`.
fn crt_heap(free: *const c_void) -> Option<usize> {
    let crt = module_of(free)?;
    // SAFETY: _get_heap_handle takes nothing and returns the runtime's heap.
    unsafe {
        let f = GetProcAddress(crt, c"_get_heap_handle".as_ptr().cast())?;
        let f: unsafe extern "C" fn() -> usize = std::mem::transmute(f);
        Some(f()).filter(|h| *h != 0)
    }
}

/// Release C runtimes whose `free` takes exactly the blocks of their heap. Debug runtimes
/// (msvcr120d.dll, ucrtbased.dll) put a header before each block, so the pointer a caller
/// frees is not a heap block: they are left alone.
fn is_crt(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("api-ms-win-crt-heap-") || C_RUNTIMES.contains(&n.as_str())
}

/// Points the `free` and `HeapFree` imports of the module holding `any_export` at the checks.
pub fn install(any_export: *const c_void) {
    let Some(module) = module_of(any_export) else {
        return;
    };
    let base = module as usize;
    // Walks the import directory of a module the loader has mapped, by the PE32+ layout.
    let rd32 = |off: usize| {
        // SAFETY: the offsets come from the module's own headers, which the loader mapped and
        // checked, and stay inside its image.
        unsafe { std::ptr::read_unaligned((base + off) as *const u32) as usize }
    };
    let rd64 = |off: usize| {
        // SAFETY: as for rd32.
        unsafe { std::ptr::read_unaligned((base + off) as *const u64) }
    };
    let name = |off: usize| {
        // SAFETY: as for rd32; a name in the import directory is NUL terminated.
        unsafe { CStr::from_ptr((base + off) as *const i8) }
    };
    let nt = rd32(0x3C);
    if rd32(nt) != 0x0000_4550 {
        return;
    }
    // Optional header at +24; the import directory is data directory 1, at +120 in PE32+.
    let imports = rd32(nt + 24 + 120);
    if imports == 0 {
        return;
    }
    let mut desc = imports;
    loop {
        let (names, dll, iat) = (rd32(desc), rd32(desc + 12), rd32(desc + 16));
        if dll == 0 {
            break;
        }
        let dll_name = name(dll).to_string_lossy();
        let crt = is_crt(&dll_name);
        let kernel = dll_name.eq_ignore_ascii_case("kernel32.dll");
        if (crt || kernel) && names != 0 {
            let mut i = 0;
            loop {
                let entry = rd64(names + i * 8);
                if entry == 0 {
                    break;
                }
                if entry >> 63 == 0 {
                    let slot = (base + iat + i * 8) as *mut usize;
                    match name(entry as usize + 2).to_bytes() {
                        // SAFETY: the slot is the bound IAT entry of this import.
                        b"free" if crt => unsafe { hook_free(slot) },
                        // SAFETY: as above.
                        b"HeapFree" if kernel => unsafe { hook_heap_free(slot) },
                        _ => {}
                    }
                }
                i += 1;
            }
        }
        desc += 20;
    }
}

/// Redirects a `free` slot, when its runtime's heap is known and it is the runtime hooked first.
unsafe fn hook_free(slot: *mut usize) {
    // SAFETY: the slot is a bound IAT entry of a loaded module.
    unsafe {
        let current = *slot;
        let Some(heap) = crt_heap(current as *const c_void) else {
            return;
        };
        let hook = HOOK.get_or_init(|| Hook {
            original: std::mem::transmute::<usize, FreeFn>(current),
            heap,
        });
        if hook.original as usize == current {
            write_slot(slot, checked_free as *const () as usize);
        }
    }
}

unsafe fn hook_heap_free(slot: *mut usize) {
    // SAFETY: as in `hook_free`.
    unsafe {
        let current = *slot;
        let original = HEAP_FREE.get_or_init(|| std::mem::transmute::<usize, HeapFreeFn>(current));
        if *original as usize == current {
            write_slot(slot, checked_heap_free as *const () as usize);
        }
    }
}

/// Writes one IAT slot; a page that cannot be made writable is left as it is.
unsafe fn write_slot(slot: *mut usize, value: usize) {
    let mut old = 0u32;
    // SAFETY: makes the one slot writable, writes it, and restores the protection.
    unsafe {
        if VirtualProtect(slot.cast(), 8, PAGE_READWRITE, &mut old) != 0 {
            *slot = value;
            VirtualProtect(slot.cast(), 8, old, &mut old);
        }
    }
}
