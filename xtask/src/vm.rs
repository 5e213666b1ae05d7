//! `cargo xtask vm --kernel 6.1 -- CMD ARGS...`: runs a command as root in
//! a qemu guest booting one of Debian 12's kernels, with the host's root
//! filesystem as the guest's, so the same binaries (test binaries from
//! target/, kamailio, SIPp, nft, ip, tshark) run against another kernel.
//! docs/kernels-vm.md describes the whole route; in short:
//!
//! - Kernels come from Debian's archive through apt (`apt-get download`,
//!   `dpkg-deb -x`) into a cache folder; the host's boot setup is never
//!   touched. The concrete package (its ABI number) is derived from the
//!   candidate of Debian's metapackage, so a kernel update moves with apt.
//! - qemu boots them under TCG: /dev/kvm exists on these machines (which
//!   are VMs themselves), but with KVM every CPU model tried (`host`,
//!   `max`, `qemu64`) hangs before the kernel's first console line.
//! - No virtme-ng: without udev its init loses the script's I/O ports and
//!   exit status, it leaves /tmp read-only and cannot link the modules when
//!   the host has no /lib/modules, and pip would need a Python environment
//!   (Debian's own pip refuses system-wide installs). Our initramfs (static
//!   busybox, the few modules 9p and overlayfs need, an /init of some
//!   thirty lines) takes a cpio writer and is fully in our hands.
//! - The host's `/` is shared read-only over 9p and overlaid with a tmpfs,
//!   so the guest may write anywhere (a test's scratch files under the
//!   workspace included) and nothing reaches the host. A second, writable
//!   9p share is the guest's way out: the command's stdout, stderr and exit
//!   status land there, and the host streams them as they grow.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    fs,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use crate::{
    cmd::{is_root, probe, status},
    setup,
};

/// A kernel series of the test matrix, by the name the CLI takes.
struct Series {
    alias: &'static str,
    /// Debian metapackage whose candidate depends on the newest image of
    /// the series: that dependency names the concrete package and its ABI.
    meta: &'static str,
    /// Prefix the resolved release must have (guards against a metapackage
    /// that moved to another series, e.g. with backports pinned higher).
    release_prefix: &'static str,
    /// Image used only when apt cannot name one and nothing is cached.
    fallback: &'static str,
}

const SERIES: &[Series] = &[
    // Debian 12's own kernel (bookworm and bookworm-security).
    Series {
        alias: "6.1",
        meta: "linux-image-amd64",
        release_prefix: "6.1.",
        fallback: "linux-image-6.1.0-57-amd64",
    },
    // The 6.12 series bookworm-security carries for Debian 12 (the same
    // kernel as Debian 13's).
    Series {
        alias: "6.12",
        meta: "linux-image-6.12-amd64",
        release_prefix: "6.12.",
        fallback: "linux-image-6.12.118+deb12-amd64",
    },
];

/// Modules the initramfs loads to mount the root (9p over virtio-pci) and
/// to overlay it; with their dependencies, from the image's modules.dep.
/// Whatever of them a kernel has built in is skipped.
const INITRAMFS_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// Variables the guest command gets from the host's environment, besides
/// every `SIPSCOPE_*` and those passed with `--env`.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "RUST_TEST_THREADS",
    "RUST_MIN_STACK",
];

/// Where the writable share appears in the guest.
const GUEST_RUN_DIR: &str = "/run/sipscope-vm";
/// The initramfs's busybox, copied onto the guest's /run for stage 2.
const GUEST_BUSYBOX: &str = "/run/sipscope-vm-bin/busybox";
/// 9p's largest message over virtio on these kernels (6.1 clamps to it).
const MSIZE: u32 = 512_000;
/// How long qemu may take to power off once the status is written.
const POWEROFF_GRACE: Duration = Duration::from_secs(15);

/// `cargo xtask vm` arguments.
#[derive(clap::Args)]
pub struct VmArgs {
    /// Kernel to boot: `6.1` or `6.12` (Debian 12's images, newest ABI
    /// apt knows). Repeat to run the command under each in turn.
    #[arg(long = "kernel", required = true, value_name = "SERIES")]
    kernels: Vec<String>,
    /// Give up after this many seconds, boot included (qemu is killed).
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 3072, value_name = "MIB")]
    memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Also pass this variable to the guest command (NAME takes the host's
    /// value). PATH, HOME, RUST_LOG, RUST_BACKTRACE and every SIPSCOPE_*
    /// are always passed.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// Print the guest's console (the kernel log) after the run.
    #[arg(long)]
    console: bool,
    /// Only fetch and unpack the kernels; boot nothing.
    #[arg(long)]
    fetch_only: bool,
    /// The command to run in the guest, as root, in the current directory.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    cmd: Vec<String>,
}

