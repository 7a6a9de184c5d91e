//! The end-to-end pipeline on a tiny synthetic world, its reuse of artifacts, and serving
//! the result with the `Reranker`.

mod common;

use glorank::{Error, Pipeline, PipelineConfig, RerankRequest, Reranker};
use std::path::Path;

fn tiny() -> PipelineConfig {
    let text = r#"
run_las = true
eval_beam = 4
[data]
users = 120
items = 150
sessions = 6
k_core = 5
history = 8
pool_size = 20
retriever_factors = 2
[tokenizer]
levels = 2
codes = 8
[policy]
d_model = 16
layers = 1
item_content = true
[evaluator]
epochs = 1
pool_lists = 1
[simulator]
epochs = 1
pool_lists = 1
[sft]
epochs = 2
batch_size = 32
[rl]
steps = 4
batch_size = 8
group_size = 4
eval_every = 2
checkpoint_every = 2
[baselines]
d_model = 16
epochs = 1
reinforce_samples = 2
"#;
    PipelineConfig::from_toml(text, Path::new("tiny.toml")).unwrap()
}

#[test]
fn pipeline_runs_reuses_artifacts_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let report = Pipeline::new(tiny()).run(dir.path()).unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "MF order",
            "retriever reversed",
            "pool novelty",
            "popularity",
            "PRM",
            "Seq2Slate",
            "DLCM",
            "GloRank-LAS",
            "GloRank SFT",
            "GloRank SFT+RL",
            "oracle",
            "top appeal (true model)",
            "best list (true model)"
        ]
    );
    // The search with the true click model earns at least as many true clicks as any row.
    let best = report
        .rows
        .last()
        .unwrap()
        .true_reward
        .as_ref()
        .unwrap()
        .mean;
    for row in &report.rows {
        let t = row.true_reward.as_ref().unwrap().mean;
        assert!(t <= best + 1e-9, "{}: {t} > best list {best}", row.name);
    }
    for f in [
        "config.toml",
        "dataset.bin",
        "semantic_ids.json",
        "evaluator/reward.bpk",
        "simulator/reward.bpk",
        "policy_sft/policy.bpk",
        "policy_rl/policy.bpk",
        "las/policy_sft/policy.bpk",
        "metrics.json",
        "predictions.jsonl",
        "report.md",
        "curve_sft.svg",
        "curve_rl.svg",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    // Every row has the synthetic world's true expected clicks and the simulator's reward.
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.true_reward.is_some() && r.average_reward.is_some())
    );
    // Every row but the two list references scores candidates, so it has the AUC among
    // logged items.
    for r in &report.rows {
        let auc = r.logged_auc.as_ref().map(|a| a.mean);
        if r.name == "oracle" || r.name == glorank::stages::BEST_LIST {
            assert!(auc.is_none());
        } else {
            assert!(auc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{}", r.name);
        }
    }
    // predictions.jsonl recomputes Precision@6 of every method exactly.
    let text = std::fs::read_to_string(dir.path().join("predictions.jsonl")).unwrap();
    for row in &report.rows {
        let (mut hits, mut n) = (0.0, 0.0);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["method"] != row.name.as_str() {
                continue;
            }
            let cands: Vec<&str> = v["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            let clicks = v["clicks"].as_array().unwrap();
            for item in v["list"].as_array().unwrap() {
                let p = cands
                    .iter()
                    .position(|c| *c == item.as_str().unwrap())
                    .unwrap();
                hits += clicks[p].as_f64().unwrap();
            }
            n += 6.0;
        }
        assert!(
            (hits / n - row.metrics.precision.mean).abs() < 1e-9,
            "{}",
            row.name
        );
    }
    // A second run reuses every artifact and reproduces the GloRank rows.
    let mut said = Vec::new();
    let again = Pipeline::new(tiny())
        .run_with(dir.path(), &mut glorank::train::NoObserver, &mut |l| {
            said.push(l.to_string())
        })
        .unwrap();
    for name in ["GloRank SFT", "GloRank SFT+RL", "MF order", "oracle"] {
        let a = report.rows.iter().find(|r| r.name == name).unwrap();
        let b = again.rows.iter().find(|r| r.name == name).unwrap();
        assert_eq!(a.lists, b.lists, "{name}");
    }
    for name in glorank::ARTIFACTS {
        let line = format!("{name}: up to date, reused");
        assert!(said.contains(&line), "{line} not in {said:?}");
    }

    // Serving.
    let reranker = Reranker::load(dir.path()).unwrap();
    // It decodes as the run's evaluation did (`eval_beam = 4`): the served list of a test
    // request is the GloRank SFT+RL list of predictions.jsonl.
    assert_eq!(
        reranker.strategy(),
        glorank::trie::DecodeStrategy::Beam { width: 4 }
    );
    let ds = glorank::data::PreparedDataset::load(dir.path()).unwrap();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        let items = v.as_array().unwrap().iter();
        items.map(|i| i.as_str().unwrap().to_string()).collect()
    };
    let evaluated = strings(
        &text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["method"] == "GloRank SFT+RL" && r["request"] == 0)
            .unwrap()["list"],
    );
    let served = reranker
        .rerank(&RerankRequest::from_sample(&ds, &ds.test[0]))
        .unwrap();
    assert_eq!(served, evaluated);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let candidates = strings(&first["candidates"]);
    let list = reranker
        .rerank(&RerankRequest::new(candidates.clone()))
        .unwrap();
    assert_eq!(list.len(), 6);
    assert!(list.iter().all(|i| candidates.contains(i)));
    // A prefix penalty serves other valid lists; a negative one is refused.
    let spread = Reranker::load(dir.path())
        .unwrap()
        .with_prefix_penalty(3.0)
        .unwrap();
    assert_eq!(spread.prefix_penalty(), 3.0);
    let spread_list = spread
        .rerank(&RerankRequest::new(candidates.clone()))
        .unwrap();
    assert!(spread_list.iter().all(|i| candidates.contains(i)));
    assert_eq!(
        spread_list
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        6
    );
    let err = Reranker::load(dir.path())
        .unwrap()
        .with_prefix_penalty(-1.0)
        .unwrap_err();
    assert!(err.to_string().contains("prefix penalty"), "{err}");
    // A cold item with a vector is served; without one it is a clear error.
    let dim = glorank::tokenizer::load_tokenizer(dir.path(), glorank::Device::flex())
        .unwrap()
        .input_dim()
        .unwrap();
    let mut cold = RerankRequest::new(candidates.clone());
    cold.candidates[0] = "brand-new".into();
    let err = reranker.rerank(&cold).unwrap_err();
    assert!(
        matches!(err, Error::InvalidRequest(_)) && err.to_string().contains("brand-new"),
        "{err}"
    );
    cold.candidate_vectors
        .insert("brand-new".into(), vec![0.5; dim]);
    assert_eq!(reranker.rerank(&cold).unwrap().len(), 6);
    cold.candidate_vectors
        .insert("brand-new".into(), vec![0.5; dim + 1]);
    assert!(
        reranker
            .rerank(&cold)
            .unwrap_err()
            .to_string()
            .contains("expects")
    );
    // Too few candidates, repeats: errors, and a batch keeps the good requests.
    let short = RerankRequest::new(candidates[..3].to_vec());
    let batch = reranker.rerank_batch(&[short, RerankRequest::new(candidates.clone())]);
    assert!(batch[0].is_err() && batch[1].as_ref().unwrap() == &list);
    // Concurrent callers share one reranker and get the same answer.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    reranker
                        .rerank(&RerankRequest::new(candidates.clone()))
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), list);
        }
    });

    // A flipped byte in a finished artifact: serving and the pipeline refuse it, naming it.
    let weights = dir.path().join("policy_rl/policy.bpk");
    let original = std::fs::read(&weights).unwrap();
    let mut flipped = original.clone();
    let k = flipped.len() / 2;
    flipped[k] ^= 0x01;
    std::fs::write(&weights, &flipped).unwrap();
    let e = Reranker::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("policy_rl"), "{e}");
    let e = Pipeline::new(tiny())
        .run(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("policy_rl") && e.contains("changed"), "{e}");
    std::fs::write(&weights, &original).unwrap();
    // A missing RL configuration is an error, not a silent switch to the SFT policy.
    let config = dir.path().join("policy_rl/policy.json");
    let saved = std::fs::read(&config).unwrap();
    std::fs::remove_file(&config).unwrap();
    let e = Reranker::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("policy.json"), "{e}");
    std::fs::write(&config, saved).unwrap();
    assert!(Reranker::load(dir.path()).is_ok());

    // A changed SFT setting rebuilds exactly SFT and what derives from it (RL, the LAS
    // ablation, which shares the [sft] section), and says why.
    let mut longer = tiny();
    longer.sft.epochs = 3;
    let mut said = Vec::new();
    Pipeline::new(longer)
        .run_with(dir.path(), &mut glorank::train::NoObserver, &mut |l| {
            said.push(l.to_string())
        })
        .unwrap();
    let text = said.join("\n");
    for name in ["dataset", "tokenizer", "evaluator", "simulator"] {
        assert!(text.contains(&format!("{name}: up to date")), "{text}");
    }
    assert!(
        text.contains("sft: rebuilding, configuration changed (sft.epochs: 2 -> 3)"),
        "{text}"
    );
    assert!(
        text.contains("rl: rebuilding, upstream changed: sft"),
        "{text}"
    );
    assert!(text.contains("las: rebuilding"), "{text}");
    let manifest = glorank::RunDir::new(dir.path()).manifest().unwrap();
    assert_eq!(manifest.artifacts["sft"].config["sft"]["epochs"], 3);
    assert_eq!(
        manifest.artifacts["rl"].inputs["sft"],
        glorank::RunDir::new(dir.path())
            .artifact_checksum("sft")
            .unwrap()
            .unwrap()
    );
}

