//! Multi-head attention with an explicit key/value cache, and the pre-LayerNorm encoder and
//! decoder layers built from it. The same modules serve teacher forcing (whole sequences,
//! causal mask) and incremental decoding (one position per step, cached keys and values), so
//! the two paths compute the same function. Every dropout is [`crate::dropout::dropout`].

use crate::activation::gelu;
use crate::dropout::dropout;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

/// Additive bias for masked attention scores (large and finite, so a row never becomes NaN).
pub const MASKED: f32 = -1e9;

/// The additive key mask `[B, 1, 1, S]` of `pad` (`B x S`, row-major, `true` on padding):
/// [`MASKED`] on padded keys, 0 elsewhere, as [`Encoder::forward`] and the decoder's
/// cross-attention read it.
pub fn key_padding_bias(pad: &[bool], b: usize, s: usize, device: &Device) -> Tensor<4> {
    let bias = key_bias(pad);
    Tensor::<4>::from_data(burn::tensor::TensorData::new(bias, [b, 1, 1, s]), device)
}

/// `layer` applied to the last dimension of `x [.., d_in]`, with every leading dimension
/// folded into the rows first: one `[rows, d_in] x [d_in, d_out]` product instead of a
/// batched product that packs the weight again for every batch element (what burn's
/// `Linear::forward` runs for a `[B, T, d]` input whose `T` does not tile). Same values;
/// returns `[.., d_out]`.
pub fn linear_rows<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    if D <= 2 {
        return layer.forward(x);
    }
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = layer.forward(x.reshape([rows, d_in]));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// Multi-head attention: `softmax(q k^T / sqrt(dh) + bias) v` over `heads` heads.
#[derive(Module, Debug)]
pub struct Attention {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) output: Linear,
    pub(crate) heads: usize,
}

impl Attention {
    /// Attention of width `d` with `heads` heads.
    pub fn new(d: usize, heads: usize, device: &Device) -> Self {
        Self {
            query: LinearConfig::new(d, d).init(device),
            key: LinearConfig::new(d, d).init(device),
            value: LinearConfig::new(d, d).init(device),
            output: LinearConfig::new(d, d).init(device),
            heads,
        }
    }

    /// `[B, T, d] -> [B, heads, T, d / heads]`.
    fn split(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, t, d] = x.dims();
        x.reshape([b, t, self.heads, d / self.heads])
            .swap_dims(1, 2)
    }

    /// Projected keys and values of `x [B, T, d]`, each `[B, heads, T, dh]`.
    pub fn keys_values(&self, x: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        (
            self.split(linear_rows(&self.key, x.clone())),
            self.split(linear_rows(&self.value, x)),
        )
    }

    /// Attends queries from `x [B, Tq, d]` to keys/values `[B, heads, Tk, dh]` with an
    /// additive `bias` broadcastable to `[B, heads, Tq, Tk]`; returns `[B, Tq, d]`.
    pub fn attend(
        &self,
        x: Tensor<3>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Option<Tensor<4>>,
    ) -> Tensor<3> {
        self.attend_with_dropout(x, k, v, bias, None)
    }

    /// [`Attention::attend`] with `weights_dropout` applied to the attention weights after
    /// the softmax (as burn's `MultiHeadAttention` does).
    pub fn attend_with_dropout(
        &self,
        x: Tensor<3>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Option<Tensor<4>>,
        weights_dropout: Option<&Dropout>,
    ) -> Tensor<3> {
        let [b, tq, d] = x.dims();
        let q = self.split(linear_rows(&self.query, x));
        let dh = d / self.heads;
        let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f32).sqrt()); // [B, h, Tq, Tk]
        if let Some(bias) = bias {
            scores = scores + bias;
        }
        let mut weights = softmax(scores, 3);
        if let Some(layer) = weights_dropout {
            weights = dropout(layer, weights);
        }
        let ctx = weights.matmul(v); // [B, h, Tq, dh]
        linear_rows(&self.output, ctx.swap_dims(1, 2).reshape([b, tq, d]))
    }
}

/// A pre-LayerNorm decoder layer: causal self-attention, cross-attention to the encoder
/// memory, GELU feed-forward, each with a residual connection.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub(crate) norm_self: LayerNorm,
    pub(crate) self_attn: Attention,
    pub(crate) norm_cross: LayerNorm,
    pub(crate) cross_attn: Attention,
    pub(crate) norm_ff: LayerNorm,
    pub(crate) ff_in: Linear,
    pub(crate) ff_out: Linear,
    pub(crate) dropout: Dropout,
}

