//! Digest checks on requests other than REGISTER, through the real
//! pipeline: an outbound INVITE challenged by the proxy (407), resent with
//! Proxy-Authorization; each test states the exact codes it must raise.

use std::collections::BTreeSet;
use std::sync::Arc;

use etherparse::PacketBuilder;
use md5::{Digest, Md5};

use crate::analysis::credentials::CredentialStore;
use crate::analysis::registration::TrackerConfig;
use crate::diagnosis::Diagnosis;
use crate::pipeline::{Event, Pipeline, PipelineConfig};
use crate::{
    packet::{Direction, LinkType, Packet},
    time::Timestamp,
};

const T0: u64 = 1_700_000_000_000_000_000;
const UA: ([u8; 4], u16) = ([10, 0, 0, 2], 5062);
const PROXY: ([u8; 4], u16) = ([10, 0, 0, 1], 5060);
const REALM: &str = "sipscope.test";
const RURI: &str = "sip:1002@sipscope.test";

fn md5hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn frame(ms: u64, to_proxy: bool, text: &str) -> Packet {
    let (from, to) = if to_proxy { (UA, PROXY) } else { (PROXY, UA) };
    let mut data = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(from.0, to.0, 64)
        .udp(from.1, to.1)
        .write(&mut data, text.replace('\n', "\r\n").as_bytes())
        .unwrap();
    Packet {
        ts: Timestamp(T0 + ms * 1_000_000),
        ifindex: 0,
        direction: Direction::Unknown,
        link: LinkType::Ethernet,
        orig_len: data.len() as u32,
        data,
    }
}

struct Call {
    method: &'static str,
    cseq: u32,
    ms: u64,
    packets: Vec<Packet>,
}

impl Call {
    fn new(method: &'static str) -> Self {
        Self {
            method,
            cseq: 0,
            ms: 0,
            packets: Vec::new(),
        }
    }

    fn push(&mut self, to_proxy: bool, text: String) {
        self.packets.push(frame(self.ms, to_proxy, &text));
        self.ms += 20;
    }

    /// The request; `auth` = (password, nonce, digest uri, algorithm).
    fn request(&mut self, auth: Option<(&str, &str, &str, &str)>) {
        self.cseq += 1;
        let m = self.method;
        let authz = auth.map_or(String::new(), |(pw, nonce, uri, alg)| {
            let ha1 = md5hex(&format!("1001:{REALM}:{pw}"));
            let ha2 = md5hex(&format!("{m}:{uri}"));
            let resp = md5hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!(
                "Proxy-Authorization: Digest username=\"1001\", realm=\"{REALM}\", \
                 nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={alg}\n"
            )
        });
        let text = format!(
            "{m} {RURI} SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-{m}-{c};rport\n\
             Max-Forwards: 70\nFrom: <sip:1001@{REALM}>;tag=ft\nTo: <sip:1002@{REALM}>\n\
             Call-ID: call-{m}\nCSeq: {c} {m}\nContact: <sip:1001@10.0.0.2:5062>\n\
             {authz}Content-Length: 0\n\n",
            c = self.cseq
        );
        self.push(true, text);
    }

    fn reply(&mut self, status: &str, extra: &str) {
        let m = self.method;
        let text = format!(
            "SIP/2.0 {status}\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-{m}-{c};rport=5062\n\
             From: <sip:1001@{REALM}>;tag=ft\nTo: <sip:1002@{REALM}>;tag=tt\n\
             Call-ID: call-{m}\nCSeq: {c} {m}\n{extra}Content-Length: 0\n\n",
            c = self.cseq
        );
        self.push(false, text);
    }

    /// `method`, 407 with nonce `n1`, `method` again with `answer`.
    fn answered(method: &'static str, answer: (&str, &str, &str, &str)) -> Self {
        let mut c = Call::new(method);
        c.request(None);
        c.challenge("n1");
        c.request(Some(answer));
        c
    }

    fn challenge(&mut self, nonce: &str) {
        self.reply(
            "407 Proxy Authentication Required",
            &format!("Proxy-Authenticate: Digest realm=\"{REALM}\", nonce=\"{nonce}\"\n"),
        );
    }
}

