//! k-means (k-means++ initialisation, Lloyd iterations) and the residual RQ-KMeans tokenizer.
//!
//! Every parallel reduction sums fixed chunks in chunk order, so results are bit-identical
//! whatever the thread count.

use crate::ids::{SemanticIds, TokenizerStats};
use crate::{ItemTokenizer, Result, TokenizerError, check_vectors, seeded_rng};
use rand::RngExt;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Points per parallel chunk.
const CHUNK: usize = 2048;

/// Squared Euclidean distance.
///
/// Eight independent accumulators let the compiler vectorise the loop (a single running
/// float sum cannot be reordered, so it would stay scalar).
#[inline]
pub(crate) fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += (x - y) * (x - y);
    }
    acc.iter().sum::<f32>() + tail
}

/// Index and squared distance of the nearest center (ties: lowest index).
#[inline]
pub(crate) fn nearest(x: &[f32], centers: &[f32], dim: usize) -> (u32, f32) {
    let mut best = (0u32, f32::INFINITY);
    for (k, c) in centers.chunks_exact(dim).enumerate() {
        let d = sq_dist(x, c);
        if d < best.1 {
            best = (k as u32, d);
        }
    }
    best
}

/// Result of one k-means run.
#[derive(Debug, Clone)]
pub(crate) struct KMeans {
    /// Row-major `[k, dim]`.
    pub centers: Vec<f32>,
    /// Center of each point.
    pub assign: Vec<u32>,
    /// Lloyd iterations run.
    pub iterations: usize,
}

/// Greedy k-means++ seeding (Arthur and Vassilvitskii 2007, with the local trials of
/// scikit-learn): the first center uniformly; each next one is the best, by resulting
/// potential, of `2 + ln k` candidates drawn with probability proportional to the squared
/// distance to the nearest chosen center.
pub(crate) fn kmeans_pp(data: &[f32], dim: usize, k: usize, seed: u64) -> Vec<f32> {
    let n = data.len() / dim;
    let mut rng = seeded_rng(seed, 0x4B50_5031);
    let trials = 2 + (k as f64).ln() as usize;
    let mut centers = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    centers.extend_from_slice(&data[first * dim..(first + 1) * dim]);
    let mut d2: Vec<f32> = data
        .par_chunks(dim)
        .map(|x| sq_dist(x, &centers[..dim]))
        .collect();
    let mut cumulative = vec![0f64; n];
    for _ in 1..k {
        let mut total = 0f64;
        for (c, &d) in cumulative.iter_mut().zip(&d2) {
            total += f64::from(d);
            *c = total;
        }
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                if total > 0.0 {
                    let u = rng.random::<f64>() * total;
                    cumulative.partition_point(|&c| c <= u).min(n - 1)
                } else {
                    // Fewer distinct points than centers: duplicates are unavoidable.
                    rng.random_range(0..n)
                }
            })
            .collect();
        // Potential after adding each candidate; keep the lowest (ties: first drawn).
        let best = candidates
            .iter()
            .map(|&cand| {
                let c = &data[cand * dim..(cand + 1) * dim];
                let pot: f64 = data
                    .par_chunks(CHUNK * dim)
                    .zip(d2.par_chunks(CHUNK))
                    .map(|(xs, ds)| {
                        xs.chunks_exact(dim)
                            .zip(ds)
                            .map(|(x, &d)| f64::from(d.min(sq_dist(x, c))))
                            .sum::<f64>()
                    })
                    .collect::<Vec<f64>>()
                    .iter()
                    .sum();
                (pot, cand)
            })
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a })
            .1;
        let c = data[best * dim..(best + 1) * dim].to_vec();
        d2.par_iter_mut()
            .zip(data.par_chunks(dim))
            .for_each(|(d, x)| *d = d.min(sq_dist(x, &c)));
        centers.extend_from_slice(&c);
    }
    centers
}

