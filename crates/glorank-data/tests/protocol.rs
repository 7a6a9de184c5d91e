//! End-to-end protocol tests: pools, splits, labels, determinism, save/load, item vectors.

use glorank_data::{
    DataError, DatasetSource, Interaction, ItemVectorSource, NoProgress, PreparedDataset,
    ProtocolConfig, RawDataset, SyntheticConfig, SyntheticWorld, item_vectors, prepare,
};
use proptest::prelude::*;
use std::collections::HashSet;

fn small_config() -> ProtocolConfig {
    ProtocolConfig::default()
        .with_k_core(5)
        .with_shape(6, 20, 30)
        .with_seed(3)
}

fn synthetic() -> PreparedDataset {
    DatasetSource::Synthetic(SyntheticConfig::small(80, 200).with_sessions(5))
        .prepare(&small_config(), &NoProgress)
        .unwrap()
}

/// Checks every protocol invariant of a prepared dataset.
fn check_invariants(ds: &PreparedDataset) {
    let cfg = &ds.config;
    let l = cfg.slate_len;
    for s in ds.train.iter().chain(&ds.valid).chain(&ds.test) {
        let seq = &ds.sequences[s.user as usize];
        let start = s.slate_start as usize;
        let slate = &seq.items[start..start + l];
        // N distinct candidates, containing the slate, and no history item.
        assert_eq!(s.candidates.len(), cfg.pool_size);
        let set: HashSet<u32> = s.candidates.iter().copied().collect();
        assert_eq!(set.len(), cfg.pool_size);
        let history = ds.history(s).items;
        assert!(history.len() <= cfg.history_len);
        assert!(history.iter().all(|i| !set.contains(i)));
        // `logged` points at the slate in exposure order; only logged items carry labels.
        let logged: Vec<u32> = s.logged.iter().map(|&p| s.candidates[p as usize]).collect();
        assert_eq!(logged, slate);
        for (p, lab) in s.labels.iter().enumerate() {
            if !s.logged.contains(&(p as u16)) {
                assert_eq!(lab.0, 0);
            }
        }
        // Demonstration: the logged positions, ratings non-increasing.
        let demo = ds.demonstration(s);
        let mut sorted = demo.clone();
        sorted.sort_unstable();
        let mut logged_pos: Vec<usize> = s.logged.iter().map(|&p| p as usize).collect();
        logged_pos.sort_unstable();
        assert_eq!(sorted, logged_pos);
    }
    // One test and at most one validation slate per user, and the test slate is the latest.
    let test_users: HashSet<u32> = ds.test.iter().map(|s| s.user).collect();
    assert_eq!(test_users.len(), ds.test.len());
    for s in &ds.test {
        assert_eq!(
            s.slate_start as usize + l,
            ds.sequences[s.user as usize].items.len()
        );
    }
}

#[test]
fn synthetic_protocol_invariants() {
    let ds = synthetic();
    assert!(!ds.train.is_empty() && !ds.valid.is_empty() && !ds.test.is_empty());
    check_invariants(&ds);
    assert_eq!(ds.stats.test_slates, ds.test.len());
    assert!(ds.stats.retriever_recall.is_some());
    assert!(ds.synthetic.is_some());
    // Shuffled: the logged items do not always sit in the first L positions.
    assert!(ds.test.iter().any(|s| s.logged.iter().any(|&p| p >= 6)));
}

