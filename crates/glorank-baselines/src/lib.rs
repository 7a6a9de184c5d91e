//! Baseline rerankers for the GloRank comparison, trained on the same prepared samples and
//! scored by the same metrics.
//!
//! * [`mf_order`]: the initial ranker, candidates by stage-1 retriever score.
//! * [`oracle`]: positives first (clicked items, then the rest): the upper bound of
//!   Precision@L.
//! * [`Baseline::Prm`]: PRM, a transformer over the candidate set scoring each item (binary
//!   cross-entropy on click labels); the list is the top L by score.
//! * [`Baseline::Dlcm`]: DLCM, a GRU over the pool with a local scoring function (same loss).
//! * [`Baseline::Seq2Slate`]: a pointer network over candidate positions (local index,
//!   attention-based), trained by teacher forcing on the demonstrations and then by
//!   REINFORCE with a group-mean baseline on the training request's NDCG@L.
//!
//! The GloRank local-index (LAS) ablation is a policy option of `glorank-policy`.
//!
//! ```
//! use glorank_baselines::oracle;
//!
//! // Clicked candidates 1 and 3 come first.
//! assert_eq!(oracle(&[0.0, 1.0, 0.0, 1.0], 3), vec![1, 3, 0]);
//! ```

mod inputs;
mod models;

pub use inputs::{Batch, CONTENT_VECTORS, Features};
pub use models::{Dlcm, Encoding, Prm, Sampler, Seq2Slate};

use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use glorank_data::{PreparedDataset, RerankSample};
use glorank_metrics::{ListMetrics, MetricAccumulator};
pub use glorank_nn::RetrieverInput;
use glorank_nn::training::{NoObserver, StepOutcome, sharded_step};
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Errors of the baselines crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// Model-base errors.
    #[error(transparent)]
    Nn(#[from] glorank_nn::NnError),
    /// Metric errors (validation scoring).
    #[error(transparent)]
    Metrics(#[from] glorank_metrics::MetricsError),
    /// A configuration value is invalid.
    #[error("invalid baseline configuration `{field}`: {message}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// Inputs that do not fit (named in the message).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Training diverged.
    #[error("training diverged: non-finite loss in epoch {0}")]
    Diverged(usize),
}

/// Result alias of this crate.
pub type Result<T, E = BaselineError> = std::result::Result<T, E>;

/// The initial ranker's list: the `len` candidates with the highest retriever `scores`
/// (ties: lower position first).
pub fn mf_order(scores: &[f32], len: usize) -> Vec<usize> {
    first_by(scores.len(), len, |a, b| scores[b].total_cmp(&scores[a]))
}

/// The first `len` of the positions `0..n` in the order `cmp` gives (ties: lower position
/// first): every fixed-order rule and the oracle.
fn first_by(n: usize, len: usize, cmp: impl Fn(usize, usize) -> std::cmp::Ordering) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| cmp(a, b).then(a.cmp(&b)));
    idx.truncate(len);
    idx
}

/// Reference rule "retriever reversed": the `len` candidates the stage-1 retriever likes
/// *least* (ties: lower position first). It learns nothing; under pools made of the logged
/// slate plus the retriever's top unseen items it still finds the logged items, so it shows
/// how separable the pools are by construction.
pub fn retriever_reversed(scores: &[f32], len: usize) -> Vec<usize> {
    first_by(scores.len(), len, |a, b| scores[a].total_cmp(&scores[b]))
}

/// Reference rule "popularity": the `len` candidates with the most training interactions
/// (`counts[i]` of candidate `i`; ties: lower position first).
pub fn popularity(counts: &[u32], len: usize) -> Vec<usize> {
    first_by(counts.len(), len, |a, b| counts[b].cmp(&counts[a]))
}

/// Reference rule "pool novelty": how often each (user, item) was a non-clicked candidate in
/// the user's training pools. Ranking candidates by it, fewest first
/// ([`PoolNovelty::rank`]), learns nothing about preference; it exploits that the retrieved
/// negatives recur across a user's pools while the logged items are new.
#[derive(Debug, Clone, Default)]
pub struct PoolNovelty {
    exposures: glorank_data::Exposures,
}

