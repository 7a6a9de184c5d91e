//! `glorank train`, `eval` and `baselines`: thin wrappers over `glorank::stages`.

use crate::CliError;
use glorank::RunDir;
use glorank::data::PreparedDataset;
use glorank::nn::Backend;
use glorank::reward::RewardRole;
use glorank::stages::{self, EvalContext};
use glorank::tokenizer::{IDS_FILE, SemanticIds};
use glorank::train::{TrainObserver, TrainingConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `glorank train` trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// The evaluator (RL reward): train split only.
    Evaluator,
    /// The simulator (Average Reward): every logged slate, its own seed.
    Simulator,
    /// Supervised pre-training on demonstrations.
    Sft,
    /// Group-relative RL from the SFT policy.
    Rl,
}

/// Arguments of `glorank train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The stage to train.
    #[arg(value_enum)]
    pub stage: Stage,
    /// Run directory written by `glorank prepare`.
    #[arg(long)]
    pub data: PathBuf,
    /// Directory holding `semantic_ids.json` (default: the data directory).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Output run directory (models, checkpoints, logs).
    #[arg(long)]
    pub out: PathBuf,
    /// TOML training configuration (every field optional; see `glorank_train::TrainingConfig`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue from the stage's last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Compute device: flex, ndarray (`ndarray` feature) or wgpu (`wgpu` feature).
    #[arg(long, default_value_t = Backend::default())]
    pub device: Backend,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `glorank eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Run directory written by `glorank prepare`.
    #[arg(long)]
    pub data: PathBuf,
    /// A policy directory (`policy.json` + `policy.bpk`, e.g. `RUN/policy_rl`).
    #[arg(long)]
    pub model: PathBuf,
    /// Directory holding `semantic_ids.json` (default: the data directory).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A simulator directory for Average Reward (e.g. `RUN/simulator`).
    #[arg(long)]
    pub simulator: Option<PathBuf>,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: Split,
    /// Write `metrics.json` and `predictions.jsonl` into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Re-order every candidate pool with this seed before evaluating (the action-space
    /// robustness check: the global policy treats the pool as a set).
    #[arg(long)]
    pub shuffle_candidates: Option<u64>,
    /// Decode the policy's lists with a beam search over whole lists of this width (1:
    /// greedy, the default).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=glorank::MAX_EVAL_BEAM as u64))]
    pub beam: u64,
    /// Prefix-repetition penalty of the policy's decoding: each token loses this much per
    /// earlier item of the list sharing its semantic-ID prefix (0: none, the default).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub prefix_penalty: f32,
}

/// Arguments of `glorank baselines`.
#[derive(Debug, clap::Args)]
pub struct BaselinesArgs {
    /// Run directory written by `glorank prepare`.
    #[arg(long)]
    pub data: PathBuf,
    /// Directory holding `semantic_ids.json` (default: the data directory).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Run directory: its `policy_sft`, `policy_rl` and `simulator` are evaluated when
    /// present; `metrics.json` and `predictions.jsonl` are written there.
    #[arg(long)]
    pub out: PathBuf,
    /// TOML training configuration (its `[baselines]` section).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// More policies to evaluate, as `NAME=DIR` (e.g. `GloRank-LAS=runs/las/policy_sft`).
    #[arg(long = "policy", value_name = "NAME=DIR")]
    pub policies: Vec<String>,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: Split,
    /// Decode the GloRank policies' lists with a beam search over whole lists of this width
    /// (1: greedy, the default).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=glorank::MAX_EVAL_BEAM as u64))]
    pub beam: u64,
    /// Prefix-repetition penalty of the GloRank policies' decoding: each token loses this
    /// much per earlier item of the list sharing its semantic-ID prefix (0: none, the
    /// default).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub prefix_penalty: f32,
}

/// Evaluation splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Validation slates.
    Valid,
    /// Test slates.
    Test,
}

/// A progress bar over training steps; evaluations are printed above it.
pub struct StepBar {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl StepBar {
    /// A bar (nothing at all when `quiet`).
    pub fn new(quiet: bool) -> Self {
        Self { bar: None, quiet }
    }
}

impl TrainObserver for StepBar {
    fn start(&mut self, stage: &str, total: u64, done: u64) {
        if self.quiet {
            return;
        }
        let b = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} steps, loss {msg} ({elapsed}, eta {eta})",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_prefix(stage.to_string());
        b.set_position(done);
        self.bar = Some(b);
    }

    fn step(&mut self, _step: u64, loss: f64) -> ControlFlow<()> {
        if let Some(b) = &self.bar {
            b.inc(1);
            b.set_message(format!("{loss:.4}"));
        }
        ControlFlow::Continue(())
    }

    fn evaluation(&mut self, record: &serde_json::Value) {
        match &self.bar {
            Some(b) => b.println(record.to_string()),
            None if !self.quiet => {
                use std::io::Write as _;
                // A closed pipe ends the output, not the training.
                let _ = writeln!(std::io::stdout(), "{record}");
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// The prepared dataset and its semantic IDs.
fn load_data(
    data: &Path,
    tokenizer: Option<&Path>,
) -> Result<(PreparedDataset, SemanticIds), CliError> {
    // Artifacts recorded by a pipeline run must still be the bytes it wrote.
    RunDir::new(data).verify(&["dataset"])?;
    RunDir::new(tokenizer.unwrap_or(data)).verify(&["tokenizer"])?;
    let ds = PreparedDataset::load(data)?;
    let ids = SemanticIds::load(&tokenizer.unwrap_or(data).join(IDS_FILE))?;
    Ok((ds, ids))
}

fn config(path: Option<&Path>) -> Result<TrainingConfig, CliError> {
    match path {
        Some(p) => Ok(TrainingConfig::from_file(p)?),
        None => Ok(TrainingConfig::default()),
    }
}

/// `glorank train`.
pub fn train(args: &TrainArgs) -> Result<(), CliError> {
    let config = config(args.config.as_deref())?;
    let (ds, ids) = load_data(&args.data, args.tokenizer.as_deref())?;
    let plain = args.device.device()?;
    let autodiff = plain.clone().autodiff();
    let devices = (&autodiff, &plain);
    let run = RunDir::new(&args.out);
    run.create()?;
    glorank::nn::persist::write_atomic(&run.config_file(), config.to_toml().as_bytes())?;
    let mut bar = StepBar::new(args.quiet);
    let t0 = Instant::now();
    match args.stage {
        Stage::Evaluator | Stage::Simulator => {
            let (role, cfg) = if args.stage == Stage::Evaluator {
                (RewardRole::Evaluator, &config.evaluator)
            } else {
                (RewardRole::Simulator, &config.simulator)
            };
            stages::train_reward(&ds, &ids, role, cfg, &run, args.resume, devices, &mut bar)?;
            outln!(
                "{:?} trained in {:.1} s ({})",
                role,
                t0.elapsed().as_secs_f64(),
                args.out.display()
            );
        }
        Stage::Sft => {
            let pc = stages::policy_config(&ds, &ids, &config)?;
            let out = stages::train_sft_stage(
                &ds,
                &ids,
                &config,
                &pc,
                (&run, &run),
                args.resume,
                devices,
                &mut bar,
            )?;
            outln!(
                "SFT: {} steps, best epoch {:?} (validation NDCG@{} {:.4}), {:.1} s; policy in {}",
                out.steps,
                out.best.map(|b| b.0),
                ds.config.slate_len,
                out.best.map_or(f64::NAN, |b| b.1),
                t0.elapsed().as_secs_f64(),
                run.policy_sft().display()
            );
        }
        Stage::Rl => {
            let out =
                stages::train_rl_stage(&ds, &ids, &config, &run, args.resume, devices, &mut bar)?;
            outln!(
                "RL: {} steps, {:.1} s; policy in {}",
                out.steps,
                t0.elapsed().as_secs_f64(),
                run.policy_rl().display()
            );
        }
    }
    Ok(())
}

/// `glorank eval`.
pub fn eval(args: &EvalArgs) -> Result<(), CliError> {
    let (ds, ids) = load_data(&args.data, args.tokenizer.as_deref())?;
    let dev = glorank::Device::flex();
    let simulator = args
        .simulator
        .as_ref()
        .map(|d| stages::load_reward(d, &dev))
        .transpose()?;
    let split = match args.split {
        Split::Valid => &ds.valid,
        Split::Test => &ds.test,
    };
    let shuffled = args
        .shuffle_candidates
        .map(|seed| stages::shuffle_candidates(split, seed));
    let samples = shuffled.as_deref().unwrap_or(split);
    let ctx = EvalContext::new(&ds, &ids, samples, simulator.as_ref(), &dev)?
        .with_beam(args.beam as usize)
        .with_prefix_penalty(args.prefix_penalty)?;
    let name = args
        .model
        .file_name()
        .map_or("policy".into(), |n| n.to_string_lossy().into_owned());
    let t0 = Instant::now();
    let row = ctx.evaluate_policy(&name, &args.model)?;
    outln!(
        "{} {:?} requests of {} in {:.2} s",
        samples.len(),
        args.split,
        ds.name,
        t0.elapsed().as_secs_f64()
    );
    // The rules that learn nothing go next to the policy, so the table says how separable
    // these pools are by construction.
    let (mut rows, last) = ctx.reference_rows()?;
    rows.push(row);
    rows.extend(last);
    match &args.out {
        Some(dir) => out!(
            "{}",
            stages::write_results(&RunDir::new(dir), &ds, samples, &rows)?
        ),
        None => out!("{}", stages::table(&rows, ds.config.slate_len)),
    }
    Ok(())
}

/// `glorank baselines`: trains PRM, Seq2Slate and DLCM, evaluates them next to MF order, the
/// oracle and the run's GloRank policies, prints the table and writes `metrics.json`.
pub fn baselines(args: &BaselinesArgs) -> Result<(), CliError> {
    let config = config(args.config.as_deref())?;
    let (ds, ids) = load_data(&args.data, args.tokenizer.as_deref())?;
    let plain = glorank::Device::flex();
    let autodiff = plain.clone().autodiff();
    let samples = match args.split {
        Split::Valid => &ds.valid,
        Split::Test => &ds.test,
    };
    let run = RunDir::new(&args.out);
    let sim_dir = run.reward_model(glorank::reward::RewardRole::Simulator);
    let simulator = sim_dir
        .join(glorank::reward::WEIGHTS_FILE)
        .exists()
        .then(|| stages::load_reward(&sim_dir, &plain))
        .transpose()?;
    let ctx = EvalContext::new(&ds, &ids, samples, simulator.as_ref(), &plain)?
        .with_beam(args.beam as usize)
        .with_prefix_penalty(args.prefix_penalty)?;
    let (mut rows, last) = ctx.reference_rows()?;
    let mut timings = Vec::new();
    for (row, secs) in ctx.baselines(&config.baselines, &autodiff)? {
        timings.push(format!(
            "{}: trained in {secs:.1} s ({:.0} training samples/s over {} epochs)",
            row.name,
            (ds.train.len() * config.baselines.epochs) as f64 / secs.max(1e-9),
            config.baselines.epochs
        ));
        rows.push(row);
    }
    let mut policies: Vec<(String, PathBuf)> = Vec::new();
    for spec in &args.policies {
        let (name, dir) = spec
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--policy {spec:?}: expected NAME=DIR")))?;
        policies.push((name.into(), dir.into()));
    }
    for (name, d) in [
        ("GloRank SFT", run.policy_sft()),
        ("GloRank SFT+RL", run.policy_rl()),
    ] {
        if d.join(glorank::policy::CONFIG_FILE).exists() {
            policies.push((name.into(), d));
        }
    }
    for (name, dir) in policies {
        rows.push(ctx.evaluate_policy(&name, &dir)?);
    }
    rows.extend(last);
    outln!(
        "{} {:?} requests of {}{}",
        samples.len(),
        args.split,
        ds.name,
        if simulator.is_some() {
            ", Average Reward from the run's simulator"
        } else {
            " (no simulator in the run directory: no Average Reward)"
        }
    );
    out!("{}", stages::write_results(&run, &ds, samples, &rows)?);
    for t in timings {
        outln!("  {t}");
    }
    Ok(())
}
