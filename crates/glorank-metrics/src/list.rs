//! Per-request list-wise metrics at a cut-off `L`.
//!
//! Every function takes the generated list as indices into the request's candidate set and
//! the relevance of every candidate (`relevance[i]` is the graded relevance of candidate `i`,
//! `0` for a non-relevant one). A candidate is a *positive* when its relevance is `> 0`; the
//! binary metrics (precision, recall, F1, MAP, hit) use that notion, NDCG uses the grade.
//!
//! Notation used in the doc comments: `list[..L]` are the first `L` entries of the list (a
//! shorter list is allowed and simply has fewer hits), `hits` is the number of positives in
//! `list[..L]`, `P` is the number of positives among all candidates, `rel_k` is the relevance of
//! the item at rank `k` (ranks start at 1).

use crate::{MetricsError, Result};
use serde::{Deserialize, Serialize};

/// Checks a list against its candidate set: every index is in range and appears once, `L > 0`,
/// and every relevance is finite and non-negative.
fn validate(list: &[usize], relevance: &[f64], l: usize) -> Result<()> {
    if l == 0 {
        return Err(MetricsError::ZeroCutoff);
    }
    if let Some((i, &r)) = relevance
        .iter()
        .enumerate()
        .find(|(_, r)| !r.is_finite() || **r < 0.0)
    {
        return Err(MetricsError::InvalidRelevance {
            candidate: i,
            value: r,
        });
    }
    let mut seen = vec![false; relevance.len()];
    for (rank, &idx) in list.iter().enumerate() {
        if idx >= relevance.len() {
            return Err(MetricsError::IndexOutOfRange {
                rank: rank + 1,
                index: idx,
                candidates: relevance.len(),
            });
        }
        if std::mem::replace(&mut seen[idx], true) {
            return Err(MetricsError::DuplicateItem {
                rank: rank + 1,
                index: idx,
            });
        }
    }
    Ok(())
}

/// Number of positives (`relevance > 0`) in `list[..l]`.
fn hits(list: &[usize], relevance: &[f64], l: usize) -> usize {
    list.iter().take(l).filter(|&&i| relevance[i] > 0.0).count()
}

/// Number of positives among all candidates.
fn positives(relevance: &[f64]) -> usize {
    relevance.iter().filter(|&&r| r > 0.0).count()
}

/// Rank discount `1 / log2(k + 1)` for a 1-based rank `k`: rank 1 has discount 1.
pub fn rank_discount(rank: usize) -> f64 {
    1.0 / ((rank as f64) + 1.0).log2()
}

/// Exponential gain `2^rel - 1`: 0 for a non-relevant item, 1 for a binary positive.
pub fn gain(relevance: f64) -> f64 {
    relevance.exp2() - 1.0
}

/// Precision@L = `hits / L`.
///
/// The denominator is the cut-off `L`, not the list length, so a list shorter than `L` is
/// penalised for its empty slots. A request with no positive candidate has precision 0.
///
/// # Errors
/// [`MetricsError`] when `L = 0`, an index is out of range or repeated, or a relevance is
/// negative or not finite.
pub fn precision_at(list: &[usize], relevance: &[f64], l: usize) -> Result<f64> {
    validate(list, relevance, l)?;
    Ok(hits(list, relevance, l) as f64 / l as f64)
}

/// Recall@L = `hits / P`.
///
/// Zero-positive case: `P = 0` gives recall 0 (nothing can be recalled; the request still
/// counts in averages, as in the benchmark protocol). With `P > L`, the maximum is `L / P`.
///
/// # Errors
/// As [`precision_at`].
pub fn recall_at(list: &[usize], relevance: &[f64], l: usize) -> Result<f64> {
    validate(list, relevance, l)?;
    let p = positives(relevance);
    Ok(if p == 0 {
        0.0
    } else {
        hits(list, relevance, l) as f64 / p as f64
    })
}

/// F1@L = `2 * Precision@L * Recall@L / (Precision@L + Recall@L)`, and 0 when both are 0
/// (which covers the zero-positive case).
///
/// # Errors
/// As [`precision_at`].
pub fn f1_at(list: &[usize], relevance: &[f64], l: usize) -> Result<f64> {
    let p = precision_at(list, relevance, l)?;
    let r = recall_at(list, relevance, l)?;
    Ok(f1(p, r))
}

