//! Policy configuration, checked before any allocation.

use crate::{PolicyError, Result};
use glorank_nn::RetrieverInput;
use serde::{Deserialize, Serialize};

/// What one decoding step chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ActionSpace {
    /// GloRank: each item is `depth` tokens of the global semantic-ID vocabulary; the head of
    /// level `l` has one output per code of that level, the same code in every request.
    #[serde(alias = "global")]
    Global,
    /// The local-index ablation (LAS): one step per list slot, a fixed linear head with one
    /// output per *input position* `0..max_candidates`, whose meaning changes per request.
    #[serde(alias = "local-index")]
    LocalIndex,
}

impl ActionSpace {
    /// The name on the command line and in TOML (`global`, `local-index`); saved policy
    /// files spell the variant (`Global`, `LocalIndex`), and both are read.
    pub fn name(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::LocalIndex => "local-index",
        }
    }
}

impl std::fmt::Display for ActionSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ActionSpace {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self> {
        parse_choice(
            s,
            [Self::Global, Self::LocalIndex],
            Self::name,
            "action space",
        )
    }
}

/// How the global policy scores the tokens of a decoding step.
///
/// Write `p_j` for the pointer score of candidate `j` (the decoder state, projected, against
/// `j`'s encoder output, over `sqrt(d)`) and `E_c` for the candidates still available that
/// extend the current prefix with token `c`. The logit of token `c` at level `l` is:
///
/// * [`OutputHead::Global`]: `g_l(h)[c]`, the linear head of the level (GloRank as published);
/// * [`OutputHead::CandidateAware`]: `g_l(h)[c] + logsumexp_{j in E_c} p_j`;
/// * [`OutputHead::Pointer`]: `logsumexp_{j in E_c} p_j` alone. The token chain then
///   factorises exactly an item-level softmax over the remaining pool (a pointer network
///   spelled in semantic-ID tokens).
///
/// The second and third stay invariant to the order of the candidates, and keep the global
/// action space: the same output neuron is the same code in every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OutputHead {
    /// A linear head per level over the global codebook (the default of saved policies
    /// that predate this option).
    #[default]
    #[serde(alias = "global")]
    Global,
    /// The global head plus the log-sum-exp of pointer scores of the candidates under each
    /// token.
    #[serde(alias = "candidate-aware")]
    CandidateAware,
    /// The log-sum-exp of pointer scores alone.
    #[serde(alias = "pointer")]
    Pointer,
}

impl OutputHead {
    /// Every variant, in declaration order.
    pub const ALL: [Self; 3] = [Self::Global, Self::CandidateAware, Self::Pointer];

    /// The name on the command line and in TOML (`global`, `candidate-aware`, `pointer`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::CandidateAware => "candidate-aware",
            Self::Pointer => "pointer",
        }
    }

    /// Whether the linear per-level head contributes.
    pub fn uses_global(self) -> bool {
        self != Self::Pointer
    }

    /// Whether the candidates' pointer scores contribute.
    pub fn uses_pointer(self) -> bool {
        self != Self::Global
    }
}

impl std::fmt::Display for OutputHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OutputHead {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self> {
        parse_choice(s, Self::ALL, Self::name, "output head")
    }
}

/// The choice among `all` whose name (any case) or variant spelling is `s`; otherwise an
/// error naming `what` and listing the names.
fn parse_choice<T: Copy + std::fmt::Debug, const N: usize>(
    s: &str,
    all: [T; N],
    name: fn(T) -> &'static str,
    what: &str,
) -> Result<T> {
    let s = s.trim();
    all.into_iter()
        .find(|&c| name(c).eq_ignore_ascii_case(s) || format!("{c:?}") == s)
        .ok_or_else(|| {
            let names: Vec<&str> = all.into_iter().map(name).collect();
            PolicyError::InvalidConfig(format!(
                "unknown {what} `{s}` (expected {})",
                names.join(", ")
            ))
        })
}

/// Largest item-level table [`PolicyConfig::item_buckets`] accepts (`2^24` rows).
pub const MAX_ITEM_BUCKETS: usize = 1 << 24;

