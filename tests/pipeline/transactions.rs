//! Transactions as RFC 3261 §17 defines them, seen from the wire.

use std::ops::Add as _;
use std::time::Duration;

use sipscope::pipeline::{Event, Pipeline, PipelineConfig};
use sipscope::sip::{Method, TimeoutCause, Transaction};
use sipscope::time::Timestamp;

use crate::common::{CLIENT, SERVER, messages, request, response, run_packets, udp};

fn completed(events: &[Event]) -> Vec<std::sync::Arc<Transaction>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TransactionCompleted(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn timed_out(events: &[Event]) -> Vec<(std::sync::Arc<Transaction>, TimeoutCause)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TransactionTimedOut { transaction, cause } => {
                Some((transaction.clone(), *cause))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn register_challenge_then_success_is_two_transactions_with_response_times() {
    let cid = "reg-1@192.168.1.2";
    let packets = [
        udp(
            0,
            CLIENT,
            SERVER,
            &request("REGISTER", "z9hG4bKr1", 1, cid, ""),
        ),
        udp(
            40,
            SERVER,
            CLIENT,
            &response(401, "Unauthorized", "REGISTER", "z9hG4bKr1", 1, cid, "s1"),
        ),
        udp(
            100,
            CLIENT,
            SERVER,
            &request("REGISTER", "z9hG4bKr2", 2, cid, ""),
        ),
        udp(
            175,
            SERVER,
            CLIENT,
            &response(200, "OK", "REGISTER", "z9hG4bKr2", 2, cid, "s2"),
        ),
    ];
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    let done = completed(&events);
    assert_eq!(done.len(), 2);
    assert_eq!((done[0].cseq, done[0].final_status()), (1, Some(401)));
    assert_eq!((done[1].cseq, done[1].final_status()), (2, Some(200)));
    assert_eq!(done[0].response_time, Some(Duration::from_millis(40)));
    assert_eq!(done[1].response_time, Some(Duration::from_millis(75)));
    assert_eq!(stats.transactions.created, 2);
    assert!(timed_out(&events).is_empty());
    // The message events carry the same transaction ids.
    let ids: Vec<_> = messages(&events).iter().map(|m| m.transaction).collect();
    assert_eq!(
        ids,
        vec![
            Some(done[0].id),
            Some(done[0].id),
            Some(done[1].id),
            Some(done[1].id)
        ]
    );
}

#[test]
fn invite_retransmissions_provisionals_and_ack_to_a_failure() {
    let cid = "inv-1@x";
    let b = "z9hG4bKi1";
    let packets = [
        udp(0, CLIENT, SERVER, &request("INVITE", b, 1, cid, "v=0\r\n")),
        udp(
            500,
            CLIENT,
            SERVER,
            &request("INVITE", b, 1, cid, "v=0\r\n"),
        ),
        udp(
            1500,
            CLIENT,
            SERVER,
            &request("INVITE", b, 1, cid, "v=0\r\n"),
        ),
        udp(
            1600,
            SERVER,
            CLIENT,
            &response(100, "Trying", "INVITE", b, 1, cid, "t"),
        ),
        udp(
            1700,
            SERVER,
            CLIENT,
            &response(180, "Ringing", "INVITE", b, 1, cid, "t"),
        ),
        udp(
            3000,
            SERVER,
            CLIENT,
            &response(486, "Busy Here", "INVITE", b, 1, cid, "t"),
        ),
        udp(
            3500,
            SERVER,
            CLIENT,
            &response(486, "Busy Here", "INVITE", b, 1, cid, "t"),
        ),
        // ACK for a non-2xx: same branch, CSeq method ACK (RFC 3261 §17.1.1.3).
        udp(3510, CLIENT, SERVER, &request("ACK", b, 1, cid, "")),
    ];
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    let msgs = messages(&events);
    let retrans: Vec<bool> = msgs.iter().map(|m| m.retransmission).collect();
    assert_eq!(
        retrans,
        vec![false, true, true, false, false, false, true, false]
    );
    let done = completed(&events);
    assert_eq!(done.len(), 1);
    let t = &done[0];
    assert_eq!(t.method, Method::Invite);
    assert_eq!(t.request_retransmissions, 2);
    let provisional: Vec<_> = t
        .provisionals
        .iter()
        .filter_map(|p| p.message.status())
        .collect();
    assert_eq!(provisional, vec![100, 180]);
    assert_eq!(t.final_status(), Some(486));
    // First request to first final response.
    assert_eq!(t.response_time, Some(Duration::from_millis(3000)));
    assert_eq!(msgs[7].transaction, Some(t.id));
    assert_eq!(stats.transactions.response_retransmissions, 1);
    assert_eq!(stats.transactions.request_retransmissions, 2);
    assert_eq!(stats.sip.retransmissions, 3);
}

#[test]
fn cancel_has_its_own_transaction_and_ack_to_2xx_has_none() {
    let cid = "inv-2@x";
    let b = "z9hG4bKc1";
    let packets = [
        udp(0, CLIENT, SERVER, &request("INVITE", b, 1, cid, "")),
        udp(
            10,
            SERVER,
            CLIENT,
            &response(180, "Ringing", "INVITE", b, 1, cid, "t"),
        ),
        udp(20, CLIENT, SERVER, &request("CANCEL", b, 1, cid, "")),
        udp(
            30,
            SERVER,
            CLIENT,
            &response(200, "OK", "CANCEL", b, 1, cid, "t"),
        ),
        udp(
            40,
            SERVER,
            CLIENT,
            &response(487, "Request Terminated", "INVITE", b, 1, cid, "t"),
        ),
        udp(50, CLIENT, SERVER, &request("ACK", b, 1, cid, "")),
        // A later call answered with 200: its ACK has a new branch.
        udp(
            100,
            CLIENT,
            SERVER,
            &request("INVITE", "z9hG4bKc2", 2, cid, ""),
        ),
        udp(
            110,
            SERVER,
            CLIENT,
            &response(200, "OK", "INVITE", "z9hG4bKc2", 2, cid, "t"),
        ),
        udp(
            120,
            CLIENT,
            SERVER,
            &request("ACK", "z9hG4bKc3", 2, cid, ""),
        ),
    ];
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    let done: Vec<_> = completed(&events)
        .iter()
        .map(|t| (t.method.to_string(), t.final_status().unwrap()))
        .collect();
    assert_eq!(
        done,
        vec![
            ("CANCEL".into(), 200),
            ("INVITE".into(), 487),
            ("INVITE".into(), 200)
        ]
    );
    assert_eq!(stats.transactions.created, 3);
    assert_eq!(stats.transactions.acks_without_transaction, 1);
    let msgs = messages(&events);
    assert!(msgs[5].transaction.is_some() && msgs[8].transaction.is_none());
}

#[test]
fn rfc2543_peers_without_magic_cookie_are_matched_by_call_id_cseq_and_tags() {
    let cid = "old-1@x";
    let packets = [
        udp(
            0,
            CLIENT,
            SERVER,
            &request("OPTIONS", "oldbranch1", 5, cid, ""),
        ),
        udp(
            10,
            SERVER,
            CLIENT,
            &response(200, "OK", "OPTIONS", "oldbranch1", 5, cid, "t"),
        ),
        udp(
            20,
            CLIENT,
            SERVER,
            &request("OPTIONS", "oldbranch1", 6, cid, ""),
        ),
        udp(
            30,
            SERVER,
            CLIENT,
            &response(200, "OK", "OPTIONS", "oldbranch1", 6, cid, "t"),
        ),
    ];
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    // Same (non-cookie) branch but different CSeq: two transactions.
    assert_eq!(completed(&events).len(), 2);
    assert_eq!(stats.transactions.created, 2);
    assert_eq!(stats.transactions.request_retransmissions, 0);
}

#[test]
fn unanswered_request_times_out_on_the_packet_clock_only() {
    let cid = "to-1@x";
    let mut p = Pipeline::new(PipelineConfig::default());
    let first = udp(
        0,
        CLIENT,
        SERVER,
        &request("REGISTER", "z9hG4bKt1", 1, cid, ""),
    );
    let t0 = first.ts;
    let mut events = p.ingest(&first);
    for ms in [500, 1500, 3500] {
        events.extend(p.ingest(&udp(
            ms,
            CLIENT,
            SERVER,
            &request("REGISTER", "z9hG4bKt1", 1, cid, ""),
        )));
    }
    assert!(timed_out(&events).is_empty());
    assert!(p.tick(t0.add(Duration::from_secs(31))).is_empty());
    let fired = p.tick(t0.add(Duration::from_secs(33)));
    let t = timed_out(&fired);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].1, TimeoutCause::NoFinalResponse);
    assert_eq!(t[0].0.request_retransmissions, 3);
    assert_eq!(p.stats().transactions.timed_out, 1);
    // A clock going backwards fires nothing again.
    assert!(p.tick(Timestamp(0)).is_empty());
    assert!(p.finish().is_empty());
}

