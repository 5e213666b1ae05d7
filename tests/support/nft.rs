//! nftables rules for the tests: the firewall a scenario needs, loaded in a
//! namespace with `nft -f`, and its counters read back as the truth of
//! what the firewall did. One table (`inet sipscope_test`), one chain per
//! hook; the namespace going away takes them with it.

use std::path::Path;

use super::netns::Netns;

/// Adds `rule` (nft syntax, e.g. `udp dport 16000 counter drop`) to the
/// `hook` chain (filter, priority 0, policy accept) in `ns`; `dir` keeps
/// the rule file for the logs.
pub fn add_rule(ns: &Netns, dir: &Path, hook: &str, rule: &str) {
    let path = dir.join(format!("{}-{hook}.nft", ns.name));
    std::fs::write(
        &path,
        format!(
            "table inet sipscope_test {{\n  chain {hook} {{\n    \
             type filter hook {hook} priority 0; policy accept;\n    {rule}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let out = ns.exec("nft", &["-f", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nft -f {rule:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Packets counted by the counters of the `hook` chain in `ns` (0 before
/// any rule is loaded).
pub fn counted(ns: &Netns, hook: &str) -> u64 {
    let out = ns.exec("nft", &["list", "chain", "inet", "sipscope_test", hook]);
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "packets")
        .filter_map(|w| w[1].parse::<u64>().ok())
        .sum()
}
