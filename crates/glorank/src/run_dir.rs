//! The layout of a run directory, owned by one type.

use crate::{Error, Result};
use glorank_reward::RewardRole;
use glorank_train::StageOutput;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A run directory: every artifact path of a run is a method here, so stages, front-ends
/// and tests never join path strings themselves.
///
/// ```text
/// RUN/
///   config.toml                         the configuration the run was made with
///   dataset.bin, summary.json           the prepared dataset (glorank-data)
///   tokenizer.json, semantic_ids.json,  the tokenizer and its table (glorank-tokenizer)
///     stats.json, rqvae.bpk
///   evaluator/, simulator/              reward models; *_checkpoint/, *_log.jsonl
///   policy_sft/, sft_checkpoint/, sft_log.jsonl
///   policy_rl/, rl_checkpoint/, rl_log.jsonl
///   las/                                the local-index ablation, itself a run directory
///   metrics.json, predictions.jsonl, report.md, *.svg
/// ```
///
/// ```
/// use glorank::RunDir;
///
/// let run = RunDir::new("runs/demo");
/// assert!(run.policy_rl().ends_with("policy_rl"));
/// assert!(run.las().sft().model.ends_with("las/policy_sft"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

/// File name of the requests in a request-log folder written by
/// [`RunDir::export_request_log`] (`.parquet` in Parquet).
pub const LOG_REQUESTS_FILE: &str = "requests.jsonl";

