//! IPv6 (RFC 8200 §3) and its extension-header chain (RFC 8200 §4), walked
//! by our own code with every length checked against the captured bytes.
//!
//! etherparse 0.19 is not used for the chain: after its lax parser stopped
//! at a truncated extension header, its `Ipv6ExtensionSliceIter` reads past
//! the end of the slice (`from_slice_unchecked` on the bytes that were
//! missing), which a capture cut short by the snap length or one crafted
//! packet turns into an invalid read. Nothing here is `unsafe`; a chain
//! that does not fit is an [`Ipv6Error`], counted by the caller.

use std::net::Ipv6Addr;

/// Fixed header length (RFC 8200 §3).
pub(crate) const HEADER_LEN: usize = 40;

/// Extension headers followed at most: a chain longer than this is not a
/// real packet (RFC 8200 §4.1 lists at most one of each type, Destination
/// Options twice) and is refused rather than walked.
const MAX_EXTENSIONS: usize = 16;

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTH: u8 = 51;
const DEST_OPTIONS: u8 = 60;
const MOBILITY: u8 = 135;
const HIP: u8 = 139;
const SHIM6: u8 = 140;
const EXPERIMENT_1: u8 = 253;
const EXPERIMENT_2: u8 = 254;

/// The fields of an IPv6 Fragment header (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fragment {
    pub id: u32,
    /// Offset of the data after this header, in 8-octet units.
    pub offset: u16,
    /// The M flag: more fragments follow.
    pub more: bool,
}

/// An IPv6 packet with its extension headers skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ipv6Packet<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The Next Header value that ends the walk: the upper-layer protocol,
    /// or, for a fragment, the first header of the fragmentable part.
    pub protocol: u8,
    /// The bytes after the last header walked, bounded by the Payload
    /// Length and by what was captured.
    pub payload: &'a [u8],
    /// The Fragment header, when the packet is a fragment (not an atomic
    /// one: RFC 6946 atomic fragments are whole and walked through). The
    /// walk stops there: fragment offsets count from the byte after it
    /// (RFC 8200 §4.5), and only the reassembled payload can be walked on.
    pub fragment: Option<Fragment>,
}

/// Why an IPv6 packet could not be walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Ipv6Error {
    #[error("IPv6 header cut short: {captured} of {HEADER_LEN} bytes")]
    ShortHeader { captured: usize },
    #[error("IP version {0} where IPv6 was expected")]
    Version(u8),
    #[error(
        "IPv6 extension header {header} at offset {offset} cut short: {needed} bytes needed, {available} there"
    )]
    TruncatedExtension {
        header: u8,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("IPv6 Hop-by-Hop Options header at offset {offset}, not first (RFC 8200 §4.1)")]
    HopByHopNotFirst { offset: usize },
    #[error("more than {MAX_EXTENSIONS} IPv6 extension headers")]
    TooManyExtensions,
    #[error("IPv6 Fragment header inside a reassembled fragment")]
    NestedFragment,
}

/// Parse the fixed header of `d` and walk its extension headers.
pub(crate) fn parse(d: &[u8]) -> Result<Ipv6Packet<'_>, Ipv6Error> {
    let Some(h) = d.get(..HEADER_LEN) else {
        return Err(Ipv6Error::ShortHeader { captured: d.len() });
    };
    if h[0] >> 4 != 6 {
        return Err(Ipv6Error::Version(h[0] >> 4));
    }
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let rest = &d[HEADER_LEN..];
    // Payload Length 0 is a jumbogram (RFC 2675) or an offloaded capture:
    // take what was captured. Otherwise cut Ethernet padding, and take
    // what is there of a packet captured short.
    let rest = if payload_len == 0 {
        rest
    } else {
        &rest[..payload_len.min(rest.len())]
    };
    let src: [u8; 16] = h[8..24].try_into().expect("16 bytes");
    let dst: [u8; 16] = h[24..40].try_into().expect("16 bytes");
    let (protocol, payload, fragment) = walk(h[6], rest, HEADER_LEN)?;
    Ok(Ipv6Packet {
        src: Ipv6Addr::from(src),
        dst: Ipv6Addr::from(dst),
        protocol,
        payload,
        fragment,
    })
}

