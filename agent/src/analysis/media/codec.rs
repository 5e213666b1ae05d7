//! RTP payload types and their clocks: the static assignments of RFC 3551
//! section 6 (tables 4 and 5), and the codec identity the E-model needs.

/// RTP clock rate of a static payload type per RFC 3551 tables 4 and 5, or
/// `None` for unassigned, reserved and dynamic (96–127) types, whose clock
/// only the SDP `a=rtpmap` can tell.
///
/// Note G.722 (PT 9): its RTP clock is 8000 Hz although it samples at
/// 16 kHz, an erratum kept for compatibility (RFC 3551 section 4.5.2).
pub(crate) const fn static_clock_rate(payload_type: u8) -> Option<u32> {
    match payload_type {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => Some(8000),
        6 => Some(16000),
        10 | 11 => Some(44100),
        16 => Some(11025),
        17 => Some(22050),
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => Some(90000),
        _ => None,
    }
}

/// Encoding name of a static payload type (RFC 3551 tables 4 and 5).
pub(crate) const fn static_encoding_name(payload_type: u8) -> Option<&'static str> {
    Some(match payload_type {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        5 | 6 | 16 | 17 => "DVI4",
        7 => "LPC",
        8 => "PCMA",
        9 => "G722",
        10 | 11 => "L16",
        12 => "QCELP",
        13 => "CN",
        14 => "MPA",
        15 => "G728",
        18 => "G729",
        25 => "CelB",
        26 => "JPEG",
        28 => "nv",
        31 => "H261",
        32 => "MPV",
        33 => "MP2T",
        34 => "H263",
        _ => return None,
    })
}

/// The voice codecs the E-model distinguishes (ITU-T G.113 Appendix I gives
/// their equipment impairment `Ie` and packet-loss robustness `Bpl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum VoiceCodec {
    /// G.711 A-law or µ-law (PCMA/PCMU).
    G711,
    /// G.729 / G.729A (8 kbit/s CS-ACELP).
    G729,
    /// G.723.1 at 6.3 kbit/s.
    G723,
    /// GSM full rate.
    Gsm,
    /// G.722 wideband (scored on the narrowband scale).
    G722,
    /// Anything else: conservative defaults (see `quality`).
    Other,
}

impl VoiceCodec {
    /// Classifies an SDP/RTP encoding name (case-insensitive, RFC 4855 media
    /// subtype names).
    pub(crate) fn from_encoding_name(name: &str) -> Self {
        let upper = name.to_ascii_uppercase();
        match upper.as_str() {
            "PCMA" | "PCMU" => Self::G711,
            "G729" | "G729A" | "G729D" | "G729E" => Self::G729,
            "G723" => Self::G723,
            "GSM" => Self::Gsm,
            "G722" => Self::G722,
            _ => Self::Other,
        }
    }

    /// Codec of a static payload type, if it is a voice codec.
    #[cfg(test)]
    pub(crate) fn from_static_payload_type(payload_type: u8) -> Self {
        static_encoding_name(payload_type).map_or(Self::Other, Self::from_encoding_name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::G711 => "G.711",
            Self::G729 => "G.729",
            Self::G723 => "G.723.1",
            Self::Gsm => "GSM-FR",
            Self::G722 => "G.722",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_clock_rates_follow_rfc3551_tables() {
        assert_eq!(static_clock_rate(0), Some(8000));
        assert_eq!(static_clock_rate(8), Some(8000));
        // G.722's RTP clock is 8000 even though it samples at 16 kHz.
        assert_eq!(static_clock_rate(9), Some(8000));
        assert_eq!(static_clock_rate(6), Some(16000));
        assert_eq!(static_clock_rate(10), Some(44100));
        assert_eq!(static_clock_rate(31), Some(90000));
        assert_eq!(static_clock_rate(2), None, "PT 2 is reserved (ex-G721)");
        assert_eq!(static_clock_rate(101), None, "dynamic needs rtpmap");
    }

    #[test]
    fn codec_names_classify_case_insensitively() {
        assert_eq!(VoiceCodec::from_encoding_name("pcma"), VoiceCodec::G711);
        assert_eq!(VoiceCodec::from_encoding_name("G729"), VoiceCodec::G729);
        assert_eq!(VoiceCodec::from_encoding_name("opus"), VoiceCodec::Other);
        assert_eq!(VoiceCodec::from_static_payload_type(0), VoiceCodec::G711);
        assert_eq!(VoiceCodec::from_static_payload_type(18), VoiceCodec::G729);
        assert_eq!(VoiceCodec::from_static_payload_type(101), VoiceCodec::Other);
    }
}
