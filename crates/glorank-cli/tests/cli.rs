//! End-to-end tests of the `glorank` binary.

use std::path::Path;
use std::process::{Command, Output};

fn glorank() -> Command {
    Command::new(env!("CARGO_BIN_EXE_glorank"))
}

/// The output of `glorank ARGS`, asserted to succeed; its standard output.
fn ok(args: &[&str]) -> String {
    let out = glorank().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "glorank {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The standard error of `glorank ARGS`, asserted to fail without a panic.
fn fails(args: &[&str]) -> String {
    let out = glorank().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "glorank {args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The keys of a small synthetic world.
const SMALL: [&str; 12] = [
    "--set",
    "data.users=60",
    "--set",
    "data.items=150",
    "--set",
    "data.sessions=4",
    "--set",
    "data.k_core=5",
    "--set",
    "data.history=20",
    "--set",
    "data.pool_size=30",
];

/// Runs `glorank prepare` on a small synthetic world into `out`, with more options.
fn prepare_small(out: &Path, extra: &[&str]) -> Output {
    glorank()
        .args(["prepare", "--dataset", "synthetic", "--quiet"])
        .args(SMALL)
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn prepare_synthetic_writes_run_directory_and_prints_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = prepare_small(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "users",
        "items",
        "interactions",
        "slates",
        "mean positives",
        "retriever recall@30",
        "glorank prepare: done in",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    let ds = glorank::data::PreparedDataset::load(dir.path()).unwrap();
    assert_eq!(ds.test.len(), 60);
    assert_eq!(ds.config.pool_size, 30);
    assert!(dir.path().join("summary.json").exists());
    // The run records the configuration it was made with, in the one tree.
    let config = glorank::Config::from_file(&dir.path().join("config.toml")).unwrap();
    assert_eq!((config.data.users, config.data.pool_size), (60, 30));
    // Out-of-sample pools that leave the retriever little data are worth a warning.
    let oos = dir.path().join("oos");
    let out = prepare_small(&oos, &["--set", "data.rerank_train_slates=1000"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the stage-1 retriever"),
        "{stderr}"
    );
    // Held-out items: counted and their shares among test candidates printed; checked.
    let out = prepare_small(
        &dir.path().join("held"),
        &["--set", "data.held_out_share=0.1"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("held-out items (test only)")
            && stdout.contains("held-out among retrieved"),
        "{stdout}"
    );
    let bad = prepare_small(
        &dir.path().join("bad"),
        &["--set", "data.held_out_share=0.9"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("held_out_share"));
}

#[test]
fn errors_are_reported_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let stderr = fails(&["prepare", "--dataset", "ml-1m", "--out", d]);
    assert!(
        stderr.contains("data.path") && stderr.contains("ml-1m"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("u.data"), "1\t2\tfive\t3\n").unwrap();
    let run = dir.path().join("run");
    let stderr = fails(&[
        "prepare",
        "--dataset",
        "ml-100k",
        "--path",
        d,
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(stderr.contains("u.data:1: field `rating`"), "{stderr}");
    // Options are keys of the one configuration tree: a mistyped key, a value of the wrong
    // type and a key of the earlier layout are named.
    let stderr = fails(&["prepare", "--out", d, "--set", "data.userz=3"]);
    assert!(stderr.contains("userz"), "{stderr}");
    let stderr = fails(&["prepare", "--out", d, "--set", "data.users=many"]);
    assert!(stderr.contains("data.users"), "{stderr}");
    let old = dir.path().join("old.toml");
    std::fs::write(&old, "eval_beam = 8\n[sft]\nlearning_rate = 0.01\n").unwrap();
    let stderr = fails(&["run", "--config", old.to_str().unwrap(), "--out", d]);
    assert!(
        stderr.contains("old.toml")
            && stderr.contains("`eval_beam` is now `eval.beam`")
            && stderr.contains("`sft.learning_rate` is now `sft.optim.learning_rate`"),
        "{stderr}"
    );
    // A stage whose upstream artifacts are missing names them and the command that builds
    // them.
    let empty = dir.path().join("empty");
    let stderr = fails(&["train", "sft", "--run", empty.to_str().unwrap(), "--quiet"]);
    assert!(stderr.contains("glorank prepare"), "{stderr}");
}

#[test]
fn tokenize_writes_ids_and_stats_for_both_methods() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(prepare_small(&data, &[]).status.success());
    let d = data.to_str().unwrap();
    for method in ["rqkmeans", "rqvae"] {
        let tok = dir.path().join(method);
        let stdout = ok(&[
            "tokenize",
            "--run",
            tok.to_str().unwrap(),
            "--data",
            d,
            "--quiet",
            "--set",
            &format!("tokenizer.method={method}"),
            "--set",
            "tokenizer.levels=2",
            "--set",
            "tokenizer.codes_per_level=[8, 4]",
            "--set",
            "tokenizer.max_epochs=3",
        ]);
        assert!(stdout.contains("unique prefix fraction"), "{stdout}");
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tok.join("stats.json")).unwrap()).unwrap();
        for field in [
            "items",
            "levels",
            "codes_per_level",
            "usage_per_level",
            "unique_prefix_fraction",
            "max_collisions",
            "reconstruction_error",
            "fit_seconds",
        ] {
            assert!(!stats[field].is_null(), "stats.json lacks {field}");
        }
        assert_eq!(stats["codes_per_level"], serde_json::json!([8, 4]));
        // The run uses the prepared data of `--data`.
        let ds = glorank::data::PreparedDataset::load(&tok).unwrap();
        let (_, ids) = glorank::tokenizer::load_artifacts(&tok, glorank::Device::flex()).unwrap();
        assert_eq!(ids.len(), ds.num_items());
    }
    // Bad arguments are reported, not panics.
    let stderr = fails(&[
        "tokenize",
        "--run",
        d,
        "--set",
        "tokenizer.levels=2",
        "--set",
        "tokenizer.codes_per_level=[8,4,2]",
    ]);
    assert!(
        stderr.contains("lists 3 sizes but `levels` is 2"),
        "{stderr}"
    );
}

/// The tiny configuration of the stage tests.
const TINY: &str = "[data]\nusers = 120\nitems = 150\nsessions = 6\npool_size = 20\nhistory = 8\n\
    k_core = 5\nretriever_factors = 2\n[tokenizer]\nlevels = 2\ncodes = 8\n\
    [policy]\nd_model = 16\nlayers = 1\n[evaluator]\nepochs = 1\npool_lists = 1\n\
    [simulator]\nepochs = 1\npool_lists = 1\n[sft]\nepochs = 2\n[sft.optim]\nbatch_size = 32\n\
    [rl]\nsteps = 4\neval_every = 2\ngroup_size = 4\n[rl.optim]\nbatch_size = 8\n\
    [baselines]\nd_model = 16\nepochs = 1\nreinforce_samples = 2\n[eval]\nlas = false\n";

#[test]
fn stage_commands_build_what_glorank_run_builds() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let c = config.to_str().unwrap();
    let whole = dir.path().join("whole");
    ok(&[
        "run",
        "--config",
        c,
        "--out",
        whole.to_str().unwrap(),
        "--quiet",
    ]);
    let staged = dir.path().join("staged");
    let s = staged.to_str().unwrap();
    ok(&["prepare", "--config", c, "--out", s, "--quiet"]);
    ok(&["tokenize", "--run", s, "--quiet"]);
    for stage in ["evaluator", "simulator", "sft", "rl"] {
        ok(&["train", stage, "--run", s, "--quiet"]);
    }
    // The dataset's and the tokenizer's files record the seconds their steps took, and the
    // models' weight files the parameter ids of their process, so the artifacts are compared
    // by what they compute: the same semantic IDs, and below the same table and lists.
    let ids = |run: &Path| std::fs::read(run.join("semantic_ids.json")).unwrap();
    assert_eq!(ids(&whole), ids(&staged));
    // The evaluation through `glorank baselines` writes the table `glorank run` wrote.
    ok(&["baselines", "--run", s]);
    for file in ["metrics.json", "predictions.jsonl"] {
        let read = |run: &Path| std::fs::read(run.join(file)).unwrap();
        assert!(read(&whole) == read(&staged), "{file} differs");
    }
}

#[test]
fn train_eval_and_baselines_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("syn");
    let d = data.to_str().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, TINY).unwrap();
    let c = config.to_str().unwrap();
    ok(&["prepare", "--config", c, "--out", d, "--quiet"]);
    ok(&["tokenize", "--run", d, "--quiet"]);
    // A run directory of its own on the prepared data of another.
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    for stage in ["evaluator", "simulator", "sft", "rl"] {
        ok(&["train", stage, "--run", o, "--data", d, "--quiet"]);
    }
    for f in [
        "config.toml",
        "sft_log.jsonl",
        "rl_log.jsonl",
        "policy_rl/policy.bpk",
        "rl_checkpoint/optimizer.bpk",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // A finished stage is reused: no more steps, the same log.
    let log = || std::fs::read_to_string(out.join("rl_log.jsonl")).unwrap();
    let before = log();
    ok(&["train", "rl", "--run", o]);
    assert_eq!(log(), before);
    assert_eq!(before.lines().count(), 3, "{before}");
    // A changed section rebuilds its stage: the RL stage again, with 2 steps.
    ok(&[
        "train",
        "rl",
        "--run",
        o,
        "--quiet",
        "--set",
        "rl.steps=2",
        "--set",
        "rl.eval_every=1",
    ]);
    let rebuilt = log();
    assert_ne!(rebuilt, before);
    assert!(
        rebuilt.lines().last().unwrap().contains("\"step\":2"),
        "{rebuilt}"
    );
    let policy_rl = out.join("policy_rl");
    let p = policy_rl.to_str().unwrap();
    let table = ok(&["eval", "--run", o, "--policy", p]);
    assert!(
        table.contains("Precision@6") && table.contains("policy_rl"),
        "{table}"
    );
    assert!(
        table.contains("Average Reward from the run's simulator"),
        "{table}"
    );
    // The reference rules and both MAP definitions stand next to the policy.
    assert!(
        table.contains("retriever reversed") && table.contains("MAP-hits@6"),
        "{table}"
    );
    // The global policy treats the pool as a set: re-ordering every pool changes nothing.
    let row = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("policy_rl"))
            .unwrap()
            .to_string()
    };
    let shuffled = ok(&[
        "eval",
        "--run",
        o,
        "--policy",
        p,
        "--shuffle-candidates",
        "3",
    ]);
    assert_eq!(row(&table), row(&shuffled));
    // A prefix penalty decodes other lists of the same policy; a negative one is refused.
    let penalised = ok(&[
        "eval",
        "--run",
        o,
        "--set",
        "eval.beam=2",
        "--set",
        "eval.prefix_penalty=1.5",
    ]);
    assert!(penalised.contains("policy_rl"), "{penalised}");
    let stderr = fails(&["eval", "--run", o, "--set", "eval.prefix_penalty=-1"]);
    assert!(stderr.contains("prefix penalty"), "{stderr}");
    let table = ok(&["baselines", "--run", o]);
    for row in [
        "MF order",
        "retriever reversed",
        "pool novelty",
        "popularity",
        "PRM",
        "Seq2Slate",
        "DLCM",
        "GloRank SFT+RL",
        "oracle",
    ] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    let metrics = glorank::evaluation::MetricsFile::read(&out).unwrap();
    let p = metrics.row("oracle").unwrap().metrics.precision.mean;
    assert!(p > 0.0 && p <= 1.0);
    // A bad value is an error naming the field, not a panic.
    let stderr = fails(&[
        "train",
        "sft",
        "--run",
        o,
        "--set",
        "sft.optim.batch_size=0",
    ]);
    assert!(stderr.contains("sft.optim.batch_size"), "{stderr}");
}

#[test]
fn run_rerank_and_bench_on_a_tiny_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    std::fs::write(
        &config,
        "[eval]\nbaselines = false\nlas = false\n\
         [data]\nusers = 100\nitems = 120\nsessions = 6\nk_core = 5\nhistory = 8\npool_size = 20\n\
         [tokenizer]\nlevels = 2\ncodes = 8\n[policy]\nd_model = 16\nlayers = 1\n\
         [evaluator]\nepochs = 1\npool_lists = 1\n[simulator]\nepochs = 1\npool_lists = 1\n\
         [sft]\nepochs = 1\n[rl]\nsteps = 2\ngroup_size = 2\n[rl.optim]\nbatch_size = 4\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let status = glorank()
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--out",
            o,
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("GloRank SFT+RL") && table.contains("true clicks"),
        "{table}"
    );
    for f in [
        "report.md",
        "metrics.json",
        "predictions.jsonl",
        "curve_rl.svg",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }

    // rerank: a good request, a malformed line and an unknown item give three answers.
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(out.join("predictions.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let good = serde_json::json!({"user": first["user"], "candidates": first["candidates"]});
    let mut unknown = good.clone();
    unknown["candidates"][0] = "no-such-item".into();
    // Good, malformed, unknown item, invalid UTF-8, over-long and again good lines: every line
    // gets an answer with its number, and the stream goes on to the end.
    let mut input = format!("{good}\n{{not json\n{unknown}\n").into_bytes();
    input.extend_from_slice(b"{\"candidates\": [\"\xff\xfe\"]}\n");
    input.extend_from_slice(format!("{}\n", "x".repeat(5000)).as_bytes());
    input.extend_from_slice(format!("{good}\n").as_bytes());
    let mut child = glorank()
        .args(["rerank", "--set", "serve.max_line_bytes=4096", "--model", o])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let answer = child.wait_with_output().unwrap();
    assert!(answer.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&answer.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["list"].as_array().unwrap().len(), 6);
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().unwrap().contains("malformed"));
    assert!(lines[2]["error"].as_str().unwrap().contains("no-such-item"));
    assert_eq!(lines[3]["line"], 4);
    assert!(lines[3]["error"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(lines[4]["line"], 5);
    assert!(
        lines[4]["error"]
            .as_str()
            .unwrap()
            .contains("serve.max_line_bytes")
    );
    assert_eq!(lines[5]["list"], lines[0]["list"]);
    // A beam wider than the cap, or a negative prefix penalty, is refused before anything
    // is read.
    for (flag, value, message) in [
        ("--set", "serve.decode=beam:1000000", "beam width"),
        ("--set", "serve.prefix_penalty=-1", "prefix penalty"),
    ] {
        let refused = glorank()
            .args(["rerank", flag, value, "--model", o])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!refused.status.success(), "{flag} {value}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains(message));
    }

    let m = out.join("metrics.json");
    let agg = glorank()
        .args(["aggregate", m.to_str().unwrap(), m.to_str().unwrap()])
        .output()
        .unwrap();
    let agg = String::from_utf8_lossy(&agg.stdout);
    assert!(
        agg.contains("| GloRank SFT+RL |") && agg.contains("± 0.0000"),
        "{agg}"
    );
    // A reader that closes the pipe early ends the output quietly, without a panic.
    let mut child = glorank()
        .args(["aggregate", m.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert!(
        closed.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    // compare: the paired mean difference over the same requests is the difference of the
    // two rows' means in metrics.json; a run against itself differs by exactly zero.
    let compared = glorank()
        .args([
            "compare",
            o,
            "GloRank SFT+RL",
            "MF order",
            "--metric",
            "ndcg",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&compared.stdout);
    assert!(compared.status.success(), "{text}");
    let line = text.lines().find(|l| l.contains("- MF order:")).unwrap();
    let printed: f64 = line
        .split_once(": ")
        .unwrap()
        .1
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
    let mean = |row: &str| metrics[row]["ndcg"]["mean"].as_f64().unwrap();
    assert!(
        (printed - (mean("GloRank SFT+RL") - mean("MF order"))).abs() < 1e-4,
        "{text}"
    );
    let itself = glorank()
        .args(["compare", o, "MF order", "MF order", "--against", o])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&itself.stdout);
    assert!(text.contains("+0.0000 (+0.0000 to +0.0000)"), "{text}");
    let unknown = glorank()
        .args(["compare", o, "No such method"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("it has: MF order"));
    // `[]` or a run's summary.json are not metrics files.
    let not_metrics = out.join("not-metrics.json");
    std::fs::write(&not_metrics, "[]").unwrap();
    let wrong = glorank()
        .args(["aggregate", not_metrics.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not a metrics.json"));
    let missing = glorank()
        .args(["aggregate", "no/such/metrics.json"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    // `--slice` aggregates a slice of the runs; a key without method rows is an error.
    let sliced = out.join("sliced-metrics.json");
    let row = |mean: f64| {
        let s = serde_json::json!({"n": 1, "mean": mean, "std_err": 0.0, "ci_low": mean, "ci_high": mean});
        serde_json::json!({"precision": s, "recall": s, "f1": s, "ndcg": s, "map": s,
            "map_hits": s, "hit": s})
    };
    let file = serde_json::json!({
        "A": row(0.5),
        "held_out_cold": {"A": row(0.25)},
        "held_out_pools": {"items": 3, "logged_cold_share": 0.1, "retrieved_cold_share": 0.1,
            "any_cold_requests": 2, "per_method": {}},
    });
    std::fs::write(&sliced, file.to_string()).unwrap();
    let s = sliced.to_str().unwrap();
    let cold = glorank()
        .args(["aggregate", "--slice", "held_out_cold", s, s])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cold.stdout);
    assert!(
        cold.status.success() && text.contains("| A | 0.2500 ± 0.0000 |"),
        "{text}"
    );
    for key in ["held_out_pools", "no_such_slice"] {
        let bad = glorank()
            .args(["aggregate", "--slice", key, s])
            .output()
            .unwrap();
        assert!(!bad.status.success());
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains(&format!("no slice `{key}`")), "{err}");
    }

    let bench = glorank()
        .args(["bench", "--model", o, "--latency-requests", "5"])
        .output()
        .unwrap();
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    let text = String::from_utf8_lossy(&bench.stdout);
    assert!(
        text.contains("greedy") && text.contains("beam4") && text.contains("samples/s"),
        "{text}"
    );
    // The report says what was measured, not what was asked.
    let bench = glorank()
        .args([
            "bench",
            "--model",
            o,
            "--latency-requests",
            "0",
            "--batch",
            "1000000",
            "--train-steps",
            "0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bench.stdout);
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    assert!(text.contains("latency not measured"), "{text}");
    assert!(
        text.contains("(all the requests there are; 1000000 asked)"),
        "{text}"
    );
    assert!(!text.contains("batch 1000000 (req/s)"), "{text}");
    let greedy = text.lines().find(|l| l.starts_with("greedy")).unwrap();
    assert_eq!(greedy.split_whitespace().nth(1), Some("-"), "{text}");
    let zero = glorank()
        .args(["bench", "--model", o, "--batch", "0"])
        .output()
        .unwrap();
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--batch"));
    // Without a run directory: the default-dimension policy on generated requests, as JSON.
    let synthetic = glorank()
        .args([
            "bench",
            "--synthetic",
            "--json",
            "--latency-requests",
            "2",
            "--batch",
            "4",
        ])
        .output()
        .unwrap();
    assert!(
        synthetic.status.success(),
        "{}",
        String::from_utf8_lossy(&synthetic.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&synthetic.stdout).unwrap();
    assert!(
        json["train_samples_per_s"].as_f64().unwrap() > 0.0,
        "{json}"
    );
    assert_eq!(json["decode"][1]["strategy"], "beam4");
    let none = glorank().args(["bench"]).output().unwrap();
    assert!(!none.status.success());
}

#[test]
fn export_log_writes_the_runs_requests_as_a_request_log() {
    let dir = tempfile::tempdir().unwrap();
    let run = glorank::testing::write_tiny_run(&dir.path().join("run"), 1).unwrap();
    let out = dir.path().join("log");
    let text = ok(&[
        "export-log",
        "--run",
        run.root().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let ds = glorank::data::PreparedDataset::load(run.root()).unwrap();
    let n = ds.train.len() + ds.valid.len() + ds.test.len();
    assert!(text.starts_with(&format!("{n} logged requests")), "{text}");
    let config = glorank::data::LogConfig::default()
        .with_signals(&["click", "like", "star", "rating"], "click");
    let log = glorank::data::read_request_log(&out, &config).unwrap();
    assert_eq!(log.requests.len(), n);
    // The same requests in Parquet.
    let parquet = dir.path().join("parquet");
    ok(&[
        "export-log",
        "--run",
        run.root().to_str().unwrap(),
        "--out",
        parquet.to_str().unwrap(),
        "--format",
        "parquet",
    ]);
    assert!(parquet.join("requests.parquet").exists());
    let again = glorank::data::read_request_log(&parquet, &config).unwrap();
    assert_eq!(again.requests, log.requests);
    assert!(out.join("items.jsonl").exists() && out.join("vocabularies.json").exists());
    assert_eq!(log.requests[0].request_id, "train-0");
    let e = fails(&[
        "export-log",
        "--run",
        "no/such/run",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("no/such/run"), "{e}");
}

#[test]
fn synth_log_writes_a_log_that_check_log_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("log");
    let text = ok(&[
        "synth-log",
        "--out",
        out.to_str().unwrap(),
        "--requests",
        "30",
        "--users",
        "20",
        "--items",
        "100",
        "--pool-size",
        "12",
        "--part-rows",
        "10",
        "--quiet",
    ]);
    assert!(text.starts_with("30 logged requests"), "{text}");
    assert!(out.join("part-00002.parquet").exists());
    let text = ok(&[
        "check-log",
        "--path",
        out.to_str().unwrap(),
        "--set",
        "log.signals=[\"click\",\"like\",\"star\",\"rating\"]",
    ]);
    assert!(text.contains("30 valid"), "{text}");
}

#[test]
fn aggregate_says_when_a_cell_has_fewer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let row = |mean: f64| {
        let s = serde_json::json!({"n": 1, "mean": mean, "std_err": 0.0, "ci_low": mean, "ci_high": mean});
        serde_json::json!({"precision": s, "recall": s, "f1": s, "ndcg": s, "map": s,
            "map_hits": s, "hit": s})
    };
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::fs::write(
        &a,
        serde_json::json!({"A": row(0.5), "B": row(0.25)}).to_string(),
    )
    .unwrap();
    std::fs::write(&b, serde_json::json!({"A": row(0.7)}).to_string()).unwrap();
    let text = ok(&["aggregate", a.to_str().unwrap(), b.to_str().unwrap()]);
    let line = text.lines().find(|l| l.starts_with("| B |")).unwrap();
    assert!(line.contains("0.2500 (1 of 2 runs)"), "{text}");
    let line = text.lines().find(|l| l.starts_with("| A |")).unwrap();
    assert!(!line.contains("of 2 runs"), "{text}");
    // A malformed figure is an error naming the file and the entry, not a skipped cell.
    let mut bad = serde_json::json!({"A": row(0.5)});
    bad["A"]["ndcg"]["mean"] = "high".into();
    std::fs::write(&b, bad.to_string()).unwrap();
    let e = fails(&["aggregate", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(e.contains("b.json") && e.contains("`A`"), "{e}");
}

#[test]
fn serve_answers_over_http_and_stops_on_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let run = glorank::testing::write_tiny_run(&dir.path().join("run"), 1).unwrap();
    let ds = glorank::data::PreparedDataset::load(run.root()).unwrap();
    let candidates: Vec<&str> = ds.test[0]
        .candidates
        .iter()
        .map(|&i| ds.item_ids[i as usize].as_str())
        .collect();
    let mut child = glorank()
        .args(["serve", "--set", "serve.addr=127.0.0.1:0", "--model"])
        .arg(run.root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first}"))
        .to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let request = serde_json::json!({ "candidates": candidates }).to_string();
    let mut answer = agent
        .post(format!("{base}/rerank"))
        .send(request.as_str())
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let answer: serde_json::Value =
        serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(answer["list"].as_array().unwrap().len(), 6);
    let health = agent
        .get(format!("{base}/health"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    // SIGTERM: a graceful stop with a zero exit status.
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
    // A cold item, known only by its content vector, through `glorank rerank`: the same
    // list as the library gives, and the cold id may be chosen.
    let vectors =
        glorank::data::item_vectors(&ds, &glorank::TokenizerConfig::default().vector_source(&ds))
            .unwrap();
    let mut cold = glorank::RerankRequest::from_sample(&ds, &ds.test[0]);
    let replaced = ds
        .item_ids
        .iter()
        .position(|i| *i == cold.candidates[0])
        .unwrap();
    cold.candidates[0] = "new-release".into();
    cold.candidate_vectors.insert(
        "new-release".into(),
        vectors.data[replaced * vectors.dim..(replaced + 1) * vectors.dim].to_vec(),
    );
    let want = glorank::Reranker::load(run.root())
        .unwrap()
        .rerank(&cold)
        .unwrap();
    let mut child = glorank()
        .args(["rerank", "--model"])
        .arg(run.root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(
        child.stdin.take().unwrap(),
        "{}",
        serde_json::to_string(&cold).unwrap()
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let answer: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(answer["list"], serde_json::json!(want), "{answer}");
    // A bad limit is refused before the model loads, naming the option.
    let bad = glorank()
        .args(["serve", "--set", "serve.max_beam=999", "--model"])
        .arg(run.root())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("serve.max_beam"));
}

#[test]
fn config_prints_the_tree_a_command_would_run_with() {
    let text = ok(&["config", "--preset", "quick", "--set", "sft.epochs=5"]);
    let c = glorank::Config::from_toml(&text, Path::new("printed.toml")).unwrap();
    let mut want = glorank::Config::quick();
    want.sft.epochs = 5;
    assert_eq!(c, want);
    let stderr = fails(&["config", "--set", "sft.optim.batch_size=0"]);
    assert!(stderr.contains("sft.optim.batch_size"), "{stderr}");
}

/// The front-ends use the facade's own types: no source of the CLI, the HTTP server or the
/// Python bindings names an inner crate's module through the facade's re-exports.
#[test]
fn front_ends_use_only_the_facade() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let inner = [
        "data",
        "nn",
        "policy",
        "reward",
        "tokenizer",
        "train",
        "trie",
        "metrics",
        "baselines",
        "burn",
    ];
    let mut found = Vec::new();
    for front in ["glorank-cli", "glorank-serve", "glorank-py"] {
        let src = crates.join(front).join("src");
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for module in inner {
                let needle = format!("glorank::{module}::");
                if text.contains(&needle) {
                    found.push(format!("{} names {needle}", path.display()));
                }
            }
            for crate_name in inner.iter().map(|m| format!("glorank_{m}")) {
                if text.contains(&format!("{crate_name}::")) {
                    found.push(format!("{} names {crate_name}", path.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