/// Walk the extension headers that follow a reassembled IPv6 fragment
/// (the fragmentable part may start with Destination Options or Routing,
/// RFC 8200 §4.5). A second Fragment header there is not followed.
pub(crate) fn skip_extensions(first: u8, d: &[u8]) -> Result<(u8, &[u8]), Ipv6Error> {
    match walk(first, d, 0)? {
        (protocol, payload, None) => Ok((protocol, payload)),
        (_, _, Some(_)) => Err(Ipv6Error::NestedFragment),
    }
}

type Walked<'a> = (u8, &'a [u8], Option<Fragment>);

/// Follow the Next Header chain from `next` over `d`; `base` is the offset
/// of `d` in the packet (for error messages).
fn walk(mut next: u8, mut d: &[u8], base: usize) -> Result<Walked<'_>, Ipv6Error> {
    let mut offset = base;
    for n in 0..=MAX_EXTENSIONS {
        let len = match next {
            HOP_BY_HOP if offset != HEADER_LEN => {
                return Err(Ipv6Error::HopByHopNotFirst { offset });
            }
            // RFC 8200 §4.3-4.6, RFC 6275 §6.1.1, RFC 7401 §5.1, RFC 5533
            // §5: Hdr Ext Len in 8-octet units, not counting the first 8.
            HOP_BY_HOP | ROUTING | DEST_OPTIONS | MOBILITY | HIP | SHIM6 | EXPERIMENT_1
            | EXPERIMENT_2 => d.get(1).map(|&l| (usize::from(l) + 1) * 8),
            // RFC 4302 §2.2: Payload Len in 4-octet units, minus 2.
            AUTH => d.get(1).map(|&l| (usize::from(l) + 2) * 4),
            // RFC 8200 §4.5: fixed 8 octets.
            FRAGMENT => Some(8),
            _ => return Ok((next, d, None)),
        };
        if n == MAX_EXTENSIONS {
            return Err(Ipv6Error::TooManyExtensions);
        }
        let needed = len.unwrap_or(2);
        let Some(header) = d.get(..needed) else {
            return Err(Ipv6Error::TruncatedExtension {
                header: next,
                offset,
                needed,
                available: d.len(),
            });
        };
        let this = next;
        next = header[0];
        d = &d[needed..];
        offset += needed;
        if this == FRAGMENT {
            let field = u16::from_be_bytes([header[2], header[3]]);
            let (frag_offset, more) = (field >> 3, field & 1 == 1);
            if frag_offset != 0 || more {
                let id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                let fragment = Fragment {
                    id,
                    offset: frag_offset,
                    more,
                };
                return Ok((next, d, Some(fragment)));
            }
        }
    }
    Err(Ipv6Error::TooManyExtensions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed header with `next` and the given payload (Payload Length
    /// set from it).
    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        p.extend_from_slice(&[0; 11]);
        p.push(1);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        p.extend_from_slice(&[0; 11]);
        p.push(2);
        p.extend_from_slice(payload);
        p
    }

    const UDP: &[u8] = &[0x13, 0xc4, 0x13, 0xc4, 0, 12, 0, 0, b'a', b'b', b'c', b'd'];

    #[test]
    fn no_extensions_gives_the_upper_layer() {
        let p = packet(17, UDP);
        let v6 = parse(&p).unwrap();
        assert_eq!(v6.protocol, 17);
        assert_eq!(v6.payload, UDP);
        assert_eq!(v6.src, "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6.dst, "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6.fragment, None);
    }

    #[test]
    fn hop_by_hop_routing_and_destination_options_are_skipped() {
        let mut chain = vec![43, 0, 1, 4, 0, 0, 0, 0]; // HBH, 8 bytes, PadN
        chain.extend_from_slice(&[60, 0, 4, 0, 0, 0, 0, 0]); // Routing type 4, 8 bytes
        chain.extend_from_slice(&[17, 1]); // Destination Options, 16 bytes
        chain.extend_from_slice(&[1, 12]);
        chain.extend_from_slice(&[0; 12]);
        chain.extend_from_slice(UDP);
        let p = packet(0, &chain);
        let v6 = parse(&p).unwrap();
        assert_eq!((v6.protocol, v6.payload), (17, UDP));
    }

    #[test]
    fn authentication_header_counts_in_four_octet_units() {
        // RFC 4302: Payload Len 4 means (4 + 2) * 4 = 24 bytes.
        let mut chain = vec![17, 4, 0, 0];
        chain.extend_from_slice(&[0; 20]);
        chain.extend_from_slice(UDP);
        let p = packet(51, &chain);
        let v6 = parse(&p).unwrap();
        assert_eq!((v6.protocol, v6.payload), (17, UDP));
    }

    #[test]
    fn fragment_header_ends_the_walk_with_its_fields() {
        // Offset 181 (8-octet units), M set, identification 0xdeadbeef.
        let field = (181u16 << 3) | 1;
        let mut chain = vec![17, 0];
        chain.extend_from_slice(&field.to_be_bytes());
        chain.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        chain.extend_from_slice(b"fragment data");
        let p = packet(44, &chain);
        let v6 = parse(&p).unwrap();
        assert_eq!(v6.protocol, 17);
        assert_eq!(v6.payload, b"fragment data");
        assert_eq!(
            v6.fragment,
            Some(Fragment {
                id: 0xdead_beef,
                offset: 181,
                more: true
            })
        );
    }

    #[test]
    fn atomic_fragment_is_walked_through() {
        let mut chain = vec![17, 0, 0, 0, 0, 0, 0, 7];
        chain.extend_from_slice(UDP);
        let p = packet(44, &chain);
        let v6 = parse(&p).unwrap();
        assert_eq!((v6.protocol, v6.payload, v6.fragment), (17, UDP, None));
    }

    #[test]
    fn truncated_fragment_after_destination_options_is_an_error_not_a_read_past_the_end() {
        // The chain of the crafted capture: Destination Options pointing to
        // a Fragment header of which only 4 of 8 bytes are there.
        let chain = [44, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0, 1];
        assert_eq!(
            parse(&packet(60, &chain)),
            Err(Ipv6Error::TruncatedExtension {
                header: 44,
                offset: 48,
                needed: 8,
                available: 4
            })
        );
    }

    #[test]
    fn every_truncation_of_a_chain_is_an_error_or_a_short_payload() {
        let mut chain = vec![60, 0, 1, 4, 0, 0, 0, 0];
        chain.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
        chain.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 1]); // atomic
        chain.extend_from_slice(UDP);
        let p = packet(0, &chain);
        for cut in 0..p.len() {
            match parse(&p[..cut]) {
                Ok(v6) => assert!(v6.payload.len() < UDP.len(), "cut {cut}"),
                Err(Ipv6Error::ShortHeader { .. } | Ipv6Error::TruncatedExtension { .. }) => {}
                Err(e) => panic!("cut {cut}: {e}"),
            }
        }
        assert_eq!(parse(&p).unwrap().payload, UDP);
    }

    #[test]
    fn length_past_the_capture_is_an_error() {
        // Destination Options claiming 2048 bytes in a short packet.
        let chain = [17, 255, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            parse(&packet(60, &chain)),
            Err(Ipv6Error::TruncatedExtension { needed: 2048, .. })
        ));
    }

    #[test]
    fn hop_by_hop_later_in_the_chain_and_endless_chains_are_refused() {
        let chain = [0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse(&packet(60, &chain)),
            Err(Ipv6Error::HopByHopNotFirst { offset: 48 })
        );
        let endless: Vec<u8> = [60, 0, 0, 0, 0, 0, 0, 0].repeat(40);
        assert_eq!(
            parse(&packet(60, &endless)),
            Err(Ipv6Error::TooManyExtensions)
        );
    }

    #[test]
    fn payload_length_cuts_padding_and_zero_means_what_was_captured() {
        let mut p = packet(17, UDP);
        p.extend_from_slice(&[0; 6]); // Ethernet padding
        assert_eq!(parse(&p).unwrap().payload, UDP);
        p[4] = 0;
        p[5] = 0;
        assert_eq!(parse(&p).unwrap().payload.len(), UDP.len() + 6);
    }

    #[test]
    fn short_header_and_wrong_version_are_errors() {
        assert_eq!(
            parse(&[0x60; 39]),
            Err(Ipv6Error::ShortHeader { captured: 39 })
        );
        let mut p = packet(17, UDP);
        p[0] = 0x45;
        assert_eq!(parse(&p), Err(Ipv6Error::Version(4)));
    }
}
