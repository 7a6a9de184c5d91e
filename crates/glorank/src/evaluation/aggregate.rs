//! The mean and 95% interval over runs (seeds) of several `metrics.json` files.

use super::{MethodMetrics, MetricsFile};
use crate::{Error, Result};
use glorank_metrics::Summary;
use std::path::PathBuf;

/// The figures `aggregate` prints, with their column names, in column order.
const COLUMNS: [(&str, &str); 10] = [
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("ndcg", "NDCG"),
    ("map", "MAP"),
    ("map_hits", "MAP (hits)"),
    ("average_reward", "Average Reward"),
    ("true_expected_clicks", "true clicks"),
    ("logged_auc", "AUC logged"),
    ("logged_ndcg", "NDCG logged"),
];

/// Per method and figure, the mean over the runs `files` (each a `metrics.json` or a run
/// directory) with a Student-t 95% interval over the runs (not over requests), as a Markdown
/// table. With `slice` (`held_out_cold`, `cold_start_lt_5`, ...) the runs' rows on that
/// slice instead of their full tables. Methods are those of the first run, in table order;
/// columns are the figures some run has. A cell over fewer runs than the header's (a run
/// without that method or figure) says over how many ("(2 of 3 runs)").
///
/// # Errors
/// A file that is not a `metrics.json` (named, with the entry); a run without `slice`;
/// no file.
pub fn aggregate(files: &[PathBuf], slice: Option<&str>) -> Result<String> {
    let mut runs: Vec<Vec<(String, MethodMetrics)>> = Vec::with_capacity(files.len());
    for f in files {
        let file = MetricsFile::read(f)?;
        runs.push(match slice {
            None => file.rows,
            Some(key) => file
                .slice(key)
                .map(<[_]>::to_vec)
                .ok_or_else(|| Error::Format {
                    path: f.clone(),
                    message: format!("no slice `{key}` with method rows in this metrics.json"),
                })?,
        });
    }
    let Some(first) = runs.first() else {
        return Err(Error::InvalidRequest(
            "aggregate needs metrics.json files".into(),
        ));
    };
    let methods: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    let get = |run: &[(String, MethodMetrics)], method: &str, key: &str| {
        run.iter()
            .find(|(n, _)| n == method)
            .and_then(|(_, m)| m.get(key))
    };
    let columns: Vec<_> = COLUMNS
        .iter()
        .filter(|(k, _)| {
            runs.iter()
                .any(|r| methods.iter().any(|m| get(r, m, k).is_some()))
        })
        .collect();
    let mut out = format!(
        "{} runs; mean ± half-width of the 95% confidence interval over runs\n\n",
        runs.len()
    );
    out.push_str(&format!(
        "| method | {} |\n|---|{}\n",
        columns.iter().map(|k| k.1).collect::<Vec<_>>().join(" | "),
        "---|".repeat(columns.len())
    ));
    for m in &methods {
        let cells: Vec<String> = columns
            .iter()
            .map(|(k, _)| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| get(r, m, k).map(|s| s.mean))
                    .collect();
                // A cell over fewer runs than the header's says over how many.
                let of = if v.len() < runs.len() {
                    format!(" ({} of {} runs)", v.len(), runs.len())
                } else {
                    String::new()
                };
                match Summary::from_values(&v) {
                    Ok(s) if v.len() > 1 => {
                        format!("{:.4} ± {:.4}{of}", s.mean, s.half_width())
                    }
                    Ok(s) => format!("{:.4}{of}", s.mean),
                    Err(_) => "-".into(),
                }
            })
            .collect();
        out.push_str(&format!("| {m} | {} |\n", cells.join(" | ")));
    }
    Ok(out)
}
