//! Windows: the DLL's version resource, read through the version API.

use crate::report::VersionResource;
use crate::sys::wide;
use std::collections::BTreeMap;
use std::ffi::c_void;
use windows_sys::Win32::Storage::FileSystem::{
    GetFileVersionInfoSizeW, GetFileVersionInfoW, VerQueryValueW, VS_FIXEDFILEINFO,
};

/// The standard strings of a version resource.
const NAMES: [&str; 8] = [
    "CompanyName",
    "ProductName",
    "FileDescription",
    "FileVersion",
    "ProductVersion",
    "OriginalFilename",
    "InternalName",
    "LegalCopyright",
];

/// A value of the resource block, or None.
fn query(block: &[u8], sub: &str) -> Option<(*const c_void, u32)> {
    let mut ptr: *mut c_void = std::ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: VerQueryValueW points into `block`, which outlives the returned pointer's use.
    let ok = unsafe {
        VerQueryValueW(
            block.as_ptr().cast(),
            wide(sub).as_ptr(),
            &mut ptr,
            &mut len,
        )
    };
    (ok != 0 && !ptr.is_null()).then_some((ptr as *const c_void, len))
}

fn four(ms: u32, ls: u32) -> String {
    format!("{}.{}.{}.{}", ms >> 16, ms & 0xFFFF, ls >> 16, ls & 0xFFFF)
}

/// The DLL's VERSIONINFO: numeric file and product versions and the standard strings of its
/// first translation. Read as data; no code of the library runs.
pub fn version_resource(path: &std::path::Path) -> Option<VersionResource> {
    let name = wide(path);
    let mut handle = 0u32;
    // SAFETY: sizes and fills our buffer from the file's resource section.
    let size = unsafe { GetFileVersionInfoSizeW(name.as_ptr(), &mut handle) };
    if size == 0 {
        return None;
    }
    let mut block = vec![0u8; size as usize];
    // SAFETY: the buffer has the size asked for.
    if unsafe { GetFileVersionInfoW(name.as_ptr(), 0, size, block.as_mut_ptr().cast()) } == 0 {
        return None;
    }
    let mut out = VersionResource::default();
    if let Some((p, len)) = query(&block, "\\") {
        if len as usize >= std::mem::size_of::<VS_FIXEDFILEINFO>() {
            // SAFETY: a VS_FIXEDFILEINFO inside `block`, as its length says.
            let f = unsafe { std::ptr::read_unaligned(p as *const VS_FIXEDFILEINFO) };
            out.file_version = Some(four(f.dwFileVersionMS, f.dwFileVersionLS));
            out.product_version = Some(four(f.dwProductVersionMS, f.dwProductVersionLS));
        }
    }
    if let Some((p, len)) = query(&block, "\\VarFileInfo\\Translation") {
        if len >= 4 {
            // SAFETY: at least one (language, code page) pair of u16s.
            let (lang, cp) = unsafe {
                let t = p as *const u16;
                (
                    std::ptr::read_unaligned(t),
                    std::ptr::read_unaligned(t.add(1)),
                )
            };
            let mut strings = BTreeMap::new();
            for key in NAMES {
                let sub = format!("\\StringFileInfo\\{lang:04x}{cp:04x}\\{key}");
                if let Some((p, len)) = query(&block, &sub) {
                    // SAFETY: `len` UTF-16 units (with the NUL) inside `block`.
                    let units =
                        unsafe { std::slice::from_raw_parts(p as *const u16, len as usize) };
                    let text = String::from_utf16_lossy(units);
                    let text = text.trim_end_matches('\0').trim();
                    if !text.is_empty() {
                        strings.insert(key.to_string(), text.to_string());
                    }
                }
            }
            out.strings = strings;
        }
    }
    Some(out)
}
