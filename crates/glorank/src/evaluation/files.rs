//! The printed table and the two result files: `metrics.json` ([`MetricsFile`]) and
//! `predictions.jsonl` (written here, read by [`super::Predictions`]).

use super::slices::{HeldOutView, cold_slice, held_out_view};
use super::{COLD_SLICE_KEY_PREFIX, HELD_OUT_KEYS, MethodResult, Prediction};
use crate::{Error, Result, RunDir};
use glorank_data::{PreparedDataset, RerankSample};
use glorank_metrics::{MetricsSummary, Summary};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Width of a table's name column: the longest name, at least 18 characters.
fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).max().unwrap_or(0).max(18)
}

/// One table cell: `mean±half-width`, or `-` without a value.
fn cell(s: Option<&Summary>) -> String {
    s.map_or("-".into(), |s| {
        format!("{:.4}±{:.4}", s.mean, s.half_width())
    })
}

/// Prints rows as a table: mean ± CI half-width per metric.
pub fn table(rows: &[MethodResult], cutoff: usize) -> String {
    let with_true = rows.iter().any(|r| r.true_reward.is_some());
    let with_auc = rows.iter().any(|r| r.logged_auc.is_some());
    let w = name_width(rows.iter().map(|r| r.name.as_str()));
    let mut out = format!(
        "{:<w$} {:>15} {:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
        "method",
        format!("Precision@{cutoff}"),
        format!("Recall@{cutoff}"),
        format!("F1@{cutoff}"),
        format!("NDCG@{cutoff}"),
        format!("MAP@{cutoff}"),
        format!("MAP-hits@{cutoff}"),
        "Avg Reward"
    );
    if with_true {
        out.push_str(&format!(" {:>15}", "true clicks"));
    }
    if with_auc {
        out.push_str(&format!(" {:>15} {:>15}", "AUC logged", "NDCG logged"));
    }
    out.push('\n');
    let f = |s: &Summary| cell(Some(s));
    for r in rows {
        let m = &r.metrics;
        out.push_str(&format!(
            "{:<w$} {:>15} {:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
            r.name,
            f(&m.precision),
            f(&m.recall),
            f(&m.f1),
            f(&m.ndcg),
            f(&m.map),
            f(&m.map_hits),
            cell(r.average_reward.as_ref())
        ));
        if with_true {
            out.push_str(&format!(" {:>15}", cell(r.true_reward.as_ref())));
        }
        if with_auc {
            out.push_str(&format!(
                " {:>15} {:>15}",
                cell(r.logged_auc.as_ref()),
                cell(r.logged_ndcg.as_ref())
            ));
        }
        out.push('\n');
    }
    out.push_str(
        "(mean ± half-width of the 95% confidence interval over requests; MAP divides by \
         min(positives, L), MAP-hits averages over the hit positions as torchmetrics does; \
         candidates without feedback (retrieved, or not shown) count as non-clicks; \
         AUC logged: clicked over non-clicked items of the logged slate under the method's \
         candidate scores, over requests whose slate has both; NDCG logged: the logged \
         items reordered by those scores, over requests whose slate has a click)\n",
    );
    out
}

/// One method's figures in `metrics.json`: every label metric with its interval, and the
/// figures only some evaluations have.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MethodMetrics {
    /// Precision/Recall/F1/NDCG/MAP/MAP-hits/Hit@L.
    #[serde(flatten)]
    pub metrics: MetricsSummary,
    /// Average Reward under the run's simulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_reward: Option<Summary>,
    /// Mean true expected clicks under the synthetic world's click model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_expected_clicks: Option<Summary>,
    /// AUC of clicked over non-clicked logged items under the method's candidate scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged_auc: Option<Summary>,
    /// NDCG of the logged items reordered by the method's candidate scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged_ndcg: Option<Summary>,
}

impl MethodMetrics {
    /// The figure named `key` as `metrics.json` spells it (`precision`, `ndcg`,
    /// `average_reward`, `true_expected_clicks`, `logged_auc`, ...), when the method has it.
    pub fn get(&self, key: &str) -> Option<Summary> {
        let m = &self.metrics;
        match key {
            "precision" => Some(m.precision),
            "recall" => Some(m.recall),
            "f1" => Some(m.f1),
            "ndcg" => Some(m.ndcg),
            "map" => Some(m.map),
            "map_hits" => Some(m.map_hits),
            "hit" => Some(m.hit),
            "average_reward" => self.average_reward,
            "true_expected_clicks" => self.true_expected_clicks,
            "logged_auc" => self.logged_auc,
            "logged_ndcg" => self.logged_ndcg,
            _ => None,
        }
    }
}

