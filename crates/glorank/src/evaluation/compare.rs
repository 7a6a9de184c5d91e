//! `predictions.jsonl` and paired comparisons of two methods from it.
//!
//! Every evaluation writes one [`Prediction`] per test request and method: the request's
//! candidates, their click labels and the generated list. Two methods that ranked the same
//! requests can be compared request by request: the mean of the per-request differences of
//! a metric, with its 95% interval, is much tighter than the two rows' own intervals, since
//! both lists face the same user and pool. `glorank compare` prints these differences.

use crate::{Error, Result};
use glorank_metrics::{ListMetrics, Summary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest line of a `predictions.jsonl` read (a list with its candidates and clicks).
const MAX_LINE: usize = glorank_data::MAX_LINE_BYTES;

/// One line of `predictions.jsonl`: a method's list for one test request.
///
/// The fields are declared in alphabetical order, the order the file has always had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    /// The request's candidate item ids, in pool order.
    pub candidates: Vec<String>,
    /// The click label of each candidate (0 or 1), aligned with `candidates`.
    pub clicks: Vec<u8>,
    /// The method's list, as item ids drawn from `candidates`.
    pub list: Vec<String>,
    /// The method's row name (`"GloRank SFT+RL"`, `"Seq2Slate"`, ...).
    pub method: String,
    /// The request's index in the evaluated split.
    pub request: usize,
    /// The request's user id.
    pub user: String,
}

/// Which per-request metric a comparison reads; each is computed from the clicks at the
/// list's length, as [`ListMetrics`] computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Metric {
    /// Precision@L.
    Precision,
    /// Recall@L.
    Recall,
    /// F1@L.
    F1,
    /// NDCG@L with the clicks as gains.
    Ndcg,
    /// AP@L dividing by `min(positives, L)` (MAP@L over requests).
    Map,
    /// AP@L averaged over the hit positions (MAP-hits@L over requests).
    MapHits,
    /// Hit@L.
    Hit,
}

impl Metric {
    /// Every metric, in the order of [`ListMetrics::named`].
    pub const ALL: [Metric; 7] = [
        Metric::Precision,
        Metric::Recall,
        Metric::F1,
        Metric::Ndcg,
        Metric::Map,
        Metric::MapHits,
        Metric::Hit,
    ];

    /// The metric's name, as in `metrics.json` (`precision`, `ndcg`, `map_hits`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::F1 => "f1",
            Metric::Ndcg => "ndcg",
            Metric::Map => "map",
            Metric::MapHits => "map_hits",
            Metric::Hit => "hit",
        }
    }

    /// This metric's value among `m`, looked up by name in [`ListMetrics::named`].
    pub fn of(self, m: &ListMetrics) -> f64 {
        m.named()
            .into_iter()
            .find_map(|(name, value)| (name == self.name()).then_some(value))
            .expect("every Metric::name is a name of ListMetrics::named")
    }
}

impl std::str::FromStr for Metric {
    type Err = Error;

    /// Parses a [`Metric::name`].
    fn from_str(s: &str) -> Result<Self> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::InvalidConfig {
                field: "metric".into(),
                message: format!(
                    "unknown metric `{s}`; expected one of {}",
                    Metric::ALL.map(Metric::name).join(", ")
                ),
            })
    }
}

/// The lists of one `predictions.jsonl`, checked on reading.
#[derive(Debug, Clone)]
pub struct Predictions {
    path: PathBuf,
    lines: Vec<Prediction>,
}

