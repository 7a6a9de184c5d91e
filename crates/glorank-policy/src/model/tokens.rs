//! Row indices as tensors, and the candidate-aware head's per-token log-sum-exp over the
//! candidates still available.

use burn::tensor::{Device, Int, Tensor, TensorData};
use glorank_nn::MASKED;

/// Whether row indices `ids` are `0..rows` in order (a `select` by them is the identity).
pub(crate) fn in_order(ids: &[u32], rows: usize) -> bool {
    ids.len() == rows && ids.iter().enumerate().all(|(i, &q)| q as usize == i)
}

/// Row indices `ids` as an index tensor `[ids.len()]` for `select`.
pub(crate) fn index(ids: &[u32], device: &Device) -> Tensor<1, Int> {
    let ids: Vec<i64> = ids.iter().map(|&r| i64::from(r)).collect();
    let n = ids.len();
    Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), device)
}

/// `log(sum(exp(x)))` along dimension 1: `[R, K] -> [R, 1]`, shifted by the row maximum.
pub(super) fn log_sum_exp(x: Tensor<2>) -> Tensor<2> {
    let max = x.clone().max_dim(1).detach();
    (x - max.clone()).exp().sum_dim(1).log() + max
}

/// Scratch buffers of the candidate-aware token logits (one row at a time).
pub(crate) struct TokenLse {
    eligible: Vec<bool>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl TokenLse {
    /// Buffers for pools of up to `n` candidates and vocabularies of up to `v` tokens.
    pub(crate) fn new(n: usize, v: usize) -> Self {
        Self {
            eligible: vec![false; n],
            max: vec![f32::NEG_INFINITY; v],
            sum: vec![0.0; v],
        }
    }

    /// Writes to `out [v]` one row's token logits at `level` (of `depth`) after `prefix`: for
    /// each token, the log-sum-exp of the pointer `scores` (one per candidate) over the
    /// remaining candidates whose tuple extends the prefix with it, plus the token's `global`
    /// logit; [`MASKED`] for tokens no remaining candidate extends.
    #[inline(always)]
    pub(crate) fn fill(
        &mut self,
        tuples: &[Vec<u32>],
        prefix: &[u32],
        (level, depth): (usize, usize),
        scores: &[f32],
        global: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let v = out.len();
        let eligible = &mut self.eligible[..tuples.len()];
        let (max, sum) = (&mut self.max[..v], &mut self.sum[..v]);
        eligible_candidates(tuples, prefix, depth, eligible);
        max.fill(f32::NEG_INFINITY);
        sum.fill(0.0);
        for (j, tuple) in tuples.iter().enumerate().filter(|&(j, _)| eligible[j]) {
            let c = tuple[level] as usize;
            max[c] = max[c].max(scores[j]);
        }
        for (j, tuple) in tuples.iter().enumerate().filter(|&(j, _)| eligible[j]) {
            let c = tuple[level] as usize;
            sum[c] += (scores[j] - max[c]).exp();
        }
        for c in 0..v {
            out[c] = if sum[c] > 0.0 {
                max[c] + sum[c].ln() + global.map_or(0.0, |g| g[c])
            } else {
                MASKED
            };
        }
    }
}

/// Marks in `out` the candidates (by their tuples) that may follow `prefix`, a token prefix
/// of whole items then a partial one: not already listed, and extending the partial item.
pub(crate) fn eligible_candidates(
    tuples: &[Vec<u32>],
    prefix: &[u32],
    depth: usize,
    out: &mut [bool],
) {
    let done = prefix.len() / depth * depth;
    let (listed, partial) = prefix.split_at(done);
    out.fill(false);
    for (e, tuple) in out.iter_mut().zip(tuples) {
        *e = tuple.starts_with(partial)
            && !listed
                .chunks_exact(depth)
                .any(|item| item == tuple.as_slice());
    }
}
