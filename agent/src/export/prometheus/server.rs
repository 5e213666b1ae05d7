//! The `/metrics` and `/healthz` HTTP endpoint: hyper 1 (HTTP/1.1 only)
//! on the agent's tokio runtime. hyper rather than a framework: two fixed
//! routes need no router, and hyper is already in the dependency tree
//! (tonic, reqwest). Bounded against slow or many clients: at most
//! [`MAX_CONNECTIONS`] at once (more are closed at once and counted),
//! request headers within [`HEADER_TIMEOUT`] and [`MAX_HEADER_BYTES`], and
//! a connection lives at most [`MAX_CONNECTION_LIFE`]; so a slowloris
//! client holds a bounded amount of memory for a bounded time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use super::{CounterGroup, Health, PrometheusMetrics};

/// OpenMetrics 1.0 text format (what prometheus-client encodes).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const MAX_CONNECTIONS: usize = 16;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// hyper's smallest read buffer; a request line and headers past it are
/// refused (431).
pub const MAX_HEADER_BYTES: usize = 8192;
pub const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {reason}; choose another --metrics-listen")]
    Bind { addr: SocketAddr, reason: String },
    #[error("the metrics endpoint needs the agent's tokio runtime")]
    NoRuntime,
}

/// Connections served and refused (the `sipscope_metrics_http_connections_total` family).
#[derive(Debug, Default)]
struct ConnectionStats {
    accepted: AtomicU64,
    refused_busy: AtomicU64,
    accept_errors: AtomicU64,
}

/// A bound, not yet serving listener: bind before attaching anything, so
/// a taken port fails the start with a clear error.
#[derive(Debug)]
pub struct MetricsServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr) -> Result<Self, ServeError> {
        let err = |e: std::io::Error| ServeError::Bind {
            addr,
            reason: match e.kind() {
                std::io::ErrorKind::AddrInUse => "address in use".into(),
                std::io::ErrorKind::AddrNotAvailable => "no such address on this host".into(),
                std::io::ErrorKind::PermissionDenied => "permission denied".into(),
                _ => e.to_string(),
            },
        };
        let listener = std::net::TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        Ok(Self { listener, addr })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the runtime stops. Call inside the tokio runtime.
    pub fn spawn(self, metrics: PrometheusMetrics, health: Arc<Health>) -> Result<(), ServeError> {
        let _ = tokio::runtime::Handle::try_current().map_err(|_| ServeError::NoRuntime)?;
        let listener =
            tokio::net::TcpListener::from_std(self.listener).map_err(|e| ServeError::Bind {
                addr: self.addr,
                reason: e.to_string(),
            })?;
        let stats = Arc::new(ConnectionStats::default());
        let s = stats.clone();
        metrics.add_live(Box::new(move || CounterGroup {
            name: "metrics_http_connections",
            help: "Connections to the /metrics endpoint: accepted, refused_busy (over the connection limit), accept_errors",
            label: "result",
            values: vec![
                ("accepted".into(), s.accepted.load(Ordering::Relaxed)),
                ("refused_busy".into(), s.refused_busy.load(Ordering::Relaxed)),
                ("accept_errors".into(), s.accept_errors.load(Ordering::Relaxed)),
            ],
            gauge: false,
        }));
        tokio::spawn(accept_loop(listener, metrics, health, stats));
        Ok(())
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    metrics: PrometheusMetrics,
    health: Arc<Health>,
    stats: Arc<ConnectionStats>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: count, back off briefly, go on.
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                log::debug!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let r = respond(&req, &metrics, &health);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            // A client that is slow or never leaves loses its connection.
            let _ = tokio::time::timeout(MAX_CONNECTION_LIFE, conn).await;
            drop(slot);
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    metrics: &PrometheusMetrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(metrics.encode())));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
            );
            r
        }
        "/healthz" => match health.check() {
            Ok(()) => plain(StatusCode::OK, "ok\n".into()),
            Err(reason) => plain(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        },
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
