//! Registration scenarios against real peers: kamailio as a digest
//! registrar (tests/fixtures/scenarios/registrar.cfg) and SIPp as the
//! registering PBX, in their own network namespaces. The real agent
//! (`sipscope run --write-pcap`) captures on the registrar's veth, the pcap
//! goes through the library pipeline, and each test asserts the EXACT set
//! of diagnosis codes (tests/fixtures/scenarios/README.md has the table).
//! Run as root: `cargo test -p sipscope --test scenarios`.

#[path = "../support/mod.rs"]
mod support;

// The kernel tests' agent/dumpcap drivers, shared as they are.
#[allow(dead_code)]
#[path = "../kernel/agent.rs"]
mod agent;

mod calls;
mod clients;
mod config_reload;
mod digest;
mod flood;
mod inbound;
mod lab;
mod metrics;
// The real OTLP/gRPC receiver of the OTLP tests (the reload test's).
#[path = "../otlp/receiver.rs"]
#[allow(dead_code)]
mod otlp_receiver;
mod reachability;
mod tls;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use sipscope::analysis::credentials::CredentialStore;
use sipscope::analysis::registration::TrackerConfig;
use sipscope::capture::file::CaptureFile;
use sipscope::diagnosis::{Code, Diagnosis, Severity};
use sipscope::pipeline::{Event, Pipeline, PipelineConfig};

use lab::{Lab, Peer};

pub use support::sipp::ACCOUNT_1001;

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "scenario tests must run as root (network namespaces, BPF)"
    );
}

