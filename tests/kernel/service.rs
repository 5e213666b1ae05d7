//! The agent as a service runs it (docs/service.md): the events console
//! chosen because a service manager started it, rotating pcapng captures
//! read back by tshark, and a full disk that costs counted frames, never
//! the analysis.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::{
    agent::{START, STOP, register_alice, start_kamailio, wait_udp_listening},
    require_root,
    support::{
        TempDir, fixture,
        http::{http_get, sample},
        netns::VethPair,
        process::{NsProcess, free_udp_port},
        wait_for,
    },
};

/// `sipscope run` on the host end of `pair`, started through `env` so a
/// test can set what a service manager sets.
fn start_agent(pair: &VethPair, dir: &TempDir, env: &[&str], args: &[&str]) -> NsProcess {
    let mut all: Vec<&str> = env.to_vec();
    all.extend([
        env!("CARGO_BIN_EXE_sipscope"),
        "run",
        "--iface",
        pair.host_if.as_str(),
        // TLS probing follows PBX processes host-wide, not the interface.
        "--tls",
        "off",
    ]);
    all.extend_from_slice(args);
    let mut proc = NsProcess::spawn(&pair.host, &dir.path, "sipscope", "env", &all);
    proc.wait_output("capturing on", START);
    proc
}

/// The events console as JSON lines, capturing into `pcap`.
fn start_json_agent(pair: &VethPair, dir: &TempDir, pcap: &Path, rotation: &[&str]) -> NsProcess {
    let mut args = vec![
        "--console",
        "events",
        "--log-format",
        "json",
        "--write-pcap",
        pcap.to_str().unwrap(),
    ];
    args.extend_from_slice(rotation);
    start_agent(pair, dir, &[], &args)
}

fn stop(proc: &mut NsProcess) -> (String, String) {
    let status = proc.interrupt(STOP);
    let (out, err) = (proc.stdout_text(), proc.stderr_text());
    assert!(status.success(), "sipscope: {status}\n{out}\n{err}");
    (out, err)
}

/// SIPp as the called PBX (100, 180, 200, then BYE from the caller) on
/// the host, port 5062, and as the phone calling it from the peer,
/// keeping the call up for `up`. No RTP is sent.
fn call(pair: &VethPair, dir: &TempDir, up: Duration) {
    let host = VethPair::HOST_V4.to_string();
    let peer = VethPair::PEER_V4.to_string();
    let uas_xml = fixture("scenarios/sipp/call-uas.xml");
    let uac_xml = fixture("scenarios/sipp/call-uac.xml");
    let codec = [
        "-key",
        "media_pt",
        "0",
        "-key",
        "media_encoding",
        "PCMU/8000",
    ];
    let mut uas_args = vec![
        "-sf",
        uas_xml.to_str().unwrap(),
        "-i",
        &host,
        "-p",
        "5062",
        "-mi",
        &host,
        "-key",
        "rtp_port",
        "16000",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
    ];
    uas_args.extend(codec);
    let mut uas = NsProcess::spawn(&pair.host, &dir.path, "sipp-uas", "sipp", &uas_args);
    wait_udp_listening(&pair.host, 5062);
    let remote = format!("{host}:5062");
    let local_port = free_udp_port().to_string();
    let pause = up.as_millis().to_string();
    let mut uac_args = vec![
        remote.as_str(),
        "-sf",
        uac_xml.to_str().unwrap(),
        "-i",
        &peer,
        "-p",
        &local_port,
        "-mi",
        &peer,
        "-key",
        "rtp_port",
        "12000",
        "-s",
        "2000",
        "-d",
        &pause,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
    ];
    uac_args.extend(codec);
    let mut uac = NsProcess::spawn(&pair.peer, &dir.path, "sipp-uac", "sipp", &uac_args);
    for sipp in [&mut uac, &mut uas] {
        let status = sipp.wait_exit(Duration::from_secs(30));
        assert!(
            status.success(),
            "{} failed ({status})\n{}\n{}",
            sipp.name,
            sipp.stdout_text(),
            sipp.stderr_text()
        );
    }
}

/// `EVENT key` for each stdout line that is an event about the traffic
/// (the agent's own start-up and exit lines left out).
fn event_keys(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split(' ');
            let (_ts, _level, event) = (words.next()?, words.next()?, words.next()?);
            let key = match event {
                "registration" | "call" | "call_closed" => "state=",
                "finding" => "code=",
                _ => return None,
            };
            let value = l.split(' ').find_map(|w| w.strip_prefix(key))?;
            Some(format!("{event} {value}"))
        })
        .collect()
}

