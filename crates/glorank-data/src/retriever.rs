//! Stage-1 retriever: implicit-feedback matrix factorisation by alternating least squares
//! (Hu, Koren and Volinsky, ICDM 2008), parallel over users and items with rayon.
//!
//! Every observed (user, item) pair has preference 1 and confidence `1 + alpha`; unobserved
//! pairs have preference 0 and confidence 1. Each half-step solves, for every user `u`,
//! `(YᵀY + Yᵀ(C_u - I)Y + λI) x_u = Yᵀ C_u p_u` by Cholesky, and likewise for items. The
//! factors start from a seeded normal draw, and every solve is independent, so the result
//! does not depend on the number of threads.

use crate::progress::Progress;
use crate::rng::rng_for;
use crate::{DataError, Result};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of the ALS retriever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetrieverConfig {
    /// Latent dimension `k` (default 32).
    pub factors: usize,
    /// ALS sweeps, each one user half-step and one item half-step (default 10).
    pub iterations: usize,
    /// L2 regularisation `λ` (default 0.1).
    pub regularization: f32,
    /// Confidence weight `alpha` of observed pairs (default 10).
    pub alpha: f32,
    /// Standard deviation of the initial factors (default 0.01).
    pub init_std: f32,
}

impl Default for RetrieverConfig {
    fn default() -> Self {
        Self {
            factors: 32,
            iterations: 10,
            regularization: 0.1,
            alpha: 10.0,
            init_std: 0.01,
        }
    }
}

impl RetrieverConfig {
    /// Sets the latent dimension.
    pub fn with_factors(mut self, factors: usize) -> Self {
        self.factors = factors;
        self
    }

    /// Sets the number of ALS sweeps.
    pub fn with_iterations(mut self, iterations: usize) -> Self {
        self.iterations = iterations;
        self
    }

    /// Sets the regularisation `λ` and the confidence weight `alpha`.
    pub fn with_weights(mut self, regularization: f32, alpha: f32) -> Self {
        self.regularization = regularization;
        self.alpha = alpha;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.factors == 0 || self.factors > 1024 {
            return Err(DataError::config(
                "retriever.factors",
                "must be in 1..=1024",
            ));
        }
        if self.iterations == 0 {
            return Err(DataError::config(
                "retriever.iterations",
                "must be at least 1",
            ));
        }
        for (name, v) in [
            ("retriever.regularization", self.regularization),
            ("retriever.alpha", self.alpha),
            ("retriever.init_std", self.init_std),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(DataError::config(
                    name,
                    format!("{v} must be finite and > 0"),
                ));
            }
        }
        Ok(())
    }
}

/// A fitted factorisation: `score(u, i) = <user_factors[u], item_factors[i]>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MfModel {
    /// Latent dimension.
    pub factors: usize,
    /// Row-major `[users, factors]`.
    pub user_factors: Vec<f32>,
    /// Row-major `[items, factors]`.
    pub item_factors: Vec<f32>,
}

impl MfModel {
    /// Number of users.
    pub fn num_users(&self) -> usize {
        self.user_factors.len() / self.factors.max(1)
    }

    /// Number of items.
    pub fn num_items(&self) -> usize {
        self.item_factors.len() / self.factors.max(1)
    }

    /// Factor row of user `u`.
    pub fn user(&self, u: usize) -> &[f32] {
        &self.user_factors[u * self.factors..(u + 1) * self.factors]
    }

    /// Factor row of item `i`.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.item_factors[i * self.factors..(i + 1) * self.factors]
    }

    /// The retriever score of `(u, i)`.
    pub fn score(&self, u: usize, i: usize) -> f32 {
        dot(self.user(u), self.item(i))
    }

    /// Scores of user `u` for every item, written into `out` (`out.len()` = items).
    pub fn scores_into(&self, u: usize, out: &mut [f32]) {
        let x = self.user(u);
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(x, self.item(i));
        }
    }
}

/// Dot product.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits the ALS retriever on `(user, item)` pairs (duplicates count once per occurrence).
///
/// # Errors
/// [`DataError::InvalidConfig`] for bad hyper-parameters; [`DataError::Insufficient`] when a
/// pair names a user or item outside `num_users`/`num_items`.
pub fn fit_als(
    pairs: &[(u32, u32)],
    num_users: usize,
    num_items: usize,
    config: &RetrieverConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<MfModel> {
    config.validate()?;
    if let Some(&(u, i)) = pairs
        .iter()
        .find(|(u, i)| *u as usize >= num_users || *i as usize >= num_items)
    {
        return Err(DataError::Insufficient(format!(
            "retriever: pair (user {u}, item {i}) is outside {num_users} users x {num_items} items"
        )));
    }
    let k = config.factors;
    let by_user = adjacency(pairs.iter().map(|&(u, i)| (u, i)), num_users);
    let by_item = adjacency(pairs.iter().map(|&(u, i)| (i, u)), num_items);
    let init = |n: usize, stream: u64| -> Vec<f32> {
        let mut rng = rng_for(seed, &[0x5245_5452, stream]);
        (0..n * k)
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut rng);
                z * config.init_std
            })
            .collect()
    };
    let mut users = init(num_users, 0);
    let mut items = init(num_items, 1);
    progress.stage("retriever (ALS)", config.iterations as u64);
    for _ in 0..config.iterations {
        users = half_step(&by_user, &items, k, config);
        items = half_step(&by_item, &users, k, config);
        progress.advance(1);
    }
    progress.finish();
    Ok(MfModel {
        factors: k,
        user_factors: users,
        item_factors: items,
    })
}

