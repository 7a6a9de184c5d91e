//! # GloRank
//!
//! Generative list-wise reranking with *global* item identifiers. A reranker receives a user
//! context and N candidate items and writes an ordered list of L of them. GloRank gives every
//! item a semantic ID (a short tuple of codebook tokens learned by an RQ-VAE or residual
//! k-means over item vectors), and a transformer policy generates the list token by token
//! over that global vocabulary, constrained by a per-request prefix trie so every item is a
//! valid, unrepeated candidate. It is trained by supervised pre-training on demonstration
//! lists, then by group-relative RL against a learned list-wise reward.
//!
//! This crate re-exports the workspace under one name and adds the two high-level entry
//! points:
//!
//! * [`Config`] is the one configuration tree (one TOML file, every default written once).
//! * [`Pipeline`] runs every [`Stage`] (prepare, tokenize, evaluator and simulator, SFT, RL,
//!   the LAS ablation, evaluation with the baselines) from one [`Config`] into one
//!   [`RunDir`], or one stage at a time through the same code; each stage reuses the
//!   artifacts already there, so re-running after an interruption redoes only what is
//!   missing.
//! * [`evaluation`] writes and reads the result files (`metrics.json`,
//!   `predictions.jsonl`), compares methods request by request and aggregates runs.
//! * [`Reranker`] loads a run directory and reranks requests given as item ids (cold items
//!   with side-feature vectors are encoded through the tokenizer).
//!
//! ## Walkthrough
//!
//! The stages, each also available on its own:
//!
//! 1. [`data`]: read interactions (MovieLens, Amazon, CSV, or the embedded synthetic world)
//!    and apply the 50-to-6 protocol into a [`data::PreparedDataset`].
//! 2. [`tokenizer`]: learn [`tokenizer::SemanticIds`] for the items.
//! 3. [`reward`] + [`train`]: train the evaluator (RL reward) and the simulator (Average
//!    Reward).
//! 4. [`policy`] + [`trie`] + [`train`]: SFT, then RL.
//! 5. [`metrics`]: Precision/Recall/F1/NDCG/MAP@L with 95% confidence intervals;
//!    [`baselines`]: MF order, PRM, Seq2Slate, DLCM and the oracle for comparison.
//!
//! ```no_run
//! use glorank::{Config, Pipeline, Reranker, RerankRequest};
//!
//! // Everything on the embedded synthetic world, in a few minutes on a laptop.
//! let report = Pipeline::new(Config::quick()).run("runs/quick".as_ref())?;
//! println!("{}", report.table);
//!
//! // Serve the trained policy.
//! let reranker = Reranker::load("runs/quick".as_ref())?;
//! let request = RerankRequest::new(vec!["i1".into(), "i2".into(), "i3".into(), "i4".into(),
//!     "i5".into(), "i6".into(), "i7".into()]);
//! let list = reranker.rerank(&request)?;
//! assert_eq!(list.len(), 6);
//! # Ok::<(), glorank::Error>(())
//! ```

pub mod bench;
mod config;
pub mod evaluation;
mod pipeline;
mod report;
mod reranker;
mod run_dir;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
mod training;

pub use glorank_baselines as baselines;
pub use glorank_data as data;
pub use glorank_metrics as metrics;
pub use glorank_nn as nn;
pub use glorank_policy as policy;
pub use glorank_reward as reward;
pub use glorank_tokenizer as tokenizer;
pub use glorank_train as train;
pub use glorank_trie as trie;

pub use burn;
pub use burn::tensor::Device;
pub use config::{Config, EvalConfig, MAX_EVAL_BEAM, ServeConfig, TokenizerConfig};
pub use glorank_data::{RerankHistoryItem, RerankRequest};
pub use pipeline::{EvalPlan, EvalReport, Hooks, Pipeline, PipelineReport, Split, Stage};
pub use report::{line_chart_svg, stage_summary, write_report};
pub use reranker::{ColdItem, ENDLESS_LINE_FACTOR, RerankCall, Reranker};
pub use run_dir::{
    ARTIFACTS, ArtifactRecord, EVALUATION, Freshness, LOG_REQUESTS_FILE, MANIFEST_FILE, Manifest,
    RunDir,
};

