//! SIGHUP: what changed between the running configuration and the
//! re-read one, and whether each change applies live or needs a restart.

use std::fmt;

use super::{Origin, Setting};

/// Settings applied to the running analysis without reattaching
/// (`Session::retune`): the diagnosis thresholds and known credentials.
/// Everything else (interfaces, ports, ring and table sizes, exporters,
/// output format) is fixed when `run` starts.
pub(crate) const LIVE: &[&str] = &[
    "credentials",
    "challenge-loop-after",
    "media-grace",
    "max-loss",
    "max-jitter",
    "min-mos",
];

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
                live: LIVE.contains(&new.key.as_str()),
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
                .find(|s| s.key == old.key && LIVE.contains(&s.key.as_str()))
            {
                Some(new) => new.clone(),
                None => old.clone(),
            }
        })
        .collect()
}
