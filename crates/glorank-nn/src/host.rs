//! Inference of the [`crate::layers`] modules on the host CPU, from plain row-major `f32`
//! buffers, without the tensor library.
//!
//! burn executes a model one operation at a time: every `Linear`, reshape, softmax or
//! residual add is a dispatch, an allocation and, at the sizes of a decoding step (one row of
//! width 128 per request), a few microseconds of overhead against well under a microsecond of
//! arithmetic. This module computes the same functions with the `gemm` crate's kernels (the
//! ones burn's `flex` backend calls) for the products and fused loops for everything else:
//! fused query/key/value projections, attention over a key/value cache written in place, and
//! the layer norm, GELU and residuals applied in one pass over each row.
//!
//! The weights are copied out of the burn modules once ([`HostEncoder::new`],
//! [`HostDecoderLayer::new`], ...); the results equal the burn forward passes up to
//! floating-point rounding (the tests compare them). Dropout is the identity here: these are
//! inference paths.

use crate::layers::{Attention, DecoderLayer, Encoder, EncoderLayer, MASKED};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

/// The epsilon of every layer norm in the project (burn's `LayerNormConfig` default).
pub const LAYER_NORM_EPSILON: f32 = 1e-5;

/// Products of at least this much work (`m x n x k`) are split over the rayon threads when
/// the caller allows it. One request's encoder products (101 x 128 x 512 at the default
/// dimensions) stay on one thread: splitting them made batch-1 decoding slower here (greedy
/// p50 5.2-5.4 ms against 4.1-4.3 ms with `RAYON_NUM_THREADS=1`), the threads' hand-offs
/// costing more than the halved product.
const PARALLEL_WORK: usize = 1 << 24;

/// The values of a tensor, row-major, as `f32`.
pub fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_else(|e| unreachable!("an f32 tensor converts to f32 values: {e:?}"))
}

/// A strided matrix operand: element `(i, j)` at `data[offset + i * row + j * col]`.
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a> {
    /// The buffer.
    pub data: &'a [f32],
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Distance between rows.
    pub row: usize,
    /// Distance between columns.
    pub col: usize,
}

impl<'a> Strided<'a> {
    /// A dense row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            offset: 0,
            row: cols,
            col: 1,
        }
    }

    /// The same elements read as the transpose.
    pub fn t(self) -> Self {
        Self {
            row: self.col,
            col: self.row,
            ..self
        }
    }

    /// Largest index read by an `r x c` matrix of this layout.
    fn last(&self, r: usize, c: usize) -> usize {
        self.offset + (r.max(1) - 1) * self.row + (c.max(1) - 1) * self.col
    }
}

/// `out[m x n] (+)= a[m x k] . b[k x n]`, `out` row-major with row stride `out_row`
/// starting at `out_offset`; with `accumulate` the product is added to `out`'s values.
/// `parallel` lets large products use the rayon threads.
///
/// # Panics
/// When an operand's layout reads outside its buffer.
#[allow(clippy::too_many_arguments, unsafe_code)]
pub fn matmul_strided(
    out: &mut [f32],
    out_offset: usize,
    out_row: usize,
    a: Strided<'_>,
    b: Strided<'_>,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                out[out_offset + i * out_row..][..n].fill(0.0);
            }
        }
        return;
    }
    assert!(a.last(m, k) < a.data.len(), "left operand out of bounds");
    assert!(b.last(k, n) < b.data.len(), "right operand out of bounds");
    assert!(
        out_offset + (m - 1) * out_row + n <= out.len(),
        "output out of bounds"
    );
    let parallelism = if parallel && m * n * k >= PARALLEL_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every element the kernel reads or writes inside its
    // buffer; `out` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr().add(out_offset),
            1,
            out_row as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.col as isize,
            a.row as isize,
            b.data.as_ptr().add(b.offset),
            b.col as isize,
            b.row as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `out[m x n] (+)= a[m x k] . b[k x n]`, all dense row-major.
pub fn matmul(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    parallel: bool,
) {
    matmul_strided(
        out,
        0,
        n,
        Strided::rows(a, k),
        Strided::rows(b, n),
        (m, k, n),
        accumulate,
        parallel,
    );
}

