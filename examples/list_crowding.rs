//! How much each method's lists crowd into one semantic-ID cluster: over the lists of a
//! run's `predictions.jsonl`, the mean number of item pairs (of `L (L - 1) / 2`) that share
//! their first-level token, and the mean number of distinct first-level tokens per list.
//! Greedy token-by-token decoding picks the first token with the most probability mass,
//! not the first token of the most probable item, and its lists crowd (docs/notebook/2026-12-01-greedy-tokens-crowd-the-list.md,
//! "Greedy tokens crowd the list").
//!
//! On a synthetic run it also splits each method's true expected clicks by where they are
//! lost, under the world's own click model: the mean true relevance logit of the chosen items
//! (which items), their mean redundancy (highest cosine to an item above, the quantity the
//! click model penalises), and the true clicks of the same items in the best order the
//! search finds (so the gap to it is what the order costs).
//!
//! `cargo run --release -p glorank-examples --example list_crowding -- RUN`, for a run
//! directory holding `dataset.bin`, `semantic_ids.json` and `predictions.jsonl`. With two
//! method names after RUN (`-- RUN "GloRank SFT" Seq2Slate`), it also prints the paired
//! difference of their true clicks over the requests both listed, with its 95% interval:
//! tighter than comparing the two rows' own intervals, because both lists face the same
//! user and pool.

use glorank::data::{PreparedDataset, SyntheticWorld};
use glorank::evaluation::{PerRequest, Predictions, paired_difference};
use glorank::tokenizer::{IDS_FILE, SemanticIds};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (run, pair): (PathBuf, Option<(&str, &str)>) = match args.as_slice() {
        [run] => (run.into(), None),
        [run, a, b] => (run.into(), Some((a.as_str(), b.as_str()))),
        _ => return Err("usage: list_crowding RUN [METHOD_A METHOD_B]".into()),
    };
    let ds = PreparedDataset::load(&run)?;
    let ids = SemanticIds::load(&run.join(IDS_FILE))?;
    let index = ds.item_index();
    // method -> (lists, same-token pairs, distinct tokens), in first-seen order.
    let mut order = Vec::new();
    let mut sums: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let world = ds.synthetic.as_ref().map(SyntheticWorld::new).transpose()?;
    // method -> (relevance logit, redundancy, true clicks, true clicks in the best order).
    let mut truth: BTreeMap<String, [f64; 4]> = BTreeMap::new();
    // method -> each request's true clicks (with its candidates), for the paired comparison.
    let mut per_request: BTreeMap<String, PerRequest> = BTreeMap::new();
    let predictions = Predictions::read(&run)?;
    for row in predictions.lines() {
        let bad = |what: &str| format!("{}: {what}", predictions.path().display());
        let (method, list) = (row.method.as_str(), &row.list);
        let mut first = Vec::with_capacity(list.len());
        let mut world_items = Vec::with_capacity(list.len());
        for id in list {
            world_items.extend(SyntheticWorld::item_index(id));
            let i = *index
                .get(id.as_str())
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
        let user = SyntheticWorld::user_index(&row.user);
        if let (Some(w), Some(u)) = (&world, user)
            && world_items.len() == list.len()
        {
            let k = world_items.len().max(1) as f64;
            let relevance: f64 = world_items.iter().map(|&i| w.relevance_logit(u, i)).sum();
            let redundancy: f64 = (1..world_items.len())
                .map(|k| {
                    world_items[..k]
                        .iter()
                        .map(|&j| w.similarity(world_items[k], j).max(0.0))
                        .fold(0.0, f64::max)
                })
                .sum();
            let best: Vec<usize> = w
                .best_list(u, &world_items, world_items.len())
                .into_iter()
                .map(|p| world_items[p])
                .collect();
            let t = truth.entry(method.to_string()).or_default();
            t[0] += relevance / k;
            t[1] += redundancy / (k - 1.0).max(1.0);
            let clicks = w.expected_clicks(u, &world_items);
            t[2] += clicks;
            per_request
                .entry(method.to_string())
                .or_insert_with(|| PerRequest {
                    method: method.to_string(),
                    values: BTreeMap::new(),
                })
                .values
                .insert(row.request, (clicks, row.candidates.clone()));
            t[3] += w.expected_clicks(u, &best);
        }
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
    if truth.is_empty() {
        return Ok(());
    }
    println!();
    println!(
        "| method | true relevance logit per item | redundancy per slot below the first | true clicks | same items, best order |"
    );
    println!("|---|---|---|---|---|");
    for m in &order {
        if let Some(t) = truth.get(m) {
            let k = sums[m].0.max(1) as f64;
            println!(
                "| {m} | {:.3} | {:.3} | {:.3} | {:.3} |",
                t[0] / k,
                t[1] / k,
                t[2] / k,
                t[3] / k
            );
        }
    }
    if let Some((a, b)) = pair {
        let side = |m: &str| {
            per_request.get(m).cloned().unwrap_or_else(|| PerRequest {
                method: m.to_string(),
                values: BTreeMap::new(),
            })
        };
        let d = paired_difference(&side(a), &side(b))?;
        println!();
        println!(
            "true clicks, {a} minus {b}, paired over {} requests: {:.4} (95% interval {:.4} to {:.4})",
            d.n, d.mean, d.ci_low, d.ci_high
        );
    }
    Ok(())
}
