//! Latency and throughput of a policy: the one implementation behind `glorank bench` and the
//! `policy_bench` example.
//!
//! ```
//! use glorank::bench::{BenchOptions, bench_policy, synthetic_lists, synthetic_requests};
//! use glorank::policy::{Policy, PolicyArch, PolicyConfig};
//!
//! let device = glorank::Device::flex();
//! let config = PolicyConfig::new(vec![8, 8, 4])
//!     .with_arch(PolicyArch::default().with_size(16, 2, 1))
//!     .with_shape(3, 10, 10);
//! let policy = Policy::new(&config, &device)?;
//! let requests = synthetic_requests(&[8, 8, 4], 10, 10, 4, 1);
//! let lists = synthetic_lists(requests.len(), 10, 3);
//! let options = BenchOptions::default().with_sizes(4, 4, 1);
//! let report = bench_policy(&policy, &config, &requests, &lists, &options, &device)?;
//! assert_eq!(report.decode.len(), 2);
//! assert!(report.train_samples_per_s > 0.0);
//! # Ok::<(), glorank::Error>(())
//! ```

use crate::Result;
use burn::module::Module;
use burn::tensor::Device;
use glorank_nn::HistoryItem;
use glorank_policy::{
    HostPolicy, Policy, PolicyConfig, Request, decode_on_device, decode_with_host,
};
use glorank_trie::{DecodeStrategy, Decoder};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Instant;

/// Semantic-ID vocabularies of the default benchmark: 3 levels of 256 codes and a dedupe
/// level of 32.
pub const DEFAULT_VOCAB: [usize; 4] = [256, 256, 256, 32];

/// What to time.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BenchOptions {
    /// Requests decoded one at a time for the latency percentiles (default 200; 0 skips the
    /// latency measurement, and the report's percentiles are then `None`).
    pub latency_requests: usize,
    /// Batch size of the throughput measurement (default 256; at most the requests there
    /// are, and the report says the batch it measured).
    pub batch: usize,
    /// Timed rounds over the batch (default 3).
    pub rounds: usize,
    /// Batch size of the training steps (default 256).
    pub train_batch: usize,
    /// Timed training steps after one warm-up step (default 3; 0 skips training, and the
    /// report's training rate is then 0).
    pub train_steps: usize,
    /// Data-parallel shards of each training step (default: [`SftConfig`]'s, 4).
    ///
    /// [`SftConfig`]: glorank_train::SftConfig
    pub train_shards: usize,
    /// Decode with burn's operations on the device even on a CPU (default `false`: a CPU
    /// decodes on a [`HostPolicy`] built once before the timings).
    pub decode_on_device: bool,
    /// Also decode this many requests greedily on flex and on the benchmark's device with
    /// the same weights and count the identical lists (default 0: no parity check).
    pub parity: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            latency_requests: 200,
            batch: 256,
            rounds: 3,
            train_batch: 256,
            train_steps: 3,
            train_shards: glorank_train::SftConfig::default().optim.shards,
            decode_on_device: false,
            parity: 0,
        }
    }
}

/// Largest batch (decoding or training) and most latency requests a benchmark takes.
pub const MAX_BENCH_SIZE: usize = 1 << 20;

impl BenchOptions {
    /// Checks every bound.
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] naming the first bad option by its flag
    /// (`--batch`...).
    pub fn validate(&self) -> Result<()> {
        let check = |field: &str, v: usize, lo: usize| {
            if v < lo || v > MAX_BENCH_SIZE {
                return Err(crate::Error::InvalidConfig {
                    field: format!("--{}", field.replace('_', "-")),
                    message: format!("{v} is outside {lo}..={MAX_BENCH_SIZE}"),
                });
            }
            Ok(())
        };
        check("latency_requests", self.latency_requests, 0)?;
        check("batch", self.batch, 1)?;
        check("rounds", self.rounds, 1)?;
        check("train_batch", self.train_batch, 1)?;
        check("train_steps", self.train_steps, 0)?;
        check("train_shards", self.train_shards, 1)?;
        check("parity", self.parity, 0)
    }

    /// Sets the latency requests, the throughput batch and the training batch.
    pub fn with_sizes(mut self, latency_requests: usize, batch: usize, train_batch: usize) -> Self {
        self.latency_requests = latency_requests;
        self.batch = batch;
        self.train_batch = train_batch;
        self
    }
}

