//! Constrained decoding for generative rankers.
//!
//! A generative reranker writes its output list as a sequence of semantic-ID tokens drawn
//! from a global vocabulary. This crate guarantees that every generated item is one of the
//! request's candidates and that no item appears twice:
//!
//! * [`CandidateTrie`]: a prefix trie over the candidates' token tuples (one per request);
//! * [`ListState`]: decoding progress, pruning every branch whose candidates are all used, so
//!   an allowed token always leads to an unused candidate (never a dead end);
//! * [`StepScorer`]: the model side, scoring the next token for a batch of partial lists;
//! * [`Decoder`] with a [`DecodeStrategy`]: greedy, seeded sampling (temperature, top-k) and
//!   beam search, batched, with per-token log-probabilities in every [`DecodedList`];
//! * [`PrefixPenalty`]: an optional penalty on tokens that repeat an earlier item's
//!   semantic-ID prefix, so lists spread over clusters.
//!
//! Pure Rust, no tensor library: any ranker can embed it.
//!
//! ```
//! use glorank_trie::{CandidateTrie, DecodeStrategy, Decoder, StepBatch, StepScorer};
//!
//! // Four candidates with 2-token semantic IDs over vocabularies of 3 and 4 tokens.
//! let trie = CandidateTrie::new(&[[0, 1], [0, 3], [2, 0], [1, 1]], &[3, 4])?;
//!
//! /// A toy model preferring high token ids at every level.
//! struct PreferHigh;
//! impl StepScorer for PreferHigh {
//!     fn score(
//!         &mut self,
//!         batch: &StepBatch<'_>,
//!         out: &mut [f32],
//!     ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!         for row in out.chunks_mut(batch.vocab) {
//!             for (t, x) in row.iter_mut().enumerate() {
//!                 *x = t as f32;
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut greedy = Decoder::new(DecodeStrategy::Greedy, 0)?;
//! let lists = greedy.decode(&[&trie], 3, &mut PreferHigh)?;
//! // Candidate 2 = (2, 0) first, then (1, 1), then (0, 3): distinct, all candidates.
//! assert_eq!(lists[0][0].items, vec![2, 3, 1]);
//! assert_eq!(lists[0][0].token_logprobs.len(), 6);
//! # Ok::<(), glorank_trie::TrieError>(())
//! ```

mod decode;
mod penalty;
mod scorer;
mod trie;

pub use decode::{DecodeStrategy, Decoder, MAX_BEAM_WIDTH, ShardPlan, first_item_logprobs};
pub use penalty::{PrefixPenalty, check_prefix_penalty};
pub use scorer::{DecodedList, ScorerError, StepBatch, StepScorer};
pub use trie::{CandidateTrie, ListState};

/// Errors of the trie and the decoders.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrieError {
    /// A request has no candidates.
    #[error("the candidate set is empty")]
    EmptyCandidates,
    /// A candidate's tuple has the wrong number of tokens.
    #[error("candidate {candidate} has {found} tokens, the semantic IDs have {expected}")]
    DepthMismatch {
        /// Candidate index.
        candidate: usize,
        /// Expected depth.
        expected: usize,
        /// Tuple length found.
        found: usize,
    },
    /// Two candidates share a tuple (the semantic IDs must be unique; use a dedupe level).
    #[error("candidates {first} and {second} have the same semantic ID")]
    DuplicateTuple {
        /// One candidate.
        first: usize,
        /// The other.
        second: usize,
    },
    /// A token exceeds its level's vocabulary.
    #[error(
        "candidate {candidate}: token {token} at level {level} exceeds the vocabulary of {vocab}"
    )]
    TokenOutOfRange {
        /// Candidate index.
        candidate: usize,
        /// Level.
        level: usize,
        /// The token.
        token: u32,
        /// Vocabulary size of the level.
        vocab: usize,
    },
    /// A list of L items was asked from fewer than L candidates.
    #[error("a list of {list_len} distinct items cannot be drawn from {candidates} candidates")]
    ListTooLong {
        /// Requested list length.
        list_len: usize,
        /// Candidates available.
        candidates: usize,
    },
    /// A given list is invalid for the trie (teacher forcing).
    #[error("invalid list: {0}")]
    InvalidList(String),
    /// Invalid parameters.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The scorer returned NaN for an allowed token, or no finite score for any.
    #[error("request {request}, step {step}: the scorer gave {} for the allowed tokens", if *token == u32::MAX { "no finite score".to_string() } else { format!("NaN at token {token}") })]
    NonFiniteScore {
        /// Request index.
        request: usize,
        /// Decoding step.
        step: usize,
        /// The offending token (`u32::MAX` when no allowed token had a finite score).
        token: u32,
    },
    /// The scorer failed.
    #[error("scorer failed: {0}")]
    Scorer(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result alias of this crate.
pub type Result<T, E = TrieError> = std::result::Result<T, E>;
