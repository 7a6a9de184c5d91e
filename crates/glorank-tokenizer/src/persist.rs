//! Saving and loading models: a JSON description and burnpack weights, each written to a
//! temporary file and renamed, so an interrupted save never leaves a half-written file under
//! the final name. Shared by the tokenizer, the policy and the reward models.

use crate::{Result, TokenizerError};
use burn::module::Module;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Writes `value` as pretty JSON to `path` atomically.
///
/// # Errors
/// [`TokenizerError::Io`] / [`TokenizerError::Format`] naming the file.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| TokenizerError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    glorank_data::write_atomic(path, &json).map_err(TokenizerError::from)
}

/// Reads JSON from `path`.
///
/// # Errors
/// [`TokenizerError::Io`] for a missing or unreadable file, [`TokenizerError::Format`] for
/// content that does not parse (with serde's line and column).
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenizerError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Saves a module's weights as burnpack to `path` atomically.
///
/// # Errors
/// [`TokenizerError::Format`] / [`TokenizerError::Io`] naming the file.
pub fn save_weights<M: Module + Clone>(module: &M, path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| TokenizerError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    module
        .clone()
        .save_file(&tmp)
        .map_err(|e| TokenizerError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    std::fs::rename(&tmp, path).map_err(|e| TokenizerError::io(path, e))
}

/// Loads burnpack weights from `path` into `module` (built from the matching configuration).
///
/// # Errors
/// [`TokenizerError::Io`] when the file is missing; [`TokenizerError::Format`] when the
/// weights do not match the module's shapes.
pub fn load_weights<M: Module>(module: M, path: &Path) -> Result<M> {
    if !path.exists() {
        return Err(TokenizerError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "weights not found"),
        ));
    }
    module
        .try_load_file(path)
        .map_err(|e| TokenizerError::Format {
            path: path.to_path_buf(),
            message: format!("weights do not match the configuration: {e}"),
        })
}
