//! The JSON report, written whole to a temporary file and renamed, so a reader never sees half.

use super::Report;
use crate::HarnessError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees a
/// half-written report.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HarnessError> {
    let err = |source| HarnessError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The JSON Schema of the report (reports/schema.json), generated from the report's types.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Report);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// The JSON report on disk, rewritten as each check finishes.
pub struct JsonWriter {
    path: PathBuf,
}

impl JsonWriter {
    pub fn new(path: &Path) -> JsonWriter {
        JsonWriter {
            path: path.to_path_buf(),
        }
    }

    pub fn write(&self, report: &Report) -> Result<(), HarnessError> {
        let mut bytes = serde_json::to_vec_pretty(report).expect("reports serialise");
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes)
    }
}
