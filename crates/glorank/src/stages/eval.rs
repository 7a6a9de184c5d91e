//! Evaluation: scoring lists of every method on a split, the cold-start slices, and the
//! candidate-order robustness check.

use super::training::clicks;
use crate::Result;
use burn::tensor::Device;
use glorank_baselines::{
    Baseline, BaselineConfig, Features, PoolNovelty, fit, mf_order, oracle, popularity,
    retriever_reversed,
};
use glorank_data::{PreparedDataset, RerankSample};
use glorank_metrics::{MetricsSummary, Summary};
use glorank_policy::{Policy, Request};
use glorank_reward::UserResponseModel;
use glorank_tokenizer::SemanticIds;
use glorank_train::{RequestBuilder, average_reward, greedy_lists, list_metrics};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One evaluated method.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodResult {
    /// Method name.
    pub name: String,
    /// Precision/Recall/F1/NDCG/MAP/Hit@L with 95% CIs.
    pub metrics: MetricsSummary,
    /// Average Reward (simulator) with its 95% CI.
    pub average_reward: Option<Summary>,
    /// Mean true expected clicks of the lists under the synthetic world's click model.
    pub true_reward: Option<Summary>,
    /// The lists (candidate positions), one per evaluated request.
    #[serde(skip)]
    pub lists: Vec<Vec<usize>>,
}

/// Evaluation context: the samples, their requests, the simulator and (synthetic data) the
/// world's true click model.
pub struct EvalContext<'a> {
    /// The prepared dataset.
    pub ds: &'a PreparedDataset,
    /// The evaluated samples.
    pub samples: &'a [RerankSample],
    /// Their policy requests.
    pub requests: Vec<Request>,
    /// The simulator, for Average Reward.
    pub simulator: Option<&'a UserResponseModel>,
    /// The synthetic world, for the true expected clicks.
    pub world: Option<glorank_data::SyntheticWorld>,
    /// The plain device.
    pub device: Device,
}

impl std::fmt::Debug for EvalContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalContext")
            .field("requests", &self.requests.len())
            .finish()
    }
}

impl<'a> EvalContext<'a> {
    /// A context for `samples` of `ds`.
    ///
    /// # Errors
    /// A semantic-ID table for another dataset; an invalid synthetic configuration.
    pub fn new(
        ds: &'a PreparedDataset,
        ids: &SemanticIds,
        samples: &'a [RerankSample],
        simulator: Option<&'a UserResponseModel>,
        device: &Device,
    ) -> Result<Self> {
        let builder = RequestBuilder::new(ds, ids)?;
        let world = ds
            .synthetic
            .as_ref()
            .map(glorank_data::SyntheticWorld::new)
            .transpose()?;
        Ok(Self {
            ds,
            samples,
            requests: builder.requests(samples),
            simulator,
            world,
            device: device.clone(),
        })
    }

    /// Scores `lists` (candidate positions per sample).
    ///
    /// # Errors
    /// Metric or model errors.
    pub fn evaluate(&self, name: &str, lists: Vec<Vec<usize>>) -> Result<MethodResult> {
        let l = self.ds.config.slate_len;
        let metrics = list_metrics(&lists, &clicks(self.samples), l)?;
        let average_reward = self
            .simulator
            .map(|s| average_reward(s, &self.requests, &lists, &self.device))
            .transpose()?;
        let true_reward = match &self.world {
            Some(w) => {
                let mut v = Vec::with_capacity(lists.len());
                for (s, list) in self.samples.iter().zip(&lists) {
                    let user = glorank_data::SyntheticWorld::user_index(
                        &self.ds.user_ids[s.user as usize],
                    );
                    let items: Option<Vec<usize>> = list
                        .iter()
                        .map(|&p| {
                            glorank_data::SyntheticWorld::item_index(
                                &self.ds.item_ids[s.candidates[p] as usize],
                            )
                        })
                        .collect();
                    if let (Some(u), Some(items)) = (user, items) {
                        v.push(w.expected_clicks(u, &items));
                    }
                }
                (!v.is_empty())
                    .then(|| Summary::from_values(&v))
                    .transpose()?
            }
            None => None,
        };
        Ok(MethodResult {
            name: name.into(),
            metrics,
            average_reward,
            true_reward,
            lists,
        })
    }

    /// Greedy lists of the policy in `dir`, scored.
    ///
    /// # Errors
    /// Missing policy, decoding errors.
    pub fn evaluate_policy(&self, name: &str, dir: &Path) -> Result<MethodResult> {
        let (policy, _) = Policy::load(dir, &self.device)?;
        let lists = greedy_lists(&policy, &self.requests, 1, &self.device)?;
        self.evaluate(name, lists)
    }