#[test]
fn a_dataset_of_an_older_format_is_rebuilt_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny();
    config.run_las = false;
    Pipeline::new(config.clone()).run(dir.path()).unwrap();
    // Pretend dataset.bin was written by format version 3.
    let path = dir.path().join("dataset.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert!(glorank::data::PreparedDataset::load(dir.path()).is_err());
    // As that version would have recorded it: the manifest holds the file's own checksum.
    let run = glorank::RunDir::new(dir.path());
    let sum = run.artifact_checksum("dataset").unwrap().unwrap();
    let manifest = dir.path().join(glorank::MANIFEST_FILE);
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["artifacts"]["dataset"]["checksum"] = sum.into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let mut said = Vec::new();
    Pipeline::new(config)
        .run_with(dir.path(), &mut glorank::train::NoObserver, &mut |l| {
            said.push(l.to_string())
        })
        .unwrap();
    assert!(
        said.iter()
            .any(|l| l.starts_with("dataset: rebuilding, written in format version 3")),
        "{said:?}"
    );
    assert!(glorank::data::PreparedDataset::load(dir.path()).is_ok());
}

#[test]
fn a_cold_item_gets_codes_and_its_nearest_known_items() {
    use glorank::data::{PreparedDataset, item_vectors};
    let dir = tempfile::tempdir().unwrap();
    let run = glorank::fixtures::write_tiny_run(dir.path(), 4).unwrap();
    let ds = PreparedDataset::load(run.root()).unwrap();
    let reranker = Reranker::load(run.root()).unwrap();
    let vectors =
        item_vectors(&ds, &glorank::TokenizerConfig::default().vector_source(&ds)).unwrap();
    let row = |i: usize| &vectors.data[i * vectors.dim..(i + 1) * vectors.dim];
    // A known item's own vector, served as if it were new, lands on its own codes.
    let mut own = 0;
    for (i, id) in ds.item_ids.iter().enumerate() {
        let cold = reranker.cold_item(row(i), 3).unwrap();
        assert_eq!(cold.codes.len(), 2);
        let tuple = reranker.semantic_id(id).unwrap();
        own += usize::from(tuple[..2] == cold.codes[..]);
        // The neighbours share the longest prefix any known item shares, and none shares more.
        assert!(!cold.neighbours.is_empty() && cold.neighbours.len() <= 3);
        let shared = |t: &[u32]| {
            t.iter()
                .zip(&cold.codes)
                .take_while(|(a, b)| a == b)
                .count()
        };
        for n in &cold.neighbours {
            assert_eq!(shared(reranker.semantic_id(n).unwrap()), cold.shared_levels);
        }
        assert!(
            ds.item_ids
                .iter()
                .all(|o| shared(reranker.semantic_id(o).unwrap()) <= cold.shared_levels)
        );
    }
    assert!(
        own * 10 >= ds.item_ids.len() * 9,
        "{own} of {}",
        ds.item_ids.len()
    );
    // The same vector in a request serves the cold item; a wrong size is an error.
    let mut request = RerankRequest::from_sample(&ds, &ds.test[0]);
    request.candidates[0] = "brand-new".into();
    request
        .candidate_vectors
        .insert("brand-new".into(), row(0).to_vec());
    assert_eq!(reranker.rerank(&request).unwrap().len(), 6);
    let e = reranker.cold_item(&[0.5; 3], 3).unwrap_err().to_string();
    assert!(e.contains("3 values"), "{e}");
}

