//! DsBackupFree: releases a buffer the library returned (a token or a name list), or NULL.

use super::call::{CStep, Call};
use crate::abi::Api;
use crate::not_run::NotRun;
use crate::store::{Scratch, Store};
use serde::{Deserialize, Serialize};
use std::ffi::c_void;

pub type FreeFn = unsafe extern "system" fn(*mut c_void);

/// DsBackupFree on a buffer, for a clean-up, when exported.
///
/// # Safety
/// `api` is a loaded library's table (run in a worker); `ptr` is a buffer the library
/// returned and nothing has freed.
pub(crate) unsafe fn free_value(api: &Api, ptr: usize) {
    // SAFETY: DsBackupFree's signature is `FreeFn`; the caller vouches for the table.
    if let Some(f) = unsafe { api.get::<FreeFn>("DsBackupFree") } {
        // SAFETY: the caller's promise for the buffer: it is freed once.
        unsafe { f(ptr as *mut c_void) };
    }
}

/// The repro's C types for this family.
pub const C_TYPES: &str = "typedef void(API *free_t)(void *);\n";

/// DsBackupFree of a buffer slot, or of NULL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Free {
    pub buf: Option<u8>,
}

impl Call for Free {
    fn export(&self) -> &'static str {
        "DsBackupFree"
    }

    fn describe(&self) -> String {
        match self.buf {
            Some(b) => format!("{}(buffer b{b})", self.export()),
            None => format!("{}(NULL)", self.export()),
        }
    }

    unsafe fn run(&self, it: &mut Store, _: &mut Scratch) -> Result<(), NotRun> {
        // SAFETY: DsBackupFree's signature is `FreeFn`.
        let f: FreeFn = unsafe { it.func(self.export())? };
        match self.buf {
            // SAFETY: NULL is a documented argument; the caller vouches for the library.
            None => unsafe { f(std::ptr::null_mut()) },
            Some(b) => {
                // The buffer leaves the worker's storage first: it is never read again.
                let p = it.take_buf(b).ptr;
                // SAFETY: a buffer the library returned and nothing freed yet (the model frees
                // each once); the caller vouches for the library.
                unsafe { f(p as *mut c_void) };
            }
        }
        Ok(())
    }

    fn c_fault(&self) -> String {
        match self.buf {
            Some(k) => {
                format!("((void (*)(void *))need(\"DsBackupFree\"))(b[{k}]); b[{k}] = NULL;")
            }
            None => "((void (*)(void *))need(\"DsBackupFree\"))(NULL);".into(),
        }
    }

    fn c_sequence(&self, s: &CStep) -> String {
        let step = s.step;
        match self.buf {
            Some(bf) => format!("    ((free_t)need(\"DsBackupFree\"))(b[{bf}]);\n    b[{bf}] = NULL;\n    if (!quiet) printf(\"step {step}: DsBackupFree done\\n\");\n"),
            None => format!("    ((free_t)need(\"DsBackupFree\"))(NULL);\n    if (!quiet) printf(\"step {step}: DsBackupFree(NULL) done\\n\");\n"),
        }
    }
}
