//! Choosing a compute device by name.

use crate::{NnError, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The compute backends a GloRank build can run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Backend {
    /// burn's pure-Rust `flex` CPU backend (the default).
    #[default]
    Flex,
    /// burn's deprecated `ndarray` CPU backend (needs the `ndarray` feature).
    Ndarray,
    /// A GPU through wgpu, the default adapter (needs the `wgpu` feature).
    Wgpu,
}

impl Backend {
    /// Every backend, compiled in or not.
    pub const ALL: &'static [Self] = &[Self::Flex, Self::Ndarray, Self::Wgpu];

    /// The name used in configuration files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
        }
    }

    /// The (plain, non-autodiff) device of this backend.
    ///
    /// # Errors
    /// [`NnError::InvalidInput`] when this build lacks the backend's cargo feature.
    pub fn device(self) -> Result<Device> {
        match self {
            Self::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Self::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[allow(unreachable_patterns)]
            other => Err(NnError::InvalidInput(format!(
                "device `{other}` needs glorank built with `--features {other}`"
            ))),
        }
    }
}

/// Whether `device` is one of the CPU backends (`flex`, or `ndarray` when built with it),
/// whose models the host inference paths ([`crate::host`]) can run faster.
pub fn is_host_device(device: &Device) -> bool {
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if *device == Device::ndarray() {
        return true;
    }
    *device == Device::flex()
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = NnError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                NnError::InvalidInput(format!(
                    "unknown device `{s}` (expected flex, ndarray or wgpu)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_flex_is_always_there() {
        for &b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        assert!(Backend::Flex.device().is_ok());
        assert!("tpu".parse::<Backend>().is_err());
    }
}
