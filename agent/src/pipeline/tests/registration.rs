//! The tracker on synthetic exchanges fed through the real pipeline
//! (Ethernet/IPv4/UDP or TCP frames): every scenario states the exact set
//! of codes it must raise.

use std::collections::BTreeSet;
use std::sync::Arc;

use etherparse::PacketBuilder;
use md5::{Digest, Md5};

use crate::analysis::credentials::CredentialStore;
use crate::analysis::registration::{Outcome, RegistrationAttempt, TrackerConfig};
use crate::diagnosis::{Code, Diagnosis, Severity};
use crate::pipeline::{Event, Pipeline, PipelineConfig, Stats};
use crate::{
    packet::{Direction, LinkType, Packet},
    time::Timestamp,
};

type Addr = ([u8; 4], u16);
const REALM: &str = "sipscope.test";
const T0: u64 = 1_700_000_000_000_000_000;

fn md5hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// RFC 2069-form digest response (what kamailio without qop checks).
fn response(user: &str, realm: &str, pw: &str, nonce: &str, uri: &str) -> String {
    let ha1 = md5hex(&format!("{user}:{realm}:{pw}"));
    let ha2 = md5hex(&format!("REGISTER:{uri}"));
    md5hex(&format!("{ha1}:{nonce}:{ha2}"))
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Udp,
    Tcp,
}

/// One UA registering to one registrar; builds the frames of the exchange.
struct Flow {
    proto: Proto,
    client: Addr,
    server: Addr,
    /// Address the client writes in Via/Contact (differs behind a NAT).
    advertised: Addr,
    user: String,
    call_id: String,
    cseq: u32,
    branch: u32,
    ms: u64,
    seq: [u32; 2],
    packets: Vec<Packet>,
    last_request: String,
}

