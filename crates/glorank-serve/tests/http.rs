//! The server driven over real HTTP: good, bad, oversized and concurrent requests, the
//! answers equal to the in-process `Reranker`'s, metrics and graceful shutdown.

use glorank::{RerankRequest, Reranker};
use glorank_serve::{ServeConfig, Server};

/// The `[serve]` section with these `serve.KEY=VALUE` changes.
fn serve(changes: &[&str]) -> ServeConfig {
    let keys: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    glorank::Config::default()
        .with_overrides(&keys)
        .unwrap()
        .serve
}
use serde_json::{Value, json};
use std::time::Duration;

struct Fixture {
    _dir: tempfile::TempDir,
    run: std::path::PathBuf,
    requests: Vec<Value>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let run = glorank::testing::write_tiny_run(dir.path(), 3).unwrap();
    let ds = glorank::data::PreparedDataset::load(run.root()).unwrap();
    let requests = ds
        .test
        .iter()
        .chain(&ds.valid)
        .take(40)
        .map(|s| serde_json::to_value(RerankRequest::from_sample(&ds, s)).unwrap())
        .collect();
    Fixture {
        run: run.root().to_path_buf(),
        _dir: dir,
        requests,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs `body` to `url`; returns the status and the parsed JSON answer.
fn post(agent: &ureq::Agent, url: &str, body: &str) -> (u16, Value) {
    let mut r = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, String) {
    let mut r = agent.get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn in_process(reranker: &Reranker, request: &Value) -> Value {
    let r: RerankRequest = serde_json::from_value(request.clone()).unwrap();
    json!(reranker.rerank(&r).unwrap())
}

#[test]
fn serves_good_bad_and_batched_requests_like_the_library() {
    let f = fixture();
    let reranker = Reranker::load(&f.run).unwrap();
    let config = serve(&[
        "serve.addr=127.0.0.1:0",
        "serve.max_body_bytes=65536",
        "serve.max_requests_per_call=16",
        "serve.max_beam=4",
    ]);
    let server = Server::start(Reranker::load(&f.run).unwrap(), &config).unwrap();
    let base = format!("http://{}", server.local_addr());
    let url = format!("{base}/rerank");
    let a = agent();

    // One request: the library's list.
    let (status, answer) = post(&a, &url, &f.requests[0].to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["list"], in_process(&reranker, &f.requests[0]));
    assert_eq!(answer["list"].as_array().unwrap().len(), 6);

    // A batch with a bad member: per-request answers, in order.
    let mut unknown = f.requests[2].clone();
    unknown["candidates"][0] = "no-such-item".into();
    let batch = json!([f.requests[1], {"candidates": 7}, unknown, f.requests[3]]);
    let (status, answer) = post(&a, &url, &batch.to_string());
    assert_eq!(status, 200);
    let answer = answer.as_array().unwrap();
    assert_eq!(answer.len(), 4);
    assert_eq!(answer[0]["list"], in_process(&reranker, &f.requests[1]));
    assert!(
        answer[1]["error"]
            .as_str()
            .unwrap()
            .contains("batch index 1")
    );
    assert!(
        answer[2]["error"]
            .as_str()
            .unwrap()
            .contains("no-such-item")
    );
    assert_eq!(answer[3]["list"], in_process(&reranker, &f.requests[3]));

    // Beam search per call equals the library's beam search.
    let beam = Reranker::load(&f.run).unwrap().with_beam(3);
    let (status, answer) = post(
        &a,
        &format!("{url}?decode=beam:3"),
        &f.requests[4].to_string(),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["list"], in_process(&beam, &f.requests[4]));

    // Errors are JSON with a status code.
    let cases: Vec<(String, String, u16, &str)> = vec![
        (url.clone(), "{not json".into(), 400, "malformed"),
        (url.clone(), "42".into(), 400, "request object"),
        (url.clone(), "[]".into(), 400, "empty batch"),
        (url.clone(), unknown.to_string(), 422, "no-such-item"),
        (
            url.clone(),
            json!({"candidates": ["a"], "extra": 1}).to_string(),
            400,
            "unknown field",
        ),
        (
            format!("{url}?decode=beam:5"),
            f.requests[0].to_string(),
            400,
            "max_beam 4",
        ),
        (
            format!("{url}?decode=beam:0"),
            f.requests[0].to_string(),
            400,
            "beam width",
        ),
        (
            format!("{url}?top=3"),
            f.requests[0].to_string(),
            400,
            "unknown query parameter",
        ),
        (
            url.clone(),
            Value::Array(vec![f.requests[0].clone(); 17]).to_string(),
            413,
            "at most 16",
        ),
        (
            url.clone(),
            format!("\"{}\"", "x".repeat(70_000)),
            413,
            "65536 bytes",
        ),
        (format!("{base}/nope"), "{}".into(), 404, "no route"),
    ];
    for (to, body, want, says) in &cases {
        let (status, answer) = post(&a, to, body);
        assert_eq!(status, *want, "{to} {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message} should say {says}");
    }
    let mut invalid_utf8 = agent()
        .post(&url)
        .send(&b"{\"candidates\": [\"\xff\"]}"[..])
        .unwrap();
    assert_eq!(invalid_utf8.status().as_u16(), 400);
    assert!(
        invalid_utf8
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains("UTF-8")
    );

    // Health and metrics.
    let (status, health) = get(&a, &format!("{base}/health"));
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["list_len"], 6);
    let (status, text) = get(&a, &format!("{base}/metrics"));
    assert_eq!(status, 200);
    assert!(text.contains("glorank_http_responses_total{endpoint=\"/rerank\",code=\"200\"} 3"));
    assert!(text.contains("glorank_http_responses_total{endpoint=\"/rerank\",code=\"413\"} 2"));
    // Lists: 1 + 2 (batch) + 1 (beam); errors: 2 in the batch + 10 refused calls + UTF-8.
    assert!(text.contains("glorank_rerank_lists_total 4"), "{text}");
    assert!(text.contains("glorank_rerank_errors_total 13"), "{text}");
    assert!(text.contains("glorank_request_duration_seconds_count"));
    assert!(text.contains("glorank_batch_size_bucket{le=\"+Inf\"}"));
    server.shutdown().unwrap();
}

#[test]
fn concurrent_clients_are_batched_and_each_gets_its_own_answer() {
    let f = fixture();
    let reranker = Reranker::load(&f.run).unwrap();
    let expected: Vec<Value> = f
        .requests
        .iter()
        .map(|r| in_process(&reranker, r))
        .collect();
    // A long batching window so that concurrent calls meet in one batch.
    let config = serve(&[
        "serve.addr=127.0.0.1:0",
        "serve.max_batch=64",
        "serve.max_wait_ms=50",
    ]);
    let server = Server::start(reranker, &config).unwrap();
    let url = format!("http://{}/rerank", server.local_addr());
    std::thread::scope(|s| {
        for t in 0..8 {
            let (url, requests, expected) = (&url, &f.requests, &expected);
            s.spawn(move || {
                let a = agent();
                for k in (t..requests.len()).step_by(8) {
                    let (status, answer) = post(&a, url, &requests[k].to_string());
                    assert_eq!(status, 200);
                    assert_eq!(answer["list"], expected[k], "request {k}");
                }
            });
        }
    });
    let (batches, decoded) = server.metrics().batches();
    assert_eq!(decoded as usize, f.requests.len());
    assert!(
        (batches as usize) < f.requests.len(),
        "{batches} batches for {} requests: nothing was batched",
        f.requests.len()
    );
    server.shutdown().unwrap();
}

#[test]
fn shutdown_finishes_the_requests_in_flight() {
    let f = fixture();
    let reranker = Reranker::load(&f.run).unwrap();
    let expected = in_process(&reranker, &f.requests[0]);
    // The request waits 300 ms in the batcher; the shutdown comes while it waits.
    let config = serve(&["serve.addr=127.0.0.1:0", "serve.max_wait_ms=300"]);
    let server = Server::start(reranker, &config).unwrap();
    let addr = server.local_addr();
    let url = format!("http://{addr}/rerank");
    let body = f.requests[0].to_string();
    let client = std::thread::spawn(move || post(&agent(), &url, &body));
    std::thread::sleep(Duration::from_millis(100));
    server.shutdown().unwrap();
    let (status, answer) = client.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer["list"], expected);
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_taken_address_is_an_error_naming_it() {
    let f = fixture();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let config = serve(&[&format!("serve.addr={addr}")]);
    let e = Server::start(Reranker::load(&f.run).unwrap(), &config).unwrap_err();
    assert!(e.to_string().contains(&addr), "{e}");
}

/// Opens a raw connection to `addr` and writes `bytes` (a request head, maybe part of a
/// body), with a read timeout for what follows.
fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// What the server sends on `s` until it closes the connection (or the read timeout).
fn read_until_closed(s: &mut std::net::TcpStream) -> (String, Duration) {
    use std::io::Read;
    let t0 = std::time::Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), t0.elapsed())
}