impl Predictions {
    /// Reads a `predictions.jsonl` file, or the one inside a run directory.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Format`] naming the line for a
    /// line that is not a [`Prediction`], whose clicks do not match its candidates, whose
    /// list names an item that is not a candidate, or that repeats a (method, request) pair.
    pub fn read(path: &Path) -> Result<Self> {
        let path = if path.is_dir() {
            crate::RunDir::new(path).predictions_file()
        } else {
            path.to_path_buf()
        };
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        crate::RunDir::verify_result_file(&path)?;
        let file = std::fs::File::open(&path).map_err(io)?;
        let mut reader = std::io::BufReader::new(file);
        let mut lines = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut buf = Vec::new();
        for i in 0.. {
            let bad = |message: String| Error::Format {
                path: path.clone(),
                message: format!("line {}: {message}", i + 1),
            };
            let line = match glorank_data::read_line_bounded(&mut reader, &mut buf, MAX_LINE)
                .map_err(io)?
            {
                glorank_data::BoundedLine::Eof => break,
                glorank_data::BoundedLine::TooLong => {
                    return Err(bad(format!("longer than {MAX_LINE} bytes")));
                }
                glorank_data::BoundedLine::Line => std::str::from_utf8(&buf)
                    .map_err(|e| bad(format!("not UTF-8 (byte {})", e.valid_up_to())))?,
            };
            if line.trim().is_empty() {
                continue;
            }
            let p: Prediction = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            if p.clicks.len() != p.candidates.len() {
                return Err(bad(format!(
                    "{} clicks for {} candidates",
                    p.clicks.len(),
                    p.candidates.len()
                )));
            }
            if let Some(c) = p.clicks.iter().find(|&&c| c > 1) {
                return Err(bad(format!("click label {c} is neither 0 nor 1")));
            }
            if p.list.is_empty() {
                return Err(bad("empty list".into()));
            }
            if let Some(item) = p.list.iter().find(|item| !p.candidates.contains(item)) {
                return Err(bad(format!("listed item `{item}` is not a candidate")));
            }
            if !seen.insert((p.method.clone(), p.request)) {
                return Err(bad(format!(
                    "method `{}` lists request {} twice",
                    p.method, p.request
                )));
            }
            lines.push(p);
        }
        Ok(Self { path, lines })
    }

    /// The file these lists were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every line, in file order.
    pub fn lines(&self) -> &[Prediction] {
        &self.lines
    }

    /// The method names, in order of first appearance.
    pub fn methods(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.lines {
            if !out.contains(&p.method.as_str()) {
                out.push(&p.method);
            }
        }
        out
    }

    /// `method`'s value of `metric` for each request it listed, keyed by request, with the
    /// request's candidates so that a comparison can check both sides saw the same pool.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the file's methods when `method` is not among them;
    /// metric errors.
    pub fn per_request(&self, method: &str, metric: Metric) -> Result<PerRequest> {
        let mut values = BTreeMap::new();
        for p in self.lines.iter().filter(|p| p.method == method) {
            // `read` checked that every listed item is a candidate.
            let list: Vec<usize> = p
                .list
                .iter()
                .filter_map(|item| p.candidates.iter().position(|c| c == item))
                .collect();
            let relevance: Vec<f64> = p.clicks.iter().map(|&c| f64::from(c)).collect();
            let m = ListMetrics::compute(&list, &relevance, list.len())?;
            values.insert(p.request, (metric.of(&m), p.candidates.clone()));
        }
        if values.is_empty() {
            return Err(Error::InvalidConfig {
                field: "method".into(),
                message: format!(
                    "{} has no method `{method}`; it has: {}",
                    self.path.display(),
                    self.methods().join(", ")
                ),
            });
        }
        Ok(PerRequest {
            method: method.to_string(),
            values,
        })
    }
}

/// One method's per-request values of a metric (see [`Predictions::per_request`]).
#[derive(Debug, Clone)]
pub struct PerRequest {
    /// The method.
    pub method: String,
    /// Request -> (value, the request's candidates).
    pub values: BTreeMap<usize, (f64, Vec<String>)>,
}

/// The mean of `a - b` over the requests both listed, with its 95% interval (Student t over
/// requests).
///
/// # Errors
/// [`Error::InvalidRequest`] when the two share no request, or when a shared request has
/// different candidates on the two sides (the files come from different data).
pub fn paired_difference(a: &PerRequest, b: &PerRequest) -> Result<Summary> {
    let mut diffs = Vec::new();
    for (request, (va, ca)) in &a.values {
        if let Some((vb, cb)) = b.values.get(request) {
            if ca != cb {
                return Err(Error::InvalidRequest(format!(
                    "request {request} has different candidates for `{}` and `{}`: the \
                     predictions come from different data",
                    a.method, b.method
                )));
            }
            diffs.push(va - vb);
        }
    }
    if diffs.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "`{}` and `{}` share no request",
            a.method, b.method
        )));
    }
    Ok(Summary::from_values(&diffs)?)
}

