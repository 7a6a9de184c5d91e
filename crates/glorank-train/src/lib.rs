//! Training GloRank: the pieces shared by the trainers.
//!
//! * [`RequestBuilder`] turns a prepared dataset's samples into policy
//!   [`Request`](glorank_policy::Request)s through a semantic-ID table: user attributes,
//!   history tuples with labels, candidate tuples and retriever scores.
//! * [`group_advantages`] computes the group-relative advantages of GRPO-style training.
//! * [`sft_step`] is one supervised (teacher-forced) update; [`greedy_metrics`] scores greedy
//!   lists.
//! * [`train_reward_model`] trains an evaluator or simulator on [`reward_examples`] (logged
//!   slates plus pool-sampled lists) with early stopping on validation click AUC.
//! * [`rl_step`] is one group-relative policy-gradient update with a KL penalty to a frozen
//!   reference policy.
//!
//! The full SFT and RL training loops, checkpoints and the `glorank train` command
//! are the next step (see the project's issues); this crate already holds what they share.
//!
//! ```
//! use glorank_train::group_advantages;
//!
//! // Two groups of three sampled lists; the second group's rewards are all equal.
//! let adv = group_advantages(&[1.0, 2.0, 3.0, 0.5, 0.5, 0.5], 3, 1e-6)?;
//! assert!(adv.values[0] < 0.0 && adv.values[2] > 0.0);
//! assert_eq!(&adv.values[3..], &[0.0, 0.0, 0.0]);
//! assert_eq!(adv.skipped_groups, 1);
//! # Ok::<(), glorank_train::TrainError>(())
//! ```

mod advantage;
mod requests;
mod reward;
mod rl;
mod sft;

pub use advantage::{GroupAdvantages, group_advantages};
pub use requests::RequestBuilder;
pub use reward::{RewardEpoch, RewardTrainConfig, click_auc, reward_examples, train_reward_model};
pub use rl::{RlConfig, RlStepStats, rl_step};
pub use sft::{greedy_metrics, sft_step};

/// Errors of the training crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// Inputs that do not fit together (named in the message).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
