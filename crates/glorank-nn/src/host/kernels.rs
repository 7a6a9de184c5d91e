//! The host kernels: strided matrix products on the `gemm` crate, the AVX2 + FMA switch,
//! and the vectorised row operations (dot, axpy, exp, erf, softmax, GELU) the layers use.

use burn::tensor::Tensor;

/// The epsilon of every layer norm in the project (burn's `LayerNormConfig` default).
pub const LAYER_NORM_EPSILON: f32 = 1e-5;

/// Products of at least this much work (`m x n x k`) are split over the rayon threads when
/// the caller allows it. One request's encoder products (101 x 128 x 512 at the default
/// dimensions) stay on one thread: splitting them made batch-1 decoding slower here (greedy
/// p50 5.2-5.4 ms against 4.1-4.3 ms with `RAYON_NUM_THREADS=1`), the threads' hand-offs
/// costing more than the halved product.
pub(super) const PARALLEL_WORK: usize = 1 << 24;

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
    pub(super) fn last(&self, r: usize, c: usize) -> usize {
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
pub(super) fn axpy(out: &mut [f32], w: f32, x: &[f32]) {
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
pub(super) fn softmax_in_place(x: &mut [f32]) {
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
pub(super) fn attention_weights(w: &mut [f32], scale: f32, bias: Option<&[f32]>) {
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
pub(super) fn sum_f32(x: &[f32]) -> f32 {
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
