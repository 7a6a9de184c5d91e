//! A seeded mutation fuzzer over every input the project reads: the data readers, the
//! request parser and the HTTP server's body parser (and serving what parses), the request
//! log reader, the configuration parser and every artifact loader. Each case mutates a valid input (bit flips, byte edits, truncation, chunk
//! duplication and deletion, number swaps, random bytes) and feeds it to its reader inside
//! `catch_unwind`: an error is fine, a panic is a failure. An abort (out of memory) would end
//! the process, so a run that completes had none.
//!
//! The short run is part of `cargo test`; the long run is
//! `GLORANK_FUZZ_CASES=1000000 cargo test --release -p glorank --test fuzz -- --ignored --nocapture`.

mod common;

use glorank::data::{CsvConfig, ItemVectorSource, LogConfig, LoggedRequest, PreparedDataset};
use glorank::policy::Policy;
use glorank::reward::{RewardConfig, RewardRole, UserResponseModel};
use glorank::tokenizer::SemanticIds;
use glorank::{Config, Device, RerankCall, RerankRequest, Reranker, RunDir};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// SplitMix64: a tiny seeded generator (the fuzzer needs no statistical quality).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One structured mutation of `input`.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                v.truncate(rng.below(len));
            }
            4 if len > 0 => {
                // Duplicate a chunk.
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            5 if len > 0 => {
                // Delete a chunk.
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                v.drain(a..b);
            }
            6 => {
                // Replace a digit run with an extreme number.
                let extremes: [&[u8]; 8] = [
                    b"0",
                    b"-1",
                    b"4294967296",
                    b"18446744073709551616",
                    b"1e308",
                    b"NaN",
                    b"-0.0",
                    b"99999999999",
                ];
                if let Some(i) = (0..len)
                    .map(|k| (k + rng.below(len)) % len)
                    .find(|&k| v[k].is_ascii_digit())
                {
                    let mut j = i;
                    while j < v.len() && (v[j].is_ascii_digit() || v[j] == b'.') {
                        j += 1;
                    }
                    let e = extremes[rng.below(extremes.len())];
                    v.splice(i..j, e.iter().copied());
                }
            }
            7 => {
                // Random bytes, sometimes without any newline.
                let n = rng.below(256);
                v = (0..n).map(|_| rng.next() as u8).collect();
            }
            _ if len > 1 => {
                // Swap two bytes.
                let (a, b) = (rng.below(len), rng.below(len));
                v.swap(a, b);
            }
            _ => {}
        }
    }
    v
}

