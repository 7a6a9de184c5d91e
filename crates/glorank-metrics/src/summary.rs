//! Aggregation over requests: mean, standard error and a 95% confidence interval.

use crate::list::ListMetrics;
use crate::{MetricsError, Result};
use serde::{Deserialize, Serialize};

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 97.5% quantile of Student's t with `df` degrees of freedom (the 95% CI multiplier).
///
/// Exact table values for `df <= 30`; above that the Cornish-Fisher expansion
/// `z + (z^3 + z) / (4 df) + (5z^5 + 16z^3 + 3z) / (96 df^2)` with `z = 1.959964`, accurate to
/// better than 1e-3 there and tending to the normal quantile.
pub fn t_quantile_975(df: usize) -> f64 {
    match df {
        0 => f64::INFINITY,
        1..=30 => T_975[df - 1],
        _ => {
            let z: f64 = 1.959_963_985;
            let n = df as f64;
            z + (z.powi(3) + z) / (4.0 * n)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

/// Mean of a metric over requests with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summary {
    /// Number of requests averaged.
    pub n: usize,
    /// Sample mean.
    pub mean: f64,
    /// Standard error of the mean: sample standard deviation (`n - 1` denominator) over `sqrt(n)`;
    /// 0 when `n = 1`.
    pub std_err: f64,
    /// Lower end of the 95% confidence interval `mean - t_{0.975, n-1} * std_err`.
    pub ci_low: f64,
    /// Upper end of the 95% confidence interval `mean + t_{0.975, n-1} * std_err`.
    pub ci_high: f64,
}

impl Summary {
    /// Summarises per-request values. With a single value the interval collapses to the mean.
    ///
    /// # Errors
    /// [`MetricsError::Empty`] without values; [`MetricsError::InvalidScore`] for a value that
    /// is not finite (its index is named).
    pub fn from_values(values: &[f64]) -> Result<Self> {
        if values.is_empty() {
            return Err(MetricsError::Empty);
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::InvalidScore { index: i });
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std_err = if n > 1 {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        } else {
            0.0
        };
        let half = if n > 1 {
            t_quantile_975(n - 1) * std_err
        } else {
            0.0
        };
        Ok(Self {
            n,
            mean,
            std_err,
            ci_low: mean - half,
            ci_high: mean + half,
        })
    }

    /// Half-width of the 95% confidence interval.
    pub fn half_width(&self) -> f64 {
        (self.ci_high - self.ci_low) / 2.0
    }
}

impl std::fmt::Display for Summary {
    /// Formats as `mean ± half-width` with four decimals.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.4} ± {:.4}", self.mean, self.half_width())
    }
}

/// Collects per-request [`ListMetrics`] and summarises each metric over requests.
#[derive(Debug, Clone, Default)]
pub struct MetricAccumulator {
    rows: Vec<ListMetrics>,
}

/// Summaries of every list-wise metric over a set of requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricsSummary {
    /// Precision@L.
    pub precision: Summary,
    /// Recall@L.
    pub recall: Summary,
    /// F1@L: the mean of per-request F1 values (not F1 of the mean precision and recall).
    pub f1: Summary,
    /// NDCG@L.
    pub ndcg: Summary,
    /// MAP@L: the mean of per-request AP@L (divided by `min(P, L)`).
    pub map: Summary,
    /// MAP@L averaged over hit positions (torchmetrics' and the research group's MAP).
    pub map_hits: Summary,
    /// Hit@L (hit rate).
    pub hit: Summary,
}

impl MetricAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one request's metrics.
    pub fn push(&mut self, metrics: ListMetrics) {
        self.rows.push(metrics);
    }

    /// Number of requests added.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no request has been added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Summarises every metric over the requests added.
    ///
    /// # Errors
    /// [`MetricsError::Empty`] when no request was added.
    pub fn summary(&self) -> Result<MetricsSummary> {
        if self.rows.is_empty() {
            return Err(MetricsError::Empty);
        }
        let col = |f: fn(&ListMetrics) -> f64| {
            Summary::from_values(&self.rows.iter().map(f).collect::<Vec<_>>())
        };
        Ok(MetricsSummary {
            precision: col(|m| m.precision)?,
            recall: col(|m| m.recall)?,
            f1: col(|m| m.f1)?,
            ndcg: col(|m| m.ndcg)?,
            map: col(|m| m.map)?,
            map_hits: col(|m| m.map_hits)?,
            hit: col(|m| m.hit)?,
        })
    }
}

impl Extend<ListMetrics> for MetricAccumulator {
    fn extend<T: IntoIterator<Item = ListMetrics>>(&mut self, iter: T) {
        self.rows.extend(iter);
    }
}

impl FromIterator<ListMetrics> for MetricAccumulator {
    fn from_iter<T: IntoIterator<Item = ListMetrics>>(iter: T) -> Self {
        Self {
            rows: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_hand_case() {
        // mean 2, sample sd 1, se 1/sqrt(3), t(2) = 4.303.
        let s = Summary::from_values(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.n, 3);
        assert!((s.mean - 2.0).abs() < 1e-12);
        assert!((s.std_err - 1.0 / 3f64.sqrt()).abs() < 1e-12);
        assert!((s.half_width() - 4.303 / 3f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn single_value_and_errors() {
        let s = Summary::from_values(&[0.25]).unwrap();
        assert_eq!((s.ci_low, s.ci_high), (0.25, 0.25));
        assert!(matches!(
            Summary::from_values(&[]),
            Err(MetricsError::Empty)
        ));
        assert!(matches!(
            Summary::from_values(&[0.1, f64::NAN]),
            Err(MetricsError::InvalidScore { index: 1 })
        ));
        assert!(MetricAccumulator::new().summary().is_err());
    }

    #[test]
    fn t_quantile_is_continuous_and_tends_to_normal() {
        assert!((t_quantile_975(30) - t_quantile_975(31)).abs() < 0.01);
        assert!((t_quantile_975(60) - 2.000).abs() < 2e-3);
        assert!((t_quantile_975(120) - 1.980).abs() < 2e-3);
        assert!((t_quantile_975(1_000_000) - 1.95996).abs() < 1e-4);
    }

    #[test]
    fn accumulator_means_per_metric() {
        let rel = [1.0, 0.0, 0.0];
        let acc: MetricAccumulator = [&[0usize, 1][..], &[1, 2][..]]
            .iter()
            .map(|l| ListMetrics::compute(l, &rel, 2).unwrap())
            .collect();
        let s = acc.summary().unwrap();
        assert_eq!(s.precision.mean, 0.25);
        assert_eq!(s.hit.mean, 0.5);
        assert_eq!(acc.len(), 2);
    }
}
