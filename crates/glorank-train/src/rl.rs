//! Group-relative policy-gradient post-training (GRPO-style) with a KL penalty to the frozen
//! SFT policy: one step ([`rl_step`]) and the resumable loop ([`train_rl`]).

use crate::advantage::group_advantages;
use crate::checkpoint::StageOutput;
use crate::config::{RewardSource, check, check_beam, check_max};
use crate::eval::{ListReward, greedy_lists, list_metrics};
use crate::optim::OptimConfig;
use crate::policy_run::PolicyRun;
use crate::skeleton::{RunStatus, StepOutcome, TrainObserver, TrainingLoop, drive, sharded_step};
use crate::{Result, TrainError, derive_seed};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};
use glorank_policy::{Policy, PolicyConfig, Request, decode};
use glorank_trie::{CandidateTrie, DecodeStrategy, Decoder};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::index::sample;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Instant;

/// Hyper-parameters of [`rl_step`] and [`train_rl`] (the `[rl]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RlConfig {
    /// Optimisation steps (default 300).
    pub steps: usize,
    /// Lists sampled per request, `G` (default 8).
    pub group_size: usize,
    /// Sampling temperature (default 1.0).
    pub temperature: f32,
    /// Weight of the per-token KL penalty to the reference (SFT) policy (default 0.05).
    pub kl_coef: f64,
    /// Floor of the group standard deviation (default 1e-3).
    pub std_floor: f32,
    /// The reward (default: the evaluator).
    pub reward: RewardSource,
    /// Validation every this many steps and at the end (0: only at the end; default 50).
    pub eval_every: usize,
    /// A checkpoint every this many steps and at the end (default 50).
    pub checkpoint_every: usize,
    /// Beam width of the validation lists (default 1: greedy); as
    /// [`crate::SftConfig::valid_beam`], set it to the width of the final evaluation so
    /// `keep_best` picks the best step under that decoding.
    pub valid_beam: usize,
    /// Keep the policy of the validation with the best NDCG@L (step 0, the SFT policy,
    /// included) instead of the last step's, as SFT keeps its best epoch (default false:
    /// the last step). Without validation requests the last step is kept.
    pub keep_best: bool,
    /// The optimiser; `batch_size` counts requests per step, each sampled `group_size`
    /// times (default: 16 requests, rate 5e-5 constant, no weight decay, gradient norm
    /// clipped at 1, 4 shards, seed 0).
    pub optim: OptimConfig,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            steps: 300,
            group_size: 8,
            temperature: 1.0,
            kl_coef: 0.05,
            std_floor: 1e-3,
            reward: RewardSource::Evaluator,
            eval_every: 50,
            checkpoint_every: 50,
            valid_beam: 1,
            keep_best: false,
            optim: OptimConfig::default()
                .with(16, 5e-5)
                .with_weight_decay(0.0)
                .with_grad_clip_norm(1.0),
        }
    }
}

impl RlConfig {
    /// Sets group size, KL weight and learning rate.
    pub fn with(mut self, group_size: usize, kl_coef: f64, learning_rate: f64) -> Self {
        self.group_size = group_size;
        self.kl_coef = kl_coef;
        self.optim.learning_rate = learning_rate;
        self
    }

    /// Sets steps, requests per step and the evaluation/checkpoint interval.
    pub fn with_steps(mut self, steps: usize, batch_size: usize, every: usize) -> Self {
        self.steps = steps;
        self.optim.batch_size = batch_size;
        self.eval_every = every;
        self.checkpoint_every = every;
        self
    }

    /// Sets the optimiser.
    pub fn with_optim(mut self, optim: OptimConfig) -> Self {
        self.optim = optim;
        self
    }

    /// Sets the optimiser's learning-rate schedule.
    pub fn with_schedule(mut self, schedule: crate::LrSchedule) -> Self {
        self.optim.schedule = schedule;
        self
    }