#[test]
fn paper_options_pools_with_history_and_a_user_id_feature() {
    let config = small_config()
        .with_pool_excluding_history(false)
        .with_user_id_feature(true);
    let ds = DatasetSource::Synthetic(SyntheticConfig::small(80, 200).with_sessions(5))
        .prepare(&config, &NoProgress)
        .unwrap();
    // The user id is the last user feature: category u + 1 for user u, named by its id.
    let fields = &ds.user_features.as_ref().unwrap().fields;
    let id = fields.last().unwrap();
    assert_eq!(id.name, glorank_data::USER_ID_FIELD);
    assert_eq!(id.vocabulary.len(), ds.user_ids.len() + 1);
    for (u, &v) in id.values.iter().enumerate() {
        assert_eq!(v as usize, u + 1);
        assert_eq!(id.vocabulary[u + 1], ds.user_ids[u]);
    }
    // Pools still hold the slate once and N distinct items, but history items may now be
    // retrieved negatives; with these sizes some are.
    let mut history_in_pool = 0;
    for s in ds.train.iter().chain(&ds.valid).chain(&ds.test) {
        let set: HashSet<u32> = s.candidates.iter().copied().collect();
        assert_eq!(set.len(), config.pool_size);
        let logged: HashSet<u32> = s.logged.iter().map(|&p| s.candidates[p as usize]).collect();
        assert_eq!(logged.len(), config.slate_len);
        history_in_pool += ds
            .history(s)
            .items
            .iter()
            .filter(|i| set.contains(i) && !logged.contains(i))
            .count();
    }
    assert!(history_in_pool > 0);
    // The default protocol keeps excluding them (check_invariants) and adds no user id.
    let plain = synthetic();
    check_invariants(&plain);
    assert!(plain.user_features.as_ref().is_none_or(|u| {
        u.fields
            .iter()
            .all(|f| f.name != glorank_data::USER_ID_FIELD)
    }));
}

#[test]
fn held_out_items_appear_only_in_test_requests_both_logged_and_retrieved() {
    let config = small_config().with_held_out_share(0.1);
    let prep = || {
        DatasetSource::Synthetic(SyntheticConfig::small(120, 200).with_sessions(6))
            .prepare(&config, &NoProgress)
            .unwrap()
    };
    let ds = prep();
    check_invariants(&ds);
    let held: HashSet<u32> = ds.held_out.iter().copied().collect();
    assert_eq!(held.len(), (0.1 * ds.num_items() as f64).round() as usize);
    assert_eq!(ds.stats.held_out_items, held.len());
    assert!(ds.stats.held_out_interactions > 0);
    // Not in any train or validation request, nor in any history, nor in the retriever's
    // data; every held-out item is in some test slate.
    for s in ds.train.iter().chain(&ds.valid) {
        assert!(s.candidates.iter().all(|i| !held.contains(i)));
    }
    for s in ds.train.iter().chain(&ds.valid).chain(&ds.test) {
        assert!(ds.history(s).items.iter().all(|i| !held.contains(i)));
    }
    for &i in &ds.held_out {
        assert_eq!(ds.item_train_counts[i as usize], 0);
    }
    let mut logged_cold = 0;
    let mut retrieved_cold = 0;
    for s in &ds.test {
        for (p, &i) in s.candidates.iter().enumerate() {
            if held.contains(&i) {
                if s.logged.contains(&(p as u16)) {
                    logged_cold += 1;
                } else {
                    retrieved_cold += 1;
                }
            }
        }
    }
    let in_test_slates: HashSet<u32> = ds
        .test
        .iter()
        .flat_map(|s| s.logged.iter().map(|&p| s.candidates[p as usize]))
        .collect();
    assert!(held.is_subset(&in_test_slates));
    assert!(
        logged_cold > 0 && retrieved_cold > 0,
        "{logged_cold} {retrieved_cold}"
    );
    // Held-out items get content-predicted retriever factors, not their initial draw.
    assert!(
        ds.held_out
            .iter()
            .all(|&i| ds.retriever.item(i as usize).iter().any(|x| *x != 0.0))
    );
    // Deterministic, and off means off.
    let again = prep();
    assert_eq!(
        (&again.held_out, &again.train, &again.test, &again.retriever),
        (&ds.held_out, &ds.train, &ds.test, &ds.retriever)
    );
    let off = synthetic();
    assert!(off.held_out.is_empty() && off.stats.held_out_items == 0);
    // Checked.
    let err = DatasetSource::Synthetic(SyntheticConfig::small(120, 200))
        .prepare(&small_config().with_held_out_share(0.7), &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("held_out_share"), "{err}");
}

