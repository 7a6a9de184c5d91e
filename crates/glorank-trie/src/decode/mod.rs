//! Batched constrained decoding: greedy, seeded sampling and beam search over any
//! [`StepScorer`].
//!
//! Every list has exactly `list_len` items of `depth` tokens, so all rows of a batch advance
//! in lock-step: step `t` decodes level `t % depth` of slot `t / depth`. At each step the
//! scorer fills one row of scores (logits or log-probabilities) over the level's vocabulary
//! per decoding row; the decoder masks the tokens the row's [`ListState`] does not allow and
//! normalises over the allowed ones only (a log-softmax over the allowed set), then picks.

use crate::penalty::{PrefixPenalty, check_prefix_penalty};
use crate::scorer::{DecodedList, ScorerError, StepScorer};
use crate::trie::CandidateTrie;
use crate::{Result, TrieError};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde::{Deserialize, Serialize};

mod beam;
mod choice;
mod rows;

use beam::decode_beam;
use choice::mix;
pub use rows::first_item_logprobs;
use rows::{check_batch, decode_rows, empty_list};

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