/// How one method treats held-out items against warm ones, as `metrics.json` records it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeldOutFigures {
    /// Share of the clicked held-out logged items found in the list.
    pub found_held_out: Option<Summary>,
    /// Share of the clicked warm logged items found in the list.
    pub found_warm: Option<Summary>,
    /// AUC of clicked held-out items over the other held-out candidates.
    pub auc_held_out: Option<Summary>,
    /// AUC of clicked warm items over the other warm candidates.
    pub auc_warm: Option<Summary>,
}

/// The held-out-items protocol's pool figures (`held_out_pools` in `metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeldOutPools {
    /// Held-out items in the catalogue.
    pub items: usize,
    /// Share of held-out items among the logged candidates.
    pub logged_cold_share: f64,
    /// Share of held-out items among the retrieved candidates.
    pub retrieved_cold_share: f64,
    /// Requests with a held-out candidate anywhere in the pool.
    pub any_cold_requests: usize,
    /// Requests whose logged slate holds a held-out item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_cold_requests: Option<usize>,
    /// Requests whose logged slate holds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_warm_requests: Option<usize>,
    /// Per method.
    pub per_method: BTreeMap<String, HeldOutFigures>,
}

/// `metrics.json`, typed: the evaluated methods' figures, the slices of the table that
/// exist (cold-start slices, the held-out protocol's cold and warm requests) and the
/// held-out pools.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsFile {
    /// Each method's figures, in table order ([`super::METHOD_ORDER`], then others).
    pub rows: Vec<(String, MethodMetrics)>,
    /// Each slice's rows by key (`cold_start_lt_1`, `held_out_cold`, ...), in file order.
    pub slices: Vec<(String, Vec<(String, MethodMetrics)>)>,
    /// The held-out pools, on a held-out-items run.
    pub held_out_pools: Option<HeldOutPools>,
}

/// Whether `v` is one method's figures (it has a precision mean).
fn is_method_row(v: &Value) -> bool {
    v["precision"]["mean"].as_f64().is_some()
}

/// Rows of `entries` in table order: the known methods first, the others after.
fn in_table_order(mut rows: Vec<(String, MethodMetrics)>) -> Vec<(String, MethodMetrics)> {
    let rank = |name: &str| {
        super::METHOD_ORDER
            .iter()
            .position(|m| *m == name)
            .unwrap_or(super::METHOD_ORDER.len())
    };
    rows.sort_by_key(|(name, _)| rank(name));
    rows
}

impl MetricsFile {
    /// The file of evaluated `rows` (no slices).
    pub fn of(rows: &[MethodResult]) -> Self {
        Self {
            rows: rows.iter().map(|r| (r.name.clone(), r.figures())).collect(),
            slices: Vec::new(),
            held_out_pools: None,
        }
    }

    /// The figures of `method`.
    pub fn row(&self, method: &str) -> Option<&MethodMetrics> {
        self.rows.iter().find(|(n, _)| n == method).map(|(_, m)| m)
    }

