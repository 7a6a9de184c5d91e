//! Batched constrained decoding: greedy, seeded sampling and beam search over any
//! [`StepScorer`].
//!
//! Every list has exactly `list_len` items of `depth` tokens, so all rows of a batch advance
//! in lock-step: step `t` decodes level `t % depth` of slot `t / depth`. At each step the
//! scorer fills one row of scores (logits or log-probabilities) over the level's vocabulary
//! per decoding row; the decoder masks the tokens the row's [`ListState`] does not allow and
//! normalises over the allowed ones only (a log-softmax over the allowed set), then picks.

use crate::penalty::{PrefixPenalty, check_prefix_penalty};
use crate::trie::{CandidateTrie, ListState};
use crate::{Result, TrieError};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Batches at least this large are processed with rayon; smaller ones stay on one thread,
/// where the scheduling overhead would exceed the work.
const PARALLEL_ROWS: usize = 64;

/// Widest beam [`DecodeStrategy::validate`] accepts: each hypothesis holds its own decoder
/// cache (about 50 KB per request at the default policy size), so the width bounds memory.
pub const MAX_BEAM_WIDTH: usize = 256;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DecodeStrategy {
    /// The most probable allowed token (ties: the lowest token id).
    Greedy,
    /// A draw from `softmax(score / temperature)` over the allowed tokens, optionally
    /// restricted to the `top_k` highest-scoring of them.
    Sample {
        /// Softmax temperature, `> 0`.
        temperature: f32,
        /// Keep only the `k` best allowed tokens (`None`: all).
        top_k: Option<usize>,
    },
    /// Beam search over whole lists, returning the `width` best lists by total log-prob.
    ///
    /// The beam is anchored on the greedy path: if the greedy continuation would fall out of
    /// the beam it replaces the weakest hypothesis, so the best list returned never has a
    /// lower total log-prob than greedy decoding.
    Beam {
        /// Number of hypotheses kept per request, `>= 1`.
        width: usize,
    },
}

impl std::fmt::Display for DecodeStrategy {
    /// `greedy`, `beam:W`, `sample:T` or `sample:T:K` (what [`DecodeStrategy::from_str`] reads).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Greedy => f.write_str("greedy"),
            Self::Beam { width } => write!(f, "beam:{width}"),
            Self::Sample {
                temperature,
                top_k: None,
            } => write!(f, "sample:{temperature}"),
            Self::Sample {
                temperature,
                top_k: Some(k),
            } => write!(f, "sample:{temperature}:{k}"),
        }
    }
}

impl std::str::FromStr for DecodeStrategy {
    type Err = TrieError;

    /// Parses `greedy`, `beam:W`, `sample`, `sample:T` or `sample:T:K` and validates it.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            TrieError::InvalidConfig(format!(
                "decode strategy `{s}`: {why} (expected greedy, beam:W, sample, sample:T or sample:T:K)"
            ))
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        let strategy = match parts.as_slice() {
            ["greedy"] => Self::Greedy,
            ["beam", w] => Self::Beam {
                width: w
                    .parse()
                    .map_err(|_| bad("the width is not a whole number"))?,
            },
            ["sample"] => Self::sample(),
            ["sample", t] | ["sample", t, _] => Self::Sample {
                temperature: t
                    .parse()
                    .map_err(|_| bad("the temperature is not a number"))?,
                top_k: match parts.get(2) {
                    Some(k) => Some(k.parse().map_err(|_| bad("top-k is not a whole number"))?),
                    None => None,
                },
            },
            _ => return Err(bad("unknown form")),
        };
        strategy.validate()?;
        Ok(strategy)
    }
}

impl DecodeStrategy {
    /// Beam search of `width` hypotheses, or greedy decoding for a width of 0 or 1.
    pub fn beam_or_greedy(width: usize) -> Self {
        if width > 1 {
            Self::Beam { width }
        } else {
            Self::Greedy
        }
    }

