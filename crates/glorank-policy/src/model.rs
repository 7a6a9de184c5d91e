//! The policy network: request encoder and list decoder.

use crate::config::{ActionSpace, OutputHead, PolicyConfig};
use crate::{PolicyError, Result};
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use glorank_nn::layers::{CrossKv, DecoderLayer, Encoder, key_padding_bias, linear_rows};
use glorank_nn::{
    ContextEmbedder, HistoryItem, MASKED, RetrieverInput, exposure_feature, init_seeded, segment,
};
use glorank_trie::CandidateTrie;
use serde::{Deserialize, Serialize};

/// One reranking request, on the host: what the policy reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Category of each user attribute (`config.user_field_sizes.len()` values).
    pub user_features: Vec<u32>,
    /// History, oldest first (the most recent `max_history` are used).
    pub history: Vec<HistoryItem>,
    /// Semantic-ID tuple of each candidate.
    pub candidates: Vec<Vec<u32>>,
    /// Stage-1 retriever score of each candidate (empty: all zero; a policy with
    /// [`ModelInputs::retriever_score`](glorank_nn::ModelInputs::retriever_score) should get them).
    pub retriever_scores: Vec<f32>,
    /// How often each candidate was shown to this user before without a click (empty: all
    /// zero; a policy with [`ModelInputs::exposures`](glorank_nn::ModelInputs::exposures) should get them).
    #[serde(default)]
    pub exposures: Vec<u32>,
}

/// A batch of requests as tensors on one device (built by [`Policy::encode_inputs`]).
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// Encoder output `[B, S, d]`, `S = 1 + H + N`.
    pub memory: Tensor<3>,
    /// Additive mask `[B, 1, 1, S]` (0 for real positions, a large negative for padding).
    pub memory_bias: Tensor<4>,
    /// Candidate item embeddings `[B, N, d]` (the local-index decoder's inputs).
    pub candidates: Tensor<3>,
    /// The encoder's output at the candidate positions `[B, N, d]` (what the pointer scores
    /// of [`OutputHead::CandidateAware`] and [`OutputHead::Pointer`] read).
    pub candidate_memory: Tensor<3>,
    /// Semantic-ID tuple of each candidate, per request (empty unless the output head reads
    /// the candidates: only its eligibility masks need them).
    pub tuples: Vec<Vec<Vec<u32>>>,
    /// Candidates per request.
    pub pool_sizes: Vec<usize>,
}

/// What the encoder reads for a batch (built by `Policy::encoder_input`).
pub(crate) struct EncoderInput {
    /// Embedded positions `[B, S, d]`, `S = 1 + H + N`: user, history, candidates.
    pub x: Tensor<3>,
    /// `B x S` padding flags, row-major.
    pub pad: Vec<bool>,
    /// Candidate item embeddings `[B, N, d]` (before segment, score and position terms).
    pub items: Tensor<3>,
    /// `N`, the largest pool of the batch.
    pub candidates: usize,
}

/// The GloRank policy network (see the crate documentation for the architecture).
#[derive(Module, Debug)]
pub struct Policy {
    /// Token, user, label, recency and segment embeddings (token tables shared by history,
    /// candidates and decoder).
    pub(crate) embedder: ContextEmbedder,
    /// Projection of the per-candidate side features: the retriever features, then the
    /// exposure feature when it is on (`retriever_input.width() + use_exposures -> d`).
    pub(crate) score_proj: Linear,
    /// Local-index ablation only: an embedding of each candidate's input position
    /// (`max_candidates x d`), so that the fixed head over positions can tell which item sits
    /// at which index. Absent in the global policy, whose candidates are a set.
    pub(crate) position_emb: Option<Embedding>,
    pub(crate) encoder: Encoder,
    /// Beginning-of-list input `[1, d]`.
    pub(crate) bos: Param<Tensor<2>>,
    /// Level being decoded.
    pub(crate) level_emb: Embedding,
    /// List slot being decoded.
    pub(crate) slot_emb: Embedding,
    pub(crate) layers: Vec<DecoderLayer>,
    pub(crate) final_norm: LayerNorm,
    /// Global: one head per level (`d -> vocab_l`); none under [`OutputHead::Pointer`].
    /// Local index: one head `d -> max_candidates`.
    pub(crate) heads: Vec<Linear>,
    /// Query projection of the pointer scores (`d -> d`; present when the output head reads
    /// the candidates).
    pub(crate) pointer_query: Option<Linear>,
    pub(crate) depth: usize,
    pub(crate) list_len: usize,
    pub(crate) max_candidates: usize,
    pub(crate) local_index: bool,
    pub(crate) use_score: bool,
    /// The features built from the retriever scores.
    #[module(skip)]
    pub(crate) retriever_input: RetrieverInput,
    /// Whether the side features end with `ln(1 + exposures)`.
    #[module(skip)]
    pub(crate) use_exposures: bool,
    pub(crate) tie_heads: bool,
    /// Whether the decoder reads the encoder output of each chosen candidate
    /// ([`PolicyArch::chosen_item_input`](crate::PolicyArch::chosen_item_input)).
    pub(crate) chosen_item_input: bool,
    /// Projection of the candidates' content vectors (`dim -> d`; present with
    /// [`PolicyConfig::content`]).
    pub(crate) content_proj: Option<Linear>,
    /// The content vectors by semantic ID.
    #[module(skip)]
    pub(crate) content: Option<std::sync::Arc<ContentTable>>,
}

