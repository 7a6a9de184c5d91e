//! Supervised pre-training: teacher forcing on demonstrations with a trie-masked
//! cross-entropy, validation each epoch, the best epoch kept, resumable checkpoints.

use crate::checkpoint::StageOutput;
use crate::config::{Demonstrations, check, check_beam, check_max};
use crate::eval::{EvaluatorReward, ListReward, greedy_lists, list_metrics};
use crate::optim::OptimConfig;
use crate::policy_run::PolicyRun;
use crate::skeleton::{RunStatus, StepOutcome, TrainObserver, TrainingLoop, drive, sharded_step};
use crate::{Result, TrainError, derive_seed};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use glorank_metrics::MetricsSummary;
use glorank_policy::{Policy, PolicyConfig, Request};
use glorank_reward::UserResponseModel;
use glorank_trie::CandidateTrie;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Instant;

/// Hyper-parameters of [`train_sft`] (the `[sft]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SftConfig {
    /// Maximum epochs (default 10).
    pub epochs: usize,
    /// Epochs without a better validation NDCG@L before stopping (default 3).
    pub patience: usize,
    /// Stop after this many steps, validating at the last one as at an epoch's end (default
    /// 0: the epochs decide). For training sets whose epoch is longer than a run.
    pub max_steps: usize,
    /// Beam width of the validation lists that pick the best epoch (default 1: greedy).
    /// Set it to the width the policy will be evaluated or served with (the pipeline's
    /// `eval.beam`), so the epoch kept is the best under that decoding.
    pub valid_beam: usize,
    /// What to imitate (default: the logged slate by rating).
    pub demonstrations: Demonstrations,
    /// Weight of the label loss added to the demonstrations' negative log-likelihood
    /// (default 0: off). The label loss is the cross-entropy of the policy's first-slot
    /// distribution over the pool (from [`Policy::log_probs_and_first_scores`]) against
    /// the request's clicked candidates, each with an equal share: it trains the scores of
    /// every labelled candidate, not only of the few a demonstration lists. Needs an output
    /// head that scores the candidates; requests without a click add nothing.
    pub label_loss: f32,
    /// A checkpoint every this many steps, besides the one at each epoch end (0: epoch ends
    /// only; default 200).
    pub checkpoint_every: usize,
    /// The optimiser (default: batch 64, rate 1e-3 constant, weight decay 1e-4, gradient
    /// norm clipped at 1, 4 shards, seed 0).
    pub optim: OptimConfig,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            patience: 3,
            max_steps: 0,
            valid_beam: 1,
            demonstrations: Demonstrations::Logged,
            label_loss: 0.0,
            checkpoint_every: 200,
            optim: OptimConfig::default().with_grad_clip_norm(1.0),
        }
    }
}