/// Runs `f` compiled for AVX2 and FMA when the CPU has them, so that the loops it inlines
/// use 8-wide vectors; else runs it as built (the portable x86-64 baseline has 4-wide SSE2
/// only). Give it an `#[inline(always)]` closure whose callees are `inline(always)` too (as
/// this module's helpers are): code that is not inlined keeps the baseline instructions.
/// `gemm` dispatches its own kernels.
#[inline(always)]
#[allow(unsafe_code)]
pub fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        fn v3<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has the features `v3` is compiled for (detected just above).
        return unsafe { v3(f) };
    }
    f()
}

/// The dot product of two equally long slices, summed in eight lanes (which the compiler
/// turns into vector instructions).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// `out += w * x`, elementwise.
#[inline(always)]
fn axpy(out: &mut [f32], w: f32, x: &[f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += w * v;
    }
}

/// `e^x` for `f32`, within about 2 ulp for `x` in `[-87.3, 88.3]` (clamped there: the
/// result stays a normal number), in straight-line arithmetic that vectorises (the library
/// `expf` is a call per element). Range reduction `x = n ln 2 + r` with `|r| <= ln 2 / 2`
/// (`n` rounded by the `1.5 x 2^23` shift, so no float-to-integer conversion), a degree-6
/// Taylor polynomial of `e^r`, and `2^n` written into the exponent bits.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const SHIFT: f32 = 12_582_912.0; // 1.5 x 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * std::f32::consts::LOG2_E + SHIFT;
    let n = shifted - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The shifted value's low mantissa bits hold n + 2^22; n + 127 is the biased exponent.
    let biased = (shifted.to_bits() & 0x007f_ffff)
        .wrapping_sub(0x0040_0000)
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// `erf(x)` for `f32` (Abramowitz and Stegun 7.1.26: absolute error below 1.5e-7 in exact
/// arithmetic, below 6e-7 in `f32`, tested), in arithmetic that vectorises.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp_f32(-a * a);
    y.copysign(x)
}

/// In-place softmax of one row of scores.
#[inline(always)]
fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v = exp_f32(*v - max);
    }
    let sum = sum_f32(x);
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Attention weights in place: scores over `sqrt(dh)` (`scale`), plus the additive `bias`
/// when given, then the softmax.
#[inline(always)]
fn attention_weights(w: &mut [f32], scale: f32, bias: Option<&[f32]>) {
    match bias {
        Some(bias) => {
            for (v, m) in w.iter_mut().zip(bias) {
                *v = *v / scale + m;
            }
        }
        None => w.iter_mut().for_each(|v| *v /= scale),
    }
    softmax_in_place(w);
}

/// The sum of a slice in eight lanes.
#[inline(always)]
fn sum_f32(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (x8, rest) = x.split_at(x.len() / 8 * 8);
    for c in x8.chunks_exact(8) {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// GELU of one value, `0.5 x (1 + erf(x / sqrt 2))` (what burn's exact `gelu` computes,
/// with [`erf_f32`]'s erf).
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// [`gelu_f32`] in place.
#[inline(always)]
pub fn gelu_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = gelu_f32(*v);
    }
}

/// A [`Linear`] layer on the host: `y = x W + b`.
#[derive(Debug, Clone)]
pub struct HostLinear {
    /// Weight `[d_in, d_out]`, row-major.
    weight: Vec<f32>,
    /// Bias `[d_out]` (zeros when the layer has none).
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
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
const FEW_ROWS: usize = 1;

/// A [`LayerNorm`] on the host.
#[derive(Debug, Clone)]
pub struct HostLayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
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
struct HostFeedForward {
    norm: HostLayerNorm,
    inner: HostLinear,
    outer: HostLinear,
}

impl HostFeedForward {
    /// A copy of the block's norm and its two linear layers.
    fn new(norm: &LayerNorm, inner: &Linear, outer: &Linear) -> Self {
        Self {
            norm: HostLayerNorm::new(norm),
            inner: HostLinear::new(inner),
            outer: HostLinear::new(outer),
        }
    }

