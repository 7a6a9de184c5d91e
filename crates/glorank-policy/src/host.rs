//! The policy's decoding on the host CPU, outside the tensor library: [`HostPolicy`].
//!
//! [`crate::PolicyScorer`] runs every decoding step as burn operations; at one request per
//! row and width 128, each operation's dispatch and allocation cost more than its arithmetic
//! (a decoding step is about 18 linear layers and as many small element-wise operations).
//! [`HostPolicy`] copies the weights out once and runs the encoder, the cached decoder steps
//! and the output heads on plain `f32` buffers with [`glorank_nn::host`]'s kernels. Only the
//! input embeddings (a few lookups per request) still go through burn.
//!
//! It computes the same function as [`crate::PolicyScorer`] up to floating-point rounding
//! (tested on every output head, on the local-index ablation and on beam search), so a tie
//! between two tokens may break the other way; [`crate::decode`] uses it on CPU devices.

use crate::model::{Policy, Request, TokenLse, in_order};
use crate::scorer::{HOST_DECODE_BLOCK, decode_shards, first_item_chunks};
use crate::{PolicyError, Result};
use burn::module::Module;
use burn::tensor::Device;
use glorank_nn::host::{
    CrossMemory, HostDecoderLayer, HostEncoder, HostLayerNorm, HostLinear, KvCache, dot, key_bias,
    to_vec, with_simd,
};
use glorank_trie::{DecodedList, Decoder, StepBatch, StepScorer};

/// A policy's weights copied to host buffers for fast CPU decoding (see the module docs).
///
/// Build it once per set of weights (it copies about 4.6 MB at the default dimensions) and
/// decode with it as often as needed; it does not follow later changes of the policy.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    policy: Policy,
    device: Device,
    encoder: HostEncoder,
    layers: Vec<HostDecoderLayer>,
    final_norm: HostLayerNorm,
    /// Output heads, the tied token-table term folded into the weight.
    heads: Vec<HostLinear>,
    pointer_query: Option<HostLinear>,
    /// Token tables per level `[vocab_l, d]`.
    tokens: Vec<Vec<f32>>,
    level_emb: Vec<f32>,
    slot_emb: Vec<f32>,
    bos: Vec<f32>,
    vocab: Vec<usize>,
    d: usize,
}

impl HostPolicy {
    /// Copies `policy`'s weights (from any device; an autodiff policy is read as its
    /// inference copy). The input embeddings keep running on the policy's device.
    pub fn new(policy: &Policy) -> Self {
        let policy = policy.valid();
        let device = policy.bos.val().device();
        let d = policy.bos.val().dims()[1];
        let mut heads: Vec<HostLinear> = policy.heads.iter().map(HostLinear::new).collect();
        if policy.tie_heads && !policy.local_index {
            // logits = h W + b + h T^T = h (W + T^T) + b.
            for (l, head) in heads.iter_mut().enumerate() {
                head.add_to_weight(&to_vec(policy.embedder.table(l).transpose()));
            }
        }
        Self {
            encoder: HostEncoder::new(&policy.encoder),
            layers: policy.layers.iter().map(HostDecoderLayer::new).collect(),
            final_norm: HostLayerNorm::new(&policy.final_norm),
            heads,
            pointer_query: policy.pointer_query.as_ref().map(HostLinear::new),
            tokens: (0..policy.depth)
                .map(|l| to_vec(policy.embedder.table(l)))
                .collect(),
            level_emb: to_vec(policy.level_emb.weight.val()),
            slot_emb: to_vec(policy.slot_emb.weight.val()),
            bos: to_vec(policy.bos.val()),
            vocab: policy.embedder.vocab_sizes(),
            d,
            device,
            policy,
        }
    }

    /// A host copy of `policy` when `device` is a CPU device (where it decodes faster than
    /// burn's operations), `None` on a GPU.
    pub fn for_device(policy: &Policy, device: &Device) -> Option<Self> {
        glorank_nn::is_host_device(device).then(|| Self::new(policy))
    }

