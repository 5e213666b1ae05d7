//! SDP offer/answer as far as media analysis needs it: where each side
//! wants RTP (c=/m=, RFC 8866 sections 5.7 and 5.14), which payload types and
//! clocks (a=rtpmap, RFC 8866 section 6.6; static types per RFC 3551), the
//! direction (RFC 8866 section 6.7, RFC 3264 section 5.1), the RTCP port
//! (RFC 3605), rejected streams (port 0, RFC 3264 section 6) and hold
//! (sendonly/inactive, or the RFC 2543 style `c=IN IP4 0.0.0.0`).
//!
//! Line syntax is parsed by the `sdp-types` crate; this module interprets
//! the result. Input is bounded (size, m= lines, payload types) and every
//! failure is an [`SdpError`], never a panic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use super::codec::{static_clock_rate, static_encoding_name};

/// Largest SDP body analysed. SIP over UDP keeps bodies far smaller; a body
/// past this is hostile or broken, and parsing it would cost memory.
pub(crate) const MAX_SDP_LEN: usize = 64 * 1024;
/// Most m= lines analysed per SDP.
pub(crate) const MAX_MEDIA: usize = 32;
/// Most payload types kept per m= line.
pub(crate) const MAX_PAYLOAD_TYPES: usize = 64;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP body is {len} bytes, over the {max}-byte limit; it was not analysed")]
    TooLarge { len: usize, max: usize },
    #[error("malformed SDP ({0}); fix the sender's SDP, the body was not analysed")]
    Syntax(#[source] sdp_types::ParserError),
    #[error("SDP has {count} m= lines, over the {max} analysed; it was not analysed")]
    TooManyMedia { count: usize, max: usize },
    #[error(
        "m= line {index} has no c= address and the session has none \
         (RFC 8866 section 5.7 requires one); the sender's SDP is incomplete"
    )]
    MissingConnection { index: usize },
    #[error(
        "c= address {value:?} of m= line {index} is not an IP literal; \
         only `IN IP4`/`IN IP6` addresses can be matched to RTP"
    )]
    UnsupportedAddress { index: usize, value: String },
    #[error(
        "session-level c= address {value:?} is not an IP literal; \
         only `IN IP4`/`IN IP6` addresses can be matched to RTP"
    )]
    UnsupportedSessionAddress { value: String },
    #[error("m= line {index} lists payload type {value:?}, which is not a number 0-127")]
    BadPayloadType { index: usize, value: String },
}

/// The m= media type (RFC 8866 section 5.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    /// `m=image` (T.38 fax over UDPTL).
    Image,
    Other(String),
}

impl MediaKind {
    fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "audio" => Self::Audio,
            "video" => Self::Video,
            "image" => Self::Image,
            _ => Self::Other(s.to_owned()),
        }
    }
}

/// The m= transport protocol (RFC 3551, RFC 3711, RFC 4585, RFC 5124).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportProtocol {
    RtpAvp,
    RtpSavp,
    RtpAvpf,
    RtpSavpf,
    /// Anything else, e.g. `udptl` for T.38 or `UDP/TLS/RTP/SAVPF`.
    Other(String),
}

impl TransportProtocol {
    fn parse(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "RTP/AVP" => Self::RtpAvp,
            "RTP/SAVP" => Self::RtpSavp,
            "RTP/AVPF" => Self::RtpAvpf,
            "RTP/SAVPF" => Self::RtpSavpf,
            _ => Self::Other(s.to_owned()),
        }
    }

    /// True when the stream carries RTP, so payload types are numbers.
    pub fn is_rtp(&self) -> bool {
        match self {
            Self::Other(s) => s.to_ascii_uppercase().contains("RTP/"),
            _ => true,
        }
    }
}

/// Media direction attribute (RFC 8866 section 6.7; default sendrecv).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MediaDirection {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl MediaDirection {
    fn from_attribute(name: &str) -> Option<Self> {
        Some(match name {
            "sendrecv" => Self::SendRecv,
            "sendonly" => Self::SendOnly,
            "recvonly" => Self::RecvOnly,
            "inactive" => Self::Inactive,
            _ => return None,
        })
    }

    /// This side intends to send RTP.
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// This side is willing to receive RTP.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }
}

/// One payload format of an m= line with what a=rtpmap (or, for static
/// types, RFC 3551) says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadFormat {
    pub payload_type: u8,
    /// Encoding name (`PCMA`, `telephone-event`, …); `None` for a dynamic
    /// type without a=rtpmap.
    pub encoding: Option<String>,
    /// RTP clock in Hz; `None` when unknown (dynamic type without rtpmap).
    pub clock_rate: Option<u32>,
}

