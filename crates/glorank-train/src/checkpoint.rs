//! Where a trainer writes, and the trainer-state JSON helpers; the generic checkpoint
//! machinery is the skeleton ([`crate::write_dir_atomic`], [`crate::latest`]).

use crate::{Result, TrainError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Where a trainer writes: its model directory, its checkpoint directory and its JSONL log.
/// The trainers join no paths of their own; the facade's `RunDir` decides the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageOutput {
    /// The finished (SFT: best-epoch) model directory, written atomically.
    pub model: PathBuf,
    /// The checkpoint directory (policy, optimizer, trainer state).
    pub checkpoint: PathBuf,
    /// The JSONL evaluation log.
    pub log: PathBuf,
}

impl StageOutput {
    /// Explicit paths.
    pub fn new(
        model: impl Into<PathBuf>,
        checkpoint: impl Into<PathBuf>,
        log: impl Into<PathBuf>,
    ) -> Self {
        Self {
            model: model.into(),
            checkpoint: checkpoint.into(),
            log: log.into(),
        }
    }

    /// Creates the parent directories of the three paths.
    ///
    /// # Errors
    /// [`TrainError::Io`] naming the directory.
    pub fn create_parents(&self) -> Result<()> {
        for p in [&self.model, &self.checkpoint, &self.log] {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| TrainError::Io {
                    path: dir.to_path_buf(),
                    source: e,
                })?;
            }
        }
        Ok(())
    }
}

/// Writes `value` as pretty JSON to `path` (atomically).
///
/// # Errors
/// [`TrainError::Io`] / [`TrainError::Format`] naming the file.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    glorank_nn::persist::save_json(path, value).map_err(TrainError::from)
}

/// Reads JSON from `path`.
///
/// # Errors
/// [`TrainError::Io`] / [`TrainError::Format`] naming the file.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    glorank_nn::persist::load_json(path).map_err(TrainError::from)
}
