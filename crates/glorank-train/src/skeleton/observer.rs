//! Progress and control of a training loop, decoupled from any terminal library.

use std::ops::ControlFlow;

/// Receives a trainer's progress; the CLI draws a progress bar from it, library users can log
/// or ignore it ([`NoObserver`]).
pub trait TrainObserver {
    /// A stage starts (`"sft"`, `"rl"`, `"evaluator"`...) with `total` steps, `done` of them
    /// already done (a resumed run).
    fn start(&mut self, stage: &str, total: u64, done: u64) {
        let _ = (stage, total, done);
    }

    /// Step `step` (from 1) finished with this training loss. Returning
    /// [`ControlFlow::Break`] stops the loop at once without a final checkpoint, as an
    /// interruption would; the run can be resumed from its last checkpoint.
    fn step(&mut self, step: u64, loss: f64) -> ControlFlow<()> {
        let _ = (step, loss);
        ControlFlow::Continue(())
    }

    /// An evaluation record (also written to the JSONL log).
    fn evaluation(&mut self, record: &serde_json::Value) {
        let _ = record;
    }

    /// The stage ended.
    fn finish(&mut self) {}
}

/// A [`TrainObserver`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl TrainObserver for NoObserver {}

/// How a training loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every step ran (or early stopping ended the run).
    Finished,
    /// The observer stopped the loop; resume from the last checkpoint.
    Interrupted,
}
