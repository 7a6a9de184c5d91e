//! The optimiser settings every trainer shares: one nested type, the `optim` table of each
//! trainer's section (`[sft.optim]`, `[rl.optim]`, `[evaluator.optim]`,
//! `[simulator.optim]`, `[baselines.optim]`).

use crate::Result;
use crate::config::{check, check_max};
use crate::schedule::LrSchedule;
use serde::{Deserialize, Serialize};

/// How a trainer steps: AdamW with a learning-rate schedule, optional global-norm clipping,
/// data-parallel row shards, and the seed of its batch order, sampling and dropout.
///
/// Each trainer starts from its own defaults (for example RL's smaller rate and batch);
/// [`OptimConfig::default`] is the supervised trainers' (SFT, the reward models, the
/// baselines): batch 64, rate 1e-3, weight decay 1e-4, no clipping, 4 shards, seed 0.
///
/// ```
/// use glorank_train::OptimConfig;
///
/// let o = OptimConfig::default().with(128, 2e-3).with_seed(3);
/// assert_eq!((o.batch_size, o.learning_rate, o.seed), (128, 2e-3, 3));
/// o.validate("sft")?;
/// # Ok::<(), glorank_train::TrainError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OptimConfig {
    /// Examples (requests) per step.
    pub batch_size: usize,
    /// AdamW learning rate, the base of `schedule`.
    pub learning_rate: f64,
    /// How the learning rate moves over the planned steps (default: constant).
    pub schedule: LrSchedule,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Global gradient-norm bound; 0 disables clipping.
    pub grad_clip_norm: f32,
    /// Row shards of each batch, each run forward and backward on its own thread with the
    /// gradients summed (1 runs the whole batch on the calling thread). The result depends
    /// on the seed and this count, not on the machine's cores (see
    /// [`sharded_gradients`](crate::sharded_gradients)).
    pub shards: usize,
    /// Seed of the batch order, the sampling, the dropout and (reward models, baselines)
    /// the weight initialisation.
    pub seed: u64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            learning_rate: 1e-3,
            schedule: LrSchedule::default(),
            weight_decay: 1e-4,
            grad_clip_norm: 0.0,
            shards: 4,
            seed: 0,
        }
    }
}

impl OptimConfig {
    /// Sets the batch size and the learning rate.
    pub fn with(mut self, batch_size: usize, learning_rate: f64) -> Self {
        self.batch_size = batch_size;
        self.learning_rate = learning_rate;
        self
    }

    /// Sets the learning-rate schedule.
    pub fn with_schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Sets the weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Sets the gradient-norm bound (0: none).
    pub fn with_grad_clip_norm(mut self, bound: f32) -> Self {
        self.grad_clip_norm = bound;
        self
    }

    /// Sets the data-parallel shards.
    pub fn with_shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The clipping bound as the optimizer step takes it (`None`: no clipping).
    pub fn clip(&self) -> Option<f32> {
        (self.grad_clip_norm > 0.0).then_some(self.grad_clip_norm)
    }

    /// The rate of step `step` (from 0) of a run planned for `total` steps.
    pub fn rate(&self, step: u64, total: u64) -> f64 {
        self.schedule.rate(self.learning_rate, step, total)
    }

    /// Checks the values; `section` prefixes the field names in errors
    /// (`sft.optim.batch_size`).
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`](crate::TrainError::InvalidConfig) naming the field.
    pub fn validate(&self, section: &str) -> Result<()> {
        use glorank_nn::limits::{MAX_BATCH, MAX_SHARDS};
        let f = |name: &str| format!("{section}.optim.{name}");
        check(&f("batch_size"), self.batch_size > 0, "must be > 0")?;
        check_max(&f("batch_size"), self.batch_size, MAX_BATCH)?;
        check(
            &f("learning_rate"),
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "must be finite and > 0",
        )?;
        check(
            &f("weight_decay"),
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "must be finite and >= 0",
        )?;
        check(
            &f("grad_clip_norm"),
            self.grad_clip_norm.is_finite() && self.grad_clip_norm >= 0.0,
            "must be finite and >= 0",
        )?;
        check(&f("shards"), self.shards > 0, "must be > 0")?;
        check_max(&f("shards"), self.shards, MAX_SHARDS)?;
        self.schedule.validate(&f("schedule"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_section_and_field() {
        for (edit, field) in [
            (
                Box::new(|o: &mut OptimConfig| o.batch_size = 0) as Box<dyn Fn(&mut OptimConfig)>,
                "rl.optim.batch_size",
            ),
            (
                Box::new(|o| o.learning_rate = f64::NAN),
                "rl.optim.learning_rate",
            ),
            (Box::new(|o| o.shards = 100_000), "rl.optim.shards"),
            (
                Box::new(|o| o.grad_clip_norm = -1.0),
                "rl.optim.grad_clip_norm",
            ),
            (
                Box::new(|o| o.schedule.final_factor = 2.0),
                "rl.optim.schedule.final_factor",
            ),
        ] {
            let mut o = OptimConfig::default();
            edit(&mut o);
            let e = o.validate("rl").unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        assert_eq!(OptimConfig::default().clip(), None);
        assert_eq!(
            OptimConfig::default().with_grad_clip_norm(1.0).clip(),
            Some(1.0)
        );
    }
}
