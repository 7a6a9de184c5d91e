//! Embeddings shared by the policy and the reward models: semantic-ID items, the user token
//! and the history, with segment embeddings. Each model owns its own instance (its own
//! weights); the code is written once.

use crate::{NnError, Result};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// One history interaction of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// Semantic-ID tuple of the item (`depth` tokens).
    pub tuple: Vec<u32>,
    /// Feedback label bits (click 1, like 2, star 4), 0..=7.
    pub labels: u8,
}

/// Segment ids of the encoder sequence.
pub mod segment {
    /// The user token.
    pub const USER: i64 = 0;
    /// History items.
    pub const HISTORY: i64 = 1;
    /// Candidates (policy) or list items (reward model).
    pub const ITEMS: i64 = 2;
}

/// Token, user, label, recency and segment embeddings.
#[derive(Module, Debug)]
pub struct ContextEmbedder {
    /// One token table per semantic-ID level.
    token_emb: Vec<Embedding>,
    /// User attribute table (row 0: the base user token; fields follow at offsets).
    user_emb: Embedding,
    /// History feedback labels (0..=7).
    label_emb: Embedding,
    /// History recency (0 = most recent).
    recency_emb: Embedding,
    /// Segments: user, history, items.
    segment_emb: Embedding,
    /// Item-level embedding indexed by a hash of the whole semantic-ID tuple (`buckets x d`,
    /// zero-initialised; absent when `item_buckets` is 0). It lets a model remember what is
    /// particular to one item beyond what its codes share with similar items; an item never
    /// seen in training (its row never updated) adds nothing and falls back on its codes.
    item_emb: Option<Embedding>,
    /// Field offsets into `user_emb`.
    user_offsets: Vec<usize>,
    /// Categories of each user field.
    user_sizes: Vec<usize>,
    max_history: usize,
    /// Factor the user table's output is multiplied by (1 unless
    /// [`ContextEmbedder::with_user_scale`] set it).
    #[module(skip)]
    user_scale: f32,
}

/// The `[user, history...]` part of an encoder sequence.
pub struct Context {
    /// Embeddings `[B, 1 + H, d]`.
    pub x: Tensor<3>,
    /// Padding flags, row-major `[B, 1 + H]`.
    pub pad: Vec<bool>,
    /// Padded history length `H` (at least 1).
    pub history_len: usize,
}

impl ContextEmbedder {
    /// Tables of width `d` for these vocabularies and user attributes, with an item-level
    /// table of `item_buckets` rows (0: none).
    pub fn new(
        vocab_sizes: &[usize],
        user_field_sizes: &[usize],
        d: usize,
        max_history: usize,
        item_buckets: usize,
        device: &Device,
    ) -> Self {
        let mut user_offsets = Vec::new();
        let mut total = 1;
        for &s in user_field_sizes {
            user_offsets.push(total);
            total += s;
        }
        Self {
            token_emb: vocab_sizes
                .iter()
                .map(|&v| EmbeddingConfig::new(v, d).init(device))
                .collect(),
            user_emb: EmbeddingConfig::new(total, d).init(device),
            label_emb: EmbeddingConfig::new(8, d).init(device),
            recency_emb: EmbeddingConfig::new(max_history.max(1), d).init(device),
            segment_emb: EmbeddingConfig::new(3, d).init(device),
            item_emb: (item_buckets > 0).then(|| {
                EmbeddingConfig::new(item_buckets, d)
                    .with_initializer(Initializer::Zeros)
                    .init(device)
            }),
            user_offsets,
            user_sizes: user_field_sizes.to_vec(),
            max_history,
            user_scale: 1.0,
        }
    }

