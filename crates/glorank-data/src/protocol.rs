//! The "50-to-6" reranking protocol: de-duplication, k-core filter, chronological slates,
//! splits, labels and candidate pools (the "50-to-6" protocol of `docs/architecture.md`).
//!
//! Steps, in order:
//! 1. Repeated (user, item) pairs keep their earliest interaction (a list holds distinct
//!    items, so an item cannot be logged twice for a user).
//! 2. k-core: users and items with fewer than `k_core` interactions are removed, repeatedly,
//!    until every remaining user and item has at least `k_core` (a fixpoint).
//! 3. Ids are compacted (kept users and items in their original order) and each user's
//!    interactions sorted by time (ties keep file order).
//! 4. Slates: the user's sequence is cut into consecutive, non-overlapping slates of `L`,
//!    aligned to the end, so the last slate holds the `L` latest interactions; the
//!    `len mod L` oldest interactions belong to no slate but serve as history. The last
//!    slate is test, the one before validation, earlier ones train.
//! 5. History of a slate: up to `history_len` interactions immediately before it.
//! 6. Labels: click = rating >= `thresholds.click`, like >= `like`, star >= `star`; on
//!    implicit data every logged item is a click (and neither like nor star).
//! 7. Retriever: ALS on the train interactions (everything before each user's validation
//!    slate), see [`crate::retriever`].
//! 8. Pools of `pool_size`: the `L` logged items plus the top-scored items that are neither in
//!    the slate nor in its history, labelled 0, then shuffled with a seed per (user, slate).

use crate::cut::{ProtocolConfig, USER_ID_FIELD, retriever_end, slate_starts};
use crate::held_out::{choose_held_out, in_test_slates, predict_factors, purge};
use crate::labels::Labels;
use crate::prepared::{PrepareStats, PreparedDataset, RerankSample, UserSequence};
use crate::progress::Progress;
use crate::raw::{Interaction, RawDataset};
use crate::retriever::{MfModel, fit_als};
use crate::rng::rng_for;
use crate::{DataError, Result};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::collections::HashSet;
use std::time::Instant;

/// Removes repeated (user, item) pairs, keeping the earliest (ties: first in file order).
/// Returns the kept interactions in file order and the number removed.
pub fn dedupe_pairs(interactions: &[Interaction]) -> (Vec<Interaction>, usize) {
    let mut order: Vec<usize> = (0..interactions.len()).collect();
    order.sort_by_key(|&i| {
        (
            interactions[i].user,
            interactions[i].item,
            interactions[i].timestamp,
            i,
        )
    });
    let mut keep = vec![false; interactions.len()];
    let mut prev: Option<(u32, u32)> = None;
    for &i in &order {
        let key = (interactions[i].user, interactions[i].item);
        if prev != Some(key) {
            keep[i] = true;
        }
        prev = Some(key);
    }
    let kept: Vec<Interaction> = interactions
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(x, _)| *x)
        .collect();
    let removed = interactions.len() - kept.len();
    (kept, removed)
}

/// Applies the k-core filter to a fixpoint. Returns the surviving interactions (file order)
/// and the number of rounds run.
pub fn k_core(
    interactions: &[Interaction],
    num_users: usize,
    num_items: usize,
    k: usize,
) -> (Vec<Interaction>, usize) {
    let mut current = interactions.to_vec();
    let mut rounds = 0;
    loop {
        let mut uc = vec![0usize; num_users];
        let mut ic = vec![0usize; num_items];
        for x in &current {
            uc[x.user as usize] += 1;
            ic[x.item as usize] += 1;
        }
        let before = current.len();
        current.retain(|x| uc[x.user as usize] >= k && ic[x.item as usize] >= k);
        rounds += 1;
        if current.len() == before {
            return (current, rounds);
        }
    }
}