impl PoolNovelty {
    /// Counts over the training requests `train`.
    pub fn new(train: &[RerankSample]) -> Self {
        Self {
            exposures: glorank_data::Exposures::new(train),
        }
    }

    /// The count of each candidate of `sample`.
    pub fn counts(&self, sample: &RerankSample) -> Vec<u32> {
        self.exposures.totals(sample)
    }

    /// A score per candidate of `sample`, higher first: minus its count.
    pub fn scores(&self, sample: &RerankSample) -> Vec<f32> {
        self.counts(sample).iter().map(|&c| -(c as f32)).collect()
    }

    /// The `len` candidates of `sample` seen least often as non-clicked training candidates
    /// of its user (ties: lower position first).
    pub fn rank(&self, sample: &RerankSample, len: usize) -> Vec<usize> {
        let counts = self.counts(sample);
        first_by(counts.len(), len, |a, b| counts[a].cmp(&counts[b]))
    }
}

/// The oracle list: candidates by relevance, descending (ties: lower position first).
pub fn oracle(relevance: &[f64], len: usize) -> Vec<usize> {
    first_by(relevance.len(), len, |a, b| {
        relevance[b].total_cmp(&relevance[a])
    })
}

/// The trainable baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Baseline {
    /// PRM: set transformer scorer.
    Prm,
    /// DLCM: GRU scorer.
    Dlcm,
    /// Seq2Slate: pointer network (SFT then REINFORCE).
    Seq2Slate,
}

impl Baseline {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Prm => "PRM",
            Self::Dlcm => "DLCM",
            Self::Seq2Slate => "Seq2Slate",
        }
    }
}

/// Hyper-parameters of [`fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BaselineConfig {
    /// Model width (default 64).
    pub d_model: usize,
    /// Self-attention layers of PRM and the Seq2Slate encoder (default 1).
    pub layers: usize,
    /// Supervised epochs (default 5).
    pub epochs: usize,
    /// Requests per step (default 64).
    pub batch_size: usize,
    /// AdamW learning rate (default 1e-3).
    pub learning_rate: f64,
    /// Seq2Slate: REINFORCE epochs after the supervised ones (default 1).
    pub reinforce_epochs: usize,
    /// Seq2Slate: lists sampled per request in REINFORCE (default 4).
    pub reinforce_samples: usize,
    /// Seed of the weights, the batch order and the sampling (default 0).
    pub seed: u64,
    /// Give every baseline each candidate's stage-1 retriever score as an input (a linear
    /// projection added to the candidate's embedding), as the policy's
    /// `use_retriever_score` does (default false; true in the "paper" preset).
    pub use_retriever_score: bool,
    /// What the baselines read from the retriever scores: `score` (default), `rank` or
    /// `score-and-rank`, as the policy's `retriever_input` ([`RetrieverInput`]).
    pub retriever_input: RetrieverInput,
    /// Give every baseline each candidate's exposure count (how often the item was a
    /// non-clicked candidate in the user's earlier training requests), as the policy's
    /// `use_exposures` does (default false).
    pub use_exposures: bool,
    /// Row shards of each training step, whose gradients are computed in parallel and
    /// summed ([`glorank_nn::training::sharded_gradients`]; default 4, as the policy's
    /// `sft.shards`). The result depends on this number, not on the machine's cores.
    pub shards: usize,
    /// Seq2Slate imitates the labels' demonstrations
    /// (`PreparedDataset::label_demonstration`) instead of the logged slates (default
    /// false; the policy's `[sft] demonstrations = { kind = "labels" }`).
    pub label_demonstrations: bool,
    /// Learning-rate factor of the user attribute tables, user ID included (0: off, the
    /// default): they start at zero and are read multiplied by it, as the policy's
    /// `[policy] user_lr_scale` ([`Encoding::with_user_scale`]).
    pub user_lr_scale: f32,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            d_model: 64,
            layers: 1,
            epochs: 5,
            batch_size: 64,
            learning_rate: 1e-3,
            reinforce_epochs: 1,
            reinforce_samples: 4,
            seed: 0,
            use_retriever_score: false,
            retriever_input: RetrieverInput::Score,
            use_exposures: false,
            shards: 4,
            label_demonstrations: false,
            user_lr_scale: 0.0,
        }
    }
}

