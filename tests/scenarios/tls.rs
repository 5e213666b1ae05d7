//! SIP over TLS read at the PBX's TLS library (docs/tls.md): kamailio
//! with its tls module as the digest registrar on 5061, a Python `ssl`
//! UA registering, the real agent (`sipscope run`, `--tls auto` by
//! default) started BEFORE kamailio, and dumpcap on the same veth.
//!
//! The agent must show REGISTER/401/REGISTER/200 over TLS with the
//! connection's real addresses, raise exactly `auth.rejected` for a wrong
//! password (as the UDP scenarios do), probe the kamailio started after
//! it and release it when it exits; the wire must hold TLS on 5061 and no
//! SIP in clear.

use std::time::Duration;

use crate::agent::{Agent, Dumpcap, START};
use crate::require_root;
use crate::support::netns::VethPair;
use crate::support::pcap::{datagrams, read_frames};
use crate::support::process::NsProcess;
use crate::support::{TempDir, fixture, wait_for};

/// A self-signed server certificate and kamailio's tls.cfg, in `dir`.
fn tls_config(dir: &TempDir) -> String {
    let (key, cert, cfg) = (
        dir.join("key.pem"),
        dir.join("cert.pem"),
        dir.join("tls.cfg"),
    );
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=sipscope.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (cargo xtask setup installs it)");
    assert!(status.success(), "openssl req failed");
    std::fs::write(
        &cfg,
        format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
             require_certificate = no\nprivate_key = {}\ncertificate = {}\n",
            key.display(),
            cert.display()
        ),
    )
    .unwrap();
    cfg.to_str().unwrap().to_owned()
}

/// Runs the TLS UA in the peer namespace; its printed status lines.
fn register(pair: &VethPair, dir: &TempDir, name: &str, password: &str) -> (bool, String) {
    let script = fixture("../scenarios/tls/register.py");
    assert!(script.exists(), "{}", script.display());
    let server = VethPair::HOST_V4.to_string();
    let local = VethPair::PEER_V4.to_string();
    let mut ua = NsProcess::spawn(
        &pair.peer,
        &dir.path,
        name,
        "python3",
        &[
            script.to_str().unwrap(),
            &server,
            "5061",
            &local,
            "1001",
            password,
        ],
    );
    let status = ua.wait_exit(Duration::from_secs(20));
    (
        status.success(),
        format!("{}{}", ua.stdout_text(), ua.stderr_text()),
    )
}

