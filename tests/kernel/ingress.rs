//! `--ingress auto|xdp|tc`: which hook captures received frames, and the
//! start-up line that says why. On a veth `auto` takes TC ingress (a
//! veth's XDP costs more); `xdp` forces native XDP where the kernel and
//! driver can run it and refuses clearly where they cannot.

use sipscope::capture::live::{CompatMode, KernelFeatures};

use crate::{
    agent::{Agent, START},
    lifecycle::hooks,
    require_root,
    support::{TempDir, netns::VethPair, process::NsProcess},
};

/// Whether the agent can run its XDP program on this kernel (not with
/// `SIPSCOPE_KERNEL_COMPAT=oldest`).
fn xdp_variant() -> bool {
    KernelFeatures::probe(CompatMode::from_env().unwrap())
        .unwrap()
        .xdp()
}

#[test]
fn auto_takes_tc_ingress_on_a_veth_and_says_why() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("ingress-auto");
    let mut agent = Agent::start(&pair, &dir, &[]);
    let out = agent.proc.stdout_text();
    assert_eq!(hooks(&pair.host, &pair.host_if), [0, 1, 1], "{out}");
    if xdp_variant() {
        let line = format!(
            "ingress on {}: tc (xdp on a veth costs more than tc; --ingress xdp to force)",
            pair.host_if
        );
        assert!(out.contains(&line), "{out}");
    }
    agent.stop();
}

#[test]
fn forced_tc_takes_tc_ingress() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("ingress-tc");
    let mut agent = Agent::start(&pair, &dir, &["--ingress", "tc"]);
    let out = agent.proc.stdout_text();
    assert_eq!(hooks(&pair.host, &pair.host_if), [0, 1, 1], "{out}");
    if xdp_variant() {
        let line = format!("ingress on {}: tc (--ingress tc)", pair.host_if);
        assert!(out.contains(&line), "{out}");
    }
    agent.stop();
}

#[test]
fn forced_xdp_takes_native_xdp_on_a_veth_or_says_why_not() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("ingress-xdp");
    if !xdp_variant() {
        let err = refused(&pair, &dir, &pair.host_if);
        assert!(
            err.contains(&format!(
                "--ingress xdp: native XDP cannot run on {}",
                pair.host_if
            )),
            "{err}"
        );
        return;
    }
    let mut agent = Agent::start(&pair, &dir, &["--ingress", "xdp"]);
    let out = agent.proc.stdout_text();
    assert_eq!(hooks(&pair.host, &pair.host_if), [1, 0, 1], "{out}");
    let line = format!("ingress on {}: xdp native (--ingress xdp)", pair.host_if);
    assert!(out.contains(&line), "{out}");
    agent.stop();
}

#[test]
fn forced_xdp_on_a_device_without_native_xdp_is_refused() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("ingress-xdp-bridge");
    let bridge = format!("br{}", crate::support::unique_suffix());
    pair.host.ip(&["link", "add", &bridge, "type", "bridge"]);
    pair.host.ip(&["link", "set", &bridge, "up"]);
    let err = refused(&pair, &dir, &bridge);
    assert!(
        err.contains(&format!("--ingress xdp: native XDP cannot run on {bridge}")),
        "{err}"
    );
    if xdp_variant() {
        assert!(
            err.contains(&format!("the driver of {bridge} has no native XDP")),
            "{err}"
        );
    }
    assert_eq!(
        hooks(&pair.host, &bridge),
        [0, 0, 0],
        "nothing left attached"
    );
}

/// Runs `sipscope run --ingress xdp` on `iface`, expecting a refusal;
/// returns its stderr.
fn refused(pair: &VethPair, dir: &TempDir, iface: &str) -> String {
    let mut agent = NsProcess::spawn(
        &pair.host,
        &dir.path,
        "sipscope",
        env!("CARGO_BIN_EXE_sipscope"),
        &["run", "--iface", iface, "--ingress", "xdp"],
    );
    let status = agent.wait_exit(START);
    assert!(!status.success(), "{}", agent.stdout_text());
    agent.stderr_text()
}
