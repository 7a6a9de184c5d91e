//! `report.md` with SVG training curves.

use crate::Result;
use crate::pipeline::{PipelineReport, Stage};
use crate::{Config, RunDir};
use glorank_data::PreparedDataset;
use std::fmt::Write as _;
use std::path::Path;

/// A self-contained SVG line chart (no dependencies): one polyline per series, axes with
/// min/max labels, a legend. Empty series are skipped.
pub fn line_chart_svg(title: &str, x_label: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    const W: f64 = 560.0;
    const H: f64 = 300.0;
    const L: f64 = 60.0;
    const R: f64 = 150.0;
    const T: f64 = 30.0;
    const B: f64 = 40.0;
    const COLORS: [&str; 6] = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1e-3;
    }
    let sx = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
    let sy = |y: f64| H - B - (y - y0) / (y1 - y0) * (H - T - B);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{L}" y="18" font-size="13">{}</text>"#,
        escape(title)
    );
    let _ = write!(
        s,
        r#"<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="black"/>"#,
        H - B,
        W - R,
        H - B,
        H - B
    );
    let _ = write!(
        s,
        r#"<text x="{L}" y="{}">{x0:.0}</text><text x="{}" y="{}" text-anchor="end">{x1:.0}</text><text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        H - B + 14.0,
        W - R,
        H - B + 14.0,
        (L + W - R) / 2.0,
        H - 8.0,
        escape(x_label)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{y1:.4}</text><text x="{}" y="{}" text-anchor="end">{y0:.4}</text>"#,
        L - 4.0,
        T + 4.0,
        L - 4.0,
        H - B
    );
    for (k, (name, points)) in series.iter().filter(|(_, p)| !p.is_empty()).enumerate() {
        let color = COLORS[k % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for p in &path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"#);
        }
        let ly = T + 14.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            W - R + 10.0,
            ly,
            W - R + 24.0,
            ly + 9.0,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `(x, y)` pairs of a JSONL log.
fn series(path: &Path, x: &str, y: &str) -> Vec<(f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v[x].as_f64()?, v[y].as_f64()?)))
        .collect()
}

/// Writes `report.md` and its SVG curves (`curve_*.svg`) into the run directory.
///
/// # Errors
/// [`crate::Error::Nn`] when a file cannot be written.
pub fn write_report(report: &PipelineReport, ds: &PreparedDataset, config: &Config) -> Result<()> {
    let run = crate::RunDir::new(&report.dir);
    let las = run.las();
    let (sft, rl) = (run.sft().log, run.rl().log);
    use glorank_reward::RewardRole::{Evaluator, Simulator};
    let charts = [
        (
            "curve_sft.svg",
            line_chart_svg(
                "SFT: validation metrics per epoch",
                "epoch",
                &[
                    ("NDCG@L", series(&sft, "epoch", "valid_ndcg")),
                    ("Precision@L", series(&sft, "epoch", "valid_precision")),
                    ("LAS NDCG@L", series(&las.sft().log, "epoch", "valid_ndcg")),
                ],
            ),
        ),
        (
            "curve_rl.svg",
            line_chart_svg(
                "RL: evaluator reward",
                "step",
                &[
                    ("valid (greedy)", series(&rl, "step", "valid_reward")),
                    ("train (sampled)", series(&rl, "step", "train_reward")),
                ],
            ),
        ),
        (
            "curve_rl_kl.svg",
            line_chart_svg(
                "RL: KL to the SFT policy and entropy per token",
                "step",
                &[
                    ("KL", series(&rl, "step", "kl")),
                    ("entropy", series(&rl, "step", "entropy")),
                ],
            ),
        ),
        (
            "curve_reward_models.svg",
            line_chart_svg(
                "Reward models: validation click AUC",
                "epoch",
                &[
                    (
                        "evaluator",
                        series(&run.reward_log(Evaluator), "epoch", "valid_click_auc"),
                    ),
                    (
                        "simulator",
                        series(&run.reward_log(Simulator), "epoch", "valid_click_auc"),
                    ),
                ],
            ),
        ),
    ];
    for (name, svg) in &charts {
        glorank_nn::persist::write_atomic(&run.figure_file(name), svg.as_bytes())?;
    }
    let mut md = String::new();
    let _ = writeln!(md, "# GloRank run: {}\n", ds.name);
    let _ = writeln!(
        md,
        "{} users, {} items; {} / {} / {} train / validation / test requests; lists of {} from pools of {}.\n",
        ds.num_users(),
        ds.num_items(),
        ds.train_len(),
        ds.valid.len(),
        ds.test.len(),
        ds.config.slate_len,
        ds.config.pool_size
    );
    let _ = writeln!(md, "## Test results\n\n```\n{}```\n", report.table);
    let _ = writeln!(
        md,
        "Precision/Recall/F1/NDCG/MAP@L use the click labels of the candidates; Average Reward is \
         the simulator's summed click probability over the list's slots, averaged over requests.{}\n\
         Every list is in `predictions.jsonl` and every number with its interval in `metrics.json`.\n",
        if report.rows.iter().any(|r| r.true_reward.is_some()) {
            " `true clicks` is the expected number of clicks under the synthetic world's own click \
             model; `best list (true model)` is the list a search with that model finds per request."
        } else {
            ""
        }
    );
    let _ = writeln!(md, "## Training curves\n");
    for (name, _) in &charts {
        let _ = writeln!(md, "![{name}]({name})\n");
    }
    let _ = writeln!(md, "## Stage timings\n\n| stage | seconds |\n|---|---|");
    for (stage, secs) in &report.timings {
        let _ = writeln!(md, "| {stage} | {secs:.1} |");
    }
    let _ = writeln!(md, "\n## Configuration\n\n```toml\n{}```", config.to_toml());
    glorank_nn::persist::write_atomic(&run.report_file(), md.as_bytes())?;
    Ok(())
}

