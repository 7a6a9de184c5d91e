//! Slices of a table: the cold-start slices (requests with a rarely trained candidate) and
//! the held-out-items protocol's view.

use super::MethodResult;
use super::context::{logged_views, summary_of};
use crate::Result;
use crate::training::clicks;
use glorank_data::{PreparedDataset, RerankSample};
use glorank_metrics::Summary;
use glorank_train::list_metrics;

/// The rows restricted to the cold-start slice: requests with at least one candidate that
/// has fewer than `threshold` training interactions (`threshold = 1`: never seen in training).
/// Returns the number of such requests and the re-scored rows (label metrics only), or `None`
/// when the slice is empty.
///
/// # Errors
/// Metric errors.
pub(crate) fn cold_slice(
    ds: &PreparedDataset,
    samples: &[RerankSample],
    rows: &[MethodResult],
    threshold: u32,
) -> Result<Option<(usize, Vec<MethodResult>)>> {
    slice_rows(ds, samples, rows, |s| {
        s.candidates
            .iter()
            .any(|&i| ds.item_train_counts[i as usize] < threshold)
    })
}

/// The held-out-items protocol's view of a split: how cold items entered the pools, the rows
/// on requests whose logged slate holds a held-out item next to the rest, and per method how
/// it handles clicked held-out items against clicked warm ones.
#[derive(Debug, Clone)]
pub struct HeldOutView {
    /// Held-out items in the catalog.
    pub items: usize,
    /// Share of held-out items among the logged candidates (the slates).
    pub logged_cold_share: f64,
    /// Share of held-out items among the retrieved candidates (the rest of the pools).
    pub retrieved_cold_share: f64,
    /// Requests with at least one held-out candidate anywhere in the pool (with 10% of the
    /// items held out, nearly all of them: this alone does not separate requests).
    pub any_cold_requests: usize,
    /// Requests whose logged slate holds a held-out item, and their rows (label metrics
    /// only): the requests where being able to rank a new item changes the labels.
    pub cold: Option<(usize, Vec<MethodResult>)>,
    /// Requests whose logged slate holds no held-out item, and their rows.
    pub warm: Option<(usize, Vec<MethodResult>)>,
    /// One entry per row, in row order.
    pub methods: Vec<HeldOutMethod>,
}

/// How one method treats held-out items against warm ones (a [`HeldOutView`] entry). Each
/// figure is a mean over the requests where it is defined, with its 95% interval.
#[derive(Debug, Clone)]
pub struct HeldOutMethod {
    /// Method name.
    pub name: String,
    /// Share of the clicked held-out logged items found in the list (over requests with
    /// one). The gap to [`HeldOutMethod::found_warm`] is the cost of coldness item by item,
    /// but a rule that puts new items first scores high here.
    pub found_held_out: Option<Summary>,
    /// The same for clicked warm logged items.
    pub found_warm: Option<Summary>,
    /// AUC of clicked held-out items over every other held-out candidate of the pool (for
    /// methods with candidate scores): does the method tell a good new item from a bad new
    /// one? Putting new items first does not raise it.
    pub auc_held_out: Option<Summary>,
    /// The same among warm candidates.
    pub auc_warm: Option<Summary>,
}

