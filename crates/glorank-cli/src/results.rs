//! `glorank aggregate` and `glorank compare`: readers of the result files, through the
//! facade's typed evaluation module.

use crate::error::CliError;
use glorank::evaluation::{Metric, Predictions, aggregate as aggregate_runs, paired_difference};
use std::path::PathBuf;

/// Arguments of `glorank aggregate`.
#[derive(Debug, clap::Args)]
pub struct AggregateArgs {
    /// `metrics.json` files (or run directories) of runs that differ only in their seed.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Aggregate a slice of the runs instead of their full test tables: a key of
    /// `metrics.json` that holds rows, such as `held_out_cold`, `held_out_warm` or
    /// `cold_start_lt_5`.
    #[arg(long)]
    pub slice: Option<String>,
}

/// `glorank aggregate`: per method and metric, the mean over runs with a Student-t 95%
/// confidence interval over the runs (not over requests), as a Markdown table.
pub fn aggregate(args: &AggregateArgs) -> Result<(), CliError> {
    out!("{}", aggregate_runs(&args.files, args.slice.as_deref())?);
    Ok(())
}

/// Arguments of `glorank export-log`.
#[derive(Debug, clap::Args)]
pub struct ExportLogArgs {
    /// Run directory with a prepared dataset.
    #[arg(long)]
    pub run: PathBuf,
    /// The log folder to write: `requests.jsonl` and the catalogs (see docs/datasets.md,
    /// "Request logs").
    #[arg(long)]
    pub out: PathBuf,
    /// The requests' file format: jsonl or parquet.
    #[arg(long, default_value = "jsonl")]
    pub format: glorank::LogFormat,
}

/// `glorank export-log`: the run's prepared requests as a request log.
pub fn export_log(args: &ExportLogArgs) -> Result<(), CliError> {
    let rows = glorank::RunDir::new(&args.run).export_request_log(&args.out, args.format)?;
    outln!("{rows} logged requests written to {}", args.out.display());
    Ok(())
}

/// Arguments of `glorank synth-log`.
#[derive(Debug, clap::Args)]
pub struct SynthLogArgs {
    /// The log folder to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Requests to write.
    #[arg(long)]
    pub requests: usize,
    /// Users of the synthetic world.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Items of the synthetic world.
    #[arg(long, default_value_t = 20_000)]
    pub items: usize,
    /// Candidates per request.
    #[arg(long, default_value_t = 50)]
    pub pool_size: usize,
    /// Rows per Parquet part.
    #[arg(long, default_value_t = 1_000_000)]
    pub part_rows: usize,
    /// The world's seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `glorank synth-log`: a synthetic request log, written as it is generated.
pub fn synth_log(args: &SynthLogArgs) -> Result<(), CliError> {
    let t0 = std::time::Instant::now();
    let world = glorank::SyntheticConfig::small(args.users, args.items).with_seed(args.seed);
    let mut config = glorank::SyntheticLogConfig::new(world, args.requests);
    config.pool_size = args.pool_size;
    config.part_rows = args.part_rows;
    let reporter = crate::progress::Reporter::new(args.quiet);
    let n = glorank::write_synthetic_log(&config, &args.out, reporter.progress())
        .map_err(glorank::Error::from)?;
    let secs = t0.elapsed().as_secs_f64();
    outln!(
        "{n} logged requests written to {} in {secs:.1} s ({:.0} requests/s)",
        args.out.display(),
        n as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Arguments of `glorank check-log`.
#[derive(Debug, clap::Args)]
pub struct CheckLogArgs {
    /// A request log: a JSON Lines file, or a folder of `*.jsonl` / `*.jsonl.gz` parts.
    #[arg(long)]
    pub path: PathBuf,
    /// The `[log]` section from a file and single keys (`--set log.signals=[\"click\",\"like\"]`,
    /// `--set log.max_invalid=100`).
    #[command(flatten)]
    pub config: crate::args::ConfigArgs,
}

/// `glorank check-log`: reads and checks a request log as training will, and says what it
/// holds (valid rows, invalid rows within the budget with the first ones named, the rate).
pub fn check_log(args: &CheckLogArgs) -> Result<(), CliError> {
    let config = args.config.over(glorank::Config::default())?;
    let t0 = std::time::Instant::now();
    // Streamed: one row in memory at a time.
    let (mut shown, mut positives) = (0usize, 0f64);
    let scan = glorank::scan_request_log(&args.path, &config.log, |row| {
        shown += row.shown.len();
        positives += row
            .labels(&config.log)
            .iter()
            .map(|&v| f64::from(v))
            .sum::<f64>();
        Ok(())
    })
    .map_err(glorank::Error::from)?;
    let secs = t0.elapsed().as_secs_f64();
    outln!(
        "{} valid logged requests in {}; {} invalid (log.max_invalid = {})",
        scan.rows,
        args.path.display(),
        scan.invalid,
        config.log.max_invalid
    );
    for e in &scan.first_invalid {
        outln!("  skipped: {e}");
    }
    outln!(
        "{shown} shown items, {positives} with a positive `{}`; read in {secs:.2} s ({:.0} rows/s)",
        config.log.label,
        scan.rows as f64 / secs.max(1e-9)
    );
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
