//! The choices the trainers' sections share ([`Demonstrations`], [`RewardSource`]) and the
//! checks every section's `validate` uses. The sections themselves ([`crate::SftConfig`],
//! [`crate::RlConfig`], [`crate::RewardTrainConfig`], [`crate::BaselineConfig`], each with its
//! [`crate::OptimConfig`]) are read from TOML by the facade's one configuration root.

use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};

/// Which demonstrations SFT imitates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
#[non_exhaustive]
pub enum Demonstrations {
    /// The logged slate ordered by rating, descending, ties by exposure time (default).
    Logged,
    /// The candidates with the highest label grade, logged ones first among equals
    /// (`PreparedDataset::label_demonstration`): for the synthetic world with pool feedback,
    /// where every candidate has a label.
    Labels,
    /// The evaluator's best of the logged demonstration and `k - 1` lists sampled uniformly
    /// from the pool.
    BestOfK {
        /// Lists compared per request (>= 2).
        k: usize,
    },
}

/// Where the RL reward comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RewardSource {
    /// The evaluator's DCG-weighted click reward `sum_k p_click(k) / log2(k + 1)` (default).
    Evaluator,
    /// The known labels of the training request: NDCG@L of the list (a verifiable reward).
    Labels,
}

/// `Err(InvalidConfig)` naming `field` when `value` exceeds `max` (checked before anything
/// is allocated; see `glorank_nn::limits`).
pub(crate) fn check_max(field: &str, value: usize, max: usize) -> Result<()> {
    match glorank_nn::limits::too_large(value, max) {
        Some(message) => Err(TrainError::InvalidConfig {
            field: field.into(),
            message,
        }),
        None => Ok(()),
    }
}

/// `Err(InvalidConfig)` naming `field` unless `beam` is a valid beam width (1 up to
/// [`glorank_trie::MAX_BEAM_WIDTH`]).
pub(crate) fn check_beam(field: &str, beam: usize) -> Result<()> {
    check(field, beam > 0, "must be > 0")?;
    check_max(field, beam, glorank_trie::MAX_BEAM_WIDTH)
}

/// `Err(InvalidConfig)` naming `field` unless `ok`.
pub(crate) fn check(field: &str, ok: bool, message: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(TrainError::InvalidConfig {
            field: field.into(),
            message: message.into(),
        })
    }
}