    /// The policy the weights were copied from (on its own device, in inference mode).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Encodes `requests` and returns a scorer for decoding them (see [`HostScorer`]).
    ///
    /// # Errors
    /// [`PolicyError::InvalidInput`] for requests that do not fit the policy.
    pub fn scorer(&self, requests: &[Request]) -> Result<HostScorer<'_>> {
        self.scorer_with(requests, true)
    }

    /// [`HostPolicy::scorer`]; `parallel` lets the large products use the rayon threads
    /// (off when other threads decode other shards at the same time).
    fn scorer_with(&self, requests: &[Request], parallel: bool) -> Result<HostScorer<'_>> {
        let input = self.policy.encoder_input(requests, &self.device)?;
        let [b, s, _] = input.x.dims();
        let n = input.candidates;
        let mut memory = to_vec(input.x);
        let bias = key_bias(&input.pad);
        self.encoder.forward(&mut memory, b, s, &bias, parallel);
        let cross = self
            .layers
            .iter()
            .map(|l| l.cross_memory(&memory, b, s, parallel))
            .collect();
        let items = if self.policy.local_index {
            to_vec(input.items)
        } else {
            Vec::new()
        };
        let max_vocab = self.vocab.iter().copied().max().unwrap_or(0);
        Ok(HostScorer {
            policy: self,
            memory,
            bias,
            cross,
            items,
            tuples: self.policy.head_tuples(requests),
            s,
            n,
            caches: Vec::new(),
            parallel,
            lse: TokenLse::new(n, max_vocab),
        })
    }

    /// Decodes one list per request (`width` per request with beam search), constrained by
    /// each request's trie, as [`crate::decode`] does; batches of 32 requests or more are
    /// split over the machine's threads, and each thread decodes in blocks of
    /// [`crate::HOST_DECODE_BLOCK`] requests.
    ///
    /// # Errors
    /// Input, trie and decoding errors.
    pub fn decode(
        &self,
        requests: &[Request],
        decoder: &mut Decoder,
    ) -> Result<Vec<Vec<DecodedList>>> {
        decode_shards(
            &self.policy,
            requests,
            decoder,
            HOST_DECODE_BLOCK,
            |rows, alone| self.scorer_with(&requests[rows], alone),
        )
    }

    /// The log-probability of each candidate being generated first, per request in
    /// candidate order (see [`crate::first_item_logprobs`]).
    ///
    /// # Errors
    /// Input, trie and scoring errors.
    pub fn first_item_logprobs(&self, requests: &[Request]) -> Result<Vec<Vec<f32>>> {
        first_item_chunks(&self.policy, requests, |chunk| self.scorer(chunk))
    }
}

/// A [`HostPolicy`] bound to one encoded batch of requests: a [`StepScorer`] with a key/value
/// cache per decoder layer, for greedy, sampling and beam decoding alike.
pub struct HostScorer<'a> {
    policy: &'a HostPolicy,
    /// Encoder output `[B, S, d]`.
    memory: Vec<f32>,
    /// Additive key mask `[B, S]`.
    bias: Vec<f32>,
    /// Cross-attention keys and values per decoder layer.
    cross: Vec<CrossMemory>,
    /// Candidate item embeddings `[B, N, d]` (local-index ablation only).
    items: Vec<f32>,
    tuples: Vec<Vec<Vec<u32>>>,
    s: usize,
    n: usize,
    caches: Vec<KvCache>,
    parallel: bool,
    lse: TokenLse,
}

impl StepScorer for HostScorer<'_> {
    fn score(
        &mut self,
        step: &StepBatch<'_>,
        out: &mut [f32],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        with_simd(
            #[inline(always)]
            || self.score_simd(step, out),
        )?;
        Ok(())
    }
}