/// `cargo xtask vm`: exits with the guest command's status (the first
/// failing one when several kernels are given).
pub fn cli(args: &VmArgs) -> Result<()> {
    setup::vm()?;
    let kernels = args
        .kernels
        .iter()
        .map(|alias| fetch_kernel(alias))
        .collect::<Result<Vec<_>>>()?;
    if args.fetch_only {
        for k in &kernels {
            println!("{} {} {}", k.alias, k.release, k.root.display());
        }
        return Ok(());
    }
    ensure!(
        !args.cmd.is_empty(),
        "no command: `cargo xtask vm --kernel 6.1 -- CMD ARGS...`"
    );
    let mut env = default_env();
    for spec in &args.env {
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => match std::env::var(spec) {
                Ok(v) => (spec.clone(), v),
                Err(_) => continue, // unset on the host: unset in the guest
            },
        };
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    }
    let mut first_failure = None;
    for kernel in &kernels {
        let vm = Vm {
            timeout: Duration::from_secs(args.timeout),
            memory_mib: args.memory,
            cpus: args.cpus,
            env: env.clone(),
            show_console: args.console,
            ..Vm::new()?
        };
        eprintln!(
            "vm: booting {} ({} {}) under qemu TCG",
            kernel.release, kernel.package, kernel.version
        );
        let exit = vm.run(kernel, &args.cmd)?;
        eprintln!(
            "vm: {}: exit status {} (booted in {}, {:.1} s in all)",
            exit.release,
            exit.code,
            exit.boot
                .map_or_else(|| "?".into(), |b| format!("{:.1} s", b.as_secs_f64())),
            exit.elapsed.as_secs_f64()
        );
        if exit.code != 0 && first_failure.is_none() {
            first_failure = Some(exit.code);
        }
    }
    match first_failure {
        None => Ok(()),
        // The status is the result; the summary lines above say where from.
        Some(code) => std::process::exit(code.clamp(1, 255)),
    }
}

/// Runs `cmd` as root in a guest booting `kernel` (`6.1`, `6.12`), with the
/// defaults of `cargo xtask vm` (2 CPUs, 3 GiB, the current directory, the
/// variables of [`default_env`]); the guest's stdout and stderr stream to
/// ours. `Ok` whatever the command's status; `Err` when the guest could not
/// run it: no kernel, a kernel panic, or `timeout` (boot included) passed.
pub fn run_in_guest(kernel: &str, cmd: &[String], timeout: Duration) -> Result<GuestExit> {
    setup::vm()?;
    let kernel = fetch_kernel(kernel)?;
    let vm = Vm {
        timeout,
        ..Vm::new()?
    };
    vm.run(&kernel, cmd)
}

/// How a guest command ended.
#[derive(Debug)]
#[allow(dead_code, reason = "stdout/stderr: for callers that capture")]
pub struct GuestExit {
    /// The command's exit status (128 + N if signal N killed it; 127 if it
    /// could not be found).
    pub code: i32,
    /// `uname -r` of the guest.
    pub release: String,
    /// From starting qemu to the guest starting the command.
    pub boot: Option<Duration>,
    /// From starting qemu to its exit.
    pub elapsed: Duration,
    /// The command's output, when [`Vm::capture`] is set (else streamed).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl GuestExit {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// A guest's settings; [`Vm::run`] boots one per call.
#[derive(Clone, Debug)]
pub struct Vm {
    /// Boot plus command; qemu is killed after it.
    pub timeout: Duration,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The command's whole environment (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// The command's working directory (a host path; the guest sees it).
    pub cwd: PathBuf,
    /// Collect stdout/stderr into [`GuestExit`] instead of streaming them.
    pub capture: bool,
    /// Print the guest's console (the kernel log) after the run.
    pub show_console: bool,
}

impl Vm {
    /// Defaults: 10 minutes, 3 GiB, 2 CPUs, [`default_env`], the current
    /// directory, output streamed.
    pub fn new() -> Result<Self> {
        Ok(Self {
            timeout: Duration::from_secs(600),
            memory_mib: 3072,
            cpus: 2,
            env: default_env(),
            cwd: std::env::current_dir().context("reading the current directory")?,
            capture: false,
            show_console: false,
        })
    }

