//! The model-input switches: which per-request signals every model that can read them reads.
//!
//! One [`ModelInputs`] value (the `[inputs]` section of the configuration) is read by the
//! policy, the baselines and the reward models, so a run cannot give the retriever score to
//! one model and withhold it from another by accident.

use crate::retriever::RetrieverInput;
use crate::{NnError, Result};
use serde::{Deserialize, Serialize};

/// Which per-request signals the models read (the `[inputs]` section). Every field is off by
/// default.
///
/// ```
/// use glorank_nn::{ModelInputs, RetrieverInput};
///
/// let inputs = ModelInputs::default().with_retriever(RetrieverInput::ScoreAndRank);
/// assert!(inputs.retriever_score);
/// assert_eq!(inputs.candidate_side_width(), 2);
/// inputs.validate()?;
/// # Ok::<(), glorank_nn::NnError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ModelInputs {
    /// Feed each candidate's stage-1 retriever score (default false). Under in-sample pools
    /// the retriever scores the logged items of training requests high and picks the
    /// negatives of test requests itself, so the feature points one way in training and the
    /// other at evaluation; a served request must then carry `retriever_scores`. The reward
    /// models read the raw score; the policy and the baselines read [`Self::retriever_input`].
    pub retriever_score: bool,
    /// What the policy and the baselines read from the retriever scores when
    /// `retriever_score` is on: `score` (default), `rank` or `score-and-rank`.
    pub retriever_input: RetrieverInput,
    /// Feed each candidate's exposure count: how often the item was a non-clicked candidate
    /// in the user's earlier training requests, read as `ln(1 + count)` (default false; a
    /// served request must then carry `exposures`). Read by the policy and the baselines.
    pub exposures: bool,
    /// Learning-rate factor of the user tables, user ID included (0: off, the default). With
    /// `k > 0` a table starts at zero and is read multiplied by `k`, so under Adam its rows
    /// learn about `k` times faster than the other weights: a user's row is updated only by
    /// that user's few requests. Read by the policy and the baselines.
    pub user_lr_scale: f32,
}

impl Default for ModelInputs {
    fn default() -> Self {
        Self {
            retriever_score: false,
            retriever_input: RetrieverInput::Score,
            exposures: false,
            user_lr_scale: 0.0,
        }
    }
}

impl ModelInputs {
    /// Turns the retriever score on, read as `input`.
    pub fn with_retriever(mut self, input: RetrieverInput) -> Self {
        self.retriever_score = true;
        self.retriever_input = input;
        self
    }

    /// Sets [`Self::exposures`].
    pub fn with_exposures(mut self, on: bool) -> Self {
        self.exposures = on;
        self
    }

    /// Sets [`Self::user_lr_scale`].
    pub fn with_user_lr_scale(mut self, scale: f32) -> Self {
        self.user_lr_scale = scale;
        self
    }

    /// Per-candidate side features the policy and the baselines read: the retriever
    /// features (when on), then the exposure feature (when on).
    pub fn candidate_side_width(&self) -> usize {
        let retriever = if self.retriever_score {
            self.retriever_input.width()
        } else {
            0
        };
        retriever + usize::from(self.exposures)
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] naming `inputs.user_lr_scale`.
    pub fn validate(&self) -> Result<()> {
        match crate::limits::bad_user_lr_scale(self.user_lr_scale) {
            Some(message) => Err(NnError::InvalidConfig {
                field: "inputs.user_lr_scale".into(),
                message,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_off_and_bad_scales_name_the_field() {
        let d = ModelInputs::default();
        assert!(!d.retriever_score && !d.exposures && d.user_lr_scale == 0.0);
        assert_eq!(d.candidate_side_width(), 0);
        assert_eq!(d.with_exposures(true).candidate_side_width(), 1);
        for bad in [-1.0, f32::NAN, 1e6] {
            let e = d
                .with_user_lr_scale(bad)
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains("inputs.user_lr_scale"), "{e}");
        }
        assert!(d.with_user_lr_scale(10.0).validate().is_ok());
    }
}
