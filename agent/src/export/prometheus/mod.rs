//! Prometheus / OpenMetrics view of the agent (docs/metrics.md):
//! `--metrics-listen ADDR` serves `/metrics` and `/healthz`.
//!
//! The analysis core never waits for a scrape: the session updates the
//! SIP/RTP metrics (prometheus-client handles, atomics) as it emits
//! events, and publishes snapshots of its counters on each tick; the HTTP
//! side ([`server`]) only encodes. Every label value comes from a closed
//! set ([`labels`]).

mod counters;
mod health;
mod labels;
pub mod server;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use counters::{CounterGroup, LiveGroup};
pub use health::{CORE_STALL, Health};
use labels::{
    CodeLabel, MediaDirectionLabel, MessageLabels, MethodLabel, OutcomeLabel, TransactionLabels,
};

use super::media_spans::media_directions;
use crate::analysis::calls::Call;
use crate::pipeline::{Event, Stats};
use crate::sip::Transaction;

/// Loss ratio buckets: G.711 degrades audibly from 1 %, 5 % is poor.
const LOSS_RATIO_BOUNDS: [f64; 9] = [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5];
/// Jitter buckets in seconds (RFC 3550 interarrival jitter; 30 ms is the
/// usual alarm line, past 100 ms jitter buffers give up).
const JITTER_BOUNDS: [f64; 9] = [0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5];

/// The fields of `Stats` that are sizes now (they go down), not counts.
const PIPELINE_SIZES: [&str; 6] = [
    "transactions.in_flight",
    "calls.open",
    "registrations.bindings",
    "inbound.bindings",
    "auth.exchanges",
    "findings.sources",
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct Families {
    messages: Family<MessageLabels, Counter>,
    transactions: Family<TransactionLabels, Counter>,
    retransmissions: Family<MethodLabel, Counter>,
    registrations: Family<OutcomeLabel, Counter>,
    findings: Family<CodeLabel, Counter>,
    calls_up: Gauge,
    rtp_loss: HistogramFamily<MediaDirectionLabel>,
    rtp_jitter: HistogramFamily<MediaDirectionLabel>,
    rtp_mos: HistogramFamily<MediaDirectionLabel>,
}

/// The registry and the handles the core updates. Cheap to clone.
#[derive(Clone)]
pub struct PrometheusMetrics {
    registry: Arc<Registry>,
    families: Arc<Families>,
    groups: Arc<counters::CounterGroups>,
}

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrometheusMetrics")
    }
}

impl Default for PrometheusMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn loss_histogram() -> Histogram {
    Histogram::new(LOSS_RATIO_BOUNDS)
}
fn jitter_histogram() -> Histogram {
    Histogram::new(JITTER_BOUNDS)
}
fn mos_histogram() -> Histogram {
    Histogram::new(crate::export::otel::metrics::MOS_BOUNDS.iter().copied())
}

