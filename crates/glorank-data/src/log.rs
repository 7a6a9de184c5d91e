//! Request logs: what a serving system records per request, the input a team has to train
//! and evaluate a reranker on its own traffic.
//!
//! A logged request is the serving request ([`RerankRequest`]: user, history, candidates
//! with optional retriever scores, exposures and content vectors) plus what was shown and
//! what the user did:
//!
//! ```json
//! {"request_id": "r17", "timestamp": 1700000000,
//!  "user": "u3", "history": [{"item": "i9", "labels": 1}],
//!  "candidates": ["i1", "i2", "i3", "i4"], "retriever_scores": [2.1, 1.7, 0.9, 0.4],
//!  "shown": ["i2", "i1"], "feedback": {"click": [1, 0], "like": [1, 0]}}
//! ```
//!
//! `shown` lists the displayed items in display order, all among the candidates; `feedback`
//! holds one or more named signals with one value per shown item; which signal is the label
//! is configuration ([`LogConfig::label`]). [`read_request_log`] reads JSON Lines (one
//! object per line, a file or a folder of `*.jsonl` / `*.jsonl.gz` files) and checks every
//! row; the schema is documented in `docs/datasets.md`.

use crate::json::Strict;
use crate::readers::text::{Encoding, for_each_line};
use crate::{DataError, RerankRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// How many invalid rows a read reports by name when a budget lets it skip them.
pub const REPORTED_INVALID: usize = 10;

/// One logged request: the serving request, what was shown and the feedback on it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    /// The log's id of the request (unique within a log).
    pub request_id: String,
    /// When it was served (any integer clock: Unix seconds, milliseconds...; only the
    /// order matters, for time-based splits).
    pub timestamp: i64,
    /// What the reranker received.
    pub request: RerankRequest,
    /// The displayed item ids, in display order, all among the candidates.
    pub shown: Vec<String>,
    /// Named signals (`click`, `like`, `dwell`...), each with one value per shown item.
    pub feedback: BTreeMap<String, Vec<f32>>,
}

/// Why a row is not a valid logged request: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The field (`shown`, `feedback.click`, `retriever_scores`...).
    pub field: String,
    /// What is wrong, with the offending value.
    pub message: String,
}

impl RowError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How a request log is read and checked (the `[log]` keys of a configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogConfig {
    /// The feedback signals a row may carry (default `["click"]`); a row naming another is
    /// invalid, so a misspelt signal is never silently ignored.
    pub signals: Vec<String>,
    /// The signal that is the label (default `click`): one of `signals`, carried by every
    /// row.
    pub label: String,
    /// Invalid rows that may be skipped (default 0: the first invalid row is an error).
    /// Skipped rows are counted and the first [`REPORTED_INVALID`] reported, never dropped
    /// without a word; one more than the budget is an error.
    pub max_invalid: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            signals: vec!["click".into()],
            label: "click".into(),
            max_invalid: 0,
        }
    }
}

impl LogConfig {
    /// These signals, with `label` the label among them.
    pub fn with_signals(mut self, signals: &[&str], label: &str) -> Self {
        self.signals = signals.iter().map(|s| s.to_string()).collect();
        self.label = label.to_string();
        self
    }

    /// A budget of invalid rows to skip (see [`LogConfig::max_invalid`]).
    pub fn with_max_invalid(mut self, max_invalid: usize) -> Self {
        self.max_invalid = max_invalid;
        self
    }

