//! The one configuration tree: [`Config`], read by `glorank run`, `prepare`, `tokenize`,
//! `train`, `eval`, `baselines`, `rerank`, `serve` and the Python bindings from the same TOML
//! file.
//!
//! ```toml
//! [data]          # glorank_data::DataConfig: the dataset and the 50-to-6 protocol
//! [tokenizer]     # TokenizerConfig: how semantic IDs are learned
//! [inputs]        # ModelInputs: retriever score, exposures, user learning-rate scale
//! [policy]        # PolicyArch: the policy's architecture
//! [evaluator]     # RewardTrainConfig (+ [evaluator.optim])
//! [simulator]     # RewardTrainConfig (+ [simulator.optim])
//! [sft]           # SftConfig (+ [sft.optim], [sft.optim.schedule], [sft.demonstrations])
//! [rl]            # RlConfig (+ [rl.optim])
//! [baselines]     # BaselineConfig (+ [baselines.optim])
//! [eval]          # EvalConfig: how the test table is made
//! [serve]         # ServeConfig: limits and decoding of `glorank rerank` and `glorank serve`
//! ```
//!
//! Every section and field is optional: a file names what it changes, and every default is
//! written once, in the `Default` of its section. Each trainer's `optim` table starts from
//! that trainer's defaults (RL's rate is not SFT's), so `[rl.optim] batch_size = 32` keeps
//! RL's learning rate. Unknown keys are errors with the file's line and column; keys of the
//! earlier layout (`policy.use_retriever_score`, `sft.learning_rate`, `eval_beam`, ...) are
//! errors that name their new place. Front-ends change single keys with
//! [`Config::with_overrides`] (`--set sft.epochs=3` on the command line).
//!
//! ```
//! use glorank::Config;
//!
//! let c = Config::from_toml("[sft]\nepochs = 3\n[rl.optim]\nbatch_size = 32\n", "c.toml".as_ref())?;
//! assert_eq!(c.sft.epochs, 3);
//! assert_eq!((c.rl.optim.batch_size, c.rl.optim.learning_rate), (32, 5e-5));
//! let c = c.with_overrides(&["inputs.retriever_score=true", "eval.beam=4"])?;
//! assert!(c.inputs.retriever_score);
//! let moved = Config::from_toml("[policy]\nuse_exposures = true\n", "old.toml".as_ref());
//! assert!(moved.unwrap_err().to_string().contains("inputs.exposures"));
//! # Ok::<(), glorank::Error>(())
//! ```

mod load;
mod presets;
mod serve;
mod tokenizer;

pub use serve::ServeConfig;
pub use tokenizer::TokenizerConfig;

use crate::{Error, Result};
use glorank_data::{DataConfig, LogConfig};
use glorank_nn::ModelInputs;
use glorank_policy::{ActionSpace, OutputHead, PolicyArch};
use glorank_train::{BaselineConfig, RewardTrainConfig, RlConfig, SftConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The widest beam [`EvalConfig::beam`] accepts.
pub const MAX_EVAL_BEAM: usize = 64;

/// How the test table is made (the `[eval]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EvalConfig {
    /// Beam width of the GloRank rows' lists (1: greedy, the default; `W > 1`: the best
    /// list of a beam search over whole lists). Greedy token-by-token decoding picks the
    /// semantic-ID prefix with the most probability mass, not the prefix of the most
    /// probable item, so its lists crowd into one code cluster; the demo presets use 8.
    /// Model selection during training follows `sft.valid_beam` and `rl.valid_beam`. A run
    /// is served with this beam unless `serve.decode` says otherwise.
    pub beam: usize,
    /// Prefix-repetition penalty of the GloRank rows' decoding: each token loses this much
    /// per earlier item of the list sharing its semantic-ID prefix (0: none, the default).
    pub prefix_penalty: f32,
    /// Train and report PRM, Seq2Slate and DLCM (default true).
    pub baselines: bool,
    /// Train and report the GloRank local-index (LAS) ablation (default true).
    pub las: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            beam: 1,
            prefix_penalty: 0.0,
            baselines: true,
            las: true,
        }
    }
}

impl EvalConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `eval.beam` or `eval.prefix_penalty`.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_EVAL_BEAM).contains(&self.beam) {
            return Err(Error::InvalidConfig {
                field: "eval.beam".into(),
                message: format!("expected 1..={MAX_EVAL_BEAM}, got {}", self.beam),
            });
        }
        glorank_trie::check_prefix_penalty(self.prefix_penalty).map_err(|e| Error::InvalidConfig {
            field: "eval.prefix_penalty".into(),
            message: e.to_string(),
        })
    }
}

