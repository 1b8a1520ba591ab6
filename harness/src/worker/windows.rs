//! The Windows side of a worker: started in a job object that ends what it leaves, its death
//! read from its exit code (an NTSTATUS for an exception).

use super::Death;
use crate::sys::{wide, C_RUNTIMES};
use std::ffi::c_void;
use std::os::windows::io::{AsRawHandle, FromRawHandle, IntoRawHandle, OwnedHandle};
use std::process::{Child, Command, ExitStatus};
use windows_sys::Win32::Foundation::{
    CloseHandle, DuplicateHandle, SetHandleInformation, DUPLICATE_SAME_ACCESS, HANDLE,
    HANDLE_FLAG_INHERIT, STATUS_CONTROL_C_EXIT, STATUS_STACK_BUFFER_OVERRUN, STATUS_STACK_OVERFLOW,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, SetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Diagnostics::Debug::{
    AddVectoredExceptionHandler, SetErrorMode, EXCEPTION_CONTINUE_SEARCH, EXCEPTION_POINTERS,
    SEM_FAILCRITICALERRORS, SEM_NOGPFAULTERRORBOX,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};

/// The worker itself: its job object is its disposable container.
pub fn command(exe: &std::path::Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg(super::protocol::WORKER_ARG);
    cmd
}

/// What a worker inherits of the verifier's environment: what Windows (and Wine) need to run
/// a process and find its DLLs. Nothing else (no credentials, no tokens).
pub fn platform_variable(name: &std::ffi::OsStr) -> bool {
    const KEPT: &[&str] = &[
        "SYSTEMROOT",
        "SYSTEMDRIVE",
        "WINDIR",
        "PATH",
        "PATHEXT",
        "TEMP",
        "TMP",
        "COMSPEC",
        "USERPROFILE",
        "PROGRAMDATA",
        "PROGRAMFILES",
        "PROGRAMFILES(X86)",
        "COMMONPROGRAMFILES",
        "NUMBER_OF_PROCESSORS",
        "PROCESSOR_ARCHITECTURE",
        "OS",
        "ALLUSERSPROFILE",
        "APPDATA",
        "LOCALAPPDATA",
        // Wine finds its prefix from these.
        "HOME",
        "USER",
    ];
    let Some(n) = name.to_str() else {
        return false;
    };
    let upper = n.to_ascii_uppercase();
    KEPT.contains(&upper.as_str()) || upper.starts_with("WINE")
}

/// The job object bounds nothing yet: the limit applies on Unix.
pub fn limit_memory(_cmd: &mut Command, _mb: Option<u64>) {}

/// No keeper on Windows: a death is the worker's own.
pub fn named_by_keeper(death: Death, _last_output: Option<&str>) -> Death {
    death
}

/// Processes a worker starts stay in its job object, which ends them with it.
pub fn contain_orphans() {}

/// Nothing is left outside a job object.
pub fn end_orphans() {}

/// The worker's job object: killing it ends the worker and everything the library started in
/// it; closing it (the supervisor exiting, even by a crash) does the same.
pub struct Tree {
    job: HANDLE,
}

// SAFETY: a kernel handle, usable from any thread.
unsafe impl Send for Tree {}

pub fn adopt(child: &Child) -> std::io::Result<Tree> {
    // SAFETY: an unnamed job with default security.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a plain C struct, for which all zeroes is a valid value.
    let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    info.BasicLimitInformation.LimitFlags =
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
    // SAFETY: the job above, given a limit struct of the size passed, read during the call.
    let ok = unsafe {
        SetInformationJobObject(
            job,
            JobObjectExtendedLimitInformation,
            (&info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    } != 0
        // SAFETY: the job above and the child's own process handle.
        && unsafe { AssignProcessToJobObject(job, child.as_raw_handle()) } != 0;
    if !ok {
        let e = std::io::Error::last_os_error();
        // SAFETY: the job's handle, this function's own until it is returned.
        unsafe { CloseHandle(job) };
        return Err(e);
    }
    Ok(Tree { job })
}

impl Tree {
    pub fn kill(&self, child: &mut Child) {
        // SAFETY: our job handle.
        unsafe { TerminateJobObject(self.job, STATUS_CONTROL_C_EXIT as u32) };
        let _ = child.kill();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // SAFETY: closed once; KILL_ON_JOB_CLOSE ends anything left in it.
        unsafe { CloseHandle(self.job) };
    }
}

/// Names of the NTSTATUS codes a crashing library ends a process with.
fn status_text(code: u32) -> Option<&'static str> {
    Some(match code {
        0xC000_0005 => "access violation",
        0xC000_00FD => "stack overflow",
        0xC000_0409 => "fast fail / stack buffer overrun (abort)",
        0xC000_0374 => "heap corruption",
        0xC000_001D => "illegal instruction",
        0xC000_0096 => "privileged instruction",
        0xC000_0094 => "integer divide by zero",
        0xC000_0095 => "integer overflow",
        0xC000_008C..=0xC000_0093 => "floating-point exception",
        0xC000_0006 => "in-page error",
        0xC000_0008 => "invalid handle",
        0xC000_0025 => "noncontinuable exception",
        0xC000_0026 => "invalid disposition",
        0xC000_0417 => "invalid C runtime parameter",
        0xC000_0420 => "assertion failure",
        0xC000_013A => "terminated (control-C exit)",
        0x8000_0003 => "breakpoint",
        0x8000_0002 => "datatype misalignment",
        0xE06D_7363 => "unhandled C++ exception",
        _ => return None,
    })
}

pub fn death_of(status: ExitStatus) -> Death {
    let raw = status.code().unwrap_or(-1);
    let code = raw as u32;
    match status_text(code) {
        Some(text) => Death::Crash {
            code: code as i64,
            name: format!("0x{code:08X} {text}"),
        },
        // Any other error-severity status is an exception nobody handled.
        None if code & 0xC000_0000 == 0xC000_0000 => Death::Crash {
            code: code as i64,
            name: format!("0x{code:08X} unhandled exception"),
        },
        None => Death::Exit { code: raw },
    }
}

fn duplicate(h: HANDLE) -> std::io::Result<OwnedHandle> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicates a handle of our own process into our own process, not inheritable.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h,
            GetCurrentProcess(),
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh handle we own.
    Ok(unsafe { OwnedHandle::from_raw_handle(out) })
}

/// An export of a C runtime that is already loaded (never loads one).
fn crt_fn(module: &str, name: &std::ffi::CStr) -> Option<*const c_void> {
    // SAFETY: GetModuleHandleW only looks; GetProcAddress reads the export table.
    unsafe {
        let m = GetModuleHandleW(wide(module).as_ptr());
        if m.is_null() {
            return None;
        }
        GetProcAddress(m, name.as_ptr().cast()).map(|f| f as *const c_void)
    }
}

/// Points each loaded C runtime's descriptor 1 at stderr and 0 at NUL, as dup2 does on Unix:
/// they may already point at the protocol pipes.
fn retarget_crt_descriptors() {
    type Dup2 = unsafe extern "C" fn(i32, i32) -> i32;
    type Open = unsafe extern "C" fn(*const i8, i32) -> i32;
    type Close = unsafe extern "C" fn(i32) -> i32;
    for crt in C_RUNTIMES {
        let (Some(dup2), Some(open), Some(close)) = (
            crt_fn(crt, c"_dup2"),
            crt_fn(crt, c"_open"),
            crt_fn(crt, c"_close"),
        ) else {
            continue;
        };
        // SAFETY: the runtime's own functions with their documented signatures.
        unsafe {
            let dup2: Dup2 = std::mem::transmute(dup2);
            let open: Open = std::mem::transmute(open);
            let close: Close = std::mem::transmute(close);
            dup2(2, 1);
            let nul = open(c"NUL".as_ptr(), 0);
            if nul >= 0 {
                dup2(nul, 0);
                close(nul);
            }
        }
    }
}

/// Moves the protocol pipes off the standard handles, so that nothing the library prints or
/// reads can touch them: stdout then goes to stderr, stdin reads NUL. Runs before the library
/// loads, so a C runtime it brings starts from the redirected handles.
pub fn take_stdio() -> std::io::Result<(OwnedHandle, OwnedHandle)> {
    // Standard-handle juggling at worker start, before the library is loaded.
    // SAFETY: sets this process's error mode; no pointers.
    unsafe { SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX) };
    // SAFETY: reads this process's standard handles.
    let (old_in, old_out) = unsafe {
        (
            GetStdHandle(STD_INPUT_HANDLE),
            GetStdHandle(STD_OUTPUT_HANDLE),
        )
    };
    let input = duplicate(old_in)?;
    let output = duplicate(old_out)?;
    // Whatever still holds the old values must not pass them on to a child process.
    // SAFETY: flags on this process's own handles.
    unsafe {
        SetHandleInformation(old_in, HANDLE_FLAG_INHERIT, 0);
        SetHandleInformation(old_out, HANDLE_FLAG_INHERIT, 0);
    }
    let nul = std::fs::File::open("NUL")?.into_raw_handle();
    // SAFETY: `nul` is ours from here on, and stderr's handle is this process's.
    if unsafe {
        SetStdHandle(STD_INPUT_HANDLE, nul) == 0
            || SetStdHandle(STD_OUTPUT_HANDLE, GetStdHandle(STD_ERROR_HANDLE)) == 0
    } {
        return Err(std::io::Error::last_os_error());
    }
    retarget_crt_descriptors();
    Ok((input, output))
}