/// What a stage built, as a printable table: the prepared dataset's counts (before and after
/// the k-core filter, per split, the retriever's recall, the held-out items, the time of
/// each step) for [`Stage::Prepare`], the codebook statistics for [`Stage::Tokenize`];
/// `None` for the other stages, or a tokenizer without statistics.
///
/// # Errors
/// Missing or unreadable artifacts (named).
pub fn stage_summary(run: &RunDir, stage: Stage) -> Result<Option<String>> {
    match stage {
        Stage::Prepare => {
            let ds = PreparedDataset::load(run.root())?;
            Ok(Some(dataset_summary(&ds, run.root())))
        }
        Stage::Tokenize => {
            let path = run.tokenizer_stats_file();
            if !path.exists() {
                return Ok(None);
            }
            let stats: glorank_tokenizer::TokenizerStats = glorank_nn::persist::load_json(&path)?;
            Ok(Some(stats.table()))
        }
        _ => Ok(None),
    }
}

/// The summary table of a prepared dataset written to `dir`.
fn dataset_summary(ds: &PreparedDataset, dir: &Path) -> String {
    let (s, c) = (&ds.stats, &ds.config);
    let mut out = format!(
        "prepared `{}` -> {} (seed {}, {}-core, L={}, N={}, history {})\n",
        ds.name,
        dir.display(),
        c.seed,
        c.k_core,
        c.slate_len,
        c.pool_size,
        c.history_len
    );
    let mut row = |a: &str, b: String, c: String| {
        let _ = writeln!(out, "  {a:<32} {b:>14} {c:>16}");
    };
    row("", "before filter".into(), "after filter".into());
    row("users", s.raw_users.to_string(), s.users.to_string());
    row("items", s.raw_items.to_string(), s.items.to_string());
    row(
        "interactions",
        s.raw_interactions.to_string(),
        s.interactions.to_string(),
    );
    row(
        "repeated pairs removed",
        s.duplicate_pairs.to_string(),
        format!("{} k-core rounds", s.k_core_rounds),
    );
    let _ = writeln!(
        out,
        "  {:<32} {:>14} {:>16} {:>10}",
        "", "train", "valid", "test"
    );
    let _ = writeln!(
        out,
        "  {:<32} {:>14} {:>16} {:>10}",
        "slates (requests)", s.train_slates, s.valid_slates, s.test_slates
    );
    let [p0, p1, p2] = s.mean_positives;
    let _ = writeln!(
        out,
        "  {:<32} {p0:>14.3} {p1:>16.3} {p2:>10.3}",
        "mean positives (clicks) per slate"
    );
    let recall = s
        .retriever_recall
        .map(|r| format!("{r:.4}"))
        .unwrap_or_else(|| "n/a".into());
    let mut line = |a: String, b: String| {
        let _ = writeln!(out, "  {a:<32} {b:>14}");
    };
    line(format!("retriever recall@{}", c.pool_size), recall);
    line(
        "retriever train interactions".into(),
        s.retriever_train_interactions.to_string(),
    );
    line(
        "cold items (0 train interactions)".into(),
        s.cold_items.to_string(),
    );
    if s.held_out_items > 0 {
        line(
            "held-out items (test only)".into(),
            s.held_out_items.to_string(),
        );
        line(
            "interactions removed for them".into(),
            s.held_out_interactions.to_string(),
        );
        let _ = writeln!(
            out,
            "  {:<32} {:>13.1}%   (logged {:.1}%)",
            "held-out among retrieved (test)",
            100.0 * s.held_out_test_shares[1],
            100.0 * s.held_out_test_shares[0]
        );
    }
    let steps: Vec<String> = s
        .seconds
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}s"))
        .collect();
    let _ = writeln!(out, "  {:<32} {:>14}", "steps", steps.join(", "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_one_polyline_per_series() {
        let svg = line_chart_svg(
            "t <x>",
            "step",
            &[
                ("a", vec![(0.0, 1.0), (1.0, 2.0)]),
                ("b", vec![(0.0, 0.5)]),
                ("c", vec![]),
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t &lt;x&gt;") && svg.ends_with("</svg>\n"));
    }
}
