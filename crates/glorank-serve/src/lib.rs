//! # glorank-serve
//!
//! An HTTP server for a trained GloRank [`Reranker`](glorank::Reranker), behind
//! `glorank serve --model RUN --set serve.addr=HOST:PORT`, configured by the `[serve]`
//! section ([`glorank::ServeConfig`], re-exported here):
//!
//! * `POST /rerank`: one request (the JSON object `glorank rerank` reads) answered with
//!   `{"list": [...]}`, or an array of them answered with an array of `{"list": [...]}` /
//!   `{"error": "..."}` in the same order (one bad request does not fail the others). An
//!   optional `?decode=greedy|beam:W|sample:T[:K]` overrides the server's decoding for the
//!   call; beams are bounded by [`ServeConfig::max_beam`]. Errors are `{"error": "..."}` with
//!   a status code: 400 malformed, 413 over a size limit, 422 a request the model cannot
//!   serve (unknown item, too few candidates...), 503 queue full or shutting down.
//! * `GET /health`: `{"status": "ok", ...}` with the model's shape.
//! * `GET /metrics`: Prometheus text: responses by code, lists and errors, a latency
//!   histogram and a histogram of decode batch sizes.
//!
//! Concurrent calls are batched dynamically (see [`batcher`]): up to
//! [`ServeConfig::max_batch`] requests that arrive within [`ServeConfig::max_wait_ms`] of
//! each other are decoded together.
//!
//! Slow and stalled clients are bounded (see [`conn`]): a request's head must arrive within
//! [`ServeConfig::header_timeout_ms`], its body within [`ServeConfig::body_timeout_ms`]
//! (408), a body announced larger than [`ServeConfig::max_body_bytes`] is refused with 413
//! from its `Content-Length` alone, and a connection doing nothing for
//! [`ServeConfig::idle_timeout_ms`] is closed. Shutdown (SIGTERM or Ctrl-C with
//! [`Server::start_with_signals`], or [`Server::shutdown`]) stops accepting connections at
//! once, lets the calls in flight finish within [`ServeConfig::shutdown_grace_ms`], drops the
//! rest and returns.
//!
//! ```no_run
//! use glorank::Config;
//! use glorank_serve::Server;
//!
//! let reranker = glorank::Reranker::load("runs/demo-quick".as_ref())?;
//! let config = Config::default().with_overrides(&["serve.addr=127.0.0.1:8080"])?.serve;
//! let server = Server::start(reranker, &config)?;
//! println!("listening on http://{}", server.local_addr());
//! server.shutdown()?; // or server.wait() to run until SIGTERM
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batcher;
pub mod conn;
mod error;
pub mod metrics;

pub use error::{Result, ServeError};

