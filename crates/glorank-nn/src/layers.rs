//! Multi-head attention with an explicit key/value cache, and the pre-LayerNorm decoder
//! layer built from it. The same modules serve teacher forcing (whole sequences, causal mask)
//! and incremental decoding (one position per step, cached keys and values), so the two
//! paths compute the same function.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Tensor};

/// Additive bias for masked attention scores (large and finite, so a row never becomes NaN).
pub const MASKED: f32 = -1e9;

/// Multi-head attention: `softmax(q k^T / sqrt(dh) + bias) v` over `heads` heads.
#[derive(Module, Debug)]
pub struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    heads: usize,
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
            self.split(self.key.forward(x.clone())),
            self.split(self.value.forward(x)),
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
        let [b, tq, d] = x.dims();
        let q = self.split(self.query.forward(x));
        let dh = d / self.heads;
        let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f32).sqrt()); // [B, h, Tq, Tk]
        if let Some(bias) = bias {
            scores = scores + bias;
        }
        let ctx = softmax(scores, 3).matmul(v); // [B, h, Tq, dh]
        self.output.forward(ctx.swap_dims(1, 2).reshape([b, tq, d]))
    }
}

/// A pre-LayerNorm decoder layer: causal self-attention, cross-attention to the encoder
/// memory, GELU feed-forward, each with a residual connection.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    norm_self: LayerNorm,
    self_attn: Attention,
    norm_cross: LayerNorm,
    cross_attn: Attention,
    norm_ff: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
    dropout: Dropout,
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
        let x = x + self.dropout.forward(self.cross_attn.attend(
            h,
            cross.k.clone(),
            cross.v.clone(),
            Some(memory_bias),
        ));
        let h = self.norm_ff.forward(x.clone());
        let h = self.ff_out.forward(gelu(self.ff_in.forward(h)));
        x + self.dropout.forward(h)
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
        let x = x + self
            .dropout
            .forward(self.self_attn.attend(h, k, v, Some(self_bias)));
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
        let x = x + self
            .dropout
            .forward(self.self_attn.attend(h, k.clone(), v.clone(), None));
        (self.tail(x, cross, memory_bias), (k, v))
    }
}