    /// Boots `kernel`, runs `cmd` as root, powers off. See [`run_in_guest`].
    pub fn run(&self, kernel: &Kernel, cmd: &[String]) -> Result<GuestExit> {
        ensure!(!cmd.is_empty(), "no command to run in the guest");
        // The guest's /tmp and /run are its own tmpfs (the host's /run/netns
        // would be stale there): a working directory in /run is not found;
        // one in /tmp (a CI clone, say) is bound into the guest's /tmp.
        ensure!(
            !["/run", "/var/run"].iter().any(|d| self.cwd.starts_with(d)),
            "{} is not visible in the guest (its /run is its own); run from \
             elsewhere",
            self.cwd.display()
        );
        let run = RunDir::new()?;
        let initramfs = initramfs(kernel, &self.cwd).context("building the initramfs")?;
        fs::write(run.host_only("initramfs.cpio"), initramfs).context("writing the initramfs")?;
        fs::write(run.shared("guest.sh"), self.guest_script(cmd)).context("writing guest.sh")?;
        for name in ["stdout", "stderr"] {
            fs::write(run.shared(name), b"").with_context(|| format!("creating {name}"))?;
        }
        let console = run.host_only("console.log");
        let qemu_log = run.host_only("qemu.log");
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(["-machine", "q35", "-accel", "tcg", "-cpu", "max"])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &format!("{}M", self.memory_mib)])
            // No default devices (NIC, VGA, monitor): the guest needs none.
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(kernel.image())
            .arg("-initrd")
            .arg(run.host_only("initramfs.cpio"))
            // panic=-1 reboots at once on a panic and -no-reboot turns that
            // into qemu's exit: a panic ends the run instead of hanging it.
            // quiet: every console line costs time under TCG.
            .args([
                "-append",
                "console=ttyS0 panic=-1 quiet mitigations=off random.trust_cpu=on rdinit=/init",
            ])
            .args(virtfs("hostroot", Path::new("/"), true))
            .args(virtfs("vmrun", &run.shared_dir(), false))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&qemu_log).context("creating qemu.log")?);
        let started = Instant::now();
        let mut child = qemu
            .spawn()
            .context("cannot start qemu-system-x86_64 (setup installs qemu-system-x86)")?;
        let mut out = Pump::new(run.shared("stdout"), self.capture, false);
        let mut err = Pump::new(run.shared("stderr"), self.capture, true);
        let mut boot = None;
        let mut status_seen: Option<Instant> = None;
        let outcome = loop {
            out.pump();
            err.pump();
            if boot.is_none() && run.shared("booted").exists() {
                boot = Some(started.elapsed());
            }
            if status_seen.is_none() && run.shared("status").exists() {
                status_seen = Some(Instant::now());
            }
            if child.try_wait().context("waiting for qemu")?.is_some() {
                break Ok(());
            }
            if status_seen.is_some_and(|t| t.elapsed() > POWEROFF_GRACE) {
                // The command is done; a guest that does not power off is
                // not worth failing the run for.
                stop(&mut child);
                break Ok(());
            }
            if started.elapsed() > self.timeout {
                stop(&mut child);
                break Err(anyhow!(
                    "the guest ({}) timed out after {} s{}",
                    kernel.release,
                    self.timeout.as_secs(),
                    if boot.is_none() {
                        " before starting the command"
                    } else {
                        ""
                    }
                ));
            }
            thread::sleep(Duration::from_millis(50));
        };
        let elapsed = started.elapsed();
        out.pump();
        err.pump();
        let console_text = fs::read_to_string(&console).unwrap_or_default();
        if self.show_console {
            eprintln!("----- guest console ({}) -----", kernel.release);
            eprint!("{console_text}");
            eprintln!("----- end of guest console -----");
        }
        let code = fs::read_to_string(run.shared("status"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let failure = match (&outcome, code) {
            (Err(e), _) => Some(e.to_string()),
            (Ok(_), None) => Some(if console_text.contains("Kernel panic") {
                format!("the guest kernel ({}) panicked", kernel.release)
            } else {
                format!(
                    "the guest ({}) stopped without running the command to its end",
                    kernel.release
                )
            }),
            (Ok(_), Some(_)) => None,
        };
        if let Some(failure) = failure {
            let mut report = failure;
            if !console_text.trim().is_empty() {
                write!(
                    report,
                    "\n--- guest console ---\n{}",
                    excerpt(&console_text)
                )?;
            }
            let qemu_text = fs::read_to_string(&qemu_log).unwrap_or_default();
            if !qemu_text.trim().is_empty() {
                write!(report, "\n--- qemu ---\n{}", tail(&qemu_text, 10))?;
            }
            write!(report, "\n(kept for inspection: {})", run.keep().display())?;
            bail!(report);
        }
        let release = fs::read_to_string(run.shared("booted"))
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| kernel.release.clone());
        Ok(GuestExit {
            code: code.unwrap_or(-1),
            release,
            boot,
            elapsed,
            stdout: out.captured,
            stderr: err.captured,
        })
    }

    /// Stage 2 of the guest: PID 1 on the overlaid host root (Debian's
    /// /bin/sh). It runs the command with exactly `self.env`, then powers
    /// off; exiting instead would panic the kernel.
    fn guest_script(&self, cmd: &[String]) -> String {
        let out = GUEST_RUN_DIR;
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(n, v)| quote(&format!("{n}={v}")))
            .collect();
        let cmd: Vec<String> = cmd.iter().map(|a| quote(a)).collect();
        format!(
            r#"# Stage 2 of a `cargo xtask vm` guest (written by xtask/src/vm.rs).
# The host sees the command started once "booted" exists.
echo "$(uname -r) $(cut -d' ' -f1 /proc/uptime)" > {out}/booted
# Root's limits on a usual host (the kernel's defaults for PID 1 are low).
ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null
ulimit -l unlimited 2>/dev/null
if cd {cwd} 2>>{out}/stderr; then
    env -i {env} {cmd} </dev/null >>{out}/stdout 2>>{out}/stderr
    rc=$?
else
    rc=126
fi
echo "$rc" > {out}/status.tmp && mv {out}/status.tmp {out}/status
# reboot(2) from PID 1 itself: sysrq's poweroff tears the 9p devices down
# under this very script and the kernel panics on the way out.
exec {busybox} poweroff -f
"#,
            busybox = GUEST_BUSYBOX,
            cwd = quote(&self.cwd.to_string_lossy()),
            env = env.join(" "),
            cmd = cmd.join(" "),
        )
    }
}

