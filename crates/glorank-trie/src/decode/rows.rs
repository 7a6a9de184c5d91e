//! Greedy and sampled decoding (one row per request), the first-item scores, and the
//! checks and scorer call they share with beam search.

use super::choice::*;
use crate::scorer::{DecodedList, StepBatch, StepScorer};
use crate::trie::{CandidateTrie, ListState};
use crate::{Result, TrieError};
use rand::rngs::ChaCha8Rng;
use rayon::prelude::*;

/// Checks that `tries` share their vocabularies and each holds at least `list_len`
/// candidates.
pub(super) fn check_batch(tries: &[&CandidateTrie], list_len: usize) -> Result<()> {
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

/// A list of no items.
pub(super) fn empty_list() -> DecodedList {
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
pub(super) fn same_vocabularies(tries: &[&CandidateTrie]) -> Result<()> {
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

pub(super) fn call_scorer(
    scorer: &mut dyn StepScorer,
    batch: &StepBatch<'_>,
    out: &mut [f32],
) -> Result<()> {
    scorer.score(batch, out).map_err(TrieError::Scorer)
}

/// One row's work item in greedy/sampled decoding: index, row, its tokens, its scores.
pub(super) type RowWork<'a, 't> = (usize, ((&'a mut Row<'t>, &'a mut [u32]), &'a [f32]));

/// Per-row state of greedy and sampled decoding.
pub(super) struct Row<'t> {
    pub(super) trie: &'t CandidateTrie,
    pub(super) state: ListState,
    pub(super) logprobs: Vec<f32>,
    pub(super) rng: Option<ChaCha8Rng>,
    pub(super) buf: Vec<(f32, u32)>,
}

/// Greedy (`sampling = None`) or sampled decoding: one row per request.
pub(super) fn decode_rows(
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