/// One m= section, resolved against the session level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaDescription {
    /// Position of the m= line (0-based); offer and answer pair by it.
    pub index: usize,
    pub kind: MediaKind,
    pub protocol: TransportProtocol,
    /// Media-level c= if present, else the session-level one. Unspecified
    /// (0.0.0.0/::) means hold in RFC 2543 style.
    pub connection: IpAddr,
    /// RTP port; 0 means the stream is rejected/disabled (RFC 3264 section 6).
    pub port: u16,
    /// a=rtcp port (RFC 3605), else RTP port + 1 (RFC 3550 section 11).
    pub rtcp_port: Option<u16>,
    /// Payload types in preference order, as listed on the m= line.
    pub payload_types: Vec<u8>,
    pub formats: Vec<PayloadFormat>,
    /// Clock of the preferred (first) payload type, when known.
    pub clock_rate: Option<u32>,
    pub direction: MediaDirection,
}

impl MediaDescription {
    /// Port 0: the stream is rejected or disabled (RFC 3264 sections 6, 8.2).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// On hold: RFC 3264 section 8.4 (sendonly/inactive) or RFC 2543 style
    /// unspecified connection address.
    pub fn is_hold(&self) -> bool {
        self.connection.is_unspecified()
            || matches!(
                self.direction,
                MediaDirection::SendOnly | MediaDirection::Inactive
            )
    }

    /// Where this side wants to receive RTP.
    pub fn rtp_address(&self) -> SocketAddr {
        SocketAddr::new(self.connection, self.port)
    }

    /// The payload format entry for `payload_type`.
    pub fn format(&self, payload_type: u8) -> Option<&PayloadFormat> {
        self.formats.iter().find(|f| f.payload_type == payload_type)
    }
}

/// A parsed SDP body: the session-level connection and the m= sections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDescription {
    /// Session-level c= address.
    pub connection: Option<IpAddr>,
    /// o= unicast address, useful as evidence for NAT findings.
    pub origin_address: Option<String>,
    pub media: Vec<MediaDescription>,
}

/// Parses an SDP body (RFC 8866) into the parts offer/answer analysis uses.
///
/// Tolerant of what real SIP bodies contain: CRLF or LF line ends, trailing
/// whitespace, blank lines, unknown attributes and malformed `a=rtpmap`
/// lines (ignored; the payload type is then treated as without rtpmap).
pub fn parse_sdp(body: &[u8]) -> Result<SessionDescription, SdpError> {
    if body.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge {
            len: body.len(),
            max: MAX_SDP_LEN,
        });
    }
    let session = sdp_types::Session::parse(&normalise_lines(body)).map_err(SdpError::Syntax)?;
    if session.medias.len() > MAX_MEDIA {
        return Err(SdpError::TooManyMedia {
            count: session.medias.len(),
            max: MAX_MEDIA,
        });
    }
    let session_connection = match &session.connection {
        Some(c) => Some(
            parse_connection_address(&c.connection_address).ok_or_else(|| {
                SdpError::UnsupportedSessionAddress {
                    value: c.connection_address.clone(),
                }
            })?,
        ),
        None => None,
    };
    let session_direction = direction_of(&session.attributes);
    let media = session
        .medias
        .iter()
        .enumerate()
        .map(|(index, m)| describe_media(index, m, session_connection, session_direction))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SessionDescription {
        connection: session_connection,
        origin_address: Some(session.origin.unicast_address.clone()).filter(|a| !a.is_empty()),
        media,
    })
}

/// Drops blank lines and trailing whitespace (including a stray CR) so that
/// the strict line grammar of the parser accepts what SIP stacks send.
fn normalise_lines(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split(|&b| b == b'\n') {
        let end = line
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r'))
            .map_or(0, |p| p + 1);
        if end > 0 {
            out.extend_from_slice(&line[..end]);
            out.push(b'\n');
        }
    }
    out
}

