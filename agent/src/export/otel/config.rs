//! OTLP export configuration: command-line flags ([`OtlpArgs`]) resolved
//! against the standard OpenTelemetry environment variables
//! (OpenTelemetry specification, "OTLP Exporter Configuration" and
//! "Environment Variable Specification") into an [`OtlpConfig`].
//!
//! Precedence: a command-line flag beats the signal-specific variable
//! (`OTEL_EXPORTER_OTLP_TRACES_*`), which beats the generic one
//! (`OTEL_EXPORTER_OTLP_*`). No endpoint anywhere means no OTLP export (the
//! agent then writes spans as JSON lines when asked, or drops them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

pub(crate) use super::resource::ResourceConfig;

/// Wire protocol of the OTLP exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318, paths /v1/traces, /v1/metrics).
    #[value(name = "http", alias = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Grpc => 4317,
            Protocol::HttpProtobuf => 4318,
        }
    }
}

/// OTLP flags, to be `#[command(flatten)]`ed into `run` and `analyze`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OtlpArgs {
    /// OTLP collector endpoint, e.g. http://localhost:4317 (gRPC) or
    /// http://localhost:4318 (HTTP); https:// enables TLS. Without it, and
    /// without OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    /// nothing is exported over OTLP.
    #[arg(long = "otlp-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,

    /// OTLP protocol [default: grpc, or OTEL_EXPORTER_OTLP_PROTOCOL].
    #[arg(long = "otlp-protocol", value_enum, value_name = "PROTOCOL")]
    pub protocol: Option<Protocol>,

    /// Extra header sent with every export (repeatable), e.g. an API key:
    /// --otlp-header x-api-key=SECRET. Adds to OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,

    /// service.name of the exported resource [default: OTEL_SERVICE_NAME or sipscope].
    #[arg(long = "otlp-service-name", value_name = "NAME")]
    pub service_name: Option<String>,

    /// Spans buffered for export; when full, new spans are dropped and counted.
    // 16384: about 1.7 s of spans at 12,000 SIP messages/s, where 4096
    // lost spans while the exporter's threads waited for a busy CPU
    // (`cargo xtask bench sipp`).
    #[arg(long = "otlp-queue", value_name = "SPANS", default_value_t = 16384)]
    pub queue_capacity: usize,

    /// Export timeout per batch [default: OTEL_EXPORTER_OTLP_TIMEOUT or 10000 ms].
    #[arg(long = "otlp-timeout-ms", value_name = "MS")]
    pub timeout_ms: Option<u64>,

    /// PEM file with the CA certificate(s) that sign the collector's TLS
    /// certificate, trusted besides the public web PKI roots
    /// [default: OTEL_EXPORTER_OTLP_CERTIFICATE].
    #[arg(long = "otlp-ca-cert", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Also export digest `response` values (sip.auth.response). Off by
    /// default: secrets never leave the host unless you ask for it.
    #[arg(long = "otlp-include-digest-response")]
    pub include_digest_response: bool,
}

/// Errors in the OTLP configuration; each says what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "OTLP endpoint {value:?} (from {source_name}) is not a valid URL: {reason}; write it like http://collector:4317 (gRPC) or http://collector:4318 (HTTP), https:// for TLS"
    )]
    MalformedEndpoint {
        source_name: String,
        value: String,
        reason: String,
    },
    #[error(
        "OTLP protocol {value:?} (from {source_name}) is not supported: use grpc or http/protobuf"
    )]
    UnsupportedProtocol { source_name: String, value: String },
    #[error("OTLP header {value:?} (from {source_name}) is not KEY=VALUE")]
    MalformedHeader { source_name: String, value: String },
    #[error("{name}={value:?} is not a number of milliseconds")]
    MalformedTimeout { name: String, value: String },
    #[error("--otlp-queue must be at least 1")]
    ZeroQueue,
    #[error("{name}={value:?} is not supported: use otlp or none")]
    UnsupportedExporter { name: String, value: String },
}

/// A fully resolved OTLP configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    pub protocol: Protocol,
    /// Where trace exports go: for gRPC the collector's base URL, for HTTP
    /// the full URL including `/v1/traces`.
    pub traces_endpoint: String,
    /// Same for metrics (`/v1/metrics` for HTTP).
    pub metrics_endpoint: String,
    pub headers: BTreeMap<String, String>,
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM) for https endpoints.
    pub ca_cert: Option<PathBuf>,
    /// How often metrics are exported (OTEL_METRIC_EXPORT_INTERVAL, default 60 s).
    pub metrics_interval: Duration,
    pub queue_capacity: usize,
    pub include_digest_response: bool,
    pub resource: ResourceConfig,
    /// Spans go over OTLP (OTEL_TRACES_EXPORTER, `otlp` unless `none`).
    pub export_traces: bool,
    /// Metrics go over OTLP (OTEL_METRICS_EXPORTER, `otlp` unless `none`).
    pub export_metrics: bool,
}