/// Harmonic mean of a precision and a recall, 0 when both are 0.
fn f1(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// NDCG@L = `DCG@L / IDCG@L` with
/// `DCG@L = sum_{k=1..min(L,|list|)} (2^rel_k - 1) / log2(k + 1)`.
///
/// `IDCG@L` is the DCG of the candidates sorted by relevance, descending, cut at `L` (the
/// ideal list over this request's candidates). Zero-positive case: `IDCG = 0` gives NDCG 0.
///
/// # Errors
/// As [`precision_at`].
pub fn ndcg_at(list: &[usize], relevance: &[f64], l: usize) -> Result<f64> {
    validate(list, relevance, l)?;
    let dcg: f64 = list
        .iter()
        .take(l)
        .enumerate()
        .map(|(k, &i)| gain(relevance[i]) * rank_discount(k + 1))
        .sum();
    let mut ideal: Vec<f64> = relevance.iter().copied().filter(|&r| r > 0.0).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(l)
        .enumerate()
        .map(|(k, &r)| gain(r) * rank_discount(k + 1))
        .sum();
    Ok(if idcg > 0.0 {
        (dcg / idcg).min(1.0)
    } else {
        0.0
    })
}

/// AP@L (the per-request term of MAP@L) =
/// `(sum over ranks k <= L holding a positive of Precision@k) / min(P, L)`.
///
/// `Precision@k` is `hits in list[..k] / k`. Dividing by `min(P, L)` makes a list that puts
/// all reachable positives first score 1. Zero-positive case: `P = 0` gives 0.
///
/// # Errors
/// As [`precision_at`].
pub fn average_precision_at(list: &[usize], relevance: &[f64], l: usize) -> Result<f64> {
    validate(list, relevance, l)?;
    let p = positives(relevance);
    if p == 0 {
        return Ok(0.0);
    }
    Ok(precision_sum(list, relevance, l).0 / p.min(l) as f64)
}

/// `(sum over ranks k <= l holding a positive of Precision@k, number of such ranks)`: the
/// numerator shared by both AP@L definitions.
fn precision_sum(list: &[usize], relevance: &[f64], l: usize) -> (f64, usize) {
    let mut hit_count = 0usize;
    let mut sum = 0.0;
    for (k, &i) in list.iter().take(l).enumerate() {
        if relevance[i] > 0.0 {
            hit_count += 1;
            sum += hit_count as f64 / (k + 1) as f64;
        }
    }
    (sum, hit_count)
}

/// AP@L averaged over the hit positions (torchmetrics' retrieval MAP, and the paper's
/// research group's metric code) =
/// `(sum over ranks k <= L holding a positive of Precision@k) / hits`.
///
/// It differs from [`average_precision_at`] only in the denominator: `hits <= min(P, L)`, so
/// it is never lower, and a list with one positive at rank 1 scores 1 whatever else the
/// pool holds. Zero-hit case (including `P = 0`): 0.
///
/// # Errors
/// As [`precision_at`].
pub fn average_precision_over_hits_at(list: &[usize], relevance: &[f64], l: usize) -> Result<f64> {
    validate(list, relevance, l)?;
    let (sum, hit_count) = precision_sum(list, relevance, l);
    Ok(if hit_count == 0 {
        0.0
    } else {
        sum / hit_count as f64
    })
}

/// Hit@L = 1 when `list[..L]` holds at least one positive, else 0 (so 0 without positives).
///
/// # Errors
/// As [`precision_at`].
pub fn hit_at(list: &[usize], relevance: &[f64], l: usize) -> Result<f64> {
    validate(list, relevance, l)?;
    Ok(if hits(list, relevance, l) > 0 {
        1.0
    } else {
        0.0
    })
}

/// Every list-wise metric of one request at one cut-off, computed in a single validation pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListMetrics {
    /// Precision@L, see [`precision_at`].
    pub precision: f64,
    /// Recall@L, see [`recall_at`].
    pub recall: f64,
    /// F1@L, see [`f1_at`].
    pub f1: f64,
    /// NDCG@L, see [`ndcg_at`].
    pub ndcg: f64,
    /// AP@L (averaged over requests it is MAP@L), see [`average_precision_at`].
    pub map: f64,
    /// AP@L averaged over the hit positions, see [`average_precision_over_hits_at`].
    #[serde(default)]
    pub map_hits: f64,
    /// Hit@L, see [`hit_at`].
    pub hit: f64,
}

impl ListMetrics {
    /// Computes every metric of `list` (indices into the candidates) at cut-off `l`.
    ///
    /// # Errors
    /// As [`precision_at`].
    pub fn compute(list: &[usize], relevance: &[f64], l: usize) -> Result<Self> {
        validate(list, relevance, l)?;
        let precision = precision_at(list, relevance, l)?;
        let recall = recall_at(list, relevance, l)?;
        Ok(Self {
            precision,
            recall,
            f1: f1(precision, recall),
            ndcg: ndcg_at(list, relevance, l)?,
            map: average_precision_at(list, relevance, l)?,
            map_hits: average_precision_over_hits_at(list, relevance, l)?,
            hit: hit_at(list, relevance, l)?,
        })
    }

