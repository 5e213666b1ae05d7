//! The call lab: namespaces, the agent and dumpcap on the PBX's veth,
//! SIPp at both ends, and the RTP the test sends.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use crate::agent::{Agent, Dumpcap, START, wait_udp_listening};
use crate::lab::{REGISTRAR_PUBLIC_V4, ROUTER_PUBLIC_V4, behind_nat};
use crate::require_root;
use crate::support::netns::{Netns, VethPair};
use crate::support::process::{NsProcess, free_udp_port};
use crate::support::rtp::{RtpEndpoint, RtpSpec, Sent};
use crate::support::{TempDir, fixture, wait_for};

use super::report::json_records;
use super::{MEDIA_GRACE, PBX_RTP_PORT, PBX_SSRC, PHONE_RTP_PORT, PHONE_SSRC};

/// How long the call stays up after the RTP should have ended. The RTP
/// starts when the agent has printed the ACK; BYE follows SIPp's pause.
/// If a loaded machine still lets the RTP run past the BYE, the test
/// says so instead of reporting wrong numbers.
const BYE_MARGIN: Duration = Duration::from_millis(1500);

/// Two namespaces: the PBX (`pair.host`, where the agent runs) and the
/// phone (`pair.peer`), or with `nat` the phone in a third namespace
/// behind `pair.peer` acting as a masquerading router (the registration
/// lab's [`behind_nat`]).
pub(super) struct CallLab {
    // Before `pair`: dropped (deleted) first, as in lab.rs.
    natted_phone: Option<Netns>,
    pair: VethPair,
    dir: TempDir,
}

/// What one call left behind.
pub(super) struct CallRun {
    /// Every JSON record the live agent printed.
    pub(super) live: Vec<Value>,
    pub(super) live_text: String,
    pub(super) dumpcap_pcap: std::path::PathBuf,
    pub(super) phone_sent: Sent,
    pub(super) pbx_sent: Sent,
    /// RTP datagrams the PBX's and the phone's sockets received: what
    /// the network really delivered to the applications.
    pub(super) pbx_received: u64,
    pub(super) phone_received: u64,
    /// The agent's `/metrics` right after the call's final record.
    pub(super) metrics: String,
}

/// The RTP of one call: what each side sends.
pub(super) struct Media {
    /// The codec both SDPs name: (payload type, rtpmap encoding).
    pub(super) codec: (u8, &'static str),
    pub(super) phone: RtpSpec,
    pub(super) pbx: RtpSpec,
    /// An RTCP report the PBX sends after its RTP, on its RTP port.
    pub(super) pbx_rtcp: Option<Vec<u8>>,
}

impl Media {
    pub(super) fn pcmu(packets: u32) -> Self {
        Self {
            codec: (crate::support::rtp::PCMU, "PCMU/8000"),
            phone: RtpSpec::pcmu(PHONE_SSRC, packets),
            pbx: RtpSpec::pcmu(PBX_SSRC, packets),
            pbx_rtcp: None,
        }
    }

    pub(super) fn duration(&self) -> Duration {
        let d = |s: &RtpSpec| s.interval * s.count;
        d(&self.phone).max(d(&self.pbx))
    }
}

impl CallLab {
    pub(super) fn new(nat: bool) -> Self {
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

    pub(super) fn pbx(&self) -> &Netns {
        &self.pair.host
    }

    pub(super) fn phone(&self) -> &Netns {
        self.natted_phone.as_ref().unwrap_or(&self.pair.peer)
    }

    pub(super) fn pbx_ip(&self) -> IpAddr {
        match self.natted_phone {
            Some(_) => REGISTRAR_PUBLIC_V4.parse().unwrap(),
            None => VethPair::HOST_V4.into(),
        }
    }

    /// The phone's own address: its SIP Via/Contact and SDP `c=`.
    pub(super) fn phone_ip(&self) -> IpAddr {
        match self.natted_phone {
            Some(_) => crate::lab::PBX_V4.parse().unwrap(),
            None => VethPair::PEER_V4.into(),
        }
    }

    /// Where the PBX sees the phone's packets come from.
    pub(super) fn phone_seen_ip(&self) -> IpAddr {
        match self.natted_phone {
            Some(_) => ROUTER_PUBLIC_V4.parse().unwrap(),
            None => VethPair::PEER_V4.into(),
        }
    }

    pub(super) fn pbx_rtp(&self) -> SocketAddr {
        SocketAddr::new(self.pbx_ip(), PBX_RTP_PORT)
    }

    pub(super) fn phone_rtp(&self) -> SocketAddr {
        SocketAddr::new(self.phone_ip(), PHONE_RTP_PORT)
    }

    /// Loads one nft rule (with its counter) into `ns`'s `hook` chain.
    pub(super) fn nft(&self, ns: &Netns, hook: &str, rule: &str) {
        crate::support::nft::add_rule(ns, &self.dir.path, hook, rule);
    }

    /// Packets counted by the counters of `ns`'s `hook` chain.
    pub(super) fn nft_counter(&self, ns: &Netns, hook: &str) -> u64 {
        crate::support::nft::counted(ns, hook)
    }

    fn sipp_uas(&self, (pt, encoding): (u8, &str)) -> NsProcess {
        let scenario = fixture("scenarios/sipp/call-uas.xml");
        let ip = self.pbx_ip().to_string();
        let pt = pt.to_string();
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
                "-key",
                "media_pt",
                &pt,
                "-key",
                "media_encoding",
                encoding,
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

    fn sipp_uac(&self, up_for: Duration, (pt, encoding): (u8, &str)) -> NsProcess {
        let scenario = fixture("scenarios/sipp/call-uac.xml");
        let ip = self.phone_ip().to_string();
        let pt = pt.to_string();
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
                "-key",
                "media_pt",
                &pt,
                "-key",
                "media_encoding",
                encoding,
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
    pub(super) fn call(&self, media: Media) -> CallRun {
        let mut agent = Agent::start(
            &self.pair,
            &self.dir,
            &[
                "--json",
                "--media-grace",
                &MEDIA_GRACE.as_secs().to_string(),
                "--metrics-listen",
                crate::metrics::METRICS_ADDR,
            ],
        );
        let mut dumpcap = Dumpcap::start(&self.pair, &self.dir);
        let pbx_rtp = RtpEndpoint::bind(self.pbx(), self.pbx_rtp());
        let phone_rtp = RtpEndpoint::bind(self.phone(), self.phone_rtp());
        let mut uas = self.sipp_uas(media.codec);
        let mut uac = self.sipp_uac(media.duration().max(MEDIA_GRACE) + BYE_MARGIN, media.codec);

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
        if let Some(report) = &media.pbx_rtcp {
            pbx_rtp.send_raw(pbx_to, report);
        }
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
        // The Prometheus view observed the call's RTP with the same event
        // that printed its final record.
        let (code, _, metrics) =
            crate::metrics::http_get(self.pbx(), crate::metrics::METRICS_ADDR, "/metrics".into())
                .expect("the agent's /metrics");
        assert_eq!(code, 200, "{metrics}");

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
            metrics,
        }
    }
}

impl CallRun {
    /// The lab's own truth, before judging the agent: what reached the
    /// PBX's and the phone's RTP sockets.
    pub(super) fn assert_delivered(&self, to_pbx: u64, to_phone: u64) {
        assert_eq!(
            (self.pbx_received, self.phone_received),
            (to_pbx, to_phone),
            "RTP delivered to (PBX, phone) sockets"
        );
    }
}
