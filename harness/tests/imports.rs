//! Import routing measured on real libraries loaded into this process: the C fixture's own
//! calls are counted, the harness's are not, and a library that imports nothing routable gets
//! nothing routed. One test, so that no other test's calls move the counts. Linux only: the
//! Windows side routes nothing yet.
#![cfg(target_os = "linux")]

use ntdsbcli_harness::imports;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::Command;

fn build(name: &str, source: &Path, args: &[&str]) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let st = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&out)
        .arg(source)
        .args(args)
        .status()
        .expect("a C compiler (cc) is needed for this test");
    assert!(st.success(), "cc failed on {}", source.display());
    out
}

use ntdsbcli_harness::calls::end::HbcOnly as End;
use ntdsbcli_harness::calls::prepare::PrepareA;

#[test]
fn the_library_s_own_calls_are_routed_and_counted() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/c/ntdsb.c");
    let lib = build(
        "libntdsb_routed.so",
        &src,
        &["-lpthread", "-DDESIGN_DETACHED"],
    );
    // SAFETY: the fixture is a correct library with no load-time side effects; it stays
    // loaded for the life of the test process, as routing needs.
    let lib: &'static libloading::Library =
        Box::leak(Box::new(unsafe { libloading::Library::new(&lib) }.unwrap()));
    // SAFETY: PrepareA and End are those exports' C signatures.
    let prepare: libloading::Symbol<PrepareA> = unsafe { lib.get(b"DsBackupPrepareA\0") }.unwrap();
    // SAFETY: as above.
    let end: libloading::Symbol<End> = unsafe { lib.get(b"DsBackupEnd\0") }.unwrap();
    // SAFETY: the library is leaked above, so it stays loaded.
    let routed = unsafe { imports::route(*prepare as *const c_void) }.expect("routing");
    for name in ["malloc", "calloc", "free", "pipe", "pthread_create"] {
        assert!(
            routed.names.contains(&name),
            "{name} not routed: {routed:?}"
        );
    }
    assert!(
        !routed.names.contains(&"socket"),
        "the fixture imports no socket: {routed:?}"
    );

    let before: Vec<u64> = routed
        .names
        .iter()
        .map(|n| imports::routed_calls(n))
        .collect();
    // The harness's own allocations and pipes are not the library's.
    let own = std::hint::black_box(vec![7u8; 4096]);
    let _ = std::hint::black_box(nix::unistd::pipe().unwrap());
    drop(own);
    let after: Vec<u64> = routed
        .names
        .iter()
        .map(|n| imports::routed_calls(n))
        .collect();
    assert_eq!(before, after, "the harness's own calls were counted");

    let (malloc0, pipe0, threads0) = (
        imports::routed_calls("malloc"),
        imports::routed_calls("pipe"),
        imports::routed_calls("pthread_create"),
    );
    let mut token: *mut c_void = std::ptr::null_mut();
    let mut size = 0u32;
    let mut h: *mut c_void = std::ptr::null_mut();
    let server = c"\\\\localhost";
    // SAFETY: the documented signature, with valid out-pointers.
    let rc = unsafe { prepare(server.as_ptr(), 0, 1, &mut token, &mut size, &mut h) };
    assert_eq!(rc, 0, "Prepare");
    assert!(
        imports::routed_calls("malloc") > malloc0,
        "Prepare allocates its session"
    );
    assert_eq!(
        imports::routed_calls("pipe"),
        pipe0 + 1,
        "one binding pipe per session"
    );
    assert_eq!(
        imports::routed_calls("pthread_create"),
        threads0 + 1,
        "one keep-alive thread"
    );
    // The routed calls still work: the session ends, and its thread exits.
    let free0 = imports::routed_calls("free");
    // SAFETY: a live handle of the library, which stays loaded.
    assert_eq!(unsafe { end(h) }, 0);
    assert!(
        imports::routed_calls("free") > free0,
        "End frees the session"
    );

    // A library with no C runtime imports gets nothing routed.
    let bare_src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bare.c");
    std::fs::write(
        &bare_src,
        "int DsBackupEnd(void *h) { return h ? 0 : 87; }\n",
    )
    .unwrap();
    let bare = build("libbare.so", &bare_src, &["-nostdlib"]);
    let bare: &'static libloading::Library = Box::leak(Box::new(
        // SAFETY: a library of one function and nothing run at load.
        unsafe { libloading::Library::new(&bare) }.unwrap(),
    ));
    // SAFETY: End is the export's C signature.
    let bare_end: libloading::Symbol<End> = unsafe { bare.get(b"DsBackupEnd\0") }.unwrap();
    // SAFETY: the library is leaked above, so it stays loaded.
    let none = unsafe { imports::route(*bare_end as *const c_void) }.expect("routing");
    assert!(none.names.is_empty(), "{none:?}");
    assert!(none.unreadable.is_some(), "no PLT is said: {none:?}");
}
