//! The hand-over from the synchronous core to the async export edge.
//!
//! The core calls [`SpanSink::submit_all`] with the spans one batch of its
//! input finished ([`SpanSink::submit`] for one). Live (`run`,
//! [`WhenFull::Drop`]) it never blocks and never fails loudly: the spans
//! that fit the queue's budget go over the channel as one message, and
//! what a full queue (collector slow or down) cannot take is dropped and
//! counted, so a PBX is never slowed by its monitor. One message per
//! batch rather than per span: each message may wake the export task,
//! and at thousands of spans a second those wake-ups cost more than the
//! export itself.
//! Offline (`analyze`, [`WhenFull::Wait`]) there is no traffic to protect
//! and a drop would make the output depend on machine load: a full queue
//! makes the core wait for the exporter instead.
//! A tokio task drains the queue in batches and hands them to the backend
//! (OTLP or JSON lines). A failing OTLP batch is retried with backoff for
//! a while (a collector restart loses nothing that fits in the queue), then
//! given up and counted (`failed_batches`, its spans in `dropped`); either
//! way an unreachable collector costs at most `queue_capacity + max_batch`
//! spans of memory and never slows the core.
//!
//! Accounting invariant, checked by the tests: once [`SpanExportService::shutdown`]
//! has returned, `exported + dropped == submitted`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::trace::SpanExporter as _;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::build::{self, OtlpError};
use super::config::OtlpConfig;
use super::convert::{self, AttributeFilter};
use crate::export::spans::SpanRecord;

/// Export counters, a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExportStats {
    /// Spans the backend accepted.
    pub exported: u64,
    /// Spans lost: queue full, export failed, or submitted after shutdown.
    pub dropped: u64,
    /// Batches given up (their spans are in `dropped`).
    pub failed_batches: u64,
    /// Failed export attempts, retried ones included.
    pub export_errors: u64,
    /// Secret-bearing attributes removed before export.
    pub redacted_attributes: u64,
}

impl std::ops::AddAssign for ExportStats {
    fn add_assign(&mut self, o: Self) {
        self.exported += o.exported;
        self.dropped += o.dropped;
        self.failed_batches += o.failed_batches;
        self.export_errors += o.export_errors;
        self.redacted_attributes += o.redacted_attributes;
    }
}

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed_batches: AtomicU64,
    export_errors: AtomicU64,
}

/// What [`SpanSink::submit`] does when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Drop the span and count it: live capture, never slow the core.
    #[default]
    Drop,
    /// Block the submitting thread until the exporter makes room: offline
    /// analysis, where losing a span only because the machine was busy
    /// would make two runs on the same file differ. Call `submit` from a
    /// thread outside the runtime's workers (a runtime entered with
    /// `Handle::enter` is fine).
    Wait,
}

/// Batching knobs. Memory bound: `queue_capacity + max_batch` spans.
#[derive(Clone, Copy, Debug)]
pub struct QueueOptions {
    /// Drop or wait when the queue is full.
    pub when_full: WhenFull,
    pub queue_capacity: usize,
    pub max_batch: usize,
    /// How long a partial batch waits for more spans.
    pub linger: Duration,
    /// Upper bound on one export call.
    pub export_timeout: Duration,
    /// How long a failing batch is retried (with backoff from 100 ms to
    /// 5 s) before it is given up. Zero: never retry.
    pub retry_for: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            when_full: WhenFull::Drop,
            queue_capacity: 4096,
            max_batch: 512,
            linger: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(30),
        }
    }
}

/// How many spans the queue holds: the core takes room before it sends,
/// the export task gives it back as it takes spans into a batch. The
/// channel itself is unbounded; this is its bound, counted in spans
/// whatever the size of the messages that carry them.
#[derive(Debug)]
struct Budget {
    used: Mutex<usize>,
    room: Condvar,
    capacity: usize,
}