#[test]
fn a_model_with_user_ids_serves_known_users_only() {
    use glorank::data::{DatasetSource, NoProgress, ProtocolConfig, SyntheticConfig};
    use glorank::policy::Policy;
    let dir = tempfile::tempdir().unwrap();
    let run = glorank::RunDir::new(dir.path());
    let ds = DatasetSource::Synthetic(SyntheticConfig::small(40, 60).with_sessions(4))
        .prepare(
            &ProtocolConfig::default()
                .with_k_core(3)
                .with_shape(6, 8, 12)
                .with_user_id_feature(true),
            &NoProgress,
        )
        .unwrap();
    ds.save(run.root()).unwrap();
    let mut tok = glorank::TokenizerConfig::default();
    tok.levels = 2;
    tok.codes = 4;
    let (_, ids) = glorank::stages::tokenize(&ds, &tok, run.tokenizer_dir()).unwrap();
    let mut training = glorank::train::TrainingConfig::default();
    training.policy.d_model = 16;
    training.policy.heads = 2;
    training.policy.layers = 1;
    let config = glorank::stages::policy_config(&ds, &ids, &training).unwrap();
    // The policy embeds the user id: its last user field has one category per user + 1.
    assert_eq!(
        config.user_field_sizes.last(),
        Some(&(ds.user_ids.len() + 1))
    );
    Policy::new(&config, &glorank::Device::flex())
        .unwrap()
        .save(&config, &run.policy_sft())
        .unwrap();
    let reranker = Reranker::load(run.root()).unwrap();
    assert!(reranker.uses_user_id());
    let mut request = RerankRequest::from_sample(&ds, &ds.test[0]);
    assert_eq!(reranker.rerank(&request).unwrap().len(), 6);
    request.user = None;
    let e = reranker.rerank(&request).unwrap_err().to_string();
    assert!(e.contains("needs a `user`"), "{e}");
    request.user = Some("nobody".into());
    let e = reranker.rerank(&request).unwrap_err().to_string();
    assert!(e.contains("unknown user `nobody`"), "{e}");
}

