//! The host copies of the linear, layer-norm, feed-forward and encoder layers.

use super::*;
use crate::layers::{Attention, Encoder, EncoderLayer};
use burn::nn::{LayerNorm, Linear};

/// A [`Linear`] layer on the host: `y = x W + b`.
#[derive(Debug, Clone)]
pub struct HostLinear {
    /// Weight `[d_in, d_out]`, row-major.
    pub(super) weight: Vec<f32>,
    /// Bias `[d_out]` (zeros when the layer has none).
    pub(super) bias: Vec<f32>,
    pub(super) d_in: usize,
    pub(super) d_out: usize,
}

impl HostLinear {
    /// A copy of `linear`'s weights.
    pub fn new(linear: &Linear) -> Self {
        let [d_in, d_out] = linear.weight.val().dims();
        Self {
            weight: to_vec(linear.weight.val()),
            bias: linear
                .bias
                .as_ref()
                .map_or_else(|| vec![0.0; d_out], |b| to_vec(b.val())),
            d_in,
            d_out,
        }
    }

    /// Several layers reading the same input, as one layer whose outputs are theirs side by
    /// side (`[q | k | v]`, say).
    pub fn concat(parts: &[Self]) -> Self {
        let d_in = parts[0].d_in;
        assert!(parts.iter().all(|p| p.d_in == d_in), "inputs differ");
        let d_out = parts.iter().map(|p| p.d_out).sum();
        let mut weight = Vec::with_capacity(d_in * d_out);
        for i in 0..d_in {
            for p in parts {
                weight.extend_from_slice(&p.weight[i * p.d_out..(i + 1) * p.d_out]);
            }
        }
        Self {
            weight,
            bias: parts.iter().flat_map(|p| p.bias.iter().copied()).collect(),
            d_in,
            d_out,
        }
    }

    /// Adds `extra [d_in, d_out]` (row-major) to the weight: the layer then computes
    /// `x (W + extra) + b`.
    pub fn add_to_weight(&mut self, extra: &[f32]) {
        assert_eq!(extra.len(), self.weight.len(), "weight shapes differ");
        for (w, e) in self.weight.iter_mut().zip(extra) {
            *w += e;
        }
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// `x [rows, d_in] -> out [rows, d_out]` (`out` is overwritten).
    #[inline(always)]
    pub fn forward_into(&self, x: &[f32], rows: usize, out: &mut [f32], parallel: bool) {
        out[..rows * self.d_out].fill(0.0);
        self.forward_add(x, rows, out, parallel);
    }

    /// `x [rows, d_in] -> [rows, d_out]`.
    #[inline(always)]
    pub fn forward(&self, x: &[f32], rows: usize, parallel: bool) -> Vec<f32> {
        let mut out = vec![0.0; rows * self.d_out];
        self.forward_add(x, rows, &mut out, parallel);
        out
    }

    /// `out [rows, d_out] += x [rows, d_in] W + b` (a residual branch).
    ///
    /// Up to [`FEW_ROWS`] rows are computed as one pass over the weight per row (`axpy`s
    /// along its rows: no packing of the weight, which `gemm` repeats at every call); more
    /// rows go to `gemm`.
    #[inline(always)]
    pub fn forward_add(&self, x: &[f32], rows: usize, out: &mut [f32], parallel: bool) {
        for row in out[..rows * self.d_out].chunks_exact_mut(self.d_out) {
            for (o, b) in row.iter_mut().zip(&self.bias) {
                *o += b;
            }
        }
        if rows <= FEW_ROWS {
            for (xr, or) in x
                .chunks_exact(self.d_in)
                .zip(out.chunks_exact_mut(self.d_out))
                .take(rows)
            {
                for (&xi, w) in xr.iter().zip(self.weight.chunks_exact(self.d_out)) {
                    axpy(or, xi, w);
                }
            }
            return;
        }
        matmul(
            out,
            x,
            &self.weight,
            (rows, self.d_in, self.d_out),
            true,
            parallel,
        );
    }
}

/// Row counts up to which [`HostLinear`] skips `gemm`: a batch-1 decoding step. With 4 rows
/// (beam 4) the repeated passes over the weight cost more than `gemm`'s packing (beam-4 p50
/// 6.0-6.1 ms against 4.4-4.6 ms); at 1 row greedy p50 went from 2.69-3.29 to 2.59-2.69 ms.
pub(super) const FEW_ROWS: usize = 1;

/// A [`LayerNorm`] on the host.
#[derive(Debug, Clone)]
pub struct HostLayerNorm {
    pub(super) gamma: Vec<f32>,
    pub(super) beta: Vec<f32>,
}

impl HostLayerNorm {
    /// A copy of `norm`'s scale and shift (epsilon [`LAYER_NORM_EPSILON`]).
    pub fn new(norm: &LayerNorm) -> Self {
        let gamma = to_vec(norm.gamma.val());
        let beta = norm
            .beta
            .as_ref()
            .map_or_else(|| vec![0.0; gamma.len()], |b| to_vec(b.val()));
        Self { gamma, beta }
    }