/// [`crate::ItemContent`] indexed for lookup.
#[derive(Debug)]
pub(crate) struct ContentTable {
    dim: usize,
    row: std::collections::HashMap<Vec<u32>, usize>,
    vectors: Vec<f32>,
}

impl ContentTable {
    fn new(c: &crate::ItemContent) -> Self {
        Self {
            dim: c.dim,
            row: c
                .tuples
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i))
                .collect(),
            vectors: c.vectors.clone(),
        }
    }

    /// Content vectors `[b, n, dim]` of each request's candidates (zeros for a tuple the
    /// table lacks and for padding).
    fn batch(&self, requests: &[Request], n: usize, device: &Device) -> Tensor<3> {
        let d = self.dim;
        let mut v = vec![0f32; requests.len() * n * d];
        for (r, req) in requests.iter().enumerate() {
            for (c, t) in req.candidates.iter().enumerate() {
                if let Some(&i) = self.row.get(t) {
                    v[(r * n + c) * d..(r * n + c + 1) * d]
                        .copy_from_slice(&self.vectors[i * d..(i + 1) * d]);
                }
            }
        }
        Tensor::<3>::from_data(TensorData::new(v, [requests.len(), n, d]), device)
    }
}

impl Policy {
    /// A freshly initialised policy on `device`; the same `config.arch.seed` gives the same weights.
    ///
    /// # Errors
    /// [`PolicyError::InvalidConfig`] for an invalid configuration.
    pub fn new(config: &PolicyConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        Ok(init_seeded(device, config.arch.seed, || {
            Self::build(config, device)
        }))
    }

    /// Builds the modules (called under [`init_seeded`]).
    fn build(config: &PolicyConfig, device: &Device) -> Self {
        let d = config.arch.d_model;
        let heads = match config.arch.action_space {
            ActionSpace::Global if !config.arch.output_head.uses_global() => Vec::new(),
            ActionSpace::Global => config
                .vocab_sizes
                .iter()
                .map(|&v| LinearConfig::new(d, v).init(device))
                .collect(),
            ActionSpace::LocalIndex => {
                vec![LinearConfig::new(d, config.max_candidates).init(device)]
            }
        };
        let bos = Tensor::<2>::random([1, d], burn::tensor::Distribution::Normal(0.0, 1.0), device);
        Self {
            embedder: ContextEmbedder::new(
                &config.vocab_sizes,
                &config.user_field_sizes,
                d,
                config.max_history,
                config.arch.item_buckets,
                device,
            )
            .with_user_scale(config.inputs.user_lr_scale),
            score_proj: LinearConfig::new(
                config.inputs.retriever_input.width() + usize::from(config.inputs.exposures),
                d,
            )
            .init(device),
            position_emb: (config.arch.action_space == ActionSpace::LocalIndex)
                .then(|| EmbeddingConfig::new(config.max_candidates, d).init(device)),
            encoder: Encoder::new(
                d,
                config.arch.heads,
                config.arch.d_ff(),
                config.arch.layers,
                config.arch.dropout,
                device,
            ),
            bos: Param::from_tensor(bos),
            level_emb: EmbeddingConfig::new(config.depth(), d).init(device),
            slot_emb: EmbeddingConfig::new(config.list_len, d).init(device),
            layers: (0..config.arch.layers)
                .map(|_| DecoderLayer::new(d, config.arch.heads, config.arch.d_ff(), config.arch.dropout, device))
                .collect(),
            final_norm: LayerNormConfig::new(d).init(device),
            heads,
            pointer_query: (config.arch.action_space == ActionSpace::Global
                && config.arch.output_head.uses_pointer())
            .then(|| LinearConfig::new(d, d).init(device)),
            depth: config.depth(),
            list_len: config.list_len,
            max_candidates: config.max_candidates,
            local_index: config.arch.action_space == ActionSpace::LocalIndex,
            use_score: config.inputs.retriever_score,
            retriever_input: config.inputs.retriever_input,
            use_exposures: config.inputs.exposures,
            tie_heads: config.arch.tie_heads,
            chosen_item_input: config.arch.chosen_item_input,
            content_proj: config
                .content
                .as_ref()
                .map(|c| LinearConfig::new(c.dim, d).init(device)),
            content: config
                .content
                .as_ref()
                .map(|c| std::sync::Arc::new(ContentTable::new(c))),
        }
    }

