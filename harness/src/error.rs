//! The errors that stop a run before any check (bad input, a worker that cannot start): each
//! a one-line message naming the file, exit code 2 in the CLI.

use std::path::PathBuf;

/// Errors that stop a run before any check can be decided. Each names the file; the OS error,
/// where there is one, is the source (print the chain, `{:#}` with anyhow, to see it).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{path}: no such file")]
    NotFound {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: is a directory, not a library")]
    IsDirectory { path: PathBuf },
    #[error("{path}: cannot read")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: empty file, not a library")]
    Empty { path: PathBuf },
    #[error("{path}: not a shared library ({what})")]
    NotALibrary { path: PathBuf, what: String },
    #[error("{path}: wrong architecture: {found}, this verifier runs {host} code")]
    WrongArchitecture {
        path: PathBuf,
        found: String,
        host: &'static str,
    },
    #[error("{path}: cannot load: {message}")]
    LoadFailed { path: String, message: String },
    #[error("{path}: library crashed while loading ({how})")]
    CrashedAtLoad { path: String, how: String },
    #[error("{path}: library did not finish loading within {secs} s")]
    HungAtLoad { path: String, secs: u64 },
    #[error("cannot start worker process {exe}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: setting up a worker failed: {what}")]
    Prelude { path: String, what: String },
    #[error("worker protocol error: {0}")]
    Protocol(String),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}
