//! The serving request: the JSON object `glorank rerank`, the HTTP server and the Python
//! bindings read, in item ids. A logged request ([`crate::LoggedRequest`]) is this
//! request plus what was shown and the feedback on it.

use crate::json::Strict;
use crate::{DataError, PreparedDataset, RerankSample, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One interaction of a request's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankHistoryItem {
    /// Item id (as in the training data, e.g. `"1193"` for MovieLens).
    pub item: String,
    /// Behaviour bits: click 1, like 2, star 4 (default 1).
    #[serde(default = "one")]
    pub labels: u8,
}

fn one() -> u8 {
    1
}

/// A request to rerank, in item ids (the JSON form read by `glorank rerank`):
///
/// ```json
/// {"user": "u17", "history": [{"item": "i3", "labels": 1}],
///  "candidates": ["i1", "i2", "new-item"],
///  "candidate_vectors": {"new-item": [0.1, 0.0, ...]},
///  "retriever_scores": [2.1, 1.7, 0.4]}
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    /// A user id of the training data, whose attributes are used (unknown or absent: the
    /// first category of every attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// History, oldest first; items unknown to the model are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RerankHistoryItem>,
    /// Candidate item ids, at least L of them, no repeats.
    pub candidates: Vec<String>,
    /// Side-feature vectors of cold candidates (ids unknown to the model), in the
    /// tokenizer's input space; they are encoded to semantic IDs (cold start).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub candidate_vectors: BTreeMap<String, Vec<f32>>,
    /// The stage-1 retriever's score of each candidate, in candidate order. Required by a
    /// policy trained with `use_retriever_score` (an error names it when missing); ignored
    /// by one trained without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retriever_scores: Option<Vec<f32>>,
    /// How often each candidate was shown to this user before without a click, in
    /// candidate order. Required by a policy trained with `use_exposures` (an error names it
    /// when missing); ignored by one trained without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposures: Option<Vec<u32>>,
}

impl RerankRequest {
    /// Reads one request from JSON, as every front-end reads it: unknown fields and keys
    /// named twice are refused.
    ///
    /// # Errors
    /// [`DataError::MalformedRequest`] naming what is wrong.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Strict =
            serde_json::from_str(text).map_err(|e| DataError::MalformedRequest(e.to_string()))?;
        Self::from_strict(value).map_err(|e| DataError::MalformedRequest(e.to_string()))
    }

    /// A request from a value read by [`Strict`], refusing a repeated key, an unknown field
    /// or a missing one; the message says which.
    ///
    /// # Errors
    /// serde_json's error naming the field or the repeated key (the caller adds where it
    /// was read).
    pub fn from_strict(value: Strict) -> std::result::Result<Self, serde_json::Error> {
        let value = value
            .into_value()
            .map_err(<serde_json::Error as serde::de::Error>::custom)?;
        serde_json::from_value(value)
    }

    /// A request with these candidates and nothing else.
    pub fn new(candidates: Vec<String>) -> Self {
        Self {
            candidates,
            ..Self::default()
        }
    }

    /// The request a serving system would send for `sample` of `ds`: its user, its history
    /// with label bits and its candidates, in item ids (no retriever scores, no vectors).
    pub fn from_sample(ds: &PreparedDataset, sample: &RerankSample) -> Self {
        let item = |i: u32| ds.item_ids[i as usize].clone();
        Self {
            user: Some(ds.user_ids[sample.user as usize].clone()),
            history: ds
                .history(sample)
                .items
                .iter()
                .zip(ds.history_labels(sample))
                .map(|(&i, l)| RerankHistoryItem {
                    item: item(i),
                    labels: l.0,
                })
                .collect(),
            candidates: sample.candidates.iter().map(|&i| item(i)).collect(),
            ..Self::default()
        }
    }
}