    /// Sampling at temperature 1 over all allowed tokens.
    pub fn sample() -> Self {
        Self::Sample {
            temperature: 1.0,
            top_k: None,
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`TrieError::InvalidConfig`] for a non-positive or non-finite temperature, `top_k` of
    /// 0, or a beam width of 0 or above [`MAX_BEAM_WIDTH`].
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Greedy => Ok(()),
            Self::Sample { temperature, top_k } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(TrieError::InvalidConfig(format!(
                        "temperature {temperature} must be finite and > 0"
                    )));
                }
                if top_k == Some(0) {
                    return Err(TrieError::InvalidConfig("top_k must be at least 1".into()));
                }
                Ok(())
            }
            Self::Beam { width } => {
                if width == 0 || width > MAX_BEAM_WIDTH {
                    return Err(TrieError::InvalidConfig(format!(
                        "beam width {width} must be in 1..={MAX_BEAM_WIDTH}"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// One decoding step of a batch, as the scorer sees it.
#[derive(Debug, Clone, Copy)]
pub struct StepBatch<'a> {
    /// Step index `t` (0-based) within the list's token sequence.
    pub step: usize,
    /// Semantic-ID level decoded at this step (`t % depth`).
    pub level: usize,
    /// List slot (item position) decoded at this step (`t / depth`).
    pub slot: usize,
    /// Vocabulary size of `level`: each output row has this many scores.
    pub vocab: usize,
    /// Request index of each row.
    pub requests: &'a [u32],
    /// For each row, the row of the previous step it extends (beam search reorders rows; for
    /// greedy and sampling it is the row itself). A scorer with a key/value cache gathers its
    /// cache rows with it. At step 0 it is the row itself.
    pub parents: &'a [u32],
    tokens: &'a [u32],
    stride: usize,
    /// Where each row's tokens sit in `tokens` (`None`: row `r` at `r`).
    row_slot: Option<&'a [u32]>,
}

impl<'a> StepBatch<'a> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.requests.len()
    }

    /// Tokens generated so far by `row` (length `step`).
    pub fn prefix(&self, row: usize) -> &[u32] {
        let at = self.row_slot.map_or(row, |s| s[row] as usize) * self.stride;
        &self.tokens[at..at + self.step]
    }

    /// A batch over `tokens` (`stride` per row, rows in order, each its own parent).
    #[cfg(test)]
    pub(crate) fn for_tests(
        step: usize,
        level: usize,
        slot: usize,
        vocab: usize,
        requests: &'a [u32],
        tokens: &'a [u32],
        stride: usize,
    ) -> Self {
        Self {
            step,
            level,
            slot,
            vocab,
            requests,
            parents: requests,
            tokens,
            stride,
            row_slot: None,
        }
    }
}

/// Scores the next token for a batch of partial lists.
///
/// Implemented by the policy network; tests use toy scorers.
pub trait StepScorer {
    /// Writes scores for every row of `batch` into `out`, row-major `[rows, vocab]`. Scores are
    /// logits or log-probabilities (the decoder renormalises over the allowed tokens, so both
    /// give the same distribution); masked tokens may hold anything. `-inf` is allowed, NaN is
    /// an error for an allowed token.
    ///
    /// # Errors
    /// Any error of the model; it is returned as [`TrieError::Scorer`].
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// A borrowed scorer scores as the scorer itself (so wrappers such as
/// [`PrefixPenalty`](crate::PrefixPenalty) can take `&mut dyn StepScorer`).
impl<T: StepScorer + ?Sized> StepScorer for &mut T {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> std::result::Result<(), ScorerError> {
        (**self).score(batch, out)
    }
}

/// A decoded list with its log-probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodedList {
    /// Candidate indices, in list order.
    pub items: Vec<usize>,
    /// The generated tokens (`items.len() * depth`).
    pub tokens: Vec<u32>,
    /// Log-probability of each token under the scorer's masked softmax at temperature 1 (the
    /// model's own probability, whatever the sampling temperature): what policy-gradient
    /// training needs.
    pub token_logprobs: Vec<f32>,
    /// Sum of `token_logprobs`.
    pub logprob: f32,
}

/// Decodes batches with one [`DecodeStrategy`]; holds the seed and a call counter, so
/// successive calls draw fresh samples and the same seed replays the same sequence of calls
/// (as candle's `LogitsProcessor`). Optionally applies a [`PrefixPenalty`] to every score.
#[derive(Debug, Clone)]
pub struct Decoder {
    strategy: DecodeStrategy,
    seed: u64,
    calls: u64,
    prefix_penalty: f32,
}

/// The chosen token of a row: child node, token, model log-prob.
#[derive(Debug, Clone, Copy)]
struct Choice {
    child: u32,
    token: u32,
    logprob: f32,
}

/// A beam expansion: parent row, child node, token, model log-prob, new total.
#[derive(Debug, Clone, Copy)]
struct Expansion {
    parent: u32,
    child: u32,
    token: u32,
    logprob: f32,
    total: f32,
}

/// SplitMix64 mixing, for per-request RNG streams.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Log-sum-exp of a row's scores over the open children of `state`'s node, or an error when
/// a score is NaN or none is finite.
fn normaliser(
    trie: &CandidateTrie,
    state: &ListState,
    scores: &[f32],
    request: usize,
    step: usize,
) -> Result<f32> {
    let open = trie
        .children(state.node())
        .filter(|&c| state.is_open(c))
        .map(|c| trie.token(c));
    log_sum_exp(open, scores, request, step)
}

/// Log-sum-exp of `scores` at `tokens` (the allowed tokens of one row), or an error when a
/// score is NaN or none is finite.
fn log_sum_exp(
    tokens: impl Iterator<Item = u32> + Clone,
    scores: &[f32],
    request: usize,
    step: usize,
) -> Result<f32> {
    let mut max = f32::NEG_INFINITY;
    for token in tokens.clone() {
        let x = scores[token as usize];
        if x.is_nan() {
            return Err(TrieError::NonFiniteScore {
                request,
                step,
                token,
            });
        }
        max = max.max(x);
    }
    if max.is_infinite() {
        return Err(TrieError::NonFiniteScore {
            request,
            step,
            token: u32::MAX,
        });
    }
    let sum: f32 = tokens.map(|t| (scores[t as usize] - max).exp()).sum();
    Ok(max + sum.ln())
}

/// The greedy choice of a row: the open child with the highest score (ties: lowest token).
fn greedy_choice(trie: &CandidateTrie, state: &ListState, scores: &[f32], lse: f32) -> Choice {
    let mut best: Option<Choice> = None;
    for c in trie.children(state.node()) {
        if state.is_open(c) {
            let tok = trie.token(c);
            let x = scores[tok as usize];
            if best.is_none_or(|b| x > scores[b.token as usize]) {
                best = Some(Choice {
                    child: c,
                    token: tok,
                    logprob: x - lse,
                });
            }
        }
    }
    // The state always has an open child (no dead ends), so `best` is set.
    best.unwrap_or(Choice {
        child: 0,
        token: 0,
        logprob: f32::NEG_INFINITY,
    })
}

/// A sampled choice: softmax(score / temperature) over the open children, optionally over the
/// `top_k` best only. `buf` is a reusable buffer.
#[allow(clippy::too_many_arguments)]
fn sample_choice(
    trie: &CandidateTrie,
    state: &ListState,
    scores: &[f32],
    lse: f32,
    temperature: f32,
    top_k: Option<usize>,
    rng: &mut ChaCha8Rng,
    buf: &mut Vec<(f32, u32)>,
) -> Choice {
    buf.clear();
    for c in trie.children(state.node()) {
        if state.is_open(c) {
            buf.push((scores[trie.token(c) as usize], c));
        }
    }
    if let Some(k) = top_k
        && k < buf.len()
    {
        buf.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        buf.truncate(k);
        buf.sort_unstable_by_key(|e| e.1);
    }
    let max = buf.iter().map(|e| e.0).fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0f64;
    for e in buf.iter_mut() {
        let w = f64::from((e.0 - max) / temperature).exp();
        total += w;
        e.0 = w as f32;
    }
    let mut u = rng.random::<f64>() * total;
    let mut pick = buf[buf.len() - 1].1;
    for e in buf.iter() {
        u -= f64::from(e.0);
        if u < 0.0 {
            pick = e.1;
            break;
        }
    }
    let tok = trie.token(pick);
    Choice {
        child: pick,
        token: tok,
        logprob: scores[tok as usize] - lse,
    }
}

impl Decoder {
    /// A decoder for `strategy` whose random draws derive from `seed`.
    ///
    /// # Errors
    /// [`TrieError::InvalidConfig`] for invalid strategy parameters.
    pub fn new(strategy: DecodeStrategy, seed: u64) -> Result<Self> {
        strategy.validate()?;
        Ok(Self {
            strategy,
            seed,
            calls: 0,
            prefix_penalty: 0.0,
        })
    }

    /// Lowers, at every step, the score of each token by `penalty` for every earlier item of
    /// the list that the token would share its prefix with ([`PrefixPenalty`]): lists spread
    /// over semantic-ID clusters instead of crowding into one. 0 (the default) decodes the
    /// scorer's own distribution. With a penalty, the [`DecodedList`] log-probabilities are
    /// those of the penalised distribution, so keep it off where a policy gradient reads them.
    ///
    /// # Errors
    /// [`TrieError::InvalidConfig`] for a negative or non-finite penalty.
    pub fn with_prefix_penalty(mut self, penalty: f32) -> Result<Self> {
        check_prefix_penalty(penalty)?;
        self.prefix_penalty = penalty;
        Ok(self)
    }

    /// The strategy.
    pub fn strategy(&self) -> DecodeStrategy {
        self.strategy
    }

    /// The prefix penalty per shared token (0: none).
    pub fn prefix_penalty(&self) -> f32 {
        self.prefix_penalty
    }

    /// Decodes one list of `list_len` items per trie (one trie per request). Returns, per
    /// request, one list (greedy, sampling) or up to `width` lists best first (beam search:
    /// fewer when the candidates allow fewer distinct lists).
    ///
    /// # Errors
    /// [`TrieError::ListTooLong`] when a request has fewer than `list_len` candidates,
    /// [`TrieError::InvalidConfig`] when the tries disagree on depth or vocabularies,
    /// [`TrieError::ScorerOutput`] / [`TrieError::NonFiniteScore`] / [`TrieError::Scorer`] for
    /// bad scorer output.
    pub fn decode(
        &mut self,
        tries: &[&CandidateTrie],
        list_len: usize,
        scorer: &mut dyn StepScorer,
    ) -> Result<Vec<Vec<DecodedList>>> {
        if tries.is_empty() {
            return Ok(Vec::new());
        }
        check_batch(tries, list_len)?;
        let call = self.calls;
        self.calls += 1;
        self.decode_rows_of_call(call, 0, tries, list_len, scorer)
    }

    /// Decodes `tries` as rows `first_row..` of call number `call` (sampling seeds each row
    /// by its index in the whole call, so a shard draws what the whole batch would).
    fn decode_rows_of_call(
        &self,
        call: u64,
        first_row: usize,
        tries: &[&CandidateTrie],
        list_len: usize,
        scorer: &mut dyn StepScorer,
    ) -> Result<Vec<Vec<DecodedList>>> {
        if list_len == 0 {
            return Ok(tries.iter().map(|_| vec![empty_list()]).collect());
        }
        let mut penalised;
        let scorer: &mut dyn StepScorer = if self.prefix_penalty > 0.0 {
            penalised = PrefixPenalty::new(scorer, self.prefix_penalty);
            &mut penalised
        } else {
            scorer
        };
        match self.strategy {
            DecodeStrategy::Greedy => decode_rows(tries, list_len, scorer, None),
            DecodeStrategy::Sample { temperature, top_k } => {
                let rngs = (first_row..first_row + tries.len())
                    .map(|r| ChaCha8Rng::seed_from_u64(mix(mix(self.seed ^ mix(call)) ^ r as u64)))
                    .collect();
                decode_rows(tries, list_len, scorer, Some((temperature, top_k, rngs)))
            }
            DecodeStrategy::Beam { width } => decode_beam(tries, list_len, scorer, width),
        }
    }

    /// [`Decoder::decode`] split by `plan` ([`ShardPlan`]): up to `plan.threads` contiguous
    /// row ranges decoded at once, each on its own thread, which decodes its range in
    /// consecutive blocks of at most `plan.block_rows` rows, each block with its own scorer
    /// from `make_scorer(rows)` (for a neural scorer: the model bound to those requests).
    /// Each request gets what [`Decoder::decode`] gives it with a scorer over the whole
    /// batch, up to the scorer's own dependence on the batch (for a neural scorer,
    /// floating-point rounding); sampled rows draw from their index in the whole call, so
    /// the split changes no draw. One call of the counter, as [`Decoder::decode`].
    ///
    /// # Errors
    /// As [`Decoder::decode`]; a scorer that cannot be built gives [`TrieError::Scorer`]. The
    /// first failing shard's error is returned.
    pub fn decode_sharded<S, F>(
        &mut self,
        tries: &[&CandidateTrie],
        list_len: usize,
        plan: ShardPlan,
        make_scorer: F,
    ) -> Result<Vec<Vec<DecodedList>>>
    where
        S: StepScorer,
        F: Fn(std::ops::Range<usize>) -> std::result::Result<S, ScorerError> + Sync,
    {
        let n = tries.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        check_batch(tries, list_len)?;
        let call = self.calls;
        self.calls += 1;
        let this = &*self;
        // One thread's range, block by block.
        let run = |rows: std::ops::Range<usize>| -> Result<Vec<Vec<DecodedList>>> {
            let block = plan.block_rows.max(1);
            let mut out = Vec::with_capacity(rows.len());
            let mut start = rows.start;
            while start < rows.end {
                let end = rows.end.min(start.saturating_add(block));
                let mut scorer = make_scorer(start..end).map_err(TrieError::Scorer)?;
                out.extend(this.decode_rows_of_call(
                    call,
                    start,
                    &tries[start..end],
                    list_len,
                    &mut scorer,
                )?);
                start = end;
            }
            Ok(out)
        };
        let shards = plan.threads_for(n);
        if shards == 1 {
            return run(0..n);
        }
        let run = &run;
        let parts: Vec<Result<Vec<Vec<DecodedList>>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..shards)
                .map(|i| scope.spawn(move || run(i * n / shards..(i + 1) * n / shards)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(n);
        for part in parts {
            out.extend(part?);
        }
        Ok(out)
    }
}

/// How [`Decoder::decode_sharded`] splits a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardPlan {
    /// Most threads decoding at once (each gets one contiguous range of rows).
    pub threads: usize,
    /// Fewest rows a thread gets: smaller batches use fewer threads (at least one).
    pub min_rows: usize,
    /// Most rows one scorer decodes at once: a thread decodes its range in consecutive
    /// blocks of this size. For a neural scorer this bounds the working set of a step (the
    /// per-request attention memory) so that it stays in cache; `usize::MAX`: one block.
    pub block_rows: usize,
}

impl ShardPlan {
    /// `threads` threads of at least `min_rows` rows each, one block per thread.
    pub fn new(threads: usize, min_rows: usize) -> Self {
        Self {
            threads,
            min_rows,
            block_rows: usize::MAX,
        }
    }

    /// Threads used for a batch of `rows` rows: at most `threads`, fewer when a thread
    /// would get under `min_rows` rows, at least one.
    pub fn threads_for(&self, rows: usize) -> usize {
        self.threads.min(rows / self.min_rows.max(1)).max(1)
    }

    /// Sets [`ShardPlan::block_rows`].
    pub fn with_block_rows(mut self, block_rows: usize) -> Self {
        self.block_rows = block_rows;
        self
    }
}

/// Checks that `tries` share their vocabularies and each holds at least `list_len`
/// candidates.
fn check_batch(tries: &[&CandidateTrie], list_len: usize) -> Result<()> {
    same_vocabularies(tries)?;
    for t in tries {
        if list_len > t.num_candidates() {
            return Err(TrieError::ListTooLong {
                list_len,
                candidates: t.num_candidates(),
            });
        }
    }
    Ok(())
}

/// The error a [`StepScorer`] (or the function building one) reports.
pub type ScorerError = Box<dyn std::error::Error + Send + Sync>;

/// A list of no items.
fn empty_list() -> DecodedList {
    DecodedList {
        items: Vec::new(),
        tokens: Vec::new(),
        token_logprobs: Vec::new(),
        logprob: 0.0,
    }
}

/// Calls the scorer and checks the output size.
/// The log-probability, under `scorer`, of generating each candidate as the *first* item of
/// the list: for candidate `c` of request `r`, the sum over the `depth` levels of the
/// trie-masked log-softmax at `c`'s tokens (every candidate is open at the first slot).
/// Returns one vector per trie, in candidate order; the values of one request are a
/// distribution (their exponentials sum to 1).
///
/// This is how a generative ranker scores candidates one by one, e.g. for an AUC. The scorer
/// sees `depth` steps of slot 0 with one row per candidate (`requests[row]` its request,
/// each row its own parent).
///
/// # Errors
/// [`TrieError::InvalidConfig`] when the tries disagree on depth or vocabularies; the scorer's
/// errors and non-finite scores of an allowed token.
pub fn first_item_logprobs(
    tries: &[&CandidateTrie],
    scorer: &mut dyn StepScorer,
) -> Result<Vec<Vec<f32>>> {
    let Some(first) = tries.first() else {
        return Ok(Vec::new());
    };
    same_vocabularies(tries)?;
    let depth = first.depth();
    let vocab = first.vocab_sizes().to_vec();
    let mut requests = Vec::new();
    let mut tokens = Vec::new();
    for (r, t) in tries.iter().enumerate() {
        for c in 0..t.num_candidates() {
            requests.push(r as u32);
            tokens.extend(t.tuple_of(c));
        }
    }
    let rows = requests.len();
    let parents: Vec<u32> = (0..rows as u32).collect();
    let mut node: Vec<u32> = requests.iter().map(|&r| tries[r as usize].root()).collect();
    let mut total = vec![0f32; rows];
    let mut scores = Vec::new();
    for (step, &v) in vocab.iter().enumerate() {
        scores.clear();
        scores.resize(rows * v, 0.0);
        let batch = StepBatch {
            step,
            level: step,
            slot: 0,
            vocab: v,
            requests: &requests,
            parents: &parents,
            tokens: &tokens,
            stride: depth,
            row_slot: None,
        };
        call_scorer(scorer, &batch, &mut scores)?;
        for row in 0..rows {
            let trie = tries[requests[row] as usize];
            let sc = &scores[row * v..(row + 1) * v];
            // At the first slot every candidate is open: all children are allowed.
            let allowed = trie.children(node[row]).map(|c| trie.token(c));
            let lse = log_sum_exp(allowed, sc, requests[row] as usize, step)?;
            let tok = tokens[row * depth + step];
            total[row] += sc[tok as usize] - lse;
            node[row] = trie.child(node[row], tok).ok_or_else(|| {
                TrieError::InvalidConfig(format!("token {tok} missing from its own trie"))
            })?;
        }
    }
    let mut out: Vec<Vec<f32>> = tries
        .iter()
        .map(|t| Vec::with_capacity(t.num_candidates()))
        .collect();
    for (row, &r) in requests.iter().enumerate() {
        out[r as usize].push(total[row]);
    }
    Ok(out)
}

/// Checks that every trie has the first one's vocabularies (one batch decodes one vocabulary).
fn same_vocabularies(tries: &[&CandidateTrie]) -> Result<()> {
    let Some(first) = tries.first() else {
        return Ok(());
    };
    for (r, t) in tries.iter().enumerate() {
        if t.vocab_sizes() != first.vocab_sizes() {
            return Err(TrieError::InvalidConfig(format!(
                "request {r}: vocabularies {:?} differ from request 0's {:?}",
                t.vocab_sizes(),
                first.vocab_sizes()
            )));
        }
    }
    Ok(())
}

fn call_scorer(scorer: &mut dyn StepScorer, batch: &StepBatch<'_>, out: &mut [f32]) -> Result<()> {
    scorer.score(batch, out).map_err(TrieError::Scorer)
}

/// One row's work item in greedy/sampled decoding: index, row, its tokens, its scores.
type RowWork<'a, 't> = (usize, ((&'a mut Row<'t>, &'a mut [u32]), &'a [f32]));

/// One request's work item in beam search: index, expansions, next slots, next tokens.
type BeamWork<'a> = (
    usize,
    ((&'a mut Vec<Expansion>, &'a mut [Hyp]), &'a mut [u32]),
);

/// Per-row state of greedy and sampled decoding.
struct Row<'t> {
    trie: &'t CandidateTrie,
    state: ListState,
    logprobs: Vec<f32>,
    rng: Option<ChaCha8Rng>,
    buf: Vec<(f32, u32)>,
}

/// Greedy (`sampling = None`) or sampled decoding: one row per request.
fn decode_rows(
    tries: &[&CandidateTrie],
    list_len: usize,
    scorer: &mut dyn StepScorer,
    sampling: Option<(f32, Option<usize>, Vec<ChaCha8Rng>)>,
) -> Result<Vec<Vec<DecodedList>>> {
    let depth = tries[0].depth();
    let vocab = tries[0].vocab_sizes().to_vec();
    let vmax = vocab.iter().copied().max().unwrap_or(0);
    let steps = list_len * depth;
    let n = tries.len();
    let (params, rngs): (_, Vec<Option<ChaCha8Rng>>) = match sampling {
        Some((t, k, rngs)) => (Some((t, k)), rngs.into_iter().map(Some).collect()),
        None => (None, (0..n).map(|_| None).collect()),
    };
    let mut rows: Vec<Row<'_>> = tries
        .iter()
        .zip(rngs)
        .map(|(t, rng)| -> Result<Row<'_>> {
            Ok(Row {
                trie: t,
                state: t.start(list_len)?,
                logprobs: Vec::with_capacity(steps),
                rng,
                buf: Vec::with_capacity(t.num_candidates()),
            })
        })
        .collect::<Result<_>>()?;
    let requests: Vec<u32> = (0..n as u32).collect();
    let mut tokens = vec![0u32; n * steps];
    let mut scores = vec![0f32; n * vmax];
    for step in 0..steps {
        let level = step % depth;
        let v = vocab[level];
        let out = &mut scores[..n * v];
        let batch = StepBatch {
            step,
            level,
            slot: step / depth,
            vocab: v,
            requests: &requests,
            parents: &requests,
            tokens: &tokens,
            stride: steps,
            row_slot: None,
        };
        call_scorer(scorer, &batch, out)?;
        let work = |(r, ((row, toks), sc)): RowWork<'_, '_>| -> Result<()> {
            let lse = normaliser(row.trie, &row.state, sc, r, step)?;
            let choice = match (params, row.rng.as_mut()) {
                (Some((temperature, top_k)), Some(rng)) => sample_choice(
                    row.trie,
                    &row.state,
                    sc,
                    lse,
                    temperature,
                    top_k,
                    rng,
                    &mut row.buf,
                ),
                _ => greedy_choice(row.trie, &row.state, sc, lse),
            };
            row.state.step_to(row.trie, choice.child);
            row.logprobs.push(choice.logprob);
            toks[step] = choice.token;
            Ok(())
        };
        if n >= PARALLEL_ROWS {
            rows.par_iter_mut()
                .zip(tokens.par_chunks_mut(steps))
                .zip(out.par_chunks(v))
                .enumerate()
                .try_for_each(work)?;
        } else {
            rows.iter_mut()
                .zip(tokens.chunks_mut(steps))
                .zip(out.chunks(v))
                .enumerate()
                .try_for_each(work)?;
        }
    }
    Ok(rows
        .into_iter()
        .zip(tokens.chunks(steps))
        .map(|(row, toks)| {
            vec![DecodedList {
                items: row.state.items().iter().map(|&c| c as usize).collect(),
                tokens: toks.to_vec(),
                logprob: row.logprobs.iter().sum(),
                token_logprobs: row.logprobs,
            }]
        })
        .collect())
}

/// A beam hypothesis.
#[derive(Clone)]
struct Hyp {
    state: ListState,
    logprobs: Vec<f32>,
    total: f32,
}

/// Expands request `r`'s hypotheses (`hyps[..count]`, scored at compact rows
/// `first_row..first_row + count`) and keeps the best `width` in `exp`, best first, always
/// including the greedy continuation of hypothesis `greedy` (see [`DecodeStrategy::Beam`]).
/// Returns the position of that continuation in `exp`.
#[allow(clippy::too_many_arguments)]
fn expand_request(
    trie: &CandidateTrie,
    hyps: &[Hyp],
    scores: &[f32],
    first_row: usize,
    greedy: usize,
    width: usize,
    (r, step): (usize, usize),
    exp: &mut Vec<Expansion>,
) -> Result<usize> {
    let v = trie.vocab_sizes()[step % trie.depth()];
    exp.clear();
    let mut greedy_pick = 0usize;
    for (k, h) in hyps.iter().enumerate() {
        let row = first_row + k;
        let sc = &scores[row * v..(row + 1) * v];
        let lse = normaliser(trie, &h.state, sc, r, step)?;
        if k == greedy {
            let g = greedy_choice(trie, &h.state, sc, lse);
            greedy_pick = exp.len()
                + trie
                    .children(h.state.node())
                    .filter(|&c| h.state.is_open(c) && c < g.child)
                    .count();
        }
        for c in trie.children(h.state.node()) {
            if h.state.is_open(c) {
                let tok = trie.token(c);
                let lp = sc[tok as usize] - lse;
                exp.push(Expansion {
                    parent: k as u32,
                    child: c,
                    token: tok,
                    logprob: lp,
                    total: h.total + lp,
                });
            }
        }
    }
    let anchor = exp[greedy_pick];
    let by_total = |a: &Expansion, b: &Expansion| {
        b.total
            .total_cmp(&a.total)
            .then(a.parent.cmp(&b.parent))
            .then(a.token.cmp(&b.token))
    };
    if exp.len() > width {
        exp.select_nth_unstable_by(width - 1, by_total);
        exp.truncate(width);
    }
    exp.sort_unstable_by(by_total);
    let is_anchor = |e: &Expansion| e.parent == anchor.parent && e.child == anchor.child;
    if !exp.iter().any(is_anchor) {
        let last = exp.len() - 1;
        exp[last] = anchor;
        exp.sort_unstable_by(by_total);
    }
    Ok(exp.iter().position(is_anchor).unwrap_or(0))
}

/// Beam search with a greedy anchor (see [`DecodeStrategy::Beam`]).
///
/// Hypotheses live in `width` fixed slots per request (double-buffered, reused across
/// steps), so expansion and the copy of surviving hypotheses run per request in parallel;
/// the scorer sees only the active slots, as compact rows.
fn decode_beam(
    tries: &[&CandidateTrie],
    list_len: usize,
    scorer: &mut dyn StepScorer,
    width: usize,
) -> Result<Vec<Vec<DecodedList>>> {
    let depth = tries[0].depth();
    let vocab = tries[0].vocab_sizes().to_vec();
    let vmax = vocab.iter().copied().max().unwrap_or(0);
    let steps = list_len * depth;
    let n = tries.len();
    let slots = n * width;
    let mut hyps: Vec<Hyp> = Vec::with_capacity(slots);
    for t in tries {
        let h = Hyp {
            state: t.start(list_len)?,
            logprobs: Vec::with_capacity(steps),
            total: 0.0,
        };
        hyps.extend(std::iter::repeat_n(h, width));
    }
    let mut next_hyps = hyps.clone();
    let mut count = vec![1usize; n];
    let mut greedy = vec![0usize; n];
    let mut tokens = vec![0u32; slots * steps];
    let mut next_tokens = tokens.clone();
    let mut scores = vec![0f32; slots * vmax];
    let mut expansions: Vec<Vec<Expansion>> =
        (0..n).map(|_| Vec::with_capacity(width * vmax)).collect();
    // Compact rows of the current step: request, slot, and the previous step's row.
    let mut requests: Vec<u32> = (0..n as u32).collect();
    let mut row_slot: Vec<u32> = (0..n as u32).map(|r| r * width as u32).collect();
    let mut parents: Vec<u32> = requests.clone();
    let mut first_row: Vec<usize> = (0..n).collect();
    let mut prev_first_row = first_row.clone();

    for step in 0..steps {
        let level = step % depth;
        let v = vocab[level];
        let rows = requests.len();
        let batch = StepBatch {
            step,
            level,
            slot: step / depth,
            vocab: v,
            requests: &requests,
            parents: &parents,
            tokens: &tokens,
            stride: steps,
            row_slot: Some(&row_slot),
        };
        call_scorer(scorer, &batch, &mut scores[..rows * v])?;
        let scores_ref = &scores[..rows * v];
        let hyps_ref = &hyps;
        let tokens_ref = &tokens;
        let (count_ref, greedy_ref, first_ref) = (&count, &greedy, &first_row);
        // Per request: expand, select, and write the survivors into the next slots.
        let work = |(r, ((exp, next), next_tok)): BeamWork<'_>| -> Result<usize> {
            let own = &hyps_ref[r * width..r * width + count_ref[r]];
            let pos = expand_request(
                tries[r],
                own,
                scores_ref,
                first_ref[r],
                greedy_ref[r],
                width,
                (r, step),
                exp,
            )?;
            for (k, e) in exp.iter().enumerate() {
                let p = e.parent as usize;
                let h = &mut next[k];
                h.state.clone_from(&own[p].state);
                h.state.step_to(tries[r], e.child);
                h.logprobs.clone_from(&own[p].logprobs);
                h.logprobs.push(e.logprob);
                h.total = e.total;
                let src = &tokens_ref[(r * width + p) * steps..(r * width + p) * steps + step];
                next_tok[k * steps..k * steps + step].copy_from_slice(src);
                next_tok[k * steps + step] = e.token;
            }
            Ok(pos)
        };
        let greedy_pos: Vec<usize> = if rows >= PARALLEL_ROWS {
            expansions
                .par_iter_mut()
                .zip(next_hyps.par_chunks_mut(width))
                .zip(next_tokens.par_chunks_mut(width * steps))
                .enumerate()
                .map(work)
                .collect::<Result<_>>()?
        } else {
            expansions
                .iter_mut()
                .zip(next_hyps.chunks_mut(width))
                .zip(next_tokens.chunks_mut(width * steps))
                .enumerate()
                .map(work)
                .collect::<Result<_>>()?
        };
        // Compact rows of the next step.
        std::mem::swap(&mut prev_first_row, &mut first_row);
        requests.clear();
        row_slot.clear();
        parents.clear();
        for (r, exp) in expansions.iter().enumerate() {
            first_row[r] = requests.len();
            count[r] = exp.len();
            greedy[r] = greedy_pos[r];
            for (k, e) in exp.iter().enumerate() {
                requests.push(r as u32);
                row_slot.push((r * width + k) as u32);
                parents.push((prev_first_row[r] + e.parent as usize) as u32);
            }
        }
        std::mem::swap(&mut hyps, &mut next_hyps);
        std::mem::swap(&mut tokens, &mut next_tokens);
    }

    Ok((0..n)
        .map(|r| {
            (0..count[r])
                .map(|k| {
                    let slot = r * width + k;
                    let h = &hyps[slot];
                    DecodedList {
                        items: h.state.items().iter().map(|&c| c as usize).collect(),
                        tokens: tokens[slot * steps..(slot + 1) * steps].to_vec(),
                        token_logprobs: h.logprobs.clone(),
                        logprob: h.logprobs.iter().sum(),
                    }
                })
                .collect()
        })
        .collect())
}
