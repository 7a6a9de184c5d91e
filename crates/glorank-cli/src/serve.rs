//! `glorank demo`, `run`, `rerank`, `serve`, `bench`, `aggregate` and `compare`.

use crate::CliError;
use crate::train::StepBar;
use glorank::data::{BoundedLine, read_line_bounded};
use glorank::{Pipeline, PipelineConfig, RerankRequest, Reranker};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `glorank demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A small world and short training (about two minutes) for a first look.
    #[arg(long)]
    pub quick: bool,
    /// Run directory (default `runs/demo` or `runs/demo-quick`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `glorank run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Pipeline configuration (TOML; see `configs/`).
    #[arg(long)]
    pub config: PathBuf,
    /// Data path, overriding `data.path` of the configuration.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the data shuffling, the tokenizer and every model (overrides the file).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `glorank rerank`.
#[derive(Debug, clap::Args)]
pub struct RerankArgs {
    /// Run directory (with `policy_rl/` or `policy_sft/`).
    #[arg(long)]
    pub model: PathBuf,
    /// A policy directory to serve instead of the run's own.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Decoding: greedy, beam:W, sample:T or sample:T:K (default: as the run's evaluation,
    /// a beam of its `eval_beam` when above 1, else greedy).
    #[arg(long)]
    pub decode: Option<glorank::trie::DecodeStrategy>,
    /// Beam width, a shorthand for `--decode beam:W` (1: greedy; at most 256).
    #[arg(long, conflicts_with = "decode")]
    pub beam: Option<usize>,
    /// Prefix-repetition penalty: each token loses this much per earlier item of the list
    /// sharing its semantic-ID prefix, so lists spread over clusters (0: none, the default).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub prefix_penalty: f32,
    /// Longest request line, in bytes; a longer one gets an error line and is skipped.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_line_bytes: usize,
}

/// Arguments of `glorank serve`; every default is [`glorank_serve::ServeConfig`]'s.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Run directory (with `policy_rl/` or `policy_sft/`).
    #[arg(long)]
    pub model: PathBuf,
    /// A policy directory to serve instead of the run's own.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Address to listen on, HOST:PORT (port 0: any free port, printed at start).
    #[arg(long, default_value_t = glorank_serve::ServeConfig::default().addr)]
    pub addr: String,
    /// Default decoding: greedy, beam:W, sample:T or sample:T:K (a call may ask for another
    /// with `?decode=`; default: as the run's evaluation, a beam of its `eval_beam` when
    /// above 1, else greedy).
    #[arg(long)]
    pub decode: Option<glorank::trie::DecodeStrategy>,
    /// Prefix-repetition penalty: each token loses this much per earlier item of the list
    /// sharing its semantic-ID prefix, so lists spread over clusters (0: none, the default).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub prefix_penalty: f32,
    /// Most requests decoded in one batch.
    #[arg(long, default_value_t = glorank_serve::ServeConfig::default().max_batch)]
    pub max_batch: usize,
    /// Longest wait (ms) for more requests after the first of a batch.
    #[arg(long, default_value_t = glorank_serve::ServeConfig::default().max_wait_ms)]
    pub max_wait_ms: u64,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = glorank_serve::ServeConfig::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most requests in one call's array.
    #[arg(long, default_value_t = glorank_serve::ServeConfig::default().max_requests_per_call)]
    pub max_requests_per_call: usize,
    /// Widest beam a call may ask for.
    #[arg(long, default_value_t = glorank_serve::ServeConfig::default().max_beam)]
    pub max_beam: usize,
    /// Calls waiting for the batcher before new ones get 503.
    #[arg(long, default_value_t = glorank_serve::ServeConfig::default().queue)]
    pub queue: usize,
}

