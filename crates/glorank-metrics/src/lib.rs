//! List-wise ranking metrics for rerankers.
//!
//! A reranker turns `N` candidates into an ordered list of `L` of them. This crate scores such
//! a list against the candidates' relevance labels, per request, and aggregates over requests
//! with a standard error and a 95% confidence interval. It is pure Rust (no tensors) so any
//! ranker can use it.
//!
//! | metric | per-request formula | zero-positive request |
//! |---|---|---|
//! | [`precision_at`] | `hits / L` | 0 |
//! | [`recall_at`] | `hits / P` | 0 |
//! | [`f1_at`] | `2PR / (P + R)` | 0 |
//! | [`ndcg_at`] | `DCG / IDCG`, gain `2^rel - 1`, discount `1 / log2(rank + 1)` | 0 (IDCG = 0) |
//! | [`average_precision_at`] (MAP) | `sum_{hit ranks k} Precision@k / min(P, L)` | 0 |
//! | [`hit_at`] | `1[hits > 0]` | 0 |
//! | [`auc()`] | Mann-Whitney U / (P * negatives), ties 1/2 | undefined (`None`) |
//!
//! `hits` counts positives (relevance `> 0`) in the first `L` entries of the list and `P` the
//! positives among all candidates.
//!
//! ```
//! use glorank_metrics::{ListMetrics, MetricAccumulator};
//!
//! // Candidates 1 and 3 are relevant; the reranker output [3, 0, 1].
//! let relevance = [0.0, 1.0, 0.0, 1.0, 0.0];
//! let m = ListMetrics::compute(&[3, 0, 1], &relevance, 3)?;
//! assert_eq!(m.precision, 2.0 / 3.0);
//! assert_eq!(m.recall, 1.0);
//!
//! let mut acc = MetricAccumulator::new();
//! acc.push(m);
//! acc.push(ListMetrics::compute(&[0, 2, 4], &relevance, 3)?);
//! let summary = acc.summary()?;
//! assert_eq!(summary.precision.n, 2);
//! println!("Precision@3 = {}", summary.precision); // mean ± 95% CI half-width
//! # Ok::<(), glorank_metrics::MetricsError>(())
//! ```

mod auc;
mod list;
mod summary;

pub use auc::auc;
pub use list::{
    ListMetrics, average_precision_at, average_precision_over_hits_at, f1_at, gain, hit_at,
    ndcg_at, precision_at, rank_discount, recall_at,
};
pub use summary::{MetricAccumulator, MetricsSummary, Summary, t_quantile_975};

/// Errors of the metrics crate: every one names the offending rank, index or value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The cut-off `L` was 0.
    #[error("the cut-off L must be at least 1")]
    ZeroCutoff,
    /// A list entry points outside the candidate set.
    #[error(
        "list entry at rank {rank} is candidate {index}, but there are only {candidates} candidates"
    )]
    IndexOutOfRange {
        /// 1-based rank of the entry.
        rank: usize,
        /// The offending candidate index.
        index: usize,
        /// Number of candidates.
        candidates: usize,
    },
    /// A candidate appears twice in a list.
    #[error("candidate {index} appears again at rank {rank}; a list holds distinct items")]
    DuplicateItem {
        /// 1-based rank of the repeat.
        rank: usize,
        /// The repeated candidate index.
        index: usize,
    },
    /// A relevance label is negative or not finite.
    #[error("relevance of candidate {candidate} is {value}; it must be finite and >= 0")]
    InvalidRelevance {
        /// Candidate index.
        candidate: usize,
        /// The offending value.
        value: f64,
    },
    /// A score or value to aggregate is NaN or infinite.
    #[error("value at index {index} is not a finite number")]
    InvalidScore {
        /// Index of the value.
        index: usize,
    },
    /// Two parallel slices differ in length.
    #[error("length mismatch: {left} scores but {right} labels")]
    LengthMismatch {
        /// Length of the first slice.
        left: usize,
        /// Length of the second slice.
        right: usize,
    },
    /// Nothing to aggregate.
    #[error("no values to aggregate")]
    Empty,
}

/// Result alias of this crate.
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;
