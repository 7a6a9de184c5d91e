//! The policy's forward passes: one decoding step's token logits, and the teacher-forced
//! log-probabilities of whole lists (with the first slot's candidate scores).

use super::tokens::log_sum_exp;
use super::*;
use crate::config::OutputHead;
use crate::{PolicyError, Result};
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use glorank_nn::MASKED;
use glorank_nn::layers::CrossKv;
use glorank_trie::CandidateTrie;

impl Policy {
    /// Token logits of decoding step `t` for rows with decoder states `h [R, d]`, written to
    /// `out` (`R x vocab`, row-major). Row `r` decodes for request `requests[r]` of `batch`
    /// and has emitted the tokens `prefix(r)`; both are read only when the head reads the
    /// candidates. Tokens no remaining candidate extends get [`MASKED`] under such a head (the
    /// trie forbids them anyway).
    pub(crate) fn step_logits<'p>(
        &self,
        t: usize,
        h: Tensor<2>,
        batch: &EncodedBatch,
        requests: &[u32],
        prefix: &dyn Fn(usize) -> &'p [u32],
        out: &mut [f32],
    ) -> Result<()> {
        let [r, d] = h.dims();
        let Some(query) = &self.pointer_query else {
            let logits = self.head(t, h);
            let [lr, v] = logits.dims();
            if lr * v != out.len() {
                return Err(PolicyError::InvalidInput(format!(
                    "head gives {lr} x {v} logits, the decoder expects {}",
                    out.len()
                )));
            }
            for (o, x) in out.iter_mut().zip(logits.into_data().iter::<f32>()) {
                *o = x;
            }
            return Ok(());
        };
        let level = t % self.depth;
        let v = self.embedder.vocab_sizes()[level];
        if r * v != out.len() || requests.len() != r {
            return Err(PolicyError::InvalidInput(format!(
                "{r} rows of {v} tokens, the decoder expects {} values",
                out.len()
            )));
        }
        let global: Option<Vec<f32>> = (!self.heads.is_empty())
            .then(|| self.head(t, h.clone()).into_data().iter::<f32>().collect());
        // Greedy decoding and sampling keep one row per request in order: no gather.
        let cand = if in_order(requests, batch.pool_sizes.len()) {
            batch.candidate_memory.clone()
        } else {
            batch
                .candidate_memory
                .clone()
                .select(0, index(requests, &h.device()))
        };
        let n = cand.dims()[1];
        let scores: Vec<f32> = self
            .pointer_scores(query, h.reshape([r, 1, d]), cand)
            .into_data()
            .iter::<f32>()
            .collect();
        let mut work = TokenLse::new(n, v);
        for (row, &request) in requests.iter().enumerate() {
            work.fill(
                &batch.tuples[request as usize],
                prefix(row),
                (level, self.depth),
                &scores[row * n..(row + 1) * n],
                global.as_ref().map(|g| &g[row * v..(row + 1) * v]),
                &mut out[row * v..(row + 1) * v],
            );
        }
        Ok(())
    }

    /// One incremental decoder step for rows `x [R, 1, d]` (see [`DecoderLayer::step`]).
    pub(crate) fn decode_step(
        &self,
        mut x: Tensor<3>,
        caches: Vec<Option<(Tensor<4>, Tensor<4>)>>,
        cross: &[CrossKv],
        memory_bias: &Tensor<4>,
    ) -> (Tensor<2>, Vec<(Tensor<4>, Tensor<4>)>) {
        let mut new = Vec::with_capacity(self.layers.len());
        for ((layer, cache), kv) in self.layers.iter().zip(caches).zip(cross) {
            let (y, c) = layer.step(x, cache, kv, memory_bias.clone());
            x = y;
            new.push(c);
        }
        let [r, _, d] = x.dims();
        (self.final_norm.forward(x).reshape([r, d]), new)
    }

    /// Teacher forcing: log-probabilities of given lists under the trie-masked softmax.
    ///
    /// `lists[r]` are candidate indices of request `r` (`list_len` of them), `tries[r]` its
    /// trie from [`Policy::trie`]. Returns per-token log-probs `[B, steps]` and their sum per
    /// list `[B]`; differentiable when the policy and batch live on an autodiff device.
    ///
    /// # Errors
    /// [`PolicyError::InvalidInput`] / [`PolicyError::Trie`] for a list that is not valid for
    /// its trie or has the wrong length.
    pub fn log_probs(
        &self,
        batch: &EncodedBatch,
        tries: &[CandidateTrie],
        lists: &[Vec<usize>],
    ) -> Result<(Tensor<2>, Tensor<1>)> {
        self.teacher_forced(batch, tries, lists)
            .map(|(token_logprobs, total, _)| (token_logprobs, total))
    }

    /// [`Policy::log_probs`] and, from the same forward pass, the first slot's score of every
    /// candidate `[B, N]`; [`MASKED`] at padding. Under [`OutputHead::CandidateAware`] it is
    /// the pointer score of the beginning-of-list state against the candidate plus the global
    /// logit of the candidate's level-0 token, under [`OutputHead::Pointer`] the pointer score
    /// alone, and in the local-index ablation the head's logit of the candidate's position. A
    /// softmax over a row is the distribution over which item the policy lists first when each
    /// candidate stands alone under its level-0 token; the SFT label loss
    /// (`glorank_train::SftConfig::label_loss`) trains it against each request's clicks.
    ///
    /// # Errors
    /// As [`Policy::log_probs`]; [`PolicyError::InvalidInput`] under [`OutputHead::Global`]
    /// with the global action space, whose first step scores tokens, not candidates.
    pub fn log_probs_and_first_scores(
        &self,
        batch: &EncodedBatch,
        tries: &[CandidateTrie],
        lists: &[Vec<usize>],
    ) -> Result<(Tensor<2>, Tensor<1>, Tensor<2>)> {
        if self.output_head() == OutputHead::Global && !self.local_index {
            return Err(PolicyError::InvalidInput(
                "first-slot candidate scores need output head CandidateAware or Pointer (or \
                 the local-index action space); this policy has output head Global"
                    .into(),
            ));
        }
        let (token_logprobs, total, x) = self.teacher_forced(batch, tries, lists)?;
        let device = x.device();
        let [b, _, d] = x.dims();
        let n = batch.candidate_memory.dims()[1];
        let h0 = x.slice([0..b, 0..1, 0..d]); // [B, 1, d]
        let mut pad = vec![true; b * n];
        for (r, &size) in batch.pool_sizes.iter().enumerate() {
            pad[r * n..r * n + size].fill(false);
        }
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, n]), &device);
        let scores = match &self.pointer_query {
            // Local index: the head's logits over input positions, cut to the batch's pool.
            None => self.head(0, h0.reshape([b, d])).slice([0..b, 0..n]),
            Some(query) => {
                let pointer = self
                    .pointer_scores(query, h0.clone(), batch.candidate_memory.clone())
                    .reshape([b, n]);
                if self.heads.is_empty() {
                    pointer
                } else {
                    let mut codes = vec![0i64; b * n];
                    for (r, tuples) in batch.tuples.iter().enumerate() {
                        for (c, tuple) in tuples.iter().enumerate() {
                            codes[r * n + c] = i64::from(tuple[0]);
                        }
                    }
                    let codes =
                        Tensor::<2, Int>::from_data(TensorData::new(codes, [b, n]), &device);
                    pointer + self.head(0, h0.reshape([b, d])).gather(1, codes)
                }
            }
        };
        Ok((token_logprobs, total, scores.mask_fill(pad, MASKED)))
    }

    /// The teacher-forced pass of [`Policy::log_probs`]; also returns the final decoder
    /// states `[B, steps, d]`.
    fn teacher_forced(
        &self,
        batch: &EncodedBatch,
        tries: &[CandidateTrie],
        lists: &[Vec<usize>],
    ) -> Result<(Tensor<2>, Tensor<1>, Tensor<3>)> {
        let device = batch.memory.device();
        let b = tries.len();
        if lists.len() != b || batch.pool_sizes.len() != b {
            return Err(PolicyError::InvalidInput(
                "batch, tries and lists differ in length".into(),
            ));
        }
        let steps = self.steps();
        let vocab = self.vocab_sizes();
        // Targets and allowed tokens per step, from the tries.
        let mut targets = vec![0u32; b * steps];
        let mut allowed: Vec<Vec<Vec<u32>>> = Vec::with_capacity(b);
        for (r, (trie, list)) in tries.iter().zip(lists).enumerate() {
            if list.len() != self.list_len {
                return Err(PolicyError::InvalidInput(format!(
                    "list {r} has {} items, the policy decodes {}",
                    list.len(),
                    self.list_len
                )));
            }
            let (toks, allow) = trie.teacher_forcing(list)?;
            targets[r * steps..(r + 1) * steps].copy_from_slice(&toks);
            allowed.push(allow);
        }
        // Decoder inputs: BOS, then the previous token's embedding, plus level and slot.
        let requests: Vec<u32> = (0..b as u32).collect();
        let mut inputs = Vec::with_capacity(steps);
        for t in 0..steps {
            let prev: Vec<u32> = (0..b)
                .map(|r| {
                    if t == 0 {
                        0
                    } else {
                        targets[r * steps + t - 1]
                    }
                })
                .collect();
            let chosen: Option<Vec<usize>> = self
                .reads_chosen_at(t)
                .then(|| lists.iter().map(|l| l[t / self.depth - 1]).collect());
            inputs.push(
                self.previous_embedding(t, &prev, &requests, batch, chosen.as_deref(), &device)
                    + self.position_embedding(t, b, &device),
            );
        }
        let mut x = Tensor::cat(inputs, 1); // [B, T, d]
        let causal: Vec<f32> = (0..steps * steps)
            .map(|k| if k % steps > k / steps { MASKED } else { 0.0 })
            .collect();
        let self_bias =
            Tensor::<4>::from_data(TensorData::new(causal, [1, 1, steps, steps]), &device);
        let cross = self.cross_kv(&batch.memory);
        for (layer, kv) in self.layers.iter().zip(&cross) {
            x = layer.forward(x, kv, self_bias.clone(), batch.memory_bias.clone());
        }
        let x = self.final_norm.forward(x);
        let [_, _, d] = x.dims();
        // Per head: gather the positions it decodes, mask, log-softmax, pick the targets.
        // Global: head l serves positions l, l + depth, ...; local index: one head for all.
        let heads = if self.local_index { 1 } else { self.depth };
        let mut per_head = Vec::with_capacity(heads);
        for (l, &v) in vocab.iter().enumerate().take(heads) {
            let positions: Vec<usize> = (l..steps).step_by(heads).collect();
            let m = positions.len();
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(positions.iter().map(|&t| t as i64).collect::<Vec<_>>(), [m]),
                &device,
            );
            let h = x.clone().select(1, idx).reshape([b * m, d]);
            if let Some(query) = &self.pointer_query {
                per_head
                    .push(self.pointer_log_probs(query, l, h, batch, &positions, &targets, steps));
                continue;
            }
            let mut forbid = vec![true; b * m * v];
            let mut tgt = Vec::with_capacity(b * m);
            for r in 0..b {
                for (j, &t) in positions.iter().enumerate() {
                    for &tok in &allowed[r][t] {
                        forbid[(r * m + j) * v + tok as usize] = false;
                    }
                    tgt.push(i64::from(targets[r * steps + t]));
                }
            }
            let forbid = Tensor::<2, Bool>::from_data(TensorData::new(forbid, [b * m, v]), &device);
            let logp = log_softmax(self.head(l, h).mask_fill(forbid, MASKED), 1);
            let tgt = Tensor::<2, Int>::from_data(TensorData::new(tgt, [b * m, 1]), &device);
            per_head.push(logp.gather(1, tgt).reshape([b, m, 1]));
        }
        // [B, L, heads] in step order (slot-major) -> [B, steps].
        let token_logprobs = Tensor::cat(per_head, 2).reshape([b, steps]);
        let total = token_logprobs.clone().sum_dim(1).reshape([b]);
        Ok((token_logprobs, total, x))
    }

    /// Teacher-forced log-probabilities `[B, M, 1]` of the targets at `positions` (all of
    /// level `l`) under a head that reads the candidates. With `E` the remaining candidates
    /// that extend the prefix and `G_j` the global logit of candidate `j`'s token (0 for the
    /// pure pointer), the normaliser is `logsumexp_{j in E} (G_j + p_j)`: the candidates under
    /// the tokens partition `E`, so no per-token table is needed.
    #[allow(clippy::too_many_arguments)]
    fn pointer_log_probs(
        &self,
        query: &Linear,
        l: usize,
        h: Tensor<2>,
        batch: &EncodedBatch,
        positions: &[usize],
        targets: &[u32],
        steps: usize,
    ) -> Tensor<3> {
        let device = h.device();
        let [rows, d] = h.dims();
        let b = batch.tuples.len();
        let m = positions.len();
        let n = batch.candidate_memory.dims()[1];
        let mut codes = vec![0i64; rows * n];
        let mut outside = vec![true; rows * n];
        let mut other = vec![true; rows * n];
        let mut eligible = vec![false; n];
        for (r, tuples) in batch.tuples.iter().enumerate() {
            for (j, &t) in positions.iter().enumerate() {
                let prefix = &targets[r * steps..r * steps + t];
                let target = targets[r * steps + t];
                eligible_candidates(tuples, prefix, self.depth, &mut eligible);
                let row = (r * m + j) * n;
                for (c, tuple) in tuples.iter().enumerate() {
                    codes[row + c] = i64::from(tuple[l]);
                    outside[row + c] = !eligible[c];
                    other[row + c] = !eligible[c] || tuple[l] != target;
                }
            }
        }
        let mask =
            |v: Vec<bool>| Tensor::<2, Bool>::from_data(TensorData::new(v, [rows, n]), &device);
        let mut total = self
            .pointer_scores(
                query,
                h.clone().reshape([b, m, d]),
                batch.candidate_memory.clone(),
            )
            .reshape([rows, n]);
        if !self.heads.is_empty() {
            let codes = Tensor::<2, Int>::from_data(TensorData::new(codes, [rows, n]), &device);
            total = total + self.head(l, h).gather(1, codes);
        }
        let total = total.mask_fill(mask(outside), MASKED);
        let log_z = log_sum_exp(total.clone());
        let target = log_sum_exp(total.mask_fill(mask(other), MASKED));
        (target - log_z).reshape([b, m, 1])
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.num_params()
    }
}