impl Prediction {
    /// This line as JSON (no trailing newline), the format [`Predictions::read`] reads.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a Prediction always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(method: &str, request: usize, clicks: &[u8], list: &[&str]) -> String {
        let p = Prediction {
            candidates: ["a", "b", "c", "d"].map(String::from).to_vec(),
            clicks: clicks.to_vec(),
            list: list.iter().map(|s| s.to_string()).collect(),
            method: method.into(),
            request,
            user: "u".into(),
        };
        p.to_json_line()
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predictions.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn paired_difference_is_the_mean_of_per_request_differences() {
        // Request 0: A hits 2 of 2, B 1 of 2; request 1: A 0 of 2, B 1 of 2.
        let text = [
            line("A", 0, &[1, 1, 0, 0], &["a", "b"]),
            line("B", 0, &[1, 1, 0, 0], &["a", "c"]),
            line("A", 1, &[0, 0, 1, 1], &["a", "b"]),
            line("B", 1, &[0, 0, 1, 1], &["c", "a"]),
        ]
        .join("\n");
        let (_dir, path) = write(&text);
        let p = Predictions::read(path.parent().unwrap()).unwrap();
        assert_eq!(p.methods(), vec!["A", "B"]);
        let a = p.per_request("A", Metric::Precision).unwrap();
        let b = p.per_request("B", Metric::Precision).unwrap();
        let d = paired_difference(&a, &b).unwrap();
        assert_eq!(d.n, 2);
        // Differences +0.5 and -0.5.
        assert!(d.mean.abs() < 1e-12);
        assert!(d.ci_low < -0.5 && d.ci_high > 0.5);
        let hit = p.per_request("A", Metric::Hit).unwrap();
        assert_eq!(hit.values[&0].0, 1.0);
        assert_eq!(hit.values[&1].0, 0.0);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let good = line("A", 0, &[1, 0, 0, 0], &["a"]);
        for (bad, needle) in [
            ("{\"method\":\"A\"}".to_string(), "line 2"),
            (
                line("A", 1, &[1, 0, 0], &["a"]),
                "3 clicks for 4 candidates",
            ),
            (line("A", 1, &[2, 0, 0, 0], &["a"]), "neither 0 nor 1"),
            (
                line("A", 1, &[1, 0, 0, 0], &["z"]),
                "`z` is not a candidate",
            ),
            (line("A", 0, &[1, 0, 0, 0], &["a"]), "lists request 0 twice"),
        ] {
            let (_dir, path) = write(&format!("{good}\n{bad}\n"));
            let e = Predictions::read(&path).unwrap_err().to_string();
            assert!(e.contains("line 2"), "{e}");
            assert!(e.contains(needle), "{e}");
            assert!(e.contains("predictions.jsonl"), "{e}");
        }
    }

    #[test]
    fn unknown_methods_and_different_pools_are_errors() {
        let (_dir, path) = write(&line("A", 0, &[1, 0, 0, 0], &["a"]));
        let p = Predictions::read(&path).unwrap();
        let e = p.per_request("Seq2Slate", Metric::Ndcg).unwrap_err();
        assert!(e.to_string().contains("it has: A"), "{e}");

        let a = p.per_request("A", Metric::Precision).unwrap();
        let mut other = a.clone();
        other.method = "B".into();
        other.values.get_mut(&0).unwrap().1[0] = "x".into();
        let e = paired_difference(&a, &other).unwrap_err();
        assert!(e.to_string().contains("different candidates"), "{e}");
        other.values.clear();
        other.values.insert(5, (0.0, vec![]));
        assert!(
            paired_difference(&a, &other)
                .unwrap_err()
                .to_string()
                .contains("share no request")
        );
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>().unwrap(), m);
        }
        let e = "auc".parse::<Metric>().unwrap_err().to_string();
        assert!(e.contains("precision, recall"), "{e}");
    }
}
