//! Saving and loading models: a JSON description and burnpack weights, each written to a
//! temporary file and renamed, so an interrupted save never leaves a half-written file under
//! the final name. Shared by the tokenizer, the policy, the reward models, the baselines and
//! the trainers' checkpoints.

use crate::{NnError, Result};
use burn::module::Module;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::Path;

/// The directory of `path` (`.` for a bare file name) and a temporary sibling name unique to
/// this process.
fn temp_sibling(path: &Path) -> (&Path, std::path::PathBuf) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, dir.join(format!(".{name}.{}.tmp", std::process::id())))
}

/// Writes `bytes` to `path` atomically: a temporary sibling file is written, synced and
/// renamed over `path`. The parent directory must exist.
///
/// # Errors
/// [`NnError::Io`] naming `path`; the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let (_, tmp) = temp_sibling(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        NnError::io(path, e)
    })
}

/// Writes `value` as pretty JSON to `path` atomically (the parent directory is created).
///
/// # Errors
/// [`NnError::Io`] / [`NnError::Format`] naming the file.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| NnError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let (dir, _) = temp_sibling(path);
    std::fs::create_dir_all(dir).map_err(|e| NnError::io(dir, e))?;
    write_atomic(path, &json)
}

/// Largest JSON file [`load_json`] reads (model configurations, tokenizers, summaries):
/// 1 GiB.
pub const MAX_JSON_BYTES: u64 = 1 << 30;

/// The bytes of `path`, refusing a file (or a stream such as a FIFO or `/dev/zero`) longer
/// than `max` bytes after reading at most `max + 1` of them.
///
/// # Errors
/// The I/O error of opening or reading; [`std::io::ErrorKind::InvalidData`] for a file over
/// `max` bytes.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let hint = file.metadata().map_or(0, |m| m.len()).min(max);
    let mut bytes = Vec::with_capacity(hint as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than the {max}-byte limit of this file"),
        ));
    }
    Ok(bytes)
}

/// Reads JSON from `path` (at most [`MAX_JSON_BYTES`]).
///
/// # Errors
/// [`NnError::Io`] for a missing, unreadable or oversized file, [`NnError::Format`] for
/// content that does not parse (with serde's line and column).
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_capped(path, MAX_JSON_BYTES).map_err(|e| NnError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| NnError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Saves a module's weights as burnpack to `path` atomically (the parent directory is
/// created).
///
/// # Errors
/// [`NnError::Format`] / [`NnError::Io`] naming the file.
pub fn save_weights<M: Module + Clone>(module: &M, path: &Path) -> Result<()> {
    let (dir, tmp) = temp_sibling(path);
    std::fs::create_dir_all(dir).map_err(|e| NnError::io(dir, e))?;
    module
        .clone()
        .save_file(&tmp)
        .map_err(|e| NnError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    std::fs::rename(&tmp, path).map_err(|e| NnError::io(path, e))
}

/// Loads burnpack weights from `path` into `module` (built from the matching configuration),
/// refusing weights that hold a NaN or an infinity.
///
/// # Errors
/// [`NnError::Io`] when the file is missing; [`NnError::Format`] when the weights do not
/// match the module's shapes, or naming the first tensor with a non-finite value.
pub fn load_weights<M: Module>(module: M, path: &Path) -> Result<M> {
    if !path.exists() {
        return Err(NnError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "weights not found"),
        ));
    }
    let module = module.try_load_file(path).map_err(|e| NnError::Format {
        path: path.to_path_buf(),
        message: format!("weights do not match the configuration: {e}"),
    })?;
    if let Some(found) = first_non_finite(&module) {
        return Err(NnError::Format {
            path: path.to_path_buf(),
            message: format!(
                "tensor `{}` holds {} at element {}; the weights are corrupted (a diverged \
                 training or an edited file)",
                found.tensor, found.value, found.index
            ),
        });
    }
    Ok(module)
}

/// A parameter value that is NaN or infinite, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// The parameter's path in the module (`layers.0.attn.query.weight`).
    pub tensor: String,
    /// Its flat (row-major) index.
    pub index: usize,
    /// The value (NaN, inf or -inf).
    pub value: f32,
}

/// The first parameter value of `module` that is NaN or infinite, in module order.
pub fn first_non_finite<M: Module>(module: &M) -> Option<NonFinite> {
    let mut scan = NonFiniteScan {
        path: Vec::new(),
        found: None,
    };
    module.visit(&mut scan);
    scan.found
}

/// The [`ModuleVisitor`](burn::module::ModuleVisitor) behind [`first_non_finite`].
struct NonFiniteScan {
    path: Vec<String>,
    found: Option<NonFinite>,
}

impl burn::module::ModuleVisitor for NonFiniteScan {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<D>>,
    ) {
        if self.found.is_some() {
            return;
        }
        let data = param.val().into_data();
        if let Some((index, value)) = data.iter::<f32>().enumerate().find(|(_, v)| !v.is_finite()) {
            self.found = Some(NonFinite {
                tensor: self.path.join("."),
                index,
                value,
            });
        }
    }
}

/// Name of the checksum list inside a model or checkpoint directory.
pub const CHECKSUMS_FILE: &str = "checksums.json";

/// The CRC-32 and length of a file's bytes, as `crc32:XXXXXXXX:LEN`.
///
/// # Errors
/// [`NnError::Io`] naming the file.
pub fn file_checksum(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| NnError::io(path, e))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| NnError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok(format!("crc32:{:08x}:{len}", hasher.finalize()))
}

