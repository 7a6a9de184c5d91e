//! `glorank demo`, `run`, `prepare`, `tokenize`, `train`, `eval` and `baselines`: each parses
//! its options into the configuration tree and runs its stages through the facade's one
//! entry point ([`glorank::Pipeline`]).

use crate::args::{ConfigArgs, RunDirArgs};
use crate::error::CliError;
use crate::progress::Reporter;
use glorank::evaluation::MethodResult;
use glorank::{Backend, Config, EvalPlan, Pipeline, RunDir, Split, Stage, stage_summary};
use std::path::PathBuf;

/// Arguments of `glorank demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A small world and short training (about two minutes) for a first look.
    #[arg(long)]
    pub quick: bool,
    /// Run directory (default `runs/demo` or `runs/demo-quick`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Changes to the preset.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `glorank run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration (TOML; see `configs/`) and changes to it.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The data path (`data.path`), for configurations that leave it to the command line.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the data shuffling, the tokenizer and every model (the simulator gets
    /// `seed + 1`), before `--set`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute device: flex, ndarray (`ndarray` feature), wgpu or cuda (GPU features).
    #[arg(long, default_value_t = Backend::default())]
    pub device: Backend,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `glorank prepare`.
#[derive(Debug, clap::Args)]
pub struct PrepareArgs {
    /// Run directory to write (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Dataset format (`data.dataset`): synthetic, ml-1m, ml-100k, amazon, implicit or csv.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Dataset file or folder (`data.path`; not used for `synthetic`).
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// The configuration and changes to it (`--set data.k_core=10`).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of a command acting on one stage of a run (`glorank tokenize`).
#[derive(Debug, clap::Args)]
pub struct StageArgs {
    /// The run and its data.
    #[command(flatten)]
    pub run: RunDirArgs,
    /// Changes to the run's configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Rebuild the stage's artifact even when it is up to date.
    #[arg(long)]
    pub fresh: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// What `glorank train` trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainStage {
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
    pub stage: TrainStage,
    /// The run, the configuration, `--fresh`, `--quiet`.
    #[command(flatten)]
    pub common: StageArgs,
    /// Compute device: flex, ndarray (`ndarray` feature), wgpu or cuda (GPU features).
    #[arg(long, default_value_t = Backend::default())]
    pub device: Backend,
}

/// Which split an evaluation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    /// Validation slates.
    Valid,
    /// Test slates.
    Test,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Valid => Split::Valid,
            SplitArg::Test => Split::Test,
        }
    }
}

/// Arguments of `glorank eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The run and its data.
    #[command(flatten)]
    pub run: RunDirArgs,
    /// A policy directory (`policy.json` + `policy.bpk`; default: the policy the run
    /// serves).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Write `metrics.json` and `predictions.jsonl` into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Re-order every candidate pool with this seed before evaluating (the action-space
    /// robustness check: the global policy treats the pool as a set).
    #[arg(long)]
    pub shuffle_candidates: Option<u64>,
    /// Changes to the run's configuration (`--set eval.beam=8`).
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Arguments of `glorank baselines`.
#[derive(Debug, clap::Args)]
pub struct BaselinesArgs {
    /// The run and its data; `metrics.json` and `predictions.jsonl` are written there.
    #[command(flatten)]
    pub run: RunDirArgs,
    /// More policies to evaluate, as `NAME=DIR` (e.g. `GloRank-LAS=runs/x/las/policy_sft`).
    #[arg(long = "policy", value_name = "NAME=DIR")]
    pub policies: Vec<String>,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Changes to the run's configuration (`--set baselines.epochs=3`).
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Which preset `glorank config` starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// `glorank demo --quick`'s configuration.
    Quick,
    /// `glorank demo`'s configuration.
    Demo,
}

