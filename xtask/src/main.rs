//! Developer tasks: `cargo xtask setup | build | run | test | bench`.
//!
//! Every task runs `setup` first, so a fresh machine needs nothing but this
//! repository and a Rust toolchain (see README).

mod bench;
mod cmd;
mod fuzz;
mod matrix;
mod package;
mod setup;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need: nightly rust-src, bpf-linker
    /// built against the nightly's own LLVM, and the Debian packages of the
    /// test peers. Idempotent; fast when already done.
    Setup,
    /// Build the agent (and the eBPF object it embeds) in release mode.
    Build,
    /// The Debian package: release binary, systemd unit, default
    /// configuration, man pages, docs, maintainer scripts (docs/service.md).
    /// Prints the .deb's path.
    Package {
        /// Package the dev-profile binary (what `cargo xtask test` does)
        /// instead of a release build.
        #[arg(long)]
        dev: bool,
    },
    /// Build, then run the agent with the privileges it needs:
    /// `cargo xtask run -- run --iface eth0`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Everything: formatting, clippy, unit tests, pipeline tests and the
    /// kernel tests (as root, in network namespaces).
    Test {
        /// Skip the kernel matrix (the kernel tests in 6.1 and 6.12 guests,
        /// which take most of the run under software emulation).
        #[arg(long = "no-vm")]
        no_vm: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks, each against a baseline measured in the same run:
    /// `kernel`, `drops`, `pipeline`, `export`, `media`, `live`, `framing`,
    /// or `all`.
    Bench {
        #[arg(default_value = "all")]
        which: String,
    },
    /// Fuzz the parsers (cargo-fuzz, nightly): `cargo xtask fuzz [TARGET|all]
    /// [SECONDS]`, SECONDS per target (default 60); prints executions.
    Fuzz {
        #[arg(default_value = "all")]
        target: String,
        #[arg(default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
    },
    /// Run a command as root under another kernel (Debian's 6.1 or 6.12,
    /// in qemu): `cargo xtask vm --kernel 6.1 -- uname -r`.
    Vm(vm::VmArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.task, Task::Setup) {
        setup::run()?;
    }
    match cli.task {
        Task::Setup => setup::run(),
        Task::Build => cmd::cargo(&["build", "--release", "--package", "sipscope"]),
        Task::Package { dev } => {
            let profile = if dev {
                package::Profile::Dev
            } else {
                package::Profile::Release
            };
            package::run(profile).map(drop)
        }
        Task::Run { args } => {
            cmd::cargo(&["build", "--release", "--package", "sipscope"])?;
            let bin = cmd::workspace_root().join("target/release/sipscope");
            cmd::privileged(&bin, &args)
        }
        Task::Test { no_vm, args } => test(&args, !no_vm),
        Task::Bench { which } => bench::run(&which),
        Task::Vm(args) => vm::cli(&args),
        Task::Fuzz { target, seconds } => fuzz::run(&target, seconds).map(drop),
    }
}

/// Kernel tests that exercise no kernel feature of their own (the service
/// console, the capture file writer): run once, on the host, not again
/// with the oldest program variants or in the kernel matrix's guests.
const NOT_KERNEL_DEPENDENT: &str = "service::";

fn test(args: &[String], kernel_matrix: bool) -> Result<()> {
    cmd::cargo(&["fmt", "--all", "--check"])?;
    // Host crates (the default members), then the eBPF crate for its own
    // target: it is no_std and cannot be checked for the host.
    cmd::cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    cmd::cargo_nightly(&[
        "clippy",
        "--package",
        "sipscope-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ])?;
    // The package test installs this .deb (built once here, so the test
    // target does not build it itself).
    let deb = package::run(package::Profile::Dev)?;
    let deb = deb.to_string_lossy();
    // Kernel tests attach programs and create network namespaces: they run
    // as root (sudo through cargo's runner when we are not root).
    let mut test: Vec<&str> = vec!["test", "--no-fail-fast"];
    if !args.is_empty() {
        test.push("--");
        test.extend(args.iter().map(String::as_str));
    }
    cmd::cargo_privileged_env(&test, &[("SIPSCOPE_DEB", &deb)])?;
    // The oldest kernels' program variants on this kernel too, so their
    // paths run on every CI run (README: kernels).
    let mut oldest: Vec<&str> = vec!["test", "-p", "sipscope", "--test", "kernel", "--"];
    oldest.extend(args.iter().map(String::as_str));
    oldest.extend(["--skip", NOT_KERNEL_DEPENDENT]);
    cmd::cargo_privileged_env(&oldest, &[("SIPSCOPE_KERNEL_COMPAT", "oldest")])?;
    if kernel_matrix {
        matrix::run()?;
    }
    // Last: every fuzz target for a bounded time (7 targets x 25 s, about
    // 3 minutes plus the first sanitizer build), failing on any crash,
    // leak, out-of-memory or hang; executions per target are printed.
    fuzz::run("all", 25).map(drop)
}
