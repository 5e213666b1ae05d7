//! SIGHUP: what changed between the running configuration and the
//! re-read one, and whether each change applies live or needs a restart.

use std::fmt;

use super::{Origin, Setting};

/// Settings applied to the running analysis without reattaching
/// (`Session::retune`): the diagnosis thresholds and known credentials,
/// the SIP ports (also written to the kernel's port map); and the HEP and
/// OTLP settings ([`is_hep`], [`is_otlp`]). Everything else (interfaces,
/// ring and table sizes, output format) is fixed when `run` starts.
pub(crate) const LIVE: &[&str] = &[
    "sip-port",
    "credentials",
    "challenge-loop-after",
    "media-grace",
    "max-loss",
    "max-jitter",
    "min-mos",
];

/// HEP settings: a reload that changes any starts a new HEP sink (the
/// old one drains and reports its counters).
const HEP_PREFIX: &str = "hep-";

/// Whether a HEP setting (applied live by replacing the sink).
pub(crate) fn is_hep(key: &str) -> bool {
    key.starts_with(HEP_PREFIX)
}

/// OTLP settings: a reload that changes any starts a new OTLP export
/// (the old one flushes what it holds and reports its counters).
const OTLP_PREFIX: &str = "otlp-";

/// Whether an OTLP setting (applied live by replacing the export).
pub(crate) fn is_otlp(key: &str) -> bool {
    key.starts_with(OTLP_PREFIX)
}

/// Whether a change of `key` applies without a restart.
pub(crate) fn is_live(key: &str) -> bool {
    LIVE.contains(&key) || is_hep(key) || is_otlp(key)
}

/// One setting whose value differs after a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) key: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) origin: Origin,
    pub(crate) live: bool,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config reload: {} {} -> {} ({}): ",
            self.key, self.from, self.to, self.origin
        )?;
        if self.live {
            f.write_str("applied")
        } else {
            write!(
                f,
                "needs a restart, still running with {} = {}",
                self.key, self.from
            )
        }
    }
}

/// The settings that differ between `running` and `reloaded`, in
/// definition order.
pub(crate) fn changes(running: &[Setting], reloaded: &[Setting]) -> Vec<Change> {
    reloaded
        .iter()
        .filter_map(|new| {
            let old = running.iter().find(|s| s.key == new.key)?;
            (old.values != new.values).then(|| Change {
                key: new.key.clone(),
                from: old.toml_value(),
                to: new.toml_value(),
                origin: new.origin.clone(),
                live: is_live(&new.key),
            })
        })
        .collect()
}

/// The configuration running after a reload: the live settings taken
/// from `reloaded`, the others kept as they were started (a later reload
/// still reports them as waiting for a restart).
pub(crate) fn running_after(running: &[Setting], reloaded: &[Setting]) -> Vec<Setting> {
    running
        .iter()
        .map(|old| {
            match reloaded
                .iter()
                .find(|s| s.key == old.key && is_live(&s.key))
            {
                Some(new) => new.clone(),
                None => old.clone(),
            }
        })
        .collect()
}
