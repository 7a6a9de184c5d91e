//! One pipeline call on one run directory: the stages it runs or requires, what they have
//! loaded, the upstream checksums and the timings.

use super::plan::{EvalPlan, EvalReport, Hooks, Split, Stage, stage_error};
use crate::evaluation::context::{EvalContext, shuffle_candidates};
use crate::evaluation::{table, write_results};
use crate::run_dir::Freshness;
use crate::training::{self, load_reward};
use crate::{Config, Error, Result, RunDir};
use burn::tensor::Device;
use glorank_data::{DataError, PreparedDataset, RerankSample};
use glorank_policy::{ActionSpace, OutputHead, PolicyArch};
use glorank_reward::{RewardRole, UserResponseModel};
use glorank_tokenizer::SemanticIds;
use glorank_train::{Demonstrations, RewardSource, RunStatus};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

/// A configuration section as JSON, as the manifest records it.
fn section<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// What `slot` holds, once its stage has loaded it.
fn loaded<'x, T>(slot: &'x Option<T>, what: &str) -> Result<&'x T> {
    slot.as_ref()
        .ok_or_else(|| stage_error(what, "used before its stage loaded it".into()))
}

/// The stages one pipeline call runs or requires, and what they loaded.
pub(super) struct Session<'a, 'h, 'hh> {
    config: &'a Config,
    run: RunDir,
    hooks: &'h mut Hooks<'hh>,
    plain: Device,
    autodiff: Device,
    /// Checksums of the finished upstream artifacts, by name.
    inputs: BTreeMap<String, String>,
    /// The stages checked (built, reused or required) so far.
    done: HashSet<Stage>,
    ds: Option<PreparedDataset>,
    ids: Option<SemanticIds>,
    timings: Vec<(String, f64)>,
    clock: Instant,
}