    /// Tokens per item.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Items per list.
    pub fn list_len(&self) -> usize {
        self.list_len
    }

    /// Whether this is the local-index (LAS) ablation.
    pub fn is_local_index(&self) -> bool {
        self.local_index
    }

    /// Decoding steps per list.
    pub fn steps(&self) -> usize {
        if self.local_index {
            self.list_len
        } else {
            self.list_len * self.depth
        }
    }

    /// Vocabulary of each decoding level: the semantic-ID vocabularies (global) or
    /// `[max_candidates]` (local index).
    pub fn vocab_sizes(&self) -> Vec<usize> {
        if self.local_index {
            vec![self.max_candidates]
        } else {
            self.embedder.vocab_sizes()
        }
    }

    /// The decoding trie of a request for this policy's action space: the candidates'
    /// semantic IDs (global) or their positions (local index).
    ///
    /// # Errors
    /// [`PolicyError::Trie`] for invalid candidate tuples; [`PolicyError::InvalidInput`] for a
    /// pool larger than `max_candidates`.
    pub fn trie(&self, request: &Request) -> Result<CandidateTrie> {
        if request.candidates.len() > self.max_candidates {
            return Err(PolicyError::InvalidInput(format!(
                "{} candidates exceed max_candidates {}",
                request.candidates.len(),
                self.max_candidates
            )));
        }
        Ok(if self.local_index {
            let positions: Vec<[u32; 1]> =
                (0..request.candidates.len() as u32).map(|i| [i]).collect();
            CandidateTrie::new(&positions, &[self.max_candidates])?
        } else {
            CandidateTrie::new(&request.candidates, &self.vocab_sizes())?
        })
    }

    /// Checks a request against the configuration.
    fn check(&self, r: usize, req: &Request) -> Result<()> {
        self.embedder
            .check_context(r, &req.user_features, &req.history)?;
        if req.candidates.is_empty() || req.candidates.len() > self.max_candidates {
            return Err(PolicyError::InvalidInput(format!(
                "request {r}: {} candidates (need 1..={})",
                req.candidates.len(),
                self.max_candidates
            )));
        }
        if !req.retriever_scores.is_empty() && req.retriever_scores.len() != req.candidates.len() {
            return Err(PolicyError::InvalidInput(format!(
                "request {r}: retriever_scores and candidates differ in length"
            )));
        }
        if !req.exposures.is_empty() && req.exposures.len() != req.candidates.len() {
            return Err(PolicyError::InvalidInput(format!(
                "request {r}: exposures and candidates differ in length"
            )));
        }
        for c in &req.candidates {
            self.embedder
                .check_tuple(&format!("request {r}, candidate"), c)?;
        }
        Ok(())
    }

    /// Encodes a batch of requests on `device` (the policy's device): pads histories and pools,
    /// runs the encoder over `[user, history..., candidates...]`.
    ///
    /// Shapes: memory `[B, 1 + H + N, d]` with `H` the longest history (at least 1) and `N`
    /// the largest pool of the batch.
    ///
    /// # Errors
    /// [`PolicyError::InvalidInput`] naming the request and field.
    pub fn encode_inputs(&self, requests: &[Request], device: &Device) -> Result<EncodedBatch> {
        let input = self.encoder_input(requests, device)?;
        let [b, s, _] = input.x.dims();
        let n = input.candidates;
        let memory_bias = key_padding_bias(&input.pad, b, s, device);
        let memory = self.encoder.forward(input.x, memory_bias.clone());
        Ok(EncodedBatch {
            candidate_memory: memory.clone().narrow(1, s - n, n),
            memory,
            memory_bias,
            candidates: input.items,
            tuples: self.head_tuples(requests),
            pool_sizes: requests.iter().map(|r| r.candidates.len()).collect(),
        })
    }