#[test]
fn reranker_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Reranker>();
}

#[test]
fn bad_configuration_names_the_field() {
    let e = PipelineConfig::from_toml("[data]\nusres = 3\n", Path::new("x.toml")).unwrap_err();
    assert!(
        e.to_string().contains("usres") && e.to_string().contains("x.toml"),
        "{e}"
    );
    let e = PipelineConfig::from_toml("[rl]\ngroup_size = 1\n", Path::new("x.toml")).unwrap_err();
    assert!(e.to_string().contains("rl.group_size"), "{e}");
    // Sizes far beyond any real need are refused when the file is read, before allocation.
    for (text, field) in [
        ("[policy]\nd_model = 1000000000\n", "policy.d_model"),
        ("[data]\nusers = 1000000000\n", "data.users"),
        ("[tokenizer]\ncodes = 1000000000\n", "tokenizer.codes"),
        ("[sft]\nbatch_size = 1000000000\n", "sft.batch_size"),
        ("[evaluator]\nd_model = 1000000000\n", "evaluator.d_model"),
        ("[baselines]\nlayers = 1000\n", "layers"),
        ("eval_beam = 0\n", "eval_beam"),
        ("eval_beam = 65\n", "eval_beam"),
    ] {
        let e = PipelineConfig::from_toml(text, Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains(field), "{text}: {e}");
    }
    // An unknown choice is refused when the file is read, with the valid names.
    let e = PipelineConfig::from_toml("[data]\ndataset = \"movielens\"\n", Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("movielens") && e.contains("ml-100k"), "{e}");
    // The demo presets decode the GloRank rows' test lists with a beam of 8; a file without
    // the key decodes greedily, as before the option.
    assert_eq!(PipelineConfig::quick().eval_beam, 8);
    // The demo policies read the items' content vectors, as the baselines do.
    assert!(PipelineConfig::quick().policy.item_content);
    assert!(PipelineConfig::demo().policy.item_content);
    assert!(
        !PipelineConfig::from_toml("", Path::new("x.toml"))
            .unwrap()
            .policy
            .item_content
    );
    assert_eq!(PipelineConfig::demo().eval_beam, 8);
    let plain = PipelineConfig::from_toml("", Path::new("x.toml")).unwrap();
    assert_eq!(plain.eval_beam, 1);
    // The presets validate with their evaluation's beam and decay SFT's rate; a file without
    // the keys validates greedily at a constant rate.
    for c in [PipelineConfig::quick(), PipelineConfig::demo()] {
        assert_eq!(
            (c.sft.valid_beam, c.rl.valid_beam),
            (c.eval_beam, c.eval_beam)
        );
        assert!(c.sft.schedule.factor(1000, 1001) < 0.2);
    }
    assert_eq!((plain.sft.valid_beam, plain.rl.valid_beam), (1, 1));
    assert_eq!(plain.sft.schedule.factor(1000, 1001), 1.0);
    // A file format without a path is refused before anything is written.
    let mut c = PipelineConfig::quick();
    c.data.dataset = glorank::data::DatasetKind::Ml100k;
    let dir = tempfile::tempdir().unwrap();
    let e = Pipeline::new(c).run(dir.path()).unwrap_err();
    assert!(e.to_string().contains("data.path"), "{e}");
}

