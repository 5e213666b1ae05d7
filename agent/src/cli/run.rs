//! `sipscope run`: live capture through the same SIP pipeline as
//! `analyze`. The async edge reads the ring buffer, keeps `--write-pcap`
//! and hands each packet over a bounded channel (a full channel is a
//! counted drop, never a stall of the reader) to the synchronous core on
//! its own thread: pipeline → call-flow lines or JSON records, and spans
//! into the export queue. A periodic tick on the capture clock lets
//! packet-clock timers fire when traffic stops. SIGINT/SIGTERM detach,
//! finish the pipeline and print kernel, pipeline and export counters.
//!
//! The kernel's drop tracer adds one `DROP` line per SIP/RTP packet this
//! host dropped ([`super::drop_lines`]), and the RTP flow table a summary
//! per flow periodically and at exit ([`super::rtp_summary`]).
//!
//! Frames the pipeline cannot show as SIP messages but the kernel flagged
//! (ICMP errors about SIP, truncated copies) get a frame line of their own.

use std::{
    ffi::OsString,
    io::Write as _,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::mpsc::{Receiver, SyncSender, TrySendError},
    time::Duration,
};

use super::rtp_summary::RtpKernel;
use anyhow::Context as _;
use etherparse::{SlicedPacket, TransportSlice};
use sipscope::{
    analysis::media::RtpSource,
    capture::live::{
        DropTracing, IngressChoice, LiveCapture, LiveConfig, LiveDrop, LiveError, LiveFrame,
        TlsMode, privilege,
    },
    export::{
        json,
        otel::{CaptureTotals, OtlpArgs, OtlpConfig, Telemetry},
        pcap_ring::PcapRing,
        pcap_writer::PcapFileWriter,
        service_log::{LogFormat, LogLine},
        shared_stdout::SharedStdout,
        trace_builder::TraceStats,
    },
    packet::{Direction, DroppedPacket, LinkType, Packet, Plaintext},
    pipeline::{PipelineConfig, Stats},
    session::{Input, Session, SessionConfig, Spans},
    time::Timestamp,
};
use sipscope_common::{CaptureCounter, DEFAULT_RING_SIZE, Transport};
use tokio::signal::unix::{SignalKind, signal};