/// A completed transaction lingers 32 s to absorb retransmissions (Timer
/// J), then leaves the table with both of its indexes: a copy of the
/// request after that is a new transaction, and the table is empty again.
#[test]
fn a_completed_transaction_is_released_once_it_absorbed_its_retransmissions() {
    let cid = "rel-1@x";
    let mut p = Pipeline::new(PipelineConfig::default());
    let options = |ms| {
        udp(
            ms,
            CLIENT,
            SERVER,
            &request("OPTIONS", "z9hG4bKrel1", 1, cid, ""),
        )
    };
    let t0 = options(0).ts;
    let mut events = p.ingest(&options(0));
    events.extend(p.ingest(&udp(
        10,
        SERVER,
        CLIENT,
        &response(200, "OK", "OPTIONS", "z9hG4bKrel1", 1, cid, "s1"),
    )));
    events.extend(p.ingest(&options(500)));
    assert_eq!(completed(&events).len(), 1);
    assert_eq!(p.stats().transactions.request_retransmissions, 1);
    assert_eq!(p.in_flight().0, 1, "lingers for retransmissions");
    assert!(p.tick(t0.add(Duration::from_secs(33))).is_empty());
    assert_eq!(p.in_flight().0, 0, "released");
    let again = p.ingest(&udp(
        34_000,
        CLIENT,
        SERVER,
        &request("OPTIONS", "z9hG4bKrel1", 1, cid, ""),
    ));
    assert_eq!(p.stats().transactions.created, 2);
    assert_eq!(p.stats().transactions.request_retransmissions, 1);
    assert!(
        again
            .iter()
            .any(|e| matches!(e, Event::Message(m) if !m.retransmission))
    );
    assert_eq!(p.in_flight().0, 1);
}

