//! Our verification against an independent client: sipsak registers with
//! a known password to a tiny UDP responder in this test, which challenges
//! it; the Authorization sipsak computes must verify with that password and
//! fail with any other. Loopback only, no privileges. Skips (and says so)
//! when sipsak is not installed; CI installs it via `cargo xtask setup`.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::analysis::credentials::{CredentialStore, Secret, SecretString};
use crate::analysis::digest::{
    AuthenticatedRequest, Challenge, Credentials, Deviation, Verdict, check_credentials,
    diagnose_answer, verify,
};
use crate::diagnosis::Code;
use crate::time::Timestamp;

/// Kills the client if the test fails half-way.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sipsak_installed() -> bool {
    Command::new("sipsak")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
}

fn reply(sock: &UdpSocket, to: SocketAddr, req: &str, status: &str, extra: &str) {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for l in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
            out += l;
            out += "\r\n";
        }
    }
    out += extra;
    out += "Content-Length: 0\r\n\r\n";
    sock.send_to(out.as_bytes(), to).unwrap();
}

/// Runs one sipsak registration against `challenge`; returns the
/// Request-URI and Authorization value of the answering REGISTER.
fn register_with_sipsak(challenge: &str, password: &str) -> (String, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let peer = Peer(
        Command::new("sipsak")
            .args([
                "-U",
                "-C",
                "sip:1001@127.0.0.1",
                "-u",
                "1001",
                "-a",
                password,
            ])
            .arg("-s")
            .arg(format!("sip:1001@127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    serve_challenge(&sock, peer, challenge)
}

/// Challenges every REGISTER on `sock` until one carries Authorization;
/// returns its Request-URI and Authorization value. `_peer` is killed on
/// return or failure.
fn serve_challenge(sock: &UdpSocket, _peer: Peer, challenge: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the client never answered the challenge");
        sock.set_read_timeout(Some(left)).unwrap();
        let (n, from) = sock
            .recv_from(&mut buf)
            .expect("the client sent nothing before the deadline");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !msg.starts_with("REGISTER ") {
            continue;
        }
        match header(&msg, "Authorization") {
            None => reply(
                sock,
                from,
                &msg,
                "401 Unauthorized",
                &format!("WWW-Authenticate: {challenge}\r\n"),
            ),
            Some(auth) => {
                reply(sock, from, &msg, "200 OK", "");
                let ruri = msg.split(' ').nth(1).unwrap().to_owned();
                return (ruri, auth.to_owned());
            }
        }
    }
}

fn unique_nonce() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:x}{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn sipsak_qop_auth_response_verifies_with_its_password_only() {
    if !sipsak_installed() {
        eprintln!("skipped: sipsak not installed (cargo xtask setup installs it)");
        return;
    }
    let password = "s3cr3t!&\"x";
    let challenge = format!(
        "Digest realm=\"sipscope.test\", nonce=\"{}\", qop=\"auth\", algorithm=MD5",
        unique_nonce()
    );
    let (ruri, auth) = register_with_sipsak(&challenge, password);
    let creds = Credentials::parse(&auth).unwrap();
    assert_eq!(creds.username, "1001");
    assert!(
        creds.nonce_count().is_some() && creds.cnonce.is_some(),
        "{auth}"
    );
    let right = Secret::Password(SecretString::new(password));
    let wrong = Secret::Password(SecretString::new("s3cr3t!&\"X"));
    assert_eq!(verify(&creds, "REGISTER", None, &right), Verdict::Match);
    assert_eq!(verify(&creds, "REGISTER", None, &wrong), Verdict::Mismatch);
    let req = AuthenticatedRequest {
        method: "REGISTER",
        request_uri: &ruri,
        message: None,
        challenge_message: None,
    };
    let ch = Challenge::parse(&challenge).unwrap();
    assert!(check_credentials(Timestamp::default(), &ch, &creds, &req).is_empty());
}

#[test]
fn sipsak_with_the_wrong_password_is_a_password_mismatch() {
    if !sipsak_installed() {
        eprintln!("skipped: sipsak not installed (cargo xtask setup installs it)");
        return;
    }
    // RFC 2069 form (no qop), as many SIP registrars still challenge.
    let challenge = format!(
        "Digest realm=\"sipscope.test\", nonce=\"{}\"",
        unique_nonce()
    );
    let (ruri, auth) = register_with_sipsak(&challenge, "typo-password");
    let creds = Credentials::parse(&auth).unwrap();
    assert_eq!(creds.qop, None);
    let store = CredentialStore::from_toml_str(
        "[[credential]]\nrealm = \"sipscope.test\"\nusername = \"1001\"\npassword = \"real-password\"\n",
    )
    .unwrap();
    let req = AuthenticatedRequest {
        method: "REGISTER",
        request_uri: &ruri,
        message: None,
        challenge_message: None,
    };
    let found = diagnose_answer(
        Timestamp::default(),
        &Challenge::parse_all(&challenge).unwrap(),
        &creds,
        &req,
        None,
        Some(&store),
    );
    let codes: Vec<_> = found.iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::AuthPasswordMismatch]);
    let typo = Secret::Password(SecretString::new("typo-password"));
    assert_eq!(verify(&creds, "REGISTER", None, &typo), Verdict::Match);
}

