//! The host decoder: key/value caches written in place, the cross-attention memory and the
//! decoder layer's incremental step.

use super::*;
use crate::layers::DecoderLayer;

/// The self-attention keys and values of one decoder layer for a batch of rows decoding
/// incrementally. Per row: the keys transposed `[d, capacity]` (position `p` of feature `i`
/// at `i * capacity + p`, so one query's scores over the positions are vector operations
/// along a row), then the values `[capacity, d]`. Written in place, one position per step.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub(super) data: Vec<f32>,
    pub(super) rows: usize,
    pub(super) capacity: usize,
    pub(super) d: usize,
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
    pub(super) fn stride(&self) -> usize {
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
    pub(super) keys_t: Vec<f32>,
    pub(super) values: Vec<f32>,
    pub(super) s: usize,
}

/// Adds to `scores [len]` the products of `q [dh]` with the transposed keys `keys_t` (rows of
/// stride `stride`, one per feature, `len` positions each): `scores[p] += q . k_p`. Vector
/// operations along the positions, no horizontal sums.
#[inline(always)]
pub(super) fn scores_t(scores: &mut [f32], q: &[f32], keys_t: &[f32], stride: usize) {
    let len = scores.len();
    for (i, &qi) in q.iter().enumerate() {
        axpy(scores, qi, &keys_t[i * stride..i * stride + len]);
    }
}

/// The keys and values one query row attends to: keys transposed (feature `i` of position
/// `p` at `keys_t[i * stride + p]`), values `[len, d]` row-major.
pub(super) struct Positions<'a> {
    pub(super) keys_t: &'a [f32],
    pub(super) stride: usize,
    pub(super) values: &'a [f32],
    pub(super) len: usize,
}

impl Positions<'_> {
    /// Adds to `out [d]` the attention of query `q [d]` over the positions for every head:
    /// `softmax(q_h k_h / sqrt(dh) + bias) v_h`. `w` is scratch of at least `len` values.
    #[inline(always)]
    pub(super) fn attend(
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
    pub(super) norm_self: HostLayerNorm,
    /// Self-attention query, key and value side by side (`d -> 3d`).
    pub(super) self_qkv: HostLinear,
    pub(super) self_out: HostLinear,
    pub(super) norm_cross: HostLayerNorm,
    pub(super) cross_q: HostLinear,
    /// Cross-attention key and value side by side (`d -> 2d`).
    pub(super) cross_kv: HostLinear,
    pub(super) cross_out: HostLinear,
    pub(super) ff: HostFeedForward,
    pub(super) heads: usize,
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
    pub(super) fn step_simd(
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
