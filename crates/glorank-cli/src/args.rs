//! The options every configuration-reading command shares: `--config FILE` and
//! `--set SECTION.KEY=VALUE`, named as the TOML keys they change.

use crate::error::CliError;
use glorank::{Config, RunDir};
use std::path::PathBuf;

/// A TOML configuration and single-key changes over it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// A TOML configuration (see `configs/`). Commands that act on a run lay it over the
    /// configuration the run was made with.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Change one key, after `--config` (repeatable): `--set sft.epochs=3`,
    /// `--set inputs.retriever_score=true`, `--set serve.decode=beam:4`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// `base` with the file laid over it, then the `--set` changes.
    pub fn over(&self, base: Config) -> Result<Config, CliError> {
        let c = match &self.config {
            Some(path) => base.overlay_file(path)?,
            None => base,
        };
        Ok(c.with_overrides(&self.set)?)
    }

    /// The configuration of a command acting on `run`: the run's own (`config.toml`), or
    /// that of the run its data comes from, or the defaults; then `--config` and `--set`.
    pub fn for_run(&self, run: &RunDir, data: Option<&RunDir>) -> Result<Config, CliError> {
        let base = match run.config()? {
            Some(c) => c,
            None => match data {
                Some(d) => d.config()?.unwrap_or_default(),
                None => Config::default(),
            },
        };
        self.over(base)
    }
}

/// `--run` and `--data`: the run directory a stage acts on, and where its prepared data
/// come from when it is another run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunDirArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Another run directory whose prepared dataset and semantic IDs this run uses (linked
    /// or copied in when the run lacks them).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

impl RunDirArgs {
    /// The run directory, with the artifacts `imports` of `--data` brought in when it has
    /// none (the dataset, and for the stages after it the semantic IDs); and the
    /// configuration `config` describes for it.
    pub fn open(
        &self,
        config: &ConfigArgs,
        imports: &[&str],
    ) -> Result<(RunDir, Config), CliError> {
        let run = RunDir::new(&self.run);
        let data = self.data.as_ref().map(RunDir::new);
        let c = config.for_run(&run, data.as_ref())?;
        if let Some(d) = &data {
            run.import(d, imports)?;
        }
        Ok((run, c))
    }
}