    /// The candidates' tuples per request when the output head reads them (its eligibility
    /// masks need them), else nothing.
    pub(crate) fn head_tuples(&self, requests: &[Request]) -> Vec<Vec<Vec<u32>>> {
        if self.pointer_query.is_some() || self.chosen_item_input {
            requests.iter().map(|r| r.candidates.clone()).collect()
        } else {
            Vec::new()
        }
    }

    /// The encoder's input for a batch of requests: checks them, pads histories and pools,
    /// embeds `[user, history..., candidates...]`.
    ///
    /// # Errors
    /// [`PolicyError::InvalidInput`] naming the request and field.
    pub(crate) fn encoder_input(
        &self,
        requests: &[Request],
        device: &Device,
    ) -> Result<EncoderInput> {
        if requests.is_empty() {
            return Err(PolicyError::InvalidInput("empty batch".into()));
        }
        for (r, req) in requests.iter().enumerate() {
            self.check(r, req)?;
        }
        let b = requests.len();
        let n = requests
            .iter()
            .map(|r| r.candidates.len())
            .max()
            .unwrap_or(1);
        let contexts: Vec<(&[u32], &[HistoryItem])> = requests
            .iter()
            .map(|r| (r.user_features.as_slice(), r.history.as_slice()))
            .collect();
        let ctx = self.embedder.context(&contexts, device);
        let s = 1 + ctx.history_len + n;
        let mut pad = Vec::with_capacity(b * s);
        let retriever_width = self.retriever_input.width();
        let width = retriever_width + usize::from(self.use_exposures);
        let mut score = vec![0f32; b * n * width];
        for (r, req) in requests.iter().enumerate() {
            pad.extend_from_slice(&ctx.pad[r * (s - n)..(r + 1) * (s - n)]);
            pad.extend((0..n).map(|c| c >= req.candidates.len()));
            let row = &mut score[r * n * width..(r + 1) * n * width];
            if self.use_score {
                let f = self.retriever_input.features(&req.retriever_scores);
                for (c, f) in f.chunks(retriever_width).enumerate() {
                    row[c * width..c * width + retriever_width].copy_from_slice(f);
                }
            }
            if self.use_exposures {
                for (c, &e) in req.exposures.iter().enumerate() {
                    row[c * width + retriever_width] = exposure_feature(e);
                }
            }
        }
        let rows: Vec<&[Vec<u32>]> = requests.iter().map(|r| r.candidates.as_slice()).collect();
        let cand_items = self.embedder.embed_items(&rows, n, device);
        let mut cand = cand_items.clone() + self.embedder.segment(segment::ITEMS, b, n, device);
        if self.use_score || self.use_exposures {
            let s = Tensor::<3>::from_data(TensorData::new(score, [b, n, width]), device);
            cand = cand + linear_rows(&self.score_proj, s);
        }
        if let (Some(proj), Some(table)) = (&self.content_proj, &self.content) {
            cand = cand + linear_rows(proj, table.batch(requests, n, device));
        }
        if let Some(pos) = &self.position_emb {
            let idx: Vec<i64> = (0..b).flat_map(|_| 0..n as i64).collect();
            cand = cand
                + pos.forward(Tensor::<2, Int>::from_data(
                    TensorData::new(idx, [b, n]),
                    device,
                ));
        }
        Ok(EncoderInput {
            x: Tensor::cat(vec![ctx.x, cand], 1),
            pad,
            items: cand_items,
            candidates: n,
        })
    }

    /// Cross-attention keys/values of every decoder layer for `memory`.
    pub(crate) fn cross_kv(&self, memory: &Tensor<3>) -> Vec<CrossKv> {
        self.layers
            .iter()
            .map(|l| l.cross_kv(memory.clone()))
            .collect()
    }

    /// Decoder input at step `t` added to the previous token's embedding: level + slot.
    pub(crate) fn position_embedding(&self, t: usize, rows: usize, device: &Device) -> Tensor<3> {
        let (level, slot) = if self.local_index {
            (0, t)
        } else {
            (t % self.depth, t / self.depth)
        };
        let idx = |v: usize| {
            Tensor::<2, Int>::from_data(TensorData::new(vec![v as i64; rows], [rows, 1]), device)
        };
        self.level_emb.forward(idx(level)) + self.slot_emb.forward(idx(slot))
    }