impl RunDir {
    /// The run directory at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the directory (and its parents) if missing.
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory.
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::Io {
            path: self.root.clone(),
            source: e,
        })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `config.toml`: the configuration the run was made with.
    pub fn config_file(&self) -> PathBuf {
        self.file("config.toml")
    }

    /// `dataset.bin`: the prepared dataset ([`glorank_data::PreparedDataset::load`] reads
    /// it from [`RunDir::root`]).
    pub fn dataset_file(&self) -> PathBuf {
        self.file(glorank_data::DATASET_FILE)
    }

    /// The directory holding the tokenizer and its table (the run directory itself).
    pub fn tokenizer_dir(&self) -> &Path {
        &self.root
    }

    /// `semantic_ids.json`: the semantic-ID table.
    pub fn semantic_ids_file(&self) -> PathBuf {
        self.file(glorank_tokenizer::IDS_FILE)
    }

    /// `stats.json`: the codebook statistics of the fitted tokenizer.
    pub fn tokenizer_stats_file(&self) -> PathBuf {
        self.file(glorank_tokenizer::STATS_FILE)
    }

    /// `tokenizer.json`: the fitted tokenizer (needed to encode cold items).
    pub fn tokenizer_file(&self) -> PathBuf {
        self.file(glorank_tokenizer::TOKENIZER_FILE)
    }

    fn role_name(role: RewardRole) -> &'static str {
        match role {
            RewardRole::Evaluator => "evaluator",
            RewardRole::Simulator => "simulator",
        }
    }

    /// The reward model of `role`: `evaluator/` or `simulator/`.
    pub fn reward_model(&self, role: RewardRole) -> PathBuf {
        self.file(Self::role_name(role))
    }

    /// Its per-epoch checkpoint: `evaluator_checkpoint/` or `simulator_checkpoint/`.
    pub fn reward_checkpoint(&self, role: RewardRole) -> PathBuf {
        self.file(&format!("{}_checkpoint", Self::role_name(role)))
    }

    /// Its training log: `evaluator_log.jsonl` or `simulator_log.jsonl`.
    pub fn reward_log(&self, role: RewardRole) -> PathBuf {
        self.file(&format!("{}_log.jsonl", Self::role_name(role)))
    }

    /// SFT's outputs: `policy_sft/`, `sft_checkpoint/`, `sft_log.jsonl`.
    pub fn sft(&self) -> StageOutput {
        StageOutput::new(
            self.policy_sft(),
            self.file("sft_checkpoint"),
            self.file("sft_log.jsonl"),
        )
    }

    /// RL's outputs: `policy_rl/`, `rl_checkpoint/`, `rl_log.jsonl`.
    pub fn rl(&self) -> StageOutput {
        StageOutput::new(
            self.policy_rl(),
            self.file("rl_checkpoint"),
            self.file("rl_log.jsonl"),
        )
    }

    /// `policy_sft/`: the best SFT epoch.
    pub fn policy_sft(&self) -> PathBuf {
        self.file("policy_sft")
    }

    /// `policy_rl/`: the policy after RL.
    pub fn policy_rl(&self) -> PathBuf {
        self.file("policy_rl")
    }

    /// `las/`: the local-index ablation, a run directory of its own.
    pub fn las(&self) -> RunDir {
        RunDir::new(self.file("las"))
    }

    /// `metrics.json`: every method's metrics with confidence intervals.
    pub fn metrics_file(&self) -> PathBuf {
        self.file(METRICS_FILE)
    }

    /// `predictions.jsonl`: one line per request and method.
    pub fn predictions_file(&self) -> PathBuf {
        self.file(PREDICTIONS_FILE)
    }

    /// `report.md`: the table and the training curves.
    pub fn report_file(&self) -> PathBuf {
        self.file("report.md")
    }

    /// A figure of the report (`name` ends in `.svg`).
    pub fn figure_file(&self, name: &str) -> PathBuf {
        self.file(name)
    }

    /// Whether `dir` holds a saved policy (its `policy.json`).
    pub fn is_policy(dir: &Path) -> bool {
        dir.join(glorank_policy::CONFIG_FILE).exists()
    }

    /// Whether `dir` holds a saved reward model (its weights).
    pub fn is_reward_model(dir: &Path) -> bool {
        dir.join(glorank_reward::WEIGHTS_FILE).exists()
    }

    /// Writes `config.toml` (atomically).
    ///
    /// # Errors
    /// File errors naming it.
    pub fn write_config(&self, config: &crate::Config) -> Result<()> {
        Ok(glorank_nn::persist::write_atomic(
            &self.config_file(),
            config.to_toml().as_bytes(),
        )?)
    }

    /// The configuration the run was made with (its `config.toml`), when it has one.
    ///
    /// # Errors
    /// A `config.toml` that does not parse (named, with TOML's line and column; a run made
    /// before the configuration had one root gets the keys that moved).
    pub fn config(&self) -> Result<Option<crate::Config>> {
        let path = self.config_file();
        if !path.exists() {
            return Ok(None);
        }
        crate::Config::from_file(&path).map(Some)
    }

    /// The beam width the run's evaluation decoded with: `eval.beam` of its `config.toml`
    /// (or `eval_beam`, where a run made before the configuration had one root kept it), 1
    /// without one.
    ///
    /// # Errors
    /// A `config.toml` that is not TOML, or whose beam is not a number from 1 to
    /// [`crate::MAX_EVAL_BEAM`].
    pub fn eval_beam(&self) -> Result<usize> {
        let path = self.config_file();
        if !path.exists() {
            return Ok(1);
        }
        let bad = |message: String| Error::Format {
            path: path.clone(),
            message,
        };
        let doc: toml::Table =
            toml::from_str(&crate::read_text(&path)?).map_err(|e| bad(e.to_string()))?;
        let beam = doc
            .get("eval")
            .and_then(|e| e.get("beam"))
            .or_else(|| doc.get("eval_beam"));
        match beam {
            None => Ok(1),
            Some(v) => v
                .as_integer()
                .and_then(|b| usize::try_from(b).ok())
                .filter(|b| (1..=crate::MAX_EVAL_BEAM).contains(b))
                .ok_or_else(|| {
                    bad(format!(
                        "eval.beam: expected 1..={}, got {v}",
                        crate::MAX_EVAL_BEAM
                    ))
                }),
        }
    }

    /// Copies the finished artifacts `names` of `from` (their files and their manifest
    /// records) into this run directory, where it lacks them: a run that trains on another
    /// run's prepared data. Files are hard-linked where the file system allows, copied
    /// otherwise.
    ///
    /// # Errors
    /// [`Error::Missing`] when `from` has no finished record of an artifact; file errors.
    pub fn import(&self, from: &RunDir, names: &[&str]) -> Result<()> {
        self.create()?;
        let theirs = from.manifest()?;
        let mut ours = self.manifest()?;
        for name in names {
            if ours.artifacts.contains_key(*name) || self.artifact_checksum(name)?.is_some() {
                continue;
            }
            let record = theirs
                .artifacts
                .get(*name)
                .filter(|r| !r.checksum.is_empty())
                .ok_or_else(|| Error::Missing {
                    path: from.manifest_file(),
                    hint: format!("no finished artifact `{name}` to use"),
                })?;
            for (src, dst) in from
                .artifact_parts(name)
                .iter()
                .zip(self.artifact_parts(name))
            {
                if src.is_file() && std::fs::hard_link(src, &dst).is_err() {
                    std::fs::copy(src, &dst).map_err(|e| Error::Io {
                        path: dst.clone(),
                        source: e,
                    })?;
                }
            }
            ours.artifacts.insert(name.to_string(), record.clone());
        }
        ours.version = 1;
        self.save_manifest(&ours)
    }

    /// The policy the run serves: `policy_rl/`, or `policy_sft/` when the run has no RL
    /// policy at all.
    ///
    /// # Errors
    /// [`Error::Missing`] when the run has neither, or an RL policy without its
    /// `policy.json`.
    pub fn trained_policy(&self) -> Result<PathBuf> {
        let rl = self.policy_rl();
        // An RL policy that exists (or that the manifest recorded) but is incomplete is an
        // error, not a reason to serve the SFT policy instead.
        let recorded = self
            .manifest()?
            .artifacts
            .get("rl")
            .is_some_and(|r| !r.checksum.is_empty());
        if rl.exists() || recorded {
            if !Self::is_policy(&rl) {
                return Err(Error::Missing {
                    path: rl.join(glorank_policy::CONFIG_FILE),
                    hint:
                        "the RL policy is incomplete; rerun `glorank run` (or `glorank train rl`) \
                           or remove policy_rl/ to serve the SFT policy"
                            .into(),
                });
            }
            return Ok(rl);
        }
        let sft = self.policy_sft();
        if Self::is_policy(&sft) {
            return Ok(sft);
        }
        Err(Error::Missing {
            path: rl,
            hint: "train a policy first (`glorank demo`, `glorank run` or `glorank train sft`)"
                .into(),
        })
    }
}