#[test]
fn shipped_configurations_parse() {
    let root = common::manifest_dir().join("../../configs");
    let mut names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for name in &names {
        let c = PipelineConfig::from_file(&root.join(name)).unwrap();
        assert!(
            c.data.path.is_none(),
            "{name}: the data path is a command-line argument"
        );
        assert_eq!(c.data.pool_size, 50);
    }
    // The two protocol presets say what they promise.
    for name in ["ml-1m-paper.toml", "ml-1m-paper-2core.toml"] {
        let paper = PipelineConfig::from_file(&root.join(name)).unwrap();
        assert!(paper.data.user_id_feature && !paper.data.pool_excludes_history);
        assert_eq!(paper.data.rerank_train_slates, 0);
        assert!(paper.policy.use_retriever_score && paper.baselines.use_retriever_score);
        assert!(paper.evaluator.use_retriever_score && paper.simulator.use_retriever_score);
        let both = glorank::nn::RetrieverInput::ScoreAndRank;
        assert_eq!(paper.policy.retriever_input, both, "{name}");
        assert_eq!(paper.baselines.retriever_input, both, "{name}");
    }
    // The synthetic benchmark world is the demo preset with twice the sessions and the
    // user's identity, read ten times faster by the policy and the baselines.
    let identity = PipelineConfig::from_file(&root.join("synthetic-identity.toml")).unwrap();
    let mut expected = PipelineConfig::demo();
    expected.data.sessions = 20;
    expected.data.user_id_feature = true;
    expected.policy.user_lr_scale = 10.0;
    expected.baselines.user_lr_scale = 10.0;
    assert_eq!(identity, expected);
    let hardened = PipelineConfig::from_file(&root.join("ml-100k-hardened.toml")).unwrap();
    assert!(hardened.data.rerank_train_slates > 0 && !hardened.policy.use_retriever_score);
    assert!(hardened.data.pool_excludes_history && !hardened.data.user_id_feature);
    // The held-out presets hold out 10% of the items and give semantic IDs from content.
    for name in ["ml-100k-held-out.toml", "ml-1m-held-out.toml"] {
        let c = PipelineConfig::from_file(&root.join(name)).unwrap();
        assert_eq!(c.data.held_out_share, 0.1, "{name}");
        assert_eq!(
            c.tokenizer.vectors,
            glorank::data::VectorKind::Content,
            "{name}"
        );
        assert!(!c.policy.use_retriever_score, "{name}");
    }
}

/// A small prepared synthetic world: pools of 12, lists of 6, histories of 8, 3-core.
fn small_world(users: usize, items: usize, sessions: usize) -> glorank::data::PreparedDataset {
    use glorank::data::{DatasetSource, NoProgress, ProtocolConfig, SyntheticConfig};
    DatasetSource::Synthetic(SyntheticConfig::small(users, items).with_sessions(sessions))
        .prepare(
            &ProtocolConfig::default()
                .with_k_core(3)
                .with_shape(6, 8, 12),
            &NoProgress,
        )
        .unwrap()
}