/// Arguments of `glorank bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Run directory (with `dataset.bin`, `semantic_ids.json` and a policy).
    #[arg(long, required_unless_present = "synthetic")]
    pub model: Option<PathBuf>,
    /// Time the default-dimension policy on generated requests instead (no run directory).
    #[arg(long)]
    pub synthetic: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Batch size of the throughput and training measurements.
    #[arg(long, default_value_t = glorank::bench::BenchOptions::default().batch)]
    pub batch: usize,
    /// Requests timed one by one for the latency percentiles.
    #[arg(long, default_value_t = glorank::bench::BenchOptions::default().latency_requests)]
    pub latency_requests: usize,
    /// Timed training steps after a warm-up step (0: time decoding only).
    #[arg(long, default_value_t = glorank::bench::BenchOptions::default().train_steps)]
    pub train_steps: usize,
    /// Data-parallel shards of the training steps (see `[sft] shards`).
    #[arg(long, default_value_t = glorank::bench::BenchOptions::default().train_shards)]
    pub train_shards: usize,
    /// Compute device: flex, ndarray (`ndarray` feature) or wgpu (`wgpu` feature).
    #[arg(long, default_value_t = glorank::nn::Backend::Flex)]
    pub device: glorank::nn::Backend,
    /// Also decode this many requests greedily on flex and on `--device` with the same
    /// weights, and report how many lists are identical (`parity_identical` of
    /// `parity_requests`).
    #[arg(long, default_value_t = 0)]
    pub parity: usize,
    /// Decode with burn's operations on the device even on a CPU (the path before the host
    /// decoder; for comparisons).
    #[arg(long)]
    pub decode_on_device: bool,
}

fn run_pipeline(
    config: PipelineConfig,
    out: &std::path::Path,
    quiet: bool,
) -> Result<(), CliError> {
    let t0 = Instant::now();
    let mut bar = StepBar::new(quiet);
    let report = Pipeline::new(config).run_with(out, &mut bar, &mut |line| {
        if !quiet {
            errln!("[{:>6.1}s] {line}", t0.elapsed().as_secs_f64());
        }
    })?;
    outln!("\n{}", report.table);
    outln!("stage timings (s):");
    for (stage, secs) in &report.timings {
        outln!("  {stage:<20} {secs:>8.1}");
    }
    outln!(
        "total {:.1} s; report in {}, metrics in metrics.json, lists in predictions.jsonl",
        t0.elapsed().as_secs_f64(),
        out.join("report.md").display()
    );
    Ok(())
}

/// `glorank demo`.
pub fn demo(args: &DemoArgs) -> Result<(), CliError> {
    let (config, default) = if args.quick {
        (PipelineConfig::quick(), "runs/demo-quick")
    } else {
        (PipelineConfig::demo(), "runs/demo")
    };
    let out = args.out.clone().unwrap_or_else(|| default.into());
    run_pipeline(config, &out, args.quiet)
}

/// `glorank run`.
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let mut config = PipelineConfig::from_file(&args.config)?;
    if let Some(p) = &args.data_path {
        config.data.path = Some(p.clone());
    }
    if let Some(s) = args.seed {
        config.data.seed = s;
        config.tokenizer.seed = s;
        config.policy.seed = s;
        config.evaluator.seed = s;
        config.simulator.seed = s.wrapping_add(1);
        config.sft.seed = s;
        config.rl.seed = s;
        config.baselines.seed = s;
    }
    run_pipeline(config, &args.out, args.quiet)
}

/// The run `model` (or its `policy` directory instead) as `glorank rerank` and `glorank
/// serve` load it: decoding with `decode` when given, else as the run's evaluation did, and
/// with `prefix_penalty` (both checked before anything is loaded).
fn load_reranker(
    model: &Path,
    policy: Option<&Path>,
    decode: Option<glorank::trie::DecodeStrategy>,
    prefix_penalty: f32,
) -> Result<Reranker, CliError> {
    if let Some(d) = decode {
        d.validate()?;
    }
    glorank::trie::check_prefix_penalty(prefix_penalty)?;
    let reranker = match policy {
        Some(p) => Reranker::load_policy(model, p),
        None => Reranker::load(model),
    }?
    .with_prefix_penalty(prefix_penalty)?;
    Ok(match decode {
        Some(d) => reranker.with_strategy(d),
        None => reranker,
    })
}

