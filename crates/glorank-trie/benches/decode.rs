//! Criterion benchmarks of the constrained decoder and the trie build.
//!
//! `cargo bench -p glorank-trie --bench decode`
//!
//! Decoding: batch 256, N = 50 candidates, L = 6, depth 4 (3 levels x 256 codes + a dedupe
//! level of 8), i.e. 24 steps. Throughput is reported per (request x step). Two scorers:
//!
//! * `trie_only`: writes random scores the first time it sees an output shape and leaves the
//!   (reused) buffer alone afterwards, so the time is the decoder's own trie/mask work:
//!   masking, normalisation, selection, state updates and beam bookkeeping;
//! * `with_copy`: copies a fresh slice of precomputed scores at every step, adding the cost
//!   of moving `rows x vocab` floats that any real scorer also pays.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use glorank_trie::{CandidateTrie, DecodeStrategy, Decoder, StepBatch, StepScorer};
use std::collections::BTreeSet;
use std::hint::black_box;

const VOCAB: [usize; 4] = [256, 256, 256, 8];
const BATCH: usize = 256;
const LIST: usize = 6;

/// xorshift64*, for reproducible benchmark inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `n` distinct random tuples; the first level is drawn from 16 codes so prefixes are shared,
/// as semantic IDs of similar items are.
fn tuples(n: usize, rng: &mut Rng) -> Vec<[u32; 4]> {
    let mut set = BTreeSet::new();
    while set.len() < n {
        set.insert([
            (rng.next() % 16) as u32,
            (rng.next() % 256) as u32,
            (rng.next() % 256) as u32,
            (rng.next() % 8) as u32,
        ]);
    }
    set.into_iter().collect()
}

/// Copies precomputed pseudo-random scores into the output: every step (`copy_every_step`)
/// or only when the output shape is new.
struct TableScorer {
    table: Vec<f32>,
    copy_every_step: bool,
    last_len: usize,
}

impl StepScorer for TableScorer {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let n = out.len();
        if self.copy_every_step || n != self.last_len {
            let off = (batch.step * 7919) % (self.table.len() - n);
            out.copy_from_slice(&self.table[off..off + n]);
            self.last_len = n;
        }
        Ok(())
    }
}

fn bench_decode(c: &mut Criterion) {
    let mut rng = Rng(0x5EED);
    let tries: Vec<CandidateTrie> = (0..BATCH)
        .map(|_| CandidateTrie::new(&tuples(50, &mut rng), &VOCAB).unwrap())
        .collect();
    let refs: Vec<&CandidateTrie> = tries.iter().collect();
    let table: Vec<f32> = (0..BATCH * 4 * 256 + 100_000)
        .map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0)
        .collect();
    let steps = LIST * VOCAB.len();
    let mut group = c.benchmark_group("decode_b256_n50_l6_d4");
    group.throughput(Throughput::Elements((BATCH * steps) as u64));
    for (name, strategy) in [
        ("greedy", DecodeStrategy::Greedy),
        ("sample", DecodeStrategy::sample()),
        ("beam4", DecodeStrategy::Beam { width: 4 }),
    ] {
        for (mode, copy_every_step) in [("trie_only", false), ("with_copy", true)] {
            let mut scorer = TableScorer {
                table: table.clone(),
                copy_every_step,
                last_len: 0,
            };
            let mut decoder = Decoder::new(strategy, 1).unwrap();
            group.bench_function(format!("{name}/{mode}"), |b| {
                b.iter(|| black_box(decoder.decode(&refs, LIST, &mut scorer).unwrap()))
            });
        }
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut rng = Rng(0xB111D);
    let mut group = c.benchmark_group("trie_build_d4");
    for n in [50usize, 1000] {
        let t = tuples(n, &mut rng);
        group.bench_with_input(BenchmarkId::from_parameter(n), &t, |b, t| {
            b.iter(|| black_box(CandidateTrie::new(t, &VOCAB).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_build);
criterion_main!(benches);
