//! Incremental decoding with a key/value cache, as a [`StepScorer`] for `glorank-trie`.
//!
//! The encoder runs once per request and every decoder layer's cross-attention keys/values
//! are computed once from its output. Each step feeds only the newest position through the
//! decoder, appending its self-attention keys/values to the per-row cache.
//!
//! Beam search reorders rows between steps. The cache is **reordered, not recomputed**: each
//! step gathers the cached keys/values of every row's parent (`StepBatch::parents`) with one
//! `select` per layer. That costs a copy of `rows x t x d` values per layer, against
//! recomputing the whole prefix (`t` positions through every layer) per step: cheaper at
//! every step, and it keeps greedy, sampling and beam on the same code path.

use crate::model::{EncodedBatch, Policy, Request, in_order, index};
use crate::{PolicyError, Result};
use burn::tensor::{Device, Tensor};
use glorank_nn::layers::CrossKv;
use glorank_trie::{
    CandidateTrie, DecodedList, Decoder, ShardPlan, StepBatch, StepScorer, TrieError,
};

/// A policy bound to one batch of requests, scoring decoding steps with a KV cache.
pub struct PolicyScorer<'a> {
    policy: &'a Policy,
    device: Device,
    batch: EncodedBatch,
    cross: Vec<CrossKv>,
    /// Cross keys/values and memory bias gathered for the current row layout.
    rows_cross: Option<(Vec<u32>, Vec<CrossKv>, Tensor<4>)>,
    cache: Vec<Option<(Tensor<4>, Tensor<4>)>>,
}

impl<'a> PolicyScorer<'a> {
    /// Encodes `requests` and prepares the cross-attention keys/values. Use a policy on a
    /// plain (non-autodiff) device, typically `policy.valid()`.
    ///
    /// # Errors
    /// [`PolicyError::InvalidInput`] for requests that do not fit the policy.
    pub fn new(policy: &'a Policy, requests: &[Request], device: &Device) -> Result<Self> {
        let batch = policy.encode_inputs(requests, device)?;
        let cross = policy.cross_kv(&batch.memory);
        Ok(Self {
            policy,
            device: device.clone(),
            batch,
            cross,
            rows_cross: None,
            cache: Vec::new(),
        })
    }

    /// Cross keys/values and memory bias for rows of `requests` (recomputed only when the row
    /// layout changes, e.g. while a beam fills up).
    fn cross_for(&mut self, requests: &[u32]) -> (Vec<CrossKv>, Tensor<4>) {
        if in_order(requests, self.batch.pool_sizes.len()) {
            return (self.cross.clone(), self.batch.memory_bias.clone());
        }
        if let Some((rows, kv, bias)) = &self.rows_cross
            && rows == requests
        {
            return (kv.clone(), bias.clone());
        }
        let idx = index(requests, &self.device);
        let kv: Vec<CrossKv> = self
            .cross
            .iter()
            .map(|c| CrossKv {
                k: c.k.clone().select(0, idx.clone()),
                v: c.v.clone().select(0, idx.clone()),
            })
            .collect();
        let bias = self.batch.memory_bias.clone().select(0, idx);
        self.rows_cross = Some((requests.to_vec(), kv.clone(), bias.clone()));
        (kv, bias)
    }
}

impl StepScorer for PolicyScorer<'_> {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let t = batch.step;
        let rows = batch.rows();
        if t == 0 {
            self.cache = vec![None; self.cross.len()];
        } else {
            // Reorder the cache to the rows' parents (identity for greedy and sampling).
            let cached_rows = self
                .cache
                .first()
                .and_then(|c| c.as_ref())
                .map(|(k, _)| k.dims()[0]);
            if cached_rows.is_none_or(|n| !in_order(batch.parents, n)) {
                let idx = index(batch.parents, &self.device);
                for c in self.cache.iter_mut() {
                    if let Some((k, v)) = c.take() {
                        *c = Some((k.select(0, idx.clone()), v.select(0, idx.clone())));
                    }
                }
            }
        }
        let last: Vec<u32> = (0..rows)
            .map(|r| if t == 0 { 0 } else { batch.prefix(r)[t - 1] })
            .collect();
        let chosen = self.policy.chosen_items(
            t,
            batch.requests,
            &|r| batch.prefix(r),
            &self.batch.tuples,
        )?;
        let x = self.policy.previous_embedding(
            t,
            &last,
            batch.requests,
            &self.batch,
            chosen.as_deref(),
            &self.device,
        ) + self.policy.position_embedding(t, rows, &self.device);
        let (cross, bias) = self.cross_for(batch.requests);
        let caches = std::mem::take(&mut self.cache);
        let (h, new_cache) = self.policy.decode_step(x, caches, &cross, &bias);
        self.cache = new_cache.into_iter().map(Some).collect();
        let prefix = |r: usize| batch.prefix(r);
        self.policy
            .step_logits(t, h, &self.batch, batch.requests, &prefix, out)?;
        Ok(())
    }
}

