//! The reward-model trainer: logged slates plus lists sampled from the pool, binary
//! cross-entropy per behaviour, early stopping on validation click AUC.

use crate::checkpoint::{load_json, save_json};
use crate::config::{check, check_max};
use crate::optim::OptimConfig;
use crate::requests::RequestBuilder;
use crate::skeleton::{
    NoObserver, RunStatus, STATE_FILE, TrainObserver, TrainingLoop, drive, latest, load_optimizer,
    save_optimizer, sharded_step, write_dir_atomic,
};
use crate::{Result, TrainError};
use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::Device;
use glorank_data::RerankSample;
use glorank_metrics::auc;
use glorank_reward::{RewardConfig, RewardExample, UserResponseModel};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Hyper-parameters of [`train_reward_model`] and of the examples it trains on (the
/// `[evaluator]` and `[simulator]` sections).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RewardTrainConfig {
    /// Maximum epochs (default 10).
    pub epochs: usize,
    /// Epochs without a better validation click AUC before stopping (default 3).
    pub patience: usize,
    /// Lists sampled uniformly from each request's pool as extra examples (default 2).
    pub pool_lists: usize,
    /// Model width; 0 keeps the role's default (evaluator 64, simulator 96).
    pub d_model: usize,
    /// Transformer layers; 0 keeps the role's default (evaluator 2, simulator 3).
    pub layers: usize,
    /// The optimiser; its seed also seeds the weights and the pool-sampled lists (default:
    /// [`OptimConfig::default`]).
    pub optim: OptimConfig,
}

impl Default for RewardTrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            patience: 3,
            pool_lists: 2,
            d_model: 0,
            layers: 0,
            optim: OptimConfig::default(),
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

    /// Sets the optimiser.
    pub fn with_optim(mut self, optim: OptimConfig) -> Self {
        self.optim = optim;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.optim.seed = seed;
        self
    }

    /// Sets the learning rate.
    pub fn with_learning_rate(mut self, learning_rate: f64) -> Self {
        self.optim.learning_rate = learning_rate;
        self
    }

    /// Checks the values; `section` prefixes the field names in errors.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming the field.
    pub fn validate(&self, section: &str) -> Result<()> {
        let f = |name: &str| format!("{section}.{name}");
        check(&f("epochs"), self.epochs > 0, "must be > 0")?;
        check(&f("patience"), self.patience > 0, "must be > 0")?;
        {
            use glorank_nn::limits::*;
            check_max(&f("epochs"), self.epochs, MAX_EPOCHS)?;
            check_max(&f("d_model"), self.d_model, MAX_D_MODEL)?;
            check_max(&f("layers"), self.layers, MAX_LAYERS)?;
            check_max(&f("pool_lists"), self.pool_lists, MAX_GROUP)?;
        }
        check(
            &f("d_model"),
            self.d_model.is_multiple_of(4),
            "must be 0 (role default) or a multiple of 4 (4 heads)",
        )?;
        self.optim.validate(section)
    }

    /// Applies the size fields and the retriever-score input of `inputs` to a role's
    /// default model configuration.
    pub fn model_config(
        &self,
        base: glorank_reward::RewardConfig,
        inputs: &glorank_nn::ModelInputs,
    ) -> glorank_reward::RewardConfig {
        let d = if self.d_model > 0 {
            self.d_model
        } else {
            base.d_model
        };
        let layers = if self.layers > 0 {
            self.layers
        } else {
            base.layers
        };
        let heads = base.heads;
        base.with_size(d, heads, layers)
            .with_retriever_score(inputs.retriever_score)
    }
}

/// Directory of the best model inside a reward-model checkpoint.
const BEST_DIR: &str = "best";

/// One epoch of reward-model training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
            out.push(
                RewardExample::from_pool(
                    req.user_features.clone(),
                    req.history.clone(),
                    &req.candidates,
                    &labels,
                    &list,
                )
                .with_pool_scores(&req.retriever_scores, &list),
            );
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
        let p = model.probabilities(chunk, device)?;
        let [_, l, _] = p.dims();
        let flat: Vec<f32> = p.into_data().iter::<f32>().collect();
        for (r, e) in chunk.iter().enumerate() {
            for (k, &lab) in e.labels.iter().enumerate() {
                scores.push(f64::from(flat[(r * l + k) * 3]));
                labels.push(lab & 1 != 0);
            }
        }
    }
    Ok(auc(&scores, &labels)?)
}