impl SftConfig {
    /// Sets epochs, batch size and learning rate.
    pub fn with(mut self, epochs: usize, batch_size: usize, learning_rate: f64) -> Self {
        self.epochs = epochs;
        self.optim = self.optim.with(batch_size, learning_rate);
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

    /// Sets the checkpoint interval in steps.
    pub fn with_checkpoint_every(mut self, steps: usize) -> Self {
        self.checkpoint_every = steps;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check("sft.epochs", self.epochs > 0, "must be > 0")?;
        check_max("sft.epochs", self.epochs, glorank_nn::limits::MAX_EPOCHS)?;
        check(
            "sft.label_loss",
            self.label_loss.is_finite() && self.label_loss >= 0.0,
            "must be finite and >= 0",
        )?;
        check("sft.patience", self.patience > 0, "must be > 0")?;
        check_beam("sft.valid_beam", self.valid_beam)?;
        if let Demonstrations::BestOfK { k } = self.demonstrations {
            check("sft.demonstrations.k", k >= 2, "must be >= 2")?;
            check_max("sft.demonstrations.k", k, glorank_nn::limits::MAX_GROUP)?;
        }
        self.optim.validate("sft")
    }
}

/// One SFT step: mean negative log-likelihood of the demonstrations (`lists[r]` are
/// candidate positions of `requests[r]`) under the trie-masked softmax, plus, with
/// `labels = Some((labels, weight))`, `weight` times the mean label loss (see
/// [`SftConfig::label_loss`]; `labels[r]` holds one value per candidate of `requests[r]`,
/// positive for a click), backward over `shards` row shards in parallel
/// ([`sharded_step`]), global gradient-norm clipping to `clip` (`None`: off), optimizer step.
/// `device` is the autodiff device the policy lives on. A non-finite loss or gradient skips
/// the update (reported).
///
/// # Errors
/// Input errors from the policy (a list that is not valid for its request, an output head
/// without candidate scores under a label loss), labels of the wrong shape.
pub fn sft_step(
    policy: Policy,
    optim: &mut ModuleOptimizer,
    requests: &[Request],
    lists: &[Vec<usize>],
    labels: Option<(&[Vec<f64>], f32)>,
    (learning_rate, clip, shards): (f64, Option<f32>, usize),
    device: &Device,
) -> Result<(Policy, StepOutcome)> {
    if lists.len() != requests.len() {
        return Err(TrainError::InvalidInput(format!(
            "{} demonstrations for {} requests",
            lists.len(),
            requests.len()
        )));
    }
    if let Some((labels, _)) = labels {
        if labels.len() != requests.len() {
            return Err(TrainError::InvalidInput(format!(
                "{} label rows for {} requests",
                labels.len(),
                requests.len()
            )));
        }
        if let Some(r) =
            (0..labels.len()).find(|&r| labels[r].len() != requests[r].candidates.len())
        {
            return Err(TrainError::InvalidInput(format!(
                "request {r} has {} candidates but {} labels",
                requests[r].candidates.len(),
                labels[r].len()
            )));
        }
    }
    let n = requests.len() as f32;
    sharded_step(
        policy,
        optim,
        device,
        (requests.len(), shards),
        (learning_rate, clip),
        |p: &Policy, rows| {
            let tries: Vec<CandidateTrie> = requests[rows.clone()]
                .iter()
                .map(|r| p.trie(r))
                .collect::<std::result::Result<_, _>>()?;
            let batch = p.encode_inputs(&requests[rows.clone()], device)?;
            let Some((labels, weight)) = labels else {
                let (_, total) = p.log_probs(&batch, &tries, &lists[rows])?;
                return Ok::<_, TrainError>(total.sum().neg().div_scalar(n));
            };
            let (_, total, scores) =
                p.log_probs_and_first_scores(&batch, &tries, &lists[rows.clone()])?;
            let targets = click_shares(&labels[rows], scores.dims()[1], device);
            let label_nll = (log_softmax(scores, 1) * targets).sum().neg();
            Ok(total
                .sum()
                .neg()
                .add(label_nll.mul_scalar(weight))
                .div_scalar(n))
        },
    )
}

/// Each row's clicked candidates with equal shares summing to one (`[B, n]`, zero at
/// padding and everywhere in a row without a click): the label loss's target distribution.
fn click_shares(labels: &[Vec<f64>], n: usize, device: &Device) -> Tensor<2> {
    let mut shares = vec![0f32; labels.len() * n];
    for (row, l) in shares.chunks_exact_mut(n).zip(labels) {
        let clicks = l.iter().filter(|&&y| y > 0.0).count();
        for (s, &y) in row.iter_mut().zip(l) {
            if y > 0.0 {
                *s = 1.0 / clicks as f32;
            }
        }
    }
    Tensor::from_data(TensorData::new(shares, [labels.len(), n]), device)
}

/// Greedy lists of `policy` (on a plain device) for `requests`, scored against each
/// request's `relevance` (one value per candidate) at cut-off `list_len`.
///
/// # Errors
/// Decoding or metric errors.
pub fn greedy_metrics(
    policy: &Policy,
    requests: &[Request],
    relevance: &[Vec<f64>],
    device: &Device,
) -> Result<MetricsSummary> {
    beam_metrics(policy, requests, relevance, 1, device)
}

/// [`greedy_metrics`] with the best list of a beam of width `beam` (1: greedy).
///
/// # Errors
/// Decoding or metric errors.
pub fn beam_metrics(
    policy: &Policy,
    requests: &[Request],
    relevance: &[Vec<f64>],
    beam: usize,
    device: &Device,
) -> Result<MetricsSummary> {
    let lists = greedy_lists(policy, requests, beam, device)?;
    list_metrics(&lists, relevance, policy.list_len())
}

/// The evaluator's choice among the logged demonstration and `k - 1` lists of the same
/// length drawn uniformly from each request's pool (seeded per request); ties keep the
/// logged demonstration. `evaluator` is a plain-device model.
///
/// # Errors
/// Model errors.
pub fn best_of_k_demonstrations(
    requests: &[Request],
    logged: &[Vec<usize>],
    evaluator: &UserResponseModel,
    k: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<Vec<usize>>> {
    let reward = EvaluatorReward::new(evaluator, device);
    let mut out = Vec::with_capacity(requests.len());
    for (r, (req, demo)) in requests.iter().zip(logged).enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[5, r as u64]));
        let positions: Vec<usize> = (0..req.candidates.len()).collect();
        let mut lists = vec![demo.clone()];
        for _ in 1..k {
            let mut l: Vec<usize> = positions.sample(&mut rng, demo.len()).copied().collect();
            l.shuffle(&mut rng);
            lists.push(l);
        }
        let reqs = vec![req; lists.len()];
        let ids = vec![r; lists.len()];
        let scores = reward.rewards(&reqs, &ids, &lists)?;
        let best = (0..lists.len()).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
        out.push(lists.swap_remove(best));
    }
    Ok(out)
}