/// Fewest requests a decoding thread gets from [`decode`](crate::decode).
pub const MIN_DECODE_SHARD: usize = 16;

/// Most requests the host path ([`HostPolicy`](crate::HostPolicy)) decodes together on one thread: a thread
/// decodes its share of a batch in blocks of this many requests. The decoder's
/// cross-attention reads every request's encoder keys and values at every step (about
/// 200 KB per request at the default dimensions); in blocks of 16 they stay in cache between
/// steps instead of streaming from memory. Measured with `glorank bench --synthetic`
/// (greedy, batch 256, two threads): 711-759 requests/s in one block per thread, 793-749 in
/// blocks of 64, 883-926 of 32, 927-966 of 16, 887-950 of 8-12.
pub const HOST_DECODE_BLOCK: usize = 16;

/// [`decode`](crate::decode) with every step run as burn operations on `device` (the GPU path, and the
/// reference the host path is tested against).
///
/// # Errors
/// Input, trie and decoding errors.
pub fn decode_on_device(
    policy: &Policy,
    requests: &[Request],
    decoder: &mut Decoder,
    device: &Device,
) -> Result<Vec<Vec<DecodedList>>> {
    decode_shards(policy, requests, decoder, usize::MAX, |rows, _| {
        PolicyScorer::new(policy, &requests[rows], device)
    })
}

/// Decodes `requests` in shards (see [`decode`](crate::decode)), each thread in blocks of at most
/// `block_rows` requests, with the scorers `make_scorer` builds for a block; its flag says
/// whether one thread decodes the whole batch (no other block runs at the same time, so the
/// scorer may use every core).
pub(crate) fn decode_shards<S, F>(
    policy: &Policy,
    requests: &[Request],
    decoder: &mut Decoder,
    block_rows: usize,
    make_scorer: F,
) -> Result<Vec<Vec<DecodedList>>>
where
    S: StepScorer,
    F: Fn(std::ops::Range<usize>, bool) -> Result<S> + Sync,
{
    let tries: Vec<CandidateTrie> = requests
        .iter()
        .map(|r| policy.trie(r))
        .collect::<Result<_>>()?;
    let refs: Vec<&CandidateTrie> = tries.iter().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = ShardPlan::new(threads, MIN_DECODE_SHARD).with_block_rows(block_rows);
    let alone = plan.threads_for(requests.len()) == 1;
    decoder
        .decode_sharded(&refs, policy.list_len(), plan, |rows| {
            make_scorer(rows, alone).map_err(|e| Box::new(e) as _)
        })
        .map_err(|e| match e {
            // A request the policy rejects keeps its own error.
            TrieError::Scorer(inner) => match inner.downcast::<PolicyError>() {
                Ok(policy_error) => *policy_error,
                Err(other) => PolicyError::from(TrieError::Scorer(other)),
            },
            other => PolicyError::from(other),
        })
}

/// Requests scored together by [`first_item_logprobs`](crate::first_item_logprobs) (each brings one row per candidate).
pub(crate) const FIRST_ITEM_CHUNK: usize = 32;

/// [`first_item_logprobs`](crate::first_item_logprobs) over chunks of [`FIRST_ITEM_CHUNK`] requests, each scored by the
/// scorer `make_scorer` builds for it.
pub(crate) fn first_item_chunks<S: StepScorer>(
    policy: &Policy,
    requests: &[Request],
    make_scorer: impl Fn(&[Request]) -> Result<S>,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(FIRST_ITEM_CHUNK) {
        let tries: Vec<CandidateTrie> = chunk
            .iter()
            .map(|r| policy.trie(r))
            .collect::<Result<_>>()?;
        let refs: Vec<&CandidateTrie> = tries.iter().collect();
        let mut scorer = make_scorer(chunk)?;
        out.extend(glorank_trie::first_item_logprobs(&refs, &mut scorer)?);
    }
    Ok(out)
}
