//! Building the opentelemetry-otlp exporters (traces and metrics) from an
//! [`OtlpConfig`]: protocol, endpoint, headers, TLS, timeout, resource.

use std::collections::HashMap;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

use super::config::{OtlpConfig, Protocol};
use super::resource::resource;

/// Errors while setting up OTLP export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    #[error("invalid OTLP configuration: {0}")]
    Config(#[from] super::config::ConfigError),
    #[error("OTLP header {key:?} cannot be sent over gRPC: {reason}")]
    Header { key: String, reason: String },
    #[error("cannot set up the OTLP {what} exporter for {endpoint}: {source}")]
    Build {
        what: &'static str,
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("cannot set up the HTTPS client for {endpoint}: {source}")]
    HttpClient {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "cannot read the OTLP CA certificate {path}: {reason}; give a PEM file with --otlp-ca-cert or OTEL_EXPORTER_OTLP_CERTIFICATE"
    )]
    CaCert { path: String, reason: String },
    #[error("OTLP export needs a tokio runtime; start it from inside the agent's runtime")]
    NoRuntime,
}

/// rustls needs a process-wide crypto provider; we use ring (tonic's
/// `tls-ring` uses it too) and avoid aws-lc's C build. Installing twice is
/// harmless: the first one wins.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn metadata(cfg: &OtlpConfig) -> Result<MetadataMap, OtlpError> {
    let mut md = MetadataMap::new();
    for (k, v) in &cfg.headers {
        let key = MetadataKey::from_bytes(k.as_bytes()).map_err(|e| OtlpError::Header {
            key: k.clone(),
            reason: e.to_string(),
        })?;
        let val: MetadataValue<_> = v.parse().map_err(|_| OtlpError::Header {
            key: k.clone(),
            reason: "the value is not printable ASCII".into(),
        })?;
        md.insert(key, val);
    }
    Ok(md)
}

fn read_ca(cfg: &OtlpConfig) -> Result<Option<Vec<u8>>, OtlpError> {
    let Some(path) = &cfg.ca_cert else {
        return Ok(None);
    };
    let err = |reason: String| OtlpError::CaCert {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(Some(pem))
}

/// TLS for gRPC: the web PKI roots, plus the configured CA if any. `None`
/// for plain http (tonic then speaks h2c).
fn tonic_tls(
    cfg: &OtlpConfig,
) -> Result<Option<opentelemetry_otlp::tonic_types::transport::ClientTlsConfig>, OtlpError> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
    if !cfg.is_tls() {
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new().with_webpki_roots();
    if let Some(pem) = read_ca(cfg)? {
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(Some(tls))
}

fn http_client(cfg: &OtlpConfig, endpoint: &str) -> Result<reqwest::Client, OtlpError> {
    let mut builder = reqwest::Client::builder().timeout(cfg.timeout);
    if let Some(pem) = read_ca(cfg)? {
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
            OtlpError::HttpClient {
                endpoint: endpoint.to_owned(),
                source,
            }
        })?;
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder.build().map_err(|source| OtlpError::HttpClient {
        endpoint: endpoint.to_owned(),
        source,
    })
}

/// Retries are ours to decide: a failed batch is counted and dropped so the
/// queue keeps moving (the SDK's default would hold a batch for seconds
/// while new spans pile up behind it).
fn retry_policy() -> opentelemetry_otlp::RetryPolicy {
    opentelemetry_otlp::RetryPolicy::disabled()
}

fn with_tls<B: WithTonicConfig>(builder: B, cfg: &OtlpConfig) -> Result<B, OtlpError> {
    Ok(match tonic_tls(cfg)? {
        Some(tls) => builder.with_tls_config(tls),
        None => builder,
    })
}

/// Everything but the signal-specific parts of an OTLP/gRPC exporter.
fn grpc<B: WithTonicConfig + WithExportConfig>(
    builder: B,
    cfg: &OtlpConfig,
    endpoint: &str,
) -> Result<B, OtlpError> {
    Ok(with_tls(builder, cfg)?
        .with_protocol(opentelemetry_otlp::Protocol::Grpc)
        .with_endpoint(endpoint)
        .with_timeout(cfg.timeout)
        .with_metadata(metadata(cfg)?))
}

/// Everything but the signal-specific parts of an OTLP/HTTP exporter.
fn http<B: WithHttpConfig + WithExportConfig>(
    builder: B,
    cfg: &OtlpConfig,
    endpoint: &str,
) -> Result<B, OtlpError> {
    Ok(builder
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(cfg.timeout)
        .with_headers(
            cfg.headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        )
        .with_http_client(http_client(cfg, endpoint)?))
}

/// The OTLP span exporter for `cfg`. Must run inside a tokio runtime (the
/// gRPC channel spawns its connection task there).
pub(super) fn span_exporter(
    cfg: &OtlpConfig,
) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
    use opentelemetry_sdk::trace::SpanExporter as _;
    tokio::runtime::Handle::try_current().map_err(|_| OtlpError::NoRuntime)?;
    install_crypto_provider();
    let endpoint = cfg.traces_endpoint.clone();
    let built = match cfg.protocol {
        Protocol::Grpc => grpc(
            opentelemetry_otlp::SpanExporter::builder().with_tonic(),
            cfg,
            &endpoint,
        )?
        .with_retry_policy(retry_policy())
        .build(),
        Protocol::HttpProtobuf => http(
            opentelemetry_otlp::SpanExporter::builder().with_http(),
            cfg,
            &endpoint,
        )?
        .with_retry_policy(retry_policy())
        .build(),
    };
    let mut exporter = built.map_err(|source| OtlpError::Build {
        what: "trace",
        endpoint,
        source,
    })?;
    exporter.set_resource(&resource(cfg));
    Ok(exporter)
}

/// The OTLP metric exporter for `cfg` (cumulative temporality, the
/// OpenTelemetry default, which Prometheus-style backends expect).
pub(super) fn metric_exporter(
    cfg: &OtlpConfig,
) -> Result<opentelemetry_otlp::MetricExporter, OtlpError> {
    tokio::runtime::Handle::try_current().map_err(|_| OtlpError::NoRuntime)?;
    install_crypto_provider();
    let endpoint = cfg.metrics_endpoint.clone();
    let built = match cfg.protocol {
        Protocol::Grpc => grpc(
            opentelemetry_otlp::MetricExporter::builder().with_tonic(),
            cfg,
            &endpoint,
        )?
        .with_retry_policy(retry_policy())
        .build(),
        Protocol::HttpProtobuf => http(
            opentelemetry_otlp::MetricExporter::builder().with_http(),
            cfg,
            &endpoint,
        )?
        .with_retry_policy(retry_policy())
        .build(),
    };
    built.map_err(|source| OtlpError::Build {
        what: "metric",
        endpoint,
        source,
    })
}