fn ip(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

impl Flow {
    fn new(proto: Proto, user: &str, call_id: &str) -> Self {
        let client = ([10, 0, 0, 2], 5062);
        let mut f = Self {
            proto,
            client,
            server: ([10, 0, 0, 1], 5060),
            advertised: client,
            user: user.into(),
            call_id: call_id.into(),
            cseq: 0,
            branch: 0,
            ms: 0,
            seq: [1000, 5000],
            packets: Vec::new(),
            last_request: String::new(),
        };
        if proto == Proto::Tcp {
            for (i, (a, b)) in [(client, f.server), (f.server, client)]
                .into_iter()
                .enumerate()
            {
                let isn = f.seq[i];
                f.frame(a, b, isn, true, b"");
                f.seq[i] += 1;
            }
        }
        f
    }

    fn frame(&mut self, from: Addr, to: Addr, seq: u32, syn: bool, payload: &[u8]) {
        let eth =
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(from.0, to.0, 64);
        let mut data = Vec::new();
        match self.proto {
            Proto::Udp => eth.udp(from.1, to.1).write(&mut data, payload).unwrap(),
            Proto::Tcp => {
                let mut b = eth.tcp(from.1, to.1, seq, 65535);
                if syn {
                    b = b.syn();
                }
                b.write(&mut data, payload).unwrap()
            }
        }
        self.packets.push(Packet {
            ts: Timestamp(T0 + self.ms * 1_000_000),
            ifindex: 0,
            direction: Direction::Unknown,
            link: LinkType::Ethernet,
            orig_len: data.len() as u32,
            data,
        });
    }

    fn send(&mut self, to_server: bool, text: String) {
        let text = text.replace('\n', "\r\n");
        let (from, to, i) = if to_server {
            (self.client, self.server, 0)
        } else {
            (self.server, self.client, 1)
        };
        let seq = self.seq[i];
        self.seq[i] = seq.wrapping_add(text.len() as u32);
        self.frame(from, to, seq, false, text.as_bytes());
        self.ms += 20;
    }

    fn wait(&mut self, ms: u64) {
        self.ms += ms;
    }

    fn transport(&self) -> &'static str {
        match self.proto {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }

    fn uri(&self) -> String {
        format!("sip:{}:{}", ip(self.server.0), self.server.1)
    }

    /// REGISTER; `auth` = (auth user, realm, nonce, password).
    fn register(&mut self, expires: u32, auth: Option<(&str, &str, &str, &str)>) {
        self.cseq += 1;
        self.branch += 1;
        let uri = self.uri();
        let authz = auth.map_or(String::new(), |(u, r, n, pw)| {
            format!(
                "Authorization: Digest username=\"{u}\", realm=\"{r}\", nonce=\"{n}\", uri=\"{uri}\", response=\"{}\", algorithm=MD5\n",
                response(u, r, pw, n, &uri)
            )
        });
        let (h, p) = (ip(self.advertised.0), self.advertised.1);
        let text = format!(
            "REGISTER {uri} SIP/2.0\nVia: SIP/2.0/{t} {h}:{p};branch=z9hG4bK{c}-{b};rport\n\
             Max-Forwards: 70\nFrom: <sip:{u}@{REALM}>;tag=ft\nTo: <sip:{u}@{REALM}>\n\
             Call-ID: {c}\nCSeq: {s} REGISTER\nContact: <sip:{u}@{h}:{p}>\nExpires: {expires}\n\
             {authz}Content-Length: 0\n\n",
            t = self.transport(),
            b = self.branch,
            u = self.user,
            c = self.call_id,
            s = self.cseq,
        );
        self.last_request = text.clone();
        self.send(true, text);
    }

    /// A response to the last REGISTER, echoing its Via as a registrar
    /// does (received=/rport= filled in from the packet source).
    fn reply(&mut self, status: &str, extra: &str) {
        let via = self
            .last_request
            .lines()
            .find(|l| l.starts_with("Via:"))
            .unwrap()
            .replace(";rport", &format!(";rport={}", self.client.1));
        let via = if self.advertised.0 != self.client.0 {
            format!("{via};received={}", ip(self.client.0))
        } else {
            via
        };
        let text = format!(
            "SIP/2.0 {status}\n{via}\nFrom: <sip:{u}@{REALM}>;tag=ft\nTo: <sip:{u}@{REALM}>;tag=tt\n\
             Call-ID: {c}\nCSeq: {s} REGISTER\n{extra}Content-Length: 0\n\n",
            u = self.user,
            c = self.call_id,
            s = self.cseq,
        );
        self.send(false, text);
    }

    fn challenge(&mut self, nonce: &str, stale: bool) {
        let stale = if stale { ", stale=true" } else { "" };
        self.reply(
            "401 Unauthorized",
            &format!("WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"{nonce}\"{stale}\n"),
        );
    }

    fn ok(&mut self, expires: u32) {
        let (h, p) = (ip(self.advertised.0), self.advertised.1);
        let contact = if expires == 0 {
            String::new()
        } else {
            format!("Contact: <sip:{}@{h}:{p}>;expires={expires}\n", self.user)
        };
        self.reply("200 OK", &contact);
    }

    /// The full healthy exchange: REGISTER, 401, REGISTER+auth, 200.
    fn healthy(&mut self, pw: &str, nonce: &str, expires: u32) {
        let user = self.user.clone();
        self.register(expires, None);
        self.challenge(nonce, false);
        self.register(expires, Some((&user, REALM, nonce, pw)));
        self.ok(expires);
    }
}

struct Run {
    events: Vec<Event>,
    stats: Stats,
}

impl Run {
    fn diagnoses(&self) -> Vec<Arc<Diagnosis>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Diagnosis(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    fn codes(&self) -> BTreeSet<&'static str> {
        self.diagnoses().iter().map(|d| d.code.as_str()).collect()
    }

    fn attempts(&self) -> Vec<Arc<RegistrationAttempt>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::RegistrationAttempt(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    fn one(&self, code: Code) -> Arc<Diagnosis> {
        let all: Vec<_> = self
            .diagnoses()
            .into_iter()
            .filter(|d| d.code == code)
            .collect();
        assert_eq!(all.len(), 1, "{code} raised {} times", all.len());
        all[0].clone()
    }
}

fn run_with(packets: &[Packet], registration: TrackerConfig, tick_to: Option<u64>) -> Run {
    let mut p = Pipeline::new(PipelineConfig {
        registration,
        ..Default::default()
    });
    let mut events = Vec::new();
    for pkt in packets {
        p.ingest_into(pkt, &mut events);
    }
    if let Some(ms) = tick_to {
        events.extend(p.tick(Timestamp(T0 + ms * 1_000_000)));
    }
    events.extend(p.finish());
    Run {
        events,
        stats: p.stats(),
    }
}

fn run(packets: &[Packet]) -> Run {
    run_with(packets, TrackerConfig::default(), None)
}

fn store(pw: &str) -> TrackerConfig {
    let toml =
        format!("[[credential]]\nrealm = \"{REALM}\"\nusername = \"1001\"\npassword = \"{pw}\"\n");
    TrackerConfig {
        credentials: Some(Arc::new(CredentialStore::from_toml_str(&toml).unwrap())),
        ..Default::default()
    }
}

/// The packets of several flows in capture order.
fn merged(flows: &[Flow]) -> Vec<Packet> {
    let mut packets: Vec<Packet> = flows.iter().flat_map(|f| f.packets.clone()).collect();
    packets.sort_by_key(|p| p.ts);
    packets
}

fn set(codes: &[&'static str]) -> BTreeSet<&'static str> {
    codes.iter().copied().collect()
}

#[test]
fn healthy_registration_raises_nothing_and_reports_the_granted_expiry() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-healthy");
    f.healthy("secret1001", "n1", 60);
    let r = run(&f.packets);
    assert_eq!(r.codes(), set(&[]));
    let a = r.attempts();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].outcome, Outcome::Registered { expires: 60 });
    assert_eq!(a[0].transactions.len(), 2);
    assert_eq!(a[0].first_cseq, 1);
    assert_eq!(a[0].auth_username.as_deref(), Some("1001"));
    assert_eq!(a[0].realm.as_deref(), Some(REALM));
    assert_eq!(a[0].binding.aor, format!("sip:1001@{REALM}"));
    assert_eq!(
        a[0].binding.contact.as_deref(),
        Some("sip:1001@10.0.0.2:5062")
    );
    assert_eq!(a[0].client.to_string(), "10.0.0.2:5062");
    assert_eq!(a[0].registrar.to_string(), "10.0.0.1:5060");
    assert_eq!(r.stats.registrations.registered, 1);
}

#[test]
fn right_password_with_credentials_is_confirmed_as_info_only() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-right");
    f.healthy("secret1001", "n1", 60);
    let r = run_with(&f.packets, store("secret1001"), None);
    assert_eq!(r.codes(), set(&["auth.password_correct"]));
    let d = r.one(Code::AuthPasswordCorrect);
    assert_eq!(d.severity, Severity::Info);
    // The registration succeeded: nothing may call it a failure.
    assert_eq!(r.attempts()[0].outcome, Outcome::Registered { expires: 60 });
    let text = format!("{} {}", d.summary, d.remedy.general);
    assert!(!text.contains("failure is elsewhere"), "{text}");
    assert!(text.contains("password is correct"), "{text}");
}

