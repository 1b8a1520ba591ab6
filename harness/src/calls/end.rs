//! The Ends: DsBackupEnd closes a backup session (REQ-02) and refuses any other value (REQ-03),
//! called once or from several threads at once; DsRestoreEnd closes a restore handle.

use super::c;
use super::call::{handle_call, CStep, Call};
use crate::abi::{Api, HResult, Hbc};
use crate::args::{Garbage, HandleArg};
use crate::not_run::NotRun;
use crate::store::{await_joined, slot_of, Scratch, Store};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Barrier};

/// DsBackupEnd, DsBackupClose, DsBackupTruncateLogs, DsRestoreEnd.
pub type HbcOnly = unsafe extern "system" fn(Hbc) -> HResult;

/// DsBackupEnd (or DsRestoreEnd) on a session's value, for a clean-up: its code, when
/// exported.
///
/// # Safety
/// `api` is a loaded library's table (run in a worker); `value` is one the library gave out.
pub(crate) unsafe fn end_value(api: &Api, restore: bool, value: u64) -> Option<i32> {
    let export = if restore {
        "DsRestoreEnd"
    } else {
        "DsBackupEnd"
    };
    // SAFETY: End takes a handle by value with the signature `HbcOnly`; the caller vouches
    // for the table and the value.
    unsafe { api.get::<HbcOnly>(export).map(|f| f(value as Hbc)) }
}

/// The repro's C types for this family.
pub const C_TYPES: &str = "typedef HR(API *hbc_t)(HBC);\n";

/// DsBackupEnd on a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub h: HandleArg,
}

/// DsRestoreEnd on a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreEnd {
    pub h: HandleArg,
}

/// `threads` threads call DsBackupEnd on the same value at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndConcurrent {
    pub h: HandleArg,
    pub threads: u8,
}

/// An End of a backup session, else (`RESTORE`) of a restore handle: on S_OK the session with
/// that value is over.
///
/// # Safety
/// As `Call::run`, and `export` takes the handle alone (`HbcOnly`).
unsafe fn run<const RESTORE: bool>(
    it: &mut Store,
    s: &mut Scratch,
    export: &str,
    h: &HandleArg,
) -> Result<(), NotRun> {
    // SAFETY: `export`'s signature is `HbcOnly`, as the caller promises.
    let (f, v) = unsafe { it.func_arg::<HbcOnly>(export, h, s)? };
    // SAFETY: the handle goes by value; the caller vouches for the library.
    let rc = unsafe { f(v) };
    s.obs.rc = Some(rc);
    if rc == 0 {
        it.ended(RESTORE, v as u64, slot_of(h));
    }
    Ok(())
}

/// An End in a fault repro: on S_OK the slot's session (in `live`, else `rlive`) is over.
fn fault<const RESTORE: bool>(export: &str, h: &HandleArg) -> String {
    let live = if RESTORE { "rlive" } else { "live" };
    format!(
        "rc = ((HR (*)(HBC))need(\"{export}\"))({0}); if (rc == 0) {live}[{1}] = 0; end_code(\"{export}\", rc);",
        c::session_handle(h),
        c::cleared_slot(h)
    )
}

/// REQ-02 on a live value, REQ-03 on any other: the repro decides from the value at run time.
fn sequence(export: &str, h: &HandleArg, s: &CStep) -> String {
    let step = s.step;
    let owned = matches!(
        h,
        HandleArg::Garbage(Garbage::Zeroed | Garbage::OnesFilled | Garbage::Random(_))
    );
    let verdict = format!(
        "report({step}, {}, rc, t >= 0 ? rc == 0 : invalid(rc), t >= 0 ? \"0 (S_OK): the value is a live handle\" : \"87 (ERROR_INVALID_PARAMETER)\");\n        if (rc == 0 && t >= 0) live[t] = 0;",
        c::c_str(s.call)
    );
    let body = if owned {
        format!("        unsigned char *m = (unsigned char *){};\n        unsigned char copy[4096];\n        int t = target((HBC)m);\n        memcpy(copy, m, sizeof copy);\n        rc = ((hbc_t)need(\"{export}\"))((HBC)m);\n        {verdict}\n        if (memcmp(copy, m, sizeof copy)) report({step}, \"the memory passed as a handle\", rc, 0, \"no write\");\n", c::handle(h))
    } else {
        format!("        HBC v = {};\n        int t = target(v);\n        rc = ((hbc_t)need(\"{export}\"))(v);\n        {verdict}\n", c::handle(h))
    };
    c::block(body)
}

handle_call!(End, "DsBackupEnd", run::<false>, fault::<false>, sequence);

/// S_OK on a live restore handle, 87 on a value that is no live handle of either kind.
fn restore_sequence(export: &str, h: &HandleArg, s: &CStep) -> String {
    let step = s.step;
    c::block(format!(
        "        HBC v = {};\n        int r = rtarget(v), t = target(v);\n        rc = ((hbc_t)need(\"{export}\"))(v);\n        if (r >= 0) {{ report({step}, {c}, rc, rc == 0, \"0 (S_OK)\"); if (rc == 0) rlive[r] = 0; }}\n        else if (t < 0) report({step}, {c}, rc, invalid(rc), \"87 (ERROR_INVALID_PARAMETER)\");\n        else differs({step}, t);\n",
        c::handle(h),
        c = c::c_str(s.call),
    ))
}

handle_call!(
    RestoreEnd,
    "DsRestoreEnd",
    run::<true>,
    fault::<true>,
    restore_sequence
);

impl Call for EndConcurrent {
    fn export(&self) -> &'static str {
        "DsBackupEnd"
    }

    fn describe(&self) -> String {
        let (h, threads) = (self.h.describe(), self.threads);
        format!("DsBackupEnd({h}) on {threads} threads at once")
    }

    unsafe fn run(&self, it: &mut Store, s: &mut Scratch) -> Result<(), NotRun> {
        // SAFETY: DsBackupEnd's signature is `HbcOnly`.
        let (f, h) = unsafe { it.func_arg::<HbcOnly>(self.export(), &self.h, s)? };
        let h = h as usize;
        let n = self.threads.max(1) as usize;
        let before = crate::probe::threads();
        let barrier = Arc::new(Barrier::new(n));
        let joins: Vec<_> = (0..n)
            .map(|_| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    // SAFETY: the handle goes by value, and End may be called from any
                    // thread; the caller vouches for the library.
                    unsafe { f(h as Hbc) }
                })
            })
            .collect();
        s.obs.codes = joins
            .into_iter()
            .map(|j| j.join().unwrap_or(i32::MIN))
            .collect();
        await_joined(before);
        if s.obs.codes.contains(&0) {
            it.ended(false, h as u64, slot_of(&self.h));
        }
        Ok(())
    }

    fn c_sequence(&self, s: &CStep) -> String {
        let step = s.step;
        c::block(format!(
            "        HBC v = {hh};\n        int t = target(v);\n        int bad, wins = end_concurrently(v, {threads}, &bad);\n        if (t >= 0) report_race({step}, {c}, {threads}, wins, bad, wins == 1 && bad == 0, \"exactly one S_OK, the rest 87\");\n        else report_race({step}, {c}, {threads}, wins, bad, wins == 0 && bad == 0, \"87 (ERROR_INVALID_PARAMETER) for every thread\");\n        if (wins && t >= 0) live[t] = 0;\n",
            hh = c::handle(&self.h),
            threads = self.threads,
            c = c::c_str(s.call),
        ))
    }
}