#[test]
fn under_a_service_manager_the_agent_logs_one_line_per_finding_and_state_change() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("svclog");
    let _kamailio = start_kamailio(&pair.host, &dir, VethPair::HOST_V4.into(), 5060);
    // No --console: INVOCATION_ID and a pipe for stdout, as under systemd.
    let mut agent = start_agent(
        &pair,
        &dir,
        &["INVOCATION_ID=0123456789abcdef"],
        &["--sip-port", "5062", "--media-grace", "1"],
    );
    // Two registrations of one binding: one state change.
    register_alice(&pair, &dir, 2);
    // Up for 12 s: more than the 10 s of the flow console's calls table,
    // and than the media grace, so media.no_rtp is raised mid-call.
    call(&pair, &dir, Duration::from_secs(12));
    wait_for(START, "the call's closing line", || {
        agent.stdout_text().contains(" call_closed ").then_some(())
    });
    let (out, err) = stop(&mut agent);

    assert_eq!(
        event_keys(&out),
        [
            "registration registered",
            "call calling",
            "call ringing",
            "call answered",
            "finding media.no_rtp",
            "call ended",
            "call_closed ended",
        ],
        "{out}"
    );
    // Every line is one log line: time, level, event; nothing periodic
    // (no calls table, no RTP flow summaries, no per-message lines).
    for line in out.lines() {
        let mut w = line.split(' ');
        let ts = w.next().unwrap_or_default();
        assert!(
            ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "not a log line: {line}"
        );
        assert!(
            matches!(w.next(), Some("info" | "warn" | "error")),
            "{line}"
        );
    }
    for table in ["Calls up", "Summary", "REGISTER sip:", " CALL "] {
        assert!(!out.contains(table), "`{table}` in:\n{out}");
    }
    let registration = out.lines().find(|l| l.contains(" registration ")).unwrap();
    assert!(
        registration.contains(" info registration state=registered aor=")
            && registration.contains(&format!("client={}:", VethPair::PEER_V4))
            && registration.contains(" call_id="),
        "{registration}"
    );
    let finding = out.lines().find(|l| l.contains(" finding ")).unwrap();
    assert!(
        finding.contains(" error finding code=media.no_rtp ") && finding.contains(" call_id="),
        "{finding}"
    );
    assert!(
        out.lines().any(|l| l.contains(" info summary packets=")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.contains(" info capture ")), "{out}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Files of a directory, sorted by name (= sequence number).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcapng"))
        .collect();
    v.sort();
    v
}

/// `interface|direction|first line` per frame, as tshark reads the file.
fn tshark_frames(file: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.packet_flags_direction",
            "-e",
            "sip.Request-Line",
            "-e",
            "sip.Status-Line",
        ])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "tshark -r {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn pcap_record(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|v| v["event"] == "pcap")
        .expect("a pcap line at exit")
}

fn capture_record(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|v| v["event"] == "capture")
        .expect("a capture line at exit")
}

#[test]
fn rotating_pcapng_files_hold_every_frame_with_interface_name_and_direction() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("pcapring");
    let ring = dir.join("ring");
    std::fs::create_dir(&ring).unwrap();
    let _kamailio = start_kamailio(&pair.host, &dir, VethPair::HOST_V4.into(), 5060);
    let mut agent = start_json_agent(
        &pair,
        &dir,
        &ring,
        &["--pcap-rotate-size", "2KB", "--pcap-keep", "100"],
    );
    register_alice(&pair, &dir, 12);
    let (out, err) = stop(&mut agent);
    let lines = json_lines(&out);
    assert!(
        lines
            .iter()
            .all(|v| v["ts"].is_string() && v["level"].is_string())
    );
    let pcap = pcap_record(&lines);
    let captured = capture_record(&lines)["sip_captured"].as_u64().unwrap();
    assert_eq!(captured, 24, "12 REGISTER and their 200s:\n{out}");
    assert_eq!(pcap["written"], 24, "{out}");
    assert_eq!(pcap["not_written"], 0);
    assert_eq!(pcap["queue_full"], 0);

    let files = files_in(&ring);
    assert!(files.len() >= 3, "2 KB files: {files:?}");
    assert_eq!(pcap["files"], files.len() as u64);
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("sipscope_{:05}_", i + 1)) && name.len() == 36,
            "{name}"
        );
    }
    let frames: Vec<String> = files.iter().flat_map(|f| tshark_frames(f)).collect();
    assert_eq!(frames.len(), 24, "{frames:#?}");
    let host_if = pair.host_if.as_str();
    let inbound = format!("{host_if}|0x00000001|REGISTER sip:");
    let outbound = format!("{host_if}|0x00000002||SIP/2.0 200 OK");
    assert_eq!(
        frames.iter().filter(|f| f.starts_with(&inbound)).count(),
        12,
        "{frames:#?}"
    );
    assert_eq!(
        frames.iter().filter(|f| f.starts_with(&outbound)).count(),
        12,
        "{frames:#?}"
    );
    // The agent's own log lines are JSON too; none about the capture files.
    let logs = json_lines(&err);
    assert!(
        logs.iter()
            .all(|v| v["event"] == "log" && !v["message"].as_str().unwrap().contains("pcap")),
        "{err}"
    );
}