impl PrometheusMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("sipscope");
        let families = Families {
            messages: Family::default(),
            transactions: Family::default(),
            retransmissions: Family::default(),
            registrations: Family::default(),
            findings: Family::default(),
            calls_up: Gauge::default(),
            rtp_loss: Family::new_with_constructor(loss_histogram),
            rtp_jitter: Family::new_with_constructor(jitter_histogram),
            rtp_mos: Family::new_with_constructor(mos_histogram),
        };
        r.register(
            "build",
            "The agent's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "sip_messages",
            "SIP messages parsed (retransmissions included) by method (a response: its CSeq method), kind, status class and capture direction",
            families.messages.clone(),
        );
        r.register(
            "sip_transactions",
            "SIP transactions ended (RFC 3261 §17), by method and outcome: the final response's class, or timeout",
            families.transactions.clone(),
        );
        r.register(
            "sip_retransmissions",
            "SIP messages seen again (same request of a transaction, or same response), by method",
            families.retransmissions.clone(),
        );
        r.register(
            "registrations",
            "Registration attempts (RFC 3261 §10) that reached an outcome, by outcome",
            families.registrations.clone(),
        );
        r.register(
            "findings",
            "Diagnoses raised, by catalogue code (README, Diagnosis catalogue)",
            families.findings.clone(),
        );
        r.register(
            "calls_up",
            "Calls (INVITE dialogs) the call tracker has open now",
            families.calls_up.clone(),
        );
        r.register_with_unit(
            "rtp_loss",
            "RTP loss (RFC 3550 §6.4.1: lost / expected) per stream direction, observed at call end",
            Unit::Other("ratio".into()),
            families.rtp_loss.clone(),
        );
        r.register_with_unit(
            "rtp_jitter",
            "RTP interarrival jitter (RFC 3550 §6.4.1) per stream direction, observed at call end",
            Unit::Seconds,
            families.rtp_jitter.clone(),
        );
        r.register(
            "rtp_mos",
            "E-model MOS estimate (ITU-T G.107, 1 to 4.5) per stream direction, observed at call end",
            families.rtp_mos.clone(),
        );
        let groups = Arc::new(counters::CounterGroups::default());
        r.register_collector(Box::new(counters::GroupsCollector(groups.clone())));
        Self {
            registry: Arc::new(r),
            families: Arc::new(families),
            groups,
        }
    }

    /// The session's events as they are emitted (core thread): cheap
    /// atomic updates, no allocation for a label set seen before.
    pub fn on_events(&self, events: &[Event]) {
        let f = &self.families;
        for e in events {
            match e {
                Event::Message(m) => {
                    let msg = &m.message;
                    let method = labels::method(msg.method());
                    let (kind, status_class) = match msg.status() {
                        Some(code) => ("response", labels::status_class(code)),
                        None => ("request", "none"),
                    };
                    f.messages
                        .get_or_create(&MessageLabels {
                            method,
                            kind,
                            status_class,
                            direction: labels::direction(m.meta.direction),
                        })
                        .inc();
                    if m.retransmission {
                        f.retransmissions
                            .get_or_create(&MethodLabel { method })
                            .inc();
                    }
                }
                Event::TransactionCompleted(t) => self.transaction(t, None),
                Event::TransactionTimedOut { transaction, .. } => {
                    self.transaction(transaction, Some("timeout"))
                }
                Event::RegistrationAttempt(a) => {
                    f.registrations
                        .get_or_create(&OutcomeLabel {
                            outcome: a.outcome.label(),
                        })
                        .inc();
                }
                Event::Diagnosis(d) => {
                    f.findings
                        .get_or_create(&CodeLabel {
                            code: d.code.as_str(),
                        })
                        .inc();
                }
                Event::Call(c) if c.closed => self.call_closed(c),
                Event::Call(_) | Event::Malformed(_) | Event::Rtcp(_) => {}
            }
        }
    }

    fn transaction(&self, t: &Transaction, outcome: Option<&'static str>) {
        let outcome = outcome.unwrap_or_else(|| match t.final_status() {
            Some(code) => labels::status_class(code),
            None => "timeout",
        });
        self.families
            .transactions
            .get_or_create(&TransactionLabels {
                method: labels::method(Some(&t.method)),
                outcome,
            })
            .inc();
    }

    /// A call's last report: one observation per stream direction that
    /// carried RTP.
    fn call_closed(&self, call: &Call) {
        let f = &self.families;
        for d in media_directions(call) {
            let Some(o) = &d.report.observed else {
                continue;
            };
            let labels = MediaDirectionLabel {
                direction: d.label(),
            };
            if o.expected > 0 {
                let lost = o.lost.max(0) as f64;
                f.rtp_loss
                    .get_or_create(&labels)
                    .observe(lost / o.expected as f64);
            }
            f.rtp_jitter
                .get_or_create(&labels)
                .observe(o.jitter_ms / 1000.0);
            if let Some(mos) = d.report.mos {
                f.rtp_mos.get_or_create(&labels).observe(mos);
            }
        }
    }

    /// The core's tick: calls up now and the pipeline's counters
    /// (`sipscope_pipeline_events_total`, the same numbers as the summary);
    /// the fields that are sizes now, not counts, as gauges
    /// (`sipscope_pipeline_entries`).
    pub fn publish_pipeline(&self, stats: &Stats, calls_up: usize) {
        self.families.calls_up.set(calls_up as i64);
        let mut counters = CounterGroup::from_serialize(
            "pipeline_events",
            "Pipeline counters (packets, SIP, transactions, registrations, calls, evictions, ...): the fields of the run summary",
            "counter",
            stats,
        );
        let (now, counts) = counters
            .values
            .drain(..)
            .partition(|(name, _)| PIPELINE_SIZES.contains(&name.as_str()));
        counters.values = counts;
        self.publish(counters);
        self.publish(CounterGroup {
            name: "pipeline_entries",
            help: "Entries the pipeline's tables hold now (transactions in flight, calls open, bindings and digest exchanges tracked, flood-guard sources)",
            label: "table",
            values: now,
            gauge: true,
        });
    }

    /// Replaces the group of the same name.
    pub fn publish(&self, group: CounterGroup) {
        self.groups.publish(group);
    }

    /// A group read at every scrape.
    pub fn add_live(&self, group: LiveGroup) {
        self.groups.add_live(group);
    }

    /// The OpenMetrics text exposition of everything.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
