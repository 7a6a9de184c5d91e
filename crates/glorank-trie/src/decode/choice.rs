//! How one row picks its token: the normaliser over the open children, greedy and seeded
//! sampling choices, and the per-request RNG streams.

use crate::trie::{CandidateTrie, ListState};
use crate::{Result, TrieError};
use rand::RngExt;
use rand::rngs::ChaCha8Rng;

/// Batches at least this large are processed with rayon; smaller ones stay on one thread,
/// where the scheduling overhead would exceed the work.
pub(super) const PARALLEL_ROWS: usize = 64;

/// The chosen token of a row: child node, token, model log-prob.
#[derive(Debug, Clone, Copy)]
pub(super) struct Choice {
    pub(super) child: u32,
    pub(super) token: u32,
    pub(super) logprob: f32,
}

/// A beam expansion: parent row, child node, token, model log-prob, new total.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expansion {
    pub(super) parent: u32,
    pub(super) child: u32,
    pub(super) token: u32,
    pub(super) logprob: f32,
    pub(super) total: f32,
}

/// SplitMix64 mixing, for per-request RNG streams.
pub(super) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Log-sum-exp of a row's scores over the open children of `state`'s node, or an error when
/// a score is NaN or none is finite.
pub(super) fn normaliser(
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
pub(super) fn log_sum_exp(
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
pub(super) fn greedy_choice(
    trie: &CandidateTrie,
    state: &ListState,
    scores: &[f32],
    lse: f32,
) -> Choice {
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
pub(super) fn sample_choice(
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
