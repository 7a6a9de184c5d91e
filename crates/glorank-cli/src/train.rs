//! `glorank train` and `glorank eval`: the trainers and the evaluation of saved policies.

use crate::{DeviceKind, device};
use glorank_data::{PreparedDataset, RerankSample};
use glorank_policy::{Policy, Request};
use glorank_reward::{RewardConfig, RewardRole, UserResponseModel};
use glorank_tokenizer::{IDS_FILE, SemanticIds};
use glorank_train::{
    Demonstrations, EvaluatorReward, LabelReward, ListReward, RequestBuilder, RewardCheckpoint,
    RewardData, RewardSource, RlData, SFT_POLICY_DIR, SftData, TrainObserver, TrainingConfig,
    average_reward, best_of_k_demonstrations, greedy_lists, list_metrics, reward_examples,
    train_reward_model_in, train_rl, train_sft, write_dir_atomic,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Directory of the evaluator inside a run directory.
pub const EVALUATOR_DIR: &str = "evaluator";
/// Directory of the simulator inside a run directory.
pub const SIMULATOR_DIR: &str = "simulator";

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
    /// Compute device.
    #[arg(long, value_enum, default_value = "flex")]
    pub device: DeviceKind,
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
    /// Beam width (1: greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Also write the metrics as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
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
struct StepBar {
    bar: Option<ProgressBar>,
    quiet: bool,
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
            None if !self.quiet => println!("{record}"),
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
) -> Result<(PreparedDataset, SemanticIds), String> {
    let ds = PreparedDataset::load(data).map_err(|e| e.to_string())?;
    let ids_path = tokenizer.unwrap_or(data).join(IDS_FILE);
    let ids = SemanticIds::load(&ids_path).map_err(|e| e.to_string())?;
    Ok((ds, ids))
}

/// Binary click relevance of each sample's candidates.
fn clicks(samples: &[RerankSample]) -> Vec<Vec<f64>> {
    samples.iter().map(RerankSample::click_relevance).collect()
}

fn load_reward(
    dir: &Path,
    device: &glorank_tokenizer::Device,
) -> Result<UserResponseModel, String> {
    UserResponseModel::load(dir, device)
        .map(|(m, _)| m)
        .map_err(|e| format!("{e} (train it first: `glorank train evaluator|simulator`)"))
}

/// `glorank train`.
pub fn train(args: &TrainArgs) -> Result<(), String> {
    let config = match &args.config {
        Some(p) => TrainingConfig::from_file(p).map_err(|e| e.to_string())?,
        None => TrainingConfig::default(),
    };
    let (ds, ids) = load_data(&args.data, args.tokenizer.as_deref())?;
    let builder = RequestBuilder::new(&ds, &ids).map_err(|e| e.to_string())?;
    let plain = device(args.device)?;
    let autodiff = plain.clone().autodiff();
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    glorank_data::write_atomic(&args.out.join("config.toml"), config.to_toml().as_bytes())
        .map_err(|e| e.to_string())?;
    let mut bar = StepBar {
        bar: None,
        quiet: args.quiet,
    };
    let t0 = Instant::now();
    match args.stage {
        Stage::Evaluator | Stage::Simulator => {
            let (role, cfg, dir) = if args.stage == Stage::Evaluator {
                (RewardRole::Evaluator, &config.evaluator, EVALUATOR_DIR)
            } else {
                (RewardRole::Simulator, &config.simulator, SIMULATOR_DIR)
            };
            let out = args.out.join(dir);
            // The evaluator sees the training slates only; the simulator every logged slate
            // (it stands in for the real users at evaluation time).
            let train_samples: Vec<RerankSample> = if role == RewardRole::Evaluator {
                ds.train.clone()
            } else {
                ds.train
                    .iter()
                    .chain(&ds.valid)
                    .chain(&ds.test)
                    .cloned()
                    .collect()
            };
            let train = reward_examples(&builder, &train_samples, cfg.pool_lists, cfg.seed);
            let valid = reward_examples(&builder, &ds.valid, cfg.pool_lists, cfg.seed ^ 1);
            let c = &ds.config;
            let rcfg = RewardConfig::for_role(role, ids.vocab_sizes())
                .with_shape(c.slate_len, c.history_len)
                .with_user_fields(builder.user_field_sizes())
                .with_seed(cfg.seed);
            let model = UserResponseModel::new(&rcfg, &autodiff).map_err(|e| e.to_string())?;
            println!(
                "training the {dir} on {} examples ({} validation)",
                train.len(),
                valid.len()
            );
            let ckpt = args.out.join(format!("{dir}_checkpoint"));
            let (model, log, _) = train_reward_model_in(
                model,
                RewardData {
                    train: &train,
                    valid: &valid,
                },
                cfg,
                Some(RewardCheckpoint {
                    dir: &ckpt,
                    config: &rcfg,
                    resume: args.resume,
                }),
                (&autodiff, &plain),
                &mut bar,
            )
            .map_err(|e| e.to_string())?;
            let model = model.ok_or("training was interrupted")?;
            let records: Vec<serde_json::Value> = log
                .iter()
                .map(|e| {
                    serde_json::json!({"stage": dir, "epoch": e.epoch, "train_loss": e.train_loss, "valid_click_auc": e.valid_auc})
                })
                .collect();
            glorank_train::JsonlLog::create(&args.out.join(format!("{dir}_log.jsonl")), &records)
                .map_err(|e| e.to_string())?;
            write_dir_atomic(&out, |d| {
                model
                    .save(&rcfg, d)
                    .map_err(glorank_train::TrainError::from)
            })
            .map_err(|e| e.to_string())?;
            println!(
                "wrote {} ({:.1} s)",
                out.display(),
                t0.elapsed().as_secs_f64()
            );
        }
        Stage::Sft => {
            let policy_config = config.policy.apply(builder.policy_config());
            let train = builder.requests(&ds.train);
            let valid = builder.requests(&ds.valid);
            let logged: Vec<Vec<usize>> = ds.train.iter().map(|s| ds.demonstration(s)).collect();
            let demos = match config.sft.demonstrations {
                Demonstrations::BestOfK { k } => {
                    let eval = load_reward(&args.out.join(EVALUATOR_DIR), &plain)?;
                    best_of_k_demonstrations(&train, &logged, &eval, k, config.sft.seed, &plain)
                        .map_err(|e| e.to_string())?
                }
                _ => logged,
            };
            let out = train_sft(
                &policy_config,
                SftData {
                    train: &train,
                    demonstrations: &demos,
                    valid: &valid,
                    valid_relevance: &clicks(&ds.valid),
                },
                &config.sft,
                &args.out,
                args.resume,
                (&autodiff, &plain),
                &mut bar,
            )
            .map_err(|e| e.to_string())?;
            println!(
                "SFT: {} steps, best epoch {:?} (validation NDCG@{} {:.4}), {:.1} s; policy in {}",
                out.steps,
                out.best.map(|b| b.0),
                ds.config.slate_len,
                out.best.map_or(f64::NAN, |b| b.1),
                t0.elapsed().as_secs_f64(),
                args.out.join(SFT_POLICY_DIR).display()
            );
        }
        Stage::Rl => {
            let sft_dir = args.out.join(SFT_POLICY_DIR);
            let (initial, policy_config) = Policy::load(&sft_dir, &autodiff)
                .map_err(|e| format!("{e} (train it first: `glorank train sft`)"))?;
            let (reference, _) = Policy::load(&sft_dir, &plain).map_err(|e| e.to_string())?;
            let train = builder.requests(&ds.train);
            let valid = builder.requests(&ds.valid);
            let train_rel = clicks(&ds.train);
            let evaluator = load_reward(&args.out.join(EVALUATOR_DIR), &plain).ok();
            let eval_reward = evaluator.as_ref().map(|m| EvaluatorReward::new(m, &plain));
            let labels = LabelReward::new(&train_rel);
            let reward: &dyn ListReward = match config.rl.reward {
                RewardSource::Labels => &labels,
                _ => match &eval_reward {
                    Some(r) => r,
                    None => {
                        return Err(format!(
                            "{}: no evaluator (train it first: `glorank train evaluator`, or set rl.reward = \"labels\")",
                            args.out.join(EVALUATOR_DIR).display()
                        ));
                    }
                },
            };
            let out = train_rl(
                &policy_config,
                initial,
                &reference,
                RlData {
                    train: &train,
                    reward,
                    valid: &valid,
                    valid_relevance: &clicks(&ds.valid),
                    valid_reward: eval_reward.as_ref().map(|r| r as &dyn ListReward),
                },
                &config.rl,
                &args.out,
                args.resume,
                (&autodiff, &plain),
                &mut bar,
            )
            .map_err(|e| e.to_string())?;
            println!(
                "RL: {} steps, {:.1} s; policy in {}",
                out.steps,
                t0.elapsed().as_secs_f64(),
                args.out.join(glorank_train::RL_POLICY_DIR).display()
            );
        }
    }
    Ok(())
}

/// One evaluated method: its metrics and (with a simulator) Average Reward.
pub struct Evaluated {
    /// Method name.
    pub name: String,
    /// List metrics with 95% CIs.
    pub metrics: glorank_metrics::MetricsSummary,
    /// Average Reward with its 95% CI.
    pub reward: Option<glorank_metrics::Summary>,
}

/// Scores `lists` for `samples`.
pub fn evaluate_lists(
    name: &str,
    requests: &[Request],
    samples: &[RerankSample],
    lists: &[Vec<usize>],
    cutoff: usize,
    simulator: Option<&UserResponseModel>,
    device: &glorank_tokenizer::Device,
) -> Result<Evaluated, String> {
    let metrics = list_metrics(lists, &clicks(samples), cutoff).map_err(|e| e.to_string())?;
    let reward = simulator
        .map(|s| average_reward(s, requests, lists, device))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Evaluated {
        name: name.into(),
        metrics,
        reward,
    })
}

