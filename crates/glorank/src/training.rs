//! What the pipeline's training stages do: the tokenizer, the reward models, SFT and RL,
//! each reading what it needs from a [`RunDir`] and writing its artifacts there atomically.

use crate::{Error, Result, RunDir};
use burn::tensor::Device;
use glorank_data::{PreparedDataset, RerankSample};
use glorank_nn::ModelInputs;
use glorank_policy::{Policy, PolicyArch, PolicyConfig};
use glorank_reward::{RewardConfig, RewardRole, UserResponseModel};
use glorank_tokenizer::SemanticIds;
use glorank_train::{
    Demonstrations, EvaluatorReward, InMemoryExamples, LabelReward, ListReward, RequestBuilder,
    RewardCheckpoint, RewardData, RewardSource, RewardTrainConfig, RlConfig, RlData, SftConfig,
    SftData, StoredExamples, TrainObserver, best_of_k_demonstrations, reward_examples,
    train_reward_model_in, train_rl, train_sft, write_dir_atomic,
};
use std::path::Path;

/// Learns semantic IDs for the items of `ds` as `config` says and saves the tokenizer, the
/// table and its statistics into `out` (`glorank tokenize` and the pipeline's tokenizer
/// stage are this function).
///
/// # Errors
/// Vector, configuration, fitting and file errors.
pub(crate) fn tokenize(
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
pub(crate) fn load_reward(dir: &Path, device: &Device) -> Result<UserResponseModel> {
    if !RunDir::is_reward_model(dir) {
        return Err(Error::Missing {
            path: dir.to_path_buf(),
            hint: "train it first (`glorank train evaluator` or `glorank train simulator`)".into(),
        });
    }
    Ok(UserResponseModel::load(dir, device)?.0)
}

/// Trains the evaluator (`role = Evaluator`: training slates only) or the simulator (every
/// logged slate, its own seed) into [`RunDir::reward_model`], with a per-epoch checkpoint in
/// [`RunDir::reward_checkpoint`], from which an interrupted run continues.
///
/// # Errors
/// Data, model and file errors.
pub(crate) fn train_reward(
    (ds, ids): (&PreparedDataset, &SemanticIds),
    (role, cfg, inputs): (RewardRole, &RewardTrainConfig, &ModelInputs),
    run: &RunDir,
    (autodiff, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<UserResponseModel> {
    let name = if role == RewardRole::Evaluator {
        "evaluator"
    } else {
        "simulator"
    };
    let dir = run.reward_model(role);
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
    let seed = cfg.optim.seed;
    let train = reward_examples(&builder, &train_samples, cfg.pool_lists, seed);
    let valid = reward_examples(&builder, &ds.valid, cfg.pool_lists, seed ^ 1);
    let c = &ds.config;
    let rcfg = cfg.model_config(
        RewardConfig::for_role(role, ids.vocab_sizes())
            .with_shape(c.slate_len, c.history_len)
            .with_user_fields(builder.user_field_sizes())
            .with_seed(seed),
        inputs,
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
            resume: true,
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

/// The policy configuration of a run: data-derived shapes plus the `[policy]` architecture
/// and the `[inputs]` switches (and, with `policy.item_content`, the content table).
///
/// # Errors
/// A table that does not match the dataset; `policy.item_content` on a dataset without item
/// features.
pub(crate) fn policy_config(
    ds: &PreparedDataset,
    ids: &SemanticIds,
    (arch, inputs): (&PolicyArch, &ModelInputs),
) -> Result<PolicyConfig> {
    let config = RequestBuilder::new(ds, ids)?
        .policy_config()
        .with_arch(arch.clone())
        .with_inputs(*inputs);
    Ok(if arch.item_content {
        config.with_content(item_content(ds, ids)?)
    } else {
        config
    })
}

/// The content vectors of `ds`'s items (genres, year, 16 title-word buckets, as the
/// baselines read them) keyed by their semantic IDs, for [`PolicyConfig::content`].
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
    let v = glorank_data::item_vectors(ds, &glorank_data::CONTENT_VECTORS)?;
    Ok(glorank_policy::ItemContent {
        dim: v.dim,
        tuples: (0..ds.num_items())
            .map(|i| ids.tuple(i).map(<[u32]>::to_vec).unwrap_or_default())
            .collect(),
        vectors: v.data,
    })
}

/// Supervised pre-training into [`RunDir::sft`] (policy, checkpoints, log), continuing an
/// interrupted run from its checkpoint. Best-of-K demonstrations read the evaluator of
/// `evaluator_run` (the run itself, or the main run for the LAS ablation).
///
/// # Errors
/// Data, model and file errors.
pub(crate) fn train_sft_stage(
    (ds, ids): (&PreparedDataset, &SemanticIds),
    (sft, policy_config): (&SftConfig, &PolicyConfig),
    (run, evaluator_run): (&RunDir, &RunDir),
    (autodiff, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<glorank_train::SftOutcome> {
    let builder = RequestBuilder::new(ds, ids)?.with_exposures(policy_config.inputs.exposures);
    let valid = builder.requests(&ds.valid);
    let mut data = |train: &dyn glorank_train::SftExamples| {
        train_sft(
            policy_config,
            SftData {
                train,
                valid: &valid,
                valid_relevance: &clicks(&ds.valid),
            },
            sft,
            &run.sft(),
            true,
            (autodiff, plain),
            observer,
        )
    };
    let best_of_k = matches!(sft.demonstrations, Demonstrations::BestOfK { .. });
    if ds.train_on_disk() && best_of_k {
        return Err(Error::InvalidConfig {
            field: "sft.demonstrations".into(),
            message: "best-of-K demonstrations score every training request with the \
                              evaluator first; with log.store = \"disk\" use `logged` or \
                              `labels`"
                .into(),
        });
    }
    let labels = sft.demonstrations == Demonstrations::Labels;
    if let Some(stored) = StoredExamples::new(&builder, labels)? {
        // A dataset whose training requests are on disk: read a batch at a time.
        return Ok(data(&stored)?);
    }
    let train = builder.requests(&ds.train);
    let logged: Vec<Vec<usize>> = match sft.demonstrations {
        Demonstrations::Labels => ds.train.iter().map(|s| ds.label_demonstration(s)).collect(),
        _ => ds.train.iter().map(|s| ds.demonstration(s)).collect(),
    };
    let demos = match sft.demonstrations {
        Demonstrations::BestOfK { k } => {
            let eval = load_reward(&evaluator_run.reward_model(RewardRole::Evaluator), plain)?;
            best_of_k_demonstrations(&train, &logged, &eval, k, sft.optim.seed, plain)?
        }
        _ => logged,
    };
    let train_labels = if sft.label_loss > 0.0 {
        clicks(&ds.train)
    } else {
        Vec::new()
    };
    Ok(data(&InMemoryExamples::new(
        &train,
        &demos,
        &train_labels,
    )?)?)
}

/// Group-relative RL from [`RunDir::policy_sft`] into [`RunDir::rl`] (policy, checkpoints,
/// log), against the run's evaluator or the labels, continuing an interrupted run from its
/// checkpoint.
///
/// # Errors
/// Data, model and file errors; [`Error::Missing`] without an SFT policy (or an evaluator
/// when the reward is the evaluator).
pub(crate) fn train_rl_stage(
    (ds, ids): (&PreparedDataset, &SemanticIds),
    rl: &RlConfig,
    run: &RunDir,
    (autodiff, plain): (&Device, &Device),
    observer: &mut dyn TrainObserver,
) -> Result<glorank_train::RlOutcome> {
    let sft_dir = run.policy_sft();
    if !RunDir::is_policy(&sft_dir) {
        return Err(Error::Missing {
            path: sft_dir,
            hint: "train it first (`glorank train sft`)".into(),
        });
    }
    let (initial, policy_config) = Policy::load(&sft_dir, autodiff)?;
    let (reference, _) = Policy::load(&sft_dir, plain)?;
    let builder = RequestBuilder::new(ds, ids)?.with_exposures(policy_config.inputs.exposures);
    let train = builder.requests(&ds.train);
    let valid = builder.requests(&ds.valid);
    let train_rel = clicks(&ds.train);
    let evaluator = match load_reward(&run.reward_model(RewardRole::Evaluator), plain) {
        Ok(m) => Some(m),
        Err(e) if rl.reward == RewardSource::Evaluator => return Err(e),
        Err(_) => None,
    };
    let eval_reward = evaluator.as_ref().map(|m| EvaluatorReward::new(m, plain));
    let labels = LabelReward::new(&train_rel);
    let reward: &dyn ListReward = match (&rl.reward, &eval_reward) {
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
        rl,
        &run.rl(),
        true,
        (autodiff, plain),
        observer,
    )?)
}
