//! Result tables and files: the printed table, `metrics.json` and `predictions.jsonl`.

use super::eval::{HeldOutView, MethodResult, cold_slice, held_out_view};
use crate::{Error, Result, RunDir};
use glorank_data::{PreparedDataset, RerankSample};
use glorank_metrics::Summary;

/// The rows of the comparison table, in the order the pipeline writes them (`metrics.json`
/// keys; `glorank aggregate` prints known methods in this order, others after them).
pub const METHOD_ORDER: [&str; 15] = [
    "MF order",
    "retriever reversed",
    "pool novelty",
    "popularity",
    super::eval::RANDOM,
    super::eval::COLD_FIRST,
    "PRM",
    "Seq2Slate",
    "DLCM",
    "GloRank-LAS",
    "GloRank SFT",
    "GloRank SFT+RL",
    "oracle",
    super::eval::TOP_APPEAL,
    super::eval::BEST_LIST,
];

/// Key prefix of the cold-start slices in `metrics.json` (`cold_start_lt_1`, `cold_start_lt_5`).
pub const COLD_SLICE_KEY_PREFIX: &str = "cold_start_lt_";

/// Keys of the held-out-items protocol's entries in `metrics.json`: the rows on requests
/// whose logged slate holds a held-out item, the rows on the other requests, and the pool
/// shares with the per-method figures.
pub const HELD_OUT_KEYS: [&str; 3] = ["held_out_cold", "held_out_warm", "held_out_pools"];

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
        out.push_str(&format!(" {:>15}", "AUC logged"));
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
            out.push_str(&format!(" {:>15}", cell(r.logged_auc.as_ref())));
        }
        out.push('\n');
    }
    out.push_str(
        "(mean ± half-width of the 95% confidence interval over requests; MAP divides by \
         min(positives, L), MAP-hits averages over the hit positions as torchmetrics does; \
         AUC logged: clicked over non-clicked items of the logged slate under the method's \
         candidate scores, over requests whose slate has both)\n",
    );
    out
}

/// The rows as JSON: method -> metric -> {n, mean, std_err, ci_low, ci_high}.
pub(crate) fn rows_json(rows: &[MethodResult]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for r in rows {
        let mut m = serde_json::to_value(r.metrics).unwrap_or_default();
        if let Some(obj) = m.as_object_mut() {
            for (key, v) in [
                ("average_reward", r.average_reward),
                ("true_expected_clicks", r.true_reward),
                ("logged_auc", r.logged_auc),
            ] {
                if let Some(s) = v {
                    obj.insert(key.into(), serde_json::to_value(s).unwrap_or_default());
                }
            }
        }
        out.insert(r.name.clone(), m);
    }
    serde_json::Value::Object(out)
}

/// Appends the held-out-items protocol's part to the printed `text` and to `metrics` (the
/// [`HELD_OUT_KEYS`] entries): the pool shares, the rows split by whether the logged slate
/// holds a held-out item, and the per-method figures.
fn held_out_section(
    v: &HeldOutView,
    requests: usize,
    l: usize,
    text: &mut String,
    metrics: &mut serde_json::Value,
) {
    text.push_str(&format!(
        "\nheld-out items: {} items unseen before the test slates; {:.1}% of the logged and \
         {:.1}% of the retrieved test candidates; {} of {requests} requests have one in the pool\n",
        v.items,
        100.0 * v.logged_cold_share,
        100.0 * v.retrieved_cold_share,
        v.any_cold_requests,
    ));
    let mut pools = serde_json::json!({
        "items": v.items,
        "logged_cold_share": v.logged_cold_share,
        "retrieved_cold_share": v.retrieved_cold_share,
        "any_cold_requests": v.any_cold_requests,
    });
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
            pools[format!("{key}_requests")] = (*n).into();
            metrics[key] = rows_json(slice_rows);
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
    let mut per_method = serde_json::Map::new();
    for m in &v.methods {
        text.push_str(&format!(
            "{:<w$} {:>15} {:>15} {:>15} {:>15}\n",
            m.name,
            f(&m.found_held_out),
            f(&m.found_warm),
            f(&m.auc_held_out),
            f(&m.auc_warm)
        ));
        per_method.insert(
            m.name.clone(),
            serde_json::json!({
                "found_held_out": m.found_held_out,
                "found_warm": m.found_warm,
                "auc_held_out": m.auc_held_out,
                "auc_warm": m.auc_warm,
            }),
        );
    }
    pools["per_method"] = per_method.into();
    metrics[HELD_OUT_KEYS[2]] = pools;
}

/// One JSON line per request and method ([`crate::compare::Prediction`]): request id, user,
/// method, candidate item ids, their click labels and the generated list of item ids, so
/// the metrics can be recomputed independently.
pub(crate) fn predictions_jsonl(
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
            let line = crate::compare::Prediction {
                list: list.iter().map(|&p| candidates[p].clone()).collect(),
                clicks: s.click_relevance().iter().map(|&c| c as u8).collect(),
                candidates,
                method: r.name.clone(),
                request: k,
                user: ds.user_ids[s.user as usize].clone(),
            };
            out.push_str(&crate::compare::to_json_line(&line));
            out.push('\n');
        }
    }
    out
}

/// Writes [`RunDir::metrics_file`] (every row, plus the cold-start slices of fewer than 1
/// and 5 training interactions when they are not empty, and with held-out items the
/// [`HELD_OUT_KEYS`] entries) and [`RunDir::predictions_file`], and
/// returns the printable table (with the slices).
///
/// # Errors
/// Metric or file errors.
pub fn write_results(
    run: &RunDir,
    ds: &PreparedDataset,
    samples: &[RerankSample],
    rows: &[MethodResult],
) -> Result<String> {
    let l = ds.config.slate_len;
    let mut text = table(rows, l);
    let mut metrics = rows_json(rows);
    for threshold in [1u32, 5] {
        if let Some((n, cold)) = cold_slice(ds, samples, rows, threshold)? {
            text.push_str(&format!(
                "\ncold-start slice: {n} requests with a candidate of fewer than {threshold} training interactions\n{}",
                table(&cold, l)
            ));
            if let Some(obj) = metrics.as_object_mut() {
                obj.insert(
                    format!("{COLD_SLICE_KEY_PREFIX}{threshold}"),
                    rows_json(&cold),
                );
            }
        }
    }
    if let Some(v) = held_out_view(ds, samples, rows)? {
        held_out_section(&v, samples.len(), l, &mut text, &mut metrics);
    }
    run.create()?;
    let json = serde_json::to_vec_pretty(&metrics).map_err(|e| Error::Format {
        path: run.metrics_file(),
        message: e.to_string(),
    })?;
    glorank_nn::persist::write_atomic(&run.metrics_file(), &json)?;
    glorank_nn::persist::write_atomic(
        &run.predictions_file(),
        predictions_jsonl(ds, samples, rows).as_bytes(),
    )?;
    Ok(text)
}
