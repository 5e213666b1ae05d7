//! Hand-built frames through an AF_PACKET socket: VLAN (802.1Q) and QinQ
//! (802.1ad) tags, which this kernel cannot produce itself (no 8021q module).

use std::time::Duration;

use etherparse::{PacketBuilder, VlanId};

use crate::{
    agent::{Agent, Dumpcap},
    require_root,
    support::{
        TempDir,
        netns::{RawSocket, VethPair},
        pcap::{datagrams, read_frames},
        wait_for,
    },
};

fn sip_options(tag: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:vlan@10.77.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.77.0.2:5062;branch=z9hG4bK-{tag}\r\n\
         From: <sip:vlan@10.77.0.2>;tag={tag}\r\nTo: <sip:vlan@10.77.0.1>\r\nCall-ID: {tag}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn vlan_and_qinq_tagged_sip_is_captured_with_its_tags() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("vlan");
    let src = VethPair::mac(&pair.peer, &pair.peer_if);
    let dst = VethPair::mac(&pair.host, &pair.host_if);

    let mut single = Vec::new();
    PacketBuilder::ethernet2(src, dst)
        .single_vlan(VlanId::try_new(100).unwrap())
        .ipv4(VethPair::PEER_V4.octets(), VethPair::HOST_V4.octets(), 64)
        .udp(5062, 5060)
        .write(&mut single, &sip_options("dot1q"))
        .unwrap();
    let mut double = Vec::new();
    PacketBuilder::ethernet2(src, dst)
        .double_vlan(VlanId::try_new(200).unwrap(), VlanId::try_new(300).unwrap())
        .ipv6(VethPair::PEER_V6.octets(), VethPair::HOST_V6.octets(), 64)
        .udp(5062, 5060)
        .write(&mut double, &sip_options("qinq"))
        .unwrap();
    // 802.1ad service tag outside, 802.1Q customer tag inside.
    double[12..14].copy_from_slice(&0x88A8u16.to_be_bytes());
    assert_eq!(&single[12..14], &0x8100u16.to_be_bytes());
    assert_eq!(&double[16..18], &0x8100u16.to_be_bytes());

    let mut agent = Agent::start(&pair, &dir, &[]);
    let mut dumpcap = Dumpcap::start(&pair, &dir);
    let raw = RawSocket::open(&pair.peer, &pair.peer_if);
    raw.send(&single);
    raw.send(&double);
    // dumpcap has them once its file holds both records.
    wait_for(
        Duration::from_secs(10),
        "agent to print both tagged messages (decoded through the tags)",
        || {
            let out = agent.proc.stdout_text();
            let printed = out
                .lines()
                .filter(|l| l.contains(" in ") && l.contains("UDP  OPTIONS sip:vlan@10.77.0.1"))
                .count();
            (printed == 2).then_some(())
        },
    );
    let (_stdout, counters) = agent.stop();
    dumpcap.wait_for_datagrams(&[5060], 2);
    dumpcap.stop();

    let ours = read_frames(&agent.pcap);
    assert_eq!(ours.len(), 2);
    assert_eq!(
        ours[0].data, single,
        "802.1Q frame captured exactly as sent"
    );
    assert_eq!(ours[1].data, double, "QinQ frame captured exactly as sent");
    let theirs = read_frames(&dumpcap.pcap);
    assert_eq!(datagrams(&ours, &[5060]), datagrams(&theirs, &[5060]));
    assert_eq!(datagrams(&ours, &[5060]).len(), 2);
    assert_eq!(counters["sip_captured"], 2);
}