/// The variables a guest command gets by default: those of [`PASSED_ENV`]
/// and every `SIPSCOPE_*` the host has.
pub fn default_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(n, _)| PASSED_ENV.contains(&n.as_str()) || n.starts_with("SIPSCOPE_"))
        .collect()
}

/// A kernel unpacked in the cache.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The series the CLI named (`6.1`).
    pub alias: String,
    /// `uname -r` (`6.1.0-57-amd64`).
    pub release: String,
    /// The Debian package and version it came from.
    pub package: String,
    pub version: String,
    /// The unpacked package: boot/ and lib/modules/.
    pub root: PathBuf,
}

impl Kernel {
    pub fn image(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    pub fn modules(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

/// The cache of unpacked kernels: /var/cache/sipscope/kernels as root,
/// else under the user's cache directory. Outside target/ so `cargo clean`
/// does not throw away some 700 MB of unpacked modules.
pub fn cache_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/cache/sipscope/kernels");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("sipscope/kernels")
}

/// Stamp in an unpacked kernel: "package version", written last.
const STAMP: &str = ".sipscope-kernel";

/// The newest image of a series (`6.1`, `6.12`), downloaded and unpacked
/// unless the cache has it already.
pub fn fetch_kernel(alias: &str) -> Result<Kernel> {
    let series = SERIES.iter().find(|s| s.alias == alias).ok_or_else(|| {
        let known: Vec<&str> = SERIES.iter().map(|s| s.alias).collect();
        anyhow!(
            "unknown kernel `{alias}`; choose one of: {}",
            known.join(", ")
        )
    })?;
    let cache = cache_dir();
    let (package, version) = match resolve(series) {
        Ok(found) => found,
        Err(e) => {
            // Offline or no apt lists: the newest kernel of the series we
            // unpacked before is better than nothing.
            if let Some(k) = newest_cached(series, &cache) {
                eprintln!("vm: {e:#}; using the cached {}", k.release);
                return Ok(k);
            }
            eprintln!("vm: {e:#}; trying {}", series.fallback);
            (series.fallback.to_owned(), String::new())
        }
    };
    let release = release_of(&package);
    let root = cache.join(&release);
    let want = format!("{package} {version}");
    let kernel = Kernel {
        alias: alias.to_owned(),
        release,
        package,
        version,
        root,
    };
    let have = fs::read_to_string(kernel.root.join(STAMP)).unwrap_or_default();
    // An empty version (the fallback) accepts whatever version is cached.
    let cached = if kernel.version.is_empty() {
        have.split_whitespace().next() == Some(kernel.package.as_str())
    } else {
        have.trim() == want
    };
    if cached && kernel.image().exists() {
        return Ok(kernel);
    }
    download(&kernel, &cache)?;
    Ok(kernel)
}

/// The concrete image package of `series` and its version, from apt.
fn resolve(series: &Series) -> Result<(String, String)> {
    let record = match apt_show(series.meta) {
        Some(r) => r,
        None => {
            // A fresh machine may have no package lists yet.
            eprintln!(
                "vm: apt does not know {}; running apt-get update",
                series.meta
            );
            setup::apt_update()?;
            apt_show(series.meta).ok_or_else(|| anyhow!("apt knows no package {}", series.meta))?
        }
    };
    let depends =
        field(&record, "Depends").ok_or_else(|| anyhow!("{} has no Depends field", series.meta))?;
    // "linux-image-6.1.0-57-amd64 (= 6.1.192-3)": the first image named.
    let image = depends
        .split([',', '|'])
        .filter_map(|alt| alt.split_whitespace().next())
        .find(|name| name.starts_with("linux-image-"))
        .ok_or_else(|| anyhow!("{} depends on no linux-image-*: {depends}", series.meta))?
        .to_owned();
    ensure!(
        release_of(&image).starts_with(series.release_prefix),
        "{} now depends on {image}, not a {} kernel",
        series.meta,
        series.alias
    );
    let version = apt_show(&image)
        .and_then(|r| field(&r, "Version"))
        .ok_or_else(|| anyhow!("apt has no candidate for {image}"))?;
    // Prefer the unsigned build of the same version: the same kernel
    // without the Secure Boot wrapper (old ABIs only have the signed one).
    let unsigned = format!("{image}-unsigned");
    if apt_show(&unsigned).and_then(|r| field(&r, "Version")) == Some(version.clone()) {
        return Ok((unsigned, version));
    }
    Ok((image, version))
}

/// `apt-cache show` of the candidate version; `None` if apt has none.
fn apt_show(package: &str) -> Option<String> {
    probe(Command::new("apt-cache").args(["show", "--no-all-versions", package]))
        .filter(|s| !s.trim().is_empty())
}

fn field(record: &str, name: &str) -> Option<String> {
    record.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

/// `linux-image-6.1.0-57-amd64-unsigned` -> `6.1.0-57-amd64`.
fn release_of(package: &str) -> String {
    let r = package.strip_prefix("linux-image-").unwrap_or(package);
    r.strip_suffix("-unsigned").unwrap_or(r).to_owned()
}

fn newest_cached(series: &Series, cache: &Path) -> Option<Kernel> {
    let mut found: Vec<Kernel> = fs::read_dir(cache)
        .ok()?
        .filter_map(|e| {
            let root = e.ok()?.path();
            let release = root.file_name()?.to_str()?.to_owned();
            let stamp = fs::read_to_string(root.join(STAMP)).ok()?;
            let (package, version) = stamp.trim().split_once(' ')?;
            release.starts_with(series.release_prefix).then(|| Kernel {
                alias: series.alias.to_owned(),
                release: release.clone(),
                package: package.to_owned(),
                version: version.to_owned(),
                root: root.clone(),
            })
        })
        .filter(|k| k.image().exists())
        .collect();
    // 6.1.0-57 vs 6.1.0-9: compare the numbers, not the strings.
    found.sort_by_key(|k| numbers(&k.release));
    found.pop()
}

fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// `apt-get download` + `dpkg-deb -x` + `depmod`, into a scratch folder
/// renamed into place at the end (an interrupted fetch leaves no half
/// kernel behind).
fn download(kernel: &Kernel, cache: &Path) -> Result<()> {
    let spec = if kernel.version.is_empty() {
        kernel.package.clone()
    } else {
        format!("{}={}", kernel.package, kernel.version)
    };
    eprintln!("vm: downloading {spec} into {}", cache.display());
    let work = cache.join(format!(".fetch-{}-{}", kernel.release, std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut apt = Command::new("apt-get");
    apt.current_dir(&work).args(["download", "-q"]);
    if is_root() {
        // apt drops to the _apt user to download, which cannot write here.
        apt.args(["-o", "APT::Sandbox::User=root"]);
    }
    status(apt.arg(&spec)).context("apt-get download failed")?;
    let deb = fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| anyhow!("apt-get download left no .deb in {}", work.display()))?;
    let root = work.join("root");
    status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))
        .context("unpacking the kernel package")?;
    fs::remove_file(&deb).ok();
    // Newer packaging puts modules under usr/lib; depmod -b and the guest
    // look under lib/.
    if !root.join("lib").exists() && root.join("usr/lib/modules").exists() {
        std::os::unix::fs::symlink("usr/lib", root.join("lib"))?;
    }
    let unpacked = Kernel {
        root: root.clone(),
        ..kernel.clone()
    };
    ensure!(
        unpacked.image().exists() && unpacked.modules().exists(),
        "{} has no boot/vmlinuz-{r} or lib/modules/{r}",
        deb.display(),
        r = kernel.release
    );
    // The package ships no modules.dep (the postinst makes it): without it
    // neither our initramfs nor modprobe in the guest finds a module.
    status(
        Command::new(sbin("depmod"))
            .args(["-a", "-b"])
            .arg(&root)
            .arg(&kernel.release),
    )
    .context("depmod for the unpacked kernel")?;
    fs::write(
        root.join(STAMP),
        format!("{} {}\n", kernel.package, kernel.version),
    )?;
    let _ = fs::remove_dir_all(&kernel.root);
    fs::rename(&root, &kernel.root)
        .with_context(|| format!("moving the kernel into {}", kernel.root.display()))?;
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// A program from /usr/sbin or /sbin, which a user's PATH may lack.
fn sbin(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The initramfs: static busybox, the modules that mounting the root needs
/// (decompressed: busybox's insmod takes plain ELF), and stage 1 of the
/// guest (`/init`), which mounts the host's root, overlays it and switches
/// to stage 2 (guest.sh on the writable share).
fn initramfs(kernel: &Kernel, cwd: &Path) -> Result<Vec<u8>> {
    let busybox = busybox()?;
    let modules = load_order(&kernel.modules(), INITRAMFS_MODULES)?;
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "dev", "proc", "sys", "modules", "lower", "rw", "newroot",
    ] {
        cpio.dir(dir);
    }
    // The kernel opens /dev/console for init's stdio before init can mount
    // devtmpfs: without the node, stage 1 would have no output.
    cpio.char_dev("dev/console", 5, 1);
    cpio.file(
        "bin/busybox",
        0o755,
        &fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?,
    );
    let mut names = Vec::new();
    for path in &modules {
        let name = module_name(path);
        cpio.file(&format!("modules/{name}.ko"), 0o644, &module_elf(path)?);
        names.push(name);
    }
    cpio.file("init", 0o755, stage1(kernel, &names, cwd).as_bytes());
    Ok(cpio.finish())
}

fn stage1(kernel: &Kernel, modules: &[String], cwd: &Path) -> String {
    let moddir = quote(&kernel.modules().to_string_lossy());
    // A working directory under /tmp stays visible (read-only, from the
    // host) over the guest's fresh /tmp.
    let bind_cwd = if cwd.starts_with("/tmp") {
        let d = quote(&cwd.to_string_lossy());
        format!(
            "$b mkdir -p /newroot{d} && $b mount --bind /lower{d} /newroot{d} \\\n    || fail \"cannot bind {d}\""
        )
    } else {
        String::new()
    };
    let release = quote(&kernel.release);
    let run = GUEST_RUN_DIR;
    format!(
        r#"#!/bin/busybox sh
# Stage 1 of a `cargo xtask vm` guest (written by xtask/src/vm.rs).
b=/bin/busybox
fail() {{ echo "sipscope-vm: $*"; $b poweroff -f; }}
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
$b mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    $b insmod /modules/$m.ko || fail "cannot load $m"
done
# The host's root, read-only, under a tmpfs: the guest may write anywhere
# and nothing reaches the host. cache=loose keeps what the guest read in its
# page cache (the share is read-only to it and lives minutes); without it
# every page of a library is fetched again: `tshark -v` takes 57 s, not 11.
$b mount -t 9p -o trans=virtio,version=9p2000.L,msize={MSIZE},ro,cache=loose hostroot /lower \
    || fail "cannot mount the host's root"
$b mount -t tmpfs -o mode=0755 rw /rw
$b mkdir -p /rw/upper /rw/work
$b mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || fail "cannot overlay the host's root"
for d in proc sys dev; do $b mount --move /$d /newroot/$d; done
# Fresh /run and /tmp: the host's (its /run/netns among them) mean nothing here.
$b mount -t tmpfs -o mode=0755,nosuid,nodev run /newroot/run
$b mount -t tmpfs -o mode=1777,nosuid,nodev tmp /newroot/tmp
{bind_cwd}
$b mkdir -p /newroot{run} /newroot/dev/pts /newroot/dev/shm
$b mount -t 9p -o trans=virtio,version=9p2000.L,msize={MSIZE} vmrun /newroot{run} \
    || fail "cannot mount the run folder"
$b mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /newroot/dev/pts
$b mount -t tmpfs -o mode=1777,nosuid,nodev shm /newroot/dev/shm
$b mount -t bpf -o mode=0700 bpf /newroot/sys/fs/bpf
# The image's modules where modprobe (and the kernel's request_module)
# look; the host has none for this release.
$b mkdir -p /newroot/lib/modules
$b rm -rf /newroot/lib/modules/{release}
$b ln -s {moddir} /newroot/lib/modules/{release}
# Stage 2 powers off with busybox; the host may have no poweroff of its own.
$b mkdir -p /newroot{busybox_dir}
$b cp $b /newroot{busybox}
$b ip link set lo up
$b hostname sipscope-vm
exec $b switch_root /newroot /bin/sh {run}/guest.sh
fail "cannot switch to the host's root"
"#,
        modules = modules.join(" "),
        busybox = GUEST_BUSYBOX,
        busybox_dir = Path::new(GUEST_BUSYBOX)
            .parent()
            .expect("an absolute path")
            .display(),
    )
}

/// The host's busybox, which must be static: nothing else is in the
/// initramfs (Debian's busybox-static; the plain busybox is dynamic).
fn busybox() -> Result<PathBuf> {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("no busybox; install busybox-static"))?;
    let elf = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        !has_interpreter(&elf),
        "{} is dynamically linked; install busybox-static",
        path.display()
    );
    Ok(path)
}

/// Whether a 64-bit ELF has a PT_INTERP program header (is dynamic).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return true;
    };
    (0..usize::from(phnum)).any(|i| {
        u32_at(phoff as usize + i * usize::from(phentsize)) == Some(3) // PT_INTERP
    })
}