    /// Adds the block's output to `x [rows, d]`.
    #[inline(always)]
    fn add_to(&self, x: &mut [f32], rows: usize, parallel: bool) {
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
    qkv: HostLinear,
    output: HostLinear,
    norm_attn: HostLayerNorm,
    ff: HostFeedForward,
    heads: usize,
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
    fn forward_simd(&self, x: &mut [f32], b: usize, s: usize, key_bias: &[f32], parallel: bool) {
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
fn qkv(a: &Attention) -> HostLinear {
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
    layers: Vec<HostEncoderLayer>,
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

/// The additive key mask `[b, s]` of `pad` (`true` on padding): [`MASKED`] or 0.
pub fn key_bias(pad: &[bool]) -> Vec<f32> {
    pad.iter().map(|&p| if p { MASKED } else { 0.0 }).collect()
}

/// The self-attention keys and values of one decoder layer for a batch of rows decoding
/// incrementally. Per row: the keys transposed `[d, capacity]` (position `p` of feature `i`
/// at `i * capacity + p`, so one query's scores over the positions are vector operations
/// along a row), then the values `[capacity, d]`. Written in place, one position per step.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    data: Vec<f32>,
    rows: usize,
    capacity: usize,
    d: usize,
}

impl KvCache {
    /// An empty cache for `rows` rows of up to `capacity` positions of width `d`.
    pub fn new(rows: usize, capacity: usize, d: usize) -> Self {
        Self {
            data: vec![0.0; rows * capacity * 2 * d],
            rows,
            capacity,
            d,
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    fn stride(&self) -> usize {
        2 * self.capacity * self.d
    }

    /// Makes new row `r` a copy of old row `parents[r]` (beam search reorders and
    /// duplicates rows between steps).
    pub fn reorder(&mut self, parents: &[u32]) {
        let stride = self.stride();
        let mut data = vec![0.0; parents.len() * stride];
        for (row, &p) in data.chunks_exact_mut(stride).zip(parents) {
            let from = p as usize * stride;
            row.copy_from_slice(&self.data[from..from + stride]);
        }
        self.data = data;
        self.rows = parents.len();
    }
}

/// Cross-attention keys and values of a batch's encoder memory for [`HostDecoderLayer::step`]:
/// per request the keys transposed `[d, s]`, and the values `[s, d]`.
#[derive(Debug, Clone)]
pub struct CrossMemory {
    keys_t: Vec<f32>,
    values: Vec<f32>,
    s: usize,
}

/// Adds to `scores [len]` the products of `q [dh]` with the transposed keys `keys_t` (rows of
/// stride `stride`, one per feature, `len` positions each): `scores[p] += q . k_p`. Vector
/// operations along the positions, no horizontal sums.
#[inline(always)]
fn scores_t(scores: &mut [f32], q: &[f32], keys_t: &[f32], stride: usize) {
    let len = scores.len();
    for (i, &qi) in q.iter().enumerate() {
        axpy(scores, qi, &keys_t[i * stride..i * stride + len]);
    }
}

/// The keys and values one query row attends to: keys transposed (feature `i` of position
/// `p` at `keys_t[i * stride + p]`), values `[len, d]` row-major.
struct Positions<'a> {
    keys_t: &'a [f32],
    stride: usize,
    values: &'a [f32],
    len: usize,
}

impl Positions<'_> {
    /// Adds to `out [d]` the attention of query `q [d]` over the positions for every head:
    /// `softmax(q_h k_h / sqrt(dh) + bias) v_h`. `w` is scratch of at least `len` values.
    #[inline(always)]
    fn attend(
        &self,
        q: &[f32],
        bias: Option<&[f32]>,
        heads: usize,
        w: &mut [f32],
        out: &mut [f32],
    ) {
        let d = q.len();
        let dh = d / heads;
        let scale = (dh as f32).sqrt();
        let w = &mut w[..self.len];
        for head in 0..heads {
            w.fill(0.0);
            let hs = head * dh..(head + 1) * dh;
            scores_t(
                w,
                &q[hs.clone()],
                &self.keys_t[head * dh * self.stride..],
                self.stride,
            );
            attention_weights(w, scale, bias);
            for (p, &wp) in w.iter().enumerate() {
                axpy(
                    &mut out[hs.clone()],
                    wp,
                    &self.values[p * d + hs.start..p * d + hs.end],
                );
            }
        }
    }
}

/// One decoder layer ([`DecoderLayer`]) on the host, for incremental decoding.
#[derive(Debug, Clone)]
pub struct HostDecoderLayer {
    norm_self: HostLayerNorm,
    /// Self-attention query, key and value side by side (`d -> 3d`).
    self_qkv: HostLinear,
    self_out: HostLinear,
    norm_cross: HostLayerNorm,
    cross_q: HostLinear,
    /// Cross-attention key and value side by side (`d -> 2d`).
    cross_kv: HostLinear,
    cross_out: HostLinear,
    ff: HostFeedForward,
    heads: usize,
}

impl HostDecoderLayer {
    /// A copy of `layer`'s weights.
    pub fn new(layer: &DecoderLayer) -> Self {
        let c = &layer.cross_attn;
        Self {
            norm_self: HostLayerNorm::new(&layer.norm_self),
            self_qkv: qkv(&layer.self_attn),
            self_out: HostLinear::new(&layer.self_attn.output),
            norm_cross: HostLayerNorm::new(&layer.norm_cross),
            cross_q: HostLinear::new(&c.query),
            cross_kv: HostLinear::concat(&[HostLinear::new(&c.key), HostLinear::new(&c.value)]),
            cross_out: HostLinear::new(&c.output),
            ff: HostFeedForward::new(&layer.norm_ff, &layer.ff_in, &layer.ff_out),
            heads: layer.self_attn.heads,
        }
    }

    /// Cross-attention keys and values of `memory [b, s, d]`.
    pub fn cross_memory(&self, memory: &[f32], b: usize, s: usize, parallel: bool) -> CrossMemory {
        let d = self.cross_out.d_out();
        let kv = self.cross_kv.forward(memory, b * s, parallel);
        let mut keys_t = vec![0.0; b * d * s];
        let mut values = vec![0.0; b * s * d];
        for r in 0..b {
            for p in 0..s {
                let row = &kv[(r * s + p) * 2 * d..(r * s + p + 1) * 2 * d];
                for (i, &k) in row[..d].iter().enumerate() {
                    keys_t[(r * d + i) * s + p] = k;
                }
                values[(r * s + p) * d..(r * s + p + 1) * d].copy_from_slice(&row[d..]);
            }
        }
        CrossMemory { keys_t, values, s }
    }

    /// One incremental step at position `t` for `x [rows, d]` (in place). Row `r` attends to
    /// its own cached positions `0..t` and the new one, which is written to `cache`, and to
    /// the memory positions of request `requests[r]` in `cross` (from
    /// [`HostDecoderLayer::cross_memory`]) under the additive `memory_bias [b, s]`.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        x: &mut [f32],
        t: usize,
        cache: &mut KvCache,
        cross: &CrossMemory,
        memory_bias: &[f32],
        requests: &[u32],
        parallel: bool,
    ) {
        with_simd(
            #[inline(always)]
            || self.step_simd(x, t, cache, cross, memory_bias, requests, parallel),
        );
    }

    /// [`HostDecoderLayer::step`]'s body (inlined into [`with_simd`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn step_simd(
        &self,
        x: &mut [f32],
        t: usize,
        cache: &mut KvCache,
        cross: &CrossMemory,
        memory_bias: &[f32],
        requests: &[u32],
        parallel: bool,
    ) {
        let d = self.self_out.d_out();
        let rows = requests.len();
        assert!(
            cache.rows == rows && t < cache.capacity && cache.d == d,
            "cache of the wrong shape"
        );
        let (s, cap) = (cross.s, cache.capacity);
        let h = self.norm_self.forward(x);
        let qkv = self.self_qkv.forward(&h, rows, parallel);
        let stride = cache.stride();
        let mut ctx = vec![0.0; rows * d];
        let mut w = vec![0.0; cap.max(s)];
        for r in 0..rows {
            let row = &qkv[r * 3 * d..(r + 1) * 3 * d];
            let (keys_t, values) = cache.data[r * stride..(r + 1) * stride].split_at_mut(cap * d);
            for (i, &k) in row[d..2 * d].iter().enumerate() {
                keys_t[i * cap + t] = k;
            }
            values[t * d..(t + 1) * d].copy_from_slice(&row[2 * d..]);
            let keys = Positions {
                keys_t,
                stride: cap,
                values,
                len: t + 1,
            };
            keys.attend(
                &row[..d],
                None,
                self.heads,
                &mut w,
                &mut ctx[r * d..(r + 1) * d],
            );
        }
        self.self_out.forward_add(&ctx, rows, x, parallel);
        let h = self.norm_cross.forward(x);
        let q = self.cross_q.forward(&h, rows, parallel);
        ctx.fill(0.0);
        for (r, &req) in requests.iter().enumerate() {
            let req = req as usize;
            let keys_t = &cross.keys_t[req * d * s..(req + 1) * d * s];
            let values = &cross.values[req * s * d..(req + 1) * s * d];
            let bias = &memory_bias[req * s..(req + 1) * s];
            let memory = Positions {
                keys_t,
                stride: s,
                values,
                len: s,
            };
            let out = &mut ctx[r * d..(r + 1) * d];
            memory.attend(&q[r * d..(r + 1) * d], Some(bias), self.heads, &mut w, out);
        }
        self.cross_out.forward_add(&ctx, rows, x, parallel);
        self.ff.add_to(x, rows, parallel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{CrossKv, key_padding_bias};
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "element {i}: {x} against {y}");
        }
    }