impl From<&Path> for RunDir {
    fn from(p: &Path) -> Self {
        Self::new(p)
    }
}

impl From<PathBuf> for RunDir {
    fn from(p: PathBuf) -> Self {
        Self::new(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_documented_one() {
        let run = RunDir::new("r");
        assert_eq!(run.config_file(), Path::new("r/config.toml"));
        assert_eq!(run.dataset_file(), Path::new("r/dataset.bin"));
        assert_eq!(run.semantic_ids_file(), Path::new("r/semantic_ids.json"));
        assert_eq!(
            run.reward_model(RewardRole::Simulator),
            Path::new("r/simulator")
        );
        assert_eq!(
            run.reward_log(RewardRole::Evaluator),
            Path::new("r/evaluator_log.jsonl")
        );
        assert_eq!(run.rl().checkpoint, Path::new("r/rl_checkpoint"));
        assert_eq!(run.las().sft().log, Path::new("r/las/sft_log.jsonl"));
        assert!(run.trained_policy().is_err());
    }
}

/// The manifest's name for what an evaluation wrote into the run (`metrics.json` and
/// `predictions.jsonl`), recorded so that `glorank compare`, `glorank aggregate` and
/// `read_metrics` read the figures the run wrote. Not a stage's artifact: nothing is built
/// from it.
pub const EVALUATION: &str = "evaluation";

/// File name of an evaluation's figures in a run directory.
const METRICS_FILE: &str = "metrics.json";

/// File name of an evaluation's lists in a run directory.
const PREDICTIONS_FILE: &str = "predictions.jsonl";

/// File name of the run manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The artifacts a run directory records in its manifest, in build order.
pub const ARTIFACTS: [&str; 7] = [
    "dataset",
    "tokenizer",
    "evaluator",
    "simulator",
    "sft",
    "rl",
    "las",
];

/// What `manifest.json` records of one artifact: the configuration it was built from, the
/// checksums of the artifacts it was built on, and its own checksum (empty while it is being
/// built).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The configuration sections the artifact depends on, as JSON.
    pub config: serde_json::Value,
    /// Checksum of each upstream artifact, by name.
    pub inputs: BTreeMap<String, String>,
    /// The artifact's own checksum (`""` while building).
    pub checksum: String,
}

/// The run manifest: one [`ArtifactRecord`] per built (or building) artifact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// Records by artifact name ([`ARTIFACTS`]).
    pub artifacts: BTreeMap<String, ArtifactRecord>,
}

