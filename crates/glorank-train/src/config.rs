//! The TOML-serialisable training configuration: one section per stage, every value checked
//! before anything is allocated.
//!
//! ```toml
//! [policy]
//! d_model = 128
//! layers = 2
//!
//! [sft]
//! epochs = 10
//! batch_size = 64
//!
//! [rl]
//! steps = 300
//! group_size = 8
//! ```
//!
//! Every field has a default, so a file names only what it changes; unknown fields are
//! errors that name the field.

use crate::reward::RewardTrainConfig;
use crate::rl::RlConfig;
use crate::sft::SftConfig;
use crate::{Result, TrainError};
use glorank_policy::{ActionSpace, OutputHead, PolicyConfig, RetrieverInput};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The policy's architecture options (the vocabularies and shapes come from the data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyOptions {
    /// Model width (default 128).
    pub d_model: usize,
    /// Attention heads (default 4).
    pub heads: usize,
    /// Encoder and decoder layers each (default 2).
    pub layers: usize,
    /// Dropout (default 0.1).
    pub dropout: f64,
    /// Weight-tied heads on top of the linear heads (default false).
    pub tie_heads: bool,
    /// Feed the stage-1 retriever score of each candidate (default false). Under the
    /// 50-to-6 protocol the retriever is fitted on the training slates, so on training
    /// requests it scores the logged items in-sample (high) while on validation and test
    /// requests its own top picks are the negatives: the feature points one way in training
    /// and the other way at evaluation (measured on the synthetic world: MF order gives
    /// validation Precision@6 0.019 against 0.091 for random lists).
    pub use_retriever_score: bool,
    /// What the policy reads from the retriever scores when `use_retriever_score` is on:
    /// `score` (the raw score, default), `rank` (the candidate's rank in its pool, scaled to
    /// [0, 1]) or `score-and-rank` ([`RetrieverInput`]).
    pub retriever_input: RetrieverInput,
    /// Feed each candidate's exposure count: how often the item was a non-clicked
    /// candidate in the user's earlier training requests (default false; see
    /// [`PolicyConfig::use_exposures`] and [`glorank_data::Exposures`]).
    pub use_exposures: bool,
    /// `global` semantic IDs (default) or the `local-index` (LAS) ablation.
    pub action_space: ActionSpace,
    /// Rows of the zero-initialised item-level embedding added next to the semantic-ID
    /// tokens of history items and candidates (0: tokens only; default 0). See
    /// [`PolicyConfig::item_buckets`].
    pub item_buckets: usize,
    /// How tokens are scored: `candidate-aware` (default: the linear head per level plus the
    /// pointer scores of the candidates under each token), `global` (the linear head alone,
    /// GloRank as published) or `pointer` (see [`OutputHead`]).
    pub output_head: OutputHead,
    /// Feed the chosen candidate's encoder output to the decoder at the start of the next
    /// slot (default false; see [`PolicyConfig::chosen_item_input`]).
    pub chosen_item_input: bool,
    /// Give each candidate its content vector (genres, year, 16 title-word buckets: what the
    /// baselines read next to their item-ID embeddings) through a learned projection
    /// (default false; see [`PolicyConfig::item_content`]). Needs a dataset with item
    /// features.
    pub item_content: bool,
    /// Learning-rate factor of the user table, user ID included (0: off, the default; see
    /// [`PolicyConfig::user_lr_scale`]): the table starts at zero and is read multiplied by
    /// it.
    pub user_lr_scale: f32,
    /// Seed of the weight initialisation (default 0).
    pub seed: u64,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            d_model: 128,
            heads: 4,
            layers: 2,
            dropout: 0.1,
            tie_heads: false,
            use_retriever_score: false,
            retriever_input: RetrieverInput::Score,
            use_exposures: false,
            action_space: ActionSpace::Global,
            item_buckets: 0,
            output_head: OutputHead::CandidateAware,
            chosen_item_input: false,
            item_content: false,
            user_lr_scale: 0.0,
            seed: 0,
        }
    }
}

impl PolicyOptions {
    /// Applies these options to a data-derived configuration.
    pub fn apply(&self, config: PolicyConfig) -> PolicyConfig {
        let mut c = config
            .with_size(self.d_model, self.heads, self.layers)
            .with_dropout(self.dropout)
            .with_tied_heads(self.tie_heads)
            .with_item_buckets(self.item_buckets)
            .with_output_head(self.output_head)
            .with_chosen_item_input(self.chosen_item_input)
            .with_user_lr_scale(self.user_lr_scale)
            .with_seed(self.seed)
            .with_action_space(self.action_space);
        c.use_retriever_score = self.use_retriever_score;
        c.retriever_input = self.retriever_input;
        c.use_exposures = self.use_exposures;
        c
    }
}

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

/// Every stage's configuration, as read from a TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TrainingConfig {
    /// Policy architecture.
    pub policy: PolicyOptions,
    /// Evaluator training (the RL reward; train split only).
    pub evaluator: RewardTrainConfig,
    /// Simulator training (Average Reward; every logged slate, its own seed).
    pub simulator: RewardTrainConfig,
    /// Supervised pre-training.
    pub sft: SftConfig,
    /// Group-relative RL post-training.
    pub rl: RlConfig,
    /// The baseline rerankers (PRM, DLCM, Seq2Slate).
    pub baselines: glorank_baselines::BaselineConfig,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            policy: PolicyOptions::default(),
            evaluator: RewardTrainConfig::default(),
            simulator: RewardTrainConfig::default().with_seed(1),
            sft: SftConfig::default(),
            rl: RlConfig::default(),
            baselines: glorank_baselines::BaselineConfig::default(),
        }
    }
}