impl Budget {
    fn new(capacity: usize) -> Self {
        Self {
            used: Mutex::new(0),
            room: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        // The count stays right whoever panicked while holding it.
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for up to `n` spans, without waiting: how many fit.
    fn take_up_to(&self, n: usize) -> usize {
        let mut used = self.lock();
        let k = n.min(self.capacity - *used);
        *used += k;
        k
    }

    /// Room for between 1 and `n` spans, waiting until there is some.
    fn take_waiting(&self, n: usize) -> usize {
        let used = self.lock();
        let mut used = self
            .room
            .wait_while(used, |u| *u == self.capacity)
            .unwrap_or_else(|p| p.into_inner());
        let k = n.min(self.capacity - *used);
        *used += k;
        k
    }

    fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        *self.lock() -= n;
        self.room.notify_all();
    }

    fn used(&self) -> usize {
        *self.lock()
    }
}

/// The core's end of the queue. Cheap to clone; usable from any thread,
/// inside or outside the runtime.
#[derive(Clone, Debug)]
pub struct SpanSink {
    tx: mpsc::UnboundedSender<Vec<SpanRecord>>,
    budget: Arc<Budget>,
    when_full: WhenFull,
    counters: Arc<Counters>,
    filter: Arc<AttributeFilter>,
}

impl SpanSink {
    /// Hand a finished span to the exporter. Returns `false` (and counts a
    /// drop) when the exporter has shut down, or, with [`WhenFull::Drop`],
    /// when the queue is full; with [`WhenFull::Wait`] a full queue blocks
    /// until there is room.
    pub fn submit(&self, span: SpanRecord) -> bool {
        self.submit_all(vec![span]) == 1
    }

    /// Hand finished spans to the exporter in one message (one wake-up of
    /// the export task at most); returns how many were accepted. With
    /// [`WhenFull::Drop`] the spans past the queue's free room are dropped
    /// and counted; with [`WhenFull::Wait`] the caller waits for room.
    /// After shutdown every span is a counted drop.
    pub fn submit_all(&self, mut spans: Vec<SpanRecord>) -> usize {
        let n = spans.len();
        if n == 0 {
            return 0;
        }
        self.counters
            .submitted
            .fetch_add(n as u64, Ordering::Relaxed);
        let accepted = match self.when_full {
            WhenFull::Drop => {
                let k = self.budget.take_up_to(n);
                spans.truncate(k);
                self.send(spans)
            }
            WhenFull::Wait => {
                let mut accepted = 0;
                while !spans.is_empty() {
                    let k = self.budget.take_waiting(spans.len());
                    let rest = spans.split_off(k);
                    accepted += self.send(std::mem::replace(&mut spans, rest));
                }
                accepted
            }
        };
        if accepted < n {
            self.counters
                .dropped
                .fetch_add((n - accepted) as u64, Ordering::Relaxed);
        }
        accepted
    }

    /// Sends spans the budget has room for; after shutdown the room is
    /// given back and nothing is accepted.
    fn send(&self, spans: Vec<SpanRecord>) -> usize {
        let k = spans.len();
        if k == 0 {
            return 0;
        }
        match self.tx.send(spans) {
            Ok(()) => k,
            Err(_) => {
                self.budget.give_back(k);
                0
            }
        }
    }

    /// Spans waiting in the queue now (at most the queue capacity).
    pub fn queued(&self) -> usize {
        self.budget.used()
    }

    pub fn capacity(&self) -> usize {
        self.budget.capacity
    }

    /// Spans submitted so far, accepted or not.
    pub fn submitted(&self) -> u64 {
        self.counters.submitted.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> ExportStats {
        self.counters().stats()
    }

    /// This export's counters, readable while and after it runs.
    pub fn counters(&self) -> SpanExportCounters {
        SpanExportCounters {
            counters: self.counters.clone(),
            filter: self.filter.clone(),
        }
    }
}

/// A span export's counters apart from its queue: holding them does not
/// keep the export open (`/metrics` sums every export of the run).
#[derive(Clone, Debug)]
pub struct SpanExportCounters {
    counters: Arc<Counters>,
    filter: Arc<AttributeFilter>,
}

impl SpanExportCounters {
    pub fn stats(&self) -> ExportStats {
        ExportStats {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
            export_errors: self.counters.export_errors.load(Ordering::Relaxed),
            redacted_attributes: self.filter.redacted(),
        }
    }
}

enum Backend {
    Otlp {
        exporter: Box<opentelemetry_otlp::SpanExporter>,
        scope: InstrumentationScope,
    },
    JsonLines(Option<Box<dyn Write + Send>>),
}

/// The running export edge: a tokio task draining a [`SpanSink`].
pub struct SpanExportService {
    sink: SpanSink,
    stop: watch::Sender<bool>,
    worker: JoinHandle<()>,
}

impl SpanExportService {
    /// OTLP export as configured; `when_full`: live drops, offline waits.
    /// Call from inside the tokio runtime.
    pub fn otlp(cfg: &OtlpConfig, when_full: WhenFull) -> Result<Self, OtlpError> {
        let opts = QueueOptions {
            when_full,
            queue_capacity: cfg.queue_capacity,
            export_timeout: cfg.timeout,
            ..QueueOptions::default()
        };
        Self::otlp_with(cfg, opts)
    }

