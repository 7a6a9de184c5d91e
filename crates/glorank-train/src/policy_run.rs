//! What SFT and RL share inside the training-loop skeleton: the policy being trained, its
//! optimizer and where it writes, with starting, resuming and checkpointing it.

use crate::checkpoint::{StageOutput, load_json, save_json};
use crate::skeleton::{
    JsonlLog, STATE_FILE, latest, load_optimizer, save_optimizer, write_dir_atomic,
};
use crate::{Result, TrainError};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::Device;
use glorank_policy::{Policy, PolicyConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A policy in training: the model (taken out for the duration of a step), the optimizer,
/// the configuration it was built from, its output paths, its log and its devices
/// (autodiff training device, plain evaluation device).
pub(crate) struct PolicyRun<'a> {
    policy: Option<Policy>,
    pub(crate) optim: ModuleOptimizer,
    pub(crate) config: &'a PolicyConfig,
    pub(crate) out: &'a StageOutput,
    pub(crate) log: JsonlLog,
    pub(crate) devices: (&'a Device, &'a Device),
}

impl<'a> PolicyRun<'a> {
    /// A fresh policy (`initial`, or one built from `config`) with AdamW, or the checkpoint's
    /// policy, optimizer and trainer state `S` when `resume` finds one. The log is rewritten
    /// from the state's records (`log_of`).
    ///
    /// # Errors
    /// A checkpoint made with another configuration; file errors.
    pub(crate) fn start<S: DeserializeOwned + Default>(
        config: &'a PolicyConfig,
        initial: Option<Policy>,
        weight_decay: f32,
        (out, resume): (&'a StageOutput, bool),
        devices: (&'a Device, &'a Device),
        log_of: impl FnOnce(&S) -> &[serde_json::Value],
    ) -> Result<(Self, S)> {
        out.create_parents()?;
        let optim = AdamWConfig::new().with_weight_decay(weight_decay).init();
        let (policy, optim, state) = match latest(&out.checkpoint).filter(|_| resume) {
            Some(dir) => {
                let (policy, saved) = Policy::load(&dir, devices.0)?;
                if &saved != config {
                    return Err(TrainError::InvalidInput(format!(
                        "{}: the checkpoint was made with another policy configuration; run without --resume",
                        dir.display()
                    )));
                }
                let optim = load_optimizer(optim, &dir)?;
                let state: S = load_json(&dir.join(STATE_FILE))?;
                (policy, optim, state)
            }
            None => {
                let policy = match initial {
                    Some(p) => p,
                    None => Policy::new(config, devices.0)?,
                };
                (policy, optim, S::default())
            }
        };
        let log = JsonlLog::create(&out.log, log_of(&state))?;
        let run = Self {
            policy: Some(policy),
            optim,
            config,
            out,
            log,
            devices,
        };
        Ok((run, state))
    }

    /// The policy.
    ///
    /// # Errors
    /// When a failed step lost it.
    pub(crate) fn policy(&self) -> Result<&Policy> {
        self.policy
            .as_ref()
            .ok_or_else(|| TrainError::InvalidInput("a failed step lost the policy".into()))
    }

    /// Takes the policy out for a step ([`PolicyRun::put`] returns it).
    ///
    /// # Errors
    /// When a failed step lost it.
    pub(crate) fn take(&mut self) -> Result<Policy> {
        self.policy
            .take()
            .ok_or_else(|| TrainError::InvalidInput("a failed step lost the policy".into()))
    }

    /// Puts the updated policy back.
    pub(crate) fn put(&mut self, policy: Policy) {
        self.policy = Some(policy);
    }

    /// Writes `policy` (a plain-device copy) to the stage's model directory, atomically.
    ///
    /// # Errors
    /// File errors.
    pub(crate) fn save_model(&self, policy: &Policy) -> Result<()> {
        write_dir_atomic(&self.out.model, |d| {
            policy.save(self.config, d).map_err(TrainError::from)
        })
    }

    /// Writes a checkpoint: policy, optimizer and trainer `state`.
    ///
    /// # Errors
    /// File errors.
    pub(crate) fn checkpoint<S: Serialize>(&self, state: &S) -> Result<()> {
        let policy = self.policy()?;
        write_dir_atomic(&self.out.checkpoint, |d| {
            policy.save(self.config, d)?;
            save_optimizer(&self.optim, d)?;
            save_json(&d.join(STATE_FILE), state)?;
            // Over every file, so resuming verifies the optimizer and state too.
            glorank_nn::persist::write_checksums(d).map_err(TrainError::from)
        })
    }
}
