//! Learning-rate schedules: a linear warmup, then a constant, linear or cosine rate.
//!
//! The rate of a step is a pure function of the step index and the run's planned length, so
//! a resumed run applies exactly the rates an uninterrupted one would.
//!
//! ```
//! use glorank_train::{LrDecay, LrSchedule};
//!
//! let s = LrSchedule { warmup_steps: 10, decay: LrDecay::Cosine, final_factor: 0.1 };
//! assert_eq!(s.factor(0, 100), 0.1); // first warmup step: 1/10 of the base rate
//! assert_eq!(s.factor(9, 100), 1.0); // warmup done
//! assert!((s.factor(99, 100) - 0.1).abs() < 1e-12); // last step: final_factor
//! # s.validate("sft.schedule")?;
//! # Ok::<(), glorank_train::TrainError>(())
//! ```

use crate::Result;
use crate::config::{check, check_max};
use serde::{Deserialize, Serialize};

/// How the rate falls after the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LrDecay {
    /// The base rate to the end (the default).
    #[default]
    None,
    /// A straight line from the base rate to `final_factor` of it at the last step.
    Linear,
    /// Half a cosine from the base rate to `final_factor` of it at the last step.
    Cosine,
}

/// A learning-rate schedule, as factors of a trainer's base rate.
///
/// The default (no warmup, no decay) keeps the base rate at every step. Read from TOML as,
/// for example, `[sft.schedule]` with `warmup_steps = 50`, `decay = "cosine"`,
/// `final_factor = 0.1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LrSchedule {
    /// Steps over which the rate climbs linearly to the base rate: step `s < warmup_steps`
    /// runs at `(s + 1) / warmup_steps` of it (default 0: no warmup).
    pub warmup_steps: usize,
    /// The decay after the warmup (default none).
    pub decay: LrDecay,
    /// The rate at the run's last planned step, as a fraction of the base rate, for a
    /// decaying schedule; in `[0, 1]` (default 0.1).
    pub final_factor: f64,
}

impl Default for LrSchedule {
    fn default() -> Self {
        Self {
            warmup_steps: 0,
            decay: LrDecay::None,
            final_factor: 0.1,
        }
    }
}

impl LrSchedule {
    /// The base rate's factor at step `step` (from 0) of a run planned for `total` steps.
    /// The decay spans the steps after the warmup, reaching `final_factor` at step
    /// `total - 1`; steps beyond the plan keep `final_factor`.
    pub fn factor(&self, step: u64, total: u64) -> f64 {
        let warmup = self.warmup_steps as u64;
        if step < warmup {
            return (step + 1) as f64 / warmup as f64;
        }
        let span = total.saturating_sub(warmup + 1);
        let t = if span == 0 {
            1.0
        } else {
            ((step - warmup) as f64 / span as f64).min(1.0)
        };
        let f = self.final_factor;
        match self.decay {
            LrDecay::None => 1.0,
            LrDecay::Linear => 1.0 - (1.0 - f) * t,
            LrDecay::Cosine => f + (1.0 - f) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
        }
    }

    /// The learning rate of step `step` of `total`: `base` times [`LrSchedule::factor`].
    pub fn rate(&self, base: f64, step: u64, total: u64) -> f64 {
        base * self.factor(step, total)
    }

    /// Checks the values; `section` prefixes the field names in errors (e.g.
    /// `sft.schedule`).
    ///
    /// # Errors
    /// [`crate::TrainError::InvalidConfig`] naming the field.
    pub fn validate(&self, section: &str) -> Result<()> {
        check(
            &format!("{section}.final_factor"),
            (0.0..=1.0).contains(&self.final_factor),
            "must be in [0, 1]",
        )?;
        check_max(
            &format!("{section}.warmup_steps"),
            self.warmup_steps,
            glorank_nn::limits::MAX_STEPS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(warmup_steps: usize, decay: LrDecay) -> LrSchedule {
        LrSchedule {
            warmup_steps,
            decay,
            final_factor: 0.2,
        }
    }

    #[test]
    fn default_keeps_the_base_rate() {
        let s = LrSchedule::default();
        for step in [0, 1, 50, 99, 500] {
            assert_eq!(s.factor(step, 100), 1.0);
        }
    }

    #[test]
    fn warmup_climbs_linearly_then_holds() {
        let s = schedule(4, LrDecay::None);
        let f: Vec<f64> = (0..6).map(|k| s.factor(k, 10)).collect();
        assert_eq!(f, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn decays_reach_the_final_factor_at_the_last_step() {
        for decay in [LrDecay::Linear, LrDecay::Cosine] {
            let s = schedule(2, decay);
            // Step 2 is the first after the warmup: the full rate.
            assert!((s.factor(2, 12) - 1.0).abs() < 1e-12);
            assert!((s.factor(11, 12) - 0.2).abs() < 1e-12);
            assert!((s.factor(40, 12) - 0.2).abs() < 1e-12);
            // Monotone after the warmup.
            let f: Vec<f64> = (2..12).map(|k| s.factor(k, 12)).collect();
            assert!(f.windows(2).all(|w| w[1] < w[0]), "{decay:?}: {f:?}");
        }
        // Halfway through the decay: linear at the midpoint, cosine too (cos(pi/2) = 0).
        let (lin, cos) = (schedule(0, LrDecay::Linear), schedule(0, LrDecay::Cosine));
        assert!((lin.factor(5, 11) - 0.6).abs() < 1e-12);
        assert!((cos.factor(5, 11) - 0.6).abs() < 1e-12);
        // A quarter in, the cosine is still above the line.
        assert!(cos.factor(2, 9) > lin.factor(2, 9));
    }

    #[test]
    fn short_runs_do_not_divide_by_zero() {
        let s = schedule(3, LrDecay::Cosine);
        for total in 0..5 {
            for step in 0..6 {
                let f = s.factor(step, total);
                assert!(f.is_finite() && f > 0.0, "step {step} of {total}: {f}");
            }
        }
    }

    #[test]
    fn invalid_values_are_refused_by_name() {
        let mut s = LrSchedule {
            final_factor: 1.5,
            ..LrSchedule::default()
        };
        let e = s.validate("sft.schedule").unwrap_err().to_string();
        assert!(e.contains("sft.schedule.final_factor"), "{e}");
        s.final_factor = f64::NAN;
        assert!(s.validate("rl.schedule").is_err());
        s.final_factor = 0.0;
        s.validate("sft.schedule").unwrap();
    }

    #[test]
    fn reads_from_toml() {
        let s: LrSchedule =
            toml::from_str("warmup_steps = 5\ndecay = \"cosine\"\nfinal_factor = 0.05").unwrap();
        assert_eq!(
            s,
            LrSchedule {
                warmup_steps: 5,
                decay: LrDecay::Cosine,
                final_factor: 0.05
            }
        );
        assert!(toml::from_str::<LrSchedule>("warmup = 5").is_err());
        assert!(toml::from_str::<LrSchedule>("decay = \"step\"").is_err());
    }
}
