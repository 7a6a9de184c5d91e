//! Dynamic batching: HTTP handlers enqueue jobs, one worker thread decodes them in batches.
//!
//! The worker takes the first waiting job, then keeps taking jobs until the batch holds
//! `max_batch` requests or `max_wait` has passed since the first (with a zero wait: the jobs
//! that queued up while it was decoding the previous batch), and decodes them together
//! (one [`Reranker::rerank_batch_with`] per decoding strategy in the batch). Each job gets its
//! own answers back. Decoding is CPU work, so it runs on this thread, never on the async
//! runtime's.

use crate::metrics::Metrics;
use glorank::{DecodeStrategy, RerankRequest, Reranker};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One answer: the list of item ids, or the reason the request was refused.
pub type Answer = crate::error::Result<Vec<String>>;

/// Requests of one HTTP call, decoded with one strategy.
pub struct Job {
    /// The requests, in the caller's order.
    pub requests: Vec<RerankRequest>,
    /// How to decode them.
    pub strategy: DecodeStrategy,
    /// Where the answers go, one per request in order.
    pub reply: oneshot::Sender<Vec<Answer>>,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueError {
    /// The queue holds its capacity of jobs.
    Full,
    /// The worker has stopped.
    Stopped,
}

/// The queue and its worker thread.
pub struct Batcher {
    tx: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
}

impl Batcher {
    /// Starts the worker over `reranker`: batches of up to `max_batch` requests, formed
    /// within `max_wait` of their first job, from a queue of `capacity` jobs.
    pub fn start(
        reranker: Arc<Reranker>,
        metrics: Arc<Metrics>,
        max_batch: usize,
        max_wait: Duration,
        capacity: usize,
    ) -> Self {
        let (tx, rx) = sync_channel(capacity);
        let worker = std::thread::Builder::new()
            .name("glorank-batcher".into())
            .spawn(move || work(&reranker, &metrics, &rx, max_batch, max_wait))
            .expect("spawning the batch worker thread");
        Self {
            tx: Some(tx),
            worker: Some(worker),
        }
    }

    /// Queues a job without waiting.
    ///
    /// # Errors
    /// [`EnqueueError::Full`] when the queue is full, [`EnqueueError::Stopped`] after
    /// [`Batcher::stop`].
    pub fn enqueue(&self, job: Job) -> Result<(), EnqueueError> {
        let tx = self.tx.as_ref().ok_or(EnqueueError::Stopped)?;
        tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => EnqueueError::Full,
            TrySendError::Disconnected(_) => EnqueueError::Stopped,
        })
    }

    /// Stops taking jobs, lets the worker finish the queued ones and waits for it.
    pub fn stop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn work(
    reranker: &Reranker,
    metrics: &Metrics,
    rx: &Receiver<Job>,
    max_batch: usize,
    max_wait: Duration,
) {
    // Ends when every sender is gone and the queue is empty.
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + max_wait;
        let mut size = first.requests.len();
        let mut jobs = vec![first];
        while size < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(job) => {
                    size += job.requests.len();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        run_batch(reranker, metrics, jobs);
    }
}

/// Decodes `jobs` together, one decode per strategy, and answers each.
fn run_batch(reranker: &Reranker, metrics: &Metrics, jobs: Vec<Job>) {
    // A call nobody waits for any more (its client went away, or the server shut down and
    // dropped it) is not decoded.
    let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
    let mut strategies: Vec<DecodeStrategy> = Vec::new();
    for j in &jobs {
        if !strategies.contains(&j.strategy) {
            strategies.push(j.strategy);
        }
    }
    let mut answers: Vec<Option<Vec<Answer>>> = jobs.iter().map(|_| None).collect();
    for strategy in strategies {
        let members: Vec<usize> = (0..jobs.len())
            .filter(|&k| jobs[k].strategy == strategy)
            .collect();
        let requests: Vec<RerankRequest> = members
            .iter()
            .flat_map(|&k| jobs[k].requests.iter().cloned())
            .collect();
        metrics.batch(requests.len());
        let mut results = reranker
            .rerank_batch_with(&requests, strategy)
            .into_iter()
            .map(|r| r.map_err(crate::error::ServeError::from));
        for &k in &members {
            answers[k] = Some(results.by_ref().take(jobs[k].requests.len()).collect());
        }
    }
    for (job, answer) in jobs.into_iter().zip(answers) {
        // A caller that went away (client disconnected) no longer waits for its answer.
        let _ = job.reply.send(answer.unwrap_or_default());
    }
}