/// The [`HeldOutView`] of `samples`, or `None` when the dataset has no held-out items.
///
/// # Errors
/// Metric errors.
pub(crate) fn held_out_view(
    ds: &PreparedDataset,
    samples: &[RerankSample],
    rows: &[MethodResult],
) -> Result<Option<HeldOutView>> {
    if ds.held_out.is_empty() {
        return Ok(None);
    }
    let [logged_cold_share, retrieved_cold_share] = ds.held_out_shares(samples);
    let cold_logged = |s: &RerankSample| {
        s.logged
            .iter()
            .any(|&p| ds.is_held_out(s.candidates[p as usize]))
    };
    // Per request, independent of the method: which candidates are held out, and the
    // clicked logged positions of each kind (held-out, warm).
    let per_request: Vec<(Vec<bool>, [Vec<usize>; 2])> = samples
        .iter()
        .map(|s| {
            let cold: Vec<bool> = s.candidates.iter().map(|&i| ds.is_held_out(i)).collect();
            let clicked = [true, false].map(|want_cold| {
                s.logged
                    .iter()
                    .map(|&p| p as usize)
                    .filter(|&p| s.labels[p].click() && cold[p] == want_cold)
                    .collect()
            });
            (cold, clicked)
        })
        .collect();
    let mut methods = Vec::with_capacity(rows.len());
    for r in rows {
        // Per request and kind: the share of clicked logged items in the list, and the AUC
        // of clicked over other candidates of that kind.
        let mut found = [Vec::new(), Vec::new()];
        let mut auc = [Vec::new(), Vec::new()];
        for (k, ((s, list), (cold, clicked))) in
            samples.iter().zip(&r.lists).zip(&per_request).enumerate()
        {
            for (kind, want_cold) in [true, false].into_iter().enumerate() {
                let clicked = &clicked[kind];
                if !clicked.is_empty() {
                    let hits = clicked.iter().filter(|p| list.contains(p)).count();
                    found[kind].push(hits as f64 / clicked.len() as f64);
                }
                if let Some(scores) = &r.scores {
                    let (x, y): (Vec<f64>, Vec<bool>) = (0..s.candidates.len())
                        .filter(|&p| cold[p] == want_cold)
                        .map(|p| (f64::from(scores[k][p]), s.labels[p].click()))
                        .unzip();
                    if let Some(a) = glorank_metrics::auc(&x, &y)? {
                        auc[kind].push(a);
                    }
                }
            }
        }
        methods.push(HeldOutMethod {
            name: r.name.clone(),
            found_held_out: summary_of(&found[0])?,
            found_warm: summary_of(&found[1])?,
            auc_held_out: summary_of(&auc[0])?,
            auc_warm: summary_of(&auc[1])?,
        });
    }
    Ok(Some(HeldOutView {
        items: ds.held_out.len(),
        logged_cold_share,
        retrieved_cold_share,
        any_cold_requests: samples
            .iter()
            .filter(|s| s.candidates.iter().any(|&i| ds.is_held_out(i)))
            .count(),
        cold: slice_rows(ds, samples, rows, cold_logged)?,
        warm: slice_rows(ds, samples, rows, |s| !cold_logged(s))?,
        methods,
    }))
}

/// The rows re-scored on the requests `keep` accepts (label metrics and the logged AUC
/// only): the number of such requests and the rows, or `None` when there are none.
fn slice_rows(
    ds: &PreparedDataset,
    samples: &[RerankSample],
    rows: &[MethodResult],
    keep: impl Fn(&RerankSample) -> bool,
) -> Result<Option<(usize, Vec<MethodResult>)>> {
    let keep: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| keep(s))
        .map(|(k, _)| k)
        .collect();
    if keep.is_empty() {
        return Ok(None);
    }
    let kept: Vec<RerankSample> = keep.iter().map(|&k| samples[k].clone()).collect();
    let rel = clicks(&kept);
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let lists: Vec<Vec<usize>> = keep.iter().map(|&k| r.lists[k].clone()).collect();
        let scores: Option<Vec<Vec<f32>>> = r
            .scores
            .as_ref()
            .map(|sc| keep.iter().map(|&k| sc[k].clone()).collect());
        let (logged_auc, logged_ndcg) = logged_views(&kept, scores.as_deref())?;
        out.push(MethodResult {
            name: r.name.clone(),
            metrics: list_metrics(&lists, &rel, ds.config.slate_len)?,
            average_reward: None,
            true_reward: None,
            logged_auc,
            logged_ndcg,
            lists,
            scores,
        });
    }
    Ok(Some((keep.len(), out)))
}
