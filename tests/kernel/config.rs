//! A configuration `run` refuses stops it before anything is attached or
//! created: non-zero exit, the reason on stderr, no program on the
//! interface and no capture file.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use crate::{
    lifecycle::hooks,
    require_root,
    support::{TempDir, netns::VethPair, process::NsProcess},
};

#[test]
fn a_refused_configuration_exits_before_attaching() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("config");
    let pcap = dir.join("never.pcap");
    let creds = dir.join("creds.toml");
    std::fs::write(
        &creds,
        "[[credential]]\nusername = \"1001\"\npassword = \"x\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let base = format!(
        "iface = [\"{}\"]\nwrite-pcap = \"{}\"\n",
        pair.host_if,
        pcap.display()
    );
    let config = dir.join("sipscope.toml");
    let cases = [
        (
            "ring-size = 1\nmax-los = 2\n",
            "sipscope.toml:4:1: unknown key `max-los`, did you mean `max-loss`?",
        ),
        (
            "ring-size = \"big\"\n",
            "sipscope.toml:3:13: `ring-size`: invalid value 'big' for '--ring-size <BYTES>'",
        ),
        (
            "json = 1\n",
            "sipscope.toml:3:8: `json` must be true or false, found integer",
        ),
        (
            &format!("credentials = \"{}\"\n", creds.display()),
            "(mode 0644); it holds passwords, so run `chmod 600",
        ),
    ];
    for (extra, message) in cases {
        std::fs::write(&config, format!("{base}{extra}")).unwrap();
        let mut agent = NsProcess::spawn(
            &pair.host,
            &dir.path,
            "sipscope",
            env!("CARGO_BIN_EXE_sipscope"),
            &["run", "--config", config.to_str().unwrap()],
        );
        let status = agent.wait_exit(Duration::from_secs(20));
        let stderr = agent.stderr_text();
        assert!(!status.success(), "{extra}: exited {status}");
        assert!(stderr.contains(message), "{extra}: {stderr}");
        assert_eq!(hooks(&pair.host, &pair.host_if), [0, 0, 0], "{extra}");
        assert!(!pcap.exists(), "{extra}: the capture file was created");
    }
    // An explicit file that does not exist is an error too.
    let missing = dir.join("missing.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .args([
            "run",
            "-i",
            &pair.host_if,
            "--config",
            missing.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
