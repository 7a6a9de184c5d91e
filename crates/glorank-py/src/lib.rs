//! # glorank-py
//!
//! The native part of the `glorank` Python package (`glorank._glorank`), built with pyo3 and
//! maturin: `pip install ./crates/glorank-py`. It exposes
//!
//! * `Reranker`: load a run directory, rerank one request (a dict or a JSON string, as read
//!   by `glorank rerank`) or a batch;
//! * `SemanticIds` (the item table, as numpy arrays) and `Tokenizer` (encode item vectors
//!   into semantic-ID codes);
//! * `decode`: the prefix-trie constrained decoder over a Python scoring callback or a numpy
//!   score table;
//! * the list-wise metrics (`list_metrics`, `auc`, `confidence_interval`);
//! * the pipeline: `load_config` reads the configuration tree (a TOML file and
//!   `section.key=value` changes) as `glorank run` does, `run` runs every stage into a run
//!   directory, `read_metrics` reads a run's `metrics.json`.
//!
//! Rust errors become `glorank.GlorankError` with the Rust error's message. The Python
//! side (`python/glorank/`) re-exports these names and ships the type stubs.

mod convert;
mod pipeline;

use convert::{GlorankError, as_arrow, err, row_request, to_request};
use glorank::components::{
    CandidateTrie, Decoder, ItemTokenizer, ListMetrics, SemanticIds, StepBatch, StepScorer,
    Summary, load_tokenizer,
};
use glorank::{DecodeStrategy, RerankRequest, Reranker, RunDir};
use numpy::{PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Mutex;

fn parse_strategy(decode: &str) -> PyResult<DecodeStrategy> {
    decode.parse().map_err(err)
}

/// A trained GloRank policy with its tables, loaded from a run directory.
#[pyclass(name = "Reranker", module = "glorank", frozen)]
struct PyReranker {
    // Boxed: `Reranker` holds over-aligned (64-byte) fields, and Python allocates class
    // objects with 16-byte alignment only; the box lives in Rust's allocator.
    inner: Box<Reranker>,
}

#[pymethods]
impl PyReranker {
    /// Loads `run_dir` (its RL policy, else its SFT one; or `policy`), decoding with
    /// `decode` ("greedy", "beam:W", "sample:T" or "sample:T:K"; default: as the run's
    /// evaluation, a beam of its `eval.beam` when above 1, else greedy) and a
    /// `prefix_penalty` (each token loses it per earlier item of the list sharing its
    /// semantic-ID prefix; default 0: none).
    ///
    /// A run directory without a `manifest.json` is served as it is, with a `UserWarning`
    /// saying so (see `verified`).
    #[new]
    #[pyo3(signature = (run_dir, policy = None, decode = None, prefix_penalty = 0.0))]
    fn new(
        py: Python<'_>,
        run_dir: PathBuf,
        policy: Option<PathBuf>,
        decode: Option<&str>,
        prefix_penalty: f32,
    ) -> PyResult<Self> {
        let strategy = decode.map(parse_strategy).transpose()?;
        if let Some(s) = strategy {
            s.validate().map_err(err)?;
        }
        let inner = match policy {
            Some(p) => Reranker::load_policy(&run_dir, &p),
            None => Reranker::load(&run_dir),
        }
        .map_err(err)?
        .with_prefix_penalty(prefix_penalty)
        .map_err(err)?;
        let inner = match strategy {
            Some(s) => inner.with_strategy(s),
            None => inner,
        };
        if !inner.verified() {
            let message = std::ffi::CString::new(format!(
                "{} has no manifest.json; its dataset, tokenizer and policy are served without \
                 checking that they are the files the run wrote",
                run_dir.display()
            ))
            .map_err(err)?;
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyUserWarning>(),
                &message,
                1,
            )?;
        }
        Ok(Self {
            inner: Box::new(inner),
        })
    }

    /// Whether the run directory had a `manifest.json` the served files were checked
    /// against when they were loaded.
    #[getter]
    fn verified(&self) -> bool {
        self.inner.verified()
    }

    /// Reranks one request (a dict or a JSON string); returns the list of item ids.
    fn rerank(&self, py: Python<'_>, request: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
        let request = to_request(request)?;
        py.detach(|| self.inner.rerank(&request)).map_err(err)
    }

    /// Reranks many requests in one batched decode: an iterable of requests, or a table of
    /// them (a pyarrow Table or a pandas DataFrame with the request's columns; the columns
    /// of a logged request, `request_id`, `timestamp`, `shown` and `feedback`, and null
    /// cells are left out), one list per row. With `errors="raise"` the first invalid
    /// request raises `GlorankError` naming its index; with `errors="none"` it gets `None`.
    #[pyo3(signature = (requests, errors = "raise"))]
    fn rerank_batch(
        &self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
        errors: &str,
    ) -> PyResult<Vec<Option<Vec<String>>>> {
        let raise = match errors {
            "raise" => true,
            "none" => false,
            other => {
                return Err(err(format!(
                    "errors must be \"raise\" or \"none\", not {other:?}"
                )));
            }
        };
        let parsed: Vec<PyResult<RerankRequest>> = match as_arrow(requests)? {
            Some(table) => table
                .call_method0("to_pylist")?
                .try_iter()?
                .map(|r| row_request(&r?))
                .collect(),
            None => requests.try_iter()?.map(|r| to_request(&r?)).collect(),
        };
        let mut valid = Vec::new();
        let mut slots = Vec::with_capacity(parsed.len());
        for (k, p) in parsed.into_iter().enumerate() {
            match p {
                Ok(r) => {
                    valid.push(r);
                    slots.push(None);
                }
                Err(e) if raise => {
                    return Err(err(format!("request {k}: {}", e.value(py))));
                }
                Err(e) => slots.push(Some(e)),
            }
        }
        let mut answers = py.detach(|| self.inner.rerank_batch(&valid)).into_iter();
        let mut out = Vec::with_capacity(slots.len());
        for (k, slot) in slots.into_iter().enumerate() {
            if slot.is_some() {
                out.push(None);
                continue;
            }
            match answers.next() {
                Some(Ok(list)) => out.push(Some(list)),
                Some(Err(e)) if raise => return Err(err(format!("request {k}: {e}"))),
                _ => out.push(None),
            }
        }
        Ok(out)
    }

    /// The semantic ID of a known item, or `None` for an unknown one.
    fn semantic_id<'py>(&self, py: Python<'py>, item: &str) -> Option<Bound<'py, PyArray1<u32>>> {
        self.inner
            .semantic_id(item)
            .map(|t| PyArray1::from_slice(py, t))
    }

    /// What the policy sees of a cold item with side-feature `vector` (float32, the
    /// tokenizer's input dimension): `{"codes": uint32 array, "shared_levels": int,
    /// "neighbours": [item ids]}`, the neighbours being up to `neighbours` known items with the
    /// longest common code prefix.
    #[pyo3(signature = (vector, neighbours = 5))]
    fn cold_item<'py>(
        &self,
        py: Python<'py>,
        vector: PyReadonlyArray1<'py, f32>,
        neighbours: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let v = vector.as_array().to_vec();
        let cold = py
            .detach(|| self.inner.cold_item(&v, neighbours))
            .map_err(err)?;
        let d = PyDict::new(py);
        d.set_item("codes", PyArray1::from_vec(py, cold.codes))?;
        d.set_item("shared_levels", cold.shared_levels)?;
        d.set_item("neighbours", cold.neighbours)?;
        Ok(d)
    }

    /// Items per generated list.
    #[getter]
    fn list_len(&self) -> usize {
        self.inner.list_len()
    }

    /// Items with a semantic ID.
    #[getter]
    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    /// Whether requests must carry `retriever_scores`.
    #[getter]
    fn uses_retriever_score(&self) -> bool {
        self.inner.uses_retriever_score()
    }

    /// Whether requests must carry `exposures`.
    #[getter]
    fn uses_exposures(&self) -> bool {
        self.inner.uses_exposures()
    }

    /// The decoding strategy, as text.
    #[getter]
    fn decode(&self) -> String {
        self.inner.strategy().to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Reranker(items={}, list_len={}, decode={:?})",
            self.inner.num_items(),
            self.inner.list_len(),
            self.inner.strategy().to_string()
        )
    }
}

