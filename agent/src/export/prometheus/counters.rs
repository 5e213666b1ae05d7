//! The agent's own counters as Prometheus counter families, read from the
//! structs the console summary and `--json` records print (the pipeline's
//! `Stats`, the kernel's counter arrays, the export queues), so the
//! summary and `/metrics` cannot disagree. Each struct is flattened into
//! `counter="path.of.field"` label values: the set is closed by the code
//! (field names and counter slot names), never by traffic.
//!
//! The core publishes a snapshot on its tick; a scrape only encodes the
//! latest one (no lock is held while the core works).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One family of counters, `sipscope_<name>_total{<label>="…"}`, or of
/// gauges (`gauge`: values that go down, such as table sizes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterGroup {
    pub name: &'static str,
    pub help: &'static str,
    pub label: &'static str,
    pub values: Vec<(String, u64)>,
    pub gauge: bool,
}

impl CounterGroup {
    /// Every unsigned integer field of `value` (serialized with serde), as
    /// `a.b.c` paths; strings, floats and booleans are not counters.
    pub fn from_serialize(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        value: &impl serde::Serialize,
    ) -> Self {
        let mut values = Vec::new();
        if let Ok(v) = serde_json::to_value(value) {
            flatten(&v, &mut String::new(), &mut values);
        }
        Self {
            name,
            help,
            label,
            values,
            gauge: false,
        }
    }
}

fn flatten(v: &serde_json::Value, path: &mut String, out: &mut Vec<(String, u64)>) {
    match v {
        serde_json::Value::Object(fields) => {
            for (k, v) in fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                flatten(v, path, out);
                path.truncate(len);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(n) = n.as_u64() {
                out.push((path.clone(), n));
            }
        }
        _ => {}
    }
}

/// A group computed at scrape time (counters another thread keeps in
/// atomics, such as the span export queue's).
pub type LiveGroup = Box<dyn Fn() -> CounterGroup + Send + Sync>;

/// The published groups (keyed by family name: a new snapshot of a group
/// replaces the old) and the live ones.
#[derive(Default)]
pub(crate) struct CounterGroups {
    published: Mutex<BTreeMap<&'static str, CounterGroup>>,
    live: Mutex<Vec<LiveGroup>>,
}

impl CounterGroups {
    pub(crate) fn publish(&self, group: CounterGroup) {
        if let Ok(mut p) = self.published.lock() {
            p.insert(group.name, group);
        }
    }

    pub(crate) fn add_live(&self, group: LiveGroup) {
        if let Ok(mut l) = self.live.lock() {
            l.push(group);
        }
    }

    fn groups(&self) -> Vec<CounterGroup> {
        let mut out: Vec<CounterGroup> = self
            .published
            .lock()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default();
        if let Ok(l) = self.live.lock() {
            out.extend(l.iter().map(|f| f()));
        }
        out
    }
}

/// The registry's view of [`CounterGroups`].
#[derive(Clone)]
pub(crate) struct GroupsCollector(pub(crate) Arc<CounterGroups>);

impl std::fmt::Debug for GroupsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupsCollector")
    }
}

impl Collector for GroupsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A group without values (e.g. no OTLP export running) shows
        // nothing, not an empty family.
        for g in self.0.groups().into_iter().filter(|g| !g.values.is_empty()) {
            let kind = if g.gauge {
                MetricType::Gauge
            } else {
                MetricType::Counter
            };
            let mut family = encoder.encode_descriptor(g.name, g.help, None, kind)?;
            for (value, n) in &g.values {
                let labels = [(g.label, value.as_str())];
                let sample = family.encode_family(&labels)?;
                if g.gauge {
                    ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX)).encode(sample)?;
                } else {
                    ConstCounter::new(*n).encode(sample)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Inner {
        evicted: u64,
        ratio: f64,
    }

    #[derive(serde::Serialize)]
    struct Outer {
        seen: u64,
        table: Inner,
        name: &'static str,
    }

    #[test]
    fn nested_integer_fields_become_dotted_label_values() {
        let g = CounterGroup::from_serialize(
            "x",
            "h",
            "counter",
            &Outer {
                seen: 3,
                table: Inner {
                    evicted: 2,
                    ratio: 0.5,
                },
                name: "n",
            },
        );
        assert_eq!(
            g.values,
            vec![("seen".into(), 3), ("table.evicted".into(), 2)]
        );
    }
}