/// Largest [`PolicyConfig::user_lr_scale`] accepted.
pub use glorank_nn::limits::MAX_USER_LR_SCALE;

/// Content vectors of the known items, keyed by their semantic IDs: what
/// [`PolicyConfig::item_content`] adds to each candidate's input. Stored in the policy's
/// configuration, so a saved policy carries them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemContent {
    /// Width of each vector.
    pub dim: usize,
    /// The semantic-ID tuple of each item that has a vector.
    pub tuples: Vec<Vec<u32>>,
    /// Row-major vectors, `tuples.len() x dim`.
    pub vectors: Vec<f32>,
}

/// Hyper-parameters of [`Policy`](crate::Policy). Defaults: d = 128, 4 heads, 2 + 2 layers, dropout 0.1 (see `docs/architecture.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Vocabulary size of each semantic-ID level, dedupe level included (its length is the
    /// depth `D + 1`).
    pub vocab_sizes: Vec<usize>,
    /// Number of categories of each user attribute (empty: no user features).
    pub user_field_sizes: Vec<usize>,
    /// Model width `d` (default 128).
    pub d_model: usize,
    /// Attention heads (default 4); must divide `d_model`.
    pub heads: usize,
    /// Encoder layers (default 2).
    pub encoder_layers: usize,
    /// Decoder layers (default 2).
    pub decoder_layers: usize,
    /// Feed-forward width (default `4 * d_model`).
    pub d_ff: usize,
    /// Dropout during training (default 0.1).
    pub dropout: f64,
    /// Longest history (default 50).
    pub max_history: usize,
    /// Largest candidate pool (default 50); the LAS head has this many outputs.
    pub max_candidates: usize,
    /// Items per list `L` (default 6).
    pub list_len: usize,
    /// Global semantic-ID head or the local-index ablation.
    pub action_space: ActionSpace,
    /// Add a projection of the stage-1 retriever score to each candidate (default false:
    /// under in-sample pools the score points one way in training and the other at test;
    /// a served request must then carry `retriever_scores`).
    pub use_retriever_score: bool,
    /// Which features the retriever scores become when `use_retriever_score` is on: the raw
    /// score (default; what saved policies without the field read), its rank in the pool,
    /// or both ([`RetrieverInput`]).
    #[serde(default)]
    pub retriever_input: RetrieverInput,
    /// Add a projection of each candidate's exposure count, `ln(1 + count)`: how often the
    /// item was shown to this user before without a click (default false; a served request
    /// must then carry `exposures`). Under pools whose retrieved items recur across a user's
    /// requests this separates them from the logged ones, as the "pool novelty" rule does.
    #[serde(default)]
    pub use_exposures: bool,
    /// Add to each global head the dot product of the decoder state with that level's token
    /// embeddings (weight tying on top of the linear head; default false).
    #[serde(default)]
    pub tie_heads: bool,
    /// Rows of the item-level embedding added to every history item and candidate next to
    /// its semantic-ID tokens, indexed by a hash of the whole tuple and zero-initialised
    /// (0 disables it; default 0). The output side stays the global per-level codebook.
    #[serde(default)]
    pub item_buckets: usize,
    /// How tokens are scored (default [`OutputHead::CandidateAware`], see [`OutputHead`];
    /// saved policies without the field read as [`OutputHead::Global`], what they were). Only the global action space accepts a head other than
    /// `Global`.
    #[serde(default)]
    pub output_head: OutputHead,
    /// At the first token of every slot after the first, add the encoder's output at the
    /// candidate just completed to the decoder's input, next to that token's embedding: the
    /// decoder then reads which item it chose in context, as Seq2Slate's pointer decoder
    /// does, not only its semantic-ID tokens (default false; saved policies without the
    /// field read as false, what they were). Global action space only: the local-index
    /// ablation already reads its chosen candidates.
    #[serde(default)]
    pub chosen_item_input: bool,
    /// Content vectors added to each candidate's input through a learned projection, looked
    /// up by the candidate's semantic ID: the inputs the baselines read next to their
    /// item-ID embeddings. A tuple the table lacks gets zeros; a cold item whose codes equal
    /// a known item's reads that item's vector (default none; saved policies without the
    /// field read as none).
    #[serde(default)]
    pub item_content: Option<ItemContent>,
    /// Learning-rate factor of the user table, user ID included (0: off, the default; saved
    /// policies without the field read as off). With `k > 0` the table starts at zero and
    /// is read multiplied by `k`, so under Adam its rows learn about `k` times faster than
    /// the other weights (see `glorank_nn::ContextEmbedder::with_user_scale`): a user's row
    /// is updated only by that user's few training requests.
    #[serde(default)]
    pub user_lr_scale: f32,
    /// Seed of the weight initialisation (default 0).
    pub seed: u64,
}

