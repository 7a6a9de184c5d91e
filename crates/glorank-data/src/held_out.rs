//! The held-out-items cold-start protocol ([`ProtocolConfig::held_out_share`]).
//!
//! A seeded share of the catalog, drawn among the items that appear in some user's test
//! slate, loses every interaction before the test slates: it is absent from the retriever's
//! data, from every train and validation slate and pool, and from every history. At test
//! time those items are new: the retriever scores them through item factors predicted from
//! their content vectors (a ridge regression fitted on the warm items' factors, times one
//! scale calibrated so that they reach the users' top lists as often per item as the other
//! test-slate items), so a held-out item can enter a test pool as a retrieved negative as well
//! as a logged item, and the tokenizer and every model see it only through its content vector.
//!
//! [`ProtocolConfig::held_out_share`]: crate::ProtocolConfig::held_out_share

use crate::cut::slate_starts;
use crate::prepared::UserSequence;
use crate::raw::ItemFeatures;
use crate::retriever::{MfModel, cholesky_solve};
use crate::rng::rng_for;
use crate::vectors::content_matrix;
use crate::{DataError, Result};
use rand::seq::SliceRandom;
use rayon::prelude::*;

/// Title-word hash buckets of the content vectors the retriever regresses factors on.
pub const HELD_OUT_TITLE_BUCKETS: usize = 32;

/// Ridge penalty of the content-to-factors regression (on content features of order 1).
pub const HELD_OUT_RIDGE: f32 = 1.0;

/// Which items appear in some user's test slate (the last slate of a sequence).
pub(crate) fn in_test_slates(
    sequences: &[UserSequence],
    num_items: usize,
    slate_len: usize,
) -> Vec<bool> {
    let mut in_test = vec![false; num_items];
    for seq in sequences {
        if let Some(&start) = slate_starts(seq.items.len(), slate_len).last() {
            for &i in &seq.items[start..start + slate_len] {
                in_test[i as usize] = true;
            }
        }
    }
    in_test
}

/// Draws the held-out items: `round(share x items)` of the `eligible` items (fewer when fewer
/// qualify), by a seeded shuffle. Returned sorted.
pub(crate) fn choose_held_out(eligible: &[bool], share: f64, seed: u64) -> Vec<u32> {
    let mut pool: Vec<u32> = (0..eligible.len() as u32)
        .filter(|&i| eligible[i as usize])
        .collect();
    let want = ((share * eligible.len() as f64).round() as usize).min(pool.len());
    let mut rng = rng_for(seed, &[0x484F_4C44]);
    pool.shuffle(&mut rng);
    pool.truncate(want);
    pool.sort_unstable();
    pool
}

/// Removes every interaction with a held-out item that comes before the user's test slate
/// (the last `slate_len` interactions stay as they are; a user without a full slate loses
/// every such interaction). Returns the number removed.
pub(crate) fn purge(seq: &mut UserSequence, held: &[bool], slate_len: usize) -> usize {
    let test_start = slate_starts(seq.items.len(), slate_len)
        .last()
        .copied()
        .unwrap_or(seq.items.len());
    let keep: Vec<bool> = seq
        .items
        .iter()
        .enumerate()
        .map(|(k, &i)| k >= test_start || !held[i as usize])
        .collect();
    let removed = keep.iter().filter(|k| !**k).count();
    if removed > 0 {
        retain_mask(&mut seq.items, &keep);
        retain_mask(&mut seq.ratings, &keep);
        retain_mask(&mut seq.timestamps, &keep);
    }
    removed
}

/// Keeps the elements of `v` whose flag in `keep` is set.
fn retain_mask<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut flags = keep.iter();
    v.retain(|_| flags.next().copied().unwrap_or(true));
}

