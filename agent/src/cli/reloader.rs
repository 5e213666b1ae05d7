//! SIGHUP in `sipscope run`: the file read again under the same command
//! line and environment, checked as at start; the live settings
//! (thresholds, credentials, HEP and OTLP export) handed to the core as
//! one input, the rest reported as waiting for a restart (docs/config.md).

use std::ffi::OsString;
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;

use sipscope::export::hep::{HepConfig, HepSink};
use sipscope::export::otel::{Metrics, SpanSink, Telemetry};
use sipscope::export::shared_stdout::SharedStdout;
use sipscope::pipeline::PipelineConfig;
use sipscope::session::Session;

use super::config::{self, Resolved, Setting, reload};
use super::console_choice::Output;
use super::run::{CoreInput, agent_line, preflight};

/// What a reload hands to the core.
pub(super) struct Retune {
    pipeline: PipelineConfig,
    /// HEP settings changed: the sink to export to from now on (`None`:
    /// HEP off) and the endpoint of the one it replaces.
    hep: Option<(Option<HepSink>, Option<String>)>,
    /// OTLP settings changed: where spans and metrics go from now on, and
    /// the signal that the core no longer hands spans to the old export
    /// (which may then flush and stop).
    otlp: Option<(Option<SpanSink>, Metrics, tokio::sync::oneshot::Sender<()>)>,
}

/// What a reload did: the lines to show, the OTLP export that replaces
/// the running one, if its settings changed, and the SIP ports (besides
/// the default) for the kernel's port map, if they changed.
pub(super) struct Reloaded {
    pub(super) lines: Vec<String>,
    pub(super) otlp: Option<NewExport>,
    pub(super) sip_ports: Option<Vec<u16>>,
}

/// An OTLP export started by a reload. The caller keeps it (for the
/// summary at exit) and retires the one it replaces once `applied` fires.
pub(super) struct NewExport {
    pub(super) telemetry: Telemetry,
    pub(super) applied: tokio::sync::oneshot::Receiver<()>,
}

impl Retune {
    /// On the core thread, between two inputs.
    pub(super) fn apply<W: std::io::Write>(
        self,
        session: &mut Session<W>,
        retired: &mut RetiredHep,
    ) {
        session.retune(&self.pipeline);
        if let Some((sink, metrics, applied)) = self.otlp {
            session.retarget_spans(sink, metrics);
            // The receiver is gone only if run is already exiting.
            let _ = applied.send(());
        }
        if let Some((new, old_url)) = self.hep
            && let Some(old) = session.replace_hep(new)
        {
            retired.finish(old, old_url.unwrap_or_default());
        }
    }
}

/// HEP sinks replaced by a reload: each drains its queue on a thread of
/// its own (the core does not wait for a slow collector) and prints its
/// counters; joined when the core ends.
pub(super) struct RetiredHep {
    out: SharedStdout,
    output: Output,
    draining: Vec<JoinHandle<()>>,
}

impl RetiredHep {
    pub(super) fn new(out: SharedStdout, output: Output) -> Self {
        Self {
            out,
            output,
            draining: Vec::new(),
        }
    }

    fn finish(&mut self, sink: HepSink, url: String) {
        let mut out = self.out.handle();
        let output = self.output;
        self.draining.push(std::thread::spawn(move || {
            let stats = sink.finish();
            let summary = stats.line(&url);
            let line = format!(
                "config reload: previous HEP export ended: {}",
                summary.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            // Nothing left to tell if stdout is gone.
            let _ = agent_line(&mut out, output, "config", &line)
                .and_then(|()| std::io::Write::flush(&mut out));
        }));
    }

    pub(super) fn join(self) {
        for t in self.draining {
            let _ = t.join();
        }
    }
}

/// The configuration `run` is running with, and how to read it again.
pub(super) struct Reloader {
    /// `run`'s command line (flags keep winning over the file).
    argv: Vec<OsString>,
    /// The settings running now.
    running: Vec<Setting>,
    /// The HEP export running now.
    hep: Option<HepConfig>,
    /// Where spans go as JSON lines without an OTLP endpoint (`--json`).
    span_json: Option<SharedStdout>,
    /// Reads an environment variable (the process's; a test's own).
    env: fn(&str) -> Option<String>,
}

impl Reloader {
    pub(super) fn new(argv: Vec<OsString>, running: Vec<Setting>, hep: Option<HepConfig>) -> Self {
        Self {
            argv,
            running,
            hep,
            span_json: None,
            env: |name| std::env::var(name).ok(),
        }
    }

