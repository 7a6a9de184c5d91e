//! Helpers shared by the `glorank` crate's integration tests.

/// This crate's directory, read at run time (cargo sets `CARGO_MANIFEST_DIR` when it runs a
/// test) so that a test binary reused from another clone through a shared `CARGO_TARGET_DIR`
/// reads this clone's files; the compile-time value is the fallback.
#[allow(dead_code)] // not every test binary reads the crate's files
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}

/// A tiny pipeline configuration: a 120-user synthetic world, pools of 20, 2-level
/// semantic IDs, one-layer models and a few steps of each stage (LAS and a beam of 4 at
/// evaluation).
#[allow(dead_code)] // not every test binary runs the pipeline
pub fn tiny() -> glorank::Config {
    let text = r#"
[eval]
las = true
beam = 4
[data]
users = 120
items = 150
sessions = 6
k_core = 5
history = 8
pool_size = 20
retriever_factors = 2
[tokenizer]
levels = 2
codes = 8
[policy]
d_model = 16
layers = 1
item_content = true
[evaluator]
epochs = 1
pool_lists = 1
[simulator]
epochs = 1
pool_lists = 1
[sft]
epochs = 2
[sft.optim]
batch_size = 32
[rl]
steps = 4
group_size = 4
eval_every = 2
checkpoint_every = 2
[rl.optim]
batch_size = 8
[baselines]
d_model = 16
epochs = 1
reinforce_samples = 2
"#;
    glorank::Config::from_toml(text, std::path::Path::new("tiny.toml")).unwrap()
}