/// Replaces the factors of the `held` items in `mf` by the prediction of a ridge regression
/// (with an intercept) from the items' content vectors to their factors, fitted on every other
/// item, times one scale chosen by [`calibrate_scale`] so that held-out items enter the users'
/// top `top_k` as often per item as the `reference` items do.
///
/// Why the scale: a regression predicts the conditional mean, whose norm is far below a
/// fitted item's. Unscaled, held-out items made 0.9% of the retrieved ML-100K test candidates
/// against 10.9% of the logged ones, so being new would have told that an item was logged.
/// Giving each the norm of a typical item overshot instead (30.2%), because the predicted
/// directions all lean toward what most users like. The scale uses the retriever alone, no
/// label.
///
/// # Errors
/// [`DataError::InvalidConfig`] when the dataset has no content features.
pub(crate) fn predict_factors(
    mf: &mut MfModel,
    features: Option<&ItemFeatures>,
    dataset: &str,
    held: &[bool],
    reference: &[bool],
    top_k: usize,
) -> Result<()> {
    let features = features.ok_or_else(|| {
        DataError::config(
            "held_out_share",
            format!(
                "dataset `{dataset}` has no item content features, and held-out items are \
                 seen only through their content"
            ),
        )
    })?;
    let content = content_matrix(features, HELD_OUT_TITLE_BUCKETS);
    // Design rows: [content..., 1].
    let p = content.dim + 1;
    let k = mf.factors;
    let row = |i: usize| content.row(i).iter().copied().chain(std::iter::once(1.0));
    let mut xtx = vec![0f32; p * p];
    let mut xty = vec![0f32; p * k];
    for i in (0..held.len()).filter(|&i| !held[i]) {
        let x: Vec<f32> = row(i).collect();
        let y = mf.item(i);
        for a in 0..p {
            if x[a] == 0.0 {
                continue;
            }
            for b in 0..p {
                xtx[a * p + b] += x[a] * x[b];
            }
            for c in 0..k {
                xty[a * k + c] += x[a] * y[c];
            }
        }
    }
    // The intercept is not penalised (a tiny ridge keeps the system definite).
    for a in 0..p {
        xtx[a * p + a] += if a + 1 == p { 1e-6 } else { HELD_OUT_RIDGE };
    }
    // One solve per factor column, sharing nothing but the matrix.
    let mut w = vec![0f32; p * k];
    for c in 0..k {
        let mut a = xtx.clone();
        let mut b: Vec<f32> = (0..p).map(|r| xty[r * k + c]).collect();
        cholesky_solve(&mut a, &mut b, p);
        for r in 0..p {
            w[r * k + c] = b[r];
        }
    }
    for i in (0..held.len()).filter(|&i| held[i]) {
        let x: Vec<f32> = row(i).collect();
        let out = &mut mf.item_factors[i * k..(i + 1) * k];
        for (c, o) in out.iter_mut().enumerate() {
            *o = (0..p).map(|r| x[r] * w[r * k + c]).sum();
        }
    }
    let scale = calibrate_scale(mf, held, reference, top_k);
    for i in (0..held.len()).filter(|&i| held[i]) {
        mf.item_factors[i * k..(i + 1) * k]
            .iter_mut()
            .for_each(|x| *x *= scale);
    }
    Ok(())
}

