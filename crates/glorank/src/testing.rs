//! Small run directories written in seconds, for the workspace's own tests (the `testing`
//! feature; not part of the public API).
//!
//! [`write_tiny_run`] builds a complete, loadable run directory on a tiny synthetic world:
//! the prepared dataset, residual k-means semantic IDs (2 levels of 4 codes), the tokenizer
//! (so cold items can be served from their vectors) and a seeded, *untrained* policy of
//! width 16 in `policy_sft/`. Its lists are valid but not good:
//! it exists to exercise loading, serving and decoding without a training run. For a trained
//! model run `glorank demo --quick`.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let run = glorank::testing::write_tiny_run(dir.path(), 0)?;
//! let reranker = glorank::Reranker::load(run.root())?;
//! assert_eq!(reranker.list_len(), 6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::{Result, RunDir, TokenizerConfig, training};
use glorank_data::{DatasetSource, NoProgress, PreparedDataset, ProtocolConfig, SyntheticConfig};
use glorank_nn::ModelInputs;
use glorank_policy::{Policy, PolicyArch};
use std::path::Path;

/// Writes a tiny run directory into `dir` (created if needed) and returns it: 40 users,
/// 60 items, pools of 12, lists of 6, histories of 8; `seed` seeds the world, the tokenizer
/// and the policy's initialisation. The policy is untrained (see the module docs).
///
/// # Errors
/// File errors writing `dir`.
pub fn write_tiny_run(dir: &Path, seed: u64) -> Result<RunDir> {
    let tok = TokenizerConfig {
        levels: 2,
        codes: 4,
        seed,
        ..TokenizerConfig::default()
    };
    let arch = PolicyArch::default().with_size(16, 2, 1).with_seed(seed);
    write_run(
        dir,
        &tiny_dataset(seed)?,
        &tok,
        (&arch, &ModelInputs::default()),
    )
}

/// Writes a run directory of `ds` into `dir`: the dataset, semantic IDs from `tokenizer`,
/// and a seeded, untrained policy of `arch` reading `inputs` in `policy_sft/`, each recorded
/// in the run's manifest (so loaders verify them, as in a pipeline's run).
///
/// # Errors
/// Tokenizer, configuration and file errors.
pub fn write_run(
    dir: &Path,
    ds: &PreparedDataset,
    tokenizer: &TokenizerConfig,
    (arch, inputs): (&PolicyArch, &ModelInputs),
) -> Result<RunDir> {
    let run = RunDir::new(dir);
    ds.save(run.root())?;
    let (_, ids) = training::tokenize(ds, tokenizer, run.tokenizer_dir())?;
    let config = training::policy_config(ds, &ids, (arch, inputs))?;
    let device = burn::tensor::Device::flex();
    Policy::new(&config, &device)?.save(&config, &run.policy_sft())?;
    let none = std::collections::BTreeMap::new();
    for name in ["dataset", "tokenizer", "sft"] {
        run.finish(name, &serde_json::Value::Null, &none)?;
    }
    Ok(run)
}

/// The prepared dataset of [`write_tiny_run`]: a synthetic world of 40 users and 60 items,
/// 4 sessions each, 3-core filtered, lists of 6 from pools of 12 with histories of 8.
///
/// # Errors
/// Data errors (none for these constants).
pub fn tiny_dataset(seed: u64) -> Result<PreparedDataset> {
    Ok(DatasetSource::Synthetic(
        SyntheticConfig::small(40, 60)
            .with_sessions(4)
            .with_seed(seed),
    )
    .prepare(
        &ProtocolConfig::default()
            .with_k_core(3)
            .with_shape(6, 8, 12),
        &NoProgress,
    )?)
}

/// A small prepared synthetic world: pools of 12, lists of 6, histories of 8, 3-core.
pub fn small_world(users: usize, items: usize, sessions: usize) -> PreparedDataset {
    DatasetSource::Synthetic(SyntheticConfig::small(users, items).with_sessions(sessions))
        .prepare(
            &ProtocolConfig::default()
                .with_k_core(3)
                .with_shape(6, 8, 12),
            &NoProgress,
        )
        .unwrap()
}

/// A synthetic world of 120 users and 150 items with 10% held-out items: pools of 20, lists
/// of 6, histories of 8, 3-core.
pub fn held_out_world() -> PreparedDataset {
    DatasetSource::Synthetic(SyntheticConfig::small(120, 150).with_sessions(6))
        .prepare(
            &ProtocolConfig::default()
                .with_k_core(3)
                .with_shape(6, 8, 20)
                .with_held_out_share(0.1),
            &NoProgress,
        )
        .unwrap()
}