/// The semantic-ID table of a run: one token tuple per item (item index order).
#[pyclass(name = "SemanticIds", module = "glorank", frozen)]
struct PySemanticIds {
    inner: SemanticIds,
}

#[pymethods]
impl PySemanticIds {
    /// Loads `semantic_ids.json`, given the file or the run directory holding it.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        let file = if path.is_dir() {
            RunDir::new(&path).semantic_ids_file()
        } else {
            path
        };
        Ok(Self {
            inner: SemanticIds::load(&file).map_err(err)?,
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Tokens per item (code levels plus the dedupe level).
    #[getter]
    fn depth(&self) -> usize {
        self.inner.vocab_sizes().len()
    }

    /// Vocabulary size of each token position.
    #[getter]
    fn vocab_sizes(&self) -> Vec<usize> {
        self.inner.vocab_sizes()
    }

    /// The tuple of item `index`, as a uint32 array.
    fn tuple<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let t = self.inner.tuple(index).ok_or_else(|| {
            err(format!(
                "item index {index} is out of range (the table has {} items)",
                self.inner.len()
            ))
        })?;
        Ok(PyArray1::from_slice(py, t))
    }

    /// The item index of a tuple, or `None`.
    fn item(&self, tuple: Vec<u32>) -> Option<usize> {
        self.inner.item(&tuple)
    }

    /// The whole table as a uint32 array of shape `(items, depth)`.
    fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<u32>>> {
        PyArray2::from_vec2(py, self.inner.tuples()).map_err(err)
    }
}