// The sections and choices of the configuration tree, and what a front-end reports
// through, named where the tree is.
pub use glorank_data::{DataConfig, DatasetKind, NoProgress, Progress, VectorKind};
pub use glorank_data::{
    LogConfig, LogFormat, LogScan, LogSplit, LoggedRequest, RequestLog, SyntheticConfig,
    SyntheticLogConfig, read_request_log, scan_request_log, write_synthetic_log,
};
pub use glorank_nn::{Backend, ModelInputs, RetrieverInput};
pub use glorank_policy::{ActionSpace, OutputHead, PolicyArch};
pub use glorank_tokenizer::TokenizerMethod;
pub use glorank_train::{
    BaselineConfig, Demonstrations, LrDecay, LrSchedule, NoObserver, OptimConfig, RewardSource,
    RewardTrainConfig, RlConfig, RunStatus, SftConfig, TrainObserver,
};
pub use glorank_trie::DecodeStrategy;

/// The components the language bindings expose on their own: the semantic-ID table and
/// the tokenizer, the constrained decoder over any scorer, and the list-wise metrics.
pub mod components {
    pub use glorank_metrics::{ListMetrics, Summary, auc};
    pub use glorank_tokenizer::{ItemTokenizer, SemanticIds, load_tokenizer};
    pub use glorank_trie::{CandidateTrie, Decoder, StepBatch, StepScorer};
}

use std::path::PathBuf;

/// Errors of the facade: every crate's error, plus missing artifacts and interruptions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Data errors.
    #[error(transparent)]
    Data(#[from] glorank_data::DataError),
    /// Tokenizer and persistence errors.
    #[error(transparent)]
    Tokenizer(#[from] glorank_tokenizer::TokenizerError),
    /// Model-base errors (model files, devices).
    #[error(transparent)]
    Nn(#[from] glorank_nn::NnError),
    /// Policy errors.
    #[error(transparent)]
    Policy(#[from] glorank_policy::PolicyError),
    /// Reward-model errors.
    #[error(transparent)]
    Reward(#[from] glorank_reward::RewardError),
    /// Training errors.
    #[error(transparent)]
    Train(#[from] glorank_train::TrainError),
    /// Baseline errors.
    #[error(transparent)]
    Baseline(#[from] glorank_baselines::BaselineError),
    /// Metric errors.
    #[error(transparent)]
    Metrics(#[from] glorank_metrics::MetricsError),
    /// Decoding errors.
    #[error(transparent)]
    Trie(#[from] glorank_trie::TrieError),
    /// A required artifact is not in the run directory.
    #[error("{}: not found; {hint}", path.display())]
    Missing {
        /// The missing file or directory.
        path: PathBuf,
        /// How to create it.
        hint: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration `{field}`: {message}")]
    InvalidConfig {
        /// The field, with its section.
        field: String,
        /// Why.
        message: String,
    },
    /// A request cannot be served (the message names the item or field).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A request (or a call's body) is not one: not UTF-8, not JSON, a key named twice, an
    /// unknown or missing field (the message says which).
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// A file could not be read or written.
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
        /// What is wrong.
        message: String,
    },
    /// A stage was interrupted by its observer.
    #[error("interrupted; run again to resume")]
    Interrupted,
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Largest metadata file the facade reads whole (configurations, manifests, metrics):
/// 256 MiB.
const MAX_METADATA_BYTES: u64 = 256 << 20;

/// The bytes of `path` (at most [`MAX_METADATA_BYTES`]).
///
/// # Errors
/// [`Error::Io`] naming it (also for a file over the limit).
pub(crate) fn read_bytes(path: &std::path::Path) -> Result<Vec<u8>> {
    glorank_nn::persist::read_capped(path, MAX_METADATA_BYTES).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// The text of `path` (at most [`MAX_METADATA_BYTES`]).
///
/// # Errors
/// [`Error::Io`] naming it (also for a file over the limit or text that is not UTF-8).
pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    String::from_utf8(read_bytes(path)?).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        ),
    })
}
