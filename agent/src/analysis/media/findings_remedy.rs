//! Remedy texts of [`super::MediaFinding`]s, phrased for the common PBXs
//! (Asterisk PJSIP, FreeSWITCH, Kamailio with rtpengine) and the local
//! firewall, with the stream's own addresses and ports filled in. (The
//! catalogue's remedies per diagnosis code are in `diagnosis::remedy`.)

use std::net::IpAddr;

use super::matching::StreamDirection;
use super::sdp::{MediaDescription, NegotiatedStream};

fn firewall(port: u16) -> String {
    format!(
        "Firewall: allow the RTP port range inbound on the media host (it includes {port}), \
         e.g. `nft add rule inet filter input udp dport 10000-20000 accept`, and disable \
         SIP ALG on NAT routers in the path."
    )
}

const PJSIP_NAT: &str = "Asterisk/PJSIP: on the transport set external_media_address=<public IP> \
     and local_net=<LAN CIDR>; on the endpoint set rtp_symmetric=yes, force_rport=yes, \
     rewrite_contact=yes and direct_media=no; keep rtp.conf rtpstart/rtpend inside the \
     range the firewall opens.";
const FREESWITCH_NAT: &str = "FreeSWITCH: set ext-rtp-ip (e.g. autonat:<public IP>) in the SIP \
     profile and rtp-start-port/rtp-end-port in switch.conf.xml to the range the firewall opens.";
const KAMAILIO_NAT: &str = "Kamailio: relay the media through rtpengine (rtpengine_manage() with \
     replace-origin replace-session-connection) so both ends send to a reachable address.";

/// Neither side's RTP arrived.
pub(crate) fn no_media(stream: &NegotiatedStream) -> String {
    format!(
        "Check that RTP can reach {} and {}. {} {PJSIP_NAT} {FREESWITCH_NAT} {KAMAILIO_NAT}",
        stream.offer.rtp_address(),
        stream.answer.rtp_address(),
        firewall(stream.offer.port)
    )
}

/// RTP is missing in direction `silent`.
pub(crate) fn one_way(stream: &NegotiatedStream, silent: StreamDirection) -> String {
    let receiver = silent.receiver(stream);
    format!(
        "RTP toward {} never arrived: usually NAT (its SDP address is not where packets can reach) \
         or a firewall dropping the RTP range. {} {PJSIP_NAT} {FREESWITCH_NAT} {KAMAILIO_NAT}",
        receiver.rtp_address(),
        firewall(receiver.port)
    )
}

/// Loss, jitter or MOS beyond thresholds.
pub(crate) fn quality() -> String {
    "The network path loses or delays RTP: check link utilisation and errors on the path, mark \
     RTP with DSCP EF (46) and honour it on routers/WAN links, avoid Wi-Fi for the phone, and \
     prefer a loss-robust codec (G.711 with PLC, Opus) on lossy links. Asterisk/PJSIP: \
     set tos_audio=ef on the endpoint; FreeSWITCH: rtp-tos/dscp in the profile; Kamailio with \
     rtpengine: its --tos option."
        .to_owned()
}

/// The SDP carries a private address.
pub(crate) fn private_sdp(media: &MediaDescription, signalling_source: IpAddr) -> String {
    format!(
        "The sender is behind NAT and advertises {} in its SDP. Either make it advertise its \
         public address ({signalling_source} as seen here), or let the PBX ignore the SDP \
         address: {PJSIP_NAT} {FREESWITCH_NAT} {KAMAILIO_NAT} {}",
        media.connection,
        firewall(media.port)
    )
}
