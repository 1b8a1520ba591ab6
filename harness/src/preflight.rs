//! Checks on a library file made before any process loads it: does it exist, is it a shared
//! library at all, and for this machine's architecture. Loading itself happens only in a worker.

use crate::HarnessError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// This machine's architecture: its name and its ELF `e_machine` and PE `Machine` codes.
struct Host {
    name: &'static str,
    elf: u16,
    pe: u16,
}

#[cfg(target_arch = "x86_64")]
const HOST: Host = Host {
    name: "x86-64",
    elf: 62,
    pe: 0x8664,
};
#[cfg(target_arch = "aarch64")]
const HOST: Host = Host {
    name: "aarch64",
    elf: 183,
    pe: 0xAA64,
};
#[cfg(target_arch = "x86")]
const HOST: Host = Host {
    name: "x86",
    elf: 3,
    pe: 0x14C,
};
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "x86")))]
const HOST: Host = Host {
    name: "this",
    elf: 0,
    pe: 0,
};

fn elf_machine(m: u16) -> String {
    match m {
        3 => "x86".into(),
        40 => "ARM".into(),
        62 => "x86-64".into(),
        183 => "aarch64".into(),
        243 => "RISC-V".into(),
        other => format!("ELF machine {other}"),
    }
}

fn pe_machine(m: u16) -> String {
    match m {
        0x14C => "x86".into(),
        0x8664 => "x86-64".into(),
        0xAA64 => "ARM64".into(),
        0x1C4 => "ARM".into(),
        other => format!("PE machine 0x{other:X}"),
    }
}

/// Returns Ok when the file looks like a loadable library for this machine.
pub fn check(path: &Path) -> Result<(), HarnessError> {
    let head = read_head(path)?;
    let p = path.to_path_buf();
    if head.starts_with(b"\x7fELF") {
        return check_elf(&head, p);
    }
    if head.starts_with(b"MZ") {
        return check_pe(&head, p);
    }
    if head.starts_with(&[0xCF, 0xFA, 0xED, 0xFE]) || head.starts_with(&[0xCA, 0xFE, 0xBA, 0xBE]) {
        // Mach-O: let the loader judge it.
        return Ok(());
    }
    let what = if head
        .iter()
        .take(512)
        .all(|b| b.is_ascii() && (*b >= 0x20 || b"\n\r\t".contains(b)))
    {
        "a text file".to_string()
    } else {
        "unknown file format".to_string()
    };
    Err(HarnessError::NotALibrary { path: p, what })
}

/// The first 4 KiB of a file that exists, is no directory and is not empty.
fn read_head(path: &Path) -> Result<Vec<u8>, HarnessError> {
    let p = path.to_path_buf();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(HarnessError::NotFound { path: p, source })
        }
        Err(source) => return Err(HarnessError::Unreadable { path: p, source }),
    };
    if meta.is_dir() {
        return Err(HarnessError::IsDirectory { path: p });
    }
    if meta.len() == 0 {
        return Err(HarnessError::Empty { path: p });
    }
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| HarnessError::Unreadable { path: p, source })?;
    head.truncate(n);
    Ok(head)
}

fn u16_at(head: &[u8], o: usize, big: bool) -> Option<u16> {
    let b = head.get(o..o + 2)?;
    Some(if big {
        u16::from_be_bytes([b[0], b[1]])
    } else {
        u16::from_le_bytes([b[0], b[1]])
    })
}

fn wrong_architecture(
    path: PathBuf,
    found: String,
    host: &'static str,
) -> Result<(), HarnessError> {
    Err(HarnessError::WrongArchitecture { path, found, host })
}

fn not_a_library(path: PathBuf, what: &str) -> Result<(), HarnessError> {
    Err(HarnessError::NotALibrary {
        path,
        what: what.into(),
    })
}

/// An ELF file: a shared object for this machine, on a Unix build.
fn check_elf(head: &[u8], p: PathBuf) -> Result<(), HarnessError> {
    let big = head.get(5) == Some(&2);
    let kind = u16_at(head, 16, big).unwrap_or(0);
    let machine = u16_at(head, 18, big).unwrap_or(0);
    if cfg!(windows) {
        return wrong_architecture(
            p,
            format!("an ELF ({}) library", elf_machine(machine)),
            "Windows PE",
        );
    }
    if machine != HOST.elf {
        return wrong_architecture(p, format!("ELF for {}", elf_machine(machine)), HOST.name);
    }
    if kind != 3 {
        let what = match kind {
            1 => "a relocatable object file",
            2 => "an executable, not a shared library",
            4 => "a core dump",
            _ => "an ELF file of unknown kind",
        };
        return not_a_library(p, what);
    }
    Ok(())
}

/// An MZ file: a PE DLL for this machine, on a Windows build.
fn check_pe(head: &[u8], p: PathBuf) -> Result<(), HarnessError> {
    let pe = head
        .get(0x3C..0x40)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0);
    if head.get(pe..pe + 4) != Some(b"PE\0\0") {
        return not_a_library(p, "an MZ file without a PE header");
    }
    let machine = u16_at(head, pe + 4, false).unwrap_or(0);
    if !cfg!(windows) {
        return wrong_architecture(
            p,
            format!("a Windows PE ({}) DLL", pe_machine(machine)),
            "ELF (use the Windows build of the verifier)",
        );
    }
    if machine != HOST.pe {
        return wrong_architecture(p, format!("PE for {}", pe_machine(machine)), HOST.name);
    }
    // IMAGE_FILE_DLL in the file header's Characteristics.
    let characteristics = u16_at(head, pe + 22, false).unwrap_or(0);
    if characteristics & 0x2000 == 0 {
        return not_a_library(p, "an executable, not a DLL");
    }
    Ok(())
}