/// Every diagnosis the library pipeline raises on `pcap`.
fn analyse(pcap: &Path, credentials: Option<Arc<CredentialStore>>) -> Vec<Arc<Diagnosis>> {
    all_events(pcap, credentials)
        .into_iter()
        .filter_map(|e| match e {
            Event::Diagnosis(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// Outcome labels of the registration attempts found in `pcap`.
fn outcomes(pcap: &Path) -> Vec<&'static str> {
    all_events(pcap, None)
        .into_iter()
        .filter_map(|e| match e {
            Event::RegistrationAttempt(a) => Some(a.outcome.label()),
            _ => None,
        })
        .collect()
}

fn all_events(pcap: &Path, credentials: Option<Arc<CredentialStore>>) -> Vec<Event> {
    let mut p = Pipeline::new(PipelineConfig {
        registration: TrackerConfig {
            credentials,
            ..Default::default()
        },
        ..Default::default()
    });
    let mut events = Vec::new();
    for pkt in CaptureFile::open(pcap).unwrap_or_else(|e| panic!("{e}")) {
        p.ingest_into(&pkt.expect("readable capture"), &mut events);
    }
    events.extend(p.finish());
    events
}

fn codes(ds: &[Arc<Diagnosis>]) -> BTreeSet<&'static str> {
    ds.iter().map(|d| d.code.as_str()).collect()
}

fn set(c: &[&'static str]) -> BTreeSet<&'static str> {
    c.iter().copied().collect()
}

/// Code and evidence (names and values) of each finding: what must be
/// identical whichever capture the analysis read (timestamps may differ
/// by the capture points' clocks).
fn comparable(ds: &[Arc<Diagnosis>]) -> Vec<(Code, Vec<(String, String)>)> {
    ds.iter()
        .map(|d| {
            (
                d.code,
                d.evidence
                    .iter()
                    .map(|e| {
                        (
                            e.name.to_string(),
                            format!("{} {:?}", e.value, e.message.as_ref().map(|m| &m.label)),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

/// A credentials file for account 1001 in a private temp dir (chmod 600).
fn credentials(
    dir: &support::TempDir,
    password: &str,
) -> (std::path::PathBuf, Arc<CredentialStore>) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("credentials.toml");
    std::fs::write(
        &path,
        format!("[[credential]]\nrealm = \"sipscope.test\"\nusername = \"1001\"\npassword = \"{password}\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = CredentialStore::load(&path).expect("credentials file accepted");
    (path, Arc::new(store))
}

fn register(user: &str, auth: &str, pw: &str) -> Peer {
    Peer::sipp("register.xml", &["-s", user, "-au", auth, "-ap", pw])
}

#[test]
fn healthy_registration_raises_nothing_and_live_equals_dumpcap() {
    let run = Lab::new(false, &[]).run(&register("1001", "1001", "secret1001"), true);
    let live = analyse(&run.agent_pcap, None);
    assert_eq!(codes(&live), set(&[]), "{live:#?}");
    assert_eq!(outcomes(&run.agent_pcap), vec!["registered"]);
    let offline = analyse(run.dumpcap_pcap.as_ref().unwrap(), None);
    assert_eq!(comparable(&live), comparable(&offline));

    // The right password in a credentials file: confirmed, nothing failing.
    let (_, store) = credentials(&run.dir, "secret1001");
    let ds = analyse(&run.agent_pcap, Some(store));
    assert_eq!(codes(&ds), set(&["auth.password_correct"]));
    assert!(ds.iter().all(|d| d.severity == Severity::Info));
}

#[test]
fn wrong_password_is_rejected_loops_and_mismatches_the_known_password() {
    let run = Lab::new(false, &[]).run(&register("1001", "1001", "Wr0ngPw"), true);
    let live = analyse(&run.agent_pcap, None);
    assert_eq!(
        codes(&live),
        set(&["auth.rejected", "auth.challenge_loop"]),
        "{live:#?}"
    );
    let offline = analyse(run.dumpcap_pcap.as_ref().unwrap(), None);
    assert_eq!(comparable(&live), comparable(&offline));

    let (path, store) = credentials(&run.dir, "secret1001");
    let ds = analyse(&run.agent_pcap, Some(store));
    assert_eq!(
        codes(&ds),
        set(&[
            "auth.rejected",
            "auth.challenge_loop",
            "auth.password_mismatch"
        ])
    );

    // The CLI says the same in JSON, and no secret leaves the host.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .args(["analyze", "--json", "--credentials"])
        .arg(&path)
        .arg(&run.agent_pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let cli: BTreeSet<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "diagnosis")
        .map(|v| v["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        cli,
        [
            "auth.challenge_loop",
            "auth.password_mismatch",
            "auth.rejected"
        ]
        .map(String::from)
        .into()
    );
    assert!(text.contains("\"type\":\"registration\""));
    assert!(!text.contains("Wr0ngPw") && !text.contains("secret1001"));
    assert!(!text.contains("response="), "digest response leaked");
}

#[test]
fn healthy_and_wrong_password_over_tcp() {
    let mut peer = register("1001", "1001", "secret1001");
    peer.tcp = true;
    let run = Lab::new(false, &[]).run(&peer, false);
    let ds = analyse(&run.agent_pcap, None);
    assert_eq!(codes(&ds), set(&[]), "{ds:#?}");
    assert_eq!(outcomes(&run.agent_pcap), vec!["registered"]);
    let tcp_messages = all_events(&run.agent_pcap, None)
        .iter()
        .filter(|e| {
            matches!(e, Event::Message(m) if m.meta.transport == sipscope::packet::Transport::Tcp)
        })
        .count();
    assert_eq!(tcp_messages, 4, "REGISTER, 401, REGISTER, 200 over TCP");

    let mut peer = register("1001", "1001", "Wr0ngPw");
    peer.tcp = true;
    let run = Lab::new(false, &[]).run(&peer, false);
    let ds = analyse(&run.agent_pcap, None);
    assert_eq!(
        codes(&ds),
        set(&["auth.rejected", "auth.challenge_loop"]),
        "{ds:#?}"
    );
    assert_eq!(outcomes(&run.agent_pcap), vec!["gave_up"]);
}

#[test]
fn auth_username_equal_to_the_did() {
    let run = Lab::new(false, &[]).run(&register("15551230007", "15551230007", "pw7"), false);
    let ds = analyse(&run.agent_pcap, None);
    assert_eq!(
        codes(&ds),
        set(&[
            "auth.username_is_did",
            "auth.rejected",
            "auth.challenge_loop"
        ]),
        "{ds:#?}"
    );
}

#[test]
fn did_with_its_own_auth_username_registers_cleanly() {
    let run = Lab::new(false, &[]).run(&register("15551230007", "acct-7", "pw7"), false);
    let ds = analyse(&run.agent_pcap, None);
    assert_eq!(codes(&ds), set(&[]), "{ds:#?}");
}

#[test]
fn forbidden_after_credentials() {
    let run = Lab::new(false, &[]).run(&register("suspended", "suspended", "pw-s"), false);
    let ds = analyse(&run.agent_pcap, None);
    assert_eq!(codes(&ds), set(&["auth.forbidden_after_auth"]), "{ds:#?}");
    let d = &ds[0];
    assert!(
        d.evidence
            .iter()
            .any(|e| e.value == "403 Account suspended")
    );
}

#[test]
fn realm_mismatch() {
    let peer = Peer::sipp(
        "realm-mismatch.xml",
        &["-s", "1001", "-key", "realm", "provider.example"],
    );
    let run = Lab::new(false, &[]).run(&peer, false);
    let ds = analyse(&run.agent_pcap, None);
    assert_eq!(
        codes(&ds),
        set(&["auth.realm_mismatch", "auth.rejected"]),
        "{ds:#?}"
    );
}

#[test]
fn stale_nonce_recovered() {
    let peer = Peer::sipp(
        "stale-nonce.xml",
        &["-s", "1001", "-au", "1001", "-ap", "secret1001"],
    );
    let run = Lab::new(false, &["-A", "NONCE_EXPIRE=1"]).run(&peer, false);
    let ds = analyse(&run.agent_pcap, None);
    assert_eq!(codes(&ds), set(&["auth.stale_nonce"]), "{ds:#?}");
    assert!(
        ds[0]
            .evidence
            .iter()
            .any(|e| e.name == "client recovered" && e.value == "yes")
    );
}

#[test]
fn registration_expires_without_refresh() {
    let mut peer = Peer::sipp(
        "expires.xml",
        &["-s", "1001", "-au", "1001", "-ap", "secret1001"],
    );
    peer.expires = 2;
    let run = Lab::new(false, &[]).run(&peer, false);
    let ds = analyse(&run.agent_pcap, None);
    assert_eq!(codes(&ds), set(&["reg.expired"]), "{ds:#?}");
}

#[test]
fn pbx_behind_nat() {
    let run = Lab::new(true, &[]).run(&register("1001", "1001", "secret1001"), false);
    let ds = analyse(&run.agent_pcap, None);
    assert_eq!(
        codes(&ds),
        set(&["nat.private_contact", "nat.rewritten_by_peer"]),
        "{ds:#?}"
    );
    let contact = ds
        .iter()
        .find(|d| d.code == Code::NatPrivateContact)
        .unwrap();
    assert!(
        contact
            .evidence
            .iter()
            .any(|e| e.value.contains(lab::PBX_V4))
    );
}