/// Timings of one decoding strategy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecodeTiming {
    /// `greedy` or `beam4`.
    pub strategy: String,
    /// Median latency of one request decoded alone, in milliseconds (`None`: not measured,
    /// [`BenchOptions::latency_requests`] was 0).
    pub p50_ms: Option<f64>,
    /// 99th-percentile latency of one request decoded alone, in milliseconds (`None`: not
    /// measured).
    pub p99_ms: Option<f64>,
    /// Requests per second when decoding [`BenchReport::batch`] requests at once.
    pub batch_requests_per_s: f64,
}

/// What [`bench_policy`] measured. Every rate also comes as a share of the machine's own
/// matrix-multiply peak, measured in the same run, so it carries to another machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// CPU model name (from `/proc/cpuinfo` where it exists).
    pub machine: String,
    /// Threads available to the process.
    pub threads: usize,
    /// Parameters of the policy.
    pub parameters: usize,
    /// Greedy and beam-4 decoding.
    pub decode: Vec<DecodeTiming>,
    /// Requests timed one by one for the latency percentiles (0: none).
    pub latency_requests: usize,
    /// Batch size of the decoding throughput measured (the asked batch, or all the
    /// requests there are when fewer).
    pub batch: usize,
    /// Requests the benchmark had.
    pub requests: usize,
    /// Batch size of the training steps.
    pub train_batch: usize,
    /// Teacher-forced SFT steps (forward, backward, clipping, AdamW): samples per second.
    pub train_samples_per_s: f64,
    /// Greedy decoding throughput at [`BenchReport::batch`] requests (requests/s).
    pub greedy_requests_per_s_b256: f64,
    /// Greedy median latency of one request alone (ms; `None`: not measured).
    pub greedy_p50_ms_b1: Option<f64>,
    /// Greedy 99th-percentile latency of one request alone (ms; `None`: not measured).
    pub greedy_p99_ms_b1: Option<f64>,
    /// Beam-4 median latency of one request alone (ms; `None`: not measured).
    pub beam4_p50_ms_b1: Option<f64>,
    /// Floating-point operations of one request's greedy decode by [`policy_flops`].
    pub flops_per_request: f64,
    /// Training throughput in GFLOP/s (a sample costs three requests: forward and backward).
    pub achieved_gflops: f64,
    /// Greedy batch throughput in GFLOP/s.
    pub greedy_gflops: f64,
    /// The machine's f32 matrix-multiply rate on this backend ([`matmul_peak_gflops`]),
    /// measured before and after the timings and the higher kept: a shared machine that
    /// slows down while the peak is measured would otherwise make every ratio look better.
    pub peak_gflops: f64,
}

/// The CPU model name, or `unknown`.
pub fn machine_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `n` seeded random requests over `vocab`: `pool` distinct candidates and `history` history
/// items each, with retriever scores in [-1, 1].
pub fn synthetic_requests(
    vocab: &[usize],
    pool: usize,
    history: usize,
    n: usize,
    seed: u64,
) -> Vec<Request> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tuple = |rng: &mut ChaCha8Rng| -> Vec<u32> {
        vocab
            .iter()
            .map(|&v| rng.random_range(0..v.max(1) as u32))
            .collect()
    };
    (0..n)
        .map(|_| {
            let mut set = BTreeSet::new();
            while set.len() < pool {
                set.insert(tuple(&mut rng));
            }
            Request {
                user_features: vec![],
                history: (0..history)
                    .map(|_| HistoryItem {
                        tuple: tuple(&mut rng),
                        labels: rng.random_range(0..8),
                    })
                    .collect(),
                candidates: set.into_iter().collect(),
                retriever_scores: (0..pool).map(|_| rng.random_range(-1.0..1.0)).collect(),
                exposures: Vec::new(),
            }
        })
        .collect()
}

/// `n` demonstration lists of `len` distinct positions in pools of `pool`.
pub fn synthetic_lists(n: usize, pool: usize, len: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|k| (0..len).map(|j| (k + 7 * j) % pool.max(1)).collect())
        .collect()
}

/// Greedy lists of `reference` (on the flex CPU device, decoded on its [`HostPolicy`]) and
/// of `policy` (the same weights, decoded with burn's operations on `device`) for
/// `requests`: how many of the lists are identical, of how many. Two paths compute in
/// another order, so near-ties may break differently; every other difference is a bug.
///
/// # Errors
/// Decoding errors on either device.
pub fn decode_parity(
    reference: &Policy,
    policy: &Policy,
    requests: &[Request],
    device: &Device,
) -> Result<(usize, usize)> {
    let mut greedy = Decoder::new(DecodeStrategy::Greedy, 0)?;
    let a = HostPolicy::new(reference).decode(requests, &mut greedy)?;
    let b = decode_on_device(policy, requests, &mut greedy, device)?;
    let same = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x[0].items == y[0].items)
        .count();
    Ok((same, requests.len()))
}