    /// Zeroes the user table and reads it multiplied by `scale` from now on. Under Adam a
    /// weight moves by about the learning rate per step whatever its gradient's size, so the
    /// table's output then learns about `scale` times faster than the other weights, and
    /// starts from nothing instead of a random vector per user: each row is updated only by
    /// its own user's few requests. The other tables keep the values `new` drew. A `scale`
    /// of 0 means off (`user_lr_scale`'s default) and returns the embedder unchanged.
    pub fn with_user_scale(mut self, scale: f32) -> Self {
        if scale == 0.0 {
            return self;
        }
        // A fresh zero-initialised table, not `weight.map(zeros_like)`: a mapped tensor on an
        // autodiff device no longer requires gradients, and the table would never learn.
        let [rows, d] = self.user_emb.weight.dims();
        let device = self.user_emb.weight.device();
        self.user_emb = EmbeddingConfig::new(rows, d)
            .with_initializer(Initializer::Zeros)
            .init(&device);
        self.user_scale = scale;
        self
    }

    /// Vocabulary of each semantic-ID level.
    pub fn vocab_sizes(&self) -> Vec<usize> {
        self.token_emb.iter().map(|e| e.weight.dims()[0]).collect()
    }

    /// Tokens per item.
    pub fn depth(&self) -> usize {
        self.token_emb.len()
    }

    /// The level-`level` token table `[vocab, d]`.
    pub fn table(&self, level: usize) -> Tensor<2> {
        self.token_emb[level].weight.val()
    }

    /// Embedding of level-`level` tokens `[R, 1]` -> `[R, 1, d]`.
    pub fn token(&self, level: usize, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.token_emb[level].forward(tokens)
    }

    /// Sum of the level-token embeddings of `tokens [B, M, depth]` -> `[B, M, d]`.
    pub fn items(&self, tokens: Tensor<3, Int>) -> Tensor<3> {
        let [b, m, _] = tokens.dims();
        let mut out: Option<Tensor<3>> = None;
        for (l, emb) in self.token_emb.iter().enumerate() {
            let t = tokens.clone().slice([0..b, 0..m, l..l + 1]).reshape([b, m]);
            let e = emb.forward(t);
            out = Some(match out {
                Some(o) => o + e,
                None => e,
            });
        }
        out.unwrap_or_else(|| Tensor::zeros([b, m, 1], &tokens.device()))
    }

    /// Segment embedding `[B, len, d]` of segment `k`.
    pub fn segment(&self, k: i64, b: usize, len: usize, device: &Device) -> Tensor<3> {
        self.segment_emb.forward(Tensor::<2, Int>::from_data(
            TensorData::new(vec![k; b * len], [b, len]),
            device,
        ))
    }

    /// Embeddings `[B, m, d]` of `rows` lists of tuples padded to `m` per row: the sum of the
    /// level-token embeddings plus, when the model has one, the item-level embedding.
    pub fn embed_items(&self, rows: &[&[Vec<u32>]], m: usize, device: &Device) -> Tensor<3> {
        let x = self.items(self.tokens(rows, m, device));
        match &self.item_emb {
            Some(table) => {
                let buckets = table.weight.dims()[0];
                let mut v = vec![0i64; rows.len() * m];
                for (r, tuples) in rows.iter().enumerate() {
                    for (p, t) in tuples.iter().take(m).enumerate() {
                        v[r * m + p] = item_bucket(t, buckets) as i64;
                    }
                }
                x + table.forward(Tensor::from_data(
                    TensorData::new(v, [rows.len(), m]),
                    device,
                ))
            }
            None => x,
        }
    }

    /// Tokens of `rows` lists of tuples, padded with zeros to `m` per row: `[B, m, depth]`.
    pub fn tokens(&self, rows: &[&[Vec<u32>]], m: usize, device: &Device) -> Tensor<3, Int> {
        let dep = self.depth();
        let mut v = vec![0i64; rows.len() * m * dep];
        for (r, tuples) in rows.iter().enumerate() {
            for (p, t) in tuples.iter().take(m).enumerate() {
                for (l, &x) in t.iter().enumerate() {
                    v[(r * m + p) * dep + l] = i64::from(x);
                }
            }
        }
        Tensor::from_data(TensorData::new(v, [rows.len(), m, dep]), device)
    }

