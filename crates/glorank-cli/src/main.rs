//! `glorank`: the GloRank command line.
//!
//! `glorank prepare` reads a dataset (or simulates the embedded synthetic world), applies the
//! 50-to-6 reranking protocol and writes the prepared dataset into a run directory.
//! `glorank tokenize` learns semantic IDs for the prepared dataset's items.
//! `glorank train {evaluator,simulator,sft,rl}` trains a stage into a run directory,
//! `glorank eval` scores a saved policy and `glorank baselines` prints the comparison table.
//! `glorank demo` and `glorank run` run the whole pipeline; `glorank rerank` serves a run
//! directory over stdin/stdout and `glorank bench` times it.

/// `println!` that returns a write error (a closed pipe: `glorank eval | head`) to the caller
/// instead of panicking; the enclosing function returns `Result<_, CliError>`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

/// `print!` that returns a write error instead of panicking (see `outln!`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($arg)*)?
    }};
}

/// `eprintln!` that ignores a closed standard error instead of panicking.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod serve;
mod train;

use clap::{Parser, Subcommand};
use glorank::TokenizerConfig;
use glorank::data::{
    DataConfig, DatasetKind, LabelThresholds, PreparedDataset, Progress, VectorKind,
};
use glorank::nn::Backend;
use glorank::tokenizer::TokenizerMethod;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

/// GloRank: generative list-wise reranking with global item identifiers.
#[derive(Debug, Parser)]
#[command(name = "glorank", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on the embedded synthetic world and print the comparison table.
    Demo(serve::DemoArgs),
    /// Run the whole pipeline from a TOML configuration (see `configs/`).
    Run(serve::RunArgs),
    /// Read a dataset, apply the reranking protocol, write a prepared run directory.
    Prepare(PrepareArgs),
    /// Learn semantic IDs (RQ-VAE or RQ-KMeans) for the items of a prepared dataset.
    Tokenize(TokenizeArgs),
    /// Train a stage: the evaluator, the simulator, SFT or RL.
    Train(train::TrainArgs),
    /// Evaluate a saved policy: Precision/Recall/F1/NDCG/MAP@L with 95% CIs, Average Reward.
    Eval(train::EvalArgs),
    /// Train the baselines (PRM, DLCM, Seq2Slate) and print the comparison table with MF
    /// order, the oracle and the run's GloRank policies.
    Baselines(train::BaselinesArgs),
    /// Serve a run directory: JSON requests on stdin, JSON lists on stdout.
    Rerank(serve::RerankArgs),
    /// Serve a run directory over HTTP: POST /rerank, GET /health, GET /metrics.
    Serve(serve::ServeArgs),
    /// Latency and throughput of a trained policy.
    Bench(serve::BenchArgs),
    /// Mean and 95% CI over runs (seeds) of several `metrics.json` files.
    Aggregate(serve::AggregateArgs),
    /// Paired per-request differences between methods, from `predictions.jsonl`.
    Compare(serve::CompareArgs),
}

