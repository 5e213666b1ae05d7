//! The JSON-lines records the CLI writes itself (kernel features, drops,
//! capture and export counters), as typed structs.
//!
//! These records were first written through `serde_json::json!` and
//! `serde_json::Map`, whose keys come out sorted (serde_json without
//! `preserve_order`), nested objects included. Consumers may compare
//! lines, so [`Sorted`] keeps that order exactly while the records stay
//! typed: the struct says what a record holds, the wrapper how its keys
//! are ordered.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use sipscope::capture::live::{CaptureCounters, DropCounters, FeatureLine};
use sipscope::export::pcap_ring::PcapRingStats;
use sipscope_common::CaptureCounter;

/// Serializes `T` with every object's keys in sorted order.
pub struct Sorted<T>(pub T);

impl<T: Serialize> Serialize for Sorted<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // serde_json's Value keeps objects in a BTreeMap: sorted keys.
        serde_json::to_value(&self.0)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

/// One record and its newline.
pub fn write_record(out: &mut impl Write, record: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")
}

/// What runs for one kernel feature (`"type": "kernel_feature"`).
#[derive(Serialize)]
pub struct KernelFeatureRecord<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    line: &'a FeatureLine,
}

impl<'a> KernelFeatureRecord<'a> {
    pub fn new(line: &'a FeatureLine) -> Sorted<Self> {
        Sorted(Self {
            r#type: "kernel_feature",
            line,
        })
    }
}

/// The kernel's and the CLI's capture counters at exit (`"type":
/// "capture"`): one key per kernel counter, by its name.
#[derive(Serialize)]
pub struct CaptureRecord {
    r#type: &'static str,
    #[serde(flatten)]
    counters: BTreeMap<&'static str, u64>,
    malformed_events: u64,
    core_queue_full: u64,
    /// The drop tracer's counters as `name=value` pairs, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    drops: Option<String>,
    /// What `--write-pcap` wrote and lost, when it was on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pcap: Option<PcapRingStats>,
}

impl CaptureRecord {
    pub fn new(
        counters: &CaptureCounters,
        malformed_events: u64,
        core_queue_full: u64,
        drops: Option<&DropCounters>,
        pcap: Option<PcapRingStats>,
    ) -> Sorted<Self> {
        Sorted(Self {
            r#type: "capture",
            counters: CaptureCounter::ALL
                .iter()
                .map(|&c| (c.name(), counters.get(c)))
                .collect(),
            malformed_events,
            core_queue_full,
            drops: drops.map(ToString::to_string),
            pcap,
        })
    }
}