impl TrainingConfig {
    /// Parses a TOML document and checks every value.
    ///
    /// # Errors
    /// [`TrainError::Format`] (with TOML's line and column, named after `origin`) or
    /// [`TrainError::InvalidConfig`] naming the field.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        let c: Self = toml::from_str(text).map_err(|e| TrainError::Format {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and checks a TOML file.
    ///
    /// # Errors
    /// As [`TrainingConfig::from_toml`], plus [`TrainError::Io`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_toml(&text, path)
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every section.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let p = &self.policy;
        check("policy.d_model", p.d_model > 0, "must be > 0")?;
        check(
            "policy.heads",
            p.heads > 0 && p.d_model.is_multiple_of(p.heads.max(1)),
            "must be > 0 and divide d_model",
        )?;
        check("policy.layers", p.layers > 0, "must be > 0")?;
        {
            use glorank_nn::limits::{MAX_D_MODEL, MAX_HEADS, MAX_LAYERS};
            check_max("policy.d_model", p.d_model, MAX_D_MODEL)?;
            check_max("policy.heads", p.heads, MAX_HEADS)?;
            check_max("policy.layers", p.layers, MAX_LAYERS)?;
            check_max(
                "policy.item_buckets",
                p.item_buckets,
                glorank_policy::MAX_ITEM_BUCKETS,
            )?;
        }
        if let Some(message) = glorank_nn::limits::bad_user_lr_scale(p.user_lr_scale) {
            check("policy.user_lr_scale", false, &message)?;
        }
        check(
            "policy.dropout",
            (0.0..1.0).contains(&p.dropout),
            "must be in [0, 1)",
        )?;
        self.evaluator.validate("evaluator")?;
        self.simulator.validate("simulator")?;
        self.sft.validate()?;
        check(
            "sft.label_loss",
            self.sft.label_loss == 0.0
                || p.output_head != OutputHead::Global
                || p.action_space == ActionSpace::LocalIndex,
            "needs a policy that scores the candidates: policy.output_head \"CandidateAware\" \
             or \"Pointer\" (the Global head scores tokens)",
        )?;
        self.rl.validate()?;
        self.baselines
            .validate()
            .map_err(|e| TrainError::InvalidConfig {
                field: "baselines".into(),
                message: e.to_string(),
            })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_files() {
        let c = TrainingConfig::default();
        let back = TrainingConfig::from_toml(&c.to_toml(), Path::new("x.toml")).unwrap();
        assert_eq!(back, c);
        let partial = "[sft]\nepochs = 3\n[sft.demonstrations]\nkind = \"best-of-k\"\nk = 4\n[rl]\nreward = \"labels\"\n";
        let p = TrainingConfig::from_toml(partial, Path::new("x.toml")).unwrap();
        assert_eq!(p.sft.epochs, 3);
        assert_eq!(p.sft.demonstrations, Demonstrations::BestOfK { k: 4 });
        assert_eq!(p.rl.reward, RewardSource::Labels);
        assert_eq!(p.rl.group_size, RlConfig::default().group_size);
        let labels = "[sft.demonstrations]\nkind = \"labels\"\n";
        let p = TrainingConfig::from_toml(labels, Path::new("x.toml")).unwrap();
        assert_eq!(p.sft.demonstrations, Demonstrations::Labels);
        // The label loss needs candidate scores: the default head and the local-index
        // ablation have them.
        for policy in [
            "",
            "[policy]\naction_space = \"LocalIndex\"\noutput_head = \"Global\"\n",
        ] {
            let text = format!("[sft]\nlabel_loss = 0.5\n{policy}");
            let p = TrainingConfig::from_toml(&text, Path::new("x.toml")).unwrap();
            assert_eq!(p.sft.label_loss, 0.5);
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = TrainingConfig::from_toml("[sft]\nbatch_size = 0\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sft.batch_size"), "{e}");
        let e = TrainingConfig::from_toml("[rl]\ngroup_sise = 4\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("group_sise"), "{e}");
        let e = TrainingConfig::from_toml("[policy]\nheads = 3\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("policy.heads"), "{e}");
        for (text, field) in [
            ("[sft]\nvalid_beam = 0\n", "sft.valid_beam"),
            ("[rl]\nvalid_beam = 100000\n", "rl.valid_beam"),
            (
                "[sft.schedule]\nfinal_factor = -1\n",
                "sft.schedule.final_factor",
            ),
            ("[sft]\nlabel_loss = -0.5\n", "sft.label_loss"),
            ("[policy]\nuser_lr_scale = -2.0\n", "policy.user_lr_scale"),
            (
                "[sft]\nlabel_loss = 1.0\n[policy]\noutput_head = \"Global\"\n",
                "sft.label_loss",
            ),
        ] {
            let e = TrainingConfig::from_toml(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
