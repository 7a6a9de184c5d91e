//! Constrained decoding over a small catalog with a hand-written scorer.
//!
//! Run with `cargo run --release -p glorank-examples --example constrained_decoding`.
//!
//! Ten films have 3-token semantic IDs (genre, sub-genre, dedupe). A request offers six of
//! them; the "model" likes comedies and, inside a genre, prefers sub-genre 1. Greedy,
//! sampling and beam search each produce a list of three distinct candidates.

use glorank_trie::{CandidateTrie, DecodeStrategy, Decoder, StepBatch, StepScorer};

/// Film titles and their semantic IDs: (genre, sub-genre, dedupe).
const CATALOG: [(&str, [u32; 3]); 10] = [
    ("Airplane!", [0, 1, 0]),
    ("Hot Shots!", [0, 1, 1]),
    ("Groundhog Day", [0, 0, 0]),
    ("Alien", [1, 0, 0]),
    ("Aliens", [1, 0, 1]),
    ("Heat", [2, 1, 0]),
    ("Ronin", [2, 1, 1]),
    ("Fargo", [2, 0, 0]),
    ("Amelie", [3, 0, 0]),
    ("Brazil", [3, 1, 0]),
];

/// Genre 0 (comedy) first, then by genre id; sub-genre 1 preferred; dedupe indifferent.
struct Taste;

impl StepScorer for Taste {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for row in out.chunks_mut(batch.vocab) {
            for (token, score) in row.iter_mut().enumerate() {
                *score = match batch.level {
                    0 => 2.0 - token as f32 * 0.5,
                    1 => token as f32,
                    _ => 0.0,
                };
            }
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // This request's candidates: indices into CATALOG.
    let request = [3usize, 0, 7, 1, 9, 5];
    let tuples: Vec<[u32; 3]> = request.iter().map(|&i| CATALOG[i].1).collect();
    let trie = CandidateTrie::new(&tuples, &[4, 2, 2])?;
    let title = |c: usize| CATALOG[request[c]].0;
    for (name, strategy) in [
        ("greedy", DecodeStrategy::Greedy),
        ("sample (T=1)", DecodeStrategy::sample()),
        ("beam (width 3)", DecodeStrategy::Beam { width: 3 }),
    ] {
        let mut decoder = Decoder::new(strategy, 42)?;
        let lists = decoder.decode(&[&trie], 3, &mut Taste)?;
        for (k, list) in lists[0].iter().enumerate() {
            let titles: Vec<&str> = list.items.iter().map(|&c| title(c)).collect();
            println!(
                "{name:<15} #{k}: {:<40} log-prob {:>7.3}",
                titles.join(", "),
                list.logprob
            );
        }
    }
    Ok(())
}
