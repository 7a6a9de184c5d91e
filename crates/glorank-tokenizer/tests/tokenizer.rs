//! Tokenizer tests: uniqueness and round trips, determinism, save/load, planted clusters,
//! configuration and input errors.

use glorank_tokenizer::{
    Device, ItemTokenizer, RqKMeans, RqKMeansConfig, RqVae, RqVaeConfig, SemanticIds,
    TokenizerError, load_artifacts, save_artifacts,
};
use proptest::prelude::*;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// `clusters` well-separated Gaussian blobs of `per` points in `dim` dimensions; returns the
/// vectors and each point's blob.
fn planted(clusters: usize, per: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centers: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| rng.random_range(-10.0f32..10.0)).collect())
        .collect();
    let mut data = Vec::new();
    let mut label = Vec::new();
    for p in 0..clusters * per {
        let c = p % clusters;
        for &x in &centers[c] {
            data.push(x + rng.random_range(-0.3f32..0.3));
        }
        label.push(c);
    }
    (data, label)
}

/// Purity of a clustering: the fraction of points in the majority true class of their cluster.
fn purity(pred: &[u32], truth: &[usize], k: usize, classes: usize) -> f64 {
    let mut table = vec![vec![0usize; classes]; k];
    for (&p, &t) in pred.iter().zip(truth) {
        table[p as usize][t] += 1;
    }
    table
        .iter()
        .map(|row| *row.iter().max().unwrap())
        .sum::<usize>() as f64
        / pred.len() as f64
}

fn small_vae(codes: usize, levels: usize) -> RqVaeConfig {
    RqVaeConfig::new(levels, codes)
        .with_shape(8, vec![16])
        .with_epochs(100, 20)
        .with_batch_size(64)
        .with_learning_rate(3e-3)
        .with_dead_code_steps(Some(20))
        .with_seed(5)
}

