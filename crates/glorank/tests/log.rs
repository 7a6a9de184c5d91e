//! A request log as the pipeline's input: a run on the log exported from a run gives the
//! same test metrics as that run (with the training requests kept on disk), and a log's
//! own reference rows and errors.

mod common;

use common::tiny;
use glorank::{Config, Pipeline, RunDir};

/// Every figure of a row, as text (so a difference shows which).
fn figures(row: &glorank::evaluation::MethodResult) -> String {
    format!(
        "{:?} | {:?} | {:?} | {:?}",
        row.metrics, row.average_reward, row.true_reward, row.logged_auc
    )
}

#[test]
fn a_run_on_its_exported_log_gives_the_same_test_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let native_dir = dir.path().join("native");
    let native = Pipeline::new(tiny()).run(&native_dir).unwrap();
    let log = dir.path().join("log");
    let n = RunDir::new(&native_dir)
        .export_request_log(&log, glorank::LogFormat::Parquet)
        .unwrap();
    assert!(n > 0);
    let mut config = Config::from_file(&log.join("config.toml")).unwrap();
    assert_eq!(config.data.dataset, glorank::DatasetKind::Log);
    config.data.path = Some(log.clone());
    // The training requests kept on disk: SFT reads them a batch at a time, the other
    // stages load them; nothing of the table may change.
    config.log.store = glorank::data::LogStore::Disk;
    let again = Pipeline::new(config)
        .run(&dir.path().join("from-log"))
        .unwrap();
    let prepared = glorank::data::PreparedDataset::load(&dir.path().join("from-log")).unwrap();
    assert!(prepared.train_on_disk() && prepared.train.is_empty());
    let mut compared = 0;
    for row in &native.rows {
        // The same rule under a log's name: candidates by the log's retriever scores.
        let name = match row.name.as_str() {
            "MF order" => "retriever order",
            // Popularity counts an item's training interactions in a rating dataset, its
            // showings in training requests in a log: two definitions.
            "popularity" => continue,
            other => other,
        };
        let twin = again
            .rows
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row `{name}` on the log"));
        assert_eq!(figures(twin), figures(row), "{name}");
        compared += 1;
    }
    // Every learned row (GloRank SFT, SFT+RL, LAS, PRM, Seq2Slate, DLCM), the rules and the
    // synthetic world's references.
    assert_eq!(compared, native.rows.len() - 1);
    // The log's own reference row: the shown list in display order.
    let logged = again
        .rows
        .iter()
        .find(|r| r.name == "logged order")
        .unwrap();
    assert!(logged.logged_auc.is_some());
}

#[test]
fn a_log_without_retriever_scores_runs_without_their_rows_and_refuses_them_as_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut base = tiny();
    base.eval.las = false;
    base.rl.steps = 2;
    // No catalog: no content features for the policy to read.
    base.policy.item_content = false;
    // Write a log by hand from a world's requests, dropping the scores, with a time split.
    let ds = glorank::testing::small_world(60, 80, 6);
    let rows: Vec<_> = ds
        .train
        .iter()
        .chain(&ds.valid)
        .chain(&ds.test)
        .enumerate()
        .map(|(k, s)| {
            let mut row = glorank::data::LoggedRequest::from_sample(&ds, s, format!("r{k}"));
            row.request.retriever_scores = None;
            row.timestamp = k as i64;
            row.feedback.retain(|signal, _| signal == "click");
            row
        })
        .collect();
    let log = dir.path().join("requests.jsonl");
    glorank::data::write_request_log(&log, &rows).unwrap();
    let mut config = base.clone();
    config.data.dataset = glorank::DatasetKind::Log;
    config.data.path = Some(log.clone());
    config.data.pool_size = 12;
    config.data.history = 8;
    let report = Pipeline::new(config.clone())
        .run(&dir.path().join("run"))
        .unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert!(names.contains(&"logged order") && names.contains(&"GloRank SFT+RL"));
    assert!(!names.contains(&"retriever order") && !names.contains(&"MF order"));
    // A time split: the latest 10% of the requests are test.
    let prepared = glorank::data::PreparedDataset::load(&dir.path().join("run")).unwrap();
    assert_eq!(prepared.test.len(), rows.len().div_ceil(10));
    // Models that read retriever scores are refused, naming the option.
    config.inputs.retriever_score = true;
    let e = Pipeline::new(config)
        .run(&dir.path().join("scores"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("inputs.retriever_score"), "{e}");
}
