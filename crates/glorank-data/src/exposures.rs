//! Exposure counts: how often a candidate was shown to its user before without a click.
//!
//! Production rerankers commonly read this "impression fatigue" signal. Here an exposure is
//! one appearance of the item as a non-clicked candidate in one of the user's *training*
//! requests that starts earlier in the user's sequence than the request being built. The
//! count is causal: a training request never counts its own pool, and a validation or test
//! request (which starts after every training request of its user) counts all of them. The
//! reference rule "pool novelty" ranks by the same counts over all training requests.

use crate::RerankSample;
use std::collections::{HashMap, HashSet};

/// For each (user, item), the sequence positions of the training requests in which the item
/// was a non-clicked candidate, sorted.
#[derive(Debug, Clone, Default)]
pub struct Exposures {
    starts: HashMap<(u32, u32), Vec<u32>>,
}

impl Exposures {
    /// The exposures of the training requests `train`.
    pub fn new(train: &[RerankSample]) -> Self {
        let mut exposures = Self::default();
        for s in train {
            exposures.add(s, None);
        }
        exposures.sorted()
    }

    /// Adds the exposures of one training request: of every (user, item) pair, or only of
    /// the pairs in `keep` (the pairs of the requests to be scored, when the training
    /// requests are streamed from disk and all their pairs would not fit in memory). Call
    /// [`Exposures::sorted`] after the last one.
    pub fn add(&mut self, s: &RerankSample, keep: Option<&HashSet<(u32, u32)>>) {
        for (&item, label) in s.candidates.iter().zip(&s.labels) {
            if !label.click() && keep.is_none_or(|k| k.contains(&(s.user, item))) {
                self.starts
                    .entry((s.user, item))
                    .or_default()
                    .push(s.slate_start);
            }
        }
    }

    /// These exposures, ready to count (each pair's starts sorted).
    pub fn sorted(mut self) -> Self {
        for v in self.starts.values_mut() {
            v.sort_unstable();
        }
        self
    }

    /// How often each candidate of `sample` was a non-clicked candidate of the same user in a
    /// training request starting before `sample.slate_start`, in candidate order.
    pub fn counts(&self, sample: &RerankSample) -> Vec<u32> {
        self.per_candidate(sample, |starts| {
            starts.partition_point(|&t| t < sample.slate_start)
        })
    }

    /// How often each candidate of `sample` was a non-clicked candidate of the same user in
    /// any training request, whenever it started (the "pool novelty" rule's counts).
    pub fn totals(&self, sample: &RerankSample) -> Vec<u32> {
        self.per_candidate(sample, <[u32]>::len)
    }

    /// `count` of each candidate's sorted training starts (empty for a candidate never
    /// shown to this user without a click), in candidate order.
    fn per_candidate(&self, sample: &RerankSample, count: impl Fn(&[u32]) -> usize) -> Vec<u32> {
        sample
            .candidates
            .iter()
            .map(|&item| {
                let starts = self
                    .starts
                    .get(&(sample.user, item))
                    .map_or(&[][..], Vec::as_slice);
                count(starts) as u32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Labels;

    fn sample(user: u32, start: u32, candidates: &[u32], clicked: &[u32]) -> RerankSample {
        let labels = candidates
            .iter()
            .map(|i| {
                if clicked.contains(i) {
                    Labels(Labels::CLICK)
                } else {
                    Labels::default()
                }
            })
            .collect();
        RerankSample {
            user,
            slate_start: start,
            candidates: candidates.to_vec(),
            labels,
            logged: Vec::new(),
        }
    }

    #[test]
    fn counts_only_earlier_non_clicked_training_exposures_of_the_same_user() {
        let train = vec![
            sample(0, 10, &[1, 2, 3], &[3]),
            sample(0, 16, &[1, 2, 4], &[2]),
            sample(1, 10, &[1, 2, 3], &[]),
        ];
        let e = Exposures::new(&train);
        // The first training request sees nothing before it, its own pool included.
        assert_eq!(e.counts(&train[0]), vec![0, 0, 0]);
        // The second sees the first: items 1 and 2 were shown there without a click.
        assert_eq!(e.counts(&train[1]), vec![1, 1, 0]);
        // A later (test) request of user 0 sees both: item 1 twice, item 2 once (clicked the
        // second time), item 3 never unclicked, item 4 once; user 1's pool is not counted.
        let test = sample(0, 30, &[1, 2, 3, 4, 5], &[]);
        assert_eq!(e.counts(&test), vec![2, 1, 0, 1, 0]);
    }
}
