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

mod decoder;
mod kernels;
mod layers;

pub use crate::layers::key_bias;
pub use decoder::*;
pub use kernels::*;
pub use layers::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{CrossKv, DecoderLayer, Encoder, key_padding_bias};
    use burn::tensor::{Device, Distribution, Tensor, TensorData, Tolerance};

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
