//! An RL step raises a verifiable reward.

use burn::module::Module;
use burn::optim::AdamConfig;
use burn::tensor::Device;
use glorank_policy::{HistoryItem, Policy, PolicyArch, PolicyConfig, Request, decode};
use glorank_train::{ListReward, RlConfig, rl_step};
use glorank_trie::{DecodeStrategy, Decoder};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeSet;

const VOCAB: [usize; 2] = [6, 4];

fn request(rng: &mut ChaCha8Rng) -> Request {
    let mut set = BTreeSet::new();
    while set.len() < 10 {
        set.insert(
            VOCAB
                .iter()
                .map(|&v| rng.random_range(0..v as u32))
                .collect::<Vec<u32>>(),
        );
    }
    Request {
        user_features: vec![],
        history: vec![HistoryItem {
            tuple: vec![1, 1],
            labels: 1,
        }],
        candidates: set.into_iter().collect(),
        retriever_scores: vec![],
        exposures: vec![],
    }
}

/// Fraction of the list's items whose first token is below 3: a verifiable reward.
fn reward(reqs: &[Request], r: usize, list: &[usize]) -> f32 {
    list.iter()
        .filter(|&&c| reqs[r].candidates[c][0] < 3)
        .count() as f32
        / list.len() as f32
}

/// [`reward`] as a [`ListReward`].
struct FirstTokenReward;

impl ListReward for FirstTokenReward {
    fn rewards(
        &self,
        requests: &[&Request],
        _ids: &[usize],
        lists: &[Vec<usize>],
    ) -> glorank_train::Result<Vec<f32>> {
        Ok(requests
            .iter()
            .zip(lists)
            .map(|(r, l)| reward(std::slice::from_ref(*r), 0, l))
            .collect())
    }
}

fn greedy_reward(policy: &Policy, reqs: &[Request], dev: &Device) -> f32 {
    let mut d = Decoder::new(DecodeStrategy::Greedy, 0).unwrap();
    let lists = decode(policy, reqs, &mut d, dev).unwrap();
    lists
        .iter()
        .enumerate()
        .map(|(r, l)| reward(reqs, r, &l[0].items))
        .sum::<f32>()
        / reqs.len() as f32
}

#[test]
fn rl_steps_raise_a_verifiable_reward() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let reqs: Vec<Request> = (0..8).map(|_| request(&mut rng)).collect();
    let config = PolicyConfig::new(VOCAB.to_vec())
        .with_shape(3, 4, 10)
        .with_arch(
            PolicyArch::default()
                .with_size(16, 2, 1)
                .with_dropout(0.0)
                .with_seed(2),
        );
    let (train, plain) = (Device::flex().autodiff(), Device::flex());
    let mut policy = Policy::new(&config, &train).unwrap();
    let reference = Policy::new(&config, &plain).unwrap();
    let before = greedy_reward(&reference, &reqs, &plain);
    let mut optim = AdamConfig::new().init();
    let mut sampler = Decoder::new(DecodeStrategy::sample(), 11).unwrap();
    let cfg = RlConfig::default().with(8, 0.01, 1e-2);
    let ids: Vec<usize> = (0..reqs.len()).collect();
    let mut stats = Vec::new();
    for _ in 0..25 {
        let (p, s) = rl_step(
            policy,
            &reference,
            &mut optim,
            &reqs,
            &ids,
            &FirstTokenReward,
            &mut sampler,
            &cfg,
            (&train, &plain),
        )
        .unwrap();
        policy = p;
        assert!(!s.update.skipped && s.kl.is_finite() && s.kl >= -1e-6);
        assert!(s.entropy > 0.0 && s.update.grad_norm.is_finite());
        stats.push(s);
    }
    let after = greedy_reward(&policy.valid(), &reqs, &plain);
    let first = stats[0].mean_reward;
    let last = stats[stats.len() - 3..]
        .iter()
        .map(|s| s.mean_reward)
        .sum::<f64>()
        / 3.0;
    // Candidates with a first token below 3 are about half of each pool. Measured (seeded):
    // sampled reward 0.516 -> 0.998 and greedy reward 0.583 -> 1.000 over 25 steps; the bars
    // leave wide margins while failing a policy that does not learn.
    assert!(last > first + 0.2, "sampled reward {first:.3} -> {last:.3}");
    assert!(
        after > before + 0.1,
        "greedy reward {before:.3} -> {after:.3}"
    );
}
