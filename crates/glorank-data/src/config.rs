//! The typed data configuration shared by every front-end: which dataset, where it is, and
//! how the protocol cuts it. `glorank prepare`, the `[data]` section of a pipeline TOML file
//! and library users all build a [`DataConfig`]; its [`Default`] holds every default once.

use crate::{
    CsvConfig, DataError, DatasetSource, LabelThresholds, ProtocolConfig, Result, RetrieverConfig,
    SyntheticConfig,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Implements `Display` (the configuration name) and `FromStr` (the same names, ASCII case
/// insensitive) for a fieldless choice enum.
macro_rules! named_choice {
    ($ty:ident, $field:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// Every choice, in documentation order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name used in configuration files and on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = DataError;

            fn from_str(s: &str) -> Result<Self> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| {
                        let names: Vec<&str> = Self::ALL.iter().map(|c| c.name()).collect();
                        DataError::config(
                            $field,
                            format!("unknown value `{s}` (expected one of {})", names.join(", ")),
                        )
                    })
            }
        }
    };
}

/// Dataset formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DatasetKind {
    /// The embedded synthetic world (no file needed; the default).
    #[default]
    Synthetic,
    /// MovieLens-1M folder (`ratings.dat`, `movies.dat`, `users.dat`).
    #[serde(rename = "ml-1m")]
    Ml1m,
    /// MovieLens-100K folder (`u.data`, `u.item`, `u.user`).
    #[serde(rename = "ml-100k")]
    Ml100k,
    /// Amazon ratings CSV (`user,item,rating,timestamp`).
    Amazon,
    /// Implicit `user item item ...` file, or a folder with `train.txt`/`test.txt`.
    Implicit,
    /// A generic CSV with a header row; see [`DataConfig::csv`].
    Csv,
    /// A request log (JSON Lines: a file, or a folder of parts and catalogs), read as the
    /// `[log]` section says; see [`crate::prepare_log`].
    Log,
}

named_choice!(DatasetKind, "data.dataset", [
    Synthetic => "synthetic",
    Ml1m => "ml-1m",
    Ml100k => "ml-100k",
    Amazon => "amazon",
    Implicit => "implicit",
    Csv => "csv",
    Log => "log",
]);

/// Which item vectors the tokenizer learns semantic IDs from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum VectorKind {
    /// Content followed by MF factors when the data has content features, MF factors
    /// otherwise (the default).
    #[default]
    Auto,
    /// Genres, year and hashed title words.
    Content,
    /// The stage-1 retriever's item factors.
    Mf,
    /// Content followed by MF factors.
    Concat,
}

named_choice!(VectorKind, "tokenizer.vectors", [
    Auto => "auto",
    Content => "content",
    Mf => "mf",
    Concat => "concat",
]);

impl VectorKind {
    /// The concrete source for a dataset that has (`has_content`) or lacks content features,
    /// with `title_buckets` hashed title-word buckets in content vectors.
    pub fn source(self, has_content: bool, title_buckets: usize) -> crate::ItemVectorSource {
        use crate::ItemVectorSource as S;
        match self {
            Self::Auto if has_content => S::Concat { title_buckets },
            Self::Auto | Self::Mf => S::MfFactors,
            Self::Content => S::Content { title_buckets },
            Self::Concat => S::Concat { title_buckets },
        }
    }
}

