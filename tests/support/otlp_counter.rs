//! An OTLP/gRPC trace receiver that counts spans and keeps nothing, for
//! benchmarks that export more spans than would fit in memory (a minute of
//! live load, a capture of millions of messages).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};

/// Clones share the count.
#[derive(Clone, Default)]
pub struct CountingReceiver {
    spans: Arc<AtomicU64>,
}

impl CountingReceiver {
    /// Spans received so far.
    pub fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }

    /// Spans received since the last call (for one run among several).
    pub fn take(&self) -> u64 {
        self.spans.swap(0, Ordering::Relaxed)
    }

    /// Serves on `listener` (bound by the caller, e.g. inside a network
    /// namespace) from a thread of its own; returns the endpoint URL.
    pub fn serve(&self, listener: std::net::TcpListener) -> String {
        let addr = listener.local_addr().expect("OTLP receiver address");
        listener
            .set_nonblocking(true)
            .expect("OTLP receiver listener non-blocking");
        let receiver = self.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("OTLP receiver runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("OTLP receiver listener");
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(receiver))
                    .serve_with_incoming(
                        tonic::transport::server::TcpIncoming::from(listener)
                            .with_nodelay(Some(true)),
                    )
                    .await
                    .expect("OTLP receiver");
            });
        });
        format!("http://{addr}")
    }
}

#[tonic::async_trait]
impl TraceService for CountingReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