/// The factor scale `c` of the `held` items at which they appear in the users' top `top_k`
/// (by retriever score, every item eligible) as often per item as the `reference` items do:
/// found by bisection on `c` (the held-out items' scores scale with it, the others' do not).
/// 1 when there is nothing to compare.
pub(crate) fn calibrate_scale(
    mf: &MfModel,
    held: &[bool],
    reference: &[bool],
    top_k: usize,
) -> f32 {
    let n_items = held.len();
    let n_held = held.iter().filter(|h| **h).count();
    let n_ref = reference.iter().filter(|r| **r).count();
    if n_held == 0 || n_ref == 0 || top_k == 0 || top_k >= n_items {
        return 1.0;
    }
    let users = mf.num_users();
    let scores: Vec<Vec<f32>> = (0..users)
        .into_par_iter()
        .map(|u| {
            let mut v = vec![0f32; n_items];
            mf.scores_into(u, &mut v);
            v
        })
        .collect();
    // Per item appearances in the top_k at scale c: held-out mean minus reference mean.
    let gap = |c: f32| -> f64 {
        let (h, r) = scores
            .par_iter()
            .map(|v| {
                let mut s: Vec<(f32, u32)> = v
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| (if held[i] { x * c } else { x }, i as u32))
                    .collect();
                s.select_nth_unstable_by(top_k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                s[..top_k].iter().fold((0usize, 0usize), |(h, r), &(_, i)| {
                    (
                        h + usize::from(held[i as usize]),
                        r + usize::from(reference[i as usize]),
                    )
                })
            })
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        h as f64 / n_held as f64 - r as f64 / n_ref as f64
    };
    let mut hi = 1.0f32;
    while gap(hi) < 0.0 {
        hi *= 2.0;
        if hi > 1e6 {
            return hi;
        }
    }
    let mut lo = 0.0f32;
    for _ in 0..30 {
        let mid = 0.5 * (lo + hi);
        if gap(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_equalises_top_k_appearances() {
        // One user; items 0-3 fitted with scores 4, 3, 2, 1; items 4 and 5 held out with
        // base scores 0.1 and 0.05, scaled by c. In the top 2, the held-out items appear less
        // often per item than the reference ones (0 of 2 against 2 of 4) until item 4 passes
        // item 1 at c = 30, and more often after (1 of 2 against 1 of 4).
        let mf = MfModel {
            factors: 1,
            user_factors: vec![1.0],
            item_factors: vec![4.0, 3.0, 2.0, 1.0, 0.1, 0.05],
        };
        let held = [false, false, false, false, true, true];
        let reference = [true, true, true, true, false, false];
        let c = calibrate_scale(&mf, &held, &reference, 2);
        assert!((c * 0.1 - 3.0).abs() < 1e-3, "{c}");
        assert_eq!(calibrate_scale(&mf, &held, &reference, 0), 1.0);
    }

    fn seq(items: &[u32]) -> UserSequence {
        UserSequence {
            items: items.to_vec(),
            ratings: items.iter().map(|&i| i as f32).collect(),
            timestamps: (0..items.len() as i64).collect(),
        }
    }

    #[test]
    fn purge_keeps_the_test_slate_and_removes_the_rest() {
        // 14 interactions, slates of 6 aligned to the end: test = the last 6.
        let mut s = seq(&[1, 2, 9, 3, 4, 9, 5, 6, 9, 7, 8, 0, 9, 1]);
        let mut held = vec![false; 10];
        held[9] = true;
        let removed = purge(&mut s, &held, 6);
        // Held-out item 9 appears at positions 2, 5 (before the test slate at 8) and at 8
        // and 12 (inside it).
        assert_eq!(removed, 2);
        assert_eq!(s.items, vec![1, 2, 3, 4, 5, 6, 9, 7, 8, 0, 9, 1]);
        assert_eq!(
            s.ratings,
            vec![1., 2., 3., 4., 5., 6., 9., 7., 8., 0., 9., 1.]
        );
        assert_eq!(s.timestamps, vec![0, 1, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13]);
        // The last slate is still the original test slate.
        let start = *slate_starts(s.items.len(), 6).last().unwrap();
        assert_eq!(&s.items[start..], &[9, 7, 8, 0, 9, 1]);
    }

    #[test]
    fn choice_is_seeded_and_within_test_slates() {
        let seqs = vec![seq(&[0, 1, 2, 3, 4, 5, 6, 7]), seq(&[8, 9, 10, 11, 12, 13])];
        // Test slates: items 2..=7 and 8..=13; items 0 and 1 are never in one.
        let eligible = in_test_slates(&seqs, 20, 6);
        assert_eq!(eligible.iter().filter(|e| **e).count(), 12);
        assert!(!eligible[0] && !eligible[1] && eligible[2] && eligible[13] && !eligible[14]);
        let a = choose_held_out(&eligible, 0.25, 7);
        assert_eq!(a, choose_held_out(&eligible, 0.25, 7));
        assert_eq!(a.len(), 5);
        assert!(a.iter().all(|&i| (2..=13).contains(&i)));
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        // Capped by the eligible items.
        assert_eq!(choose_held_out(&eligible, 0.9, 7).len(), 12);
        assert!(choose_held_out(&eligible, 0.0, 7).is_empty());
    }

    #[test]
    fn predicted_factors_follow_content() {
        // Factors are an exact linear function of one genre flag; the held-out item's
        // prediction recovers it up to the ridge shrinkage.
        let n = 40;
        let features = ItemFeatures {
            genre_names: vec!["a".into(), "b".into()],
            genres: (0..n).map(|i| vec![(i % 2) as u16]).collect(),
            years: vec![None; n],
            titles: vec![String::new(); n],
        };
        let mut mf = MfModel {
            factors: 2,
            user_factors: vec![0.0; 2],
            item_factors: (0..n)
                .flat_map(|i| if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 2.0] })
                .collect(),
        };
        let mut held = vec![false; n];
        held[0] = true;
        held[1] = true;
        mf.item_factors[0..4].fill(9.0); // garbage to be overwritten
        let reference: Vec<bool> = held.iter().map(|h| !h).collect();
        // No user factors (top_k 0): no calibration, the plain regression.
        predict_factors(&mut mf, Some(&features), "t", &held, &reference, 0).unwrap();
        assert!((mf.item(0)[0] - 1.0).abs() < 0.1 && mf.item(0)[1].abs() < 0.1);
        assert!(mf.item(1)[0].abs() < 0.1 && (mf.item(1)[1] - 2.0).abs() < 0.2);
        // Warm items keep their fitted factors.
        assert_eq!(mf.item(2), &[1.0, 0.0]);
        let err = predict_factors(&mut mf, None, "plain", &held, &reference, 0).unwrap_err();
        assert!(err.to_string().contains("held_out_share"), "{err}");
    }
}