impl OtlpConfig {
    /// Resolve flags against the process environment. `Ok(None)`: no
    /// endpoint configured, OTLP export is off.
    pub fn from_args(args: &OtlpArgs) -> Result<Option<Self>, ConfigError> {
        Self::resolve(args, &|name| std::env::var(name).ok())
    }

    /// Resolve flags against an arbitrary environment (for tests).
    pub fn resolve(
        args: &OtlpArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if args.queue_capacity == 0 {
            return Err(ConfigError::ZeroQueue);
        }
        // Checked first, so a typo fails even while no endpoint is set.
        let export_traces = exporter_on("OTEL_TRACES_EXPORTER", &env)?;
        let export_metrics = exporter_on("OTEL_METRICS_EXPORTER", &env)?;
        // The spec's kill switch, for environments that set OTEL_* globally.
        if args.endpoint.is_none()
            && env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            return Ok(None);
        }
        let protocol = match args.protocol {
            Some(p) => p,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v))
                .or_else(|| {
                    env("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL", v))
                }) {
                Some((name, v)) => parse_protocol(name, &v)?,
                None => Protocol::Grpc,
            },
        };

        // (value, where it came from, is it signal-specific)
        let (raw, source_name, specific) = if let Some(e) = &args.endpoint {
            (e.clone(), "--otlp-endpoint".to_owned(), false)
        } else if let Some(e) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            (e, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_owned(), true)
        } else if let Some(e) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            (e, "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), false)
        } else {
            return Ok(None);
        };
        let base = parse_endpoint(&raw, &source_name, protocol)?;
        let traces_endpoint = signal_endpoint(&base, protocol, "traces", specific);
        let metrics_endpoint = match env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            Some(m) if args.endpoint.is_none() => {
                let u = parse_endpoint(&m, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", protocol)?;
                signal_endpoint(&u, protocol, "metrics", true)
            }
            // A signal-specific traces URL says nothing about metrics: use its origin.
            _ => signal_endpoint(&base, protocol, "metrics", false),
        };

        let mut headers = BTreeMap::new();
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(v) = env(name) {
                for item in v.split(',').filter(|s| !s.trim().is_empty()) {
                    let (k, v) = parse_header(item, name)?;
                    headers.insert(k, v);
                }
            }
        }
        for item in &args.headers {
            let (k, v) = parse_header(item, "--otlp-header")?;
            headers.insert(k, v);
        }

        let timeout = match args.timeout_ms {
            Some(ms) => Duration::from_millis(ms),
            None => match env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", v))
                .or_else(|| {
                    env("OTEL_EXPORTER_OTLP_TIMEOUT").map(|v| ("OTEL_EXPORTER_OTLP_TIMEOUT", v))
                }) {
                Some((name, v)) => Duration::from_millis(v.trim().parse().map_err(|_| {
                    ConfigError::MalformedTimeout {
                        name: name.to_owned(),
                        value: v.clone(),
                    }
                })?),
                None => Duration::from_secs(10),
            },
        };

        let ca_cert = args.ca_cert.clone().or_else(|| {
            env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
                .or_else(|| env("OTEL_EXPORTER_OTLP_CERTIFICATE"))
                .map(PathBuf::from)
        });
        let metrics_interval = match env("OTEL_METRIC_EXPORT_INTERVAL") {
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(ConfigError::MalformedTimeout {
                        name: "OTEL_METRIC_EXPORT_INTERVAL".into(),
                        value: v,
                    });
                }
            },
            None => Duration::from_secs(60),
        };

        Ok(Some(Self {
            protocol,
            traces_endpoint,
            metrics_endpoint,
            headers,
            timeout,
            ca_cert,
            metrics_interval,
            queue_capacity: args.queue_capacity,
            include_digest_response: args.include_digest_response,
            resource: ResourceConfig::resolve(args.service_name.as_deref(), &env),
            export_traces,
            export_metrics,
        }))
    }

    pub fn is_tls(&self) -> bool {
        self.traces_endpoint.starts_with("https://")
    }
}

/// OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER (OpenTelemetry
/// specification, "Exporter Selection"): `otlp` (the default) or `none`.
/// Other exporters the spec names (`console`, `zipkin`, `prometheus`) are
/// not built in: `--json` writes spans, `--metrics-listen` serves
/// Prometheus.
fn exporter_on(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<bool, ConfigError> {
    match env(name) {
        None => Ok(true),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "otlp" => Ok(true),
            "none" => Ok(false),
            _ => Err(ConfigError::UnsupportedExporter {
                name: name.to_owned(),
                value: v,
            }),
        },
    }
}

