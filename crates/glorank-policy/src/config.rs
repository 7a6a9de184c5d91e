//! Policy configuration, checked before any allocation.

use crate::{PolicyError, Result};
use glorank_nn::ModelInputs;
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

/// Largest item-level table [`PolicyArch::item_buckets`] accepts (`2^24` rows).
pub const MAX_ITEM_BUCKETS: usize = 1 << 24;

/// Largest [`ModelInputs::user_lr_scale`] accepted.
pub use glorank_nn::limits::MAX_USER_LR_SCALE;

/// Content vectors of the known items, keyed by their semantic IDs: what
/// [`PolicyConfig::content`] adds to each candidate's input. Stored in the policy's
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

/// The policy's architecture: the `[policy]` section of the configuration, and the part of
/// [`PolicyConfig`] that is not derived from the data. Every default of the policy is here.
///
/// ```
/// use glorank_policy::{ActionSpace, PolicyArch};
///
/// let arch = PolicyArch::default().with_size(64, 4, 1).with_action_space(ActionSpace::LocalIndex);
/// assert_eq!((arch.d_model, arch.d_ff()), (64, 256));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyArch {
    /// Model width `d` (default 128).
    pub d_model: usize,
    /// Attention heads (default 4); must divide `d_model`.
    pub heads: usize,
    /// Encoder layers and decoder layers, each (default 2).
    pub layers: usize,
    /// Dropout during training (default 0.1).
    pub dropout: f64,
    /// Global semantic-ID heads (`global`, the default) or the local-index ablation
    /// (`local-index`).
    pub action_space: ActionSpace,
    /// How tokens are scored (default [`OutputHead::CandidateAware`], see [`OutputHead`]).
    /// Only the global action space accepts a head other than `global`.
    pub output_head: OutputHead,
    /// Add to each global head the dot product of the decoder state with that level's token
    /// embeddings (weight tying on top of the linear head; default false).
    pub tie_heads: bool,
    /// Rows of the item-level embedding added to every history item and candidate next to
    /// its semantic-ID tokens, indexed by a hash of the whole tuple and zero-initialised
    /// (0 disables it; default 0). The output side stays the global per-level codebook.
    pub item_buckets: usize,
    /// At the first token of every slot after the first, add the encoder's output at the
    /// candidate just completed to the decoder's input, next to that token's embedding: the
    /// decoder then reads which item it chose in context, as Seq2Slate's pointer decoder
    /// does, not only its semantic-ID tokens (default false). Global action space only: the
    /// local-index ablation already reads its chosen candidates.
    pub chosen_item_input: bool,
    /// Give each candidate its content vector (genres, year, title-word buckets: what the
    /// baselines read next to their item-ID embeddings) through a learned projection, looked
    /// up by its semantic ID ([`PolicyConfig::content`] holds the table; default false).
    /// Needs a dataset with item features.
    pub item_content: bool,
    /// Seed of the weight initialisation (default 0).
    pub seed: u64,
}

impl Default for PolicyArch {
    fn default() -> Self {
        Self {
            d_model: 128,
            heads: 4,
            layers: 2,
            dropout: 0.1,
            action_space: ActionSpace::Global,
            output_head: OutputHead::CandidateAware,
            tie_heads: false,
            item_buckets: 0,
            chosen_item_input: false,
            item_content: false,
            seed: 0,
        }
    }
}

impl PolicyArch {
    /// Sets width, heads and layers (encoder and decoder each).
    pub fn with_size(mut self, d_model: usize, heads: usize, layers: usize) -> Self {
        self.d_model = d_model;
        self.heads = heads;
        self.layers = layers;
        self
    }

    /// Sets the action space. The local-index ablation also gets the only head it has,
    /// [`OutputHead::Global`] (its outputs are positions, not codes), and no chosen-item
    /// input (it reads its chosen candidates already).
    pub fn with_action_space(mut self, action_space: ActionSpace) -> Self {
        self.action_space = action_space;
        if action_space == ActionSpace::LocalIndex {
            self.output_head = OutputHead::Global;
            self.chosen_item_input = false;
        }
        self
    }

    /// Sets the output head (see [`OutputHead`]).
    pub fn with_output_head(mut self, head: OutputHead) -> Self {
        self.output_head = head;
        self
    }

    /// Sets head tying (see [`PolicyArch::tie_heads`]).
    pub fn with_tied_heads(mut self, tie: bool) -> Self {
        self.tie_heads = tie;
        self
    }