#[test]
fn same_seed_same_dataset_other_seed_other_shuffle() {
    let mut a = synthetic();
    let mut b = synthetic();
    // Wall-clock timings are the only field that may differ between runs.
    a.stats.seconds.clear();
    b.stats.seconds.clear();
    assert!(a == b, "two runs with the same seed differ");
    let c = DatasetSource::Synthetic(SyntheticConfig::small(80, 200).with_sessions(5))
        .prepare(&small_config().with_seed(4), &NoProgress)
        .unwrap();
    assert_ne!(a.test[0].candidates, c.test[0].candidates);
}

#[test]
fn save_load_round_trip_and_version_check() {
    let ds = synthetic();
    let dir = tempfile::tempdir().unwrap();
    ds.save(dir.path()).unwrap();
    let back = PreparedDataset::load(dir.path()).unwrap();
    assert!(ds == back, "loaded dataset differs from the saved one");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stats"]["test_slates"], ds.test.len());

    // A file from another format version is rejected as stale.
    let path = dir.path().join("dataset.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&999u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    match PreparedDataset::load(dir.path()).unwrap_err() {
        DataError::StaleCache { found, .. } => assert_eq!(found, 999),
        other => panic!("{other}"),
    }
    // Truncated or foreign files are corrupt, not a panic.
    bytes[8..12].copy_from_slice(&glorank_data::FORMAT_VERSION.to_le_bytes());
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        PreparedDataset::load(dir.path()),
        Err(DataError::Corrupt { .. })
    ));
    std::fs::write(&path, b"hello").unwrap();
    assert!(matches!(
        PreparedDataset::load(dir.path()),
        Err(DataError::Corrupt { .. })
    ));
    assert!(matches!(
        PreparedDataset::load(&dir.path().join("nope")),
        Err(DataError::MissingFile { .. })
    ));
}

#[test]
fn too_small_catalog_and_empty_filter_are_clear_errors() {
    let world = SyntheticWorld::new(&SyntheticConfig::small(20, 40).with_sessions(4)).unwrap();
    let cfg = ProtocolConfig::default()
        .with_k_core(2)
        .with_shape(6, 50, 50);
    let err = prepare(world.log(), &cfg, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("pool"), "{err}");
    let cfg = ProtocolConfig::default().with_k_core(1000);
    let err = prepare(world.log(), &cfg, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("k-core"), "{err}");
}

#[test]
fn implicit_labels_every_logged_item_as_click() {
    let mut raw = SyntheticWorld::new(&SyntheticConfig::small(40, 150).with_sessions(4))
        .unwrap()
        .log();
    raw.implicit = true;
    let ds = prepare(raw, &small_config(), &NoProgress).unwrap();
    for s in &ds.test {
        assert_eq!(s.positives(), 6);
    }
}

