//! Decoding tests: validity for every strategy, greedy optimality per step, beam >= greedy,
//! sampling frequencies against the masked softmax, determinism, errors.

use glorank_trie::{
    CandidateTrie, DecodeStrategy, DecodedList, Decoder, ShardPlan, StepBatch, StepScorer,
    TrieError,
};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};

/// A deterministic pseudo-random scorer: the score of `token` after `prefix` in `request` is
/// a hash of the three mapped to [-3, 3). The same (request, prefix) always gets the same
/// scores, whatever row it sits in: a valid autoregressive model.
struct HashScorer {
    salt: u64,
}

fn hash(mut h: u64, xs: impl IntoIterator<Item = u64>) -> u64 {
    for x in xs {
        h ^= x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        h = h.wrapping_mul(0x1000_0000_01B3).rotate_left(29) ^ (h >> 17);
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    }
    h
}

impl HashScorer {
    fn scores(&self, request: u32, prefix: &[u32], vocab: usize) -> Vec<f32> {
        let base = hash(
            self.salt,
            std::iter::once(u64::from(request)).chain(prefix.iter().map(|&t| u64::from(t))),
        );
        (0..vocab)
            .map(|t| {
                let h = hash(base, [t as u64]);
                (h >> 11) as f32 / (1u64 << 53) as f32 * 6.0 - 3.0
            })
            .collect()
    }
}

impl HashScorer {
    /// Scores of every row of `batch`, whose request `r` is request `offset + r` of the
    /// whole batch.
    fn fill(&self, batch: &StepBatch<'_>, out: &mut [f32], offset: u32) {
        for (row, o) in out.chunks_mut(batch.vocab).enumerate() {
            let request = batch.requests[row] + offset;
            o.copy_from_slice(&self.scores(request, batch.prefix(row), batch.vocab));
        }
    }
}

impl StepScorer for HashScorer {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.fill(batch, out, 0);
        Ok(())
    }
}

/// Random requests: per request a set of distinct tuples over shared vocabularies, and L.
fn requests() -> impl Strategy<Value = (Vec<usize>, Vec<Vec<Vec<u32>>>, usize)> {
    (1usize..4, 1usize..5).prop_flat_map(|(depth, batch)| {
        prop::collection::vec(2usize..6, depth).prop_flat_map(move |vocab| {
            let tuple = vocab.iter().map(|&v| 0..v as u32).collect::<Vec<_>>();
            let set = prop::collection::btree_set(tuple, 1..25);
            (
                Just(vocab.clone()),
                prop::collection::vec(
                    set.prop_map(|s: BTreeSet<Vec<u32>>| s.into_iter().collect()),
                    batch,
                ),
            )
                .prop_flat_map(|(vocab, reqs): (Vec<usize>, Vec<Vec<Vec<u32>>>)| {
                    let n_min = reqs.iter().map(Vec::len).min().unwrap_or(1);
                    (Just(vocab), Just(reqs), 1..=n_min)
                })
        })
    })
}

/// Shuffles tuples deterministically so candidate indices are not in lexicographic order.
fn tries(vocab: &[usize], reqs: &[Vec<Vec<u32>>]) -> Vec<CandidateTrie> {
    reqs.iter()
        .map(|tuples| {
            let mut t = tuples.clone();
            t.reverse();
            CandidateTrie::new(&t, vocab).unwrap()
        })
        .collect()
}

fn check_valid(trie: &CandidateTrie, list: &DecodedList, l: usize) {
    assert_eq!(list.items.len(), l);
    let distinct: BTreeSet<usize> = list.items.iter().copied().collect();
    assert_eq!(distinct.len(), l, "repeated item in {:?}", list.items);
    assert!(list.items.iter().all(|&c| c < trie.num_candidates()));
    let expect: Vec<u32> = list.items.iter().flat_map(|&c| trie.tuple_of(c)).collect();
    assert_eq!(list.tokens, expect);
    assert_eq!(list.token_logprobs.len(), l * trie.depth());
    assert!(
        list.token_logprobs
            .iter()
            .all(|&p| p <= 1e-6 && p.is_finite())
    );
    let sum: f32 = list.token_logprobs.iter().sum();
    assert!((sum - list.logprob).abs() < 1e-4);
}