impl PolicyConfig {
    /// A default configuration for semantic IDs with these per-level vocabularies.
    pub fn new(vocab_sizes: Vec<usize>) -> Self {
        Self {
            vocab_sizes,
            user_field_sizes: Vec::new(),
            d_model: 128,
            heads: 4,
            encoder_layers: 2,
            decoder_layers: 2,
            d_ff: 512,
            dropout: 0.1,
            max_history: 50,
            max_candidates: 50,
            list_len: 6,
            action_space: ActionSpace::Global,
            use_retriever_score: false,
            retriever_input: RetrieverInput::Score,
            use_exposures: false,
            tie_heads: false,
            item_buckets: 0,
            output_head: OutputHead::CandidateAware,
            chosen_item_input: false,
            item_content: None,
            user_lr_scale: 0.0,
            seed: 0,
        }
    }

    /// Sets width, heads, layers (encoder and decoder) and feed-forward width `4 d`.
    pub fn with_size(mut self, d_model: usize, heads: usize, layers: usize) -> Self {
        self.d_model = d_model;
        self.heads = heads;
        self.encoder_layers = layers;
        self.decoder_layers = layers;
        self.d_ff = 4 * d_model;
        self
    }

    /// Sets the user attribute sizes.
    pub fn with_user_fields(mut self, sizes: Vec<usize>) -> Self {
        self.user_field_sizes = sizes;
        self
    }

    /// Sets the action space. The local-index ablation also gets the only head it has,
    /// [`OutputHead::Global`] (its outputs are positions, not codes).
    pub fn with_action_space(mut self, action_space: ActionSpace) -> Self {
        self.action_space = action_space;
        if action_space == ActionSpace::LocalIndex {
            self.output_head = OutputHead::Global;
            self.chosen_item_input = false;
        }
        self
    }

    /// Sets list length, longest history and largest pool.
    pub fn with_shape(
        mut self,
        list_len: usize,
        max_history: usize,
        max_candidates: usize,
    ) -> Self {
        self.list_len = list_len;
        self.max_history = max_history;
        self.max_candidates = max_candidates;
        self
    }

    /// Sets head tying (see [`PolicyConfig::tie_heads`]).
    pub fn with_tied_heads(mut self, tie: bool) -> Self {
        self.tie_heads = tie;
        self
    }

    /// Sets the rows of the item-level embedding (see [`PolicyConfig::item_buckets`]).
    pub fn with_item_buckets(mut self, buckets: usize) -> Self {
        self.item_buckets = buckets;
        self
    }

    /// Sets the output head (see [`OutputHead`]).
    pub fn with_output_head(mut self, head: OutputHead) -> Self {
        self.output_head = head;
        self
    }

    /// Sets [`PolicyConfig::user_lr_scale`].
    pub fn with_user_lr_scale(mut self, scale: f32) -> Self {
        self.user_lr_scale = scale;
        self
    }

    /// Sets [`PolicyConfig::chosen_item_input`].
    pub fn with_chosen_item_input(mut self, on: bool) -> Self {
        self.chosen_item_input = on;
        self
    }

    /// Sets the dropout.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Tokens per item (`D + 1`).
    pub fn depth(&self) -> usize {
        self.vocab_sizes.len()
    }

