//! Connections: the accept loop, the per-connection timeouts and the bounded graceful
//! shutdown.
//!
//! Each accepted connection is served by hyper's HTTP/1 state machine with a header-read
//! timeout ([`ServeConfig::header_timeout_ms`]); its socket is wrapped in [`Watched`], which
//! stamps every byte read or written, so a watchdog closes a connection that has done
//! nothing for [`ServeConfig::idle_timeout_ms`] while none of its requests is being decoded.
//! (The body-read timeout is the `/rerank` handler's, which reads the body.) On shutdown the
//! loop stops accepting at once, asks every connection to finish its request in flight and
//! close, waits at most [`ServeConfig::shutdown_grace_ms`] and then drops the rest.

use crate::ServeConfig;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What a connection has been doing: when it last read or wrote a byte, and how many of its
/// requests are being answered.
struct Activity {
    /// When the connection opened.
    opened: Instant,
    /// Milliseconds after `opened` of the last byte read or written.
    last_ms: AtomicU64,
    /// Requests of this connection being answered (decoding is not idleness).
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection counts as idle for `idle`, if nothing happens before (`None`
    /// while a request is being answered).
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle)
    }
}

/// A socket that stamps its [`Activity`] on every byte read or written.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router as a hyper service that counts its requests in flight as activity.
#[derive(Clone)]
struct Counted {
    inner: TowerToHyperService<Router>,
    activity: Arc<Activity>,
}

/// Decrements the busy count when a request's answer is ready (or it is dropped).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Service<hyper::Request<Incoming>> for Counted {
    type Response = <TowerToHyperService<Router> as Service<hyper::Request<Incoming>>>::Response;
    type Error = <TowerToHyperService<Router> as Service<hyper::Request<Incoming>>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.activity.busy.fetch_add(1, Ordering::Relaxed);
        let busy = Busy(self.activity.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(busy);
            answer
        })
    }
}

/// Accepts and serves connections on `listener` until `stop` resolves, then shuts down
/// within the configured grace.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServeConfig,
    stop: impl Future<Output = ()>,
) {
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_timeout_ms));
    let idle = Duration::from_millis(config.idle_timeout_ms);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(
                        stream,
                        router.clone(),
                        builder.clone(),
                        idle,
                        closing_rx.clone(),
                    ));
                }
                // Out of file descriptors or a connection reset before it was accepted:
                // back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Stop accepting at once; ask every connection to finish and close.
    drop(listener);
    let _ = closing_tx.send(true);
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Serves one connection until it ends, idles past `idle`, or the server closes.
async fn connection(
    stream: TcpStream,
    router: Router,
    builder: hyper::server::conn::http1::Builder,
    idle: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = Counted {
        inner: TowerToHyperService::new(router),
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing_asked = *closing.borrow();
    if closing_asked {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        // Re-read at each turn: a request in flight holds the deadline off.
        let deadline = activity
            .idle_deadline(idle)
            .unwrap_or_else(|| Instant::now() + idle);
        tokio::select! {
            _ = conn.as_mut() => break,
            changed = closing.changed(), if !closing_asked => {
                closing_asked = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if activity.idle_deadline(idle).is_some_and(|d| d <= Instant::now()) {
                    break;
                }
            }
        }
    }
}