/// Floating-point operations (a multiply-add counts two) of one greedy decode of a request
/// with `sequence` encoder positions (`1 + history + candidates`): the encoder, the decoder's
/// cross-attention keys and values (once), then every step's self-attention with its cache,
/// cross-attention, feed-forward and output head. Layer norms, softmax and embeddings are
/// left out (a few percent). A teacher-forced training sample costs about three times this
/// (forward plus a backward of twice its cost).
pub fn policy_flops(config: &PolicyConfig, sequence: usize) -> f64 {
    let a = &config.arch;
    let (d, ff, s) = (a.d_model as f64, a.d_ff() as f64, sequence as f64);
    let encoder_layer = 8.0 * s * d * d + 4.0 * s * s * d + 4.0 * s * d * ff;
    let global = a.action_space == glorank_policy::ActionSpace::Global;
    let depth = config.vocab_sizes.len();
    let steps = if global {
        depth * config.list_len
    } else {
        config.list_len
    };
    let mut decoder = a.layers as f64 * 4.0 * s * d * d; // cross K, V
    for t in 0..steps {
        let per_layer =
            8.0 * d * d + 4.0 * (t + 1) as f64 * d + 4.0 * d * d + 4.0 * s * d + 4.0 * d * ff;
        let head = if global {
            config.vocab_sizes[t % depth]
        } else {
            config.max_candidates
        } as f64;
        decoder += a.layers as f64 * per_layer + 2.0 * d * head;
    }
    a.layers as f64 * encoder_layer + decoder
}

