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

pub(crate) mod catalog;
mod config;
mod parquet;
mod prepare;
mod read;
mod synthetic;

pub use catalog::{
    ITEM_VECTORS_NPY_FILE, ITEMS_FILE, ITEMS_PARQUET_FILE, ItemRecord, NamedVocabulary,
    SYNTHETIC_FILE, USERS_FILE, USERS_PARQUET_FILE, UserRecord, VOCABULARIES_FILE, Vocabularies,
    write_catalogs,
};
pub use config::{LogConfig, LogSplit, LogStore};
pub use parquet::{BATCH_ROWS, write_request_log_parquet};
pub use prepare::{prepare_log, prepare_log_into};
pub use read::{
    LogScan, RequestLog, log_files, read_request_log, scan_request_log, write_request_log,
};
pub use synthetic::{SyntheticLogConfig, write_synthetic_log};

use crate::RerankRequest;
use crate::json::Strict;
use crate::{DataError, Result};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// The file format of a request log's parts.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// JSON Lines (`.jsonl`, `.jsonl.gz` read too).
    #[default]
    Jsonl,
    /// Parquet (`.parquet`).
    Parquet,
}

named_choice!(LogFormat, "format", [
    Jsonl => "jsonl",
    Parquet => "parquet",
]);

impl LogFormat {
    /// The file extension of a part in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }
}

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
        let mut request = RerankRequest::from_sample(ds, sample);
        // A log's own scores where it has them (one record, not the whole log, per row);
        // a rating dataset's stage-1 retriever's otherwise.
        request.retriever_scores = match ds.log_record(sample) {
            Some(r) => r.retriever_scores.clone(),
            None => Some(ds.retriever_scores(sample)),
        };
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
            ("rating".to_string(), ds.logged_ratings(sample).to_vec()),
        ]);
        let timestamp = match ds.log_record(sample) {
            Some(r) => r.timestamp,
            None => ds
                .sequences
                .get(sample.user as usize)
                .and_then(|s| s.timestamps.get(sample.slate_start as usize))
                .copied()
                .unwrap_or_default(),
        };
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid logged request, as JSON.
    pub(crate) fn row() -> Value {
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
}
