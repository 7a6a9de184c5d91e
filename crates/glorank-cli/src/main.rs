//! `glorank`: the GloRank command line.
//!
//! `glorank prepare` reads a dataset (or simulates the embedded synthetic world), applies the
//! 50-to-6 reranking protocol and writes the prepared dataset into a run directory.
//! `glorank tokenize` learns semantic IDs for the prepared dataset's items.
//! `glorank train {evaluator,simulator,sft,rl}` trains a stage into a run directory,
//! `glorank eval` scores a saved policy and `glorank baselines` prints the comparison table.
//! `glorank demo` and `glorank run` run the whole pipeline; `glorank rerank` serves a run
//! directory over stdin/stdout and `glorank bench` times it.

mod serve;
mod train;

use clap::{Parser, Subcommand, ValueEnum};
use glorank_data::{
    CsvConfig, DatasetSource, LabelThresholds, PreparedDataset, Progress, ProtocolConfig,
    RetrieverConfig, SyntheticConfig,
};
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
    /// Latency and throughput of a trained policy.
    Bench(serve::BenchArgs),
    /// Mean and 95% CI over runs (seeds) of several `metrics.json` files.
    Aggregate(serve::AggregateArgs),
}

/// Tokenizer methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// Residual-quantised VAE (burn).
    Rqvae,
    /// Residual k-means.
    Rqkmeans,
}

/// Item-vector sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VectorKind {
    /// Content features and MF factors (MF only when the data has no content features).
    Auto,
    /// Genres, year and hashed title words.
    Content,
    /// The retriever's item factors.
    Mf,
    /// Content followed by MF factors.
    Concat,
}

/// Compute devices for the RQ-VAE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeviceKind {
    /// burn's flex CPU backend (default).
    Flex,
    /// burn's ndarray CPU backend (needs the `ndarray` feature).
    Ndarray,
    /// A GPU through wgpu (needs the `wgpu` feature).
    Wgpu,
}

/// Arguments of `glorank tokenize`.
#[derive(Debug, clap::Args)]
struct TokenizeArgs {
    /// Run directory written by `glorank prepare`.
    #[arg(long)]
    data: PathBuf,
    /// Tokenizer.
    #[arg(long, value_enum, default_value = "rqvae")]
    method: Method,
    /// Where the item vectors come from.
    #[arg(long, value_enum, default_value = "auto")]
    vectors: VectorKind,
    /// Item vectors from a `.npy` (rows in item order) or CSV (`item_id,v1,...`) file instead.
    #[arg(long)]
    vectors_file: Option<PathBuf>,
    /// Hash buckets for title words in content vectors.
    #[arg(long, default_value_t = 32)]
    title_buckets: usize,
    /// Code levels D.
    #[arg(long, default_value_t = 3)]
    levels: usize,
    /// Codes per level K (one value for every level, or a comma-separated list).
    #[arg(long, default_value = "256")]
    codes: String,
    /// Requested dedupe vocabulary (enlarged with a warning if collisions need more).
    #[arg(long, default_value_t = 32)]
    dedupe_codes: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// RQ-VAE latent dimension.
    #[arg(long, default_value_t = 32)]
    latent: usize,
    /// RQ-VAE maximum epochs.
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// RQ-VAE batch size.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// RQ-VAE learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// RQ-VAE compute device.
    #[arg(long, value_enum, default_value = "flex")]
    device: DeviceKind,
    /// Output directory (`semantic_ids.json`, `stats.json`, `tokenizer.json`, weights).
    #[arg(long)]
    out: PathBuf,
}

/// Dataset formats `prepare` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatasetKind {
    /// The embedded synthetic world (no file needed).
    Synthetic,
    /// MovieLens-1M folder (ratings.dat, movies.dat, users.dat).
    #[value(name = "ml-1m")]
    Ml1m,
    /// MovieLens-100K folder (u.data, u.item, u.user).
    #[value(name = "ml-100k")]
    Ml100k,
    /// Amazon ratings CSV (user,item,rating,timestamp).
    Amazon,
    /// Implicit `user item item ...` file or folder with train.txt/test.txt.
    Implicit,
    /// Generic CSV with a header; see the --*-col options.
    Csv,
}

