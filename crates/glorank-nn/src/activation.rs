//! The exact GELU, `0.5 x (1 + erf(x / sqrt 2))`, with vectorised kernels on the CPU.
//!
//! burn's flex backend computes GELU and its gradient one element at a time through the
//! math library's `erff` and `expf`; in a policy training step that was about a fifth of the
//! time (measured by swapping in ReLU, see `docs/notebook/2026-11-30-training-folded-linear-layers-and-a-vectorised-gelu.md`). [`gelu`] computes the same
//! function with [`crate::host::erf_f32`] and [`crate::host::exp_f32`] (straight-line
//! arithmetic that the compiler turns into 8-wide AVX2 code, [`crate::host::with_simd`]) on
//! flex tensors, plain or under autodiff, with a hand-written backward step; on any other
//! backend (ndarray, wgpu) or element type it is burn's own `gelu`. The erf differs from
//! the library's by at most 6e-7, and it is the one the host inference path
//! ([`crate::host`]) already uses, so training and serving on the CPU compute one GELU.

use crate::host::{erf_f32, exp_f32, gelu_f32, with_simd};
use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

/// Elements one task of the parallel kernels handles (a multiple of the vector width).
const CHUNK: usize = 1 << 14;

/// Exact GELU of `x` (any shape; the output has the same shape). Vectorised on flex (see
/// the module docs); burn's `gelu` elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() != DType::F32 {
        return burn::tensor::activation::gelu(x);
    }
    if let Ok(t) = x.clone().try_into_primitive::<Flex>() {
        return Tensor::from_primitive::<Flex>(gelu_flex(&t));
    }
    if let Ok(t) = x.clone().try_into_primitive::<Autodiff<Flex>>() {
        let out = match GeluBackward
            .prepare::<NoCheckpointing>([t.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = t.primitive().clone();
                let out = gelu_flex(&input);
                prep.finish(input, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(gelu_flex(t.primitive())),
        };
        return Tensor::from_primitive::<Autodiff<Flex>>(out);
    }
    burn::tensor::activation::gelu(x)
}

/// The backward step of [`gelu`] on flex: `grad * (Phi(x) + x phi(x))`, with the input as
/// its state.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(parent) = parent {
            grads.register::<Flex>(parent.id, gelu_backward_flex(&ops.state, &grad));
        }
    }
}

/// The elements of an `f32` flex tensor in logical (row-major) order, copied only when its
/// layout is not contiguous.
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// A new contiguous `f32` flex tensor of `like`'s shape whose elements `fill` writes.
fn fill_like(like: &FlexTensor, fill: impl Fn(&mut [f32]) + Sync) -> FlexTensor {
    let mut out = FlexTensor::empty(like.layout().shape().clone(), DType::F32);
    fill(out.storage_mut::<f32>());
    out
}

fn gelu_flex(x: &FlexTensor) -> FlexTensor {
    let x = contiguous(x);
    let xs = x.as_slice::<f32>().expect("contiguous");
    fill_like(&x, |out| {
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(o, v)| {
                with_simd(
                    #[inline(always)]
                    || gelu_forward_slice(v, o),
                )
            });
    })
}

fn gelu_backward_flex(x: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
    let x = contiguous(x);
    let grad = contiguous(grad);
    let xs = x.as_slice::<f32>().expect("contiguous");
    let gs = grad.as_slice::<f32>().expect("contiguous");
    assert_eq!(xs.len(), gs.len(), "GELU gradient of another shape");
    fill_like(&x, |out| {
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
            .for_each(|(o, (v, g))| {
                with_simd(
                    #[inline(always)]
                    || gelu_backward_slice(v, g, o),
                )
            });
    })
}

/// `out[i] = gelu(x[i])`.
#[inline(always)]
pub fn gelu_forward_slice(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu_f32(v);
    }
}

/// `out[i] = grad[i] * gelu'(x[i])`, where `gelu'(x) = Phi(x) + x phi(x)`.
#[inline(always)]
pub fn gelu_backward_slice(x: &[f32], grad: &[f32], out: &mut [f32]) {
    // 1 / sqrt(2 pi)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
        let cdf = 0.5 * (1.0 + erf_f32(v * std::f32::consts::FRAC_1_SQRT_2));
        let pdf = INV_SQRT_2PI * exp_f32(-0.5 * v * v);
        *o = g * (cdf + v * pdf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn sample(n: usize) -> Vec<f32> {
        // Values across GELU's interesting range, both signs, some large.
        (0..n)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 16.0)
            .collect()
    }

    #[test]
    fn forward_matches_burns_gelu_on_flex() {
        let device = Device::flex();
        let values = sample(40_000); // more than one chunk
        let x = Tensor::<2>::from_data(TensorData::new(values.clone(), [200, 200]), &device);
        let ours = gelu(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        // The vectorised kernel ran (its erf is not the library's: some elements differ)...
        let mut kernel = vec![0.0; values.len()];
        gelu_forward_slice(&values, &mut kernel);
        assert_eq!(ours, kernel);
        let burns = burn::tensor::activation::gelu(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_ne!(ours, burns);
        // ...and computes burn's GELU.
        for (a, b) in ours.iter().zip(&burns) {
            assert!((a - b).abs() <= 5e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn a_transposed_input_is_read_in_logical_order() {
        let device = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(sample(6), [2, 3]), &device);
        let t = x.clone().swap_dims(0, 1);
        let ours = gelu(t).into_data().try_to_vec::<f32>().unwrap();
        let expected = gelu(x)
            .swap_dims(0, 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(ours, expected);
    }

    #[test]
    fn gradients_match_burns_gelu_under_autodiff() {
        let device = Device::flex().autodiff();
        let values = sample(3_000);
        let weights: Vec<f32> = (0..3_000).map(|i| (i % 7) as f32 - 3.0).collect();
        let w = Tensor::<1>::from_data(TensorData::new(weights.clone(), [3_000]), &device);
        let grad_of = |ours: bool| {
            let x = Tensor::<1>::from_data(TensorData::new(values.clone(), [3_000]), &device)
                .require_grad();
            let y = if ours {
                gelu(x.clone())
            } else {
                burn::tensor::activation::gelu(x.clone())
            };
            let grads = (y * w.clone()).sum().backward();
            x.grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let (ours, burns) = (grad_of(true), grad_of(false));
        let mut kernel = vec![0.0; values.len()];
        gelu_backward_slice(&values, &weights, &mut kernel);
        assert_eq!(ours, kernel);
        for (a, b) in ours.iter().zip(&burns) {
            assert!((a - b).abs() <= 5e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn an_untracked_autodiff_tensor_gets_values_only() {
        let device = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(sample(10), [10]), &device);
        let plain = gelu(Tensor::<1>::from_data(
            TensorData::new(sample(10), [10]),
            &Device::flex(),
        ));
        assert_eq!(
            gelu(x).into_data().try_to_vec::<f32>().unwrap(),
            plain.into_data().try_to_vec::<f32>().unwrap()
        );
    }
}