    /// Sets the seed of the request batches, the sampling and dropout.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.optim.seed = seed;
        self
    }

    /// Sets the reward source.
    pub fn with_reward(mut self, reward: RewardSource) -> Self {
        self.reward = reward;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        self.optim.validate("rl")?;
        check("rl.steps", self.steps > 0, "must be > 0")?;
        check("rl.group_size", self.group_size >= 2, "must be >= 2")?;
        {
            use glorank_nn::limits::{MAX_BATCH, MAX_GROUP, MAX_STEPS};
            check_max("rl.steps", self.steps, MAX_STEPS)?;
            check_max("rl.group_size", self.group_size, MAX_GROUP)?;
            check_beam("rl.valid_beam", self.valid_beam)?;
            check_max(
                "rl.optim.batch_size x rl.group_size",
                self.optim.batch_size.saturating_mul(self.group_size),
                MAX_BATCH,
            )?;
        }
        check(
            "rl.temperature",
            self.temperature.is_finite() && self.temperature > 0.0,
            "must be finite and > 0",
        )?;
        check(
            "rl.kl_coef",
            self.kl_coef.is_finite() && self.kl_coef >= 0.0,
            "must be finite and >= 0",
        )?;
        check(
            "rl.std_floor",
            self.std_floor.is_finite() && self.std_floor > 0.0,
            "must be finite and > 0",
        )?;
        check(
            "rl.checkpoint_every",
            self.checkpoint_every > 0,
            "must be > 0",
        )
    }
}

/// What one [`rl_step`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct RlStepStats {
    /// Mean reward of the sampled lists.
    pub mean_reward: f64,
    /// Mean per-token KL estimate to the reference policy.
    pub kl: f64,
    /// Monte-Carlo estimate of the per-token entropy of the (masked) policy: the mean of
    /// `-log pi(token)` over the sampled tokens.
    pub entropy: f64,
    /// Groups with zero reward variance (no policy-gradient signal).
    pub skipped_groups: usize,
    /// The update itself.
    pub update: StepOutcome,
}

