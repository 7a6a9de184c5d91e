//! List-wise user-response models: how a user reacts to an ordered list.
//!
//! A [`UserResponseModel`] reads the user context (user token and history, embedded by the
//! same [`ContextEmbedder`] code as the policy, with its own weights) and an ordered list of
//! items (semantic-ID embeddings plus slot embeddings), runs a pre-LayerNorm transformer
//! over `[user, history..., list items...]` so each slot sees the context and the other items
//! of the list, and outputs per-slot logits for three behaviours: click, like and star.
//!
//! Two roles, same code ([`RewardRole`]): the **evaluator**, trained on the train split and
//! used as the RL reward, and the **simulator**, trained on all logged slates with another
//! seed and size and used only to compute Average Reward. Training examples are logged slates
//! with their labels plus lists sampled from the candidate pool, whose retrieved-but-never-
//! consumed items are labelled 0 ([`RewardExample::from_pool`]); the loss is binary
//! cross-entropy per behaviour, masked for padded slots ([`UserResponseModel::loss`]).
//!
//! List rewards: [`sum_click_reward`] `= sum_k p_click(k)` and [`dcg_click_reward`]
//! `= sum_k p_click(k) / log2(k + 1)` (slots `k` from 1).
//!
//! ```
//! use burn::tensor::Device;
//! use glorank_reward::HistoryItem;
//! use glorank_reward::{RewardConfig, RewardExample, RewardRole, UserResponseModel, sum_click_reward};
//!
//! let device = Device::flex();
//! let config = RewardConfig::for_role(RewardRole::Evaluator, vec![8, 4]).with_shape(3, 10);
//! let model = UserResponseModel::new(&config, &device)?;
//! let example = RewardExample {
//!     user_features: vec![],
//!     history: vec![HistoryItem { tuple: vec![1, 0], labels: 1 }],
//!     list: vec![vec![2, 1], vec![5, 3], vec![7, 0]],
//!     labels: vec![1, 0, 3],
//!     scores: vec![],
//! };
//! let probs = model.probabilities(&[example], &device)?; // [1, 3, 3]
//! assert_eq!(probs.dims(), [1, 3, 3]);
//! let reward = sum_click_reward(probs); // [1]
//! assert!(reward.into_scalar::<f32>() > 0.0);
//! # Ok::<(), glorank_reward::RewardError>(())
//! ```

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
pub use glorank_nn::HistoryItem;
use glorank_nn::layers::{Encoder, key_padding_bias, linear_rows};
use glorank_nn::{ContextEmbedder, init_seeded, persist, segment};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Behaviours predicted per slot, in output order.
pub const BEHAVIOURS: [&str; 3] = ["click", "like", "star"];

/// File name of the configuration inside a model directory.
pub const CONFIG_FILE: &str = "reward.json";

/// File name of the weights.
pub const WEIGHTS_FILE: &str = "reward.bpk";

/// Errors of the reward crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewardError {
    /// A configuration value is invalid.
    #[error("invalid reward-model configuration: {0}")]
    InvalidConfig(String),
    /// An example does not fit the model.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A model file could not be read or written (the error names the file).
    #[error(transparent)]
    Nn(glorank_nn::NnError),
}

