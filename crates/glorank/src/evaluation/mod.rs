//! Evaluation: every method's lists on a split scored with confidence intervals, and the two
//! files that record them, `metrics.json` and `predictions.jsonl`, written and read here for
//! the pipeline, `glorank eval`, `glorank baselines`, `glorank aggregate`, `glorank compare`
//! and the Python bindings.
//!
//! * [`MetricsFile`]: `metrics.json`, typed: one [`MethodMetrics`] per method (Precision,
//!   Recall, F1, NDCG, MAP, MAP-hits, Hit@L, Average Reward, true clicks, AUC among logged
//!   items, each a [`Summary`] with its 95% interval), the cold-start and held-out slices,
//!   and the held-out pools ([`HeldOutPools`]).
//! * [`Predictions`]: `predictions.jsonl`, one [`Prediction`] per request and method;
//!   [`paired_difference`] compares two methods request by request.
//! * [`aggregate`]: the mean and 95% interval over runs (seeds) of several `metrics.json`.
//!
//! ```no_run
//! use glorank::evaluation::{Metric, MetricsFile, Predictions, paired_difference};
//!
//! let metrics = MetricsFile::read("runs/demo/metrics.json".as_ref())?;
//! println!("{:.4}", metrics.row("GloRank SFT+RL").unwrap().metrics.precision.mean);
//! let run = Predictions::read("runs/demo/predictions.jsonl".as_ref())?;
//! let a = run.per_request("GloRank SFT+RL", Metric::Precision)?;
//! let b = run.per_request("Seq2Slate", Metric::Precision)?;
//! let diff = paired_difference(&a, &b)?;
//! println!("{:+.4} ({:+.4} to {:+.4})", diff.mean, diff.ci_low, diff.ci_high);
//! # Ok::<(), glorank::Error>(())
//! ```

mod aggregate;
mod compare;
pub(crate) mod context;
mod files;
pub(crate) mod slices;

pub use aggregate::aggregate;
pub use compare::{Metric, PerRequest, Prediction, Predictions, paired_difference};
pub use files::{HeldOutFigures, HeldOutPools, MethodMetrics, MetricsFile, table};
pub use glorank_metrics::{MetricsSummary, Summary};

pub(crate) use files::write_results;

/// Name of the synthetic world's reference row: the best list a search with the true click
/// model finds ([`glorank_data::SyntheticWorld::best_list`]).
pub const BEST_LIST: &str = "best list (true model)";

/// Name of the synthetic world's other reference row: the candidates by their true relevance
/// logit `s(u, i)` ([`glorank_data::SyntheticWorld::relevance_logit`]), the list of a
/// perfect estimate of each item's appeal that ignores position and redundancy.
pub const TOP_APPEAL: &str = "top appeal (true model)";

/// Name of the reference row that ranks candidates in a seeded random order.
pub const RANDOM: &str = "random";

/// Name of the held-out protocol's reference row: held-out (cold) candidates first, each
/// group in the seeded random order of [`RANDOM`]. Near [`RANDOM`] when being new is no tell.
pub const COLD_FIRST: &str = "cold first";

/// Name of a request log's reference row: the shown items in display order, first.
pub const LOGGED_ORDER: &str = "logged order";

/// Name of a request log's reference row: candidates by the log's retriever scores (the
/// rating datasets' row of the same rule is "MF order", our stage-1 retriever's).
pub const RETRIEVER_ORDER: &str = "retriever order";

/// The rows of the comparison table, in the order the pipeline writes them; `aggregate`
/// prints known methods in this order, others after them.
pub const METHOD_ORDER: [&str; 17] = [
    LOGGED_ORDER,
    RETRIEVER_ORDER,
    "MF order",
    "retriever reversed",
    "pool novelty",
    "popularity",
    RANDOM,
    COLD_FIRST,
    "PRM",
    "Seq2Slate",
    "DLCM",
    "GloRank-LAS",
    "GloRank SFT",
    "GloRank SFT+RL",
    "oracle",
    TOP_APPEAL,
    BEST_LIST,
];

/// Key prefix of the cold-start slices in `metrics.json` (`cold_start_lt_1`,
/// `cold_start_lt_5`).
pub const COLD_SLICE_KEY_PREFIX: &str = "cold_start_lt_";

/// Keys of the held-out-items protocol's entries in `metrics.json`: the rows on requests
/// whose logged slate holds a held-out item, the rows on the other requests, and the pool
/// shares with the per-method figures.
pub const HELD_OUT_KEYS: [&str; 3] = ["held_out_cold", "held_out_warm", "held_out_pools"];

/// One evaluated method: its figures and, for the files, its lists and candidate scores.
#[derive(Debug, Clone)]
pub struct MethodResult {
    /// Method name.
    pub name: String,
    /// Precision/Recall/F1/NDCG/MAP/Hit@L with 95% CIs.
    pub metrics: MetricsSummary,
    /// Average Reward (simulator) with its 95% CI.
    pub average_reward: Option<Summary>,
    /// Mean true expected clicks of the lists under the synthetic world's click model.
    pub true_reward: Option<Summary>,
    /// AUC of clicked over non-clicked *logged* items under the method's candidate scores,
    /// over the requests whose logged slate has both kinds: real feedback, untouched by how
    /// the retrieved candidates were chosen.
    pub logged_auc: Option<Summary>,
    /// NDCG of the logged items reordered by the method's candidate scores, over the
    /// requests whose logged slate has a click (the ranking view of the same feedback).
    pub logged_ndcg: Option<Summary>,
    /// The lists (candidate positions), one per evaluated request.
    pub lists: Vec<Vec<usize>>,
    /// The method's score of every candidate, one vector per request (higher: better;
    /// generative policies: the log-probability of generating it first), when it has them.
    pub scores: Option<Vec<Vec<f32>>>,
}

impl MethodResult {
    /// The figures `metrics.json` records of this method.
    pub fn figures(&self) -> MethodMetrics {
        MethodMetrics {
            metrics: self.metrics,
            average_reward: self.average_reward,
            true_expected_clicks: self.true_reward,
            logged_auc: self.logged_auc,
            logged_ndcg: self.logged_ndcg,
        }
    }
}