fn wrong_password(f: &mut Flow) {
    f.register(60, None);
    f.challenge("n0", false);
    for i in 1..=4 {
        let nonce = format!("n{}", i - 1);
        f.register(60, Some(("1001", REALM, &nonce, "Wr0ngPw")));
        f.challenge(&format!("n{i}"), false);
    }
}

#[test]
fn wrong_password_is_rejected_then_a_loop_and_with_credentials_a_mismatch() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-wrong");
    wrong_password(&mut f);
    let r = run(&f.packets);
    assert_eq!(r.codes(), set(&["auth.rejected", "auth.challenge_loop"]));
    let a = r.attempts();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].outcome, Outcome::GaveUp { status: 401 });
    assert_eq!(a[0].transactions.len(), 5);
    let attached: BTreeSet<_> = a[0].diagnoses.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(attached, r.codes());
    let looped = r.one(Code::AuthChallengeLoop);
    assert!(
        looped
            .evidence
            .iter()
            .any(|e| e.name == "rejections" && e.value == "3")
    );
    // Each finding names the registration it is about.
    for d in r.diagnoses() {
        assert_eq!(d.call_id.as_deref(), Some("c-wrong"), "{:?}", d.code);
        assert_eq!(d.aor.as_deref(), Some(format!("sip:1001@{REALM}").as_str()));
    }

    let r = run_with(&f.packets, store("secret1001"), None);
    assert_eq!(
        r.codes(),
        set(&[
            "auth.rejected",
            "auth.challenge_loop",
            "auth.password_mismatch"
        ])
    );
    r.one(Code::AuthPasswordMismatch);
    // No secret in any output: neither the password nor a response value.
    let all: Vec<Diagnosis> = r.diagnoses().iter().map(|d| (**d).clone()).collect();
    let json = serde_json::to_string(&all).unwrap();
    assert!(!json.contains("Wr0ngPw") && !json.contains("secret1001"));
    assert!(!json.contains(&response("1001", REALM, "Wr0ngPw", "n0", &f.uri())));
}

#[test]
fn loop_threshold_is_configurable() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-loop");
    wrong_password(&mut f);
    let cfg = TrackerConfig {
        challenge_loop_after: 5,
        ..Default::default()
    };
    assert_eq!(
        run_with(&f.packets, cfg, None).codes(),
        set(&["auth.rejected"])
    );
}

#[test]
fn realm_mismatch_and_username_is_did() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-realm");
    f.register(60, None);
    f.challenge("n0", false);
    f.register(60, Some(("1001", "provider.example", "n0", "secret1001")));
    f.challenge("n1", false);
    assert_eq!(
        run(&f.packets).codes(),
        set(&["auth.realm_mismatch", "auth.rejected"])
    );

    let mut f = Flow::new(Proto::Udp, "15551230007", "c-did");
    f.register(60, None);
    f.challenge("n0", false);
    f.register(60, Some(("15551230007", REALM, "n0", "pw7")));
    f.challenge("n1", false);
    assert_eq!(
        run(&f.packets).codes(),
        set(&["auth.rejected", "auth.username_is_did"])
    );
    // The same DID with its own auth user, registered: nothing.
    let mut f = Flow::new(Proto::Udp, "15551230007", "c-did-ok");
    f.register(60, None);
    f.challenge("n0", false);
    f.register(60, Some(("acct-7", REALM, "n0", "pw7")));
    f.ok(60);
    assert_eq!(run(&f.packets).codes(), set(&[]));
}

#[test]
fn stale_nonce_recovered_is_info_and_nothing_else() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-stale");
    f.healthy("secret1001", "n1", 60);
    f.wait(2500);
    f.register(60, Some(("1001", REALM, "n1", "secret1001")));
    f.challenge("n2", true);
    f.register(60, Some(("1001", REALM, "n2", "secret1001")));
    f.ok(60);
    let r = run(&f.packets);
    assert_eq!(r.codes(), set(&["auth.stale_nonce"]));
    let d = r.one(Code::AuthStaleNonce);
    assert_eq!(d.severity, Severity::Info);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.name == "client recovered" && e.value == "yes")
    );
    assert_eq!(r.attempts().len(), 2);
}

#[test]
fn refresh_reusing_an_old_nonce_that_draws_a_fresh_challenge_is_not_a_rejection() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-reuse");
    f.healthy("secret1001", "n1", 60);
    f.wait(30_000);
    f.register(60, Some(("1001", REALM, "n1", "secret1001")));
    f.challenge("n2", false);
    f.register(60, Some(("1001", REALM, "n2", "secret1001")));
    f.ok(60);
    assert_eq!(run(&f.packets).codes(), set(&[]));
}