/// Arguments of `glorank prepare`.
#[derive(Debug, clap::Args)]
struct PrepareArgs {
    /// Dataset format.
    #[arg(long, value_enum)]
    dataset: DatasetKind,
    /// Dataset file or folder (not used for `synthetic`).
    #[arg(long)]
    path: Option<PathBuf>,
    /// Run directory to write (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the retriever, the pool shuffles and the synthetic world.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// k-core threshold (users and items with fewer interactions are removed, to a fixpoint).
    #[arg(long, default_value_t = 20)]
    k_core: usize,
    /// Out-of-sample reranker training: only each user's last K train slates become training
    /// requests and the retriever is fitted before them (0: every train slate, retriever
    /// fitted on all of them, in-sample).
    #[arg(long, default_value_t = 0)]
    rerank_train_slates: usize,
    /// Slate (list) length L.
    #[arg(long, default_value_t = 6)]
    slate_len: usize,
    /// Maximum history length.
    #[arg(long, default_value_t = 50)]
    history: usize,
    /// Candidates per request N.
    #[arg(long, default_value_t = 50)]
    pool_size: usize,
    /// Minimum rating of a click (the positive label).
    #[arg(long, default_value_t = 3.0)]
    click: f32,
    /// Minimum rating of a like.
    #[arg(long, default_value_t = 4.0)]
    like: f32,
    /// Minimum rating of a star.
    #[arg(long, default_value_t = 5.0)]
    star: f32,
    /// Retriever latent dimension.
    #[arg(long, default_value_t = 32)]
    factors: usize,
    /// Retriever ALS sweeps.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Retriever L2 regularisation.
    #[arg(long, default_value_t = 0.1)]
    regularization: f32,
    /// Retriever confidence weight of observed pairs.
    #[arg(long, default_value_t = 10.0)]
    alpha: f32,
    /// Synthetic world: number of users.
    #[arg(long, default_value_t = 2000)]
    users: usize,
    /// Synthetic world: number of items.
    #[arg(long, default_value_t = 1000)]
    items: usize,
    /// Synthetic world: logged slates per user.
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// CSV: user-id column.
    #[arg(long, default_value = "user")]
    user_col: String,
    /// CSV: item-id column.
    #[arg(long, default_value = "item")]
    item_col: String,
    /// CSV: rating column (`none` for implicit data).
    #[arg(long, default_value = "rating")]
    rating_col: String,
    /// CSV: timestamp column (`none` to use row order).
    #[arg(long, default_value = "timestamp")]
    time_col: String,
    /// CSV: field delimiter (one character; `\t` for tab).
    #[arg(long, default_value = ",")]
    delimiter: String,
    /// CSV: valid rating range `MIN,MAX`.
    #[arg(long, default_value = "1,5")]
    rating_range: String,
    /// Do not draw progress bars.
    #[arg(long)]
    quiet: bool,
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

fn main() -> ExitCode {
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
        Command::Bench(args) => serve::bench(&args),
        Command::Aggregate(args) => serve::aggregate(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `none` (any case) means "no such column".
fn optional_column(name: &str) -> Option<&str> {
    (!name.eq_ignore_ascii_case("none")).then_some(name)
}

/// Parses `MIN,MAX`.
fn parse_range(text: &str) -> Result<(f32, f32), String> {
    let (a, b) = text
        .split_once(',')
        .ok_or_else(|| format!("--rating-range {text:?}: expected MIN,MAX"))?;
    let p = |s: &str| {
        s.trim()
            .parse::<f32>()
            .map_err(|_| format!("--rating-range {text:?}: {s:?} is not a number"))
    };
    Ok((p(a)?, p(b)?))
}

/// Builds the dataset source from the arguments.
fn source(args: &PrepareArgs) -> Result<DatasetSource, String> {
    let path = || {
        args.path.clone().ok_or_else(|| {
            format!(
                "--path is required for --dataset {}",
                args.dataset
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            )
        })
    };
    Ok(match args.dataset {
        DatasetKind::Synthetic => {
            let mut cfg = SyntheticConfig::small(args.users, args.items)
                .with_seed(args.seed)
                .with_sessions(args.sessions);
            cfg.slate_len = args.slate_len;
            DatasetSource::Synthetic(cfg)
        }
        DatasetKind::Ml1m => DatasetSource::Ml1m(path()?),
        DatasetKind::Ml100k => DatasetSource::Ml100k(path()?),
        DatasetKind::Amazon => DatasetSource::Amazon(path()?),
        DatasetKind::Implicit => DatasetSource::Implicit(path()?),
        DatasetKind::Csv => {
            let delim = match args.delimiter.as_str() {
                "\\t" | "tab" => b'\t',
                d if d.len() == 1 => d.as_bytes()[0],
                d => return Err(format!("--delimiter {d:?}: expected one character")),
            };
            let (lo, hi) = parse_range(&args.rating_range)?;
            let cfg = CsvConfig::default()
                .with_columns(
                    &args.user_col,
                    &args.item_col,
                    optional_column(&args.rating_col),
                    optional_column(&args.time_col),
                )
                .with_delimiter(delim)
                .with_rating_range(lo, hi);
            DatasetSource::Csv(path()?, cfg)
        }
    })
}

/// `glorank prepare`.
fn prepare(args: &PrepareArgs) -> Result<(), String> {
    let start = Instant::now();
    let src = source(args)?;
    let retriever = RetrieverConfig::default()
        .with_factors(args.factors)
        .with_iterations(args.iterations)
        .with_weights(args.regularization, args.alpha);
    let config = ProtocolConfig::default()
        .with_seed(args.seed)
        .with_k_core(args.k_core)
        .with_rerank_train_slates(args.rerank_train_slates)
        .with_shape(args.slate_len, args.history, args.pool_size)
        .with_thresholds(LabelThresholds::new(args.click, args.like, args.star))
        .with_retriever(retriever);
    let bars = Bars {
        bar: Mutex::new(None),
        quiet: args.quiet,
    };
    let ds = src.prepare(&config, &bars).map_err(|e| e.to_string())?;
    let t = Instant::now();
    ds.save(&args.out).map_err(|e| e.to_string())?;
    let save_secs = t.elapsed().as_secs_f64();
    print_summary(&ds, args, save_secs, start.elapsed().as_secs_f64());
    Ok(())
}

/// Prints the summary table of a prepared dataset.
fn print_summary(ds: &PreparedDataset, args: &PrepareArgs, save_secs: f64, total: f64) {
    let s = &ds.stats;
    let c = &ds.config;
    println!(
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
        println!("  {a:<32} {b:>14} {c:>16}");
    }
    println!(
        "  {:<32} {:>14} {:>16} {:>10}",
        "", "train", "valid", "test"
    );
    println!(
        "  {:<32} {:>14} {:>16} {:>10}",
        "slates (requests)", s.train_slates, s.valid_slates, s.test_slates
    );
    println!(
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
    println!(
        "  {:<32} {recall:>14}",
        format!("retriever recall@{}", c.pool_size)
    );
    println!(
        "  {:<32} {:>14}",
        "retriever train interactions", s.retriever_train_interactions
    );
    println!(
        "  {:<32} {:>14}",
        "cold items (0 train interactions)", s.cold_items
    );
    let mut steps: Vec<String> = s
        .seconds
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}s"))
        .collect();
    steps.push(format!("save {save_secs:.2}s"));
    println!(
        "  {:<32} {:>14}   ({})",
        "wall time",
        format!("{total:.2}s"),
        steps.join(", ")
    );
}

/// The burn device named on the command line.
fn device(kind: DeviceKind) -> Result<glorank_tokenizer::Device, String> {
    match kind {
        DeviceKind::Flex => Ok(glorank_tokenizer::Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        DeviceKind::Ndarray => Ok(glorank_tokenizer::Device::ndarray()),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => Ok(glorank_tokenizer::Device::wgpu(burn_device_kind_default())),
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "--device {other:?} needs glorank built with the matching feature (`--features wgpu` or `ndarray`)"
        )),
    }
}

/// The default wgpu adapter.
#[cfg(feature = "wgpu")]
fn burn_device_kind_default() -> glorank_tokenizer::DeviceKind {
    glorank_tokenizer::DeviceKind::DefaultDevice
}

/// Parses `--codes`: one size for every level or a comma-separated list of `levels` sizes.
fn parse_codes(text: &str, levels: usize) -> Result<Vec<usize>, String> {
    let sizes: Vec<usize> = text
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("--codes {text:?}: {s:?} is not a whole number"))
        })
        .collect::<Result<_, _>>()?;
    match sizes.len() {
        1 => Ok(vec![sizes[0]; levels]),
        n if n == levels => Ok(sizes),
        n => Err(format!("--codes lists {n} sizes but --levels is {levels}")),
    }
}