/// The modules (paths under `moddir`) that loading `wanted` takes, in load
/// order (dependencies first), from modules.dep; built-in ones skipped.
fn load_order(moddir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>> {
    let dep_file = moddir.join("modules.dep");
    let deps = fs::read_to_string(&dep_file)
        .with_context(|| format!("reading {} (depmod did not run?)", dep_file.display()))?;
    let deps: HashMap<String, (String, Vec<String>)> = deps
        .lines()
        .filter_map(|l| {
            let (module, needs) = l.split_once(':')?;
            let needs = needs.split_whitespace().map(str::to_owned).collect();
            Some((module_name(Path::new(module)), (module.to_owned(), needs)))
        })
        .collect();
    let builtin: HashSet<String> = fs::read_to_string(moddir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(|l| module_name(Path::new(l)))
        .collect();
    fn visit(
        name: &str,
        deps: &HashMap<String, (String, Vec<String>)>,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        if let Some((path, needs)) = deps.get(name) {
            for need in needs {
                visit(&module_name(Path::new(need)), deps, seen, order);
            }
            order.push(path.clone());
        }
    }
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for name in wanted {
        ensure!(
            deps.contains_key(*name) || builtin.contains(*name),
            "the kernel in {} has no module {name}",
            moddir.display()
        );
        visit(name, &deps, &mut seen, &mut order);
    }
    Ok(order.into_iter().map(|p| moddir.join(p)).collect())
}

/// `kernel/net/9p/9pnet_virtio.ko.xz` -> `9pnet_virtio` (modprobe's names:
/// `-` and `_` are the same).
fn module_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    file.split(".ko")
        .next()
        .unwrap_or_default()
        .replace('-', "_")
}

/// A module file as plain ELF: 6.12's are xz-compressed.
fn module_elf(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = [(".ko.xz", "xz"), (".ko.zst", "zstd"), (".ko.gz", "gzip")]
        .iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, tool)| *tool);
    let Some(tool) = tool else {
        return fs::read(path).with_context(|| format!("reading {name}"));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("cannot run {tool} (setup installs xz-utils)"))?;
    ensure!(
        out.status.success(),
        "{tool} -dc {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// An uncompressed cpio archive in the "newc" format the kernel unpacks.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, 0, &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, 0, data);
    }

    fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, (major << 8) | minor, &[]);
    }

    /// `rdev` packs major and minor as (major << 8) | minor.
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, data: &[u8]) {
        self.ino += 1;
        let mut header = String::with_capacity(110);
        let name_size = name.len() + 1;
        let size = u32::try_from(data.len()).expect("initramfs entries are small");
        header.push_str("070701");
        for field in [
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            size,
            0, // dev major
            0, // dev minor
            rdev >> 8,
            rdev & 0xff,
            u32::try_from(name_size).expect("short names"),
            0, // check
        ] {
            write!(header, "{field:08X}").expect("writing to a String");
        }
        self.buf.extend_from_slice(header.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, 0, &[]);
        self.buf
    }
}

