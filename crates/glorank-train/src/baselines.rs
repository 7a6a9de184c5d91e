//! The baselines' training loop: PRM, DLCM and Seq2Slate (`glorank-baselines`' models)
//! fitted on prepared samples inside the shared skeleton, and their lists and scores.

use crate::config::{check, check_max};
use crate::optim::OptimConfig;
use crate::skeleton::{NoObserver, StepOutcome, TrainObserver, TrainingLoop, drive, sharded_step};
use crate::{Result, TrainError};
use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use glorank_baselines::{Baseline, Batch, BatchRow, Dlcm, Features, Prm, Seq2Slate, mf_order};
use glorank_data::{CONTENT_VECTORS, Exposures, PreparedDataset, RerankSample, item_vectors};
use glorank_metrics::{ListMetrics, MetricAccumulator};
use glorank_nn::ModelInputs;
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Hyper-parameters of [`fit`] (the `[baselines]` section).
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
    /// Seq2Slate: REINFORCE epochs after the supervised ones (default 1).
    pub reinforce_epochs: usize,
    /// Seq2Slate: lists sampled per request in REINFORCE (default 4).
    pub reinforce_samples: usize,
    /// Seq2Slate imitates the labels' demonstrations
    /// (`PreparedDataset::label_demonstration`) instead of the logged slates (default
    /// false; the policy's `[sft] demonstrations = { kind = "labels" }`).
    pub label_demonstrations: bool,
    /// The optimiser; its seed also seeds the weights and the REINFORCE draws (default:
    /// [`OptimConfig::default`]).
    pub optim: OptimConfig,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            d_model: 64,
            layers: 1,
            epochs: 5,
            reinforce_epochs: 1,
            reinforce_samples: 4,
            label_demonstrations: false,
            optim: OptimConfig::default(),
        }
    }
}

impl BaselineConfig {
    /// Sets epochs, batch size and learning rate.
    pub fn with(mut self, epochs: usize, batch_size: usize, learning_rate: f64) -> Self {
        self.epochs = epochs;
        self.optim = self.optim.with(batch_size, learning_rate);
        self
    }

    /// Sets the width.
    pub fn with_d_model(mut self, d: usize) -> Self {
        self.d_model = d;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.optim.seed = seed;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming `baselines.FIELD`.
    pub fn validate(&self) -> Result<()> {
        check(
            "baselines.d_model",
            self.d_model > 0 && self.d_model.is_multiple_of(4),
            "must be a positive multiple of 4 (4 heads)",
        )?;
        check("baselines.layers", self.layers > 0, "must be > 0")?;
        check("baselines.epochs", self.epochs > 0, "must be > 0")?;
        check(
            "baselines.reinforce_samples",
            self.reinforce_samples >= 2 || self.reinforce_epochs == 0,
            "must be >= 2",
        )?;
        use glorank_nn::limits::*;
        for (field, value, max) in [
            ("baselines.d_model", self.d_model, MAX_D_MODEL),
            ("baselines.layers", self.layers, MAX_LAYERS),
            ("baselines.epochs", self.epochs, MAX_EPOCHS),
            (
                "baselines.reinforce_epochs",
                self.reinforce_epochs,
                MAX_EPOCHS,
            ),
            (
                "baselines.reinforce_samples",
                self.reinforce_samples,
                MAX_GROUP,
            ),
        ] {
            check_max(field, value, max)?;
        }
        self.optim.validate("baselines")
    }
}

/// The baselines' view of a prepared dataset: the side information every batch shares and,
/// when the inputs ask for them, the training exposures.
#[derive(Debug, Clone)]
pub struct BaselineData<'a> {
    /// The prepared dataset.
    pub ds: &'a PreparedDataset,
    /// Its item and user side information and the per-candidate inputs.
    pub features: Features,
    /// Exposure counts over the training requests (with `inputs.exposures`).
    exposures: Option<Exposures>,
}