fn codes(
    packets: &[Packet],
    config: PipelineConfig,
) -> (BTreeSet<&'static str>, Vec<Arc<Diagnosis>>) {
    let mut p = Pipeline::new(config);
    let mut events = Vec::new();
    for pkt in packets {
        p.ingest_into(pkt, &mut events);
    }
    events.extend(p.finish());
    let found: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Diagnosis(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    (found.iter().map(|d| d.code.as_str()).collect(), found)
}

fn plain(packets: &[Packet]) -> BTreeSet<&'static str> {
    codes(packets, PipelineConfig::default()).0
}

fn set(c: &[&'static str]) -> BTreeSet<&'static str> {
    c.iter().copied().collect()
}

#[test]
fn invite_challenged_answered_and_connected_raises_nothing() {
    let mut c = Call::answered("INVITE", ("secret", "n1", RURI, "MD5"));
    c.reply("100 Trying", "");
    c.reply("200 OK", "");
    assert_eq!(plain(&c.packets), set(&[]));
}

#[test]
fn invite_challenged_again_after_credentials_is_rejected_then_a_loop() {
    // Wrong password on an outbound call: 407, Proxy-Authorization, 407.
    let mut c = Call::answered("INVITE", ("wrong", "n1", RURI, "MD5"));
    c.challenge("n2");
    assert_eq!(plain(&c.packets), set(&["auth.rejected"]));
    c.request(Some(("wrong", "n2", RURI, "MD5")));
    c.challenge("n3");
    c.request(Some(("wrong", "n3", RURI, "MD5")));
    c.challenge("n4");
    assert_eq!(
        plain(&c.packets),
        set(&["auth.challenge_loop", "auth.rejected"])
    );
    // With the password known, the verdict is a mismatch.
    let toml = format!(
        "[[credential]]\nrealm = \"{REALM}\"\nusername = \"1001\"\npassword = \"secret\"\n"
    );
    let config = PipelineConfig {
        registration: TrackerConfig {
            credentials: Some(Arc::new(CredentialStore::from_toml_str(&toml).unwrap())),
            ..Default::default()
        },
        ..Default::default()
    };
    let (found, _) = codes(&c.packets, config);
    assert_eq!(
        found,
        set(&[
            "auth.challenge_loop",
            "auth.password_mismatch",
            "auth.rejected"
        ])
    );
}

#[test]
fn every_challenged_method_gets_the_digest_checks() {
    for method in ["BYE", "SUBSCRIBE", "MESSAGE", "OPTIONS"] {
        // The digest uri is not the Request-URI.
        let mut c = Call::answered(method, ("secret", "n1", "sip:other@sipscope.test", "MD5"));
        c.reply("200 OK", "");
        assert_eq!(plain(&c.packets), set(&["auth.uri_mismatch"]), "{method}");
        // A nonce the challenge did not issue.
        let mut c = Call::answered(method, ("secret", "old-nonce", RURI, "MD5"));
        c.reply("200 OK", "");
        assert_eq!(plain(&c.packets), set(&["auth.nonce_mismatch"]), "{method}");
        // An algorithm the challenge did not offer.
        let mut c = Call::answered(method, ("secret", "n1", RURI, "SHA-256"));
        c.challenge("n2");
        assert_eq!(
            plain(&c.packets),
            set(&["auth.algorithm_mismatch", "auth.rejected"]),
            "{method}"
        );
    }
}

#[test]
fn forbidden_to_an_authenticated_invite_and_unchallenged_calls_raise_as_they_should() {
    let mut c = Call::answered("INVITE", ("secret", "n1", RURI, "MD5"));
    c.reply("403 Forbidden", "");
    assert_eq!(plain(&c.packets), set(&["auth.forbidden_after_auth"]));
    // Not challenged, no credentials: nothing to judge.
    let mut c = Call::new("INVITE");
    c.request(None);
    c.reply("403 Forbidden", "");
    assert_eq!(plain(&c.packets), set(&[]));
}