    /// With `--json`, an export a reload starts without an OTLP endpoint
    /// writes spans as JSON lines here, as the one at start does.
    pub(super) fn spans_as_json_to(&mut self, out: SharedStdout) {
        self.span_json = Some(out);
    }

    /// The HEP export running now (for the summary at exit).
    pub(super) fn hep(&self) -> Option<&HepConfig> {
        self.hep.as_ref()
    }

    /// Lines saying what the reload did; a broken configuration changes
    /// nothing and says why in one line.
    pub(super) fn reload(&mut self, tx: &SyncSender<CoreInput>) -> anyhow::Result<Reloaded> {
        let (resolved, retune, hep, otlp) = match self.read() {
            Ok(r) => r,
            Err(e) => {
                return Ok(Reloaded {
                    lines: vec![format!(
                        "config reload failed, kept the old configuration: {}",
                        super::describe(&e)
                    )],
                    otlp: None,
                    sip_ports: None,
                });
            }
        };
        // Blocking, unlike frames: a reload must not be lost to a full
        // queue. The core drains it within a batch.
        tokio::task::block_in_place(|| tx.send(CoreInput::Retune(Box::new(retune))))
            .map_err(|_| anyhow::anyhow!("the analysis thread stopped early"))?;
        let changes = reload::changes(&self.running, &resolved.settings);
        let sip_ports = changes
            .iter()
            .any(|c| c.key == "sip-port")
            .then(|| resolved.args.sip_ports.clone());
        let mut lines: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        let applied = changes.iter().filter(|c| c.live).count();
        let mut summary = format!(
            "config reloaded from {}: {applied} applied, {} need a restart",
            config::file_label(resolved.file.as_deref()),
            changes.len() - applied
        );
        if let Some(c) = resolved
            .setting("credentials")
            .filter(|c| !c.values.is_empty())
        {
            summary.push_str(&format!(
                "; credentials re-read from {}",
                c.values.join(",")
            ));
        }
        lines.push(summary);
        self.running = reload::running_after(&self.running, &resolved.settings);
        if let Some(hep) = hep {
            self.hep = hep;
        }
        Ok(Reloaded {
            lines,
            otlp,
            sip_ports,
        })
    }