/// REGISTER, 401, REGISTER with `user`'s credentials answered `status`.
fn authenticated_then(proto: Proto, user: &str, status: &str) -> Run {
    let mut f = Flow::new(proto, user, &format!("c-auth-{status}"));
    f.register(60, None);
    f.challenge("n0", false);
    f.register(60, Some((user, REALM, "n0", "pw")));
    f.reply(status, "");
    run(&f.packets)
}

#[test]
fn forbidden_after_credentials_over_tcp() {
    let r = authenticated_then(Proto::Tcp, "suspended", "403 Account suspended");
    assert_eq!(r.codes(), set(&["auth.forbidden_after_auth"]));
    let a = r.attempts();
    assert_eq!(
        a[0].outcome,
        Outcome::Rejected {
            status: 403,
            reason: "Account suspended".into()
        }
    );
}

#[test]
fn server_error_to_credentials_is_the_servers_trouble_not_the_accounts() {
    // A 503 to an authenticated REGISTER: the registrar is in trouble, it
    // said nothing about the account.
    let r = authenticated_then(Proto::Udp, "1001", "503 Service Unavailable");
    assert_eq!(r.codes(), set(&["reg.rejected"]));
    let d = r.one(Code::RegRejected);
    assert!(d.summary.contains("not the account"), "{}", d.summary);
    // A 404 to credentials is not a 403 either.
    let r = authenticated_then(Proto::Udp, "1001", "404 Not Found");
    assert_eq!(r.codes(), set(&["reg.rejected"]));
}

#[test]
fn healthy_registration_over_tcp() {
    let mut f = Flow::new(Proto::Tcp, "1001", "c-tcp");
    f.healthy("secret1001", "n1", 120);
    let r = run(&f.packets);
    assert_eq!(r.stats.packets.tcp.messages, 4, "{:?}", r.stats.packets.tcp);
    assert_eq!(r.codes(), set(&[]));
    assert_eq!(
        r.attempts()[0].outcome,
        Outcome::Registered { expires: 120 }
    );
}

#[test]
fn rejection_without_challenge_carries_the_warning() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-rej");
    f.register(60, None);
    f.reply(
        "403 Forbidden",
        "Warning: 399 sip.provider.example \"Use outbound proxy sbc.provider.example\"\n",
    );
    let r = run(&f.packets);
    assert_eq!(r.codes(), set(&["reg.rejected"]));
    let d = r.one(Code::RegRejected);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.name == "Warning" && e.value.contains("outbound proxy"))
    );
    assert!(d.remedy.pjsip.contains("outbound_proxy"));
}

#[test]
fn expiry_without_refresh_fires_on_the_packet_clock_only() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-exp");
    f.healthy("secret1001", "n1", 2);
    let end = f.ms;
    // The capture ends before the expiry: nothing.
    assert_eq!(run(&f.packets).codes(), set(&[]));
    // A tick (live mode, idle traffic) past the expiry fires it.
    let r = run_with(&f.packets, TrackerConfig::default(), Some(end + 3500));
    assert_eq!(r.codes(), set(&["reg.expired"]));
    assert_eq!(r.stats.registrations.expired, 1);
    // A refresh a moment after the expiry (within the grace) is routine.
    let mut late = Flow::new(Proto::Udp, "1001", "c-late");
    late.healthy("secret1001", "n1", 2);
    late.wait(2300);
    late.register(2, Some(("1001", REALM, "n1", "secret1001")));
    late.ok(2);
    let r = run_with(&late.packets, TrackerConfig::default(), None);
    assert_eq!(r.codes(), set(&[]));
    // A refresh in time keeps it alive.
    f.wait(1000);
    f.register(2, Some(("1001", REALM, "n1", "secret1001")));
    f.ok(2);
    let r = run_with(&f.packets, TrackerConfig::default(), Some(f.ms + 1000));
    assert_eq!(r.codes(), set(&[]));
}

#[test]
fn deregistration_ends_the_binding_without_expiry() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-dereg");
    f.healthy("secret1001", "n1", 2);
    f.register(0, Some(("1001", REALM, "n1", "secret1001")));
    f.ok(0);
    let r = run_with(&f.packets, TrackerConfig::default(), Some(f.ms + 10_000));
    assert_eq!(r.codes(), set(&[]));
    let a = r.attempts();
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].outcome, Outcome::Deregistered);
    assert_eq!(r.stats.registrations.deregistered, 1);
}

/// A registrar answering 200 and 503 in turn, five times each; with
/// `new_call_ids` the client takes a new Call-ID after every failure, as
/// PJSIP does.
fn alternating_200_and_503(new_call_ids: bool) -> Run {
    let mut f = Flow::new(Proto::Udp, "1001", "c-flap-0");
    for i in 0..5 {
        f.register(60, None);
        f.ok(60);
        f.wait(5000);
        f.register(60, None);
        f.reply("503 Service Unavailable", "");
        f.wait(5000);
        if new_call_ids {
            f.call_id = format!("c-flap-{}", i + 1);
        }
    }
    let r = run(&f.packets);
    assert_eq!(r.codes(), set(&["reg.flapping", "reg.rejected"]));
    r.one(Code::RegFlapping);
    assert_eq!(r.stats.registrations.bindings, 1);
    r
}

