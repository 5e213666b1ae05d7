//! NAT findings: where the addresses a SIP message advertises (Contact,
//! Via sent-by, SDP `c=`) disagree with where it actually came from.
//!
//! Vantage point matters. On a registrar/SBC, a request from behind a NAT
//! arrives from the public address while Contact/Via still say the private
//! one ([`check_request`], `nat.private_contact`). On the PBX itself the
//! outgoing request leaves from its own private address, so the NAT is only
//! visible in the response, when the peer echoes our Via with `received=`
//! and `rport=` ([`check_response_via`], `nat.rewritten_by_peer`,
//! RFC 3261 §18.2.1, RFC 3581 §4). [`check_sdp`] does the same for media.
//!
//! Hostnames are never flagged: only IP literals can be classified. The
//! addresses are read by sip/ ([`Via`], [`HostPort`], [`SipTransport`]);
//! this module only judges them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::diagnosis::{Code, Diagnosis, Evidence, Remedy, Severity};
use crate::sip::host_port::ip_literal;
use crate::sip::{HostPort, Rport, SipTransport, Via};
use crate::time::Timestamp;

/// Where an IP address can be reached from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AddressScope {
    /// Globally routable (anything not below).
    Public,
    /// RFC 1918: 10/8, 172.16/12, 192.168/16.
    Private,
    /// RFC 6598 carrier-grade NAT space: 100.64/10.
    SharedCgnat,
    /// 169.254/16 (RFC 3927) or fe80::/10 (RFC 4291).
    LinkLocal,
    /// 127/8 or ::1.
    Loopback,
    /// 0.0.0.0/8 ("this network", RFC 1122) or ::.
    Unspecified,
    /// IPv6 unique local fc00::/7 (RFC 4193).
    UniqueLocal,
    /// Deprecated IPv6 site-local fec0::/10 (RFC 3879), still seen in old captures.
    SiteLocal,
}

impl AddressScope {
    /// Classifies `ip`; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) by its IPv4.
    pub(crate) fn of(ip: IpAddr) -> AddressScope {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => Self::of_v6(v6),
        }
    }

    fn of_v4(ip: Ipv4Addr) -> AddressScope {
        let [a, b, ..] = ip.octets();
        match (a, b) {
            (0, _) => AddressScope::Unspecified,
            (10, _) | (192, 168) => AddressScope::Private,
            (172, 16..=31) => AddressScope::Private,
            (100, 64..=127) => AddressScope::SharedCgnat,
            (169, 254) => AddressScope::LinkLocal,
            (127, _) => AddressScope::Loopback,
            _ => AddressScope::Public,
        }
    }

    fn of_v6(ip: Ipv6Addr) -> AddressScope {
        let first = ip.segments()[0];
        if ip.is_unspecified() {
            AddressScope::Unspecified
        } else if ip.is_loopback() {
            AddressScope::Loopback
        } else if first & 0xfe00 == 0xfc00 {
            AddressScope::UniqueLocal
        } else if first & 0xffc0 == 0xfe80 {
            AddressScope::LinkLocal
        } else if first & 0xffc0 == 0xfec0 {
            AddressScope::SiteLocal
        } else {
            AddressScope::Public
        }
    }

    /// Reachable from the Internet.
    pub(crate) fn is_public(self) -> bool {
        self == AddressScope::Public
    }

    /// Plain-language name with its RFC, for summaries.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            AddressScope::Public => "public",
            AddressScope::Private => "private (RFC 1918)",
            AddressScope::SharedCgnat => "carrier-grade NAT (RFC 6598 100.64/10)",
            AddressScope::LinkLocal => "link-local",
            AddressScope::Loopback => "loopback",
            AddressScope::Unspecified => "unspecified (0.0.0.0 / ::)",
            AddressScope::UniqueLocal => "IPv6 unique local (fc00::/7)",
            AddressScope::SiteLocal => "deprecated IPv6 site-local (fec0::/10)",
        }
    }
}

/// The non-public block `ip` belongs to, in CIDR form (a `local_net=`
/// suggestion), or `None` for public addresses.
pub(crate) fn local_network(ip: IpAddr) -> Option<&'static str> {
    let ip = ip.to_canonical();
    Some(match (AddressScope::of(ip), ip) {
        (AddressScope::Private, IpAddr::V4(v4)) => match v4.octets()[0] {
            10 => "10.0.0.0/8",
            172 => "172.16.0.0/12",
            _ => "192.168.0.0/16",
        },
        (AddressScope::SharedCgnat, _) => "100.64.0.0/10",
        (AddressScope::LinkLocal, IpAddr::V4(_)) => "169.254.0.0/16",
        (AddressScope::LinkLocal, IpAddr::V6(_)) => "fe80::/10",
        (AddressScope::UniqueLocal, _) => "fc00::/7",
        (AddressScope::SiteLocal, _) => "fec0::/10",
        _ => return None,
    })
}