/// Where the interactions come from and how the protocol cuts them (the `[data]` section of
/// a pipeline file, and `glorank prepare`'s options).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DataConfig {
    /// Dataset format (default `synthetic`).
    pub dataset: DatasetKind,
    /// Path of the data (required for every format but `synthetic`).
    pub path: Option<PathBuf>,
    /// Synthetic world: users (default 2,000).
    pub users: usize,
    /// Synthetic world: items (default 1,000).
    pub items: usize,
    /// Synthetic world: logged slates per user (default 10).
    pub sessions: usize,
    /// Synthetic world: softmax temperature of the behaviour policy that chose the logged
    /// slates (default 1.5; see [`SyntheticConfig::behaviour_temperature`]). Left out of
    /// the serialised section at its default, so run directories from before the option
    /// stay fresh.
    #[serde(skip_serializing_if = "is_default_temperature")]
    pub behaviour_temperature: f64,
    /// Synthetic world: every candidate gets feedback from the true click model, not only
    /// the logged slate (default false; see [`SyntheticConfig::pool_feedback`]). Left out of
    /// the serialised section when false, so run directories from before the option stay
    /// fresh.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pool_feedback: bool,
    /// k-core filter (default 20).
    pub k_core: usize,
    /// Items per list L (default 6).
    pub slate_len: usize,
    /// Longest history (default 50).
    pub history: usize,
    /// Candidates per request N (default 50).
    pub pool_size: usize,
    /// Latent factors of the stage-1 MF retriever (default 32).
    pub retriever_factors: usize,
    /// ALS sweeps of the retriever (default 10).
    pub retriever_iterations: usize,
    /// L2 regularisation of the retriever (default 0.1).
    pub retriever_regularization: f32,
    /// Confidence weight of observed pairs in the retriever (default 10).
    pub retriever_alpha: f32,
    /// Seed of the world (synthetic), the retriever and the candidate shuffling (default 0).
    pub seed: u64,
    /// Out-of-sample reranker training: only each user's last K train slates train the
    /// reranker, and the retriever is fitted before them (default 0: off, every train slate;
    /// see [`ProtocolConfig::rerank_train_slates`]).
    pub rerank_train_slates: usize,
    /// Whether retrieved candidates exclude the history window as well as the slate (default
    /// true; false in the "paper" preset, see [`ProtocolConfig::pool_excludes_history`]).
    pub pool_excludes_history: bool,
    /// The user id as a categorical user feature, so every model learns a user-ID embedding
    /// (default false; true in the "paper" preset, see [`ProtocolConfig::user_id_feature`]).
    pub user_id_feature: bool,
    /// The held-out-items cold-start protocol: the share of items that loses every
    /// interaction before the test slates (default 0: off; the cold-start presets use 0.1;
    /// see [`ProtocolConfig::held_out_share`]). Left out of the serialised section at 0, so
    /// run directories from before the option stay fresh.
    #[serde(skip_serializing_if = "is_zero")]
    pub held_out_share: f64,
    /// Rating thresholds of click, like and star (`[data.labels]`; default 3, 4, 5).
    pub labels: LabelThresholds,
    /// Column layout for `dataset = "csv"` (`[data.csv]`).
    pub csv: CsvConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        let retriever = RetrieverConfig::default();
        Self {
            dataset: DatasetKind::Synthetic,
            path: None,
            users: 2000,
            items: 1000,
            sessions: 10,
            behaviour_temperature: SyntheticConfig::default().behaviour_temperature,
            pool_feedback: false,
            k_core: 20,
            slate_len: 6,
            history: 50,
            pool_size: 50,
            retriever_factors: retriever.factors,
            retriever_iterations: retriever.iterations,
            retriever_regularization: retriever.regularization,
            retriever_alpha: retriever.alpha,
            seed: 0,
            rerank_train_slates: 0,
            pool_excludes_history: true,
            user_id_feature: false,
            held_out_share: 0.0,
            labels: LabelThresholds::default(),
            csv: CsvConfig::default(),
        }
    }
}

/// Whether `t` is the synthetic world's default behaviour temperature.
fn is_default_temperature(t: &f64) -> bool {
    *t == SyntheticConfig::default().behaviour_temperature
}