/// Prints rows as a table: mean ± CI half-width per metric.
pub fn print_table(rows: &[Evaluated], cutoff: usize) {
    println!(
        "{:<22} {:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
        "method",
        format!("Precision@{cutoff}"),
        format!("Recall@{cutoff}"),
        format!("F1@{cutoff}"),
        format!("NDCG@{cutoff}"),
        format!("MAP@{cutoff}"),
        "Avg Reward"
    );
    let f = |s: &glorank_metrics::Summary| format!("{:.4}±{:.4}", s.mean, s.half_width());
    for r in rows {
        let m = &r.metrics;
        println!(
            "{:<22} {:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
            r.name,
            f(&m.precision),
            f(&m.recall),
            f(&m.f1),
            f(&m.ndcg),
            f(&m.map),
            r.reward.as_ref().map_or("-".into(), f)
        );
    }
    println!("(mean ± half-width of the 95% confidence interval over requests)");
}

/// The rows as JSON: method -> metric -> {mean, std_err, ci_low, ci_high, n}.
pub fn rows_json(rows: &[Evaluated]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for r in rows {
        let mut m = serde_json::to_value(r.metrics).unwrap_or_default();
        if let (Some(obj), Some(rw)) = (m.as_object_mut(), r.reward) {
            obj.insert(
                "average_reward".into(),
                serde_json::to_value(rw).unwrap_or_default(),
            );
        }
        out.insert(r.name.clone(), m);
    }
    serde_json::Value::Object(out)
}

