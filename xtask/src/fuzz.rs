//! `cargo xtask fuzz [TARGET|all] [SECONDS]`: the cargo-fuzz (libFuzzer)
//! targets of agent/fuzz, each for a bounded time, with the seed corpus
//! made from the project's own files; fails on the first crash, leak,
//! out-of-memory or hang, and says how to keep the input as a regression.
//!
//! Seeds of every target: every file under tests/fixtures (captures,
//! RFC 4475/5118 messages, digest vectors: each target reads what it can),
//! agent/fuzz/seeds/TARGET (hand-made inputs) and agent/fuzz/regressions/
//! TARGET (inputs that once crashed it). tests/pipeline/fuzz_corpus.rs
//! replays the same files through the same code on stable.
//!
//! Under target/fuzz/: `corpus/TARGET` (what libFuzzer learnt, kept
//! between runs), `artifacts/TARGET` (crashing inputs), `logs/TARGET.log`
//! (libFuzzer's output), `build/` (the nightly, sanitizer build).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// Seconds per target when none is given on the command line.
pub const DEFAULT_SECONDS: u64 = 60;

/// Largest input libFuzzer makes (and the part of a seed it reads): the
/// largest fixture capture is 67 KB, most messages under 2 KB.
const MAX_LEN: usize = 64 << 10;

/// What one target did.
pub struct Report {
    pub target: String,
    pub executions: u64,
    pub seconds: u64,
    pub corpus: usize,
}

/// Runs `which` (a target name or `all`) for `seconds` each; prints and
/// returns the executions per target. Stops at the first failing target.
pub fn run(which: &str, seconds: u64) -> Result<Vec<Report>> {
    let all = targets()?;
    let selected: Vec<String> = match which {
        "all" => all,
        name if all.iter().any(|t| t == name) => vec![name.to_owned()],
        other => bail!(
            "unknown fuzz target `{other}`; choose one of: all, {}",
            all.join(", ")
        ),
    };
    ensure_cargo_fuzz()?;
    // One build for every target (cargo-fuzz builds them all anyway).
    fuzz_cmd(&["build"]).and_then(|mut c| cmd::status(&mut c))?;
    let mut reports = Vec::new();
    for target in &selected {
        let report = run_one(target, seconds)?;
        println!(
            "fuzz {:<12} {:>10} executions in {} s ({:.0}/s), corpus {} inputs",
            report.target,
            report.executions,
            report.seconds,
            report.executions as f64 / report.seconds.max(1) as f64,
            report.corpus
        );
        reports.push(report);
    }
    if reports.len() > 1 {
        println!("fuzz: executions per target");
        for r in &reports {
            println!("  {:<12} {}", r.target, r.executions);
        }
    }
    Ok(reports)
}

/// Installs cargo-fuzz from crates.io when it is missing (a fresh
/// machine; `cargo xtask setup` does not install it).
fn ensure_cargo_fuzz() -> Result<()> {
    let mut probe = Command::new("rustup");
    probe.args(["run", "nightly", "cargo", "fuzz", "--version"]);
    if cmd::probe(&mut probe).is_some() {
        return Ok(());
    }
    cmd::cargo(&["install", "cargo-fuzz", "--locked"])
}

/// The targets cargo-fuzz knows (the `[[bin]]`s of agent/fuzz).
fn targets() -> Result<Vec<String>> {
    let mut c = fuzz_cmd(&["list"])?;
    let out = c.output().context("cannot run `cargo fuzz list`")?;
    if !out.status.success() {
        bail!(
            "`cargo fuzz list` failed (is cargo-fuzz installed? `cargo install cargo-fuzz`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn run_one(target: &str, seconds: u64) -> Result<Report> {
    let root = cmd::workspace_root();
    let work = root.join("target/fuzz");
    let corpus = work.join("corpus").join(target);
    let seeds = work.join("seeds").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    for d in [&corpus, &artifacts, &logs] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    write_seeds(&root, target, &seeds)?;
    let log_path = logs.join(format!("{target}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut c = fuzz_cmd(&["run", target])?;
    c.arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={MAX_LEN}"))
        // A unit slower than this is a hang; more memory than this is a
        // leak or an unbounded table: both are failures.
        .arg("-timeout=20")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stdout(log.try_clone()?)
        .stderr(log);
    let status = c
        .status()
        .with_context(|| format!("cannot start the fuzzer for {target}"))?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {target} failed ({status}); log {}:\n{}\n\
             The input is in {}: reproduce with `cargo +nightly fuzz run --fuzz-dir agent/fuzz {target} FILE`, \
             then copy it to agent/fuzz/regressions/{target}/ (tests/pipeline/fuzz_corpus.rs replays it) and fix.",
            log_path.display(),
            tail.join("\n"),
            artifacts.display()
        );
    }
    Ok(Report {
        target: target.to_owned(),
        executions: final_stat(&text, "stat::number_of_executed_units").unwrap_or(0),
        seconds,
        corpus: fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0),
    })
}

/// A `stat::NAME: VALUE` line of libFuzzer's final statistics.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        l.strip_prefix(name)?
            .trim_start_matches(':')
            .trim()
            .parse()
            .ok()
    })
}

/// Fresh seed directory for `target`: fixtures, hand-made seeds and
/// regressions, one file each (names made unique by their folder).
fn write_seeds(root: &Path, target: &str, seeds: &Path) -> Result<()> {
    if seeds.exists() {
        fs::remove_dir_all(seeds).with_context(|| format!("clearing {}", seeds.display()))?;
    }
    fs::create_dir_all(seeds)?;
    let sources = [
        root.join("tests/fixtures"),
        root.join("agent/fuzz/seeds").join(target),
        root.join("agent/fuzz/regressions").join(target),
    ];
    let mut n = 0;
    for src in &sources {
        for file in files_under(src) {
            let rel = file.strip_prefix(root).unwrap_or(&file);
            let name = rel.to_string_lossy().replace('/', "__");
            fs::copy(&file, seeds.join(name))
                .with_context(|| format!("copying seed {}", file.display()))?;
            n += 1;
        }
    }
    if n == 0 {
        bail!("no seeds for {target} (tests/fixtures missing?)");
    }
    Ok(())
}

/// Every file under `dir`, recursively (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `cargo fuzz ARGS` with the nightly toolchain, on agent/fuzz, building
/// into target/fuzz/build, without the eBPF object (not needed to fuzz
/// userspace parsing).
fn fuzz_cmd(args: &[&str]) -> Result<Command> {
    let root = cmd::workspace_root();
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo", "fuzz"])
        .args(args)
        .current_dir(&root)
        .env("AYA_BUILD_SKIP", "1")
        // Set by the stable cargo running xtask; they would pin the build
        // to stable's tools and our target directory.
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .arg("--fuzz-dir")
        .arg(root.join("agent/fuzz"));
    if args.first() != Some(&"list") {
        c.arg("--target-dir").arg(root.join("target/fuzz/build"));
    }
    Ok(c)
}
