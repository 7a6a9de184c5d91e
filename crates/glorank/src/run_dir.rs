//! The layout of a run directory, owned by one type.

use crate::{Error, Result};
use glorank_reward::RewardRole;
use glorank_train::StageOutput;
use std::path::{Path, PathBuf};

/// A run directory: every artifact path of a run is a method here, so stages, front-ends
/// and tests never join path strings themselves.
///
/// ```text
/// RUN/
///   config.toml                         the configuration the run was made with
///   dataset.bin, summary.json           the prepared dataset (glorank-data)
///   tokenizer.json, semantic_ids.json,  the tokenizer and its table (glorank-tokenizer)
///     stats.json, rqvae.bpk
///   evaluator/, simulator/              reward models; *_checkpoint/, *_log.jsonl
///   policy_sft/, sft_checkpoint/, sft_log.jsonl
///   policy_rl/, rl_checkpoint/, rl_log.jsonl
///   las/                                the local-index ablation, itself a run directory
///   metrics.json, predictions.jsonl, report.md, *.svg
/// ```
///
/// ```
/// use glorank::RunDir;
///
/// let run = RunDir::new("runs/demo");
/// assert!(run.policy_rl().ends_with("policy_rl"));
/// assert!(run.las().sft().model.ends_with("las/policy_sft"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the directory (and its parents) if missing.
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory.
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::Io {
            path: self.root.clone(),
            source: e,
        })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `config.toml`: the configuration the run was made with.
    pub fn config_file(&self) -> PathBuf {
        self.file("config.toml")
    }

    /// `dataset.bin`: the prepared dataset ([`glorank_data::PreparedDataset::load`] reads
    /// it from [`RunDir::root`]).
    pub fn dataset_file(&self) -> PathBuf {
        self.file(glorank_data::DATASET_FILE)
    }

    /// The directory holding the tokenizer and its table (the run directory itself).
    pub fn tokenizer_dir(&self) -> &Path {
        &self.root
    }

    /// `semantic_ids.json`: the semantic-ID table.
    pub fn semantic_ids_file(&self) -> PathBuf {
        self.file(glorank_tokenizer::IDS_FILE)
    }

    /// `tokenizer.json`: the fitted tokenizer (needed to encode cold items).
    pub fn tokenizer_file(&self) -> PathBuf {
        self.file(glorank_tokenizer::TOKENIZER_FILE)
    }

    fn role_name(role: RewardRole) -> &'static str {
        match role {
            RewardRole::Evaluator => "evaluator",
            RewardRole::Simulator => "simulator",
        }
    }

    /// The reward model of `role`: `evaluator/` or `simulator/`.
    pub fn reward_model(&self, role: RewardRole) -> PathBuf {
        self.file(Self::role_name(role))
    }

    /// Its per-epoch checkpoint: `evaluator_checkpoint/` or `simulator_checkpoint/`.
    pub fn reward_checkpoint(&self, role: RewardRole) -> PathBuf {
        self.file(&format!("{}_checkpoint", Self::role_name(role)))
    }

    /// Its training log: `evaluator_log.jsonl` or `simulator_log.jsonl`.
    pub fn reward_log(&self, role: RewardRole) -> PathBuf {
        self.file(&format!("{}_log.jsonl", Self::role_name(role)))
    }

    /// SFT's outputs: `policy_sft/`, `sft_checkpoint/`, `sft_log.jsonl`.
    pub fn sft(&self) -> StageOutput {
        StageOutput::new(
            self.policy_sft(),
            self.file("sft_checkpoint"),
            self.file("sft_log.jsonl"),
        )
    }

    /// RL's outputs: `policy_rl/`, `rl_checkpoint/`, `rl_log.jsonl`.
    pub fn rl(&self) -> StageOutput {
        StageOutput::new(
            self.policy_rl(),
            self.file("rl_checkpoint"),
            self.file("rl_log.jsonl"),
        )
    }

    /// `policy_sft/`: the best SFT epoch.
    pub fn policy_sft(&self) -> PathBuf {
        self.file("policy_sft")
    }

    /// `policy_rl/`: the policy after RL.
    pub fn policy_rl(&self) -> PathBuf {
        self.file("policy_rl")
    }

    /// `las/`: the local-index ablation, a run directory of its own.
    pub fn las(&self) -> RunDir {
        RunDir::new(self.file("las"))
    }

    /// `metrics.json`: every method's metrics with confidence intervals.
    pub fn metrics_file(&self) -> PathBuf {
        self.file("metrics.json")
    }

    /// `predictions.jsonl`: one line per request and method.
    pub fn predictions_file(&self) -> PathBuf {
        self.file("predictions.jsonl")
    }

    /// `report.md`: the table and the training curves.
    pub fn report_file(&self) -> PathBuf {
        self.file("report.md")
    }

    /// A figure of the report (`name` ends in `.svg`).
    pub fn figure_file(&self, name: &str) -> PathBuf {
        self.file(name)
    }

    /// The policy the run serves: `policy_rl/`, or `policy_sft/` when there is no RL policy.
    ///
    /// # Errors
    /// [`Error::Missing`] when the run has neither.
    pub fn trained_policy(&self) -> Result<PathBuf> {
        [self.policy_rl(), self.policy_sft()]
            .into_iter()
            .find(|d| d.join(glorank_policy::CONFIG_FILE).exists())
            .ok_or_else(|| Error::Missing {
                path: self.policy_rl(),
                hint: "train a policy first (`glorank demo`, `glorank run` or `glorank train sft`)"
                    .into(),
            })
    }
}

impl From<&Path> for RunDir {
    fn from(p: &Path) -> Self {
        Self::new(p)
    }
}

impl From<PathBuf> for RunDir {
    fn from(p: PathBuf) -> Self {
        Self::new(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_documented_one() {
        let run = RunDir::new("r");
        assert_eq!(run.config_file(), Path::new("r/config.toml"));
        assert_eq!(run.dataset_file(), Path::new("r/dataset.bin"));
        assert_eq!(run.semantic_ids_file(), Path::new("r/semantic_ids.json"));
        assert_eq!(
            run.reward_model(RewardRole::Simulator),
            Path::new("r/simulator")
        );
        assert_eq!(
            run.reward_log(RewardRole::Evaluator),
            Path::new("r/evaluator_log.jsonl")
        );
        assert_eq!(run.rl().checkpoint, Path::new("r/rl_checkpoint"));
        assert_eq!(run.las().sft().log, Path::new("r/las/sft_log.jsonl"));
        assert!(run.trained_policy().is_err());
    }
}
