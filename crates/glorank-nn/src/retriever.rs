//! How a model reads the stage-1 retriever's scores of a request's candidates.
//!
//! A raw retriever score is on a per-user scale: the same value can be one user's favourite
//! and another's last pick, so a linear projection of it leaves the model to compare each
//! candidate with the rest of its pool through attention. The candidate's rank in its own
//! pool carries that comparison directly. [`RetrieverInput`] chooses the features; every
//! model that reads retriever scores (the policy, the baselines) builds them here, so
//! training and serving agree.

use serde::{Deserialize, Serialize};

/// The per-candidate features built from a request's retriever scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RetrieverInput {
    /// The raw score (one feature; the default, and what models saved before this option
    /// read).
    #[default]
    Score,
    /// The candidate's rank in its pool by score, scaled to `[0, 1]` (0: the retriever's
    /// favourite, 1: its last pick; one feature).
    Rank,
    /// Both: the raw score, then the scaled rank (two features).
    ScoreAndRank,
}

impl RetrieverInput {
    /// Features per candidate.
    pub fn width(self) -> usize {
        match self {
            Self::Score | Self::Rank => 1,
            Self::ScoreAndRank => 2,
        }
    }

    /// The features of one pool's scores, candidate-major: `scores.len() * width()` values.
    /// Ties in score rank by candidate position; a pool of one candidate has rank 0.
    pub fn features(self, scores: &[f32]) -> Vec<f32> {
        let n = scores.len();
        let rank = || {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            let mut r = vec![0f32; n];
            let scale = if n > 1 { 1.0 / (n - 1) as f32 } else { 0.0 };
            for (k, &c) in order.iter().enumerate() {
                r[c] = k as f32 * scale;
            }
            r
        };
        match self {
            Self::Score => scores.to_vec(),
            Self::Rank => rank(),
            Self::ScoreAndRank => scores
                .iter()
                .zip(rank())
                .flat_map(|(&s, r)| [s, r])
                .collect(),
        }
    }
}

/// The feature a model reads from a candidate's exposure count
/// (`glorank_data::Exposures`): `ln(1 + count)`, so zero counts read as no feature.
pub fn exposure_feature(count: u32) -> f32 {
    (count as f32).ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_scales_the_pool_order_to_the_unit_interval() {
        let s = [0.2, 0.9, -1.0, 0.9];
        assert_eq!(RetrieverInput::Score.features(&s), s.to_vec());
        // 0.9 (index 1) first, 0.9 (index 3) second by position, then 0.2, then -1.0.
        assert_eq!(
            RetrieverInput::Rank.features(&s),
            vec![2.0 / 3.0, 0.0, 1.0, 1.0 / 3.0]
        );
        assert_eq!(
            RetrieverInput::ScoreAndRank.features(&s[..2]),
            vec![0.2, 1.0, 0.9, 0.0]
        );
        assert_eq!(RetrieverInput::Rank.features(&[3.0]), vec![0.0]);
        assert_eq!(RetrieverInput::ScoreAndRank.width(), 2);
    }

    #[test]
    fn features_read_from_toml_names() {
        #[derive(Deserialize)]
        struct W {
            x: RetrieverInput,
        }
        let w: W = serde_json::from_str(r#"{"x":"score-and-rank"}"#).unwrap();
        assert_eq!(w.x, RetrieverInput::ScoreAndRank);
    }
}