fn strategies() -> [DecodeStrategy; 4] {
    [
        DecodeStrategy::Greedy,
        DecodeStrategy::sample(),
        DecodeStrategy::Sample {
            temperature: 0.7,
            top_k: Some(2),
        },
        DecodeStrategy::Beam { width: 3 },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_strategy_decodes_valid_lists((vocab, reqs, l) in requests(), salt in any::<u64>()) {
        let tries = tries(&vocab, &reqs);
        let refs: Vec<&CandidateTrie> = tries.iter().collect();
        for strategy in strategies() {
            let mut dec = Decoder::new(strategy, salt).unwrap();
            let out = dec.decode(&refs, l, &mut HashScorer { salt }).unwrap();
            prop_assert_eq!(out.len(), tries.len());
            for (trie, lists) in tries.iter().zip(&out) {
                prop_assert!(!lists.is_empty());
                for list in lists {
                    check_valid(trie, list, l);
                }
                // Beam lists are distinct and best first.
                let distinct: BTreeSet<&Vec<usize>> = lists.iter().map(|d| &d.items).collect();
                prop_assert_eq!(distinct.len(), lists.len());
                prop_assert!(lists.windows(2).all(|w| w[0].logprob >= w[1].logprob));
            }
        }
    }

    #[test]
    fn greedy_takes_the_argmax_of_allowed_tokens((vocab, reqs, l) in requests(), salt in any::<u64>()) {
        let tries = tries(&vocab, &reqs);
        let refs: Vec<&CandidateTrie> = tries.iter().collect();
        let scorer = HashScorer { salt };
        let out = Decoder::new(DecodeStrategy::Greedy, 0).unwrap()
            .decode(&refs, l, &mut HashScorer { salt }).unwrap();
        for (r, (trie, lists)) in tries.iter().zip(&out).enumerate() {
            let list = &lists[0];
            let mut state = trie.start(l).unwrap();
            for (step, &tok) in list.tokens.iter().enumerate() {
                let level = step % trie.depth();
                let scores = scorer.scores(r as u32, &list.tokens[..step], vocab[level]);
                let allowed: Vec<u32> = state.allowed_tokens(trie).collect();
                let best = allowed.iter().copied()
                    .fold(None, |b: Option<u32>, t| match b {
                        Some(bt) if scores[bt as usize] >= scores[t as usize] => Some(bt),
                        _ => Some(t),
                    })
                    .unwrap();
                prop_assert_eq!(tok, best, "step {}", step);
                // The recorded log-prob is the masked log-softmax at that token.
                let m = allowed.iter().map(|&t| scores[t as usize]).fold(f32::NEG_INFINITY, f32::max);
                let lse = m + allowed.iter().map(|&t| (scores[t as usize] - m).exp()).sum::<f32>().ln();
                prop_assert!((list.token_logprobs[step] - (scores[tok as usize] - lse)).abs() < 1e-5);
                prop_assert!(state.advance(trie, tok));
            }
        }
    }

    #[test]
    fn beam_is_never_worse_than_greedy((vocab, reqs, l) in requests(), salt in any::<u64>(), width in 1usize..6) {
        let tries = tries(&vocab, &reqs);
        let refs: Vec<&CandidateTrie> = tries.iter().collect();
        let greedy = Decoder::new(DecodeStrategy::Greedy, 0).unwrap()
            .decode(&refs, l, &mut HashScorer { salt }).unwrap();
        let beam = Decoder::new(DecodeStrategy::Beam { width }, 0).unwrap()
            .decode(&refs, l, &mut HashScorer { salt }).unwrap();
        for (g, b) in greedy.iter().zip(&beam) {
            prop_assert!(b.len() <= width);
            prop_assert!(b[0].logprob >= g[0].logprob - 1e-5, "beam {} < greedy {}", b[0].logprob, g[0].logprob);
            if width == 1 {
                prop_assert_eq!(&b[0].items, &g[0].items);
            }
        }
    }
}

/// A scorer with fixed scores per level (ignores the prefix).
struct Fixed(Vec<Vec<f32>>);

impl StepScorer for Fixed {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for o in out.chunks_mut(batch.vocab) {
            o.copy_from_slice(&self.0[batch.level]);
        }
        Ok(())
    }
}

