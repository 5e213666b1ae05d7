//! A full queue: live drops and counts without waiting, offline waits and
//! loses nothing. The exporter is held up by a writer that blocks until
//! the test opens its gate.

use std::sync::{Arc, Condvar, Mutex};

use super::*;
use crate::export::spans::{SpanId, SpanKind, TraceId, names};
use crate::time::Timestamp;

const SPANS: u64 = 50;

/// A writer that blocks until the gate is opened.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (open, cv) = &*self.0;
        let _open = cv.wait_while(open.lock().unwrap(), |o| !*o).unwrap();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn span(i: u64) -> SpanRecord {
    let trace = TraceId::for_call(&format!("call-{i}"));
    SpanRecord::new(
        trace,
        SpanId::for_root(trace, "pbx1"),
        None,
        names::CALL,
        SpanKind::Internal,
        Timestamp(i),
        Timestamp(i + 1),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A JSON-lines export with room for one span, its writer stuck until
/// the gate opens, on its own runtime.
fn stuck_export(when_full: WhenFull) -> (tokio::runtime::Runtime, SpanExportService, Gate) {
    let rt = runtime();
    let _edge = rt.enter();
    let gate = Gate::default();
    let opts = QueueOptions {
        when_full,
        queue_capacity: 1,
        max_batch: 1,
        linger: Duration::ZERO,
        ..QueueOptions::default()
    };
    let svc = SpanExportService::json_lines(Box::new(gate.clone()), opts, false);
    (rt, svc, gate)
}

#[test]
fn live_a_full_queue_drops_and_counts_without_waiting() {
    let (rt, svc, gate) = stuck_export(WhenFull::Drop);
    let sink = svc.sink();
    // The exporter is stuck: this returns at once, most spans dropped.
    let accepted = (0..SPANS).filter(|&i| sink.submit(span(i))).count() as u64;
    assert!(accepted <= 2, "one in the writer, one queued: {accepted}");
    gate.open();
    let stats = rt.block_on(svc.shutdown());
    assert_eq!(stats.exported + stats.dropped, SPANS, "{stats:?}");
    assert_eq!(stats.dropped, SPANS - accepted, "{stats:?}");
}

#[test]
fn offline_a_full_queue_waits_for_the_exporter_and_loses_nothing() {
    let (rt, svc, gate) = stuck_export(WhenFull::Wait);
    let sink = svc.sink();
    let core = std::thread::spawn(move || (0..SPANS).all(|i| sink.submit(span(i))));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !core.is_finished(),
        "the core waits while the exporter is stuck"
    );
    gate.open();
    assert!(core.join().unwrap(), "every span accepted");
    let stats = rt.block_on(svc.shutdown());
    assert_eq!((stats.exported, stats.dropped), (SPANS, 0), "{stats:?}");
}

#[test]
fn live_a_batch_larger_than_the_free_room_keeps_what_fits_and_counts_the_rest() {
    let rt = runtime();
    let _edge = rt.enter();
    let gate = Gate::default();
    let opts = QueueOptions {
        when_full: WhenFull::Drop,
        queue_capacity: 8,
        max_batch: 4,
        linger: Duration::ZERO,
        ..QueueOptions::default()
    };
    let svc = SpanExportService::json_lines(Box::new(gate.clone()), opts, false);
    let sink = svc.sink();
    // One message of 20 spans: the queue takes its 8, the other 12 are
    // dropped and counted at once, whatever the exporter does.
    let accepted = sink.submit_all((0..20).map(span).collect());
    assert_eq!(accepted, 8);
    assert!(sink.queued() <= 8, "{}", sink.queued());
    assert_eq!(sink.stats().dropped, 12);
    gate.open();
    let stats = rt.block_on(svc.shutdown());
    assert_eq!((stats.exported, stats.dropped), (8, 12), "{stats:?}");
}

#[test]
fn offline_a_batch_larger_than_the_queue_goes_through_in_parts() {
    let (rt, svc, gate) = stuck_export(WhenFull::Wait);
    let sink = svc.sink();
    // Room for one span at a time: the core hands the batch over piece by
    // piece as the exporter frees room, and loses nothing.
    let core = std::thread::spawn(move || sink.submit_all((0..SPANS).map(span).collect()));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!core.is_finished(), "the core waits for room");
    gate.open();
    assert_eq!(core.join().unwrap() as u64, SPANS);
    let stats = rt.block_on(svc.shutdown());
    assert_eq!((stats.exported, stats.dropped), (SPANS, 0), "{stats:?}");
}
