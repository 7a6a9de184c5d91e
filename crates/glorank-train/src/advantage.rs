//! Group-relative advantages (GRPO): each request's sampled lists are compared with each
//! other, not with a learned value function.

use crate::{Result, TrainError};

/// Advantages of a batch of groups.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAdvantages {
    /// One advantage per reward, in input order (0 for members of skipped groups).
    pub values: Vec<f32>,
    /// Groups whose rewards had zero variance (or a single member): they carry no learning
    /// signal and are skipped.
    pub skipped_groups: usize,
}

/// Group-relative advantages: rewards come in consecutive groups of `group_size` (the lists
/// sampled for one request); within each group
/// `A_i = (r_i - mean) / max(std, std_floor)` with the population standard deviation.
///
/// A group whose rewards are all equal (or that has one member) gets advantage 0 for every
/// member and counts as skipped, so no NaN ever appears.
///
/// # Errors
/// [`TrainError::InvalidInput`] when `group_size` is 0 or does not divide the number of
/// rewards, when `std_floor` is not positive, or when a reward is not finite.
pub fn group_advantages(
    rewards: &[f32],
    group_size: usize,
    std_floor: f32,
) -> Result<GroupAdvantages> {
    if group_size == 0 || !rewards.len().is_multiple_of(group_size) {
        return Err(TrainError::InvalidInput(format!(
            "{} rewards do not form groups of {group_size}",
            rewards.len()
        )));
    }
    if !(std_floor.is_finite() && std_floor > 0.0) {
        return Err(TrainError::InvalidInput(format!(
            "std_floor {std_floor} must be finite and > 0"
        )));
    }
    if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
        return Err(TrainError::InvalidInput(format!(
            "reward {i} is {}",
            rewards[i]
        )));
    }
    let mut values = Vec::with_capacity(rewards.len());
    let mut skipped_groups = 0;
    for group in rewards.chunks(group_size) {
        let n = group.len() as f64;
        let mean = group.iter().map(|&r| f64::from(r)).sum::<f64>() / n;
        let var = group
            .iter()
            .map(|&r| (f64::from(r) - mean).powi(2))
            .sum::<f64>()
            / n;
        if group.len() < 2 || var == 0.0 {
            skipped_groups += 1;
            values.extend(std::iter::repeat_n(0.0, group.len()));
            continue;
        }
        let scale = var.sqrt().max(f64::from(std_floor));
        values.extend(
            group
                .iter()
                .map(|&r| ((f64::from(r) - mean) / scale) as f32),
        );
    }
    Ok(GroupAdvantages {
        values,
        skipped_groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_rewards_give_zero_and_are_skipped() {
        let a = group_advantages(&[0.7; 8], 4, 1e-6).unwrap();
        assert_eq!(a.values, vec![0.0; 8]);
        assert_eq!(a.skipped_groups, 2);
    }

    #[test]
    fn one_sample_gives_zero() {
        let a = group_advantages(&[3.0, -1.0], 1, 1e-6).unwrap();
        assert_eq!(a.values, vec![0.0, 0.0]);
        assert_eq!(a.skipped_groups, 2);
    }

    #[test]
    fn hand_case_is_centred_and_scaled() {
        // mean 2, population std sqrt(2/3).
        let a = group_advantages(&[1.0, 2.0, 3.0], 3, 1e-6).unwrap();
        let s = (2.0f32 / 3.0).sqrt();
        assert!((a.values[0] + 1.0 / s).abs() < 1e-6);
        assert_eq!(a.values[1], 0.0);
        assert!((a.values[2] - 1.0 / s).abs() < 1e-6);
        assert_eq!(a.skipped_groups, 0);
    }

    #[test]
    fn tiny_spread_is_floored_not_blown_up() {
        let a = group_advantages(&[1.0, 1.0 + 1e-6], 2, 0.1).unwrap();
        assert!(a.values.iter().all(|v| v.is_finite() && v.abs() < 1e-4));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(group_advantages(&[1.0; 5], 2, 1e-6).is_err());
        assert!(group_advantages(&[1.0; 4], 0, 1e-6).is_err());
        assert!(group_advantages(&[1.0; 4], 2, 0.0).is_err());
        assert!(group_advantages(&[1.0, f32::NAN], 2, 1e-6).is_err());
    }
}