/// Runs the protocol on a raw dataset: filter, split, fit the retriever, build the pools.
///
/// # Errors
/// [`DataError::InvalidConfig`] for a bad configuration; [`DataError::Insufficient`] when
/// nothing survives the filter or the catalog cannot fill a pool.
pub fn prepare(
    raw: RawDataset,
    config: &ProtocolConfig,
    progress: &dyn Progress,
) -> Result<PreparedDataset> {
    config.validate()?;
    let t0 = Instant::now();
    let mut stats = PrepareStats {
        raw_users: raw.user_ids.len(),
        raw_items: raw.item_ids.len(),
        raw_interactions: raw.interactions.len(),
        ..Default::default()
    };

    // 1-2. De-duplicate and filter.
    let (deduped, dups) = dedupe_pairs(&raw.interactions);
    stats.duplicate_pairs = dups;
    let (kept, rounds) = k_core(
        &deduped,
        raw.user_ids.len(),
        raw.item_ids.len(),
        config.k_core,
    );
    stats.k_core_rounds = rounds;
    if kept.is_empty() {
        return Err(DataError::Insufficient(format!(
            "no interaction survives the {}-core filter ({} users, {} items, {} interactions before); lower --k-core",
            config.k_core,
            raw.user_ids.len(),
            raw.item_ids.len(),
            raw.interactions.len()
        )));
    }

    // 3. Compact ids.
    let mut user_map = vec![u32::MAX; raw.user_ids.len()];
    let mut item_map = vec![u32::MAX; raw.item_ids.len()];
    for x in &kept {
        user_map[x.user as usize] = 0;
        item_map[x.item as usize] = 0;
    }
    let compact = |map: &mut [u32]| -> Vec<u32> {
        let mut old = Vec::new();
        for (i, m) in map.iter_mut().enumerate() {
            if *m == 0 {
                *m = old.len() as u32;
                old.push(i as u32);
            }
        }
        old
    };
    let old_users = compact(&mut user_map);
    let old_items = compact(&mut item_map);
    let num_users = old_users.len();
    let num_items = old_items.len();
    stats.users = num_users;
    stats.items = num_items;
    stats.interactions = kept.len();

    let mut sequences = vec![UserSequence::default(); num_users];
    {
        let mut per_user: Vec<Vec<(i64, usize, u32, f32)>> = vec![Vec::new(); num_users];
        for (pos, x) in kept.iter().enumerate() {
            per_user[user_map[x.user as usize] as usize].push((
                x.timestamp,
                pos,
                item_map[x.item as usize],
                x.rating,
            ));
        }
        for (seq, mut rows) in sequences.iter_mut().zip(per_user) {
            rows.sort_by_key(|r| (r.0, r.1));
            seq.items = rows.iter().map(|r| r.2).collect();
            seq.ratings = rows.iter().map(|r| r.3).collect();
            seq.timestamps = rows.iter().map(|r| r.0).collect();
        }
    }
    let item_features = raw.item_features.as_ref().map(|f| f.select(&old_items));
    let l = config.slate_len;
    // Held-out items lose every interaction before the test slates.
    let in_test = in_test_slates(&sequences, num_items, l);
    let held_out = if config.held_out_share > 0.0 {
        choose_held_out(&in_test, config.held_out_share, config.seed)
    } else {
        Vec::new()
    };
    let mut held = vec![false; num_items];
    for &i in &held_out {
        held[i as usize] = true;
    }
    if !held_out.is_empty() {
        stats.held_out_items = held_out.len();
        stats.held_out_interactions = sequences.iter_mut().map(|s| purge(s, &held, l)).sum();
    }
    stats
        .seconds
        .push(("filter".into(), t0.elapsed().as_secs_f64()));

    // 7. Retriever on train interactions.
    let t1 = Instant::now();
    let mut train_pairs = Vec::new();
    let mut item_train_counts = vec![0u32; num_items];
    for (u, seq) in sequences.iter().enumerate() {
        let end = retriever_end(seq.items.len(), l, config.rerank_train_slates);
        for &i in &seq.items[..end] {
            train_pairs.push((u as u32, i));
            item_train_counts[i as usize] += 1;
        }
    }
    let mut retriever = fit_als(
        &train_pairs,
        num_users,
        num_items,
        &config.retriever,
        config.seed,
        progress,
    )?;
    if !held_out.is_empty() {
        // The held-out items are a random draw from the test-slate items: the other
        // test-slate items are the reference for the size of their factors.
        let reference: Vec<bool> = in_test.iter().zip(&held).map(|(t, h)| *t && !h).collect();
        predict_factors(
            &mut retriever,
            item_features.as_ref(),
            &raw.name,
            &held,
            &reference,
            config.pool_size - config.slate_len,
        )?;
    }
    stats.retriever_train_interactions = train_pairs.len();
    stats.cold_items = item_train_counts.iter().filter(|&&c| c == 0).count();
    stats
        .seconds
        .push(("retriever".into(), t1.elapsed().as_secs_f64()));

    // 4-6, 8. Slates, labels and pools, per user in parallel.
    let t2 = Instant::now();
    progress.stage("candidate pools", num_users as u64);
    let per_user: Vec<Result<UserSamples>> = sequences
        .par_iter()
        .enumerate()
        .map_init(
            || PoolScratch::new(num_items),
            |scratch, (u, seq)| {
                let r = user_samples(u, seq, &retriever, config, raw.implicit, &held_out, scratch);
                progress.advance(1);
                r
            },
        )
        .collect();
    progress.finish();
    let mut train = Vec::new();
    let mut valid = Vec::new();
    let mut test = Vec::new();
    let mut recalls = Vec::new();
    for r in per_user {
        let s = r?;
        train.extend(s.train);
        valid.extend(s.valid);
        test.extend(s.test);
        recalls.extend(s.test_recall);
    }
    stats.retriever_recall = if recalls.is_empty() {
        None
    } else {
        Some(recalls.iter().sum::<f64>() / recalls.len() as f64)
    };
    stats
        .seconds
        .push(("pools".into(), t2.elapsed().as_secs_f64()));

    let user_ids: Vec<String> = old_users
        .iter()
        .map(|&u| raw.user_ids[u as usize].clone())
        .collect();
    let mut user_features = raw.user_features.as_ref().map(|f| f.select(&old_users));
    if config.user_id_feature {
        add_user_id_feature(&mut user_features, &user_ids);
    }
    let mut ds = PreparedDataset {
        name: raw.name,
        config: config.clone(),
        implicit: raw.implicit,
        user_ids,
        item_ids: old_items
            .iter()
            .map(|&i| raw.item_ids[i as usize].clone())
            .collect(),
        item_features,
        user_features,
        sequences,
        train,
        valid,
        test,
        retriever,
        item_train_counts,
        held_out,
        stats,
        synthetic: None,
        log: None,
        log_ranks: None,
        train_store: None,
        dir: Default::default(),
    };
    ds.stats.fill_split_counts(&ds.train, &ds.valid, &ds.test);
    ds.stats.held_out_test_shares = ds.held_out_shares(&ds.test);
    Ok(ds)
}

