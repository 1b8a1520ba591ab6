//! A backup session's files and logs: DsBackupOpenFile[A|W], DsBackupRead, DsBackupClose and
//! DsBackupTruncateLogs.

use super::c;
use super::call::{a_or_w, handle_call, out, out_name, CStep, Call};
use super::end::HbcOnly;
use crate::abi::{HResult, Hbc};
use crate::args::{HandleArg, Text};
use crate::not_run::NotRun;
use crate::pageheap::Loan;
use crate::store::{Scratch, Store};
use serde::{Deserialize, Serialize};
use std::ffi::{c_char, c_void};

pub type OpenFileA = unsafe extern "system" fn(Hbc, *const c_char, u32, *mut i64) -> HResult;
pub type OpenFileW = unsafe extern "system" fn(Hbc, *const u16, u32, *mut i64) -> HResult;
pub type ReadFn = unsafe extern "system" fn(Hbc, *mut c_void, u32, *mut u32) -> HResult;

/// The repro's C types for this family.
pub const C_TYPES: &str = "typedef HR(API *open_a_t)(HBC, const char *, uint32_t, int64_t *);\ntypedef HR(API *open_w_t)(HBC, const WCH *, uint32_t, int64_t *);\ntypedef HR(API *read_t)(HBC, void *, uint32_t, uint32_t *);\n";

const READ_BUFFER_MAX: u32 = 16 * 1024 * 1024;
const READ_TO_END_MAX_CALLS: u64 = 100_000;

/// The arguments of a DsBackupOpenFile[A|W].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    pub wide: bool,
    pub h: HandleArg,
    pub name: Text,
    pub hint: u32,
    /// `&size` (else NULL).
    pub size: bool,
}

/// DsBackupRead into a `cb`-byte buffer; `&read` when `pcb` (else NULL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read {
    pub h: HandleArg,
    pub cb: u32,
    pub pcb: bool,
}

/// Reads until the call fails; observes the count of bytes, of calls, and the last code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadToEnd {
    pub h: HandleArg,
    pub cb: u32,
}

/// DsBackupClose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    pub h: HandleArg,
}

/// DsBackupTruncateLogs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncate {
    pub h: HandleArg,
}

impl Call for OpenFile {
    fn export(&self) -> &'static str {
        a_or_w(self.wide, "DsBackupOpenFileA", "DsBackupOpenFileW")
    }

    fn describe(&self) -> String {
        let (h, name, hint) = (self.h.describe(), self.name.describe(), self.hint);
        let size = out_name(self.size, "&size");
        format!("{}({h}, {name}, {hint}, {size})", self.export())
    }

    unsafe fn run(&self, it: &mut Store, s: &mut Scratch) -> Result<(), NotRun> {
        let o = self;
        let n = it.text(&o.name, o.wide)?;
        let h = it.arg(&o.h, s)?;
        let mut li: i64 = -1;
        let pli = out(o.size, &mut li);
        // SAFETY: OpenFileW/OpenFileA are those exports' signatures; the name is NUL
        // terminated and `li`, behind `pli` when given, outlives the call; the caller vouches
        // for the library.
        let rc = unsafe {
            if o.wide {
                it.func::<OpenFileW>(self.export())?(h, n.w(), o.hint, pli)
            } else {
                it.func::<OpenFileA>(self.export())?(h, n.a(), o.hint, pli)
            }
        };
        s.obs.rc = Some(rc);
        if o.size && rc == 0 {
            s.obs.size = Some(li as u64);
        }
        Ok(())
    }

    fn c_fault(&self) -> String {
        let (ty, h) = (c::char_type(self.wide), c::session_handle(&self.h));
        let name = c::text(&self.name, self.wide);
        let (export, hint, size) = (
            self.export(),
            self.hint,
            if self.size { "&sz" } else { "NULL" },
        );
        format!("{{ int64_t sz = 0; rc = ((HR (*)(HBC, {ty}, uint32_t, int64_t *))need(\"{export}\"))({h}, {name}, {hint}, {size}); (void)sz; }}")
    }

    fn c_sequence(&self, s: &CStep) -> String {
        let o = self;
        let f = a_or_w(o.wide, "open_a_t", "open_w_t");
        c::block(format!(
            "        int64_t sz = 0;\n        HBC v = {}; int t = target(v);\n        rc = (({f})need(\"{}\"))(v, {}, {}u, {});\n        {}\n",
            c::handle(&o.h),
            o.export(),
            c::text(&o.name, o.wide),
            o.hint,
            if o.size { "&sz" } else { "NULL" },
            s.by_value
        ))
    }
}

