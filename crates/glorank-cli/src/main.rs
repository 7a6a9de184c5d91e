//! `glorank`: the GloRank command line, a front-end of the `glorank` facade.
//!
//! Every command reads the one configuration tree ([`glorank::Config`]): a TOML file with
//! `--config` and single keys with `--set SECTION.KEY=VALUE`. `glorank run` and `glorank
//! demo` run every stage of the pipeline into a run directory; `prepare`, `tokenize`,
//! `train`, `eval` and `baselines` run one stage in a run directory through the same entry
//! point, starting from the configuration the run was made with. `rerank` and `serve` serve a
//! run, `bench` times it, `aggregate` and `compare` read the result files, `config` prints
//! the configuration a command would run with.

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

mod args;
mod error;
mod progress;
mod results;
mod serving;
mod stages;

use clap::{Parser, Subcommand};
use error::CliError;
use std::process::ExitCode;

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
    Demo(stages::DemoArgs),
    /// Run the whole pipeline from a TOML configuration (see `configs/`).
    Run(stages::RunArgs),
    /// Read a dataset, apply the reranking protocol, write it into a run directory.
    Prepare(stages::PrepareArgs),
    /// Learn semantic IDs (RQ-VAE or RQ-KMeans) for the items of a prepared run.
    Tokenize(stages::StageArgs),
    /// Train one stage of a run: the evaluator, the simulator, SFT or RL.
    Train(stages::TrainArgs),
    /// Evaluate a policy: Precision/Recall/F1/NDCG/MAP@L with 95% CIs, Average Reward, next
    /// to the reference rules.
    Eval(stages::EvalArgs),
    /// Train the baselines (PRM, DLCM, Seq2Slate) and print the comparison table with the
    /// reference rules, the oracle and the run's GloRank policies.
    Baselines(stages::BaselinesArgs),
    /// Serve a run directory: JSON requests on stdin, JSON lists on stdout.
    Rerank(serving::ServingArgs),
    /// Serve a run directory over HTTP: POST /rerank, GET /health, GET /metrics.
    Serve(serving::ServingArgs),
    /// Latency and throughput of a trained policy.
    Bench(serving::BenchArgs),
    /// Mean and 95% CI over runs (seeds) of several `metrics.json` files.
    Aggregate(results::AggregateArgs),
    /// Paired per-request differences between methods, from `predictions.jsonl`.
    Compare(results::CompareArgs),
    /// Print the whole configuration tree a command would run with, as TOML.
    Config(stages::ConfigCommandArgs),
    /// Write a run's prepared requests as a request log (JSON Lines: the serving request,
    /// what was shown, the feedback).
    ExportLog(results::ExportLogArgs),
    /// Read and check a request log (JSON Lines) as training will: valid and invalid rows,
    /// each invalid one named by file, line and field.
    CheckLog(results::CheckLogArgs),
    /// Write a synthetic request log of any size (Parquet parts and catalogs), in time and
    /// memory linear in the requests.
    SynthLog(results::SynthLogArgs),
}

/// glibc malloc settings for tensor workloads: keep freed blocks in the heap instead of
/// returning each large tensor's pages to the kernel (`mmap`/`munmap` and a page fault per
/// page, serialised on the process's memory lock). Measured in
/// `docs/notebook/2026-11-30-speed-work-dropout-data-parallel-steps-sharded-decoding.md`:
/// system time about a third, training throughput +3-4%, on the 2-core development machine.
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
        Command::Demo(args) => stages::demo(&args),
        Command::Run(args) => stages::run(&args),
        Command::Prepare(args) => stages::prepare(&args),
        Command::Tokenize(args) => stages::tokenize(&args),
        Command::Train(args) => stages::train(&args),
        Command::Eval(args) => stages::eval(&args),
        Command::Baselines(args) => stages::baselines(&args),
        Command::Rerank(args) => serving::rerank(&args),
        Command::Serve(args) => serving::serve(&args),
        Command::Bench(args) => serving::bench(&args),
        Command::Aggregate(args) => results::aggregate(&args),
        Command::Compare(args) => results::compare(&args),
        Command::Config(args) => stages::config(&args),
        Command::ExportLog(args) => results::export_log(&args),
        Command::CheckLog(args) => results::check_log(&args),
        Command::SynthLog(args) => results::synth_log(&args),
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