#[test]
fn logged_auc_reads_only_the_logged_items() {
    use glorank::stages::logged_auc;
    let ds = small_world(60, 80, 5);
    let mixed: Vec<_> = ds
        .test
        .iter()
        .filter(|s| {
            let clicks = s
                .logged
                .iter()
                .filter(|&&p| s.labels[p as usize].click())
                .count();
            clicks > 0 && clicks < s.logged.len()
        })
        .cloned()
        .collect();
    assert!(!mixed.is_empty());
    // Clicks scored 1, non-clicked logged items 0, retrieved candidates far above both:
    // the retrieved ones play no part, so the AUC is exactly 1; reversed, exactly 0.
    let score = |sign: f32| -> Vec<Vec<f32>> {
        mixed
            .iter()
            .map(|s| {
                let mut v = vec![100.0; s.candidates.len()];
                for &p in &s.logged {
                    v[p as usize] = sign * f32::from(u8::from(s.labels[p as usize].click()));
                }
                v
            })
            .collect()
    };
    let up = logged_auc(&mixed, &score(1.0)).unwrap().unwrap();
    assert_eq!((up.n, up.mean), (mixed.len(), 1.0));
    let down = logged_auc(&mixed, &score(-1.0)).unwrap().unwrap();
    assert_eq!(down.mean, 0.0);
    // Constant scores: every pair ties, AUC 1/2.
    let flat: Vec<Vec<f32>> = mixed
        .iter()
        .map(|s| vec![0.0; s.candidates.len()])
        .collect();
    assert_eq!(logged_auc(&mixed, &flat).unwrap().unwrap().mean, 0.5);
}

#[test]
fn cold_slice_keeps_requests_with_rare_candidates() {
    use glorank::stages::{MethodResult, cold_slice};
    let mut ds = small_world(60, 80, 5);
    // Pretend item of the first test request's first candidate was never trained on.
    let cold_item = ds.test[0].candidates[0] as usize;
    ds.item_train_counts[cold_item] = 0;
    let lists: Vec<Vec<usize>> = ds.test.iter().map(|_| (0..6).collect()).collect();
    let rel: Vec<Vec<f64>> = ds.test.iter().map(|s| s.click_relevance()).collect();
    let row = MethodResult {
        name: "first six".into(),
        metrics: glorank::train::list_metrics(&lists, &rel, 6).unwrap(),
        average_reward: None,
        true_reward: None,
        logged_auc: None,
        lists,
        scores: Some(
            ds.test
                .iter()
                .map(|s| s.click_relevance().iter().map(|&c| c as f32).collect())
                .collect(),
        ),
    };
    let (n, rows) = cold_slice(&ds, &ds.test, std::slice::from_ref(&row), 1)
        .unwrap()
        .unwrap();
    let expected: Vec<usize> = (0..ds.test.len())
        .filter(|&k| {
            ds.test[k]
                .candidates
                .iter()
                .any(|&i| i as usize == cold_item)
        })
        .collect();
    assert_eq!(n, expected.len());
    assert!(n >= 1 && rows[0].lists.len() == n);
    let sub: Vec<Vec<f64>> = expected.iter().map(|&k| rel[k].clone()).collect();
    let m = glorank::train::list_metrics(&rows[0].lists, &sub, 6).unwrap();
    assert_eq!(m.precision.mean, rows[0].metrics.precision.mean);
    // The slice keeps each request's scores: clicks scored above everything else give a
    // logged AUC of exactly 1 wherever it is defined.
    assert_eq!(rows[0].scores.as_ref().map(Vec::len), Some(n));
    if let Some(auc) = &rows[0].logged_auc {
        assert_eq!(auc.mean, 1.0);
    }
}

/// A synthetic world of 120 users and 150 items with 10% held-out items: pools of 20, lists
/// of 6, histories of 8, 3-core.
fn held_out_world() -> glorank::data::PreparedDataset {
    use glorank::data::{DatasetSource, NoProgress, ProtocolConfig, SyntheticConfig};
    DatasetSource::Synthetic(SyntheticConfig::small(120, 150).with_sessions(6))
        .prepare(
            &ProtocolConfig::default()
                .with_k_core(3)
                .with_shape(6, 8, 20)
                .with_held_out_share(0.1),
            &NoProgress,
        )
        .unwrap()
}

