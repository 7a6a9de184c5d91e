//! How much each method's lists crowd into one semantic-ID cluster: over the lists of a
//! run's `predictions.jsonl`, the mean number of item pairs (of `L (L - 1) / 2`) that share
//! their first-level token, and the mean number of distinct first-level tokens per list.
//! Greedy token-by-token decoding picks the first token with the most probability mass,
//! not the first token of the most probable item, and its lists crowd (docs/benchmarks.md,
//! "Greedy tokens crowd the list").
//!
//! `cargo run --release -p glorank-examples --example list_crowding -- RUN`, for a run
//! directory holding `dataset.bin`, `semantic_ids.json` and `predictions.jsonl`.

use glorank::data::PreparedDataset;
use glorank::tokenizer::{IDS_FILE, SemanticIds};
use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: list_crowding RUN")?
        .into();
    let ds = PreparedDataset::load(&run)?;
    let ids = SemanticIds::load(&run.join(IDS_FILE))?;
    let index = ds.item_index();
    // method -> (lists, same-token pairs, distinct tokens), in first-seen order.
    let mut order = Vec::new();
    let mut sums: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let path = run.join("predictions.jsonl");
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let bad = |what: &str| format!("{}:{}: {what}", path.display(), n + 1);
        let row: serde_json::Value =
            serde_json::from_str(&line?).map_err(|e| bad(&e.to_string()))?;
        let method = row["method"].as_str().ok_or_else(|| bad("no \"method\""))?;
        let list = row["list"].as_array().ok_or_else(|| bad("no \"list\""))?;
        let mut first = Vec::with_capacity(list.len());
        for item in list {
            let id = item
                .as_str()
                .ok_or_else(|| bad("a list item is not a string"))?;
            let i = *index
                .get(id)
                .ok_or_else(|| bad(&format!("unknown item {id:?}")))?;
            let tuple = ids
                .tuple(i)
                .ok_or_else(|| bad(&format!("no semantic ID for {id:?}")))?;
            first.push(tuple[0]);
        }
        let pairs = (0..first.len())
            .flat_map(|a| (a + 1..first.len()).map(move |b| (a, b)))
            .filter(|&(a, b)| first[a] == first[b])
            .count();
        let distinct = first.iter().collect::<HashSet<_>>().len();
        if !sums.contains_key(method) {
            order.push(method.to_string());
        }
        let s = sums.entry(method.to_string()).or_default();
        *s = (s.0 + 1, s.1 + pairs, s.2 + distinct);
    }
    println!("| method | same-first-token pairs per list | distinct first tokens per list |");
    println!("|---|---|---|");
    for m in &order {
        let (lists, pairs, distinct) = sums[m];
        let k = lists.max(1) as f64;
        println!(
            "| {m} | {:.2} | {:.2} |",
            pairs as f64 / k,
            distinct as f64 / k
        );
    }
    Ok(())
}