impl Call for Read {
    fn export(&self) -> &'static str {
        "DsBackupRead"
    }

    fn describe(&self) -> String {
        let (h, cb, read) = (self.h.describe(), self.cb, out_name(self.pcb, "&read"));
        format!("DsBackupRead({h}, buffer, {cb}, {read})")
    }

    unsafe fn run(&self, it: &mut Store, s: &mut Scratch) -> Result<(), NotRun> {
        // SAFETY: DsBackupRead's signature is `ReadFn`.
        let (f, h) = unsafe { it.func_arg::<ReadFn>(self.export(), &self.h, s)? };
        let cb = self.cb;
        if cb > READ_BUFFER_MAX {
            return Err(NotRun::ReadTooLarge(cb));
        }
        let mut buffer = vec![0u8; cb as usize];
        let _loan = Loan::new(buffer.as_ptr(), buffer.len());
        let mut n: u32 = 0;
        let pn = out(self.pcb, &mut n);
        // SAFETY: `buffer` holds `cb` bytes and `n` (behind `pn`, when given) outlives the
        // call; the caller vouches for the library.
        s.obs.rc = Some(unsafe { f(h, buffer.as_mut_ptr().cast(), cb, pn) });
        s.obs.size = Some(n as u64);
        Ok(())
    }

    fn c_sequence(&self, s: &CStep) -> String {
        let cb = self.cb;
        c::block(format!(
            "        void *buffer = malloc({cb}); uint32_t n = 0;\n        HBC v = {}; int t = target(v);\n        rc = ((read_t)need(\"DsBackupRead\"))(v, buffer, {cb}u, {});\n        {}\n        free(buffer);\n",
            c::handle(&self.h),
            if self.pcb { "&n" } else { "NULL" },
            s.by_value
        ))
    }
}

/// Close and TruncateLogs: a call on the handle alone, judged by its value.
///
/// # Safety
/// As `Call::run`, and `export` takes the handle alone (`HbcOnly`).
unsafe fn run(it: &mut Store, s: &mut Scratch, export: &str, h: &HandleArg) -> Result<(), NotRun> {
    // SAFETY: `export`'s signature is `HbcOnly`, as the caller promises.
    let (f, v) = unsafe { it.func_arg::<HbcOnly>(export, h, s)? };
    // SAFETY: the handle goes by value; the caller vouches for the library.
    s.obs.rc = Some(unsafe { f(v) });
    Ok(())
}

fn fault(export: &str, h: &HandleArg) -> String {
    format!(
        "rc = ((HR (*)(HBC))need(\"{export}\"))({});",
        c::session_handle(h)
    )
}

fn sequence(export: &str, h: &HandleArg, s: &CStep) -> String {
    c::block(format!(
        "        HBC v = {}; int t = target(v);\n        rc = ((hbc_t)need(\"{export}\"))(v);\n        {}\n",
        c::handle(h),
        s.by_value
    ))
}

handle_call!(Close, "DsBackupClose", run, fault, sequence);
handle_call!(Truncate, "DsBackupTruncateLogs", run, fault, sequence);

impl Call for ReadToEnd {
    fn export(&self) -> &'static str {
        "DsBackupRead"
    }

    fn describe(&self) -> String {
        format!(
            "DsBackupRead({}, buffer, {}, &read) until it fails",
            self.h.describe(),
            self.cb
        )
    }

    unsafe fn run(&self, it: &mut Store, s: &mut Scratch) -> Result<(), NotRun> {
        // SAFETY: DsBackupRead's signature is `ReadFn`.
        let (f, h) = unsafe { it.func_arg::<ReadFn>(self.export(), &self.h, s)? };
        let mut buffer = vec![0u8; self.cb.min(READ_BUFFER_MAX) as usize];
        let _loan = Loan::new(buffer.as_ptr(), buffer.len());
        let (mut total, mut calls, mut rc, mut largest) = (0u64, 0u64, 0, 0u64);
        while calls < READ_TO_END_MAX_CALLS {
            let mut n: u32 = 0;
            // SAFETY: `buffer` holds the length passed and `n` outlives the call; the caller
            // vouches for the library.
            rc = unsafe { f(h, buffer.as_mut_ptr().cast(), buffer.len() as u32, &mut n) };
            calls += 1;
            it.tick();
            if rc != 0 {
                break;
            }
            total += n as u64;
            largest = largest.max(n as u64);
        }
        s.obs.rc = Some(rc);
        s.obs.size = Some(total);
        s.obs.calls = Some(calls);
        s.obs.largest = Some(largest);
        Ok(())
    }

    fn c_fault(&self) -> String {
        let (cb, h) = (self.cb, c::session_handle(&self.h));
        format!("{{ static unsigned char rb[{cb}]; uint32_t n = 0; long k = 0;\n        do rc = ((HR (*)(HBC, void *, uint32_t, uint32_t *))need(\"DsBackupRead\"))({h}, rb, {cb}, &n); while (rc == 0 && ++k < 100000); }}")
    }

    fn c_sequence(&self, s: &CStep) -> String {
        let cb = self.cb;
        c::block(format!(
            "        void *buffer = malloc({cb}); uint32_t n = 0;\n        HBC v = {}; int t = target(v);\n        for (int k = 0; k < 100000; k++) {{ rc = ((read_t)need(\"DsBackupRead\"))(v, buffer, {cb}u, &n); if (rc != 0) break; }}\n        {}\n        free(buffer);\n",
            c::handle(&self.h),
            s.by_value
        ))
    }
}
