//! SIPp as a peer: the account the registration scenarios use and the
//! figures of its final statistics screen.

/// SIPp keys of the phone registering account 1001 for 60 s
/// (tests/fixtures/scenarios/registrar.cfg, sipp/register.xml).
pub const ACCOUNT_1001: &[&str] = &[
    "-s",
    "1001",
    "-au",
    "1001",
    "-ap",
    "secret1001",
    "-key",
    "expires",
    "60",
];

/// The cumulative count of SIPp's final statistics row `row`
/// ("Successful call", "Failed call", ...).
pub fn sipp_count(stdout: &str, row: &str) -> u64 {
    stdout
        .lines()
        .rfind(|l| l.trim_start().starts_with(row))
        .and_then(|l| l.rsplit('|').find_map(|c| c.trim().parse().ok()))
        .unwrap_or(0)
}
