//! The calls on the server rather than a session: DsSetAuthIdentity[A|W], which the suite
//! calls. DsIsNTDSOnline[A|W] is resolved only to list it (include/ntdsbcli.h has its
//! signature).

use super::call::{CStep, Call};
use crate::abi::HResult;
use crate::args::Text;
use crate::not_run::NotRun;
use crate::store::need;
use crate::store::{Scratch, Store};
use serde::{Deserialize, Serialize};
use std::ffi::c_char;

pub type SetAuthA =
    unsafe extern "system" fn(*const c_char, *const c_char, *const c_char) -> HResult;
pub type SetAuthW = unsafe extern "system" fn(*const u16, *const u16, *const u16) -> HResult;

/// DsSetAuthIdentity[A|W]. The W form is asked for; a library with only the A form gets that.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAuth {
    pub wide: bool,
    pub user: Text,
    pub domain: Text,
    pub password: Text,
}

impl Call for SetAuth {
    fn export(&self) -> &'static str {
        if self.wide {
            "DsSetAuthIdentityW"
        } else {
            "DsSetAuthIdentityA"
        }
    }

    fn describe(&self) -> String {
        format!("{}(user, domain, password)", self.export())
    }

    unsafe fn run(&self, it: &mut Store, s: &mut Scratch) -> Result<(), NotRun> {
        let api = it.api();
        let wide = self.wide && api.has("DsSetAuthIdentityW");
        let (u, d, p) = (
            it.text(&self.user, wide)?,
            it.text(&self.domain, wide)?,
            it.text(&self.password, wide)?,
        );
        // SAFETY: SetAuthW/SetAuthA are those exports' signatures; the three strings are NUL
        // terminated and live until the call returns; the caller vouches for the library.
        s.obs.rc = Some(unsafe {
            if wide {
                need(api.get::<SetAuthW>("DsSetAuthIdentityW"), self.export())?(u.w(), d.w(), p.w())
            } else {
                need(api.get::<SetAuthA>("DsSetAuthIdentityA"), self.export())?(u.a(), d.a(), p.a())
            }
        });
        Ok(())
    }

    /// No sequence calls it, so no repro does.
    fn c_sequence(&self, s: &CStep) -> String {
        format!("    /* step {}: not performed by the repro */\n", s.step)
    }
}
