//! The pipeline: one configuration, one run directory, every stage through one entry point.
//!
//! `glorank run` runs every [`Stage`] ([`Pipeline::run_with`]); `glorank prepare`,
//! `tokenize`, `train`, `eval` and `baselines` run one ([`Pipeline::run_stage`],
//! [`Pipeline::evaluate`]) through the same code. Each stage reuses its artifact when the
//! run's `manifest.json` shows it was built from the same configuration and upstream
//! artifacts, rebuilds it (and so what derives from it) otherwise, and continues an
//! interrupted build from its checkpoint.

mod plan;
mod session;

pub use plan::{EvalPlan, EvalReport, Hooks, PipelineReport, Split, Stage};

use crate::{Config, Result, RunDir};
use burn::tensor::Device;
use glorank_data::NoProgress;
use glorank_train::NoObserver;
use session::Session;
use std::path::Path;

/// Runs the stages of a [`Config`] into a run directory.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: Config,
    device: Device,
}

impl Pipeline {
    /// A pipeline on the default CPU device (flex).
    pub fn new(config: Config) -> Self {
        Self {
            config,
            device: Device::flex(),
        }
    }

    /// Uses another (plain) device; training runs on its autodiff form.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs silently. See [`Pipeline::run_with`].
    ///
    /// # Errors
    /// As [`Pipeline::run_with`].
    pub fn run(&self, dir: &Path) -> Result<PipelineReport> {
        let (mut observer, mut say) = (NoObserver, |_: &str| {});
        self.run_with(dir, &mut Hooks::new(&mut observer, &NoProgress, &mut say))
    }

    /// Runs every stage into `dir`, reusing what is already there (the dataset, the
    /// semantic IDs, the reward models, finished or checkpointed SFT and RL runs, the LAS
    /// ablation), then evaluates every method on the test split and writes `metrics.json`,
    /// `predictions.jsonl`, `report.md` (with SVG training curves) and `config.toml`.
    ///
    /// # Errors
    /// Configuration, data, training and file errors; [`Error::Interrupted`] when the
    /// observer stopped a training stage (run again to resume).
    pub fn run_with(&self, dir: &Path, hooks: &mut Hooks<'_>) -> Result<PipelineReport> {
        let run = RunDir::new(dir);
        let mut s = Session::start((&self.config, &self.device), &run, hooks)?;
        for stage in Stage::ALL {
            if stage == Stage::Las && !self.config.eval.las {
                continue;
            }
            if stage != Stage::Evaluate {
                s.stage(stage, true)?;
            }
        }
        let eval = s.evaluate(&EvalPlan::pipeline(&self.config, &run))?;
        let mut timings = s.into_timings();
        let evaluate = timings.pop();
        timings.extend(
            eval.timings
                .iter()
                .map(|(n, t)| (format!("baseline {n}"), *t)),
        );
        timings.extend(evaluate);
        let report = PipelineReport {
            rows: eval.rows,
            table: eval.table,
            timings,
            dir: dir.to_path_buf(),
        };
        let ds = glorank_data::PreparedDataset::load(run.root())?;
        crate::report::write_report(&report, &ds, &self.config)?;
        Ok(report)
    }

    /// Runs one stage in `run`: the artifacts it is built on must be there (built by their
    /// own stages, from the same configuration), and it is reused, rebuilt or continued as
    /// in [`Pipeline::run_with`]. For [`Stage::Evaluate`] this is [`Pipeline::evaluate`]
    /// with [`EvalPlan::pipeline`].
    ///
    /// # Errors
    /// [`Error::Missing`] naming an upstream artifact that is not there and the command that
    /// builds it; [`Error::InvalidConfig`] when one was built from another configuration;
    /// the stage's own errors.
    pub fn run_stage(&self, run: &RunDir, stage: Stage, hooks: &mut Hooks<'_>) -> Result<()> {
        if stage == Stage::Evaluate {
            return self
                .evaluate(run, &EvalPlan::pipeline(&self.config, run), hooks)
                .map(drop);
        }
        let mut s = Session::start((&self.config, &self.device), run, hooks)?;
        s.stage(stage, true)
    }

    /// Evaluates on `run`'s data what `plan` names (the reference rules always, the
    /// baselines, the run's policies, more policies), next to each other in one table.
    ///
    /// # Errors
    /// Missing artifacts (named), training and metric errors.
    pub fn evaluate(
        &self,
        run: &RunDir,
        plan: &EvalPlan,
        hooks: &mut Hooks<'_>,
    ) -> Result<EvalReport> {
        let mut s = Session::start((&self.config, &self.device), run, hooks)?;
        s.evaluate(plan)
    }
}
