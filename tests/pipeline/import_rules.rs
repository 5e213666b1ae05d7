//! The layering of docs/architecture.md, checked on the source: the core
//! (clock, packets, SIP, analyses, findings) never reaches out to where
//! packets come from (`capture`) or where results go (`export`), and SIP
//! grammar never depends on what is concluded from it. A `use` that breaks
//! a rule fails here with the file and line, before review has to find it.

use std::path::{Path, PathBuf};

/// A module (a file or folder under agent/src) and the crate modules it
/// must not name.
struct Rule {
    module: &'static str,
    /// Groups of module names, any of which is forbidden.
    forbidden: &'static [&'static [&'static str]],
    why: &'static str,
}

const IO_EDGES: &[&str] = &["capture", "export", "session"];

/// What packet decoding and SIP grammar sit under.
const BELOW_THE_ANALYSES: &[&str] = &[
    "analysis",
    "diagnosis",
    "pipeline",
    "capture",
    "export",
    "session",
];

/// What the analyses and the catalogue must not reach.
const CORE: &[&str] = &["capture", "export", "session", "pipeline"];

const RULES: &[Rule] = &[
    Rule {
        module: "time.rs",
        forbidden: &[&["packet", "sip"], BELOW_THE_ANALYSES],
        why: "the packet clock is the bottom of the core",
    },
    Rule {
        module: "media_flow.rs",
        forbidden: &[&["packet", "sip"], BELOW_THE_ANALYSES],
        why: "RTP flow vocabulary, shared by the kernel reader and the media analysis",
    },
    Rule {
        module: "packet",
        forbidden: &[BELOW_THE_ANALYSES],
        why: "decoding knows nothing of what is concluded from it",
    },
    Rule {
        module: "sip",
        forbidden: &[BELOW_THE_ANALYSES],
        why: "SIP grammar is read one way, whoever asks",
    },
    Rule {
        module: "analysis",
        forbidden: &[CORE],
        why: "analyses are fed by the pipeline and return findings; no I/O",
    },
    Rule {
        module: "diagnosis",
        forbidden: &[CORE],
        why: "the catalogue is core vocabulary",
    },
    Rule {
        module: "pipeline",
        forbidden: &[IO_EDGES],
        why: "the pipeline is sans-IO; the session and the CLI drive it",
    },
    Rule {
        module: "capture",
        forbidden: &[&["export", "session", "pipeline"]],
        why: "capture produces packets; it does not know who consumes them",
    },
];

/// `crate::NAME` paths in code (comments and doc comments left out), with
/// their 1-based line numbers.
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // Only a whole path segment counts: `my_crate::x` is not ours.
            let boundary = rest[..at]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            if boundary && !name.is_empty() {
                found.push((i + 1, name));
            }
            rest = after;
        }
    }
    found
}

/// Unit-test files (`tests.rs`, `*_tests.rs`, a `tests/` folder) may
/// wire layers together, as a user of the crate does; the rules are for
/// the code that ships.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    name == "tests"
        || name.ends_with("_tests")
        || path.components().any(|c| c.as_os_str() == "tests")
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        rust_files(&entry.path(), out);
    }
}

fn violations(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for rule in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(rule.module), &mut files);
        files.retain(|f| !is_test_file(f.strip_prefix(src).unwrap_or(f)));
        for file in files {
            let source = std::fs::read_to_string(&file).expect("read a source file");
            for (line, name) in crate_paths(&source) {
                if rule.forbidden.iter().any(|g| g.contains(&name.as_str())) {
                    out.push(format!(
                        "{}:{line}: {} must not use crate::{name} ({})",
                        file.strip_prefix(src).unwrap_or(&file).display(),
                        rule.module,
                        rule.why
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn the_core_never_imports_the_io_edges() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert!(
        src.join("analysis").is_dir() && src.join("sip").is_dir(),
        "agent/src layout changed: update RULES in {}",
        file!()
    );
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "import rules of docs/architecture.md broken:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_forbidden_path_is_found_and_comments_are_not() {
    let source = "\
use crate::time::Timestamp;
// use crate::export::console; (a comment)
/// See [`crate::capture::live`].
fn f() { let _ = crate::export::json::x(); }
use sipscope_crate::export;
";
    let found: Vec<_> = crate_paths(source);
    assert_eq!(
        found,
        vec![(1, "time".to_string()), (4, "export".to_string())]
    );

    let dir = std::env::temp_dir().join(format!("sipscope-import-rules-{}", std::process::id()));
    let analysis = dir.join("analysis");
    std::fs::create_dir_all(&analysis).unwrap();
    std::fs::write(analysis.join("x.rs"), source).unwrap();
    std::fs::create_dir_all(analysis.join("tests")).unwrap();
    std::fs::write(analysis.join("tests").join("y.rs"), source).unwrap();
    std::fs::write(analysis.join("x_tests.rs"), source).unwrap();
    let found = violations(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 1, "test files are exempt: {found:?}");
    assert!(found[0].starts_with("analysis/x.rs:4:"), "{found:?}");
}