fn parse_protocol(source_name: &str, v: &str) -> Result<Protocol, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" | "http" => Ok(Protocol::HttpProtobuf),
        _ => Err(ConfigError::UnsupportedProtocol {
            source_name: source_name.to_owned(),
            value: v.to_owned(),
        }),
    }
}

/// Validate an endpoint URL; add the protocol's default port when none is
/// written (so `http://collector` means 4317 for gRPC, 4318 for HTTP).
fn parse_endpoint(raw: &str, source_name: &str, protocol: Protocol) -> Result<Uri, ConfigError> {
    let bad = |reason: &str| ConfigError::MalformedEndpoint {
        source_name: source_name.to_owned(),
        value: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = raw
        .trim()
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(bad(&format!("scheme {other:?} is not http or https"))),
        None => return Err(bad("no scheme (http:// or https://)")),
    }
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Err(bad("no host"));
    };
    if uri.port().is_some() {
        return Ok(uri);
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let with_port = format!(
        "{}://{}:{}{}",
        uri.scheme_str().unwrap_or("http"),
        host,
        protocol.default_port(),
        path
    );
    with_port
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))
}

/// The URL a signal is exported to. gRPC: the origin (the service path
/// comes from the protobuf service). HTTP: a generic endpoint gets
/// `/v1/<signal>` appended; a signal-specific one is used as is (spec).
fn signal_endpoint(base: &Uri, protocol: Protocol, signal: &str, specific: bool) -> String {
    let origin = format!(
        "{}://{}",
        base.scheme_str().unwrap_or("http"),
        base.authority().map(|a| a.as_str()).unwrap_or("")
    );
    match protocol {
        Protocol::Grpc => origin,
        Protocol::HttpProtobuf if specific => base.to_string(),
        Protocol::HttpProtobuf => {
            let path = base.path().trim_end_matches('/');
            let path = path
                .strip_suffix("/v1/traces")
                .or_else(|| path.strip_suffix("/v1/metrics"))
                .unwrap_or(path);
            format!("{origin}{path}/v1/{signal}")
        }
    }
}

