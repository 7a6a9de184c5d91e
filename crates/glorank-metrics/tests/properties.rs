//! Property tests of the list-wise metrics (proptest).

use glorank_metrics::{ListMetrics, ndcg_at};
use proptest::prelude::*;

/// A request: graded relevance per candidate (about a third positive), and a list given as a
/// permutation of the candidates (its first `L` entries are the output).
fn request() -> impl Strategy<Value = (Vec<f64>, Vec<usize>, usize)> {
    (2usize..40).prop_flat_map(|n| {
        (
            prop::collection::vec(
                prop_oneof![2 => Just(0u8), 1 => 1u8..4].prop_map(f64::from),
                n,
            ),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            1usize..=n,
        )
    })
}

/// Candidate indices sorted by relevance, descending (ties by index): the ideal list.
fn ideal(rel: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..rel.len()).collect();
    idx.sort_by(|&a, &b| rel[b].total_cmp(&rel[a]).then(a.cmp(&b)));
    idx
}

/// Binary relevance (1 for a positive) of a graded vector.
fn binary(rel: &[f64]) -> Vec<f64> {
    rel.iter()
        .map(|&r| if r > 0.0 { 1.0 } else { 0.0 })
        .collect()
}

proptest! {
    #[test]
    fn every_metric_lies_in_unit_interval((rel, perm, l) in request()) {
        let m = ListMetrics::compute(&perm[..l], &rel, l).unwrap();
        for (name, v) in m.named() {
            prop_assert!((0.0..=1.0).contains(&v), "{name} = {v}");
        }
    }

    #[test]
    fn positives_first_reaches_the_maximum((rel, perm, l) in request()) {
        let rel = binary(&rel);
        let best = ListMetrics::compute(&ideal(&rel)[..l], &rel, l).unwrap();
        let any = ListMetrics::compute(&perm[..l], &rel, l).unwrap();
        for ((name, b), (_, a)) in best.named().into_iter().zip(any.named()) {
            prop_assert!(b >= a - 1e-12, "{name}: positives-first {b} < other list {a}");
        }
        let p = rel.iter().filter(|&&r| r > 0.0).count();
        prop_assert!((best.precision - p.min(l) as f64 / l as f64).abs() < 1e-12);
        // MAP over hits is never below MAP over min(P, L).
        prop_assert!(any.map_hits >= any.map - 1e-12);
        if p > 0 {
            prop_assert!((best.map - 1.0).abs() < 1e-12);
            prop_assert!((best.map_hits - 1.0).abs() < 1e-12);
            prop_assert!((best.ndcg - 1.0).abs() < 1e-12);
            prop_assert_eq!(best.hit, 1.0);
        }
    }

    #[test]
    fn ideal_list_has_ndcg_one((rel, _perm, l) in request()) {
        let v = ndcg_at(&ideal(&rel)[..l], &rel, l).unwrap();
        if rel.iter().any(|&r| r > 0.0) {
            prop_assert!((v - 1.0).abs() < 1e-12);
        } else {
            prop_assert_eq!(v, 0.0);
        }
    }

    #[test]
    fn swapping_two_unselected_candidates_changes_nothing(
        (rel, perm, l) in request(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()
    ) {
        let n = rel.len();
        prop_assume!(l < n);
        let list = &perm[..l];
        let rest = &perm[l..];
        let (i, j) = (rest[a.index(rest.len())], rest[b.index(rest.len())]);
        // Relabel candidates i <-> j (their positions in the candidate set are swapped).
        let mut swapped = rel.clone();
        swapped.swap(i, j);
        let before = ListMetrics::compute(list, &rel, l).unwrap();
        let after = ListMetrics::compute(list, &swapped, l).unwrap();
        prop_assert_eq!(before, after);
    }
}