/// Arguments of `glorank config`.
#[derive(Debug, clap::Args)]
pub struct ConfigCommandArgs {
    /// Start from a demo preset instead of the defaults.
    #[arg(long, value_enum, conflicts_with = "run")]
    pub preset: Option<Preset>,
    /// Start from the configuration this run directory was made with.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A file and single keys laid over it.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `glorank config`: the whole configuration tree a command would run with, as TOML.
pub fn config(args: &ConfigCommandArgs) -> Result<(), CliError> {
    let base = match (args.preset, &args.run) {
        (Some(Preset::Quick), _) => Config::quick(),
        (Some(Preset::Demo), _) => Config::demo(),
        (None, Some(run)) => RunDir::new(run).config()?.unwrap_or_default(),
        (None, None) => Config::default(),
    };
    out!("{}", args.config.over(base)?.to_toml());
    Ok(())
}

/// Runs every stage of `config` into `out` and prints the table and the timings.
fn run_pipeline(pipeline: Pipeline, out: &std::path::Path, quiet: bool) -> Result<(), CliError> {
    let mut reporter = Reporter::new(quiet);
    let report = reporter.with_hooks(|hooks| pipeline.run_with(out, hooks))?;
    outln!("\n{}", report.table);
    outln!("stage timings (s):");
    for (stage, secs) in &report.timings {
        outln!("  {stage:<20} {secs:>8.1}");
    }
    outln!(
        "total {:.1} s; report in {}, metrics in metrics.json, lists in predictions.jsonl",
        reporter.elapsed(),
        RunDir::new(out).report_file().display()
    );
    Ok(())
}

/// `glorank demo`.
pub fn demo(args: &DemoArgs) -> Result<(), CliError> {
    let (preset, default) = if args.quick {
        (Config::quick(), "runs/demo-quick")
    } else {
        (Config::demo(), "runs/demo")
    };
    let config = args.config.over(preset)?;
    let out = args.out.clone().unwrap_or_else(|| default.into());
    run_pipeline(Pipeline::new(config), &out, args.quiet)
}

/// `glorank run`.
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    if args.config.config.is_none() {
        return Err(CliError::Usage(
            "give the configuration with --config FILE (see configs/)".into(),
        ));
    }
    let mut base = ConfigArgs {
        config: args.config.config.clone(),
        set: Vec::new(),
    }
    .over(Config::default())?;
    if let Some(p) = &args.data_path {
        base.data.path = Some(p.clone());
    }
    if let Some(s) = args.seed {
        base = base.with_seed(s);
    }
    let config = base.with_overrides(&args.config.set)?;
    let pipeline = Pipeline::new(config).with_device(crate::error::device(args.device)?);
    run_pipeline(pipeline, &args.out, args.quiet)
}

/// Runs `stage` in `run` with `config`, rebuilding it first with `fresh`, and prints what
/// it built.
fn run_stage(
    run: &RunDir,
    config: Config,
    stage: Stage,
    (fresh, quiet, device): (bool, bool, Backend),
) -> Result<(), CliError> {
    if fresh && let Some(name) = stage.artifact() {
        run.remove(name)?;
    }
    let pipeline = Pipeline::new(config).with_device(crate::error::device(device)?);
    let mut reporter = Reporter::new(quiet);
    reporter.with_hooks(|hooks| pipeline.run_stage(run, stage, hooks))?;
    if let Some(summary) = stage_summary(run, stage)? {
        out!("{summary}");
    }
    outln!(
        "{}: done in {:.1} s ({})",
        stage.command(),
        reporter.elapsed(),
        run.root().display()
    );
    Ok(())
}

/// `glorank prepare`: `--dataset` and `--path` are `data.dataset` and `data.path`.
pub fn prepare(args: &PrepareArgs) -> Result<(), CliError> {
    let run = RunDir::new(&args.out);
    let mut sets = Vec::new();
    if let Some(d) = &args.dataset {
        sets.push(format!("data.dataset={d}"));
    }
    let mut config = args.config.for_run(&run, None)?.with_overrides(&sets)?;
    if let Some(p) = &args.path {
        config.data.path = Some(p.clone());
    }
    run_stage(
        &run,
        config,
        Stage::Prepare,
        (false, args.quiet, Backend::default()),
    )
}