    /// Checks a tuple against the vocabularies.
    pub fn check_tuple(&self, what: &str, tuple: &[u32]) -> Result<()> {
        let vocab = self.vocab_sizes();
        if tuple.len() != vocab.len() || tuple.iter().zip(&vocab).any(|(&x, &v)| x as usize >= v) {
            return Err(NnError::InvalidInput(format!(
                "{what}: tuple {tuple:?} does not fit the vocabularies {vocab:?}"
            )));
        }
        Ok(())
    }

    /// Checks user features and history of request `r`.
    pub fn check_context(&self, r: usize, user: &[u32], history: &[HistoryItem]) -> Result<()> {
        if user.len() != self.user_sizes.len() {
            return Err(NnError::InvalidInput(format!(
                "request {r}: {} user features, the model has {} fields",
                user.len(),
                self.user_sizes.len()
            )));
        }
        if let Some(f) = (0..user.len()).find(|&f| user[f] as usize >= self.user_sizes[f]) {
            return Err(NnError::InvalidInput(format!(
                "request {r}: user feature {f} = {} exceeds its {} categories",
                user[f], self.user_sizes[f]
            )));
        }
        for h in history {
            self.check_tuple(&format!("request {r}, history"), &h.tuple)?;
            if h.labels > 7 {
                return Err(NnError::InvalidInput(format!(
                    "request {r}: history labels must be in 0..=7, found {}",
                    h.labels
                )));
            }
        }
        Ok(())
    }

    /// Embeds `[user, history...]` of each `(user features, history)` pair; the most recent
    /// `max_history` history items are used and shorter histories are padded.
    pub fn context(&self, contexts: &[(&[u32], &[HistoryItem])], device: &Device) -> Context {
        let b = contexts.len();
        let h = contexts
            .iter()
            .map(|(_, hist)| hist.len().min(self.max_history))
            .max()
            .unwrap_or(0)
            .max(1);
        let f = self.user_offsets.len();
        let mut user = vec![0i64; b * (f + 1)];
        let mut labels = vec![0i64; b * h];
        let mut recency = vec![0i64; b * h];
        let mut pad = vec![false; b * (1 + h)];
        let mut tuples: Vec<&[Vec<u32>]> = Vec::with_capacity(b);
        let mut hist_tuples: Vec<Vec<Vec<u32>>> = Vec::with_capacity(b);
        for (r, (feats, hist)) in contexts.iter().enumerate() {
            for (k, &v) in feats.iter().enumerate() {
                user[r * (f + 1) + 1 + k] = (self.user_offsets[k] + v as usize) as i64;
            }
            let hist = &hist[hist.len().saturating_sub(self.max_history)..];
            for p in 0..h {
                pad[r * (1 + h) + 1 + p] = p >= hist.len();
                if let Some(item) = hist.get(p) {
                    labels[r * h + p] = i64::from(item.labels);
                    recency[r * h + p] = (hist.len() - 1 - p) as i64;
                }
            }
            hist_tuples.push(hist.iter().map(|x| x.tuple.clone()).collect());
        }
        for t in &hist_tuples {
            tuples.push(t);
        }
        let int2 =
            |v: Vec<i64>, s: [usize; 2]| Tensor::<2, Int>::from_data(TensorData::new(v, s), device);
        let mut user_tok = self.user_emb.forward(int2(user, [b, f + 1])).sum_dim(1);
        if self.user_scale != 1.0 {
            user_tok = user_tok.mul_scalar(self.user_scale);
        }
        let user_tok = user_tok + self.segment(segment::USER, b, 1, device);
        let hist = self.embed_items(&tuples, h, device)
            + self.label_emb.forward(int2(labels, [b, h]))
            + self.recency_emb.forward(int2(recency, [b, h]))
            + self.segment(segment::HISTORY, b, h, device);
        Context {
            x: Tensor::cat(vec![user_tok, hist], 1),
            pad,
            history_len: h,
        }
    }
}