#[test]
fn flapping_is_raised_once_and_rejections_do_not_repeat_after_it() {
    let r = alternating_200_and_503(false);
    r.one(Code::RegFlapping);
    // Before flapping is recognised each failure episode is reported
    // (2 of them: after 4 changes the flapping finding takes over).
    let rejected = r
        .diagnoses()
        .iter()
        .filter(|d| d.code == Code::RegRejected)
        .count();
    assert_eq!(rejected, 2);
    assert_eq!(r.attempts().len(), 10);
}

#[test]
fn a_new_call_id_after_a_failure_is_the_same_binding_refreshed() {
    // PJSIP: registered for 4 s, the refresh draws a 503, the client
    // retries under a new Call-ID and registers again (RFC 3261 §10.2.4
    // asks for one Call-ID, PJSIP starts a new one after a failure).
    let mut f = Flow::new(Proto::Udp, "1001", "c-pj-1");
    for (call_id, nonce, refresh) in [("c-pj-1", "n1", Some(3000)), ("c-pj-2", "n2", None)] {
        f.call_id = call_id.into();
        f.cseq = 0;
        f.healthy("secret1001", nonce, 4);
        if let Some(after) = refresh {
            f.wait(after);
            f.register(4, Some(("1001", REALM, nonce, "secret1001")));
            f.reply("503 Service Unavailable", "");
            f.wait(500);
        }
    }
    let end = f.ms;
    // Past the first grant, within the second: the binding is alive.
    let r = run_with(&f.packets, TrackerConfig::default(), Some(end + 2000));
    assert_eq!(r.codes(), set(&["reg.rejected"]));
    assert_eq!(r.stats.registrations.bindings, 1);
    assert_eq!(r.stats.registrations.expired, 0);
    // Past the second grant with no refresh: expired, once.
    let r = run_with(&f.packets, TrackerConfig::default(), Some(end + 6000));
    assert_eq!(r.codes(), set(&["reg.expired", "reg.rejected"]));
    assert!(r.one(Code::RegExpired).summary.contains("1001@"));
}

#[test]
fn flapping_across_call_ids_is_one_binding_flapping() {
    alternating_200_and_503(true);
}

#[test]
fn two_contacts_of_one_aor_are_two_bindings() {
    // Two devices of one account under their own Call-IDs: the second is
    // not a refresh of the first.
    let mut a = Flow::new(Proto::Udp, "1001", "c-dev-a");
    a.healthy("secret1001", "n1", 2);
    let mut b = Flow::new(Proto::Udp, "1001", "c-dev-b");
    b.client = ([10, 0, 0, 3], 5062);
    b.advertised = b.client;
    b.ms = 1000;
    b.healthy("secret1001", "n1", 60);
    let r = run_with(&merged(&[a, b]), TrackerConfig::default(), Some(5000));
    assert_eq!(r.codes(), set(&["reg.expired"]));
    assert_eq!(r.stats.registrations.bindings, 2);
}

#[test]
fn nat_findings_once_per_binding_across_refreshes() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-nat");
    // Seen on the registrar side: the request arrives from the NAT's
    // public address, advertising the private one.
    f.client = ([198, 51, 100, 1], 40000);
    f.server = ([198, 51, 100, 2], 5060);
    f.advertised = ([10, 0, 0, 2], 5062);
    f.healthy("secret1001", "n1", 60);
    f.wait(50_000);
    f.register(60, Some(("1001", REALM, "n1", "secret1001")));
    f.ok(60);
    let r = run(&f.packets);
    assert_eq!(
        r.codes(),
        set(&["nat.private_contact", "nat.rewritten_by_peer"])
    );
    r.one(Code::NatPrivateContact);
    r.one(Code::NatRewrittenByPeer);
    assert!(r.stats.registrations.diagnoses_suppressed > 0);
}

#[test]
fn pbx_as_registrar_tracks_each_phone_separately() {
    // Phones registering to the PBX at 203.0.113.10; phone A is behind a
    // NAT, phone B is not.
    let mut a = Flow::new(Proto::Udp, "201", "c-phone-a");
    a.server = ([203, 0, 113, 10], 5060);
    a.client = ([198, 51, 100, 7], 33000);
    a.advertised = ([192, 168, 1, 50], 5060);
    a.healthy("pa", "na", 300);
    let mut b = Flow::new(Proto::Udp, "202", "c-phone-b");
    b.server = a.server;
    b.client = ([198, 51, 100, 8], 5060);
    b.advertised = b.client;
    b.ms = 10;
    b.healthy("pb", "nb", 300);
    let r = run(&merged(&[a, b]));
    let attempts = r.attempts();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts
            .iter()
            .all(|x| matches!(x.outcome, Outcome::Registered { expires: 300 }))
    );
    assert!(
        attempts
            .iter()
            .all(|x| x.registrar.to_string() == "203.0.113.10:5060")
    );
    let by_phone: Vec<_> = attempts
        .iter()
        .map(|x| {
            (
                x.binding.aor.clone(),
                x.diagnoses
                    .iter()
                    .map(|d| d.code.as_str())
                    .collect::<BTreeSet<_>>(),
            )
        })
        .collect();
    for (aor, codes) in by_phone {
        if aor.contains("201@") {
            assert_eq!(
                codes,
                set(&["nat.private_contact", "nat.rewritten_by_peer"])
            );
        } else {
            assert_eq!(codes, set(&[]));
        }
    }
}

