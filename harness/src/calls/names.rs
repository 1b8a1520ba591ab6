//! DsBackupGetDatabaseNames[A|W] and DsBackupGetBackupLogs[A|W]: a session's name lists.

use super::c;
use super::call::{a_or_w, out, out_name, CStep, Call};
use crate::abi::{HResult, Hbc};
use crate::args::HandleArg;
use crate::not_run::NotRun;
use crate::store::{copy_bytes, Buf, Scratch, Store};
use serde::{Deserialize, Serialize};
use std::ffi::c_void;

/// GetDatabaseNames, GetBackupLogs and RestoreGetDatabaseLocations (A: `char**`, W: `WCHAR**`;
/// both are a pointer to a pointer, so one type serves).
pub type NameList = unsafe extern "system" fn(Hbc, *mut *mut c_void, *mut u32) -> HResult;

/// The repro's C types for this family.
pub const C_TYPES: &str = "typedef HR(API *names_t)(HBC, void **, uint32_t *);\n";

/// Which list a name-list call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListKind {
    DatabaseNames,
    BackupLogs,
}

/// A name-list call on `h`: `&list` and `&size` when `out` and `size` (else NULL); the list
/// goes to buffer slot `buf`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub kind: ListKind,
    pub wide: bool,
    pub h: HandleArg,
    pub out: bool,
    pub size: bool,
    pub buf: u8,
}

impl Call for Names {
    fn export(&self) -> &'static str {
        match self.kind {
            ListKind::DatabaseNames => a_or_w(
                self.wide,
                "DsBackupGetDatabaseNamesA",
                "DsBackupGetDatabaseNamesW",
            ),
            ListKind::BackupLogs => a_or_w(
                self.wide,
                "DsBackupGetBackupLogsA",
                "DsBackupGetBackupLogsW",
            ),
        }
    }

    fn describe(&self) -> String {
        let (h, buf) = (self.h.describe(), self.buf);
        let (list, size) = (out_name(self.out, "&list"), out_name(self.size, "&size"));
        format!("{}({h}, {list}, {size}) -> b{buf}", self.export())
    }

    unsafe fn run(&self, it: &mut Store, s: &mut Scratch) -> Result<(), NotRun> {
        // SAFETY: the name-list exports' signature is `NameList`.
        let (f, h) = unsafe { it.func_arg::<NameList>(self.export(), &self.h, s)? };
        // The documented caller precondition: the out pointer starts NULL.
        let mut p: *mut c_void = std::ptr::null_mut();
        let mut cb: u32 = 0;
        // SAFETY: `p` and `cb`, behind the out-pointers when given, outlive the call; the
        // caller vouches for the library.
        let rc = unsafe { f(h, out(self.out, &mut p), out(self.size, &mut cb)) };
        let obs = &mut s.obs;
        obs.rc = Some(rc);
        if self.out {
            obs.ptr = Some(!p.is_null());
            it.set_buf(self.buf, Buf::new(p as usize, cb, self.wide));
            if rc == 0 {
                // SAFETY: on S_OK the library says `p` holds `cb` bytes; a lie faults in
                // this worker, which is what it is for.
                obs.bytes = Some(unsafe { copy_bytes(p as usize, cb as usize) });
            }
        }
        if self.size {
            obs.size = Some(cb as u64);
        }
        Ok(())
    }

    fn c_fault(&self) -> String {
        let buf = self.buf;
        format!(
            "{{ void *o = NULL; uint32_t cb = 0; rc = ((HR (*)(HBC, void **, uint32_t *))need(\"{}\"))({}, {}, {});\n        b[{buf}] = o; bsz[{buf}] = cb; bwide[{buf}] = {}; }}",
            self.export(),
            c::session_handle(&self.h),
            if self.out { "&o" } else { "NULL" },
            if self.size { "&cb" } else { "NULL" },
            i32::from(self.wide),
        )
    }

    fn c_sequence(&self, s: &CStep) -> String {
        let buf = self.buf;
        c::block(format!(
            "        void *list = NULL; uint32_t cb = 0;\n        HBC v = {}; int t = target(v);\n        rc = ((names_t)need(\"{}\"))(v, {}, {});\n        {}\n        b[{buf}] = list; bsz[{buf}] = cb; bwide[{buf}] = {};\n",
            c::handle(&self.h),
            self.export(),
            if self.out { "&list" } else { "NULL" },
            if self.size { "&cb" } else { "NULL" },
            s.by_value,
            self.wide as u8
        ))
    }
}