fn check_table(ids: &SemanticIds, n: usize) {
    assert_eq!(ids.len(), n);
    let vocab = ids.vocab_sizes();
    let mut seen = std::collections::HashSet::new();
    for i in 0..n {
        let t = ids.tuple(i).unwrap();
        assert_eq!(t.len(), vocab.len());
        assert!(t.iter().zip(&vocab).all(|(&tok, &v)| (tok as usize) < v));
        assert!(seen.insert(t.to_vec()), "item {i} repeats a tuple");
        assert_eq!(ids.item(t), Some(i));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn every_item_gets_a_unique_round_tripping_tuple(
        n in 8usize..60,
        dim in 1usize..5,
        seed in any::<u64>(),
        dup in 0usize..4,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut data: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        // Force exact duplicates so the dedupe level is exercised.
        for d in 0..dup.min(n - 1) {
            let row: Vec<f32> = data[..dim].to_vec();
            data[(d + 1) * dim..(d + 2) * dim].copy_from_slice(&row);
        }
        let mut tok = RqKMeans::new(RqKMeansConfig::new(2, 4).with_seed(seed)).unwrap();
        let ids = tok.fit(&data, dim).unwrap();
        check_table(&ids, n);
        // Encoding the fitted vectors gives each item's code prefix.
        let codes = tok.encode(&data, dim).unwrap();
        for (i, c) in codes.iter().enumerate() {
            prop_assert_eq!(&ids.tuple(i).unwrap()[..2], &c[..]);
        }
    }
}

#[test]
fn rqkmeans_level_one_recovers_planted_clusters() {
    let (data, truth) = planted(8, 40, 6, 11);
    let mut tok = RqKMeans::new(RqKMeansConfig::new(2, 8).with_seed(2)).unwrap();
    let ids = tok.fit(&data, 6).unwrap();
    let level1: Vec<u32> = (0..ids.len()).map(|i| ids.tuple(i).unwrap()[0]).collect();
    // Blobs are 20 units apart with noise of 0.3: k-means++ with Lloyd steps separates them
    // essentially always; 0.95 leaves room for one merged pair of small blobs being split.
    let p = purity(&level1, &truth, 8, 8);
    assert!(p >= 0.95, "purity {p}");
    let stats = tok.stats().unwrap();
    assert!(stats.reconstruction_error < stats.mean_squared_norm * 0.01);
}

#[test]
fn rqvae_uses_most_codes_at_level_one() {
    let (data, truth) = planted(16, 30, 8, 3);
    let mut tok = RqVae::new(small_vae(16, 2)).unwrap();
    let ids = tok.fit(&data, 8).unwrap();
    check_table(&ids, data.len() / 8);
    let stats = tok.stats().unwrap().clone();
    assert!(stats.usage_per_level[0] >= 0.9, "{}", stats.table());
    let level1: Vec<u32> = (0..ids.len()).map(|i| ids.tuple(i).unwrap()[0]).collect();
    assert!(purity(&level1, &truth, 16, 16) >= 0.8, "{}", stats.table());
    assert!(stats.iterations >= 1 && stats.fit_seconds > 0.0);
}

#[test]
fn same_seed_same_table() {
    let (data, _) = planted(6, 20, 5, 9);
    let fit_km = || {
        RqKMeans::new(RqKMeansConfig::new(3, 4).with_seed(7))
            .unwrap()
            .fit(&data, 5)
            .unwrap()
    };
    assert_eq!(fit_km(), fit_km());
    let fit_vae = || {
        let cfg = small_vae(4, 2).with_epochs(3, 3);
        RqVae::new(cfg).unwrap().fit(&data, 5).unwrap()
    };
    assert_eq!(fit_vae(), fit_vae());
}

#[test]
fn save_load_round_trip_gives_identical_encodings() {
    let (data, _) = planted(5, 20, 4, 4);
    let probe: Vec<f32> = data[..40].iter().map(|x| x + 0.05).collect();
    let dir = tempfile::tempdir().unwrap();
    let tokenizers: Vec<Box<dyn ItemTokenizer>> = vec![
        Box::new(RqKMeans::new(RqKMeansConfig::new(2, 4).with_seed(1)).unwrap()),
        Box::new(RqVae::new(small_vae(4, 2).with_epochs(4, 4)).unwrap()),
    ];
    for (k, mut tok) in tokenizers.into_iter().enumerate() {
        let path = dir.path().join(format!("t{k}"));
        let ids = tok.fit(&data, 4).unwrap();
        save_artifacts(tok.as_ref(), &ids, &path).unwrap();
        let (loaded, loaded_ids) = load_artifacts(&path, Device::flex()).unwrap();
        assert_eq!(loaded_ids, ids);
        assert_eq!(
            loaded.encode(&probe, 4).unwrap(),
            tok.encode(&probe, 4).unwrap()
        );
        assert_eq!(loaded.stats(), tok.stats());
        assert!(path.join("stats.json").exists());
    }
}

#[test]
fn loading_a_table_of_another_config_is_a_clear_error() {
    let (data, _) = planted(4, 10, 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut a = RqKMeans::new(RqKMeansConfig::new(2, 4)).unwrap();
    let ids_a = a.fit(&data, 3).unwrap();
    let mut b = RqKMeans::new(RqKMeansConfig::new(2, 8)).unwrap();
    let ids_b = b.fit(&data, 3).unwrap();
    save_artifacts(&a, &ids_a, dir.path()).unwrap();
    ids_b.save(&dir.path().join("semantic_ids.json")).unwrap();
    let err = load_artifacts(dir.path(), Device::flex()).err().unwrap();
    assert!(
        matches!(err, TokenizerError::ConfigMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("semantic_ids.json"));
    // A corrupted table names the file.
    std::fs::write(dir.path().join("semantic_ids.json"), "{not json").unwrap();
    let err = load_artifacts(dir.path(), Device::flex()).err().unwrap();
    assert!(err.to_string().contains("semantic_ids.json"), "{err}");
}

#[test]
fn a_damaged_codebook_is_refused_when_loaded_not_when_first_used() {
    let (data, _) = planted(4, 10, 3, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut tok = RqKMeans::new(RqKMeansConfig::new(2, 4)).unwrap();
    let ids = tok.fit(&data, 3).unwrap();
    save_artifacts(&tok, &ids, dir.path()).unwrap();
    let path = dir.path().join("tokenizer.json");
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // Find the first codebook (an array of arrays of numbers) and drop one value.
    fn shorten(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(o) => o.values_mut().any(shorten),
            serde_json::Value::Array(a) if a.first().is_some_and(|x| x.is_array()) => {
                a[0].as_array_mut().map(|b| b.pop()).is_some()
            }
            _ => false,
        }
    }
    assert!(shorten(&mut saved), "no codebook in {saved}");
    std::fs::write(&path, serde_json::to_vec(&saved).unwrap()).unwrap();
    let err = glorank_tokenizer::load_tokenizer(dir.path(), Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("codebook of level 0"),
        "{err}"
    );
}

#[test]
fn cold_start_item_gets_a_fresh_tuple() {
    let (data, _) = planted(4, 10, 3, 8);
    let mut tok = RqKMeans::new(RqKMeansConfig::new(2, 4)).unwrap();
    let mut ids = tok.fit(&data, 3).unwrap();
    // A copy of item 0 shares its codes but gets a new dedupe token.
    let codes = tok.encode(&data[..3], 3).unwrap();
    let new = ids.add_item(&codes[0]).unwrap();
    assert_eq!(new, 40);
    assert_eq!(&ids.tuple(new).unwrap()[..2], &ids.tuple(0).unwrap()[..2]);
    assert_ne!(ids.tuple(new), ids.tuple(0));
    assert_eq!(ids.item(ids.tuple(new).unwrap()), Some(new));
}

#[test]
fn configuration_and_input_errors() {
    let bad = |r: Result<RqKMeans, TokenizerError>, field: &str| match r {
        Err(TokenizerError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected a config error on {field}, got {other:?}"),
    };
    bad(RqKMeans::new(RqKMeansConfig::new(2, 1)), "codes_per_level");
    bad(RqKMeans::new(RqKMeansConfig::new(0, 4)), "codes_per_level");
    let mut cfg = RqVaeConfig::new(2, 4);
    cfg.beta = 0.0;
    assert!(
        matches!(RqVae::new(cfg), Err(TokenizerError::InvalidConfig { field, .. }) if field == "beta")
    );
    let cfg = RqVaeConfig::new(2, 4).with_shape(0, vec![8]);
    assert!(RqVae::new(cfg).is_err());

    let mut tok = RqKMeans::new(RqKMeansConfig::new(2, 16)).unwrap();
    let err = tok.fit(&[0.0; 10 * 2], 2).unwrap_err();
    assert!(err.to_string().contains("lower K"), "{err}");
    assert!(tok.fit(&[], 2).is_err());
    assert!(tok.fit(&[1.0; 5], 2).is_err());
    let mut data = vec![0.5f32; 40 * 2];
    data[2 * 7 + 1] = f32::NAN;
    let err = tok.fit(&data, 2).unwrap_err();
    assert!(err.to_string().contains("row 7"), "{err}");
    assert!(matches!(
        tok.encode(&[0.0, 0.0], 2),
        Err(TokenizerError::NotFitted)
    ));

    let mut vae = RqVae::new(small_vae(4, 1)).unwrap();
    data[2 * 7 + 1] = f32::INFINITY;
    assert!(vae.fit(&data, 2).unwrap_err().to_string().contains("row 7"));
    data[2 * 7 + 1] = 0.1;
    vae.fit(&data, 2).unwrap();
    assert!(vae.encode(&[0.0; 3], 3).is_err());
}
