//! The end-to-end pipeline: one TOML configuration, one run directory, every stage.

use crate::config::TokenizerConfig;
use crate::run_dir::Freshness;
use crate::stages::{self, EvalContext, MethodResult};
use crate::{Error, Result, RunDir};
use burn::tensor::Device;
use glorank_baselines::BaselineConfig;
use glorank_data::{DataConfig, NoProgress, PreparedDataset};
use glorank_reward::RewardRole;
use glorank_tokenizer::SemanticIds;
use glorank_train::{
    Demonstrations, LrDecay, LrSchedule, NoObserver, PolicyOptions, RewardSource,
    RewardTrainConfig, RlConfig, RunStatus, SftConfig, TrainObserver, TrainingConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Every stage's configuration; each section and field is optional in the TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PipelineConfig {
    /// Data and protocol.
    pub data: DataConfig,
    /// Semantic IDs.
    pub tokenizer: TokenizerConfig,
    /// Policy architecture.
    pub policy: PolicyOptions,
    /// Evaluator training.
    pub evaluator: RewardTrainConfig,
    /// Simulator training.
    pub simulator: RewardTrainConfig,
    /// SFT.
    pub sft: SftConfig,
    /// RL.
    pub rl: RlConfig,
    /// Baseline training.
    pub baselines: BaselineConfig,
    /// Train and report PRM, Seq2Slate and DLCM (default true).
    pub run_baselines: bool,
    /// Train and report the GloRank local-index (LAS) ablation (default true).
    pub run_las: bool,
    /// Beam width of the GloRank rows' test lists (1: greedy, the default; `W > 1`: the
    /// best list of a beam search over whole lists). Greedy token-by-token decoding picks
    /// the semantic-ID prefix with the most probability mass, not the prefix of the most
    /// probable item, so its lists crowd into one code cluster; the demo presets use 8
    /// (docs/benchmarks.md, "Greedy tokens crowd the list"). Model selection during
    /// training stays greedy.
    pub eval_beam: usize,
}

/// The widest beam [`PipelineConfig::eval_beam`] accepts.
pub const MAX_EVAL_BEAM: usize = 64;

impl Default for PipelineConfig {
    fn default() -> Self {
        let t = TrainingConfig::default();
        Self {
            data: DataConfig::default(),
            tokenizer: TokenizerConfig::default(),
            policy: t.policy,
            evaluator: t.evaluator,
            simulator: t.simulator,
            sft: t.sft,
            rl: t.rl,
            baselines: t.baselines,
            run_baselines: true,
            run_las: true,
            eval_beam: 1,
        }
    }
}

impl PipelineConfig {
    /// What the two demo presets share: a synthetic world whose every candidate gets
    /// feedback from the true click model (`data.pool_feedback`), SFT and Seq2Slate
    /// imitating the labels' top of the pool, a 4-factor retriever, a d = 64 policy that
    /// reads the items' content vectors as the baselines do (`policy.item_content`), small
    /// reward models trained for 2 epochs on one pool list per slate, SFT for up to 12
    /// epochs at lr 2e-3 with a 20-step warmup and a cosine decay to a tenth, RL at lr 2e-4,
    /// baselines at lr 2e-3 with 2 REINFORCE samples, and the GloRank rows' test lists from a
    /// beam of 8; SFT's best epoch and RL's kept step are chosen on validation lists from the
    /// same beam.
    fn demo_base(rl_steps: usize, rl_every: usize, baseline_epochs: usize) -> Self {
        let mut c = Self::default();
        c.data.pool_feedback = true;
        c.data.retriever_factors = 4;
        c.policy.d_model = 64;
        c.policy.item_content = true;
        c.evaluator = RewardTrainConfig::default().with_epochs(2, 2);
        c.evaluator.pool_lists = 1;
        c.simulator = RewardTrainConfig::default().with_epochs(2, 2).with_seed(1);
        c.simulator.pool_lists = 1;
        c.simulator.d_model = 64;
        c.simulator.layers = 2;
        let beam = 8;
        c.sft = SftConfig::default()
            .with(12, 64, 2e-3)
            .with_schedule(LrSchedule {
                warmup_steps: 20,
                decay: LrDecay::Cosine,
                final_factor: 0.1,
            });
        c.sft.demonstrations = Demonstrations::Labels;
        c.sft.valid_beam = beam;
        c.rl = RlConfig::default().with_steps(rl_steps, 16, rl_every);
        c.rl.learning_rate = 2e-4;
        c.rl.keep_best = true;
        c.rl.valid_beam = beam;
        c.baselines = BaselineConfig::default().with(baseline_epochs, 64, 2e-3);
        c.baselines.reinforce_samples = 2;
        c.baselines.label_demonstrations = true;
        c.eval_beam = beam;
        c
    }

