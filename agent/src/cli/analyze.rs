//! `sipscope analyze FILE...`: offline analysis of capture files through
//! the same pipeline as live capture.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sipscope::capture::file::CaptureFile;
use sipscope::export::hep::{self, HepArgs, HepSink, Overflow};
use sipscope::export::json;
use sipscope::export::otel::{CaptureTotals, OtlpArgs, Telemetry};
use sipscope::export::shared_stdout::SharedStdout;
use sipscope::pipeline::PipelineConfig;
use sipscope::session::{Format, Input, Session, SessionConfig, Spans};

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// pcap or pcapng files, read in the order given.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// One JSON object per line (messages, transactions, summary) instead
    /// of the call flow.
    #[arg(long)]
    json: bool,
    /// Extra ports to treat as SIP (5060, 5061, 5080 always are; other
    /// ports are recognised by content).
    #[arg(long = "sip-port", value_name = "PORT")]
    sip_ports: Vec<u16>,
    #[command(flatten)]
    otlp: OtlpArgs,
    #[command(flatten)]
    hep: HepArgs,
    #[command(flatten)]
    analysis: super::analysis_args::AnalysisArgs,
}

pub fn main(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let mut config = PipelineConfig::default();
    config.decoder.sip_ports.extend(&args.sip_ports);
    // A capture file holds no kernel drops: answered requests need not
    // wait for one.
    config.reachability.sees_local_drops = false;
    args.analysis.apply(&mut config)?;
    // A file is read faster than any link: wait for the collector while it
    // is reachable, so the whole capture arrives.
    let hep_config = args.hep.resolve(Overflow::WaitWhileConnected)?;
    // Open every file first: a typo in the third file should not cost the
    // user the output of the first two.
    let mut sources = Vec::new();
    for path in &args.files {
        sources.push(
            CaptureFile::open(path)
                .with_context(|| format!("cannot analyse {}", path.display()))?,
        );
    }
    // Export is the async edge: its tasks run on the runtime's worker
    // while the analysis runs synchronously on this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let _edge = runtime.enter();
    // Offline the export queue waits rather than drops, and JSON spans
    // are written by the session in pipeline order: the same file gives
    // the same output however busy the machine is.
    let mut out = SharedStdout::new();
    let telemetry = Telemetry::start_offline(&args.otlp).context("OTLP export")?;
    let format = if args.json {
        Format::Json
    } else {
        // The call flow's lines get a tenth of the memory budget; past
        // that the oldest Call-IDs are written out early.
        Format::CallFlow {
            max_bytes: (args.analysis.memory_budget().megabytes() << 20) / 10,
        }
    };
    let config = SessionConfig {
        pipeline: config,
        format,
        rtp_interval: None,
    };
    let spans = if args.json {
        Spans::json_lines(&telemetry, args.otlp.include_digest_response)
    } else {
        Spans::new(&telemetry)
    };
    // serde writes a record in many small pieces; buffered here, the
    // shared stdout sees large writes (it still hands over whole lines
    // only). The session flushes it when it finishes.
    let session_out = std::io::BufWriter::with_capacity(64 << 10, out.handle());
    let mut session = Session::new(config, session_out, spans);
    if let Some(c) = &hep_config {
        session = session.with_hep(HepSink::start(c).context("starting HEP export")?);
    }
    let mut damaged = 0;
    for (source, path) in sources.into_iter().zip(&args.files) {
        // One warning per file for interfaces of a link type we cannot
        // read, then a count: a file can declare thousands of them.
        let mut unsupported = 0u64;
        for item in source {
            match item {
                Ok(packet) => session
                    .feed(Input::Frame {
                        packet: &packet,
                        note: None,
                    })
                    .context("writing output")?,
                Err(e) if e.is_fatal() => {
                    damaged += 1;
                    eprintln!("sipscope: warning: {e}; analysing the packets read so far");
                }
                Err(e) => {
                    unsupported += 1;
                    if unsupported == 1 {
                        eprintln!("sipscope: warning: {e}; skipping that interface's packets");
                    }
                }
            }
        }
        if unsupported > 1 {
            eprintln!(
                "sipscope: warning: {}: {} more interfaces of unsupported link types, their packets skipped",
                path.display(),
                unsupported - 1
            );
        }
    }
    // The rest of the call flow and its summary (console) are written
    // here; with JSON the session has written its spans (or the OTLP
    // queue holds them), and the summary follows below.
    let done = session.finish(None).context("writing output")?;
    let (stats, traces, hep_stats, written) =
        (done.stats, done.traces, done.hep, done.spans_written);
    let metrics = telemetry.metrics();
    metrics.set_capture_counters(CaptureTotals {
        seen: stats.packets.packets,
        captured: stats.packets.packets,
        lost: 0,
    });
    let target = super::telemetry::target(&telemetry);
    // Flushes what is queued (a dead collector is not waited for: its
    // spans are counted as dropped).
    let export = runtime.block_on(telemetry.shutdown()).or(written);
    if args.json {
        json::write_summary(&mut out, &stats).context("writing output")?;
        super::telemetry::write_export_json(&mut out, &traces, export.as_ref())
            .context("writing output")?;
        if let Some(h) = &hep_stats {
            hep::write_json(&mut out, h).context("writing output")?;
        }
    } else {
        writeln!(
            out,
            "{}",
            super::telemetry::export_line(&traces, export.as_ref(), &target)
        )?;
        if let (Some(h), Some(c)) = (&hep_stats, &hep_config) {
            writeln!(out, "{}", h.line(&c.endpoint.url))?;
        }
        if damaged > 0 {
            writeln!(out, "  damaged capture files {damaged}")?;
        }
    }
    out.flush().context("writing output")?;
    Ok(ExitCode::SUCCESS)
}
