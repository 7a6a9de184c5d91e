//! A prefix-repetition penalty: a [`StepScorer`] wrapper that discourages lists crowding
//! into one semantic-ID cluster.
//!
//! Items whose semantic IDs share leading tokens are close in the tokenizer's embedding
//! space, so a list of such items is redundant. Token-level decoding has a bias towards
//! such lists: the first token of a slot is chosen by the summed probability of every
//! candidate under it, so a cluster holding many good candidates wins slot after slot. The
//! penalty is the semantic-ID analogue of a language model's repetition penalty: at level
//! `l` of a slot, token `c` loses `penalty` from its score for every earlier item of the
//! list whose first `l + 1` tokens equal the slot's prefix followed by `c`. An item sharing
//! `k` leading tokens with an earlier one thus pays `k * penalty` in total, and one sharing
//! none pays nothing; with `penalty = 0` the scores pass through unchanged.

use crate::scorer::{ScorerError, StepBatch, StepScorer};
use crate::{Result, TrieError};

/// Checks a prefix penalty: finite and `>= 0`.
///
/// # Errors
/// [`TrieError::InvalidConfig`] for a negative or non-finite penalty.
pub fn check_prefix_penalty(penalty: f32) -> Result<()> {
    if penalty.is_finite() && penalty >= 0.0 {
        Ok(())
    } else {
        Err(TrieError::InvalidConfig(format!(
            "prefix penalty {penalty} must be finite and >= 0"
        )))
    }
}

/// Wraps a [`StepScorer`], subtracting the prefix-repetition penalty from its scores (see the
/// module docs). Use it directly around any scorer, or through
/// [`Decoder::with_prefix_penalty`](crate::Decoder::with_prefix_penalty).
#[derive(Debug)]
pub struct PrefixPenalty<S> {
    inner: S,
    penalty: f32,
}

impl<S: StepScorer> PrefixPenalty<S> {
    /// `inner` with a penalty of `penalty` per shared token (`>= 0` and finite, as
    /// [`check_prefix_penalty`] checks).
    pub fn new(inner: S, penalty: f32) -> Self {
        Self { inner, penalty }
    }

    /// The penalty per shared token.
    pub fn penalty(&self) -> f32 {
        self.penalty
    }

    /// The wrapped scorer.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: StepScorer> StepScorer for PrefixPenalty<S> {
    fn score(&mut self, batch: &StepBatch<'_>, out: &mut [f32]) -> Result<(), ScorerError> {
        self.inner.score(batch, out)?;
        if self.penalty == 0.0 || batch.slot == 0 {
            return Ok(());
        }
        // step = slot * depth + level, so the depth follows from any slot after the first.
        let depth = (batch.step - batch.level) / batch.slot;
        let level = batch.level;
        for (row, scores) in out.chunks_mut(batch.vocab).enumerate() {
            let prefix = batch.prefix(row);
            let current = &prefix[batch.slot * depth..];
            for earlier in prefix[..batch.slot * depth].chunks(depth) {
                if earlier[..level] == current[..level] {
                    scores[earlier[level] as usize] -= self.penalty;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CandidateTrie, DecodeStrategy, Decoder};

    /// Scores every token by a fixed table per level: `table[level][token]`.
    struct Table(Vec<Vec<f32>>);

    impl StepScorer for Table {
        fn score(&mut self, batch: &StepBatch<'_>, out: &mut [f32]) -> Result<(), ScorerError> {
            for row in out.chunks_mut(batch.vocab) {
                row.copy_from_slice(&self.0[batch.level]);
            }
            Ok(())
        }
    }

    /// Two clusters: first token 0 holds three candidates, first token 1 holds two. The
    /// scorer prefers cluster 0 strongly, so plain greedy fills the list from it.
    fn setup() -> (CandidateTrie, Table) {
        let trie = CandidateTrie::new(&[[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]], &[2, 3]).unwrap();
        (trie, Table(vec![vec![2.0, 0.0], vec![0.3, 0.2, 0.1]]))
    }

    #[test]
    fn zero_penalty_changes_nothing() {
        let (trie, mut table) = setup();
        let plain = Decoder::new(DecodeStrategy::Greedy, 0)
            .unwrap()
            .decode(&[&trie], 4, &mut table)
            .unwrap();
        let zero = Decoder::new(DecodeStrategy::Greedy, 0)
            .unwrap()
            .with_prefix_penalty(0.0)
            .unwrap()
            .decode(&[&trie], 4, &mut table)
            .unwrap();
        assert_eq!(plain, zero);
        assert_eq!(plain[0][0].items, vec![0, 1, 2, 3]);
    }

    #[test]
    fn penalty_alternates_clusters() {
        let (trie, mut table) = setup();
        // 2.5 per shared first token outweighs cluster 0's lead of 2.0 once it holds an item.
        for strategy in [DecodeStrategy::Greedy, DecodeStrategy::Beam { width: 4 }] {
            let lists = Decoder::new(strategy, 0)
                .unwrap()
                .with_prefix_penalty(2.5)
                .unwrap()
                .decode(&[&trie], 4, &mut table)
                .unwrap();
            let first: Vec<u32> = lists[0][0].tokens.iter().step_by(2).copied().collect();
            assert_eq!(first, vec![0, 1, 0, 1], "{strategy}");
        }
    }

    #[test]
    fn scores_are_lowered_per_shared_level() {
        // A list holding (0, 1) and (0, 2): at level 1 of slot 2 under prefix 0, tokens 1 and
        // 2 each lose one penalty; at level 0, token 0 loses two.
        let tokens = [0u32, 1, 0, 2, 0, 0];
        let requests = [0u32];
        let mut out = [0f32; 3];
        let batch = StepBatch::for_tests(5, 1, 2, 3, &requests, &tokens, 6);
        PrefixPenalty::new(Table(vec![vec![0.0; 2], vec![0.0; 3]]), 0.5)
            .score(&batch, &mut out)
            .unwrap();
        assert_eq!(out, [0.0, -0.5, -0.5]);
        let mut out = [0f32; 2];
        let batch = StepBatch::for_tests(4, 0, 2, 2, &requests, &tokens, 6);
        PrefixPenalty::new(Table(vec![vec![0.0; 2], vec![0.0; 3]]), 0.5)
            .score(&batch, &mut out)
            .unwrap();
        assert_eq!(out, [-1.0, 0.0]);
    }

    #[test]
    fn invalid_penalties_are_refused() {
        for p in [-0.1, f32::NAN, f32::INFINITY] {
            let err = Decoder::new(DecodeStrategy::Greedy, 0)
                .unwrap()
                .with_prefix_penalty(p)
                .unwrap_err();
            assert!(err.to_string().contains("prefix penalty"), "{err}");
        }
    }
}
