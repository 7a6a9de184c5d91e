//! The one training-loop skeleton of the workspace and what it is built from (every trainer
//! of GloRank: SFT, RL, the reward models and the baselines runs in it).
//!
//! Every trainer (SFT, RL, the reward models, the baselines) is a [`TrainingLoop`]: it says
//! how many steps are done, runs one step, and reacts after it (evaluation, logging,
//! checkpoint, early stopping). [`drive`] runs it: progress to a [`TrainObserver`], the
//! observer's interruption ([`RunStatus::Interrupted`], resumable from the last checkpoint),
//! and the end of the run. [`optimizer_step`] is the shared update: backward, optional
//! global-norm clipping ([`clip_global_norm`]) and the optimizer step, skipped when the loss
//! or the gradient norm is not finite. Checkpoints are directories written atomically
//! ([`write_dir_atomic`], [`latest`]) holding the model, the optimizer state
//! ([`save_optimizer`]) and the trainer state; evaluations go to a [`JsonlLog`].
//!
//! ```
//! use glorank_train::{NoObserver, RunStatus, TrainingLoop, drive};
//!
//! /// Gradient descent on `x^2`, stopping early once `|x| < 0.1`.
//! struct Descend { x: f64, done: u64 }
//! impl TrainingLoop for Descend {
//!     type Error = glorank_nn::NnError;
//!     fn done(&self) -> u64 { self.done }
//!     fn stopped(&self) -> bool { self.x.abs() < 0.1 }
//!     fn step(&mut self) -> Result<f64, Self::Error> {
//!         self.x -= 0.5 * 2.0 * self.x * 0.5;
//!         self.done += 1;
//!         Ok(self.x * self.x)
//!     }
//! }
//! let mut run = Descend { x: 1.0, done: 0 };
//! assert_eq!(drive("toy", 100, &mut run, &mut NoObserver)?, RunStatus::Finished);
//! assert_eq!(run.done, 4); // 0.5, 0.25, 0.125, 0.0625
//! # Ok::<(), glorank_nn::NnError>(())
//! ```

mod checkpoint;
mod grad;
mod observer;

pub use checkpoint::{
    JsonlLog, OPTIMIZER_FILE, STATE_FILE, latest, load_optimizer, save_optimizer, write_dir_atomic,
};
pub use grad::{clip_global_norm, sum_gradients};
pub use observer::{NoObserver, RunStatus, TrainObserver};

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use glorank_nn::NnError;
use std::ops::{ControlFlow, Range};

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// The training loss of the batch.
    pub loss: f32,
    /// Global L2 norm of the gradients before clipping (NaN when the loss was not finite).
    pub grad_norm: f64,
    /// True when the update was skipped (non-finite loss or gradient norm).
    pub skipped: bool,
}

/// Backward, global-norm clipping (`clip`, `None` or a bound `<= 0`: none) and an optimizer
/// step at `learning_rate`, skipped when the loss or the gradient norm is not finite.
pub fn optimizer_step<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    loss: Tensor<1>,
    learning_rate: f64,
    clip: Option<f32>,
) -> (M, StepOutcome) {
    let value = loss.clone().into_scalar::<f32>();
    if !value.is_finite() {
        return (model, skipped(value, f64::NAN));
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    apply_gradients(model, optim, grads, value, learning_rate, clip)
}

fn skipped(loss: f32, grad_norm: f64) -> StepOutcome {
    StepOutcome {
        loss,
        grad_norm,
        skipped: true,
    }
}

/// The second half of [`optimizer_step`] for gradients computed elsewhere (for example by
/// [`sharded_gradients`]): global-norm clipping and the optimizer step, skipped when `loss`
/// or the gradient norm is not finite.
pub fn apply_gradients<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    grads: GradientsParams,
    loss: f32,
    learning_rate: f64,
    clip: Option<f32>,
) -> (M, StepOutcome) {
    if !loss.is_finite() {
        return (model, skipped(loss, f64::NAN));
    }
    let (grads, norm) = match clip {
        Some(bound) => clip_global_norm(grads, &model, bound),
        None => (grads, 0.0),
    };
    if !norm.is_finite() {
        return (model, skipped(loss, norm));
    }
    let model = optim.step(learning_rate, model, grads);
    let outcome = StepOutcome {
        loss,
        grad_norm: norm,
        skipped: false,
    };
    (model, outcome)
}