/// The agent's console lines of SIP messages (`... TLS  <start line>`).
fn tls_messages(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains("  TLS  "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn tls_register_is_read_in_clear_at_kamailio_and_never_on_the_wire() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("tls");
    let tls_cfg = tls_config(&dir);
    // The agent first: kamailio is a process started after it.
    // `auto` is the default; said here because the helper turns it off.
    let mut agent = Agent::start(&pair, &dir, &["--tls", "auto"]);
    let mut dumpcap = Dumpcap::start(&pair, &dir);
    let listen = format!("tls:{}:5061", VethPair::HOST_V4);
    let define = format!("TLS_CONFIG=\"{tls_cfg}\"");
    let mut kamailio = crate::agent::spawn_kamailio(
        &pair.host,
        &dir,
        "scenarios/registrar.cfg",
        &[&listen],
        &["-A", "WITH_TLS", "-A", &define],
    );
    let probing = format!("tls: probing kamailio[{}] ", kamailio.pid());
    wait_for(START, "the agent to probe kamailio", || {
        agent.proc.stdout_text().contains(&probing).then_some(())
    });
    wait_for(START, "kamailio to listen on TLS 5061", || {
        let out = pair
            .host
            .exec_stdout("ss", &["-Hltn", "sport", "=", ":5061"]);
        (!out.trim().is_empty()).then_some(())
    });
    // Its workers (forked after the main process may have been probed)
    // serve the connection: every one of them probed before the UA runs.
    wait_for(START, "the agent to probe every kamailio process", || {
        let out = agent.proc.stdout_text();
        let group = process_group(kamailio.pid());
        (!group.is_empty()
            && group
                .iter()
                .all(|pid| out.contains(&format!("tls: probing kamailio[{pid}] "))))
        .then_some(())
    });

    let (ok, ua) = register(&pair, &dir, "ua-good", "secret1001");
    assert!(ok, "registration with the right password failed:\n{ua}");
    let (ok, ua) = register(&pair, &dir, "ua-wrong", "not-the-password");
    assert!(
        !ok && ua.matches("401").count() == 2,
        "wrong password:\n{ua}"
    );

    // Four messages per registration, then the finding.
    let out = wait_for(START, "the agent to show both registrations", || {
        let out = agent.proc.stdout_text();
        (tls_messages(&out).len() >= 8 && out.contains("auth.rejected")).then_some(out)
    });
    let messages = tls_messages(&out);
    let expected = [
        ("in ", "REGISTER sip:sipscope.test SIP/2.0"),
        ("out", "SIP/2.0 401 Unauthorized"),
        ("in ", "REGISTER sip:sipscope.test SIP/2.0"),
        ("out", "SIP/2.0 200 OK"),
        ("in ", "REGISTER sip:sipscope.test SIP/2.0"),
        ("out", "SIP/2.0 401 Unauthorized"),
        ("in ", "REGISTER sip:sipscope.test SIP/2.0"),
        ("out", "SIP/2.0 401 Unauthorized"),
    ];
    assert_eq!(messages.len(), expected.len(), "{out}");
    let registrar = format!("{}:5061", VethPair::HOST_V4);
    let client = format!("{}:", VethPair::PEER_V4);
    for (line, (dir, start)) in messages.iter().zip(expected) {
        assert!(line.contains(start), "expected {start}: {line}");
        // `HH:MM:SS.us in  SRC → DST  TLS  ...`: real addresses and ports.
        let rest = line.split_once(' ').unwrap().1;
        assert!(rest.starts_with(dir), "direction {dir}: {line}");
        let (src, dst) = match dir {
            "in " => (&client, &registrar),
            _ => (&registrar, &client),
        };
        let addrs = rest[3..].trim_start();
        let (from, to) = addrs.split_once(" → ").expect("src → dst");
        assert!(from.starts_with(src.as_str()), "source {src}: {line}");
        assert!(to.starts_with(dst.as_str()), "destination {dst}: {line}");
    }
    assert!(out.contains("registered, expires in 60 s"), "{out}");

    // Released when it exits.
    let pids = kamailio.pid();
    kamailio.signal(libc::SIGTERM);
    kamailio.wait_exit(Duration::from_secs(10));
    let released = format!("tls: released kamailio[{pids}] (exited)");
    wait_for(START, "the agent to release kamailio", || {
        agent.proc.stdout_text().contains(&released).then_some(())
    });

    let (out, _) = agent.stop();
    let codes = diagnosis_codes(&out);
    assert_eq!(
        codes,
        ["auth.rejected"],
        "the UDP scenarios' findings:\n{out}"
    );
    let tls = out
        .lines()
        .find(|l| l.starts_with("tls counters: "))
        .unwrap_or_else(|| panic!("no tls counters line:\n{out}"));
    for zero in [
        "unmapped=0 ",
        "ringbuf_full=0 ",
        "truncated=0 ",
        "read_failed=0 ",
    ] {
        assert!(tls.contains(zero), "{zero}in {tls}");
    }

    // The wire: TLS records on 5061, and not one byte of SIP in clear.
    wait_for(START, "dumpcap to write the TLS segments", || {
        let frames = crate::support::pcap::read_frames_so_far(&dumpcap.pcap);
        (datagrams(&frames, &[5061]).len() >= 8).then_some(())
    });
    dumpcap.stop();
    let frames = read_frames(&dumpcap.pcap);
    let segments = datagrams(&frames, &[5061]);
    // The client's first bytes are a TLS handshake record (RFC 8446 5.1).
    let first = segments
        .iter()
        .find(|s| s.dst.port() == 5061)
        .expect("client data");
    assert_eq!(
        first.payload.get(..2),
        Some(&[0x16, 0x03][..]),
        "a TLS ClientHello"
    );
    for needle in [&b"REGISTER sip:"[..], b"SIP/2.0 ", b"sipscope.test"] {
        assert!(
            !frames.iter().any(|f| contains(&f.data, needle)),
            "the wire holds {:?} in clear",
            String::from_utf8_lossy(needle)
        );
    }
}

/// The live processes of process group `pgid` (kamailio and its workers).
fn process_group(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // /proc/PID/stat: pid (comm) state ppid pgrp ...
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| {
                    let rest = st.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Diagnosis codes in the agent's console output (`[severity] code at`),
/// each once.
fn diagnosis_codes(out: &str) -> Vec<String> {
    let mut codes: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?.split_once("] ")?.1;
            Some(rest.split_once(" at ")?.0.to_owned())
        })
        .collect();
    codes.sort();
    codes.dedup();
    codes
}
