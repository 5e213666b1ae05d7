//! The kernel matrix of `cargo xtask test`: the kernel tests (real programs
//! attached in namespaces, kamailio/SIPp/nft peers, dumpcap as reference)
//! run again in qemu guests booting Debian's 6.1 and 6.12 kernels, and once
//! with `SIPSCOPE_KERNEL_COMPAT=oldest` (the Linux 5.10 program variants)
//! on 6.1; the host run with that switch is in `test` itself.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, vm};

/// (kernel, forced oldest variants) in the order they run.
const RUNS: &[(&str, bool)] = &[("6.1", false), ("6.1", true), ("6.12", false)];

/// Tests that depend on the host's speed, not on the kernel; and the
/// service tests (log lines, the capture file writer), which test no
/// kernel feature the other tests do not, and take a 12 s call.
const SKIPPED_IN_GUESTS: &[&str] = &[
    "drops::a_non_rtp_flood_on_the_rtp_range_is_reported_within_budget",
    crate::NOT_KERNEL_DEPENDENT,
];

/// One guest run may take this long, boot included (TCG is slow: the
/// kernel tests take about four minutes).
const GUEST_TIMEOUT: Duration = Duration::from_secs(720);

pub fn run() -> Result<()> {
    let tests = test_binary("kernel")?;
    let mut failed = Vec::new();
    for &(kernel, oldest) in RUNS {
        // Deadlines in the tests grow with the emulation's slowness.
        let mut command = vec!["env".to_owned(), "SIPSCOPE_TEST_TIME_SCALE=6".to_owned()];
        if oldest {
            command.push("SIPSCOPE_KERNEL_COMPAT=oldest".to_owned());
        }
        command.push(tests.display().to_string());
        // Two vCPUs; the tests poll with deadlines sized for this.
        command.extend(["--test-threads".to_owned(), "2".to_owned()]);
        // Under emulation a 1000-datagram burst overflows the receive
        // backlog before nft sees it all (cpu_backlog drops); the test runs
        // on the host, in both modes.
        command.extend(
            SKIPPED_IN_GUESTS
                .iter()
                .flat_map(|t| ["--skip".to_owned(), (*t).to_owned()]),
        );
        let label = if oldest {
            format!("{kernel} with SIPSCOPE_KERNEL_COMPAT=oldest")
        } else {
            kernel.to_owned()
        };
        // A run that fails is run once more: under emulation a deadline can
        // still be missed now and then; a failure twice in a row fails.
        let mut passed = false;
        for attempt in 1..=2 {
            eprintln!("kernel matrix: kernel tests on Linux {label} (qemu TCG), attempt {attempt}");
            let exit = vm::run_in_guest(kernel, &command, GUEST_TIMEOUT)
                .with_context(|| format!("running the kernel tests on Linux {label}"))?;
            eprintln!(
                "kernel matrix: Linux {label} ({}): exit status {} in {:.0} s",
                exit.release,
                exit.code,
                exit.elapsed.as_secs_f64()
            );
            if exit.success() {
                passed = true;
                break;
            }
        }
        if !passed {
            failed.push(label);
        }
    }
    if !failed.is_empty() {
        bail!("kernel tests failed on Linux {}", failed.join(", "));
    }
    Ok(())
}

/// Builds the integration test `name` of the agent and returns its path.
fn test_binary(name: &str) -> Result<PathBuf> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "-p", "sipscope", "--test", name, "--no-run"])
        .arg("--message-format=json")
        .current_dir(cmd::workspace_root())
        .output()
        .with_context(|| format!("building the {name} tests"))?;
    if !out.status.success() {
        bail!(
            "building the {name} tests failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The compiler-artifact line of the test target names its executable.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let target = format!("\"name\":\"{name}\",\"src_path\"");
    stdout
        .lines()
        .filter(|l| l.contains(&target) && l.contains("\"kind\":[\"test\"]"))
        .find_map(|l| {
            let rest = &l[l.find("\"executable\":\"")? + 14..];
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
        .with_context(|| format!("cargo named no executable for the {name} tests"))
}
