//! Captures made with real clients (tests/fixtures/clients/README.md says
//! how): the exact codes the pipeline raises on each, as `analyze` would.

use std::collections::BTreeSet;

use sipscope::pipeline::{Event, PipelineConfig};

use crate::common::{fixtures, run_file};

fn codes(file: &str) -> BTreeSet<String> {
    let (events, _) = run_file(
        &fixtures().join("clients").join(file),
        PipelineConfig::default(),
    );
    events
        .iter()
        .filter_map(|e| match e {
            Event::Diagnosis(d) => Some(d.code.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

fn set(c: &[&str]) -> BTreeSet<String> {
    c.iter().map(|s| s.to_string()).collect()
}

#[test]
fn pjsip_flapping_under_new_call_ids_is_one_binding_flapping() {
    assert_eq!(
        codes("pjsip-flap-503-new-call-ids.pcap"),
        set(&["reg.flapping", "reg.rejected"])
    );
}

#[test]
fn pjsip_register_unanswered_in_an_eight_second_capture_is_no_response() {
    assert_eq!(
        codes("pjsip-register-silent-registrar-8s.pcap"),
        set(&["net.no_response"])
    );
}

#[test]
fn pjsip_invite_challenged_again_is_auth_rejected() {
    assert_eq!(
        codes("pjsip-invite-407-wrong-password.pcap"),
        set(&["auth.rejected"])
    );
}

#[test]
fn baresip_healthy_call_raises_nothing() {
    assert_eq!(codes("baresip-call-two-way-pcmu.pcap"), set(&[]));
}
