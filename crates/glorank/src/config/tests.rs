//! The configuration tree: defaults, partial files, nested optimiser defaults, moved keys,
//! assignments, and every preset file of `configs/`.

use super::*;
use glorank_train::{Demonstrations, RewardSource};
use std::path::Path;

fn parse(text: &str) -> Result<Config> {
    Config::from_toml(text, Path::new("c.toml"))
}

#[test]
fn round_trip_and_partial_files() {
    for c in [Config::default(), Config::quick(), Config::demo()] {
        let back = parse(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }
    let partial = "[sft]\nepochs = 3\n[sft.demonstrations]\nkind = \"best-of-k\"\nk = 4\n\
                   [rl]\nreward = \"labels\"\n";
    let p = parse(partial).unwrap();
    assert_eq!(p.sft.epochs, 3);
    assert_eq!(p.sft.demonstrations, Demonstrations::BestOfK { k: 4 });
    assert_eq!(p.rl.reward, RewardSource::Labels);
    assert_eq!(p.rl.group_size, RlConfig::default().group_size);
    // A tagged choice replaces the base's whole table.
    let labels = Config::quick();
    let back = labels
        .overlay(
            "[sft.demonstrations]\nkind = \"logged\"\n",
            Path::new("o.toml"),
        )
        .unwrap();
    assert_eq!(back.sft.demonstrations, Demonstrations::Logged);
    let best = Config::default()
        .with_overrides(&["sft.demonstrations={kind=\"best-of-k\", k=8}"])
        .unwrap();
    assert_eq!(best.sft.demonstrations, Demonstrations::BestOfK { k: 8 });
}

#[test]
fn each_trainers_optim_table_starts_from_its_own_defaults() {
    let c = parse(
        "[rl.optim]\nbatch_size = 32\n[sft.optim]\nshards = 2\n[simulator.optim]\nshards = 1\n",
    )
    .unwrap();
    let d = Config::default();
    assert_eq!(c.rl.optim.batch_size, 32);
    assert_eq!(c.rl.optim.learning_rate, d.rl.optim.learning_rate);
    assert_eq!(c.rl.optim.weight_decay, 0.0);
    assert_eq!(c.sft.optim.grad_clip_norm, 1.0);
    assert_eq!(c.simulator.optim.seed, 1);
    // The nested schedule too.
    let s = parse("[sft.optim.schedule]\nwarmup_steps = 7\n").unwrap();
    assert_eq!(s.sft.optim.schedule.warmup_steps, 7);
    assert_eq!(s.sft.optim.schedule.final_factor, 0.1);
}

#[test]
fn keys_of_the_earlier_layout_name_their_new_place() {
    for (text, old, new) in [
        ("eval_beam = 8\n", "eval_beam", "eval.beam"),
        ("run_las = false\n", "run_las", "eval.las"),
        (
            "[policy]\nuse_retriever_score = true\n",
            "policy.use_retriever_score",
            "inputs.retriever_score",
        ),
        (
            "[baselines]\nuser_lr_scale = 10.0\n",
            "baselines.user_lr_scale",
            "inputs.user_lr_scale",
        ),
        (
            "[sft]\nlearning_rate = 0.002\n",
            "sft.learning_rate",
            "sft.optim.learning_rate",
        ),
        (
            "[rl]\nbatch_size = 8\n",
            "rl.batch_size",
            "rl.optim.batch_size",
        ),
        (
            "[sft.schedule]\nwarmup_steps = 2\n",
            "sft.schedule",
            "sft.optim.schedule",
        ),
        (
            "[simulator]\nseed = 1\n",
            "simulator.seed",
            "simulator.optim.seed",
        ),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.contains("c.toml") && e.contains(old) && e.contains(new),
            "{text}: {e}"
        );
    }
}

