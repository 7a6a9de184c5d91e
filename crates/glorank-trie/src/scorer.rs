//! The model side of decoding: what a scorer sees of a batch ([`StepBatch`]), what it
//! implements ([`StepScorer`]) and the lists it produces ([`DecodedList`]).

use serde::{Deserialize, Serialize};

/// One decoding step of a batch, as the scorer sees it.
#[derive(Debug, Clone, Copy)]
pub struct StepBatch<'a> {
    /// Step index `t` (0-based) within the list's token sequence.
    pub step: usize,
    /// Semantic-ID level decoded at this step (`t % depth`).
    pub level: usize,
    /// List slot (item position) decoded at this step (`t / depth`).
    pub slot: usize,
    /// Vocabulary size of `level`: each output row has this many scores.
    pub vocab: usize,
    /// Request index of each row.
    pub requests: &'a [u32],
    /// For each row, the row of the previous step it extends (beam search reorders rows; for
    /// greedy and sampling it is the row itself). A scorer with a key/value cache gathers its
    /// cache rows with it. At step 0 it is the row itself.
    pub parents: &'a [u32],
    pub(crate) tokens: &'a [u32],
    pub(crate) stride: usize,
    /// Where each row's tokens sit in `tokens` (`None`: row `r` at `r`).
    pub(crate) row_slot: Option<&'a [u32]>,
}

impl<'a> StepBatch<'a> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.requests.len()
    }

    /// Tokens generated so far by `row` (length `step`).
    pub fn prefix(&self, row: usize) -> &[u32] {
        let at = self.row_slot.map_or(row, |s| s[row] as usize) * self.stride;
        &self.tokens[at..at + self.step]
    }

    /// A batch over `tokens` (`stride` per row, rows in order, each its own parent).
    #[cfg(test)]
    pub(crate) fn for_tests(
        step: usize,
        level: usize,
        slot: usize,
        vocab: usize,
        requests: &'a [u32],
        tokens: &'a [u32],
        stride: usize,
    ) -> Self {
        Self {
            step,
            level,
            slot,
            vocab,
            requests,
            parents: requests,
            tokens,
            stride,
            row_slot: None,
        }
    }
}

/// Scores the next token for a batch of partial lists.
///
/// Implemented by the policy network; tests use toy scorers.
pub trait StepScorer {
    /// Writes scores for every row of `batch` into `out`, row-major `[rows, vocab]`. Scores are
    /// logits or log-probabilities (the decoder renormalises over the allowed tokens, so both
    /// give the same distribution); masked tokens may hold anything. `-inf` is allowed, NaN is
    /// an error for an allowed token.
    ///
    /// # Errors
    /// Any error of the model; it is returned as [`TrieError::Scorer`].
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// A borrowed scorer scores as the scorer itself (so wrappers such as
/// [`PrefixPenalty`](crate::PrefixPenalty) can take `&mut dyn StepScorer`).
impl<T: StepScorer + ?Sized> StepScorer for &mut T {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> std::result::Result<(), ScorerError> {
        (**self).score(batch, out)
    }
}

/// A decoded list with its log-probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodedList {
    /// Candidate indices, in list order.
    pub items: Vec<usize>,
    /// The generated tokens (`items.len() * depth`).
    pub tokens: Vec<u32>,
    /// Log-probability of each token under the scorer's masked softmax at temperature 1 (the
    /// model's own probability, whatever the sampling temperature): what policy-gradient
    /// training needs.
    pub token_logprobs: Vec<f32>,
    /// Sum of `token_logprobs`.
    pub logprob: f32,
}

/// The error a [`StepScorer`] (or the function building one) reports.
pub type ScorerError = Box<dyn std::error::Error + Send + Sync>;
