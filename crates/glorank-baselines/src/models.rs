//! The neural baselines: PRM, DLCM and the Seq2Slate pointer network, over a shared item and
//! user encoding (item-ID embedding + content projection; user = attribute embeddings + the
//! mean of the history's item embeddings).

use crate::inputs::{Batch, Features};
use burn::module::{Module, Param};
use burn::nn::gru::{Gru, GruConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// Draws a candidate position from unnormalised probabilities (0 for chosen items).
pub type Sampler<'a> = dyn FnMut(&[f32]) -> usize + 'a;

/// Logit of a forbidden choice.
const MASKED: f32 = -1.0e9;

/// Item and user encoding shared (as code, not weights) by every baseline.
#[derive(Module, Debug)]
pub struct Encoding {
    item: Embedding,
    content: Option<Linear>,
    /// Projection of the candidate's side features: retriever features and exposure count
    /// (when the features carry any).
    score: Option<Linear>,
    user_fields: Vec<Embedding>,
    user_proj: Linear,
    /// Factor the user attribute embeddings are read with (1 unless
    /// [`Encoding::with_user_scale`] set it).
    #[module(skip)]
    user_scale: f32,
}

impl Encoding {
    /// Embeddings of width `d` for the items and users described by `f`.
    pub fn new(f: &Features, d: usize, device: &Device) -> Self {
        Self {
            item: EmbeddingConfig::new(f.items.max(1), d).init(device),
            content: (f.dim > 0).then(|| LinearConfig::new(f.dim, d).init(device)),
            score: (f.side_width() > 0).then(|| LinearConfig::new(f.side_width(), d).init(device)),
            user_fields: f
                .user_field_sizes
                .iter()
                .map(|&k| EmbeddingConfig::new(k.max(1), d).init(device))
                .collect(),
            user_proj: LinearConfig::new(d, d).init(device),
            user_scale: 1.0,
        }
    }

    /// Zeroes the user attribute tables (user ID included) and reads them multiplied by
    /// `scale`, so under Adam they learn about `scale` times faster than the other weights:
    /// the policy's `user_lr_scale` (`glorank_nn::ContextEmbedder::with_user_scale`). A
    /// `scale` of 0 means off and returns the encoding unchanged.
    pub fn with_user_scale(mut self, scale: f32) -> Self {
        if scale == 0.0 {
            return self;
        }
        self.user_fields = self
            .user_fields
            .into_iter()
            // Fresh zero tables (as `ContextEmbedder::with_user_scale`): a mapped weight would
            // lose its gradient flag on an autodiff device.
            .map(|e| {
                let [rows, d] = e.weight.dims();
                EmbeddingConfig::new(rows, d)
                    .with_initializer(burn::nn::Initializer::Zeros)
                    .init(&e.weight.device())
            })
            .collect();
        self.user_scale = scale;
        self
    }

    /// The encoding with the ID-embedding rows of the items not flagged in `seen` set to
    /// zero: an item the model never met in training is then encoded by its content alone,
    /// as GloRank's zero-initialised item table encodes it, rather than by its random
    /// initial row.
    pub fn forget_unseen(mut self, seen: &[bool]) -> Self {
        let mask: Vec<f32> = seen.iter().map(|&s| f32::from(u8::from(s))).collect();
        self.item.weight = self.item.weight.map(|w| {
            let [n, _] = w.dims();
            let m = Tensor::<1>::from_data(TensorData::new(mask, [n]), &w.device());
            w * m.reshape([n, 1])
        });
        self
    }

    fn items(&self, ids: Tensor<2, Int>, vectors: Option<Tensor<3>>) -> Tensor<3> {
        let e = self.item.forward(ids);
        match (&self.content, vectors) {
            (Some(c), Some(v)) => e + c.forward(v),
            _ => e,
        }
    }

    /// Candidate embeddings `[B, N, d]` and the user vector `[B, 1, d]`.
    pub fn forward(&self, batch: &Batch) -> (Tensor<3>, Tensor<3>) {
        let mut cand = self.items(batch.candidates.clone(), batch.candidate_vectors.clone());
        if let (Some(proj), Some(s)) = (&self.score, &batch.side_features) {
            cand = cand + proj.forward(s.clone());
        }
        let hist = self.items(batch.history.clone(), batch.history_vectors.clone());
        let mut user = (hist * batch.history_weights.clone()).sum_dim(1);
        for (emb, values) in self.user_fields.iter().zip(&batch.user) {
            let [b] = values.dims();
            let e = emb.forward(values.clone().reshape([b, 1]));
            user = user
                + if self.user_scale == 1.0 {
                    e
                } else {
                    e.mul_scalar(self.user_scale)
                };
        }
        (cand, self.user_proj.forward(user).tanh())
    }
}

fn encoder(d: usize, heads: usize, layers: usize, device: &Device) -> TransformerEncoder {
    TransformerEncoderConfig::new(d, 2 * d, heads, layers)
        .with_norm_first(true)
        .with_dropout(0.0)
        .init(device)
}

/// PRM (Pei et al. 2019): a transformer over the candidate set with a personalised vector,
/// one score per candidate. Candidates carry no position embedding: the protocol shuffles
/// them, so the initial-list positions PRM normally adds would be noise.
#[derive(Module, Debug)]
pub struct Prm {
    pub(crate) enc: Encoding,
    join: Linear,
    set: TransformerEncoder,
    out: Linear,
}

impl Prm {
    /// A PRM of width `d` with `layers` self-attention layers.
    pub fn new(f: &Features, d: usize, layers: usize, device: &Device) -> Self {
        Self {
            enc: Encoding::new(f, d, device),
            join: LinearConfig::new(2 * d, d).init(device),
            set: encoder(d, 4, layers, device),
            out: LinearConfig::new(d, 1).init(device),
        }
    }

    /// Scores `[B, N]`.
    pub fn forward(&self, batch: &Batch) -> Tensor<2> {
        let [b, n] = batch.shape;
        let (cand, user) = self.enc.forward(batch);
        let x = self
            .join
            .forward(Tensor::cat(vec![cand.clone(), user.repeat_dim(1, n)], 2));
        let h = self.set.forward(TransformerEncoderInput::new(x));
        self.out.forward(h).reshape([b, n])
    }
}

/// DLCM (Ai et al. 2018): a GRU reads the pool (in its given order) and a local scoring
/// function compares each item's state with the final state.
#[derive(Module, Debug)]
pub struct Dlcm {
    pub(crate) enc: Encoding,
    join: Linear,
    gru: Gru,
    w_item: Linear,
    w_final: Linear,
    out: Linear,
}

impl Dlcm {
    /// A DLCM of width `d`.
    pub fn new(f: &Features, d: usize, device: &Device) -> Self {
        Self {
            enc: Encoding::new(f, d, device),
            join: LinearConfig::new(2 * d, d).init(device),
            gru: GruConfig::new(d, d, true).init(device),
            w_item: LinearConfig::new(d, d).init(device),
            w_final: LinearConfig::new(d, d).init(device),
            out: LinearConfig::new(d, 1).init(device),
        }
    }

    /// Scores `[B, N]`.
    pub fn forward(&self, batch: &Batch) -> Tensor<2> {
        let [b, n] = batch.shape;
        let (cand, user) = self.enc.forward(batch);
        let x = self
            .join
            .forward(Tensor::cat(vec![cand, user.repeat_dim(1, n)], 2));
        let h = self.gru.forward(x, None);
        let d = h.dims()[2];
        let last = h.clone().slice([0..b, n - 1..n, 0..d]);
        let z = (self.w_item.forward(h) + self.w_final.forward(last)).tanh();
        self.out.forward(z).reshape([b, n])
    }
}

/// Seq2Slate (Bello et al. 2018): a pointer network. A transformer encodes the candidate set;
/// a GRU decoder, fed the encoding of the previously chosen item, points at the next item
/// through additive attention over the candidates; chosen items are masked.
#[derive(Module, Debug)]
pub struct Seq2Slate {
    pub(crate) enc: Encoding,
    join: Linear,
    set: TransformerEncoder,
    start: Param<Tensor<1>>,
    decoder: Gru,
    w_enc: Linear,
    w_dec: Linear,
    v: Linear,
}

impl Seq2Slate {
    /// A pointer network of width `d`.
    pub fn new(f: &Features, d: usize, layers: usize, device: &Device) -> Self {
        Self {
            enc: Encoding::new(f, d, device),
            join: LinearConfig::new(2 * d, d).init(device),
            set: encoder(d, 4, layers, device),
            start: Param::from_tensor(Tensor::zeros([d], device)),
            decoder: GruConfig::new(d, d, true).init(device),
            w_enc: LinearConfig::new(d, d).init(device),
            w_dec: LinearConfig::new(d, d).init(device),
            v: LinearConfig::new(d, 1).init(device),
        }
    }

    /// Candidate encodings `[B, N, d]` and the initial decoder state `[B, d]` (their mean).
    fn encode(&self, batch: &Batch) -> (Tensor<3>, Tensor<2>) {
        let [b, n] = batch.shape;
        let (cand, user) = self.enc.forward(batch);
        let x = self
            .join
            .forward(Tensor::cat(vec![cand, user.repeat_dim(1, n)], 2));
        let e = self.set.forward(TransformerEncoderInput::new(x));
        let d = e.dims()[2];
        let s0 = e.clone().mean_dim(1).reshape([b, d]);
        (e, s0)
    }

    /// Pointer logits `[B, T, N]` of decoder states `[B, T, d]`.
    fn pointer(&self, keys: Tensor<3>, states: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = states.dims();
        let n = keys.dims()[1];
        let k = keys.reshape([b, 1, n, d]);
        let q = self.w_dec.forward(states).reshape([b, t, 1, d]);
        self.v.forward((k + q).tanh()).reshape([b, t, n])
    }

    /// Decoder inputs `[B, T, d]`: the start vector, then the encodings of `lists[.][..T-1]`.
    fn inputs(&self, e: &Tensor<3>, lists: &[Vec<usize>], t: usize) -> Tensor<3> {
        let [b, n, d] = e.dims();
        let device = e.device();
        let start = self.start.val().reshape([1, 1, d]).repeat_dim(0, b);
        if t == 1 {
            return start;
        }
        let idx: Vec<i64> = lists
            .iter()
            .enumerate()
            .flat_map(|(r, l)| l[..t - 1].iter().map(move |&p| (r * n + p) as i64))
            .collect();
        let flat = e.clone().reshape([b * n, d]);
        let prev = flat
            .select(
                0,
                Tensor::<1, Int>::from_data(TensorData::new(idx, [b * (t - 1)]), &device),
            )
            .reshape([b, t - 1, d]);
        Tensor::cat(vec![start, prev], 1)
    }

    /// Teacher-forced log-probability of each list (candidate positions, all of length `T`)
    /// `[B]`: the sum over steps of the masked log-softmax of the pointer at the chosen item.
    pub fn log_prob(&self, batch: &Batch, lists: &[Vec<usize>]) -> Tensor<1> {
        let [b, n] = batch.shape;
        let t = lists.first().map_or(0, Vec::len);
        let (e, s0) = self.encode(batch);
        let device = e.device();
        let states = self.decoder.forward(self.inputs(&e, lists, t), Some(s0));
        let logits = self.pointer(self.w_enc.forward(e), states);
        let mut forbid = vec![false; b * t * n];
        let mut target = Vec::with_capacity(b * t);
        for (r, l) in lists.iter().enumerate() {
            for (k, &p) in l.iter().enumerate() {
                target.push(p as i64);
                for later in k + 1..t {
                    forbid[(r * t + later) * n + p] = true;
                }
            }
        }
        let forbid = Tensor::<3, Bool>::from_data(TensorData::new(forbid, [b, t, n]), &device);
        let logp = log_softmax(logits.mask_fill(forbid, MASKED), 2);
        let target = Tensor::<3, Int>::from_data(TensorData::new(target, [b, t, 1]), &device);
        logp.gather(2, target)
            .reshape([b, t])
            .sum_dim(1)
            .reshape([b])
    }

    /// Pointer logits of the first step `[B, N]`: the score of each candidate as the list's
    /// first item (its log-probability up to a per-request constant).
    pub fn first_scores(&self, batch: &Batch) -> Tensor<2> {
        let [b, n] = batch.shape;
        let (e, s0) = self.encode(batch);
        let d = e.dims()[2];
        let keys = self.w_enc.forward(e);
        let input = self.start.val().reshape([1, 1, d]).repeat_dim(0, b);
        let out = self.decoder.forward(input, Some(s0));
        self.pointer(keys, out).reshape([b, n])
    }

    /// Lists of `len` items: greedy (`sampler = None`) or sampled by `sampler(probabilities)`
    /// at each step.
    pub fn decode(
        &self,
        batch: &Batch,
        len: usize,
        mut sampler: Option<&mut Sampler<'_>>,
    ) -> Vec<Vec<usize>> {
        let [b, n] = batch.shape;
        let (e, s0) = self.encode(batch);
        let device = e.device();
        let d = e.dims()[2];
        let keys = self.w_enc.forward(e.clone());
        let mut lists = vec![Vec::with_capacity(len); b];
        let mut state = s0;
        let mut input = self.start.val().reshape([1, 1, d]).repeat_dim(0, b);
        for _ in 0..len {
            let out = self.decoder.forward(input, Some(state));
            state = out.clone().reshape([b, d]);
            let logits = self.pointer(keys.clone(), out).reshape([b, n]);
            let probs: Vec<f32> = burn::tensor::activation::softmax(logits, 1)
                .into_data()
                .iter::<f32>()
                .collect();
            let mut pick = Vec::with_capacity(b);
            for (r, list) in lists.iter_mut().enumerate() {
                let mut p = probs[r * n..(r + 1) * n].to_vec();
                for &c in list.iter() {
                    p[c] = 0.0;
                }
                let c = match sampler.as_mut() {
                    Some(s) => s(&p),
                    None => (0..n)
                        .filter(|i| !list.contains(i))
                        .fold(None, |best: Option<usize>, i| match best {
                            Some(j) if p[j] >= p[i] => Some(j),
                            _ => Some(i),
                        })
                        .unwrap_or(0),
                };
                list.push(c);
                pick.push((r * n + c) as i64);
            }
            input = e
                .clone()
                .reshape([b * n, d])
                .select(
                    0,
                    Tensor::<1, Int>::from_data(TensorData::new(pick, [b]), &device),
                )
                .reshape([b, 1, d]);
        }
        lists
    }
}

/// The encoding edits every baseline offers: the user tables' learning-rate factor and the
/// forgetting of unseen items' ID rows (see [`Encoding`]).
macro_rules! encoding_edits {
    ($($model:ty),+) => {$(
        impl $model {
            /// The model with its user tables zeroed and read scaled by `scale`
            /// ([`Encoding::with_user_scale`]; 0: unchanged).
            pub fn with_user_scale(mut self, scale: f32) -> Self {
                self.enc = self.enc.with_user_scale(scale);
                self
            }

            /// The model with the ID rows of the items not flagged in `seen` zeroed
            /// ([`Encoding::forget_unseen`]).
            pub fn forget_unseen(mut self, seen: &[bool]) -> Self {
                self.enc = self.enc.forget_unseen(seen);
                self
            }
        }
    )+};
}

encoding_edits!(Prm, Dlcm, Seq2Slate);

#[cfg(test)]
mod tests {
    use super::*;

    /// Four items without content and these user attributes.
    fn features(user_field_sizes: Vec<usize>, user_values: Vec<Vec<u32>>) -> Features {
        Features {
            item_vectors: Vec::new(),
            dim: 0,
            items: 4,
            user_field_sizes,
            user_values,
            history_len: 1,
            inputs: glorank_nn::ModelInputs::default(),
        }
    }

    #[test]
    fn forgotten_items_have_zero_id_rows_and_the_rest_keep_theirs() {
        let device = Device::flex();
        let enc = Encoding::new(&features(Vec::new(), Vec::new()), 8, &device);
        let before: Vec<f32> = enc.item.weight.val().into_data().iter::<f32>().collect();
        let enc = enc.forget_unseen(&[true, false, true, false]);
        let after: Vec<f32> = enc.item.weight.val().into_data().iter::<f32>().collect();
        for (row, (a, b)) in after.chunks(8).zip(before.chunks(8)).enumerate() {
            if row % 2 == 0 {
                assert_eq!(a, b, "row {row}");
                assert!(a.iter().any(|x| *x != 0.0));
            } else {
                assert!(a.iter().all(|x| *x == 0.0), "row {row}");
            }
        }
    }

    #[test]
    fn scaled_user_tables_start_at_zero_and_keep_the_other_weights() {
        let device = Device::flex();
        let f = features(vec![3, 5], vec![vec![0, 2], vec![4, 1]]);
        let enc = Encoding::new(&f, 8, &device);
        let items: Vec<f32> = enc.item.weight.val().into_data().iter::<f32>().collect();
        assert!(
            enc.user_fields
                .iter()
                .all(|e| { e.weight.val().into_data().iter::<f32>().any(|x| x != 0.0) })
        );
        let enc = enc.with_user_scale(10.0);
        assert_eq!(enc.user_scale, 10.0);
        for e in &enc.user_fields {
            assert!(e.weight.val().into_data().iter::<f32>().all(|x| x == 0.0));
        }
        let kept: Vec<f32> = enc.item.weight.val().into_data().iter::<f32>().collect();
        assert_eq!(kept, items);
    }
}
