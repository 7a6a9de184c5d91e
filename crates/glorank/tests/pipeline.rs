//! The end-to-end pipeline on a tiny synthetic world, its reuse of artifacts, and serving
//! the result with the `Reranker`.

mod common;

use common::tiny;
use glorank::{Config, Error, Hooks, NoObserver, NoProgress, Pipeline, RerankRequest, Reranker};
use std::path::Path;

/// Runs `config` into `dir`, collecting the lines the pipeline says.
fn run_saying(
    config: Config,
    dir: &Path,
) -> (glorank::Result<glorank::PipelineReport>, Vec<String>) {
    let mut said = Vec::new();
    let mut say = |l: &str| said.push(l.to_string());
    let mut observer = NoObserver;
    let result =
        Pipeline::new(config).run_with(dir, &mut Hooks::new(&mut observer, &NoProgress, &mut say));
    (result, said)
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
        if r.name == "oracle" || r.name == glorank::evaluation::BEST_LIST {
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
    let (again, said) = run_saying(tiny(), dir.path());
    let again = again.unwrap();
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
        glorank::DecodeStrategy::Beam { width: 4 }
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
    let (result, said) = run_saying(longer, dir.path());
    result.unwrap();
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
    config.eval.las = false;
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
    let (result, said) = run_saying(config, dir.path());
    result.unwrap();
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
    let run = glorank::testing::write_tiny_run(dir.path(), 4).unwrap();
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
    let mut tok = glorank::TokenizerConfig::default();
    tok.levels = 2;
    tok.codes = 4;
    let arch = glorank::PolicyArch::default().with_size(16, 2, 1);
    glorank::testing::write_run(
        run.root(),
        &ds,
        &tok,
        (&arch, &glorank::ModelInputs::default()),
    )
    .unwrap();
    let (_, config) = Policy::load(&run.policy_sft(), &glorank::Device::flex()).unwrap();
    // The policy embeds the user id: its last user field has one category per user + 1.
    assert_eq!(
        config.user_field_sizes.last(),
        Some(&(ds.user_ids.len() + 1))
    );
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
    let parse = |text: &str| Config::from_toml(text, Path::new("x.toml"));
    let e = parse("[data]\nusres = 3\n").unwrap_err();
    assert!(
        e.to_string().contains("usres") && e.to_string().contains("x.toml"),
        "{e}"
    );
    let e = parse("[rl]\ngroup_size = 1\n").unwrap_err();
    assert!(e.to_string().contains("rl.group_size"), "{e}");
    // Sizes far beyond any real need are refused when the file is read, before allocation.
    for (text, field) in [
        ("[policy]\nd_model = 1000000000\n", "policy.d_model"),
        ("[data]\nusers = 1000000000\n", "data.users"),
        ("[tokenizer]\ncodes = 1000000000\n", "tokenizer.codes"),
        (
            "[sft.optim]\nbatch_size = 1000000000\n",
            "sft.optim.batch_size",
        ),
        ("[evaluator]\nd_model = 1000000000\n", "evaluator.d_model"),
        ("[baselines]\nlayers = 1000\n", "baselines.layers"),
        ("[eval]\nbeam = 0\n", "eval.beam"),
        ("[eval]\nbeam = 65\n", "eval.beam"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.to_string().contains(field), "{text}: {e}");
    }
    // An unknown choice is refused when the file is read, with the valid names.
    let e = parse("[data]\ndataset = \"movielens\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("movielens") && e.contains("ml-100k"), "{e}");
    // The demo presets decode the GloRank rows' test lists with a beam of 8 and read the
    // items' content vectors, as the baselines do; a file without the keys does neither.
    let plain = parse("").unwrap();
    for c in [Config::quick(), Config::demo()] {
        assert_eq!(c.eval.beam, 8);
        assert!(c.policy.item_content);
        // They validate with their evaluation's beam and decay SFT's rate.
        assert_eq!(
            (c.sft.valid_beam, c.rl.valid_beam),
            (c.eval.beam, c.eval.beam)
        );
        assert!(c.sft.optim.schedule.factor(1000, 1001) < 0.2);
    }
    assert_eq!(plain.eval.beam, 1);
    assert!(!plain.policy.item_content);
    assert_eq!((plain.sft.valid_beam, plain.rl.valid_beam), (1, 1));
    assert_eq!(plain.sft.optim.schedule.factor(1000, 1001), 1.0);
    // A file format without a path is refused before anything is written.
    let mut c = Config::quick();
    c.data.dataset = glorank::DatasetKind::Ml100k;
    let dir = tempfile::tempdir().unwrap();
    let e = Pipeline::new(c).run(dir.path()).unwrap_err();
    assert!(e.to_string().contains("data.path"), "{e}");
}

#[test]
fn shipped_configurations_say_what_they_promise() {
    let root = common::manifest_dir().join("../../configs");
    let mut names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    let read = |name: &str| Config::from_file(&root.join(name)).unwrap();
    for name in &names {
        let c = read(name);
        assert!(
            c.data.path.is_none(),
            "{name}: the data path is a command-line argument"
        );
        assert_eq!(c.data.pool_size, 50);
    }
    // The two protocol presets say what they promise: every model reads the retriever's
    // score and rank, from one [inputs] section.
    for name in ["ml-1m-paper.toml", "ml-1m-paper-2core.toml"] {
        let paper = read(name);
        assert!(paper.data.user_id_feature && !paper.data.pool_excludes_history);
        assert_eq!(paper.data.rerank_train_slates, 0);
        assert!(paper.inputs.retriever_score, "{name}");
        assert_eq!(
            paper.inputs.retriever_input,
            glorank::RetrieverInput::ScoreAndRank,
            "{name}"
        );
    }
    // The synthetic benchmark world is the demo preset with twice the sessions and the
    // user's identity, read ten times faster by the policy and the baselines.
    let identity = read("synthetic-identity.toml");
    let mut expected = Config::demo();
    expected.data.sessions = 20;
    expected.data.user_id_feature = true;
    expected.inputs.user_lr_scale = 10.0;
    assert_eq!(identity, expected);
    let hardened = read("ml-100k-hardened.toml");
    assert!(hardened.data.rerank_train_slates > 0 && !hardened.inputs.retriever_score);
    assert!(hardened.data.pool_excludes_history && !hardened.data.user_id_feature);
    // The held-out presets hold out 10% of the items and give semantic IDs from content.
    for name in ["ml-100k-held-out.toml", "ml-1m-held-out.toml"] {
        let c = read(name);
        assert_eq!(c.data.held_out_share, 0.1, "{name}");
        assert_eq!(c.tokenizer.vectors, glorank::VectorKind::Content, "{name}");
        assert!(!c.inputs.retriever_score, "{name}");
    }
}

#[test]
fn a_held_out_item_is_served_from_its_content_vector_alone() {
    use glorank::data::{VectorKind, item_vectors};
    use glorank::{ModelInputs, PolicyArch, TokenizerConfig};
    let dir = tempfile::tempdir().unwrap();
    let ds = glorank::testing::held_out_world();
    let mut tok = TokenizerConfig::default();
    tok.levels = 2;
    tok.codes = 8;
    tok.vectors = VectorKind::Content;
    let arch = PolicyArch::default().with_size(16, 2, 1);
    let run = glorank::testing::write_run(dir.path(), &ds, &tok, (&arch, &ModelInputs::default()))
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
fn a_policy_that_reads_retriever_scores_and_exposures_is_served_them() {
    use glorank::policy::{Policy, decode};
    use glorank::tokenizer::SemanticIds;
    use glorank::train::RequestBuilder;
    use glorank::trie::Decoder;
    use glorank::{
        DecodeStrategy, Device, ModelInputs, PolicyArch, RetrieverInput, TokenizerConfig,
    };
    let ds = glorank::testing::small_world(60, 80, 5);
    let dir = tempfile::tempdir().unwrap();
    let mut tok = TokenizerConfig::default();
    tok.levels = 2;
    tok.codes = 4;
    let inputs = ModelInputs::default()
        .with_retriever(RetrieverInput::Score)
        .with_exposures(true);
    let arch = PolicyArch::default().with_size(16, 2, 1);
    let run = glorank::testing::write_run(dir.path(), &ds, &tok, (&arch, &inputs)).unwrap();
    let dev = Device::flex();
    let (policy, config) = Policy::load(&run.policy_sft(), &dev).unwrap();
    assert!(config.inputs.retriever_score && config.inputs.exposures);
    let ids = SemanticIds::load(&run.semantic_ids_file()).unwrap();

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

#[test]
fn a_damaged_run_directory_names_the_file_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    type Edit = fn(&Path);
    let truncate: Edit = |p| {
        let bytes = std::fs::read(p).unwrap();
        std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
    };
    let append: Edit = |p| {
        let mut bytes = std::fs::read(p).unwrap();
        bytes.extend_from_slice(b"\n ");
        std::fs::write(p, bytes).unwrap();
    };
    let delete: Edit = |p| std::fs::remove_file(p).unwrap();
    // A flipped weight byte whose directory's checksums.json was rewritten to match: only
    // the manifest still knows the directory changed.
    let forged: Edit = |p| {
        let mut bytes = std::fs::read(p).unwrap();
        let k = bytes.len() / 2;
        bytes[k] ^= 0x40;
        std::fs::write(p, bytes).unwrap();
        glorank::nn::persist::write_checksums(p.parent().unwrap()).unwrap();
    };
    let cases: [(&str, Edit, &str); 6] = [
        ("tokenizer.json", truncate, "changed"),
        ("tokenizer.json", delete, "deleted"),
        ("summary.json", append, "changed"),
        ("stats.json", append, "changed"),
        ("policy_sft/policy.json", append, "changed"),
        ("policy_sft/policy.bpk", forged, "changed"),
    ];
    for (k, (file, edit, how)) in cases.into_iter().enumerate() {
        let run = glorank::testing::write_tiny_run(&dir.path().join(k.to_string()), 1).unwrap();
        let path = run.root().join(file);
        edit(&path);
        let e = Reranker::load(run.root()).unwrap_err().to_string();
        // The file, or for a forged directory the directory the manifest recorded.
        let name = if file.ends_with(".bpk") {
            "policy_sft"
        } else {
            Path::new(file).file_name().unwrap().to_str().unwrap()
        };
        assert!(e.contains(name) && e.contains(how), "{file}: {e}");
        if name != "semantic_ids.json" {
            assert!(!e.contains("semantic_ids.json"), "{file}: {e}");
        }
    }
    // Without a manifest the files are served as they are, and the reranker says so.
    let run = glorank::testing::write_tiny_run(&dir.path().join("bare"), 1).unwrap();
    assert!(Reranker::load(run.root()).unwrap().verified());
    std::fs::remove_file(run.manifest_file()).unwrap();
    assert!(!Reranker::load(run.root()).unwrap().verified());
}

#[test]
fn an_endless_request_stream_ends_with_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let run = glorank::testing::write_tiny_run(dir.path(), 1).unwrap();
    let reranker = Reranker::load(run.root()).unwrap();
    // `/dev/zero` on standard input: the line passes the limit, is answered, and the stream
    // ends with an error after ENDLESS_LINE_FACTOR times the limit without a newline.
    let mut input = std::io::BufReader::new(std::io::repeat(0));
    let mut output = Vec::new();
    let e = reranker
        .serve_lines(&mut input, &mut output, 1024)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("line 1"), "{e}");
    let answer: serde_json::Value =
        serde_json::from_slice(output.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("max_line_bytes"),
        "{answer}"
    );
    // A long line that does end is answered and the next one served.
    let mut text = "x".repeat(5000);
    text.push('\n');
    let request = RerankRequest::from_sample(
        &glorank::data::PreparedDataset::load(run.root()).unwrap(),
        &glorank::data::PreparedDataset::load(run.root())
            .unwrap()
            .test[0],
    );
    text.push_str(&serde_json::to_string(&request).unwrap());
    text.push('\n');
    let mut output = Vec::new();
    reranker
        .serve_lines(&mut text.as_bytes(), &mut output, 1024)
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines[0]["error"].is_string() && lines[1]["list"].is_array(),
        "{lines:?}"
    );
}

#[cfg(unix)]
#[test]
fn result_files_without_end_are_errors_naming_them() {
    let e = glorank::evaluation::Predictions::read(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/dev/zero") && e.contains("line 1"), "{e}");
}
