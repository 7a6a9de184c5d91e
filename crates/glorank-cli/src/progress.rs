//! Progress on the terminal: indicatif bars for data preparation and training steps, and the
//! pipeline's decisions as timestamped lines, all on standard error.

use glorank::{Hooks, Progress, TrainObserver};
use indicatif::{ProgressBar, ProgressStyle};
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::Instant;

/// A [`Progress`] drawn with indicatif on stderr (hidden when stderr is not a terminal).
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        if self.quiet {
            return;
        }
        let bar = if total == 0 {
            let b = ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        } else {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:>18} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        };
        bar.set_message(name.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(b) = slot.as_ref()
        {
            b.inc(n);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(b) = slot.take()
        {
            b.finish_and_clear();
        }
    }
}

/// A progress bar over training steps; evaluations are printed above it.
pub struct StepBar {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl TrainObserver for StepBar {
    fn start(&mut self, stage: &str, total: u64, done: u64) {
        if self.quiet {
            return;
        }
        let b = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} steps, loss {msg} ({elapsed}, eta {eta})",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_prefix(stage.to_string());
        b.set_position(done);
        self.bar = Some(b);
    }

    fn step(&mut self, _step: u64, loss: f64) -> ControlFlow<()> {
        if let Some(b) = &self.bar {
            b.inc(1);
            b.set_message(format!("{loss:.4}"));
        }
        ControlFlow::Continue(())
    }

    fn evaluation(&mut self, record: &serde_json::Value) {
        match &self.bar {
            Some(b) => b.println(record.to_string()),
            None if !self.quiet => errln!("{record}"),
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Everything a pipeline call reports to: bars and timestamped lines (with `quiet`, only
/// the warnings).
pub struct Reporter {
    bars: Bars,
    steps: StepBar,
    start: Instant,
    quiet: bool,
}

impl Reporter {
    /// A reporter (silent with `quiet`).
    pub fn new(quiet: bool) -> Self {
        Self {
            bars: Bars {
                bar: Mutex::new(None),
                quiet,
            },
            steps: StepBar { bar: None, quiet },
            start: Instant::now(),
            quiet,
        }
    }

    /// The progress bars, for a call outside the pipeline.
    pub fn progress(&self) -> &dyn Progress {
        &self.bars
    }

    /// Seconds since the reporter started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Runs `f` with the pipeline hooks of this reporter.
    pub fn with_hooks<T>(&mut self, f: impl FnOnce(&mut Hooks<'_>) -> T) -> T {
        let (start, quiet) = (self.start, self.quiet);
        // Warnings are printed even when quiet.
        let mut say = |line: &str| {
            if !quiet || line.trim_start().starts_with("warning:") {
                errln!("[{:>6.1}s] {line}", start.elapsed().as_secs_f64());
            }
        };
        let mut hooks = Hooks::new(&mut self.steps, &self.bars, &mut say);
        f(&mut hooks)
    }
}
