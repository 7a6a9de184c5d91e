//! Global gradient-norm clipping with a finiteness check.

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
