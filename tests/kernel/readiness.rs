//! Readiness for systemd's Type=notify without systemd (PID 1 here is not
//! systemd): the test is the service manager. It binds the datagram
//! socket sd_notify(3) writes to, passes it as NOTIFY_SOCKET, and checks
//! READY=1 arrives only once every program is attached, STOPPING=1 on
//! SIGTERM, and no READY=1 from a start that fails.

use std::{os::unix::net::UnixDatagram, time::Duration};

use crate::{
    agent::{Agent, START, STOP},
    lifecycle::hooks,
    require_root,
    support::{TempDir, netns::VethPair, process::NsProcess, wait_for},
};

/// The agent with NOTIFY_SOCKET set, as systemd starts it.
fn start_notifying(pair: &VethPair, dir: &TempDir, socket: &str, iface: &str) -> NsProcess {
    let notify = format!("NOTIFY_SOCKET={socket}");
    NsProcess::spawn(
        &pair.host,
        &dir.path,
        "sipscope",
        "env",
        &[
            &notify,
            env!("CARGO_BIN_EXE_sipscope"),
            "run",
            "--iface",
            iface,
        ],
    )
}

/// The manager's end: one datagram is one notification.
fn manager_socket(dir: &TempDir) -> (UnixDatagram, String) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    (socket, path.to_str().unwrap().to_owned())
}

fn next_notification(socket: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 4096];
    socket
        .recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ready_is_sent_once_every_program_is_attached_and_stopping_on_sigterm() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("readiness");
    let (socket, path) = manager_socket(&dir);
    let mut agent = start_notifying(&pair, &dir, &path, &pair.host_if);
    let ready = wait_for(START, "READY=1", || {
        let n = next_notification(&socket)?;
        assert!(
            n.contains("READY=1"),
            "a notification before READY=1: {n:?}"
        );
        // At this moment: ingress and egress hooked, capabilities dropped.
        let h = hooks(&pair.host, &pair.host_if);
        assert!(h[0] + h[1] == 1 && h[2] == 1, "READY=1 with hooks {h:?}");
        Some(n)
    });
    assert!(
        ready.contains(&format!("STATUS=capturing on {}", pair.host_if)),
        "{ready:?}"
    );
    let out = agent.stdout_text();
    assert!(out.contains("capabilities: kept"), "{out}");
    assert!(agent.try_exit().is_none(), "exited after READY=1");

    agent.signal(libc::SIGTERM);
    let stopping = wait_for(STOP, "STOPPING=1", || next_notification(&socket));
    assert!(stopping.contains("STOPPING=1"), "{stopping:?}");
    let status = agent.wait_exit(STOP);
    assert!(status.success(), "{status}\n{}", agent.stderr_text());
    assert_eq!(hooks(&pair.host, &pair.host_if), [0, 0, 0]);
}

/// Failing after the programs are loaded (another agent holds the
/// interface) sends no READY=1: systemd reports the start as failed.
#[test]
fn a_start_that_fails_never_says_ready() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("readiness");
    let mut first = Agent::start(&pair, &dir, &[]);
    let (socket, path) = manager_socket(&dir);
    let second_dir = TempDir::new("readiness");
    let mut second = start_notifying(&pair, &second_dir, &path, &pair.host_if);
    let status = second.wait_exit(START);
    let err = second.stderr_text();
    assert!(!status.success(), "{err}");
    assert!(err.contains("another sipscope"), "{err}");
    // The process is gone: anything it sent is queued on the socket.
    assert_eq!(next_notification(&socket), None);
    first.stop();
}
