//! DsBackupPrepare[A|W]: opens a backup session (REQ-01), and its token and size.

use super::c;
use super::call::{a_or_w, out, out_name, CStep, Call};
use crate::abi::{HResult, Hbc};
use crate::args::Text;
use crate::not_run::NotRun;
use crate::store::{copy_bytes, Buf, Scratch, Store};
use serde::{Deserialize, Serialize};
use std::ffi::{c_char, c_void};

pub type PrepareA = unsafe extern "system" fn(
    *const c_char,
    u32,
    u32,
    *mut *mut c_void,
    *mut u32,
    *mut Hbc,
) -> HResult;
pub type PrepareW = unsafe extern "system" fn(
    *const u16,
    u32,
    u32,
    *mut *mut c_void,
    *mut u32,
    *mut Hbc,
) -> HResult;
/// The repro's C types for this family.
pub const C_TYPES: &str = "typedef HR(API *prepare_a_t)(const char *, uint32_t, uint32_t, void **, uint32_t *, HBC *);\ntypedef HR(API *prepare_w_t)(const WCH *, uint32_t, uint32_t, void **, uint32_t *, HBC *);\n";

/// The arguments of a DsBackupPrepare[A|W]. A `bool` out-argument says whether the call gets
/// a pointer to storage (else NULL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    pub wide: bool,
    pub server: Text,
    pub grbit: u32,
    pub btype: u32,
    /// `&token` (else NULL); the token goes to buffer slot `buf`.
    pub token: bool,
    /// `&size` (else NULL).
    pub size: bool,
    /// `&hbc` (else NULL); the handle goes to slot `slot`.
    pub phbc: bool,
    /// Stored in `*phbc` before the call.
    pub init: u64,
    pub slot: u8,
    pub buf: u8,
}

impl Prepare {
    /// The call a careful caller makes: a full backup, every out-pointer given, the handle to
    /// `slot` and the token to buffer `buf`.
    pub fn full(wide: bool, server: Text, slot: u8, buf: u8) -> Prepare {
        Prepare {
            wide,
            server,
            grbit: 0,
            btype: crate::codes::BACKUP_TYPE_FULL,
            token: true,
            size: true,
            phbc: true,
            init: 0,
            slot,
            buf,
        }
    }
}

fn btype_name(b: u32) -> String {
    match b {
        1 => "BACKUP_TYPE_FULL".into(),
        2 => "BACKUP_TYPE_LOGS_ONLY".into(),
        4 => "BACKUP_TYPE_INCREMENTAL".into(),
        other => other.to_string(),
    }
}

impl Call for Prepare {
    fn export(&self) -> &'static str {
        a_or_w(self.wide, "DsBackupPrepareA", "DsBackupPrepareW")
    }

    fn describe(&self) -> String {
        let (p, server, btype) = (self, self.server.describe(), btype_name(self.btype));
        let token = out_name(p.token, "&token");
        let (size, phbc) = (out_name(p.size, "&size"), out_name(p.phbc, "&hbc"));
        let (export, grbit, slot) = (p.export(), p.grbit, p.slot);
        format!("{export}({server}, {grbit}, {btype}, {token}, {size}, {phbc}) -> h{slot}")
    }

    unsafe fn run(&self, it: &mut Store, s: &mut Scratch) -> Result<(), NotRun> {
        let p = self;
        let server = it.text(&p.server, p.wide)?;
        let mut tok: *mut c_void = std::ptr::null_mut();
        let mut cb: u32 = 0;
        let mut h: Hbc = p.init as Hbc;
        let (ptok, pcb, ph) = (
            out(p.token, &mut tok),
            out(p.size, &mut cb),
            out(p.phbc, &mut h),
        );
        // SAFETY: PrepareW/PrepareA are those exports' signatures; the server name is NUL
        // terminated and `tok`, `cb` and `h`, behind the out-pointers when given, outlive the
        // call; the caller vouches for the library.
        let rc = unsafe {
            if p.wide {
                it.func::<PrepareW>(self.export())?(server.w(), p.grbit, p.btype, ptok, pcb, ph)
            } else {
                it.func::<PrepareA>(self.export())?(server.a(), p.grbit, p.btype, ptok, pcb, ph)
            }
        };
        let obs = &mut s.obs;
        obs.rc = Some(rc);
        if p.phbc {
            it.opened(false, p.slot as usize, h as u64, rc == 0 && !h.is_null());
            obs.handle = Some(h as u64);
        }
        if p.size {
            obs.size = Some(cb as u64);
        }
        if p.token {
            obs.ptr = Some(!tok.is_null());
            it.set_buf(p.buf, Buf::new(tok as usize, cb.min(256), false));
            if !tok.is_null() && rc == 0 {
                // SAFETY: on S_OK the library says the token holds `cb` bytes; a lie faults
                // in this worker, which is what it is for.
                obs.bytes = Some(unsafe { copy_bytes(tok as usize, cb.min(256) as usize) });
            }
        }
        Ok(())
    }

    fn c_fault(&self) -> String {
        let p = self;
        let (ty, server) = (c::char_type(p.wide), c::text(&p.server, p.wide));
        let token = if p.token { "&tok" } else { "NULL" };
        let (size, phbc) = (
            if p.size { "&cb" } else { "NULL" },
            if p.phbc { "&hv" } else { "NULL" },
        );
        let (name, init, grbit, btype, s, buf) =
            (p.export(), p.init, p.grbit, p.btype, p.slot, p.buf);
        format!("{{ void *tok = NULL; uint32_t cb = 0; HBC hv = (HBC)(uintptr_t){init}ull;\n        rc = ((HR (*)({ty}, uint32_t, uint32_t, void **, uint32_t *, HBC *))need(\"{name}\"))({server}, {grbit}, {btype}, {token}, {size}, {phbc});\n        h[{s}] = hv; live[{s}] = rc == 0 && hv; b[{buf}] = tok; bsz[{buf}] = cb; bwide[{buf}] = 0; prepared = 1; }}")
    }

    fn c_sequence(&self, s: &CStep) -> String {
        let p = self;
        let f = a_or_w(
            p.wide,
            "((prepare_a_t)need(\"DsBackupPrepareA\"))",
            "((prepare_w_t)need(\"DsBackupPrepareW\"))",
        );
        c::block(format!(
            "        void *tok = NULL; uint32_t cb = 0; HBC out = (HBC)(uintptr_t){init}ull;\n        rc = {f}({}, {grbit}u, {btype}u, {}, {}, {});\n        {chk}\n        if ({phbc}) {{ vacate({slot}); h[{slot}] = out; live[{slot}] = rc == 0 && out != NULL; }}\n        if ({token}) {{ b[{buf}] = tok; bsz[{buf}] = cb; bwide[{buf}] = 0; }}\n",
            c::text(&p.server, p.wide),
            if p.token { "&tok" } else { "NULL" },
            if p.size { "&cb" } else { "NULL" },
            if p.phbc { "&out" } else { "NULL" },
            init = p.init,
            grbit = p.grbit,
            btype = p.btype,
            slot = p.slot,
            buf = p.buf,
            phbc = p.phbc as u8,
            token = p.token as u8,
            chk = s.check,
        ))
    }
}