/// `glorank rerank`: one JSON request per stdin line, one JSON answer per stdout line
/// (`{"list": [...]}` or `{"error": "...", "line": N}`).
pub fn rerank(args: &RerankArgs) -> Result<(), CliError> {
    use glorank::trie::DecodeStrategy;
    if let Some(width) = args.beam {
        DecodeStrategy::Beam { width }.validate()?;
    }
    // `--beam W` is a shorthand for `--decode beam:W` (the two conflict).
    let decode = args
        .beam
        .map(DecodeStrategy::beam_or_greedy)
        .or(args.decode);
    let reranker = load_reranker(
        &args.model,
        args.policy.as_deref(),
        decode,
        args.prefix_penalty,
    )?;
    let max = args.max_line_bytes;
    let mut input = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        let got = read_line_bounded(&mut input, &mut buf, max)?;
        n += 1;
        let error = |message: String| serde_json::json!({"error": message, "line": n});
        let answer = match got {
            BoundedLine::Eof => break,
            BoundedLine::TooLong { bytes } => error(format!(
                "request of {bytes} bytes is longer than --max-line-bytes {max}"
            )),
            BoundedLine::Line => match std::str::from_utf8(&buf) {
                Err(e) => error(format!(
                    "request is not valid UTF-8 (byte {} of the line)",
                    e.valid_up_to()
                )),
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => match serde_json::from_str::<RerankRequest>(line) {
                    Err(e) => error(format!("malformed request: {e}")),
                    Ok(r) => match reranker.rerank(&r) {
                        Ok(list) => serde_json::json!({ "list": list }),
                        Err(e) => error(e.to_string()),
                    },
                },
            },
        };
        writeln!(stdout, "{answer}")?;
    }
    Ok(())
}

/// `glorank serve`: the HTTP server of [`glorank_serve`] until SIGTERM or Ctrl-C, which
/// finish the requests in flight.
pub fn serve(args: &ServeArgs) -> Result<(), CliError> {
    use glorank_serve::{ServeConfig, Server};
    let config = ServeConfig {
        addr: args.addr.clone(),
        max_batch: args.max_batch,
        max_wait_ms: args.max_wait_ms,
        max_body_bytes: args.max_body_bytes,
        max_requests_per_call: args.max_requests_per_call,
        max_beam: args.max_beam,
        queue: args.queue,
        handle_signals: true,
    };
    config.validate()?;
    let reranker = load_reranker(
        &args.model,
        args.policy.as_deref(),
        args.decode,
        args.prefix_penalty,
    )?;
    let server = Server::start(reranker, &config)?;
    // The first line of standard output is the address, for scripts that asked for port 0.
    outln!("listening on http://{}", server.local_addr());
    std::io::stdout().flush()?;
    server.wait()?;
    errln!("stopped");
    Ok(())
}