#[test]
fn item_vectors_from_every_source() {
    let ds = synthetic();
    let n = ds.num_items();
    let content = item_vectors(&ds, &ItemVectorSource::Content { title_buckets: 16 }).unwrap();
    let genres = ds.item_features.as_ref().unwrap().genre_names.len();
    assert_eq!((content.len(), content.dim), (n, genres + 2 + 16));
    let mf = item_vectors(&ds, &ItemVectorSource::MfFactors).unwrap();
    assert_eq!((mf.len(), mf.dim), (n, ds.retriever.factors));
    let both = item_vectors(&ds, &ItemVectorSource::Concat { title_buckets: 16 }).unwrap();
    assert_eq!(both.dim, content.dim + mf.dim);
    assert_eq!(
        both,
        item_vectors(&ds, &ItemVectorSource::Concat { title_buckets: 16 }).unwrap()
    );

    let dir = tempfile::tempdir().unwrap();
    // .npy, float32, C order.
    let npy = dir.path().join("v.npy");
    std::fs::write(&npy, npy_bytes(n, 3)).unwrap();
    let v = item_vectors(&ds, &ItemVectorSource::File(npy.clone())).unwrap();
    assert_eq!((v.len(), v.dim), (n, 3));
    assert_eq!(v.row(2), &[6.0, 7.0, 8.0]);
    std::fs::write(&npy, npy_bytes(n + 1, 3)).unwrap();
    let err = item_vectors(&ds, &ItemVectorSource::File(npy)).unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");

    // CSV keyed by original id.
    let csv = dir.path().join("v.csv");
    let mut text = String::from("item,a,b\n");
    for id in ds.item_ids.iter().rev() {
        text.push_str(&format!("{id},1.5,-2\n"));
    }
    std::fs::write(&csv, &text).unwrap();
    let v = item_vectors(&ds, &ItemVectorSource::File(csv.clone())).unwrap();
    assert_eq!(v.row(0), &[1.5, -2.0]);
    std::fs::write(&csv, format!("{text}{},1,oops\n", ds.item_ids[0])).unwrap();
    match item_vectors(&ds, &ItemVectorSource::File(csv.clone())).unwrap_err() {
        DataError::Parse { line, field, .. } => assert_eq!((line, field.as_str()), (n + 2, "v2")),
        other => panic!("{other}"),
    }
    std::fs::write(&csv, "item,a\nnot-an-item,1\n").unwrap();
    assert!(matches!(
        item_vectors(&ds, &ItemVectorSource::File(csv)),
        Err(DataError::Insufficient(_))
    ));
}

/// A float32 `.npy` array `[rows, cols]` holding 0, 1, 2, ...
fn npy_bytes(rows: usize, cols: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for k in 0..rows * cols {
        out.extend_from_slice(&(k as f32).to_le_bytes());
    }
    out
}

