//! Processes started inside a namespace, with their output in files so a
//! test can watch it while they run; killed on drop.

use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use super::{netns::Netns, wait_for};

pub struct NsProcess {
    pub name: String,
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    exited: Option<ExitStatus>,
}

impl NsProcess {
    /// Starts `program args` inside `ns` (`ip netns exec` execs the program,
    /// so the pid is the program's own and signals reach it directly).
    pub fn spawn(
        ns: &Netns,
        dir: &std::path::Path,
        name: &str,
        program: &str,
        args: &[&str],
    ) -> Self {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, program])
            .args(args)
            // Its own process group, so Drop can end the children it forks
            // (kamailio's workers) and not only the process itself.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            exited: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `sig` to this process (only this pid).
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Exit status if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Waits (polling, bounded) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let name = self.name.clone();
        wait_for(timeout, &format!("{name} to exit"), || self.try_exit())
    }

    /// Waits for the process to exit successfully; panics with both
    /// outputs otherwise.
    pub fn wait_success(&mut self, timeout: Duration) {
        let status = self.wait_exit(timeout);
        assert!(
            status.success(),
            "{} failed ({status})\nstdout:\n{}\nstderr:\n{}",
            self.name,
            self.stdout_text(),
            self.stderr_text()
        );
    }

    /// Waits until stdout or stderr contains `needle`; panics with both
    /// outputs if the process exits first or the deadline passes.
    pub fn wait_output(&mut self, needle: &str, timeout: Duration) {
        let what = format!("{} to print {needle:?}", self.name);
        wait_for(timeout, &what, || {
            let (out, err) = (self.stdout_text(), self.stderr_text());
            if out.contains(needle) || err.contains(needle) {
                return Some(());
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "{} exited ({status}) before printing {needle:?}\nstdout:\n{out}\nstderr:\n{err}",
                    self.name
                );
            }
            None
        });
    }

    /// SIGINT, then wait for a clean exit.
    pub fn interrupt(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(libc::SIGINT);
        self.wait_exit(timeout)
    }
}

impl NsProcess {
    /// Whether the leader has exited, without reaping it (WNOWAIT): while
    /// it is unreaped its pid, and so the group id, cannot be reused.
    fn exited_unreaped(&self) -> bool {
        // SAFETY: siginfo_t is plain data; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pid of our own child and a valid out-pointer.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid to read after a successful waitid.
        rc == 0 && unsafe { info.si_pid() } != 0
    }
}

impl Drop for NsProcess {
    /// Still running: SIGTERM to its process group (kamailio stops its
    /// workers), a bounded wait, then SIGKILL to whatever is left of the
    /// group. The group exists while the leader is unreaped, so no other
    /// process can be hit.
    fn drop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        let group = -self.pid();
        // SAFETY: kill(2) on the process group this harness created.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !self.exited_unreaped() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: the leader is not reaped yet, so the group id is ours.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The agent binary to run: `SIPSCOPE_AGENT_BIN` when set (another build,
/// e.g. the release one under a load test), else the one cargo built.
pub fn agent_bin() -> String {
    std::env::var("SIPSCOPE_AGENT_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sipscope").to_owned())
}

/// An ephemeral UDP port from the kernel. Namespaces created by the
/// harness start with no sockets, so a port free here is free there too;
/// tests use it to avoid fixed ports that might collide.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral UDP port")
}
