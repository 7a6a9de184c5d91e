//! Policy benchmark: parameter counts, decoding latency and throughput, teacher-forced
//! training throughput, on the CPU (flex) backend.
//!
//! `cargo run --release -p glorank-examples --example policy_bench [-- --params-only]`
//!
//! Setup: default policy (d = 128, 4 heads, 2 encoder + 2 decoder layers), semantic IDs of
//! depth 4 (3 x 256 codes + a dedupe level of 32), N = 50 candidates, L = 6, histories of 50.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use glorank_policy::{ActionSpace, HistoryItem, Policy, PolicyConfig, Request, decode};
use glorank_reward::{RewardConfig, RewardRole, UserResponseModel};
use glorank_trie::{CandidateTrie, DecodeStrategy, Decoder};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeSet;
use std::time::Instant;

const VOCAB: [usize; 4] = [256, 256, 256, 32];

fn request(rng: &mut ChaCha8Rng) -> Request {
    let tuple = |rng: &mut ChaCha8Rng| -> Vec<u32> {
        VOCAB
            .iter()
            .map(|&v| rng.random_range(0..v as u32))
            .collect()
    };
    let mut set = BTreeSet::new();
    while set.len() < 50 {
        set.insert(tuple(rng));
    }
    Request {
        user_features: vec![],
        history: (0..50)
            .map(|_| HistoryItem {
                tuple: tuple(rng),
                labels: rng.random_range(0..8),
            })
            .collect(),
        candidates: set.into_iter().collect(),
        retriever_scores: (0..50).map(|_| rng.random_range(-1.0..1.0)).collect(),
        candidate_features: vec![],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::flex();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let reqs: Vec<Request> = (0..256).map(|_| request(&mut rng)).collect();
    for role in [RewardRole::Evaluator, RewardRole::Simulator] {
        let model = UserResponseModel::new(&RewardConfig::for_role(role, VOCAB.to_vec()), &dev)?;
        println!(
            "reward model ({role:?} defaults): {} parameters",
            model.num_params()
        );
    }
    if std::env::args().nth(1).as_deref() == Some("--params-only") {
        return Ok(());
    }
    for space in [ActionSpace::Global, ActionSpace::LocalIndex] {
        let config = PolicyConfig::new(VOCAB.to_vec()).with_action_space(space);
        let policy = Policy::new(&config, &dev)?;
        println!("\n{}", policy.summary());
        for (name, strategy) in [
            ("greedy", DecodeStrategy::Greedy),
            ("beam4", DecodeStrategy::Beam { width: 4 }),
        ] {
            let mut decoder = Decoder::new(strategy, 0)?;
            decode(&policy, &reqs[..1], &mut decoder, &dev)?; // warm-up
            let lat: Vec<f64> = (0..20)
                .map(|k| {
                    let t = Instant::now();
                    decode(&policy, &reqs[k..k + 1], &mut decoder, &dev)
                        .map(|_| t.elapsed().as_secs_f64())
                })
                .collect::<Result<_, _>>()?;
            let t = Instant::now();
            let runs = 2;
            for _ in 0..runs {
                decode(&policy, &reqs, &mut decoder, &dev)?;
            }
            let secs = t.elapsed().as_secs_f64() / runs as f64;
            println!(
                "  {name:<7} batch 1 p50 latency {:>7.1} ms | batch 256: {:>7.1} ms, {:>7.0} requests/s",
                median(lat) * 1e3,
                secs * 1e3,
                256.0 / secs
            );
        }
        // Teacher-forced forward + backward + AdamW step at batch 256.
        let train = Device::flex().autodiff();
        let mut model = Policy::new(&config, &train)?;
        let tries: Vec<CandidateTrie> = reqs
            .iter()
            .map(|r| model.trie(r))
            .collect::<Result<_, _>>()?;
        let lists: Vec<Vec<usize>> = (0..256)
            .map(|k| (0..6).map(|j| (k + 7 * j) % 50).collect())
            .collect();
        let mut optim = AdamWConfig::new().init();
        let mut times = Vec::new();
        for _ in 0..4 {
            let t = Instant::now();
            let batch = model.encode_inputs(&reqs, &train)?;
            let (_, total) = model.log_probs(&batch, &tries, &lists)?;
            let loss = total.mean().neg();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-4, model, grads);
            times.push(t.elapsed().as_secs_f64());
        }
        let step = median(times[1..].to_vec());
        println!(
            "  teacher-forced forward+backward+AdamW, batch 256: {:.0} ms/step, {:.0} samples/s ({} params)",
            step * 1e3,
            256.0 / step,
            model.num_params()
        );
    }
    Ok(())
}
