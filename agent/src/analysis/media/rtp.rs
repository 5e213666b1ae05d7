//! RTP fixed header (RFC 3550 section 5.1) with the validity checks of
//! RFC 3550 appendix A.1 and the RTP/RTCP demultiplexing rule of RFC 5761
//! section 4. Every length read from the packet is checked before use.

/// The RTP fixed header and where the payload lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub version: u8,
    pub padding: bool,
    pub extension: bool,
    pub csrc_count: u8,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Fixed header + CSRC list + header extension, in bytes.
    pub header_len: usize,
    /// Payload bytes, without header and padding.
    pub payload_len: usize,
}

/// Why a UDP payload is not a valid RTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("{len} bytes is shorter than the 12-byte RTP fixed header")]
    TooShort { len: usize },
    #[error("RTP version {0}, expected 2 (RFC 3550 A.1): not RTP, or an old/foreign protocol")]
    BadVersion(u8),
    #[error("packet type {0} is RTCP (RFC 5761 section 4), not RTP")]
    Rtcp(u8),
    #[error("CSRC count {count} needs {needed} bytes but the packet has {len}")]
    CsrcOverrun {
        count: u8,
        needed: usize,
        len: usize,
    },
    #[error("header extension needs {needed} bytes but the packet has {len}")]
    ExtensionOverrun { needed: usize, len: usize },
    #[error("padding count {padding} does not fit the {available} bytes after the header")]
    BadPadding { padding: u8, available: usize },
}

/// Parses and validates an RTP header.
pub fn parse_rtp(packet: &[u8]) -> Result<RtpHeader, RtpError> {
    let len = packet.len();
    if len < 12 {
        return Err(RtpError::TooShort { len });
    }
    let version = packet[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    // RFC 5761 section 4: second octet 192..=223 is an RTCP packet type
    // (SR=200, RR=201, …), i.e. M=1 with PT 64..=95.
    if (192..=223).contains(&packet[1]) {
        return Err(RtpError::Rtcp(packet[1]));
    }
    let padding = packet[0] & 0x20 != 0;
    let extension = packet[0] & 0x10 != 0;
    let csrc_count = packet[0] & 0x0f;
    let mut header_len = 12 + 4 * usize::from(csrc_count);
    if header_len > len {
        return Err(RtpError::CsrcOverrun {
            count: csrc_count,
            needed: header_len,
            len,
        });
    }
    if extension {
        // RFC 3550 5.3.1: 16-bit profile field, 16-bit length in 32-bit words.
        if header_len + 4 > len {
            return Err(RtpError::ExtensionOverrun {
                needed: header_len + 4,
                len,
            });
        }
        let words = u16::from_be_bytes([packet[header_len + 2], packet[header_len + 3]]);
        header_len += 4 + 4 * usize::from(words);
        if header_len > len {
            return Err(RtpError::ExtensionOverrun {
                needed: header_len,
                len,
            });
        }
    }
    let mut payload_len = len - header_len;
    if padding {
        // RFC 3550 5.1: the last octet counts the padding, itself included.
        let count = packet[len - 1];
        if count == 0 || usize::from(count) > payload_len {
            return Err(RtpError::BadPadding {
                padding: count,
                available: payload_len,
            });
        }
        payload_len -= usize::from(count);
    }
    Ok(RtpHeader {
        version,
        padding,
        extension,
        csrc_count,
        marker: packet[1] & 0x80 != 0,
        payload_type: packet[1] & 0x7f,
        sequence: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        header_len,
        payload_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(first: u8, second: u8, tail: &[u8]) -> Vec<u8> {
        let mut p = vec![
            first, second, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef,
        ];
        p.extend_from_slice(tail);
        p
    }

    #[test]
    fn parses_fixed_header_fields() {
        let h = parse_rtp(&packet(0x80, 0x88, &[0u8; 160])).unwrap();
        assert_eq!(h.version, 2);
        assert!(h.marker);
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 320);
        assert_eq!(h.ssrc, 0xdead_beef);
        assert_eq!((h.header_len, h.payload_len), (12, 160));
    }

    #[test]
    fn csrc_extension_and_padding_are_accounted() {
        // 2 CSRCs, extension of 1 word, 3 bytes padding.
        let mut tail = vec![0u8; 8];
        tail.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4]);
        tail.extend_from_slice(&[9u8; 10]);
        tail.extend_from_slice(&[0, 0, 3]);
        let h = parse_rtp(&packet(0xb2, 0x00, &tail)).unwrap();
        assert!(h.padding && h.extension);
        assert_eq!(h.csrc_count, 2);
        assert_eq!(h.header_len, 12 + 8 + 8);
        assert_eq!(h.payload_len, 10);
    }

    #[test]
    fn invalid_headers_are_rejected_with_reason() {
        assert_eq!(parse_rtp(&[0x80; 11]), Err(RtpError::TooShort { len: 11 }));
        assert_eq!(
            parse_rtp(&packet(0x40, 0, &[])),
            Err(RtpError::BadVersion(1))
        );
        assert_eq!(parse_rtp(&packet(0x80, 200, &[])), Err(RtpError::Rtcp(200)));
        assert!(matches!(
            parse_rtp(&packet(0x83, 0, &[0; 8])),
            Err(RtpError::CsrcOverrun { .. })
        ));
        assert!(matches!(
            parse_rtp(&packet(0x90, 0, &[0, 0, 0, 5])),
            Err(RtpError::ExtensionOverrun { .. })
        ));
        assert!(matches!(
            parse_rtp(&packet(0xa0, 0, &[1, 2, 0])),
            Err(RtpError::BadPadding { .. })
        ));
        assert!(matches!(
            parse_rtp(&packet(0xa0, 0, &[1, 9])),
            Err(RtpError::BadPadding { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(h) = parse_rtp(&bytes) {
                proptest::prop_assert!(h.header_len + h.payload_len <= bytes.len());
            }
        }
    }
}