/// The examples SFT learns from, read a batch at a time: held in memory
/// ([`InMemoryExamples`]) or read from disk as they are needed (a log's training requests
/// kept by `log.store = "disk"`), so a run's memory does not grow with its training set.
pub trait SftExamples: Sync {
    /// Number of examples.
    fn len(&self) -> usize;

    /// Whether there is no example.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The examples at `indices` (each below [`SftExamples::len`]), in that order; with
    /// `labels`, each request's click labels too (one value per candidate, positive for a
    /// click).
    ///
    /// # Errors
    /// Reading errors; [`TrainError::InvalidInput`] when labels are asked of examples
    /// without them.
    fn batch(&self, indices: &[usize], labels: bool) -> Result<SftBatch>;
}

/// A batch of SFT examples ([`SftExamples::batch`]).
#[derive(Debug, Clone, Default)]
pub struct SftBatch {
    /// The requests.
    pub requests: Vec<Request>,
    /// One demonstration (candidate positions) per request.
    pub demonstrations: Vec<Vec<usize>>,
    /// Click labels per request (empty unless asked for).
    pub labels: Vec<Vec<f64>>,
}

/// SFT examples held in memory.
#[derive(Debug, Clone, Copy)]
pub struct InMemoryExamples<'a> {
    requests: &'a [Request],
    demonstrations: &'a [Vec<usize>],
    labels: &'a [Vec<f64>],
}

impl<'a> InMemoryExamples<'a> {
    /// Examples of `requests`, one demonstration each, and (for
    /// [`SftConfig::label_loss`]; may be empty otherwise) one label row each.
    ///
    /// # Errors
    /// [`TrainError::InvalidInput`] when the lengths differ.
    pub fn new(
        requests: &'a [Request],
        demonstrations: &'a [Vec<usize>],
        labels: &'a [Vec<f64>],
    ) -> Result<Self> {
        let n = requests.len();
        if demonstrations.len() != n || !(labels.is_empty() || labels.len() == n) {
            return Err(TrainError::InvalidInput(format!(
                "{n} training requests but {} demonstrations and {} label rows",
                demonstrations.len(),
                labels.len()
            )));
        }
        Ok(Self {
            requests,
            demonstrations,
            labels,
        })
    }
}

impl SftExamples for InMemoryExamples<'_> {
    fn len(&self) -> usize {
        self.requests.len()
    }

    fn batch(&self, indices: &[usize], labels: bool) -> Result<SftBatch> {
        if labels && self.labels.len() != self.requests.len() {
            return Err(TrainError::InvalidInput(format!(
                "sft.label_loss needs one label row per training request: {} requests, {} rows",
                self.requests.len(),
                self.labels.len()
            )));
        }
        Ok(SftBatch {
            requests: indices.iter().map(|&i| self.requests[i].clone()).collect(),
            demonstrations: indices
                .iter()
                .map(|&i| self.demonstrations[i].clone())
                .collect(),
            labels: if labels {
                indices.iter().map(|&i| self.labels[i].clone()).collect()
            } else {
                Vec::new()
            },
        })
    }
}