impl BaselineConfig {
    /// Sets epochs, batch size and learning rate.
    pub fn with(mut self, epochs: usize, batch_size: usize, learning_rate: f64) -> Self {
        self.epochs = epochs;
        self.batch_size = batch_size;
        self.learning_rate = learning_rate;
        self
    }

    /// Sets the width.
    pub fn with_d_model(mut self, d: usize) -> Self {
        self.d_model = d;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`BaselineError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: &str| {
            Err(BaselineError::InvalidConfig {
                field,
                message: message.into(),
            })
        };
        if self.d_model == 0 || !self.d_model.is_multiple_of(4) {
            return bad("d_model", "must be a positive multiple of 4 (4 heads)");
        }
        if self.layers == 0 {
            return bad("layers", "must be > 0");
        }
        if self.epochs == 0 {
            return bad("epochs", "must be > 0");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be > 0");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", "must be finite and > 0");
        }
        if self.shards == 0 {
            return bad("shards", "must be > 0");
        }
        if let Some(message) = glorank_nn::limits::bad_user_lr_scale(self.user_lr_scale) {
            return bad("user_lr_scale", &message);
        }
        if self.reinforce_samples < 2 && self.reinforce_epochs > 0 {
            return bad("reinforce_samples", "must be >= 2");
        }
        use glorank_nn::limits::*;
        let bounds = [
            ("d_model", self.d_model, MAX_D_MODEL),
            ("layers", self.layers, MAX_LAYERS),
            ("epochs", self.epochs, MAX_EPOCHS),
            ("reinforce_epochs", self.reinforce_epochs, MAX_EPOCHS),
            ("batch_size", self.batch_size, MAX_BATCH),
            ("reinforce_samples", self.reinforce_samples, MAX_GROUP),
            ("shards", self.shards, MAX_SHARDS),
        ];
        for (field, value, max) in bounds {
            if let Some(m) = too_large(value, max) {
                return bad(field, &m);
            }
        }
        Ok(())
    }
}

/// A trained baseline.
#[derive(Debug, Clone)]
pub enum Trained {
    /// PRM.
    Prm(Prm),
    /// DLCM.
    Dlcm(Dlcm),
    /// Seq2Slate.
    Seq2Slate(Seq2Slate),
}

/// One epoch's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch from 1 (REINFORCE epochs follow the supervised ones).
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Validation Precision@L.
    pub valid_precision: f64,
}

fn batches<'a>(
    samples: &'a [RerankSample],
    bs: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<&'a RerankSample>> {
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    idx.shuffle(rng);
    idx.chunks(bs)
        .map(|c| c.iter().map(|&i| &samples[i]).collect())
        .collect()
}

/// Binary cross-entropy with logits, averaged: `[B, N]` scores against `[B, N]` 0/1 labels.
fn bce(logits: Tensor<2>, labels: Tensor<2>) -> Tensor<1> {
    let pos = logits.clone().clamp_min(0.0);
    let soft = logits.clone().abs().neg().exp().log1p();
    (pos - logits * labels + soft).mean()
}

/// NDCG@`len` of `list` against click relevance.
fn ndcg(list: &[usize], rel: &[f64]) -> f32 {
    glorank_metrics::ndcg_at(list, rel, list.len()).unwrap_or(0.0) as f32
}

impl Trained {
    /// The model with the ID-embedding rows of every item outside `seen` set to zero (see
    /// [`Encoding::forget_unseen`]); [`fit`] applies it to the items of no training request.
    pub fn forget_unseen(self, seen: &[bool]) -> Self {
        match self {
            Self::Prm(mut m) => {
                m.enc = m.enc.forget_unseen(seen);
                Self::Prm(m)
            }
            Self::Dlcm(mut m) => {
                m.enc = m.enc.forget_unseen(seen);
                Self::Dlcm(m)
            }
            Self::Seq2Slate(mut m) => {
                m.enc = m.enc.forget_unseen(seen);
                Self::Seq2Slate(m)
            }
        }
    }

    /// Lists of `len` items for `samples` (greedy for Seq2Slate; top by score otherwise).
    ///
    /// # Errors
    /// Input errors (unequal pool sizes within a batch).
    pub fn rank(
        &self,
        ds: &PreparedDataset,
        f: &Features,
        samples: &[RerankSample],
        len: usize,
        device: &Device,
    ) -> Result<Vec<Vec<usize>>> {
        match self {
            Self::Seq2Slate(m) => per_batch(ds, f, samples, device, |batch| {
                m.decode(batch, len.min(batch.shape[1]), None)
            }),
            _ => Ok(self
                .scores(ds, f, samples, device)?
                .iter()
                .map(|s| mf_order(s, len))
                .collect()),
        }
    }

    /// A score per candidate of each sample (higher: better): PRM's and DLCM's outputs,
    /// Seq2Slate's first-step pointer logits. For an AUC among candidates.
    ///
    /// # Errors
    /// Input errors (unequal pool sizes within a batch).
    pub fn scores(
        &self,
        ds: &PreparedDataset,
        f: &Features,
        samples: &[RerankSample],
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        per_batch(ds, f, samples, device, |batch| {
            let [b, n] = batch.shape;
            let scores = match self {
                Self::Prm(m) => m.forward(batch),
                Self::Dlcm(m) => m.forward(batch),
                Self::Seq2Slate(m) => m.first_scores(batch),
            };
            let s: Vec<f32> = scores.into_data().iter::<f32>().collect();
            (0..b).map(|r| s[r * n..(r + 1) * n].to_vec()).collect()
        })
    }
}

/// `run` over `samples` in batches of 256, the results concatenated in sample order.
fn per_batch<T>(
    ds: &PreparedDataset,
    f: &Features,
    samples: &[RerankSample],
    device: &Device,
    mut run: impl FnMut(&Batch) -> Vec<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(256) {
        let refs: Vec<&RerankSample> = chunk.iter().collect();
        out.extend(run(&Batch::new(ds, f, &refs, device)?));
    }
    Ok(out)
}

fn valid_precision(
    model: &Trained,
    ds: &PreparedDataset,
    f: &Features,
    len: usize,
    device: &Device,
) -> Result<f64> {
    if ds.valid.is_empty() {
        return Ok(0.0);
    }
    let lists = model.rank(ds, f, &ds.valid, len, device)?;
    let mut acc = MetricAccumulator::new();
    for (l, s) in lists.iter().zip(&ds.valid) {
        acc.push(ListMetrics::compute(l, &s.click_relevance(), len)?);
    }
    Ok(acc.summary()?.precision.mean)
}

/// Trains `kind` on `ds.train` (autodiff `device`), evaluating validation Precision@L after
/// every epoch on `plain` and returning the best epoch's model (a plain-device copy) with the
/// per-epoch log.
///
/// # Errors
/// Invalid configuration, an empty training split, or a non-finite loss.
pub fn fit(
    kind: Baseline,
    ds: &PreparedDataset,
    config: &BaselineConfig,
    (device, plain): (&Device, &Device),
) -> Result<(Trained, Vec<EpochLog>)> {
    config.validate()?;
    if ds.train.is_empty() {
        return Err(BaselineError::InvalidInput("no training samples".into()));
    }
    let f = Features::for_config(ds, config);
    let d = config.d_model;
    let model = match kind {
        Baseline::Prm => Trained::Prm(glorank_nn::init_seeded(device, config.seed, || {
            let mut m = Prm::new(&f, d, config.layers, device);
            m.enc = m.enc.with_user_scale(config.user_lr_scale);
            m
        })),
        Baseline::Dlcm => Trained::Dlcm(glorank_nn::init_seeded(device, config.seed, || {
            let mut m = Dlcm::new(&f, d, device);
            m.enc = m.enc.with_user_scale(config.user_lr_scale);
            m
        })),
        Baseline::Seq2Slate => {
            Trained::Seq2Slate(glorank_nn::init_seeded(device, config.seed, || {
                let mut m = Seq2Slate::new(&f, d, config.layers, device);
                m.enc = m.enc.with_user_scale(config.user_lr_scale);
                m
            }))
        }
    };
    let rl_epochs = if kind == Baseline::Seq2Slate {
        config.reinforce_epochs
    } else {
        0
    };
    let per_epoch = ds.train.len().div_ceil(config.batch_size) as u64;
    let mut run = FitLoop {
        model: Some(model),
        optim: AdamWConfig::new().init(),
        rng: ChaCha8Rng::seed_from_u64(config.seed),
        epoch: 0,
        batches: Vec::new(),
        in_epoch: 0,
        per_epoch,
        loss_sum: 0.0,
        log: Vec::new(),
        best: None,
        ds,
        features: &f,
        config,
        devices: (device, plain),
    };
    let total = per_epoch * (config.epochs + rl_epochs) as u64;
    glorank_nn::training::drive(kind.name(), total, &mut run, &mut NoObserver)?;
    let (_, model) = run
        .best
        .ok_or_else(|| BaselineError::InvalidInput("no epoch ran".into()))?;
    Ok((model.forget_unseen(&seen_in_training(ds)), run.log))
}

/// Which items a baseline meets in training: the candidates and history items of the train
/// requests. The others (held-out items, or items no train pool holds) keep untrained ID
/// rows, which [`Trained::forget_unseen`] zeroes.
pub fn seen_in_training(ds: &PreparedDataset) -> Vec<bool> {
    let mut seen = vec![false; ds.num_items()];
    for s in &ds.train {
        for &i in s.candidates.iter().chain(ds.history(s).items) {
            seen[i as usize] = true;
        }
    }
    seen
}

/// A baseline's training inside the shared training-loop skeleton: supervised epochs, then
/// (Seq2Slate) REINFORCE epochs; validation Precision@L after each epoch, the best kept.
struct FitLoop<'a> {
    /// The model being trained (taken out for the duration of a step).
    model: Option<Trained>,
    optim: ModuleOptimizer,
    /// One stream for batch orders and REINFORCE draws.
    rng: ChaCha8Rng,
    /// Epochs begun (from 1).
    epoch: usize,
    /// The current epoch's batches.
    batches: Vec<Vec<&'a RerankSample>>,
    /// Steps done in the current epoch.
    in_epoch: usize,
    /// Steps (batches) per epoch.
    per_epoch: u64,
    loss_sum: f64,
    log: Vec<EpochLog>,
    best: Option<(f64, Trained)>,
    ds: &'a PreparedDataset,
    features: &'a Features,
    config: &'a BaselineConfig,
    devices: (&'a Device, &'a Device),
}

/// A baseline that scores each candidate (`[B, N]` logits), trained with BCE on the clicks.
trait Scorer: Module + Send {
    /// The candidates' click logits.
    fn scores(&self, batch: &Batch) -> Tensor<2>;
}

impl Scorer for Prm {
    fn scores(&self, batch: &Batch) -> Tensor<2> {
        self.forward(batch)
    }
}

impl Scorer for Dlcm {
    fn scores(&self, batch: &Batch) -> Tensor<2> {
        self.forward(batch)
    }
}

/// What a Seq2Slate step maximises the log-likelihood of: per row (one per request, or
/// `reinforce_samples` per request in REINFORCE) a list of candidate positions and its weight
/// (1 for a demonstration; the advantage in REINFORCE).
struct Targets<'a> {
    rows: Vec<&'a RerankSample>,
    lists: Vec<Vec<usize>>,
    weights: Option<Vec<f32>>,
}

impl<'a> FitLoop<'a> {
    /// Seq2Slate's targets for a batch: the demonstrations in the supervised epochs; in the
    /// REINFORCE epochs `reinforce_samples` lists sampled per request from the current model,
    /// each weighted by its reward (NDCG@L of the clicks) minus its group's mean.
    fn seq2slate_targets(
        &mut self,
        model: &Seq2Slate,
        batch_samples: &[&'a RerankSample],
    ) -> Result<Targets<'a>> {
        let (ds, f, plain) = (self.ds, self.features, self.devices.1);
        if self.epoch <= self.config.epochs {
            return Ok(Targets {
                rows: batch_samples.to_vec(),
                lists: batch_samples
                    .iter()
                    .map(|s| {
                        if self.config.label_demonstrations {
                            ds.label_demonstration(s)
                        } else {
                            ds.demonstration(s)
                        }
                    })
                    .collect(),
                weights: None,
            });
        }
        let g = self.config.reinforce_samples;
        let rows: Vec<&RerankSample> = batch_samples
            .iter()
            .flat_map(|s| std::iter::repeat_n(*s, g))
            .collect();
        let rng = &mut self.rng;
        let mut draw = |p: &[f32]| {
            let total: f32 = p.iter().sum();
            let mut u = rng.random::<f32>() * total;
            for (i, &w) in p.iter().enumerate() {
                if u < w {
                    return i;
                }
                u -= w;
            }
            p.iter().rposition(|&w| w > 0.0).unwrap_or(0)
        };
        let len = ds.config.slate_len;
        let lists = model
            .valid()
            .decode(&Batch::new(ds, f, &rows, plain)?, len, Some(&mut draw));
        let rewards: Vec<f32> = rows
            .iter()
            .zip(&lists)
            .map(|(s, l)| ndcg(l, &s.click_relevance()))
            .collect();
        let weights = rewards
            .chunks(g)
            .flat_map(|c| {
                let mean = c.iter().sum::<f32>() / g as f32;
                c.iter().map(move |r| r - mean)
            })
            .collect();
        Ok(Targets {
            rows,
            lists,
            weights: Some(weights),
        })
    }

    /// A scorer's step (PRM, DLCM): BCE on the clicks, each shard's loss its own mean
    /// times its share of the batch's rows.
    fn scorer_step<M: Scorer>(
        &mut self,
        model: M,
        batch_samples: &[&'a RerankSample],
    ) -> Result<(M, StepOutcome)> {
        let (ds, f, device) = (self.ds, self.features, self.devices.0);
        let total = batch_samples.len() as f32;
        sharded_step(
            model,
            &mut self.optim,
            device,
            (batch_samples.len(), self.config.shards),
            (self.config.learning_rate, None),
            |m: &M, range: Range<usize>| {
                let share = range.len() as f32 / total;
                let batch = Batch::new(ds, f, &batch_samples[range], device)?;
                Ok::<_, BaselineError>(
                    bce(m.scores(&batch), batch.clicks.clone()).mul_scalar(share),
                )
            },
        )
    }

    /// One step on `batch_samples`: BCE on the clicks for the scorers, the demonstrations'
    /// log-likelihood for Seq2Slate, REINFORCE with a group-mean baseline in its last
    /// epochs; gradients over `shards` data-parallel row shards, each shard's loss its rows'
    /// share of the batch mean.
    fn train_step(
        &mut self,
        model: Trained,
        batch_samples: &[&'a RerankSample],
    ) -> Result<(Trained, StepOutcome)> {
        let (ds, f, device) = (self.ds, self.features, self.devices.0);
        let (shards, lr) = (self.config.shards, self.config.learning_rate);
        Ok(match model {
            Trained::Prm(m) => {
                let (m, o) = self.scorer_step(m, batch_samples)?;
                (Trained::Prm(m), o)
            }
            Trained::Dlcm(m) => {
                let (m, o) = self.scorer_step(m, batch_samples)?;
                (Trained::Dlcm(m), o)
            }
            Trained::Seq2Slate(m) => {
                let t = self.seq2slate_targets(&m, batch_samples)?;
                let n = t.rows.len();
                let (m, o) = sharded_step(
                    m,
                    &mut self.optim,
                    device,
                    (n, shards),
                    (lr, None),
                    |m: &Seq2Slate, range: Range<usize>| {
                        let batch = Batch::new(ds, f, &t.rows[range.clone()], device)?;
                        let log_p = m.log_prob(&batch, &t.lists[range.clone()]);
                        let weighted = match &t.weights {
                            Some(w) => {
                                let a = Tensor::<1>::from_data(
                                    burn::tensor::TensorData::new(
                                        w[range.clone()].to_vec(),
                                        [range.len()],
                                    ),
                                    device,
                                );
                                log_p * a
                            }
                            None => log_p,
                        };
                        Ok::<_, BaselineError>(weighted.sum().neg().div_scalar(n as f32))
                    },
                )?;
                (Trained::Seq2Slate(m), o)
            }
        })
    }
}

impl glorank_nn::training::TrainingLoop for FitLoop<'_> {
    type Error = BaselineError;

    fn done(&self) -> u64 {
        (self.epoch.saturating_sub(1) as u64) * self.per_epoch + self.in_epoch as u64
    }

    fn step(&mut self) -> Result<f64> {
        if self.in_epoch == 0 {
            self.epoch += 1;
            self.batches = batches(&self.ds.train, self.config.batch_size, &mut self.rng);
            self.loss_sum = 0.0;
        }
        let batch_samples = self.batches[self.in_epoch].clone();
        let model = self
            .model
            .take()
            .ok_or_else(|| BaselineError::InvalidInput("a failed step lost the model".into()))?;
        // The shards' seeds come from a stream keyed by the seed and the step, not from the
        // device RNG, which other models may be seeding at the same time.
        use glorank_nn::dropout::{splitmix64, with_dropout_seed};
        let stream = splitmix64(self.config.seed ^ splitmix64(self.done()));
        let (model, outcome) =
            with_dropout_seed(stream, || self.train_step(model, &batch_samples))?;
        if outcome.skipped {
            return Err(BaselineError::Diverged(self.epoch));
        }
        self.model = Some(model);
        self.loss_sum += f64::from(outcome.loss);
        self.in_epoch += 1;
        Ok(f64::from(outcome.loss))
    }

    fn after_step(&mut self, _: &mut dyn glorank_nn::training::TrainObserver) -> Result<()> {
        if self.in_epoch < self.batches.len() {
            return Ok(());
        }
        let steps = self.in_epoch;
        self.in_epoch = 0;
        let evaluated = match self.model.as_ref() {
            Some(Trained::Prm(m)) => Trained::Prm(m.valid()),
            Some(Trained::Dlcm(m)) => Trained::Dlcm(m.valid()),
            Some(Trained::Seq2Slate(m)) => Trained::Seq2Slate(m.valid()),
            None => {
                return Err(BaselineError::InvalidInput(
                    "a failed step lost the model".into(),
                ));
            }
        };
        let len = self.ds.config.slate_len;
        let p = valid_precision(&evaluated, self.ds, self.features, len, self.devices.1)?;
        self.log.push(EpochLog {
            epoch: self.epoch,
            loss: self.loss_sum / steps.max(1) as f64,
            valid_precision: p,
        });
        if self.best.as_ref().is_none_or(|(b, _)| p > *b) {
            self.best = Some((p, evaluated));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders() {
        assert_eq!(mf_order(&[0.1, 0.9, 0.5], 2), vec![1, 2]);
        assert_eq!(retriever_reversed(&[0.1, 0.9, 0.5], 2), vec![0, 2]);
        assert_eq!(popularity(&[3, 7, 7, 1], 3), vec![1, 2, 0]);
        assert_eq!(oracle(&[0.0, 1.0, 1.0, 0.0], 4), vec![1, 2, 0, 3]);
    }

    #[test]
    fn pool_novelty_counts_a_users_non_clicked_training_candidates() {
        use glorank_data::Labels;
        let sample = |user: u32, candidates: Vec<u32>, clicks: &[bool]| RerankSample {
            user,
            slate_start: 0,
            candidates,
            labels: clicks.iter().map(|&c| Labels(u8::from(c))).collect(),
            logged: vec![0],
        };
        let train = [
            sample(0, vec![1, 2, 3], &[true, false, false]),
            sample(0, vec![2, 3, 4], &[false, false, true]),
            sample(1, vec![1, 5, 6], &[false, false, false]),
        ];
        let novelty = PoolNovelty::new(&train);
        let test = sample(0, vec![3, 1, 9, 2], &[false, true, true, false]);
        // Items 3 and 2 were twice non-clicked candidates of user 0; 1 was clicked; 9 unseen.
        assert_eq!(novelty.counts(&test), vec![2, 0, 0, 2]);
        assert_eq!(novelty.rank(&test, 2), vec![1, 2]);
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = BaselineConfig::default()
            .with(0, 8, 1e-3)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("epochs"));
        let e = BaselineConfig::default()
            .with_d_model(30)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("d_model"));
        for bad in [-1.0, f32::NAN, 1e6] {
            let c = BaselineConfig {
                user_lr_scale: bad,
                ..BaselineConfig::default()
            };
            let e = c.validate().unwrap_err();
            assert!(e.to_string().contains("user_lr_scale"), "{bad}: {e}");
        }
        let c = BaselineConfig {
            user_lr_scale: 10.0,
            ..BaselineConfig::default()
        };
        assert!(c.validate().is_ok());
    }
}