#[test]
fn invite_with_provisional_outlives_timer_b_but_non_invite_does_not() {
    let mut p = Pipeline::new(PipelineConfig::default());
    let inv = udp(
        0,
        CLIENT,
        SERVER,
        &request("INVITE", "z9hG4bKp1", 1, "p-1@x", ""),
    );
    let t0 = inv.ts;
    p.ingest(&inv);
    p.ingest(&udp(
        100,
        SERVER,
        CLIENT,
        &response(180, "Ringing", "INVITE", "z9hG4bKp1", 1, "p-1@x", "t"),
    ));
    p.ingest(&udp(
        0,
        CLIENT,
        SERVER,
        &request("SUBSCRIBE", "z9hG4bKp2", 1, "p-2@x", ""),
    ));
    p.ingest(&udp(
        100,
        SERVER,
        CLIENT,
        &response(100, "Trying", "SUBSCRIBE", "z9hG4bKp2", 1, "p-2@x", "t"),
    ));
    let fired = timed_out(&p.tick(t0.add(Duration::from_secs(40))));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].0.method, Method::Subscribe);
    let fired = timed_out(&p.tick(t0.add(Duration::from_secs(200))));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].0.method, Method::Invite);
}

#[test]
fn transaction_table_is_bounded_and_evictions_are_reported() {
    let mut config = PipelineConfig::default();
    config.transactions.max_transactions = 10;
    let packets: Vec<_> = (0..100u64)
        .map(|i| {
            let branch = format!("z9hG4bKflood{i}");
            let cid = format!("flood-{i}@x");
            udp(i, CLIENT, SERVER, &request("OPTIONS", &branch, 1, &cid, ""))
        })
        .collect();
    let (events, stats) = run_packets(&packets, config);
    assert_eq!(stats.transactions.created, 100);
    assert_eq!(stats.transactions.evicted, 90);
    let evicted = timed_out(&events)
        .iter()
        .filter(|(_, c)| *c == TimeoutCause::Evicted)
        .count();
    assert_eq!(evicted, 90);
    // The oldest went first; the newest ten are still open at the end.
    let open: Vec<u32> = timed_out(&events)
        .iter()
        .filter(|(_, c)| *c == TimeoutCause::EndOfCapture)
        .map(|(t, _)| t.id as u32)
        .collect();
    assert_eq!(open, (91..=100).collect::<Vec<_>>());
}

