//! Embedding a trained GloRank model in another program: load a run directory once, share
//! the `Reranker` between threads, rerank requests given as item ids, including a cold item
//! that only has a side-feature vector.
//!
//! `cargo run --release -p glorank-examples --example quickstart` first (it writes
//! `runs/quickstart`), then
//! `cargo run --release -p glorank-examples --example embed_reranker [-- RUN_DIR]`.

use glorank::{RerankHistoryItem, RerankRequest, Reranker};
use std::path::PathBuf;

fn main() -> Result<(), glorank::Error> {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runs/quickstart".into())
        .into();
    let reranker = Reranker::load(&dir)?;
    println!("loaded {reranker:?}; lists of {}", reranker.list_len());

    // In a real system the candidates come from your retriever; here: items of the run.
    let items: Vec<String> = (0..20).map(|i| format!("i{i}")).collect();
    let mut request = RerankRequest::new(items.clone());
    request.history = vec![
        RerankHistoryItem {
            item: "i40".into(),
            labels: 1,
        },
        RerankHistoryItem {
            item: "i41".into(),
            labels: 3,
        },
    ];
    println!("greedy:       {:?}", reranker.rerank(&request)?);

    // A cold item: an id the model never saw, described only by a vector in the tokenizer's
    // input space. Here: the content vector of the run's item `i0`, as the run's tokenizer
    // stage computed it, served under a new id, as a catalogue would add a new release.
    let run = glorank::RunDir::new(&dir);
    let ds = glorank::data::PreparedDataset::load(run.root())?;
    let tokenizer = run.config()?.unwrap_or_default().tokenizer;
    let vectors = glorank::data::item_vectors(&ds, &tokenizer.vector_source(&ds))?;
    let source = ds.item_ids.iter().position(|id| id == "i0").unwrap_or(0);
    let vector = vectors.data[source * vectors.dim..(source + 1) * vectors.dim].to_vec();
    let mut cold = request.clone();
    cold.candidates[0] = "new-release".into();
    cold.candidate_vectors
        .insert("new-release".into(), vector.clone());
    println!("with a cold item: {:?}", reranker.rerank(&cold)?);
    // What the policy sees of it: its codes and the known items that share most of them.
    let seen = reranker.cold_item(&vector, 5)?;
    println!(
        "the cold item gets codes {:?} (`{}` itself has {:?}), sharing {} level(s) with {:?}",
        seen.codes,
        ds.item_ids[source],
        reranker
            .semantic_id(&ds.item_ids[source])
            .unwrap_or_default(),
        seen.shared_levels,
        seen.neighbours
    );

    // An unknown item without a vector is a clear error, not a panic.
    let mut bad = request.clone();
    bad.candidates[1] = "nobody-knows".into();
    println!("error: {}", reranker.rerank(&bad).unwrap_err());

    // One reranker, many threads.
    std::thread::scope(|s| {
        for t in 0..4 {
            let (reranker, request) = (&reranker, &request);
            s.spawn(move || {
                let list = reranker.rerank(request).map(|l| l.len());
                println!("thread {t}: {list:?} items");
            });
        }
    });
    Ok(())
}