/// Arguments of `glorank tokenize`; every default is [`TokenizerConfig`]'s.
#[derive(Debug, clap::Args)]
struct TokenizeArgs {
    /// Run directory written by `glorank prepare`.
    #[arg(long)]
    data: PathBuf,
    /// Tokenizer: rqkmeans or rqvae.
    #[arg(long, default_value_t = TokenizerConfig::default().method)]
    method: TokenizerMethod,
    /// Where the item vectors come from: auto, content, mf or concat.
    #[arg(long, default_value_t = TokenizerConfig::default().vectors)]
    vectors: VectorKind,
    /// Item vectors from a `.npy` (rows in item order) or CSV (`item_id,v1,...`) file instead.
    #[arg(long)]
    vectors_file: Option<PathBuf>,
    /// Hash buckets for title words in content vectors.
    #[arg(long, default_value_t = TokenizerConfig::default().title_buckets)]
    title_buckets: usize,
    /// Code levels D.
    #[arg(long, default_value_t = TokenizerConfig::default().levels)]
    levels: usize,
    /// Codes per level K (one value for every level, or a comma-separated list of `levels`).
    #[arg(long, value_delimiter = ',', default_values_t = [TokenizerConfig::default().codes])]
    codes: Vec<usize>,
    /// Requested dedupe vocabulary (enlarged with a warning if collisions need more).
    #[arg(long, default_value_t = TokenizerConfig::default().dedupe_codes)]
    dedupe_codes: usize,
    /// Seed.
    #[arg(long, default_value_t = TokenizerConfig::default().seed)]
    seed: u64,
    /// RQ-VAE latent dimension.
    #[arg(long, default_value_t = TokenizerConfig::default().latent_dim)]
    latent: usize,
    /// RQ-VAE maximum epochs.
    #[arg(long, default_value_t = TokenizerConfig::default().max_epochs)]
    epochs: usize,
    /// RQ-VAE batch size.
    #[arg(long, default_value_t = TokenizerConfig::default().batch_size)]
    batch_size: usize,
    /// RQ-VAE learning rate.
    #[arg(long, default_value_t = TokenizerConfig::default().learning_rate)]
    lr: f64,
    /// RQ-VAE compute device: flex, ndarray (`ndarray` feature) or wgpu (`wgpu` feature).
    #[arg(long, default_value_t = TokenizerConfig::default().device)]
    device: Backend,
    /// Output directory (`semantic_ids.json`, `stats.json`, `tokenizer.json`, weights).
    #[arg(long)]
    out: PathBuf,
}

impl TokenizeArgs {
    /// The typed configuration these options describe.
    fn config(&self) -> TokenizerConfig {
        let mut c = TokenizerConfig::default();
        c.method = self.method;
        c.vectors = self.vectors;
        c.vectors_file = self.vectors_file.clone();
        c.title_buckets = self.title_buckets;
        c.levels = self.levels;
        match self.codes.as_slice() {
            [k] => c.codes = *k,
            many => c.codes_per_level = many.to_vec(),
        }
        c.dedupe_codes = self.dedupe_codes;
        c.seed = self.seed;
        c.latent_dim = self.latent;
        c.max_epochs = self.epochs;
        c.batch_size = self.batch_size;
        c.learning_rate = self.lr;
        c.device = self.device;
        c
    }
}