/// Sampling frequencies match the product of masked softmaxes: chi-square goodness of fit.
///
/// Five candidates, depth 2, one-item lists; 20,000 seeded draws (one request replicated).
/// The statistic has 4 degrees of freedom; the critical value at significance 0.001 is
/// 18.467, so a correct sampler fails this test with probability 0.1% for a random seed
/// (and, the seed being fixed, never flakes).
#[test]
fn sampling_frequencies_match_the_masked_softmax() {
    let tuples = [[0u32, 0], [0, 2], [1, 1], [2, 0], [2, 3]];
    let trie = CandidateTrie::new(&tuples, &[4, 4]).unwrap();
    // Token 3 at level 0 is never allowed: its huge score must not leak into the others.
    let scores = vec![vec![0.5, -0.3, 1.0, 9.0], vec![0.2, 0.0, -1.0, 0.7]];
    let softmax = |xs: &[f32], allowed: &[usize]| -> Vec<f64> {
        let z: f64 = allowed.iter().map(|&t| f64::from(xs[t]).exp()).sum();
        allowed
            .iter()
            .map(|&t| f64::from(xs[t]).exp() / z)
            .collect()
    };
    let p0 = softmax(&scores[0], &[0, 1, 2]);
    let expected: Vec<f64> = tuples
        .iter()
        .map(|t| {
            let siblings: Vec<usize> = tuples
                .iter()
                .filter(|u| u[0] == t[0])
                .map(|u| u[1] as usize)
                .collect();
            let p1 = softmax(&scores[1], &siblings);
            let k = siblings.iter().position(|&s| s == t[1] as usize).unwrap();
            p0[t[0] as usize] * p1[k]
        })
        .collect();
    let draws = 20_000;
    let refs: Vec<&CandidateTrie> = vec![&trie; draws];
    let mut dec = Decoder::new(DecodeStrategy::sample(), 2024).unwrap();
    let out = dec.decode(&refs, 1, &mut Fixed(scores)).unwrap();
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for lists in &out {
        *counts.entry(lists[0].items[0]).or_default() += 1;
        // Recorded log-prob is the model's: log of the expected probability.
        let c = lists[0].items[0];
        assert!((f64::from(lists[0].logprob) - expected[c].ln()).abs() < 1e-4);
    }
    let chi2: f64 = expected
        .iter()
        .enumerate()
        .map(|(c, &p)| {
            let e = p * draws as f64;
            let o = *counts.get(&c).unwrap_or(&0) as f64;
            (o - e).powi(2) / e
        })
        .sum();
    assert!(
        chi2 < 18.467,
        "chi-square {chi2:.2} with counts {counts:?}, expected {expected:?}"
    );
}

#[test]
fn same_seed_same_samples_new_call_new_samples() {
    let tuples: Vec<[u32; 2]> = (0..20).map(|i| [i / 5, i % 5]).collect();
    let trie = CandidateTrie::new(&tuples, &[4, 5]).unwrap();
    let refs = vec![&trie; 8];
    let strategy = DecodeStrategy::Sample {
        temperature: 1.5,
        top_k: Some(3),
    };
    let run = |seed| {
        let mut d = Decoder::new(strategy, seed).unwrap();
        let a = d.decode(&refs, 4, &mut HashScorer { salt: 1 }).unwrap();
        let b = d.decode(&refs, 4, &mut HashScorer { salt: 1 }).unwrap();
        (a, b)
    };
    let (a1, b1) = run(5);
    let (a2, b2) = run(5);
    assert_eq!(a1, a2);
    assert_eq!(b1, b2);
    assert_ne!(a1, b1, "a second call must draw new samples");
    assert_ne!(run(6).0, a1);
}