use super::config::Resolved;
use super::console_choice::{ConsoleChoice, Output, Surroundings, choose};
use super::pcap_args::line as pcap_line;
use super::readiness;
use super::records::{CaptureRecord, KernelFeatureRecord, write_record};
use super::reloader::{Reloader, RetiredHep, Retune};
use super::telemetry::{export_line, metrics_line, target, write_export_json};
use sipscope::export::hep::{HepArgs, HepConfig, HepSink, HepStats, Overflow};
use sipscope::export::prometheus::{CounterGroup, Health};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// TOML file of settings, keys named like these flags (docs/config.md);
    /// flags and SIPSCOPE_* variables override it [default:
    /// /etc/sipscope/sipscope.toml, or SIPSCOPE_CONFIG; absent there is
    /// fine, a file named here must exist].
    #[arg(long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Interface to capture on (repeatable; at least one, from a flag,
    /// SIPSCOPE_IFACE or the file).
    #[arg(long = "iface", short = 'i', value_name = "IFACE")]
    ifaces: Vec<String>,
    /// Additional SIP port (repeatable); 5060 is always included.
    #[arg(long = "sip-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) sip_ports: Vec<u16>,
    /// Kernel ring buffer size in bytes: a power of two, multiple of the page
    /// size. Each frame takes its length plus 72 bytes (up to ~8 KiB); when the
    /// ring is full frames are lost and counted as ringbuf_full.
    #[arg(long = "ring-size", value_name = "BYTES", default_value_t = DEFAULT_RING_SIZE)]
    ring_size: u32,
    #[command(flatten)]
    pcap: super::pcap_args::PcapArgs,
    /// One JSON object per line (messages, transactions, summary; and spans
    /// when no OTLP endpoint is set) instead of the call flow.
    #[arg(long)]
    json: bool,
    /// What stdout shows: `flow` (a line per SIP message, the calls up
    /// every 10 s, tables at exit), `events` (one log line per finding and
    /// per call or registration state change, nothing periodic), `auto`
    /// (events when stdout is not a terminal and a service manager set
    /// INVOCATION_ID or JOURNAL_STREAM, else flow).
    #[arg(long, value_enum, default_value_t = ConsoleChoice::Auto, conflicts_with = "json")]
    console: ConsoleChoice,
    /// Format of the events and of the agent's own log lines (stderr):
    /// `text` (logfmt) or `json` (one object per line, for journald and
    /// Loki). `json` alone selects the events console.
    #[arg(
        long = "log-format",
        value_enum,
        value_name = "FORMAT",
        conflicts_with = "json"
    )]
    log_format: Option<LogFormat>,
    /// Print details for bug reports, such as the kernel verifier's log
    /// when it rejects a program.
    #[arg(long)]
    verbose: bool,
    /// Frames buffered between the capture reader and the analysis core;
    /// when full, frames are dropped and counted (core_queue_full).
    #[arg(long = "core-queue", value_name = "FRAMES", default_value_t = 4096,
          value_parser = frames_in_queue)]
    core_queue: usize,
    /// Write every dropped SIP/RTP packet the kernel reported to this pcap
    /// file (raw IP: the packet as it was when dropped).
    #[arg(long = "write-drops-pcap", value_name = "FILE")]
    write_drops_pcap: Option<PathBuf>,
    /// Do not trace packets the kernel drops (kfree_skb).
    #[arg(long = "no-drops")]
    no_drops: bool,
    /// Hook for received frames: `auto` takes native XDP where the driver
    /// runs it in the driver, TC ingress on a veth (where XDP costs more)
    /// and where the driver has no native XDP; `xdp` forces native XDP,
    /// `tc` TC ingress.
    #[arg(long, value_enum, default_value_t = IngressChoice::Auto)]
    ingress: IngressChoice,
    /// SIP over TLS in clear (docs/tls.md): `auto` probes the OpenSSL
    /// library of every asterisk, freeswitch, kamailio and opensips
    /// process, also those started later; `off`; or the process ids to
    /// probe, comma-separated.
    #[arg(long, value_name = "off|auto|PID,...", default_value = "auto")]
    tls: TlsMode,
    /// Seconds a request waits for its final response before it counts as
    /// unanswered (RFC 3261 Timer B/F, 64*T1 = 32 s). For tests and labs.
    #[arg(long = "transaction-timeout", value_name = "SECS", hide = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    transaction_timeout: Option<u64>,
    /// Serve Prometheus/OpenMetrics `/metrics` and `/healthz` on this
    /// address, e.g. 127.0.0.1:9464 or [::]:9464 (docs/metrics.md).
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    rtp: super::rtp_summary::RtpArgs,
    #[command(flatten)]
    analysis: super::analysis_args::AnalysisArgs,
    #[command(flatten)]
    pub(super) otlp: OtlpArgs,
    #[command(flatten)]
    hep: HepArgs,
}

/// How often the core is ticked with the capture clock when idle.
const TICK: Duration = Duration::from_millis(500);
/// A batch smaller than this is handed over, then the ring is left alone
/// for [`COALESCE`], so that one wake-up of this task and of the analysis
/// thread carries many messages instead of one each (the programs wake
/// only a reader that announced it waits, which `next_batch` does only
/// when it found the ring empty). Wake-ups, not messages,
/// were most of the agent's CPU: at 5,000 messages/s, 2 ms cost 37 µs a
/// message and 10 ms 28 µs (`cargo xtask bench sipp`, same session).
/// Frames wait at most that long: 10 ms at 50,000 messages/s is about
/// 1 MiB of the 4 MiB default ring, and a batch this large (the reader is
/// behind) is followed by the next read at once.
const SMALL_BATCH: usize = 512;
const COALESCE: Duration = Duration::from_millis(10);

/// What the async edge hands to the core.
pub(super) enum CoreInput {
    Frame {
        packet: Packet,
        /// A frame line for what the kernel flagged (ICMP, truncation).
        note: Option<String>,
    },
    Tick(Timestamp),
    /// A packet the kernel dropped (fw.local_drop, and the reason behind
    /// a later net.no_response).
    Drop(DroppedPacket),
    /// A reloaded configuration (SIGHUP): its live settings apply from
    /// the next input on.
    Retune(Box<Retune>),
    /// What a PBX's TLS library read or wrote.
    Plaintext(Plaintext),
}