/// Trains `model` (built on `train_device`, an autodiff device) on `train` examples with
/// AdamW, evaluates the click AUC on `valid` after every epoch, stops after `patience`
/// epochs without improvement and returns the best epoch's model (as a plain-device
/// `valid()` copy) with the per-epoch log. In memory, without checkpoints: see
/// [`train_reward_model_in`] for the resumable form.
///
/// # Errors
/// Model input errors, or a non-finite loss.
pub fn train_reward_model(
    model: UserResponseModel,
    train: &[RewardExample],
    valid: &[RewardExample],
    config: &RewardTrainConfig,
    train_device: &Device,
    eval_device: &Device,
) -> Result<(UserResponseModel, Vec<RewardEpoch>)> {
    let (m, log, _) = train_reward_model_in(
        model,
        RewardData { train, valid },
        config,
        None,
        (train_device, eval_device),
        &mut NoObserver,
    )?;
    m.map(|m| (m, log))
        .ok_or_else(|| TrainError::InvalidInput("training was interrupted".into()))
}

/// The examples of [`train_reward_model_in`].
#[derive(Debug, Clone, Copy)]
pub struct RewardData<'a> {
    /// Training examples.
    pub train: &'a [RewardExample],
    /// Validation examples (click AUC for early stopping).
    pub valid: &'a [RewardExample],
}

/// Where [`train_reward_model_in`] keeps its checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct RewardCheckpoint<'a> {
    /// The checkpoint directory (written atomically after every epoch: current weights,
    /// optimizer state, trainer state and the best model so far in `best/`).
    pub dir: &'a Path,
    /// The model's configuration (saved with the weights).
    pub config: &'a RewardConfig,
    /// Continue from the checkpoint when there is one.
    pub resume: bool,
}

/// Trainer state saved in a reward-model checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RewardState {
    epoch: usize,
    best_auc: Option<f64>,
    since_best: usize,
    stopped: bool,
    log: Vec<RewardEpoch>,
}

/// The resumable reward-model trainer behind [`train_reward_model`]: the same algorithm,
/// with a progress [`TrainObserver`] (one step per batch) and, given `checkpoint`, an atomic
/// checkpoint after every epoch from which a run resumes with the same batches (the epoch's
/// order is derived from `(seed, epoch)`). Returns the best model (`None` when the observer
/// interrupted the run), the log and the run status.
///
/// # Errors
/// Model input errors, file errors, or a non-finite loss.
pub fn train_reward_model_in(
    mut model: UserResponseModel,
    data: RewardData<'_>,
    config: &RewardTrainConfig,
    checkpoint: Option<RewardCheckpoint<'_>>,
    (train_device, eval_device): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<(Option<UserResponseModel>, Vec<RewardEpoch>, RunStatus)> {
    if data.train.is_empty() {
        return Err(TrainError::InvalidInput("no training examples".into()));
    }
    config.validate("reward")?;
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.optim.weight_decay)
        .init();
    let mut st = RewardState::default();
    let mut best: Option<UserResponseModel> = None;
    if let Some(c) = checkpoint.filter(|c| c.resume)
        && let Some(dir) = latest(c.dir)
    {
        model = UserResponseModel::load(&dir, train_device)?.0;
        optim = load_optimizer(optim, &dir)?;
        st = load_json(&dir.join(STATE_FILE))?;
        if dir.join(BEST_DIR).is_dir() {
            best = Some(UserResponseModel::load(&dir.join(BEST_DIR), eval_device)?.0);
        }
    }
    let per_epoch = data.train.len().div_ceil(config.optim.batch_size) as u64;
    let mut run = RewardLoop {
        model: Some(model),
        optim,
        st,
        best,
        order: (0..data.train.len()).collect(),
        in_epoch: 0,
        loss_sum: 0.0,
        per_epoch,
        data,
        config,
        checkpoint,
        devices: (train_device, eval_device),
    };
    let status = drive(
        "reward",
        per_epoch * config.epochs as u64,
        &mut run,
        observer,
    )?;
    if status == RunStatus::Interrupted {
        return Ok((None, run.st.log, status));
    }
    let model = match run.best {
        Some(b) => b,
        None => run.model()?.valid(),
    };
    Ok((Some(model), run.st.log, status))
}

/// The reward-model trainer inside the shared training-loop skeleton: one step per batch,
/// evaluation, early stopping and the checkpoint at each epoch's end.
struct RewardLoop<'a> {
    /// The model being trained (taken out for the duration of a step).
    model: Option<UserResponseModel>,
    optim: ModuleOptimizer,
    st: RewardState,
    best: Option<UserResponseModel>,
    /// The example order of the current epoch.
    order: Vec<usize>,
    /// Steps done in the current epoch.
    in_epoch: u64,
    /// Summed training loss of the current epoch.
    loss_sum: f64,
    per_epoch: u64,
    data: RewardData<'a>,
    config: &'a RewardTrainConfig,
    checkpoint: Option<RewardCheckpoint<'a>>,
    devices: (&'a Device, &'a Device),
}

