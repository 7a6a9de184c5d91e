//! Training GloRank: the three trainers (supervised, policy-gradient, reward-model) and
//! what they share.
//!
//! * [`RequestBuilder`] turns a prepared dataset's samples into policy
//!   [`Request`](glorank_policy::Request)s through a semantic-ID table.
//! * [`train_reward_model`] trains an evaluator or simulator on [`reward_examples`] (logged
//!   slates plus pool-sampled lists) with early stopping on validation click AUC.
//! * [`train_sft`] is supervised pre-training: teacher forcing on demonstrations (the logged
//!   slate by rating, or the evaluator's [`best_of_k_demonstrations`]), validation
//!   NDCG/Precision each epoch, the best epoch kept; its rate follows an [`LrSchedule`]
//!   (linear warmup, then constant, linear or cosine decay; constant by default).
//! * [`train_rl`] is group-relative RL ([`rl_step`], [`group_advantages`]) against a
//!   [`ListReward`] ([`EvaluatorReward`] or the verifiable [`LabelReward`]) with a KL penalty
//!   to the frozen SFT policy, logging reward, KL, entropy and skipped groups.
//! * Both loops clip the global gradient norm ([`clip_global_norm`]), skip non-finite steps,
//!   write a JSONL log ([`JsonlLog`]), report to a [`TrainObserver`], and write atomic
//!   checkpoints (model, optimizer, step, log) from which `resume` reaches the same weights
//!   as an uninterrupted run: every random stream is derived from `(seed, step)`
//!   ([`derive_seed`]).
//! * [`fit`] trains the baselines (PRM, DLCM, Seq2Slate of `glorank-baselines`) on
//!   [`BaselineData`].
//! * Every trainer runs in one skeleton ([`drive`] over a [`TrainingLoop`]) with one
//!   data-parallel update ([`sharded_step`]) and shares one [`OptimConfig`] type (batch,
//!   rate and schedule, weight decay, clipping, shards, seed); each section's
//!   configuration ([`SftConfig`], [`RlConfig`], [`RewardTrainConfig`],
//!   [`BaselineConfig`]) checks its values before anything is allocated.
//! * [`list_metrics`] and [`average_reward`] evaluate generated lists.
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
mod baselines;
mod checkpoint;
mod config;
mod eval;
mod optim;
mod policy_run;
mod requests;
mod reward;
mod rl;
mod schedule;
mod sft;
mod skeleton;

pub use advantage::{GroupAdvantages, group_advantages};
pub use baselines::{BaselineConfig, BaselineData, EpochLog, Trained, fit, seen_in_training};
pub use checkpoint::StageOutput;
pub use config::{Demonstrations, RewardSource};
pub use eval::{
    EvaluatorReward, LabelReward, ListReward, average_reward, greedy_lists, list_metrics,
    policy_lists,
};
pub use optim::OptimConfig;
pub use requests::{RequestBuilder, StoredExamples};
pub use reward::{
    RewardCheckpoint, RewardData, RewardEpoch, RewardTrainConfig, click_auc, reward_examples,
    train_reward_model, train_reward_model_in,
};
pub use rl::{RlConfig, RlData, RlOutcome, RlStepStats, rl_step, train_rl};
pub use schedule::{LrDecay, LrSchedule};
pub use sft::{
    InMemoryExamples, SftBatch, SftConfig, SftData, SftExamples, SftOutcome, beam_metrics,
    best_of_k_demonstrations, greedy_metrics, sft_step, train_sft,
};
pub use skeleton::{
    JsonlLog, MIN_SHARD_ROWS, NoObserver, OPTIMIZER_FILE, RunStatus, STATE_FILE, StepOutcome,
    TrainObserver, TrainingLoop, apply_gradients, clip_global_norm, drive, latest, load_optimizer,
    optimizer_step, save_optimizer, shard_ranges, sharded_gradients, sharded_step, sum_gradients,
    write_dir_atomic,
};

use std::path::PathBuf;

/// Errors of the training crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// Inputs that do not fit together (named in the message).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A configuration value is invalid.
    #[error("invalid training configuration `{field}`: {message}")]
    InvalidConfig {
        /// The field (with its section, e.g. `sft.batch_size`).
        field: String,
        /// Why it is rejected.
        message: String,
    },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file's content is invalid.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (with line and column where known).
        message: String,
    },
    /// A training loss or gradient became non-finite in every attempt.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// Policy errors.
    #[error(transparent)]
    Policy(#[from] glorank_policy::PolicyError),
    /// Reward-model errors.
    #[error(transparent)]
    Reward(#[from] glorank_reward::RewardError),
    /// Tokenizer errors.
    #[error(transparent)]
    Tokenizer(#[from] glorank_tokenizer::TokenizerError),
    /// Model-file errors (the error names the file).
    #[error(transparent)]
    Nn(#[from] glorank_nn::NnError),
    /// Decoding errors.
    #[error(transparent)]
    Trie(#[from] glorank_trie::TrieError),
    /// Metric errors.
    #[error(transparent)]
    Metrics(#[from] glorank_metrics::MetricsError),
    /// Baseline-model errors.
    #[error(transparent)]
    Baseline(#[from] glorank_baselines::BaselineError),
    /// Data errors (reading the training requests a dataset keeps on disk).
    #[error(transparent)]
    Data(#[from] glorank_data::DataError),
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// A seed for stream `parts` of a run seeded with `seed` (SplitMix64 mixing), so every random
/// stream (batch order of an epoch, sampling of a step, dropout of a step) is a pure function
/// of the seed and the step: resuming needs no RNG state beyond the step counter.
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut x = seed;
    for &p in parts {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(p);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x = z ^ (z >> 31);
    }
    x
}