    /// OTLP export with explicit batching options.
    pub fn otlp_with(cfg: &OtlpConfig, opts: QueueOptions) -> Result<Self, OtlpError> {
        let exporter = build::span_exporter(cfg)?;
        let backend = Backend::Otlp {
            exporter: Box::new(exporter),
            scope: convert::scope(),
        };
        Ok(Self::start(backend, opts, cfg.include_digest_response))
    }

    /// JSON lines (one [`SpanRecord`] per line) to `out`: the fallback when
    /// no OTLP endpoint is configured. Secrets are filtered the same way.
    /// Call from inside the tokio runtime.
    pub fn json_lines(
        out: Box<dyn Write + Send>,
        opts: QueueOptions,
        include_digest_response: bool,
    ) -> Self {
        Self::start(Backend::JsonLines(Some(out)), opts, include_digest_response)
    }

    fn start(backend: Backend, opts: QueueOptions, include_digest_response: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let sink = SpanSink {
            tx,
            budget: Arc::new(Budget::new(opts.queue_capacity)),
            when_full: opts.when_full,
            counters: Arc::default(),
            filter: Arc::new(AttributeFilter::new(include_digest_response)),
        };
        let worker = Worker {
            rx,
            budget: sink.budget.clone(),
            carry: Vec::new().into_iter(),
            stop: stop_rx,
            backend,
            opts,
            counters: sink.counters.clone(),
            filter: sink.filter.clone(),
            failing: false,
            giving_up: false,
            down: false,
        };
        let worker = tokio::spawn(worker.run());
        Self { sink, stop, worker }
    }

    pub fn sink(&self) -> SpanSink {
        self.sink.clone()
    }

    pub fn stats(&self) -> ExportStats {
        self.sink.stats()
    }