#[test]
fn held_out_items_get_reference_rows_and_a_cold_warm_split() {
    use glorank::stages::{COLD_FIRST, EvalContext, RANDOM, held_out_view};
    use glorank::tokenizer::SemanticIds;
    let ds = held_out_world();
    assert_eq!(ds.held_out.len(), 15);
    let codes = (0..ds.num_items() as u32)
        .map(|i| vec![i % 8, i / 8 % 8])
        .collect();
    let (ids, _) = SemanticIds::from_codes(codes, &[8, 8], 4).unwrap();
    let ctx = EvalContext::new(&ds, &ids, &ds.test, None, &glorank::Device::flex()).unwrap();
    let (mut rows, last) = ctx.reference_rows().unwrap();
    let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap();
    // "cold first" puts every held-out candidate ahead of every warm one, and otherwise
    // keeps the random row's order.
    for (k, s) in ds.test.iter().enumerate() {
        let cold: Vec<usize> = (0..s.candidates.len())
            .filter(|&p| ds.is_held_out(s.candidates[p]))
            .collect();
        let list = &row(COLD_FIRST).lists[k];
        let head = cold.len().min(list.len());
        assert!(list[..head].iter().all(|p| cold.contains(p)), "request {k}");
        if cold.is_empty() {
            assert_eq!(list, &row(RANDOM).lists[k]);
        }
    }
    rows.extend(last);
    let v = held_out_view(&ds, &ds.test, &rows).unwrap().unwrap();
    // The split is by the logged slate; the pool-wide count is at least the cold side.
    let cold_logged = ds
        .test
        .iter()
        .filter(|s| {
            s.logged
                .iter()
                .any(|&p| ds.is_held_out(s.candidates[p as usize]))
        })
        .count();
    assert!(v.any_cold_requests >= cold_logged);
    // The oracle's lists hold every clicked logged item, held-out or warm.
    let m = |name: &str| v.methods.iter().find(|m| m.name == name).unwrap();
    let (cold, warm) = (&m("oracle").found_held_out, &m("oracle").found_warm);
    assert_eq!((cold.unwrap().mean, warm.unwrap().mean), (1.0, 1.0));
    // Popularity gives every held-out item the same score (no training interactions), so it
    // cannot tell a good one from a bad one: AUC exactly 1/2 among held-out candidates.
    let (cold, warm) = (&m("popularity").auc_held_out, &m("popularity").auc_warm);
    assert_eq!(cold.unwrap().mean, 0.5);
    assert!((0.0..=1.0).contains(&warm.unwrap().mean));
    assert_eq!(v.items, 15);
    assert!(v.logged_cold_share > 0.0 && v.retrieved_cold_share > 0.0);
    let (n_cold, cold_rows) = v.cold.unwrap();
    assert_eq!(n_cold, cold_logged);
    let (n_warm, warm_rows) = v.warm.unwrap();
    assert_eq!(n_cold + n_warm, ds.test.len());
    assert_eq!(cold_rows.len(), rows.len());
    assert_eq!(warm_rows[0].lists.len(), n_warm);
    // Without held-out items there is no view and no extra rows.
    let plain = small_world(60, 80, 5);
    assert!(held_out_view(&plain, &plain.test, &rows).unwrap().is_none());
}

#[test]
fn a_held_out_item_is_served_from_its_content_vector_alone() {
    use glorank::data::{VectorKind, item_vectors};
    use glorank::{Device, RunDir, TokenizerConfig, stages};
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let ds = held_out_world();
    ds.save(run.root()).unwrap();
    let mut tok = TokenizerConfig::default();
    tok.levels = 2;
    tok.codes = 8;
    tok.vectors = VectorKind::Content;
    let (_, ids) = stages::tokenize(&ds, &tok, run.tokenizer_dir()).unwrap();
    let mut training = glorank::train::TrainingConfig::default();
    training.policy.d_model = 16;
    training.policy.heads = 2;
    training.policy.layers = 1;
    let config = stages::policy_config(&ds, &ids, &training).unwrap();
    glorank::policy::Policy::new(&config, &Device::flex())
        .unwrap()
        .save(&config, &run.policy_sft())
        .unwrap();
    let reranker = Reranker::load(run.root()).unwrap();
    let vectors = item_vectors(&ds, &tok.vector_source(&ds)).unwrap();
    // A test request with a held-out candidate: served under its own id, and under a new id
    // with nothing but its content vector.
    let (sample, pos) = ds
        .test
        .iter()
        .find_map(|s| {
            let p = s.candidates.iter().position(|&i| ds.is_held_out(i))?;
            Some((s, p))
        })
        .unwrap();
    let item = sample.candidates[pos] as usize;
    let vector = vectors.row(item).to_vec();
    let known = RerankRequest::from_sample(&ds, sample);
    assert_eq!(reranker.rerank(&known).unwrap().len(), 6);
    let mut cold = known.clone();
    cold.candidates[pos] = "new-release".into();
    cold.candidate_vectors
        .insert("new-release".into(), vector.clone());
    let list = reranker.rerank(&cold).unwrap();
    assert_eq!(list.len(), 6);
    assert!(list.iter().all(|id| cold.candidates.contains(id)));
    // Its codes are the ones the run's table gave the held-out item (from the same content),
    // and its nearest known items share them.
    let seen = reranker.cold_item(&vector, 10).unwrap();
    let own = reranker.semantic_id(&ds.item_ids[item]).unwrap();
    assert_eq!(&own[..2], &seen.codes[..]);
    assert_eq!(seen.shared_levels, 2);
    assert!(seen.neighbours.contains(&ds.item_ids[item]));
}

