//! Progress reporting for long steps, decoupled from any terminal library.

/// Receives progress of long-running steps (reading, fitting, building pools).
///
/// The CLI implements it with a progress bar; library users can log or ignore it
/// ([`NoProgress`]). Implementations must be `Sync`: `advance` is called from rayon workers.
pub trait Progress: Sync {
    /// A new step named `name` starts, with `total` units of work (0 if unknown).
    fn stage(&self, name: &str, total: u64);
    /// `n` more units of the current step are done.
    fn advance(&self, n: u64);
    /// The current step is done.
    fn finish(&self);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}
