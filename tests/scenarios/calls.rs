//! Call scenarios against real peers (issue #7, media): a SIPp phone
//! (call-uac.xml) calls a SIPp PBX (call-uas.xml) across a veth pair; the
//! test itself sends the RTP both ways from sockets bound to the SDP ports
//! (symmetric RTP, tests/support/rtp.rs), so every packet count is known.
//! The real agent (`sipscope run --json --media-grace 2`) runs on the PBX
//! side, dumpcap beside it; each test asserts the EXACT set of diagnosis
//! codes and the final `call` record's per-direction RTP statistics, live
//! and (where a pcap can tell) offline with `sipscope analyze --json` on
//! dumpcap's capture, and tshark as the reference for packets and loss.
//!
//! | case | network | expected codes (and no other) |
//! |---|---|---|
//! | healthy | nothing in the way | none |
//! | far-side egress drop | phone's nft output drops its RTP | media.one_way (live and offline) |
//! | PBX firewall drop | PBX's nft input drops its inbound RTP | media.one_way, fw.local_drop (live); none offline (dumpcap sees the packets before netfilter) |
//! | 5 % loss | phone's nft output drops 5 % at random | media.quality, loss within 1 pp of nft's counter |
//! | phone behind NAT | phone's c= is private, RTP latched (comedia) | nat.private_sdp, media healthy |
//! | no RTP at all | nobody sends media | media.no_rtp (live); offline not judged (no RTP in the file at all) |

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::agent::{Agent, Dumpcap, START, wait_udp_listening};
use crate::lab::{REGISTRAR_PUBLIC_V4, ROUTER_PUBLIC_V4, behind_nat};
use crate::require_root;
use crate::support::netns::{Netns, VethPair};
use crate::support::process::{NsProcess, free_udp_port};
use crate::support::rtp::{RtpEndpoint, RtpSpec, Sent};
use crate::support::{TempDir, fixture, wait_for};

#[allow(dead_code)] // mean jitter: our JSON has max and current
#[path = "../media/tshark.rs"]
mod tshark;

/// The PBX's RTP port (its SDP answer), inside the agent's default range.
const PBX_RTP_PORT: u16 = 16000;
/// The phone's RTP port (its SDP offer).
const PHONE_RTP_PORT: u16 = 12000;
const PHONE_SSRC: u32 = 0x0a11_ce01;
const PBX_SSRC: u32 = 0x5b0c_0002;
/// 3 s of 20 ms G.711 each way: enough for the quality checks (>= 50
/// packets per direction) and short enough to keep each test ~10 s.
const CALL_PACKETS: u32 = 150;
/// How long the call stays up after the RTP should have ended. The RTP
/// starts when the agent has printed the ACK; BYE follows SIPp's pause.
/// If a loaded machine still lets the RTP run past the BYE, the test
/// says so instead of reporting wrong numbers.
const BYE_MARGIN: Duration = Duration::from_millis(1500);
/// The agent's `--media-grace`: RTP must appear within 2 s of the answer.
/// Every call stays up longer, so one-way and no-RTP are judged while it
/// is up, as on a real PBX.
const MEDIA_GRACE: Duration = Duration::from_secs(2);

/// Two namespaces: the PBX (`pair.host`, where the agent runs) and the
/// phone (`pair.peer`), or with `nat` the phone in a third namespace
/// behind `pair.peer` acting as a masquerading router (lab.rs).
struct CallLab {
    // Before `pair`: dropped (deleted) first, as in lab.rs.
    natted_phone: Option<Netns>,
    pair: VethPair,
    dir: TempDir,
}

/// What one call left behind.
struct CallRun {
    /// Every JSON record the live agent printed.
    live: Vec<Value>,
    live_text: String,
    dumpcap_pcap: std::path::PathBuf,
    phone_sent: Sent,
    pbx_sent: Sent,
    /// RTP datagrams the PBX's and the phone's sockets received: what
    /// the network really delivered to the applications.
    pbx_received: u64,
    phone_received: u64,
}

/// The RTP of one call: what each side sends.
struct Media {
    phone: RtpSpec,
    pbx: RtpSpec,
}

impl Media {
    fn pcmu(packets: u32) -> Self {
        Self {
            phone: RtpSpec::pcmu(PHONE_SSRC, packets),
            pbx: RtpSpec::pcmu(PBX_SSRC, packets),
        }
    }