/// The inputs of [`train_sft`].
#[derive(Clone, Copy)]
pub struct SftData<'a> {
    /// Training examples: requests, demonstrations and, for [`SftConfig::label_loss`],
    /// click labels.
    pub train: &'a dyn SftExamples,
    /// Validation requests (may be empty: then every epoch counts as the best).
    pub valid: &'a [Request],
    /// Relevance of each validation request's candidates (gain `2^rel - 1`; binary click
    /// labels for Precision).
    pub valid_relevance: &'a [Vec<f64>],
}

impl std::fmt::Debug for SftData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftData")
            .field("train", &self.train.len())
            .field("valid", &self.valid.len())
            .finish()
    }
}

/// How an SFT run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SftOutcome {
    /// Finished or interrupted.
    pub status: RunStatus,
    /// Steps done.
    pub steps: u64,
    /// The best epoch (from 1) and its validation NDCG@L.
    pub best: Option<(usize, f64)>,
    /// Every evaluation record (also in `sft_log.jsonl`).
    pub log: Vec<serde_json::Value>,
}

/// The trainer state saved in each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SftState {
    step: u64,
    best: Option<(usize, f64)>,
    since_best: usize,
    stopped: bool,
    loss_sum: f64,
    loss_steps: u64,
    skipped_steps: u64,
    train_seconds: f64,
    samples: u64,
    log: Vec<serde_json::Value>,
}

