//! Running commands: cargo in the workspace, privileged programs, probes.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs `cmd`, failing with its command line when it does not succeed.
pub fn status(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; `None` if it cannot start or fails.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn cargo(args: &[&str]) -> Result<()> {
    status(
        Command::new(cargo_bin())
            .args(args)
            .current_dir(workspace_root()),
    )
}

/// `cargo` of the nightly toolchain (the one that builds the eBPF crate).
pub fn cargo_nightly(args: &[&str]) -> Result<()> {
    status(
        Command::new("rustup")
            .args(["run", "nightly", "cargo"])
            .args(args)
            .current_dir(workspace_root()),
    )
}

/// `cargo` whose test/bench/run binaries run as root: through sudo when we
/// are not root already (kernel tests attach programs and create netns).
pub fn cargo_privileged(args: &[&str]) -> Result<()> {
    cargo_privileged_env(args, &[])
}

/// [`cargo_privileged`] with extra environment variables.
pub fn cargo_privileged_env(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let mut cmd = Command::new(cargo_bin());
    cmd.args(args).current_dir(workspace_root());
    // Tests choose the agent's console themselves: under a service manager
    // these would switch `run` to its events console (docs/service.md).
    cmd.env_remove("INVOCATION_ID").env_remove("JOURNAL_STREAM");
    cmd.envs(env.iter().copied());
    if !is_root() {
        cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
    }
    status(&mut cmd)
}

/// Runs a built program as root (directly, or through sudo).
pub fn privileged(bin: &Path, args: &[String]) -> Result<()> {
    let mut cmd = if is_root() {
        Command::new(bin)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(bin);
        c
    };
    status(cmd.args(args))
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