/// Row of the item-level table for a semantic-ID tuple: a 64-bit FNV-1a hash of its tokens,
/// finished with the SplitMix64 mixer (FNV's low bits alone spread small integers poorly),
/// modulo `buckets`. The tuple identifies the item (its last level separates collisions), so
/// distinct items share a row only through the hash; the row is the same in every request.
pub fn item_bucket(tuple: &[u32], buckets: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &t in tuple {
        for b in t.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % buckets.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_buckets_are_stable_and_spread() {
        assert_eq!(item_bucket(&[3, 1, 4], 1000), item_bucket(&[3, 1, 4], 1000));
        assert_ne!(
            item_bucket(&[3, 1, 4], 1 << 20),
            item_bucket(&[4, 1, 3], 1 << 20)
        );
        // 937 distinct tuples into 4096 rows: a uniform hash fills 4096 (1 - e^(-937/4096))
        // = 838 rows on average.
        let mut rows = std::collections::HashSet::new();
        for i in 0..937u32 {
            rows.insert(item_bucket(&[i % 32, (i / 32) % 32, i / 1024, 0], 4096));
        }
        assert!(rows.len() > 800, "{}", rows.len());
    }

    #[test]
    fn the_item_table_starts_at_zero_and_adds_per_item_rows() {
        let dev = Device::flex();
        let plain = ContextEmbedder::new(&[4, 4], &[], 8, 5, 0, &dev);
        let with = ContextEmbedder::new(&[4, 4], &[], 8, 5, 64, &dev);
        let rows = [vec![1u32, 2], vec![3, 0]];
        let a = with.embed_items(&[&rows], 2, &dev);
        let b = with.items(with.tokens(&[&rows], 2, &dev));
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert_eq!(diff, 0.0, "zero-initialised table adds nothing at first");
        assert!(plain.item_emb.is_none() && with.item_emb.is_some());
    }

    /// The scaled user table adds nothing at first, and one Adam step moves the user token
    /// by `scale` times the learning rate per used row and coordinate (Adam's first step is
    /// the learning rate times the gradient's sign).
    #[test]
    fn the_scaled_user_table_starts_at_zero_and_learns_scale_times_faster() {
        use burn::optim::{AdamConfig, GradientsParams};
        let dev = Device::flex().autodiff();
        let (scale, lr) = (10.0, 1e-3);
        let user: &[u32] = &[1, 2];
        let e = ContextEmbedder::new(&[4, 3], &[2, 3], 8, 5, 0, &dev).with_user_scale(scale);
        let token = |e: &ContextEmbedder| {
            let x = e.context(&[(user, &[])], &dev).x;
            x.slice([0..1, 0..1, 0..8]).reshape([8])
        };
        let start: Vec<f32> = token(&e).into_data().iter::<f32>().collect();
        let segment: Vec<f32> = e
            .segment(segment::USER, 1, 1, &dev)
            .reshape([8])
            .into_data()
            .iter::<f32>()
            .collect();
        assert_eq!(
            start, segment,
            "a zero table adds nothing to the segment embedding"
        );
        // Loss <w, token>: the gradient of every used row is `scale * w`.
        let w: Vec<f32> = (0..8)
            .map(|k| if k % 3 == 0 { -1.0 } else { 0.5 })
            .collect();
        let loss = (token(&e) * Tensor::<1>::from_floats(w.as_slice(), &dev)).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &e);
        let e = AdamConfig::new().init().step(lr, e, grads);
        let moved: Vec<f32> = token(&e.valid()).into_data().iter::<f32>().collect();
        for k in 0..8 {
            // Three rows of the scaled table are read (the base token and two fields), each
            // moved by `lr` and read times `scale`; the unscaled segment row moves by `lr`.
            let expected = -(3.0 * scale + 1.0) * lr as f32 * w[k].signum();
            assert!(
                ((moved[k] - start[k]) - expected).abs() < 1e-4,
                "coordinate {k}: moved {} instead of {expected}",
                moved[k] - start[k]
            );
        }
    }
}
