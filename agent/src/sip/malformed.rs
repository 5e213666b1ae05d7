//! Why a message is malformed: the reasons the pipeline counts and keeps as
//! evidence (RFC 4475 §3.1.2 and §3.3 lists the classic ones).

use std::fmt;

/// One defect of a SIP message. A message may carry several; fatal ones
/// (the start line cannot be read) mean there is no message at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MalformedReason {
    /// Not `Method SP Request-URI SP SIP-Version` nor `SIP-Version SP
    /// Status-Code SP Reason-Phrase` (RFC 3261 §7.1, §7.2). Fatal.
    BadStartLine,
    /// Protocol version other than SIP/2.0 (RFC 4475 §3.1.2.16). Fatal.
    BadVersion,
    /// Status code not three digits 100..=699 (RFC 4475 §3.1.2.19). Fatal.
    BadStatusCode,
    /// Extra or missing whitespace in the start line (RFC 4475 §3.1.2.9-10).
    StartLineWhitespace,
    /// Request-URI in `<>`, with LWS, or with escaped headers (§3.1.2.7, .8, .11).
    BadRequestUri,
    /// A header line without `:` or with an empty name.
    BadHeaderLine,
    /// The header section is not terminated by an empty line.
    NoHeaderEnd,
    MissingCallId,
    MissingCseq,
    /// CSeq number not a 32-bit integer, or method missing (RFC 3261 §8.1.1.5).
    BadCseq,
    /// CSeq method differs from the request method (RFC 4475 §3.1.2.17).
    CseqMethodMismatch,
    MissingVia,
    /// Top Via unreadable: protocol, sent-by or empty parameters (§3.1.2.1).
    BadVia,
    MissingFrom,
    MissingTo,
    /// From/To/Contact not a valid name-addr or addr-spec (§3.1.2.6, .13-.15).
    BadNameAddr,
    /// Content-Length not a non-negative decimal (§3.1.2.3).
    BadContentLength,
    /// Content-Length larger than the bytes that follow (§3.1.2.2).
    ContentLengthExceedsBody,
    /// More than one Content-Length (§3.3.9).
    MultipleContentLength,
    /// A single-valued header (Call-ID, CSeq, From, To, Max-Forwards) repeated (§3.3.8).
    DuplicateHeader,
    /// Max-Forwards or Expires not a 32-bit decimal (§3.1.2.4).
    BadScalar,
    /// Date not in the RFC 1123 GMT form (§3.1.2.12).
    BadDate,
}

impl MalformedReason {
    pub const ALL: [MalformedReason; 22] = [
        MalformedReason::BadStartLine,
        MalformedReason::BadVersion,
        MalformedReason::BadStatusCode,
        MalformedReason::StartLineWhitespace,
        MalformedReason::BadRequestUri,
        MalformedReason::BadHeaderLine,
        MalformedReason::NoHeaderEnd,
        MalformedReason::MissingCallId,
        MalformedReason::MissingCseq,
        MalformedReason::BadCseq,
        MalformedReason::CseqMethodMismatch,
        MalformedReason::MissingVia,
        MalformedReason::BadVia,
        MalformedReason::MissingFrom,
        MalformedReason::MissingTo,
        MalformedReason::BadNameAddr,
        MalformedReason::BadContentLength,
        MalformedReason::ContentLengthExceedsBody,
        MalformedReason::MultipleContentLength,
        MalformedReason::DuplicateHeader,
        MalformedReason::BadScalar,
        MalformedReason::BadDate,
    ];

    /// Index into counter arrays (see [`MalformedCounts`]).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MalformedReason::BadStartLine => "bad_start_line",
            MalformedReason::BadVersion => "bad_version",
            MalformedReason::BadStatusCode => "bad_status_code",
            MalformedReason::StartLineWhitespace => "start_line_whitespace",
            MalformedReason::BadRequestUri => "bad_request_uri",
            MalformedReason::BadHeaderLine => "bad_header_line",
            MalformedReason::NoHeaderEnd => "no_header_end",
            MalformedReason::MissingCallId => "missing_call_id",
            MalformedReason::MissingCseq => "missing_cseq",
            MalformedReason::BadCseq => "bad_cseq",
            MalformedReason::CseqMethodMismatch => "cseq_method_mismatch",
            MalformedReason::MissingVia => "missing_via",
            MalformedReason::BadVia => "bad_via",
            MalformedReason::MissingFrom => "missing_from",
            MalformedReason::MissingTo => "missing_to",
            MalformedReason::BadNameAddr => "bad_name_addr",
            MalformedReason::BadContentLength => "bad_content_length",
            MalformedReason::ContentLengthExceedsBody => "content_length_exceeds_body",
            MalformedReason::MultipleContentLength => "multiple_content_length",
            MalformedReason::DuplicateHeader => "duplicate_header",
            MalformedReason::BadScalar => "bad_scalar",
            MalformedReason::BadDate => "bad_date",
        }
    }

    /// Fatal reasons leave nothing to parse: no message is produced.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            MalformedReason::BadStartLine
                | MalformedReason::BadVersion
                | MalformedReason::BadStatusCode
        )
    }
}

impl fmt::Display for MalformedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Messages counted per reason (a message with two defects counts in both).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MalformedCounts([u64; MalformedReason::ALL.len()]);

impl MalformedCounts {
    pub fn add(&mut self, r: MalformedReason) {
        self.0[r.index()] += 1;
    }

    pub fn get(&self, r: MalformedReason) -> u64 {
        self.0[r.index()]
    }

    /// Non-zero counts, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (MalformedReason, u64)> + '_ {
        MalformedReason::ALL
            .iter()
            .map(|&r| (r, self.0[r.index()]))
            .filter(|&(_, n)| n > 0)
    }
}

impl serde::Serialize for MalformedCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for (r, n) in self.iter() {
            m.serialize_entry(r.as_str(), &n)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, r) in MalformedReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
    }
}
