//! The GloRank policy: a transformer that writes a reranked list as semantic-ID tokens.
//!
//! * **Embeddings**: one token table per semantic-ID level, shared by history, candidates and
//!   decoder; an item is the sum of its level-token embeddings. Candidates add a projection of
//!   the stage-1 retriever score; history items add their feedback label and recency; user
//!   attributes embed into one user token. Segment embeddings tell the three apart.
//! * **Encoder**: pre-LayerNorm transformer over `[user, history..., candidates...]`.
//!   Candidates carry no positional encoding: they are a set, and shuffling them does not
//!   change the output distribution. Padding is masked.
//! * **Decoder**: autoregressive over `[BOS, item1 level1 .. levelD+1, item2 ...]`; input =
//!   previous token embedding + level embedding + slot embedding; causal self-attention and
//!   cross-attention to the encoder output. The head of level `l` gives logits over that
//!   level's global codebook: the same output neuron is the same code in every request.
//! * **Output head** ([`OutputHead`], default candidate-aware): the linear head's logit of
//!   code `c` plus the log-sum-exp of pointer scores (decoder state against each remaining
//!   candidate's encoder output) over the candidates whose tuple extends the prefix with `c`.
//!   `global` keeps the linear head alone (as published), `pointer` the second term alone
//!   (an item-level softmax over the remaining pool, spelled in tokens).
//! * Two paths computing the same function: [`Policy::log_probs`] (teacher forcing with the
//!   trie masks, for SFT and RL) and [`PolicyScorer`] (incremental decoding with a key/value
//!   cache, a [`glorank_trie::StepScorer`], so greedy, sampling and beam search all work).
//! * [`HostPolicy`]: the same decoding on the host CPU outside burn (weights copied once,
//!   plain buffers, the `gemm` kernels); [`decode`] uses it on CPU devices and
//!   [`decode_on_device`] keeps burn's operations (the GPU path).
//! * [`ActionSpace::LocalIndex`]: the ablation with one step per slot and a fixed head over
//!   input positions, through the same encoder, decoder and trainers. Its candidates add a
//!   learned embedding of their input position (without it a fixed head over positions
//!   could not know which item sits where); the global policy has none.
//!
//! ```
//! use glorank_policy::{HistoryItem, Policy, PolicyArch, PolicyConfig, Request, decode};
//! use glorank_trie::{DecodeStrategy, Decoder};
//! use burn::tensor::Device;
//!
//! let device = Device::flex();
//! let config = PolicyConfig::new(vec![8, 8, 4])
//!     .with_arch(PolicyArch::default().with_size(32, 4, 1))
//!     .with_shape(3, 10, 10);
//! let policy = Policy::new(&config, &device)?;
//! let request = Request {
//!     user_features: vec![],
//!     history: vec![HistoryItem { tuple: vec![1, 2, 0], labels: 1 }],
//!     candidates: (0..6).map(|i| vec![i % 8, (i * 3) % 8, 0]).collect(),
//!     retriever_scores: vec![],
//!     exposures: vec![],
//! };
//! let mut greedy = Decoder::new(DecodeStrategy::Greedy, 0)?;
//! let lists = decode(&policy, &[request], &mut greedy, &device)?;
//! assert_eq!(lists[0][0].items.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod decode;
mod host;
mod model;
mod scorer;

pub use config::{
    ActionSpace, ItemContent, MAX_ITEM_BUCKETS, MAX_USER_LR_SCALE, OutputHead, PolicyArch,
    PolicyConfig,
};
pub use decode::{decode, decode_with_host, first_item_logprobs};
pub use glorank_nn::{HistoryItem, ModelInputs, RetrieverInput};
pub use host::{HostPolicy, HostScorer};
pub use model::{EncodedBatch, Policy, Request};
pub use scorer::{HOST_DECODE_BLOCK, MIN_DECODE_SHARD, PolicyScorer, decode_on_device};

use burn::tensor::Device;
use glorank_nn::persist;
use std::path::Path;

/// File name of the policy configuration inside a model directory.
pub const CONFIG_FILE: &str = "policy.json";

/// File name of the policy weights (burnpack).
pub const WEIGHTS_FILE: &str = "policy.bpk";

/// Errors of the policy crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A configuration value is invalid.
    #[error("invalid policy configuration: {0}")]
    InvalidConfig(String),
    /// A request or list does not fit the policy.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Trie construction or decoding failed.
    #[error(transparent)]
    Trie(#[from] glorank_trie::TrieError),
    /// A model file could not be read or written (the error names the file).
    #[error(transparent)]
    Nn(glorank_nn::NnError),
}

impl From<glorank_nn::NnError> for PolicyError {
    fn from(e: glorank_nn::NnError) -> Self {
        match e {
            glorank_nn::NnError::InvalidInput(m) => Self::InvalidInput(m),
            other => Self::Nn(other),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;

impl Policy {
    /// Saves the configuration (`policy.json`) and weights (`policy.bpk`) into `dir`, both
    /// written to temporary names and renamed, and the checksums of the directory's files
    /// (`checksums.json`), which [`Policy::load`] verifies.
    ///
    /// # Errors
    /// [`PolicyError::Nn`] naming the file.
    pub fn save(&self, config: &PolicyConfig, dir: &Path) -> Result<()> {
        persist::save_json(&dir.join(CONFIG_FILE), config)?;
        persist::save_weights(self, &dir.join(WEIGHTS_FILE))?;
        persist::write_checksums(dir)?;
        Ok(())
    }

    /// Loads a policy saved with [`Policy::save`] onto `device`.
    ///
    /// # Errors
    /// [`PolicyError::Nn`] for a missing or unreadable file, a file whose checksum does not
    /// match (named), or weights that do not match the configuration.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, PolicyConfig)> {
        persist::verify_checksums(dir)?;
        let path = dir.join(CONFIG_FILE);
        let saved: serde_json::Value = persist::load_json(&path)?;
        let config = PolicyConfig::from_saved(saved).map_err(|e| {
            PolicyError::Nn(glorank_nn::NnError::Format {
                path: path.clone(),
                message: e.to_string(),
            })
        })?;
        let policy = persist::load_weights(Policy::new(&config, device)?, &dir.join(WEIGHTS_FILE))?;
        Ok((policy, config))
    }
}

impl Policy {
    /// A one-line summary with the parameter count (the derived `Display` prints the full
    /// module tree with per-module parameter counts).
    pub fn summary(&self) -> String {
        format!(
            "GloRank policy ({} action space, depth {}, {} items per list, {} steps): {} parameters",
            if self.is_local_index() {
                "local-index"
            } else {
                "global"
            },
            self.depth(),
            self.list_len(),
            self.steps(),
            self.parameter_count()
        )
    }
}