    /// Normalises each row of `x [rows, d]` into `out`.
    #[inline(always)]
    pub fn forward_into(&self, x: &[f32], out: &mut [f32]) {
        let d = self.gamma.len();
        for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let mean = xr.iter().sum::<f32>() / d as f32;
            let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let inv = 1.0 / (var + LAYER_NORM_EPSILON).sqrt();
            for (((o, v), g), b) in or.iter_mut().zip(xr).zip(&self.gamma).zip(&self.beta) {
                *o = (v - mean) * inv * g + b;
            }
        }
    }

    /// `x [rows, d]` normalised, as a new buffer.
    #[inline(always)]
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        self.forward_into(x, &mut out);
        out
    }
}

/// The pre-norm feed-forward residual block of both layer kinds: `x += W2 gelu(W1 norm(x))`.
#[derive(Debug, Clone)]
pub(super) struct HostFeedForward {
    pub(super) norm: HostLayerNorm,
    pub(super) inner: HostLinear,
    pub(super) outer: HostLinear,
}

impl HostFeedForward {
    /// A copy of the block's norm and its two linear layers.
    pub(super) fn new(norm: &LayerNorm, inner: &Linear, outer: &Linear) -> Self {
        Self {
            norm: HostLayerNorm::new(norm),
            inner: HostLinear::new(inner),
            outer: HostLinear::new(outer),
        }
    }

    /// Adds the block's output to `x [rows, d]`.
    #[inline(always)]
    pub(super) fn add_to(&self, x: &mut [f32], rows: usize, parallel: bool) {
        let h = self.norm.forward(x);
        let mut u = self.inner.forward(&h, rows, parallel);
        gelu_in_place(&mut u);
        self.outer.forward_add(&u, rows, x, parallel);
    }
}

/// One encoder layer ([`EncoderLayer`]) on the host.
#[derive(Debug, Clone)]
pub struct HostEncoderLayer {
    /// Query, key and value projections side by side (`d -> 3d`).
    pub(super) qkv: HostLinear,
    pub(super) output: HostLinear,
    pub(super) norm_attn: HostLayerNorm,
    pub(super) ff: HostFeedForward,
    pub(super) heads: usize,
}

impl HostEncoderLayer {
    /// A copy of `layer`'s weights.
    pub fn new(layer: &EncoderLayer) -> Self {
        let a = &layer.mha;
        Self {
            qkv: qkv(a),
            output: HostLinear::new(&a.output),
            // The encoder layer normalises with `norm_2` before attention, `norm_1` before
            // the feed-forward block (burn's names).
            norm_attn: HostLayerNorm::new(&layer.norm_2),
            ff: HostFeedForward::new(
                &layer.norm_1,
                &layer.pwff.linear_inner,
                &layer.pwff.linear_outer,
            ),
            heads: a.heads,
        }
    }