/// A random interaction log: `users` users, each with a random number of interactions over
/// a catalog of `items`, random ratings and (possibly tied) timestamps.
fn random_log() -> impl Strategy<Value = RawDataset> {
    (5usize..25, 60usize..120).prop_flat_map(|(users, items)| {
        prop::collection::vec(
            prop::collection::vec((0..items as u32, 1u8..=5, 0i64..40), 3..30),
            users,
        )
        .prop_map(move |rows| RawDataset {
            name: "random".into(),
            user_ids: (0..users).map(|u| u.to_string()).collect(),
            item_ids: (0..items).map(|i| i.to_string()).collect(),
            interactions: rows
                .iter()
                .enumerate()
                .flat_map(|(u, r)| {
                    r.iter().map(move |&(item, rating, t)| Interaction {
                        user: u as u32,
                        item,
                        rating: f32::from(rating),
                        timestamp: t,
                    })
                })
                .collect(),
            ..Default::default()
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_logs_satisfy_the_protocol(raw in random_log(), k in 1usize..4) {
        let cfg = ProtocolConfig::default().with_k_core(k).with_shape(3, 10, 12).with_seed(1);
        match prepare(raw, &cfg, &NoProgress) {
            Ok(ds) => {
                check_invariants(&ds);
                // k-core fixpoint: every kept user and item has at least k interactions.
                let mut ic = vec![0usize; ds.num_items()];
                for seq in &ds.sequences {
                    prop_assert!(seq.items.len() >= k);
                    for &i in &seq.items { ic[i as usize] += 1; }
                    // Chronological order.
                    prop_assert!(seq.timestamps.windows(2).all(|w| w[0] <= w[1]));
                }
                prop_assert!(ic.iter().all(|&c| c >= k));
            }
            Err(DataError::Insufficient(_)) => {}
            Err(other) => prop_assert!(false, "unexpected error: {other}"),
        }
    }
}

/// With pool feedback every candidate carries a draw from the true click model: the pools
/// are the same as without it, retrieved candidates get clicks too, the draws are
/// reproducible, their click rate follows the true click probability, and the labels'
/// demonstration is the top of the pool by grade.
#[test]
fn pool_feedback_labels_every_candidate_from_the_true_click_model() {
    let world = SyntheticConfig::small(80, 200).with_sessions(5);
    let plain = DatasetSource::Synthetic(world.clone())
        .prepare(&small_config(), &NoProgress)
        .unwrap();
    let mut with = world.clone();
    with.pool_feedback = true;
    let ds = DatasetSource::Synthetic(with.clone())
        .prepare(&small_config(), &NoProgress)
        .unwrap();
    let again = DatasetSource::Synthetic(with)
        .prepare(&small_config(), &NoProgress)
        .unwrap();
    assert_eq!(ds.test, again.test);
    let w = SyntheticWorld::new(&world).unwrap();
    let (mut retrieved_clicks, mut expected, mut observed, mut count) = (0, 0.0, 0.0, 0.0);
    for (a, b) in plain.train.iter().zip(&ds.train) {
        assert_eq!((&a.candidates, &a.logged), (&b.candidates, &b.logged));
        let user = SyntheticWorld::user_index(&ds.user_ids[b.user as usize]).unwrap();
        for (p, (&c, l)) in b.candidates.iter().zip(&b.labels).enumerate() {
            let item = SyntheticWorld::item_index(&ds.item_ids[c as usize]).unwrap();
            let s = w.relevance_logit(user, item);
            expected += 1.0 / (1.0 + (-s).exp());
            observed += f64::from(u8::from(l.click()));
            count += 1.0;
            if l.click() && !b.logged.contains(&(p as u16)) {
                retrieved_clicks += 1;
            }
        }
        let demo = ds.label_demonstration(b);
        assert_eq!(demo.len(), 6);
        let grades: Vec<u8> = demo.iter().map(|&p| b.labels[p].grade()).collect();
        let rest = (0..b.candidates.len()).filter(|p| !demo.contains(p));
        let best_left = rest.map(|p| b.labels[p].grade()).max().unwrap();
        assert!(grades.windows(2).all(|g| g[0] >= g[1]) && grades[5] >= best_left);
    }
    assert!(retrieved_clicks > 0);
    // The mean click label matches the mean click probability (standard error about 0.003).
    let (observed, expected) = (observed / count, expected / count);
    assert!(
        (observed - expected).abs() < 0.02,
        "{observed} vs {expected}"
    );
    // Without pool feedback, only logged candidates carry labels, and the labels'
    // demonstration is the logged slate.
    for s in &plain.train {
        let mut demo = plain.label_demonstration(s);
        demo.sort_unstable();
        let mut logged: Vec<usize> = s.logged.iter().map(|&p| p as usize).collect();
        logged.sort_unstable();
        assert_eq!(demo, logged);
    }
}

/// A vector file that never ends (a device, a FIFO) is an error naming it, within seconds
/// and bounded memory: a `.npy` is read header first, a CSV line by line up to the limit.
#[cfg(unix)]
#[test]
fn endless_vector_files_are_errors_naming_them() {
    let ds = synthetic();
    let dir = tempfile::tempdir().unwrap();
    for name in ["v.npy", "v.csv"] {
        let p = dir.path().join(name);
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        let t0 = std::time::Instant::now();
        let e = item_vectors(&ds, &ItemVectorSource::File(p))
            .unwrap_err()
            .to_string();
        assert!(e.contains(name), "{e}");
        assert!(t0.elapsed().as_secs() < 30, "{name}: {:?}", t0.elapsed());
    }
    // A .npy whose header announces more data than the limit is refused before reading it.
    let p = dir.path().join("huge.npy");
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 4000000000), }}",
        ds.num_items()
    );
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    std::fs::write(&p, bytes).unwrap();
    let e = item_vectors(&ds, &ItemVectorSource::File(p))
        .unwrap_err()
        .to_string();
    assert!(e.contains("huge.npy") && e.contains("limit"), "{e}");
}

