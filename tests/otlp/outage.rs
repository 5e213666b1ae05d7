//! An unreachable collector: the agent never blocks, memory stays bounded,
//! what fits is delivered after recovery, everything else is counted.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_outage_never_blocks_bounds_the_queue_and_delivers_what_fit() {
    let (socket, addr) = reserved_port();
    let opts = QueueOptions {
        when_full: WhenFull::Drop,
        queue_capacity: 32,
        max_batch: 8,
        linger: Duration::from_millis(5),
        export_timeout: Duration::from_secs(2),
        retry_for: Duration::from_secs(60),
    };
    let cfg = config(&format!("http://{addr}"), Protocol::Grpc, "pbx1", |_| {});
    let svc = SpanExportService::otlp_with(&cfg, opts)
        .expect("an unreachable endpoint is not a setup error");
    let sink = svc.sink();

    // Collector down: the producer keeps going, the queue never exceeds its bound.
    let mut produced = 0u32;
    for i in 0..500 {
        sink.submit(scenario::filler(i));
        produced += 1;
        assert!(sink.queued() <= opts.queue_capacity);
    }
    // Wait until the exporter has tried and failed at least once.
    let deadline = std::time::Instant::now() + WAIT;
    while sink.stats().export_errors == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "export never failed: {:?}",
            sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during = sink.stats();
    assert_eq!(during.exported, 0);
    // What fit: the full queue plus the one batch the exporter holds.
    let accepted = 500 - during.dropped;
    assert!(
        (opts.queue_capacity as u64..=(opts.queue_capacity + opts.max_batch) as u64)
            .contains(&accepted),
        "{during:?}"
    );

    // Collector comes up on the reserved port: everything that fit arrives.
    let rx = Receiver::grpc_on(socket.listen(64).expect("listen"));
    let received = rx.store.wait_for_spans(accepted as usize, WAIT).await;
    assert_eq!(received.len() as u64, accepted, "{:?}", sink.stats());
    // And the agent carries on normally.
    for _ in 0..20 {
        assert!(sink.submit(scenario::filler(produced)));
        produced += 1;
    }
    let stats = svc.shutdown().await;
    // Submitting after shutdown is a counted drop, not a panic.
    assert!(!sink.submit(scenario::filler(produced)));
    produced += 1;
    let after = sink.stats();
    assert_eq!(
        after.exported + after.dropped,
        u64::from(produced),
        "{after:?}"
    );
    assert_eq!(stats.exported, accepted + 20, "{stats:?}");
    assert_eq!(stats.failed_batches, 0, "retried, not given up: {stats:?}");
    assert_eq!(rx.store.spans().len() as u64, stats.exported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_past_the_retry_window_is_given_up_and_counted() {
    let (_socket, addr) = reserved_port(); // never listens
    let opts = QueueOptions {
        when_full: WhenFull::Drop,
        retry_for: Duration::from_millis(300),
        ..fast()
    };
    let cfg = config(&format!("http://{addr}"), Protocol::Grpc, "pbx1", |_| {});
    let svc = SpanExportService::otlp_with(&cfg, opts).unwrap();
    let sink = svc.sink();
    for s in PBX.successful_attempt() {
        assert!(sink.submit(s));
    }
    // Without any shutdown: the worker gives the batch up on its own.
    let deadline = std::time::Instant::now() + WAIT;
    while sink.stats().failed_batches == 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", sink.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = sink.stats();
    assert_eq!(
        (s.exported, s.dropped, s.failed_batches),
        (0, 3, 1),
        "{s:?}"
    );
    assert!(s.export_errors >= 2, "retried before giving up: {s:?}");
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_collector_host_is_counted_not_fatal() {
    // .invalid never resolves (RFC 6761 §6.4).
    let cfg = config(
        "http://collector.invalid:4317",
        Protocol::Grpc,
        "pbx1",
        |_| {},
    );
    let svc = SpanExportService::otlp_with(&cfg, fast()).expect("setup does not touch the network");
    for s in PBX.successful_attempt() {
        svc.sink().submit(s);
    }
    let stats = svc.shutdown().await;
    assert_eq!((stats.exported, stats.dropped), (0, 3), "{stats:?}");
    // The worker may have cut the three spans into one or more batches,
    // depending on when it woke: every batch failed, none was lost silently.
    assert!((1..=3).contains(&stats.failed_batches), "{stats:?}");
}