fn describe_media(
    index: usize,
    m: &sdp_types::Media,
    session_connection: Option<IpAddr>,
    session_direction: Option<MediaDirection>,
) -> Result<MediaDescription, SdpError> {
    let protocol = TransportProtocol::parse(&m.proto);
    let connection = match m.connections.first() {
        Some(c) => parse_connection_address(&c.connection_address).ok_or_else(|| {
            SdpError::UnsupportedAddress {
                index,
                value: c.connection_address.clone(),
            }
        })?,
        None => match session_connection {
            Some(addr) => addr,
            // A rejected stream need not say where it would have gone.
            None if m.port == 0 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            None => return Err(SdpError::MissingConnection { index }),
        },
    };

    let mut payload_types = Vec::new();
    if protocol.is_rtp() {
        for token in m.fmt.split_ascii_whitespace().take(MAX_PAYLOAD_TYPES) {
            match token.parse::<u8>() {
                Ok(pt) if pt <= 127 => payload_types.push(pt),
                _ => {
                    return Err(SdpError::BadPayloadType {
                        index,
                        value: token.to_owned(),
                    });
                }
            }
        }
    }

    let rtpmaps: Vec<sdp_types::RtpMap> = m
        .attributes
        .iter()
        .filter(|a| a.attribute.eq_ignore_ascii_case("rtpmap"))
        .filter_map(|a| a.value.as_deref())
        .filter_map(|v| sdp_types::RtpMap::from_str(v.trim()).ok())
        .collect();
    let formats: Vec<PayloadFormat> = payload_types
        .iter()
        .map(|&pt| match rtpmaps.iter().find(|r| r.payload_type == pt) {
            Some(r) => PayloadFormat {
                payload_type: pt,
                encoding: Some(r.encoding_name.clone()),
                clock_rate: Some(r.clock_rate).filter(|&c| c > 0),
            },
            None => PayloadFormat {
                payload_type: pt,
                encoding: static_encoding_name(pt).map(str::to_owned),
                clock_rate: static_clock_rate(pt),
            },
        })
        .collect();

    let rtcp_port = m
        .attributes
        .iter()
        .find(|a| a.attribute.eq_ignore_ascii_case("rtcp"))
        .and_then(|a| a.value.as_deref())
        .and_then(|v| sdp_types::Rtcp::from_str(v.trim()).ok())
        .map(|r| r.port)
        .or_else(|| {
            (m.port != 0)
                .then(|| m.port.wrapping_add(1))
                .filter(|&p| p != 0)
        });

    Ok(MediaDescription {
        index,
        kind: MediaKind::parse(&m.media),
        protocol,
        connection,
        port: m.port,
        rtcp_port,
        clock_rate: formats.first().and_then(|f| f.clock_rate),
        payload_types,
        formats,
        direction: direction_of(&m.attributes)
            .or(session_direction)
            .unwrap_or_default(),
    })
}

/// The last direction attribute wins, as most stacks treat duplicates.
fn direction_of(attributes: &[sdp_types::Attribute]) -> Option<MediaDirection> {
    attributes
        .iter()
        .rev()
        .find_map(|a| MediaDirection::from_attribute(&a.attribute.to_ascii_lowercase()))
}

/// `IP4 192.0.2.1`, `IP4 224.2.1.1/127` (multicast TTL) and IPv6 literals.
fn parse_connection_address(value: &str) -> Option<IpAddr> {
    let addr = value.split('/').next()?.trim();
    addr.parse().ok()
}

/// One m= line of an offer paired with the same line of the answer
/// (RFC 3264 section 6: the answer has exactly as many m= lines, in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiatedStream {
    pub index: usize,
    pub kind: MediaKind,
    pub offer: MediaDescription,
    pub answer: MediaDescription,
}

impl NegotiatedStream {
    /// Rejected by the answerer, or disabled in the offer (port 0).
    pub fn is_rejected(&self) -> bool {
        self.answer.is_rejected() || self.offer.is_rejected()
    }

    /// The payload type in use: the answerer's first listed type that the
    /// offer also lists (RFC 3264 section 6.1).
    pub fn payload_type(&self) -> Option<u8> {
        self.answer
            .payload_types
            .iter()
            .copied()
            .find(|pt| self.offer.payload_types.contains(pt))
    }

    /// The negotiated format, with the clock rate from either side's rtpmap.
    pub fn format(&self) -> Option<PayloadFormat> {
        let pt = self.payload_type()?;
        let answer = self.answer.format(pt);
        let offer = self.offer.format(pt);
        Some(PayloadFormat {
            payload_type: pt,
            encoding: answer
                .and_then(|f| f.encoding.clone())
                .or_else(|| offer.and_then(|f| f.encoding.clone())),
            clock_rate: answer
                .and_then(|f| f.clock_rate)
                .or_else(|| offer.and_then(|f| f.clock_rate)),
        })
    }

    /// The offerer is expected to send RTP to the answerer's address.
    pub fn offerer_sends(&self) -> bool {
        !self.is_rejected()
            && self.offer.direction.sends()
            && self.answer.direction.receives()
            && !self.answer.connection.is_unspecified()
    }

    /// The answerer is expected to send RTP to the offerer's address.
    pub fn answerer_sends(&self) -> bool {
        !self.is_rejected()
            && self.answer.direction.sends()
            && self.offer.direction.receives()
            && !self.offer.connection.is_unspecified()
    }
}

/// Pairs the m= lines of an offer and its answer by index (RFC 3264
/// section 6). An answer with fewer lines violates RFC 3264; the unmatched
/// offer lines are left out rather than guessed.
pub fn negotiated_streams(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Vec<NegotiatedStream> {
    offer
        .media
        .iter()
        .zip(&answer.media)
        .map(|(o, a)| NegotiatedStream {
            index: o.index,
            kind: o.kind.clone(),
            offer: o.clone(),
            answer: a.clone(),
        })
        .collect()
}

#[cfg(test)]
#[path = "sdp_tests.rs"]
mod tests;