#[test]
fn binding_table_is_bounded_and_evictions_are_counted() {
    let mut packets = Vec::new();
    for i in 0..10 {
        let mut f = Flow::new(Proto::Udp, &format!("10{i:02}"), &format!("c-flood-{i}"));
        f.ms = i * 100;
        f.register(60, None);
        packets.extend(f.packets);
    }
    let cfg = TrackerConfig {
        max_bindings: 3,
        ..Default::default()
    };
    let r = run_with(&packets, cfg, None);
    assert_eq!(r.stats.registrations.bindings, 3);
    assert_eq!(r.stats.registrations.bindings_evicted, 7);
    assert_eq!(r.stats.registrations.attempts_evicted, 7);
    // The survivors end at finish, unanswered.
    let a = r.attempts();
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|x| x.outcome == Outcome::TimedOut));
}

#[test]
fn unanswered_register_times_out_on_the_packet_clock() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-timeout");
    f.register(60, None);
    let r = run_with(&f.packets, TrackerConfig::default(), Some(f.ms + 40_000));
    let a = r.attempts();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].outcome, Outcome::TimedOut);
    // The reachability analysis reports the unanswered request.
    assert_eq!(r.codes(), set(&["net.no_response"]));
}

#[test]
fn new_cseqs_on_a_reused_branch_are_new_requests_not_retransmissions() {
    // SIPp loops reuse one Via branch for every REGISTER of the loop; the
    // transaction layer calls them retransmissions, the CSeq says new.
    let mut f = Flow::new(Proto::Udp, "1001", "c-reuse-branch");
    f.register(60, None);
    f.challenge("n0", false);
    for i in 1..=3 {
        f.branch = 0; // register() counts it up to 1: the first REGISTER's branch
        f.register(60, Some(("1001", REALM, &format!("n{}", i - 1), "Wr0ngPw")));
        f.challenge(&format!("n{i}"), false);
    }
    let r = run(&f.packets);
    assert!(
        r.stats.sip.retransmissions > 0,
        "the branch really was reused"
    );
    assert_eq!(r.codes(), set(&["auth.rejected", "auth.challenge_loop"]));
    // A real retransmission (same CSeq) is still not a new request.
    let mut g = Flow::new(Proto::Udp, "1001", "c-retrans");
    g.register(60, None);
    let again = g.packets.last().unwrap().clone();
    g.packets.push(Packet {
        ts: Timestamp(again.ts.0 + 500_000_000),
        ..again
    });
    g.challenge("n0", false);
    let r = run(&g.packets);
    assert_eq!(r.stats.registrations.attempts, 1);
    assert_eq!(r.attempts()[0].transactions.len(), 1);
}

#[test]
fn stale_nonce_not_recovered_is_a_warning() {
    let mut f = Flow::new(Proto::Udp, "1001", "c-stale-bad");
    f.healthy("secret1001", "n1", 60);
    f.wait(2500);
    f.register(60, Some(("1001", REALM, "n1", "secret1001")));
    f.challenge("n2", true);
    // The client answers the new nonce with a wrong password.
    f.register(60, Some(("1001", REALM, "n2", "Wr0ngPw")));
    f.challenge("n3", false);
    let r = run(&f.packets);
    assert_eq!(r.codes(), set(&["auth.stale_nonce", "auth.rejected"]));
    let d = r.one(Code::AuthStaleNonce);
    assert_eq!(d.severity, Severity::Warning);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.name == "client recovered" && e.value == "no")
    );
    // The client never answered the stale challenge: given up on the
    // packet clock (32 s later), not recovered.
    let mut g = Flow::new(Proto::Udp, "1001", "c-stale-quiet");
    g.healthy("secret1001", "n1", 600);
    g.wait(2500);
    g.register(600, Some(("1001", REALM, "n1", "secret1001")));
    g.challenge("n2", true);
    let r = run_with(&g.packets, TrackerConfig::default(), Some(g.ms + 40_000));
    let d = r.one(Code::AuthStaleNonce);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.name == "client recovered" && e.value == "no")
    );
    assert_eq!(r.attempts()[1].outcome, Outcome::GaveUp { status: 401 });
}

#[test]
fn console_table_shows_state_expiry_and_last_failure() {
    let mut ok = Flow::new(Proto::Udp, "1001", "c-table-ok");
    ok.healthy("secret1001", "n1", 60);
    let mut bad = Flow::new(Proto::Udp, "1002", "c-table-bad");
    bad.ms = ok.ms + 10_000; // the capture ends 10.04 s after the 200 OK: 49 s left
    bad.register(60, None);
    bad.reply("404 Not Found", "");
    let packets: Vec<Packet> = ok.packets.iter().chain(&bad.packets).cloned().collect();
    let r = run(&packets);
    let mut report = crate::export::registrations::RegistrationReport::new();
    for e in &r.events {
        report.push(e);
    }
    let text = report.render();
    let row = |aor: &str| {
        text.lines()
            .find(|l| l.contains(aor))
            .unwrap_or_else(|| panic!("no row for {aor} in\n{text}"))
            .to_owned()
    };
    let ok_row = row("sip:1001@");
    assert!(
        ok_row.contains("registered") && ok_row.contains("49 s"),
        "{ok_row}"
    );
    let bad_row = row("sip:1002@");
    assert!(
        bad_row.contains("rejected") && bad_row.contains("404 Not Found"),
        "{bad_row}"
    );
    assert!(text.contains("[error] reg.rejected"), "{text}");
    assert!(text.contains("what to do:"), "{text}");
}