/// A stack overflow ends the worker with 0xC00000FD at once. Without this, Wine runs out of
/// stack again in its unhandled-exception path and the process ends with status 0, which
/// reads like a call to exit(0).
unsafe extern "system" fn on_stack_overflow(info: *mut EXCEPTION_POINTERS) -> i32 {
    // SAFETY: the system passes a valid record for the exception being dispatched.
    if unsafe { (*(*info).ExceptionRecord).ExceptionCode } == STATUS_STACK_OVERFLOW {
        exit_now(STATUS_STACK_OVERFLOW);
    }
    EXCEPTION_CONTINUE_SEARCH
}

/// Nothing to reset: a Windows process has no inherited signal dispositions to hide.
pub fn plain_c_signals() {}

/// Makes `abort()` in any loaded C runtime end the process with 0xC0000409, as the Universal
/// CRT's does, instead of msvcrt's plain exit status 3 that reads like a call to exit; and a
/// stack overflow end it with its own status.
pub fn name_crashes() {
    // SAFETY: registers a handler that only acts on a stack overflow.
    unsafe { AddVectoredExceptionHandler(1, Some(on_stack_overflow)) };
    type Signal = unsafe extern "C" fn(i32, usize) -> usize;
    const SIGABRT: i32 = 22;
    extern "C" fn on_abort(_: i32) {
        exit_now(STATUS_STACK_BUFFER_OVERRUN);
    }
    for crt in C_RUNTIMES {
        if let Some(signal) = crt_fn(crt, c"signal") {
            // SAFETY: the runtime's signal() with its documented signature.
            unsafe {
                let signal: Signal = std::mem::transmute(signal);
                signal(SIGABRT, on_abort as *const () as usize);
            }
        }
    }
}

/// Leaves without running the library's DllMain detach code or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: terminates this process.
    unsafe {
        TerminateProcess(GetCurrentProcess(), code as u32);
    }
    std::process::abort()
}