/// Samples of one user, by split, and the retriever's recall on its test slate.
struct UserSamples {
    train: Vec<RerankSample>,
    valid: Vec<RerankSample>,
    test: Vec<RerankSample>,
    test_recall: Option<f64>,
}

/// Per-thread buffers of the pool builder.
struct PoolScratch {
    scores: Vec<f32>,
    order: Vec<u32>,
    /// `mark[item] == stamp` means "excluded for the current slate".
    mark: Vec<u32>,
    stamp: u32,
}

impl PoolScratch {
    fn new(num_items: usize) -> Self {
        Self {
            scores: vec![0.0; num_items],
            order: Vec::with_capacity(num_items),
            mark: vec![0; num_items],
            stamp: 0,
        }
    }

    /// Starts a new exclusion set.
    fn next_stamp(&mut self) -> u32 {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.mark.fill(0);
            self.stamp = 1;
        }
        self.stamp
    }
}

/// Builds every slate's sample of user `u`. The `held_out` items are never retrieved into a
/// train or validation pool.
fn user_samples(
    u: usize,
    seq: &UserSequence,
    mf: &MfModel,
    cfg: &ProtocolConfig,
    implicit: bool,
    held_out: &[u32],
    s: &mut PoolScratch,
) -> Result<UserSamples> {
    let l = cfg.slate_len;
    let n = cfg.pool_size;
    let starts = slate_starts(seq.items.len(), l);
    let mut out = UserSamples {
        train: Vec::new(),
        valid: Vec::new(),
        test: Vec::new(),
        test_recall: None,
    };
    if starts.is_empty() {
        return Ok(out);
    }
    let num_items = s.scores.len();
    mf.scores_into(u, &mut s.scores);
    // Items by score, descending (ties: lower id first). Only the head is ever needed:
    // at most history + slate items are skipped before the pool is full.
    // Held-out items are skipped too before the test slate.
    let head = (n + cfg.history_len + l + held_out.len()).min(num_items);
    s.order.clear();
    s.order.extend(0..num_items as u32);
    let scores = &s.scores;
    let cmp = |a: &u32, b: &u32| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then(a.cmp(b))
    };
    if head < num_items {
        s.order.select_nth_unstable_by(head, cmp);
        s.order.truncate(head);
    }
    s.order.sort_unstable_by(cmp);

    let last = starts.len() - 1;
    for (slate_idx, &start) in starts.iter().enumerate() {
        let hist_from = start.saturating_sub(cfg.history_len);
        let slate = &seq.items[start..start + l];
        let stamp = s.next_stamp();
        let excluded_from = if cfg.pool_excludes_history {
            hist_from
        } else {
            start
        };
        for &i in &seq.items[excluded_from..start + l] {
            s.mark[i as usize] = stamp;
        }
        if slate_idx != last {
            for &i in held_out {
                s.mark[i as usize] = stamp;
            }
        }
        let mut candidates: Vec<u32> = slate.to_vec();
        for &i in &s.order {
            if candidates.len() == n {
                break;
            }
            if s.mark[i as usize] != stamp {
                candidates.push(i);
            }
        }
        if candidates.len() < n {
            return Err(DataError::Insufficient(format!(
                "user {u}, slate {slate_idx}: only {} items outside the slate and its history, \
                 but the pool needs {} (catalog of {num_items} items is too small for pool_size {n} \
                 with history_len {}); lower --pool-size or --history",
                candidates.len() - l,
                n - l,
                cfg.history_len
            )));
        }
        let mut rng = rng_for(cfg.seed, &[0x504F_4F4C, u as u64, slate_idx as u64]);
        candidates.shuffle(&mut rng);
        let mut labels = vec![Labels::default(); n];
        let mut logged = vec![0u16; l];
        for (pos, &c) in candidates.iter().enumerate() {
            if let Some(k) = slate.iter().position(|&x| x == c) {
                labels[pos] =
                    Labels::from_rating(seq.ratings[start + k], &cfg.thresholds, implicit);
                logged[k] = pos as u16;
            }
        }
        let sample = RerankSample {
            user: u as u32,
            slate_start: start as u32,
            candidates,
            labels,
            logged,
        };
        if slate_idx == last {
            // Sanity figure: positives of the test slate found in the retriever's own top-N
            // (history excluded when the pools exclude it).
            let history: HashSet<u32> = seq.items[excluded_from..start].iter().copied().collect();
            let top: HashSet<u32> = s
                .order
                .iter()
                .filter(|i| !history.contains(i))
                .take(n)
                .copied()
                .collect();
            let pos: Vec<u32> = slate
                .iter()
                .zip(&seq.ratings[start..start + l])
                .filter(|(_, r)| Labels::from_rating(**r, &cfg.thresholds, implicit).click())
                .map(|(i, _)| *i)
                .collect();
            if !pos.is_empty() {
                let found = pos.iter().filter(|i| top.contains(i)).count();
                out.test_recall = Some(found as f64 / pos.len() as f64);
            }
            out.test.push(sample);
        } else if slate_idx + 1 == last {
            out.valid.push(sample);
        } else if cfg.rerank_train_slates == 0 || slate_idx + 1 + cfg.rerank_train_slates >= last {
            out.train.push(sample);
        }
    }
    Ok(out)
}

