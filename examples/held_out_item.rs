//! Serving a held-out (cold) item from its content vector alone, on a run of the
//! held-out-items protocol: the semantic ID the item was given, its nearest warm items, and
//! the lists with the item known by id and served as a brand-new id with only its vector.
//! It also writes the request as one JSON line for `glorank rerank`.
//!
//! `glorank run --config configs/ml-100k-held-out.toml --data-path DATA --out RUN` first, then
//! `cargo run --release -p glorank-examples --example held_out_item -- RUN [REQUEST.json]`.

use glorank::{RerankRequest, Reranker, RunDir};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir: PathBuf = args
        .next()
        .ok_or("usage: held_out_item RUN [REQUEST.json]")?
        .into();
    let out: PathBuf = args
        .next()
        .unwrap_or_else(|| "held_out_request.json".into())
        .into();
    let run = RunDir::new(&dir);
    let ds = glorank::data::PreparedDataset::load(run.root())?;
    if ds.held_out.is_empty() {
        return Err(format!(
            "{}: not a held-out-items run (set [data] held_out_share)",
            dir.display()
        )
        .into());
    }
    let reranker = Reranker::load(&dir)?;
    let tokenizer = run.config()?.unwrap_or_default().tokenizer;
    let vectors = glorank::data::item_vectors(&ds, &tokenizer.vector_source(&ds))?;
    let title = |i: usize| {
        ds.item_features
            .as_ref()
            .map_or(String::new(), |f| f.titles[i].clone())
    };

    // The first test request whose logged slate holds a held-out item.
    let (sample, pos) = ds
        .test
        .iter()
        .find_map(|s| {
            s.logged
                .iter()
                .map(|&p| p as usize)
                .find(|&p| ds.is_held_out(s.candidates[p]))
                .map(|p| (s, p))
        })
        .ok_or("no test slate holds a held-out item")?;
    let item = sample.candidates[pos] as usize;
    let id = &ds.item_ids[item];
    println!(
        "held-out item `{id}` ({}), {} of {} items held out; user `{}`",
        title(item),
        ds.held_out.len(),
        ds.num_items(),
        ds.user_ids[sample.user as usize]
    );
    println!(
        "  its semantic ID in the run's table: {:?}",
        reranker.semantic_id(id).unwrap_or_default()
    );

    // Served as a brand-new id, with nothing but its content vector.
    let vector = vectors.row(item).to_vec();
    let seen = reranker.cold_item(&vector, 5)?;
    // Its nearest warm items: those whose semantic IDs share the longest prefix with its
    // codes (the held-out items themselves are in the run's table too, so they are skipped).
    let shared = |i: usize| {
        reranker
            .semantic_id(&ds.item_ids[i])
            .unwrap_or_default()
            .iter()
            .zip(&seen.codes)
            .take_while(|(a, b)| a == b)
            .count()
    };
    let warm: Vec<usize> = (0..ds.num_items())
        .filter(|&i| !ds.is_held_out(i as u32))
        .collect();
    let best = warm.iter().map(|&i| shared(i)).max().unwrap_or(0);
    let nearest: Vec<String> = warm
        .iter()
        .filter(|&&i| shared(i) == best)
        .take(5)
        .map(|&i| format!("`{}` ({})", ds.item_ids[i], title(i)))
        .collect();
    println!(
        "  from its vector alone it gets codes {:?}; nearest warm items (sharing {best} of {} \
         levels): {}",
        seen.codes,
        seen.codes.len(),
        nearest.join(", ")
    );

    let known = RerankRequest::from_sample(&ds, sample);
    let mut cold = known.clone();
    cold.candidates[pos] = "new-release".into();
    cold.candidate_vectors.insert("new-release".into(), vector);
    println!(
        "  list, item known by id:      {:?}",
        reranker.rerank(&known)?
    );
    println!(
        "  list, item as `new-release`: {:?}",
        reranker.rerank(&cold)?
    );

    std::fs::write(&out, format!("{}\n", serde_json::to_string(&cold)?))?;
    println!(
        "wrote {}; serve it with: glorank rerank --model {} < {}",
        out.display(),
        dir.display(),
        out.display()
    );
    Ok(())
}
