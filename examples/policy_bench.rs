//! Policy benchmark on generated requests: parameter counts, decoding latency and
//! throughput, teacher-forced training throughput, for the global policy and the
//! local-index ablation, through [`glorank::bench::bench_policy`] (the same code as
//! `glorank bench --synthetic`).
//!
//! `cargo run --release -p glorank-examples --example policy_bench [-- --params-only]`
//!
//! Setup: default policy (d = 128, 4 heads, 2 encoder + 2 decoder layers), semantic IDs of
//! depth 4 (3 x 256 codes + a dedupe level of 32), N = 50 candidates, L = 6, histories of 50.

use glorank::Device;
use glorank::bench::{
    BenchOptions, DEFAULT_VOCAB, bench_policy, synthetic_lists, synthetic_requests,
};
use glorank::burn::module::Module;
use glorank::policy::{ActionSpace, Policy, PolicyArch, PolicyConfig};
use glorank::reward::{RewardConfig, RewardRole, UserResponseModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::flex();
    for role in [RewardRole::Evaluator, RewardRole::Simulator] {
        let model =
            UserResponseModel::new(&RewardConfig::for_role(role, DEFAULT_VOCAB.to_vec()), &dev)?;
        println!(
            "reward model ({role:?} defaults): {} parameters",
            model.num_params()
        );
    }
    if std::env::args().nth(1).as_deref() == Some("--params-only") {
        return Ok(());
    }
    let requests = synthetic_requests(&DEFAULT_VOCAB, 50, 50, 256, 1);
    let lists = synthetic_lists(requests.len(), 50, 6);
    let options = BenchOptions::default().with_sizes(20, 256, 256);
    for space in [ActionSpace::Global, ActionSpace::LocalIndex] {
        let config = PolicyConfig::new(DEFAULT_VOCAB.to_vec())
            .with_arch(PolicyArch::default().with_action_space(space));
        let policy = Policy::new(&config, &dev)?;
        println!("\n{}", policy.summary());
        let report = bench_policy(&policy, &config, &requests, &lists, &options, &dev)?;
        for d in &report.decode {
            println!(
                "  {:<7} batch 1 p50 latency {:>7.1} ms (p99 {:>7.1}) | batch {}: {:>7.0} requests/s",
                d.strategy,
                d.p50_ms.unwrap_or(f64::NAN),
                d.p99_ms.unwrap_or(f64::NAN),
                report.batch,
                d.batch_requests_per_s
            );
        }
        println!(
            "  teacher-forced SFT step (forward, backward, clipping, AdamW), batch {}: {:.0} samples/s",
            report.train_batch, report.train_samples_per_s
        );
    }
    Ok(())
}
