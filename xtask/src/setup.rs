//! `cargo xtask setup`: everything a fresh machine needs, idempotent.
//!
//! 1. Debian packages of the real peers the tests use.
//! 2. rust-src for the nightly toolchain (the eBPF crate builds `core`).
//! 3. bpf-linker built against the nightly's own libLLVM, since no Debian
//!    package ships the LLVM major the nightly uses.
//!
//! [`vm`] adds what `cargo xtask vm` needs to boot other kernels; only that
//! command calls it, so plain `setup` stays fast for those who run no VMs.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{self, is_root, probe, status};

/// Packages the tests drive as real peers or reference tools.
const APT_PACKAGES: &[&str] = &[
    "iproute2",             // ip netns, veth
    "kamailio",             // registrar with digest auth
    "kamailio-tls-modules", // kamailio's tls.so: the SIP over TLS scenario (docs/tls.md)
    "openssl",              // the TLS scenario's self-signed certificate
    "python3",              // the TLS scenario's UA (tests/scenarios/tls/register.py)
    "sip-tester",           // SIPp
    "sipsak",
    "tshark", // reference decoder, dumpcap
    "nftables",
    "tcpdump",
    "baresip-core", // real UA: two of them call each other through kamailio
    "python3-pip",  // installs pjsua2-python below
    "sngrep",       // a second HEP decoder (its EEP parser) for the HEP export tests
    "prometheus",   // real scraper of `run --metrics-listen` (tests/scenarios/metrics.rs)
    "dpkg-dev",     // dpkg-shlibdeps: the package's library dependencies (cargo deb)
    "systemd",      // systemd-analyze verify of the packaged unit
];

/// Python packages of real peers: PJSIP's own bindings (the SIP stack
/// under Asterisk's chan_pjsip), driven by tests/fixtures/scenarios/pjsua.py.
const PIP_PACKAGES: &[(&str, &str)] = &[("pjsua2", "pjsua2-python==2.15.1.post1")];

/// Packages `cargo xtask vm` needs (see xtask/src/vm.rs): qemu alone is
/// some 100 MB, which is why `setup` does not install them.
const VM_APT_PACKAGES: &[&str] = &[
    "qemu-system-x86", // the guest, under TCG
    "busybox-static",  // the guest's initramfs: one static binary, no libraries
    "kmod",            // depmod for the unpacked module trees; modprobe in the guest
    "xz-utils",        // 6.12's modules are .ko.xz; the initramfs gets them plain
];

const NIGHTLY: &str = "nightly";

pub fn run() -> Result<()> {
    apt_packages()?;
    pip_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    cargo_deb()?;
    Ok(())
}

/// cargo-deb builds the Debian package (`cargo xtask package`), pinned so
/// the package's layout does not change under us.
const CARGO_DEB: &str = "3.8.0";

fn cargo_deb() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed = probe(Command::new(&cargo).args(["deb", "--version"]))
        .is_some_and(|v| v.contains(CARGO_DEB));
    if installed {
        return Ok(());
    }
    eprintln!("setup: installing cargo-deb {CARGO_DEB} (about a minute)");
    status(Command::new(&cargo).args(["install", "--locked", "cargo-deb", "--version", CARGO_DEB]))
}

/// What `cargo xtask vm` needs on top of [`run`]. Idempotent.
pub fn vm() -> Result<()> {
    apt_install(VM_APT_PACKAGES)
}

fn apt_packages() -> Result<()> {
    apt_install(APT_PACKAGES)
}

/// Installs the Python modules of [`PIP_PACKAGES`] not importable yet
/// (system-wide: the scenario tests run python3 as root).
fn pip_packages() -> Result<()> {
    for (module, spec) in PIP_PACKAGES {
        let present = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if present {
            continue;
        }
        eprintln!("setup: installing Python package {spec}");
        status(sudo("python3").args(["-m", "pip", "install", "--break-system-packages", spec]))
            .with_context(|| format!("pip install {spec} failed"))?;
    }
    Ok(())
}

