//! Seeded, reproducible module initialisation.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use std::sync::{Mutex, MutexGuard};

/// Serialises every use of the device RNG that must be reproducible: burn's random
/// initialisers and dropout draw from a device RNG that some backends keep process-wide, so
/// two models built or trained at once would interleave their draws (or one would reseed the
/// RNG in the middle of the other's initialisation).
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Holds [`INIT_LOCK`] (a panic elsewhere while holding it does not poison later users): for
/// every use of the device RNG, so that no draw lands between another thread's seeding of
/// the device and its own draws.
pub(crate) fn lock_device_rng() -> MutexGuard<'static, ()> {
    INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds a module with burn's initialisers seeded by `seed`, reproducibly.
///
/// burn draws initial weights from a device RNG that some backends keep process-wide, and
/// parameters initialise lazily on first use. This holds a process-wide lock, seeds the
/// device, builds the module and forces every parameter's initialisation in module order, so
/// the same seed gives the same weights even when other models are built concurrently.
pub fn init_seeded<M: Module>(device: &Device, seed: u64, build: impl FnOnce() -> M) -> M {
    let _guard = lock_device_rng();
    device.seed(seed);
    let module = build();
    module.visit(&mut Materialize);
    module
}

/// Forces the lazy initialisation of every float parameter.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}