    /// The rows of slice `key`.
    pub fn slice(&self, key: &str) -> Option<&[(String, MethodMetrics)]> {
        self.slices
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, rows)| rows.as_slice())
    }

    /// The file as JSON: method (or slice, or `held_out_pools`) -> figures, keys sorted.
    pub fn to_json(&self) -> Value {
        let rows = |rows: &[(String, MethodMetrics)]| {
            Value::Object(
                rows.iter()
                    .map(|(name, m)| (name.clone(), serde_json::to_value(m).unwrap_or_default()))
                    .collect(),
            )
        };
        let mut out = match rows(&self.rows) {
            Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        for (key, slice) in &self.slices {
            out.insert(key.clone(), rows(slice));
        }
        if let Some(p) = &self.held_out_pools {
            out.insert(
                HELD_OUT_KEYS[2].into(),
                serde_json::to_value(p).unwrap_or_default(),
            );
        }
        Value::Object(out)
    }

    /// Writes the file (pretty JSON, atomically).
    ///
    /// # Errors
    /// File errors naming `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.to_json()).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(glorank_nn::persist::write_atomic(path, &json)?)
    }

    /// Reads a `metrics.json`, or the one inside a run directory.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Format`] naming the file and the entry that is not a method's
    /// figures, a slice of them or the held-out pools.
    pub fn read(path: &Path) -> Result<Self> {
        let path: PathBuf = if path.is_dir() {
            RunDir::new(path).metrics_file()
        } else {
            path.to_path_buf()
        };
        let bad = |message: String| Error::Format {
            path: path.clone(),
            message,
        };
        RunDir::verify_result_file(&path)?;
        let value: Value =
            serde_json::from_slice(&crate::read_bytes(&path)?).map_err(|e| bad(e.to_string()))?;
        let Value::Object(entries) = value else {
            return Err(bad("not a metrics.json (not a JSON object)".into()));
        };
        let parse_row = |key: &str, v: &Value| {
            MethodMetrics::deserialize(v).map_err(|e| bad(format!("`{key}`: {e}")))
        };
        let (mut rows, mut slices, mut pools) = (Vec::new(), Vec::new(), None);
        for (key, v) in &entries {
            if is_method_row(v) {
                rows.push((key.clone(), parse_row(key, v)?));
            } else if key == HELD_OUT_KEYS[2] {
                pools =
                    Some(HeldOutPools::deserialize(v).map_err(|e| bad(format!("`{key}`: {e}")))?);
            } else if let Some(o) = v.as_object().filter(|o| o.values().all(is_method_row)) {
                let slice = o
                    .iter()
                    .map(|(name, r)| Ok((name.clone(), parse_row(&format!("{key}.{name}"), r)?)))
                    .collect::<Result<Vec<_>>>()?;
                slices.push((key.clone(), in_table_order(slice)));
            } else {
                return Err(bad(format!(
                    "`{key}` is neither a method's figures (with a precision mean) nor a slice \
                     of them; pass the metrics.json of a run"
                )));
            }
        }
        if rows.is_empty() {
            return Err(bad(
                "not a metrics.json (no method with a precision mean); pass the metrics.json \
                 of a run"
                    .into(),
            ));
        }
        Ok(Self {
            rows: in_table_order(rows),
            slices,
            held_out_pools: pools,
        })
    }
}

/// Appends the held-out-items protocol's part to the printed `text` and to `file`: the
/// pool shares, the rows split by whether the logged slate holds a held-out item, and the
/// per-method figures.
fn held_out_section(
    v: &HeldOutView,
    requests: usize,
    l: usize,
    text: &mut String,
    file: &mut MetricsFile,
) {
    text.push_str(&format!(
        "\nheld-out items: {} items unseen before the test slates; {:.1}% of the logged and \
         {:.1}% of the retrieved test candidates; {} of {requests} requests have one in the pool\n",
        v.items,
        100.0 * v.logged_cold_share,
        100.0 * v.retrieved_cold_share,
        v.any_cold_requests,
    ));
    let mut pools = HeldOutPools {
        items: v.items,
        logged_cold_share: v.logged_cold_share,
        retrieved_cold_share: v.retrieved_cold_share,
        any_cold_requests: v.any_cold_requests,
        held_out_cold_requests: v.cold.as_ref().map(|(n, _)| *n),
        held_out_warm_requests: v.warm.as_ref().map(|(n, _)| *n),
        per_method: BTreeMap::new(),
    };
    for (key, what, slice) in [
        (
            HELD_OUT_KEYS[0],
            "whose logged slate holds a held-out item",
            &v.cold,
        ),
        (
            HELD_OUT_KEYS[1],
            "whose logged slate holds none (warm)",
            &v.warm,
        ),
    ] {
        if let Some((n, slice_rows)) = slice {
            text.push_str(&format!("\n{n} requests {what}\n{}", table(slice_rows, l)));
            file.slices
                .push((key.into(), MetricsFile::of(slice_rows).rows));
        }
    }
    let w = name_width(v.methods.iter().map(|m| m.name.as_str()));
    let f = |s: &Option<Summary>| cell(s.as_ref());
    text.push_str(&format!(
        "\nper request: share of the clicked logged items found in the list, and AUC of \
         clicked items over the other candidates of the same kind\n\
         {:<w$} {:>15} {:>15} {:>15} {:>15}\n",
        "method", "found held-out", "found warm", "AUC held-out", "AUC warm"
    ));
    for m in &v.methods {
        text.push_str(&format!(
            "{:<w$} {:>15} {:>15} {:>15} {:>15}\n",
            m.name,
            f(&m.found_held_out),
            f(&m.found_warm),
            f(&m.auc_held_out),
            f(&m.auc_warm)
        ));
        pools.per_method.insert(
            m.name.clone(),
            HeldOutFigures {
                found_held_out: m.found_held_out,
                found_warm: m.found_warm,
                auc_held_out: m.auc_held_out,
                auc_warm: m.auc_warm,
            },
        );
    }
    file.held_out_pools = Some(pools);
}

