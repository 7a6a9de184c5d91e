//! The pipeline's stages as library functions: each reads what it needs from a run
//! directory, writes its artifacts there atomically, and reuses them when they exist.

use crate::{Error, Result};
use burn::tensor::Device;
use glorank_baselines::{Baseline, BaselineConfig, Features, fit, mf_order, oracle};
use glorank_data::{PreparedDataset, RerankSample};
use glorank_metrics::{MetricsSummary, Summary};
use glorank_policy::{Policy, PolicyConfig, Request};
use glorank_reward::{RewardConfig, RewardRole, UserResponseModel};
use glorank_tokenizer::SemanticIds;
use glorank_train::{
    Demonstrations, EvaluatorReward, LabelReward, ListReward, RL_POLICY_DIR, RequestBuilder,
    RewardCheckpoint, RewardData, RewardSource, RewardTrainConfig, RlData, SFT_POLICY_DIR, SftData,
    TrainObserver, TrainingConfig, average_reward, best_of_k_demonstrations, greedy_lists,
    list_metrics, reward_examples, train_reward_model_in, train_rl, train_sft, write_dir_atomic,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Directory of the evaluator inside a run directory.
pub const EVALUATOR_DIR: &str = "evaluator";
/// Directory of the simulator inside a run directory.
pub const SIMULATOR_DIR: &str = "simulator";

/// Learns semantic IDs for the items of `ds` as `config` says and saves the tokenizer, the
/// table and its statistics into `out` (`glorank tokenize` and the pipeline's tokenizer
/// stage are this function).
///
/// # Errors
/// Vector, configuration, fitting and file errors.
pub fn tokenize(
    ds: &PreparedDataset,
    config: &crate::TokenizerConfig,
    out: &Path,
) -> Result<(Box<dyn glorank_tokenizer::ItemTokenizer>, SemanticIds)> {
    let vectors = glorank_data::item_vectors(ds, &config.vector_source(ds))?;
    let mut tokenizer = config.tokenizer()?;
    let ids = tokenizer.fit(&vectors.data, vectors.dim)?;
    glorank_tokenizer::save_artifacts(tokenizer.as_ref(), &ids, out)?;
    Ok((tokenizer, ids))
}

/// Binary click relevance of each sample's candidates.
pub fn clicks(samples: &[RerankSample]) -> Vec<Vec<f64>> {
    samples.iter().map(RerankSample::click_relevance).collect()
}

/// Loads a reward model saved by [`train_reward`].
///
/// # Errors
/// [`Error::Missing`] naming the directory and the command that creates it.
pub fn load_reward(dir: &Path, device: &Device) -> Result<UserResponseModel> {
    if !dir.join(glorank_reward::WEIGHTS_FILE).exists() {
        return Err(Error::Missing {
            path: dir.to_path_buf(),
            hint: "train it first (`glorank train evaluator|simulator`)".into(),
        });
    }
    Ok(UserResponseModel::load(dir, device)?.0)
}

/// Trains the evaluator (`role = Evaluator`: training slates only) or the simulator (every
/// logged slate, its own seed) into `out/evaluator` or `out/simulator`, with a per-epoch
/// checkpoint in `out/{name}_checkpoint`. With `resume` a finished model is reused and an
/// interrupted one continued.
///
/// # Errors
/// Data, model and file errors.
#[allow(clippy::too_many_arguments)]
pub fn train_reward(
    ds: &PreparedDataset,
    ids: &SemanticIds,
    role: RewardRole,
    cfg: &RewardTrainConfig,
    out: &Path,
    resume: bool,
    (autodiff, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<UserResponseModel> {
    let name = if role == RewardRole::Evaluator {
        EVALUATOR_DIR
    } else {
        SIMULATOR_DIR
    };
    let dir = out.join(name);
    if resume && dir.join(glorank_reward::WEIGHTS_FILE).exists() {
        return load_reward(&dir, plain);
    }
    let builder = RequestBuilder::new(ds, ids)?;
    let train_samples: Vec<RerankSample> = if role == RewardRole::Evaluator {
        ds.train.clone()
    } else {
        ds.train
            .iter()
            .chain(&ds.valid)
            .chain(&ds.test)
            .cloned()
            .collect()
    };
    let train = reward_examples(&builder, &train_samples, cfg.pool_lists, cfg.seed);
    let valid = reward_examples(&builder, &ds.valid, cfg.pool_lists, cfg.seed ^ 1);
    let c = &ds.config;
    let rcfg = cfg.model_config(
        RewardConfig::for_role(role, ids.vocab_sizes())
            .with_shape(c.slate_len, c.history_len)
            .with_user_fields(builder.user_field_sizes())
            .with_seed(cfg.seed),
    );
    let model = UserResponseModel::new(&rcfg, autodiff)?;
    let ckpt = out.join(format!("{name}_checkpoint"));
    let (model, log, _) = train_reward_model_in(
        model,
        RewardData {
            train: &train,
            valid: &valid,
        },
        cfg,
        Some(RewardCheckpoint {
            dir: &ckpt,
            config: &rcfg,
            resume,
        }),
        (autodiff, plain),
        observer,
    )?;
    let model = model.ok_or(Error::Interrupted)?;
    let records: Vec<serde_json::Value> = log
        .iter()
        .map(|e| {
            serde_json::json!({"stage": name, "epoch": e.epoch, "train_loss": e.train_loss, "valid_click_auc": e.valid_auc})
        })
        .collect();
    glorank_train::JsonlLog::create(&out.join(format!("{name}_log.jsonl")), &records)?;
    write_dir_atomic(&dir, |d| {
        model
            .save(&rcfg, d)
            .map_err(glorank_train::TrainError::from)
    })?;
    Ok(model)
}

/// The policy configuration of a run: data-derived shapes plus the `[policy]` options.
///
/// # Errors
/// A table that does not match the dataset.
pub fn policy_config(
    ds: &PreparedDataset,
    ids: &SemanticIds,
    training: &TrainingConfig,
) -> Result<PolicyConfig> {
    Ok(training
        .policy
        .apply(RequestBuilder::new(ds, ids)?.policy_config()))
}

/// Supervised pre-training into `out/policy_sft` (checkpoints in `out/sft_checkpoint`).
/// Best-of-K demonstrations need `out/evaluator`. With `resume` a finished run is reused.
///
/// # Errors
/// Data, model and file errors.
#[allow(clippy::too_many_arguments)]
pub fn train_sft_stage(
    ds: &PreparedDataset,
    ids: &SemanticIds,
    training: &TrainingConfig,
    policy_config: &PolicyConfig,
    out: &Path,
    resume: bool,
    (autodiff, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<glorank_train::SftOutcome> {
    let builder = RequestBuilder::new(ds, ids)?;
    let train = builder.requests(&ds.train);
    let valid = builder.requests(&ds.valid);
    let logged: Vec<Vec<usize>> = ds.train.iter().map(|s| ds.demonstration(s)).collect();
    let demos = match training.sft.demonstrations {
        Demonstrations::BestOfK { k } => {
            let eval = load_reward(&out.join(EVALUATOR_DIR), plain)?;
            best_of_k_demonstrations(&train, &logged, &eval, k, training.sft.seed, plain)?
        }
        _ => logged,
    };
    Ok(train_sft(
        policy_config,
        SftData {
            train: &train,
            demonstrations: &demos,
            valid: &valid,
            valid_relevance: &clicks(&ds.valid),
        },
        &training.sft,
        out,
        resume,
        (autodiff, plain),
        observer,
    )?)
}

/// Group-relative RL from `out/policy_sft` into `out/policy_rl` (checkpoints in
/// `out/rl_checkpoint`), against the evaluator in `out/evaluator` or the labels.
///
/// # Errors
/// Data, model and file errors; [`Error::Missing`] without an SFT policy (or an evaluator
/// when the reward is the evaluator).
pub fn train_rl_stage(
    ds: &PreparedDataset,
    ids: &SemanticIds,
    training: &TrainingConfig,
    out: &Path,
    resume: bool,
    (autodiff, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<glorank_train::RlOutcome> {
    let sft_dir = out.join(SFT_POLICY_DIR);
    if !sft_dir.join("policy.json").exists() {
        return Err(Error::Missing {
            path: sft_dir,
            hint: "train it first (`glorank train sft`)".into(),
        });
    }
    let (initial, policy_config) = Policy::load(&sft_dir, autodiff)?;
    let (reference, _) = Policy::load(&sft_dir, plain)?;
    let builder = RequestBuilder::new(ds, ids)?;
    let train = builder.requests(&ds.train);
    let valid = builder.requests(&ds.valid);
    let train_rel = clicks(&ds.train);
    let evaluator = match load_reward(&out.join(EVALUATOR_DIR), plain) {
        Ok(m) => Some(m),
        Err(e) if training.rl.reward == RewardSource::Evaluator => return Err(e),
        Err(_) => None,
    };
    let eval_reward = evaluator.as_ref().map(|m| EvaluatorReward::new(m, plain));
    let labels = LabelReward::new(&train_rel);
    let reward: &dyn ListReward = match (&training.rl.reward, &eval_reward) {
        (RewardSource::Evaluator, Some(r)) => r,
        _ => &labels,
    };
    Ok(train_rl(
        &policy_config,
        initial,
        &reference,
        RlData {
            train: &train,
            reward,
            valid: &valid,
            valid_relevance: &clicks(&ds.valid),
            valid_reward: eval_reward.as_ref().map(|r| r as &dyn ListReward),
        },
        &training.rl,
        out,
        resume,
        (autodiff, plain),
        observer,
    )?)
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

    /// MF order and the oracle.
    ///
    /// # Errors
    /// Metric errors.
    pub fn reference_rows(&self) -> Result<(MethodResult, MethodResult)> {
        let l = self.ds.config.slate_len;
        let mf = self
            .samples
            .iter()
            .map(|s| mf_order(&self.ds.retriever_scores(s), l))
            .collect();
        let best = self
            .samples
            .iter()
            .map(|s| oracle(&s.click_relevance(), l))
            .collect();
        Ok((
            self.evaluate("MF order", mf)?,
            self.evaluate("oracle", best)?,
        ))
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

/// The rows of the comparison table, in the order the pipeline writes them (`metrics.json`
/// keys; `glorank aggregate` prints known methods in this order, others after them).
pub const METHOD_ORDER: [&str; 8] = [
    "MF order",
    "PRM",
    "Seq2Slate",
    "DLCM",
    "GloRank-LAS",
    "GloRank SFT",
    "GloRank SFT+RL",
    "oracle",
];

/// Key prefix of the cold-start slices in `metrics.json` (`cold_start_lt_1`, `cold_start_lt_5`).
pub const COLD_SLICE_KEY_PREFIX: &str = "cold_start_lt_";

/// Prints rows as a table: mean ± CI half-width per metric.
pub fn table(rows: &[MethodResult], cutoff: usize) -> String {
    let with_true = rows.iter().any(|r| r.true_reward.is_some());
    let mut out = format!(
        "{:<16} {:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
        "method",
        format!("Precision@{cutoff}"),
        format!("Recall@{cutoff}"),
        format!("F1@{cutoff}"),
        format!("NDCG@{cutoff}"),
        format!("MAP@{cutoff}"),
        "Avg Reward"
    );
    if with_true {
        out.push_str(&format!(" {:>15}", "true clicks"));
    }
    out.push('\n');
    let f = |s: &Summary| format!("{:.4}±{:.4}", s.mean, s.half_width());
    for r in rows {
        let m = &r.metrics;
        out.push_str(&format!(
            "{:<16} {:>15} {:>15} {:>15} {:>15} {:>15} {:>15}",
            r.name,
            f(&m.precision),
            f(&m.recall),
            f(&m.f1),
            f(&m.ndcg),
            f(&m.map),
            r.average_reward.as_ref().map_or("-".into(), f)
        ));
        if with_true {
            out.push_str(&format!(
                " {:>15}",
                r.true_reward.as_ref().map_or("-".into(), f)
            ));
        }
        out.push('\n');
    }
    out.push_str("(mean ± half-width of the 95% confidence interval over requests)\n");
    out
}

/// The rows as JSON: method -> metric -> {n, mean, std_err, ci_low, ci_high}.
pub fn rows_json(rows: &[MethodResult]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for r in rows {
        let mut m = serde_json::to_value(r.metrics).unwrap_or_default();
        if let Some(obj) = m.as_object_mut() {
            for (key, v) in [
                ("average_reward", r.average_reward),
                ("true_expected_clicks", r.true_reward),
            ] {
                if let Some(s) = v {
                    obj.insert(key.into(), serde_json::to_value(s).unwrap_or_default());
                }
            }
        }
        out.insert(r.name.clone(), m);
    }
    serde_json::Value::Object(out)
}

/// One JSON line per request and method: request id, method, candidate item ids, their click
/// labels and the generated list of item ids, so the metrics can be recomputed independently.
pub fn predictions_jsonl(
    ds: &PreparedDataset,
    samples: &[RerankSample],
    rows: &[MethodResult],
) -> String {
    let mut out = String::new();
    for r in rows {
        for (k, (s, list)) in samples.iter().zip(&r.lists).enumerate() {
            let cands: Vec<&str> = s
                .candidates
                .iter()
                .map(|&i| ds.item_ids[i as usize].as_str())
                .collect();
            let line = serde_json::json!({
                "request": k,
                "user": ds.user_ids[s.user as usize],
                "method": r.name,
                "candidates": cands,
                "clicks": s.click_relevance().iter().map(|&c| c as u8).collect::<Vec<_>>(),
                "list": list.iter().map(|&p| cands[p]).collect::<Vec<_>>(),
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    out
}

/// Writes `metrics.json` (every row, plus the cold-start slices of fewer than 1 and 5
/// training interactions when they are not empty) and `predictions.jsonl` into `dir`, and
/// returns the printable table (with the slices).
///
/// # Errors
/// Metric or file errors.
pub fn write_results(
    dir: &Path,
    ds: &PreparedDataset,
    samples: &[RerankSample],
    rows: &[MethodResult],
) -> Result<String> {
    let l = ds.config.slate_len;
    let mut text = table(rows, l);
    let mut metrics = rows_json(rows);
    for threshold in [1u32, 5] {
        if let Some((n, cold)) = cold_slice(ds, samples, rows, threshold)? {
            text.push_str(&format!(
                "\ncold-start slice: {n} requests with a candidate of fewer than {threshold} training interactions\n{}",
                table(&cold, l)
            ));
            if let Some(obj) = metrics.as_object_mut() {
                obj.insert(
                    format!("{COLD_SLICE_KEY_PREFIX}{threshold}"),
                    rows_json(&cold),
                );
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let json = serde_json::to_vec_pretty(&metrics).map_err(|e| Error::Format {
        path: dir.join("metrics.json"),
        message: e.to_string(),
    })?;
    glorank_data::write_atomic(&dir.join("metrics.json"), &json)?;
    glorank_data::write_atomic(
        &dir.join("predictions.jsonl"),
        predictions_jsonl(ds, samples, rows).as_bytes(),
    )?;
    Ok(text)
}

/// The policy a run directory serves: `policy_rl/`, or `policy_sft/` when there is no RL
/// policy.
///
/// # Errors
/// [`Error::Missing`] when the run has neither.
pub fn trained_policy_dir(run: &Path) -> Result<std::path::PathBuf> {
    [RL_POLICY_DIR, SFT_POLICY_DIR]
        .iter()
        .map(|d| run.join(d))
        .find(|d| d.join("policy.json").exists())
        .ok_or_else(|| Error::Missing {
            path: run.join(RL_POLICY_DIR),
            hint: "train a policy first (`glorank demo`, `glorank run` or `glorank train sft`)"
                .into(),
        })
}

/// The RL policy directory of a run.
pub fn rl_dir(out: &Path) -> std::path::PathBuf {
    out.join(RL_POLICY_DIR)
}
