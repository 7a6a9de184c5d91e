//! Reading and writing request logs in JSON Lines: a file or a folder of parts, streamed row
//! by row.

use super::{LogConfig, LoggedRequest, REPORTED_INVALID, RowError};
use crate::{DataError, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A request log read by [`read_request_log`]: its valid rows, in file order, and the
/// invalid ones a [`LogConfig::max_invalid`] budget let it skip.
#[derive(Debug)]
pub struct RequestLog {
    /// The valid rows.
    pub requests: Vec<LoggedRequest>,
    /// Rows skipped as invalid.
    pub invalid: usize,
    /// The first [`REPORTED_INVALID`] of them, each naming its file, line and field.
    pub first_invalid: Vec<DataError>,
}

/// Creates the folder `path` is written into, when it names one.
pub(crate) fn create_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e)),
        None => Ok(()),
    }
}

/// Writes `rows` as JSON Lines to `path`, atomically (a temporary file renamed), creating
/// the parent directory; returns the number of rows written.
///
/// # Errors
/// [`DataError::Io`] naming the file.
pub fn write_request_log(
    path: &Path,
    rows: impl IntoIterator<Item = impl std::borrow::Borrow<LoggedRequest>>,
) -> Result<usize> {
    use std::io::Write;
    create_parent(path)?;
    let mut n = 0;
    crate::prepared::write_atomic_with(path, |out| {
        for row in rows {
            writeln!(out, "{}", row.borrow().to_json()).map_err(|e| DataError::io(path, e))?;
            n += 1;
        }
        Ok(())
    })?;
    Ok(n)
}

/// The files of a request log: `path` itself, or the `*.jsonl`, `*.jsonl.gz` and
/// `*.parquet` files of a folder in name order (as Spark and other engines write a table as parts), the catalogs
/// (`items.jsonl`, `users.jsonl`) left out.
///
/// # Errors
/// [`DataError::MissingFile`] for a missing path or a folder without such files.
pub fn log_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| DataError::io(path, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let p = entry.map_err(|e| DataError::io(path, e))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let catalog = [
            super::ITEMS_FILE,
            super::USERS_FILE,
            super::catalog::ITEMS_PARQUET_FILE,
            super::catalog::USERS_PARQUET_FILE,
        ]
        .contains(&name);
        let part = [".jsonl", ".jsonl.gz", ".parquet"]
            .iter()
            .any(|e| name.ends_with(e));
        if !catalog && part {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DataError::MissingFile {
            path: path.join("*.jsonl"),
            hint: Some("a request log folder holds .jsonl, .jsonl.gz or .parquet files".into()),
        });
    }
    Ok(files)
}

/// What [`scan_request_log`] saw besides the valid rows it handed over.
#[derive(Debug, Default)]
pub struct LogScan {
    /// Valid rows handed to the callback.
    pub rows: usize,
    /// Rows skipped as invalid.
    pub invalid: usize,
    /// The first [`REPORTED_INVALID`] of them, each naming its file, line and field.
    pub first_invalid: Vec<DataError>,
}

/// Reads and checks a request log in JSON Lines (a file, or a folder of parts; `.gz`
/// files are decompressed), handing each valid row to `f` as it is read, so memory holds
/// one row (and a 16-byte fingerprint of each request id seen, to refuse a repeated one)
/// rather than the log. Every
/// row is checked ([`LoggedRequest::check`]).
///
/// # Errors
/// [`DataError::InvalidConfig`] for a bad `config`; [`DataError::Parse`] naming the file,
/// line and field of the first invalid row (or of the row past the
/// [`LogConfig::max_invalid`] budget); file errors; a file without rows; `f`'s errors.
pub fn scan_request_log(
    path: &Path,
    config: &LogConfig,
    f: impl FnMut(LoggedRequest) -> Result<()>,
) -> Result<LogScan> {
    scan_rows(path, config, &|_| Ok(()), f)
}