/// `apt-get update`, as root (through sudo when needed).
pub fn apt_update() -> Result<()> {
    status(sudo("apt-get").args(["update", "-qq"]))
        .context("apt-get update failed; are you root or in sudoers?")
}

fn sudo(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg(program);
        c
    }
}

/// Installs those of `packages` that are not installed yet.
fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|pkg| {
            probe(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", pkg]))
                .is_none_or(|s| !s.starts_with("ii"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    apt_update()?;
    status(
        sudo("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    )
    .context("apt-get install failed")
}

fn nightly_rust_src() -> Result<()> {
    let installed = probe(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        NIGHTLY,
        "--installed",
    ]));
    match installed {
        Some(list) if list.lines().any(|l| l.starts_with("rust-src")) => Ok(()),
        Some(_) => {
            eprintln!("setup: adding rust-src to the {NIGHTLY} toolchain");
            status(Command::new("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                NIGHTLY,
            ]))
        }
        None => bail!(
            "the {NIGHTLY} toolchain is missing; install it with \
             `rustup toolchain install {NIGHTLY} --component rust-src`"
        ),
    }
}

/// The nightly's libLLVM: its directory, file name and LLVM major version.
struct NightlyLlvm {
    lib_dir: PathBuf,
    file_name: String,
    major: u32,
}

fn nightly_llvm() -> Result<NightlyLlvm> {
    let sysroot =
        probe(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))
            .ok_or_else(|| anyhow!("cannot run `rustup run {NIGHTLY} rustc`"))?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let file_name = fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with("libLLVM.so."))
        .ok_or_else(|| anyhow!("no libLLVM.so.* in {}", lib_dir.display()))?;
    let verbose = probe(Command::new("rustup").args(["run", NIGHTLY, "rustc", "-vV"]))
        .ok_or_else(|| anyhow!("cannot run `rustup run {NIGHTLY} rustc -vV`"))?;
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next()?.parse().ok())
        .ok_or_else(|| anyhow!("nightly rustc does not report its LLVM version"))?;
    Ok(NightlyLlvm {
        lib_dir,
        file_name,
        major,
    })
}

/// A stable prefix outside target/ (bpf-linker keeps an rpath into it),
/// named after the libLLVM it points at so a new nightly gets a new one.
fn llvm_prefix(llvm: &NightlyLlvm) -> PathBuf {
    let base = if is_root() {
        PathBuf::from("/opt/sipscope")
    } else {
        home().join(".local/share/sipscope")
    };
    base.join("llvm").join(&llvm.file_name)
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

fn bpf_linker() -> Result<()> {
    let llvm = nightly_llvm()?;
    let prefix = llvm_prefix(&llvm);
    let stamp = prefix.join("bpf-linker.stamp");
    let works = probe(Command::new("bpf-linker").arg("--version")).is_some();
    if works && stamp.exists() {
        return Ok(());
    }
    eprintln!(
        "setup: building bpf-linker against the {NIGHTLY} toolchain's LLVM {} ({}); about a minute",
        llvm.major, llvm.file_name
    );
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let target = llvm.lib_dir.join(&llvm.file_name);
    for name in [llvm.file_name.as_str(), "libLLVM.so"] {
        relink(&target, &lib.join(name))?;
    }
    let features = format!("llvm-{}", llvm.major);
    status(
        Command::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .current_dir(cmd::workspace_root())
            .args([
                "install",
                "--locked",
                "--force",
                "bpf-linker",
                "--version",
                "^0.13",
            ])
            .args(["--no-default-features", "--features", &features]),
    )
    .context("building bpf-linker failed")?;
    fs::write(&stamp, format!("{}\n", target.display()))
        .with_context(|| format!("writing {}", stamp.display()))
}

fn relink(target: &Path, link: &Path) -> Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let _ = fs::remove_file(link);
    symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}