    #[test]
    fn vectorisable_exp_and_erf_are_accurate() {
        let mut worst_exp = 0.0f64;
        let mut worst_erf = 0.0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.004_3;
            let e = f64::from(exp_f32(x));
            let want = f64::from(x).exp();
            worst_exp = worst_exp.max((e - want).abs() / want);
            let got = f64::from(erf_f32(x));
            worst_erf = worst_erf.max((got - f64::from(libm::erff(x))).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
        assert!(worst_erf < 6e-7, "erf absolute error {worst_erf}");
        assert!(exp_f32(-200.0) < 1.3e-38 && exp_f32(-200.0) > 0.0 && exp_f32(0.0) == 1.0);
        assert!((exp_f32(88.0) / 88f32.exp() - 1.0).abs() < 1e-6);
        assert!(exp_f32(f32::MAX).is_finite());
    }

    #[test]
    fn strided_products_match_a_naive_product() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        // b is stored as [n, k] and read transposed.
        let mut out = vec![1.0; m * n];
        matmul_strided(
            &mut out,
            0,
            n,
            Strided::rows(&a, k),
            Strided::rows(&b, k).t(),
            (m, k, n),
            true,
            false,
        );
        for i in 0..m {
            for j in 0..n {
                let want = 1.0 + (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum::<f32>();
                assert!((out[i * n + j] - want).abs() < 1e-5);
            }
        }
        assert!((dot(&a[..11], &b[..11]) - (0..11).map(|i| a[i] * b[i]).sum::<f32>()).abs() < 1e-5);
    }

    /// The host encoder against [`Encoder::forward`] on `b` random sequences of `s`
    /// positions, width `d`, padding `pad`.
    fn check_encoder(encoder: &Encoder, (b, s, d): (usize, usize, usize), pad: &[bool]) {
        let device = Device::flex();
        let x = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device);
        let want = to_vec(encoder.forward(x.clone(), key_padding_bias(pad, b, s, &device)));
        let mut got = to_vec(x);
        HostEncoder::new(encoder).forward(&mut got, b, s, &key_bias(pad), true);
        close(&got, &want, 1e-4);
    }