/// The files of `dir` (recursively, relative paths with `/`), sorted, without the checksum
/// list itself and without temporary files.
fn files_below(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| NnError::io(&d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| NnError::io(&d, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry
                .file_type()
                .map_err(|e| NnError::io(&entry.path(), e))?;
            if kind.is_dir() {
                stack.push((entry.path(), format!("{prefix}{name}/")));
            } else if name != CHECKSUMS_FILE && !name.ends_with(".tmp") {
                out.push(format!("{prefix}{name}"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Records the checksum of every file of `dir` in `dir/checksums.json` (atomically).
///
/// # Errors
/// I/O errors naming the file.
pub fn write_checksums(dir: &Path) -> Result<()> {
    let mut sums = std::collections::BTreeMap::new();
    for name in files_below(dir)? {
        sums.insert(name.clone(), file_checksum(&dir.join(&name))?);
    }
    save_json(&dir.join(CHECKSUMS_FILE), &sums)
}

/// Checks every file listed in `dir/checksums.json` against its recorded checksum, and that
/// no listed file is missing. A directory without the list (written before checksums
/// existed) passes.
///
/// # Errors
/// [`NnError::Format`] naming the first file whose bytes changed or that is missing.
pub fn verify_checksums(dir: &Path) -> Result<()> {
    let list = dir.join(CHECKSUMS_FILE);
    if !list.exists() {
        return Ok(());
    }
    let sums: std::collections::BTreeMap<String, String> = load_json(&list)?;
    for (name, expected) in &sums {
        let path = dir.join(name);
        if !path.exists() {
            return Err(NnError::Format {
                path,
                message: "missing: listed in checksums.json but not found".into(),
            });
        }
        if &file_checksum(&path)? != expected {
            return Err(NnError::Format {
                path,
                message: "its bytes changed since it was written (checksum mismatch); the file \
                          is corrupted or was edited"
                    .into(),
            });
        }
    }
    Ok(())
}

/// A checksum of a whole directory's contents (the checksum of its file list and files).
///
/// # Errors
/// I/O errors naming the file.
pub fn dir_checksum(dir: &Path) -> Result<String> {
    let mut hasher = crc32fast::Hasher::new();
    for name in files_below(dir)? {
        hasher.update(name.as_bytes());
        hasher.update(file_checksum(&dir.join(&name))?.as_bytes());
    }
    Ok(format!("crc32:{:08x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.json");
        save_json(&path, &vec![1u32, 2, 3]).unwrap();
        let back: Vec<u32> = load_json(&path).unwrap();
        assert_eq!(back, vec![1, 2, 3]);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, b"[1, 2,").unwrap();
        let err = load_json::<Vec<u32>>(&path).unwrap_err();
        assert!(matches!(err, NnError::Format { .. }));
        assert!(err.to_string().contains("v.json"), "{err}");
        let missing = load_json::<Vec<u32>>(&dir.path().join("none.json")).unwrap_err();
        assert!(matches!(missing, NnError::Io { .. }));
        assert_eq!(missing.path(), Some(dir.path().join("none.json").as_path()));
    }

    #[test]
    fn checksums_catch_a_flipped_byte_and_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("best")).unwrap();
        std::fs::write(d.join("w.bin"), [1u8, 2, 3, 4]).unwrap();
        std::fs::write(d.join("best/w.bin"), [5u8; 10]).unwrap();
        let before = dir_checksum(d).unwrap();
        write_checksums(d).unwrap();
        verify_checksums(d).unwrap();
        assert_eq!(
            dir_checksum(d).unwrap(),
            before,
            "the list itself is not counted"
        );
        std::fs::write(d.join("best/w.bin"), [5u8, 5, 5, 5, 5, 5, 5, 5, 5, 4]).unwrap();
        let e = verify_checksums(d).unwrap_err();
        assert!(e.to_string().contains("best/w.bin"), "{e}");
        assert_ne!(dir_checksum(d).unwrap(), before);
        std::fs::remove_file(d.join("best/w.bin")).unwrap();
        let e = verify_checksums(d).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn non_finite_weights_are_refused_naming_the_file_and_tensor() {
        let device = burn::tensor::Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attn.bpk");
        let mut attn = crate::layers::Attention::new(8, 2, &device);
        save_weights(&attn, &path).unwrap();
        let fresh = || crate::layers::Attention::new(8, 2, &device);
        assert!(load_weights(fresh(), &path).is_ok());
        // One NaN in the value projection's bias, one infinity in its weight.
        attn.value.weight = attn.value.weight.map(|w| {
            let mut v = w.clone().into_data().try_to_vec::<f32>().unwrap();
            v[5] = f32::INFINITY;
            burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(v, w.dims()), &device)
        });
        save_weights(&attn, &path).unwrap();
        let e = load_weights(fresh(), &path).unwrap_err().to_string();
        assert!(
            e.contains("attn.bpk") && e.contains("`value.weight`") && e.contains("element 5"),
            "{e}"
        );
        assert_eq!(
            first_non_finite(&attn),
            Some(NonFinite {
                tensor: "value.weight".into(),
                index: 5,
                value: f32::INFINITY
            })
        );
    }

    #[test]
    fn a_capped_read_refuses_an_endless_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; 2048]).unwrap();
        assert_eq!(read_capped(&path, 4096).unwrap().len(), 2048);
        let e = read_capped(&path, 1024).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        #[cfg(unix)]
        assert!(read_capped(Path::new("/dev/zero"), 1 << 20).is_err());
    }

    #[test]
    fn write_atomic_fails_cleanly_without_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("no/such/file"), b"x").unwrap_err();
        assert!(err.to_string().contains("no/such/file"), "{err}");
    }
}