/// Addresses of a request as seen on the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestAddresses<'a> {
    pub method: &'a str,
    /// Observed L3/L4 source of the packet.
    pub source: SocketAddr,
    /// Via values, top first.
    pub vias: &'a [Via],
    /// Contact host:port values (skip `*`).
    pub contacts: &'a [HostPort],
}

/// The address the originating UA sent from: the packet source when the
/// request came directly (one Via), else what the first proxy recorded in
/// the bottom Via (`received`/`rport`, RFC 3261 §18.2.1).
fn origin(req: &RequestAddresses<'_>) -> Option<(IpAddr, u16, &'static str)> {
    match req.vias {
        [] | [_] => Some((
            req.source.ip().to_canonical(),
            req.source.port(),
            "observed source",
        )),
        [.., bottom] => {
            let ip = bottom
                .received
                .as_deref()
                .and_then(ip_literal)
                .or_else(|| ip_literal(&bottom.sent_by.host))?;
            let port = match bottom.rport {
                Rport::Value(p) => p,
                _ => bottom
                    .sent_by
                    .port
                    .unwrap_or(bottom.transport.default_port()),
            };
            Some((ip, port, "origin recorded by the first proxy (bottom Via)"))
        }
    }
}

/// `nat.private_contact` / `nat.contact_port_mismatch` for a request: a
/// private Contact or top-Via sent-by that differs from where the request
/// came from, or (UDP) a Contact port other than the source port.
pub(crate) fn check_request(at: Timestamp, req: &RequestAddresses<'_>) -> Vec<Diagnosis> {
    let transport = req.vias.first().map_or(SipTransport::Udp, |v| v.transport);
    let src_ip = req.source.ip().to_canonical();
    let mut evidence = Vec::new();
    let mut private_ip = None;

    if let Some(top) = req.vias.first()
        && let Some(ip) = ip_literal(&top.sent_by.host)
        && !AddressScope::of(ip).is_public()
        && ip != src_ip
    {
        evidence.push(Evidence::new("Via sent-by", top.sent_by.to_string()));
        private_ip = Some(ip);
    }

    let origin = origin(req);
    let mut port_mismatch = Vec::new();
    if let Some((o_ip, o_port, _)) = origin {
        for c in req.contacts {
            let Some(ip) = ip_literal(&c.host) else {
                continue; // hostnames are resolved by the peer; not ours to judge
            };
            let port = c.port.unwrap_or(transport.default_port());
            if !AddressScope::of(ip).is_public() && ip != o_ip {
                evidence.push(Evidence::new("Contact", c.to_string()));
                private_ip.get_or_insert(ip);
            } else if ip == o_ip && transport == SipTransport::Udp && port != o_port {
                port_mismatch.push(c);
            }
        }
    }
    // Without a known origin (proxied, bottom Via a hostname) the packet
    // source still tells what the top Via should have said.
    let (o_ip, o_port, o_what) = origin.unwrap_or((src_ip, req.source.port(), "observed source"));
    let from = SocketAddr::new(o_ip, o_port);
    let mut out = Vec::new();
    if let Some(ip) = private_ip {
        evidence.push(Evidence::new(o_what, from.to_string()));
        let public = AddressScope::of(o_ip).is_public().then_some(o_ip);
        let mut d = Diagnosis::new(
            Code::NatPrivateContact,
            at,
            format!(
                "The {} advertises {} address {ip} but came from {from}: a NAT sits between \
                 the sender and here, and requests sent back to the advertised address \
                 (e.g. incoming calls) will not arrive unless the receiver uses the source \
                 address instead.",
                req.method,
                AddressScope::of(ip).describe(),
            ),
        )
        .with_remedy(Remedy::for_nat(
            Code::NatPrivateContact,
            public,
            local_network(ip),
        ));
        d.evidence = evidence;
        out.push(d);
    }
    for c in port_mismatch {
        out.push(
            Diagnosis::new(
                Code::NatContactPortMismatch,
                at,
                format!(
                    "The {} came from UDP port {o_port} but its Contact says port {}: a NAT \
                     or firewall translated the port, so requests sent to the Contact port \
                     will not reach the sender.",
                    req.method,
                    c.port.unwrap_or(transport.default_port()),
                ),
            )
            .with_remedy(Remedy::for_nat(
                Code::NatContactPortMismatch,
                AddressScope::of(o_ip).is_public().then_some(o_ip),
                None,
            ))
            .with_evidence(Evidence::new("Contact", c.to_string()))
            .with_evidence(Evidence::new(o_what, from.to_string())),
        );
    }
    out
}