/// The root of the configuration tree: every section, each optional in a TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The dataset and the protocol (`glorank prepare`).
    pub data: DataConfig,
    /// Semantic IDs (`glorank tokenize`).
    pub tokenizer: TokenizerConfig,
    /// The per-request signals every model that can read them reads: the retriever score
    /// (the policy, the baselines, the reward models), the exposure counts and the user
    /// tables' learning-rate factor (the policy, the baselines).
    pub inputs: ModelInputs,
    /// The policy's architecture.
    pub policy: PolicyArch,
    /// Evaluator training (the RL reward; train split only).
    pub evaluator: RewardTrainConfig,
    /// Simulator training (Average Reward; every logged slate, its own seed).
    pub simulator: RewardTrainConfig,
    /// Supervised pre-training.
    pub sft: SftConfig,
    /// Group-relative RL post-training.
    pub rl: RlConfig,
    /// The baseline rerankers (PRM, DLCM, Seq2Slate).
    pub baselines: BaselineConfig,
    /// The test table.
    pub eval: EvalConfig,
    /// Serving (`glorank rerank`, `glorank serve`).
    pub serve: ServeConfig,
    /// Reading request logs (`glorank check-log`): the feedback signals, the label, the
    /// budget of invalid rows.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: DataConfig::default(),
            tokenizer: TokenizerConfig::default(),
            inputs: ModelInputs::default(),
            policy: PolicyArch::default(),
            evaluator: RewardTrainConfig::default(),
            simulator: RewardTrainConfig::default().with_seed(1),
            sft: SftConfig::default(),
            rl: RlConfig::default(),
            baselines: BaselineConfig::default(),
            eval: EvalConfig::default(),
            serve: ServeConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Config {
    /// Parses a TOML document over the defaults (see the module docs) and checks every
    /// value; `origin` names the file in errors.
    ///
    /// # Errors
    /// [`Error::Format`] naming `origin` (TOML's line and column, an unknown key, a key of
    /// the earlier layout with its new place); [`Error::InvalidConfig`] and the sections'
    /// errors naming the field.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        Self::default().overlay(text, origin)
    }

    /// Reads a TOML file ([`Config::from_toml`]).
    ///
    /// # Errors
    /// As [`Config::from_toml`], plus [`Error::Io`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::read_text(path)?;
        Self::from_toml(&text, path)
    }

    /// This configuration with a TOML document laid over it: the keys the document names
    /// replace this configuration's values, the others stay.
    ///
    /// # Errors
    /// As [`Config::from_toml`].
    pub fn overlay(&self, text: &str, origin: &Path) -> Result<Self> {
        let c = load::parse_over(self, text, origin)?;
        c.validate()?;
        Ok(c)
    }

    /// This configuration with a TOML file laid over it ([`Config::overlay`]).
    ///
    /// # Errors
    /// As [`Config::overlay`], plus [`Error::Io`].
    pub fn overlay_file(&self, path: &Path) -> Result<Self> {
        let text = crate::read_text(path)?;
        self.overlay(&text, path)
    }

    /// This configuration with `section.key=value` assignments applied in order
    /// (`sft.epochs=3`, `sft.optim.learning_rate=2e-3`, `data.dataset=ml-1m`). A value is
    /// read as TOML (a number, `true`, `"text"`, `[1, 2]`), or as a string when it is not
    /// TOML.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the assignment (no `=`, an unknown key, a value of
    /// the wrong type, a moved key) and the checks of [`Config::from_toml`].
    pub fn with_overrides<S: AsRef<str>>(&self, assignments: &[S]) -> Result<Self> {
        let mut c = self.clone();
        for a in assignments {
            c = load::assign(&c, a.as_ref())?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Sets the seed of the data shuffling, the tokenizer and every model (the simulator
    /// gets `seed + 1`, so it never shares the evaluator's stream).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.data.seed = seed;
        self.tokenizer.seed = seed;
        self.policy.seed = seed;
        self.evaluator.optim.seed = seed;
        self.simulator.optim.seed = seed.wrapping_add(1);
        self.sft.optim.seed = seed;
        self.rl.optim.seed = seed;
        self.baselines.optim.seed = seed;
        self
    }

    /// The configuration as TOML (every section, every field).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every section, and the values that must agree across sections.
    ///
    /// # Errors
    /// The first bad field, named with its section.
    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.tokenizer.validate()?;
        self.inputs.validate()?;
        self.policy.validate()?;
        self.evaluator.validate("evaluator")?;
        self.simulator.validate("simulator")?;
        self.sft.validate()?;
        self.rl.validate()?;
        self.baselines.validate()?;
        self.eval.validate()?;
        self.serve.validate()?;
        self.log.validate()?;
        let scores_candidates = self.policy.output_head != OutputHead::Global
            || self.policy.action_space == ActionSpace::LocalIndex;
        if self.sft.label_loss > 0.0 && !scores_candidates {
            return Err(Error::InvalidConfig {
                field: "sft.label_loss".into(),
                message: "needs a policy that scores the candidates: policy.output_head \
                          \"candidate-aware\" or \"pointer\" (the global head scores tokens)"
                    .into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