impl From<glorank_nn::NnError> for RewardError {
    fn from(e: glorank_nn::NnError) -> Self {
        match e {
            glorank_nn::NnError::InvalidInput(m) => Self::InvalidInput(m),
            other => Self::Nn(other),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = RewardError> = std::result::Result<T, E>;

/// What a reward model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RewardRole {
    /// Trained on the train split; its list reward drives RL.
    Evaluator,
    /// Trained on all logged slates with another seed and size; only for Average Reward.
    Simulator,
}

/// Hyper-parameters of a [`UserResponseModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RewardConfig {
    /// The role (documentation and defaults only; the code is the same).
    pub role: RewardRole,
    /// Semantic-ID vocabularies per level (dedupe level included).
    pub vocab_sizes: Vec<usize>,
    /// Categories per user attribute.
    pub user_field_sizes: Vec<usize>,
    /// Width (evaluator 64, simulator 96).
    pub d_model: usize,
    /// Attention heads (4).
    pub heads: usize,
    /// Encoder layers (evaluator 2, simulator 3).
    pub layers: usize,
    /// Feed-forward width (`4 d`).
    pub d_ff: usize,
    /// Dropout during training (0.1).
    pub dropout: f64,
    /// Longest history (50).
    pub max_history: usize,
    /// Longest list (6).
    pub list_len: usize,
    /// Seed (evaluator 1, simulator 2).
    pub seed: u64,
    /// Read each listed item's stage-1 retriever score ([`RewardExample::scores`]) through a
    /// projection added to its embedding (default false; the "paper" preset).
    #[serde(default)]
    pub use_retriever_score: bool,
}

impl RewardConfig {
    /// Defaults for `role`; the simulator is larger and differently seeded, so it does not
    /// share the evaluator's errors.
    pub fn for_role(role: RewardRole, vocab_sizes: Vec<usize>) -> Self {
        let (d, layers, seed) = match role {
            RewardRole::Evaluator => (64, 2, 1),
            RewardRole::Simulator => (96, 3, 2),
        };
        Self {
            role,
            vocab_sizes,
            user_field_sizes: Vec::new(),
            d_model: d,
            heads: 4,
            layers,
            d_ff: 4 * d,
            dropout: 0.1,
            max_history: 50,
            list_len: 6,
            seed,
            use_retriever_score: false,
        }
    }

    /// Sets whether the model reads the listed items' retriever scores.
    pub fn with_retriever_score(mut self, on: bool) -> Self {
        self.use_retriever_score = on;
        self
    }

    /// Sets list length and longest history.
    pub fn with_shape(mut self, list_len: usize, max_history: usize) -> Self {
        self.list_len = list_len;
        self.max_history = max_history;
        self
    }

    /// Sets the user attribute sizes.
    pub fn with_user_fields(mut self, sizes: Vec<usize>) -> Self {
        self.user_field_sizes = sizes;
        self
    }