/// A fitted item tokenizer (residual k-means or RQ-VAE) of a run directory.
#[pyclass(name = "Tokenizer", module = "glorank", frozen)]
struct PyTokenizer {
    inner: Mutex<Box<dyn ItemTokenizer>>,
}

#[pymethods]
impl PyTokenizer {
    /// Loads the tokenizer of a run directory (`tokenizer/` inside it), or a tokenizer
    /// directory itself.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        let run = RunDir::new(&path);
        let dir = if run.tokenizer_dir().is_dir() {
            run.tokenizer_dir().to_path_buf()
        } else {
            path
        };
        let tok = load_tokenizer(&dir, glorank::Device::flex()).map_err(err)?;
        Ok(Self {
            inner: Mutex::new(tok),
        })
    }

    /// Dimension of the item vectors it encodes, when known.
    #[getter]
    fn input_dim(&self) -> Option<usize> {
        self.lock().input_dim()
    }

    /// Codes of each level.
    #[getter]
    fn codes_per_level(&self) -> Vec<usize> {
        self.lock().codes_per_level().to_vec()
    }

    /// The nearest codes of each row of `vectors` (float32, shape `(rows, input_dim)`), as a
    /// uint32 array of shape `(rows, levels)` (no dedupe token).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        vectors: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<u32>>> {
        let shape = vectors.shape();
        let (rows, dim) = (shape[0], shape[1]);
        let data: Vec<f32> = vectors.as_array().iter().copied().collect();
        if rows == 0 {
            return Err(err("encode: no rows"));
        }
        let codes = py.detach(|| self.lock().encode(&data, dim)).map_err(err)?;
        PyArray2::from_vec2(py, &codes).map_err(err)
    }
}

impl PyTokenizer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn ItemTokenizer>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Scores from a numpy table `(depth, max_vocab)`: the same token scores at every slot.
struct TableScorer {
    table: Vec<f32>,
    width: usize,
}

impl StepScorer for TableScorer {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let row = &self.table[batch.level * self.width..batch.level * self.width + batch.vocab];
        for r in 0..batch.rows() {
            out[r * batch.vocab..(r + 1) * batch.vocab].copy_from_slice(row);
        }
        Ok(())
    }
}

/// Scores from a Python callable `scorer(step, level, slot, prefixes) -> (rows, vocab)`.
struct CallbackScorer<'a, 'py> {
    py: Python<'py>,
    scorer: &'a Bound<'py, PyAny>,
}

impl StepScorer for CallbackScorer<'_, '_> {
    fn score(
        &mut self,
        batch: &StepBatch<'_>,
        out: &mut [f32],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut call = || -> PyResult<()> {
            let prefixes: Vec<Vec<u32>> = (0..batch.rows())
                .map(|r| batch.prefix(r).to_vec())
                .collect();
            let prefixes = if batch.step == 0 {
                PyArray2::<u32>::zeros(self.py, [batch.rows(), 0], false)
            } else {
                PyArray2::from_vec2(self.py, &prefixes).map_err(err)?
            };
            let result = self
                .scorer
                .call1((batch.step, batch.level, batch.slot, prefixes))?;
            let scores = result
                .extract::<PyReadonlyArray2<'_, f32>>()
                .or_else(|_| {
                    // Accept float64 and lists: convert through numpy once.
                    let np = self.py.import("numpy")?;
                    np.call_method1("asarray", (result, "float32"))?
                        .extract::<PyReadonlyArray2<'_, f32>>()
                })
                .map_err(|e| {
                    err(format!(
                        "scorer must return a 2-D float array of shape ({}, {}): {e}",
                        batch.rows(),
                        batch.vocab
                    ))
                })?;
            if scores.shape() != [batch.rows(), batch.vocab] {
                return Err(err(format!(
                    "scorer returned shape {:?} at step {}, expected ({}, {})",
                    scores.shape(),
                    batch.step,
                    batch.rows(),
                    batch.vocab
                )));
            }
            for (o, s) in out.iter_mut().zip(scores.as_array().iter()) {
                *o = *s;
            }
            Ok(())
        };
        call().map_err(|e| e.to_string().into())
    }
}

