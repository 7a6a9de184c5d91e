//! Load figures of the HTTP server against the in-process API: throughput and p50/p99
//! latency at 1, 8 and 64 concurrent clients over `POST /rerank`, beside `Reranker::rerank`
//! one request at a time and `Reranker::rerank_batch` in batches of 64.
//!
//! `cargo run --release -p glorank-examples --example serve_load -- RUN_DIR [SECONDS [MAX_WAIT_MS]]`
//!
//! With `--url http://HOST:PORT CLIENTS SECONDS` after RUN_DIR it only drives a server that
//! is already running (`glorank serve`, what `scripts/serve_load.sh` does): CLIENTS
//! concurrent clients for SECONDS, and one JSON line with the requests, the errors (answers
//! other than 200, and connections that failed) and the p50/p99 latency.
//!
//! RUN_DIR is a trained run (`glorank demo` writes `runs/demo`); the requests are its test
//! pools (user, history and candidates, as a serving system would send them). Clients and
//! server share the machine, as they would on one host; the table says how many threads
//! it has.

use glorank::data::PreparedDataset;
use glorank::{RerankRequest, Reranker};
use glorank_serve::{ServeConfig, Server};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The run's test pools as requests in item ids.
fn requests(ds: &PreparedDataset) -> Vec<RerankRequest> {
    ds.test
        .iter()
        .take(2000)
        .map(|s| RerankRequest::from_sample(ds, s))
        .collect()
}

/// p50 and p99 of `ms` (sorted in place).
fn percentiles(ms: &mut [f64]) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn row(what: &str, n: usize, secs: f64, ms: &mut [f64]) {
    let (p50, p99) = percentiles(ms);
    println!(
        "| {what} | {n} | {:.0} | {p50:.2} | {p99:.2} |",
        n as f64 / secs
    );
}

/// What `clients` concurrent clients got from `url` in `seconds`: each call's latency in
/// milliseconds and the number of calls answered other than 200 or not answered.
fn drive(url: &str, bodies: &[String], clients: usize, seconds: f64) -> (Vec<f64>, usize) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let per_client: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(30)))
                        .build()
                        .into();
                    let (mut ms, mut errors) = (Vec::new(), 0);
                    let mut k = c;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let ok = agent
                            .post(url)
                            .header("content-type", "application/json")
                            .send(bodies[k % bodies.len()].as_str())
                            .ok()
                            .and_then(|mut r| {
                                let status = r.status().as_u16();
                                r.body_mut().read_to_string().ok().map(|_| status == 200)
                            })
                            .unwrap_or(false);
                        ms.push(t.elapsed().as_secs_f64() * 1e3);
                        errors += usize::from(!ok);
                        k += clients;
                    }
                    (ms, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let errors = per_client.iter().map(|(_, e)| e).sum();
    (
        per_client.into_iter().flat_map(|(ms, _)| ms).collect(),
        errors,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir: PathBuf = args
        .next()
        .ok_or(
            "usage: serve_load RUN_DIR [SECONDS [MAX_WAIT_MS]] | RUN_DIR --url URL CLIENTS SECONDS",
        )?
        .into();
    let rest: Vec<String> = args.collect();
    if rest.first().map(String::as_str) == Some("--url") {
        let [_, url, clients, seconds] = &rest[..] else {
            return Err("usage: serve_load RUN_DIR --url http://HOST:PORT CLIENTS SECONDS".into());
        };
        let (clients, seconds): (usize, f64) = (clients.parse()?, seconds.parse()?);
        let ds = PreparedDataset::load(&dir)?;
        let bodies: Vec<String> = requests(&ds)
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        let url = format!("{}/rerank", url.trim_end_matches('/'));
        let t0 = Instant::now();
        let (mut ms, errors) = drive(&url, &bodies, clients, seconds);
        let secs = t0.elapsed().as_secs_f64();
        let (p50, p99) = if ms.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            percentiles(&mut ms)
        };
        println!(
            "{}",
            serde_json::json!({
                "clients": clients,
                "seconds": secs,
                "requests": ms.len(),
                "errors": errors,
                "requests_per_s": ms.len() as f64 / secs,
                "p50_ms": p50,
                "p99_ms": p99,
            })
        );
        return Ok(());
    }
    let mut args = rest.into_iter();
    let seconds: f64 = args.next().map_or(Ok(5.0), |s| s.parse())?;
    let max_wait_ms: u64 = args
        .next()
        .map_or(Ok(ServeConfig::default().max_wait_ms), |s| s.parse())?;
    let ds = PreparedDataset::load(&dir)?;
    let bodies: Vec<String> = requests(&ds)
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    let parsed: Vec<RerankRequest> = requests(&ds);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{} requests of {} candidates from {}; {threads} hardware threads; {seconds} s per row; \
         server batches up to {} requests within {max_wait_ms} ms\n",
        bodies.len(),
        ds.config.pool_size,
        dir.display(),
        ServeConfig::default().max_batch
    );
    println!("| client | requests | requests/s | p50 (ms) | p99 (ms) |");
    println!("|---|---|---|---|---|");

    // In process: one request at a time, then batches of 64.
    let reranker = Reranker::load(&dir)?;
    let t0 = Instant::now();
    let mut ms = Vec::new();
    while t0.elapsed().as_secs_f64() < seconds {
        let r = &parsed[ms.len() % parsed.len()];
        let t = Instant::now();
        reranker.rerank(r)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    row(
        "in-process `rerank`, 1 at a time",
        ms.len(),
        t0.elapsed().as_secs_f64(),
        &mut ms,
    );
    let t0 = Instant::now();
    let (mut ms, mut n) = (Vec::new(), 0);
    while t0.elapsed().as_secs_f64() < seconds {
        let from = n % parsed.len();
        let batch = &parsed[from..(from + 64).min(parsed.len())];
        let t = Instant::now();
        for r in reranker.rerank_batch(batch) {
            r?;
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        n += batch.len();
    }
    row(
        "in-process `rerank_batch` of 64 (latency per batch)",
        n,
        t0.elapsed().as_secs_f64(),
        &mut ms,
    );

    // Over HTTP, through the dynamic batcher.
    let mut config = ServeConfig::default();
    config.addr = "127.0.0.1:0".into();
    config.max_wait_ms = max_wait_ms;
    let server = Server::start(reranker, &config)?;
    let url = format!("http://{}/rerank", server.local_addr());
    let mut mean_batches = Vec::new();
    for clients in [1usize, 8, 64] {
        let before = server.metrics().batches();
        let t0 = Instant::now();
        let (mut ms, errors) = drive(&url, &bodies, clients, seconds);
        if errors > 0 {
            return Err(format!("{errors} calls failed with {clients} clients").into());
        }
        let n = ms.len();
        row(
            &format!("HTTP, {clients} concurrent clients"),
            n,
            t0.elapsed().as_secs_f64(),
            &mut ms,
        );
        let after = server.metrics().batches();
        mean_batches.push(format!(
            "{clients} clients {:.1}",
            (after.1 - before.1) / (after.0 - before.0).max(1) as f64
        ));
    }
    println!(
        "\nmean requests per decode batch: {}",
        mean_batches.join(", ")
    );
    server.shutdown()?;
    Ok(())
}
