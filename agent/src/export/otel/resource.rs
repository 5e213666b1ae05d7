//! The OpenTelemetry resource sipscope exports under (resource semantic
//! conventions: service.name, service.version, host.name), resolved from
//! flags, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.

use std::collections::BTreeMap;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use super::config::OtlpConfig;
use crate::export::spans::attr;

/// Attributes of the exported resource (OpenTelemetry resource semantic
/// conventions: service.name, service.version, host.name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceConfig {
    pub service_name: String,
    pub service_version: String,
    pub host_name: String,
    /// Everything else from OTEL_RESOURCE_ATTRIBUTES, kept as given.
    pub extra: BTreeMap<String, String>,
}

impl ResourceConfig {
    /// Resolve from flags and environment (`env` returns a variable's value).
    pub fn resolve(service_name: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut extra = env("OTEL_RESOURCE_ATTRIBUTES")
            .map(|s| parse_key_values(&s).into_iter().collect::<BTreeMap<_, _>>())
            .unwrap_or_default();
        let from_attrs = extra.remove("service.name");
        let service_name = service_name
            .map(str::to_owned)
            .or_else(|| env("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()))
            .or(from_attrs)
            .unwrap_or_else(|| "sipscope".to_owned());
        let host_name = extra.remove("host.name").unwrap_or_else(local_host_name);
        let service_version = extra
            .remove("service.version")
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
        Self {
            service_name,
            service_version,
            host_name,
            extra,
        }
    }
}

/// This machine's host name (uname nodename), or "unknown".
pub fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The resource every span and metric is exported under.
pub fn resource(cfg: &OtlpConfig) -> Resource {
    let r = &cfg.resource;
    let mut kvs = vec![
        KeyValue::new(attr::SERVICE_NAME, r.service_name.clone()),
        KeyValue::new(attr::SERVICE_VERSION, r.service_version.clone()),
        KeyValue::new(attr::HOST_NAME, r.host_name.clone()),
    ];
    kvs.extend(
        r.extra
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    Resource::builder_empty().with_attributes(kvs).build()
}

/// `k1=v1,k2=v2` with percent-encoded values (W3C Baggage octets, as the
/// OpenTelemetry spec prescribes for OTEL_RESOURCE_ATTRIBUTES); malformed
/// items are skipped, as the spec asks.
fn parse_key_values(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|item| {
            let (k, v) = item.split_once('=')?;
            let k = k.trim();
            let v = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8()
                .ok()?;
            (!k.is_empty()).then(|| (k.to_owned(), v.into_owned()))
        })
        .collect()
}