#[test]
fn a_body_announced_too_large_is_refused_from_its_header_alone() {
    let f = fixture();
    let config = serve(&["serve.addr=127.0.0.1:0", "serve.max_body_bytes=65536"]);
    let server = Server::start(Reranker::load(&f.run).unwrap(), &config).unwrap();
    // 52 bytes of a body announced as 10 MB: the answer comes without waiting for the rest.
    let head = "POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 10000000\r\n\r\n";
    let mut s = raw(
        server.local_addr(),
        format!("{head}{}", "x".repeat(52)).as_bytes(),
    );
    let (answer, took) = read_until_closed(&mut s);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("10000000") && answer.contains("max_body_bytes"),
        "{answer}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    server.shutdown().unwrap();
}

#[test]
fn slow_heads_bodies_and_idle_connections_are_closed_in_time() {
    let f = fixture();
    let config = serve(&[
        "serve.addr=127.0.0.1:0",
        "serve.header_timeout_ms=300",
        "serve.body_timeout_ms=300",
        "serve.idle_timeout_ms=60000",
    ]);
    let server = Server::start(Reranker::load(&f.run).unwrap(), &config).unwrap();
    let addr = server.local_addr();
    // A head that never ends: the connection is closed after the header timeout.
    let mut s = raw(addr, b"POST /rerank HTTP/1.1\r\nHost: x\r\n");
    let (_, took) = read_until_closed(&mut s);
    assert!(took < Duration::from_secs(5), "head: {took:?}");
    // A body that never ends: 408 after the body timeout.
    let mut s = raw(
        addr,
        b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"cand",
    );
    let (answer, took) = read_until_closed(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout_ms"), "{answer}");
    assert!(took < Duration::from_secs(5), "body: {took:?}");
    // The server still answers.
    let (status, _) = post(
        &agent(),
        &format!("http://{addr}/rerank"),
        &f.requests[0].to_string(),
    );
    assert_eq!(status, 200);
    server.shutdown().unwrap();

    // A connection that sends nothing is closed after the idle timeout (the header timeout
    // is a minute here, so only the idle one can close it).
    let config = serve(&[
        "serve.addr=127.0.0.1:0",
        "serve.header_timeout_ms=60000",
        "serve.idle_timeout_ms=300",
    ]);
    let server = Server::start(Reranker::load(&f.run).unwrap(), &config).unwrap();
    let mut s = raw(server.local_addr(), b"");
    let (_, took) = read_until_closed(&mut s);
    assert!(took < Duration::from_secs(5), "idle: {took:?}");
    server.shutdown().unwrap();
}

#[test]
fn shutdown_ends_within_its_grace_whatever_slow_clients_do() {
    let f = fixture();
    let config = serve(&[
        "serve.addr=127.0.0.1:0",
        "serve.header_timeout_ms=60000",
        "serve.body_timeout_ms=60000",
        "serve.idle_timeout_ms=60000",
        "serve.shutdown_grace_ms=500",
    ]);
    let server = Server::start(Reranker::load(&f.run).unwrap(), &config).unwrap();
    let addr = server.local_addr();
    // Ten clients dribbling heads, ten dribbling bodies.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(raw(addr, b"POST /rerank HTTP/1.1\r\nHost: x\r\nConte"));
        held.push(raw(
            addr,
            b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"c",
        ));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    server.shutdown().unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    // Nothing listens any more, and the held connections were closed.
    assert!(std::net::TcpStream::connect(addr).is_err());
    for mut s in held {
        let (_, t) = read_until_closed(&mut s);
        assert!(t < Duration::from_secs(5));
    }
}

#[test]
fn a_key_named_twice_is_refused_as_the_command_line_refuses_it() {
    let f = fixture();
    let config = serve(&["serve.addr=127.0.0.1:0"]);
    let server = Server::start(Reranker::load(&f.run).unwrap(), &config).unwrap();
    let url = format!("http://{}/rerank", server.local_addr());
    let body = f.requests[0].to_string();
    let doubled = format!("{}, \"candidates\": []}}", body.trim_end_matches('}'));
    let (status, answer) = post(&agent(), &url, &doubled);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("duplicate key `candidates`"),
        "{answer}"
    );
    // The same body through the library's parser, as `glorank rerank` and Python read it.
    let e = RerankRequest::from_json(&doubled).unwrap_err().to_string();
    assert!(e.contains("duplicate key `candidates`"), "{e}");
    server.shutdown().unwrap();
}