/// `glorank bench`: [`glorank::bench::bench_policy`] on a run's requests (or generated
/// ones with `--synthetic`), as a table or one JSON object.
pub fn bench(args: &BenchArgs) -> Result<(), CliError> {
    use glorank::bench::{
        BenchOptions, DEFAULT_VOCAB, bench_policy, synthetic_lists, synthetic_requests,
    };
    use glorank::burn::module::Module;
    use glorank::policy::{Policy, PolicyConfig};
    let dev = args.device.device()?;
    let mut options = BenchOptions::default();
    options.latency_requests = args.latency_requests;
    options.batch = args.batch;
    options.train_batch = args.batch;
    options.train_shards = args.train_shards.max(1);
    options.decode_on_device = args.decode_on_device;
    options.train_steps = args.train_steps;
    let (what, policy, config, requests, lists) = match &args.model {
        Some(dir) if !args.synthetic => {
            use glorank::data::PreparedDataset;
            use glorank::tokenizer::SemanticIds;
            let run = glorank::RunDir::new(dir);
            run.verify(&["dataset", "tokenizer"])?;
            let ds = PreparedDataset::load(run.root())?;
            let ids = SemanticIds::load(&run.semantic_ids_file())?;
            let policy_dir = run.trained_policy()?;
            let (policy, config) = Policy::load(&policy_dir, &dev)?;
            let builder = glorank::train::RequestBuilder::new(&ds, &ids)?
                .with_exposures(config.use_exposures);
            let pool: Vec<_> = ds
                .test
                .iter()
                .chain(&ds.valid)
                .chain(&ds.train)
                .take(512)
                .cloned()
                .collect();
            let lists = pool.iter().map(|s| ds.demonstration(s)).collect();
            let what = format!(
                "policy {}; dataset {}, N = {}, L = {}",
                policy_dir.display(),
                ds.name,
                ds.config.pool_size,
                ds.config.slate_len
            );
            (what, policy, config, builder.requests(&pool), lists)
        }
        None if !args.synthetic => {
            return Err(CliError::Usage("give --model RUN or --synthetic".into()));
        }
        _ => {
            let config = PolicyConfig::new(DEFAULT_VOCAB.to_vec());
            // Seeded on the CPU, then moved: the same weights on every device.
            let policy = Policy::new(&config, &glorank::Device::flex())?.to_device(&dev);
            let requests = synthetic_requests(&DEFAULT_VOCAB, 50, 50, 512, 1);
            let lists = synthetic_lists(requests.len(), 50, config.list_len);
            let what =
                "default-dimension policy on generated requests (N = 50, L = 6, histories of 50)"
                    .to_string();
            (what, policy, config, requests, lists)
        }
    };
    let parity = (args.parity > 0)
        .then(|| {
            let n = args.parity.min(requests.len());
            let cpu = policy.clone().to_device(&glorank::Device::flex());
            glorank::bench::decode_parity(&cpu, &policy, &requests[..n], &dev)
        })
        .transpose()?;
    let report = bench_policy(&policy, &config, &requests, &lists, &options, &dev)?;
    if args.json {
        let mut value =
            serde_json::to_value(&report).map_err(|e| CliError::Usage(e.to_string()))?;
        value["device"] = args.device.name().into();
        value["train_shards"] = options.train_shards.into();
        if let Some((same, total)) = parity {
            value["parity_identical"] = same.into();
            value["parity_requests"] = total.into();
        }
        outln!("{value}");
        return Ok(());
    }
    if let Some((same, total)) = parity {
        outln!(
            "parity: {same} of {total} greedy lists identical on flex and {}",
            args.device
        );
    }
    outln!(
        "machine: {}, {} threads available; {what} ({} parameters)",
        report.machine,
        report.threads,
        report.parameters
    );
    outln!(
        "{:<10} {:>12} {:>12} {:>22}",
        "decoding",
        "p50 (ms)",
        "p99 (ms)",
        format!("batch {} (req/s)", options.batch)
    );
    for d in &report.decode {
        outln!(
            "{:<10} {:>12.2} {:>12.2} {:>22.0}",
            d.strategy,
            d.p50_ms,
            d.p99_ms,
            d.batch_requests_per_s
        );
    }
    outln!(
        "teacher-forced training (batch {}, d = {}): {:.1} samples/s",
        report.train_batch,
        config.d_model,
        report.train_samples_per_s
    );
    Ok(())
}

/// Arguments of `glorank aggregate`.
#[derive(Debug, clap::Args)]
pub struct AggregateArgs {
    /// `metrics.json` files of runs that differ only in their seed.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Aggregate a slice of the runs instead of their full test tables: a key of
    /// `metrics.json` that holds rows, such as `held_out_cold`, `held_out_warm` or
    /// `cold_start_lt_5`.
    #[arg(long)]
    pub slice: Option<String>,
}

/// Whether `v` is one method's metrics (it has a precision mean).
fn is_method_row(v: &serde_json::Value) -> bool {
    v["precision"]["mean"].as_f64().is_some()
}

/// Whether `v` maps method names to metrics (a `metrics.json`, or one of its slices).
fn has_method_rows(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|o| o.values().any(is_method_row))
}