    /// Checks that the label is one of the signals and that signals are named once.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] naming `log.label` or `log.signals`.
    pub fn validate(&self) -> Result<()> {
        let mut seen = HashSet::new();
        if self.signals.is_empty() {
            return Err(DataError::config("log.signals", "name at least one signal"));
        }
        for s in &self.signals {
            if s.is_empty() || !seen.insert(s.as_str()) {
                return Err(DataError::config(
                    "log.signals",
                    format!("signal {s:?} is empty or named twice"),
                ));
            }
        }
        if !seen.contains(self.label.as_str()) {
            return Err(DataError::config(
                "log.label",
                format!(
                    "`{}` is not one of the signals ({})",
                    self.label,
                    self.signals.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

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

impl LoggedRequest {
    /// Reads one row from its JSON object (a key named twice, an unknown key or a missing
    /// one is refused), without checking it against a configuration (see
    /// [`LoggedRequest::check`]).
    ///
    /// # Errors
    /// The field and what is wrong.
    pub fn from_json(text: &str) -> std::result::Result<Self, RowError> {
        let strict: Strict =
            serde_json::from_str(text).map_err(|e| RowError::new("row", e.to_string()))?;
        let value = strict
            .into_value()
            .map_err(|e| RowError::new("row", e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(RowError::new("row", "not a JSON object"));
        };
        let mut take = |key: &str| {
            object
                .remove(key)
                .ok_or_else(|| RowError::new(key, "missing"))
        };
        let request_id = match take("request_id")? {
            Value::String(s) if !s.is_empty() => s,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(RowError::new(
                    "request_id",
                    format!("expected a non-empty string or a number, found {other}"),
                ));
            }
        };
        let timestamp = take("timestamp")?;
        let timestamp = timestamp.as_i64().ok_or_else(|| {
            RowError::new(
                "timestamp",
                format!("expected an integer, found {timestamp}"),
            )
        })?;
        let shown: Vec<String> = serde_json::from_value(take("shown")?)
            .map_err(|e| RowError::new("shown", format!("expected item ids: {e}")))?;
        let feedback: BTreeMap<String, Vec<f32>> = serde_json::from_value(take("feedback")?)
            .map_err(|e| {
                RowError::new(
                    "feedback",
                    format!("expected {{\"signal\": [one number per shown item], ...}}: {e}"),
                )
            })?;
        let request: RerankRequest = serde_json::from_value(Value::Object(object))
            .map_err(|e| RowError::new("request", e.to_string()))?;
        Ok(Self {
            request_id,
            timestamp,
            request,
            shown,
            feedback,
        })
    }

    /// The row as one JSON object (the form [`LoggedRequest::from_json`] reads).
    pub fn to_json(&self) -> Value {
        let mut object = match serde_json::to_value(&self.request) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        };
        object.insert("request_id".into(), self.request_id.clone().into());
        object.insert("timestamp".into(), self.timestamp.into());
        object.insert("shown".into(), self.shown.clone().into());
        let feedback: Map<String, Value> = self
            .feedback
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        object.insert("feedback".into(), Value::Object(feedback));
        Value::Object(object)
    }

    /// Checks the row: candidates named once; `shown` non-empty, named once and among the
    /// candidates; every feedback signal one of `config.signals`, the label among them, one
    /// finite value per shown item; retriever scores and exposures one per candidate,
    /// scores and content vectors finite, vectors only for candidates.
    ///
    /// # Errors
    /// The first field that is wrong and why.
    pub fn check(&self, config: &LogConfig) -> std::result::Result<(), RowError> {
        let r = &self.request;
        if r.candidates.is_empty() {
            return Err(RowError::new("candidates", "empty"));
        }
        let mut candidates = HashSet::with_capacity(r.candidates.len());
        for c in &r.candidates {
            if !candidates.insert(c.as_str()) {
                return Err(RowError::new("candidates", format!("`{c}` appears twice")));
            }
        }
        if self.shown.is_empty() {
            return Err(RowError::new(
                "shown",
                "empty: a logged request shows items",
            ));
        }
        let mut shown = HashSet::with_capacity(self.shown.len());
        for s in &self.shown {
            if !candidates.contains(s.as_str()) {
                return Err(RowError::new(
                    "shown",
                    format!("`{s}` is not among the candidates"),
                ));
            }
            if !shown.insert(s.as_str()) {
                return Err(RowError::new("shown", format!("`{s}` is shown twice")));
            }
        }
        for (signal, values) in &self.feedback {
            let field = format!("feedback.{signal}");
            if !config.signals.contains(signal) {
                return Err(RowError::new(
                    field,
                    format!(
                        "unknown signal (the configured signals: {})",
                        config.signals.join(", ")
                    ),
                ));
            }
            if values.len() != self.shown.len() {
                return Err(RowError::new(
                    field,
                    format!(
                        "{} values for {} shown items",
                        values.len(),
                        self.shown.len()
                    ),
                ));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(RowError::new(field, format!("{v} is not a finite number")));
            }
        }
        if !self.feedback.contains_key(&config.label) {
            return Err(RowError::new(
                format!("feedback.{}", config.label),
                "missing: the label signal is required on every row",
            ));
        }
        if let Some(scores) = &r.retriever_scores {
            if scores.len() != r.candidates.len() {
                return Err(RowError::new(
                    "retriever_scores",
                    format!(
                        "{} scores for {} candidates",
                        scores.len(),
                        r.candidates.len()
                    ),
                ));
            }
            if let Some(v) = scores.iter().find(|v| !v.is_finite()) {
                return Err(RowError::new(
                    "retriever_scores",
                    format!("{v} is not a finite number"),
                ));
            }
        }
        if let Some(exposures) = &r.exposures
            && exposures.len() != r.candidates.len()
        {
            return Err(RowError::new(
                "exposures",
                format!(
                    "{} counts for {} candidates",
                    exposures.len(),
                    r.candidates.len()
                ),
            ));
        }
        for (item, vector) in &r.candidate_vectors {
            let field = format!("candidate_vectors.{item}");
            if !candidates.contains(item.as_str()) {
                return Err(RowError::new(field, "not a candidate"));
            }
            if let Some(v) = vector.iter().find(|v| !v.is_finite()) {
                return Err(RowError::new(field, format!("{v} is not a finite number")));
            }
        }
        Ok(())
    }

    /// The logged request of `sample` of a prepared dataset: its serving request
    /// ([`RerankRequest::from_sample`]), its logged slate as `shown` (in exposure order), the
    /// slate's behaviours as the signals `click`, `like` and `star` (0 or 1), the time of
    /// the slate's first interaction and `request_id`. What `glorank export-log` writes, so
    /// the protocols of the rating datasets and the synthetic world can be read as logs.
    pub fn from_sample(
        ds: &crate::PreparedDataset,
        sample: &crate::RerankSample,
        request_id: String,
    ) -> Self {
        let request = RerankRequest::from_sample(ds, sample);
        let logged: Vec<usize> = sample.logged.iter().map(|&p| usize::from(p)).collect();
        let shown = logged
            .iter()
            .map(|&p| request.candidates[p].clone())
            .collect();
        let signal = |bit: fn(crate::Labels) -> bool| -> Vec<f32> {
            logged
                .iter()
                .map(|&p| if bit(sample.labels[p]) { 1.0 } else { 0.0 })
                .collect()
        };
        let feedback = BTreeMap::from([
            ("click".to_string(), signal(crate::Labels::click)),
            ("like".to_string(), signal(crate::Labels::like)),
            ("star".to_string(), signal(crate::Labels::star)),
        ]);
        let timestamp = ds
            .sequences
            .get(sample.user as usize)
            .and_then(|s| s.timestamps.get(sample.slate_start as usize))
            .copied()
            .unwrap_or_default();
        Self {
            request_id,
            timestamp,
            request,
            shown,
            feedback,
        }
    }

    /// The label of each shown item: its value of `config.label`.
    pub fn labels<'a>(&'a self, config: &LogConfig) -> &'a [f32] {
        self.feedback.get(&config.label).map_or(&[], Vec::as_slice)
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let tmp = path.with_extension("jsonl.tmp");
    let io = |e| DataError::io(path, e);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    let mut n = 0;
    for row in rows {
        writeln!(out, "{}", row.borrow().to_json()).map_err(io)?;
        n += 1;
    }
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(n)
}

/// The files of a request log: `path` itself, or the `*.jsonl` / `*.jsonl.gz` files of a
/// folder in name order (as Spark and other engines write a table as parts).
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
        if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DataError::MissingFile {
            path: path.join("*.jsonl"),
            hint: Some("a request log folder holds .jsonl or .jsonl.gz files".into()),
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
/// one row (and the request ids seen, to refuse a repeated one) rather than the log. Every
/// row is checked ([`LoggedRequest::check`]).
///
/// # Errors
/// [`DataError::InvalidConfig`] for a bad `config`; [`DataError::Parse`] naming the file,
/// line and field of the first invalid row (or of the row past the
/// [`LogConfig::max_invalid`] budget); file errors; a file without rows; `f`'s errors.
pub fn scan_request_log(
    path: &Path,
    config: &LogConfig,
    mut f: impl FnMut(LoggedRequest) -> Result<()>,
) -> Result<LogScan> {
    config.validate()?;
    let mut scan = LogScan::default();
    let mut ids: HashSet<String> = HashSet::new();
    for file in log_files(path)? {
        for_each_line(
            &file,
            Encoding::Utf8,
            "a request log (JSON Lines)",
            |ln, line| {
                let row = LoggedRequest::from_json(line).and_then(|row| {
                    row.check(config)?;
                    if ids.contains(&row.request_id) {
                        return Err(RowError::new(
                            "request_id",
                            format!("`{}` appears on an earlier row", row.request_id),
                        ));
                    }
                    Ok(row)
                });
                match row {
                    Ok(row) => {
                        ids.insert(row.request_id.clone());
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
            },
        )?;
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

    fn row() -> Value {
        serde_json::json!({
            "request_id": "r1", "timestamp": 1700000000, "user": "u1",
            "history": [{"item": "i9", "labels": 1}],
            "candidates": ["i1", "i2", "i3", "i4"], "retriever_scores": [2.0, 1.5, 1.0, 0.5],
            "shown": ["i2", "i1"], "feedback": {"click": [1, 0]}
        })
    }

    #[test]
    fn a_row_round_trips_and_keeps_the_serving_request() {
        let r = LoggedRequest::from_json(&row().to_string()).unwrap();
        assert_eq!(r.request_id, "r1");
        assert_eq!(r.request.candidates.len(), 4);
        assert_eq!(
            r.request.retriever_scores.as_deref(),
            Some(&[2.0, 1.5, 1.0, 0.5][..])
        );
        assert_eq!(r.labels(&LogConfig::default()), &[1.0, 0.0]);
        r.check(&LogConfig::default()).unwrap();
        let back = LoggedRequest::from_json(&r.to_json().to_string()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn every_invalid_row_names_its_field() {
        let config = LogConfig::default();
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, &str, &str)> = vec![
            (
                Box::new(|v| v["shown"] = serde_json::json!(["i2", "i7"])),
                "shown",
                "not among",
            ),
            (
                Box::new(|v| v["shown"] = serde_json::json!(["i2", "i2"])),
                "shown",
                "twice",
            ),
            (
                Box::new(|v| v["shown"] = serde_json::json!([])),
                "shown",
                "empty",
            ),
            (
                Box::new(|v| v["candidates"][1] = "i1".into()),
                "candidates",
                "twice",
            ),
            (
                Box::new(|v| v["feedback"]["click"] = serde_json::json!([1])),
                "feedback.click",
                "1 values for 2",
            ),
            (
                Box::new(|v| v["feedback"]["dwell"] = serde_json::json!([3, 4])),
                "feedback.dwell",
                "unknown signal",
            ),
            (
                Box::new(|v| v["feedback"] = serde_json::json!({})),
                "feedback.click",
                "label",
            ),
            (
                Box::new(|v| v["retriever_scores"] = serde_json::json!([1.0])),
                "retriever_scores",
                "1 scores for 4",
            ),
            (
                Box::new(|v| v["exposures"] = serde_json::json!([1, 2])),
                "exposures",
                "2 counts for 4",
            ),
            (
                Box::new(|v| v["candidate_vectors"] = serde_json::json!({"i8": [0.1]})),
                "candidate_vectors.i8",
                "not a candidate",
            ),
        ];
        for (edit, field, message) in cases {
            let mut v = row();
            edit(&mut v);
            let e = LoggedRequest::from_json(&v.to_string())
                .and_then(|r| r.check(&config).map(|()| r))
                .unwrap_err();
            assert_eq!(e.field, field, "{e:?}");
            assert!(e.message.contains(message), "{e:?}");
        }
        for (text, field) in [
            (
                r#"{"request_id": "r", "timestamp": 1, "timestamp": 2}"#,
                "row",
            ),
            (
                r#"{"timestamp": 1, "candidates": ["a"], "shown": ["a"], "feedback": {}}"#,
                "request_id",
            ),
            (
                r#"{"request_id": "r", "timestamp": "x", "candidates": ["a"], "shown": ["a"], "feedback": {}}"#,
                "timestamp",
            ),
            (
                r#"{"request_id": "r", "timestamp": 1, "candidates": ["a"], "shown": ["a"], "feedback": {}, "extra": 1}"#,
                "request",
            ),
            ("[1, 2]", "row"),
        ] {
            let e = LoggedRequest::from_json(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e:?}");
        }
        // Non-finite values cannot be written in JSON; the check still refuses them.
        let mut r = LoggedRequest::from_json(&row().to_string()).unwrap();
        r.request.retriever_scores = Some(vec![1.0, f32::NAN, 0.0, 0.0]);
        assert_eq!(r.check(&config).unwrap_err().field, "retriever_scores");
    }

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