/// A UA that takes a new Call-ID for every registration (sipsak does, and
/// some phones after each refresh) is one binding: one row, counting every
/// attempt and naming the latest Call-ID; another Contact of the same AOR
/// is a row of its own.
#[test]
fn console_table_has_one_row_per_binding_whatever_its_call_ids() {
    let mut packets = Vec::new();
    let mut ms = 0;
    for (i, port) in [(0, 5062), (1, 5062), (2, 5062), (3, 5070)] {
        let mut f = Flow::new(Proto::Udp, "1001", &format!("c-row-{i}"));
        f.advertised.1 = port;
        f.ms = ms;
        f.healthy("secret1001", &format!("n{i}"), 60);
        ms = f.ms + 1000;
        packets.extend(f.packets);
    }
    let r = run(&packets);
    let mut report = crate::export::registrations::RegistrationReport::new();
    for e in &r.events {
        report.push(e);
    }
    let text = report.render();
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("sip:1001@")).collect();
    let (bindings, contacts): (Vec<&str>, Vec<&str>) = rows
        .iter()
        .partition(|l| !l.trim_start().starts_with("contact"));
    assert_eq!(bindings.len(), 2, "{text}");
    assert!(
        bindings[0].split_whitespace().nth(5) == Some("3"),
        "three attempts: {text}"
    );
    assert!(contacts[0].contains("Call-ID c-row-2"), "{text}");
    assert!(
        contacts[1].contains(":5070") && contacts[1].contains("c-row-3"),
        "{text}"
    );
}

#[test]
fn many_trunks_from_one_pbx_name_each_failing_aor_once_and_no_healthy_one() {
    // 60 trunks of one PBX register to one provider at once; 4 have a
    // wrong password, 3 are refused without a challenge.
    let wrong: Vec<u32> = vec![7, 19, 33, 51];
    let refused: Vec<u32> = vec![2, 28, 44];
    let mut packets = Vec::new();
    for i in 0..60u32 {
        let user = format!("trunk{i:02}");
        let mut f = Flow::new(Proto::Udp, &user, &format!("c-trunk-{i}"));
        f.ms = u64::from(i) * 3;
        if refused.contains(&i) {
            f.register(60, None);
            f.reply("404 Not Found", "");
        } else if wrong.contains(&i) {
            f.register(60, None);
            f.challenge("n0", false);
            for n in 0..3 {
                f.register(60, Some((&user, REALM, &format!("n{n}"), "wrong")));
                f.challenge(&format!("n{}", n + 1), false);
            }
        } else {
            f.healthy("pw", "n0", 60);
        }
        packets.extend(f.packets);
    }
    packets.sort_by_key(|p| p.ts);
    let r = run(&packets);
    assert_eq!(
        r.codes(),
        set(&["auth.challenge_loop", "auth.rejected", "reg.rejected"])
    );
    let count = |code: Code| r.diagnoses().iter().filter(|d| d.code == code).count();
    assert_eq!(count(Code::AuthRejected), wrong.len());
    assert_eq!(count(Code::AuthChallengeLoop), wrong.len());
    assert_eq!(count(Code::RegRejected), refused.len());
    for a in r.attempts() {
        let i: u32 = a.binding.aor[9..11].parse().unwrap();
        let codes: BTreeSet<_> = a.diagnoses.iter().map(|d| d.code.as_str()).collect();
        if wrong.contains(&i) || refused.contains(&i) {
            assert!(!codes.is_empty(), "{} named", a.binding.aor);
        } else {
            assert!(
                codes.is_empty(),
                "healthy {} named: {codes:?}",
                a.binding.aor
            );
        }
    }
    for d in r.diagnoses() {
        let named = wrong
            .iter()
            .chain(&refused)
            .filter(|i| d.summary.contains(&format!("trunk{i:02}")))
            .count();
        assert_eq!(named, 1, "{}", d.summary);
    }
}

/// Two Call-IDs registering one binding (AOR and Contact) at once, as a
/// load generator or a UA with parallel registrations does: each answers
/// the challenge its own Call-ID drew (RFC 3261 §22.2), so neither nonce
/// is a mismatch. Answering the other Call-ID's nonce still is.
#[test]
fn parallel_call_ids_of_one_binding_answer_their_own_challenges() {
    let exchange = |b_answers: &str| {
        let mut a = Flow::new(Proto::Udp, "1001", "c-par-a");
        let mut b = Flow::new(Proto::Udp, "1001", "c-par-b");
        b.wait(10);
        for (f, nonce, answer) in [(&mut a, "na", "na"), (&mut b, "nb", b_answers)] {
            f.register(60, None);
            f.challenge(nonce, false);
            f.register(60, Some(("1001", REALM, answer, "secret1001")));
            f.ok(60);
        }
        run(&merged(&[a, b]))
    };
    let r = exchange("nb");
    assert_eq!(r.codes(), set(&[]));
    assert_eq!(r.stats.registrations.bindings, 1);
    let r = exchange("na");
    assert_eq!(r.codes(), set(&["auth.nonce_mismatch"]));
}

