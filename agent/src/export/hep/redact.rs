//! Digest `response` values out of the SIP sent to a HEP collector.
//!
//! DESIGN's rule is that secrets never leave the host: no passwords (the
//! agent never sees them on the wire) and no digest `response` values
//! unless explicitly enabled (`--hep-include-digest-response`, as
//! `--otlp-include-digest-response` for spans). A response together with
//! its challenge is enough for an offline dictionary attack on the
//! password (RFC 7616 §5.1), and a HOMER database keeps it for months.
//!
//! The scan works on the bytes as captured, so it covers messages the
//! parser refused as well: every `Authorization` and `Proxy-Authorization`
//! header field of the header section (RFC 3261 §20.7, §20.28), folded
//! lines included, has the value of each `response` auth-param (RFC 7616
//! §3.4) replaced by `"redacted"`. Everything else stays byte for byte.

use std::ops::Range;

use crate::sip::headers::{is_lws, trim};

/// What replaces a response value (quoted, so the header stays valid).
const REDACTED: &[u8] = b"\"redacted\"";

/// The message with its digest responses replaced, or `None` when it has
/// none (the common case costs no copy).
pub(crate) fn digest_responses(raw: &[u8]) -> Option<Vec<u8>> {
    let mut cuts = Vec::new();
    for field in header_fields(raw) {
        let line = &raw[field.clone()];
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if name.eq_ignore_ascii_case(b"authorization")
            || name.eq_ignore_ascii_case(b"proxy-authorization")
        {
            let value_start = field.start + colon + 1;
            response_values(&raw[value_start..field.end], value_start, &mut cuts);
        }
    }
    if cuts.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for cut in cuts {
        out.extend_from_slice(&raw[at..cut.start]);
        out.extend_from_slice(REDACTED);
        at = cut.end;
    }
    out.extend_from_slice(&raw[at..]);
    Some(out)
}

/// Byte ranges of the header fields after the start line, each with its
/// continuation lines, up to the empty line that ends the header section
/// (RFC 3261 §7.3.1). Bare `\n` line ends are accepted, as the parser does.
fn header_fields(raw: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let line_end = |from: usize| {
        raw[from..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(raw.len(), |i| from + i + 1)
    };
    let mut at = line_end(0);
    std::iter::from_fn(move || {
        let line = &raw[at.min(raw.len())..];
        if line.is_empty() || line.starts_with(b"\r\n") || line.starts_with(b"\n") {
            return None;
        }
        let start = at;
        let mut end = line_end(start);
        while end < raw.len() && matches!(raw[end], b' ' | b'\t') {
            end = line_end(end);
        }
        at = end;
        Some(start..end)
    })
}

/// Pushes the range (offset by `base`) of every `response` value in a
/// credentials value: `Digest name=value, name="value", ...`, commas
/// inside quoted strings (with `\` escapes) not splitting.
fn response_values(value: &[u8], base: usize, cuts: &mut Vec<Range<usize>>) {
    let mut param_start = 0;
    let mut quoted = false;
    let mut i = 0;
    while i <= value.len() {
        let c = value.get(i).copied();
        match c {
            Some(b'\\') if quoted => i += 1,
            Some(b'"') => quoted = !quoted,
            Some(b',') | None if !quoted || c.is_none() => {
                response_in_param(&value[param_start..i], base + param_start, cuts);
                param_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
}

/// One comma-separated element: `[scheme ]name = value`.
fn response_in_param(param: &[u8], base: usize, cuts: &mut Vec<Range<usize>>) {
    let Some(eq) = param.iter().position(|&c| c == b'=') else {
        return;
    };
    // The first element also carries the scheme: the name is the last word.
    let name = trim(&param[..eq]);
    let name = name.rsplit(|&c| is_lws(c)).next().unwrap_or(name);
    if !name.eq_ignore_ascii_case(b"response") {
        return;
    }
    let after = &param[eq + 1..];
    let lead = after.iter().take_while(|&&c| is_lws(c)).count();
    let value = trim(after);
    if !value.is_empty() {
        let start = base + eq + 1 + lead;
        cuts.push(start..start + value.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> Option<String> {
        digest_responses(text.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    const REGISTER: &str = "REGISTER sip:pbx SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-1\r\n\
        Authorization: Digest username=\"100\", realm=\"pbx\", nonce=\"n,response=x\",\r\n \
        uri=\"sip:pbx\", RESPONSE = \"0123456789abcdef0123456789abcdef\",algorithm=MD5\r\n\
        Proxy-Authorization: Digest response=abcdef, username=\"100\"\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn every_response_value_is_replaced_and_nothing_else() {
        let out = redact(REGISTER).expect("two responses");
        assert_eq!(
            out,
            REGISTER
                .replace("\"0123456789abcdef0123456789abcdef\"", "\"redacted\"")
                .replace("response=abcdef", "response=\"redacted\"")
        );
        // The look-alike inside the quoted nonce stays.
        assert!(out.contains("nonce=\"n,response=x\""), "{out}");
    }

    #[test]
    fn messages_without_credentials_are_not_copied() {
        let challenge = "SIP/2.0 401 Unauthorized\r\n\
            WWW-Authenticate: Digest realm=\"pbx\", nonce=\"n\"\r\n\
            X-Note: response=\"not a credential\"\r\n\r\n\
            Authorization: Digest response=\"in the body\"\r\n";
        assert_eq!(redact(challenge), None);
    }

    #[test]
    fn broken_messages_are_scanned_too() {
        // Bare \n line ends, no end of headers, an empty response.
        let text = "INVITE sip:x SIP/2.0\nauthorization: Digest response=\"ff\", response=";
        assert_eq!(
            redact(text).unwrap(),
            "INVITE sip:x SIP/2.0\nauthorization: Digest response=\"redacted\", response="
        );
        for garbage in ["", "\n", "no start line", "A\r\nAuthorization\r\n\r\n"] {
            assert_eq!(redact(garbage), None, "{garbage:?}");
        }
    }
}