/// `nat.rewritten_by_peer` from our own Via as a response echoes it: a
/// `received=` differing from the sent-by IP, or (UDP) an `rport=` differing
/// from the sent-by port, shows a NAT between this host and the peer.
/// `contacts` are the Contact addresses of the request: if they still
/// advertise a private address the finding is a warning, else information.
pub(crate) fn check_response_via(
    at: Timestamp,
    via: &Via,
    contacts: &[HostPort],
) -> Option<Diagnosis> {
    let sent_ip = ip_literal(&via.sent_by.host);
    let received = via.received.as_deref().and_then(ip_literal);
    let sent_port = via.sent_by.port.unwrap_or(via.transport.default_port());
    // A hostname sent-by always earns a received= (RFC 3261 18.2.1): no NAT signal.
    let addr_changed = matches!((sent_ip, received), (Some(s), Some(r)) if s != r);
    let port_changed = via.transport == SipTransport::Udp
        && matches!(via.rport, Rport::Value(p) if p != sent_port);
    if !addr_changed && !port_changed {
        return None;
    }
    let seen_ip = received.or(sent_ip);
    let seen_port = match via.rport {
        Rport::Value(p) => p,
        _ => sent_port,
    };
    let seen = seen_ip.map_or_else(
        || format!("port {seen_port}"),
        |ip| SocketAddr::new(ip, seen_port).to_string(),
    );
    let stale_contact = contacts.iter().find(|c| {
        ip_literal(&c.host)
            .is_some_and(|ip| !AddressScope::of(ip).is_public() && Some(ip) != received)
    });
    let mut summary = format!(
        "The peer saw this host's request coming from {seen}, while its Via says {}: a NAT \
         sits between this host and the peer.",
        via.sent_by
    );
    let severity = match stale_contact {
        Some(c) => {
            summary.push_str(&format!(
                " The Contact still advertises {}, so calls to this host depend on the peer \
                 rewriting it.",
                c
            ));
            Severity::Warning
        }
        None => Severity::Info,
    };
    let mut d = Diagnosis::new(Code::NatRewrittenByPeer, at, summary)
        .with_severity(severity)
        .with_remedy(Remedy::for_nat(
            Code::NatRewrittenByPeer,
            received.filter(|ip| AddressScope::of(*ip).is_public()),
            sent_ip.and_then(local_network),
        ))
        .with_evidence(Evidence::new("Via sent-by", via.sent_by.to_string()));
    if let Some(r) = &via.received {
        d = d.with_evidence(Evidence::new("received", r.clone()));
    }
    if let Rport::Value(p) = via.rport {
        d = d.with_evidence(Evidence::new("rport", p.to_string()));
    }
    if let Some(c) = stale_contact {
        d = d.with_evidence(Evidence::new("Contact", c.to_string()));
    }
    Some(d)
}

/// `nat.private_sdp`: the SDP connection address (`c=`) is not public and
/// differs from `signalling_source`, the address the peer sees this side's
/// signalling come from (the packet source, or `received=` learned from a
/// response Via). `c=0.0.0.0` (hold, RFC 3264 §8.4) and FQDNs are not flagged.
#[cfg(test)]
pub(crate) fn check_sdp(
    at: Timestamp,
    connection_address: &str,
    media_port: Option<u16>,
    signalling_source: IpAddr,
) -> Option<Diagnosis> {
    let ip = ip_literal(connection_address)?;
    let scope = AddressScope::of(ip);
    let signalling_source = signalling_source.to_canonical();
    if scope.is_public() || scope == AddressScope::Unspecified || ip == signalling_source {
        return None;
    }
    let mut d = Diagnosis::new(
        Code::NatPrivateSdp,
        at,
        format!(
            "The SDP asks the peer to send media to {} address {ip}, but the signalling comes \
             from {signalling_source}: the peer cannot reach that address, so expect one-way \
             or no audio unless it uses symmetric RTP.",
            scope.describe()
        ),
    )
    .with_remedy(Remedy::for_nat(
        Code::NatPrivateSdp,
        Some(signalling_source).filter(|s| AddressScope::of(*s).is_public()),
        local_network(ip),
    ))
    .with_evidence(Evidence::new("SDP c=", ip.to_string()));
    if let Some(p) = media_port {
        d = d.with_evidence(Evidence::new("SDP m= port", p.to_string()));
    }
    Some(d.with_evidence(Evidence::new(
        "signalling source",
        signalling_source.to_string(),
    )))
}

#[cfg(test)]
mod tests;