/// `glorank tokenize`.
pub fn tokenize(args: &StageArgs) -> Result<(), CliError> {
    let (run, config) = args.run.open(&args.config, &["dataset"])?;
    let device = config.tokenizer.device;
    run_stage(
        &run,
        config,
        Stage::Tokenize,
        (args.fresh, args.quiet, device),
    )
}

/// `glorank train`.
pub fn train(args: &TrainArgs) -> Result<(), CliError> {
    let c = &args.common;
    let (run, config) = c.run.open(&c.config, &["dataset", "tokenizer"])?;
    let stage = match args.stage {
        TrainStage::Evaluator => Stage::Evaluator,
        TrainStage::Simulator => Stage::Simulator,
        TrainStage::Sft => Stage::Sft,
        TrainStage::Rl => Stage::Rl,
    };
    run_stage(&run, config, stage, (c.fresh, c.quiet, args.device))
}

/// Prints an evaluation's header line and table.
fn print_table(
    requests: usize,
    split: SplitArg,
    table: &str,
    rows: &[MethodResult],
) -> Result<(), CliError> {
    let reward = if rows.iter().any(|r| r.average_reward.is_some()) {
        ", Average Reward from the run's simulator"
    } else {
        " (no simulator in the run directory: no Average Reward)"
    };
    outln!("{requests} {split:?} requests{reward}");
    out!("{table}");
    Ok(())
}

/// `glorank eval`: the policy next to the reference rules that learn nothing, so the table
/// says how separable these pools are by construction.
pub fn eval(args: &EvalArgs) -> Result<(), CliError> {
    let (run, config) = args.run.open(&args.config, &["dataset", "tokenizer"])?;
    let policy = match &args.policy {
        Some(p) => p.clone(),
        None => run.trained_policy()?,
    };
    let name = policy
        .file_name()
        .map_or("policy".into(), |n| n.to_string_lossy().into_owned());
    let plan = EvalPlan::policies(vec![(name, policy)])
        .with_split(args.split.into())
        .with_shuffled_candidates(args.shuffle_candidates)
        .with_write(args.out.as_ref().map(RunDir::new));
    let mut reporter = Reporter::new(true);
    let pipeline = Pipeline::new(config);
    let report = reporter.with_hooks(|hooks| pipeline.evaluate(&run, &plan, hooks))?;
    print_table(report.requests, args.split, &report.table, &report.rows)
}

/// `glorank baselines`: trains PRM, Seq2Slate and DLCM, evaluates them next to the reference
/// rules, the oracle and the run's GloRank policies, prints the table and writes
/// `metrics.json` and `predictions.jsonl` into the run.
pub fn baselines(args: &BaselinesArgs) -> Result<(), CliError> {
    let (run, config) = args.run.open(&args.config, &["dataset", "tokenizer"])?;
    let mut policies = Vec::new();
    for spec in &args.policies {
        let (name, dir) = spec
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--policy {spec:?}: expected NAME=DIR")))?;
        policies.push((name.to_string(), PathBuf::from(dir)));
    }
    let epochs = config.baselines.epochs;
    let plan = EvalPlan::policies(policies)
        .with_rows(true, Some(false))
        .with_split(args.split.into())
        .with_write(Some(run.clone()));
    let mut reporter = Reporter::new(true);
    let pipeline = Pipeline::new(config);
    let report = reporter.with_hooks(|hooks| pipeline.evaluate(&run, &plan, hooks))?;
    print_table(report.requests, args.split, &report.table, &report.rows)?;
    for (name, secs) in &report.timings {
        outln!("  {name}: trained in {secs:.1} s over {epochs} epochs");
    }
    Ok(())
}
