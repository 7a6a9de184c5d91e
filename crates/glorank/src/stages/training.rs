//! The training stages: tokenizer, reward models, SFT and RL, each reading what it needs
//! from a [`RunDir`], writing its artifacts there atomically and reusing them when they exist.

use crate::{Error, Result, RunDir};
use burn::tensor::Device;
use glorank_data::{PreparedDataset, RerankSample};
use glorank_policy::{Policy, PolicyConfig};
use glorank_reward::{RewardConfig, RewardRole, UserResponseModel};
use glorank_tokenizer::SemanticIds;
use glorank_train::{
    Demonstrations, EvaluatorReward, LabelReward, ListReward, RequestBuilder, RewardCheckpoint,
    RewardData, RewardSource, RewardTrainConfig, RlData, SftData, TrainObserver, TrainingConfig,
    best_of_k_demonstrations, reward_examples, train_reward_model_in, train_rl, train_sft,
    write_dir_atomic,
};
use std::path::Path;

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
pub(crate) fn clicks(samples: &[RerankSample]) -> Vec<Vec<f64>> {
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
/// logged slate, its own seed) into [`RunDir::reward_model`], with a per-epoch checkpoint in
/// [`RunDir::reward_checkpoint`]. With `resume` a finished model is reused and an
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
    run: &RunDir,
    resume: bool,
    (autodiff, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<UserResponseModel> {
    let name = if role == RewardRole::Evaluator {
        "evaluator"
    } else {
        "simulator"
    };
    let dir = run.reward_model(role);
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
    run.create()?;
    let ckpt = run.reward_checkpoint(role);
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
    glorank_train::JsonlLog::create(&run.reward_log(role), &records)?;
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
    let mut config = training
        .policy
        .apply(RequestBuilder::new(ds, ids)?.policy_config());
    if training.policy.item_content {
        config.item_content = Some(item_content(ds, ids)?);
    }
    Ok(config)
}

/// The content vectors of `ds`'s items (genres, year, 16 title-word buckets, as the
/// baselines read them) keyed by their semantic IDs, for [`PolicyConfig::item_content`].
///
/// # Errors
/// A dataset without item features.
fn item_content(ds: &PreparedDataset, ids: &SemanticIds) -> Result<glorank_policy::ItemContent> {
    if ds.item_features.is_none() {
        return Err(Error::InvalidConfig {
            field: "policy.item_content".into(),
            message: format!("dataset `{}` has no item features", ds.name),
        });
    }
    let v = glorank_data::item_vectors(ds, &glorank_baselines::CONTENT_VECTORS)?;
    Ok(glorank_policy::ItemContent {
        dim: v.dim,
        tuples: (0..ds.num_items())
            .map(|i| ids.tuple(i).map(<[u32]>::to_vec).unwrap_or_default())
            .collect(),
        vectors: v.data,
    })
}

/// Supervised pre-training into [`RunDir::sft`] (policy, checkpoints, log). Best-of-K
/// demonstrations read the evaluator of `evaluator_run` (the run itself, or the main run for
/// the LAS ablation). With `resume` a finished run is reused.
///
/// # Errors
/// Data, model and file errors.
#[allow(clippy::too_many_arguments)]
pub fn train_sft_stage(
    ds: &PreparedDataset,
    ids: &SemanticIds,
    training: &TrainingConfig,
    policy_config: &PolicyConfig,
    (run, evaluator_run): (&RunDir, &RunDir),
    resume: bool,
    (autodiff, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<glorank_train::SftOutcome> {
    let builder = RequestBuilder::new(ds, ids)?.with_exposures(policy_config.use_exposures);
    let train = builder.requests(&ds.train);
    let valid = builder.requests(&ds.valid);
    let logged: Vec<Vec<usize>> = match training.sft.demonstrations {
        Demonstrations::Labels => ds.train.iter().map(|s| ds.label_demonstration(s)).collect(),
        _ => ds.train.iter().map(|s| ds.demonstration(s)).collect(),
    };
    let demos = match training.sft.demonstrations {
        Demonstrations::BestOfK { k } => {
            let eval = load_reward(&evaluator_run.reward_model(RewardRole::Evaluator), plain)?;
            best_of_k_demonstrations(&train, &logged, &eval, k, training.sft.seed, plain)?
        }
        _ => logged,
    };
    let train_labels = if training.sft.label_loss > 0.0 {
        clicks(&ds.train)
    } else {
        Vec::new()
    };
    Ok(train_sft(
        policy_config,
        SftData {
            train: &train,
            demonstrations: &demos,
            train_labels: &train_labels,
            valid: &valid,
            valid_relevance: &clicks(&ds.valid),
        },
        &training.sft,
        &run.sft(),
        resume,
        (autodiff, plain),
        observer,
    )?)
}

/// Group-relative RL from [`RunDir::policy_sft`] into [`RunDir::rl`] (policy, checkpoints,
/// log), against the run's evaluator or the labels.
///
/// # Errors
/// Data, model and file errors; [`Error::Missing`] without an SFT policy (or an evaluator
/// when the reward is the evaluator).
pub fn train_rl_stage(
    ds: &PreparedDataset,
    ids: &SemanticIds,
    training: &TrainingConfig,
    run: &RunDir,
    resume: bool,
    (autodiff, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<glorank_train::RlOutcome> {
    let sft_dir = run.policy_sft();
    if !sft_dir.join(glorank_policy::CONFIG_FILE).exists() {
        return Err(Error::Missing {
            path: sft_dir,
            hint: "train it first (`glorank train sft`)".into(),
        });
    }
    let (initial, policy_config) = Policy::load(&sft_dir, autodiff)?;
    let (reference, _) = Policy::load(&sft_dir, plain)?;
    let builder = RequestBuilder::new(ds, ids)?.with_exposures(policy_config.use_exposures);
    let train = builder.requests(&ds.train);
    let valid = builder.requests(&ds.valid);
    let train_rel = clicks(&ds.train);
    let evaluator = match load_reward(&run.reward_model(RewardRole::Evaluator), plain) {
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
        &run.rl(),
        resume,
        (autodiff, plain),
        observer,
    )?)
}