/// qemu arguments sharing `path` over virtio-9p under `tag`.
fn virtfs(tag: &str, path: &Path, readonly: bool) -> Vec<String> {
    // multidevs=remap: the host's root spans several filesystems, whose
    // inode numbers would otherwise collide in the guest.
    let mut fsdev = format!(
        "local,id={tag},path={},security_model=none,multidevs=remap",
        path.display()
    );
    if readonly {
        fsdev.push_str(",readonly=on");
    }
    vec![
        "-fsdev".into(),
        fsdev,
        "-device".into(),
        format!("virtio-9p-pci,fsdev={tag},mount_tag={tag}"),
    ]
}

/// A per-run host folder: `share/` is the guest's writable share (scripts
/// in, output out); the rest (initramfs, console log) stays on the host.
/// Removed on drop unless kept for a failure's post-mortem.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    fn new() -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "sipscope-vm-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(path.join("share"))
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path, keep: false })
    }

    fn shared_dir(&self) -> PathBuf {
        self.path.join("share")
    }

    fn shared(&self, name: &str) -> PathBuf {
        self.path.join("share").join(name)
    }

    fn host_only(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Follows a file the guest appends to, copying what is new to our stdout
/// or stderr (or into `captured`).
struct Pump {
    path: PathBuf,
    offset: u64,
    capture: bool,
    to_stderr: bool,
    captured: Vec<u8>,
}

impl Pump {
    fn new(path: PathBuf, capture: bool, to_stderr: bool) -> Self {
        Self {
            path,
            offset: 0,
            capture,
            to_stderr,
            captured: Vec::new(),
        }
    }

    fn pump(&mut self) {
        let Ok(mut file) = fs::File::open(&self.path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut new = Vec::new();
        if file.read_to_end(&mut new).is_err() || new.is_empty() {
            return;
        }
        self.offset += new.len() as u64;
        if self.capture {
            self.captured.extend_from_slice(&new);
        } else if self.to_stderr {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(&new);
            let _ = e.flush();
        } else {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&new);
            let _ = o.flush();
        }
    }
}

/// Kills qemu and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Single-quotes `s` for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What of a console log explains a failure: from the first oops or panic
/// line on (the kernel's own account), else its end.
fn excerpt(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    let first = lines.iter().position(|l| {
        ["BUG:", "Oops", "Kernel panic"]
            .iter()
            .any(|m| l.contains(m))
    });
    match first {
        Some(i) => lines[i..lines.len().min(i + 60)].join("\n"),
        None => tail(console, 40),
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_drops_the_prefix_and_the_unsigned_suffix() {
        assert_eq!(
            release_of("linux-image-6.1.0-57-amd64-unsigned"),
            "6.1.0-57-amd64"
        );
        assert_eq!(
            release_of("linux-image-6.12.118+deb12-amd64"),
            "6.12.118+deb12-amd64"
        );
    }

    #[test]
    fn module_names_are_modprobe_names() {
        assert_eq!(
            module_name(Path::new("kernel/net/9p/9pnet_virtio.ko.xz")),
            "9pnet_virtio"
        );
        assert_eq!(
            module_name(Path::new("kernel/drivers/virtio/virtio-pci.ko")),
            "virtio_pci"
        );
    }

    #[test]
    fn dependencies_load_first_and_builtins_are_skipped() {
        let dir = std::env::temp_dir().join(format!("xtask-vm-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("modules.dep"),
            "kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n\
             kernel/net/9p/9pnet.ko.xz:\n\
             kernel/fs/netfs/netfs.ko.xz:\n\
             kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n",
        )
        .unwrap();
        fs::write(
            dir.join("modules.builtin"),
            "kernel/drivers/virtio/virtio_pci.ko\n",
        )
        .unwrap();
        let order = load_order(&dir, &["virtio_pci", "9pnet_virtio", "9p"]).unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(names, ["9pnet", "9pnet_virtio", "netfs", "9p"]);
        assert!(load_order(&dir, &["overlay"]).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut cpio = Cpio::default();
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        cpio.char_dev("dev/console", 5, 1);
        let buf = cpio.finish();
        assert!(buf.starts_with(b"070701"));
        assert_eq!(buf.len() % 4, 0);
        // mode of the first entry, then its name right after the header.
        assert_eq!(&buf[14..22], b"000081ED");
        assert_eq!(&buf[110..115], b"init\0");
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("dev/console"));
        assert!(text.contains("TRAILER!!!"));
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("a b"), "'a b'");
    }

    #[test]
    fn a_dynamic_executable_has_an_interpreter() {
        // This test binary itself is dynamically linked.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&me));
        assert!(has_interpreter(b"not an elf"));
    }

    #[test]
    fn excerpt_starts_at_the_panic() {
        let console = "a\nb\n[ 1.0] Kernel panic - not syncing: x\nc\n";
        assert!(excerpt(console).starts_with("[ 1.0] Kernel panic"));
        assert_eq!(excerpt("a\nb"), "a\nb");
    }
}
