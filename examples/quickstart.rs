//! Quickstart: the whole GloRank pipeline on a tiny synthetic world (about a minute in a
//! release build), then serving the trained policy.
//!
//! `cargo run --release -p glorank-examples --example quickstart [-- RUN_DIR]`

use glorank::{Config, Hooks, NoObserver, NoProgress, Pipeline, RerankRequest, Reranker};
use std::path::PathBuf;

fn main() -> Result<(), glorank::Error> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runs/quickstart".into())
        .into();
    // Every section is optional; this one shrinks the world, the models and the training.
    let config = Config::from_toml(
        r#"
        [data]
        users = 300
        items = 200
        sessions = 8
        k_core = 5
        history = 12
        pool_size = 20
        retriever_factors = 2
        [tokenizer]
        levels = 2
        codes = 16
        [policy]
        d_model = 32
        layers = 1
        [evaluator]
        epochs = 2
        [simulator]
        epochs = 2
        d_model = 32
        layers = 1
        [sft]
        epochs = 6
        [sft.optim]
        batch_size = 32
        learning_rate = 0.003
        [rl]
        steps = 30
        eval_every = 10
        [rl.optim]
        learning_rate = 0.001
        [baselines]
        d_model = 32
        epochs = 3
        "#,
        "quickstart.toml".as_ref(),
    )?;
    let mut say = |stage: &str| eprintln!("{stage}");
    let mut observer = NoObserver;
    let mut hooks = Hooks::new(&mut observer, &NoProgress, &mut say);
    let report = Pipeline::new(config).run_with(&dir, &mut hooks)?;
    println!("{}", report.table);

    // Serve: rerank the candidates of the first test request by item id.
    let reranker = Reranker::load(&dir)?;
    let predictions = glorank::evaluation::Predictions::read(&dir)?;
    let first = predictions.lines().first();
    let candidates = first.map(|p| p.candidates.clone()).unwrap_or_default();
    let mut request = RerankRequest::new(candidates);
    request.user = first.map(|p| p.user.clone());
    println!(
        "reranked list for {:?}: {:?}",
        request.user,
        reranker.rerank(&request)?
    );
    Ok(())
}