/// The protocol's requests written as a request log read back as the same rows, every one
/// valid, with the logged slate's clicks as the label.
#[test]
fn prepared_requests_round_trip_through_a_request_log() {
    use glorank_data::{LogConfig, LoggedRequest, read_request_log, write_request_log};
    let ds = synthetic();
    let config = LogConfig::default().with_signals(&["click", "like", "star", "rating"], "click");
    let rows: Vec<LoggedRequest> = ds
        .train
        .iter()
        .chain(&ds.test)
        .enumerate()
        .map(|(k, s)| LoggedRequest::from_sample(&ds, s, format!("r{k}")))
        .collect();
    for (row, sample) in rows.iter().zip(ds.train.iter().chain(&ds.test)) {
        row.check(&config).unwrap();
        let clicks: f32 = row.labels(&config).iter().sum();
        let logged_clicks = sample
            .logged
            .iter()
            .filter(|&&p| sample.labels[p as usize].click())
            .count();
        assert_eq!(clicks as usize, logged_clicks);
        assert_eq!(row.shown.len(), sample.logged.len());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    assert_eq!(write_request_log(&path, &rows).unwrap(), rows.len());
    let back = read_request_log(&path, &config).unwrap();
    assert_eq!(back.invalid, 0);
    assert_eq!(back.requests, rows);
}

/// Every request of a prepared dataset, written as a log folder with its catalogs and
/// prepared again with the rating protocol's reading (each user's last request test, the
/// one before validation), comes back as the same sample: same user and item numbering,
/// candidates, labels, logged slate, history, demonstration and retriever scores.
#[test]
fn a_log_folder_prepares_to_the_same_requests() {
    use glorank_data::{
        LogConfig, LogSplit, LoggedRequest, NoProgress, prepare_log, write_catalogs,
        write_request_log,
    };
    let ds = synthetic();
    let dir = tempfile::tempdir().unwrap();
    let all = ds.train.iter().chain(&ds.valid).chain(&ds.test);
    let rows: Vec<LoggedRequest> = all
        .clone()
        .enumerate()
        .map(|(k, s)| LoggedRequest::from_sample(&ds, s, format!("r{k}")))
        .collect();
    write_request_log(&dir.path().join("requests.jsonl"), &rows).unwrap();
    write_catalogs(dir.path(), &ds).unwrap();
    let config = LogConfig::default()
        .with_signals(&["click", "like", "star", "rating"], "click")
        .with_grades(&["like", "star"], Some("rating"))
        .with_split(LogSplit::User, 0.0, 0.0);
    let log = prepare_log(dir.path(), &config, &ds.config, &NoProgress).unwrap();
    assert_eq!((&log.user_ids, &log.item_ids), (&ds.user_ids, &ds.item_ids));
    assert_eq!(log.item_features, ds.item_features);
    assert_eq!(log.user_features, ds.user_features);
    assert_eq!(log.retriever.item_factors, ds.retriever.item_factors);
    let again = log.train.iter().chain(&log.valid).chain(&log.test);
    assert_eq!(
        (log.train.len(), log.valid.len(), log.test.len()),
        (ds.train.len(), ds.valid.len(), ds.test.len())
    );
    for (a, b) in all.zip(again) {
        assert_eq!(
            (a.user, &a.candidates, &a.labels, &a.logged),
            (b.user, &b.candidates, &b.labels, &b.logged)
        );
        assert_eq!(ds.history(a).items, log.history(b).items);
        assert_eq!(ds.history_labels(a), log.history_labels(b));
        assert_eq!(ds.demonstration(a), log.demonstration(b));
        assert_eq!(ds.retriever_scores(a), log.retriever_scores(b));
    }
    assert!(
        log.stats.warnings().is_empty(),
        "{:?}",
        log.stats.warnings()
    );
    // Fields a row carries that training does not read are said, not dropped silently.
    let mut with_exposures = rows.clone();
    with_exposures[0].request.exposures = Some(vec![0; with_exposures[0].request.candidates.len()]);
    write_request_log(&dir.path().join("requests.jsonl"), &with_exposures).unwrap();
    let warned = prepare_log(dir.path(), &config, &ds.config, &NoProgress).unwrap();
    let warnings = warned.stats.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("1 rows of the log carry `exposures`")),
        "{warnings:?}"
    );
    // A row that breaks the protocol's shape names its line and field.
    let mut long = rows[0].clone();
    long.request_id = "extra".into();
    long.shown = long.request.candidates[..7].to_vec();
    for v in long.feedback.values_mut() {
        v.resize(7, 0.0);
    }
    write_request_log(&dir.path().join("requests.jsonl"), [&rows[0], &long]).unwrap();
    let e = prepare_log(dir.path(), &config, &ds.config, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("requests.jsonl:2") && e.contains("shown") && e.contains("slate_len"),
        "{e}"
    );
}