#[test]
fn top_k_one_is_greedy() {
    let tuples: Vec<[u32; 2]> = (0..12).map(|i| [i / 4, i % 4]).collect();
    let trie = CandidateTrie::new(&tuples, &[3, 4]).unwrap();
    let refs = vec![&trie; 3];
    let greedy = Decoder::new(DecodeStrategy::Greedy, 0)
        .unwrap()
        .decode(&refs, 5, &mut HashScorer { salt: 9 })
        .unwrap();
    let top1 = Decoder::new(
        DecodeStrategy::Sample {
            temperature: 2.0,
            top_k: Some(1),
        },
        3,
    )
    .unwrap()
    .decode(&refs, 5, &mut HashScorer { salt: 9 })
    .unwrap();
    assert_eq!(greedy, top1);
}

#[test]
fn large_batches_take_the_parallel_path_with_the_same_result() {
    let tuples: Vec<[u32; 3]> = (0..50).map(|i| [i % 4, (i / 4) % 4, i / 16]).collect();
    let trie = CandidateTrie::new(&tuples, &[4, 4, 4]).unwrap();
    for strategy in strategies() {
        let small = Decoder::new(strategy, 1)
            .unwrap()
            .decode(&[&trie], 6, &mut HashScorer { salt: 3 })
            .unwrap();
        let big = Decoder::new(strategy, 1)
            .unwrap()
            .decode(&vec![&trie; 100], 6, &mut HashScorer { salt: 3 })
            .unwrap();
        // Row 0 of the big batch is request 0 in both (same scores, same RNG stream).
        assert_eq!(small[0], big[0], "{strategy:?}");
    }
}

struct Nan;
impl StepScorer for Nan {
    fn score(
        &mut self,
        _batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        out.fill(f32::NAN);
        Ok(())
    }
}

struct Failing;
impl StepScorer for Failing {
    fn score(
        &mut self,
        _batch: &StepBatch<'_>,
        _out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err("model exploded".into())
    }
}

#[test]
fn errors_are_reported() {
    let trie = CandidateTrie::new(&[[0u32], [1]], &[2]).unwrap();
    let mut d = Decoder::new(DecodeStrategy::Greedy, 0).unwrap();
    assert!(matches!(
        d.decode(&[&trie], 1, &mut Nan),
        Err(TrieError::NonFiniteScore {
            request: 0,
            step: 0,
            ..
        })
    ));
    let err = d.decode(&[&trie], 1, &mut Failing).unwrap_err();
    assert!(err.to_string().contains("model exploded"));
    assert!(matches!(
        d.decode(&[&trie], 3, &mut Nan),
        Err(TrieError::ListTooLong { .. })
    ));
    let other = CandidateTrie::new(&[[0u32], [2]], &[3]).unwrap();
    assert!(matches!(
        d.decode(&[&trie, &other], 1, &mut Nan),
        Err(TrieError::InvalidConfig(_))
    ));
    assert!(Decoder::new(DecodeStrategy::Beam { width: 0 }, 0).is_err());
    assert!(
        Decoder::new(
            DecodeStrategy::Sample {
                temperature: 0.0,
                top_k: None
            },
            0
        )
        .is_err()
    );
    assert!(
        Decoder::new(
            DecodeStrategy::Sample {
                temperature: 1.0,
                top_k: Some(0)
            },
            0
        )
        .is_err()
    );
    assert!(d.decode(&[], 1, &mut Nan).unwrap().is_empty());
}