impl<'a> BaselineData<'a> {
    /// The side information of `ds`: content vectors (genres, year, 16 title-hash buckets,
    /// [`CONTENT_VECTORS`]) when it has item features, user attributes when it has them, and
    /// the per-candidate inputs of `inputs` (the retriever features, the exposure counts).
    pub fn new(ds: &'a PreparedDataset, inputs: &ModelInputs) -> Self {
        let (item_vectors, dim) = match &ds.item_features {
            Some(_) => match item_vectors(ds, &CONTENT_VECTORS) {
                Ok(v) => (v.data, v.dim),
                Err(_) => (Vec::new(), 0),
            },
            None => (Vec::new(), 0),
        };
        let (user_field_sizes, user_values) = match &ds.user_features {
            Some(u) => (
                u.fields.iter().map(|f| f.vocabulary.len()).collect(),
                u.fields.iter().map(|f| f.values.clone()).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Self {
            ds,
            features: Features {
                item_vectors,
                dim,
                items: ds.num_items(),
                user_field_sizes,
                user_values,
                history_len: ds.config.history_len.max(1),
                inputs: *inputs,
            },
            exposures: inputs.exposures.then(|| Exposures::new(&ds.train)),
        }
    }

    /// The batch of `samples` (all with the same pool size) on `device`.
    ///
    /// # Errors
    /// Unequal pool sizes within the batch, or an empty batch.
    pub fn batch(&self, samples: &[&RerankSample], device: &Device) -> Result<Batch> {
        let inputs = &self.features.inputs;
        let rows: Vec<BatchRow<'_>> = samples
            .iter()
            .map(|s| {
                let retriever = inputs.retriever_score.then(|| {
                    inputs
                        .retriever_input
                        .features(&self.ds.retriever_scores(s))
                });
                let exposures = self.exposures.as_ref().map(|e| e.counts(s));
                let w = inputs.retriever_input.width();
                let mut side = Vec::with_capacity(s.candidates.len() * self.features.side_width());
                for c in 0..s.candidates.len() {
                    if let Some(r) = &retriever {
                        side.extend_from_slice(&r[c * w..(c + 1) * w]);
                    }
                    if let Some(e) = &exposures {
                        side.push(glorank_nn::exposure_feature(e[c]));
                    }
                }
                BatchRow {
                    user: s.user,
                    candidates: &s.candidates,
                    history: self.ds.history(s).items,
                    side,
                    clicks: s.click_relevance().iter().map(|&c| c as f32).collect(),
                }
            })
            .collect();
        Ok(Batch::new(&self.features, &rows, device)?)
    }

    /// `run` over `samples` in batches of 256, the results concatenated in sample order.
    fn per_batch<T>(
        &self,
        samples: &[RerankSample],
        device: &Device,
        mut run: impl FnMut(&Batch) -> Vec<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(256) {
            let refs: Vec<&RerankSample> = chunk.iter().collect();
            out.extend(run(&self.batch(&refs, device)?));
        }
        Ok(out)
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
    /// [`glorank_baselines::Encoding::forget_unseen`]); [`fit`] applies it to the items of
    /// no training request.
    pub fn forget_unseen(self, seen: &[bool]) -> Self {
        match self {
            Self::Prm(m) => Self::Prm(m.forget_unseen(seen)),
            Self::Dlcm(m) => Self::Dlcm(m.forget_unseen(seen)),
            Self::Seq2Slate(m) => Self::Seq2Slate(m.forget_unseen(seen)),
        }
    }

    /// The plain-device copy for evaluation.
    fn valid(&self) -> Self {
        match self {
            Self::Prm(m) => Self::Prm(m.valid()),
            Self::Dlcm(m) => Self::Dlcm(m.valid()),
            Self::Seq2Slate(m) => Self::Seq2Slate(m.valid()),
        }
    }

    /// Lists of `len` items for `samples` (greedy for Seq2Slate; top by score otherwise).
    ///
    /// # Errors
    /// Input errors (unequal pool sizes within a batch).
    pub fn rank(
        &self,
        data: &BaselineData<'_>,
        samples: &[RerankSample],
        len: usize,
        device: &Device,
    ) -> Result<Vec<Vec<usize>>> {
        match self {
            Self::Seq2Slate(m) => data.per_batch(samples, device, |batch| {
                m.decode(batch, len.min(batch.shape[1]), None)
            }),
            _ => Ok(self
                .scores(data, samples, device)?
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
        data: &BaselineData<'_>,
        samples: &[RerankSample],
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        data.per_batch(samples, device, |batch| {
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

fn valid_precision(
    model: &Trained,
    data: &BaselineData<'_>,
    len: usize,
    device: &Device,
) -> Result<f64> {
    let valid = &data.ds.valid;
    if valid.is_empty() {
        return Ok(0.0);
    }
    let lists = model.rank(data, valid, len, device)?;
    let mut acc = MetricAccumulator::new();
    for (l, s) in lists.iter().zip(valid) {
        acc.push(ListMetrics::compute(l, &s.click_relevance(), len)?);
    }
    Ok(acc.summary()?.precision.mean)
}

/// Trains `kind` on the training requests of `data.ds` (autodiff `device`), evaluating
/// validation Precision@L after every epoch on `plain` and returning the best epoch's model
/// (a plain-device copy) with the per-epoch log.
///
/// # Errors
/// Invalid configuration, an empty training split, or a non-finite loss.
pub fn fit(
    kind: Baseline,
    data: &BaselineData<'_>,
    config: &BaselineConfig,
    (device, plain): (&Device, &Device),
) -> Result<(Trained, Vec<EpochLog>)> {
    config.validate()?;
    let ds = data.ds;
    if ds.train.is_empty() {
        return Err(TrainError::InvalidInput("no training samples".into()));
    }
    let f = &data.features;
    let (d, seed, scale) = (config.d_model, config.optim.seed, f.inputs.user_lr_scale);
    let model = match kind {
        Baseline::Prm => Trained::Prm(glorank_nn::init_seeded(device, seed, || {
            Prm::new(f, d, config.layers, device).with_user_scale(scale)
        })),
        Baseline::Dlcm => Trained::Dlcm(glorank_nn::init_seeded(device, seed, || {
            Dlcm::new(f, d, device).with_user_scale(scale)
        })),
        _ => Trained::Seq2Slate(glorank_nn::init_seeded(device, seed, || {
            Seq2Slate::new(f, d, config.layers, device).with_user_scale(scale)
        })),
    };
    let rl_epochs = if kind == Baseline::Seq2Slate {
        config.reinforce_epochs
    } else {
        0
    };
    let per_epoch = ds.train.len().div_ceil(config.optim.batch_size) as u64;
    let total = per_epoch * (config.epochs + rl_epochs) as u64;
    let mut run = FitLoop {
        model: Some(model),
        optim: AdamWConfig::new()
            .with_weight_decay(config.optim.weight_decay)
            .init(),
        rng: ChaCha8Rng::seed_from_u64(seed),
        epoch: 0,
        batches: Vec::new(),
        in_epoch: 0,
        per_epoch,
        total,
        loss_sum: 0.0,
        log: Vec::new(),
        best: None,
        data,
        config,
        devices: (device, plain),
    };
    drive(kind.name(), total, &mut run, &mut NoObserver)?;
    let (_, model) = run
        .best
        .ok_or_else(|| TrainError::InvalidInput("no epoch ran".into()))?;
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
    /// Steps planned (for the learning-rate schedule).
    total: u64,
    loss_sum: f64,
    log: Vec<EpochLog>,
    best: Option<(f64, Trained)>,
    data: &'a BaselineData<'a>,
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
    /// This step's learning rate and clipping bound.
    fn rate(&self) -> (f64, Option<f32>) {
        let step = (self.epoch.saturating_sub(1) as u64) * self.per_epoch + self.in_epoch as u64;
        (
            self.config.optim.rate(step, self.total),
            self.config.optim.clip(),
        )
    }

    /// Seq2Slate's targets for a batch: the demonstrations in the supervised epochs; in the
    /// REINFORCE epochs `reinforce_samples` lists sampled per request from the current model,
    /// each weighted by its reward (NDCG@L of the clicks) minus its group's mean.
    fn seq2slate_targets(
        &mut self,
        model: &Seq2Slate,
        batch_samples: &[&'a RerankSample],
    ) -> Result<Targets<'a>> {
        let (ds, plain) = (self.data.ds, self.devices.1);
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
            .decode(&self.data.batch(&rows, plain)?, len, Some(&mut draw));
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
        let (data, device) = (self.data, self.devices.0);
        let total = batch_samples.len() as f32;
        let rate = self.rate();
        sharded_step(
            model,
            &mut self.optim,
            device,
            (batch_samples.len(), self.config.optim.shards),
            rate,
            |m: &M, range: Range<usize>| {
                let share = range.len() as f32 / total;
                let batch = data.batch(&batch_samples[range], device)?;
                Ok::<_, TrainError>(bce(m.scores(&batch), batch.clicks.clone()).mul_scalar(share))
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
        let (data, device) = (self.data, self.devices.0);
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
                let rate = self.rate();
                let (m, o) = sharded_step(
                    m,
                    &mut self.optim,
                    device,
                    (n, self.config.optim.shards),
                    rate,
                    |m: &Seq2Slate, range: Range<usize>| {
                        let batch = data.batch(&t.rows[range.clone()], device)?;
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
                        Ok::<_, TrainError>(weighted.sum().neg().div_scalar(n as f32))
                    },
                )?;
                (Trained::Seq2Slate(m), o)
            }
        })
    }
}

impl TrainingLoop for FitLoop<'_> {
    type Error = TrainError;

    fn done(&self) -> u64 {
        (self.epoch.saturating_sub(1) as u64) * self.per_epoch + self.in_epoch as u64
    }

    fn step(&mut self) -> Result<f64> {
        if self.in_epoch == 0 {
            self.epoch += 1;
            self.batches = batches(
                &self.data.ds.train,
                self.config.optim.batch_size,
                &mut self.rng,
            );
            self.loss_sum = 0.0;
        }
        let batch_samples = self.batches[self.in_epoch].clone();
        let model = self
            .model
            .take()
            .ok_or_else(|| TrainError::InvalidInput("a failed step lost the model".into()))?;
        // The shards' seeds come from a stream keyed by the seed and the step, not from the
        // device RNG, which other models may be seeding at the same time.
        use glorank_nn::dropout::{splitmix64, with_dropout_seed};
        let stream = splitmix64(self.config.optim.seed ^ splitmix64(self.done()));
        let (model, outcome) =
            with_dropout_seed(stream, || self.train_step(model, &batch_samples))?;
        if outcome.skipped {
            return Err(TrainError::Diverged(format!(
                "non-finite baseline loss in epoch {}; lower the learning rate",
                self.epoch
            )));
        }
        self.model = Some(model);
        self.loss_sum += f64::from(outcome.loss);
        self.in_epoch += 1;
        Ok(f64::from(outcome.loss))
    }

    fn after_step(&mut self, _: &mut dyn TrainObserver) -> Result<()> {
        if self.in_epoch < self.batches.len() {
            return Ok(());
        }
        let steps = self.in_epoch;
        self.in_epoch = 0;
        let evaluated = self
            .model
            .as_ref()
            .ok_or_else(|| TrainError::InvalidInput("a failed step lost the model".into()))?
            .valid();
        let len = self.data.ds.config.slate_len;
        let p = valid_precision(&evaluated, self.data, len, self.devices.1)?;
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
    fn config_errors_name_the_field() {
        let e = BaselineConfig::default()
            .with(0, 8, 1e-3)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("baselines.epochs"), "{e}");
        let e = BaselineConfig::default()
            .with_d_model(30)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("baselines.d_model"), "{e}");
        let mut c = BaselineConfig::default();
        c.optim.batch_size = 0;
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("baselines.optim.batch_size"), "{e}");
    }
}