    /// The host encoder computes what [`Encoder::forward`] computes, padding masked, also
    /// over more sequences than one chunk ([`ENCODE_CHUNK`]).
    #[test]
    fn host_encoder_matches_burn() {
        let device = Device::flex();
        let pad = [
            false, false, false, true, true, false, false, false, false, false,
        ];
        check_encoder(&Encoder::new(16, 4, 32, 2, 0.1, &device), (2, 5, 16), &pad);
        let (b, s) = (ENCODE_CHUNK + 3, 4);
        let pad: Vec<bool> = (0..b * s).map(|i| i % s >= s - i / s % 2).collect();
        check_encoder(&Encoder::new(8, 2, 16, 2, 0.0, &device), (b, s, 8), &pad);
    }

    /// Incremental host steps compute what [`DecoderLayer::step`] computes, with rows that
    /// read different requests' memories.
    #[test]
    fn host_decoder_steps_match_burn() {
        let device = Device::flex();
        let (d, heads, s) = (16, 4, 6);
        let layer = DecoderLayer::new(d, heads, 24, 0.1, &device);
        let host = HostDecoderLayer::new(&layer);
        let memory = Tensor::<3>::random([2, s, d], Distribution::Normal(0.0, 1.0), &device);
        let pad = vec![
            false, false, false, false, true, true, false, false, false, false, false, false,
        ];
        let bias = key_padding_bias(&pad, 2, s, &device);
        // Three rows: requests 1, 0, 1.
        let requests = [1u32, 0, 1];
        let idx = Tensor::<1, burn::tensor::Int>::from_data(
            TensorData::new(vec![1i64, 0, 1], [3]),
            &device,
        );
        let kv = layer.cross_kv(memory.clone());
        let rows_kv = CrossKv {
            k: kv.k.select(0, idx.clone()),
            v: kv.v.select(0, idx.clone()),
        };
        let rows_bias = bias.select(0, idx);
        let cross = host.cross_memory(&to_vec(memory.clone()), 2, s, false);
        let mut cache = KvCache::new(3, 4, d);
        let mut burn_cache = None;
        for t in 0..4 {
            let x = Tensor::<3>::random([3, 1, d], Distribution::Normal(0.0, 1.0), &device);
            let (y, c) = layer.step(x.clone(), burn_cache, &rows_kv, rows_bias.clone());
            burn_cache = Some(c);
            let mut got = to_vec(x);
            host.step(
                &mut got,
                t,
                &mut cache,
                &cross,
                &key_bias(&pad),
                &requests,
                false,
            );
            y.into_data().assert_approx_eq::<f32>(
                &TensorData::new(got, [3, 1, d]),
                Tolerance::absolute(1e-4),
            );
        }
    }