    /// Sets the rows of the item-level embedding (see [`PolicyArch::item_buckets`]).
    pub fn with_item_buckets(mut self, buckets: usize) -> Self {
        self.item_buckets = buckets;
        self
    }

    /// Sets [`PolicyArch::chosen_item_input`].
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

    /// Feed-forward width: `4 * d_model`.
    pub fn d_ff(&self) -> usize {
        4 * self.d_model
    }

    /// Checks every value against its range and `glorank_nn::limits`, before anything is
    /// allocated.
    ///
    /// # Errors
    /// [`PolicyError::InvalidConfig`] naming `policy.FIELD`.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: &str| {
            Err(PolicyError::InvalidConfig(format!("policy.{field}: {msg}")))
        };
        if self.d_model == 0 || self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return bad("heads", "must be > 0 and divide d_model");
        }
        if self.layers == 0 {
            return bad("layers", "must be > 0");
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
        use glorank_nn::limits::*;
        let bounds = [
            ("d_model", self.d_model, MAX_D_MODEL),
            ("heads", self.heads, MAX_HEADS),
            ("layers", self.layers, MAX_LAYERS),
            (
                "d_model (feed-forward width 4 d_model)",
                self.d_ff(),
                MAX_D_FF,
            ),
            (
                "item_buckets x d_model",
                self.item_buckets.saturating_mul(self.d_model),
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

/// Everything [`Policy`](crate::Policy) is built from: the shapes derived from the data
/// (vocabularies, user attributes, list and pool sizes), the architecture ([`PolicyArch`])
/// and the model inputs ([`ModelInputs`]). Saved as `policy.json` next to the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Vocabulary size of each semantic-ID level, dedupe level included (its length is the
    /// depth `D + 1`).
    pub vocab_sizes: Vec<usize>,
    /// Number of categories of each user attribute (empty: no user features).
    pub user_field_sizes: Vec<usize>,
    /// Longest history (default 50).
    pub max_history: usize,
    /// Largest candidate pool (default 50); the LAS head has this many outputs.
    pub max_candidates: usize,
    /// Items per list `L` (default 6).
    pub list_len: usize,
    /// The architecture.
    pub arch: PolicyArch,
    /// Which per-request signals the policy reads: the retriever score (as
    /// [`ModelInputs::retriever_input`]; a served request must then carry
    /// `retriever_scores`), the exposure counts (`ln(1 + count)`; requests must carry
    /// `exposures`), and the user tables' learning-rate factor.
    pub inputs: ModelInputs,
    /// Content vectors added to each candidate's input through a learned projection, looked
    /// up by the candidate's semantic ID: present exactly when
    /// [`PolicyArch::item_content`] is on. A tuple the table lacks gets zeros; a cold item
    /// whose codes equal a known item's reads that item's vector.
    pub content: Option<ItemContent>,
}

impl PolicyConfig {
    /// A default configuration for semantic IDs with these per-level vocabularies.
    pub fn new(vocab_sizes: Vec<usize>) -> Self {
        Self {
            vocab_sizes,
            user_field_sizes: Vec::new(),
            max_history: 50,
            max_candidates: 50,
            list_len: 6,
            arch: PolicyArch::default(),
            inputs: ModelInputs::default(),
            content: None,
        }
    }

    /// Sets the architecture; the local-index ablation gets its only head and no
    /// chosen-item input ([`PolicyArch::with_action_space`]).
    pub fn with_arch(mut self, arch: PolicyArch) -> Self {
        let action_space = arch.action_space;
        self.arch = arch.with_action_space(action_space);
        self
    }

    /// Sets the model inputs.
    pub fn with_inputs(mut self, inputs: ModelInputs) -> Self {
        self.inputs = inputs;
        self
    }

    /// Sets the content table (and turns [`PolicyArch::item_content`] on).
    pub fn with_content(mut self, content: ItemContent) -> Self {
        self.arch.item_content = true;
        self.content = Some(content);
        self
    }

    /// Sets the user attribute sizes.
    pub fn with_user_fields(mut self, sizes: Vec<usize>) -> Self {
        self.user_field_sizes = sizes;
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

    /// Tokens per item (`D + 1`).
    pub fn depth(&self) -> usize {
        self.vocab_sizes.len()
    }

    /// Decoding steps per list: `L * depth` (global) or `L` (local index).
    pub fn steps(&self) -> usize {
        match self.arch.action_space {
            ActionSpace::Global => self.list_len * self.depth(),
            ActionSpace::LocalIndex => self.list_len,
        }
    }

    /// Reads a saved `policy.json` value, including the flat layout policies were saved in
    /// before the architecture and the inputs had sections of their own.
    ///
    /// # Errors
    /// [`PolicyError::InvalidConfig`] naming what does not fit.
    pub fn from_saved(mut value: serde_json::Value) -> Result<Self> {
        if value.get("d_model").is_some() {
            value = upgrade_flat_layout(value)?;
        }
        serde_json::from_value(value).map_err(|e| PolicyError::InvalidConfig(e.to_string()))
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`PolicyError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        self.arch.validate()?;
        self.inputs
            .validate()
            .map_err(|e| PolicyError::InvalidConfig(e.to_string()))?;
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
        match (&self.content, self.arch.item_content) {
            (None, true) => {
                return bad(
                    "policy.item_content",
                    "is on but the configuration carries no content table",
                );
            }
            (Some(_), false) => {
                return bad("content", "a content table needs policy.item_content on");
            }
            _ => {}
        }
        if let Some(c) = &self.content {
            if c.dim == 0 || c.vectors.len() != c.tuples.len() * c.dim {
                return bad(
                    "content",
                    "needs dim >= 1 and tuples.len() x dim vector values",
                );
            }
            if c.tuples.iter().any(|t| t.len() != self.vocab_sizes.len()) {
                return bad("content", "every tuple needs one token per level");
            }
            if c.vectors.iter().any(|v| !v.is_finite()) {
                return bad("content", "a vector value is not finite");
            }
        }
        if self.list_len == 0 || self.max_candidates < self.list_len {
            return bad(
                "list_len/max_candidates",
                "need 1 <= list_len <= max_candidates",
            );
        }
        use glorank_nn::limits::*;
        let table = |rows: usize| rows.saturating_mul(self.arch.d_model);
        let bounds = [
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
        ];
        for (field, value, max) in bounds {
            if let Some(m) = too_large(value, max) {
                return bad(field, &m);
            }
        }
        Ok(())
    }
}

/// The current layout of a `policy.json` saved in the earlier flat layout: the architecture
/// fields move into `arch`, the input switches into `inputs` (`use_retriever_score` becomes
/// `retriever_score`, `use_exposures` becomes `exposures`), `item_content` becomes `content`.
/// Fields those files could omit get the values they were read with then (`output_head`:
/// `Global`).
fn upgrade_flat_layout(value: serde_json::Value) -> Result<serde_json::Value> {
    use serde_json::{Map, Value};
    let Value::Object(mut old) = value else {
        return Err(PolicyError::InvalidConfig("not a JSON object".into()));
    };
    let mut take = |k: &str| old.remove(k);
    let (d, enc, dec, ff) = (
        take("d_model"),
        take("encoder_layers"),
        take("decoder_layers"),
        take("d_ff"),
    );
    let d_model = d.as_ref().and_then(Value::as_u64).unwrap_or(0);
    if enc != dec || ff.as_ref().and_then(Value::as_u64) != Some(4 * d_model) {
        return Err(PolicyError::InvalidConfig(format!(
            "a policy saved with encoder_layers {enc:?}, decoder_layers {dec:?} and d_ff {ff:?}: \
             this version builds equal encoder and decoder stacks with d_ff = 4 d_model"
        )));
    }
    let mut arch = Map::new();
    arch.insert("d_model".into(), d.unwrap_or(Value::Null));
    arch.insert("layers".into(), enc.unwrap_or(Value::Null));
    for k in [
        "heads",
        "dropout",
        "action_space",
        "tie_heads",
        "item_buckets",
        "chosen_item_input",
        "seed",
    ] {
        if let Some(v) = take(k) {
            arch.insert(k.into(), v);
        }
    }
    arch.insert(
        "output_head".into(),
        take("output_head").unwrap_or_else(|| "Global".into()),
    );
    let content = take("item_content").unwrap_or(Value::Null);
    arch.insert("item_content".into(), Value::Bool(!content.is_null()));
    let mut inputs = Map::new();
    for (from, to) in [
        ("use_retriever_score", "retriever_score"),
        ("retriever_input", "retriever_input"),
        ("use_exposures", "exposures"),
        ("user_lr_scale", "user_lr_scale"),
    ] {
        if let Some(v) = take(from) {
            inputs.insert(to.into(), v);
        }
    }
    old.insert("arch".into(), Value::Object(arch));
    old.insert("inputs".into(), Value::Object(inputs));
    old.insert("content".into(), content);
    Ok(Value::Object(old))
}