/// One RL step:
/// 1. sample `group_size` lists per request from the current policy (`decoder` should use a
///    sampling strategy; `policy.valid()` decodes on `plain`);
/// 2. score them with `reward` (`ids[r]` is request `r`'s index in the training set);
/// 3. group-relative advantages ([`group_advantages`]);
/// 4. loss = `-mean(A * log pi(list)) + kl_coef * mean_tokens(exp(d) - d - 1)` with
///    `d = log pi_ref - log pi` per token (the non-negative k3 estimator);
/// 5. backward, global gradient-norm clipping, optimizer step on `train` (the autodiff device
///    the policy lives on); a non-finite loss or gradient skips the update (reported).
///
/// # Errors
/// Decoding, reward or input errors.
#[allow(clippy::too_many_arguments)]
pub fn rl_step(
    policy: Policy,
    reference: &Policy,
    optim: &mut ModuleOptimizer,
    requests: &[Request],
    ids: &[usize],
    reward: &dyn ListReward,
    decoder: &mut Decoder,
    config: &RlConfig,
    (train, plain): (&Device, &Device),
) -> Result<(Policy, RlStepStats)> {
    let g = config.group_size;
    if g == 0 || requests.is_empty() || ids.len() != requests.len() {
        return Err(TrainError::InvalidInput(
            "need requests, one id per request and group_size >= 1".into(),
        ));
    }
    // 1-2. Sample and score.
    let rows: Vec<Request> = requests
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.clone(), g))
        .collect();
    let sampled = decode(&policy.valid(), &rows, decoder, plain)?;
    let (mut tokens, mut neg_lp) = (0usize, 0.0f64);
    let lists: Vec<Vec<usize>> = sampled
        .into_iter()
        .map(|mut l| {
            let best = l.swap_remove(0);
            tokens += best.token_logprobs.len();
            neg_lp -= best
                .token_logprobs
                .iter()
                .map(|&x| f64::from(x))
                .sum::<f64>();
            best.items
        })
        .collect();
    let row_refs: Vec<&Request> = rows.iter().collect();
    let row_ids: Vec<usize> = ids
        .iter()
        .flat_map(|&i| std::iter::repeat_n(i, g))
        .collect();
    let rewards = reward.rewards(&row_refs, &row_ids, &lists)?;
    let adv = group_advantages(&rewards, g, config.std_floor)?;
    let mean_reward = rewards.iter().map(|&r| f64::from(r)).sum::<f64>() / rewards.len() as f64;
    // 3-4. Log-probs under the current (tracked) and reference (constant) policies.
    let tries: Vec<CandidateTrie> = rows
        .iter()
        .map(|r| policy.trie(r))
        .collect::<std::result::Result<_, _>>()?;
    let ref_batch = reference.encode_inputs(&rows, plain)?;
    let (ref_tok, _) = reference.log_probs(&ref_batch, &tries, &lists)?;
    let [n, t] = ref_tok.dims();
    let ref_tok: Vec<f32> = ref_tok.into_data().iter::<f32>().collect();
    // Each shard's share: its rows' sums divided by the whole batch's counts.
    let kl_shares = std::sync::Mutex::new(Vec::new());
    // 5. Gradients over the shards, then the update.
    let (policy, update) = sharded_step(
        policy,
        optim,
        train,
        (n, config.optim.shards),
        (config.optim.learning_rate, config.optim.clip()),
        |p: &Policy, range: std::ops::Range<usize>| {
            let m = range.len();
            let batch = p.encode_inputs(&rows[range.clone()], train)?;
            let (tok_lp, seq_lp) =
                p.log_probs(&batch, &tries[range.clone()], &lists[range.clone()])?;
            let ref_tok = Tensor::<2>::from_data(
                TensorData::new(ref_tok[range.start * t..range.end * t].to_vec(), [m, t]),
                train,
            );
            let adv_t = Tensor::<1>::from_data(
                TensorData::new(adv.values[range.clone()].to_vec(), [m]),
                train,
            );
            let pg = (adv_t * seq_lp).sum().div_scalar(n as f32).neg();
            let d = ref_tok - tok_lp;
            let kl = (d.clone().exp() - d - 1.0)
                .sum()
                .div_scalar((n * t).max(1) as f32);
            let kl_value = f64::from(kl.clone().into_scalar::<f32>());
            kl_shares
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((range.start, kl_value));
            Ok::<_, TrainError>(pg + kl.mul_scalar(config.kl_coef as f32))
        },
    )?;
    let mut kl_shares = kl_shares.into_inner().unwrap_or_else(|e| e.into_inner());
    kl_shares.sort_by_key(|&(start, _)| start);
    let kl_value: f64 = kl_shares.iter().map(|&(_, v)| v).sum();
    Ok((
        policy,
        RlStepStats {
            mean_reward,
            kl: kl_value,
            entropy: neg_lp / tokens.max(1) as f64,
            skipped_groups: adv.skipped_groups,
            update,
        },
    ))
}

/// The inputs of [`train_rl`].
#[derive(Clone, Copy)]
pub struct RlData<'a> {
    /// Training requests.
    pub train: &'a [Request],
    /// The training reward (evaluator or labels), indexed like `train`.
    pub reward: &'a dyn ListReward,
    /// Validation requests (may be empty).
    pub valid: &'a [Request],
    /// Relevance of each validation request's candidates.
    pub valid_relevance: &'a [Vec<f64>],
    /// A reward for the greedy validation lists (typically the evaluator), logged as
    /// `valid_reward`; validation request `r` is passed as id `r`.
    pub valid_reward: Option<&'a dyn ListReward>,
}

impl std::fmt::Debug for RlData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RlData")
            .field("train", &self.train.len())
            .field("valid", &self.valid.len())
            .finish()
    }
}

/// How an RL run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RlOutcome {
    /// Finished or interrupted.
    pub status: RunStatus,
    /// Steps done.
    pub steps: u64,
    /// Every evaluation record (also in `rl_log.jsonl`).
    pub log: Vec<serde_json::Value>,
}

