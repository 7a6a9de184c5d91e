//! Atomic, resumable checkpoints and the JSONL training log.
//!
//! A checkpoint is a directory (model weights and configuration, optimizer state, trainer
//! state as JSON). It is written under `NAME.tmp`, then swapped in: the previous `NAME` is
//! renamed to `NAME.old`, `NAME.tmp` to `NAME`, and `NAME.old` removed. A crash at any point
//! leaves either `NAME` or `NAME.old` complete, and [`latest`] finds it.

use burn::optim::ModuleOptimizer;
use glorank_nn::{NnError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the optimizer state inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// File name of the trainer state inside a checkpoint.
pub const STATE_FILE: &str = "state.json";

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

fn io(path: &Path, e: std::io::Error) -> NnError {
    NnError::io(path, e)
}

/// Writes the directory `dir` atomically: `fill` writes the files into a fresh temporary
/// directory, which then replaces `dir`.
///
/// # Errors
/// [`NnError::Io`] naming the directory, or `fill`'s error.
pub fn write_dir_atomic<E: From<NnError>>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let tmp = sibling(dir, ".tmp");
    let old = sibling(dir, ".old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    fill(&tmp)?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
        }
        std::fs::rename(dir, &old).map_err(|e| io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| io(dir, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    }
    Ok(())
}

/// The complete version of the atomically written directory `dir`: `dir` itself, or
/// `dir.old` when a crash happened between the two renames; `None` when neither exists.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    if dir.is_dir() {
        return Some(dir.to_path_buf());
    }
    let old = sibling(dir, ".old");
    old.is_dir().then_some(old)
}

/// Saves the optimizer state into the checkpoint directory `dir`.
///
/// # Errors
/// [`NnError::Format`] naming the file.
pub fn save_optimizer(optim: &ModuleOptimizer, dir: &Path) -> Result<()> {
    let path = dir.join(OPTIMIZER_FILE);
    optim.save(&path).map_err(|e| NnError::Format {
        path,
        message: e.to_string(),
    })
}

/// Loads the optimizer state saved by [`save_optimizer`] into `optim`.
///
/// # Errors
/// [`NnError::Format`] naming the file.
pub fn load_optimizer(optim: ModuleOptimizer, dir: &Path) -> Result<ModuleOptimizer> {
    let path = dir.join(OPTIMIZER_FILE);
    optim.load(&path).map_err(|e| NnError::Format {
        path,
        message: e.to_string(),
    })
}

/// The JSONL log of a training run: one JSON object per line and evaluation.
///
/// The records also live in the trainer's checkpoint state, so a resumed run rewrites the log
/// from the checkpoint (dropping lines written after it) and the final log never holds
/// duplicates.
#[derive(Debug)]
pub struct JsonlLog {
    path: PathBuf,
}

impl JsonlLog {
    /// A log at `path` holding exactly `records` (written atomically).
    ///
    /// # Errors
    /// [`NnError::Io`] naming the file.
    pub fn create(path: &Path, records: &[serde_json::Value]) -> Result<Self> {
        let mut text = String::new();
        for r in records {
            text.push_str(&r.to_string());
            text.push('\n');
        }
        glorank_nn::persist::write_atomic(path, text.as_bytes())?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Appends one record.
    ///
    /// # Errors
    /// [`NnError::Io`] naming the file.
    pub fn append(&self, record: &serde_json::Value) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| io(&self.path, e))?;
        writeln!(f, "{record}").map_err(|e| io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glorank_nn::persist::{load_json, save_json};

    #[test]
    fn atomic_dir_replaces_and_recovers() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        assert!(latest(&dir).is_none());
        write_dir_atomic(&dir, |d| save_json(&d.join("a.json"), &1u32)).unwrap();
        write_dir_atomic(&dir, |d| save_json(&d.join("a.json"), &2u32)).unwrap();
        let v: u32 = load_json(&latest(&dir).unwrap().join("a.json")).unwrap();
        assert_eq!(v, 2);
        // A crash between the two renames leaves only `ckpt.old`.
        std::fs::rename(&dir, root.path().join("ckpt.old")).unwrap();
        let v: u32 = load_json(&latest(&dir).unwrap().join("a.json")).unwrap();
        assert_eq!(v, 2);
        // A failing fill leaves the previous version in place.
        let failed = write_dir_atomic(&dir, |_| Err(NnError::InvalidInput("boom".into())));
        assert!(failed.is_err());
        assert!(latest(&dir).is_some());
    }

    #[test]
    fn log_is_rewritten_then_appended() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("log.jsonl");
        let log = JsonlLog::create(&path, &[serde_json::json!({"step": 1})]).unwrap();
        log.append(&serde_json::json!({"step": 2})).unwrap();
        JsonlLog::create(&path, &[serde_json::json!({"step": 1})]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"step\":1}\n");
    }
}