fn parse_header(item: &str, source_name: &str) -> Result<(String, String), ConfigError> {
    let bad = || ConfigError::MalformedHeader {
        source_name: source_name.to_owned(),
        value: item.to_owned(),
    };
    let (k, v) = item.split_once('=').ok_or_else(bad)?;
    let k = k.trim();
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(bad());
    }
    let v = percent_encoding::percent_decode_str(v.trim())
        .decode_utf8()
        .map_err(|_| bad())?;
    Ok((k.to_ascii_lowercase(), v.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> OtlpArgs {
        OtlpArgs {
            queue_capacity: 128,
            ..OtlpArgs::default()
        }
    }

    fn resolve(a: &OtlpArgs, vars: &[(&str, &str)]) -> Result<Option<OtlpConfig>, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtlpConfig::resolve(a, &move |n| {
            vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        })
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        otlp: OtlpArgs,
    }

    #[test]
    fn flags_parse_as_documented() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "sipscope",
            "--otlp-endpoint",
            "https://tempo:4318",
            "--otlp-protocol",
            "http/protobuf",
            "--otlp-header",
            "a=1",
            "--otlp-header",
            "b=2",
            "--otlp-ca-cert",
            "/ca.pem",
        ])
        .unwrap();
        assert_eq!(cli.otlp.protocol, Some(Protocol::HttpProtobuf));
        assert_eq!(cli.otlp.headers, ["a=1", "b=2"]);
        assert_eq!(cli.otlp.queue_capacity, 16384);
        let c = resolve(&cli.otlp, &[]).unwrap().unwrap();
        assert_eq!(c.traces_endpoint, "https://tempo:4318/v1/traces");
        assert!(Cli::try_parse_from(["sipscope", "--otlp-protocol", "http/json"]).is_err());
    }

    #[test]
    fn otel_sdk_disabled_turns_env_configured_export_off() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(resolve(&args(), &vars).unwrap(), None);
        let mut a = args();
        a.endpoint = Some("http://c:4317".into());
        assert!(
            resolve(&a, &vars).unwrap().is_some(),
            "an explicit flag wins"
        );
    }

    #[test]
    fn nothing_configured_means_no_export() {
        assert_eq!(resolve(&args(), &[]).unwrap(), None);
        assert_eq!(
            resolve(&args(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(),
            None
        );
    }

    #[test]
    fn generic_env_endpoint_gets_signal_paths_for_http() {
        let c = resolve(
            &args(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/otlp/"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.traces_endpoint, "http://collector:4318/otlp/v1/traces");
        assert_eq!(c.metrics_endpoint, "http://collector:4318/otlp/v1/metrics");
    }

    #[test]
    fn traces_endpoint_is_used_as_is_and_beats_the_generic_one() {
        let c = resolve(
            &args(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://tempo.example:443/custom/traces",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.traces_endpoint, "https://tempo.example:443/custom/traces");
        assert!(c.is_tls());
    }

    #[test]
    fn flag_beats_env_and_default_ports_follow_protocol() {
        let mut a = args();
        a.endpoint = Some("http://jaeger".into());
        let c = resolve(&a, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:1")])
            .unwrap()
            .unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.traces_endpoint, "http://jaeger:4317");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.metrics_interval, Duration::from_secs(60));
        assert_eq!(c.ca_cert, None);
        a.protocol = Some(Protocol::HttpProtobuf);
        let c = resolve(&a, &[]).unwrap().unwrap();
        assert_eq!(c.traces_endpoint, "http://jaeger:4318/v1/traces");
        a.endpoint = Some("http://[::1]".into());
        let c = resolve(&a, &[]).unwrap().unwrap();
        assert_eq!(c.traces_endpoint, "http://[::1]:4318/v1/traces");
    }

    #[test]
    fn tls_ca_timeout_and_metric_interval_from_env() {
        let mut a = args();
        a.endpoint = Some("https://c".into());
        let c = resolve(
            &a,
            &[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ssl/otel-ca.pem"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.ca_cert, Some(PathBuf::from("/etc/ssl/otel-ca.pem")));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.metrics_interval, Duration::from_secs(15));
        assert!(c.is_tls());
        a.ca_cert = Some("/flag.pem".into());
        a.timeout_ms = Some(1);
        let c = resolve(&a, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/env.pem")])
            .unwrap()
            .unwrap();
        assert_eq!(c.ca_cert, Some(PathBuf::from("/flag.pem")));
        assert_eq!(c.timeout, Duration::from_millis(1));
    }

    #[test]
    fn headers_merge_env_then_flags_with_percent_decoding() {
        let mut a = args();
        a.endpoint = Some("http://c:4317".into());
        a.headers = vec!["X-Tenant=flag".into()];
        let c = resolve(
            &a,
            &[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%20ecret, x-tenant=env",
            )],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c.headers.get("api-key").map(String::as_str),
            Some("s ecret")
        );
        assert_eq!(c.headers.get("x-tenant").map(String::as_str), Some("flag"));
    }

    #[test]
    fn malformed_inputs_are_clear_errors() {
        let mut a = args();
        for bad in [
            "localhost:4317",
            "ftp://c:21",
            "http://",
            "http://exa mple:4317",
        ] {
            a.endpoint = Some(bad.into());
            let e = resolve(&a, &[]).unwrap_err();
            assert!(
                matches!(e, ConfigError::MalformedEndpoint { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("--otlp-endpoint"), "{e}");
        }
        a.endpoint = Some("http://c".into());
        let e = resolve(&a, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
        assert!(e.to_string().contains("grpc or http/protobuf"), "{e}");
        a.headers = vec!["novalue".into()];
        assert!(matches!(
            resolve(&a, &[]).unwrap_err(),
            ConfigError::MalformedHeader { .. }
        ));
        a.headers.clear();
        let e = resolve(&a, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]).unwrap_err();
        assert!(matches!(e, ConfigError::MalformedTimeout { .. }));
        a.queue_capacity = 0;
        assert_eq!(resolve(&a, &[]).unwrap_err(), ConfigError::ZeroQueue);
    }

    #[test]
    fn resource_from_service_name_and_resource_attributes() {
        let mut a = args();
        a.endpoint = Some("http://c".into());
        let vars = [(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=fromattrs,host.name=pbx-7,deployment.environment=prod%20eu",
        )];
        let r = resolve(&a, &vars).unwrap().unwrap().resource;
        assert_eq!(r.service_name, "fromattrs");
        assert_eq!(r.host_name, "pbx-7");
        assert_eq!(
            r.extra.get("deployment.environment").map(String::as_str),
            Some("prod eu")
        );
        assert_eq!(r.service_version, env!("CARGO_PKG_VERSION"));
        let mut with_env = vars.to_vec();
        with_env.push(("OTEL_SERVICE_NAME", "fromenv"));
        assert_eq!(
            resolve(&a, &with_env)
                .unwrap()
                .unwrap()
                .resource
                .service_name,
            "fromenv"
        );
        a.service_name = Some("fromflag".into());
        assert_eq!(
            resolve(&a, &with_env)
                .unwrap()
                .unwrap()
                .resource
                .service_name,
            "fromflag"
        );
        a.service_name = None;
        assert_eq!(
            resolve(&a, &[]).unwrap().unwrap().resource.service_name,
            "sipscope"
        );
    }
}