    /// Embeddings `[R, 1, d]` of the tokens emitted at step `t - 1` (`tokens[r]`) for rows
    /// of `requests`; the BOS vector at `t = 0`.
    ///
    /// `chosen`, when [`Policy::chosen_items`] gives it at a slot's first token, is the
    /// candidate each row completed at step `t - 1`; its encoder output is added.
    pub(crate) fn previous_embedding(
        &self,
        t: usize,
        tokens: &[u32],
        requests: &[u32],
        batch: &EncodedBatch,
        chosen: Option<&[usize]>,
        device: &Device,
    ) -> Tensor<3> {
        let rows = requests.len();
        if t == 0 {
            let d = self.bos.val().dims()[1];
            return self.bos.val().reshape([1, 1, d]).repeat_dim(0, rows);
        }
        if self.local_index {
            let [_, n, d] = batch.candidates.dims();
            let idx: Vec<i64> = tokens
                .iter()
                .zip(requests)
                .map(|(&p, &r)| (r as usize * n + p as usize) as i64)
                .collect();
            let flat = batch
                .candidates
                .clone()
                .reshape([batch.pool_sizes.len() * n, d]);
            let sel = flat.select(
                0,
                Tensor::<1, Int>::from_data(TensorData::new(idx, [rows]), device),
            );
            return sel.reshape([rows, 1, d]);
        }
        let level = (t - 1) % self.depth;
        let ids: Vec<i64> = tokens.iter().map(|&x| i64::from(x)).collect();
        let token = self.embedder.token(
            level,
            Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, 1]), device),
        );
        match chosen {
            Some(chosen) => {
                let [b, n, d] = batch.candidate_memory.dims();
                let idx: Vec<i64> = chosen
                    .iter()
                    .zip(requests)
                    .map(|(&c, &r)| (r as usize * n + c) as i64)
                    .collect();
                let rows_memory = batch.candidate_memory.clone().reshape([b * n, d]).select(
                    0,
                    Tensor::<1, Int>::from_data(TensorData::new(idx, [rows]), device),
                );
                token + rows_memory.reshape([rows, 1, d])
            }
            None => token,
        }
    }

    /// Whether step `t`'s decoder input carries the candidate completed at `t - 1`: under
    /// [`PolicyArch::chosen_item_input`](crate::PolicyArch::chosen_item_input), at the first token of every slot after the first.
    fn reads_chosen_at(&self, t: usize) -> bool {
        self.chosen_item_input && !self.local_index && t > 0 && t.is_multiple_of(self.depth)
    }

    /// The candidate each row completed at step `t - 1`, when the decoder reads chosen
    /// candidates ([`PolicyArch::chosen_item_input`](crate::PolicyArch::chosen_item_input)) and `t` starts a slot after the
    /// first; `None` otherwise. `prefix(row)` is the row's tokens so far, `tuples[request]`
    /// the request's candidate tuples ([`Policy::head_tuples`]).
    ///
    /// # Errors
    /// [`PolicyError::InvalidInput`] when a row's last item is none of its candidates.
    pub(crate) fn chosen_items<'p>(
        &self,
        t: usize,
        requests: &[u32],
        prefix: &dyn Fn(usize) -> &'p [u32],
        tuples: &[Vec<Vec<u32>>],
    ) -> Result<Option<Vec<usize>>> {
        if !self.reads_chosen_at(t) {
            return Ok(None);
        }
        requests
            .iter()
            .enumerate()
            .map(|(row, &r)| {
                let item = &prefix(row)[t - self.depth..t];
                tuples[r as usize]
                    .iter()
                    .position(|c| c.as_slice() == item)
                    .ok_or_else(|| {
                        PolicyError::InvalidInput(format!(
                            "row {row}: tokens {item:?} are none of request {r}'s candidates"
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Logits of the head for step `t` from decoder states `h [R, d]` -> `[R, V]`.
    pub(crate) fn head(&self, t: usize, h: Tensor<2>) -> Tensor<2> {
        let l = if self.local_index { 0 } else { t % self.depth };
        let logits = self.heads[l].forward(h.clone());
        if self.tie_heads && !self.local_index {
            // Tied term: similarity of the state to every code's input embedding, so codes
            // present among the attended candidates score high from the start.
            logits + h.matmul(self.embedder.table(l).transpose())
        } else {
            logits
        }
    }

    /// Pointer scores `[B, M, N]`: decoder states `h [B, M, d]`, projected, against the
    /// candidates' encoder outputs `cand [B, N, d]`, over `sqrt(d)`.
    fn pointer_scores(&self, query: &Linear, h: Tensor<3>, cand: Tensor<3>) -> Tensor<3> {
        let d = h.dims()[2];
        linear_rows(query, h)
            .matmul(cand.swap_dims(1, 2))
            .mul_scalar(1.0 / (d as f32).sqrt())
    }

    /// The output head this policy was built with (see [`OutputHead`]).
    pub fn output_head(&self) -> OutputHead {
        match (self.pointer_query.is_some(), self.heads.is_empty()) {
            (false, _) => OutputHead::Global,
            (true, false) => OutputHead::CandidateAware,
            (true, true) => OutputHead::Pointer,
        }
    }

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

/// Whether row indices `ids` are `0..rows` in order (a `select` by them is the identity).
pub(crate) fn in_order(ids: &[u32], rows: usize) -> bool {
    ids.len() == rows && ids.iter().enumerate().all(|(i, &q)| q as usize == i)
}

/// Row indices `ids` as an index tensor `[ids.len()]` for `select`.
pub(crate) fn index(ids: &[u32], device: &Device) -> Tensor<1, Int> {
    let ids: Vec<i64> = ids.iter().map(|&r| i64::from(r)).collect();
    let n = ids.len();
    Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), device)
}

/// `log(sum(exp(x)))` along dimension 1: `[R, K] -> [R, 1]`, shifted by the row maximum.
fn log_sum_exp(x: Tensor<2>) -> Tensor<2> {
    let max = x.clone().max_dim(1).detach();
    (x - max.clone()).exp().sum_dim(1).log() + max
}

/// Scratch buffers of the candidate-aware token logits (one row at a time).
pub(crate) struct TokenLse {
    eligible: Vec<bool>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl TokenLse {
    /// Buffers for pools of up to `n` candidates and vocabularies of up to `v` tokens.
    pub(crate) fn new(n: usize, v: usize) -> Self {
        Self {
            eligible: vec![false; n],
            max: vec![f32::NEG_INFINITY; v],
            sum: vec![0.0; v],
        }
    }

    /// Writes to `out [v]` one row's token logits at `level` (of `depth`) after `prefix`: for
    /// each token, the log-sum-exp of the pointer `scores` (one per candidate) over the
    /// remaining candidates whose tuple extends the prefix with it, plus the token's `global`
    /// logit; [`MASKED`] for tokens no remaining candidate extends.
    #[inline(always)]
    pub(crate) fn fill(
        &mut self,
        tuples: &[Vec<u32>],
        prefix: &[u32],
        (level, depth): (usize, usize),
        scores: &[f32],
        global: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let v = out.len();
        let eligible = &mut self.eligible[..tuples.len()];
        let (max, sum) = (&mut self.max[..v], &mut self.sum[..v]);
        eligible_candidates(tuples, prefix, depth, eligible);
        max.fill(f32::NEG_INFINITY);
        sum.fill(0.0);
        for (j, tuple) in tuples.iter().enumerate().filter(|&(j, _)| eligible[j]) {
            let c = tuple[level] as usize;
            max[c] = max[c].max(scores[j]);
        }
        for (j, tuple) in tuples.iter().enumerate().filter(|&(j, _)| eligible[j]) {
            let c = tuple[level] as usize;
            sum[c] += (scores[j] - max[c]).exp();
        }
        for c in 0..v {
            out[c] = if sum[c] > 0.0 {
                max[c] + sum[c].ln() + global.map_or(0.0, |g| g[c])
            } else {
                MASKED
            };
        }
    }
}

/// Marks in `out` the candidates (by their tuples) that may follow `prefix`, a token prefix
/// of whole items then a partial one: not already listed, and extending the partial item.
pub(crate) fn eligible_candidates(
    tuples: &[Vec<u32>],
    prefix: &[u32],
    depth: usize,
    out: &mut [bool],
) {
    let done = prefix.len() / depth * depth;
    let (listed, partial) = prefix.split_at(done);
    out.fill(false);
    for (e, tuple) in out.iter_mut().zip(tuples) {
        *e = tuple.starts_with(partial)
            && !listed
                .chunks_exact(depth)
                .any(|item| item == tuple.as_slice());
    }
}