/// k-means with k-means++ seeding and at most `max_iters` Lloyd iterations, stopping when
/// the inertia improves by less than `tol` (relative). Empty clusters are re-seeded with the
/// point farthest from its center.
pub(crate) fn kmeans(
    data: &[f32],
    dim: usize,
    k: usize,
    max_iters: usize,
    tol: f64,
    seed: u64,
) -> KMeans {
    let n = data.len() / dim;
    // Seed on a random subsample of at most max(10,000, 40k) points: the greedy seeding costs
    // O(n k log k), and a subsample of that size already covers every sizeable cluster.
    let sample_size = n.min((40 * k).max(10_000));
    let mut centers = if sample_size < n {
        let mut rng = seeded_rng(seed, 0x5355_4253);
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut rng);
        idx.truncate(sample_size);
        idx.sort_unstable();
        let sample: Vec<f32> = idx
            .iter()
            .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        kmeans_pp(&sample, dim, k, seed)
    } else {
        kmeans_pp(data, dim, k, seed)
    };
    let mut assign = vec![0u32; n];
    let mut dist = vec![0f32; n];
    let mut prev = f64::INFINITY;
    let mut iterations = 0;
    for _ in 0..max_iters {
        iterations += 1;
        assign
            .par_iter_mut()
            .zip(dist.par_iter_mut())
            .zip(data.par_chunks(dim))
            .for_each(|((a, d), x)| {
                let (c, dd) = nearest(x, &centers, dim);
                *a = c;
                *d = dd;
            });
        let inertia: f64 = dist.iter().map(|&d| f64::from(d)).sum();
        // Per-chunk partial sums, added in chunk order.
        let partials: Vec<(Vec<f64>, Vec<u32>)> = data
            .par_chunks(CHUNK * dim)
            .zip(assign.par_chunks(CHUNK))
            .map(|(xs, asg)| {
                let mut sums = vec![0f64; k * dim];
                let mut counts = vec![0u32; k];
                for (x, &a) in xs.chunks_exact(dim).zip(asg) {
                    counts[a as usize] += 1;
                    let s = &mut sums[a as usize * dim..(a as usize + 1) * dim];
                    s.iter_mut().zip(x).for_each(|(s, &v)| *s += f64::from(v));
                }
                (sums, counts)
            })
            .collect();
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0u32; k];
        for (s, c) in partials {
            sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
        }
        // Farthest points first, to re-seed empty clusters.
        let mut far: Vec<usize> = Vec::new();
        if counts.contains(&0) {
            far = (0..n).collect();
            far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
        }
        let mut next_far = 0;
        for c in 0..k {
            let dst = &mut centers[c * dim..(c + 1) * dim];
            if counts[c] > 0 {
                let inv = 1.0 / f64::from(counts[c]);
                for (d, s) in dst.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *d = (s * inv) as f32;
                }
            } else if next_far < far.len() {
                let p = far[next_far];
                next_far += 1;
                dst.copy_from_slice(&data[p * dim..(p + 1) * dim]);
            }
        }
        if prev.is_finite() && (prev - inertia) <= tol * prev.max(1e-30) {
            break;
        }
        prev = inertia;
    }
    // Final assignment to the final centers.
    assign
        .par_iter_mut()
        .zip(data.par_chunks(dim))
        .for_each(|(a, x)| *a = nearest(x, &centers, dim).0);
    KMeans {
        centers,
        assign,
        iterations,
    }
}

/// Configuration of [`RqKMeans`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RqKMeansConfig {
    /// Codebook size of each level (default `[256, 256, 256]`).
    pub codes_per_level: Vec<usize>,
    /// Requested dedupe vocabulary (default 32; enlarged, with a warning, if collisions need more).
    pub dedupe_codes: usize,
    /// Maximum Lloyd iterations per level (default 25).
    pub max_iters: usize,
    /// Relative inertia improvement under which a level stops (default 1e-4).
    pub tol: f64,
    /// Seed (default 0).
    pub seed: u64,
}

impl Default for RqKMeansConfig {
    fn default() -> Self {
        Self {
            codes_per_level: vec![256; 3],
            dedupe_codes: 32,
            max_iters: 25,
            tol: 1e-4,
            seed: 0,
        }
    }
}