/// A minimal SIPp UAC: REGISTER, expect 401, REGISTER with
/// `[authentication]`, expect 200.
const SIPP_REGISTER: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="sipscope digest">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1001@[remote_ip]>;tag=[call_number]
To: <sip:1001@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:1001@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:1001@[remote_ip]>;tag=[call_number]
To: <sip:1001@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:1001@[local_ip]:[local_port]>
[authentication username=1001 password=pw-sipp]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#;

fn register_with_sipp(challenge: &str) -> Option<(String, String)> {
    if Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: sipp not installed (cargo xtask setup installs it)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("register.xml");
    std::fs::write(&scenario, SIPP_REGISTER).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    // SIPp needs its own port number up front; take a free one from the
    // kernel (a rare reuse race only makes SIPp fail to bind, which the
    // deadline below reports).
    let local = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peer = Command::new("sipp")
        .arg("-sf")
        .arg(&scenario)
        .args(["-m", "1", "-nostdin", "-timeout", "10s", "-i", "127.0.0.1"])
        .args(["-p", &local.to_string()])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(serve_challenge(&sock, Peer(peer), challenge))
}

#[test]
fn sipp_md5_qop_auth_verifies_and_its_md5_sess_is_recognised_as_a_deviation() {
    let challenge = format!(
        "Digest realm=\"sipscope.test\", nonce=\"{}\", qop=\"auth\", algorithm=MD5",
        unique_nonce()
    );
    let Some((_, auth)) = register_with_sipp(&challenge) else {
        return;
    };
    let right = Secret::Password(SecretString::new("pw-sipp"));
    let creds = Credentials::parse(&auth).unwrap();
    assert_eq!(
        verify(&creds, "REGISTER", Some(b""), &right),
        Verdict::Match,
        "{auth}"
    );

    let challenge = format!(
        "Digest realm=\"sipscope.test\", nonce=\"{}\", qop=\"auth-int\", algorithm=MD5-sess",
        unique_nonce()
    );
    let (_, auth) = register_with_sipp(&challenge).unwrap();
    let creds = Credentials::parse(&auth).unwrap();
    assert_eq!(
        creds.algorithm(),
        crate::analysis::digest::Algorithm::Md5Sess
    );
    // Whatever SIPp version: the right password is never a mismatch.
    let v = verify(&creds, "REGISTER", Some(b""), &right);
    assert!(
        matches!(
            v,
            Verdict::Match | Verdict::MatchWithDeviation(Deviation::SessionIgnored)
        ),
        "{v:?}"
    );
    let wrong = Secret::Password(SecretString::new("pw-sipP"));
    assert_eq!(
        verify(&creds, "REGISTER", Some(b""), &wrong),
        Verdict::Mismatch
    );
}