    /// The `glorank demo --quick` configuration: a 450-user synthetic world, small models,
    /// few epochs (about two minutes on two cores).
    pub fn quick() -> Self {
        let mut c = Self::demo_base(30, 10, 2);
        c.data.users = 450;
        c.data.items = 300;
        c.data.sessions = 8;
        c.data.history = 20;
        c.data.k_core = 10;
        c.policy.layers = 1;
        c
    }

    /// The `glorank demo` configuration: a 1,000-user, 500-item synthetic world with pools of
    /// 50 and a 4-factor retriever, models and epochs sized for a two-core CPU in a release
    /// build (timings in docs/benchmarks.md).
    pub fn demo() -> Self {
        let mut c = Self::demo_base(60, 20, 3);
        c.data.users = 1000;
        c.data.items = 500;
        c.data.history = 30;
        c.policy.layers = 2;
        c
    }

    /// Parses a TOML document.
    ///
    /// # Errors
    /// [`Error::Format`] with TOML's line and column; invalid values name their field.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        let c: Self = toml::from_str(text).map_err(|e| Error::Format {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        c.data.validate()?;
        c.tokenizer.validate()?;
        c.training().validate()?;
        if !(1..=MAX_EVAL_BEAM).contains(&c.eval_beam) {
            return Err(Error::Format {
                path: origin.to_path_buf(),
                message: format!(
                    "eval_beam: expected 1..={MAX_EVAL_BEAM}, got {}",
                    c.eval_beam
                ),
            });
        }
        Ok(c)
    }

    /// Reads a TOML file.
    ///
    /// # Errors
    /// As [`PipelineConfig::from_toml`], plus [`Error::Io`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_toml(&text, path)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The training sections as a [`TrainingConfig`].
    pub fn training(&self) -> TrainingConfig {
        let mut t = TrainingConfig::default();
        t.policy = self.policy.clone();
        t.evaluator = self.evaluator.clone();
        t.simulator = self.simulator.clone();
        t.sft = self.sft.clone();
        t.rl = self.rl.clone();
        t.baselines = self.baselines.clone();
        t
    }
}

/// A configuration section as JSON, as the manifest records it.
fn json<T: Serialize>(section: &T) -> serde_json::Value {
    serde_json::to_value(section).unwrap_or_default()
}

/// Whether artifact `name` must be built: reused when fresh (or unrecorded, from a run
/// directory older than manifests), otherwise removed when stale and (re)built, saying why.
fn plan(
    run: &RunDir,
    name: &str,
    config: &serde_json::Value,
    inputs: &BTreeMap<String, String>,
    say: &mut dyn FnMut(&str),
) -> Result<bool> {
    match run.check(name, config, inputs)? {
        Freshness::Fresh => {
            say(&format!("{name}: up to date, reused"));
            Ok(false)
        }
        Freshness::Unrecorded => {
            run.finish(name, config, inputs)?;
            say(&format!(
                "{name}: reusing an artifact the manifest did not record (recorded now)"
            ));
            Ok(false)
        }
        Freshness::Missing => {
            run.begin(name, config, inputs)?;
            Ok(true)
        }
        Freshness::Stale(why) => {
            say(&format!("{name}: rebuilding, {why}"));
            run.remove(name)?;
            run.begin(name, config, inputs)?;
            Ok(true)
        }
    }
}

/// Where a stage reports: training progress and one line per decision.
type Reporting<'a> = (&'a mut dyn TrainObserver, &'a mut dyn FnMut(&str));

