//! `sipscope run --config FILE` and SIGHUP on the real agent: a PBX
//! (SIPp) registers with kamailio three times; between the runs the file
//! is rewritten and the agent told to reload. Known credentials change
//! what the agent says about the same REGISTER, so the output shows
//! which configuration judged each run; HEP export switched on by the
//! reload reaches a collector socket.

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::agent::START;
use crate::lab::Lab;
use crate::metrics::METRICS_ADDR;
use crate::support::http::{http_get, sample};
use crate::support::netns::in_netns;
use crate::support::process::NsProcess;
use crate::{credentials, register};

/// Raised only when the agent knows the account's password.
const CONFIRMED: &str = "auth.password_correct";

/// The agent's file: capture on `iface` (TLS probing off: it follows
/// PBX processes host-wide, other tests' too), then `settings` from
/// line 3 on.
fn write_config(path: &Path, iface: &str, settings: &[String]) {
    let mut text = format!("iface = [\"{iface}\"]\ntls = \"off\"\n");
    for s in settings {
        text.push_str(s);
        text.push('\n');
    }
    // Rewritten in place, as an operator's editor or config management does.
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// What the agent printed after the last occurrence of `marker`.
fn after(agent: &NsProcess, marker: &str) -> String {
    let out = agent.stdout_text();
    let at = out
        .rfind(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in\n{out}"));
    out[at..].to_owned()
}

/// Waits until `needle` appears after the last `marker`.
fn wait_after(agent: &mut NsProcess, marker: &str, needle: &str) {
    crate::support::wait_for(START, &format!("{needle:?} after {marker:?}"), || {
        if let Some(status) = agent.try_exit() {
            panic!(
                "the agent exited ({status})\nstdout:\n{}\nstderr:\n{}",
                agent.stdout_text(),
                agent.stderr_text()
            );
        }
        after(agent, marker).contains(needle).then_some(())
    });
}

/// `sipscope run --config FILE` in the lab's host namespace, capturing.
fn start_agent(lab: &Lab, config: &Path) -> NsProcess {
    let mut agent = NsProcess::spawn(
        &lab.pair().host,
        &lab.dir().path,
        "sipscope",
        env!("CARGO_BIN_EXE_sipscope"),
        &["run", "--config", config.to_str().unwrap()],
    );
    agent.wait_output("capturing on", START);
    agent
}

#[test]
fn sighup_applies_new_credentials_and_keeps_running_on_a_broken_file() {
    let lab = Lab::new(false, &[]);
    let _kamailio = lab.kamailio();
    let dir = lab.dir();
    let iface = &lab.pair().host_if;
    let config = dir.join("sipscope.toml");
    // Start without credentials: nothing to say about the password.
    write_config(&config, iface, &["max-loss = 2.0".into()]);
    let mut agent = start_agent(&lab, &config);
    let registered = "REG sip:1001@";
    lab.sipp(&register("1001", "1001", "secret1001"));
    wait_after(&mut agent, "capturing on", registered);
    assert!(
        !after(&agent, "capturing on").contains(CONFIRMED),
        "no credentials yet:\n{}",
        agent.stdout_text()
    );

    // Credentials, a new loss threshold and HEP export apply live; the
    // ring size needs a restart, and the agent says so.
    let (creds, _) = credentials(dir, "secret1001");
    let creds_line = format!("credentials = \"{}\"", creds.display());
    let homer = in_netns(&lab.pair().host, || {
        UdpSocket::bind("127.0.0.1:0").expect("HEP collector socket")
    });
    homer.set_nonblocking(true).unwrap();
    let hep_url = format!("udp://{}", homer.local_addr().unwrap());
    write_config(
        &config,
        iface,
        &[
            "max-loss = 3.5".into(),
            "ring-size = 8388608".into(),
            creds_line.clone(),
            format!("hep-endpoint = \"{hep_url}\""),
        ],
    );
    agent.signal(libc::SIGHUP);
    let reloaded = "config reloaded from";
    agent.wait_output(reloaded, START);
    let text = agent.stdout_text();
    let config_path = config.display();
    for line in [
        format!(
            "config reload: credentials (not set) -> \"{}\" (file {config_path}:5): applied",
            creds.display()
        ),
        format!("config reload: max-loss 2.0 -> 3.5 (file {config_path}:3): applied"),
        format!(
            "config reload: ring-size 4194304 -> 8388608 (file {config_path}:4): needs a restart, still running with ring-size = 4194304"
        ),
        format!(
            "config reload: hep-endpoint (not set) -> \"{hep_url}\" (file {config_path}:6): applied"
        ),
        format!(
            "config reloaded from {config_path}: 3 applied, 1 need a restart; credentials re-read from {}",
            creds.display()
        ),
    ] {
        assert!(text.contains(&line), "{line:?} missing in\n{text}");
    }
    lab.sipp(&register("1001", "1001", "secret1001"));
    wait_after(&mut agent, reloaded, CONFIRMED);
    // The REGISTERs after the reload reach the collector as HEP v3.
    let mut packet = [0u8; 65536];
    crate::support::wait_for(START, "a HEP packet at the collector", || {
        match homer.recv(&mut packet) {
            Ok(n) => packet[..n].starts_with(b"HEP3").then_some(()),
            Err(_) => None,
        }
    });

    // A typo: the reload is refused with file and line, the agent goes on
    // with the configuration it has, credentials as they were read: the
    // file now holds a wrong password, which a reload would have taken.
    credentials(dir, "not-the-password");
    write_config(&config, iface, &["max-los = 5".into(), creds_line]);
    agent.signal(libc::SIGHUP);
    let kept = "config reload failed, kept the old configuration: ";
    agent.wait_output(kept, START);
    assert!(
        after(&agent, kept).starts_with(&format!(
            "{kept}{config_path}:3:1: unknown key `max-los`, did you mean `max-loss`?"
        )),
        "{}",
        agent.stdout_text()
    );
    lab.sipp(&register("1001", "1001", "secret1001"));
    wait_after(&mut agent, kept, CONFIRMED);
    assert!(
        !after(&agent, kept).contains("auth.password_mismatch"),
        "{}",
        agent.stdout_text()
    );
    let status = agent.interrupt(START);
    assert!(status.success(), "{}", agent.stderr_text());
}

/// An OTLP receiver listening in the agent's namespace (its loopback).
fn receiver_in(ns: &crate::support::netns::Netns) -> crate::otlp_receiver::Receiver {
    let listener = in_netns(ns, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        l.set_nonblocking(true).unwrap();
        l
    });
    crate::otlp_receiver::Receiver::grpc_on(tokio::net::TcpListener::from_std(listener).unwrap())
}

/// The span export follows the file: SIGHUP with a new `otlp-endpoint`
/// sends the spans of the next registration there, and the export it
/// replaces flushes, says what it sent, and gets nothing more.
#[test]
fn sighup_moves_span_export_to_the_new_otlp_endpoint() {
    let lab = Lab::new(false, &[]);
    let _kamailio = lab.kamailio();
    let dir = lab.dir();
    let iface = &lab.pair().host_if;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = runtime.enter();
    let (first, second) = (receiver_in(&lab.pair().host), receiver_in(&lab.pair().host));
    let config = dir.join("sipscope.toml");
    let endpoint =
        |r: &crate::otlp_receiver::Receiver| format!("otlp-endpoint = \"{}\"", r.endpoint());
    // /metrics' export counters cover every export of the run: they only
    // grow across the reload.
    let listen = format!("metrics-listen = \"{METRICS_ADDR}\"");
    let exported = || {
        let (_, _, body) = http_get(&lab.pair().host, METRICS_ADDR, "/metrics".into())?;
        sample(&body, "sipscope_export_spans_total{result=\"exported\"}")
    };
    write_config(&config, iface, &[endpoint(&first), listen.clone()]);
    let mut agent = start_agent(&lab, &config);
    lab.sipp(&register("1001", "1001", "secret1001"));
    crate::support::wait_for(START, "spans at the first receiver", || {
        (!first.store.spans().is_empty()).then_some(())
    });

    write_config(&config, iface, &[endpoint(&second), listen]);
    agent.signal(libc::SIGHUP);
    let ended = "config reload: previous span export to OTLP/grpc ";
    agent.wait_output(ended, START);
    let text = agent.stdout_text();
    let change = format!(
        "config reload: otlp-endpoint \"{}\" -> \"{}\" (file {}:3): applied",
        first.endpoint(),
        second.endpoint(),
        config.display()
    );
    assert!(text.contains(&change), "{change:?} missing in\n{text}");
    let sent_before = first.store.spans().len();
    assert!(
        after(&agent, ended).contains(&format!("exported {sent_before}, dropped 0")),
        "the old export says what it sent:\n{text}"
    );

    lab.sipp(&register("1001", "1001", "secret1001"));
    crate::support::wait_for(START, "spans at the second receiver", || {
        (!second.store.spans().is_empty()).then_some(())
    });
    crate::support::wait_for(START, "/metrics to count both exports", || {
        let both = (sent_before + second.store.spans().len()) as f64;
        (exported()? == both).then_some(())
    });
    let status = agent.interrupt(START);
    assert!(status.success(), "{}", agent.stderr_text());
    assert_eq!(
        first.store.spans().len(),
        sent_before,
        "nothing reaches the replaced endpoint after the reload"
    );
    assert!(
        agent.stdout_text().contains(&second.endpoint()),
        "the exit summary names the export running at the end:\n{}",
        agent.stdout_text()
    );
}

/// SIGHUP with a new `sip-port` list changes what the kernel copies at
/// once: OPTIONS to port 5090 are captured only while the file lists it,
/// and a message to 5060 sent after each probe shows the agent had the
/// chance to capture the probe.
#[test]
fn sighup_changes_the_sip_ports_the_kernel_captures() {
    use crate::support::netns::VethPair;
    let lab = Lab::new(false, &[]);
    let dir = lab.dir();
    let iface = &lab.pair().host_if;
    let config = dir.join("sipscope.toml");
    let pbx = in_netns(&lab.pair().peer, || {
        UdpSocket::bind((VethPair::PEER_V4, 0)).expect("PBX socket")
    });
    let options = |user: &str, port: u16| {
        let text = format!(
            "OPTIONS sip:{user}@{host}:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {peer}:5060;branch=z9hG4bK-{user}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:pbx@{peer}>;tag=t-{user}\r\n\
             To: <sip:{user}@{host}>\r\nCall-ID: {user}@sipscope.test\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            host = VethPair::HOST_V4,
            peer = VethPair::PEER_V4,
        );
        pbx.send_to(text.as_bytes(), (VethPair::HOST_V4, port))
            .expect("send OPTIONS");
    };
    // `user` to port 5090, then a marker to 5060; the marker seen, the
    // probe was captured or not.
    let probe = |agent: &mut NsProcess, user: &str| -> bool {
        options(user, 5090);
        let marker = format!("{user}-marker");
        options(&marker, 5060);
        wait_after(agent, "capturing on", &format!("sip:{marker}@"));
        agent.stdout_text().contains(&format!("sip:{user}@"))
    };
    write_config(&config, iface, &[]);
    let mut agent = start_agent(&lab, &config);
    assert!(!probe(&mut agent, "before"), "5090 is not a SIP port yet");

    write_config(&config, iface, &["sip-port = [5090]".into()]);
    agent.signal(libc::SIGHUP);
    let added = "config reload: sip-port [] -> [5090]";
    agent.wait_output(added, START);
    let applied = format!("{added} (file {}:3): applied", config.display());
    assert!(
        agent.stdout_text().contains(&applied),
        "{applied:?} missing in\n{}",
        agent.stdout_text()
    );
    assert!(probe(&mut agent, "added"), "{}", agent.stdout_text());

    write_config(&config, iface, &[]);
    agent.signal(libc::SIGHUP);
    agent.wait_output("config reload: sip-port [5090] -> []", START);
    assert!(!probe(&mut agent, "removed"), "{}", agent.stdout_text());
    let status = agent.interrupt(START);
    assert!(status.success(), "{}", agent.stderr_text());
    assert!(
        !agent.stdout_text().contains("kept its old ports"),
        "{}",
        agent.stdout_text()
    );
}
