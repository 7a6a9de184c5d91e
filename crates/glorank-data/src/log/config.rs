//! How a request log is read, checked and cut ([`LogConfig`], the `[log]` section).

use crate::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// How the requests of a log are split into train, validation and test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogSplit {
    /// By time over the whole log (the default): the latest [`LogConfig::test_share`] of
    /// the requests are test, the [`LogConfig::valid_share`] before them validation. Rows
    /// at the same timestamp as a boundary go to the later split, so no test request is
    /// older than a training one.
    #[default]
    Time,
    /// Per user, as the rating protocol cuts: each user's last request (by time, then file
    /// order) is test, the one before validation, the others train.
    User,
}

named_choice!(LogSplit, "log.split", [
    Time => "time",
    User => "user",
]);

/// Where the training requests of a prepared log are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogStore {
    /// In memory, with the rest of the dataset (the default; about 1 KB per request).
    #[default]
    Memory,
    /// On disk next to `dataset.bin` (`train_requests.bin`), read a batch at a time by SFT:
    /// preparation holds a few bytes per request, so a log of 10^7 requests fits in 2 GB.
    /// Stages that read every training request at once (the reward models, RL, the
    /// baselines) load them into memory first.
    Disk,
}

named_choice!(LogStore, "log.store", [
    Memory => "memory",
    Disk => "disk",
]);

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
    /// Skipped rows are counted and the first [`REPORTED_INVALID`](crate::REPORTED_INVALID) reported, never dropped
    /// without a word; one more than the budget is an error.
    pub max_invalid: usize,
    /// How requests are split (default `time`).
    pub split: LogSplit,
    /// Share of the requests in the validation split under `split = "time"` (default 0.1).
    pub valid_share: f64,
    /// Share of the requests in the test split under `split = "time"` (default 0.1).
    pub test_share: f64,
    /// Up to two more signals graded above the label, as `like` and `star` are above
    /// `click` in the rating protocol (default none): an item's grade, the relevance of
    /// graded NDCG, counts the label and each of these that is positive.
    pub grades: Vec<String>,
    /// The signal whose value orders the shown items in a demonstration (default: none,
    /// the grade, then display order).
    pub order_by: Option<String>,
    /// Where the prepared training requests are kept (default `memory`; `disk` for logs
    /// larger than memory, see [`LogStore::Disk`]).
    pub store: LogStore,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            signals: vec!["click".into()],
            label: "click".into(),
            max_invalid: 0,
            split: LogSplit::Time,
            valid_share: 0.1,
            test_share: 0.1,
            grades: Vec::new(),
            order_by: None,
            store: LogStore::Memory,
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

    /// How requests are split: `split`, with the shares of validation and test requests
    /// under a time split.
    pub fn with_split(mut self, split: LogSplit, valid_share: f64, test_share: f64) -> Self {
        self.split = split;
        self.valid_share = valid_share;
        self.test_share = test_share;
        self
    }

    /// Signals graded above the label and the signal that orders demonstrations (see
    /// [`LogConfig::grades`] and [`LogConfig::order_by`]).
    pub fn with_grades(mut self, grades: &[&str], order_by: Option<&str>) -> Self {
        self.grades = grades.iter().map(|s| s.to_string()).collect();
        self.order_by = order_by.map(str::to_string);
        self
    }

    /// With the training requests kept as `store` says.
    pub fn with_store(mut self, store: LogStore) -> Self {
        self.store = store;
        self
    }

    /// Checks that the label, the grades and `order_by` are signals, that signals are named
    /// once, and that the split shares leave training requests.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] naming the key.
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
        if self.grades.len() > 2 {
            return Err(DataError::config(
                "log.grades",
                format!(
                    "at most two signals above the label, found {}",
                    self.grades.len()
                ),
            ));
        }
        for (key, name) in self
            .grades
            .iter()
            .map(|g| ("log.grades", g))
            .chain(self.order_by.iter().map(|o| ("log.order_by", o)))
        {
            if !seen.contains(name.as_str()) {
                return Err(DataError::config(
                    key,
                    format!(
                        "`{name}` is not one of the signals ({})",
                        self.signals.join(", ")
                    ),
                ));
            }
        }
        let share_ok = |x: f64| x.is_finite() && (0.0..1.0).contains(&x);
        if !share_ok(self.valid_share)
            || !share_ok(self.test_share)
            || self.valid_share + self.test_share >= 1.0
        {
            return Err(DataError::config(
                "log.valid_share",
                format!(
                    "valid_share {} and test_share {} must each be in [0, 1) and leave \
                     training requests (their sum below 1)",
                    self.valid_share, self.test_share
                ),
            ));
        }
        Ok(())
    }
}