/// Whether an artifact can be reused, as [`RunDir::check`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// It exists and was built from this configuration and these inputs: reuse it.
    Fresh,
    /// It does not exist, or its build was interrupted under this configuration and these
    /// inputs: the stage runs and resumes from its checkpoint if there is one.
    Missing,
    /// It (or its interrupted build) came from another configuration or other inputs: it
    /// must be removed and rebuilt. The text says what changed.
    Stale(String),
    /// It exists but the manifest has no record of it (a run directory from before
    /// manifests): it is reused and recorded as it is.
    Unrecorded,
}

/// The fields that differ between two JSON objects, as `path: old -> new` (at most 6).
fn config_diff(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = serde_json::Value::Null;
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{path}: {a} -> {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out.truncate(6);
    out
}

impl RunDir {
    /// `manifest.json`: what every artifact was built from.
    pub fn manifest_file(&self) -> PathBuf {
        self.file(MANIFEST_FILE)
    }

    /// The manifest (empty when the run has none yet).
    ///
    /// # Errors
    /// A manifest that does not parse (named).
    pub fn manifest(&self) -> Result<Manifest> {
        let path = self.manifest_file();
        if !path.exists() {
            return Ok(Manifest {
                version: 1,
                ..Manifest::default()
            });
        }
        Ok(glorank_nn::persist::load_json(&path)?)
    }

    fn save_manifest(&self, manifest: &Manifest) -> Result<()> {
        Ok(glorank_nn::persist::save_json(
            &self.manifest_file(),
            manifest,
        )?)
    }

    /// The first file or directory of artifact `name` (the one that decides whether it
    /// exists).
    pub(crate) fn artifact_path(&self, name: &str) -> PathBuf {
        self.artifact_parts(name)
            .into_iter()
            .next()
            .unwrap_or_else(|| self.manifest_file())
    }

    /// The files and directories that make up artifact `name` (the first one decides
    /// whether it exists).
    fn artifact_parts(&self, name: &str) -> Vec<PathBuf> {
        match name {
            "dataset" => vec![self.dataset_file(), self.file(glorank_data::SUMMARY_FILE)],
            "tokenizer" => vec![
                self.semantic_ids_file(),
                self.tokenizer_file(),
                self.tokenizer_stats_file(),
                self.file(glorank_tokenizer::WEIGHTS_FILE),
            ],
            "evaluator" => vec![self.reward_model(RewardRole::Evaluator)],
            "simulator" => vec![self.reward_model(RewardRole::Simulator)],
            "sft" => vec![self.policy_sft()],
            "rl" => vec![self.policy_rl()],
            "las" => vec![self.las().policy_sft()],
            EVALUATION => vec![self.metrics_file(), self.predictions_file()],
            _ => Vec::new(),
        }
    }

    /// What is removed with artifact `name` when it is rebuilt: the artifact, its
    /// checkpoint and its log.
    fn artifact_leftovers(&self, name: &str) -> Vec<PathBuf> {
        let mut v = self.artifact_parts(name);
        match name {
            "evaluator" | "simulator" => {
                let role = if name == "evaluator" {
                    RewardRole::Evaluator
                } else {
                    RewardRole::Simulator
                };
                v.push(self.reward_checkpoint(role));
                v.push(self.reward_log(role));
            }
            "sft" => v.extend([self.sft().checkpoint, self.sft().log]),
            "rl" => v.extend([self.rl().checkpoint, self.rl().log]),
            "las" => v.push(self.las().root().to_path_buf()),
            _ => {}
        }
        v
    }

    /// The current checksum of artifact `name`, or `None` when it does not exist: one
    /// `FILE=crc32:...` per part that exists (`FILE` relative to the run directory), joined
    /// by `+`, so that a mismatch names its file.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn artifact_checksum(&self, name: &str) -> Result<Option<String>> {
        Ok(self.part_checksums(name)?.map(|parts| {
            parts
                .iter()
                .map(|(file, sum)| format!("{file}={sum}"))
                .collect::<Vec<_>>()
                .join("+")
        }))
    }

    /// The checksum of each existing part of artifact `name` (its file relative to the run
    /// directory, and its checksum), or `None` when the artifact does not exist.
    fn part_checksums(&self, name: &str) -> Result<Option<Vec<(String, String)>>> {
        let parts = self.artifact_parts(name);
        match parts.first() {
            Some(first) if first.exists() => {}
            _ => return Ok(None),
        }
        let mut sums = Vec::new();
        for p in parts.iter().filter(|p| p.exists()) {
            let sum = if p.is_dir() {
                glorank_nn::persist::dir_checksum(p)?
            } else {
                glorank_nn::persist::file_checksum(p)?
            };
            sums.push((self.relative(p), sum));
        }
        Ok(Some(sums))
    }

    /// `p` relative to the run directory, with `/`.
    fn relative(&self, p: &Path) -> String {
        let rel = p.strip_prefix(&self.root).unwrap_or(p);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The file of artifact `name` that differs from the `recorded` checksum, and how
    /// (`None`: unchanged, or the artifact does not exist). Reads both the per-file
    /// checksums and the older form that joined the checksums without their file names.
    fn changed_part(&self, name: &str, recorded: &str) -> Result<Option<(PathBuf, String)>> {
        let Some(now) = self.part_checksums(name)? else {
            return Ok(None);
        };
        let recorded_parts: Vec<&str> = recorded.split('+').collect();
        let named = recorded_parts.iter().all(|p| p.contains('='));
        if named {
            let recorded: Vec<(&str, &str)> = recorded_parts
                .iter()
                .filter_map(|p| p.split_once('='))
                .collect();
            for (file, sum) in &recorded {
                match now.iter().find(|(f, _)| f == file) {
                    None => {
                        return Ok(Some((
                            self.root.join(file),
                            "was deleted since the run recorded it".into(),
                        )));
                    }
                    Some((_, current)) if current != sum => {
                        return Ok(Some(pinpoint(self.root.join(file), changed(current, sum))));
                    }
                    Some(_) => {}
                }
            }
            if let Some((file, _)) = now
                .iter()
                .find(|(f, _)| !recorded.iter().any(|(r, _)| r == f))
            {
                return Ok(Some((
                    self.root.join(file),
                    "appeared since the run recorded the artifact without it".into(),
                )));
            }
            return Ok(None);
        }
        // The older form: the checksums of the parts that existed, in order, without names.
        let current: Vec<&str> = now.iter().map(|(_, s)| s.as_str()).collect();
        if current == recorded_parts {
            return Ok(None);
        }
        if current.len() == recorded_parts.len() {
            let k = (0..current.len())
                .find(|&k| current[k] != recorded_parts[k])
                .unwrap_or(0);
            return Ok(Some(pinpoint(
                self.root.join(&now[k].0),
                changed(current[k], recorded_parts[k]),
            )));
        }
        let files: Vec<&str> = now.iter().map(|(f, _)| f.as_str()).collect();
        Ok(Some((
            self.artifact_parts(name).swap_remove(0),
            format!(
                "a file of artifact `{name}` was deleted or added since the run recorded it (it now has {})",
                files.join(", ")
            ),
        )))
    }

    /// Whether artifact `name` may be reused for `config` and `inputs`.
    ///
    /// # Errors
    /// [`Error::Format`] naming the artifact when it exists but its bytes differ from what
    /// the manifest recorded (it was edited or corrupted: the run refuses to use or silently
    /// replace it); I/O errors.
    pub fn check(
        &self,
        name: &str,
        config: &serde_json::Value,
        inputs: &BTreeMap<String, String>,
    ) -> Result<Freshness> {
        let manifest = self.manifest()?;
        let current = self.artifact_checksum(name)?;
        let Some(record) = manifest.artifacts.get(name) else {
            return Ok(match current {
                Some(_) => Freshness::Unrecorded,
                None => Freshness::Missing,
            });
        };
        if current.is_some()
            && !record.checksum.is_empty()
            && let Some((path, how)) = self.changed_part(name, &record.checksum)?
        {
            return Err(Error::Format {
                path,
                message: format!(
                    "artifact `{name}`: {how}. Delete the artifact's files to rebuild it"
                ),
            });
        }
        if &record.config != config {
            let diff = config_diff(&record.config, config);
            return Ok(Freshness::Stale(format!(
                "configuration changed ({})",
                diff.join(", ")
            )));
        }
        if &record.inputs != inputs {
            let changed: Vec<&String> = inputs
                .keys()
                .chain(record.inputs.keys())
                .filter(|k| inputs.get(*k) != record.inputs.get(*k))
                .collect();
            let mut changed: Vec<&str> = changed.into_iter().map(String::as_str).collect();
            changed.dedup();
            return Ok(Freshness::Stale(format!(
                "upstream changed: {}",
                changed.join(", ")
            )));
        }
        Ok(match current {
            // An interrupted build under the same configuration and inputs (SFT writes its
            // best epoch as it goes): the stage resumes from its checkpoint.
            Some(_) if record.checksum.is_empty() => Freshness::Missing,
            Some(_) => Freshness::Fresh,
            None => Freshness::Missing,
        })
    }

    /// Removes artifact `name`, its checkpoint and its log (before a rebuild).
    ///
    /// # Errors
    /// I/O errors naming the path.
    pub fn remove(&self, name: &str) -> Result<()> {
        for p in self.artifact_leftovers(name) {
            for q in [p.clone(), sibling(&p, ".old"), sibling(&p, ".tmp")] {
                let r = if q.is_dir() {
                    std::fs::remove_dir_all(&q)
                } else if q.exists() {
                    std::fs::remove_file(&q)
                } else {
                    Ok(())
                };
                r.map_err(|e| Error::Io {
                    path: q.clone(),
                    source: e,
                })?;
            }
        }
        let mut manifest = self.manifest()?;
        if manifest.artifacts.remove(name).is_some() {
            self.save_manifest(&manifest)?;
        }
        Ok(())
    }

    /// Records that artifact `name` is being built from `config` and `inputs` (an
    /// interrupted build then resumes only under the same ones).
    ///
    /// # Errors
    /// File errors.
    pub fn begin(
        &self,
        name: &str,
        config: &serde_json::Value,
        inputs: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.record(name, config, inputs, String::new())
    }

    /// Writes the manifest record of `name`.
    fn record(
        &self,
        name: &str,
        config: &serde_json::Value,
        inputs: &BTreeMap<String, String>,
        checksum: String,
    ) -> Result<()> {
        let mut manifest = self.manifest()?;
        manifest.version = 1;
        manifest.artifacts.insert(
            name.to_string(),
            ArtifactRecord {
                config: config.clone(),
                inputs: inputs.clone(),
                checksum,
            },
        );
        self.save_manifest(&manifest)
    }

    /// Records artifact `name` as built from `config` and `inputs`, with its checksum now.
    ///
    /// # Errors
    /// [`Error::Missing`] when the artifact does not exist; file errors.
    pub fn finish(
        &self,
        name: &str,
        config: &serde_json::Value,
        inputs: &BTreeMap<String, String>,
    ) -> Result<String> {
        let checksum = self
            .artifact_checksum(name)?
            .ok_or_else(|| Error::Missing {
                path: self.artifact_parts(name).swap_remove(0),
                hint: format!("artifact `{name}` was not written"),
            })?;
        self.record(name, config, inputs, checksum.clone())?;
        Ok(checksum)
    }

    /// The checksum the manifest recorded for finished artifact `name`.
    ///
    /// # Errors
    /// [`Error::Missing`] when the manifest has no finished record of it.
    pub fn recorded_checksum(&self, name: &str) -> Result<String> {
        self.manifest()?
            .artifacts
            .remove(name)
            .map(|r| r.checksum)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::Missing {
                path: self.manifest_file(),
                hint: format!("no finished record of artifact `{name}`"),
            })
    }

    /// Writes the run's prepared requests as a request-log folder `out`:
    /// `requests.jsonl` or `requests.parquet` after `format` (training, validation, then test requests, each
    /// [`glorank_data::LoggedRequest::from_sample`]: the serving request with the
    /// retriever's scores, the logged slate as `shown`, its `click`/`like`/`star`/`rating`
    /// feedback, ids `train-K`, `valid-K`, `test-K`) and the catalogs
    /// ([`glorank_data::write_catalogs`]: items with their stage-1 factors and content
    /// features, users with their attributes, the vocabularies) and, when the run has one,
    /// `config.toml`: the run's configuration reading the folder as a log
    /// ([`RunDir::exported_log_config`]); returns the number of requests.
    /// `glorank run --config OUT/config.toml --data-path OUT` reads the same requests, in the
    /// same order, with the same numbering of items and users, as the run did.
    ///
    /// # Errors
    /// A missing or changed dataset (named); file errors.
    pub fn export_request_log(&self, out: &Path, format: glorank_data::LogFormat) -> Result<usize> {
        self.verify(&["dataset"])?;
        let mut ds = glorank_data::PreparedDataset::load(self.root())?;
        ds.load_train()?;
        let rows = [
            ("train", &ds.train),
            ("valid", &ds.valid),
            ("test", &ds.test),
        ]
        .into_iter()
        .flat_map(|(split, samples)| samples.iter().enumerate().map(move |(k, s)| (split, k, s)))
        .map(|(split, k, s)| {
            glorank_data::LoggedRequest::from_sample(&ds, s, format!("{split}-{k}"))
        });
        let config = Self::exported_log_config();
        let file = out
            .join(LOG_REQUESTS_FILE)
            .with_extension(format.extension());
        let n = match format {
            glorank_data::LogFormat::Parquet => {
                glorank_data::write_request_log_parquet(&file, rows, &config.signals)?
            }
            _ => glorank_data::write_request_log(&file, rows)?,
        };
        glorank_data::write_catalogs(out, &ds)?;
        if let Some(mut config) = self.config()? {
            config.data.dataset = glorank_data::DatasetKind::Log;
            config.data.path = None;
            config.log = Self::exported_log_config();
            RunDir::new(out).write_config(&config)?;
        }
        Ok(n)
    }

    /// How [`RunDir::export_request_log`]'s logs are read as the run read its dataset: the
    /// signals `click` (the label), `like` and `star` (its grades) and `rating` (the order of
    /// demonstrations), each user's last request test and the one before validation.
    pub fn exported_log_config() -> glorank_data::LogConfig {
        glorank_data::LogConfig::default()
            .with_signals(&["click", "like", "star", "rating"], "click")
            .with_grades(&["like", "star"], Some("rating"))
            .with_split(glorank_data::LogSplit::User, 0.0, 0.0)
    }

    /// The manifest name of the run's policy directory `dir` (`sft`, `rl`, `las`), however
    /// the path is spelled; `None` for a directory outside the run's policies.
    pub(crate) fn policy_artifact(&self, dir: &Path) -> Option<&'static str> {
        let same = |a: &Path, b: &Path| {
            a == b
                || matches!(
                    (a.canonicalize(), b.canonicalize()),
                    (Ok(x), Ok(y)) if x == y
                )
        };
        [
            ("sft", self.policy_sft()),
            ("rl", self.policy_rl()),
            ("las", self.las().policy_sft()),
        ]
        .into_iter()
        .find(|(_, p)| same(p, dir))
        .map(|(name, _)| name)
    }

    /// Verifies a result file (`metrics.json` or `predictions.jsonl` of a run) against its
    /// run's manifest record of the evaluation, when the run recorded one; only that file
    /// is read (a file of another name, or outside a run, passes).
    ///
    /// # Errors
    /// [`Error::Format`] naming the file when its bytes changed; file errors.
    pub(crate) fn verify_result_file(path: &Path) -> Result<()> {
        let (Some(dir), Some(file @ (METRICS_FILE | PREDICTIONS_FILE))) =
            (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Ok(());
        };
        let run = RunDir::new(dir);
        if !run.manifest_file().exists() {
            return Ok(());
        }
        let Some(record) = run.manifest()?.artifacts.remove(EVALUATION) else {
            return Ok(());
        };
        let Some(sum) = record
            .checksum
            .split('+')
            .find_map(|part| part.strip_prefix(file)?.strip_prefix('='))
        else {
            return Ok(());
        };
        let now = glorank_nn::persist::file_checksum(path)?;
        if now != sum {
            return Err(Error::Format {
                path: path.to_path_buf(),
                message: format!("artifact `{EVALUATION}`: {}", changed(&now, sum)),
            });
        }
        Ok(())
    }

    /// Checks that the recorded artifacts `names` are unchanged (for loaders: `Reranker`,
    /// `glorank bench`); artifacts without a record pass.
    ///
    /// # Errors
    /// [`Error::Format`] naming the first artifact whose bytes changed.
    pub fn verify(&self, names: &[&str]) -> Result<()> {
        let manifest = self.manifest()?;
        for name in names.iter().filter(|n| !n.is_empty()) {
            let Some(record) = manifest.artifacts.get(*name) else {
                continue;
            };
            if record.checksum.is_empty() {
                continue;
            }
            if let Some((path, how)) = self.changed_part(name, &record.checksum)? {
                return Err(Error::Format {
                    path,
                    message: format!("artifact `{name}`: {how}"),
                });
            }
        }
        Ok(())
    }
}

/// How a file whose checksum is `current` differs from its `recorded` one, in words.
fn changed(current: &str, recorded: &str) -> String {
    format!(
        "changed since the run recorded it (checksum {current}, recorded {recorded}); it was edited or corrupted"
    )
}

/// For a directory part that changed, the file inside it that its own `checksums.json`
/// says changed (or went missing), when it says so; else the directory itself.
fn pinpoint(path: PathBuf, how: String) -> (PathBuf, String) {
    if path.is_dir()
        && let Err(glorank_nn::NnError::Format {
            path: file,
            message,
        }) = glorank_nn::persist::verify_checksums(&path)
    {
        return (
            file,
            format!("{message} (the directory changed since the run recorded it)"),
        );
    }
    (path, how)
}

/// `dir` with `suffix` appended to its last component.
fn sibling(p: &Path, suffix: &str) -> PathBuf {
    let mut name = p.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    p.with_file_name(name)
}
