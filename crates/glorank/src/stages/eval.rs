//! Evaluation: scoring lists of every method on a split, the cold-start slices, and the
//! candidate-order robustness check.

use super::training::clicks;
use crate::Result;
use burn::tensor::Device;
use glorank_baselines::{Baseline, BaselineConfig, Features, PoolNovelty, fit, mf_order, oracle};
use glorank_data::{PreparedDataset, RerankSample};
use glorank_metrics::{MetricsSummary, Summary};
use glorank_policy::{Policy, Request, first_item_logprobs};
use glorank_reward::UserResponseModel;
use glorank_tokenizer::SemanticIds;
use glorank_train::{RequestBuilder, average_reward, list_metrics, policy_lists};
use glorank_trie::{DecodeStrategy, Decoder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Name of the synthetic world's reference row: the best list a search with the true click
/// model finds ([`glorank_data::SyntheticWorld::best_list`]).
pub const BEST_LIST: &str = "best list (true model)";

/// Name of the synthetic world's other reference row: the candidates by their true relevance
/// logit `s(u, i)` ([`glorank_data::SyntheticWorld::relevance_logit`]), the list of a
/// perfect estimate of each item's appeal that ignores position and redundancy.
pub const TOP_APPEAL: &str = "top appeal (true model)";

/// Name of the reference row that ranks candidates in a seeded random order.
pub const RANDOM: &str = "random";

/// Name of the held-out protocol's reference row: held-out (cold) candidates first, each
/// group in the seeded random order of [`RANDOM`]. Near [`RANDOM`] when being new is no tell.
pub const COLD_FIRST: &str = "cold first";

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
    /// AUC of clicked over non-clicked *logged* items under the method's candidate scores,
    /// over the requests whose logged slate has both kinds: real feedback, untouched by how
    /// the retrieved candidates were chosen (see [`logged_auc`]).
    #[serde(default)]
    pub logged_auc: Option<Summary>,
    /// The lists (candidate positions), one per evaluated request.
    #[serde(skip)]
    pub lists: Vec<Vec<usize>>,
    /// The method's score of every candidate, one vector per request (higher: better;
    /// generative policies: the log-probability of generating it first), when it has them.
    #[serde(skip)]
    pub scores: Option<Vec<Vec<f32>>>,
}

/// The artefact-free view: per request whose logged slate holds both clicked and
/// non-clicked items, the AUC of the clicked over the non-clicked logged items under
/// `scores` (candidates outside the logged slate play no part); their mean with its 95%
/// interval, or `None` when no request qualifies.
///
/// # Errors
/// Metric errors (a NaN score).
pub fn logged_auc(samples: &[RerankSample], scores: &[Vec<f32>]) -> Result<Option<Summary>> {
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
    Ok((!v.is_empty())
        .then(|| Summary::from_values(&v))
        .transpose()?)
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
                (!v.is_empty())
                    .then(|| Summary::from_values(&v))
                    .transpose()?
            }
            None => None,
        };
        let logged = scores
            .as_ref()
            .map(|sc| logged_auc(self.samples, sc))
            .transpose()?
            .flatten();
        Ok(MethodResult {
            name: name.into(),
            metrics,
            average_reward,
            true_reward,
            logged_auc: logged,
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
        let novelty = PoolNovelty::new(&ds.train);
        let mut rows = vec![
            by_score("MF order", &|s| ds.retriever_scores(s))?,
            by_score("retriever reversed", &|s| {
                ds.retriever_scores(s).iter().map(|x| -x).collect()
            })?,
            by_score("pool novelty", &|s| novelty.scores(s))?,
            by_score("popularity", &|s| {
                s.candidates
                    .iter()
                    .map(|&i| ds.item_train_counts[i as usize] as f32)
                    .collect()
            })?,
        ];
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
        config: &BaselineConfig,
        autodiff: &Device,
    ) -> Result<Vec<(MethodResult, f64)>> {
        let features = Features::for_config(self.ds, config);
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
            let scores = model.scores(self.ds, &features, self.samples, &self.device)?;
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
pub fn held_out_view(
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
    let summary = |v: &[f64]| (!v.is_empty()).then(|| Summary::from_values(v)).transpose();
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
            found_held_out: summary(&found[0])?,
            found_warm: summary(&found[1])?,
            auc_held_out: summary(&auc[0])?,
            auc_warm: summary(&auc[1])?,
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
        out.push(MethodResult {
            name: r.name.clone(),
            metrics: list_metrics(&lists, &rel, ds.config.slate_len)?,
            average_reward: None,
            true_reward: None,
            logged_auc: scores
                .as_ref()
                .map(|sc| logged_auc(&kept, sc))
                .transpose()?
                .flatten(),
            lists,
            scores,
        });
    }
    Ok(Some((keep.len(), out)))
}
