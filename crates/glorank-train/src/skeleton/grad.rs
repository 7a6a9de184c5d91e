//! Global gradient-norm clipping with a finiteness check, and the sum of shard gradients.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Sums the squared gradients of every float parameter.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.total += f64::from(g.powi_scalar(2).sum().into_scalar::<f32>());
        }
    }
}

/// Multiplies every gradient by a constant.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Adds a second set of gradients into the first, parameter by parameter.
struct Accumulate<'a> {
    into: &'a mut GradientsParams,
    from: GradientsParams,
}

impl ModuleVisitor for Accumulate<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let sum = match (
            self.into.remove::<D>(param.id),
            self.from.remove::<D>(param.id),
        ) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        if let Some(g) = sum {
            self.into.register(param.id, g);
        }
    }
}

/// The parameter-wise sum of `parts` (gradients of the same `module`, for example of
/// several row shards of one batch), summed left to right.
pub fn sum_gradients<M: Module>(
    module: &M,
    parts: impl IntoIterator<Item = GradientsParams>,
) -> GradientsParams {
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_default();
    for part in parts {
        module.visit(&mut Accumulate {
            into: &mut total,
            from: part,
        });
    }
    total
}

/// The global L2 norm of `module`'s gradients (over all parameters together, as in
/// `torch.nn.utils.clip_grad_norm_`), and the gradients rescaled so that this norm is at most
/// `max_norm` (`max_norm <= 0` disables clipping). A non-finite norm is returned unchanged so
/// the caller can skip the step.
pub fn clip_global_norm<M: Module>(
    mut grads: GradientsParams,
    module: &M,
    max_norm: f32,
) -> (GradientsParams, f64) {
    let mut sq = SquaredNorm {
        grads: &grads,
        total: 0.0,
    };
    module.visit(&mut sq);
    let norm = sq.total.sqrt();
    if norm.is_finite() && max_norm > 0.0 && norm > f64::from(max_norm) {
        let factor = (f64::from(max_norm) / norm) as f32;
        module.visit(&mut Scale {
            grads: &mut grads,
            factor,
        });
    }
    (grads, norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, Tensor};

    #[test]
    fn summed_shard_gradients_equal_the_whole_batch_gradient() {
        let dev = Device::flex().autodiff();
        let lin: Linear = LinearConfig::new(3, 2).init(&dev);
        let x =
            Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.0, 1.0, -2.0]], &dev);
        let grads = |rows: std::ops::Range<usize>| {
            let loss = lin.forward(x.clone().slice(rows)).powi_scalar(2).sum();
            GradientsParams::from_grads(loss.backward(), &lin)
        };
        let whole = grads(0..3);
        let summed = sum_gradients(&lin, [grads(0..1), grads(1..3)]);
        let (w, s) = (
            whole.get::<2>(lin.weight.id).unwrap().into_data(),
            summed.get::<2>(lin.weight.id).unwrap().into_data(),
        );
        w.assert_approx_eq::<f32>(&s, burn::tensor::Tolerance::absolute(1e-5));
        assert!(summed.get::<1>(lin.bias.as_ref().unwrap().id).is_some());
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let dev = Device::flex().autodiff();
        let lin: Linear = LinearConfig::new(4, 3).init(&dev);
        let x = Tensor::<2>::ones([5, 4], &dev).mul_scalar(10.0);
        let grads = || {
            let loss = lin.forward(x.clone()).sum();
            GradientsParams::from_grads(loss.backward(), &lin)
        };
        let (_, before) = clip_global_norm(grads(), &lin, 0.0);
        assert!(before > 1.0, "norm {before}");
        let (clipped, _) = clip_global_norm(grads(), &lin, 1.0);
        let (_, after) = clip_global_norm(clipped, &lin, 0.0);
        assert!((after - 1.0).abs() < 1e-4, "clipped norm {after}");
    }
}