    /// Sets width, heads and layers (feed-forward `4 d`).
    pub fn with_size(mut self, d_model: usize, heads: usize, layers: usize) -> Self {
        self.d_model = d_model;
        self.heads = heads;
        self.layers = layers;
        self.d_ff = 4 * d_model;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the dropout.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`RewardError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(RewardError::InvalidConfig(m.to_string()));
        if self.vocab_sizes.is_empty() || self.vocab_sizes.contains(&0) {
            return bad("vocab_sizes: need at least one level, each with >= 1 token");
        }
        if self.user_field_sizes.contains(&0) {
            return bad("user_field_sizes: every attribute needs >= 1 category");
        }
        if self.d_model == 0 || self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return bad("d_model must be a positive multiple of heads");
        }
        if self.layers == 0 || self.d_ff == 0 || self.list_len == 0 {
            return bad("layers, d_ff and list_len must be at least 1");
        }
        {
            use glorank_nn::limits::*;
            let bounds = [
                ("d_model", self.d_model, MAX_D_MODEL),
                ("heads", self.heads, MAX_HEADS),
                ("layers", self.layers, MAX_LAYERS),
                ("d_ff", self.d_ff, MAX_D_FF),
                ("list_len", self.list_len, MAX_POSITIONS),
                ("max_history", self.max_history, MAX_POSITIONS),
                ("vocab_sizes (levels)", self.vocab_sizes.len(), MAX_LEVELS),
                (
                    "vocab_sizes x d_model",
                    self.vocab_sizes
                        .iter()
                        .sum::<usize>()
                        .saturating_mul(self.d_model),
                    MAX_TABLE_ELEMENTS,
                ),
                (
                    "user_field_sizes",
                    self.user_field_sizes.iter().copied().max().unwrap_or(0),
                    MAX_VOCAB,
                ),
            ];
            for (field, value, max) in bounds {
                if let Some(m) = too_large(value, max) {
                    return bad(&format!("{field}: {m}"));
                }
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout must be in [0, 1)");
        }
        Ok(())
    }
}

/// One training or scoring example: a user context and an ordered list with labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardExample {
    /// Category of each user attribute.
    pub user_features: Vec<u32>,
    /// History, oldest first.
    pub history: Vec<HistoryItem>,
    /// Semantic-ID tuples of the list's items, in slot order (1..=`list_len` of them).
    pub list: Vec<Vec<u32>>,
    /// Label bits per slot (click 1, like 2, star 4); ignored when scoring.
    pub labels: Vec<u8>,
    /// Stage-1 retriever score per slot (empty: none). A model with
    /// [`RewardConfig::use_retriever_score`] needs one per listed item; others ignore them.
    #[serde(default)]
    pub scores: Vec<f32>,
}

impl RewardExample {
    /// An example from a request's pool: the list `positions` of `candidates`, labelled with
    /// the candidates' labels, so retrieved items that were never consumed (label 0) teach the
    /// model that such items are not clicked.
    pub fn from_pool(
        user_features: Vec<u32>,
        history: Vec<HistoryItem>,
        candidates: &[Vec<u32>],
        candidate_labels: &[u8],
        positions: &[usize],
    ) -> Self {
        Self {
            user_features,
            history,
            list: positions.iter().map(|&p| candidates[p].clone()).collect(),
            labels: positions.iter().map(|&p| candidate_labels[p]).collect(),
            scores: Vec::new(),
        }
    }

    /// Sets the listed items' retriever scores from the pool's `candidate_scores` (empty:
    /// none) at `positions`, the list's candidate positions.
    pub fn with_pool_scores(mut self, candidate_scores: &[f32], positions: &[usize]) -> Self {
        self.scores = if candidate_scores.is_empty() {
            Vec::new()
        } else {
            positions.iter().map(|&p| candidate_scores[p]).collect()
        };
        self
    }
}

/// The list-wise user-response model.
#[derive(Module, Debug)]
pub struct UserResponseModel {
    embedder: ContextEmbedder,
    slot_emb: Embedding,
    encoder: Encoder,
    /// `d -> 3` logits: click, like, star.
    head: Linear,
    /// Projection of the listed items' retriever scores (with `use_retriever_score`).
    score_proj: Option<Linear>,
    list_len: usize,
}

impl UserResponseModel {
    /// A freshly initialised model; the same seed gives the same weights.
    ///
    /// # Errors
    /// [`RewardError::InvalidConfig`].
    pub fn new(config: &RewardConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let d = config.d_model;
        Ok(init_seeded(device, config.seed, || Self {
            embedder: ContextEmbedder::new(
                &config.vocab_sizes,
                &config.user_field_sizes,
                d,
                config.max_history,
                0,
                device,
            ),
            slot_emb: EmbeddingConfig::new(config.list_len, d).init(device),
            encoder: Encoder::new(
                d,
                config.heads,
                config.d_ff,
                config.layers,
                config.dropout,
                device,
            ),
            head: LinearConfig::new(d, 3).init(device),
            score_proj: config
                .use_retriever_score
                .then(|| LinearConfig::new(1, d).init(device)),
            list_len: config.list_len,
        }))
    }

    /// Per-slot behaviour logits `[B, L, 3]` (`L` = the longest list of the batch; slots past
    /// a list's end are padding, masked in attention and in the loss).
    ///
    /// # Errors
    /// [`RewardError::InvalidInput`] naming the example for an empty or too long list, or
    /// tuples and features that do not fit the vocabularies.
    pub fn forward(&self, examples: &[RewardExample], device: &Device) -> Result<Tensor<3>> {
        if examples.is_empty() {
            return Err(RewardError::InvalidInput("empty batch".into()));
        }
        for (r, e) in examples.iter().enumerate() {
            self.embedder
                .check_context(r, &e.user_features, &e.history)?;
            if e.list.is_empty() || e.list.len() > self.list_len {
                return Err(RewardError::InvalidInput(format!(
                    "example {r}: list of {} items (need 1..={})",
                    e.list.len(),
                    self.list_len
                )));
            }
            for t in &e.list {
                self.embedder
                    .check_tuple(&format!("example {r}, list"), t)?;
            }
            if self.score_proj.is_some() && e.scores.len() != e.list.len() {
                return Err(RewardError::InvalidInput(format!(
                    "example {r}: {} retriever scores for {} items (this model reads one per item)",
                    e.scores.len(),
                    e.list.len()
                )));
            }
            if e.scores.iter().any(|x| !x.is_finite()) {
                return Err(RewardError::InvalidInput(format!(
                    "example {r}: retriever scores must be finite"
                )));
            }
        }
        let b = examples.len();
        let l = examples.iter().map(|e| e.list.len()).max().unwrap_or(1);
        let contexts: Vec<(&[u32], &[HistoryItem])> = examples
            .iter()
            .map(|e| (e.user_features.as_slice(), e.history.as_slice()))
            .collect();
        let ctx = self.embedder.context(&contexts, device);
        let c = 1 + ctx.history_len;
        let mut pad = Vec::with_capacity(b * (c + l));
        for (r, e) in examples.iter().enumerate() {
            pad.extend_from_slice(&ctx.pad[r * c..(r + 1) * c]);
            pad.extend((0..l).map(|k| k >= e.list.len()));
        }
        let rows: Vec<&[Vec<u32>]> = examples.iter().map(|e| e.list.as_slice()).collect();
        let slots: Vec<i64> = (0..b).flat_map(|_| 0..l as i64).collect();
        let mut items = self.embedder.embed_items(&rows, l, device)
            + self.slot_emb.forward(Tensor::<2, Int>::from_data(
                TensorData::new(slots, [b, l]),
                device,
            ))
            + self.embedder.segment(segment::ITEMS, b, l, device);
        if let Some(proj) = &self.score_proj {
            let mut sc = vec![0f32; b * l];
            for (r, e) in examples.iter().enumerate() {
                sc[r * l..r * l + e.scores.len()].copy_from_slice(&e.scores);
            }
            items = items
                + linear_rows(
                    proj,
                    Tensor::<3>::from_data(TensorData::new(sc, [b, l, 1]), device),
                );
        }
        let x = Tensor::cat(vec![ctx.x, items], 1);
        let h = self
            .encoder
            .forward(x, key_padding_bias(&pad, b, c + l, device));
        let [_, _, d] = h.dims();
        Ok(linear_rows(&self.head, h.slice([0..b, c..c + l, 0..d])))
    }

    /// Per-slot behaviour probabilities `[B, L, 3]` (sigmoid of [`UserResponseModel::forward`]).
    ///
    /// # Errors
    /// As [`UserResponseModel::forward`].
    pub fn probabilities(&self, examples: &[RewardExample], device: &Device) -> Result<Tensor<3>> {
        Ok(sigmoid(self.forward(examples, device)?))
    }

    /// Mean binary cross-entropy over every real slot and behaviour (padded slots masked),
    /// computed stably from logits: `max(x, 0) - x y + ln(1 + exp(-|x|))`.
    ///
    /// # Errors
    /// As [`UserResponseModel::forward`]; label bits above 7 are rejected.
    pub fn loss(&self, examples: &[RewardExample], device: &Device) -> Result<Tensor<1>> {
        let sum = self.loss_sum(examples, device)?;
        Ok(sum.div_scalar(Self::loss_count(examples)))
    }

    /// The number of terms [`UserResponseModel::loss`] averages over `examples`: 3
    /// behaviours per labelled slot.
    pub fn loss_count(examples: &[RewardExample]) -> f32 {
        examples.iter().map(|e| 3.0 * e.labels.len() as f32).sum()
    }

    /// The summed binary cross-entropy of [`UserResponseModel::loss`] `[1]`, so shards of a
    /// batch can be divided by the whole batch's [`UserResponseModel::loss_count`].
    ///
    /// # Errors
    /// As [`UserResponseModel::loss`].
    pub fn loss_sum(&self, examples: &[RewardExample], device: &Device) -> Result<Tensor<1>> {
        let logits = self.forward(examples, device)?;
        let [b, l, _] = logits.dims();
        let mut y = vec![0f32; b * l * 3];
        let mut m = vec![0f32; b * l * 3];
        for (r, e) in examples.iter().enumerate() {
            if e.labels.len() != e.list.len() || e.labels.iter().any(|&x| x > 7) {
                return Err(RewardError::InvalidInput(format!(
                    "example {r}: need one label (0..=7) per list item"
                )));
            }
            for (k, &lab) in e.labels.iter().enumerate() {
                for (j, bit) in [1u8, 2, 4].iter().enumerate() {
                    y[(r * l + k) * 3 + j] = f32::from(u8::from(lab & bit != 0));
                    m[(r * l + k) * 3 + j] = 1.0;
                }
            }
        }
        let y = Tensor::<3>::from_data(TensorData::new(y, [b, l, 3]), device);
        let m = Tensor::<3>::from_data(TensorData::new(m, [b, l, 3]), device);
        let bce = logits.clone().clamp_min(0.0) - logits.clone() * y
            + (logits.abs().neg().exp() + 1.0).log();
        Ok((bce * m).sum().reshape([1]))
    }

    /// Saves configuration and weights into `dir` (temporary names, then rename) and the
    /// checksums of the directory's files, which [`UserResponseModel::load`] verifies.
    ///
    /// # Errors
    /// [`RewardError::Nn`] naming the file.
    pub fn save(&self, config: &RewardConfig, dir: &Path) -> Result<()> {
        persist::save_json(&dir.join(CONFIG_FILE), config)?;
        persist::save_weights(self, &dir.join(WEIGHTS_FILE))?;
        persist::write_checksums(dir)?;
        Ok(())
    }

    /// Loads a model saved with [`UserResponseModel::save`] onto `device`.
    ///
    /// # Errors
    /// [`RewardError::Nn`] naming the file for missing files or weights that do
    /// not match the configuration.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, RewardConfig)> {
        persist::verify_checksums(dir)?;
        let config: RewardConfig = persist::load_json(&dir.join(CONFIG_FILE))?;
        let model = persist::load_weights(Self::new(&config, device)?, &dir.join(WEIGHTS_FILE))?;
        Ok((model, config))
    }
}

/// Sum of click probabilities over the slots: `probs [B, L, 3] -> [B]`.
pub fn sum_click_reward(probs: Tensor<3>) -> Tensor<1> {
    let [b, l, _] = probs.dims();
    probs.slice([0..b, 0..l, 0..1]).sum_dim(1).reshape([b])
}

/// DCG-weighted click reward `sum_k p_click(k) / log2(k + 1)`, slots from 1:
/// `probs [B, L, 3] -> [B]`.
pub fn dcg_click_reward(probs: Tensor<3>) -> Tensor<1> {
    let [b, l, _] = probs.dims();
    let w: Vec<f32> = (1..=l).map(|k| 1.0 / ((k + 1) as f32).log2()).collect();
    let w = Tensor::<3>::from_data(TensorData::new(w, [1, l, 1]), &probs.device());
    (probs.slice([0..b, 0..l, 0..1]) * w)
        .sum_dim(1)
        .reshape([b])
}