impl<'a, 'h, 'hh> Session<'a, 'h, 'hh> {
    /// Checks the configuration, creates the run directory and records the configuration
    /// in its `config.toml`.
    pub(super) fn start(
        (config, device): (&'a Config, &Device),
        run: &RunDir,
        hooks: &'h mut Hooks<'hh>,
    ) -> Result<Self> {
        config.validate()?;
        run.create()?;
        run.write_config(config)?;
        Ok(Self {
            config,
            run: run.clone(),
            hooks,
            plain: device.clone(),
            autodiff: device.clone().autodiff(),
            inputs: BTreeMap::new(),
            done: HashSet::new(),
            ds: None,
            ids: None,
            timings: Vec::new(),
            clock: Instant::now(),
        })
    }

    /// The seconds of each stage this session ran, in order.
    pub(super) fn into_timings(self) -> Vec<(String, f64)> {
        self.timings
    }

    fn say(&mut self, line: &str) {
        (self.hooks.say)(line);
    }

    fn lap(&mut self, name: &str) {
        self.timings
            .push((name.to_string(), self.clock.elapsed().as_secs_f64()));
        self.clock = Instant::now();
    }

    /// The recorded checksums of `names` next to the dataset's and the tokenizer's.
    fn inputs_with(&self, names: &[&str]) -> Result<BTreeMap<String, String>> {
        let mut inputs = self.inputs.clone();
        for name in names {
            inputs.insert((*name).into(), self.run.recorded_checksum(name)?);
        }
        Ok(inputs)
    }

    /// Whether `stage`'s artifact must be built now. A stage this call runs (`build`) is
    /// reused when fresh, removed and rebuilt when stale, built (or continued) when missing;
    /// a stage it only requires must be there and fresh.
    fn plan(
        &mut self,
        stage: Stage,
        config: &Value,
        inputs: &BTreeMap<String, String>,
        build: bool,
    ) -> Result<bool> {
        let name = stage.artifact().unwrap_or("evaluation");
        match (self.run.check(name, config, inputs)?, build) {
            (Freshness::Fresh, _) => {
                if build {
                    self.say(&format!("{name}: up to date, reused"));
                }
                Ok(false)
            }
            (Freshness::Unrecorded, _) => {
                self.run.finish(name, config, inputs)?;
                self.say(&format!(
                    "{name}: reusing an artifact the manifest did not record (recorded now)"
                ));
                Ok(false)
            }
            (Freshness::Missing, true) => {
                self.run.begin(name, config, inputs)?;
                Ok(true)
            }
            (Freshness::Stale(why), true) => {
                self.say(&format!("{name}: rebuilding, {why}"));
                self.run.remove(name)?;
                self.run.begin(name, config, inputs)?;
                Ok(true)
            }
            (Freshness::Missing, false) => Err(Error::Missing {
                path: self.run.artifact_path(name),
                hint: format!("build it first (`{}`)", stage.command()),
            }),
            (Freshness::Stale(why), false) => Err(stage_error(
                name,
                format!(
                    "{} was built from another configuration or other inputs ({why}); rebuild \
                     it (`{}`) or run with the configuration the run was made with",
                    self.run.artifact_path(name).display(),
                    stage.command()
                ),
            )),
        }
    }

    /// Builds (`build`) or requires `stage` after the stages it is built on.
    pub(super) fn stage(&mut self, stage: Stage, build: bool) -> Result<()> {
        match stage {
            Stage::Prepare => self.dataset(build)?,
            Stage::Tokenize => {
                self.require(Stage::Prepare)?;
                self.tokenizer(build)?;
            }
            Stage::Evaluator | Stage::Simulator => {
                self.require(Stage::Tokenize)?;
                self.reward(stage, build)?;
            }
            Stage::Sft | Stage::Las => {
                self.require(Stage::Tokenize)?;
                if matches!(
                    self.config.sft.demonstrations,
                    Demonstrations::BestOfK { .. }
                ) {
                    self.require(Stage::Evaluator)?;
                }
                self.sft(stage, build)?;
            }
            Stage::Rl => {
                self.require(Stage::Sft)?;
                if self.config.rl.reward == RewardSource::Evaluator {
                    self.require(Stage::Evaluator)?;
                }
                self.rl(build)?;
            }
            Stage::Evaluate => {
                let plan = EvalPlan::pipeline(self.config, &self.run);
                self.evaluate(&plan)?;
            }
        }
        self.done.insert(stage);
        Ok(())
    }

    /// Requires `stage` (once per session).
    fn require(&mut self, stage: Stage) -> Result<()> {
        if self.done.contains(&stage) {
            return Ok(());
        }
        self.stage(stage, false)
    }

    /// The prepared dataset: read and cut by the protocol, or loaded.
    fn dataset(&mut self, build: bool) -> Result<()> {
        let mut config = section(&self.config.data);
        if let Some(o) = config.as_object_mut() {
            o.remove("path"); // where the files are is not what they hold
            if self.config.data.dataset == glorank_data::DatasetKind::Log {
                o.insert("log".into(), section(&self.config.log));
            }
        }
        let none = BTreeMap::new();
        let ds = if self.plan(Stage::Prepare, &config, &none, build)? {
            self.build_dataset(&config)?
        } else {
            match PreparedDataset::load(self.run.root()) {
                // A dataset written by another version of the format is rebuilt (and with
                // it, through its new checksum, everything downstream).
                Err(DataError::StaleCache {
                    found, expected, ..
                }) if build => {
                    self.say(&format!(
                        "dataset: rebuilding, written in format version {found}, this build reads {expected}"
                    ));
                    self.run.remove("dataset")?;
                    self.run.begin("dataset", &config, &none)?;
                    self.build_dataset(&config)?
                }
                other => other?,
            }
        };
        self.say(&format!(
            "  {} users, {} items, {} / {} / {} train / valid / test requests",
            ds.num_users(),
            ds.num_items(),
            ds.train_len(),
            ds.valid.len(),
            ds.test.len()
        ));
        for w in ds.stats.warnings() {
            self.say(&format!("  warning: {w}"));
        }
        if self.config.inputs.retriever_score && !ds.has_retriever_scores() {
            return Err(crate::Error::InvalidConfig {
                field: "inputs.retriever_score".into(),
                message: "the models read each candidate's retriever score, and the log's \
                          rows carry no `retriever_scores`: give them, or set \
                          inputs.retriever_score = false"
                    .into(),
            });
        }
        if self.config.inputs.exposures && ds.train_on_disk() {
            return Err(crate::Error::InvalidConfig {
                field: "inputs.exposures".into(),
                message: "exposure counts are gathered over every training request, which \
                          log.store = \"disk\" keeps on disk: set inputs.exposures = false, \
                          or log.store = \"memory\""
                    .into(),
            });
        }
        self.ds = Some(ds);
        self.inputs
            .insert("dataset".into(), self.run.recorded_checksum("dataset")?);
        self.lap("prepare");
        Ok(())
    }

    /// For `stage`, which reads every training request at once (SFT and evaluation read
    /// them from disk): when the dataset keeps them on disk, a copy with them loaded (said);
    /// `None` when they are in memory already.
    fn train_in_memory(&mut self, stage: &str) -> Result<Option<PreparedDataset>> {
        let ds = loaded(&self.ds, "dataset")?;
        if !ds.train_on_disk() {
            return Ok(None);
        }
        let line = format!(
            "  {stage} reads every training request: {} loaded from disk into memory",
            ds.train_len()
        );
        let copy = ds.with_train_loaded()?.into_owned();
        self.say(&line);
        Ok(Some(copy))
    }

    fn build_dataset(&mut self, config: &Value) -> Result<PreparedDataset> {
        self.say("prepare: building the dataset");
        let data = &self.config.data;
        let ds = data.source()?.with_log(&self.config.log).prepare_into(
            &data.protocol(),
            self.run.root(),
            self.hooks.progress,
        )?;
        self.run.finish("dataset", config, &BTreeMap::new())?;
        Ok(ds)
    }

    /// The semantic-ID table: learned, or loaded.
    fn tokenizer(&mut self, build: bool) -> Result<()> {
        let c = self.config;
        let config = section(&c.tokenizer);
        let inputs = self.inputs.clone();
        let ids = if self.plan(Stage::Tokenize, &config, &inputs, build)? {
            self.say("tokenize: learning semantic IDs");
            let (tokenizer, ids) = training::tokenize(
                loaded(&self.ds, "dataset")?,
                &c.tokenizer,
                self.run.tokenizer_dir(),
            )?;
            if let Some(stats) = tokenizer.stats().filter(|s| s.dedupe_overflow) {
                self.say(&format!(
                    "  warning: up to {} items share one code prefix, more than \
                     tokenizer.dedupe_codes {}; the dedupe vocabulary was enlarged to {}",
                    stats.max_collisions,
                    c.tokenizer.dedupe_codes,
                    ids.dedupe_codes()
                ));
            }
            self.run.finish("tokenizer", &config, &inputs)?;
            ids
        } else {
            SemanticIds::load(&self.run.semantic_ids_file())?
        };
        self.ids = Some(ids);
        self.inputs
            .insert("tokenizer".into(), self.run.recorded_checksum("tokenizer")?);
        self.lap("tokenize");
        Ok(())
    }

    /// The evaluator or the simulator.
    fn reward(&mut self, stage: Stage, build: bool) -> Result<()> {
        let c = self.config;
        let (name, role, cfg) = match stage {
            Stage::Evaluator => ("evaluator", RewardRole::Evaluator, &c.evaluator),
            _ => ("simulator", RewardRole::Simulator, &c.simulator),
        };
        let inputs = &c.inputs;
        let config = json!({
            name: section(cfg),
            "inputs": {"retriever_score": inputs.retriever_score},
        });
        let upstream = self.inputs.clone();
        if self.plan(stage, &config, &upstream, build)? {
            self.say(name);
            let full = self.train_in_memory(name)?;
            let devices = (&self.autodiff, &self.plain);
            training::train_reward(
                (
                    full.as_ref()
                        .map_or_else(|| loaded(&self.ds, "dataset"), Ok)?,
                    loaded(&self.ids, "tokenizer")?,
                ),
                (role, cfg, inputs),
                &self.run,
                devices,
                self.hooks.observer,
            )?;
            self.run.finish(name, &config, &upstream)?;
        }
        self.lap(name);
        Ok(())
    }

    /// SFT (`policy_sft/`), or the local-index ablation's SFT (`las/policy_sft/`).
    fn sft(&mut self, stage: Stage, build: bool) -> Result<()> {
        let c = self.config;
        let (name, label, target, arch) = if stage == Stage::Las {
            let mut arch: PolicyArch = c.policy.clone();
            arch.action_space = ActionSpace::LocalIndex;
            // Its outputs are positions: only the linear head applies.
            arch.output_head = OutputHead::Global;
            let label = "GloRank-LAS (local-index ablation, SFT)";
            ("las", label, self.run.las(), arch)
        } else {
            ("sft", "SFT", self.run.clone(), c.policy.clone())
        };
        let best_of_k = matches!(c.sft.demonstrations, Demonstrations::BestOfK { .. });
        let inputs = self.inputs_with(if best_of_k { &["evaluator"] } else { &[] })?;
        let config =
            json!({"policy": section(&arch), "inputs": section(&c.inputs), "sft": section(&c.sft)});
        if self.plan(stage, &config, &inputs, build)? {
            self.say(label);
            let (ds, ids) = (
                loaded(&self.ds, "dataset")?,
                loaded(&self.ids, "tokenizer")?,
            );
            let policy_config = training::policy_config(ds, ids, (&arch, &c.inputs))?;
            let out = training::train_sft_stage(
                (ds, ids),
                (&c.sft, &policy_config),
                (&target, &self.run),
                (&self.autodiff, &self.plain),
                self.hooks.observer,
            )?;
            if out.status == RunStatus::Interrupted {
                return Err(Error::Interrupted);
            }
            self.run.finish(name, &config, &inputs)?;
        }
        self.lap(name);
        Ok(())
    }

    /// Group-relative RL from the SFT policy.
    fn rl(&mut self, build: bool) -> Result<()> {
        let c = self.config;
        let evaluator = c.rl.reward == RewardSource::Evaluator;
        let inputs = self.inputs_with(if evaluator {
            &["sft", "evaluator"]
        } else {
            &["sft"]
        })?;
        let config = json!({"policy": section(&c.policy), "inputs": section(&c.inputs), "rl": section(&c.rl)});
        if self.plan(Stage::Rl, &config, &inputs, build)? {
            self.say("RL");
            let full = self.train_in_memory("RL")?;
            let out = training::train_rl_stage(
                (
                    full.as_ref()
                        .map_or_else(|| loaded(&self.ds, "dataset"), Ok)?,
                    loaded(&self.ids, "tokenizer")?,
                ),
                &c.rl,
                &self.run,
                (&self.autodiff, &self.plain),
                self.hooks.observer,
            )?;
            if out.status == RunStatus::Interrupted {
                return Err(Error::Interrupted);
            }
            self.run.finish("rl", &config, &inputs)?;
        }
        self.lap("rl");
        Ok(())
    }

    /// The policies a plan scores, as (row name, directory): the LAS ablation, the run's
    /// SFT and RL policies (required or those present), then the plan's own.
    fn policies(&mut self, plan: &EvalPlan) -> Result<Vec<(String, std::path::PathBuf)>> {
        let mut out = Vec::new();
        if plan.las {
            self.require(Stage::Las)?;
            out.push(("GloRank-LAS".to_string(), self.run.las().policy_sft()));
        }
        if let Some(required) = plan.glorank {
            for (stage, name, dir) in [
                (Stage::Sft, "GloRank SFT", self.run.policy_sft()),
                (Stage::Rl, "GloRank SFT+RL", self.run.policy_rl()),
            ] {
                if required || RunDir::is_policy(&dir) {
                    self.require(stage)?;
                    out.push((name.to_string(), dir));
                }
            }
        }
        // A policy named by its directory is verified like a stage's: when it is one of the
        // run's own, against the manifest's record of it.
        for (_, dir) in &plan.policies {
            if let Some(name) = self.run.policy_artifact(dir) {
                self.run.verify(&[name])?;
            }
        }
        out.extend(plan.policies.iter().cloned());
        Ok(out)
    }

    /// The simulator, when the plan needs it (the pipeline's) or the run has one.
    fn simulator(&mut self, plan: &EvalPlan) -> Result<Option<UserResponseModel>> {
        let dir = self.run.reward_model(RewardRole::Simulator);
        if plan.glorank != Some(true) && !dir.exists() {
            return Ok(None);
        }
        self.require(Stage::Simulator)?;
        Ok(Some(load_reward(&dir, &self.plain)?))
    }

    /// Evaluates what `plan` names on the run's data.
    pub(super) fn evaluate(&mut self, plan: &EvalPlan) -> Result<EvalReport> {
        self.require(Stage::Tokenize)?;
        let simulator = self.simulator(plan)?;
        let policies = self.policies(plan)?;
        self.clock = Instant::now();
        let split = if plan.split == Split::Valid {
            "validation"
        } else {
            "test"
        };
        self.say(&format!("evaluation on the {split} split"));
        let full = if plan.baselines {
            self.train_in_memory("training the baselines")?
        } else {
            None
        };
        let (c, ds, ids) = (
            self.config,
            full.as_ref()
                .map_or_else(|| loaded(&self.ds, "dataset"), Ok)?,
            loaded(&self.ids, "tokenizer")?,
        );
        let split = if plan.split == Split::Valid {
            &ds.valid
        } else {
            &ds.test
        };
        let shuffled = plan
            .shuffle_candidates
            .map(|seed| shuffle_candidates(split, seed));
        let samples: &[RerankSample] = shuffled.as_deref().unwrap_or(split);
        let ctx = EvalContext::new(ds, ids, samples, simulator.as_ref(), &self.plain)?
            .with_beam(c.eval.beam)
            .with_prefix_penalty(c.eval.prefix_penalty)?;
        let (mut rows, last) = ctx.reference_rows()?;
        let mut timings = Vec::new();
        if plan.baselines {
            for (row, secs) in ctx.baselines((&c.baselines, &c.inputs), &self.autodiff)? {
                timings.push((row.name.clone(), secs));
                rows.push(row);
            }
        }
        for (name, dir) in &policies {
            rows.push(ctx.evaluate_policy(name, dir)?);
        }
        rows.extend(last);
        let table = match &plan.write {
            Some(out) => write_results(out, ds, samples, &rows)?,
            None => table(&rows, ds.config.slate_len),
        };
        let requests = samples.len();
        self.lap("evaluate");
        Ok(EvalReport {
            rows,
            table,
            requests,
            timings,
            average_reward: simulator.is_some(),
        })
    }
}