/// Valid inputs and the run directory the loaders and the request parser use.
struct Corpus {
    dir: tempfile::TempDir,
    run: PathBuf,
    reranker: Reranker,
    ds: PreparedDataset,
    seeds: Vec<(&'static str, Vec<u8>)>,
}

/// Two logged requests (JSON Lines) from the serving request `request`.
fn log_seed(request: &serde_json::Value, candidates: &[String]) -> Vec<u8> {
    let mut row = request.clone();
    // A log row's vectors belong to its candidates.
    row.as_object_mut().unwrap().remove("candidate_vectors");
    row["request_id"] = "r1".into();
    row["timestamp"] = 1.into();
    row["shown"] = serde_json::json!([candidates[0], candidates[1]]);
    row["feedback"] = serde_json::json!({"click": [1, 0], "like": [0, 0]});
    let mut second = row.clone();
    second["request_id"] = 2.into();
    format!("{row}\n{second}\n").into_bytes()
}

fn corpus() -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let run_path = dir.path().join("run");
    let run = glorank::testing::write_tiny_run(&run_path, 7).unwrap();
    let ds = PreparedDataset::load(run.root()).unwrap();
    let ids = SemanticIds::load(&run.semantic_ids_file()).unwrap();
    let dev = Device::flex();
    let rc = RewardConfig::for_role(RewardRole::Evaluator, ids.vocab_sizes())
        .with_shape(6, 8)
        .with_size(8, 2, 1);
    UserResponseModel::new(&rc, &dev)
        .unwrap()
        .save(&rc, &run.reward_model(RewardRole::Evaluator))
        .unwrap();
    let reranker = Reranker::load(run.root()).unwrap();
    let read = |p: &Path| std::fs::read(p).unwrap();
    let candidates: Vec<String> = ds.test[0]
        .candidates
        .iter()
        .map(|&i| ds.item_ids[i as usize].clone())
        .collect();
    let request = serde_json::json!({
        "user": ds.user_ids[0],
        "history": [{"item": candidates[0], "labels": 3}],
        "candidates": candidates,
        "candidate_vectors": {"new": [0.1, 0.2]},
        "retriever_scores": vec![0.5; 12],
    });
    let seeds = vec![
        ("ml100k", b"1\t10\t5\t881250949\n1\t11\t3\t881250950\n2\t10\t4\t881250951\n".to_vec()),
        ("ml1m", b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300761\n".to_vec()),
        ("amazon", b"A1,B1,5.0,1400000000\nA1,B2,3.0,1400000001\nA2,B1,4.0,1400000002\n".to_vec()),
        ("implicit", b"0 1 2 3\n1 2 3\n2 0 1\n".to_vec()),
        ("csv", b"user,item,rating,timestamp\nu1,i1,5,10\nu1,i2,3,11\nu2,i1,4,12\n".to_vec()),
        ("vectors_csv", {
            let mut t = String::new();
            for id in &ds.item_ids {
                t.push_str(&format!("{id},0.1,0.2,0.3\n"));
            }
            t.into_bytes()
        }),
        ("request", request.to_string().into_bytes()),
        // The HTTP server's body parser: one request, or a batch with a bad member.
        ("http_call", request.to_string().into_bytes()),
        ("http_call", serde_json::json!([request, {"candidates": 7}, request]).to_string().into_bytes()),
        ("request_log", log_seed(&request, &candidates)),
        ("request_log_parquet", {
            let text = String::from_utf8(log_seed(&request, &candidates)).unwrap();
            let rows: Vec<LoggedRequest> = text
                .lines()
                .map(|l| LoggedRequest::from_json(l).unwrap())
                .collect();
            let p = dir.path().join("seed.parquet");
            let signals = ["click".to_string(), "like".to_string()];
            glorank::data::write_request_log_parquet(&p, &rows, &signals).unwrap();
            read(&p)
        }),
        ("items_catalog", {
            let mut t = String::new();
            for id in &ds.item_ids {
                t.push_str(&format!("{{\"item\": \"{id}\", \"vector\": [0.1, 0.2], \"categories\": [\"a\"]}}\n"));
            }
            t.into_bytes()
        }),
        ("config", std::fs::read(
            common::manifest_dir().join("../../configs/ml-100k.toml"),
        )
        .unwrap()),
        ("dataset", read(&run.dataset_file())),
        ("semantic_ids", read(&run.semantic_ids_file())),
        ("tokenizer", read(&run.tokenizer_file())),
        ("policy_json", read(&run.policy_sft().join("policy.json"))),
        ("policy_bpk", read(&run.policy_sft().join("policy.bpk"))),
        ("reward_json", read(&run.reward_model(RewardRole::Evaluator).join("reward.json"))),
        ("checksums", read(&run.policy_sft().join("checksums.json"))),
        ("manifest", br#"{"version":1,"artifacts":{"sft":{"config":{},"inputs":{},"checksum":"crc32:0:1"}}}"#.to_vec()),
    ];
    Corpus {
        dir,
        run: run_path,
        reranker,
        ds,
        seeds,
    }
}

/// Feeds `bytes` to the reader of `target`; returns whether it was accepted (`Ok`).
fn feed(c: &Corpus, target: &str, bytes: &[u8], case: u64) -> bool {
    let scratch = c.dir.path().join(format!("case{}", case % 4));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let write = |name: &str| {
        let p = scratch.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // A copy of one artifact directory with one file replaced by the mutated bytes.
    let with_file = |from: &Path, name: &str| {
        let to = scratch.join("artifact");
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
        std::fs::write(to.join(name), bytes).unwrap();
        to
    };
    let run = RunDir::new(&c.run);
    match target {
        "ml100k" => {
            write("u.data");
            // The item and user files of the seed's ids, so a valid u.data is accepted.
            let flags = "|0".repeat(19);
            let items: String = [10, 11]
                .iter()
                .map(|i| format!("{i}|Item {i} (1995)|01-Jan-1995||http://x{flags}\n"))
                .collect();
            std::fs::write(scratch.join("u.item"), items).unwrap();
            std::fs::write(
                scratch.join("u.user"),
                "1|24|M|technician|85711\n2|53|F|other|94043\n",
            )
            .unwrap();
            glorank::data::read_ml100k(&scratch).is_ok()
        }
        "ml1m" => {
            write("ratings.dat");
            std::fs::write(
                scratch.join("movies.dat"),
                "1193::One Flew (1975)::Drama\n661::James (1996)::Animation\n",
            )
            .unwrap();
            std::fs::write(
                scratch.join("users.dat"),
                "1::F::1::10::48067\n2::M::56::16::70072\n",
            )
            .unwrap();
            glorank::data::read_ml1m(&scratch).is_ok()
        }
        "amazon" => glorank::data::read_amazon_csv(&write("ratings.csv")).is_ok(),
        "implicit" => glorank::data::read_implicit(&write("train.txt")).is_ok(),
        "csv" => glorank::data::read_csv(&write("log.csv"), &CsvConfig::default()).is_ok(),
        "vectors_csv" => {
            let p = write("vectors.csv");
            glorank::data::item_vectors(&c.ds, &ItemVectorSource::File(p)).is_ok()
        }
        "request" => match std::str::from_utf8(bytes).map(RerankRequest::from_json) {
            Ok(Ok(r)) => c.reranker.rerank(&r).is_ok(),
            _ => false,
        },
        "http_call" => match RerankCall::parse(bytes) {
            Ok(RerankCall::One(r)) => c.reranker.rerank(&r).is_ok(),
            Ok(RerankCall::Batch(parsed)) => {
                let valid: Vec<RerankRequest> = parsed.into_iter().filter_map(Result::ok).collect();
                c.reranker.rerank_batch(&valid).iter().all(Result::is_ok)
            }
            Ok(_) | Err(_) => false,
        },
        "request_log" => {
            let config = LogConfig::default()
                .with_signals(&["click", "like"], "click")
                .with_max_invalid(1);
            glorank::data::read_request_log(&write("log.jsonl"), &config).is_ok()
        }
        "request_log_parquet" => {
            let config = LogConfig::default()
                .with_signals(&["click", "like"], "click")
                .with_max_invalid(1);
            glorank::data::read_request_log(&write("log.parquet"), &config).is_ok()
        }
        "items_catalog" => {
            // A log folder: the seed's requests and this catalog, every request trained on.
            write("items.jsonl");
            let requests = c
                .seeds
                .iter()
                .find(|(t, _)| *t == "request_log")
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            std::fs::write(scratch.join("requests.jsonl"), requests).unwrap();
            let config = LogConfig::default()
                .with_signals(&["click", "like"], "click")
                .with_split(glorank::LogSplit::Time, 0.0, 0.0);
            let protocol = glorank::data::ProtocolConfig::default().with_shape(6, 8, 12);
            glorank::data::prepare_log(&scratch, &config, &protocol, &glorank::NoProgress).is_ok()
        }
        "config" => match std::str::from_utf8(bytes) {
            Ok(t) => Config::from_toml(t, Path::new("fuzz.toml")).is_ok(),
            Err(_) => false,
        },
        "dataset" => {
            write(glorank::data::DATASET_FILE);
            PreparedDataset::load(&scratch).is_ok()
        }
        "semantic_ids" => SemanticIds::load(&write("semantic_ids.json")).is_ok(),
        "tokenizer" => {
            write("tokenizer.json");
            glorank::tokenizer::load_tokenizer(&scratch, Device::flex()).is_ok()
        }
        "policy_json" => Policy::load(
            &with_file(&run.policy_sft(), "policy.json"),
            &Device::flex(),
        )
        .is_ok(),
        "policy_bpk" => {
            // Without the checksum list the weights themselves must be checked.
            let d = with_file(&run.policy_sft(), "policy.bpk");
            let _ = std::fs::remove_file(d.join("checksums.json"));
            Policy::load(&d, &Device::flex()).is_ok()
        }
        "reward_json" => {
            let d = with_file(&run.reward_model(RewardRole::Evaluator), "reward.json");
            let _ = std::fs::remove_file(d.join("checksums.json"));
            UserResponseModel::load(&d, &Device::flex()).is_ok()
        }
        "checksums" => Policy::load(
            &with_file(&run.policy_sft(), "checksums.json"),
            &Device::flex(),
        )
        .is_ok(),
        "manifest" => {
            write("manifest.json");
            RunDir::new(&scratch).manifest().is_ok()
        }
        other => panic!("unknown target {other}"),
    }
}

/// Runs `cases` mutated inputs round-robin over the targets; returns (cases, accepted, panics).
fn fuzz(cases: u64, seed: u64) -> (u64, u64, Vec<String>) {
    let c = corpus();
    let mut rng = Rng(seed);
    let mut accepted = 0;
    let mut panics = Vec::new();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for case in 0..cases {
        let (target, valid) = &c.seeds[(case as usize) % c.seeds.len()];
        let input = mutate(valid, &mut rng);
        match catch_unwind(AssertUnwindSafe(|| feed(&c, target, &input, case))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panics.push(format!(
                    "case {case} ({target}): {msg}; input {:?}",
                    String::from_utf8_lossy(&input)
                ));
            }
        }
    }
    std::panic::set_hook(hook);
    (cases, accepted, panics)
}

#[test]
fn every_seed_is_accepted_unmutated() {
    // The fuzzer starts from valid inputs: each seed must pass its reader as it is.
    let c = corpus();
    for (case, (target, bytes)) in c.seeds.iter().enumerate() {
        assert!(
            feed(&c, target, bytes, case as u64),
            "seed `{target}` is refused"
        );
    }
}

#[test]
fn every_reader_survives_mutated_inputs() {
    let (cases, accepted, panics) = fuzz(3_000, 1);
    assert!(
        panics.is_empty(),
        "{} panics, first: {}",
        panics.len(),
        panics[0]
    );
    // The mutations are not all rejected: some stay valid, so the readers are exercised past
    // their first check.
    assert!(
        accepted > 0 && accepted < cases,
        "{accepted} of {cases} accepted"
    );
}

#[test]
#[ignore = "long run: GLORANK_FUZZ_CASES=1000000 cargo test --release -p glorank --test fuzz -- --ignored --nocapture"]
fn long_fuzz_run() {
    let cases: u64 = std::env::var("GLORANK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let t0 = std::time::Instant::now();
    let (cases, accepted, panics) = fuzz(cases, 20261130);
    println!(
        "fuzz: {cases} cases, {accepted} accepted, {} panics, {:.1} s",
        panics.len(),
        t0.elapsed().as_secs_f64()
    );
    for p in panics.iter().take(20) {
        println!("  {p}");
    }
    assert!(panics.is_empty());
}