    /// The new configuration, checked like at start, and what the core
    /// gets of it. An OTLP export and a HEP sink are started only when
    /// their settings changed (`Some` of the new HEP configuration); the
    /// OTLP one first, so that a configuration it refuses starts nothing.
    #[allow(clippy::type_complexity)]
    fn read(
        &self,
    ) -> anyhow::Result<(
        Resolved,
        Retune,
        Option<Option<HepConfig>>,
        Option<NewExport>,
    )> {
        let resolved = config::resolve(&self.argv, &self.env)?;
        let (pipeline, hep_config) = preflight(&resolved.args)?;
        let changes = reload::changes(&self.running, &resolved.settings);
        let hep_changed = changes.iter().any(|c| reload::is_hep(&c.key));
        let otlp_changed = changes.iter().any(|c| reload::is_otlp(&c.key));
        let mut retune = Retune {
            pipeline,
            hep: None,
            otlp: None,
        };
        let otlp = if otlp_changed {
            let json = self
                .span_json
                .as_ref()
                .map(|o| Box::new(o.handle()) as Box<dyn std::io::Write + Send>);
            let telemetry = Telemetry::start(&resolved.args.otlp, json)
                .map_err(|e| anyhow::anyhow!("cannot start OTLP export: {e}"))?;
            let (tx, applied) = tokio::sync::oneshot::channel();
            retune.otlp = Some((telemetry.span_sink(), telemetry.metrics(), tx));
            Some(NewExport { telemetry, applied })
        } else {
            None
        };
        if !hep_changed {
            return Ok((resolved, retune, None, otlp));
        }
        let sink = match &hep_config {
            Some(c) => Some(HepSink::start(c).map_err(|e| {
                anyhow::anyhow!("cannot start HEP export to {}: {e}", c.endpoint.url)
            })?),
            None => None,
        };
        retune.hep = Some((sink, self.hep.as_ref().map(|c| c.endpoint.url.clone())));
        Ok((resolved, retune, Some(hep_config), otlp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reload path without a kernel: a valid file hands the core new
    /// thresholds; a credentials file others can read is refused and
    /// nothing reaches the core.
    #[test]
    fn a_reload_hands_the_core_new_thresholds_or_keeps_the_old_ones() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sipscope.toml");
        std::fs::write(&file, "iface = [\"lo\"]\n").unwrap();
        let argv: Vec<OsString> = vec!["run".into(), "--config".into(), file.clone().into()];
        let resolved = config::resolve(&argv, &|_| None).unwrap();
        let mut reloader = Reloader {
            env: |_| None,
            ..Reloader::new(argv, resolved.settings, None)
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);

        std::fs::write(&file, "iface = [\"lo\"]\nmin-mos = 4.1\n").unwrap();
        let lines = reloader.reload(&tx).unwrap().lines;
        assert_eq!(
            lines,
            [
                format!(
                    "config reload: min-mos 3.6 -> 4.1 (file {}:2): applied",
                    file.display()
                ),
                format!(
                    "config reloaded from {}: 1 applied, 0 need a restart",
                    file.display()
                ),
            ]
        );
        match rx.try_recv() {
            Ok(CoreInput::Retune(r)) => {
                assert_eq!(r.pipeline.calls.checks.thresholds.min_mos, 4.1);
                assert!(r.hep.is_none(), "HEP untouched");
            }
            _ => panic!("no new configuration for the core"),
        }

        let creds = dir.path().join("creds.toml");
        std::fs::write(
            &creds,
            "[[credential]]\nusername = \"1001\"\npassword = \"x\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o604)).unwrap();
        std::fs::write(
            &file,
            format!("iface = [\"lo\"]\ncredentials = \"{}\"\n", creds.display()),
        )
        .unwrap();
        let lines = reloader.reload(&tx).unwrap().lines;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "config reload failed, kept the old configuration: cannot use the credentials file"
            ) && lines[0].ends_with(&format!(
                "run `chmod 600 {}` and try again",
                creds.display()
            )),
            "{lines:?}"
        );
        assert!(rx.try_recv().is_err(), "a refused reload reached the core");
        // What runs is what the last good reload applied.
        let min_mos = reloader
            .running
            .iter()
            .find(|s| s.key == "min-mos")
            .unwrap();
        assert_eq!(min_mos.values, ["4.1"]);

        // HEP on: a new sink for the core, the change applied live.
        std::fs::write(
            &file,
            "iface = [\"lo\"]\nmin-mos = 4.1\nhep-endpoint = \"udp://127.0.0.1:9\"\n",
        )
        .unwrap();
        let lines = reloader.reload(&tx).unwrap().lines;
        assert_eq!(
            lines[0],
            format!(
                "config reload: hep-endpoint (not set) -> \"udp://127.0.0.1:9\" (file {}:3): applied",
                file.display()
            )
        );
        match rx.try_recv() {
            Ok(CoreInput::Retune(r)) => {
                let (sink, replaced) = r.hep.expect("HEP changed");
                assert!(sink.is_some() && replaced.is_none());
            }
            _ => panic!("no new configuration for the core"),
        }
        assert_eq!(reloader.hep().unwrap().endpoint.url, "udp://127.0.0.1:9");
        // HEP off again: no sink, the old endpoint named for its counters.
        std::fs::write(&file, "iface = [\"lo\"]\nmin-mos = 4.1\n").unwrap();
        reloader.reload(&tx).unwrap();
        match rx.try_recv() {
            Ok(CoreInput::Retune(r)) => {
                let (sink, replaced) = r.hep.expect("HEP changed");
                assert!(sink.is_none());
                assert_eq!(replaced.as_deref(), Some("udp://127.0.0.1:9"));
            }
            _ => panic!("no new configuration for the core"),
        }
        assert!(reloader.hep().is_none());
    }
}