/// `glorank tokenize`.
fn tokenize(args: &TokenizeArgs) -> Result<(), String> {
    use glorank_data::{ItemVectorSource, item_vectors};
    use glorank_tokenizer::{
        ItemTokenizer, RqKMeans, RqKMeansConfig, RqVae, RqVaeConfig, save_artifacts,
    };
    let ds = PreparedDataset::load(&args.data).map_err(|e| e.to_string())?;
    let source = match (&args.vectors_file, args.vectors) {
        (Some(path), _) => ItemVectorSource::File(path.clone()),
        (None, VectorKind::Content) => ItemVectorSource::Content {
            title_buckets: args.title_buckets,
        },
        (None, VectorKind::Mf) => ItemVectorSource::MfFactors,
        (None, VectorKind::Concat) => ItemVectorSource::Concat {
            title_buckets: args.title_buckets,
        },
        (None, VectorKind::Auto) if ds.item_features.is_some() => ItemVectorSource::Concat {
            title_buckets: args.title_buckets,
        },
        (None, VectorKind::Auto) => ItemVectorSource::MfFactors,
    };
    let vectors = item_vectors(&ds, &source).map_err(|e| e.to_string())?;
    let codes = parse_codes(&args.codes, args.levels)?;
    let mut tokenizer: Box<dyn ItemTokenizer> = match args.method {
        Method::Rqkmeans => {
            let mut cfg = RqKMeansConfig::default()
                .with_codes_per_level(codes)
                .with_seed(args.seed);
            cfg.dedupe_codes = args.dedupe_codes;
            Box::new(RqKMeans::new(cfg).map_err(|e| e.to_string())?)
        }
        Method::Rqvae => {
            let mut cfg = RqVaeConfig::default()
                .with_seed(args.seed)
                .with_shape(args.latent, vec![128, 64])
                .with_batch_size(args.batch_size)
                .with_learning_rate(args.lr);
            cfg.codes_per_level = codes;
            cfg.dedupe_codes = args.dedupe_codes;
            cfg.max_epochs = args.epochs;
            Box::new(RqVae::with_device(cfg, device(args.device)?).map_err(|e| e.to_string())?)
        }
    };
    eprintln!(
        "fitting {:?} on {} items x {} dims ({:?})",
        args.method,
        vectors.len(),
        vectors.dim,
        source
    );
    let ids = tokenizer
        .fit(&vectors.data, vectors.dim)
        .map_err(|e| e.to_string())?;
    save_artifacts(tokenizer.as_ref(), &ids, &args.out).map_err(|e| e.to_string())?;
    if let Some(stats) = tokenizer.stats() {
        println!("{}", stats.table());
        if stats.dedupe_overflow {
            eprintln!(
                "warning: up to {} items share one code prefix, more than --dedupe-codes {}; the dedupe vocabulary was enlarged to {}",
                stats.max_collisions,
                args.dedupe_codes,
                ids.dedupe_codes()
            );
        }
    }
    println!("wrote {} item IDs to {}", ids.len(), args.out.display());
    Ok(())
}
