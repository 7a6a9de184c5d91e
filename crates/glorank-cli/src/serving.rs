//! `glorank rerank` and `glorank serve` (a run served from standard input or over HTTP, as
//! the `[serve]` section says) and `glorank bench`.

use crate::args::ConfigArgs;
use crate::error::CliError;
use glorank::bench::{BenchOptions, bench_run, bench_synthetic};
use glorank::{Backend, Config, Reranker, RunDir};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `glorank rerank` and `glorank serve`.
#[derive(Debug, clap::Args)]
pub struct ServingArgs {
    /// Run directory (with `policy_rl/` or `policy_sft/`).
    #[arg(long)]
    pub model: PathBuf,
    /// A policy directory to serve instead of the run's own.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The `[serve]` section from a file and single keys (`--set serve.decode=beam:4`,
    /// `--set serve.addr=0.0.0.0:8080`); unset keys keep their defaults.
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl ServingArgs {
    /// The configuration (checked before anything is loaded) and the run's reranker decoding
    /// as its `[serve]` section says.
    fn load(&self) -> Result<(Config, Reranker), CliError> {
        let config = self.config.over(Config::default())?;
        let reranker = match &self.policy {
            Some(p) => Reranker::load_policy(&self.model, p),
            None => Reranker::load(&self.model),
        }?
        .with_serving(&config.serve)?;
        if !reranker.verified() {
            errln!(
                "warning: {} has no manifest.json; its dataset, tokenizer and policy are served \
                 without checking that they are the files the run wrote",
                self.model.display()
            );
        }
        Ok((config, reranker))
    }
}

/// `glorank rerank`: one JSON request per stdin line, one JSON answer per stdout line
/// (`{"list": [...]}` or `{"error": "...", "line": N}`).
pub fn rerank(args: &ServingArgs) -> Result<(), CliError> {
    let (config, reranker) = args.load()?;
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    reranker.serve_lines(&mut input, &mut output, config.serve.max_line_bytes)?;
    Ok(())
}

/// `glorank serve`: the HTTP server of [`glorank_serve`] until SIGTERM or Ctrl-C, which
/// finish the requests in flight.
pub fn serve(args: &ServingArgs) -> Result<(), CliError> {
    let (config, reranker) = args.load()?;
    let server = glorank_serve::Server::start_with_signals(reranker, &config.serve)?;
    // The first line of standard output is the address, for scripts that asked for port 0.
    outln!("listening on http://{}", server.local_addr());
    std::io::stdout().flush()?;
    server.wait()?;
    errln!("stopped");
    Ok(())
}

/// Arguments of `glorank bench`; every default is [`BenchOptions`]'.
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
    #[arg(long, default_value_t = BenchOptions::default().batch)]
    pub batch: usize,
    /// Requests timed one by one for the latency percentiles.
    #[arg(long, default_value_t = BenchOptions::default().latency_requests)]
    pub latency_requests: usize,
    /// Timed training steps after a warm-up step (0: time decoding only).
    #[arg(long, default_value_t = BenchOptions::default().train_steps)]
    pub train_steps: usize,
    /// Data-parallel shards of the training steps (see `[sft.optim] shards`).
    #[arg(long, default_value_t = BenchOptions::default().train_shards)]
    pub train_shards: usize,
    /// Compute device: flex, ndarray (`ndarray` feature), wgpu or cuda (GPU features).
    #[arg(long, default_value_t = Backend::Flex)]
    pub device: Backend,
    /// Also decode this many requests greedily on flex and on `--device` with the same
    /// weights, and report how many lists are identical (`parity_identical` of
    /// `parity_requests`).
    #[arg(long, default_value_t = BenchOptions::default().parity)]
    pub parity: usize,
    /// Decode with burn's operations on the device even on a CPU (the path before the host
    /// decoder; for comparisons).
    #[arg(long)]
    pub decode_on_device: bool,
}

/// `glorank bench`: [`glorank::bench`] on a run's requests (or generated ones with
/// `--synthetic`), as a table or one JSON object.
pub fn bench(args: &BenchArgs) -> Result<(), CliError> {
    let dev = crate::error::device(args.device)?;
    let mut options = BenchOptions::default();
    options.latency_requests = args.latency_requests;
    options.batch = args.batch;
    options.train_batch = args.batch;
    options.train_shards = args.train_shards.max(1);
    options.decode_on_device = args.decode_on_device;
    options.train_steps = args.train_steps;
    options.parity = args.parity;
    let benched = match &args.model {
        Some(dir) if !args.synthetic => bench_run(&RunDir::new(dir), &options, &dev)?,
        None if !args.synthetic => {
            return Err(CliError::Usage("give --model RUN or --synthetic".into()));
        }
        _ => bench_synthetic(&options, &dev)?,
    };
    let report = &benched.report;
    if args.json {
        let mut value = serde_json::to_value(report).map_err(|e| CliError::Usage(e.to_string()))?;
        value["device"] = args.device.name().into();
        value["train_shards"] = options.train_shards.into();
        if let Some((same, total)) = benched.parity {
            value["parity_identical"] = same.into();
            value["parity_requests"] = total.into();
        }
        outln!("{value}");
        return Ok(());
    }
    if let Some((same, total)) = benched.parity {
        outln!(
            "parity: {same} of {total} greedy lists identical on flex and {}",
            args.device
        );
    }
    outln!(
        "machine: {}, {} threads available; {} ({} parameters)",
        report.machine,
        report.threads,
        benched.what,
        report.parameters
    );
    outln!(
        "{:<10} {:>12} {:>12} {:>22}",
        "decoding",
        "p50 (ms)",
        "p99 (ms)",
        format!("batch {} (req/s)", report.batch)
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    for d in &report.decode {
        outln!(
            "{:<10} {:>12} {:>12} {:>22.0}",
            d.strategy,
            ms(d.p50_ms),
            ms(d.p99_ms),
            d.batch_requests_per_s
        );
    }
    if report.latency_requests == 0 {
        outln!("latency not measured (--latency-requests 0)");
    } else if report.latency_requests < options.latency_requests {
        outln!(
            "latency over {} requests (all there are; {} asked)",
            report.latency_requests,
            options.latency_requests
        );
    }
    if report.batch < options.batch {
        outln!(
            "throughput batch {} (all the requests there are; {} asked)",
            report.batch,
            options.batch
        );
    }
    outln!(
        "teacher-forced training (batch {}, d = {}): {:.1} samples/s",
        report.train_batch,
        benched.d_model,
        report.train_samples_per_s
    );
    Ok(())
}