#[test]
fn response_retransmission_needs_same_status_and_to_tag() {
    let cid = "fork-1@x";
    let b = "z9hG4bKf1";
    let packets = [
        udp(0, CLIENT, SERVER, &request("INVITE", b, 1, cid, "")),
        udp(
            10,
            SERVER,
            CLIENT,
            &response(180, "Ringing", "INVITE", b, 1, cid, "fork-a"),
        ),
        udp(
            11,
            SERVER,
            CLIENT,
            &response(180, "Ringing", "INVITE", b, 1, cid, "fork-b"),
        ),
        udp(
            12,
            SERVER,
            CLIENT,
            &response(180, "Ringing", "INVITE", b, 1, cid, "fork-a"),
        ),
    ];
    let (events, _) = run_packets(&packets, PipelineConfig::default());
    let retrans: Vec<bool> = messages(&events).iter().map(|m| m.retransmission).collect();
    assert_eq!(retrans, vec![false, false, false, true]);
}

/// A full table evicts answered transactions (lingering only to absorb
/// retransmissions) before open ones: a request nobody answers still
/// times out at its Timer F, however many answered ones passed since.
#[test]
fn a_full_table_evicts_answered_transactions_before_an_unanswered_one() {
    let mut config = PipelineConfig::default();
    config.transactions.max_transactions = 10;
    let mut p = Pipeline::new(config);
    let lost = udp(
        0,
        CLIENT,
        SERVER,
        &request("OPTIONS", "z9hG4bKlost", 1, "lost@x", ""),
    );
    let t0 = lost.ts;
    let mut events = p.ingest(&lost);
    for i in 1..=100u64 {
        let branch = format!("z9hG4bKok{i}");
        let cid = format!("ok-{i}@x");
        events.extend(p.ingest(&udp(
            i * 100,
            CLIENT,
            SERVER,
            &request("OPTIONS", &branch, 1, &cid, ""),
        )));
        events.extend(p.ingest(&udp(
            i * 100 + 5,
            SERVER,
            CLIENT,
            &response(200, "OK", "OPTIONS", &branch, 1, &cid, "s"),
        )));
    }
    assert_eq!(completed(&events).len(), 100);
    assert_eq!(
        p.stats().transactions.evicted,
        91,
        "answered ones made room"
    );
    assert!(timed_out(&events).is_empty(), "{:?}", timed_out(&events));
    let fired = timed_out(&p.tick(t0.add(Duration::from_secs(33))));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].0.call_id().as_deref(), Some("lost@x"));
    assert_eq!(fired[0].1, TimeoutCause::NoFinalResponse);
}