impl RqKMeansConfig {
    /// `levels` levels of `codes` codes each, other fields default.
    pub fn new(levels: usize, codes: usize) -> Self {
        Self {
            codes_per_level: vec![codes; levels],
            ..Self::default()
        }
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the codebook size of every level.
    pub fn with_codes_per_level(mut self, codes: Vec<usize>) -> Self {
        self.codes_per_level = codes;
        self
    }

    /// Sets the Lloyd iteration cap.
    pub fn with_max_iters(mut self, max_iters: usize) -> Self {
        self.max_iters = max_iters;
        self
    }

    /// Checks the values (and, with `items`, that there are enough items for the codebooks).
    ///
    /// # Errors
    /// [`TokenizerError::InvalidConfig`] naming the field.
    pub fn validate(&self, items: Option<usize>) -> Result<()> {
        crate::check_levels(&self.codes_per_level, self.dedupe_codes, items)?;
        if self.max_iters == 0 {
            return Err(TokenizerError::config("max_iters", "must be at least 1"));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(TokenizerError::config("tol", "must be finite and >= 0"));
        }
        Ok(())
    }
}

/// Residual k-means: level `l` clusters the residuals left by levels `0..l`. Fast, gradient
/// free, and a strong baseline for the RQ-VAE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RqKMeans {
    config: RqKMeansConfig,
    dim: usize,
    /// Codebooks, row-major `[codes, dim]` per level.
    codebooks: Vec<Vec<f32>>,
    stats: Option<TokenizerStats>,
}