/// Whether `x` is zero (an option left at its "off" default).
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Bytes as GiB.
fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`), where the system tells it.
pub fn machine_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Upper bounds of [`DataConfig`]'s sizes, checked before anything is allocated.
pub mod limits {
    /// Most users (synthetic world).
    pub const MAX_USERS: usize = 10_000_000;
    /// Most items (synthetic world).
    pub const MAX_ITEMS: usize = 10_000_000;
    /// Most interactions the synthetic world may generate (users x sessions x slate length).
    pub const MAX_INTERACTIONS: usize = 1 << 31;
    /// Longest slate, history and candidate pool.
    pub const MAX_POSITIONS: usize = 4096;
    /// Most retriever factors.
    pub const MAX_FACTORS: usize = 4096;
    /// Most retriever sweeps.
    pub const MAX_ITERATIONS: usize = 100_000;
}

impl DataConfig {
    /// Checks every size against [`limits`] (and that sizes are positive) before anything is
    /// allocated.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] naming `data.FIELD`.
    pub fn validate(&self) -> Result<()> {
        use limits::*;
        let bounds = [
            ("data.users", self.users, 1, MAX_USERS),
            ("data.items", self.items, 1, MAX_ITEMS),
            ("data.sessions", self.sessions, 1, MAX_POSITIONS),
            ("data.slate_len", self.slate_len, 1, MAX_POSITIONS),
            ("data.history", self.history, 0, MAX_POSITIONS),
            ("data.pool_size", self.pool_size, 2, MAX_POSITIONS),
            (
                "data.retriever_factors",
                self.retriever_factors,
                1,
                MAX_FACTORS,
            ),
            (
                "data.retriever_iterations",
                self.retriever_iterations,
                1,
                MAX_ITERATIONS,
            ),
        ];
        for (field, value, min, max) in bounds {
            if value < min || value > max {
                return Err(DataError::config(
                    field,
                    format!("{value} is outside {min}..={max}"),
                ));
            }
        }
        let generated = self
            .users
            .saturating_mul(self.sessions)
            .saturating_mul(self.slate_len);
        if !(self.behaviour_temperature.is_finite() && self.behaviour_temperature > 0.0) {
            return Err(DataError::config(
                "data.behaviour_temperature",
                format!("must be positive, got {}", self.behaviour_temperature),
            ));
        }
        crate::cut::check_held_out_share(self.held_out_share, "data.held_out_share")?;
        if self.dataset == DatasetKind::Synthetic && generated > MAX_INTERACTIONS {
            return Err(DataError::config(
                "data.users",
                format!(
                    "users x sessions x slate_len = {generated} interactions exceeds the limit of {MAX_INTERACTIONS}"
                ),
            ));
        }
        if let (Some(need), Some(have)) = (self.memory_estimate(), machine_memory_bytes())
            && need > have
        {
            return Err(DataError::config(
                "data.users",
                format!(
                    "this synthetic world needs at least {:.1} GiB by its estimate (world, log and \
                     requests of {} users x {} items x {} sessions), more than this machine's {:.1} GiB",
                    gib(need),
                    self.users,
                    self.items,
                    self.sessions,
                    gib(have)
                ),
            ));
        }
        Ok(())
    }

    /// A lower bound, in bytes, of the memory a synthetic world of this configuration takes
    /// while it is prepared: its item and user factors and content, its logged interactions,
    /// the prepared requests (pools, histories, lists) and the retriever's factors. `None`
    /// for datasets read from files (their size is known only once read).
    pub fn memory_estimate(&self) -> Option<u64> {
        if self.dataset != DatasetKind::Synthetic {
            return None;
        }
        let d = crate::SyntheticConfig::default().latent_dim as u64;
        let (users, items) = (self.users as u64, self.items as u64);
        let requests = users.saturating_mul(self.sessions as u64);
        let world = items
            .saturating_mul(8 * d + 136)
            .saturating_add(users.saturating_mul(8 * d + 8));
        let log = requests
            .saturating_mul(self.slate_len as u64)
            .saturating_mul(std::mem::size_of::<crate::Interaction>() as u64);
        let per_request =
            16 * self.pool_size as u64 + 8 * (self.history + self.slate_len) as u64 + 64;
        let samples = requests.saturating_mul(per_request);
        let retriever = (users + items).saturating_mul(8 * self.retriever_factors as u64);
        Some(
            world
                .saturating_add(log)
                .saturating_add(samples)
                .saturating_add(retriever),
        )
    }

    /// The dataset to read.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] naming `data.path` when a file format has no path, or
    /// a size out of [`limits`].
    pub fn source(&self) -> Result<DatasetSource> {
        self.validate()?;
        let path = || {
            self.path.clone().ok_or_else(|| {
                DataError::config(
                    "data.path",
                    format!("required for dataset `{}`", self.dataset),
                )
            })
        };
        Ok(match self.dataset {
            DatasetKind::Synthetic => {
                let mut c = SyntheticConfig::small(self.users, self.items)
                    .with_seed(self.seed)
                    .with_sessions(self.sessions);
                c.slate_len = self.slate_len;
                c.behaviour_temperature = self.behaviour_temperature;
                c.pool_feedback = self.pool_feedback;
                DatasetSource::Synthetic(c)
            }
            DatasetKind::Ml1m => DatasetSource::Ml1m(path()?),
            DatasetKind::Ml100k => DatasetSource::Ml100k(path()?),
            DatasetKind::Amazon => DatasetSource::Amazon(path()?),
            DatasetKind::Implicit => DatasetSource::Implicit(path()?),
            DatasetKind::Csv => DatasetSource::Csv(path()?, self.csv.clone()),
            DatasetKind::Log => DatasetSource::Log(path()?, crate::LogConfig::default()),
        })
    }

    /// The protocol (shape, seed, k-core, labels, retriever) to prepare with.
    pub fn protocol(&self) -> ProtocolConfig {
        ProtocolConfig::default()
            .with_seed(self.seed)
            .with_k_core(self.k_core)
            .with_shape(self.slate_len, self.history, self.pool_size)
            .with_thresholds(self.labels)
            .with_retriever(
                RetrieverConfig::default()
                    .with_factors(self.retriever_factors)
                    .with_iterations(self.retriever_iterations)
                    .with_weights(self.retriever_regularization, self.retriever_alpha),
            )
            .with_rerank_train_slates(self.rerank_train_slates)
            .with_pool_excluding_history(self.pool_excludes_history)
            .with_user_id_feature(self.user_id_feature)
            .with_held_out_share(self.held_out_share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synthetic_world_larger_than_the_machine_is_refused() {
        let c = DataConfig {
            users: limits::MAX_USERS,
            items: limits::MAX_ITEMS,
            ..DataConfig::default()
        };
        let need = c.memory_estimate().unwrap();
        // 10^7 users x 10^7 items with the default sessions: over 100 GiB by the estimate.
        assert!(need > 100 << 30, "{need}");
        if let Some(have) = machine_memory_bytes()
            && need > have
        {
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("GiB by its estimate") && e.contains("data.users"),
                "{e}"
            );
        }
        // The default world is far below any machine.
        assert!(DataConfig::default().memory_estimate().unwrap() < 1 << 30);
        assert!(DataConfig::default().validate().is_ok());
        // Datasets read from files have no estimate before they are read.
        let file = DataConfig {
            dataset: DatasetKind::Ml100k,
            ..DataConfig::default()
        };
        assert_eq!(file.memory_estimate(), None);
    }

    #[test]
    fn the_behaviour_temperature_reaches_the_world_and_is_checked() {
        let mut c = DataConfig {
            behaviour_temperature: 0.3,
            ..DataConfig::default()
        };
        match c.source().unwrap() {
            DatasetSource::Synthetic(w) => assert_eq!(w.behaviour_temperature, 0.3),
            other => panic!("{other:?}"),
        }
        c.behaviour_temperature = 0.0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("data.behaviour_temperature"), "{err}");
    }

    #[test]
    fn pool_feedback_reaches_the_world_and_is_left_out_when_off() {
        let c = DataConfig {
            pool_feedback: true,
            ..DataConfig::default()
        };
        match c.source().unwrap() {
            DatasetSource::Synthetic(w) => assert!(w.pool_feedback),
            other => panic!("{other:?}"),
        }
        let on = serde_json::to_string(&c).unwrap();
        let off = serde_json::to_string(&DataConfig::default()).unwrap();
        assert!(on.contains("\"pool_feedback\":true"), "{on}");
        assert!(!off.contains("pool_feedback"), "{off}");
    }

    #[test]
    fn choices_round_trip_through_their_names() {
        for &k in DatasetKind::ALL {
            assert_eq!(k.name().parse::<DatasetKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
        for &v in VectorKind::ALL {
            assert_eq!(v.to_string().parse::<VectorKind>().unwrap(), v);
        }
        let err = "ml-2m".parse::<DatasetKind>().unwrap_err().to_string();
        assert!(
            err.contains("data.dataset") && err.contains("ml-100k"),
            "{err}"
        );
    }

    #[test]
    fn a_file_format_needs_a_path() {
        let mut c = DataConfig {
            dataset: DatasetKind::Ml100k,
            ..DataConfig::default()
        };
        let err = c.source().unwrap_err().to_string();
        assert!(err.contains("data.path"), "{err}");
        c.path = Some("/data".into());
        assert_eq!(c.source().unwrap(), DatasetSource::Ml100k("/data".into()));
    }

    #[test]
    fn absurd_sizes_are_refused_before_allocation() {
        let mut c = DataConfig {
            users: 1_000_000_000,
            ..DataConfig::default()
        };
        let e = c.source().unwrap_err().to_string();
        assert!(e.contains("data.users"), "{e}");
        c.users = 2000;
        c.pool_size = 1 << 20;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("data.pool_size")
        );
        assert!(DataConfig::default().validate().is_ok());
    }

    #[test]
    fn the_default_protocol_is_the_protocol_default() {
        let p = DataConfig::default().protocol();
        let d = ProtocolConfig::default();
        assert_eq!(p.retriever, d.retriever);
        assert_eq!(p.thresholds, d.thresholds);
    }
}
