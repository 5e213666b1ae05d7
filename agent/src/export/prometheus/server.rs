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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Reads until the server closes; `None` if it is still open at the
    /// deadline.
    async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return Some(t.elapsed()),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = MetricsServer::bind(taken.local_addr().unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot listen on {}: address in use; choose another --metrics-listen",
                taken.local_addr().unwrap()
            )
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn routes_answer_and_health_says_why_not() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        let health = Arc::new(Health::default());
        server
            .spawn(PrometheusMetrics::new(), health.clone())
            .unwrap();
        let r = get(addr, "/healthz").await;
        assert!(r.starts_with("HTTP/1.0 503"), "{r}");
        assert!(r.ends_with("capture programs not attached\n"), "{r}");
        health.set_attached(true);
        health.beat();
        assert!(get(addr, "/healthz").await.ends_with("\r\n\r\nok\n"));
        let m = get(addr, "/metrics").await;
        assert!(m.contains(OPENMETRICS_CONTENT_TYPE), "{m}");
        assert!(m.ends_with("# EOF\n"), "{m}");
        assert!(get(addr, "/other").await.starts_with("HTTP/1.0 404"));
    }

    /// Slowloris: clients that open connections and send nothing (or half
    /// a header) hold at most MAX_CONNECTIONS slots, one more is closed at
    /// once and counted, and the silent ones are cut at HEADER_TIMEOUT;
    /// then scrapes work again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_clients_hold_bounded_slots_for_a_bounded_time() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        let metrics = PrometheusMetrics::new();
        server
            .spawn(metrics.clone(), Arc::new(Health::default()))
            .unwrap();
        let mut slow = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
                .await
                .unwrap();
            slow.push(s);
        }
        // The accept loop takes them in order; wait until all are held.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !metrics
            .encode()
            .contains(&format!("result=\"accepted\"}} {MAX_CONNECTIONS}"))
        {
            assert!(Instant::now() < deadline, "{}", metrics.encode());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_secs(2))
                .await
                .is_some(),
            "a connection over the limit is closed at once"
        );
        assert!(
            metrics
                .encode()
                .contains(r#"sipscope_metrics_http_connections_total{result="refused_busy"} 1"#)
        );
        for s in &mut slow {
            let held = closed_within(s, HEADER_TIMEOUT * 3).await;
            assert!(held.is_some(), "a slow client kept its connection");
        }
        assert!(get(addr, "/metrics").await.contains("200 OK"));
    }
}
