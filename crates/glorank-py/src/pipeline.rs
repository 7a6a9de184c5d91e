//! The pipeline from Python: the configuration tree as `glorank run` reads it, a whole run
//! (on a data path or a request-log table), a run's metrics.

use crate::convert::{as_arrow, err, to_python};
use glorank::evaluation::MetricsFile;
use glorank::{Config, Hooks, NoObserver, NoProgress, Pipeline, RunDir};
use pyo3::prelude::*;
use std::path::PathBuf;

/// The configuration `glorank run` would read: the defaults or a preset (`"quick"`,
/// `"demo"`), the TOML file `config` laid over it, then the `section.key=value` changes.
fn resolve_config(
    config: Option<PathBuf>,
    preset: Option<&str>,
    overrides: &[String],
) -> PyResult<Config> {
    let base = match preset {
        None => Config::default(),
        Some("quick") => Config::quick(),
        Some("demo") => Config::demo(),
        Some(other) => {
            return Err(err(format!(
                "unknown preset `{other}` (expected \"quick\" or \"demo\")"
            )));
        }
    };
    let c = match config {
        Some(path) => base.overlay_file(&path).map_err(err)?,
        None => base,
    };
    c.with_overrides(overrides).map_err(err)
}

/// The configuration tree as a dict, read as `glorank run` reads it: the defaults (or the
/// `preset` "quick" or "demo"), the TOML file `config`, then `overrides` such as
/// `["sft.epochs=3"]`. Errors name the file, line or key.
#[pyfunction]
#[pyo3(signature = (config = None, overrides = Vec::new(), preset = None))]
pub(crate) fn load_config<'py>(
    py: Python<'py>,
    config: Option<PathBuf>,
    overrides: Vec<String>,
    preset: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let c = resolve_config(config, preset, &overrides)?;
    to_python(py, &serde_json::to_value(&c).map_err(err)?)
}

/// Writes the request-log table `table` (pyarrow) into `out/input/requests.parquet` and
/// returns the folder. A run directory holds the table it was made from: another table is
/// refused rather than mixed with the artifacts of the first.
fn write_table(out: &std::path::Path, table: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    let dir = out.join("input");
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let file = dir.join("requests.parquet");
    let tmp = dir.join(".requests.parquet.tmp");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    table
        .py()
        .import("pyarrow.parquet")?
        .call_method1("write_table", (table, path(&tmp)))?;
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| err(format!("{}: {e}", p.display())));
    if file.exists() && read(&file)? != read(&tmp)? {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(format!(
            "{} was made from another table ({}); run a new table into a new directory",
            out.display(),
            file.display()
        )));
    }
    std::fs::rename(&tmp, &file).map_err(|e| err(format!("{}: {e}", file.display())))?;
    Ok(dir)
}

/// Runs every stage of the configuration (as `load_config` reads it) into the run directory
/// `out` and returns its `metrics.json` as a dict; `data_path` sets `data.path`, `seed`
/// every seed. `data` is the data itself: a path (as `data_path`), or a request log as a
/// pyarrow Table or a pandas DataFrame with the log's columns (docs/datasets.md, "Request
/// logs"), written to `out/input/requests.parquet` and read as `data.dataset = "log"`. An
/// interrupted run continues where it stopped. With `verbose`, one line per stage goes to
/// standard error.
#[pyfunction]
#[pyo3(signature = (out, config = None, overrides = Vec::new(), preset = None, data_path = None, seed = None, verbose = false, data = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<'py>(
    py: Python<'py>,
    out: PathBuf,
    config: Option<PathBuf>,
    overrides: Vec<String>,
    preset: Option<&str>,
    data_path: Option<PathBuf>,
    seed: Option<u64>,
    verbose: bool,
    data: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut c = resolve_config(config, preset, &[])?;
    if let Some(p) = data_path {
        c.data.path = Some(p);
    }
    if let Some(data) = data {
        match as_arrow(&data)? {
            Some(table) => {
                c.data.path = Some(write_table(&out, &table)?);
                c.data.dataset = glorank::DatasetKind::Log;
            }
            None => c.data.path = Some(data.extract::<PathBuf>()?),
        }
    }
    if let Some(s) = seed {
        c = c.with_seed(s);
    }
    let c = c.with_overrides(&overrides).map_err(err)?;
    let metrics = py
        .detach(|| {
            let mut observer = NoObserver;
            let mut say = |line: &str| {
                if verbose {
                    eprintln!("{line}");
                }
            };
            let mut hooks = Hooks::new(&mut observer, &NoProgress, &mut say);
            Pipeline::new(c).run_with(&out, &mut hooks)?;
            MetricsFile::read(&RunDir::new(&out).metrics_file())
        })
        .map_err(err)?;
    to_python(py, &metrics.to_json())
}

/// The `metrics.json` of a run directory (or the file itself) as a dict: method -> metric ->
/// {n, mean, std_err, ci_low, ci_high}, plus the slices the run has. Errors name the file and
/// the entry that is not a method's figures.
#[pyfunction]
pub(crate) fn read_metrics(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyAny>> {
    let file = MetricsFile::read(&path).map_err(err)?;
    to_python(py, &file.to_json())
}

/// Writes a tiny run directory (synthetic world, semantic IDs, tokenizer, an untrained
/// policy) into `path` in a few seconds, for the package's own tests; returns `path`. Not
/// public API.
#[pyfunction]
#[pyo3(signature = (path, seed = 0))]
pub(crate) fn _write_tiny_run(py: Python<'_>, path: PathBuf, seed: u64) -> PyResult<PathBuf> {
    py.detach(|| glorank::testing::write_tiny_run(&path, seed))
        .map_err(err)?;
    Ok(path)
}
