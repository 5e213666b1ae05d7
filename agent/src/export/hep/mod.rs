//! HEP v3 export to a HOMER (sipcapture) collector: every captured SIP
//! message as HOMER's capture agents send it, plus what only sipscope
//! knows, correlated with the call by its Call-ID: RTCP reports, the
//! kernel's RTP statistics at call end, and the findings.
//!
//! [`encode`] writes HEP3 packets from the specification; [`sender`]
//! moves them to the collector on a thread of its own through a bounded
//! queue; [`sink`] turns pipeline events into packets.

pub mod encode;
mod redact;
mod sender;
mod sink;

use std::net::{SocketAddr, ToSocketAddrs};

pub(crate) use sender::HepSender;
pub use sender::{Overflow, SenderOptions, SenderStats};
pub use sink::{HepSink, HepStats, SinkStats, write_json};

/// How HEP packets travel to the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HepTransport {
    Udp,
    Tcp,
}

/// A resolved `udp://HOST:PORT` or `tcp://HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub transport: HepTransport,
    pub addr: SocketAddr,
    /// As the user wrote it, for messages.
    pub url: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointError {
    #[error(
        "--hep-endpoint {0}: give the transport and the collector, e.g. udp://homer:9060 or tcp://10.0.0.5:9060"
    )]
    NoScheme(String),
    #[error("--hep-endpoint {url}: transport {scheme} is not supported; use udp:// or tcp://")]
    Scheme { url: String, scheme: String },
    #[error("--hep-endpoint {0}: give the collector's port, e.g. {0}:9060")]
    NoPort(String),
    #[error("--hep-endpoint {url}: cannot resolve {host}: {reason}")]
    Resolve {
        url: String,
        host: String,
        reason: String,
    },
}

impl Endpoint {
    /// Parses and resolves (once, at start-up) an endpoint URL.
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| EndpointError::NoScheme(url.to_owned()))?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "udp" => HepTransport::Udp,
            "tcp" => HepTransport::Tcp,
            _ => {
                return Err(EndpointError::Scheme {
                    url: url.to_owned(),
                    scheme: scheme.to_owned(),
                });
            }
        };
        let host_port = rest.trim_end_matches('/');
        // `[v6]:port` or `host:port`; a bare v6 address has colons but no port.
        let has_port = match host_port.rsplit_once(':') {
            Some((host, port)) => {
                !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && (!host.contains(':') || host.ends_with(']'))
            }
            None => false,
        };
        if !has_port {
            return Err(EndpointError::NoPort(url.to_owned()));
        }
        let addr = host_port
            .to_socket_addrs()
            .map_err(|e| e.to_string())
            .and_then(|mut a| a.next().ok_or_else(|| "no address".to_owned()))
            .map_err(|reason| EndpointError::Resolve {
                url: url.to_owned(),
                host: host_port.to_owned(),
                reason,
            })?;
        Ok(Self {
            transport,
            addr,
            url: url.to_owned(),
        })
    }
}

/// HEP flags, `#[command(flatten)]`ed into `run` and `analyze`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct HepArgs {
    /// HOMER/HEP collector, e.g. udp://homer:9060 or tcp://homer:9060:
    /// every SIP message, RTCP report, call-end RTP report and finding is
    /// sent there as HEP v3, correlated by Call-ID.
    #[arg(long = "hep-endpoint", id = "hep_endpoint", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Capture agent ID (HEP chunk 0x000c) HOMER shows per packet.
    #[arg(
        long = "hep-capture-id",
        id = "hep_capture_id",
        value_name = "N",
        default_value_t = 2001
    )]
    pub capture_id: u32,
    /// Authentication key (HEP chunk 0x000e), if the collector wants one.
    #[arg(long = "hep-password", id = "hep_password", value_name = "KEY")]
    pub password: Option<String>,
    /// Node name (HEP chunk 0x0013) [default: the host name].
    #[arg(long = "hep-node-name", id = "hep_node_name", value_name = "NAME")]
    pub node_name: Option<String>,
    /// HEP packets queued for the collector at most; when full, new ones
    /// are dropped and counted.
    #[arg(long = "hep-queue", id = "hep_queue", value_name = "PACKETS", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub queue: u32,
    /// Also send digest `response` values in Authorization headers. Off
    /// by default: they are replaced by "redacted", because a response
    /// with its challenge allows an offline attack on the password.
    #[arg(
        long = "hep-include-digest-response",
        id = "hep_include_digest_response"
    )]
    pub include_digest_response: bool,
}

/// A resolved HEP configuration.
#[derive(Clone, Debug)]
pub struct HepConfig {
    pub endpoint: Endpoint,
    pub agent: encode::Agent,
    pub sender: SenderOptions,
    /// Send digest responses as captured instead of redacted.
    pub include_digest_response: bool,
}

impl HepArgs {
    /// `None` without `--hep-endpoint`.
    pub fn resolve(&self, overflow: Overflow) -> Result<Option<HepConfig>, EndpointError> {
        let Some(url) = &self.endpoint else {
            return Ok(None);
        };
        let endpoint = Endpoint::parse(url)?;
        let node_name = self.node_name.clone().or_else(host_name);
        Ok(Some(HepConfig {
            endpoint,
            agent: encode::Agent {
                capture_id: self.capture_id,
                auth_key: self.password.clone(),
                node_name,
            },
            sender: SenderOptions {
                queue: self.queue as usize,
                overflow,
                ..SenderOptions::default()
            },
            include_digest_response: self.include_digest_response,
        }))
    }
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_clear_errors() {
        let e = Endpoint::parse("udp://127.0.0.1:9060").unwrap();
        assert_eq!(e.transport, HepTransport::Udp);
        assert_eq!(e.addr, "127.0.0.1:9060".parse().unwrap());
        let e = Endpoint::parse("TCP://[::1]:9061/").unwrap();
        assert_eq!(e.transport, HepTransport::Tcp);
        assert_eq!(e.addr, "[::1]:9061".parse().unwrap());
        assert_eq!(
            Endpoint::parse("127.0.0.1:9060").unwrap_err(),
            EndpointError::NoScheme("127.0.0.1:9060".into())
        );
        let err = Endpoint::parse("sctp://h:9060").unwrap_err().to_string();
        assert!(err.contains("use udp:// or tcp://"), "{err}");
        for no_port in ["udp://homer", "udp://[::1]", "udp://::1", "udp://homer:"] {
            assert_eq!(
                Endpoint::parse(no_port).unwrap_err(),
                EndpointError::NoPort(no_port.into()),
                "{no_port}"
            );
        }
        let err = Endpoint::parse("udp://no-such-host.invalid:9060").unwrap_err();
        assert!(matches!(err, EndpointError::Resolve { .. }), "{err}");
    }
}