/// `--core-queue`: at least one frame. With none, every frame the core is
/// not already waiting for would be dropped.
fn frames_in_queue(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err(
            "must be at least 1: a queue of 0 frames drops every frame that \
                      arrives while the core is busy (the default is 4096)"
                .to_owned(),
        ),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The interfaces, each once: the same `--iface` twice would attach our
/// XDP program twice and fail as if another program held the interface.
fn distinct_interfaces(ifaces: &[String]) -> anyhow::Result<Vec<String>> {
    let mut seen: Vec<String> = Vec::with_capacity(ifaces.len());
    for i in ifaces {
        if seen.contains(i) {
            anyhow::bail!("--iface {i} is given twice; name each interface once");
        }
        seen.push(i.clone());
    }
    Ok(seen)
}

impl RunArgs {
    /// What stdout shows and how log lines look, decided once from the
    /// flags and the surroundings (a terminal, a service manager).
    pub fn output(&self) -> anyhow::Result<Output> {
        choose(
            self.json,
            self.console,
            self.log_format,
            &Surroundings::of_this_process(),
        )
        .map_err(anyhow::Error::msg)
    }
}

/// What `run` checks before it creates a file or attaches anything:
/// interfaces, output choice, analysis options (credentials file mode
/// included), the HEP and OTLP endpoints. `sipscope config check` makes
/// the same checks.
pub(super) fn preflight(args: &RunArgs) -> anyhow::Result<(PipelineConfig, Option<HepConfig>)> {
    args.output()?;
    distinct_interfaces(&args.ifaces)?;
    let mut pipeline_config = PipelineConfig::default();
    pipeline_config.decoder.sip_ports.extend(&args.sip_ports);
    args.analysis.apply(&mut pipeline_config)?;
    if let Some(secs) = args.transaction_timeout {
        pipeline_config.transactions.timeout = Duration::from_secs(secs);
    }
    // Capture never waits for the collector: a full queue drops.
    let hep_config = args.hep.resolve(Overflow::Drop)?;
    OtlpConfig::from_args(&args.otlp).context("OTLP export")?;
    Ok((pipeline_config, hep_config))
}

/// `run` with its resolved configuration; `argv` (from `run` on) is read
/// again with the file and environment on SIGHUP.
pub fn main(config: Resolved, argv: Vec<OsString>) -> anyhow::Result<ExitCode> {
    preflight(&config.args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Capabilities are per thread: the runtime's threads never touch
        // BPF objects (run() itself runs on this thread), so they hold none.
        .on_thread_start(privilege::drop_all_on_this_thread)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config, argv))
}