#[test]
fn errors_name_the_file_line_and_field() {
    let e = parse("[rl]\ngroup_sise = 4\n").unwrap_err().to_string();
    assert!(e.contains("c.toml") && e.contains("group_sise"), "{e}");
    assert!(e.contains("line 2"), "{e}");
    let e = parse("[sft]\nepochs = \"three\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("epochs"), "{e}");
    for (text, field) in [
        ("[sft.optim]\nbatch_size = 0\n", "sft.optim.batch_size"),
        ("[policy]\nheads = 3\n", "policy.heads"),
        ("[sft]\nvalid_beam = 0\n", "sft.valid_beam"),
        ("[rl]\nvalid_beam = 100000\n", "rl.valid_beam"),
        (
            "[sft.optim.schedule]\nfinal_factor = -1\n",
            "sft.optim.schedule.final_factor",
        ),
        ("[sft]\nlabel_loss = -0.5\n", "sft.label_loss"),
        ("[inputs]\nuser_lr_scale = -2.0\n", "inputs.user_lr_scale"),
        (
            "[sft]\nlabel_loss = 1.0\n[policy]\noutput_head = \"global\"\n",
            "sft.label_loss",
        ),
        ("[eval]\nbeam = 0\n", "eval.beam"),
        ("[serve]\nmax_batch = 0\n", "serve.max_batch"),
        ("[log]\nlabel = \"like\"\n", "log.label"),
        ("[log]\nsignals = []\n", "log.signals"),
        (
            "[serve]\nheader_timeout_ms = 0\n",
            "serve.header_timeout_ms",
        ),
        (
            "[serve]\nbody_timeout_ms = 7200000\n",
            "serve.body_timeout_ms",
        ),
        ("[serve]\nidle_timeout_ms = 0\n", "serve.idle_timeout_ms"),
        (
            "[serve]\nshutdown_grace_ms = 7200000\n",
            "serve.shutdown_grace_ms",
        ),
        (
            "[serve]\nmax_line_bytes = 1000000000000\n",
            "serve.max_line_bytes",
        ),
        ("[baselines]\nd_model = 30\n", "baselines.d_model"),
        (
            "[evaluator.optim]\nlearning_rate = -1.0\n",
            "evaluator.optim.learning_rate",
        ),
        ("[tokenizer]\nlevels = 1000\n", "tokenizer.levels"),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(field), "{text}: {e}");
    }
    let e = parse("[serve]\ndecode = \"beam:0\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("decode") || e.contains("beam"), "{e}");
}

#[test]
fn assignments_set_one_key_and_name_their_mistakes() {
    let c = Config::default()
        .with_overrides(&[
            "sft.epochs=3",
            "sft.optim.learning_rate=2e-3",
            "data.dataset=ml-1m",
            "data.path=/data/ml-1m",
            "tokenizer.codes_per_level=[64, 64, 32]",
            "serve.decode=beam:4",
            "serve.addr=0.0.0.0:9000",
            "inputs.retriever_input=score-and-rank",
        ])
        .unwrap();
    assert_eq!(c.sft.epochs, 3);
    assert_eq!(c.sft.optim.learning_rate, 2e-3);
    assert_eq!(c.data.dataset, glorank_data::DatasetKind::Ml1m);
    assert_eq!(c.data.path.as_deref(), Some(Path::new("/data/ml-1m")));
    assert_eq!(c.tokenizer.codes_per_level, vec![64, 64, 32]);
    assert_eq!(
        c.serve.decode,
        Some(glorank_trie::DecodeStrategy::Beam { width: 4 })
    );
    assert_eq!(c.serve.addr, "0.0.0.0:9000");
    // The rest keeps its values.
    assert_eq!(c.rl, Config::default().rl);
    for (bad, what) in [
        ("sft.epochs", "SECTION.KEY=VALUE"),
        ("epochs=3", "SECTION.KEY"),
        ("sft.epochz=3", "epochz"),
        ("sft.epochs=three", "sft.epochs"),
        ("sft.learning_rate=0.1", "sft.optim.learning_rate"),
        ("sft.epochs=0", "sft.epochs"),
    ] {
        let e = Config::default()
            .with_overrides(&[bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{bad}: {e}");
    }
}

#[test]
fn seeds_move_together() {
    let c = Config::default().with_seed(5);
    assert_eq!(
        (
            c.data.seed,
            c.policy.seed,
            c.sft.optim.seed,
            c.rl.optim.seed
        ),
        (5, 5, 5, 5)
    );
    assert_eq!(c.simulator.optim.seed, 6);
    assert_eq!(c.baselines.optim.seed, 5);
}

#[test]
fn every_preset_file_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 10, "{n} preset files in {}", dir.display());
}
