//! Beam search over whole lists, anchored on the greedy path.

use super::choice::*;
use super::rows::*;
use crate::Result;
use crate::scorer::{DecodedList, StepBatch, StepScorer};
use crate::trie::{CandidateTrie, ListState};
use rayon::prelude::*;

/// One request's work item in beam search: index, expansions, next slots, next tokens.
pub(super) type BeamWork<'a> = (
    usize,
    ((&'a mut Vec<Expansion>, &'a mut [Hyp]), &'a mut [u32]),
);

/// A beam hypothesis.
#[derive(Clone)]
pub(super) struct Hyp {
    pub(super) state: ListState,
    pub(super) logprobs: Vec<f32>,
    pub(super) total: f32,
}

/// Expands request `r`'s hypotheses (`hyps[..count]`, scored at compact rows
/// `first_row..first_row + count`) and keeps the best `width` in `exp`, best first, always
/// including the greedy continuation of hypothesis `greedy` (see [`DecodeStrategy::Beam`]).
/// Returns the position of that continuation in `exp`.
#[allow(clippy::too_many_arguments)]
pub(super) fn expand_request(
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
pub(super) fn decode_beam(
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