    /// `x [b, s, d]` in place, with the additive key mask `key_bias [b, s]`.
    pub fn forward(&self, x: &mut [f32], b: usize, s: usize, key_bias: &[f32], parallel: bool) {
        with_simd(
            #[inline(always)]
            || self.forward_simd(x, b, s, key_bias, parallel),
        );
    }

    /// [`HostEncoderLayer::forward`]'s body (inlined into [`with_simd`]).
    #[inline(always)]
    pub(super) fn forward_simd(
        &self,
        x: &mut [f32],
        b: usize,
        s: usize,
        key_bias: &[f32],
        parallel: bool,
    ) {
        let d = self.output.d_out();
        let rows = b * s;
        let h = self.norm_attn.forward(x);
        let qkv = self.qkv.forward(&h, rows, parallel);
        let mut ctx = vec![0.0; rows * d];
        let dh = d / self.heads;
        let scale = (dh as f32).sqrt();
        let mut scores = vec![0.0; s * s];
        for r in 0..b {
            let base = r * s * 3 * d;
            let bias = &key_bias[r * s..(r + 1) * s];
            for head in 0..self.heads {
                let q = Strided {
                    data: &qkv,
                    offset: base + head * dh,
                    row: 3 * d,
                    col: 1,
                };
                let k = Strided {
                    offset: base + d + head * dh,
                    ..q
                };
                let v = Strided {
                    offset: base + 2 * d + head * dh,
                    ..q
                };
                matmul_strided(&mut scores, 0, s, q, k.t(), (s, dh, s), false, false);
                for row in scores.chunks_exact_mut(s) {
                    attention_weights(row, scale, Some(bias));
                }
                matmul_strided(
                    &mut ctx,
                    r * s * d + head * dh,
                    d,
                    Strided::rows(&scores, s),
                    v,
                    (s, s, dh),
                    false,
                    false,
                );
            }
        }
        self.output.forward_add(&ctx, rows, x, parallel);
        self.ff.add_to(x, rows, parallel);
    }
}

/// The query, key and value projections of `a` as one `d -> 3d` layer.
pub(super) fn qkv(a: &Attention) -> HostLinear {
    HostLinear::concat(&[
        HostLinear::new(&a.query),
        HostLinear::new(&a.key),
        HostLinear::new(&a.value),
    ])
}

/// Sequences [`HostEncoder::forward`] takes through all its layers at once. Encoding 16
/// requests of 101 positions at a time instead of a whole decoding shard of 128 together
/// raised greedy decoding at batch 256 from 578-609 to 670-675 requests/s (four
/// alternating rounds of `glorank bench --synthetic`): the chunk's activations stay in cache.
pub const ENCODE_CHUNK: usize = 16;

/// An [`Encoder`] on the host.
#[derive(Debug, Clone)]
pub struct HostEncoder {
    pub(super) layers: Vec<HostEncoderLayer>,
}

impl HostEncoder {
    /// A copy of `encoder`'s weights.
    pub fn new(encoder: &Encoder) -> Self {
        Self {
            layers: encoder.layers.iter().map(HostEncoderLayer::new).collect(),
        }
    }

    /// `x [b, s, d]` in place, with the additive key mask `key_bias [b, s]` ([`MASKED`] on
    /// padding, 0 elsewhere).
    ///
    /// Sequences are encoded [`ENCODE_CHUNK`] at a time through every layer, so that a
    /// chunk's activations stay in cache between layers (sequences do not interact).
    pub fn forward(&self, x: &mut [f32], b: usize, s: usize, key_bias: &[f32], parallel: bool) {
        let Some(first) = self.layers.first() else {
            return;
        };
        if b * s == 0 {
            return;
        }
        let d = first.output.d_out();
        for (x, key_bias) in x
            .chunks_mut(ENCODE_CHUNK * s * d)
            .zip(key_bias.chunks(ENCODE_CHUNK * s))
        {
            for layer in &self.layers {
                layer.forward(x, key_bias.len() / s, s, key_bias, parallel);
            }
        }
    }
}
