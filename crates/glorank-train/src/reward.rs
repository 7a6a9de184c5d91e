//! The reward-model trainer: logged slates plus lists sampled from the pool, binary
//! cross-entropy per behaviour, early stopping on validation click AUC.

use crate::config::check;
use crate::requests::RequestBuilder;
use crate::{Result, TrainError};
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use glorank_data::RerankSample;
use glorank_metrics::auc;
use glorank_reward::{RewardExample, UserResponseModel};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};

/// Hyper-parameters of [`train_reward_model`] (and of the examples it trains on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RewardTrainConfig {
    /// Maximum epochs (default 10).
    pub epochs: usize,
    /// Examples per step (default 64).
    pub batch_size: usize,
    /// AdamW learning rate (default 1e-3).
    pub learning_rate: f64,
    /// Epochs without a better validation click AUC before stopping (default 3).
    pub patience: usize,
    /// Seed of the batch order and the pool-sampled lists (default 0).
    pub seed: u64,
    /// Lists sampled uniformly from each request's pool as extra examples (default 2).
    pub pool_lists: usize,
}

impl Default for RewardTrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            learning_rate: 1e-3,
            patience: 3,
            seed: 0,
            pool_lists: 2,
        }
    }
}

impl RewardTrainConfig {
    /// Sets epochs and patience.
    pub fn with_epochs(mut self, epochs: usize, patience: usize) -> Self {
        self.epochs = epochs;
        self.patience = patience;
        self
    }

    /// Sets the learning rate.
    pub fn with_learning_rate(mut self, lr: f64) -> Self {
        self.learning_rate = lr;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the values; `section` prefixes the field names in errors.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming the field.
    pub fn validate(&self, section: &str) -> Result<()> {
        let f = |name: &str| format!("{section}.{name}");
        check(&f("epochs"), self.epochs > 0, "must be > 0")?;
        check(&f("batch_size"), self.batch_size > 0, "must be > 0")?;
        check(
            &f("learning_rate"),
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "must be finite and > 0",
        )?;
        check(&f("patience"), self.patience > 0, "must be > 0")
    }
}

/// One epoch of reward-model training.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardEpoch {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation click AUC (`None` when the validation set has one class only).
    pub valid_auc: Option<f64>,
}

/// Training examples of `samples`: each logged slate in exposure order with its labels, plus
/// `pool_lists` lists of the slate's length drawn uniformly from the pool (seeded per sample),
/// whose retrieved, never-consumed items carry label 0.
pub fn reward_examples(
    builder: &RequestBuilder<'_>,
    samples: &[RerankSample],
    pool_lists: usize,
    seed: u64,
) -> Vec<RewardExample> {
    let mut out = Vec::with_capacity(samples.len() * (1 + pool_lists));
    for (k, s) in samples.iter().enumerate() {
        let req = builder.request(s);
        let labels: Vec<u8> = s.labels.iter().map(|l| l.0).collect();
        let logged: Vec<usize> = s.logged.iter().map(|&p| p as usize).collect();
        let mut lists = vec![logged];
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let positions: Vec<usize> = (0..s.candidates.len()).collect();
        for _ in 0..pool_lists {
            let mut pick: Vec<usize> = positions
                .sample(&mut rng, s.logged.len())
                .copied()
                .collect();
            pick.shuffle(&mut rng);
            lists.push(pick);
        }
        for list in lists {
            out.push(RewardExample::from_pool(
                req.user_features.clone(),
                req.history.clone(),
                &req.candidates,
                &labels,
                &list,
            ));
        }
    }
    out
}

/// Click AUC of `model` (on a plain device) over every slot of `examples`.
///
/// # Errors
/// Model input errors.
pub fn click_auc(
    model: &UserResponseModel,
    examples: &[RewardExample],
    device: &Device,
) -> Result<Option<f64>> {
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    for chunk in examples.chunks(256) {
        let p = model
            .probabilities(chunk, device)
            .map_err(|e| TrainError::InvalidInput(e.to_string()))?;
        let [_, l, _] = p.dims();
        let flat: Vec<f32> = p.into_data().iter::<f32>().collect();
        for (r, e) in chunk.iter().enumerate() {
            for (k, &lab) in e.labels.iter().enumerate() {
                scores.push(f64::from(flat[(r * l + k) * 3]));
                labels.push(lab & 1 != 0);
            }
        }
    }
    auc(&scores, &labels).map_err(|e| TrainError::InvalidInput(e.to_string()))
}

/// Trains `model` (built on `train_device`, an autodiff device) on `train` examples with
/// AdamW, evaluates the click AUC on `valid` after every epoch, stops after `patience`
/// epochs without improvement and returns the best epoch's model (as a plain-device
/// `valid()` copy) with the per-epoch log.
///
/// # Errors
/// Model input errors, or a non-finite loss.
pub fn train_reward_model(
    mut model: UserResponseModel,
    train: &[RewardExample],
    valid: &[RewardExample],
    config: &RewardTrainConfig,
    train_device: &Device,
    eval_device: &Device,
) -> Result<(UserResponseModel, Vec<RewardEpoch>)> {
    if train.is_empty() || config.batch_size == 0 || config.epochs == 0 {
        return Err(TrainError::InvalidInput(
            "need training examples, batch_size and epochs".into(),
        ));
    }
    let mut optim = AdamWConfig::new().init();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut log = Vec::new();
    let mut best: Option<(f64, UserResponseModel)> = None;
    let mut since_best = 0;
    for epoch in 1..=config.epochs {
        order.shuffle(&mut rng);
        let mut total = 0.0;
        let mut steps = 0;
        for idx in order.chunks(config.batch_size) {
            let batch: Vec<RewardExample> = idx.iter().map(|&i| train[i].clone()).collect();
            let loss = model
                .loss(&batch, train_device)
                .map_err(|e| TrainError::InvalidInput(e.to_string()))?;
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(TrainError::InvalidInput(format!(
                    "non-finite loss in epoch {epoch}"
                )));
            }
            total += value;
            steps += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.learning_rate, model, grads);
        }
        let evaluated = model.valid();
        let valid_auc = click_auc(&evaluated, valid, eval_device)?;
        log.push(RewardEpoch {
            epoch,
            train_loss: total / steps as f64,
            valid_auc,
        });
        let score = valid_auc.unwrap_or(f64::NEG_INFINITY);
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, evaluated));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience {
                break;
            }
        }
    }
    let model = best.map(|(_, m)| m).unwrap_or_else(|| model.valid());
    Ok((model, log))
}
