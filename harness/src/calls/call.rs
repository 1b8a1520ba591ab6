//! What every call of the API provides, so that one family file describes it whole.

use crate::not_run::NotRun;
use crate::store::{Scratch, Store};

/// One call of an export with its arguments: the ops of a program that reach the library.
pub trait Call {
    /// The export the call reaches (the A or W form it names).
    fn export(&self) -> &'static str;

    /// The call as a person would write it, e.g. `DsBackupEnd(h0)`.
    fn describe(&self) -> String;

    /// Makes the call in the worker and records what came back in `s.obs`.
    ///
    /// # Safety
    /// The library whose table `it` holds must still be loaded, and its exports must have the
    /// C signatures their families declare. The call runs the library's code, which may do
    /// anything to this process: only a worker, which nothing else lives in, may make it.
    unsafe fn run(&self, it: &mut Store, s: &mut Scratch) -> Result<(), NotRun>;

    /// The call as C in a sequence repro, judged as `step` says.
    fn c_sequence(&self, step: &CStep) -> String;

    /// The call as C in a fault.cleanup repro: it sets `rc` when the call returns one. Only
    /// the calls of the session paths (`checks::release`) have one.
    fn c_fault(&self) -> String {
        format!("/* {} is not part of a session path */", self.describe())
    }
}

/// How the repro judges one step: the suite's verdict as C, and where it stands.
pub struct CStep<'a> {
    /// A C statement that judges `rc` as the verifier did.
    pub check: &'a str,
    /// `check` when the value is the same session, 87 when it is no live handle, run-time.
    pub by_value: &'a str,
    pub step: usize,
    /// The call as `describe` writes it.
    pub call: &'a str,
}

/// The export of an A/W pair that a call with `wide` reaches.
pub(crate) fn a_or_w(wide: bool, a: &'static str, w: &'static str) -> &'static str {
    if wide {
        w
    } else {
        a
    }
}

/// A pointer to `v` for an out-argument the call gets, else NULL.
pub(crate) fn out<T>(given: bool, v: &mut T) -> *mut T {
    if given {
        v
    } else {
        std::ptr::null_mut()
    }
}

/// An out-argument as the detail names it: `&what`, or NULL.
pub(crate) fn out_name(given: bool, what: &'static str) -> &'static str {
    if given {
        what
    } else {
        "NULL"
    }
}

/// `impl Call` for a call on the handle alone (End, RestoreEnd, Close, TruncateLogs), which a
/// detail writes `Export(h)`: `$run` makes it, `$fault` and `$sequence` write its C, each given
/// the export's name and the handle.
macro_rules! handle_call {
    ($call:ty, $export:literal, $run:path, $fault:path, $sequence:path) => {
        impl $crate::calls::Call for $call {
            fn export(&self) -> &'static str {
                $export
            }

            fn describe(&self) -> String {
                format!("{}({})", $export, self.h.describe())
            }

            unsafe fn run(
                &self,
                it: &mut $crate::store::Store,
                s: &mut $crate::store::Scratch,
            ) -> Result<(), $crate::not_run::NotRun> {
                // SAFETY: the caller's promise (a loaded library, a worker) is what `$run`
                // asks for.
                unsafe { $run(it, s, $export, &self.h) }
            }

            fn c_fault(&self) -> String {
                $fault($export, &self.h)
            }

            fn c_sequence(&self, s: &$crate::calls::CStep) -> String {
                $sequence($export, &self.h, s)
            }
        }
    };
}
pub(crate) use handle_call;