/// Decodes lists of `list_len` distinct candidates, constrained by the prefix trie of
/// `tuples` (uint32, shape `(candidates, depth)`) over `vocab_sizes`. `scorer` is either a
/// callable `scorer(step, level, slot, prefixes) -> array (rows, vocab)` (prefixes: uint32
/// `(rows, step)`) or a float array `(depth, max(vocab_sizes))` of fixed token scores per
/// level. Returns dicts `{"items", "tokens", "token_logprobs", "logprob"}`: one list for greedy
/// and sampling, up to `W` best first for `beam:W`.
#[pyfunction]
#[pyo3(signature = (tuples, vocab_sizes, list_len, scorer, decode = "greedy", seed = 0))]
fn decode<'py>(
    py: Python<'py>,
    tuples: PyReadonlyArray2<'py, u32>,
    vocab_sizes: Vec<usize>,
    list_len: usize,
    scorer: &Bound<'py, PyAny>,
    decode: &str,
    seed: u64,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let tuples: Vec<Vec<u32>> = tuples
        .as_array()
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    let trie = CandidateTrie::new(&tuples, &vocab_sizes).map_err(err)?;
    let mut decoder = Decoder::new(parse_strategy(decode)?, seed).map_err(err)?;
    let lists = if scorer.is_callable() {
        let mut s = CallbackScorer { py, scorer };
        decoder.decode(&[&trie], list_len, &mut s)
    } else {
        let table: PyReadonlyArray2<'py, f32> = scorer.extract().map_err(|_| {
            err("scorer must be a callable or a float32 array of shape (depth, max vocab)")
        })?;
        let width = vocab_sizes.iter().copied().max().unwrap_or(0);
        if table.shape() != [vocab_sizes.len(), width] {
            return Err(err(format!(
                "score table has shape {:?}, expected ({}, {width})",
                table.shape(),
                vocab_sizes.len()
            )));
        }
        let mut s = TableScorer {
            table: table.as_array().iter().copied().collect(),
            width,
        };
        decoder.decode(&[&trie], list_len, &mut s)
    }
    .map_err(err)?;
    lists
        .into_iter()
        .flatten()
        .map(|l| {
            let d = PyDict::new(py);
            d.set_item("items", l.items)?;
            d.set_item("tokens", l.tokens)?;
            d.set_item("token_logprobs", l.token_logprobs)?;
            d.set_item("logprob", l.logprob)?;
            Ok(d)
        })
        .collect()
}

/// Precision, recall, F1, NDCG, MAP (over min(positives, k)), MAP over hits and hit rate at
/// `k` of `ranked` (candidate indices, best first) given each candidate's `relevance`.
#[pyfunction]
fn list_metrics<'py>(
    py: Python<'py>,
    ranked: Vec<usize>,
    relevance: PyReadonlyArray1<'py, f64>,
    k: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let relevance = relevance.as_array().to_vec();
    let m = ListMetrics::compute(&ranked, &relevance, k).map_err(err)?;
    let d = PyDict::new(py);
    for (name, value) in m.named() {
        d.set_item(name, value)?;
    }
    Ok(d)
}

/// The probability that a random positive scores above a random negative (ties count 1/2);
/// `None` when `labels` hold only one class.
#[pyfunction]
fn auc(scores: PyReadonlyArray1<'_, f64>, labels: Vec<bool>) -> PyResult<Option<f64>> {
    glorank::components::auc(scores.as_slice().map_err(err)?, &labels).map_err(err)
}

/// The mean of `values` and the half-width of its Student-t 95% confidence interval.
#[pyfunction]
fn confidence_interval(values: PyReadonlyArray1<'_, f64>) -> PyResult<(f64, f64)> {
    let s = Summary::from_values(values.as_slice().map_err(err)?).map_err(err)?;
    Ok((s.mean, s.half_width()))
}

/// The `glorank._glorank` extension module.
#[pymodule]
fn _glorank(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GlorankError", m.py().get_type::<GlorankError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyReranker>()?;
    m.add_class::<PySemanticIds>()?;
    m.add_class::<PyTokenizer>()?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(list_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(auc, m)?)?;
    m.add_function(wrap_pyfunction!(confidence_interval, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::load_config, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::run, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::read_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(pipeline::_write_tiny_run, m)?)?;
    Ok(())
}