async fn run(resolved: Resolved, argv: Vec<OsString>) -> anyhow::Result<ExitCode> {
    // Bad options (e.g. a credentials file others can read) fail before
    // anything is attached or created.
    let (mut pipeline_config, hep_config) = preflight(&resolved.args)?;
    let mut reloader = Reloader::new(argv, resolved.settings, hep_config.clone());
    let args = resolved.args;
    let output = args.output()?;
    let config = LiveConfig {
        interfaces: args.ifaces.clone(),
        sip_ports: args.sip_ports.clone(),
        ring_size: args.ring_size,
        trace_drops: !args.no_drops,
        ingress: args.ingress,
        rtp: args.rtp.settings(),
        tls: args.tls.clone(),
        ..LiveConfig::default()
    };
    let mut drops_pcap = match &args.write_drops_pcap {
        Some(path) => Some(PcapFileWriter::create_for(path, LinkType::RawIp)?),
        None => None,
    };
    let mut out = SharedStdout::new();
    let span_json = args
        .json
        .then(|| Box::new(out.handle()) as Box<dyn std::io::Write + Send>);
    let mut telemetry = Telemetry::start(&args.otlp, span_json).context("OTLP export")?;
    if args.json {
        reloader.spans_as_json_to(out.handle());
    }
    // OTLP exports a reload replaced, flushing on their own task.
    let mut retired_exports = Vec::new();
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // Bound before anything is attached: a taken port fails the start.
    let prometheus = match args.metrics_listen {
        Some(addr) => Some(super::metrics_endpoint::start(addr, &telemetry)?),
        None => None,
    };
    let mut capture = match LiveCapture::start(&config) {
        Ok(c) => c,
        Err(e) => {
            if let LiveError::VerifierRejected { log, .. } = &e
                && args.verbose
            {
                eprintln!("verifier log:\n{log}");
            }
            return Err(anyhow::Error::new(e).context("cannot start live capture"));
        }
    };
    let pcap = args.pcap.start(capture.attachments())?;
    if let (Some(p), Some(w)) = (&prometheus, &pcap) {
        let counters = w.counters();
        p.metrics.add_live(Box::new(move || {
            CounterGroup::from_serialize(
                "pcap_writer",
                "--write-pcap: frames written, not_written (write errors such as a full disk), \
                 queue_full (the writer fell behind), files started and deleted (--pcap-keep), write_errors",
                "counter",
                &counters.snapshot(),
            )
        }));
    }
    let rtp = RtpKernel::start(&mut capture, &args.rtp)?;
    // Calls are judged on the kernel's RTP statistics (none with RTP off).
    pipeline_config.calls.observations.ports = args.rtp.settings().ports;
    pipeline_config.calls.observations.source = if rtp.is_some() {
        RtpSource::Kernel
    } else {
        RtpSource::None
    };
    // An answered request waits for its UA's timeout only when the drop
    // tracer could still report its response dropped by this host.
    pipeline_config.reachability.sees_local_drops =
        matches!(capture.drop_tracing(), DropTracing::On(_));
    // What runs for each kernel feature, and why when it is not the best.
    for line in capture.feature_lines() {
        match output {
            Output::Json => write_record(&mut out, &KernelFeatureRecord::new(&line))?,
            Output::Flow => writeln!(out, "{line}")?,
            Output::Events(f) => writeln!(
                out,
                "{}",
                LogLine::now("info", "kernel_feature")
                    .fields_of(&line)
                    .render(f)
            )?,
        }
    }
    let tracing = match capture.drop_tracing() {
        DropTracing::On(reasons) => {
            let names: Vec<&str> = reasons.iter().map(|r| r.name.as_str()).collect();
            Some(format!("tracing drops: {}", names.join(",")))
        }
        DropTracing::Off => None,
        DropTracing::Unavailable(e) => Some(format!("{e}; capturing SIP without it")),
    };
    if let Some(line) = tracing {
        agent_line(&mut out, output, "drop_tracing", &line)?;
    }
    let tls_lines = tls_start_lines(&mut capture, &args.tls);
    show_lines(&mut out, output, &tls_lines)?;
    // Everything is attached: keep only what detaching and map reads need.
    // Threads started from here on (the core, HEP) inherit the reduced set.
    let dropped = capture
        .drop_privileges()
        .context("dropping capabilities after attaching")?;
    agent_line(&mut out, output, "capabilities", &dropped.to_string())?;
    // Printed last: tests and scripts wait for it as "ready".
    for a in capture.attachments() {
        agent_line(&mut out, output, "capturing", &format!("capturing on {a}"))?;
    }
    out.flush()?;
    if let Some(p) = &prometheus {
        p.health.set_attached(true);
    }

    let (tx, rx) = std::sync::mpsc::sync_channel(args.core_queue);
    let session = Session::new(
        SessionConfig {
            pipeline: pipeline_config,
            format: output.format(),
            rtp_interval: rtp.as_ref().map(|r| r.interval),
        },
        out.handle(),
        Spans::new(&telemetry),
    );
    let session = match &hep_config {
        Some(c) => session.with_hep(HepSink::start(c).context("starting HEP export")?),
        None => session,
    };
    let (session, health) = match &prometheus {
        Some(p) => (
            session.with_prometheus(p.metrics.clone()),
            Some(p.health.clone()),
        ),
        None => (session, None),
    };
    let retired = RetiredHep::new(out.handle(), output);
    let core = std::thread::Builder::new()
        .name("sipscope-core".into())
        .spawn(move || core(rx, session, rtp, health, retired))
        .context("starting the analysis thread")?;

    let ifaces: Vec<&str> = capture
        .attachments()
        .iter()
        .map(|a| a.iface.as_str())
        .collect();
    readiness::ready(&format!("capturing on {}", ifaces.join(", ")));

    let mut metrics = telemetry.metrics();
    let mut core_drops = 0u64;
    let (mut frames, mut drops, mut plaintext) = (Vec::new(), Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            r = capture.next_batch(&mut frames, &mut drops) => {
                r?;
                let small = frames.len() < SMALL_BATCH;
                hand_over(&mut frames, &tx, pcap.as_ref(), &mut core_drops)?;
                if small {
                    // This loop runs on block_on's own thread, not on a
                    // runtime worker, and nothing else is polled here
                    // meanwhile either way: a plain sleep wakes only this
                    // thread, where tokio's timer would wake a worker to
                    // wake this one, 100 times a second.
                    std::thread::sleep(COALESCE);
                }
                false
            }
            _ = tick.tick() => {
                // After the frames read so far: everything captured before
                // `now` is (nearly always) already in the channel.
                let now = capture.now();
                let _ = tx.try_send(CoreInput::Tick(now));
                if let Some(p) = &pcap {
                    p.tick(now);
                }
                let lines = capture.tls_rescan();
                show_lines(&mut out, output, &lines)?;
                if let Ok(c) = capture.counters() {
                    metrics.set_capture_counters(CaptureTotals {
                        seen: c.get(CaptureCounter::PacketsSeen),
                        captured: c.get(CaptureCounter::SipCaptured),
                        lost: c.get(CaptureCounter::RingbufFull) + core_drops,
                    });
                    if let Some(p) = &prometheus {
                        p.publish_capture(&c, capture.drop_counters().ok().flatten().as_ref(), capture.malformed_events(), core_drops);
                    }
                }
                false
            }
            _ = sigint.recv() => true,
            _ = sigterm.recv() => true,
            _ = sighup.recv() => {
                let reloaded = reloader.reload(&tx)?;
                for line in &reloaded.lines {
                    agent_line(&mut out, output, "config", line)?;
                }
                if let Some(ports) = &reloaded.sip_ports
                    && let Err(e) = capture.set_sip_ports(ports)
                {
                    let line = format!("config reload: the kernel's SIP port set kept its old ports: {e}");
                    agent_line(&mut out, output, "config", &line)?;
                }
                out.flush()?;
                if let Some(new) = reloaded.otlp {
                    let old = std::mem::replace(&mut telemetry, new.telemetry);
                    metrics = telemetry.metrics();
                    if let Some(p) = &prometheus {
                        p.count_exports_of(&telemetry);
                    }
                    retired_exports.push(tokio::spawn(retire_export(old, new.applied, out.handle(), output)));
                }
                false
            }
        };
        if stopping {
            readiness::stopping();
            // Everything the kernel handed over before the signal is
            // still analysed; detached first, so the counters read below
            // count exactly what was drained.
            capture.detach();
            if let Some(p) = &prometheus {
                p.health.set_attached(false);
            }
            capture.drain_now(&mut frames, &mut drops);
        }
        hand_over(&mut frames, &tx, pcap.as_ref(), &mut core_drops)?;
        capture.take_plaintext(&mut plaintext);
        for p in plaintext.drain(..) {
            match tx.try_send(CoreInput::Plaintext(p)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => core_drops += 1,
                Err(TrySendError::Disconnected(_)) => {
                    anyhow::bail!("the analysis thread stopped early")
                }
            }
        }
        show_drops(
            &mut drops,
            &mut out,
            drops_pcap.as_mut(),
            output,
            &tx,
            &mut core_drops,
        )?;
        if stopping {
            break;
        }
    }
    let counters = capture.counters()?;
    let drop_counters = capture.drop_counters()?;
    let malformed = capture.malformed_events();
    let tls_line = capture.tls().map(tls_counters_line).transpose()?;
    capture.stop();
    let pcap_stats = pcap.map(PcapRing::finish);
    if let Some(p) = drops_pcap {
        p.finish()?;
    }
    drop(tx);
    let (stats, traces, hep_stats) = tokio::task::spawn_blocking(move || core.join())
        .await
        .context("waiting for the analysis thread")?
        .map_err(|_| anyhow::anyhow!("the analysis thread panicked"))??;
    metrics.set_capture_counters(CaptureTotals {
        seen: counters.get(CaptureCounter::PacketsSeen),
        captured: counters.get(CaptureCounter::SipCaptured),
        lost: counters.get(CaptureCounter::RingbufFull) + core_drops,
    });
    for retired in retired_exports {
        let _ = retired.await;
    }
    let target = target(&telemetry);
    let export = telemetry.shutdown().await;
    if let Output::Events(f) = output {
        let export = export_line(&traces, export.as_ref(), &target);
        writeln!(
            out,
            "{}",
            LogLine::now("info", "export")
                .field("message", export.trim())
                .render(f)
        )?;
        if metrics.is_enabled() {
            let line = metrics_line(&metrics.export_stats());
            agent_line(&mut out, output, "metrics_export", line.trim())?;
        }
        if let (Some(h), Some(c)) = (&hep_stats, &hep_config) {
            let line = LogLine::now("info", "hep").field("message", h.line(&c.endpoint.url));
            writeln!(out, "{}", line.render(f))?;
        }
        let capture = CaptureRecord::new(
            &counters,
            malformed,
            core_drops,
            drop_counters.as_ref(),
            None,
        );
        writeln!(
            out,
            "{}",
            LogLine::now("info", "capture")
                .fields_of(&capture)
                .render(f)
        )?;
        if let Some(p) = pcap_stats {
            writeln!(
                out,
                "{}",
                LogLine::now("info", "pcap").fields_of(&p).render(f)
            )?;
        }
    } else if output == Output::Json {
        json::write_summary(&mut out, &stats)?;
        write_export_json(&mut out, &traces, export.as_ref())?;
        if let Some(h) = &hep_stats {
            sipscope::export::hep::write_json(&mut out, h)?;
        }
        write_record(
            &mut out,
            &CaptureRecord::new(
                &counters,
                malformed,
                core_drops,
                drop_counters.as_ref(),
                pcap_stats,
            ),
        )?;
    } else {
        // The session wrote the summary when the input ended.
        writeln!(out, "{}", export_line(&traces, export.as_ref(), &target))?;
        if metrics.is_enabled() {
            writeln!(out, "{}", metrics_line(&metrics.export_stats()))?;
        }
        if let (Some(h), Some(c)) = (&hep_stats, reloader.hep()) {
            writeln!(out, "{}", h.line(&c.endpoint.url))?;
        }
        writeln!(
            out,
            "capture counters: {counters}{} malformed_events={malformed} core_queue_full={core_drops}",
            drop_counters.map(|d| format!(" {d}")).unwrap_or_default()
        )?;
        if let Some(p) = &pcap_stats {
            writeln!(out, "{}", pcap_line(p))?;
        }
    }
    if let Some(line) = tls_line {
        agent_line(&mut out, output, "tls", &line)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A line about the agent itself: plain on the call flow, on stderr with
/// `--json` (stdout stays JSON records), a log line among the events.
pub(super) fn agent_line(
    out: &mut SharedStdout,
    output: Output,
    event: &'static str,
    text: &str,
) -> std::io::Result<()> {
    match output {
        Output::Json => {
            eprintln!("{text}");
            Ok(())
        }
        Output::Flow => writeln!(out, "{text}"),
        Output::Events(f) => writeln!(
            out,
            "{}",
            LogLine::now("info", event).field("message", text).render(f)
        ),
    }
}

/// What the TLS tracer does at start: why it is off, or which
/// processes it probes already (later ones are said as they come).
fn tls_start_lines(capture: &mut LiveCapture, mode: &TlsMode) -> Vec<String> {
    if let Some(why) = capture.tls_refused() {
        return vec![format!("tls: off ({why})")];
    }
    if capture.tls().is_none() {
        return Vec::new();
    }
    let mut lines = capture.tls_rescan();
    if lines.is_empty() && *mode == TlsMode::Auto {
        lines.push(
            "tls: no asterisk, freeswitch, kamailio or opensips process maps OpenSSL yet; \
             watching for one"
                .to_owned(),
        );
    }
    lines
}

/// The TLS tracer's counters at exit: the kernel's, then what userspace
/// could not map to a connection.
fn tls_counters_line(t: &sipscope::capture::live::tls::TlsTracer) -> anyhow::Result<String> {
    let (m, sessions) = t.mapping();
    Ok(format!(
        "tls counters: {} unmapped={} sessions={sessions} sessions_evicted={} malformed={}",
        t.counters()?,
        m.unmapped,
        m.sessions_evicted,
        m.malformed
    ))
}

/// An OTLP export a reload replaced: once the core hands its spans to the
/// new one, what the old one holds is flushed (as at exit) and its
/// counters said in one line.
async fn retire_export(
    old: Telemetry,
    applied: tokio::sync::oneshot::Receiver<()>,
    mut out: SharedStdout,
    output: Output,
) {
    // An error: the core ended first, and no span reaches the queue anymore.
    let _ = applied.await;
    let target = target(&old);
    let line = match old.shutdown().await {
        Some(s) => format!(
            "config reload: previous span export to {target} ended: exported {}, dropped {} \
             (failed batches {}), export errors {}",
            s.exported, s.dropped, s.failed_batches, s.export_errors
        ),
        None => format!("config reload: previous export to {target} ended"),
    };
    // Nothing left to tell if stdout is gone.
    let _ = agent_line(&mut out, output, "config", &line).and_then(|()| out.flush());
}

/// The TLS tracer's status lines, each an [`agent_line`].
fn show_lines(out: &mut SharedStdout, output: Output, lines: &[String]) -> anyhow::Result<()> {
    for line in lines {
        agent_line(out, output, "tls", line)?;
    }
    out.flush()?;
    Ok(())
}

/// Pcap first (a copy to the writer thread, which never makes the
/// reader wait), then the core; a full core queue drops the frame for
/// analysis and counts it.
fn hand_over(
    frames: &mut Vec<LiveFrame>,
    tx: &SyncSender<CoreInput>,
    pcap: Option<&PcapRing>,
    drops: &mut u64,
) -> anyhow::Result<()> {
    for frame in frames.drain(..) {
        if let Some(p) = pcap {
            p.submit(frame.packet.clone());
        }
        let note = notable(&frame).then(|| describe(&frame));
        match tx.try_send(CoreInput::Frame {
            packet: frame.packet,
            note,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => *drops += 1,
            Err(TrySendError::Disconnected(_)) => {
                anyhow::bail!("the analysis thread stopped early")
            }
        }
    }
    Ok(())
}

/// Drops are shown as they arrive (on their own file: they are IP packets,
/// not Ethernet frames, and an inbound one was captured by XDP already).
fn show_drops(
    drops: &mut Vec<LiveDrop>,
    out: &mut SharedStdout,
    mut pcap: Option<&mut PcapFileWriter>,
    output: Output,
    tx: &SyncSender<CoreInput>,
    core_drops: &mut u64,
) -> anyhow::Result<()> {
    for drop in drops.drain(..) {
        if let Some(p) = pcap.as_deref_mut() {
            p.write(&drop.dropped.packet)?;
        }
        // The core matches it to its transaction; the line below stays.
        match tx.try_send(CoreInput::Drop(drop.dropped.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => *core_drops += 1,
            Err(TrySendError::Disconnected(_)) => {
                anyhow::bail!("the analysis thread stopped early")
            }
        }
        match output {
            Output::Json => {
                serde_json::to_writer(&mut *out, &super::drop_lines::drop_record(&drop))?;
                writeln!(out)?;
            }
            Output::Flow => writeln!(out, "{}", super::drop_lines::describe_drop(&drop))?,
            // Every drop is counted; the finding (fw.local_drop) is the line.
            Output::Events(_) => {}
        }
    }
    out.flush()?;
    Ok(())
}

/// The analysis thread: feeds the session what the edge hands over (one
/// flush per batch) and serves its kernel requests; at the end, a last
/// read of the RTP map for the calls' last reports.
fn core<W: std::io::Write>(
    rx: Receiver<CoreInput>,
    mut session: Session<W>,
    mut rtp: Option<RtpKernel>,
    health: Option<std::sync::Arc<Health>>,
    mut retired: RetiredHep,
) -> anyhow::Result<(Stats, TraceStats, Option<HepStats>)> {
    while let Ok(first) = rx.recv() {
        for input in std::iter::once(first).chain(rx.try_iter()) {
            if let (CoreInput::Tick(_), Some(h)) = (&input, &health) {
                h.beat();
            }
            match input {
                CoreInput::Frame { packet, note } => session.feed(Input::Frame {
                    packet: &packet,
                    note: note.as_deref(),
                })?,
                CoreInput::Tick(now) => session.feed(Input::Tick(now))?,
                CoreInput::Drop(dropped) => session.feed(Input::Drop(&dropped))?,
                CoreInput::Plaintext(p) => session.feed(Input::Plaintext(&p))?,
                CoreInput::Retune(r) => r.apply(&mut session, &mut retired),
            }
            match rtp.as_mut() {
                Some(r) => r.serve(&mut session)?,
                // Nothing in the kernel to ask: requests are dropped.
                None => while session.poll_request().is_some() {},
            }
        }
        session.flush()?;
    }
    let last = rtp.as_mut().map(RtpKernel::last_poll).transpose()?;
    let done = session.finish(last.as_ref())?;
    retired.join();
    Ok((done.stats, done.traces, done.hep))
}

/// Frames whose story the pipeline cannot tell as a SIP message: ICMP
/// errors quoting SIP and truncated copies.
fn notable(frame: &LiveFrame) -> bool {
    matches!(
        frame.header.endpoints.transport(),
        Transport::Icmp | Transport::Icmpv6
    ) || frame.is_truncated()
}

/// `time dir src -> dst proto first-line [flags]`.
fn describe(frame: &LiveFrame) -> String {
    let h = &frame.header;
    let dir = match frame.packet.direction {
        Direction::Ingress => "in ",
        Direction::Egress => "out",
        Direction::Unknown => "?  ",
    };
    let proto = match h.endpoints.transport() {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Icmp | Transport::Icmpv6 => "icmp",
        Transport::Unknown => "ip",
    };
    let mut line = if proto == "icmp" {
        // The ports are those of the quoted datagram the error is about.
        format!(
            "{} {dir} {} -> {} icmp unreachable, about port {} -> {}",
            frame.packet.ts,
            h.endpoints.src_ip(),
            h.endpoints.dst_ip(),
            h.endpoints.src_port,
            h.endpoints.dst_port
        )
    } else {
        let src = SocketAddr::new(h.endpoints.src_ip(), h.endpoints.src_port);
        let dst = SocketAddr::new(h.endpoints.dst_ip(), h.endpoints.dst_port);
        let first = first_line(frame).unwrap_or_else(|| "(no SIP start line)".into());
        format!("{} {dir} {src} -> {dst} {proto} {first}", frame.packet.ts)
    };
    if frame.is_fragment() {
        line.push_str(" [fragment]");
    }
    if frame.is_truncated() {
        line.push_str(&format!(
            " [truncated {} of {} bytes]",
            h.cap_len, h.orig_len
        ));
    }
    if frame.is_vlan_tagged() {
        line.push_str(" [vlan]");
    }
    line
}

/// The first line of the SIP message in a captured frame, if the frame
/// carries the start of one. For IP fragments the kernel reports ports only
/// on the first fragment, which starts with the UDP header.
fn first_line(frame: &LiveFrame) -> Option<String> {
    let sliced = SlicedPacket::from_ethernet(&frame.packet.data).ok()?;
    let payload = match &sliced.transport {
        Some(TransportSlice::Udp(u)) => u.payload(),
        Some(TransportSlice::Tcp(t)) => t.payload(),
        _ if frame.is_fragment() && frame.header.endpoints.src_port != 0 => {
            sliced.net.as_ref()?.ip_payload_ref()?.payload.get(8..)?
        }
        _ => return None,
    };
    super::drop_lines::start_line(payload)
}

#[cfg(test)]
mod tests {
    use sipscope::{
        packet::{LinkType, Packet},
        time::Timestamp,
    };
    use sipscope_common::{CaptureHeader, Endpoints, FLAG_FRAGMENT, FLAG_TRUNCATED};

    use super::*;

    fn frame(data: Vec<u8>, flags: u32, transport: Transport, ports: (u16, u16)) -> LiveFrame {
        let orig_len = if flags & FLAG_TRUNCATED != 0 {
            20_000
        } else {
            data.len() as u32
        };
        LiveFrame {
            header: CaptureHeader {
                ktime_ns: 0,
                ifindex: 1,
                orig_len,
                cap_len: data.len() as u32,
                flags,
                endpoints: Endpoints::new(
                    ([10, 0, 0, 2], ports.0).into(),
                    ([10, 0, 0, 1], ports.1).into(),
                    sipscope_common::Direction::Ingress,
                    transport,
                )
                .unwrap(),
            },
            packet: Packet {
                ts: Timestamp::from_nanos(3_600_000_000_000 + 1_500),
                ifindex: 1,
                direction: Direction::Ingress,
                link: LinkType::Ethernet,
                data,
                orig_len,
            },
        }
    }

    fn sip_udp(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .udp(5062, 5060)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    #[test]
    fn a_sip_frame_prints_its_start_line() {
        let f = frame(
            sip_udp(b"REGISTER sip:pbx SIP/2.0\r\nVia: x\r\n\r\n"),
            0,
            Transport::Udp,
            (5062, 5060),
        );
        assert_eq!(
            describe(&f),
            "01:00:00.000001 in  10.0.0.2:5062 -> 10.0.0.1:5060 udp REGISTER sip:pbx SIP/2.0"
        );
    }

    #[test]
    fn truncated_and_fragment_flags_are_shown() {
        let f = frame(
            sip_udp(b"SIP/2.0 200 OK\r\n"),
            FLAG_TRUNCATED | FLAG_FRAGMENT,
            Transport::Udp,
            (5062, 5060),
        );
        let line = describe(&f);
        assert!(
            line.ends_with("[fragment] [truncated 58 of 20000 bytes]"),
            "{line}"
        );
    }

    #[test]
    fn a_later_fragment_has_no_start_line() {
        let mut data = sip_udp(b"tail of a body");
        // Fragment offset 185 (1480 bytes), no more fragments: a tail.
        data[20..22].copy_from_slice(&185u16.to_be_bytes());
        let f = frame(data, FLAG_FRAGMENT, Transport::Unknown, (0, 0));
        assert!(describe(&f).contains("(no SIP start line) [fragment]"));
    }
}
