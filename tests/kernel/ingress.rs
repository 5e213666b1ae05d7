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
pub(crate) fn xdp_variant() -> bool {
    KernelFeatures::probe(CompatMode::from_env().unwrap())
        .unwrap()
        .xdp()
}

/// The agent on a veth with `args`: its hooks `[xdp, tc ingress, tc
/// egress]` are `hooks`, and (where the kernel has the XDP variant, so
/// there is a choice to explain) it says `ingress on IFACE: {line}`.
fn ingress_on_a_veth(args: &[&str], expected: [usize; 3], line: &str) {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("ingress");
    let mut agent = Agent::start(&pair, &dir, args);
    let out = agent.proc.stdout_text();
    assert_eq!(hooks(&pair.host, &pair.host_if), expected, "{out}");
    if xdp_variant() {
        let line = format!("ingress on {}: {line}", pair.host_if);
        assert!(out.contains(&line), "{out}");
    }
    agent.stop();
}

#[test]
fn auto_takes_tc_ingress_on_a_veth_and_says_why() {
    ingress_on_a_veth(
        &[],
        [0, 1, 1],
        "tc (xdp on a veth costs more than tc; --ingress xdp to force)",
    );
}

#[test]
fn forced_tc_takes_tc_ingress() {
    ingress_on_a_veth(&["--ingress", "tc"], [0, 1, 1], "tc (--ingress tc)");
}

#[test]
fn forced_xdp_takes_native_xdp_on_a_veth_or_says_why_not() {
    require_root();
    if xdp_variant() {
        ingress_on_a_veth(
            &["--ingress", "xdp"],
            [1, 0, 1],
            "xdp native (--ingress xdp)",
        );
        return;
    }
    let pair = VethPair::new();
    let dir = TempDir::new("ingress-xdp");
    let err = refused(&pair, &dir, &pair.host_if);
    let said = format!("--ingress xdp: native XDP cannot run on {}", pair.host_if);
    assert!(err.contains(&said), "{err}");
}

/// Runs `sipscope run --ingress xdp` on `iface`, expecting a refusal;
/// returns its stderr.
pub(crate) fn refused(pair: &VethPair, dir: &TempDir, iface: &str) -> String {
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
