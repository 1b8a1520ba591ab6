//! include/ntdsbcli.h, the header a vendor builds against: it declares every documented export,
//! compiles as strict C and as C++, gives the Windows widths and the verifier's own values for
//! every code, and the C fixtures are built against it (a signature that disagrees with the
//! header does not compile).

mod common;

use common::repo_root;
use ntdsbcli_harness::abi::EXPORTS;
use ntdsbcli_harness::codes;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn header() -> PathBuf {
    repo_root().join("include/ntdsbcli.h")
}

fn declared() -> BTreeSet<String> {
    let text = std::fs::read_to_string(header()).unwrap();
    text.split("NTDSBCLI_API ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| name.starts_with("Ds"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_documented_export_is_declared_once() {
    let text = std::fs::read_to_string(header()).unwrap();
    let expected: BTreeSet<String> = EXPORTS
        .iter()
        // In the real DLL's export list, in no page and in no SDK prototype.
        .filter(|e| **e != "DsRestoreCheckExpiryToken")
        .map(|e| e.to_string())
        .collect();
    assert_eq!(declared(), expected);
    for name in &expected {
        let n = text.matches(&format!(" {name}(")).count();
        assert_eq!(n, 1, "{name} is declared {n} times");
    }
}

/// A C program that prints the header's widths and codes, built with `compiler` and `flags`.
fn probe(compiler: &str, ext: &str, flags: &[&str]) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("header");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("probe_{compiler}.{ext}"));
    let exe = dir.join(format!("probe_{compiler}"));
    std::fs::write(
        &src,
        r#"#include "ntdsbcli.h"
#include <stdio.h>
int main(void) {
    printf("HRESULT %d\n", (int)sizeof(HRESULT));
    printf("ULONG %d\n", (int)sizeof(ULONG));
    printf("DWORD %d\n", (int)sizeof(DWORD));
    printf("BOOL %d\n", (int)sizeof(BOOL));
    printf("WCHAR %d\n", (int)sizeof(WCHAR));
    printf("LARGE_INTEGER %d\n", (int)sizeof(LARGE_INTEGER));
    printf("HBC %d\n", (int)sizeof(HBC));
    printf("signed %d\n", (HRESULT)-1 < 0);
    printf("ERROR_ACCESS_DENIED %ld\n", (long)ERROR_ACCESS_DENIED);
    printf("ERROR_NOT_ENOUGH_MEMORY %ld\n", (long)ERROR_NOT_ENOUGH_MEMORY);
    printf("ERROR_HANDLE_EOF %ld\n", (long)ERROR_HANDLE_EOF);
    printf("ERROR_INVALID_PARAMETER %ld\n", (long)ERROR_INVALID_PARAMETER);
    printf("RPC_S_INVALID_BINDING %ld\n", (long)RPC_S_INVALID_BINDING);
    printf("RPC_S_SERVER_UNAVAILABLE %ld\n", (long)RPC_S_SERVER_UNAVAILABLE);
    printf("hrInvalidParam %ld\n", (long)hrInvalidParam);
    printf("hrInvalidHandle %ld\n", (long)hrInvalidHandle);
    printf("hrAlreadyOpen %ld\n", (long)hrAlreadyOpen);
    printf("hrCouldNotConnect %ld\n", (long)hrCouldNotConnect);
    printf("hrBackupInProgress %ld\n", (long)hrBackupInProgress);
    printf("BACKUP_TYPE_FULL %ld\n", (long)BACKUP_TYPE_FULL);
    printf("BACKUP_TYPE_LOGS_ONLY %ld\n", (long)BACKUP_TYPE_LOGS_ONLY);
    printf("BACKUP_TYPE_INCREMENTAL %ld\n", (long)BACKUP_TYPE_INCREMENTAL);
    return 0;
}
"#,
    )
    .unwrap();
    let include = repo_root().join("include");
    let st = Command::new(compiler)
        .args(flags)
        .arg("-I")
        .arg(&include)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("{compiler} is needed for the header test: {e}"));
    assert!(st.success(), "{compiler} {flags:?} rejected the header");
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn expected_values() -> String {
    let ptr = std::mem::size_of::<usize>();
    let lines = [
        ("HRESULT", 4),
        ("ULONG", 4),
        ("DWORD", 4),
        ("BOOL", 4),
        ("WCHAR", 2),
        ("LARGE_INTEGER", 8),
        ("HBC", ptr as i64),
        ("signed", 1),
        ("ERROR_ACCESS_DENIED", codes::ERROR_ACCESS_DENIED as i64),
        (
            "ERROR_NOT_ENOUGH_MEMORY",
            codes::ERROR_NOT_ENOUGH_MEMORY as i64,
        ),
        ("ERROR_HANDLE_EOF", codes::ERROR_HANDLE_EOF as i64),
        (
            "ERROR_INVALID_PARAMETER",
            codes::ERROR_INVALID_PARAMETER as i64,
        ),
        ("RPC_S_INVALID_BINDING", codes::RPC_S_INVALID_BINDING as i64),
        (
            "RPC_S_SERVER_UNAVAILABLE",
            codes::RPC_S_SERVER_UNAVAILABLE as i64,
        ),
        ("hrInvalidParam", codes::HR_INVALID_PARAM as i64),
        ("hrInvalidHandle", codes::HR_INVALID_HANDLE as i64),
        ("hrAlreadyOpen", codes::HR_ALREADY_OPEN as i64),
        ("hrCouldNotConnect", codes::HR_COULD_NOT_CONNECT as i64),
        ("hrBackupInProgress", codes::HR_BACKUP_IN_PROGRESS as i64),
        ("BACKUP_TYPE_FULL", codes::BACKUP_TYPE_FULL as i64),
        ("BACKUP_TYPE_LOGS_ONLY", codes::BACKUP_TYPE_LOGS_ONLY as i64),
        (
            "BACKUP_TYPE_INCREMENTAL",
            codes::BACKUP_TYPE_INCREMENTAL as i64,
        ),
    ];
    lines.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
}