#[test]
fn beam_finds_a_list_greedy_misses() {
    // Greedy prefers token 1 at level 0 (0.1 > 0.0) but then splits its mass over two
    // children; the path through token 0 has a single child and a higher total.
    let trie = CandidateTrie::new(&[[0u32, 0], [1, 0], [1, 1]], &[2, 2]).unwrap();
    let scores = vec![vec![0.0, 0.1], vec![0.0, 0.0]];
    let greedy = Decoder::new(DecodeStrategy::Greedy, 0)
        .unwrap()
        .decode(&[&trie], 1, &mut Fixed(scores.clone()))
        .unwrap();
    let beam = Decoder::new(DecodeStrategy::Beam { width: 2 }, 0)
        .unwrap()
        .decode(&[&trie], 1, &mut Fixed(scores))
        .unwrap();
    assert_eq!(greedy[0][0].items, vec![1]);
    assert_eq!(beam[0][0].items, vec![0]);
    assert!(beam[0][0].logprob > greedy[0][0].logprob);
    assert_eq!(beam[0].len(), 2);
}

/// Checks, at every step, that each row's prefix extends its declared parent's prefix and
/// that the parent belongs to the same request: what a key/value-cache scorer relies on.
struct ParentChecker {
    inner: HashScorer,
    prev: Vec<(u32, Vec<u32>)>,
}

impl StepScorer for ParentChecker {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut now = Vec::with_capacity(batch.rows());
        for row in 0..batch.rows() {
            let prefix = batch.prefix(row).to_vec();
            assert_eq!(prefix.len(), batch.step);
            if batch.step > 0 {
                let (req, parent_prefix) = &self.prev[batch.parents[row] as usize];
                assert_eq!(*req, batch.requests[row]);
                assert_eq!(&prefix[..batch.step - 1], &parent_prefix[..]);
            }
            now.push((batch.requests[row], prefix));
        }
        self.prev = now;
        self.inner.score(batch, out)
    }
}

#[test]
fn parents_link_rows_across_steps() {
    let tuples: Vec<[u32; 3]> = (0..40).map(|i| [i % 3, (i / 3) % 4, i / 12]).collect();
    let trie = CandidateTrie::new(&tuples, &[3, 4, 4]).unwrap();
    let other: Vec<[u32; 3]> = tuples.iter().rev().take(25).copied().collect();
    let trie2 = CandidateTrie::new(&other, &[3, 4, 4]).unwrap();
    for strategy in strategies() {
        let mut scorer = ParentChecker {
            inner: HashScorer { salt: 4 },
            prev: Vec::new(),
        };
        let refs = [&trie, &trie2, &trie];
        Decoder::new(strategy, 0)
            .unwrap()
            .decode(&refs, 4, &mut scorer)
            .unwrap();
    }
}

#[test]
fn strategies_parse_from_and_print_to_the_same_names() {
    use glorank_trie::DecodeStrategy;
    for text in ["greedy", "beam:4", "sample:0.7", "sample:1:5"] {
        let s: DecodeStrategy = text.parse().unwrap();
        assert_eq!(s.to_string(), text);
    }
    assert_eq!(
        "sample".parse::<DecodeStrategy>().unwrap(),
        DecodeStrategy::sample()
    );
    for bad in ["beam:0", "beam:x", "sample:-1", "sample:1:0", "top"] {
        let e = bad.parse::<DecodeStrategy>().unwrap_err().to_string();
        assert!(!e.is_empty(), "{bad}");
    }
}