/// Builds an SFT-trained artifact (`sft`, or the `las` ablation written into `target`) when
/// the manifest says so; best-of-K demonstrations read `run`'s evaluator.
fn sft_artifact(
    (run, name, label): (&RunDir, &str, &str),
    (ds, ids, training): (&PreparedDataset, &SemanticIds, &TrainingConfig),
    target: &RunDir,
    (section, inputs): (&serde_json::Value, &BTreeMap<String, String>),
    devices: (&Device, &Device),
    (observer, say): Reporting<'_>,
) -> Result<()> {
    if plan(run, name, section, inputs, say)? {
        say(label);
        let policy_config = stages::policy_config(ds, ids, training)?;
        let out = stages::train_sft_stage(
            ds,
            ids,
            training,
            &policy_config,
            (target, run),
            true,
            devices,
            observer,
        )?;
        if out.status == RunStatus::Interrupted {
            return Err(Error::Interrupted);
        }
        run.finish(name, section, inputs)?;
    }
    Ok(())
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

/// Runs every stage of a [`PipelineConfig`] into a run directory.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: PipelineConfig,
    device: Device,
}

impl Pipeline {
    /// A pipeline on the default CPU device (flex).
    pub fn new(config: PipelineConfig) -> Self {
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

    /// Runs silently. See [`Pipeline::run_with`].
    ///
    /// # Errors
    /// As [`Pipeline::run_with`].
    pub fn run(&self, dir: &Path) -> Result<PipelineReport> {
        self.run_with(dir, &mut NoObserver, &mut |_| {})
    }

    /// Runs every stage into `dir`, reusing what is already there: `dataset.bin`,
    /// `semantic_ids.json`, `evaluator/`, `simulator/`, finished or checkpointed SFT and RL
    /// runs, and the LAS ablation in `las/`. Then evaluates every method on the test split and
    /// writes `metrics.json`, `predictions.jsonl`, `report.md` (with SVG training curves) and
    /// `config.toml`. `observer` sees the training steps; `say` receives one line per stage.
    ///
    /// # Errors
    /// Configuration, data, training and file errors.
    pub fn run_with(
        &self,
        dir: &Path,
        observer: &mut dyn TrainObserver,
        say: &mut dyn FnMut(&str),
    ) -> Result<PipelineReport> {
        let c = &self.config;
        let training = c.training();
        c.data.validate()?;
        c.tokenizer.validate()?;
        training.validate()?;
        let run = RunDir::new(dir);
        run.create()?;
        glorank_nn::persist::write_atomic(&run.config_file(), c.to_toml().as_bytes())?;
        let plain = self.device.clone();
        let autodiff = plain.clone().autodiff();
        let devices = (&autodiff, &plain);
        let mut timings = Vec::new();
        let mut clock = Instant::now();
        let mut lap = |name: &str, timings: &mut Vec<(String, f64)>| {
            timings.push((name.to_string(), clock.elapsed().as_secs_f64()));
            clock = Instant::now();
        };

        // Every artifact is reused only when the manifest says it was built from the same
        // configuration section and the same upstream artifacts; otherwise it is removed
        // (with its checkpoint) and rebuilt, and `say` tells which and why.
        let mut data_section = json(&c.data);
        if let Some(o) = data_section.as_object_mut() {
            o.remove("path"); // where the files are is not what they hold
        }
        let mut inputs: BTreeMap<String, String> = BTreeMap::new();
        let build = |say: &mut dyn FnMut(&str)| -> Result<PreparedDataset> {
            say("prepare: building the dataset");
            let ds = c.data.source()?.prepare(&c.data.protocol(), &NoProgress)?;
            ds.save(run.root())?;
            run.finish("dataset", &data_section, &inputs)?;
            Ok(ds)
        };
        let ds = if plan(&run, "dataset", &data_section, &inputs, say)? {
            build(say)?
        } else {
            match PreparedDataset::load(run.root()) {
                // A dataset written by another version of the format is rebuilt (and with
                // it, through its new checksum, everything downstream).
                Err(glorank_data::DataError::StaleCache {
                    found, expected, ..
                }) => {
                    say(&format!(
                        "dataset: rebuilding, written in format version {found}, this build reads {expected}"
                    ));
                    run.remove("dataset")?;
                    run.begin("dataset", &data_section, &inputs)?;
                    build(say)?
                }
                other => other?,
            }
        };
        say(&format!(
            "  {} users, {} items, {} / {} / {} train / valid / test requests",
            ds.num_users(),
            ds.num_items(),
            ds.train.len(),
            ds.valid.len(),
            ds.test.len()
        ));
        for w in ds.stats.warnings() {
            say(&format!("  warning: {w}"));
        }
        // Every artifact is recorded by now (checked, adopted or just built): its inputs'
        // checksums come from the manifest, not from reading the artifacts again.
        let checksum = |name: &str| run.recorded_checksum(name);
        inputs.insert("dataset".into(), checksum("dataset")?);
        lap("prepare", &mut timings);

        let tok_section = json(&c.tokenizer);
        let ids = if plan(&run, "tokenizer", &tok_section, &inputs, say)? {
            say("tokenize: learning semantic IDs");
            let ids = stages::tokenize(&ds, &c.tokenizer, run.tokenizer_dir())?.1;
            run.finish("tokenizer", &tok_section, &inputs)?;
            ids
        } else {
            SemanticIds::load(&run.semantic_ids_file())?
        };
        inputs.insert("tokenizer".into(), checksum("tokenizer")?);
        lap("tokenize", &mut timings);

        for (name, role, cfg) in [
            ("evaluator", RewardRole::Evaluator, &c.evaluator),
            ("simulator", RewardRole::Simulator, &c.simulator),
        ] {
            let section = json(cfg);
            if plan(&run, name, &section, &inputs, say)? {
                say(name);
                stages::train_reward(&ds, &ids, role, cfg, &run, true, devices, observer)?;
                run.finish(name, &section, &inputs)?;
            }
            lap(name, &mut timings);
        }
        let evaluator_sum = checksum("evaluator")?;
        let simulator = stages::load_reward(&run.reward_model(RewardRole::Simulator), &plain)?;

        let best_of_k = matches!(training.sft.demonstrations, Demonstrations::BestOfK { .. });
        let mut sft_inputs = inputs.clone();
        if best_of_k {
            sft_inputs.insert("evaluator".into(), evaluator_sum.clone());
        }
        let sft_section = serde_json::json!({"policy": json(&c.policy), "sft": json(&c.sft)});
        sft_artifact(
            (&run, "sft", "SFT"),
            (&ds, &ids, &training),
            &run,
            (&sft_section, &sft_inputs),
            devices,
            (observer, &mut *say),
        )?;
        lap("sft", &mut timings);

        let mut rl_inputs = inputs.clone();
        rl_inputs.insert("sft".into(), checksum("sft")?);
        if training.rl.reward == RewardSource::Evaluator {
            rl_inputs.insert("evaluator".into(), evaluator_sum.clone());
        }
        let rl_section = serde_json::json!({"policy": json(&c.policy), "rl": json(&c.rl)});
        if plan(&run, "rl", &rl_section, &rl_inputs, say)? {
            say("RL");
            let out = stages::train_rl_stage(&ds, &ids, &training, &run, true, devices, observer)?;
            if out.status == RunStatus::Interrupted {
                return Err(Error::Interrupted);
            }
            run.finish("rl", &rl_section, &rl_inputs)?;
        }
        lap("rl", &mut timings);

        let las_run = run.las();
        if c.run_las {
            let mut las = training.clone();
            las.policy.action_space = glorank_policy::ActionSpace::LocalIndex;
            // Its outputs are positions: only the linear head applies.
            las.policy.output_head = glorank_policy::OutputHead::Global;
            let las_section = serde_json::json!({"policy": json(&las.policy), "sft": json(&c.sft)});
            sft_artifact(
                (&run, "las", "GloRank-LAS (local-index ablation, SFT)"),
                (&ds, &ids, &las),
                &las_run,
                (&las_section, &sft_inputs),
                devices,
                (observer, &mut *say),
            )?;
            lap("las", &mut timings);
        }

        say("evaluation on the test split");
        let ctx =
            EvalContext::new(&ds, &ids, &ds.test, Some(&simulator), &plain)?.with_beam(c.eval_beam);
        let (mut rows, last) = ctx.reference_rows()?;
        if c.run_baselines {
            for (row, secs) in ctx.baselines(&c.baselines, &autodiff)? {
                timings.push((format!("baseline {}", row.name), secs));
                rows.push(row);
            }
        }
        if c.run_las {
            rows.push(ctx.evaluate_policy("GloRank-LAS", &las_run.policy_sft())?);
        }
        rows.push(ctx.evaluate_policy("GloRank SFT", &run.policy_sft())?);
        rows.push(ctx.evaluate_policy("GloRank SFT+RL", &run.policy_rl())?);
        rows.extend(last);
        lap("evaluate", &mut timings);

        let table = stages::write_results(&run, &ds, &ds.test, &rows)?;
        let report = PipelineReport {
            rows,
            table,
            timings,
            dir: dir.to_path_buf(),
        };
        crate::report::write_report(&report, &ds, c)?;
        Ok(report)
    }
}
