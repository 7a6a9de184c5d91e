//! Helpers shared by the `glorank` crate's integration tests.

/// This crate's directory, read at run time (cargo sets `CARGO_MANIFEST_DIR` when it runs a
/// test) so that a test binary reused from another clone through a shared `CARGO_TARGET_DIR`
/// reads this clone's files; the compile-time value is the fallback.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