impl RewardLoop<'_> {
    fn model(&self) -> Result<&UserResponseModel> {
        self.model
            .as_ref()
            .ok_or_else(|| TrainError::InvalidInput("a failed step lost the model".into()))
    }
}

impl TrainingLoop for RewardLoop<'_> {
    type Error = TrainError;

    fn done(&self) -> u64 {
        self.per_epoch * self.st.epoch as u64 + self.in_epoch
    }

    fn stopped(&self) -> bool {
        self.st.stopped
    }

    fn step(&mut self) -> Result<f64> {
        let (config, train_device) = (self.config, self.devices.0);
        let epoch = self.st.epoch + 1;
        if self.in_epoch == 0 {
            self.order.sort_unstable();
            self.order
                .shuffle(&mut ChaCha8Rng::seed_from_u64(crate::derive_seed(
                    config.optim.seed,
                    &[6, epoch as u64],
                )));
            self.loss_sum = 0.0;
        }
        let bs = config.optim.batch_size;
        let k = self.in_epoch as usize;
        let idx = &self.order[k * bs..((k + 1) * bs).min(self.order.len())];
        let batch: Vec<RewardExample> = idx.iter().map(|&i| self.data.train[i].clone()).collect();
        let step = (epoch as u64 - 1) * self.per_epoch + self.in_epoch + 1;
        let model = self
            .model
            .take()
            .ok_or_else(|| TrainError::InvalidInput("a failed step lost the model".into()))?;
        let optim = &mut self.optim;
        // Dropout draws from the device RNG: seeded per step so a resumed run repeats the
        // same masks, and held for the step so concurrent trainings cannot interleave.
        let (model, outcome) = glorank_nn::with_seeded_device(
            train_device,
            crate::derive_seed(config.optim.seed, &[7, step]),
            || -> Result<_> {
                let count = UserResponseModel::loss_count(&batch);
                sharded_step(
                    model,
                    optim,
                    train_device,
                    (batch.len(), config.optim.shards),
                    (
                        config
                            .optim
                            .rate(step - 1, self.per_epoch * config.epochs as u64),
                        config.optim.clip(),
                    ),
                    |m: &UserResponseModel, rows| {
                        let sum = m.loss_sum(&batch[rows], train_device)?;
                        Ok::<_, TrainError>(sum.div_scalar(count.max(1.0)))
                    },
                )
            },
        )?;
        let value = f64::from(outcome.loss);
        if outcome.skipped {
            return Err(TrainError::Diverged(format!(
                "non-finite reward-model loss in epoch {epoch}; lower the learning rate"
            )));
        }
        self.model = Some(model);
        self.loss_sum += value;
        self.in_epoch += 1;
        Ok(value)
    }

    fn after_step(&mut self, observer: &mut dyn TrainObserver) -> Result<()> {
        if self.in_epoch < self.per_epoch {
            return Ok(());
        }
        let epoch = self.st.epoch + 1;
        let evaluated = self.model()?.valid();
        let valid_auc = click_auc(&evaluated, self.data.valid, self.devices.1)?;
        let record = RewardEpoch {
            epoch,
            train_loss: self.loss_sum / self.in_epoch as f64,
            valid_auc,
        };
        observer.evaluation(&serde_json::json!({
            "stage": "reward", "epoch": epoch, "train_loss": record.train_loss, "valid_click_auc": valid_auc
        }));
        let st = &mut self.st;
        st.log.push(record);
        st.epoch = epoch;
        self.in_epoch = 0;
        let score = valid_auc.unwrap_or(f64::NEG_INFINITY);
        if self.best.is_none() || st.best_auc.is_none_or(|b| score > b) {
            st.best_auc = Some(score);
            self.best = Some(evaluated);
            st.since_best = 0;
        } else {
            st.since_best += 1;
            st.stopped = st.since_best >= self.config.patience;
        }
        if let Some(c) = self.checkpoint {
            let (model, best) = (self.model()?, &self.best);
            write_dir_atomic(c.dir, |d| {
                model.save(c.config, d)?;
                save_optimizer(&self.optim, d)?;
                if let Some(b) = best {
                    let bd = d.join(BEST_DIR);
                    std::fs::create_dir_all(&bd).map_err(|e| TrainError::Io {
                        path: bd.clone(),
                        source: e,
                    })?;
                    b.save(c.config, &bd)?;
                }
                save_json(&d.join(STATE_FILE), &self.st)?;
                // Over every file, so resuming verifies the optimizer and state too.
                glorank_nn::persist::write_checksums(d).map_err(TrainError::from)
            })?;
        }
        Ok(())
    }
}