    fn duration(&self) -> Duration {
        let d = |s: &RtpSpec| s.interval * s.count;
        d(&self.phone).max(d(&self.pbx))
    }
}

impl CallLab {
    fn new(nat: bool) -> Self {
        require_root();
        let pair = VethPair::new();
        let dir = TempDir::new("call");
        let natted_phone = nat.then(|| behind_nat(&pair, &dir));
        Self {
            natted_phone,
            pair,
            dir,
        }
    }

    fn pbx(&self) -> &Netns {
        &self.pair.host
    }

    fn phone(&self) -> &Netns {
        self.natted_phone.as_ref().unwrap_or(&self.pair.peer)
    }

    fn pbx_ip(&self) -> IpAddr {
        match self.natted_phone {
            Some(_) => REGISTRAR_PUBLIC_V4.parse().unwrap(),
            None => VethPair::HOST_V4.into(),
        }
    }

    /// The phone's own address: its SIP Via/Contact and SDP `c=`.
    fn phone_ip(&self) -> IpAddr {
        match self.natted_phone {
            Some(_) => crate::lab::PBX_V4.parse().unwrap(),
            None => VethPair::PEER_V4.into(),
        }
    }

    /// Where the PBX sees the phone's packets come from.
    fn phone_seen_ip(&self) -> IpAddr {
        match self.natted_phone {
            Some(_) => ROUTER_PUBLIC_V4.parse().unwrap(),
            None => VethPair::PEER_V4.into(),
        }
    }

    fn pbx_rtp(&self) -> SocketAddr {
        SocketAddr::new(self.pbx_ip(), PBX_RTP_PORT)
    }

    fn phone_rtp(&self) -> SocketAddr {
        SocketAddr::new(self.phone_ip(), PHONE_RTP_PORT)
    }

