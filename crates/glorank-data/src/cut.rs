//! How the protocol cuts a user's sequence ([`ProtocolConfig`]): slate boundaries aligned
//! to the end, where the train interactions and the retriever's fit end.

use crate::labels::LabelThresholds;
use crate::retriever::RetrieverConfig;
use crate::{DataError, Result};
use serde::{Deserialize, Serialize};

/// Configuration of the protocol, checked before any work starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProtocolConfig {
    /// Minimum interactions per user and per item after filtering (default 20; 0 or 1 keeps all).
    pub k_core: usize,
    /// Slate (output list) length `L` (default 6).
    pub slate_len: usize,
    /// Maximum history length (default 50).
    pub history_len: usize,
    /// Candidates per request `N` (default 50).
    pub pool_size: usize,
    /// Rating thresholds of the labels.
    pub thresholds: LabelThresholds,
    /// Stage-1 retriever hyper-parameters.
    pub retriever: RetrieverConfig,
    /// Seed of the retriever initialisation and of the pool shuffles.
    pub seed: u64,
    /// Out-of-sample reranker training (default 0: off). With `K > 0`, only the last `K`
    /// train slates of each user become reranker training requests, and the retriever is
    /// fitted on the interactions *before* them. Every request (train, validation, test) then
    /// has a pool built by a retriever that never saw its slate, as in a deployed two-stage
    /// system, and retriever scores mean the same thing in training and at evaluation. With 0
    /// (the in-sample protocol), the retriever is fitted on every train slate, so training pools
    /// are in-sample: on them the retriever ranks the logged items high, on validation and
    /// test its own top picks are the negatives.
    pub rerank_train_slates: usize,
    /// Whether the retrieved candidates exclude the user's history window as well as the
    /// slate (default true). False: they exclude only the slate, as the research group's code
    /// builds its pools (the "paper" preset).
    pub pool_excludes_history: bool,
    /// Add the user's identity as a categorical user feature, `user_id` (default false), so
    /// every model that reads user features learns a user-ID embedding (the "paper" preset).
    pub user_id_feature: bool,
    /// The held-out-items cold-start protocol (default 0: off): this share of the catalog,
    /// drawn with the seed among the items that appear in some user's test slate, loses every
    /// interaction before the test slates (retriever data, train and validation slates and
    /// pools, histories). At test time the retriever scores those items through factors
    /// predicted from their content, so they enter pools as retrieved and as logged items
    /// alike; see `crate::held_out` and [`PreparedDataset::held_out`]. The cold-start
    /// presets use 0.1. Needs item content features.
    ///
    /// [`PreparedDataset::held_out`]: crate::PreparedDataset::held_out
    pub held_out_share: f64,
}

/// Name of the user feature added by [`ProtocolConfig::user_id_feature`].
pub const USER_ID_FIELD: &str = "user_id";

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            k_core: 20,
            slate_len: 6,
            history_len: 50,
            pool_size: 50,
            thresholds: LabelThresholds::default(),
            retriever: RetrieverConfig::default(),
            seed: 42,
            rerank_train_slates: 0,
            pool_excludes_history: true,
            user_id_feature: false,
            held_out_share: 0.0,
        }
    }
}

impl ProtocolConfig {
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the k-core threshold.
    pub fn with_k_core(mut self, k: usize) -> Self {
        self.k_core = k;
        self
    }

    /// Sets slate length `L`, history length and pool size `N`.
    pub fn with_shape(mut self, slate_len: usize, history_len: usize, pool_size: usize) -> Self {
        self.slate_len = slate_len;
        self.history_len = history_len;
        self.pool_size = pool_size;
        self
    }

    /// Sets the label thresholds.
    pub fn with_thresholds(mut self, thresholds: LabelThresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Sets the number of out-of-sample reranker training slates per user (0: every train
    /// slate, in-sample retriever); see [`ProtocolConfig::rerank_train_slates`].
    pub fn with_rerank_train_slates(mut self, k: usize) -> Self {
        self.rerank_train_slates = k;
        self
    }

    /// Sets whether pools exclude the history window (see
    /// [`ProtocolConfig::pool_excludes_history`]).
    pub fn with_pool_excluding_history(mut self, exclude: bool) -> Self {
        self.pool_excludes_history = exclude;
        self
    }

    /// Sets whether the user id becomes a user feature (see
    /// [`ProtocolConfig::user_id_feature`]).
    pub fn with_user_id_feature(mut self, on: bool) -> Self {
        self.user_id_feature = on;
        self
    }

    /// Sets the share of held-out (cold) items, 0 for none (see
    /// [`ProtocolConfig::held_out_share`]).
    pub fn with_held_out_share(mut self, share: f64) -> Self {
        self.held_out_share = share;
        self
    }

    /// Sets the retriever configuration.
    pub fn with_retriever(mut self, retriever: RetrieverConfig) -> Self {
        self.retriever = retriever;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.slate_len == 0 {
            return Err(DataError::config("slate_len", "must be at least 1"));
        }
        if self.pool_size <= self.slate_len {
            return Err(DataError::config(
                "pool_size",
                format!(
                    "{} must exceed slate_len {} (the pool holds the slate plus retrieved items)",
                    self.pool_size, self.slate_len
                ),
            ));
        }
        if self.pool_size > u16::MAX as usize {
            return Err(DataError::config("pool_size", "must be at most 65535"));
        }
        let t = self.thresholds;
        if !(t.click.is_finite() && t.like.is_finite() && t.star.is_finite())
            || t.click > t.like
            || t.like > t.star
        {
            return Err(DataError::config(
                "thresholds",
                format!(
                    "need finite click <= like <= star, got {} / {} / {}",
                    t.click, t.like, t.star
                ),
            ));
        }
        check_held_out_share(self.held_out_share, "held_out_share")?;
        self.retriever.validate()
    }
}

/// Checks a held-out share (see [`ProtocolConfig::held_out_share`]): finite, in [0, 0.5].
pub(crate) fn check_held_out_share(share: f64, field: &str) -> Result<()> {
    if share.is_finite() && (0.0..=0.5).contains(&share) {
        return Ok(());
    }
    Err(DataError::config(
        field,
        format!("{share} must be in [0, 0.5] (0: off; the cold-start presets use 0.1)"),
    ))
}

/// Slate boundaries of a sequence of `len` interactions: start offsets of the slates,
/// aligned to the end.
pub(crate) fn slate_starts(len: usize, l: usize) -> Vec<usize> {
    let n = len / l;
    let r = len % l;
    (0..n).map(|s| r + s * l).collect()
}

/// End (exclusive) of the interactions the retriever is fitted on: the train interactions,
/// or with `k > 0` those before the user's last `k` train slates.
pub(crate) fn retriever_end(len: usize, l: usize, k: usize) -> usize {
    let end = train_end(len, l);
    if k == 0 {
        return end;
    }
    let starts = slate_starts(len, l);
    // Train slates are all but the last two (validation, test).
    let train_slates = starts.len().saturating_sub(2);
    if train_slates == 0 {
        return end;
    }
    starts[train_slates.saturating_sub(k)]
}

/// End (exclusive) of a user's train interactions: the start of the validation slate, or of
/// the test slate when the user has one slate; everything when the user has none.
pub(crate) fn train_end(len: usize, l: usize) -> usize {
    let starts = slate_starts(len, l);
    match starts.len() {
        0 => len,
        1 => starts[0],
        n => starts[n - 2],
    }
}