/// Per-layer cross-attention keys and values of the encoder memory, `[B, heads, S, dh]`.
#[derive(Debug, Clone)]
pub struct CrossKv {
    /// Keys `[B, heads, S, dh]`.
    pub k: Tensor<4>,
    /// Values `[B, heads, S, dh]`.
    pub v: Tensor<4>,
}

impl DecoderLayer {
    /// A layer of width `d`, `heads` heads, feed-forward width `d_ff`.
    pub fn new(d: usize, heads: usize, d_ff: usize, dropout: f64, device: &Device) -> Self {
        Self {
            norm_self: LayerNormConfig::new(d).init(device),
            self_attn: Attention::new(d, heads, device),
            norm_cross: LayerNormConfig::new(d).init(device),
            cross_attn: Attention::new(d, heads, device),
            norm_ff: LayerNormConfig::new(d).init(device),
            ff_in: LinearConfig::new(d, d_ff).init(device),
            ff_out: LinearConfig::new(d_ff, d).init(device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Cross-attention keys/values of `memory [B, S, d]`.
    pub fn cross_kv(&self, memory: Tensor<3>) -> CrossKv {
        let (k, v) = self.cross_attn.keys_values(memory);
        CrossKv { k, v }
    }

    /// Cross-attention and feed-forward blocks on `x` after its self-attention residual.
    fn tail(&self, x: Tensor<3>, cross: &CrossKv, memory_bias: Tensor<4>) -> Tensor<3> {
        let h = self.norm_cross.forward(x.clone());
        let x = x + dropout(
            &self.dropout,
            self.cross_attn
                .attend(h, cross.k.clone(), cross.v.clone(), Some(memory_bias)),
        );
        let h = self.norm_ff.forward(x.clone());
        let h = linear_rows(&self.ff_out, gelu(linear_rows(&self.ff_in, h)));
        x + dropout(&self.dropout, h)
    }

    /// Whole-sequence forward: `x [B, T, d]` with causal `self_bias [1, 1, T, T]` and
    /// `memory_bias [B, 1, 1, S]`; returns `[B, T, d]`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        cross: &CrossKv,
        self_bias: Tensor<4>,
        memory_bias: Tensor<4>,
    ) -> Tensor<3> {
        let h = self.norm_self.forward(x.clone());
        let (k, v) = self.self_attn.keys_values(h.clone());
        let x = x + dropout(
            &self.dropout,
            self.self_attn.attend(h, k, v, Some(self_bias)),
        );
        self.tail(x, cross, memory_bias)
    }

    /// One incremental step: `x [R, 1, d]`, this layer's cached self-attention keys/values
    /// `[R, heads, t, dh]` (already reordered to the rows' parents; `None` at step 0).
    /// Returns the output `[R, 1, d]` and the cache extended to `t + 1` positions.
    pub fn step(
        &self,
        x: Tensor<3>,
        cache: Option<(Tensor<4>, Tensor<4>)>,
        cross: &CrossKv,
        memory_bias: Tensor<4>,
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let h = self.norm_self.forward(x.clone());
        let (k_new, v_new) = self.self_attn.keys_values(h.clone());
        let (k, v) = match cache {
            Some((k, v)) => (
                Tensor::cat(vec![k, k_new], 2),
                Tensor::cat(vec![v, v_new], 2),
            ),
            None => (k_new, v_new),
        };
        let x = x + dropout(
            &self.dropout,
            self.self_attn.attend(h, k.clone(), v.clone(), None),
        );
        (self.tail(x, cross, memory_bias), (k, v))
    }
}

/// The position-wise feed-forward block of [`EncoderLayer`]: `linear_outer(dropout(gelu(
/// linear_inner(x))))`. Field names match burn's `PositionWiseFeedForward`, so its saved
/// weights load.
#[derive(Module, Debug)]
pub struct FeedForward {
    pub(crate) linear_inner: Linear,
    pub(crate) linear_outer: Linear,
    pub(crate) dropout: Dropout,
}

impl FeedForward {
    /// `d -> d_ff -> d` with `dropout` after the activation.
    pub fn new(d: usize, d_ff: usize, dropout: f64, device: &Device) -> Self {
        Self {
            linear_inner: LinearConfig::new(d, d_ff).init(device),
            linear_outer: LinearConfig::new(d_ff, d).init(device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// `[.., d] -> [.., d]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let h = gelu(linear_rows(&self.linear_inner, x));
        linear_rows(&self.linear_outer, dropout(&self.dropout, h))
    }
}

/// A pre-LayerNorm encoder layer: self-attention (dropout on its weights and its output),
/// then the feed-forward block (dropout inside and on its output), each with a residual
/// connection. It computes what burn's `TransformerEncoderLayer` with `norm_first` computes,
/// with the same parameter names (`mha`, `pwff`, `norm_1`, `norm_2`), so weights saved from
/// one load into the other; the dropout masks come from [`crate::dropout`] instead of burn's
/// per-element draws.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub(crate) mha: Attention,
    pub(crate) pwff: FeedForward,
    pub(crate) norm_1: LayerNorm,
    pub(crate) norm_2: LayerNorm,
    pub(crate) dropout: Dropout,
}

impl EncoderLayer {
    /// A layer of width `d`, `heads` heads, feed-forward width `d_ff`.
    pub fn new(d: usize, heads: usize, d_ff: usize, dropout: f64, device: &Device) -> Self {
        Self {
            mha: Attention::new(d, heads, device),
            pwff: FeedForward::new(d, d_ff, dropout, device),
            norm_1: LayerNormConfig::new(d).init(device),
            norm_2: LayerNormConfig::new(d).init(device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// `x [B, S, d]` with the additive key mask `key_bias [B, 1, 1, S]` ([`MASKED`] on
    /// padding, 0 elsewhere); returns `[B, S, d]`.
    pub fn forward(&self, x: Tensor<3>, key_bias: Tensor<4>) -> Tensor<3> {
        let h = self.norm_2.forward(x.clone());
        let (k, v) = self.mha.keys_values(h.clone());
        let attended = self
            .mha
            .attend_with_dropout(h, k, v, Some(key_bias), Some(&self.dropout));
        let x = x + dropout(&self.dropout, attended);
        let h = self.pwff.forward(self.norm_1.forward(x.clone()));
        x + dropout(&self.dropout, h)
    }
}

/// A stack of [`EncoderLayer`]s (no final norm), with burn's `TransformerEncoder` parameter
/// names (`layers.N...`).
#[derive(Module, Debug)]
pub struct Encoder {
    pub(crate) layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// `layers` layers of width `d`, `heads` heads, feed-forward width `d_ff`.
    pub fn new(
        d: usize,
        heads: usize,
        d_ff: usize,
        layers: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        Self {
            layers: (0..layers)
                .map(|_| EncoderLayer::new(d, heads, d_ff, dropout, device))
                .collect(),
        }
    }

    /// `x [B, S, d]`, `key_bias [B, 1, 1, S]`; returns `[B, S, d]`.
    pub fn forward(&self, x: Tensor<3>, key_bias: Tensor<4>) -> Tensor<3> {
        self.layers
            .iter()
            .fold(x, |x, layer| layer.forward(x, key_bias.clone()))
    }
}

/// The additive key mask `[b, s]` of `pad` (`true` on padding): [`MASKED`] or 0.
pub fn key_bias(pad: &[bool]) -> Vec<f32> {
    pad.iter().map(|&p| if p { MASKED } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderInput};
    use burn::tensor::{Bool, Distribution, TensorData};

    /// Weights saved from burn's pre-norm `TransformerEncoder` load into [`Encoder`] by name,
    /// and both compute the same function with padding masked.
    #[test]
    fn burn_encoder_weights_load_and_compute_the_same() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("encoder.bpk");
        let burn_encoder = TransformerEncoderConfig::new(16, 32, 4, 2)
            .with_norm_first(true)
            .init(&device);
        crate::persist::save_weights(&burn_encoder, &path).unwrap();
        let ours =
            crate::persist::load_weights(Encoder::new(16, 4, 32, 2, 0.1, &device), &path).unwrap();
        let x = Tensor::<3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &device);
        let pad = vec![
            false, false, false, true, true, // the first sequence has 3 positions
            false, false, false, false, false,
        ];
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [2, 5]), &device);
        let bias = key_padding_bias(&pad, 2, 5, &device);
        let expected = burn_encoder.forward(TransformerEncoderInput::new(x.clone()).mask_pad(mask));
        let got = ours.forward(x, bias);
        // Padded positions are outputs nobody reads, but they are computed alike too.
        got.into_data().assert_approx_eq::<f32>(
            &expected.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
    }
}
