//! The restore calls: DsRestorePrepare[A|W], which the suite calls (DsRestoreEnd is with the
//! Ends). The rest of the family is exported but never called (include/ntdsbcli.h has their
//! signatures).

use super::c;
use super::call::{a_or_w, CStep, Call};
use crate::abi::{HResult, Hbc};
use crate::args::Text;
use crate::not_run::NotRun;
use crate::store::{Scratch, Store};
use serde::{Deserialize, Serialize};
use std::ffi::{c_char, c_void};

pub type RestorePrepareA =
    unsafe extern "system" fn(*const c_char, u32, *const c_void, u32, *mut Hbc) -> HResult;
pub type RestorePrepareW =
    unsafe extern "system" fn(*const u16, u32, *const c_void, u32, *mut Hbc) -> HResult;

/// The repro's C types for this family.
pub const C_TYPES: &str = "typedef HR(API *rprepare_a_t)(const char *, uint32_t, const void *, uint32_t, HBC *);\ntypedef HR(API *rprepare_w_t)(const WCH *, uint32_t, const void *, uint32_t, HBC *);\n";

/// The arguments of a DsRestorePrepare[A|W]; the handle goes to slot `slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePrepare {
    pub wide: bool,
    pub server: Text,
    /// The buffer slot whose bytes are passed as the backup token (else NULL, 0).
    pub token: Option<u8>,
    pub slot: u8,
}

impl Call for RestorePrepare {
    fn export(&self) -> &'static str {
        a_or_w(self.wide, "DsRestorePrepareA", "DsRestorePrepareW")
    }

    fn describe(&self) -> String {
        let token = match self.token {
            Some(b) => format!("token b{b}"),
            None => "NULL".into(),
        };
        let (server, slot) = (self.server.describe(), self.slot);
        format!("{}({server}, 0, {token}) -> h{slot}", self.export())
    }

    unsafe fn run(&self, it: &mut Store, s: &mut Scratch) -> Result<(), NotRun> {
        let r = self;
        let server = it.text(&r.server, r.wide)?;
        let (tp, tcb) = match r.token {
            Some(b) => {
                let b = it.buf(b);
                (b.ptr as *const c_void, b.size)
            }
            None => (std::ptr::null(), 0),
        };
        let mut h: Hbc = std::ptr::null_mut();
        // SAFETY: RestorePrepareW/A are those exports' signatures; the server name is NUL
        // terminated, the token is a buffer the library returned (or NULL with 0) and `h`
        // outlives the call; the caller vouches for the library.
        let rc = unsafe {
            if r.wide {
                it.func::<RestorePrepareW>(self.export())?(server.w(), 0, tp, tcb, &mut h)
            } else {
                it.func::<RestorePrepareA>(self.export())?(server.a(), 0, tp, tcb, &mut h)
            }
        };
        s.obs.rc = Some(rc);
        s.obs.handle = Some(h as u64);
        it.opened(true, r.slot as usize, h as u64, rc == 0 && !h.is_null());
        Ok(())
    }

    fn c_fault(&self) -> String {
        let (ty, server) = (c::char_type(self.wide), c::text(&self.server, self.wide));
        let (export, s) = (self.export(), self.slot);
        format!("{{ HBC hv = NULL; rc = ((HR (*)({ty}, uint32_t, const void *, uint32_t, HBC *))need(\"{export}\"))({server}, 0, NULL, 0, &hv); h[{s}] = hv; rlive[{s}] = rc == 0 && hv; prepared = 1; }}")
    }

    fn c_sequence(&self, s: &CStep) -> String {
        let r = self;
        let f = a_or_w(r.wide, "rprepare_a_t", "rprepare_w_t");
        let (tp, tc) = match r.token {
            Some(t) => (format!("b[{t}]"), format!("bsz[{t}]")),
            None => ("NULL".into(), "0".into()),
        };
        c::block(format!(
            "        HBC out = NULL;\n        rc = (({f})need(\"{}\"))({}, 0, {tp}, {tc}, &out);\n        {}\n        vacate({slot}); rlive[{slot}] = 0; h[{slot}] = out; rlive[{slot}] = rc == 0 && out != NULL;\n",
            r.export(),
            c::text(&r.server, r.wide),
            s.check,
            slot = r.slot
        ))
    }
}
