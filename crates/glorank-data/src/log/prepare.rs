//! A request log as a prepared dataset ([`prepare_log`]): vocabularies, requests, the
//! time split, item vectors. No retriever of ours builds the pools: each request keeps the
//! candidates, the shown list and the feedback its log recorded.

use super::catalog::Catalogs;
use super::read::scan_rows;
use super::{LogConfig, LogSplit, LoggedRequest, RowError};
use crate::labels::Labels;
use crate::prepared::{LogRecord, PrepareStats, PreparedDataset, RerankSample, UserSequence};
use crate::progress::Progress;
use crate::protocol::add_user_id_feature;
use crate::raw::Interner;
use crate::retriever::{MfModel, fit_als};
use crate::{DataError, ProtocolConfig, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

/// One valid row, in indices, before the split.
struct Row {
    sample: RerankSample,
    record: LogRecord,
}

/// The checks a row must pass for this protocol, besides the schema's: a user, at most
/// `pool_size` and at least `slate_len` candidates, at most `slate_len` shown items, and
/// the `order_by` signal when one is configured.
fn fits(
    row: &LoggedRequest,
    log: &LogConfig,
    config: &ProtocolConfig,
) -> std::result::Result<(), RowError> {
    let (l, n) = (config.slate_len, config.pool_size);
    let c = row.request.candidates.len();
    if row.request.user.is_none() {
        return Err(RowError::new(
            "user",
            "missing: training reads each request's user",
        ));
    }
    if c > n || c < l {
        return Err(RowError::new(
            "candidates",
            format!("{c} candidates; data.pool_size is {n} and data.slate_len {l}"),
        ));
    }
    if row.shown.len() > l {
        return Err(RowError::new(
            "shown",
            format!(
                "{} shown items, more than data.slate_len {l}",
                row.shown.len()
            ),
        ));
    }
    if let Some(o) = &log.order_by
        && !row.feedback.contains_key(o)
    {
        return Err(RowError::new(
            format!("feedback.{o}"),
            "missing: log.order_by orders every row's shown items by it",
        ));
    }
    Ok(())
}

/// A row in indices: its user and candidates coded, the history cut to `history_len`, the
/// labels of the shown items from the feedback (the label is the click bit, `log.grades`
/// the like and star bits; unshown candidates are non-clicks).
fn encode(
    row: LoggedRequest,
    log: &LogConfig,
    config: &ProtocolConfig,
    (users, items): (&mut Interner, &mut Interner),
) -> Row {
    let r = row.request;
    let user = users.intern(r.user.as_deref().unwrap_or_default());
    let candidates: Vec<u32> = r.candidates.iter().map(|c| items.intern(c)).collect();
    let position: HashMap<&str, u16> = r
        .candidates
        .iter()
        .enumerate()
        .map(|(p, c)| (c.as_str(), p as u16))
        .collect();
    let logged: Vec<u16> = row.shown.iter().map(|s| position[s.as_str()]).collect();
    let value = |signal: &str, k: usize| {
        row.feedback
            .get(signal)
            .and_then(|v| v.get(k))
            .copied()
            .unwrap_or(0.0)
    };
    let bits = [Labels::CLICK, Labels::LIKE, Labels::STAR];
    let signals: Vec<&str> = std::iter::once(log.label.as_str())
        .chain(log.grades.iter().map(String::as_str))
        .collect();
    let mut labels = vec![Labels::default(); candidates.len()];
    let mut shown_values = Vec::with_capacity(logged.len());
    for (k, &p) in logged.iter().enumerate() {
        let label = signals
            .iter()
            .zip(bits)
            .filter(|(s, _)| value(s, k) > 0.0)
            .fold(0u8, |acc, (_, b)| acc | b);
        labels[usize::from(p)] = Labels(label);
        shown_values.push(match &log.order_by {
            Some(o) => value(o, k),
            None => f32::from(Labels(label).grade()),
        });
    }
    let skip = r.history.len().saturating_sub(config.history_len);
    let (history, history_labels) = r.history[skip..]
        .iter()
        .map(|h| (items.intern(&h.item), Labels(h.labels)))
        .unzip();
    Row {
        sample: RerankSample {
            user,
            slate_start: 0,
            candidates,
            labels,
            logged,
        },
        record: LogRecord {
            request_id: row.request_id,
            timestamp: row.timestamp,
            history,
            history_labels,
            shown_values,
            retriever_scores: r.retriever_scores,
        },
    }
}

/// The split of each row (0 train, 1 validation, 2 test), given the rows' time order
/// `order` (row indices by timestamp, then file order).
fn split_rows(rows: &[Row], order: &[usize], log: &LogConfig) -> Vec<u8> {
    let n = rows.len();
    let mut split = vec![0u8; n];
    match log.split {
        LogSplit::Time => {
            let time = |k: usize| rows[order[k]].record.timestamp;
            let n_test = (n as f64 * log.test_share).ceil() as usize;
            let n_valid = (n as f64 * log.valid_share).ceil() as usize;
            let cut_test = (n_test > 0).then(|| time(n - n_test.min(n)));
            let cut_valid = (n_valid > 0).then(|| time(n.saturating_sub(n_test + n_valid)));
            for (i, row) in rows.iter().enumerate() {
                let t = row.record.timestamp;
                split[i] = if cut_test.is_some_and(|c| t >= c) {
                    2
                } else if cut_valid.is_some_and(|c| t >= c) {
                    1
                } else {
                    0
                };
            }
        }
        LogSplit::User => {
            let mut last: HashMap<u32, [Option<usize>; 2]> = HashMap::new();
            for &i in order {
                let e = last.entry(rows[i].sample.user).or_default();
                *e = [Some(i), e[0]];
            }
            for [test, valid] in last.into_values() {
                if let Some(t) = test {
                    split[t] = 2;
                }
                if let Some(v) = valid {
                    split[v] = 1;
                }
            }
        }
    }
    split
}

/// Reads the request log at `path` (JSON Lines: a file, or a folder of parts with the
/// optional catalogs `items.jsonl`, `users.jsonl` and `vocabularies.json`) and prepares it
/// for training: every row checked ([`LoggedRequest::check`], plus the protocol's shape:
/// a user, at most `pool_size` and at least `slate_len` candidates, at most `slate_len`
/// shown items), items and users numbered in catalog order then order of first sight, the
/// split of `log.split` (file order kept within each split), the shown items' feedback as
/// labels (unshown candidates are non-clicks). Item vectors: the catalog's, or ALS factors
/// fitted on the training requests' clicks and histories. An item's training count is how
/// often it was shown in a training request. The protocol's `k_core`,
/// `rerank_train_slates` and retriever pool options do not apply to a log.
///
/// # Errors
/// [`DataError::InvalidConfig`] for a bad configuration (held-out items are not available
/// on a log); the reader's errors (file, line and field of a bad row, past the
/// [`LogConfig::max_invalid`] budget); [`DataError::Insufficient`] when no training
/// request is left or a catalog lacks an item's vector.
pub fn prepare_log(
    path: &Path,
    log: &LogConfig,
    config: &ProtocolConfig,
    progress: &dyn Progress,
) -> Result<PreparedDataset> {
    config.validate()?;
    log.validate()?;
    if config.held_out_share > 0.0 {
        return Err(DataError::config(
            "data.held_out_share",
            "held-out items are a protocol of the rating datasets; on a log, cold items are \
             the ones no training request showed",
        ));
    }
    let t = Instant::now();
    let mut seconds = Vec::new();
    progress.stage("reading the log", 0);
    let catalogs = Catalogs::read(path)?;
    let (mut users, mut items) = (Interner::default(), Interner::default());
    for r in &catalogs.users {
        users.intern(&r.user);
    }
    for r in &catalogs.items {
        items.intern(&r.item);
    }
    let mut rows = Vec::new();
    let (mut with_exposures, mut with_vectors) = (0usize, 0usize);
    let scan = scan_rows(path, log, &|row| fits(row, log, config), |row| {
        with_exposures += usize::from(row.request.exposures.is_some());
        with_vectors += usize::from(!row.request.candidate_vectors.is_empty());
        rows.push(encode(row, log, config, (&mut users, &mut items)));
        Ok(())
    })?;
    progress.finish();
    seconds.push(("read".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].record.timestamp, i));
    let split = split_rows(&rows, &order, log);
    let mut rank = vec![0u32; rows.len()];
    for (k, &i) in order.iter().enumerate() {
        rank[i] = k as u32;
    }
    let mut records: Vec<Option<LogRecord>> = vec![None; rows.len()];
    let mut parts: [Vec<RerankSample>; 3] = Default::default();
    for (i, row) in rows.into_iter().enumerate() {
        let mut sample = row.sample;
        sample.slate_start = rank[i];
        records[rank[i] as usize] = Some(row.record);
        parts[usize::from(split[i])].push(sample);
    }
    let records: Vec<LogRecord> = records.into_iter().flatten().collect();
    let [train, valid, test] = parts;
    if train.is_empty() {
        return Err(DataError::Insufficient(format!(
            "{}: no training request is left after the {} split ({} rows)",
            path.display(),
            log.split,
            scan.rows
        )));
    }
    let (nu, ni) = (users.len(), items.len());
    let mut item_train_counts = vec![0u32; ni];
    for s in &train {
        for &p in &s.logged {
            item_train_counts[s.candidates[usize::from(p)] as usize] += 1;
        }
    }
    seconds.push(("split".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    // `retriever_train_interactions` stays 0: no retriever of ours built the pools.
    let mut stats = PrepareStats {
        raw_users: nu,
        raw_items: ni,
        users: nu,
        items: ni,
        ..PrepareStats::default()
    };
    let retriever = match catalogs.vectors(items.ids())? {
        Some((dim, item_factors)) => MfModel {
            factors: dim,
            user_factors: vec![0.0; nu * dim],
            item_factors,
        },
        None => {
            // Learned item vectors: what each user clicked in training, and their histories.
            let mut pairs = BTreeSet::new();
            for s in &train {
                let r = &records[s.slate_start as usize];
                for &i in &r.history {
                    pairs.insert((s.user, i));
                }
                for &p in &s.logged {
                    if s.labels[usize::from(p)].click() {
                        pairs.insert((s.user, s.candidates[usize::from(p)]));
                    }
                }
            }
            let pairs: Vec<(u32, u32)> = pairs.into_iter().collect();
            fit_als(&pairs, nu, ni, &config.retriever, config.seed, progress)?
        }
    };
    seconds.push(("item vectors".to_string(), t.elapsed().as_secs_f64()));
    let shown: usize = [&train, &valid, &test]
        .iter()
        .flat_map(|p| p.iter())
        .map(|s| s.logged.len())
        .sum();
    stats.raw_interactions = shown;
    stats.interactions = shown;
    stats.cold_items = item_train_counts.iter().filter(|&&c| c == 0).count();
    stats.fill_split_counts(&train, &valid, &test);
    stats.seconds = seconds;
    stats.unread_log_fields = vec![
        ("exposures".into(), with_exposures),
        ("candidate_vectors".into(), with_vectors),
    ];
    let item_features = catalogs.item_features(items.ids())?;
    let mut user_features = catalogs.user_features(users.ids())?;
    if config.user_id_feature {
        add_user_id_feature(&mut user_features, users.ids());
    }
    Ok(PreparedDataset {
        name: "log".into(),
        config: config.clone(),
        implicit: false,
        item_features,
        user_features,
        sequences: vec![UserSequence::default(); nu],
        user_ids: users.into_ids(),
        item_ids: items.into_ids(),
        train,
        valid,
        test,
        retriever,
        item_train_counts,
        held_out: Vec::new(),
        stats,
        synthetic: catalogs.synthetic,
        log: Some(records),
    })
}