/// A log prepared with its training requests on disk (`log.store = "disk"`) is the same
/// dataset as in memory: the same split, numbering, item vectors (ALS here: no catalog) and
/// statistics, the validation and test requests with their records, and the stored
/// training requests read back one at a time or all at once.
#[test]
fn a_log_kept_on_disk_prepares_to_the_same_dataset() {
    use glorank_data::{
        LogConfig, LogStore, LoggedRequest, NoProgress, PreparedDataset, TRAIN_STORE_FILE,
        prepare_log, prepare_log_into, write_request_log,
    };
    let ds = synthetic();
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<LoggedRequest> = ds
        .train
        .iter()
        .chain(&ds.valid)
        .chain(&ds.test)
        .enumerate()
        .map(|(k, s)| {
            let mut row = LoggedRequest::from_sample(&ds, s, format!("r{k}"));
            // Out of time order in the file, with ties: the split sorts by time.
            row.timestamp = ((k * 7919) % 500) as i64;
            row
        })
        .collect();
    let log_dir = dir.path().join("log");
    write_request_log(&log_dir.join("requests.jsonl"), &rows).unwrap();
    let config = LogConfig::default().with_signals(&["click", "like", "star", "rating"], "click");
    let memory = prepare_log(&log_dir, &config, &ds.config, &NoProgress).unwrap();
    let disk_config = config.clone().with_store(LogStore::Disk);
    assert!(prepare_log(&log_dir, &disk_config, &ds.config, &NoProgress).is_err());
    let run = dir.path().join("run");
    let disk = prepare_log_into(&log_dir, &disk_config, &ds.config, &run, &NoProgress).unwrap();
    assert!(run.join(TRAIN_STORE_FILE).exists());
    // No spill file is left behind.
    let names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert!(disk.train.is_empty() && disk.train_len() == memory.train.len());
    assert_eq!((&disk.valid, &disk.test), (&memory.valid, &memory.test));
    assert_eq!(disk.retriever.item_factors, memory.retriever.item_factors);
    assert_eq!(disk.item_train_counts, memory.item_train_counts);
    let (mut a, mut b) = (disk.stats.clone(), memory.stats.clone());
    a.seconds.clear();
    b.seconds.clear();
    assert_eq!(a, b);
    for s in memory.valid.iter().chain(&memory.test) {
        assert_eq!(disk.log_record(s), memory.log_record(s));
        assert_eq!(disk.demonstration(s), memory.demonstration(s));
    }
    let reader = disk.train_reader().unwrap().unwrap();
    for (i, s) in memory.train.iter().enumerate().rev().step_by(5) {
        let r = reader.get(i).unwrap();
        assert_eq!(&r.sample, s);
        assert_eq!(Some(&r.record), memory.log_record(s));
    }
    // Saved and loaded: the same training requests, all at once.
    let mut loaded = PreparedDataset::load(&run).unwrap();
    assert!(loaded.train_on_disk());
    let copy = loaded.with_train_loaded().unwrap().into_owned();
    loaded.load_train().unwrap();
    for d in [&loaded, &copy] {
        assert!(!d.train_on_disk());
        assert_eq!(
            (&d.train, &d.log, &d.log_ranks),
            (&memory.train, &memory.log, &None)
        );
    }
    // A store that is not this dataset's is refused, naming the file.
    let other = PreparedDataset::load(&run).unwrap();
    std::fs::write(run.join(TRAIN_STORE_FILE), b"GLRKREQS\x01\0\0\0").unwrap();
    let e = other.train_reader().unwrap_err().to_string();
    assert!(e.contains(TRAIN_STORE_FILE), "{e}");
}