    /// Decoding steps per list: `L * depth` (global) or `L` (local index).
    pub fn steps(&self) -> usize {
        match self.action_space {
            ActionSpace::Global => self.list_len * self.depth(),
            ActionSpace::LocalIndex => self.list_len,
        }
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`PolicyError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &str, msg: &str| Err(PolicyError::InvalidConfig(format!("{field}: {msg}")));
        if self.vocab_sizes.is_empty() || self.vocab_sizes.contains(&0) {
            return bad(
                "vocab_sizes",
                "need at least one level, each with >= 1 token",
            );
        }
        if self.user_field_sizes.contains(&0) {
            return bad("user_field_sizes", "every attribute needs >= 1 category");
        }
        if self.d_model == 0 || self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return bad(
                "d_model/heads",
                "d_model must be a positive multiple of heads",
            );
        }
        if self.encoder_layers == 0 || self.decoder_layers == 0 || self.d_ff == 0 {
            return bad("layers/d_ff", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", "must be in [0, 1)");
        }
        if self.action_space == ActionSpace::LocalIndex && self.output_head != OutputHead::Global {
            return bad(
                "output_head",
                "the local-index ablation has only the global head (its outputs are positions)",
            );
        }
        if let Some(c) = &self.item_content {
            if c.dim == 0 || c.vectors.len() != c.tuples.len() * c.dim {
                return bad(
                    "item_content",
                    "needs dim >= 1 and tuples.len() x dim vector values",
                );
            }
            if c.tuples.iter().any(|t| t.len() != self.vocab_sizes.len()) {
                return bad("item_content", "every tuple needs one token per level");
            }
            if c.vectors.iter().any(|v| !v.is_finite()) {
                return bad("item_content", "a vector value is not finite");
            }
        }
        if let Some(message) = glorank_nn::limits::bad_user_lr_scale(self.user_lr_scale) {
            return bad("user_lr_scale", &message);
        }
        if self.action_space == ActionSpace::LocalIndex && self.chosen_item_input {
            return bad(
                "chosen_item_input",
                "the local-index ablation already reads its chosen candidates",
            );
        }
        if self.item_buckets > MAX_ITEM_BUCKETS {
            return bad(
                "item_buckets",
                &format!("at most {MAX_ITEM_BUCKETS} rows (0 disables the table)"),
            );
        }
        if self.list_len == 0 || self.max_candidates < self.list_len {
            return bad(
                "list_len/max_candidates",
                "need 1 <= list_len <= max_candidates",
            );
        }
        use glorank_nn::limits::*;
        let d = self.d_model;
        let table = |rows: usize| rows.saturating_mul(d);
        let bounds = [
            ("d_model", d, MAX_D_MODEL),
            ("heads", self.heads, MAX_HEADS),
            ("encoder_layers", self.encoder_layers, MAX_LAYERS),
            ("decoder_layers", self.decoder_layers, MAX_LAYERS),
            ("d_ff", self.d_ff, MAX_D_FF),
            ("max_history", self.max_history, MAX_POSITIONS),
            ("max_candidates", self.max_candidates, MAX_POSITIONS),
            ("vocab_sizes (levels)", self.vocab_sizes.len(), MAX_LEVELS),
            (
                "vocab_sizes",
                self.vocab_sizes.iter().copied().max().unwrap_or(0),
                MAX_VOCAB,
            ),
            (
                "user_field_sizes",
                self.user_field_sizes.iter().copied().max().unwrap_or(0),
                MAX_VOCAB,
            ),
            (
                "vocab_sizes x d_model",
                table(self.vocab_sizes.iter().sum()),
                MAX_TABLE_ELEMENTS,
            ),
            (
                "item_buckets x d_model",
                table(self.item_buckets),
                MAX_TABLE_ELEMENTS,
            ),
        ];
        for (field, value, max) in bounds {
            if let Some(m) = too_large(value, max) {
                return bad(field, &m);
            }
        }
        Ok(())
    }
}