/// `glorank aggregate`: per method and metric, the mean over runs with a Student-t 95%
/// confidence interval over the runs (not over requests), as a Markdown table.
pub fn aggregate(args: &AggregateArgs) -> Result<(), CliError> {
    use glorank::metrics::Summary;
    let runs: Vec<serde_json::Value> = args
        .files
        .iter()
        .map(|f| {
            let text = std::fs::read(f).map_err(|e| glorank::Error::Io {
                path: f.clone(),
                source: e,
            })?;
            let value: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| glorank::Error::Format {
                    path: f.clone(),
                    message: e.to_string(),
                })?;
            // A metrics.json maps method names to metrics, each with a mean.
            if !has_method_rows(&value) {
                return Err(glorank::Error::Format {
                    path: f.clone(),
                    message: "not a metrics.json (no method with a precision mean); pass the \
                              metrics.json of each run"
                        .into(),
                });
            }
            let value = match &args.slice {
                Some(key) => value
                    .get(key)
                    .filter(|v| has_method_rows(v))
                    .cloned()
                    .ok_or_else(|| glorank::Error::Format {
                        path: f.clone(),
                        message: format!("no slice `{key}` with method rows in this metrics.json"),
                    })?,
                None => value,
            };
            Ok(value)
        })
        .collect::<Result<_, glorank::Error>>()?;
    let mut methods: Vec<String> = glorank::stages::METHOD_ORDER
        .iter()
        .filter(|m| runs[0].get(**m).is_some())
        .map(|m| m.to_string())
        .collect();
    if let Some(obj) = runs[0].as_object() {
        for k in obj.keys() {
            // Slices and the held-out entries are not methods: a method has a precision.
            if is_method_row(&obj[k]) && !methods.contains(k) {
                methods.push(k.clone());
            }
        }
    }
    let keys = [
        ("precision", "Precision"),
        ("recall", "Recall"),
        ("f1", "F1"),
        ("ndcg", "NDCG"),
        ("map", "MAP"),
        ("map_hits", "MAP (hits)"),
        ("average_reward", "Average Reward"),
        ("true_expected_clicks", "true clicks"),
        ("logged_auc", "AUC logged"),
    ];
    let keys: Vec<_> = keys
        .iter()
        .filter(|(k, _)| {
            runs.iter()
                .any(|r| methods.iter().any(|m| r[m.as_str()].get(k).is_some()))
        })
        .collect();
    outln!(
        "{} runs; mean ± half-width of the 95% confidence interval over runs\n",
        runs.len()
    );
    outln!(
        "| method | {} |",
        keys.iter().map(|k| k.1).collect::<Vec<_>>().join(" | ")
    );
    outln!("|---|{}", "---|".repeat(keys.len()));
    for m in &methods {
        let cells: Vec<String> = keys
            .iter()
            .map(|(k, _)| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r[m.as_str()][k]["mean"].as_f64())
                    .collect();
                match Summary::from_values(&v) {
                    Ok(s) if v.len() > 1 => format!("{:.4} ± {:.4}", s.mean, s.half_width()),
                    Ok(s) => format!("{:.4}", s.mean),
                    Err(_) => "-".into(),
                }
            })
            .collect();
        outln!("| {m} | {} |", cells.join(" | "));
    }
    Ok(())
}

/// Arguments of `glorank compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// A run directory, or its `predictions.jsonl`.
    pub predictions: PathBuf,
    /// The method every other is compared with: each line is this method minus another.
    pub method: String,
    /// The methods to subtract; without any, every other method of the file (or, with
    /// `--against`, every method of that file).
    pub others: Vec<String>,
    /// Read the methods to subtract from this run directory or `predictions.jsonl` instead,
    /// for runs evaluated on the same test requests (their candidates are checked).
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// The per-request metric: precision, recall, f1, ndcg, map, map_hits or hit.
    #[arg(long, default_value = "precision")]
    pub metric: String,
}

/// `glorank compare`: for each other method, the mean per-request difference of the metric
/// over the requests both listed, with its 95% interval.
pub fn compare(args: &CompareArgs) -> Result<(), CliError> {
    use glorank::compare::{Metric, Predictions, paired_difference};
    let metric: Metric = args.metric.parse()?;
    let file = Predictions::read(&args.predictions)?;
    let a = file.per_request(&args.method, metric)?;
    let other = match &args.against {
        Some(path) => Some(Predictions::read(path)?),
        None => None,
    };
    let source = other.as_ref().unwrap_or(&file);
    let others: Vec<String> = if args.others.is_empty() {
        source
            .methods()
            .into_iter()
            .filter(|m| other.is_some() || *m != args.method)
            .map(String::from)
            .collect()
    } else {
        args.others.clone()
    };
    if others.is_empty() {
        return Err(CliError::Usage(format!(
            "{} has no other method to compare `{}` with",
            file.path().display(),
            args.method
        )));
    }
    let suffix = match &other {
        Some(o) => format!(" (in {})", o.path().display()),
        None => String::new(),
    };
    outln!(
        "{} minus each method, {}, paired over the requests both listed: mean (95% interval)",
        args.method,
        metric.name()
    );
    for name in &others {
        let b = source.per_request(name, metric)?;
        let d = paired_difference(&a, &b)?;
        outln!(
            "  - {name}{suffix}: {:+.4} ({:+.4} to {:+.4}), {} requests",
            d.mean,
            d.ci_low,
            d.ci_high,
            d.n
        );
    }
    Ok(())
}
