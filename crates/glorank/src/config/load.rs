//! Reading the configuration tree from TOML: a document laid over a base configuration
//! (the defaults, a preset or a run's own configuration), keys of the earlier layout
//! refused with their new place, and `section.key=value` assignments.

use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Keys of the layout before the configuration tree had one root, and where each moved.
const MOVED: &[(&str, &str)] = &[
    ("eval_beam", "eval.beam"),
    ("run_baselines", "eval.baselines"),
    ("run_las", "eval.las"),
    ("policy.use_retriever_score", "inputs.retriever_score"),
    ("policy.retriever_input", "inputs.retriever_input"),
    ("policy.use_exposures", "inputs.exposures"),
    ("policy.user_lr_scale", "inputs.user_lr_scale"),
    ("baselines.use_retriever_score", "inputs.retriever_score"),
    ("baselines.retriever_input", "inputs.retriever_input"),
    ("baselines.use_exposures", "inputs.exposures"),
    ("baselines.user_lr_scale", "inputs.user_lr_scale"),
    ("evaluator.use_retriever_score", "inputs.retriever_score"),
    ("simulator.use_retriever_score", "inputs.retriever_score"),
];

/// The trainers' sections, whose optimiser settings moved into `SECTION.optim`.
const TRAINERS: [&str; 5] = ["sft", "rl", "evaluator", "simulator", "baselines"];

/// The optimiser settings that moved from a trainer's section into its `optim` table.
const OPTIM_KEYS: [&str; 7] = [
    "batch_size",
    "learning_rate",
    "schedule",
    "weight_decay",
    "grad_clip_norm",
    "shards",
    "seed",
];

/// An [`Error::Format`] about `origin`.
fn format_error(origin: &Path, message: impl Into<String>) -> Error {
    Error::Format {
        path: origin.to_path_buf(),
        message: message.into(),
    }
}

/// The keys of `doc` that belong to the earlier layout, each with its new place.
fn moved_keys(doc: &toml::Table) -> Vec<(String, String)> {
    let has = |path: &str| {
        let mut parts = path.split('.');
        let first = parts.next().unwrap_or_default();
        let mut v = doc.get(first);
        for p in parts {
            v = v.and_then(|x| x.as_table()).and_then(|t| t.get(p));
        }
        v.is_some()
    };
    let mut out: Vec<(String, String)> = MOVED
        .iter()
        .filter(|(old, _)| has(old))
        .map(|(old, new)| (old.to_string(), new.to_string()))
        .collect();
    for section in TRAINERS {
        for key in OPTIM_KEYS {
            let old = format!("{section}.{key}");
            if has(&old) {
                out.push((old, format!("{section}.optim.{key}")));
            }
        }
    }
    out
}

/// `over`'s keys laid into `base`: tables merge key by key, except a table naming a `kind`
/// (a tagged choice such as `sft.demonstrations`), which replaces the base's whole; every
/// other value replaces the base's.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) if !o.contains_key("kind") => {
                merge(b, o)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `text` laid over `base` (see [`super::Config::from_toml`]); the caller checks the values.
pub(super) fn parse_over<T: Serialize + DeserializeOwned>(
    base: &T,
    text: &str,
    origin: &Path,
) -> Result<T> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| format_error(origin, e.to_string()))?;
    let moved = moved_keys(&doc);
    if !moved.is_empty() {
        let list: Vec<String> = moved
            .iter()
            .map(|(old, new)| format!("`{old}` is now `{new}`"))
            .collect();
        return Err(format_error(
            origin,
            format!(
                "written for the earlier configuration layout: {} (docs/configuration.md)",
                list.join(", ")
            ),
        ));
    }
    // Unknown keys and wrong types, with the line and column of the file itself.
    toml::from_str::<T>(text).map_err(|e| format_error(origin, e.to_string()))?;
    let mut merged = match toml::Value::try_from(base) {
        Ok(toml::Value::Table(t)) => t,
        Ok(_) => toml::Table::new(),
        Err(e) => return Err(format_error(origin, format!("the base configuration: {e}"))),
    };
    merge(&mut merged, doc);
    toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| format_error(origin, e.to_string()))
}

/// `config` with one `section.key=value` assignment applied (see
/// [`super::Config::with_overrides`]); the caller checks the values.
pub(super) fn assign<T: Serialize + DeserializeOwned>(config: &T, assignment: &str) -> Result<T> {
    let bad = |message: String| Error::InvalidConfig {
        field: assignment.to_string(),
        message,
    };
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| bad("expected SECTION.KEY=VALUE".into()))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad(format!(
            "`{key}` is not SECTION.KEY (for example sft.epochs)"
        )));
    }
    let raw = raw.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| raw.into()),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let mut doc = toml::Table::new();
    doc.insert(parts[parts.len() - 1].to_string(), value);
    for p in parts[..parts.len() - 1].iter().rev() {
        let mut outer = toml::Table::new();
        outer.insert((*p).to_string(), toml::Value::Table(doc));
        doc = outer;
    }
    let text = toml::to_string(&doc).map_err(|e| bad(e.to_string()))?;
    parse_over(config, &text, Path::new(&format!("--set {assignment}")))
}