    /// The metrics as `(name, value)` pairs in a fixed order, for tables and logs.
    pub fn named(&self) -> [(&'static str, f64); 7] {
        [
            ("precision", self.precision),
            ("recall", self.recall),
            ("f1", self.f1),
            ("ndcg", self.ndcg),
            ("map", self.map),
            ("map_hits", self.map_hits),
            ("hit", self.hit),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REL: [f64; 6] = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0];

    #[test]
    fn precision_counts_hits_over_cutoff() {
        assert_eq!(precision_at(&[1, 0, 3], &REL, 3).unwrap(), 2.0 / 3.0);
        // A short list is penalised for its empty slots.
        assert_eq!(precision_at(&[1], &REL, 2).unwrap(), 0.5);
    }

    #[test]
    fn the_two_maps_differ_only_in_the_denominator() {
        // Positives: candidates 0, 1, 2 (P = 3). The list hits at ranks 1 and 3.
        let rel = [1.0, 1.0, 1.0, 0.0, 0.0];
        let list = [0, 3, 1, 4];
        let sum = 1.0 / 1.0 + 2.0 / 3.0;
        let over_p = average_precision_at(&list, &rel, 4).unwrap();
        let over_hits = average_precision_over_hits_at(&list, &rel, 4).unwrap();
        assert!((over_p - sum / 3.0).abs() < 1e-12);
        assert!((over_hits - sum / 2.0).abs() < 1e-12);
        // One positive at rank 1 is perfect over hits, a third over min(P, L).
        assert_eq!(
            average_precision_over_hits_at(&[0, 3], &rel, 2).unwrap(),
            1.0
        );
        assert_eq!(average_precision_at(&[0, 3], &rel, 2).unwrap(), 0.5);
        assert_eq!(
            average_precision_over_hits_at(&[3, 4], &rel, 2).unwrap(),
            0.0
        );
    }

    #[test]
    fn rank_one_has_discount_one() {
        assert_eq!(rank_discount(1), 1.0);
        assert!((rank_discount(3) - 0.5).abs() < 1e-12);
        // A single positive at rank 1 versus rank 2.
        let rel = [1.0, 0.0];
        assert_eq!(ndcg_at(&[0, 1], &rel, 2).unwrap(), 1.0);
        let second = ndcg_at(&[1, 0], &rel, 2).unwrap();
        assert!((second - 1.0 / 3f64.log2()).abs() < 1e-12);
    }

    #[test]
    fn zero_positive_request_is_well_defined() {
        let rel = [0.0; 5];
        let m = ListMetrics::compute(&[0, 1, 2], &rel, 3).unwrap();
        assert_eq!(m.named().map(|(_, v)| v), [0.0; 7]);
    }

    #[test]
    fn idcg_zero_gives_ndcg_zero_not_nan() {
        let v = ndcg_at(&[2, 1, 0], &[0.0, 0.0, 0.0], 3).unwrap();
        assert_eq!(v, 0.0);
    }

    #[test]
    fn average_precision_hand_case() {
        // Positives at ranks 2 and 3 of 3, P = 2: (1/2 + 2/3) / 2.
        let rel = [1.0, 1.0, 0.0, 0.0];
        let ap = average_precision_at(&[2, 0, 1], &rel, 3).unwrap();
        assert!((ap - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // P > L: normalised by L.
        let rel = [1.0; 5];
        assert_eq!(average_precision_at(&[0, 1], &rel, 2).unwrap(), 1.0);
    }

    #[test]
    fn graded_ndcg_hand_case() {
        // rel 2 at rank 2, rel 1 at rank 1: DCG = 1 + 3/log2(3); IDCG = 3 + 1/log2(3).
        let rel = [1.0, 2.0, 0.0];
        let v = ndcg_at(&[0, 1], &rel, 2).unwrap();
        let expect = (1.0 + 3.0 / 3f64.log2()) / (3.0 + 1.0 / 3f64.log2());
        assert!((v - expect).abs() < 1e-12);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert!(matches!(
            precision_at(&[9], &REL, 1),
            Err(MetricsError::IndexOutOfRange { index: 9, .. })
        ));
        assert!(matches!(
            precision_at(&[1, 1], &REL, 2),
            Err(MetricsError::DuplicateItem { rank: 2, .. })
        ));
        assert!(matches!(
            precision_at(&[1], &REL, 0),
            Err(MetricsError::ZeroCutoff)
        ));
        assert!(matches!(
            ndcg_at(&[0], &[f64::NAN], 1),
            Err(MetricsError::InvalidRelevance { candidate: 0, .. })
        ));
    }
}