/// The trainer state saved in each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RlState {
    step: u64,
    sums: [f64; 4],
    count: u64,
    skipped_steps: u64,
    skipped_groups: u64,
    train_seconds: f64,
    samples: u64,
    log: Vec<serde_json::Value>,
    /// The best validation so far, `(step, NDCG@L)` (with `keep_best`).
    #[serde(default)]
    best: Option<(u64, f64)>,
}

fn evaluate(
    policy: &Policy,
    data: &RlData<'_>,
    beam: usize,
    plain: &Device,
    record: &mut serde_json::Value,
) -> Result<()> {
    if data.valid.is_empty() {
        return Ok(());
    }
    let lists = greedy_lists(policy, data.valid, beam, plain)?;
    let m = list_metrics(&lists, data.valid_relevance, policy.list_len())?;
    record["valid_precision"] = json!(m.precision.mean);
    record["valid_ndcg"] = json!(m.ndcg.mean);
    record["valid_map"] = json!(m.map.mean);
    if let Some(r) = data.valid_reward {
        let refs: Vec<&Request> = data.valid.iter().collect();
        let ids: Vec<usize> = (0..refs.len()).collect();
        let v = r.rewards(&refs, &ids, &lists)?;
        record["valid_reward"] =
            json!(v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64);
    }
    Ok(())
}

/// Group-relative RL post-training of `initial` (the SFT policy, on the autodiff `device`)
/// against `data.reward`, with a KL penalty to `reference` (the frozen SFT policy on `plain`).
///
/// Each step draws `batch_size` training requests (seeded by `(seed, step)`), samples
/// `group_size` lists per request with a sampler seeded by `(seed, step)`, and applies
/// [`rl_step`]. Every `eval_every` steps the greedy validation lists are scored (metrics and
/// `valid_reward`) and logged to `out.log` with the running means of reward, KL,
/// entropy and loss, and the skipped groups and steps. Checkpoints go to `out.checkpoint`
/// (atomic); the final policy to `out.model`. With `resume`, training continues from
/// the last checkpoint and reaches the same weights as an uninterrupted run.
///
/// # Errors
/// Invalid configuration or inputs, file errors.
#[allow(clippy::too_many_arguments)]
pub fn train_rl(
    policy_config: &PolicyConfig,
    initial: Policy,
    reference: &Policy,
    data: RlData<'_>,
    config: &RlConfig,
    out: &StageOutput,
    resume: bool,
    (device, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<RlOutcome> {
    config.validate()?;
    let n = data.train.len();
    if n == 0 || data.valid.len() != data.valid_relevance.len() {
        return Err(TrainError::InvalidInput(
            "need training requests and one relevance vector per validation request".into(),
        ));
    }
    let (run, st) = PolicyRun::start(
        policy_config,
        Some(initial),
        config.optim.weight_decay,
        (out, resume),
        (device, plain),
        |st: &RlState| &st.log,
    )?;
    let total = config.steps as u64;
    let mut run = RlLoop {
        run,
        st,
        total,
        batch: config.optim.batch_size.min(n),
        reference,
        data,
        config,
    };
    let status = drive("rl", total, &mut run, observer)?;
    // With `keep_best`, the best validation's policy was saved when it was scored.
    if status == RunStatus::Finished && !(config.keep_best && run.st.best.is_some()) {
        run.run.save_model(&run.run.policy()?.valid())?;
    }
    Ok(RlOutcome {
        status,
        steps: run.st.step,
        log: run.st.log,
    })
}

/// RL inside the shared training-loop skeleton.
struct RlLoop<'a> {
    run: PolicyRun<'a>,
    st: RlState,
    total: u64,
    batch: usize,
    reference: &'a Policy,
    data: RlData<'a>,
    config: &'a RlConfig,
}

impl RlLoop<'_> {
    fn record(
        &mut self,
        mut record: serde_json::Value,
        observer: &mut dyn TrainObserver,
    ) -> Result<()> {
        let policy = self.run.policy()?.valid();
        evaluate(
            &policy,
            &self.data,
            self.config.valid_beam,
            self.run.devices.1,
            &mut record,
        )?;
        if self.config.keep_best
            && let Some(score) = record["valid_ndcg"].as_f64()
        {
            if self.st.best.is_none_or(|(_, b)| score > b) {
                self.st.best = Some((self.st.step, score));
                self.run.save_model(&policy)?;
            }
            record["best_step"] = json!(self.st.best.map(|b| b.0));
        }
        self.run.log.append(&record)?;
        observer.evaluation(&record);
        self.st.log.push(record);
        Ok(())
    }
}

