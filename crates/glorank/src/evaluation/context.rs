//! The evaluation context: every method's lists on a split, scored (label metrics, Average
//! Reward, true clicks on the synthetic world, the AUC among logged items), and the
//! candidate-order robustness check.

use super::{
    BEST_LIST, COLD_FIRST, LOGGED_ORDER, MethodResult, RANDOM, RETRIEVER_ORDER, TOP_APPEAL,
};
use crate::Result;
use crate::training::clicks;
use burn::tensor::Device;
use glorank_baselines::{Baseline, mf_order, oracle};
use glorank_data::{Exposures, PreparedDataset, RerankSample};
use glorank_metrics::Summary;
use glorank_nn::ModelInputs;
use glorank_policy::{Policy, Request, first_item_logprobs};
use glorank_reward::UserResponseModel;
use glorank_tokenizer::SemanticIds;
use glorank_train::{
    BaselineConfig, BaselineData, RequestBuilder, average_reward, fit, list_metrics, policy_lists,
};
use glorank_trie::{DecodeStrategy, Decoder};
use rayon::prelude::*;
use std::path::Path;

/// Seeded uniform scores in [0, 1) for the candidates of `s`, from its user and slate (so a
/// request gets the same order in any subset of the samples).
fn random_scores(s: &RerankSample) -> Vec<f32> {
    (0..s.candidates.len())
        .map(|p| {
            let h = glorank_train::derive_seed(
                0x5241_4E44,
                &[u64::from(s.user), u64::from(s.slate_start), p as u64],
            );
            (h >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// The artefact-free view: per request whose logged slate holds both clicked and
/// non-clicked items, the AUC of the clicked over the non-clicked logged items under
/// `scores` (candidates outside the logged slate play no part); their mean with its 95%
/// interval, or `None` when no request qualifies.
///
/// # Errors
/// Metric errors (a NaN score).
pub(crate) fn logged_auc(samples: &[RerankSample], scores: &[Vec<f32>]) -> Result<Option<Summary>> {
    let mut v = Vec::new();
    for (s, sc) in samples.iter().zip(scores) {
        let (x, y): (Vec<f64>, Vec<bool>) = s
            .logged
            .iter()
            .map(|&p| (f64::from(sc[p as usize]), s.labels[p as usize].click()))
            .unzip();
        if let Some(a) = glorank_metrics::auc(&x, &y)? {
            v.push(a);
        }
    }
    summary_of(&v)
}

/// The mean of `values` with its 95% interval, or `None` without values.
///
/// # Errors
/// Metric errors (a NaN value).
pub(crate) fn summary_of(values: &[f64]) -> Result<Option<Summary>> {
    Ok((!values.is_empty())
        .then(|| Summary::from_values(values))
        .transpose()?)
}

/// A method's two views of the logged slates under its candidate `scores`, when it has
/// them: ([`logged_auc`], [`logged_ndcg`]).
///
/// # Errors
/// Metric errors.
pub(crate) fn logged_views(
    samples: &[RerankSample],
    scores: Option<&[Vec<f32>]>,
) -> Result<(Option<Summary>, Option<Summary>)> {
    match scores {
        Some(sc) => Ok((logged_auc(samples, sc)?, logged_ndcg(samples, sc)?)),
        None => Ok((None, None)),
    }
}

/// The ranking view of the logged slate: per request whose logged slate holds a clicked
/// item, NDCG of the logged items reordered by `scores` (graded relevance: click, like,
/// star; ties keep display order; the other candidates play no part), against the best
/// order of the same items; their mean with its 95% interval, or `None` when no request
/// qualifies.
///
/// # Errors
/// Metric errors.
pub(crate) fn logged_ndcg(
    samples: &[RerankSample],
    scores: &[Vec<f32>],
) -> Result<Option<Summary>> {
    let mut v = Vec::new();
    for (s, sc) in samples.iter().zip(scores) {
        let relevance: Vec<f64> = s
            .logged
            .iter()
            .map(|&p| f64::from(s.labels[p as usize].grade()))
            .collect();
        if !s.logged.iter().any(|&p| s.labels[p as usize].click()) {
            continue;
        }
        let mut order: Vec<usize> = (0..s.logged.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (sc[s.logged[a] as usize], sc[s.logged[b] as usize]);
            y.total_cmp(&x).then(a.cmp(&b))
        });
        v.push(glorank_metrics::ndcg_at(&order, &relevance, order.len())?);
    }
    summary_of(&v)
}

/// Evaluation context: the samples, their requests, the simulator and (synthetic data) the
/// world's true click model.
pub(crate) struct EvalContext<'a> {
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
    /// Beam width of the policies' lists (1, the default: greedy decoding; `W > 1`: the best
    /// of a beam search over whole lists, `DecodeStrategy::Beam`).
    pub beam: usize,
    /// Prefix-repetition penalty of the policies' decoding (0, the default: none; see
    /// `glorank_trie::PrefixPenalty`).
    pub prefix_penalty: f32,
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
        // Exposure counts for every request: a policy trained with them reads them, the
        // others ignore them.
        let builder = RequestBuilder::new(ds, ids)?.with_exposures(true);
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
            beam: 1,
            prefix_penalty: 0.0,
        })
    }

    /// Decodes the policies' lists with a beam of `width` (1: greedy).
    pub fn with_beam(mut self, width: usize) -> Self {
        self.beam = width.max(1);
        self
    }

    /// Decodes the policies' lists with this prefix-repetition penalty (0: none; see
    /// `glorank_trie::PrefixPenalty`).
    ///
    /// # Errors
    /// [`crate::Error::Trie`] for a negative or non-finite penalty.
    pub fn with_prefix_penalty(mut self, penalty: f32) -> Result<Self> {
        glorank_trie::check_prefix_penalty(penalty)?;
        self.prefix_penalty = penalty;
        Ok(self)
    }

    /// The decoder of the policies' lists: [`EvalContext::beam`] and
    /// [`EvalContext::prefix_penalty`].
    fn decoder(&self) -> Result<Decoder> {
        Ok(Decoder::new(DecodeStrategy::beam_or_greedy(self.beam), 0)?
            .with_prefix_penalty(self.prefix_penalty)?)
    }

    /// Scores `lists` (candidate positions per sample).
    ///
    /// # Errors
    /// Metric or model errors.
    pub fn evaluate(&self, name: &str, lists: Vec<Vec<usize>>) -> Result<MethodResult> {
        self.evaluate_scored(name, lists, None)
    }

    /// [`EvalContext::evaluate`] plus the method's candidate `scores` (one vector per sample),
    /// which give the AUC among logged items.
    ///
    /// # Errors
    /// Metric or model errors.
    pub fn evaluate_scored(
        &self,
        name: &str,
        lists: Vec<Vec<usize>>,
        scores: Option<Vec<Vec<f32>>>,
    ) -> Result<MethodResult> {
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
                    if let Some((u, items)) = self.world_ids(s, list) {
                        v.push(w.expected_clicks(u, &items));
                    }
                }
                summary_of(&v)?
            }
            None => None,
        };
        let (logged_auc, logged_ndcg) = logged_views(self.samples, scores.as_deref())?;
        Ok(MethodResult {
            name: name.into(),
            metrics,
            average_reward,
            true_reward,
            logged_auc,
            logged_ndcg,
            lists,
            scores,
        })
    }

    /// The policy's lists in `dir` (greedy, or the best beam when [`EvalContext::beam`] > 1),
    /// scored; its candidate scores are the log-probabilities of generating each candidate
    /// first.
    ///
    /// # Errors
    /// Missing policy, decoding errors.
    pub fn evaluate_policy(&self, name: &str, dir: &Path) -> Result<MethodResult> {
        let (policy, _) = Policy::load(dir, &self.device)?;
        let lists = policy_lists(&policy, &self.requests, self.decoder()?, &self.device)?;
        let scores = first_item_logprobs(&policy, &self.requests, &self.device)?;
        self.evaluate_scored(name, lists, Some(scores))
    }

    /// The rows that learn nothing: MF order (the initial ranker) and the reference rules
    /// (retriever reversed, pool novelty, popularity), which show how separable the pools are
    /// by construction; and, returned separately because tables put them last, the oracle
    /// (positives first) and, on the synthetic world, [`TOP_APPEAL`] (candidates by true
    /// relevance) and [`BEST_LIST`] (the search of
    /// [`glorank_data::SyntheticWorld::best_list`] with the true click model).
    ///
    /// # Errors
    /// Metric errors.
    pub fn reference_rows(&self) -> Result<(Vec<MethodResult>, Vec<MethodResult>)> {
        let l = self.ds.config.slate_len;
        let ds = self.ds;
        // Each rule ranks by a score per candidate; the same scores give its logged AUC.
        let by_score = |name: &str, score: &dyn Fn(&RerankSample) -> Vec<f32>| {
            let scores: Vec<Vec<f32>> = self.samples.iter().map(score).collect();
            let lists = scores.iter().map(|s| mf_order(s, l)).collect();
            self.evaluate_scored(name, lists, Some(scores))
        };
        let novelty = match ds.train_reader()? {
            None => Exposures::new(&ds.train),
            Some(reader) => {
                // Training requests on disk: one pass, counting only the scored pairs.
                let keep: std::collections::HashSet<(u32, u32)> = self
                    .samples
                    .iter()
                    .flat_map(|s| s.candidates.iter().map(move |&i| (s.user, i)))
                    .collect();
                let mut e = Exposures::default();
                reader.for_each(|_, r| {
                    e.add(&r.sample, Some(&keep));
                    Ok(())
                })?;
                e.sorted()
            }
        };
        let mut rows = Vec::new();
        if ds.log.is_some() {
            // The list the logging system showed, in display order, then the rest.
            rows.push(by_score(LOGGED_ORDER, &|s| {
                let mut score = vec![-1.0; s.candidates.len()];
                for (k, &p) in s.logged.iter().enumerate() {
                    score[usize::from(p)] = (s.logged.len() - k) as f32;
                }
                score
            })?);
        }
        if ds.has_retriever_scores() {
            let name = if ds.log.is_some() {
                RETRIEVER_ORDER
            } else {
                "MF order"
            };
            rows.push(by_score(name, &|s| ds.retriever_scores(s))?);
            rows.push(by_score("retriever reversed", &|s| {
                ds.retriever_scores(s).iter().map(|x| -x).collect()
            })?);
        }
        // Fewest non-clicked showings first: `pool_novelty`'s order as a score.
        rows.push(by_score("pool novelty", &|s| {
            novelty.totals(s).iter().map(|&c| -(c as f32)).collect()
        })?);
        rows.push(by_score("popularity", &|s| {
            s.candidates
                .iter()
                .map(|&i| ds.item_train_counts[i as usize] as f32)
                .collect()
        })?);
        if !ds.held_out.is_empty() {
            // The held-out protocol's leak check: if being new told anything, held-out
            // items first would beat random lists.
            rows.push(by_score(RANDOM, &random_scores)?);
            rows.push(by_score(COLD_FIRST, &|s| {
                random_scores(s)
                    .into_iter()
                    .zip(&s.candidates)
                    .map(|(r, i)| r + f32::from(u8::from(ds.is_held_out(*i))))
                    .collect()
            })?);
        }
        let mut last = vec![
            self.evaluate(
                "oracle",
                self.samples
                    .iter()
                    .map(|s| oracle(&s.click_relevance(), l))
                    .collect(),
            )?,
        ];
        if let (Some(w), Some(pools)) = (self.world.as_ref(), self.world_pools()) {
            // Candidates by true relevance logit, and the search with the true click model.
            let scores: Vec<Vec<f32>> = pools
                .iter()
                .map(|(user, pool)| {
                    pool.iter()
                        .map(|&i| w.relevance_logit(*user, i) as f32)
                        .collect()
                })
                .collect();
            let lists = scores.iter().map(|s| mf_order(s, l)).collect();
            last.push(self.evaluate_scored(TOP_APPEAL, lists, Some(scores))?);
            let best = pools
                .par_iter()
                .map(|(user, pool)| w.best_list(*user, pool, l))
                .collect();
            last.push(self.evaluate(BEST_LIST, best)?);
        }
        Ok((rows, last))
    }

    /// Per sample, the synthetic world's user index and the world item index of each
    /// candidate (None without a synthetic world, or when an id is not the world's).
    fn world_pools(&self) -> Option<Vec<(usize, Vec<usize>)>> {
        self.world.as_ref()?;
        self.samples
            .iter()
            .map(|s| {
                let all: Vec<usize> = (0..s.candidates.len()).collect();
                self.world_ids(s, &all)
            })
            .collect()
    }

    /// The synthetic world's user index of `s` and the world item index of its candidates at
    /// `positions` (None when an id is not the world's).
    fn world_ids(&self, s: &RerankSample, positions: &[usize]) -> Option<(usize, Vec<usize>)> {
        use glorank_data::SyntheticWorld as W;
        let user = W::user_index(&self.ds.user_ids[s.user as usize])?;
        let items = positions
            .iter()
            .map(|&p| W::item_index(&self.ds.item_ids[s.candidates[p] as usize]))
            .collect::<Option<Vec<usize>>>()?;
        Some((user, items))
    }

    /// Trains and scores PRM, Seq2Slate and DLCM; returns the rows and the training seconds.
    ///
    /// # Errors
    /// Training or metric errors.
    pub fn baselines(
        &self,
        (config, inputs): (&BaselineConfig, &ModelInputs),
        autodiff: &Device,
    ) -> Result<Vec<(MethodResult, f64)>> {
        let data = BaselineData::new(self.ds, inputs);
        let mut rows = Vec::new();
        for kind in [Baseline::Prm, Baseline::Seq2Slate, Baseline::Dlcm] {
            let t0 = std::time::Instant::now();
            let (model, _) = fit(kind, &data, config, (autodiff, &self.device))?;
            let secs = t0.elapsed().as_secs_f64();
            let lists = model.rank(&data, self.samples, self.ds.config.slate_len, &self.device)?;
            let scores = model.scores(&data, self.samples, &self.device)?;
            rows.push((
                self.evaluate_scored(kind.name(), lists, Some(scores))?,
                secs,
            ));
        }
        Ok(rows)
    }
}

