//! Area under the ROC curve of per-candidate scores against binary labels.

use crate::{MetricsError, Result};

/// AUC = the probability that a random positive is scored above a random negative, with a
/// tie counting 1/2: `(sum over (pos, neg) pairs of [s_pos > s_neg] + 0.5 [s_pos = s_neg]) / (P * Nn)`.
///
/// Computed in `O(n log n)` from the average ranks of the positives (Mann-Whitney U).
/// Returns `Ok(None)` when the labels hold no positive or no negative: AUC is undefined there,
/// and aggregations skip such requests instead of inventing a value.
///
/// # Errors
/// [`MetricsError::LengthMismatch`] when `scores` and `labels` differ in length;
/// [`MetricsError::InvalidScore`] for a NaN score.
pub fn auc(scores: &[f64], labels: &[bool]) -> Result<Option<f64>> {
    if scores.len() != labels.len() {
        return Err(MetricsError::LengthMismatch {
            left: scores.len(),
            right: labels.len(),
        });
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(MetricsError::InvalidScore { index: i });
    }
    let n_pos = labels.iter().filter(|&&b| b).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Ok(None);
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let avg_rank = (start + 1 + end) as f64 / 2.0;
        rank_sum += avg_rank * order[start..end].iter().filter(|&&i| labels[i]).count() as f64;
        start = end;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Ok(Some(u / (n_pos * n_neg) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quadratic definition, used as a reference.
    fn auc_pairs(scores: &[f64], labels: &[bool]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (i, &li) in labels.iter().enumerate() {
            for (j, &lj) in labels.iter().enumerate() {
                if li && !lj {
                    den += 1.0;
                    num += match scores[i].partial_cmp(&scores[j]).unwrap() {
                        std::cmp::Ordering::Greater => 1.0,
                        std::cmp::Ordering::Equal => 0.5,
                        std::cmp::Ordering::Less => 0.0,
                    };
                }
            }
        }
        num / den
    }

    #[test]
    fn perfect_inverse_and_tied() {
        let labels = [true, false, true, false];
        assert_eq!(auc(&[0.9, 0.1, 0.8, 0.2], &labels).unwrap(), Some(1.0));
        assert_eq!(auc(&[0.1, 0.9, 0.2, 0.8], &labels).unwrap(), Some(0.0));
        assert_eq!(auc(&[0.5; 4], &labels).unwrap(), Some(0.5));
    }

    #[test]
    fn matches_pairwise_definition_with_ties() {
        let scores = [0.3, 0.3, 0.1, 0.7, 0.3, 0.9, 0.1];
        let labels = [true, false, false, true, true, false, true];
        let fast = auc(&scores, &labels).unwrap().unwrap();
        assert!((fast - auc_pairs(&scores, &labels)).abs() < 1e-12);
    }

    #[test]
    fn undefined_without_both_classes() {
        assert_eq!(auc(&[0.1, 0.2], &[true, true]).unwrap(), None);
        assert_eq!(auc(&[0.1, 0.2], &[false, false]).unwrap(), None);
        assert!(auc(&[0.1], &[true, false]).is_err());
        assert!(auc(&[f64::NAN, 0.1], &[true, false]).is_err());
    }
}
