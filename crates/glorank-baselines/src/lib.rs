//! Baseline rerankers for the GloRank comparison, trained on the same prepared samples and
//! scored by the same metrics.
//!
//! * [`mf_order`]: the initial ranker, candidates by stage-1 retriever score.
//! * [`oracle`]: positives first (clicked items, then the rest): the upper bound of
//!   Precision@L.
//! * [`Baseline::Prm`]: PRM, a transformer over the candidate set scoring each item (binary
//!   cross-entropy on click labels); the list is the top L by score.
//! * [`Baseline::Dlcm`]: DLCM, a GRU over the pool with a local scoring function (same loss).
//! * [`Baseline::Seq2Slate`]: a pointer network over candidate positions (local index,
//!   attention-based), trained by teacher forcing on the demonstrations and then by
//!   REINFORCE with a group-mean baseline on the training request's NDCG@L.
//!
//! The reference rules that learn nothing ([`retriever_reversed`], [`pool_novelty`],
//! [`popularity`]) rank candidates by one number each. The GloRank local-index (LAS)
//! ablation is a policy option of `glorank-policy`. This crate holds the models and the
//! rules; their training loop (`fit`) is `glorank-train`'s.
//!
//! ```
//! use glorank_baselines::oracle;
//!
//! // Clicked candidates 1 and 3 come first.
//! assert_eq!(oracle(&[0.0, 1.0, 0.0, 1.0], 3), vec![1, 3, 0]);
//! ```

mod inputs;
mod models;

pub use inputs::{Batch, BatchRow, Features};
pub use models::{Dlcm, Encoding, Prm, Sampler, Seq2Slate};

pub use glorank_nn::RetrieverInput;
use serde::{Deserialize, Serialize};

/// Errors of the baselines crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// Model-base errors.
    #[error(transparent)]
    Nn(#[from] glorank_nn::NnError),
    /// Inputs that do not fit (named in the message).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Result alias of this crate.
pub type Result<T, E = BaselineError> = std::result::Result<T, E>;

/// The initial ranker's list: the `len` candidates with the highest retriever `scores`
/// (ties: lower position first).
pub fn mf_order(scores: &[f32], len: usize) -> Vec<usize> {
    first_by(scores.len(), len, |a, b| scores[b].total_cmp(&scores[a]))
}

/// The first `len` of the positions `0..n` in the order `cmp` gives (ties: lower position
/// first): every fixed-order rule and the oracle.
fn first_by(n: usize, len: usize, cmp: impl Fn(usize, usize) -> std::cmp::Ordering) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| cmp(a, b).then(a.cmp(&b)));
    idx.truncate(len);
    idx
}

/// Reference rule "retriever reversed": the `len` candidates the stage-1 retriever likes
/// *least* (ties: lower position first). It learns nothing; under pools made of the logged
/// slate plus the retriever's top unseen items it still finds the logged items, so it shows
/// how separable the pools are by construction.
pub fn retriever_reversed(scores: &[f32], len: usize) -> Vec<usize> {
    first_by(scores.len(), len, |a, b| scores[a].total_cmp(&scores[b]))
}

/// Reference rule "popularity": the `len` candidates with the most training interactions
/// (`counts[i]` of candidate `i`; ties: lower position first).
pub fn popularity(counts: &[u32], len: usize) -> Vec<usize> {
    first_by(counts.len(), len, |a, b| counts[b].cmp(&counts[a]))
}

/// Reference rule "pool novelty": the `len` candidates seen least often as non-clicked
/// candidates in the user's training pools (`counts[i]` of candidate `i`, as
/// `glorank_data::Exposures::totals` counts them; ties: lower position first). It learns
/// nothing about preference; it exploits that the retrieved negatives recur across a user's
/// pools while the logged items are new.
pub fn pool_novelty(counts: &[u32], len: usize) -> Vec<usize> {
    first_by(counts.len(), len, |a, b| counts[a].cmp(&counts[b]))
}

/// The oracle list: candidates by relevance, descending (ties: lower position first).
pub fn oracle(relevance: &[f64], len: usize) -> Vec<usize> {
    first_by(relevance.len(), len, |a, b| {
        relevance[b].total_cmp(&relevance[a])
    })
}

/// The trainable baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Baseline {
    /// PRM: set transformer scorer.
    Prm,
    /// DLCM: GRU scorer.
    Dlcm,
    /// Seq2Slate: pointer network (SFT then REINFORCE).
    Seq2Slate,
}

impl Baseline {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Prm => "PRM",
            Self::Dlcm => "DLCM",
            Self::Seq2Slate => "Seq2Slate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders() {
        assert_eq!(mf_order(&[0.1, 0.9, 0.5], 2), vec![1, 2]);
        assert_eq!(retriever_reversed(&[0.1, 0.9, 0.5], 2), vec![0, 2]);
        assert_eq!(popularity(&[3, 7, 7, 1], 3), vec![1, 2, 0]);
        assert_eq!(pool_novelty(&[2, 0, 0, 2], 3), vec![1, 2, 0]);
        assert_eq!(oracle(&[0.0, 1.0, 1.0, 0.0], 4), vec![1, 2, 0, 3]);
    }
}