    #[test]
    fn reordering_the_cache_copies_the_parents_rows() {
        let mut cache = KvCache::new(2, 3, 1);
        cache.data = (0..12).map(|i| i as f32).collect();
        cache.reorder(&[1, 1, 0]);
        assert_eq!(cache.rows(), 3);
        assert_eq!(&cache.data[..6], &[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(&cache.data[6..12], &[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(&cache.data[12..], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn linear_concatenation_and_layer_norm_match_burn() {
        let device = Device::flex();
        let a = burn::nn::LinearConfig::new(8, 5).init(&device);
        let b = burn::nn::LinearConfig::new(8, 3).init(&device);
        let x = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
        let both = HostLinear::concat(&[HostLinear::new(&a), HostLinear::new(&b)]);
        let got = both.forward(&to_vec(x.clone()), 4, false);
        let (ya, yb) = (to_vec(a.forward(x.clone())), to_vec(b.forward(x.clone())));
        for r in 0..4 {
            close(&got[r * 8..r * 8 + 5], &ya[r * 5..(r + 1) * 5], 1e-5);
            close(&got[r * 8 + 5..(r + 1) * 8], &yb[r * 3..(r + 1) * 3], 1e-5);
        }
        // One row takes the pass-per-row path instead of gemm.
        let one = both.forward(&to_vec(x.clone())[8..16], 1, false);
        close(&one, &got[8..16], 1e-5);
        let norm = burn::nn::LayerNormConfig::new(8).init(&device);
        close(
            &HostLayerNorm::new(&norm).forward(&to_vec(x.clone())),
            &to_vec(norm.forward(x)),
            1e-5,
        );
    }
}