/// Fewest rows a shard of [`sharded_gradients`] gets: smaller batches use fewer shards.
pub const MIN_SHARD_ROWS: usize = 8;

/// The row ranges [`sharded_gradients`] splits `rows` into: `shards` contiguous, near-equal
/// ranges, fewer when a shard would get under [`MIN_SHARD_ROWS`] rows (at least one).
pub fn shard_ranges(rows: usize, shards: usize) -> Vec<Range<usize>> {
    let n = shards.min(rows / MIN_SHARD_ROWS).max(1);
    (0..n).map(|i| i * rows / n..(i + 1) * rows / n).collect()
}

/// Gradients and value of a loss that is a sum over row shards, computed data-parallel.
///
/// `shard_loss(model, rows)` builds one shard's share of the batch loss (for a mean over the
/// batch, the shard's sum divided by the whole batch's count), so the shares add up to the
/// batch loss and their gradients to its gradient. With one shard (see [`shard_ranges`]) it
/// runs on the calling thread on `model` itself. With more, each shard runs on its own
/// thread, on its own copy of `model` forked onto `device` (burn's autodiff keeps one graph
/// per set of connected tensors and runs a graph's backward under its lock, so shards that
/// shared parameter nodes would run one after the other), with its own dropout stream
/// derived from the caller's ([`glorank_nn::dropout::shard_seeds`]); the gradients are summed in
/// shard order. The result depends on the seed and the number of shards, not on timing.
///
/// # Errors
/// The first shard's error, in shard order.
pub fn sharded_gradients<M, E, F>(
    model: &M,
    device: &Device,
    rows: usize,
    shards: usize,
    shard_loss: F,
) -> Result<(GradientsParams, f32), E>
where
    M: Module + Send,
    E: Send,
    F: Fn(&M, Range<usize>) -> Result<Tensor<1>, E> + Sync,
{
    let ranges = shard_ranges(rows, shards);
    let backward = |m: &M, range: Range<usize>| -> Result<(GradientsParams, f32), E> {
        let loss = shard_loss(m, range)?;
        let value = loss.clone().into_scalar::<f32>();
        Ok((GradientsParams::from_grads(loss.backward(), m), value))
    };
    if ranges.len() == 1 {
        return backward(model, 0..rows);
    }
    let seeds = glorank_nn::dropout::shard_seeds(ranges.len(), device);
    let results: Vec<Result<(GradientsParams, f32), E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .into_iter()
            .zip(seeds)
            .map(|(range, seed)| {
                let copy = model.clone().fork(device);
                let backward = &backward;
                scope.spawn(move || {
                    glorank_nn::dropout::with_dropout_seed(seed, || backward(&copy, range))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut parts = Vec::with_capacity(results.len());
    let mut total = 0.0f32;
    for result in results {
        let (grads, value) = result?;
        parts.push(grads);
        total += value;
    }
    Ok((sum_gradients(model, parts), total))
}

/// One data-parallel optimizer step: the gradients of `shard_loss` over `rows` rows in
/// `shards` shards ([`sharded_gradients`]), then clipping to `clip` and the update at
/// `learning_rate` ([`apply_gradients`]).
///
/// # Errors
/// The first shard's error, in shard order.
pub fn sharded_step<M, E, F>(
    model: M,
    optim: &mut ModuleOptimizer,
    device: &Device,
    (rows, shards): (usize, usize),
    (learning_rate, clip): (f64, Option<f32>),
    shard_loss: F,
) -> Result<(M, StepOutcome), E>
where
    M: Module + Send,
    E: Send,
    F: Fn(&M, Range<usize>) -> Result<Tensor<1>, E> + Sync,
{
    let (grads, loss) = sharded_gradients(&model, device, rows, shards, shard_loss)?;
    Ok(apply_gradients(
        model,
        optim,
        grads,
        loss,
        learning_rate,
        clip,
    ))
}

/// The trainer-specific part of a training loop; [`drive`] runs it.
pub trait TrainingLoop {
    /// The trainer's error (file errors of the skeleton convert into it).
    type Error: From<NnError>;

    /// Steps done so far (restored from a checkpoint when resuming).
    fn done(&self) -> u64;

    /// True when the run ended early (early stopping, possibly restored from a checkpoint).
    fn stopped(&self) -> bool {
        false
    }

    /// Called once after the observer learned the stage started (for example an evaluation
    /// of the initial model).
    ///
    /// # Errors
    /// The trainer's errors.
    fn begin(&mut self, observer: &mut dyn TrainObserver) -> Result<(), Self::Error> {
        let _ = observer;
        Ok(())
    }

    /// Runs the next step (batch, forward, backward, update) and returns its loss; afterwards
    /// [`TrainingLoop::done`] counts it.
    ///
    /// # Errors
    /// The trainer's errors.
    fn step(&mut self) -> Result<f64, Self::Error>;

    /// Called after every step the observer let pass: evaluation (records go to
    /// `observer.evaluation`), logging, checkpoints, early stopping.
    ///
    /// # Errors
    /// The trainer's errors.
    fn after_step(&mut self, observer: &mut dyn TrainObserver) -> Result<(), Self::Error> {
        let _ = observer;
        Ok(())
    }
}

/// Runs `body` until `total` steps are done or it stops early, reporting progress of `stage`
/// to `observer`. An observer's [`ControlFlow::Break`] after a step ends the run at once
/// with [`RunStatus::Interrupted`] (no further hook runs, as in a crash), so the run resumes
/// from its last checkpoint.
///
/// # Errors
/// The body's errors.
pub fn drive<L: TrainingLoop + ?Sized>(
    stage: &str,
    total: u64,
    body: &mut L,
    observer: &mut dyn TrainObserver,
) -> Result<RunStatus, L::Error> {
    observer.start(stage, total, body.done());
    body.begin(observer)?;
    while body.done() < total && !body.stopped() {
        let loss = body.step()?;
        if observer.step(body.done(), loss) == ControlFlow::Break(()) {
            return Ok(RunStatus::Interrupted);
        }
        body.after_step(observer)?;
    }
    observer.finish();
    Ok(RunStatus::Finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count {
        done: u64,
        after: u64,
    }

    impl TrainingLoop for Count {
        type Error = NnError;
        fn done(&self) -> u64 {
            self.done
        }
        fn step(&mut self) -> Result<f64, NnError> {
            self.done += 1;
            Ok(self.done as f64)
        }
        fn after_step(&mut self, _: &mut dyn TrainObserver) -> Result<(), NnError> {
            self.after += 1;
            Ok(())
        }
    }

    struct StopAt(u64, Vec<u64>);

    impl TrainObserver for StopAt {
        fn step(&mut self, step: u64, _: f64) -> ControlFlow<()> {
            self.1.push(step);
            if step == self.0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }

    #[test]
    fn an_interruption_skips_the_after_hook_and_resumes() {
        let mut body = Count { done: 0, after: 0 };
        let mut obs = StopAt(3, Vec::new());
        assert_eq!(
            drive("t", 5, &mut body, &mut obs).unwrap(),
            RunStatus::Interrupted
        );
        assert_eq!((body.done, body.after), (3, 2));
        // Resume from step 3: steps 4 and 5 run, numbered on.
        let mut obs = StopAt(0, Vec::new());
        assert_eq!(
            drive("t", 5, &mut body, &mut obs).unwrap(),
            RunStatus::Finished
        );
        assert_eq!(obs.1, vec![4, 5]);
    }

    #[test]
    fn a_non_finite_loss_skips_the_update() {
        use burn::nn::{Linear, LinearConfig};
        let dev = burn::tensor::Device::flex().autodiff();
        let lin: Linear = LinearConfig::new(2, 1).init(&dev);
        let before = lin.weight.val().into_data();
        let mut optim = burn::optim::AdamWConfig::new().init();
        let x = Tensor::<2>::ones([3, 2], &dev);
        let loss = lin.forward(x.clone()).sum().mul_scalar(f32::NAN);
        let (lin, out) = optimizer_step(lin, &mut optim, loss, 0.1, Some(1.0));
        assert!(out.skipped);
        assert_eq!(lin.weight.val().into_data(), before);
        let loss = lin.forward(x).sum();
        let (lin, out) = optimizer_step(lin, &mut optim, loss, 0.1, None);
        assert!(!out.skipped && out.loss.is_finite());
        assert_ne!(lin.weight.val().into_data(), before);
    }
}
