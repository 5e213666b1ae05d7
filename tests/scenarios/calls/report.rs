//! Reading the agent's JSON records and checking them: codes, the final
//! call record, per-direction statistics, and tshark as the reference.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

use super::{MEDIA_GRACE, tshark};

pub(super) fn json_records(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// `sipscope analyze --json --media-grace 2` on a capture.
pub(super) fn analyze(pcap: &Path) -> (Vec<Value>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .args(["analyze", "--json", "--media-grace"])
        .arg(MEDIA_GRACE.as_secs().to_string())
        .arg(pcap)
        .output()
        .expect("running sipscope analyze");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sipscope analyze failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    (json_records(&text), text)
}

pub(super) fn codes(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r["type"] == "diagnosis")
        .map(|r| r["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub(super) fn set(codes: &[&str]) -> BTreeSet<String> {
    codes.iter().map(|c| c.to_string()).collect()
}

/// The value of evidence `name` in the (single) `code` diagnosis record.
pub(super) fn evidence(records: &[Value], code: &str, name: &str) -> Option<String> {
    let mut found = records
        .iter()
        .filter(|r| r["type"] == "diagnosis" && r["code"] == code);
    let d = found
        .next()
        .unwrap_or_else(|| panic!("no {code} in {records:#?}"));
    assert!(found.next().is_none(), "{code} raised more than once");
    d["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap_or_default().to_owned())
}

/// The one call's final record (exactly one call, exactly one final).
pub(super) fn final_call(records: &[Value], text: &str) -> Value {
    let calls: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["type"] == "call")
        .filter_map(|r| r["call_id"].as_str())
        .collect();
    assert_eq!(calls.len(), 1, "expected one call:\n{text}");
    let finals: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "call" && r["final"] == true)
        .collect();
    assert_eq!(finals.len(), 1, "expected one final call record:\n{text}");
    finals[0].clone()
}

/// The direction record of the call's single audio stream, if listed.
pub(super) fn direction<'a>(call: &'a Value, which: &str) -> Option<&'a Value> {
    let streams = call["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 1, "one m= line: {call:#}");
    streams[0]["directions"]
        .as_array()
        .expect("directions")
        .iter()
        .find(|d| d["direction"] == which)
}

pub(super) fn num(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {field} in {v:#}"))
}

pub(super) fn packets(call: &Value, which: &str) -> u64 {
    direction(call, which).map_or(0, |d| num(d, "packets") as u64)
}

pub(super) const OFFERER_TO_ANSWERER: &str = "offerer_to_answerer";
pub(super) const ANSWERER_TO_OFFERER: &str = "answerer_to_offerer";

/// What one direction of the call must show: the SDP's addresses, the
/// one flow on the PBX's wire (different behind a NAT), the packet count.
pub(super) struct Leg {
    pub(super) which: &'static str,
    pub(super) sdp: (SocketAddr, SocketAddr),
    pub(super) wire: (SocketAddr, SocketAddr),
    pub(super) sent: u32,
}

impl Leg {
    /// Nothing rewrites addresses: the wire flow is the SDP's.
    pub(super) fn direct(which: &'static str, from: SocketAddr, to: SocketAddr, sent: u32) -> Self {
        Self {
            which,
            sdp: (from, to),
            wire: (from, to),
            sent,
        }
    }
}

/// The observed flows of a direction record, as (source, destination).
fn wire_flows(d: &Value) -> Vec<(String, String)> {
    d["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("no flows in {d:#}"))
        .iter()
        .map(|f| {
            let addr = |k: &str| {
                f[k].as_str()
                    .unwrap_or_else(|| panic!("flow without {k}: {f:#}"))
                    .to_owned()
            };
            (addr("src"), addr("dst"))
        })
        .collect()
}

/// An answered, ended call: state, status, the negotiated codec, and in
/// each of `clean`'s directions its addresses, the sender's exact count
/// and no loss.
pub(super) fn assert_call_ended(call: &Value, clean: &[Leg]) {
    assert_eq!(call["state"], "ended", "{call:#}");
    assert_eq!(call["status"], 200, "{call:#}");
    let stream = &call["streams"][0];
    assert_eq!(stream["codec"], "PCMU/8000", "{call:#}");
    assert_eq!(
        stream["directions"].as_array().map(Vec::len),
        Some(2),
        "{call:#}"
    );
    for leg in clean {
        let which = leg.which;
        let d = direction(call, which).unwrap_or_else(|| panic!("no {which} in {call:#}"));
        assert_eq!(d["from"], leg.sdp.0.to_string(), "{which}: {d:#}");
        assert_eq!(d["to"], leg.sdp.1.to_string(), "{which}: {d:#}");
        assert_eq!(
            wire_flows(d),
            vec![(leg.wire.0.to_string(), leg.wire.1.to_string())],
            "{which}: {d:#}"
        );
        assert_eq!(num(d, "packets"), f64::from(leg.sent), "{which}: {d:#}");
        assert_eq!(
            num(d, "expected_packets"),
            f64::from(leg.sent),
            "{which}: {d:#}"
        );
        assert_eq!(num(d, "lost"), 0.0, "{which}: {d:#}");
    }
}

/// Our per-direction numbers against tshark's RTP streams of `pcap`:
/// packets, loss and SSRC exactly; max jitter within `jitter_tolerance_ms`.
pub(super) fn assert_agrees_with_tshark(call: &Value, pcap: &Path, jitter_tolerance_ms: f64) {
    let Some(rows) = tshark::rtp_streams(pcap) else {
        println!("SKIPPED: tshark not installed; the reference comparison did not run");
        return;
    };
    for which in [OFFERER_TO_ANSWERER, ANSWERER_TO_OFFERER] {
        let Some(d) = direction(call, which) else {
            continue;
        };
        let flows = wire_flows(d);
        assert_eq!(flows.len(), 1, "{which}: one flow: {d:#}");
        let (from, to) = &flows[0];
        let row = rows
            .iter()
            .find(|r| r.src.to_string() == *from && r.dst.to_string() == *to)
            .unwrap_or_else(|| panic!("tshark has no stream {from} -> {to}: {rows:#?}"));
        println!(
            "{which}: ours packets {} lost {} max jitter {:.4} ms; tshark {} {} {:.4} ms",
            d["packets"], d["lost"], d["max_jitter_ms"], row.packets, row.lost, row.max_jitter_ms
        );
        assert_eq!(num(d, "packets") as u64, row.packets, "{row:?}");
        assert_eq!(num(d, "lost") as i64, row.lost, "{row:?}");
        assert_eq!(d["ssrc"], format!("0x{:08X}", row.ssrc), "{row:?}");
        let ours = num(d, "max_jitter_ms");
        assert!(
            (ours - row.max_jitter_ms).abs() <= jitter_tolerance_ms,
            "{which} max jitter: ours {ours} ms, tshark {} ms",
            row.max_jitter_ms
        );
    }
}