/// Arguments of `glorank prepare`; every default is [`DataConfig`]'s.
#[derive(Debug, clap::Args)]
struct PrepareArgs {
    /// Dataset format: synthetic, ml-1m, ml-100k, amazon, implicit or csv.
    #[arg(long)]
    dataset: DatasetKind,
    /// Dataset file or folder (not used for `synthetic`).
    #[arg(long)]
    path: Option<PathBuf>,
    /// Run directory to write (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the retriever, the pool shuffles and the synthetic world.
    #[arg(long, default_value_t = DataConfig::default().seed)]
    seed: u64,
    /// k-core threshold (users and items with fewer interactions are removed, to a fixpoint).
    #[arg(long, default_value_t = DataConfig::default().k_core)]
    k_core: usize,
    /// Out-of-sample reranker training: only each user's last K train slates become training
    /// requests and the retriever is fitted before them (0: every train slate, retriever
    /// fitted on all of them, in-sample).
    #[arg(long, default_value_t = DataConfig::default().rerank_train_slates)]
    rerank_train_slates: usize,
    /// Retrieved candidates exclude only the slate, not the history window too (the research
    /// group's pools; the "paper" preset).
    #[arg(long)]
    pool_includes_history: bool,
    /// Add the user id as a user feature: every model learns a user-ID embedding, and serving
    /// needs a known `user` (the "paper" preset).
    #[arg(long)]
    user_id_feature: bool,
    /// Held-out-items cold start: this share of the items (among those in test slates) loses
    /// every interaction before the test slates and is seen only through its content
    /// (0: off; the cold-start presets use 0.1).
    #[arg(long, default_value_t = 0.0)]
    held_out_share: f64,
    /// Slate (list) length L.
    #[arg(long, default_value_t = DataConfig::default().slate_len)]
    slate_len: usize,
    /// Maximum history length.
    #[arg(long, default_value_t = DataConfig::default().history)]
    history: usize,
    /// Candidates per request N.
    #[arg(long, default_value_t = DataConfig::default().pool_size)]
    pool_size: usize,
    /// Minimum rating of a click (the positive label).
    #[arg(long, default_value_t = DataConfig::default().labels.click)]
    click: f32,
    /// Minimum rating of a like.
    #[arg(long, default_value_t = DataConfig::default().labels.like)]
    like: f32,
    /// Minimum rating of a star.
    #[arg(long, default_value_t = DataConfig::default().labels.star)]
    star: f32,
    /// Retriever latent dimension.
    #[arg(long, default_value_t = DataConfig::default().retriever_factors)]
    factors: usize,
    /// Retriever ALS sweeps.
    #[arg(long, default_value_t = DataConfig::default().retriever_iterations)]
    iterations: usize,
    /// Retriever L2 regularisation.
    #[arg(long, default_value_t = DataConfig::default().retriever_regularization)]
    regularization: f32,
    /// Retriever confidence weight of observed pairs.
    #[arg(long, default_value_t = DataConfig::default().retriever_alpha)]
    alpha: f32,
    /// Synthetic world: number of users.
    #[arg(long, default_value_t = DataConfig::default().users)]
    users: usize,
    /// Synthetic world: number of items.
    #[arg(long, default_value_t = DataConfig::default().items)]
    items: usize,
    /// Synthetic world: logged slates per user.
    #[arg(long, default_value_t = DataConfig::default().sessions)]
    sessions: usize,
    /// CSV: user-id column.
    #[arg(long, default_value_t = DataConfig::default().csv.user_column)]
    user_col: String,
    /// CSV: item-id column.
    #[arg(long, default_value_t = DataConfig::default().csv.item_column)]
    item_col: String,
    /// CSV: rating column (`none` for implicit data) [default: rating].
    #[arg(long)]
    rating_col: Option<String>,
    /// CSV: timestamp column (`none` to use row order) [default: timestamp].
    #[arg(long)]
    time_col: Option<String>,
    /// CSV: field delimiter (one character; `\t` or `tab` for tab) [default: ,].
    #[arg(long)]
    delimiter: Option<String>,
    /// CSV: valid rating range `MIN,MAX` [default: 1,5].
    #[arg(long, value_delimiter = ',', num_args = 2)]
    rating_range: Option<Vec<f32>>,
    /// Do not draw progress bars.
    #[arg(long)]
    quiet: bool,
}

impl PrepareArgs {
    /// The typed configuration these options describe.
    fn config(&self) -> Result<DataConfig, CliError> {
        if self.path.is_none() && self.dataset != DatasetKind::Synthetic {
            return Err(CliError::Usage(format!(
                "--path is required for --dataset {}",
                self.dataset
            )));
        }
        let mut c = DataConfig::default();
        c.dataset = self.dataset;
        c.path = self.path.clone();
        c.seed = self.seed;
        c.k_core = self.k_core;
        c.rerank_train_slates = self.rerank_train_slates;
        c.pool_excludes_history = !self.pool_includes_history;
        c.user_id_feature = self.user_id_feature;
        c.held_out_share = self.held_out_share;
        c.slate_len = self.slate_len;
        c.history = self.history;
        c.pool_size = self.pool_size;
        c.labels = LabelThresholds::new(self.click, self.like, self.star);
        c.retriever_factors = self.factors;
        c.retriever_iterations = self.iterations;
        c.retriever_regularization = self.regularization;
        c.retriever_alpha = self.alpha;
        c.users = self.users;
        c.items = self.items;
        c.sessions = self.sessions;
        let column = |given: &Option<String>, default: Option<String>| match given {
            Some(name) if name.eq_ignore_ascii_case("none") => None,
            Some(name) => Some(name.clone()),
            None => default,
        };
        let mut csv = c.csv.clone().with_columns(
            &self.user_col,
            &self.item_col,
            column(&self.rating_col, c.csv.rating_column.clone()).as_deref(),
            column(&self.time_col, c.csv.timestamp_column.clone()).as_deref(),
        );
        if let Some(d) = &self.delimiter {
            csv = csv.with_delimiter(match d.as_str() {
                "\\t" | "tab" => b'\t',
                d if d.len() == 1 => d.as_bytes()[0],
                d => {
                    return Err(CliError::Usage(format!(
                        "--delimiter {d:?}: expected one character"
                    )));
                }
            });
        }
        if let Some(r) = &self.rating_range {
            csv = csv.with_rating_range(r[0], r[1]);
        }
        c.csv = csv;
        Ok(c)
    }
}

