//! The fuzz targets' bodies ([`sipscope::fuzzing`]) on stable, over the
//! seeds `cargo xtask fuzz` starts from (every file under tests/fixtures
//! and agent/fuzz/seeds/TARGET) and every input that once crashed a
//! target (agent/fuzz/regressions/TARGET): a crash found once stays a
//! test, and the targets cannot rot unnoticed.

use std::path::{Path, PathBuf};

use crate::common::workspace;

/// What libFuzzer reads of a seed (`-max_len` in xtask/src/fuzz.rs).
const MAX_LEN: usize = 64 << 10;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn every_fuzz_target_survives_its_seeds_and_regressions() {
    let root = workspace();
    let fixtures = files_under(&root.join("tests/fixtures"));
    assert!(fixtures.len() > 50, "fixtures missing: {fixtures:?}");
    for (name, target) in sipscope::fuzzing::TARGETS {
        let mut inputs = fixtures.clone();
        inputs.extend(files_under(&root.join("agent/fuzz/seeds").join(name)));
        inputs.extend(files_under(&root.join("agent/fuzz/regressions").join(name)));
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            let data = &data[..data.len().min(MAX_LEN)];
            // A panic names the target and the input that caused it.
            let r = std::panic::catch_unwind(|| target(data));
            assert!(r.is_ok(), "fuzz target {name} failed on {}", path.display());
        }
    }
}

/// The fuzz crate's targets are exactly [`sipscope::fuzzing::TARGETS`],
/// each a one-line call of the function of its name.
#[test]
fn the_fuzz_crate_has_one_target_per_fuzzing_function() {
    let root = workspace().join("agent/fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("name = ")))
        .map(|n| n.trim_matches('"'))
        .collect();
    bins.sort_unstable();
    let mut names: Vec<&str> = sipscope::fuzzing::TARGETS.iter().map(|t| t.0).collect();
    names.sort_unstable();
    assert_eq!(bins, names);
    for name in names {
        let src = std::fs::read_to_string(root.join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(
            src.contains(&format!("sipscope::fuzzing::{name}(data)")),
            "{name}: {src}"
        );
    }
}
