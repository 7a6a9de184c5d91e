//! Exports, for every candidate of a prepared run's requests, the per-candidate signals a
//! ranker could read without modelling the user's taste: the retriever score and its rank,
//! z-score and gap in the pool, whether the item is in the user's whole prior sequence or in
//! the history window the models see, how often it was a non-clicked candidate in the user's
//! training pools ("pool novelty"), its training popularity and the history length, with the
//! logged and click labels. `scripts/pool_learnability.py` fits gradient-boosted trees on
//! them and reports Precision@L: how far such signals go under a protocol (the docs' "ML-1M
//! 'paper' preset: what the pool features allow").
//!
//! `cargo run --release -p glorank-examples --example pool_features -- RUN OUT_DIR [STRIDE]`
//! writes `OUT_DIR/{train,valid,test}.csv`, keeping every `STRIDE`-th training request
//! (default 5) and every validation and test request.

use glorank::data::{PreparedDataset, RerankSample};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: pool_features RUN OUT_DIR [STRIDE]";
    let run: PathBuf = args.next().ok_or(usage)?.into();
    let out: PathBuf = args.next().ok_or(usage)?.into();
    let stride: usize = match args.next() {
        Some(s) => s
            .parse()
            .map_err(|_| format!("STRIDE: expected a positive integer, got {s:?}"))?,
        None => 5,
    };
    if stride == 0 {
        return Err("STRIDE: expected a positive integer, got 0".into());
    }
    let ds = PreparedDataset::load(&run)?;
    std::fs::create_dir_all(&out)?;
    // Non-clicked appearances of each (user, item) among the training requests.
    let mut novelty: HashMap<(u32, u32), u32> = HashMap::new();
    for s in &ds.train {
        for (c, &item) in s.candidates.iter().enumerate() {
            if !s.labels[c].click() {
                *novelty.entry((s.user, item)).or_default() += 1;
            }
        }
    }
    for (name, split, keep) in [
        ("train", &ds.train, stride),
        ("valid", &ds.valid, 1),
        ("test", &ds.test, 1),
    ] {
        let path = out.join(format!("{name}.csv"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(
            w,
            "request,score,rank,zscore,gap,in_prior,in_window,novelty,popularity,history,logged,click"
        )?;
        for (q, s) in split.iter().enumerate().step_by(keep) {
            // A training request's own non-clicked candidates are not evidence about it.
            let own = |c: usize| u32::from(name == "train" && !s.labels[c].click());
            for row in rows(&ds, s, &novelty, own) {
                writeln!(w, "{q},{row}")?;
            }
        }
        w.flush()?;
        println!("{}", path.display());
    }
    Ok(())
}

/// One CSV row (without the request index) per candidate of `s`.
fn rows(
    ds: &PreparedDataset,
    s: &RerankSample,
    novelty: &HashMap<(u32, u32), u32>,
    own: impl Fn(usize) -> u32,
) -> Vec<String> {
    let seq = &ds.sequences[s.user as usize];
    let prior: HashSet<u32> = seq.items[..s.slate_start as usize]
        .iter()
        .copied()
        .collect();
    let window: HashSet<u32> = ds.history(s).items.iter().copied().collect();
    let logged: HashSet<usize> = s.logged.iter().map(|&p| p as usize).collect();
    let scores = ds.retriever_scores(s);
    let n = scores.len() as f32;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut rank = vec![0; scores.len()];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r;
    }
    let mean = scores.iter().sum::<f32>() / n;
    let sd = (scores.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n)
        .sqrt()
        .max(1e-6);
    let max = scores.iter().copied().fold(f32::MIN, f32::max);
    s.candidates
        .iter()
        .enumerate()
        .map(|(c, &item)| {
            let seen = novelty.get(&(s.user, item)).copied().unwrap_or(0) - own(c);
            format!(
                "{},{},{},{},{},{},{},{},{},{},{}",
                scores[c],
                rank[c],
                (scores[c] - mean) / sd,
                max - scores[c],
                u8::from(prior.contains(&item)),
                u8::from(window.contains(&item)),
                seen,
                ds.item_train_counts[item as usize],
                s.slate_start,
                u8::from(logged.contains(&c)),
                u8::from(s.labels[c].click()),
            )
        })
        .collect()
}