/// A [`Progress`] drawn with indicatif on stderr (hidden when stderr is not a terminal).
struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        if self.quiet {
            return;
        }
        let bar = if total == 0 {
            let b = ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        } else {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:>18} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        };
        bar.set_message(name.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(b) = slot.as_ref()
        {
            b.inc(n);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(b) = slot.take()
        {
            b.finish_and_clear();
        }
    }
}

/// glibc malloc settings for tensor workloads: keep freed blocks in the heap instead of
/// returning each large tensor's pages to the kernel (`mmap`/`munmap` and a page fault per
/// page, serialised on the process's memory lock). Measured in docs/benchmarks.md: system
/// time about a third, training throughput +3-4%, on the 2-core development machine.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_TUNABLES: &str = "glibc.malloc.mmap_threshold=1073741824:\
glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=268435456";

/// Re-executes this binary once with [`MALLOC_TUNABLES`] in `GLIBC_TUNABLES` (glibc reads
/// them only at start-up). Skipped when the variable is already set, so `GLIBC_TUNABLES=`
/// (empty) keeps glibc's defaults; a failed `exec` continues untuned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "GLIBC_TUNABLES";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` returns only on failure.
    let _ = command.args(args).env(VAR, MALLOC_TUNABLES).exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Prepare(args) => prepare(&args),
        Command::Tokenize(args) => tokenize(&args),
        Command::Train(args) => train::train(&args),
        Command::Eval(args) => train::eval(&args),
        Command::Baselines(args) => train::baselines(&args),
        Command::Demo(args) => serve::demo(&args),
        Command::Run(args) => serve::run(&args),
        Command::Rerank(args) => serve::rerank(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Bench(args) => serve::bench(&args),
        Command::Aggregate(args) => serve::aggregate(&args),
        Command::Compare(args) => serve::compare(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`glorank eval | head`): nothing left to say, like `cat`.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Errors of the command line: the library's, with their sources, plus usage errors.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A library error (it names its file, line or field).
    #[error(transparent)]
    Glorank(#[from] glorank::Error),
    /// An option value that does not make sense.
    #[error("{0}")]
    Usage(String),
    /// The HTTP server failed (bind, runtime).
    #[error(transparent)]
    Serve(#[from] glorank_serve::ServeError),
    /// Reading standard input or writing standard output failed.
    #[error("standard input/output: {0}")]
    Output(#[from] std::io::Error),
}

/// Converts any workspace crate's error into [`CliError`] through the facade's [`glorank::Error`].
macro_rules! from_lib_errors {
    ($($ty:ty),+ $(,)?) => {
        $(impl From<$ty> for CliError {
            fn from(e: $ty) -> Self {
                Self::Glorank(e.into())
            }
        })+
    };
}

from_lib_errors!(
    glorank::data::DataError,
    glorank::tokenizer::TokenizerError,
    glorank::nn::NnError,
    glorank::policy::PolicyError,
    glorank::reward::RewardError,
    glorank::train::TrainError,
    glorank::baselines::BaselineError,
    glorank::metrics::MetricsError,
    glorank::trie::TrieError,
);

/// `glorank prepare`.
fn prepare(args: &PrepareArgs) -> Result<(), CliError> {
    let start = Instant::now();
    let data = args.config()?;
    let bars = Bars {
        bar: Mutex::new(None),
        quiet: args.quiet,
    };
    let ds = data.source()?.prepare(&data.protocol(), &bars)?;
    let t = Instant::now();
    ds.save(&args.out)?;
    let save_secs = t.elapsed().as_secs_f64();
    print_summary(&ds, args, save_secs, start.elapsed().as_secs_f64())
}

/// Prints the summary table of a prepared dataset.
fn print_summary(
    ds: &PreparedDataset,
    args: &PrepareArgs,
    save_secs: f64,
    total: f64,
) -> Result<(), CliError> {
    let s = &ds.stats;
    let c = &ds.config;
    outln!(
        "prepared `{}` -> {} (seed {}, {}-core, L={}, N={}, history {})",
        ds.name,
        args.out.display(),
        c.seed,
        c.k_core,
        c.slate_len,
        c.pool_size,
        c.history_len
    );
    let rows: Vec<(String, String, String)> = vec![
        ("".into(), "before filter".into(), "after filter".into()),
        ("users".into(), s.raw_users.to_string(), s.users.to_string()),
        ("items".into(), s.raw_items.to_string(), s.items.to_string()),
        (
            "interactions".into(),
            s.raw_interactions.to_string(),
            s.interactions.to_string(),
        ),
        (
            "repeated pairs removed".into(),
            s.duplicate_pairs.to_string(),
            format!("{} k-core rounds", s.k_core_rounds),
        ),
    ];
    for (a, b, c) in &rows {
        outln!("  {a:<32} {b:>14} {c:>16}");
    }
    outln!(
        "  {:<32} {:>14} {:>16} {:>10}",
        "",
        "train",
        "valid",
        "test"
    );
    outln!(
        "  {:<32} {:>14} {:>16} {:>10}",
        "slates (requests)",
        s.train_slates,
        s.valid_slates,
        s.test_slates
    );
    outln!(
        "  {:<32} {:>14.3} {:>16.3} {:>10.3}",
        "mean positives (clicks) per slate",
        s.mean_positives[0],
        s.mean_positives[1],
        s.mean_positives[2]
    );
    let recall = s
        .retriever_recall
        .map(|r| format!("{r:.4}"))
        .unwrap_or_else(|| "n/a".into());
    outln!(
        "  {:<32} {recall:>14}",
        format!("retriever recall@{}", c.pool_size)
    );
    outln!(
        "  {:<32} {:>14}",
        "retriever train interactions",
        s.retriever_train_interactions
    );
    outln!(
        "  {:<32} {:>14}",
        "cold items (0 train interactions)",
        s.cold_items
    );
    if s.held_out_items > 0 {
        outln!(
            "  {:<32} {:>14}",
            "held-out items (test only)",
            s.held_out_items
        );
        outln!(
            "  {:<32} {:>14}",
            "interactions removed for them",
            s.held_out_interactions
        );
        outln!(
            "  {:<32} {:>13.1}%   (logged {:.1}%)",
            "held-out among retrieved (test)",
            100.0 * s.held_out_test_shares[1],
            100.0 * s.held_out_test_shares[0]
        );
    }
    let mut steps: Vec<String> = s
        .seconds
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}s"))
        .collect();
    steps.push(format!("save {save_secs:.2}s"));
    outln!(
        "  {:<32} {:>14}   ({})",
        "wall time",
        format!("{total:.2}s"),
        steps.join(", ")
    );
    for w in s.warnings() {
        errln!("warning: {w}");
    }
    Ok(())
}

/// `glorank tokenize`: the pipeline's tokenizer stage ([`glorank::stages::tokenize`]).
fn tokenize(args: &TokenizeArgs) -> Result<(), CliError> {
    let ds = PreparedDataset::load(&args.data)?;
    let config = args.config();
    errln!(
        "fitting {} on {} items ({:?})",
        config.method,
        ds.num_items(),
        config.vector_source(&ds)
    );
    let (tokenizer, ids) = glorank::stages::tokenize(&ds, &config, &args.out)?;
    if let Some(stats) = tokenizer.stats() {
        outln!("{}", stats.table());
        if stats.dedupe_overflow {
            errln!(
                "warning: up to {} items share one code prefix, more than --dedupe-codes {}; the dedupe vocabulary was enlarged to {}",
                stats.max_collisions,
                args.dedupe_codes,
                ids.dedupe_codes()
            );
        }
    }
    outln!("wrote {} item IDs to {}", ids.len(), args.out.display());
    Ok(())
}
