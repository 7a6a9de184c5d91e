//! What the pipeline's entry points take and give: the stages, the hooks a run reports to,
//! an evaluation's plan and report, and a whole run's report.

use crate::evaluation::MethodResult;
use crate::{Config, Error, RunDir};
use glorank_data::Progress;
use glorank_train::TrainObserver;
use std::path::PathBuf;

/// A stage of the pipeline; every stage but [`Stage::Evaluate`] builds one artifact of the
/// run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Read the data and apply the protocol: `dataset.bin` (`glorank prepare`).
    Prepare,
    /// Learn semantic IDs: `semantic_ids.json`, `tokenizer.json` (`glorank tokenize`).
    Tokenize,
    /// Train the evaluator, the RL reward model: `evaluator/`.
    Evaluator,
    /// Train the simulator, the Average Reward model: `simulator/`.
    Simulator,
    /// Supervised pre-training: `policy_sft/`.
    Sft,
    /// Group-relative RL from the SFT policy: `policy_rl/`.
    Rl,
    /// The local-index ablation (SFT): `las/policy_sft/`.
    Las,
    /// The test table: `metrics.json`, `predictions.jsonl`, `report.md`.
    Evaluate,
}

impl Stage {
    /// Every stage, in build order.
    pub const ALL: [Stage; 8] = [
        Stage::Prepare,
        Stage::Tokenize,
        Stage::Evaluator,
        Stage::Simulator,
        Stage::Sft,
        Stage::Rl,
        Stage::Las,
        Stage::Evaluate,
    ];

    /// The name of the stage's artifact in the manifest ([`crate::ARTIFACTS`]); `None` for
    /// [`Stage::Evaluate`].
    pub fn artifact(self) -> Option<&'static str> {
        Some(match self {
            Stage::Prepare => "dataset",
            Stage::Tokenize => "tokenizer",
            Stage::Evaluator => "evaluator",
            Stage::Simulator => "simulator",
            Stage::Sft => "sft",
            Stage::Rl => "rl",
            Stage::Las => "las",
            Stage::Evaluate => return None,
        })
    }

    /// The command that runs the stage alone.
    pub fn command(self) -> &'static str {
        match self {
            Stage::Prepare => "glorank prepare",
            Stage::Tokenize => "glorank tokenize",
            Stage::Evaluator => "glorank train evaluator",
            Stage::Simulator => "glorank train simulator",
            Stage::Sft => "glorank train sft",
            Stage::Rl => "glorank train rl",
            Stage::Las => "glorank run",
            Stage::Evaluate => "glorank eval",
        }
    }
}

/// Where a pipeline reports: training progress, data-preparation progress, and one line per
/// decision (reused, rebuilt and why, each stage as it starts).
pub struct Hooks<'a> {
    pub(crate) observer: &'a mut dyn TrainObserver,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) say: &'a mut dyn FnMut(&str),
}

impl std::fmt::Debug for Hooks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

impl<'a> Hooks<'a> {
    /// Reports to `observer` (training steps), `progress` (reading and preparing data) and
    /// `say` (one line per decision).
    pub fn new(
        observer: &'a mut dyn TrainObserver,
        progress: &'a dyn Progress,
        say: &'a mut dyn FnMut(&str),
    ) -> Self {
        Self {
            observer,
            progress,
            say,
        }
    }
}

/// Which split an evaluation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Split {
    /// The validation requests.
    Valid,
    /// The test requests (the default).
    #[default]
    Test,
}

/// What an evaluation puts in its table ([`Pipeline::evaluate`]): the reference rules
/// always; the rest as chosen here. The pipeline's own evaluation is
/// [`EvalPlan::pipeline`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EvalPlan {
    /// The split (default test).
    pub split: Split,
    /// Train and score PRM, Seq2Slate and DLCM (`[baselines]`).
    pub baselines: bool,
    /// Score the run's local-index ablation (`las/`, which must exist).
    pub las: bool,
    /// Score the run's SFT and RL policies: `Some(true)` requires both, `Some(false)`
    /// scores those present, `None` neither.
    pub glorank: Option<bool>,
    /// More policies to score, as (row name, policy directory).
    pub policies: Vec<(String, PathBuf)>,
    /// Re-order every candidate pool with this seed first (the action-space check: a
    /// policy over global IDs treats the pool as a set).
    pub shuffle_candidates: Option<u64>,
    /// Write `metrics.json` and `predictions.jsonl` into this run directory (`None`: only
    /// return the table).
    pub write: Option<RunDir>,
}

impl EvalPlan {
    /// The evaluation of `glorank run`: every row `config.eval` asks for, written into `run`.
    pub fn pipeline(config: &Config, run: &RunDir) -> Self {
        Self {
            split: Split::Test,
            baselines: config.eval.baselines,
            las: config.eval.las,
            glorank: Some(true),
            policies: Vec::new(),
            shuffle_candidates: None,
            write: Some(run.clone()),
        }
    }

    /// Only the reference rules and `policies`, on the test split, not written.
    pub fn policies(policies: Vec<(String, PathBuf)>) -> Self {
        Self {
            split: Split::Test,
            baselines: false,
            las: false,
            glorank: None,
            policies,
            shuffle_candidates: None,
            write: None,
        }
    }

    /// Sets the split.
    pub fn with_split(mut self, split: Split) -> Self {
        self.split = split;
        self
    }

    /// Sets [`EvalPlan::baselines`] and [`EvalPlan::glorank`].
    pub fn with_rows(mut self, baselines: bool, glorank: Option<bool>) -> Self {
        self.baselines = baselines;
        self.glorank = glorank;
        self
    }

    /// Sets [`EvalPlan::shuffle_candidates`].
    pub fn with_shuffled_candidates(mut self, seed: Option<u64>) -> Self {
        self.shuffle_candidates = seed;
        self
    }

    /// Sets where the files are written.
    pub fn with_write(mut self, run: Option<RunDir>) -> Self {
        self.write = run;
        self
    }
}

/// What an evaluation produced.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// One row per method.
    pub rows: Vec<MethodResult>,
    /// The printed table (with the cold-start and held-out slices when written).
    pub table: String,
    /// Evaluated requests.
    pub requests: usize,
    /// Training seconds of each baseline.
    pub timings: Vec<(String, f64)>,
    /// Whether the rows carry Average Reward (the run has a simulator).
    pub average_reward: bool,
}

/// What a pipeline run produced.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    /// One row per method on the test split.
    pub rows: Vec<MethodResult>,
    /// The printed comparison table.
    pub table: String,
    /// Seconds per stage.
    pub timings: Vec<(String, f64)>,
    /// The run directory.
    pub dir: PathBuf,
}

/// An [`Error::InvalidConfig`] about a stage that cannot run.
pub(crate) fn stage_error(field: &str, message: String) -> Error {
    Error::InvalidConfig {
        field: field.into(),
        message,
    }
}