/// `samples` with every candidate pool re-ordered by a seeded permutation (labels, logged
/// positions and everything else follow their items). A model that treats the pool as a set
/// scores the same lists; a local-index model sees different inputs at each position.
pub(crate) fn shuffle_candidates(samples: &[RerankSample], seed: u64) -> Vec<RerankSample> {
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

#[cfg(test)]
mod tests {
    //! The evaluation's parts on small synthetic worlds: the AUC among logged items, the
    //! cold-start slice, the held-out view and its reference rows, the shuffled pools.

    use super::*;
    use crate::evaluation::slices::{cold_slice, held_out_view};
    use crate::testing::{held_out_world, small_world};

    #[test]
    fn logged_auc_reads_only_the_logged_items() {
        let ds = small_world(60, 80, 5);
        let mixed: Vec<_> = ds
            .test
            .iter()
            .filter(|s| {
                let clicks = s
                    .logged
                    .iter()
                    .filter(|&&p| s.labels[p as usize].click())
                    .count();
                clicks > 0 && clicks < s.logged.len()
            })
            .cloned()
            .collect();
        assert!(!mixed.is_empty());
        // Clicks scored 1, non-clicked logged items 0, retrieved candidates far above both:
        // the retrieved ones play no part, so the AUC is exactly 1; reversed, exactly 0.
        let score = |sign: f32| -> Vec<Vec<f32>> {
            mixed
                .iter()
                .map(|s| {
                    let mut v = vec![100.0; s.candidates.len()];
                    for &p in &s.logged {
                        v[p as usize] = sign * f32::from(u8::from(s.labels[p as usize].click()));
                    }
                    v
                })
                .collect()
        };
        let up = logged_auc(&mixed, &score(1.0)).unwrap().unwrap();
        assert_eq!((up.n, up.mean), (mixed.len(), 1.0));
        // Logged items scored by their grade are in the ideal order for NDCG, whatever the
        // retrieved candidates score; reversed, below the ideal on every request.
        let graded = |sign: f32| -> Vec<Vec<f32>> {
            mixed
                .iter()
                .map(|s| {
                    let mut v = vec![100.0; s.candidates.len()];
                    for &p in &s.logged {
                        v[p as usize] = sign * f32::from(s.labels[p as usize].grade());
                    }
                    v
                })
                .collect()
        };
        let best = logged_ndcg(&mixed, &graded(1.0)).unwrap().unwrap();
        assert_eq!((best.n, best.mean), (mixed.len(), 1.0));
        let worst = logged_ndcg(&mixed, &graded(-1.0)).unwrap().unwrap();
        assert!(worst.mean < 1.0 && worst.ci_high < 1.0, "{worst:?}");
        let down = logged_auc(&mixed, &score(-1.0)).unwrap().unwrap();
        assert_eq!(down.mean, 0.0);
        // Constant scores: every pair ties, AUC 1/2.
        let flat: Vec<Vec<f32>> = mixed
            .iter()
            .map(|s| vec![0.0; s.candidates.len()])
            .collect();
        assert_eq!(logged_auc(&mixed, &flat).unwrap().unwrap().mean, 0.5);
    }

    #[test]
    fn cold_slice_keeps_requests_with_rare_candidates() {
        let mut ds = small_world(60, 80, 5);
        // Pretend item of the first test request's first candidate was never trained on.
        let cold_item = ds.test[0].candidates[0] as usize;
        ds.item_train_counts[cold_item] = 0;
        let lists: Vec<Vec<usize>> = ds.test.iter().map(|_| (0..6).collect()).collect();
        let rel: Vec<Vec<f64>> = ds.test.iter().map(|s| s.click_relevance()).collect();
        let row = MethodResult {
            name: "first six".into(),
            metrics: glorank_train::list_metrics(&lists, &rel, 6).unwrap(),
            average_reward: None,
            true_reward: None,
            logged_auc: None,
            logged_ndcg: None,
            lists,
            scores: Some(
                ds.test
                    .iter()
                    .map(|s| s.click_relevance().iter().map(|&c| c as f32).collect())
                    .collect(),
            ),
        };
        let (n, rows) = cold_slice(&ds, &ds.test, std::slice::from_ref(&row), 1)
            .unwrap()
            .unwrap();
        let expected: Vec<usize> = (0..ds.test.len())
            .filter(|&k| {
                ds.test[k]
                    .candidates
                    .iter()
                    .any(|&i| i as usize == cold_item)
            })
            .collect();
        assert_eq!(n, expected.len());
        assert!(n >= 1 && rows[0].lists.len() == n);
        let sub: Vec<Vec<f64>> = expected.iter().map(|&k| rel[k].clone()).collect();
        let m = glorank_train::list_metrics(&rows[0].lists, &sub, 6).unwrap();
        assert_eq!(m.precision.mean, rows[0].metrics.precision.mean);
        // The slice keeps each request's scores: clicks scored above everything else give a
        // logged AUC of exactly 1 wherever it is defined.
        assert_eq!(rows[0].scores.as_ref().map(Vec::len), Some(n));
        if let Some(auc) = &rows[0].logged_auc {
            assert_eq!(auc.mean, 1.0);
        }
    }

    #[test]
    fn held_out_items_get_reference_rows_and_a_cold_warm_split() {
        let ds = held_out_world();
        assert_eq!(ds.held_out.len(), 15);
        let codes = (0..ds.num_items() as u32)
            .map(|i| vec![i % 8, i / 8 % 8])
            .collect();
        let (ids, _) = SemanticIds::from_codes(codes, &[8, 8], 4).unwrap();
        let ctx = EvalContext::new(&ds, &ids, &ds.test, None, &Device::flex()).unwrap();
        let (mut rows, last) = ctx.reference_rows().unwrap();
        let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap();
        // "cold first" puts every held-out candidate ahead of every warm one, and otherwise
        // keeps the random row's order.
        for (k, s) in ds.test.iter().enumerate() {
            let cold: Vec<usize> = (0..s.candidates.len())
                .filter(|&p| ds.is_held_out(s.candidates[p]))
                .collect();
            let list = &row(COLD_FIRST).lists[k];
            let head = cold.len().min(list.len());
            assert!(list[..head].iter().all(|p| cold.contains(p)), "request {k}");
            if cold.is_empty() {
                assert_eq!(list, &row(RANDOM).lists[k]);
            }
        }
        rows.extend(last);
        let v = held_out_view(&ds, &ds.test, &rows).unwrap().unwrap();
        // The split is by the logged slate; the pool-wide count is at least the cold side.
        let cold_logged = ds
            .test
            .iter()
            .filter(|s| {
                s.logged
                    .iter()
                    .any(|&p| ds.is_held_out(s.candidates[p as usize]))
            })
            .count();
        assert!(v.any_cold_requests >= cold_logged);
        // The oracle's lists hold every clicked logged item, held-out or warm.
        let m = |name: &str| v.methods.iter().find(|m| m.name == name).unwrap();
        let (cold, warm) = (&m("oracle").found_held_out, &m("oracle").found_warm);
        assert_eq!((cold.unwrap().mean, warm.unwrap().mean), (1.0, 1.0));
        // Popularity gives every held-out item the same score (no training interactions), so it
        // cannot tell a good one from a bad one: AUC exactly 1/2 among held-out candidates.
        let (cold, warm) = (&m("popularity").auc_held_out, &m("popularity").auc_warm);
        assert_eq!(cold.unwrap().mean, 0.5);
        assert!((0.0..=1.0).contains(&warm.unwrap().mean));
        assert_eq!(v.items, 15);
        assert!(v.logged_cold_share > 0.0 && v.retrieved_cold_share > 0.0);
        let (n_cold, cold_rows) = v.cold.unwrap();
        assert_eq!(n_cold, cold_logged);
        let (n_warm, warm_rows) = v.warm.unwrap();
        assert_eq!(n_cold + n_warm, ds.test.len());
        assert_eq!(cold_rows.len(), rows.len());
        assert_eq!(warm_rows[0].lists.len(), n_warm);
        // Without held-out items there is no view and no extra rows.
        let plain = small_world(60, 80, 5);
        assert!(held_out_view(&plain, &plain.test, &rows).unwrap().is_none());
    }

    #[test]
    fn shuffled_pools_keep_items_labels_and_logged_positions_together() {
        let ds = small_world(40, 60, 4);
        let shuffled = shuffle_candidates(&ds.test, 7);
        let mut moved = 0;
        for (a, b) in ds.test.iter().zip(&shuffled) {
            let mut x = a.candidates.clone();
            let mut y = b.candidates.clone();
            x.sort_unstable();
            y.sort_unstable();
            assert_eq!(x, y);
            for (p, &item) in b.candidates.iter().enumerate() {
                let q = a.candidates.iter().position(|&i| i == item).unwrap();
                assert_eq!(a.labels[q], b.labels[p]);
            }
            for (&pa, &pb) in a.logged.iter().zip(&b.logged) {
                assert_eq!(a.candidates[pa as usize], b.candidates[pb as usize]);
            }
            moved += usize::from(a.candidates != b.candidates);
        }
        assert!(moved * 2 > ds.test.len(), "most pools change order");
        assert_eq!(shuffle_candidates(&ds.test, 7), shuffled);
    }
}