/// `glorank eval`.
pub fn eval(args: &EvalArgs) -> Result<(), String> {
    let (ds, ids) = load_data(&args.data, args.tokenizer.as_deref())?;
    let builder = RequestBuilder::new(&ds, &ids).map_err(|e| e.to_string())?;
    let dev = glorank_tokenizer::Device::flex();
    let (policy, _) = Policy::load(&args.model, &dev).map_err(|e| e.to_string())?;
    let simulator = args
        .simulator
        .as_ref()
        .map(|d| load_reward(d, &dev))
        .transpose()?;
    let samples = match args.split {
        Split::Valid => &ds.valid,
        Split::Test => &ds.test,
    };
    let requests = builder.requests(samples);
    let t0 = Instant::now();
    let lists = greedy_lists(&policy, &requests, args.beam, &dev).map_err(|e| e.to_string())?;
    let secs = t0.elapsed().as_secs_f64();
    let name = args
        .model
        .file_name()
        .map_or("policy".into(), |n| n.to_string_lossy().into_owned());
    let row = evaluate_lists(
        &name,
        &requests,
        samples,
        &lists,
        policy.list_len(),
        simulator.as_ref(),
        &dev,
    )?;
    println!(
        "{} {:?} requests of {}, decoded in {secs:.2} s ({:.0} requests/s)",
        requests.len(),
        args.split,
        ds.name,
        requests.len() as f64 / secs.max(1e-9)
    );
    let rows = [row];
    print_table(&rows, policy.list_len());
    if let Some(path) = &args.json {
        let text = serde_json::to_vec_pretty(&rows_json(&rows)).map_err(|e| e.to_string())?;
        glorank_data::write_atomic(path, &text).map_err(|e| e.to_string())?;
    }
    Ok(())
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
    /// present; `metrics.json` is written there.
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
}