/// `first_item_logprobs` against a direct computation: per candidate, the sum over levels of
/// the log-softmax over the tokens that extend its prefix; a distribution per request; and
/// the greedy first item's first-slot log-probability is one of them (the largest-token path).
#[test]
fn first_item_logprobs_match_the_masked_softmax_chain() {
    use glorank_trie::first_item_logprobs;
    proptest!(ProptestConfig::with_cases(64), |((vocab, reqs, _l) in requests())| {
        let ts = tries(&vocab, &reqs);
        let refs: Vec<&CandidateTrie> = ts.iter().collect();
        let mut scorer = HashScorer { salt: 11 };
        let got = first_item_logprobs(&refs, &mut scorer).unwrap();
        prop_assert_eq!(got.len(), ts.len());
        for (r, t) in ts.iter().enumerate() {
            let tuples: Vec<Vec<u32>> = (0..t.num_candidates()).map(|c| t.tuple_of(c)).collect();
            prop_assert_eq!(got[r].len(), tuples.len());
            let mut mass = 0.0f64;
            for (c, tuple) in tuples.iter().enumerate() {
                let mut want = 0.0f64;
                for level in 0..tuple.len() {
                    let prefix = &tuple[..level];
                    let allowed: BTreeSet<u32> = tuples
                        .iter()
                        .filter(|u| &u[..level] == prefix)
                        .map(|u| u[level])
                        .collect();
                    let s = scorer.scores(r as u32, prefix, vocab[level]);
                    let lse = allowed
                        .iter()
                        .map(|&a| f64::from(s[a as usize]).exp())
                        .sum::<f64>()
                        .ln();
                    want += f64::from(s[tuple[level] as usize]) - lse;
                }
                prop_assert!((f64::from(got[r][c]) - want).abs() < 1e-4, "{} vs {}", got[r][c], want);
                mass += want.exp();
            }
            prop_assert!((mass - 1.0).abs() < 1e-4);
        }
        let mut greedy = Decoder::new(DecodeStrategy::Greedy, 0).unwrap();
        let lists = greedy.decode(&refs, 1, &mut HashScorer { salt: 11 }).unwrap();
        for (r, l) in lists.iter().enumerate() {
            let first = l[0].items[0];
            prop_assert!((got[r][first] - l[0].logprob).abs() < 1e-4);
        }
    });
}

/// A [`HashScorer`] over rows `offset..` of a larger batch: a shard of it.
struct ShardScorer {
    inner: HashScorer,
    offset: u32,
}

impl StepScorer for ShardScorer {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.inner.fill(batch, out, self.offset);
        Ok(())
    }
}

/// Sharded decoding gives every request what decoding the whole batch gives it, for every
/// strategy (sampled rows draw by their index in the whole call), and advances the call
/// counter once, as a whole-batch call does.
#[test]
fn sharded_decoding_equals_whole_batch_decoding() {
    let vocab = [4usize, 3];
    let reqs: Vec<Vec<Vec<u32>>> = (0..37u32)
        .map(|r| {
            (0..12u32)
                .map(|c| vec![(r + c) % 4, (r * 7 + c) % 3])
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .collect();
    let tries = tries(&vocab, &reqs);
    let refs: Vec<&CandidateTrie> = tries.iter().collect();
    for strategy in strategies() {
        let mut whole = Decoder::new(strategy, 9).unwrap();
        let mut sharded = Decoder::new(strategy, 9).unwrap();
        for _ in 0..2 {
            // Three threads; three threads in blocks of 5 rows; one thread in blocks of 4.
            for plan in [
                ShardPlan::new(3, 4),
                ShardPlan::new(3, 4).with_block_rows(5),
                ShardPlan::new(1, 4).with_block_rows(4),
            ] {
                let a = whole.decode(&refs, 3, &mut HashScorer { salt: 1 }).unwrap();
                let b = sharded
                    .decode_sharded(&refs, 3, plan, |rows| {
                        Ok(ShardScorer {
                            inner: HashScorer { salt: 1 },
                            offset: rows.start as u32,
                        })
                    })
                    .unwrap();
                assert_eq!(a, b, "{strategy} {plan:?}");
            }
        }
    }
    // A scorer that cannot be built is an error, not a panic.
    let mut decoder = Decoder::new(DecodeStrategy::Greedy, 0).unwrap();
    let err = decoder
        .decode_sharded(
            &refs,
            3,
            ShardPlan::new(2, 4),
            |_| -> Result<ShardScorer, _> { Err("no model".into()) },
        )
        .unwrap_err();
    assert!(matches!(err, TrieError::Scorer(_)), "{err}");
}
