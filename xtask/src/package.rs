//! `cargo xtask package`: the Debian package (docs/service.md).
//!
//! The release binary (with the eBPF object it embeds), the man pages
//! written by the binary itself (`sipscope man`, from the same clap
//! definitions as `--help`), then `cargo deb --no-build` with
//! `[package.metadata.deb]` of agent/Cargo.toml: the systemd unit, the
//! commented default configuration as a conffile, the docs, and the
//! maintainer scripts of packaging/debian/ (system user, purge).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, status};

/// Where cargo puts its output: CARGO_TARGET_DIR when set, as cargo does.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                cmd::workspace_root().join(d)
            }
        }
        _ => cmd::workspace_root().join("target"),
    }
}

/// Which build goes into the package.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// What `cargo xtask package` ships.
    Release,
    /// The binary the tests already build: `cargo xtask test` packages it
    /// to test the package without a release build (some minutes on two
    /// cores), since what the package test checks is the packaging.
    Dev,
}

/// Builds the package and returns the path of the .deb.
pub fn run(profile: Profile) -> Result<PathBuf> {
    let (build, dir, name): (&[&str], _, _) = match profile {
        Profile::Release => (
            &["build", "--release", "--package", "sipscope"],
            "release",
            "release",
        ),
        Profile::Dev => (&["build", "--package", "sipscope"], "debug", "dev"),
    };
    cmd::cargo(build)?;
    let out_dir = target_dir().join(dir);
    man_pages(&out_dir.join("sipscope"), &out_dir.join("man"))?;
    // The assets name target/release/; cargo deb maps it to the profile's.
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "deb",
            "--package",
            "sipscope",
            "--no-build",
            "--profile",
            name,
        ])
        .current_dir(cmd::workspace_root())
        .output()
        .context("cannot start `cargo deb` (cargo xtask setup installs cargo-deb)")?;
    if !out.status.success() {
        bail!(
            "cargo deb failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // cargo deb prints the package's path last.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .map(|l| PathBuf::from(l.trim()))
        .with_context(|| format!("cargo deb named no .deb:\n{stdout}"))?;
    println!("{}", deb.display());
    Ok(deb)
}

/// `sipscope man DIR`, each page gzipped (Debian policy 12.1).
fn man_pages(bin: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    status(Command::new(bin).arg("man").arg(dir))?;
    for page in std::fs::read_dir(dir)? {
        let page = page?.path();
        // -n: no name or time stamp inside, so rebuilds are identical.
        status(Command::new("gzip").args(["-9nf"]).arg(&page))?;
    }
    Ok(())
}