/// One JSON line per request and method ([`Prediction`]): request id, user, method,
/// candidate item ids, their click labels and the generated list of item ids, so the
/// metrics can be recomputed independently.
fn predictions_jsonl(
    ds: &PreparedDataset,
    samples: &[RerankSample],
    rows: &[MethodResult],
) -> String {
    let mut out = String::new();
    for r in rows {
        for (k, (s, list)) in samples.iter().zip(&r.lists).enumerate() {
            let candidates: Vec<String> = s
                .candidates
                .iter()
                .map(|&i| ds.item_ids[i as usize].clone())
                .collect();
            let line = Prediction {
                list: list.iter().map(|&p| candidates[p].clone()).collect(),
                clicks: s.click_relevance().iter().map(|&c| c as u8).collect(),
                candidates,
                method: r.name.clone(),
                request: k,
                user: ds.user_ids[s.user as usize].clone(),
            };
            out.push_str(&line.to_json_line());
            out.push('\n');
        }
    }
    out
}

/// Writes [`RunDir::metrics_file`] (every row, plus the cold-start slices of fewer than 1
/// and 5 training interactions when they are not empty, and with held-out items the
/// [`HELD_OUT_KEYS`] entries) and [`RunDir::predictions_file`], and returns the printable
/// table (with the slices).
///
/// # Errors
/// Metric or file errors.
pub(crate) fn write_results(
    run: &RunDir,
    ds: &PreparedDataset,
    samples: &[RerankSample],
    rows: &[MethodResult],
) -> Result<String> {
    let l = ds.config.slate_len;
    let mut text = table(rows, l);
    let mut file = MetricsFile::of(rows);
    for threshold in [1u32, 5] {
        if let Some((n, cold)) = cold_slice(ds, samples, rows, threshold)? {
            text.push_str(&format!(
                "\ncold-start slice: {n} requests with a candidate of fewer than {threshold} training interactions\n{}",
                table(&cold, l)
            ));
            file.slices.push((
                format!("{COLD_SLICE_KEY_PREFIX}{threshold}"),
                MetricsFile::of(&cold).rows,
            ));
        }
    }
    if let Some(v) = held_out_view(ds, samples, rows)? {
        held_out_section(&v, samples.len(), l, &mut text, &mut file);
    }
    run.create()?;
    file.write(&run.metrics_file())?;
    glorank_nn::persist::write_atomic(
        &run.predictions_file(),
        predictions_jsonl(ds, samples, rows).as_bytes(),
    )?;
    // Recorded, so that later readers get the figures this evaluation wrote.
    run.finish(
        crate::run_dir::EVALUATION,
        &serde_json::Value::Null,
        &std::collections::BTreeMap::new(),
    )?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(mean: f64) -> Summary {
        Summary::from_values(&[mean, mean]).unwrap()
    }

    fn figures(p: f64, reward: Option<f64>) -> MethodMetrics {
        let s = serde_json::to_value(summary(p)).unwrap();
        let mut v = serde_json::json!({
            "precision": s, "recall": s, "f1": s, "ndcg": s, "map": s, "map_hits": s, "hit": s
        });
        if let Some(r) = reward {
            v["average_reward"] = serde_json::to_value(summary(r)).unwrap();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_written_file_reads_back_typed_and_in_table_order() {
        let file = MetricsFile {
            rows: vec![
                ("Zeta".into(), figures(0.2, None)),
                ("GloRank SFT+RL".into(), figures(0.5, Some(2.5))),
                ("MF order".into(), figures(0.1, None)),
            ],
            slices: vec![(
                "cold_start_lt_5".into(),
                vec![("MF order".into(), figures(0.3, None))],
            )],
            held_out_pools: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        file.write(&path).unwrap();
        let back = MetricsFile::read(dir.path()).unwrap();
        let names: Vec<&str> = back.rows.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["MF order", "GloRank SFT+RL", "Zeta"]);
        assert_eq!(back.row("GloRank SFT+RL"), Some(&file.rows[1].1));
        assert_eq!(
            back.row("GloRank SFT+RL")
                .unwrap()
                .get("average_reward")
                .unwrap()
                .mean,
            2.5
        );
        assert_eq!(back.slice("cold_start_lt_5").unwrap().len(), 1);
        // Keys sorted in the JSON.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.find("\"GloRank SFT+RL\"") < text.find("\"MF order\""));
    }

    #[test]
    fn entries_that_are_not_figures_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        for (text, needle) in [
            ("[1, 2]", "not a JSON object"),
            ("{\"x\": 1}", "`x`"),
            ("{}", "no method"),
            ("{\"A\": {\"precision\": {\"mean\": 0.5}}}", "`A`"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = MetricsFile::read(&path).unwrap_err().to_string();
            assert!(
                e.contains("metrics.json") && e.contains(needle),
                "{text}: {e}"
            );
        }
    }
}