impl RqKMeans {
    /// Checks a tokenizer read from `path`: a valid configuration, one codebook per level of
    /// `codes x dim` finite values (a damaged file would otherwise fail later, at the first
    /// cold item).
    ///
    /// # Errors
    /// [`TokenizerError::Format`] naming the file and the level.
    pub(crate) fn check_saved(&self, path: &Path) -> Result<()> {
        self.config.validate(None)?;
        let bad = |message: String| TokenizerError::Format {
            path: path.to_path_buf(),
            message,
        };
        if self.codebooks.is_empty() {
            return Ok(()); // saved unfitted
        }
        let codes = &self.config.codes_per_level;
        if self.codebooks.len() != codes.len() {
            return Err(bad(format!(
                "{} codebooks for {} levels",
                self.codebooks.len(),
                codes.len()
            )));
        }
        if self.dim == 0 || self.dim > glorank_nn::limits::MAX_TABLE_ELEMENTS {
            return Err(bad(format!("input dimension {} is invalid", self.dim)));
        }
        for (l, (book, &k)) in self.codebooks.iter().zip(codes).enumerate() {
            if book.len() != k.saturating_mul(self.dim) {
                return Err(bad(format!(
                    "codebook of level {l} holds {} values, expected {k} codes x {} dimensions",
                    book.len(),
                    self.dim
                )));
            }
            if let Some(p) = book.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "codebook of level {l}, code {}, holds a non-finite value",
                    p / self.dim
                )));
            }
        }
        Ok(())
    }

    /// An unfitted tokenizer.
    ///
    /// # Errors
    /// [`TokenizerError::InvalidConfig`] for an invalid configuration.
    pub fn new(config: RqKMeansConfig) -> Result<Self> {
        config.validate(None)?;
        Ok(Self {
            config,
            dim: 0,
            codebooks: Vec::new(),
            stats: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RqKMeansConfig {
        &self.config
    }

    /// The fitted codebooks (row-major `[codes, dim]` per level).
    pub fn codebooks(&self) -> &[Vec<f32>] {
        &self.codebooks
    }

    /// Codes of each row and the reconstruction (sum of chosen codewords).
    fn quantize(&self, data: &[f32]) -> (Vec<Vec<u32>>, Vec<f32>) {
        let dim = self.dim;
        let n = data.len() / dim;
        let mut codes = vec![Vec::with_capacity(self.codebooks.len()); n];
        let mut recon = vec![0f32; data.len()];
        codes
            .par_iter_mut()
            .zip(recon.par_chunks_mut(dim))
            .zip(data.par_chunks(dim))
            .for_each(|((c, r), x)| {
                let mut residual = x.to_vec();
                for cb in &self.codebooks {
                    let (k, _) = nearest(&residual, cb, dim);
                    let w = &cb[k as usize * dim..(k as usize + 1) * dim];
                    residual.iter_mut().zip(w).for_each(|(a, b)| *a -= b);
                    r.iter_mut().zip(w).for_each(|(a, b)| *a += b);
                    c.push(k);
                }
            });
        (codes, recon)
    }

    /// Saves the fitted tokenizer as `tokenizer.json` in `dir` (atomic write).
    ///
    /// # Errors
    /// [`TokenizerError::Io`] naming the file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| TokenizerError::io(dir, e))?;
        glorank_nn::persist::save_json(
            &dir.join(crate::TOKENIZER_FILE),
            &crate::Saved::RqKMeans(self.clone()),
        )?;
        Ok(())
    }
}

impl ItemTokenizer for RqKMeans {
    fn fit(&mut self, vectors: &[f32], dim: usize) -> Result<SemanticIds> {
        let start = Instant::now();
        let n = check_vectors(vectors, dim)?;
        self.config.validate(Some(n))?;
        self.dim = dim;
        self.codebooks.clear();
        let mut residual = vectors.to_vec();
        let mut iterations = 0;
        for (l, &k) in self.config.codes_per_level.iter().enumerate() {
            let km = kmeans(
                &residual,
                dim,
                k,
                self.config.max_iters,
                self.config.tol,
                self.config.seed.wrapping_add(l as u64),
            );
            iterations += km.iterations;
            residual
                .par_chunks_mut(dim)
                .zip(km.assign.par_iter())
                .for_each(|(r, &a)| {
                    let c = &km.centers[a as usize * dim..(a as usize + 1) * dim];
                    r.iter_mut().zip(c).for_each(|(x, y)| *x -= y);
                });
            self.codebooks.push(km.centers);
        }
        let (codes, recon) = self.quantize(vectors);
        let (ids, report) = SemanticIds::from_codes(
            codes.clone(),
            &self.config.codes_per_level,
            self.config.dedupe_codes,
        )?;
        let mut stats = TokenizerStats::compute(
            "rqkmeans",
            &codes,
            &self.config.codes_per_level,
            report,
            ids.dedupe_codes(),
        );
        stats.reconstruction_error = crate::mean_sq_error(vectors, &recon, dim);
        stats.mean_squared_norm = crate::mean_sq_norm(vectors, dim);
        stats.iterations = iterations;
        stats.fit_seconds = start.elapsed().as_secs_f64();
        crate::warn_overflow(&stats, self.config.dedupe_codes);
        self.stats = Some(stats);
        Ok(ids)
    }

    fn encode(&self, vectors: &[f32], dim: usize) -> Result<Vec<Vec<u32>>> {
        if self.codebooks.is_empty() {
            return Err(TokenizerError::NotFitted);
        }
        if dim != self.dim {
            return Err(TokenizerError::InvalidInput(format!(
                "vectors have dimension {dim}, the tokenizer was fitted on {}",
                self.dim
            )));
        }
        check_vectors(vectors, dim)?;
        Ok(self.quantize(vectors).0)
    }

    fn stats(&self) -> Option<&TokenizerStats> {
        self.stats.as_ref()
    }

    fn codes_per_level(&self) -> &[usize] {
        &self.config.codes_per_level
    }

    fn input_dim(&self) -> Option<usize> {
        (!self.codebooks.is_empty()).then_some(self.dim)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        RqKMeans::save(self, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_separates_obvious_clusters() {
        let mut data = Vec::new();
        for i in 0..30 {
            let base = if i < 15 { 0.0 } else { 10.0 };
            data.extend_from_slice(&[base + (i % 3) as f32 * 0.1, base]);
        }
        let km = kmeans(&data, 2, 2, 20, 0.0, 1);
        assert!(km.assign[..15].iter().all(|&a| a == km.assign[0]));
        assert!(km.assign[15..].iter().all(|&a| a == km.assign[15]));
        assert_ne!(km.assign[0], km.assign[15]);
    }

    #[test]
    fn kmeans_is_thread_count_independent() {
        let data: Vec<f32> = (0..5000).map(|i| ((i * 37) % 101) as f32 * 0.01).collect();
        let run = |t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| kmeans(&data, 5, 8, 10, 0.0, 3))
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.centers, b.centers);
        assert_eq!(a.assign, b.assign);
    }
}