pub use glorank::ServeConfig;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use batcher::{Answer, Batcher, EnqueueError, Job};
use glorank::{DecodeStrategy, RerankCall, RerankRequest, Reranker};
use metrics::Metrics;

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A running server: one thread with the async runtime (connections, parsing) and one
/// batch worker (decoding).
pub struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Binds `config.addr` and starts serving `reranker` in the background; tests and
    /// embedders stop it with [`Server::shutdown`].
    ///
    /// # Errors
    /// [`ServeError::Rerank`] for an invalid configuration (naming the field),
    /// [`ServeError::Bind`] when the address is taken or invalid, [`ServeError::Io`] when the
    /// runtime cannot start.
    pub fn start(reranker: Reranker, config: &ServeConfig) -> Result<Self> {
        Self::launch(reranker, config, false)
    }

    /// [`Server::start`] that also stops gracefully on SIGTERM and Ctrl-C (what `glorank
    /// serve` runs).
    ///
    /// # Errors
    /// As [`Server::start`].
    pub fn start_with_signals(reranker: Reranker, config: &ServeConfig) -> Result<Self> {
        Self::launch(reranker, config, true)
    }

    fn launch(reranker: Reranker, config: &ServeConfig, signals: bool) -> Result<Self> {
        config.validate()?;
        let bind = |source| ServeError::Bind {
            addr: config.addr.clone(),
            source,
        };
        let listener = std::net::TcpListener::bind(&config.addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let metrics = Arc::new(Metrics::default());
        let reranker = Arc::new(reranker);
        let batcher = Batcher::start(
            reranker.clone(),
            metrics.clone(),
            config.max_batch,
            Duration::from_millis(config.max_wait_ms),
            config.queue,
        );
        let app = Arc::new(App {
            reranker,
            metrics: metrics.clone(),
            batcher,
            config: config.clone(),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("glorank-serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let router = router(app.clone());
                    conn::serve(listener, router, &config, stop_signal(stop_rx, signals)).await;
                    Ok::<(), ServeError>(())
                })
                // The runtime is gone, so are the handlers and the connections; dropping the
                // last `App` stops the batch worker, which skips the calls nobody waits for.
            })?;
        Ok(Self {
            addr,
            metrics,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The bound address (with the actual port when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's counters, as `GET /metrics` shows them.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops accepting connections, finishes the requests in flight and returns.
    ///
    /// # Errors
    /// What the server thread ended with.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    /// Serves until a signal stops it (after [`Server::start_with_signals`]).
    ///
    /// # Errors
    /// What the server thread ended with.
    pub fn wait(mut self) -> Result<()> {
        // Keep the stop channel open: only a signal ends the server.
        let _keep = self.stop.take();
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| ServeError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.join();
    }
}

/// Resolves when the server should stop: on `stop` (or its sender dropped), and with
/// `signals` also on SIGTERM or Ctrl-C.
async fn stop_signal(stop: oneshot::Receiver<()>, signals: bool) {
    if !signals {
        let _ = stop.await;
        return;
    }
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = stop => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// What the handlers share.
struct App {
    reranker: Arc<Reranker>,
    metrics: Arc<Metrics>,
    batcher: Batcher,
    config: ServeConfig,
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/rerank", post(rerank))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .with_state(app)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An error answer and its status.
fn error(status: StatusCode, message: impl Into<String>) -> (StatusCode, Value) {
    (status, json!({ "error": message.into() }))
}

async fn rerank(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let t0 = Instant::now();
    let (status, value) = match app.read_body(&headers, body).await {
        Ok(body) => app.rerank(uri.query(), &body).await,
        Err(refused) => refused,
    };
    if status != StatusCode::OK {
        // A whole call refused counts as one refused request (batch answers count their own).
        app.metrics.outcomes(0, 1);
    }
    app.metrics
        .response("/rerank", status.as_u16(), t0.elapsed().as_secs_f64());
    json_response(status, &value)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let r = &app.reranker;
    let body = json!({
        "status": "ok",
        "items": r.num_items(),
        "list_len": r.list_len(),
        "decode": r.strategy().to_string(),
        "uses_retriever_score": r.uses_retriever_score(),
        "max_batch": app.config.max_batch,
        "max_requests_per_call": app.config.max_requests_per_call,
        "max_beam": app.config.max_beam,
    });
    app.metrics.response("/health", 200, 0.0);
    json_response(StatusCode::OK, &body)
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    app.metrics.response("/metrics", 200, 0.0);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    let (status, body) = error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {}; the routes are POST /rerank, GET /health, GET /metrics",
            uri.path()
        ),
    );
    json_response(status, &body)
}

/// How long, and how many bytes, the server reads and discards of a body it refused from its
/// header before closing the connection (a "lingering close").
const DRAIN: (Duration, usize) = (Duration::from_secs(1), 4 << 20);

/// Reads and discards `body` for at most [`DRAIN`]'s time and bytes.
async fn drain(mut body: Body) {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + DRAIN.0;
    let mut read = 0usize;
    while read < DRAIN.1 {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// The `decode` strategy of a query string (`decode=beam:4`); other parameters are errors.
fn parse_query(query: Option<&str>, default: DecodeStrategy) -> Result<DecodeStrategy> {
    let mut strategy = default;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "decode" {
            return Err(ServeError::UnknownParameter(key.to_string()));
        }
        strategy = value
            .replace("%3A", ":")
            .replace("%3a", ":")
            .parse::<DecodeStrategy>()
            .map_err(|e| ServeError::Decode(e.into()))?;
    }
    Ok(strategy)
}

impl App {
    /// The body of a call, read within the limits: 413 for a `Content-Length` above
    /// `max_body_bytes` (before reading a byte of the body) or a body that grows past it,
    /// 408 for a body not received within `body_timeout_ms`.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> std::result::Result<Bytes, (StatusCode, Value)> {
        let limit = self.config.max_body_bytes;
        let too_large = |what: String| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{what} is larger than this server's limit of {limit} bytes (serve.max_body_bytes)"
                ),
            )
        };
        if let Some(length) = headers.get(header::CONTENT_LENGTH) {
            let length = length
                .to_str()
                .ok()
                .and_then(|l| l.trim().parse::<u64>().ok())
                .ok_or_else(|| error(StatusCode::BAD_REQUEST, "Content-Length is not a number"))?;
            if length > limit as u64 {
                // Answer now, and read what the client is already sending for a short while
                // in the background: closing with unread bytes would reset the connection
                // and the client could lose the answer.
                tokio::spawn(drain(body));
                return Err(too_large(format!(
                    "request body of {length} bytes (Content-Length)"
                )));
            }
        }
        let timeout = Duration::from_millis(self.config.body_timeout_ms);
        match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => {
                let e = e.into_inner();
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    Err(too_large("request body".into()))
                } else {
                    Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("reading the request body: {e}"),
                    ))
                }
            }
            Err(_) => Err(error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} ms (serve.body_timeout_ms)",
                    self.config.body_timeout_ms
                ),
            )),
        }
    }

    /// The status and JSON answer of one `POST /rerank`.
    async fn rerank(&self, query: Option<&str>, body: &[u8]) -> (StatusCode, Value) {
        let strategy = match parse_query(query, self.reranker.strategy()) {
            Ok(s) => s,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        if let Err(e) = strategy.validate() {
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
        if let DecodeStrategy::Beam { width } = strategy
            && width > self.config.max_beam
        {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "beam width {width} is above this server's max_beam {}",
                    self.config.max_beam
                ),
            );
        }
        let call = match RerankCall::parse(body) {
            Ok(call) => call,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        match call {
            RerankCall::Batch(parsed) => {
                if parsed.len() > self.config.max_requests_per_call {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "{} requests in one call; this server takes at most {} (serve.max_requests_per_call)",
                            parsed.len(),
                            self.config.max_requests_per_call
                        ),
                    );
                }
                let valid: Vec<RerankRequest> = parsed
                    .iter()
                    .filter_map(|p| p.as_ref().ok().cloned())
                    .collect();
                let mut decoded = match self.decode(valid, strategy).await {
                    Ok(d) => d.into_iter(),
                    Err(e) => return e,
                };
                let answers: Vec<Answer> = parsed
                    .into_iter()
                    .map(|p| match p {
                        Ok(_) => decoded.next().unwrap_or(Err(ServeError::LostAnswer)),
                        Err(e) => Err(ServeError::Rerank(e)),
                    })
                    .collect();
                let lists = answers.iter().filter(|a| a.is_ok()).count() as u64;
                self.metrics.outcomes(lists, answers.len() as u64 - lists);
                let body = answers
                    .into_iter()
                    .map(|a| match a {
                        Ok(list) => json!({ "list": list }),
                        Err(e) => json!({ "error": e.to_string() }),
                    })
                    .collect();
                (StatusCode::OK, Value::Array(body))
            }
            RerankCall::One(request) => {
                let answer = match self.decode(vec![request], strategy).await {
                    Ok(mut d) => d.pop().unwrap_or(Err(ServeError::LostAnswer)),
                    Err(e) => return e,
                };
                match answer {
                    Ok(list) => {
                        self.metrics.outcomes(1, 0);
                        (StatusCode::OK, json!({ "list": list }))
                    }
                    Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
                }
            }
            _ => error(StatusCode::BAD_REQUEST, "unsupported call"),
        }
    }

    /// Queues `requests` for the batcher and waits for their answers.
    async fn decode(
        &self,
        requests: Vec<RerankRequest>,
        strategy: DecodeStrategy,
    ) -> Result<Vec<Answer>, (StatusCode, Value)> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            requests,
            strategy,
            reply,
        };
        match self.batcher.enqueue(job) {
            Ok(()) => {}
            Err(EnqueueError::Full) => {
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the queue holds its {} calls; retry later",
                        self.config.queue
                    ),
                ));
            }
            Err(EnqueueError::Stopped) => {
                return Err(error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
            }
        }
        answer
            .await
            .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_selects_the_decoding_and_rejects_other_parameters() {
        let g = DecodeStrategy::Greedy;
        assert_eq!(parse_query(None, g).unwrap(), g);
        assert_eq!(
            parse_query(Some("decode=beam%3A4"), g).unwrap(),
            DecodeStrategy::Beam { width: 4 }
        );
        let e = parse_query(Some("beam=4"), g).unwrap_err().to_string();
        assert!(e.contains("`beam`"));
        let e = parse_query(Some("decode=wide"), g).unwrap_err().to_string();
        assert!(e.starts_with("decode:"));
    }
}