/// `glorank baselines`: trains PRM, DLCM and Seq2Slate, evaluates them next to MF order, the
/// oracle and the run's GloRank policies, prints the table and writes `metrics.json`.
pub fn baselines(args: &BaselinesArgs) -> Result<(), String> {
    use glorank_baselines::{Baseline, Features, fit, mf_order, oracle};
    let config = match &args.config {
        Some(p) => TrainingConfig::from_file(p).map_err(|e| e.to_string())?,
        None => TrainingConfig::default(),
    };
    let (ds, ids) = load_data(&args.data, args.tokenizer.as_deref())?;
    let builder = RequestBuilder::new(&ds, &ids).map_err(|e| e.to_string())?;
    let plain = glorank_tokenizer::Device::flex();
    let autodiff = plain.clone().autodiff();
    let samples = match args.split {
        Split::Valid => &ds.valid,
        Split::Test => &ds.test,
    };
    let requests = builder.requests(samples);
    let len = ds.config.slate_len;
    let sim_dir = args.out.join(SIMULATOR_DIR);
    let simulator = sim_dir
        .join(glorank_reward::WEIGHTS_FILE)
        .exists()
        .then(|| load_reward(&sim_dir, &plain))
        .transpose()?;
    let sim = simulator.as_ref();
    let mut rows = Vec::new();
    let mf: Vec<Vec<usize>> = samples
        .iter()
        .map(|s| mf_order(&ds.retriever_scores(s), len))
        .collect();
    rows.push(evaluate_lists(
        "MF order", &requests, samples, &mf, len, sim, &plain,
    )?);
    let features = Features::of(&ds);
    let mut timings = Vec::new();
    for kind in [Baseline::Prm, Baseline::Seq2Slate, Baseline::Dlcm] {
        let t0 = Instant::now();
        let (model, log) =
            fit(kind, &ds, &config.baselines, (&autodiff, &plain)).map_err(|e| e.to_string())?;
        let secs = t0.elapsed().as_secs_f64();
        timings.push(format!(
            "{}: {:.1} s, {:.0} training samples/s",
            kind.name(),
            secs,
            (ds.train.len() * log.len()) as f64 / secs.max(1e-9)
        ));
        println!("{} epochs: {:?}", kind.name(), log);
        let lists = model
            .rank(&ds, &features, samples, len, &plain)
            .map_err(|e| e.to_string())?;
        rows.push(evaluate_lists(
            kind.name(),
            &requests,
            samples,
            &lists,
            len,
            sim,
            &plain,
        )?);
    }
    let mut policies: Vec<(String, PathBuf)> = Vec::new();
    for spec in &args.policies {
        let (name, dir) = spec
            .split_once('=')
            .ok_or_else(|| format!("--policy {spec:?}: expected NAME=DIR"))?;
        policies.push((name.into(), dir.into()));
    }
    for (name, dir) in [
        ("GloRank SFT", SFT_POLICY_DIR),
        ("GloRank SFT+RL", glorank_train::RL_POLICY_DIR),
    ] {
        let d = args.out.join(dir);
        if d.join("policy.json").exists() {
            policies.push((name.into(), d));
        }
    }
    for (name, dir) in policies {
        let (policy, _) = Policy::load(&dir, &plain).map_err(|e| e.to_string())?;
        let lists = greedy_lists(&policy, &requests, 1, &plain).map_err(|e| e.to_string())?;
        rows.push(evaluate_lists(
            &name, &requests, samples, &lists, len, sim, &plain,
        )?);
    }
    let best: Vec<Vec<usize>> = samples
        .iter()
        .map(|s| oracle(&s.click_relevance(), len))
        .collect();
    rows.push(evaluate_lists(
        "oracle", &requests, samples, &best, len, sim, &plain,
    )?);
    println!(
        "{} {:?} requests of {}{}",
        requests.len(),
        args.split,
        ds.name,
        if sim.is_some() {
            ", Average Reward from the run's simulator"
        } else {
            " (no simulator in the run directory: no Average Reward)"
        }
    );
    print_table(&rows, len);
    for t in timings {
        println!("  {t}");
    }
    let text = serde_json::to_vec_pretty(&rows_json(&rows)).map_err(|e| e.to_string())?;
    glorank_data::write_atomic(&args.out.join("metrics.json"), &text).map_err(|e| e.to_string())?;
    Ok(())
}