/// Supervised pre-training of a policy built from `policy_config` on `data`.
///
/// Each epoch visits the training demonstrations in a seeded order, `batch_size` per step;
/// after the epoch the policy's greedy lists on the validation requests are scored
/// (Precision/NDCG/MAP/F1@L), one record is appended to the log `out.log`, and a better
/// validation NDCG@L saves the policy to `out.model`; `patience` epochs without
/// improvement stop the run. A checkpoint (`out.checkpoint`: policy, optimizer, step,
/// best score, log) is written every `checkpoint_every` steps and at each epoch end, atomically.
/// With `resume`, training continues from it; all randomness (batch order, dropout) is
/// derived from `(seed, step)`, so a resumed run reaches the same weights as an uninterrupted
/// one.
///
/// `devices` = (autodiff training device, plain evaluation device).
///
/// # Errors
/// Invalid configuration or inputs, file errors.
pub fn train_sft(
    policy_config: &PolicyConfig,
    data: SftData<'_>,
    config: &SftConfig,
    out: &StageOutput,
    resume: bool,
    (device, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<SftOutcome> {
    config.validate()?;
    let n = data.train.len();
    if n == 0 {
        return Err(TrainError::InvalidInput("no training request".into()));
    }
    if data.valid.len() != data.valid_relevance.len() {
        return Err(TrainError::InvalidInput(
            "validation requests and relevance differ in length".into(),
        ));
    }
    let (run, st) = PolicyRun::start(
        policy_config,
        None,
        config.optim.weight_decay,
        (out, resume),
        (device, plain),
        |st: &SftState| &st.log,
    )?;
    let per_epoch = n.div_ceil(config.optim.batch_size) as u64;
    let mut total = per_epoch * config.epochs as u64;
    if config.max_steps > 0 {
        total = total.min(config.max_steps as u64);
    }
    let mut run = SftLoop {
        run,
        st,
        order: (u64::MAX, Vec::new()),
        per_epoch,
        total,
        data,
        config,
    };
    let status = drive("sft", total, &mut run, observer)?;
    Ok(SftOutcome {
        status,
        steps: run.st.step,
        best: run.st.best,
        log: run.st.log,
    })
}

/// SFT inside the shared training-loop skeleton.
struct SftLoop<'a> {
    run: PolicyRun<'a>,
    st: SftState,
    /// The batch order of one epoch: (epoch, permutation).
    order: (u64, Vec<usize>),
    per_epoch: u64,
    total: u64,
    data: SftData<'a>,
    config: &'a SftConfig,
}

impl TrainingLoop for SftLoop<'_> {
    type Error = TrainError;

    fn done(&self) -> u64 {
        self.st.step
    }

    fn stopped(&self) -> bool {
        self.st.stopped
    }

    fn step(&mut self) -> Result<f64> {
        let (n, bs, config, device) = (
            self.data.train.len(),
            self.config.optim.batch_size,
            self.config,
            self.run.devices.0,
        );
        let st = &mut self.st;
        let epoch = st.step / self.per_epoch;
        if self.order.0 != epoch {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
                config.optim.seed,
                &[1, epoch],
            )));
            self.order = (epoch, idx);
        }
        let k = (st.step % self.per_epoch) as usize;
        let idx = &self.order.1[k * bs..((k + 1) * bs).min(n)];
        let SftBatch {
            requests: reqs,
            demonstrations: demos,
            labels,
        } = self.data.train.batch(idx, config.label_loss > 0.0)?;
        let learning_rate = config.optim.rate(st.step, self.total);
        let t0 = Instant::now();
        let policy = self.run.take()?;
        let optim = &mut self.run.optim;
        // Dropout draws from the device RNG, seeded per step (a resumed run repeats the same
        // masks) and held for the step (concurrent trainings cannot interleave their draws).
        let (p, outcome) = glorank_nn::with_seeded_device(
            device,
            derive_seed(config.optim.seed, &[2, st.step]),
            || {
                sft_step(
                    policy,
                    optim,
                    &reqs,
                    &demos,
                    (config.label_loss > 0.0).then_some((labels.as_slice(), config.label_loss)),
                    (learning_rate, config.optim.clip(), config.optim.shards),
                    device,
                )
            },
        )?;
        st.train_seconds += t0.elapsed().as_secs_f64();
        st.samples += idx.len() as u64;
        self.run.put(p);
        st.step += 1;
        if outcome.skipped {
            st.skipped_steps += 1;
        } else {
            st.loss_sum += f64::from(outcome.loss);
            st.loss_steps += 1;
        }
        Ok(f64::from(outcome.loss))
    }

    fn after_step(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        // The last step of a run cut by `max_steps` validates like an epoch's end.
        let epoch_end = self.st.step.is_multiple_of(self.per_epoch) || self.st.step == self.total;
        if epoch_end {
            let st = &self.st;
            let e = st.step.div_ceil(self.per_epoch) as usize;
            let evaluated = self.run.policy()?.valid();
            let mut record = json!({
                "stage": "sft",
                "epoch": e,
                "step": st.step,
                "train_loss": st.loss_sum / st.loss_steps.max(1) as f64,
                "skipped_steps": st.skipped_steps,
                "train_samples_per_s": st.samples as f64 / st.train_seconds.max(1e-9),
                // The rate of the epoch's last step.
                "learning_rate": self.config.optim.rate(st.step - 1, self.total),
            });
            let score = if self.data.valid.is_empty() {
                f64::NEG_INFINITY
            } else {
                let m = beam_metrics(
                    &evaluated,
                    self.data.valid,
                    self.data.valid_relevance,
                    self.config.valid_beam,
                    self.run.devices.1,
                )?;
                record["valid_precision"] = json!(m.precision.mean);
                record["valid_ndcg"] = json!(m.ndcg.mean);
                record["valid_map"] = json!(m.map.mean);
                record["valid_f1"] = json!(m.f1.mean);
                m.ndcg.mean
            };
            let st = &mut self.st;
            st.loss_sum = 0.0;
            st.loss_steps = 0;
            let better = st.best.is_none_or(|(_, b)| score > b);
            if better {
                st.best = Some((e, score));
                st.since_best = 0;
                self.run.save_model(&evaluated)?;
            } else {
                st.since_best += 1;
                st.stopped = st.since_best >= self.config.patience;
            }
            record["best_epoch"] = json!(st.best.map(|b| b.0));
            self.run.log.append(&record)?;
            observer.evaluation(&record);
            st.log.push(record);
        }
        let every = self.config.checkpoint_every as u64;
        let periodic = every > 0 && self.st.step.is_multiple_of(every);
        if epoch_end || periodic || self.st.step == self.total {
            self.run.checkpoint(&self.st)?;
        }
        Ok(())
    }
}