/// Adds the user's identity as the categorical user feature [`USER_ID_FIELD`] (category
/// `k + 1` for user `k`; 0 stays the unknown user).
pub(crate) fn add_user_id_feature(
    user_features: &mut Option<crate::UserFeatures>,
    user_ids: &[String],
) {
    let field = crate::CategoricalField {
        name: USER_ID_FIELD.into(),
        vocabulary: std::iter::once("<unknown>".to_string())
            .chain(user_ids.iter().cloned())
            .collect(),
        values: (1..=user_ids.len() as u32).collect(),
    };
    user_features
        .get_or_insert_with(crate::UserFeatures::default)
        .fields
        .push(field);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cut::train_end;
    use crate::labels::LabelThresholds;

    fn ix(user: u32, item: u32, t: i64) -> Interaction {
        Interaction {
            user,
            item,
            rating: 4.0,
            timestamp: t,
        }
    }

    #[test]
    fn k_core_reaches_a_fixpoint() {
        // Item 2 has one interaction; removing it leaves user 1 with one, which cascades.
        let xs = vec![
            ix(0, 0, 0),
            ix(0, 1, 1),
            ix(1, 0, 2),
            ix(1, 2, 3),
            ix(2, 0, 4),
            ix(2, 1, 5),
        ];
        let (kept, rounds) = k_core(&xs, 3, 3, 2);
        assert!(rounds >= 2);
        let users: HashSet<u32> = kept.iter().map(|x| x.user).collect();
        assert_eq!(users, HashSet::from([0, 2]));
        let mut uc = [0; 3];
        let mut ic = [0; 3];
        for x in &kept {
            uc[x.user as usize] += 1;
            ic[x.item as usize] += 1;
        }
        assert!(uc.iter().chain(&ic).all(|&c| c == 0 || c >= 2));
    }

    #[test]
    fn dedupe_keeps_earliest() {
        let xs = vec![ix(0, 1, 5), ix(0, 1, 3), ix(0, 2, 4)];
        let (kept, removed) = dedupe_pairs(&xs);
        assert_eq!(removed, 1);
        assert_eq!(kept, vec![ix(0, 1, 3), ix(0, 2, 4)]);
    }

    #[test]
    fn slates_align_to_the_end() {
        assert_eq!(slate_starts(20, 6), vec![2, 8, 14]);
        assert_eq!(slate_starts(5, 6), Vec::<usize>::new());
        assert_eq!(train_end(20, 6), 8);
        assert_eq!(train_end(6, 6), 0);
        assert_eq!(train_end(4, 6), 4);
    }

    #[test]
    fn out_of_sample_retriever_cut() {
        // 5 slates of 6 (30 interactions): train slates 0-2, validation 3, test 4.
        assert_eq!(train_end(30, 6), 18);
        assert_eq!(retriever_end(30, 6, 0), 18);
        assert_eq!(retriever_end(30, 6, 1), 12);
        assert_eq!(retriever_end(30, 6, 2), 6);
        assert_eq!(retriever_end(30, 6, 9), 0);
        // 2 slates: no train slate, nothing to cut.
        assert_eq!(retriever_end(14, 6, 1), train_end(14, 6));
    }

    #[test]
    fn labels_from_ratings() {
        let t = LabelThresholds::default();
        assert_eq!(Labels::from_rating(2.0, &t, false), Labels(0));
        assert!(Labels::from_rating(3.0, &t, false).click());
        assert!(!Labels::from_rating(3.0, &t, false).like());
        assert_eq!(Labels::from_rating(5.0, &t, false).grade(), 3);
        assert_eq!(Labels::from_rating(1.0, &t, true), Labels(Labels::CLICK));
    }

    #[test]
    fn config_checks() {
        assert!(ProtocolConfig::default().validate().is_ok());
        let bad = ProtocolConfig::default().with_shape(6, 50, 6);
        assert!(
            matches!(bad.validate(), Err(DataError::InvalidConfig { field, .. }) if field == "pool_size")
        );
        let bad = ProtocolConfig::default().with_thresholds(LabelThresholds::new(4.0, 3.0, 5.0));
        assert!(bad.validate().is_err());
    }
}