/// A tmpfs of `size` mounted on `path` for the test's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Self(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The agent's `/metrics` on its namespace's loopback.
const METRICS: &str = "127.0.0.1:9464";

/// Fills the file system of `dir` with one file until it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = [0u8; 4096];
    while f.write_all(&block).is_ok() {}
    filler
}

#[test]
fn a_full_disk_costs_counted_frames_is_reported_once_and_analysis_goes_on() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("pcapfull");
    let disk = Tmpfs::mount(dir.join("disk"), "256k");
    let filler = fill(&disk.0);
    let _kamailio = start_kamailio(&pair.host, &dir, VethPair::HOST_V4.into(), 5060);
    let mut agent = start_json_agent(
        &pair,
        &dir,
        &disk.0,
        &["--pcap-rotate-size", "16KB", "--metrics-listen", METRICS],
    );
    let register = |n: u32| register_alice(&pair, &dir, n);
    // Disk full: nothing is written, the registration is still seen.
    register(5);
    wait_for(START, "the agent's report of the full disk", || {
        agent
            .stderr_text()
            .contains("No space left on device")
            .then_some(())
    });
    wait_for(
        START,
        "the registration seen while the disk is full",
        || {
            agent
                .stdout_text()
                .contains("\"event\":\"registration\"")
                .then_some(())
        },
    );
    // Space again: the next file (a second of capture time later) works.
    std::fs::remove_file(&filler).unwrap();
    wait_for(START, "writing to start again", || {
        register(2);
        agent.stderr_text().contains("writing again").then_some(())
    });
    // The loss is in the metrics as it happens.
    let (code, _, metrics) = http_get(&pair.host, METRICS, "/metrics".into()).expect("/metrics");
    assert_eq!(code, 200, "{metrics}");
    for counter in ["written", "not_written", "write_errors"] {
        let series = format!("sipscope_pcap_writer_total{{counter=\"{counter}\"}}");
        let v = sample(&metrics, &series).unwrap_or_else(|| panic!("{series} in\n{metrics}"));
        assert!(v > 0.0, "{series} = {v}");
    }
    let (out, err) = stop(&mut agent);
    let lines = json_lines(&out);
    let pcap = pcap_record(&lines);
    let captured = capture_record(&lines)["sip_captured"].as_u64().unwrap();
    let (written, not_written) = (
        pcap["written"].as_u64().unwrap(),
        pcap["not_written"].as_u64().unwrap(),
    );
    assert!(not_written >= 10, "the first 5 registrations: {pcap}");
    // What arrived a second (capture clock) after the failure and later.
    assert!(written >= 1, "{pcap}");
    assert_eq!(pcap["queue_full"], 0);
    assert_eq!(
        written + not_written,
        captured,
        "every frame counted: {out}"
    );
    // The files hold exactly what was counted as written.
    let in_files: usize = files_in(&disk.0)
        .iter()
        .map(|f| tshark_frames(f).len())
        .sum();
    assert_eq!(in_files as u64, written);
    // Reported once when it broke and once when it recovered, as JSON log
    // lines like the events.
    let logs: Vec<Value> = json_lines(&err)
        .into_iter()
        .filter(|v| v["event"] == "log" && v["target"] != "sipscope::cli::metrics_endpoint")
        .collect();
    let broke: Vec<&Value> = logs
        .iter()
        .filter(|v| v["message"].as_str().unwrap_or("").contains("cannot write"))
        .collect();
    assert_eq!(broke.len(), 1, "{err}");
    assert_eq!(broke[0]["level"], "warn");
    assert!(
        broke[0]["message"]
            .as_str()
            .unwrap()
            .contains("No space left on device (os error 28); frames not written are counted"),
        "{err}"
    );
    let recovered = logs
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("writing again")
        })
        .count();
    assert_eq!(recovered, 1, "{err}");
    // Analysis went on throughout.
    assert!(
        lines
            .iter()
            .any(|v| v["event"] == "registration" && v["state"] == "registered"),
        "{out}"
    );
}