#[test]
fn compiles_as_strict_c_with_the_windows_widths_and_the_verifiers_codes() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let got = probe(
        &cc,
        "c",
        &["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"],
    );
    assert_eq!(got, expected_values());
}

#[test]
fn compiles_as_cpp() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let got = probe(&cxx, "cpp", &["-std=c++11", "-Wall", "-Wextra", "-Werror"]);
    assert_eq!(got, expected_values());
}

#[test]
fn the_c_fixtures_are_built_against_it() {
    for src in ["fixtures/c/ntdsb.c", "fixtures/dc/client.c"] {
        let text = std::fs::read_to_string(repo_root().join(src)).unwrap();
        assert!(
            text.contains("#include \"../../include/ntdsbcli.h\""),
            "{src} does not include the header"
        );
    }
    // Built with -Wall -Werror: a definition whose signature disagrees with the header's
    // declaration is a compile error, so a library that loads here has the header's ABI.
    assert!(common::c_library(None).exists());
    assert!(common::dc_client(None).exists());
}

/// A library whose export disagrees with the header (a 4-byte wchar_t string in PrepareW) is
/// refused by the compiler: what the header is for.
#[test]
fn a_signature_that_disagrees_does_not_compile() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("header");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("wrong.c");
    std::fs::write(
        &src,
        "#define NTDSBCLI_BUILD\n#include \"ntdsbcli.h\"\n#include <wchar.h>\n\
         HRESULT DsBackupPrepareW(const wchar_t *s, ULONG g, ULONG b, PVOID *p, LPDWORD c, HBC *h)\n\
         { (void)s; (void)g; (void)b; (void)p; (void)c; (void)h; return 0; }\n",
    )
    .unwrap();
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-fsyntax-only", "-I"])
        .arg(repo_root().join("include"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conflicting types"), "{err}");
}

/// The example of the README ("Verify your own library") compiles against the header, the way
/// the README says to build it.
#[test]
fn the_readme_example_compiles() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("## Verify your own library")
        .nth(1)
        .expect("the README's section");
    let example = section
        .split("```c\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a C example in the section");
    assert!(example.contains("#include \"ntdsbcli.h\""), "{example}");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("header");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("readme_example.c");
    std::fs::write(&src, example).unwrap();
    common::succeeded(
        Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            // The example leaves how a handle is looked up to the vendor.
            .args([
                "-fsyntax-only",
                "-Wall",
                "-Werror",
                "-Dis_live(h)=((h)!=0)",
                "-I",
            ])
            .arg(repo_root().join("include"))
            .arg(&src),
    );
}