#[test]
fn shuffled_pools_keep_items_labels_and_logged_positions_together() {
    let ds = small_world(40, 60, 4);
    let shuffled = glorank::stages::shuffle_candidates(&ds.test, 7);
    let mut moved = 0;
    for (a, b) in ds.test.iter().zip(&shuffled) {
        let mut x = a.candidates.clone();
        let mut y = b.candidates.clone();
        x.sort_unstable();
        y.sort_unstable();
        assert_eq!(x, y);
        for (p, &item) in b.candidates.iter().enumerate() {
            let q = a.candidates.iter().position(|&i| i == item).unwrap();
            assert_eq!(a.labels[q], b.labels[p]);
        }
        for (&pa, &pb) in a.logged.iter().zip(&b.logged) {
            assert_eq!(a.candidates[pa as usize], b.candidates[pb as usize]);
        }
        moved += usize::from(a.candidates != b.candidates);
    }
    assert!(moved * 2 > ds.test.len(), "most pools change order");
    assert_eq!(glorank::stages::shuffle_candidates(&ds.test, 7), shuffled);
}

#[test]
fn a_policy_that_reads_retriever_scores_and_exposures_is_served_them() {
    use glorank::policy::{Policy, decode};
    use glorank::train::{RequestBuilder, TrainingConfig};
    use glorank::trie::{DecodeStrategy, Decoder};
    use glorank::{Device, RunDir, TokenizerConfig, stages};
    let ds = small_world(60, 80, 5);
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    ds.save(run.root()).unwrap();
    let mut tok = TokenizerConfig::default();
    tok.levels = 2;
    tok.codes = 4;
    let (_, ids) = stages::tokenize(&ds, &tok, run.tokenizer_dir()).unwrap();
    let mut training = TrainingConfig::default();
    training.policy.use_retriever_score = true;
    training.policy.use_exposures = true;
    training.policy.d_model = 16;
    training.policy.heads = 2;
    training.policy.layers = 1;
    let config = stages::policy_config(&ds, &ids, &training).unwrap();
    assert!(config.use_retriever_score && config.use_exposures);
    let dev = Device::flex();
    let policy = Policy::new(&config, &dev).unwrap();
    policy.save(&config, &run.policy_sft()).unwrap();

    let reranker = Reranker::load(run.root()).unwrap();
    assert!(reranker.uses_retriever_score() && reranker.uses_exposures());
    let builder = RequestBuilder::new(&ds, &ids).unwrap().with_exposures(true);
    let exposures = glorank::data::Exposures::new(&ds.train);
    let mut greedy = Decoder::new(DecodeStrategy::Greedy, 0).unwrap();
    let mut served_differently = 0;
    for sample in ds.test.iter().take(8) {
        let mut request = RerankRequest::from_sample(&ds, sample);
        let candidates = request.candidates.clone();
        assert_eq!(request.history.len(), ds.history(sample).items.len());
        // Without scores the policy cannot be served; with the wrong count neither.
        let e = reranker.rerank(&request).unwrap_err().to_string();
        assert!(e.contains("retriever_scores"), "{e}");
        request.retriever_scores = Some(vec![0.5; candidates.len() - 1]);
        assert!(reranker.rerank(&request).is_err());
        // With the retriever's scores but no exposure counts, neither.
        let scores = ds.retriever_scores(sample);
        request.retriever_scores = Some(scores.clone());
        let e = reranker.rerank(&request).unwrap_err().to_string();
        assert!(e.contains("exposures"), "{e}");
        request.exposures = Some(vec![0; candidates.len() + 1]);
        assert!(reranker.rerank(&request).is_err());
        // With both the served list is the evaluated one.
        request.exposures = Some(exposures.counts(sample));
        let served = reranker.rerank(&request).unwrap();
        let decoded = decode(&policy, &[builder.request(sample)], &mut greedy, &dev).unwrap();
        let evaluated: Vec<String> = decoded[0][0]
            .items
            .iter()
            .map(|&p| candidates[p].clone())
            .collect();
        assert_eq!(served, evaluated);
        // And the scores are read: reversing them changes some lists.
        request.retriever_scores = Some(scores.iter().map(|s| -10.0 * s).collect());
        if reranker.rerank(&request).unwrap() != served {
            served_differently += 1;
        }
    }
    assert!(served_differently > 0);
}
