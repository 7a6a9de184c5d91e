//! The policy network: request encoder and list decoder.

use crate::config::{ActionSpace, OutputHead, PolicyConfig};
use crate::{PolicyError, Result};
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use glorank_nn::layers::{CrossKv, DecoderLayer, Encoder, key_padding_bias, linear_rows};
use glorank_nn::{
    ContextEmbedder, HistoryItem, RetrieverInput, exposure_feature, init_seeded, segment,
};
use glorank_trie::CandidateTrie;
use serde::{Deserialize, Serialize};

mod forward;
mod tokens;

pub(crate) use tokens::{TokenLse, eligible_candidates, in_order, index};

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
                .map(|_| {
                    DecoderLayer::new(
                        d,
                        config.arch.heads,
                        config.arch.d_ff(),
                        config.arch.dropout,
                        device,
                    )
                })
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
}
