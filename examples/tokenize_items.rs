//! Fit both tokenizers on item vectors, print IDs and statistics, encode a new item.
//!
//! ```sh
//! cargo run --release -p glorank-examples --example tokenize_items
//! # fit-time benchmark: 100,000 items of dimension 64, 3 x 256 codes
//! cargo run --release -p glorank-examples --example tokenize_items -- 100000 64 256
//! ```
//!
//! Arguments (all optional): items (default 2,000), dimension (32), codes per level (64).
//! The vectors are a seeded mixture of Gaussians (one component per 100 items), the kind of
//! clustered structure real item embeddings have.

use glorank_tokenizer::{ItemTokenizer, RqKMeans, RqKMeansConfig, RqVae, RqVaeConfig};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let items = args.first().copied().unwrap_or(2000);
    let dim = args.get(1).copied().unwrap_or(32);
    let codes = args.get(2).copied().unwrap_or(64);

    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let components = (items / 100).max(2);
    let centers: Vec<f32> = (0..components * dim)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let mut vectors = Vec::with_capacity(items * dim);
    for _ in 0..items {
        let c = rng.random_range(0..components);
        for j in 0..dim {
            let noise: f32 = StandardNormal.sample(&mut rng);
            vectors.push(centers[c * dim + j] + 0.3 * noise);
        }
    }
    println!("{items} items, dimension {dim}, 3 levels x {codes} codes");

    let tokenizers: Vec<(&str, Box<dyn ItemTokenizer>)> = vec![
        (
            "rq-kmeans",
            Box::new(RqKMeans::new(RqKMeansConfig::new(3, codes).with_seed(1))?),
        ),
        (
            "rq-vae",
            Box::new(RqVae::new(RqVaeConfig::new(3, codes).with_seed(1))?),
        ),
    ];
    for (name, mut tokenizer) in tokenizers {
        let start = Instant::now();
        let mut ids = tokenizer.fit(&vectors, dim)?;
        let secs = start.elapsed().as_secs_f64();
        println!("\n== {name}: fit in {secs:.2} s");
        if let Some(stats) = tokenizer.stats() {
            println!("{}", stats.table());
        }
        for item in 0..3 {
            println!("item {item} -> {:?}", ids.tuple(item).unwrap_or(&[]));
        }
        // A cold-start item: a new vector close to item 0.
        let new: Vec<f32> = vectors[..dim].iter().map(|x| x + 0.01).collect();
        let codes = tokenizer.encode(&new, dim)?;
        let item = ids.add_item(&codes[0])?;
        println!(
            "new item -> codes {:?}, id {item}, tuple {:?}",
            codes[0],
            ids.tuple(item).unwrap_or(&[])
        );
    }
    Ok(())
}
