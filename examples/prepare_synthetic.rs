//! Prepare the synthetic world and score two simple rerankers on its test requests.
//!
//! Run with `cargo run --release -p glorank-examples --example prepare_synthetic`.
//! It compares the stage-1 retriever order with the oracle (positives first), using the true
//! click model of the world for the oracle's expected clicks.

use glorank_data::{NoProgress, ProtocolConfig, SyntheticConfig, SyntheticWorld, prepare};
use glorank_metrics::{ListMetrics, MetricAccumulator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let world_cfg = SyntheticConfig::small(500, 400);
    let world = SyntheticWorld::new(&world_cfg)?;
    let ds = prepare(world.log(), &ProtocolConfig::default(), &NoProgress)?;
    println!(
        "{} users, {} items, {} train / {} valid / {} test requests",
        ds.num_users(),
        ds.num_items(),
        ds.train.len(),
        ds.valid.len(),
        ds.test.len()
    );
    let l = ds.config.slate_len;
    let mut retriever = MetricAccumulator::new();
    let mut oracle = MetricAccumulator::new();
    let (mut clicks_retriever, mut clicks_oracle) = (0.0, 0.0);
    for s in &ds.test {
        let rel = s.click_relevance();
        // Retriever order: candidates by MF score.
        let scores = ds.retriever_scores(s);
        let mut by_score: Vec<usize> = (0..s.candidates.len()).collect();
        by_score.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        // Oracle: positives first.
        let mut by_label: Vec<usize> = (0..s.candidates.len()).collect();
        by_label.sort_by(|&a, &b| rel[b].total_cmp(&rel[a]));
        retriever.push(ListMetrics::compute(&by_score[..l], &rel, l)?);
        oracle.push(ListMetrics::compute(&by_label[..l], &rel, l)?);
        // True expected clicks in the world (ids map back to world indices).
        let user = SyntheticWorld::user_index(&ds.user_ids[s.user as usize]).unwrap_or(0);
        let world_items = |order: &[usize]| -> Vec<usize> {
            order[..l]
                .iter()
                .filter_map(|&p| SyntheticWorld::item_index(&ds.item_ids[s.candidates[p] as usize]))
                .collect()
        };
        clicks_retriever += world.expected_clicks(user, &world_items(&by_score));
        clicks_oracle += world.expected_clicks(user, &world_items(&by_label));
    }
    let n = ds.test.len() as f64;
    for (name, acc, clicks) in [
        ("retriever order", &retriever, clicks_retriever / n),
        ("oracle", &oracle, clicks_oracle / n),
    ] {
        let s = acc.summary()?;
        println!(
            "{name:<16} Precision@{l} {}  NDCG@{l} {}  expected clicks {clicks:.3}",
            s.precision, s.ndcg
        );
    }
    Ok(())
}
