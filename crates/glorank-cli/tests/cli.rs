//! End-to-end tests of the `glorank` binary.

use std::process::Command;

fn glorank() -> Command {
    Command::new(env!("CARGO_BIN_EXE_glorank"))
}

#[test]
fn prepare_synthetic_writes_run_directory_and_prints_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = glorank()
        .args([
            "prepare",
            "--dataset",
            "synthetic",
            "--users",
            "60",
            "--items",
            "150",
        ])
        .args([
            "--sessions",
            "4",
            "--k-core",
            "5",
            "--history",
            "20",
            "--pool-size",
            "30",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "users",
        "items",
        "interactions",
        "slates",
        "mean positives",
        "retriever recall@30",
        "wall time",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    let ds = glorank_data::PreparedDataset::load(dir.path()).unwrap();
    assert_eq!(ds.test.len(), 60);
    assert_eq!(ds.config.pool_size, 30);
    assert!(dir.path().join("summary.json").exists());
}

#[test]
fn errors_are_reported_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let out = glorank()
        .args(["prepare", "--dataset", "ml-1m", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--path is required for --dataset ml-1m"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("u.data"), "1\t2\tfive\t3\n").unwrap();
    let out = glorank()
        .args(["prepare", "--dataset", "ml-100k", "--path"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("u.data:1: field `rating`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