impl HostScorer<'_> {
    /// [`StepScorer::score`]'s body (inlined into [`with_simd`]).
    #[inline(always)]
    fn score_simd(&mut self, step: &StepBatch<'_>, out: &mut [f32]) -> Result<()> {
        let host = self.policy;
        let policy = &host.policy;
        let (t, rows, d) = (step.step, step.rows(), host.d);
        if t == 0 {
            self.caches = host
                .layers
                .iter()
                .map(|_| KvCache::new(rows, policy.steps(), d))
                .collect();
        } else if let Some(first) = self.caches.first()
            && !in_order(step.parents, first.rows())
        {
            for cache in &mut self.caches {
                cache.reorder(step.parents);
            }
        }
        // Input: the previous token's embedding (BOS at step 0) + (level + slot).
        let (level, slot) = if policy.local_index {
            (0, t)
        } else {
            (t % policy.depth, t / policy.depth)
        };
        let level_emb = &host.level_emb[level * d..(level + 1) * d];
        let slot_emb = &host.slot_emb[slot * d..(slot + 1) * d];
        let chosen = policy.chosen_items(t, step.requests, &|r| step.prefix(r), &self.tuples)?;
        let mut x = vec![0.0; rows * d];
        for (r, xr) in x.chunks_exact_mut(d).enumerate() {
            let previous: &[f32] = if t == 0 {
                &host.bos
            } else {
                let token = step.prefix(r)[t - 1] as usize;
                if policy.local_index {
                    let at = (step.requests[r] as usize * self.n + token) * d;
                    &self.items[at..at + d]
                } else {
                    &host.tokens[(t - 1) % policy.depth][token * d..(token + 1) * d]
                }
            };
            for (i, o) in xr.iter_mut().enumerate() {
                *o = previous[i] + (level_emb[i] + slot_emb[i]);
            }
            // The chosen candidate's encoder output, as `Policy::previous_embedding` adds.
            if let Some(chosen) = &chosen {
                let at = (step.requests[r] as usize * self.s + self.s - self.n + chosen[r]) * d;
                for (o, m) in xr.iter_mut().zip(&self.memory[at..at + d]) {
                    *o += m;
                }
            }
        }
        for ((layer, cache), cross) in host.layers.iter().zip(&mut self.caches).zip(&self.cross) {
            layer.step(
                &mut x,
                t,
                cache,
                cross,
                &self.bias,
                step.requests,
                self.parallel,
            );
        }
        let h = host.final_norm.forward(&x);
        self.logits(t, &h, step, out)
    }

    /// Token logits of step `t` for the final decoder states `h [rows, d]` into `out`.
    #[inline(always)]
    fn logits(&mut self, t: usize, h: &[f32], step: &StepBatch<'_>, out: &mut [f32]) -> Result<()> {
        let host = self.policy;
        let policy = &host.policy;
        let rows = step.rows();
        let Some(query) = &host.pointer_query else {
            let head = &host.heads[if policy.local_index {
                0
            } else {
                t % policy.depth
            }];
            if rows * head.d_out() != out.len() {
                return Err(PolicyError::InvalidInput(format!(
                    "head gives {rows} x {} logits, the decoder expects {}",
                    head.d_out(),
                    out.len()
                )));
            }
            head.forward_into(h, rows, out, false);
            return Ok(());
        };
        let level = t % policy.depth;
        let v = host.vocab[level];
        if rows * v != out.len() {
            return Err(PolicyError::InvalidInput(format!(
                "{rows} rows of {v} tokens, the decoder expects {} values",
                out.len()
            )));
        }
        let global = (!host.heads.is_empty()).then(|| host.heads[level].forward(h, rows, false));
        let q = query.forward(h, rows, false);
        let d = host.d;
        let inv_sqrt_d = 1.0 / (d as f32).sqrt();
        let mut scores = vec![0.0; self.n];
        for (r, &request) in step.requests.iter().enumerate() {
            let req = request as usize;
            let tuples = &self.tuples[req];
            // Candidate j sits at memory position s - n + j of its request.
            let first = (req * self.s + self.s - self.n) * d;
            for (j, score) in scores.iter_mut().enumerate().take(tuples.len()) {
                let m = &self.memory[first + j * d..first + (j + 1) * d];
                *score = dot(&q[r * d..(r + 1) * d], m) * inv_sqrt_d;
            }
            self.lse.fill(
                tuples,
                step.prefix(r),
                (level, policy.depth),
                &scores[..tuples.len()],
                global.as_ref().map(|g| &g[r * v..(r + 1) * v]),
                &mut out[r * v..(r + 1) * v],
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ActionSpace, HistoryItem, OutputHead, PolicyArch, PolicyConfig, PolicyScorer,
        RetrieverInput,
    };
    use glorank_trie::{CandidateTrie, DecodeStrategy};

    /// Requests with histories and pools of different lengths, retriever scores and a user
    /// feature, tuples drawn from `vocab`.
    fn requests(vocab: &[usize], count: usize) -> Vec<Request> {
        (0..count)
            .map(|r| {
                // Distinct tuples: i * 37 is distinct mod 256 = 8 x 8 x 4 codes.
                let tuple = |i: usize| -> Vec<u32> {
                    let mut code = (i * 37 + r * 11) % 256;
                    vocab
                        .iter()
                        .map(|&v| {
                            let c = code % v;
                            code /= v;
                            c as u32
                        })
                        .collect()
                };
                let pool = 6 + (r * 3) % 9;
                Request {
                    user_features: vec![(r % 3) as u32],
                    history: (0..(r * 2) % 7)
                        .map(|i| HistoryItem {
                            tuple: tuple(100 + i),
                            labels: (i % 2) as u8,
                        })
                        .collect(),
                    candidates: (0..pool).map(tuple).collect(),
                    retriever_scores: (0..pool).map(|i| (i as f32 * 0.3).sin()).collect(),
                    exposures: Vec::new(),
                }
            })
            .collect()
    }

    fn config(head: OutputHead, action: ActionSpace, tie: bool, chosen: bool) -> PolicyConfig {
        let mut c = PolicyConfig::new(vec![8, 8, 4]).with_shape(3, 10, 16);
        c.arch = PolicyArch::default()
            .with_size(32, 4, 2)
            .with_output_head(head)
            .with_tied_heads(tie)
            .with_chosen_item_input(chosen);
        c.arch.action_space = action;
        c.inputs.retriever_score = true;
        c.user_field_sizes = vec![3];
        c
    }

    /// Greedy and beam lists and their log-probabilities, and the first-item scores, equal
    /// those of the burn path on every output head and on the local-index ablation.
    #[test]
    fn host_decoding_matches_the_burn_path() {
        let device = Device::flex();
        let cases = [
            (OutputHead::Global, ActionSpace::Global, false, false),
            (OutputHead::Global, ActionSpace::Global, true, false),
            (
                OutputHead::CandidateAware,
                ActionSpace::Global,
                false,
                false,
            ),
            (OutputHead::Pointer, ActionSpace::Global, false, false),
            (OutputHead::Global, ActionSpace::LocalIndex, false, false),
            (OutputHead::Global, ActionSpace::Global, false, true),
            (OutputHead::CandidateAware, ActionSpace::Global, false, true),
        ];
        let reqs = requests(&[8, 8, 4], 5);
        for (head, action, tie, chosen) in cases {
            let policy = Policy::new(&config(head, action, tie, chosen), &device).unwrap();
            let host = HostPolicy::new(&policy);
            let tries: Vec<CandidateTrie> = reqs.iter().map(|r| policy.trie(r).unwrap()).collect();
            let refs: Vec<&CandidateTrie> = tries.iter().collect();
            // Five requests, and one alone (one row per step: no gemm).
            for (strategy, n) in [
                (DecodeStrategy::Greedy, 5),
                (DecodeStrategy::Greedy, 1),
                (DecodeStrategy::Beam { width: 3 }, 5),
            ] {
                let mut burn = PolicyScorer::new(&policy, &reqs[..n], &device).unwrap();
                let want = Decoder::new(strategy, 0)
                    .unwrap()
                    .decode(&refs[..n], 3, &mut burn)
                    .unwrap();
                let got = host
                    .decode(&reqs[..n], &mut Decoder::new(strategy, 0).unwrap())
                    .unwrap();
                assert_eq!(want.iter().flatten().count(), got.iter().flatten().count());
                for (w, g) in want.iter().flatten().zip(got.iter().flatten()) {
                    let case =
                        format!("{head:?} {action:?} tie {tie} chosen {chosen} {strategy:?}");
                    assert_eq!(w.items, g.items, "{case}");
                    assert!((w.logprob - g.logprob).abs() < 1e-4, "{case}");
                }
            }
            if action == ActionSpace::Global {
                let want = crate::first_item_logprobs(&policy, &reqs, &device).unwrap();
                let got = host.first_item_logprobs(&reqs).unwrap();
                assert_eq!(want.concat().len(), got.concat().len());
                for (w, g) in want.iter().flatten().zip(got.iter().flatten()) {
                    assert!((w - g).abs() < 1e-4, "{head:?}: {w} against {g}");
                }
            }
        }
    }

    /// Under [`RetrieverInput::Rank`] the policy reads each pool's score order, not the
    /// scores' scale: an increasing transform of one request's scores leaves its first-item
    /// log-probabilities unchanged, while the raw-score input moves them. With both features
    /// the host path still equals the burn path.
    #[test]
    fn rank_input_reads_the_pool_order_not_the_scale() {
        let device = Device::flex();
        let reqs = requests(&[8, 8, 4], 4);
        let shifted: Vec<Request> = reqs
            .iter()
            .map(|r| Request {
                retriever_scores: r.retriever_scores.iter().map(|&x| 3.0 * x + 5.0).collect(),
                ..r.clone()
            })
            .collect();
        let first = |input: RetrieverInput, reqs: &[Request]| {
            let mut c = config(
                OutputHead::CandidateAware,
                ActionSpace::Global,
                false,
                false,
            );
            c.inputs.retriever_input = input;
            let policy = Policy::new(&c, &device).unwrap();
            HostPolicy::new(&policy)
                .first_item_logprobs(reqs)
                .unwrap()
                .concat()
        };
        let max_gap = |a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len());
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        let rank = first(RetrieverInput::Rank, &reqs);
        assert!(max_gap(&rank, &first(RetrieverInput::Rank, &shifted)) < 1e-5);
        let score = first(RetrieverInput::Score, &reqs);
        assert!(max_gap(&score, &first(RetrieverInput::Score, &shifted)) > 1e-3);

        let mut c = config(
            OutputHead::CandidateAware,
            ActionSpace::Global,
            false,
            false,
        );
        c.inputs.retriever_input = RetrieverInput::ScoreAndRank;
        let policy = Policy::new(&c, &device).unwrap();
        let want = crate::first_item_logprobs(&policy, &reqs, &device)
            .unwrap()
            .concat();
        let got = HostPolicy::new(&policy)
            .first_item_logprobs(&reqs)
            .unwrap()
            .concat();
        assert!(max_gap(&want, &got) < 1e-4);
    }

    /// Sharded host decoding (64 requests over the threads) gives the lists of one scorer
    /// over the whole batch.
    #[test]
    fn sharded_host_decoding_equals_one_batch() {
        let device = Device::flex();
        let policy = Policy::new(
            &config(
                OutputHead::CandidateAware,
                ActionSpace::Global,
                false,
                false,
            ),
            &device,
        )
        .unwrap();
        let host = HostPolicy::new(&policy);
        let reqs = requests(&[8, 8, 4], 64);
        let tries: Vec<CandidateTrie> = reqs.iter().map(|r| policy.trie(r).unwrap()).collect();
        let refs: Vec<&CandidateTrie> = tries.iter().collect();
        let mut whole = host.scorer(&reqs).unwrap();
        let want = Decoder::new(DecodeStrategy::Greedy, 0)
            .unwrap()
            .decode(&refs, 3, &mut whole)
            .unwrap();
        let got = host
            .decode(&reqs, &mut Decoder::new(DecodeStrategy::Greedy, 0).unwrap())
            .unwrap();
        let items = |l: &Vec<Vec<DecodedList>>| -> Vec<Vec<usize>> {
            l.iter().map(|x| x[0].items.clone()).collect()
        };
        assert_eq!(items(&want), items(&got));
    }

    #[test]
    fn a_bad_request_is_an_error_not_a_panic() {
        let device = Device::flex();
        let policy = Policy::new(
            &config(OutputHead::Global, ActionSpace::Global, false, false),
            &device,
        )
        .unwrap();
        let mut reqs = requests(&[8, 8, 4], 2);
        reqs[1].candidates[0] = vec![9, 0, 0];
        let err = HostPolicy::new(&policy)
            .decode(&reqs, &mut Decoder::new(DecodeStrategy::Greedy, 0).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("exceeds the vocabulary"), "{err}");
    }
}