    /// The rows that learn nothing: MF order (the initial ranker) and the reference rules
    /// (retriever reversed, pool novelty, popularity), which show how separable the pools are
    /// by construction; and the oracle (positives first), returned separately because tables
    /// put it last.
    ///
    /// # Errors
    /// Metric errors.
    pub fn reference_rows(&self) -> Result<(Vec<MethodResult>, MethodResult)> {
        let l = self.ds.config.slate_len;
        let ds = self.ds;
        let rule = |f: &dyn Fn(&RerankSample) -> Vec<usize>| -> Vec<Vec<usize>> {
            self.samples.iter().map(f).collect()
        };
        let novelty = PoolNovelty::new(&ds.train);
        let rows = vec![
            self.evaluate("MF order", rule(&|s| mf_order(&ds.retriever_scores(s), l)))?,
            self.evaluate(
                "retriever reversed",
                rule(&|s| retriever_reversed(&ds.retriever_scores(s), l)),
            )?,
            self.evaluate("pool novelty", rule(&|s| novelty.rank(s, l)))?,
            self.evaluate(
                "popularity",
                rule(&|s| {
                    let counts: Vec<u32> = s
                        .candidates
                        .iter()
                        .map(|&i| ds.item_train_counts[i as usize])
                        .collect();
                    popularity(&counts, l)
                }),
            )?,
        ];
        let best = self.evaluate("oracle", rule(&|s| oracle(&s.click_relevance(), l)))?;
        Ok((rows, best))
    }

    /// Trains and scores PRM, Seq2Slate and DLCM; returns the rows and the training seconds.
    ///
    /// # Errors
    /// Training or metric errors.
    pub fn baselines(
        &self,
        config: &BaselineConfig,
        autodiff: &Device,
    ) -> Result<Vec<(MethodResult, f64)>> {
        let features = Features::of(self.ds);
        let mut rows = Vec::new();
        for kind in [Baseline::Prm, Baseline::Seq2Slate, Baseline::Dlcm] {
            let t0 = std::time::Instant::now();
            let (model, _) = fit(kind, self.ds, config, (autodiff, &self.device))?;
            let secs = t0.elapsed().as_secs_f64();
            let lists = model.rank(
                self.ds,
                &features,
                self.samples,
                self.ds.config.slate_len,
                &self.device,
            )?;
            rows.push((self.evaluate(kind.name(), lists)?, secs));
        }
        Ok(rows)
    }
}

/// `samples` with every candidate pool re-ordered by a seeded permutation (labels, logged
/// positions and everything else follow their items). A model that treats the pool as a set
/// scores the same lists; a local-index model sees different inputs at each position.
pub fn shuffle_candidates(samples: &[RerankSample], seed: u64) -> Vec<RerankSample> {
    samples
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let n = s.candidates.len();
            let mut perm: Vec<usize> = (0..n).collect();
            let mut rng = glorank_train::derive_seed(seed, &[k as u64]);
            // Fisher-Yates with a SplitMix-derived stream (no RNG state to carry).
            for i in (1..n).rev() {
                rng = glorank_train::derive_seed(rng, &[i as u64]);
                perm.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            // New position p holds old position perm[p].
            let mut new_of_old = vec![0u16; n];
            for (p, &old) in perm.iter().enumerate() {
                new_of_old[old] = p as u16;
            }
            RerankSample {
                user: s.user,
                slate_start: s.slate_start,
                candidates: perm.iter().map(|&o| s.candidates[o]).collect(),
                labels: perm.iter().map(|&o| s.labels[o]).collect(),
                logged: s.logged.iter().map(|&o| new_of_old[o as usize]).collect(),
            }
        })
        .collect()
}

/// The rows restricted to the cold-start slice: requests with at least one candidate that
/// has fewer than `threshold` training interactions (`threshold = 1`: never seen in training).
/// Returns the number of such requests and the re-scored rows (label metrics only), or `None`
/// when the slice is empty.
///
/// # Errors
/// Metric errors.
pub fn cold_slice(
    ds: &PreparedDataset,
    samples: &[RerankSample],
    rows: &[MethodResult],
    threshold: u32,
) -> Result<Option<(usize, Vec<MethodResult>)>> {
    let keep: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.candidates
                .iter()
                .any(|&i| ds.item_train_counts[i as usize] < threshold)
        })
        .map(|(k, _)| k)
        .collect();
    if keep.is_empty() {
        return Ok(None);
    }
    let rel: Vec<Vec<f64>> = keep.iter().map(|&k| samples[k].click_relevance()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let lists: Vec<Vec<usize>> = keep.iter().map(|&k| r.lists[k].clone()).collect();
        out.push(MethodResult {
            name: r.name.clone(),
            metrics: list_metrics(&lists, &rel, ds.config.slate_len)?,
            average_reward: None,
            true_reward: None,
            lists,
        });
    }
    Ok(Some((keep.len(), out)))
}