/// The f32 matrix-multiply rate of `device` in GFLOP/s: the best of five products of two
/// fresh 1024 x 1024 matrices, each read back (so no work is skipped), after a warm-up.
pub fn matmul_peak_gflops(device: &Device) -> f64 {
    use burn::tensor::{Distribution, Tensor};
    let n = 1024;
    let mut best = 0.0f64;
    for round in 0..6 {
        let a = Tensor::<2>::random([n, n], Distribution::Uniform(-1.0, 1.0), device);
        let b = Tensor::<2>::random([n, n], Distribution::Uniform(-1.0, 1.0), device);
        let t = Instant::now();
        let c: f32 = a.matmul(b).sum().into_scalar();
        let secs = t.elapsed().as_secs_f64();
        if round > 0 && c.is_finite() {
            best = best.max(2.0 * (n * n * n) as f64 / secs / 1e9);
        }
    }
    best
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Times `policy` (built from `config`, on the plain `device`) on `requests`: greedy and
/// beam-4 latency one request at a time, throughput at [`BenchOptions::batch`], and SFT
/// training steps on a fresh copy of the architecture on `device`'s autodiff form with
/// `lists` as demonstrations (one per request).
///
/// # Errors
/// Decoding or training errors (for example a request that does not fit the policy).
pub fn bench_policy(
    policy: &Policy,
    config: &PolicyConfig,
    requests: &[Request],
    lists: &[Vec<usize>],
    options: &BenchOptions,
    device: &Device,
) -> Result<BenchReport> {
    options.validate()?;
    if requests.is_empty() || lists.len() != requests.len() {
        return Err(crate::Error::InvalidRequest(format!(
            "benchmark needs requests and one list per request ({} requests, {} lists)",
            requests.len(),
            lists.len()
        )));
    }
    let n_latency = options.latency_requests.min(requests.len());
    let batch_size = options.batch.min(requests.len());
    let peak_before = matmul_peak_gflops(device);
    let host = (!options.decode_on_device)
        .then(|| HostPolicy::for_device(policy, device))
        .flatten();
    let run = |batch: &[Request], decoder: &mut Decoder| -> Result<()> {
        decode_with_host(host.as_ref(), policy, batch, decoder, device)?;
        Ok(())
    };
    let mut decode_rows = Vec::new();
    for (name, strategy) in [
        ("greedy", DecodeStrategy::Greedy),
        ("beam4", DecodeStrategy::Beam { width: 4 }),
    ] {
        let mut decoder = Decoder::new(strategy, 0)?;
        run(&requests[..1], &mut decoder)?; // warm-up
        let mut lat = Vec::with_capacity(n_latency);
        for r in requests.iter().take(n_latency) {
            let t = Instant::now();
            run(std::slice::from_ref(r), &mut decoder)?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        lat.sort_by(f64::total_cmp);
        let batch = &requests[..batch_size];
        let t = Instant::now();
        let rounds = options.rounds.max(1);
        for _ in 0..rounds {
            run(batch, &mut decoder)?;
        }
        decode_rows.push(DecodeTiming {
            strategy: name.into(),
            p50_ms: (!lat.is_empty()).then(|| percentile(&lat, 0.5)),
            p99_ms: (!lat.is_empty()).then(|| percentile(&lat, 0.99)),
            batch_requests_per_s: (rounds * batch.len()) as f64 / t.elapsed().as_secs_f64(),
        });
    }
    let bs = options.train_batch.clamp(1, requests.len());
    let train_samples_per_s = if options.train_steps == 0 {
        0.0
    } else {
        time_training(config, requests, lists, options, bs, device)?
    };
    let sequence = requests
        .iter()
        .map(|r| 1 + r.history.len().min(config.max_history).max(1) + r.candidates.len())
        .sum::<usize>()
        / requests.len();
    let flops = policy_flops(config, sequence);
    let greedy = &decode_rows[0];
    let beam = &decode_rows[1];
    Ok(BenchReport {
        machine: machine_name(),
        threads: std::thread::available_parallelism().map_or(0, |n| n.get()),
        parameters: policy.parameter_count(),
        latency_requests: n_latency,
        batch: batch_size,
        requests: requests.len(),
        train_batch: bs,
        train_samples_per_s,
        greedy_requests_per_s_b256: greedy.batch_requests_per_s,
        greedy_p50_ms_b1: greedy.p50_ms,
        greedy_p99_ms_b1: greedy.p99_ms,
        beam4_p50_ms_b1: beam.p50_ms,
        flops_per_request: flops,
        achieved_gflops: train_samples_per_s * 3.0 * flops / 1e9,
        greedy_gflops: greedy.batch_requests_per_s * flops / 1e9,
        peak_gflops: peak_before.max(matmul_peak_gflops(device)),
        decode: decode_rows,
    })
}

/// What [`bench_run`] and [`bench_synthetic`] measured, and on what.
#[derive(Debug, Clone)]
pub struct Benched {
    /// The timings.
    pub report: BenchReport,
    /// What was timed (the policy and the requests), in words.
    pub what: String,
    /// The policy's width.
    pub d_model: usize,
    /// With [`BenchOptions::parity`] above 0: how many greedy lists were identical on the
    /// flex CPU and on the benchmark's device, of how many.
    pub parity: Option<(usize, usize)>,
}

/// Times the policy a run serves ([`crate::RunDir::trained_policy`]) on up to 512 of the
/// run's requests (test, then validation, then training), on `device`.
///
/// # Errors
/// Missing or changed artifacts (named), decoding and training errors.
pub fn bench_run(run: &crate::RunDir, options: &BenchOptions, device: &Device) -> Result<Benched> {
    options.validate()?;
    let policy_dir = run.trained_policy()?;
    let served = run.policy_artifact(&policy_dir).unwrap_or("");
    run.verify(&["dataset", "tokenizer", served])?;
    let ds = glorank_data::PreparedDataset::load(run.root())?;
    let ids = glorank_tokenizer::SemanticIds::load(&run.semantic_ids_file())?;
    let (policy, config) = Policy::load(&policy_dir, device)?;
    let builder =
        glorank_train::RequestBuilder::new(&ds, &ids)?.with_exposures(config.inputs.exposures);
    let pool: Vec<_> = ds
        .test
        .iter()
        .chain(&ds.valid)
        .chain(&ds.train)
        .take(512)
        .cloned()
        .collect();
    let lists: Vec<Vec<usize>> = pool.iter().map(|s| ds.demonstration(s)).collect();
    let what = format!(
        "policy {}; dataset {}, N = {}, L = {}",
        policy_dir.display(),
        ds.name,
        ds.config.pool_size,
        ds.config.slate_len
    );
    bench_with(
        policy,
        &config,
        &builder.requests(&pool),
        &lists,
        what,
        options,
        device,
    )
}

/// Times the default-dimension policy ([`DEFAULT_VOCAB`], [`PolicyConfig::new`]'s
/// architecture, seeded on the CPU and moved to `device`) on 512 generated requests (pools
/// of 50, lists of 6, histories of 50): no run directory needed.
///
/// # Errors
/// Decoding and training errors.
pub fn bench_synthetic(options: &BenchOptions, device: &Device) -> Result<Benched> {
    options.validate()?;
    let config = PolicyConfig::new(DEFAULT_VOCAB.to_vec());
    // Seeded on the CPU, then moved: the same weights on every device.
    let policy = Policy::new(&config, &Device::flex())?.to_device(device);
    let requests = synthetic_requests(&DEFAULT_VOCAB, 50, 50, 512, 1);
    let lists = synthetic_lists(requests.len(), 50, config.list_len);
    let what = "default-dimension policy on generated requests (N = 50, L = 6, histories of 50)";
    bench_with(
        policy,
        &config,
        &requests,
        &lists,
        what.into(),
        options,
        device,
    )
}

fn bench_with(
    policy: Policy,
    config: &PolicyConfig,
    requests: &[Request],
    lists: &[Vec<usize>],
    what: String,
    options: &BenchOptions,
    device: &Device,
) -> Result<Benched> {
    let parity = (options.parity > 0)
        .then(|| {
            let n = options.parity.min(requests.len());
            let cpu = policy.clone().to_device(&Device::flex());
            decode_parity(&cpu, &policy, &requests[..n], device)
        })
        .transpose()?;
    Ok(Benched {
        report: bench_policy(&policy, config, requests, lists, options, device)?,
        what,
        d_model: config.arch.d_model,
        parity,
    })
}

/// Samples per second of [`BenchOptions::train_steps`] SFT steps of `batch` on a fresh
/// policy of `config` on `device`'s autodiff form, after one warm-up step.
fn time_training(
    config: &PolicyConfig,
    requests: &[Request],
    lists: &[Vec<usize>],
    options: &BenchOptions,
    batch: usize,
    device: &Device,
) -> Result<f64> {
    let train_dev = device.clone().autodiff();
    let mut model = Policy::new(config, &train_dev)?;
    let mut optim = burn::optim::AdamWConfig::new().init();
    let mut secs = 0.0;
    for k in 0..=options.train_steps {
        let lo = (k * batch) % requests.len();
        let hi = (lo + batch).min(requests.len());
        let t = Instant::now();
        let (next, _) = glorank_train::sft_step(
            model,
            &mut optim,
            &requests[lo..hi],
            &lists[lo..hi],
            None,
            (1e-4, Some(1.0), options.train_shards),
            &train_dev,
        )?;
        model = next;
        if k > 0 {
            secs += t.elapsed().as_secs_f64() / (hi - lo) as f64;
        }
    }
    Ok(options.train_steps.max(1) as f64 / secs.max(1e-12))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glorank_policy::ActionSpace;

    #[test]
    fn the_same_weights_decode_the_same_lists_on_the_same_device() {
        let device = Device::flex();
        let config = PolicyConfig::new(vec![8, 8, 4])
            .with_arch(glorank_policy::PolicyArch::default().with_size(16, 2, 1))
            .with_shape(3, 10, 10);
        let policy = glorank_policy::Policy::new(&config, &device).unwrap();
        let requests = synthetic_requests(&[8, 8, 4], 10, 10, 40, 3);
        let (same, total) = decode_parity(&policy, &policy.clone(), &requests, &device).unwrap();
        assert_eq!((same, total), (40, 40));
        // Another policy decodes other lists for some requests.
        let mut seeded = config.clone();
        seeded.arch.seed = 9;
        let other = glorank_policy::Policy::new(&seeded, &device).unwrap();
        let (same, _) = decode_parity(&policy, &other, &requests, &device).unwrap();
        assert!(same < 40, "{same}");
    }

    #[test]
    fn the_default_request_costs_about_a_hundred_megaflops() {
        // d 128, 2 + 2 layers, feed-forward 512, 3 x 256 codes + 32, lists of 6, and an
        // encoder over 1 + 50 + 50 positions: about 90 MFLOP in the encoder and 40 in the
        // decoder by hand.
        let config = PolicyConfig::new(DEFAULT_VOCAB.to_vec());
        let f = policy_flops(&config, 101);
        assert!((110e6..150e6).contains(&f), "{f}");
        // The local-index ablation decodes 6 steps instead of 24.
        let las = config.clone().with_arch(
            config
                .arch
                .clone()
                .with_action_space(ActionSpace::LocalIndex),
        );
        assert!(policy_flops(&las, 101) < f);
        // The encoder grows quadratically with the sequence.
        assert!(policy_flops(&config, 202) > 2.0 * policy_flops(&config, 101) - 40e6);
    }
}