    /// Loads one nft rule (with its counter) into `ns`'s `hook` chain.
    fn nft(&self, ns: &Netns, hook: &str, rule: &str) {
        let path = self.dir.join(&format!("{}-{hook}.nft", ns.name));
        std::fs::write(
            &path,
            format!(
                "table inet sipscope_call {{\n  chain {hook} {{\n    \
                 type filter hook {hook} priority 0;\n    {rule}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let out = ns.exec("nft", &["-f", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "nft -f {rule:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Packets counted by the (single) counter of `ns`'s `hook` chain.
    fn nft_counter(&self, ns: &Netns, hook: &str) -> u64 {
        let out = ns.exec_stdout("nft", &["list", "chain", "inet", "sipscope_call", hook]);
        let after = out
            .split_once("counter packets ")
            .unwrap_or_else(|| panic!("no counter in:\n{out}"))
            .1;
        after
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unreadable counter in:\n{out}"))
    }

    fn sipp_uas(&self) -> NsProcess {
        let scenario = fixture("scenarios/sipp/call-uas.xml");
        let ip = self.pbx_ip().to_string();
        let uas = NsProcess::spawn(
            self.pbx(),
            &self.dir.path,
            "sipp-uas",
            "sipp",
            &[
                "-sf",
                scenario.to_str().unwrap(),
                "-i",
                &ip,
                "-p",
                "5060",
                "-mi",
                &ip,
                "-key",
                "rtp_port",
                &PBX_RTP_PORT.to_string(),
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "40s",
            ],
        );
        wait_udp_listening(self.pbx(), 5060);
        uas
    }

    fn sipp_uac(&self, up_for: Duration) -> NsProcess {
        let scenario = fixture("scenarios/sipp/call-uac.xml");
        let ip = self.phone_ip().to_string();
        let remote = format!("{}:5060", self.pbx_ip());
        let local_port = free_udp_port().to_string();
        NsProcess::spawn(
            self.phone(),
            &self.dir.path,
            "sipp-uac",
            "sipp",
            &[
                &remote,
                "-sf",
                scenario.to_str().unwrap(),
                "-i",
                &ip,
                "-p",
                &local_port,
                "-mi",
                &ip,
                "-key",
                "rtp_port",
                &PHONE_RTP_PORT.to_string(),
                "-s",
                "2000",
                "-d",
                &up_for.as_millis().to_string(),
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "40s",
            ],
        )
    }

    /// One call with `media`, the agent and dumpcap capturing on the
    /// PBX's veth; returns once the agent has printed the final call
    /// record and both captures are complete.
    fn call(&self, media: Media) -> CallRun {
        let mut agent = Agent::start(
            &self.pair,
            &self.dir,
            &[
                "--json",
                "--media-grace",
                &MEDIA_GRACE.as_secs().to_string(),
            ],
        );
        let mut dumpcap = Dumpcap::start(&self.pair, &self.dir);
        let pbx_rtp = RtpEndpoint::bind(self.pbx(), self.pbx_rtp());
        let phone_rtp = RtpEndpoint::bind(self.phone(), self.phone_rtp());
        let mut uas = self.sipp_uas();
        let mut uac = self.sipp_uac(media.duration().max(MEDIA_GRACE) + BYE_MARGIN);

        agent.proc.wait_output("\"method\":\"ACK\"", START);
        let phone_tx = phone_rtp.send_in_background(self.pbx_rtp(), media.phone);
        if self.natted_phone.is_some() {
            // Behind a NAT the PBX cannot reach the phone's c= address; it
            // sends where the phone's RTP comes from (symmetric RTP,
            // "comedia"), which only exists once that RTP has arrived.
            wait_for(START, "the phone's first RTP packet at the PBX", || {
                (pbx_rtp.received() > 0).then_some(())
            });
        }
        let pbx_to = SocketAddr::new(self.phone_seen_ip(), PHONE_RTP_PORT);
        let pbx_sent = pbx_rtp.send(pbx_to, media.pbx);
        let phone_sent = phone_tx.join().expect("phone RTP sender");
        assert!(
            !agent.proc.stdout_text().contains("\"method\":\"BYE\""),
            "the RTP outlasted the call (BYE already seen): the machine is too loaded for \
             BYE_MARGIN = {BYE_MARGIN:?}"
        );

        for sipp in [&mut uac, &mut uas] {
            let status = sipp.wait_exit(Duration::from_secs(20));
            assert!(
                status.success(),
                "{} failed ({status})\nstdout:\n{}\nstderr:\n{}",
                sipp.name,
                sipp.stdout_text(),
                sipp.stderr_text()
            );
        }
        agent.proc.wait_output("\"final\":true", START);

        // `--json` prints its counters as a record, not the line
        // Agent::stop parses.
        let status = agent.proc.interrupt(crate::agent::STOP);
        let live_text = agent.proc.stdout_text();
        assert!(
            status.success(),
            "sipscope exited with {status}\nstdout:\n{live_text}\nstderr:\n{}",
            agent.proc.stderr_text()
        );
        // dumpcap hands packets over in blocks: wait for every datagram
        // that crossed the veth (SIP from the agent's pcap, RTP from the
        // senders' truth) before stopping it.
        let on_wire = |s: &Sent| (s.sent - s.refused_locally) as usize;
        let sip = crate::support::pcap::datagrams(
            &crate::support::pcap::read_frames(&agent.pcap),
            &[5060],
        )
        .len();
        dumpcap.wait_for_datagrams(&[5060], sip);
        dumpcap.wait_for_datagrams(
            &[PBX_RTP_PORT, PHONE_RTP_PORT],
            on_wire(&phone_sent) + on_wire(&pbx_sent),
        );
        dumpcap.stop();
        // The last RTP left more than BYE_MARGIN ago: what the sockets
        // got is final.
        let (pbx_received, phone_received) = (pbx_rtp.received(), phone_rtp.received());
        println!(
            "phone sent {phone_sent:?}, PBX received {pbx_received}; \
             PBX sent {pbx_sent:?}, phone received {phone_received}"
        );
        CallRun {
            live: json_records(&live_text),
            live_text,
            dumpcap_pcap: dumpcap.pcap.clone(),
            phone_sent,
            pbx_sent,
            pbx_received,
            phone_received,
        }
    }
}

impl CallRun {
    /// The lab's own truth, before judging the agent: what reached the
    /// PBX's and the phone's RTP sockets.
    fn assert_delivered(&self, to_pbx: u64, to_phone: u64) {
        assert_eq!(
            (self.pbx_received, self.phone_received),
            (to_pbx, to_phone),
            "RTP delivered to (PBX, phone) sockets"
        );
    }
}

fn json_records(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// `sipscope analyze --json --media-grace 2` on a capture.
fn analyze(pcap: &Path) -> (Vec<Value>, String) {
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

fn codes(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r["type"] == "diagnosis")
        .map(|r| r["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn set(codes: &[&str]) -> BTreeSet<String> {
    codes.iter().map(|c| c.to_string()).collect()
}

/// The one call's final record (exactly one call, exactly one final).
fn final_call(records: &[Value], text: &str) -> Value {
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
fn direction<'a>(call: &'a Value, which: &str) -> Option<&'a Value> {
    let streams = call["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 1, "one m= line: {call:#}");
    streams[0]["directions"]
        .as_array()
        .expect("directions")
        .iter()
        .find(|d| d["direction"] == which)
}

fn num(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {field} in {v:#}"))
}

fn packets(call: &Value, which: &str) -> u64 {
    direction(call, which).map_or(0, |d| num(d, "packets") as u64)
}

const OFFERER_TO_ANSWERER: &str = "offerer_to_answerer";
const ANSWERER_TO_OFFERER: &str = "answerer_to_offerer";

/// What one direction of the call must show: the SDP's addresses, the
/// one flow on the PBX's wire (different behind a NAT), the packet count.
struct Leg {
    which: &'static str,
    sdp: (SocketAddr, SocketAddr),
    wire: (SocketAddr, SocketAddr),
    sent: u32,
}

impl Leg {
    /// Nothing rewrites addresses: the wire flow is the SDP's.
    fn direct(which: &'static str, from: SocketAddr, to: SocketAddr, sent: u32) -> Self {
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
            let f = f.as_str().expect("flow text");
            let (src, rest) = f.split_once(" -> ").expect("flow `src -> dst (how)`");
            let dst = rest.split_once(' ').map_or(rest, |(d, _)| d);
            (src.to_owned(), dst.to_owned())
        })
        .collect()
}

/// An answered, ended call: state, status, the negotiated codec, and in
/// each of `clean`'s directions its addresses, the sender's exact count
/// and no loss.
fn assert_call_ended(call: &Value, clean: &[Leg]) {
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
fn assert_agrees_with_tshark(call: &Value, pcap: &Path, jitter_tolerance_ms: f64) {
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

#[test]
fn healthy_two_way_call_raises_nothing_and_counts_every_packet() {
    let lab = CallLab::new(false);
    let (phone, pbx) = (lab.phone_rtp(), lab.pbx_rtp());
    let run = lab.call(Media::pcmu(CALL_PACKETS));
    assert_eq!(
        run.phone_sent.refused_locally + run.pbx_sent.refused_locally,
        0
    );
    run.assert_delivered(run.phone_sent.sent.into(), run.pbx_sent.sent.into());
    let clean = [
        Leg::direct(OFFERER_TO_ANSWERER, phone, pbx, run.phone_sent.sent),
        Leg::direct(ANSWERER_TO_OFFERER, pbx, phone, run.pbx_sent.sent),
    ];

    assert_eq!(codes(&run.live), set(&[]), "{}", run.live_text);
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(&live, &clean);

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(codes(&offline_records), set(&[]), "{offline_text}");
    let offline = final_call(&offline_records, &offline_text);
    assert_call_ended(&offline, &clean);

    // The same file through tshark: the offline figures are computed on
    // the same timestamps (RFC 3550 estimator, Q4 fixed point vs float);
    // the live ones on the XDP timestamps of the same packets.
    assert_agrees_with_tshark(&offline, &run.dumpcap_pcap, 0.01);
    assert_agrees_with_tshark(&live, &run.dumpcap_pcap, 0.5);
}

#[test]
fn far_side_egress_firewall_dropping_its_rtp_is_one_way_audio() {
    let lab = CallLab::new(false);
    lab.nft(
        lab.phone(),
        "output",
        &format!("udp dport {PBX_RTP_PORT} counter drop"),
    );
    let (phone, pbx) = (lab.phone_rtp(), lab.pbx_rtp());
    let run = lab.call(Media::pcmu(CALL_PACKETS));
    assert_eq!(run.phone_sent.refused_locally, run.phone_sent.sent);
    run.assert_delivered(0, run.pbx_sent.sent.into());
    let clean = [Leg::direct(
        ANSWERER_TO_OFFERER,
        pbx,
        phone,
        run.pbx_sent.sent,
    )];

    assert_eq!(
        codes(&run.live),
        set(&["media.one_way"]),
        "{}",
        run.live_text
    );
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(&live, &clean);
    assert_eq!(packets(&live, OFFERER_TO_ANSWERER), 0, "{live:#}");

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(
        codes(&offline_records),
        set(&["media.one_way"]),
        "{offline_text}"
    );
    let offline = final_call(&offline_records, &offline_text);
    assert_call_ended(&offline, &clean);
    assert_eq!(packets(&offline, OFFERER_TO_ANSWERER), 0, "{offline:#}");
}

/// The PBX's own firewall drops the inbound RTP: XDP sees every packet,
/// netfilter drops them before the PBX's socket, and the kfree_skb tracer
/// tells the agent so. A pcap (dumpcap, AF_PACKET) sees them too and
/// cannot know: offline the call looks healthy.
#[test]
fn pbx_firewall_dropping_inbound_rtp_is_one_way_audio_and_a_local_drop() {
    let lab = CallLab::new(false);
    lab.nft(
        lab.pbx(),
        "input",
        &format!("udp dport {PBX_RTP_PORT} counter drop"),
    );
    let (phone, pbx) = (lab.phone_rtp(), lab.pbx_rtp());
    let run = lab.call(Media::pcmu(CALL_PACKETS));
    assert_eq!(run.phone_sent.refused_locally, 0);
    assert_eq!(
        lab.nft_counter(lab.pbx(), "input"),
        u64::from(run.phone_sent.sent),
        "the PBX's firewall dropped every inbound RTP packet"
    );
    run.assert_delivered(0, run.pbx_sent.sent.into());

    assert_eq!(
        codes(&run.live),
        set(&["media.one_way", "fw.local_drop"]),
        "{}",
        run.live_text
    );
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(
        &live,
        &[Leg::direct(
            ANSWERER_TO_OFFERER,
            pbx,
            phone,
            run.pbx_sent.sent,
        )],
    );
    let inbound = direction(&live, OFFERER_TO_ANSWERER)
        .unwrap_or_else(|| panic!("the dropped direction is listed: {live:#}"));
    println!("{inbound}");
    assert_eq!(
        num(inbound, "dropped_locally"),
        f64::from(run.phone_sent.sent),
        "{inbound:#}"
    );

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(codes(&offline_records), set(&[]), "{offline_text}");
    let offline = final_call(&offline_records, &offline_text);
    assert_call_ended(
        &offline,
        &[
            Leg::direct(OFFERER_TO_ANSWERER, phone, pbx, run.phone_sent.sent),
            Leg::direct(ANSWERER_TO_OFFERER, pbx, phone, run.pbx_sent.sent),
        ],
    );
}

/// 5 % random loss on the phone's way out (nft `numgen random`, with a
/// counter for the truth), 1500 packets each way at 5 ms spacing (the
/// RTP timestamps advance by 5 ms too, so jitter stays near zero).
#[test]
fn five_percent_loss_is_media_quality_with_the_true_loss_rate() {
    let lab = CallLab::new(false);
    lab.nft(
        lab.phone(),
        "output",
        &format!("udp dport {PBX_RTP_PORT} numgen random mod 100 < 5 counter drop"),
    );
    let fast = Duration::from_millis(5);
    let media = Media {
        phone: RtpSpec::pcmu(PHONE_SSRC, 1500).with_interval(fast),
        pbx: RtpSpec::pcmu(PBX_SSRC, 1500).with_interval(fast),
    };
    let (phone, pbx) = (lab.phone_rtp(), lab.pbx_rtp());
    let run = lab.call(media);
    let dropped = lab.nft_counter(lab.phone(), "output");
    // The rule matches only the phone's RTP, so its counter is the truth.
    assert_eq!(u64::from(run.phone_sent.refused_locally), dropped);
    run.assert_delivered(
        u64::from(run.phone_sent.sent) - dropped,
        run.pbx_sent.sent.into(),
    );
    let truth = dropped as f64 / f64::from(run.phone_sent.sent) * 100.0;
    println!(
        "nft dropped {dropped} of {} ({truth:.2} %)",
        run.phone_sent.sent
    );

    let (offline, offline_text) = analyze(&run.dumpcap_pcap);
    // Jitter tolerance against tshark: see the healthy call.
    for (records, text, jitter_tolerance_ms) in [
        (&run.live, &run.live_text, 0.5),
        (&offline, &offline_text, 0.01),
    ] {
        assert_eq!(codes(records), set(&["media.quality"]), "{text}");
        let call = final_call(records, text);
        assert_call_ended(
            &call,
            &[Leg::direct(
                ANSWERER_TO_OFFERER,
                pbx,
                phone,
                run.pbx_sent.sent,
            )],
        );
        let lossy = direction(&call, OFFERER_TO_ANSWERER).expect("lossy direction");
        assert_eq!(lossy["from"], phone.to_string());
        // Exactly the packets that got through, whatever the estimate.
        assert_eq!(
            num(lossy, "packets") as u64,
            u64::from(run.phone_sent.sent) - dropped,
            "{lossy:#}"
        );
        let ours = num(lossy, "loss_percent");
        println!("{lossy}");
        assert!(
            (ours - truth).abs() <= 1.0,
            "loss {ours:.2} % vs {truth:.2} % dropped by nft: {lossy:#}"
        );
        assert_agrees_with_tshark(&call, &run.dumpcap_pcap, jitter_tolerance_ms);
    }
}

/// Answered, and nobody sends RTP (media never set up): after the grace
/// period the live agent (which measures RTP in the kernel) raises
/// media.no_rtp and nothing else. Offline, a capture without a single RTP
/// packet cannot tell a silent call from a SIP-only capture (`tcpdump
/// port 5060`): the media is not judged, and the summary says so.
#[test]
fn answered_call_without_any_rtp_is_no_rtp() {
    let lab = CallLab::new(false);
    let run = lab.call(Media::pcmu(0));
    run.assert_delivered(0, 0);
    assert_eq!(
        codes(&run.live),
        set(&["media.no_rtp"]),
        "{}",
        run.live_text
    );
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(&live, &[]);
    for which in [OFFERER_TO_ANSWERER, ANSWERER_TO_OFFERER] {
        assert_eq!(packets(&live, which), 0, "{live:#}");
    }

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(codes(&offline_records), set(&[]), "{offline_text}");
    assert_call_ended(&final_call(&offline_records, &offline_text), &[]);
    let summary = offline_records
        .iter()
        .find(|r| r["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary in:\n{offline_text}"));
    assert_eq!(summary["calls"]["media_not_judged"], 1, "{offline_text}");
}

/// The phone sits behind a masquerading router and advertises its private
/// address in SDP `c=` (and SIP Contact/Via); the PBX sends its RTP where
/// the phone's RTP comes from (symmetric RTP), so audio flows both ways.
/// The risk is still worth reporting: nat.private_sdp, and nothing about
/// the media.
#[test]
fn phone_behind_nat_with_private_sdp_address() {
    let lab = CallLab::new(true);
    let phone_private = lab.phone_rtp();
    let phone_public = SocketAddr::new(lab.phone_seen_ip(), PHONE_RTP_PORT);
    let pbx = lab.pbx_rtp();
    let run = lab.call(Media::pcmu(CALL_PACKETS));
    run.assert_delivered(run.phone_sent.sent.into(), run.pbx_sent.sent.into());
    // Directions name the SDP's addresses; the flows show where the
    // packets really went (the NAT's public side).
    let clean = [
        Leg {
            which: OFFERER_TO_ANSWERER,
            sdp: (phone_private, pbx),
            wire: (phone_public, pbx),
            sent: run.phone_sent.sent,
        },
        Leg {
            which: ANSWERER_TO_OFFERER,
            sdp: (pbx, phone_private),
            wire: (pbx, phone_public),
            sent: run.pbx_sent.sent,
        },
    ];
    assert_eq!(
        codes(&run.live),
        set(&["nat.private_sdp"]),
        "{}",
        run.live_text
    );
    let sdp = run
        .live
        .iter()
        .find(|r| r["code"] == "nat.private_sdp")
        .unwrap()
        .to_string();
    assert!(sdp.contains(&phone_private.ip().to_string()), "{sdp}");
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(&live, &clean);

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(
        codes(&offline_records),
        set(&["nat.private_sdp"]),
        "{offline_text}"
    );
    assert_call_ended(&final_call(&offline_records, &offline_text), &clean);
}