    /// Stop accepting spans, export what is queued (each batch bounded by
    /// the export timeout) and return the final counters.
    pub async fn shutdown(self) -> ExportStats {
        let _ = self.stop.send(true);
        if let Err(e) = self.worker.await {
            log::error!("span export task ended abnormally: {e}");
        }
        self.sink.stats()
    }
}

struct Worker {
    rx: mpsc::UnboundedReceiver<Vec<SpanRecord>>,
    budget: Arc<Budget>,
    /// What is left of the last message received once the batch was
    /// full: still queued, still counted in the budget.
    carry: std::vec::IntoIter<SpanRecord>,
    stop: watch::Receiver<bool>,
    backend: Backend,
    opts: QueueOptions,
    counters: Arc<Counters>,
    filter: Arc<AttributeFilter>,
    /// Log transitions only, not every failed batch.
    failing: bool,
    /// Shutdown met a failing collector: drop the rest without trying.
    giving_up: bool,
    /// A batch was given up and none exported since. With
    /// [`WhenFull::Wait`] the core waits on every batch, so while the
    /// collector stays down each batch gets one try, not `retry_for` of
    /// them: a dead collector must not hold an offline analysis for
    /// `retry_for` per batch.
    down: bool,
}

const RETRY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Worker {
    async fn run(mut self) {
        let max = self.opts.max_batch.max(1);
        let mut batch = Vec::with_capacity(max);
        loop {
            if self.carry.len() == 0 {
                let first = tokio::select! {
                    biased;
                    _ = self.stop.wait_for(|s| *s) => break,
                    r = self.rx.recv() => match r { Some(s) => s, None => break },
                };
                self.carry = first.into_iter();
            }
            self.take_into(&mut batch, max);
            let deadline = Instant::now() + self.opts.linger;
            // `take_into` stops short of `max` only when the carry is empty.
            while batch.len() < max {
                let next = tokio::select! {
                    biased;
                    _ = self.stop.wait_for(|s| *s) => break,
                    r = tokio::time::timeout_at(deadline, self.rx.recv()) => match r {
                        Ok(Some(s)) => s,
                        _ => break,
                    },
                };
                self.carry = next.into_iter();
                self.take_into(&mut batch, max);
            }
            self.deliver(std::mem::take(&mut batch)).await;
        }
        // Shutdown: refuse new spans (counted as drops by `submit`), flush the rest.
        self.rx.close();
        loop {
            self.take_into(&mut batch, max);
            if batch.len() == max {
                self.deliver(std::mem::take(&mut batch)).await;
                continue;
            }
            match self.rx.recv().await {
                Some(s) => self.carry = s.into_iter(),
                None => break,
            }
        }
        if !batch.is_empty() {
            self.deliver(batch).await;
        }
        if let Backend::Otlp { exporter, .. } = &mut self.backend {
            let _ = exporter.shutdown();
        }
    }

    /// Moves spans from the carry into `batch`, up to `max`, and gives
    /// their room in the queue back.
    fn take_into(&mut self, batch: &mut Vec<SpanRecord>, max: usize) {
        let n = max.saturating_sub(batch.len()).min(self.carry.len());
        batch.extend(self.carry.by_ref().take(n));
        self.budget.give_back(n);
    }

    /// Deliver one batch: retry a failing OTLP export with backoff for up
    /// to `retry_for` (a collector restart should not lose the queue; new
    /// spans meanwhile overflow the bounded queue and are counted), then
    /// give the batch up and count it. Once shutdown has begun, a failure
    /// is final and everything still queued is dropped without trying: a
    /// dead collector must not hold the agent's exit.
    async fn deliver(&mut self, batch: Vec<SpanRecord>) {
        let n = batch.len() as u64;
        if self.giving_up {
            return self.give_up(n);
        }
        let first_try = Instant::now();
        let mut backoff = RETRY_INITIAL;
        loop {
            let err = match self.attempt(&batch).await {
                Ok(()) => {
                    self.counters.exported.fetch_add(n, Ordering::Relaxed);
                    self.down = false;
                    if std::mem::take(&mut self.failing) {
                        log::info!("span export recovered");
                    }
                    return;
                }
                Err(e) => e,
            };
            self.counters.export_errors.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(&mut self.failing, true) {
                log::warn!(
                    "span export failed, retrying for up to {:?}; spans that do not fit the queue meanwhile are dropped and counted: {err}",
                    self.opts.retry_for
                );
            }
            let retryable = matches!(self.backend, Backend::Otlp { .. })
                && !(self.down && self.opts.when_full == WhenFull::Wait)
                && first_try.elapsed() + backoff <= self.opts.retry_for;
            if *self.stop.borrow() || !retryable {
                if *self.stop.borrow() {
                    self.giving_up = true;
                }
                return self.give_up(n);
            }
            let stopped = tokio::select! {
                biased;
                _ = self.stop.wait_for(|s| *s) => true,
                _ = tokio::time::sleep(backoff) => false,
            };
            if stopped {
                self.giving_up = true;
                return self.give_up(n);
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    fn give_up(&mut self, n: u64) {
        self.down = true;
        self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// One export attempt.
    async fn attempt(&mut self, batch: &[SpanRecord]) -> Result<(), String> {
        match &mut self.backend {
            Backend::Otlp { exporter, scope } => {
                let data = batch
                    .iter()
                    .map(|r| convert::to_span_data(r, &self.filter, scope))
                    .collect();
                match tokio::time::timeout(self.opts.export_timeout, exporter.export(data)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {:?}", self.opts.export_timeout)),
                }
            }
            Backend::JsonLines(slot) => {
                let Some(mut out) = slot.take() else {
                    return Err("JSON-lines output is gone".into());
                };
                let filter = self.filter.clone();
                let batch = batch.to_vec();
                // Writing may block (a pipe, a slow disk): keep it off the runtime.
                let joined = tokio::task::spawn_blocking(move || {
                    let r = write_json_lines(&mut out, batch, &filter);
                    (out, r)
                })
                .await;
                match joined {
                    Ok((out, r)) => {
                        *slot = Some(out);
                        r.map_err(|e| e.to_string())
                    }
                    Err(e) => Err(format!("JSON-lines writer failed: {e}")),
                }
            }
        }
    }
}

/// Write records as JSON lines after filtering secrets, then flush.
pub fn write_json_lines(
    out: &mut dyn Write,
    batch: Vec<SpanRecord>,
    filter: &AttributeFilter,
) -> std::io::Result<()> {
    write_span_lines(out, batch, filter)?;
    out.flush()
}

/// Write records as JSON lines after filtering secrets, one per line, in
/// the order given (no flush: the caller's writer decides).
pub fn write_span_lines(
    out: &mut dyn Write,
    records: impl IntoIterator<Item = SpanRecord>,
    filter: &AttributeFilter,
) -> std::io::Result<()> {
    for mut rec in records {
        filter.apply(&mut rec);
        serde_json::to_writer(&mut *out, &rec)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
