//! Batched constrained decoding: greedy, seeded sampling and beam search over any
//! [`StepScorer`].
//!
//! Every list has exactly `list_len` items of `depth` tokens, so all rows of a batch advance
//! in lock-step: step `t` decodes level `t % depth` of slot `t / depth`. At each step the
//! scorer fills one row of scores (logits or log-probabilities) over the level's vocabulary
//! per decoding row; the decoder masks the tokens the row's [`ListState`] does not allow and
//! normalises over the allowed ones only (a log-softmax over the allowed set), then picks.

use crate::trie::{CandidateTrie, ListState};
use crate::{Result, TrieError};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Batches at least this large are processed with rayon; smaller ones stay on one thread,
/// where the scheduling overhead would exceed the work.
const PARALLEL_ROWS: usize = 64;

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

impl DecodeStrategy {
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
    /// 0, or a beam width of 0.
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
                if width == 0 {
                    return Err(TrieError::InvalidConfig(
                        "beam width must be at least 1".into(),
                    ));
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
}

impl StepBatch<'_> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.requests.len()
    }

    /// Tokens generated so far by `row` (length `step`).
    pub fn prefix(&self, row: usize) -> &[u32] {
        &self.tokens[row * self.stride..row * self.stride + self.step]
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
/// (as candle's `LogitsProcessor`).
#[derive(Debug, Clone)]
pub struct Decoder {
    strategy: DecodeStrategy,
    seed: u64,
    calls: u64,
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

/// `(max, log-sum-exp)` of a row's scores over the open children of `state`'s node, or an
/// error when a score is NaN or none is finite.
fn normaliser(
    trie: &CandidateTrie,
    state: &ListState,
    scores: &[f32],
    request: usize,
    step: usize,
) -> Result<f32> {
    let mut max = f32::NEG_INFINITY;
    for c in trie.children(state.node()) {
        if state.is_open(c) {
            let x = scores[trie.token(c) as usize];
            if x.is_nan() {
                return Err(TrieError::NonFiniteScore {
                    request,
                    step,
                    token: trie.token(c),
                });
            }
            max = max.max(x);
        }
    }
    if max == f32::NEG_INFINITY || max == f32::INFINITY {
        return Err(TrieError::NonFiniteScore {
            request,
            step,
            token: u32::MAX,
        });
    }
    let mut sum = 0.0f32;
    for c in trie.children(state.node()) {
        if state.is_open(c) {
            sum += (scores[trie.token(c) as usize] - max).exp();
        }
    }
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
        })
    }

    /// The strategy.
    pub fn strategy(&self) -> DecodeStrategy {
        self.strategy
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
        let Some(first) = tries.first() else {
            return Ok(Vec::new());
        };
        for (r, t) in tries.iter().enumerate() {
            if t.vocab_sizes() != first.vocab_sizes() {
                return Err(TrieError::InvalidConfig(format!(
                    "request {r}: vocabularies {:?} differ from request 0's {:?}",
                    t.vocab_sizes(),
                    first.vocab_sizes()
                )));
            }
            if list_len > t.num_candidates() {
                return Err(TrieError::ListTooLong {
                    list_len,
                    candidates: t.num_candidates(),
                });
            }
        }
        let call = self.calls;
        self.calls += 1;
        if list_len == 0 {
            return Ok(tries.iter().map(|_| vec![empty_list()]).collect());
        }
        match self.strategy {
            DecodeStrategy::Greedy => decode_rows(tries, list_len, scorer, None),
            DecodeStrategy::Sample { temperature, top_k } => {
                let rngs = (0..tries.len())
                    .map(|r| ChaCha8Rng::seed_from_u64(mix(mix(self.seed ^ mix(call)) ^ r as u64)))
                    .collect();
                decode_rows(tries, list_len, scorer, Some((temperature, top_k, rngs)))
            }
            DecodeStrategy::Beam { width } => decode_beam(tries, list_len, scorer, width),
        }
    }
}

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
fn call_scorer(scorer: &mut dyn StepScorer, batch: &StepBatch<'_>, out: &mut [f32]) -> Result<()> {
    scorer.score(batch, out).map_err(TrieError::Scorer)
}

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
        };
        call_scorer(scorer, &batch, out)?;
        let work =
            |(r, ((row, toks), sc)): (usize, ((&mut Row<'_>, &mut [u32]), &[f32]))| -> Result<()> {
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

/// Beam search with a greedy anchor (see [`DecodeStrategy::Beam`]).
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
    let cap = n * width;
    // Current rows: hypotheses, their request, parent, token prefix; `starts[r]..starts[r+1]`
    // are request r's rows. Double-buffered so hypotheses are reused, not reallocated.
    let mut hyps: Vec<Hyp> = Vec::with_capacity(cap);
    for t in tries {
        hyps.push(Hyp {
            state: t.start(list_len)?,
            logprobs: Vec::with_capacity(steps),
            total: 0.0,
        });
    }
    let mut next_hyps: Vec<Hyp> = hyps.clone();
    let mut requests: Vec<u32> = (0..n as u32).collect();
    let mut parents: Vec<u32> = requests.clone();
    let mut starts: Vec<usize> = (0..=n).collect();
    // Row index of the greedy path of each request.
    let mut greedy_row: Vec<usize> = (0..n).collect();
    let mut tokens = vec![0u32; cap * steps];
    let mut next_tokens = vec![0u32; cap * steps];
    let mut scores = vec![0f32; cap * vmax];
    let mut expansions: Vec<Vec<Expansion>> = (0..n)
        .map(|_| Vec::with_capacity(width * vmax.min(1024)))
        .collect();

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
        };
        call_scorer(scorer, &batch, &mut scores[..rows * v])?;
        let scores_ref = &scores;
        let hyps_ref = &hyps;
        let starts_ref = &starts;
        let greedy_ref = &greedy_row;
        // Expand every request's rows and keep the best `width` (plus the greedy anchor).
        let expand = |(r, exp): (usize, &mut Vec<Expansion>)| -> Result<usize> {
            exp.clear();
            let trie = tries[r];
            let mut greedy_pick = 0usize;
            for row in starts_ref[r]..starts_ref[r + 1] {
                let h = &hyps_ref[row];
                let sc = &scores_ref[row * v..(row + 1) * v];
                let lse = normaliser(trie, &h.state, sc, r, step)?;
                if row == greedy_ref[r] {
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
                            parent: row as u32,
                            child: c,
                            token: tok,
                            logprob: lp,
                            total: h.total + lp,
                        });
                    }
                }
            }
            let greedy = exp[greedy_pick];
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
            exp.sort_by(by_total);
            let keeps_greedy = exp
                .iter()
                .any(|e| e.parent == greedy.parent && e.child == greedy.child);
            if !keeps_greedy {
                let last = exp.len() - 1;
                exp[last] = greedy;
                exp.sort_by(by_total);
            }
            let pos = exp
                .iter()
                .position(|e| e.parent == greedy.parent && e.child == greedy.child)
                .unwrap_or(0);
            Ok(pos)
        };
        let greedy_pos: Vec<usize> = if rows >= PARALLEL_ROWS {
            expansions
                .par_iter_mut()
                .enumerate()
                .map(expand)
                .collect::<Result<_>>()?
        } else {
            expansions
                .iter_mut()
                .enumerate()
                .map(expand)
                .collect::<Result<_>>()?
        };

        // Materialise the new rows.
        let total_rows: usize = expansions.iter().map(Vec::len).sum();
        if next_hyps.len() < total_rows {
            next_hyps.resize(total_rows, hyps[0].clone());
        }
        next_hyps.truncate(total_rows);
        requests.clear();
        parents.clear();
        let mut row = 0;
        for (r, exp) in expansions.iter().enumerate() {
            starts[r] = row;
            greedy_row[r] = row + greedy_pos[r];
            for e in exp {
                let p = e.parent as usize;
                let h = &mut next_hyps[row];
                h.state.clone_from(&hyps[p].state);
                h.state.step_to(tries[r], e.child);
                h.logprobs.clone_from(&hyps[p].logprobs);
                h.logprobs.push(e.logprob);
                h.total = e.total;
                let (dst, src) = (row * steps, p * steps);
                next_tokens[dst..dst + step].copy_from_slice(&tokens[src..src + step]);
                next_tokens[dst + step] = e.token;
                requests.push(r as u32);
                parents.push(p as u32);
                row += 1;
            }
        }
        starts[n] = row;
        std::mem::swap(&mut hyps, &mut next_hyps);
        std::mem::swap(&mut tokens, &mut next_tokens);
    }

    Ok((0..n)
        .map(|r| {
            (starts[r]..starts[r + 1])
                .map(|row| {
                    let h = &hyps[row];
                    DecodedList {
                        items: h.state.items().iter().map(|&c| c as usize).collect(),
                        tokens: tokens[row * steps..(row + 1) * steps].to_vec(),
                        token_logprobs: h.logprobs.clone(),
                        logprob: h.logprobs.iter().sum(),
                    }
                })
                .collect()
        })
        .collect())
}