/// A second Call-ID's REGISTER for the binding goes out before the first
/// one's 200 returns (SIPp at a rate, or a slow registrar): the first 200
/// ends the open attempt, and the second REGISTER's transaction still
/// ends up in an attempt of its own, which starts at its request.
#[test]
fn a_register_overtaken_by_another_call_ids_keeps_its_transaction() {
    let mut a = Flow::new(Proto::Udp, "1001", "c-overtaken-a");
    let mut b = Flow::new(Proto::Udp, "1001", "c-overtaken-b");
    a.register(60, None);
    b.ms = 10;
    b.register(60, None);
    a.ms = 40;
    a.ok(60);
    b.ms = 50;
    b.ok(60);
    let r = run(&merged(&[a, b]));
    assert_eq!(r.codes(), set(&[]));
    let attempts = r.attempts();
    assert_eq!(attempts.len(), 2);
    for a in &attempts {
        assert_eq!(a.transactions.len(), 1, "{}", a.binding.call_id);
        assert_eq!(
            a.transactions[0].call_id().as_deref(),
            Some(a.binding.call_id.as_str())
        );
        assert_eq!(a.outcome, Outcome::Registered { expires: 60 });
    }
}

/// More Call-IDs registering one binding at once than the tracker keeps
/// challenges for (a load generator with one account): the Call-IDs whose
/// challenge was evicted are not paired with another Call-ID's nonce, so
/// no false mismatch; a kept Call-ID answering a wrong nonce still is one.
#[test]
fn parallel_call_ids_beyond_the_kept_challenges_raise_no_false_mismatch() {
    let exchange = |last_answers: &str| {
        let n = 6;
        let flows: Vec<Flow> = (0..n)
            .map(|i| {
                let mut f = Flow::new(Proto::Udp, "1001", &format!("c-many-{i}"));
                f.wait(i * 5);
                f.register(60, None);
                f.challenge(&format!("n{i}"), false);
                // Every challenge is out before the first answer.
                f.wait(200);
                let answer = if i == n - 1 {
                    last_answers.to_owned()
                } else {
                    format!("n{i}")
                };
                f.register(60, Some(("1001", REALM, &answer, "secret1001")));
                f.ok(60);
                f
            })
            .collect();
        run(&merged(&flows))
    };
    let r = exchange("n5");
    assert_eq!(r.codes(), set(&[]));
    assert_eq!(r.stats.registrations.bindings, 1);
    let r = exchange("n0");
    assert_eq!(r.codes(), set(&["auth.nonce_mismatch"]));
}

/// A load generator registering one account from many Call-IDs at once,
/// in bursts (SIPp against a registrar: a burst's REGISTERs go out before
/// their 401s return, then their answers, while the previous burst is
/// still being answered). The binding's index forgets the oldest Call-IDs
/// before their challenge or their answer arrives, and an answer then
/// comes back under whichever binding holds the Contact. No answer is
/// paired with another Call-ID's nonce; a wrong nonce under the Call-ID's
/// own challenge is still a mismatch. The schedule is the one a SIPp
/// bench capture showed.
#[test]
fn bursts_of_call_ids_of_one_account_raise_no_false_mismatch() {
    /// Milliseconds of a Call-ID's first REGISTER and its 401 (none: it
    /// joined the capture at its answer), its answer and its 200.
    type Exchange = (Option<(u64, u64)>, u64, u64);
    const SCHEDULE: [Exchange; 12] = [
        (None, 5, 16),
        (None, 10, 21),
        (None, 11, 22),
        (None, 23, 32),
        (Some((1, 12)), 24, 33),
        (Some((2, 13)), 25, 34),
        (Some((3, 14)), 26, 35),
        (Some((4, 15)), 27, 36),
        (Some((6, 17)), 28, 37),
        (Some((7, 18)), 29, 38),
        (Some((8, 19)), 30, 39),
        (Some((9, 20)), 31, 40),
    ];
    let exchange = |wrong: Option<usize>| {
        let flows: Vec<Flow> = SCHEDULE
            .iter()
            .enumerate()
            .map(|(i, &(first, answer, ok))| {
                let mut f = Flow::new(Proto::Udp, "1001", &format!("c-burst-{i}"));
                let nonce = format!("n{i}");
                let sent = if wrong == Some(i) {
                    "never-issued"
                } else {
                    &nonce
                };
                match first {
                    Some((register, challenge)) => {
                        f.ms = register;
                        f.register(60, None);
                        f.ms = challenge;
                        f.challenge(&nonce, false);
                    }
                    None => f.cseq = 1,
                }
                f.ms = answer;
                f.register(60, Some(("1001", REALM, sent, "secret1001")));
                f.ms = ok;
                f.ok(60);
                f
            })
            .collect();
        run(&merged(&flows))
    };
    let r = exchange(None);
    assert_eq!(r.codes(), set(&[]), "{:#?}", r.diagnoses());
    // The burst's first and last Call-ID answering a nonce never issued.
    for i in [4, 11] {
        let r = exchange(Some(i));
        assert_eq!(r.codes(), set(&["auth.nonce_mismatch"]), "Call-ID {i}");
    }
}