/// Row lists of a sparse 0/1 matrix given as `(row, col)` pairs.
fn adjacency(pairs: impl Iterator<Item = (u32, u32)>, rows: usize) -> Vec<Vec<u32>> {
    let mut adj = vec![Vec::new(); rows];
    for (r, c) in pairs {
        adj[r as usize].push(c);
    }
    adj
}

/// One ALS half-step: solves every row of the "solved" side given the fixed side `y`.
fn half_step(adj: &[Vec<u32>], y: &[f32], k: usize, cfg: &RetrieverConfig) -> Vec<f32> {
    // Gram matrix YᵀY, shared by every row. Partial sums over fixed chunks, added in chunk
    // order: the float result does not depend on how rayon schedules the work.
    let partials: Vec<Vec<f32>> = y
        .par_chunks(256 * k)
        .map(|chunk| {
            let mut g = vec![0f32; k * k];
            for row in chunk.chunks_exact(k) {
                for a in 0..k {
                    let ra = row[a];
                    for b in 0..k {
                        g[a * k + b] += ra * row[b];
                    }
                }
            }
            g
        })
        .collect();
    let mut gram = vec![0f32; k * k];
    for p in partials {
        gram.iter_mut().zip(p).for_each(|(x, v)| *x += v);
    }
    let alpha = cfg.alpha;
    let lambda = cfg.regularization;
    let mut out = vec![0f32; adj.len() * k];
    out.par_chunks_mut(k).zip(adj.par_iter()).for_each_init(
        || (vec![0f32; k * k], vec![0f32; k]),
        |(a, rhs), (x, cols)| {
            if cols.is_empty() {
                x.fill(0.0);
                return;
            }
            a.copy_from_slice(&gram);
            rhs.fill(0.0);
            for &c in cols {
                let row = &y[c as usize * k..(c as usize + 1) * k];
                for p in 0..k {
                    let w = alpha * row[p];
                    rhs[p] += (1.0 + alpha) * row[p];
                    for q in 0..k {
                        a[p * k + q] += w * row[q];
                    }
                }
            }
            for d in 0..k {
                a[d * k + d] += lambda;
            }
            cholesky_solve(a, rhs, k);
            x.copy_from_slice(rhs);
        },
    );
    out
}

/// Solves `A x = b` in place for a symmetric positive-definite `A` (`k x k`, row-major),
/// overwriting `a` with its Cholesky factor and `b` with `x`. The ridge term `λ > 0` keeps
/// `A` positive definite; a non-positive pivot (only possible with non-finite input) is
/// clamped to `λ`-scale to stay finite.
pub(crate) fn cholesky_solve(a: &mut [f32], b: &mut [f32], k: usize) {
    for j in 0..k {
        let mut d = a[j * k + j];
        for p in 0..j {
            d -= a[j * k + p] * a[j * k + p];
        }
        let d = d.max(1e-12).sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let mut s = a[i * k + j];
            for p in 0..j {
                s -= a[i * k + p] * a[j * k + p];
            }
            a[i * k + j] = s / d;
        }
    }
    // Forward: L z = b.
    for i in 0..k {
        let mut s = b[i];
        for p in 0..i {
            s -= a[i * k + p] * b[p];
        }
        b[i] = s / a[i * k + i];
    }
    // Backward: Lᵀ x = z.
    for i in (0..k).rev() {
        let mut s = b[i];
        for p in i + 1..k {
            s -= a[p * k + i] * b[p];
        }
        b[i] = s / a[i * k + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn cholesky_solves_spd_system() {
        // A = [[4, 2], [2, 3]], b = [2, 1] -> x = [0.5, 0].
        let mut a = [4.0, 2.0, 2.0, 3.0];
        let mut b = [2.0, 1.0];
        cholesky_solve(&mut a, &mut b, 2);
        assert!((b[0] - 0.5).abs() < 1e-6 && b[1].abs() < 1e-6);
    }

    #[test]
    fn als_ranks_block_structure_and_is_deterministic() {
        // Two user groups, each consuming one half of the items (all but one item each).
        let mut pairs = Vec::new();
        for u in 0..20u32 {
            let base = if u < 10 { 0 } else { 10 };
            for i in 0..10u32 {
                if (i + u) % 10 != 0 {
                    pairs.push((u, base + i));
                }
            }
        }
        let cfg = RetrieverConfig {
            factors: 4,
            ..Default::default()
        };
        let m = fit_als(&pairs, 20, 20, &cfg, 7, &NoProgress).unwrap();
        // User 0 never saw item 0 (held out) but it is in its block: it must outscore every
        // item of the other block.
        let held = m.score(0, 0);
        assert!((10..20).all(|i| held > m.score(0, i)));
        let again = fit_als(&pairs, 20, 20, &cfg, 7, &NoProgress).unwrap();
        assert_eq!(m, again);
    }

    #[test]
    fn result_does_not_depend_on_thread_count() {
        let pairs: Vec<(u32, u32)> = (0..300u32).map(|k| (k % 37, (k * 7) % 53)).collect();
        let cfg = RetrieverConfig::default().with_factors(8);
        let fit = || fit_als(&pairs, 37, 53, &cfg, 1, &NoProgress).unwrap();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(fit);
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(fit);
        assert_eq!(one, three);
    }

    #[test]
    fn invalid_config_and_pairs_are_errors() {
        let cfg = RetrieverConfig {
            factors: 0,
            ..Default::default()
        };
        assert!(fit_als(&[(0, 0)], 1, 1, &cfg, 0, &NoProgress).is_err());
        let ok = RetrieverConfig::default();
        assert!(fit_als(&[(3, 0)], 1, 1, &ok, 0, &NoProgress).is_err());
    }
}