/// A 128-bit fingerprint of a request id: two SipHash passes with different prefixes.
fn fingerprint(id: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// [`scan_request_log`] with `extra`, a further check of each row whose failures count as
/// invalid rows like the schema's.
pub(crate) fn scan_rows(
    path: &Path,
    config: &LogConfig,
    extra: &dyn Fn(&LoggedRequest) -> std::result::Result<(), RowError>,
    mut f: impl FnMut(LoggedRequest) -> Result<()>,
) -> Result<LogScan> {
    config.validate()?;
    let mut scan = LogScan::default();
    // The ids seen, as 128-bit fingerprints (16 bytes each, whatever the id's length; two
    // different ids share one with a probability of about n^2 / 2^129: 10^-25 at 10^7 rows).
    let mut ids: HashSet<u128> = HashSet::new();
    for file in log_files(path)? {
        let handle = |ln: usize, line: &str| {
            let row = LoggedRequest::from_json(line).and_then(|row| {
                row.check(config)?;
                extra(&row)?;
                if ids.contains(&fingerprint(&row.request_id)) {
                    return Err(RowError::new(
                        "request_id",
                        format!("`{}` appears on an earlier row", row.request_id),
                    ));
                }
                Ok(row)
            });
            match row {
                Ok(row) => {
                    ids.insert(fingerprint(&row.request_id));
                    scan.rows += 1;
                    f(row)
                }
                Err(e) => {
                    let error = DataError::parse(&file, ln, &e.field, e.message);
                    if scan.invalid >= config.max_invalid {
                        return Err(if config.max_invalid == 0 {
                            error
                        } else {
                            DataError::parse(
                                &file,
                                ln,
                                &e.field,
                                format!(
                                    "{error} (one invalid row more than log.max_invalid = {})",
                                    config.max_invalid
                                ),
                            )
                        });
                    }
                    scan.invalid += 1;
                    if scan.first_invalid.len() < REPORTED_INVALID {
                        scan.first_invalid.push(error);
                    }
                    Ok(())
                }
            }
        };
        super::parquet::for_each_json_row(&file, "a request log (JSON Lines)", handle)?;
    }
    Ok(scan)
}

/// [`scan_request_log`] keeping every valid row in memory, in file order.
///
/// # Errors
/// As [`scan_request_log`].
pub fn read_request_log(path: &Path, config: &LogConfig) -> Result<RequestLog> {
    let mut requests = Vec::new();
    let scan = scan_request_log(path, config, |row| {
        requests.push(row);
        Ok(())
    })?;
    Ok(RequestLog {
        requests,
        invalid: scan.invalid,
        first_invalid: scan.first_invalid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::row;

    #[test]
    fn a_budget_skips_counts_and_reports_invalid_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let good = |id: &str| {
            let mut v = row();
            v["request_id"] = id.into();
            v.to_string()
        };
        let mut bad = row();
        bad["request_id"] = "bad".into();
        bad["shown"] = serde_json::json!(["i2", "zz"]);
        let text = [
            good("a"),
            bad.to_string(),
            String::new(),
            good("b"),
            good("a"),
        ]
        .join("\n");
        std::fs::write(&path, text).unwrap();
        // No budget: the first invalid row is an error naming file, line and field.
        let e = read_request_log(&path, &LogConfig::default()).unwrap_err();
        assert!(
            matches!(&e, DataError::Parse { line: 2, field, .. } if field == "shown"),
            "{e}"
        );
        assert!(e.to_string().contains("log.jsonl:2"), "{e}");
        // A budget of 2: both invalid rows (the bad one, the repeated id on line 5) skipped.
        let config = LogConfig {
            max_invalid: 2,
            ..LogConfig::default()
        };
        let log = read_request_log(&path, &config).unwrap();
        assert_eq!(log.requests.len(), 2);
        assert_eq!(log.invalid, 2);
        assert!(
            log.first_invalid[1]
                .to_string()
                .contains(":5: field `request_id`")
        );
        // A budget of 1: the second invalid row is one too many.
        let config = LogConfig {
            max_invalid: 1,
            ..LogConfig::default()
        };
        let e = read_request_log(&path, &config).unwrap_err().to_string();
        assert!(
            e.contains("log.max_invalid = 1") && e.contains(":5:"),
            "{e}"
        );
        // A folder of parts is read in name order; a label outside the signals is refused.
        let parts = dir.path().join("parts");
        std::fs::create_dir(&parts).unwrap();
        std::fs::write(parts.join("part-1.jsonl"), good("y")).unwrap();
        std::fs::write(parts.join("part-0.jsonl"), good("x")).unwrap();
        let log = read_request_log(&parts, &LogConfig::default()).unwrap();
        let ids: Vec<&str> = log.requests.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["x", "y"]);
        let config = LogConfig {
            label: "like".into(),
            ..LogConfig::default()
        };
        assert!(
            read_request_log(&parts, &config)
                .unwrap_err()
                .to_string()
                .contains("log.label")
        );
    }
}