impl TrainingLoop for RlLoop<'_> {
    type Error = TrainError;

    fn done(&self) -> u64 {
        self.st.step
    }

    fn begin(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        if self.st.step == 0 {
            self.record(json!({"stage": "rl", "step": 0}), observer)?;
        }
        Ok(())
    }

    fn step(&mut self) -> Result<f64> {
        let (config, (device, plain)) = (self.config, self.run.devices);
        let (n, bs) = (self.data.train.len(), self.batch);
        let st = &mut self.st;
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(config.optim.seed, &[3, st.step]));
        let ids: Vec<usize> = sample(&mut rng, n, bs).into_vec();
        let reqs: Vec<Request> = ids.iter().map(|&i| self.data.train[i].clone()).collect();
        let mut decoder = Decoder::new(
            DecodeStrategy::Sample {
                temperature: config.temperature,
                top_k: None,
            },
            derive_seed(config.optim.seed, &[4, st.step]),
        )?;
        // The step's rate from the schedule; `rl_step` reads it from the configuration.
        let mut step_config = config.clone();
        step_config.optim.learning_rate = config.optim.rate(st.step, self.total);
        let t0 = Instant::now();
        let policy = self.run.take()?;
        let (optim, reference, reward) = (&mut self.run.optim, self.reference, self.data.reward);
        // Dropout: the device RNG seeded per step and held for the step (see SFT).
        let (p, s) = glorank_nn::with_seeded_device(
            device,
            derive_seed(config.optim.seed, &[2, st.step]),
            || {
                rl_step(
                    policy,
                    reference,
                    optim,
                    &reqs,
                    &ids,
                    reward,
                    &mut decoder,
                    &step_config,
                    (device, plain),
                )
            },
        )?;
        st.train_seconds += t0.elapsed().as_secs_f64();
        st.samples += (bs * config.group_size) as u64;
        self.run.put(p);
        st.step += 1;
        st.skipped_groups += s.skipped_groups as u64;
        if s.update.skipped {
            st.skipped_steps += 1;
        }
        for (sum, v) in
            st.sums
                .iter_mut()
                .zip([s.mean_reward, s.kl, s.entropy, f64::from(s.update.loss)])
        {
            if v.is_finite() {
                *sum += v;
            }
        }
        st.count += 1;
        Ok(f64::from(s.update.loss))
    }

    fn after_step(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        let (config, total) = (self.config, self.total);
        let st = &self.st;
        let eval_now = st.step == total
            || (config.eval_every > 0 && st.step.is_multiple_of(config.eval_every as u64));
        if eval_now {
            let c = st.count.max(1) as f64;
            let record = json!({
                "stage": "rl",
                "step": st.step,
                "train_reward": st.sums[0] / c,
                "kl": st.sums[1] / c,
                "entropy": st.sums[2] / c,
                "loss": st.sums[3] / c,
                "skipped_groups": st.skipped_groups,
                "skipped_steps": st.skipped_steps,
                "train_samples_per_s": st.samples as f64 / st.train_seconds.max(1e-9),
                // The rate of the last step before this record.
                "learning_rate": config.optim.rate(st.step - 1, total),
            });
            self.st.sums = [0.0; 4];
            self.st.count = 0;
            self.record(record, observer)?;
        }
        if self.st.step == total || self.st.step.is_multiple_of(config.checkpoint_every as u64) {
            self.run.checkpoint(&self.st)?;
        }
        Ok(())
    }
}
