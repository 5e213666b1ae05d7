//! Header names (with RFC 3261 §7.3.3 compact forms) and small byte helpers
//! for header values.

use std::borrow::Cow;

/// The headers the pipeline looks at on the hot path. Everything else is
/// `Other` and stays available by name through `SipMessage::header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum HeaderName {
    CallId,
    Cseq,
    Via,
    From,
    To,
    Contact,
    Expires,
    ContentType,
    ContentLength,
    MaxForwards,
    Date,
    Other,
}

/// Compact form → full name (RFC 3261 §7.3.3, §20; and the extension RFCs
/// that registered one: 3265 o/u, 3515 r, 3892 b, 3841 a/j/d, 4028 x,
/// 4474 y/n). Compact names are single letters, case-insensitive.
pub(crate) fn expand_compact(c: u8) -> Option<&'static str> {
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// Classify a header name as written on the wire (long or compact form).
pub(crate) fn classify(name: &[u8]) -> HeaderName {
    let full: &[u8] = if name.len() == 1 {
        match expand_compact(name[0]) {
            Some(f) => f.as_bytes(),
            None => return HeaderName::Other,
        }
    } else {
        name
    };
    // Dispatch on length first: most names are rejected without a compare.
    let eq = |s: &str| full.eq_ignore_ascii_case(s.as_bytes());
    match full.len() {
        2 if eq("To") => HeaderName::To,
        3 if eq("Via") => HeaderName::Via,
        4 if eq("CSeq") => HeaderName::Cseq,
        4 if eq("From") => HeaderName::From,
        4 if eq("Date") => HeaderName::Date,
        7 if eq("Call-ID") => HeaderName::CallId,
        7 if eq("Contact") => HeaderName::Contact,
        7 if eq("Expires") => HeaderName::Expires,
        12 if eq("Content-Type") => HeaderName::ContentType,
        12 if eq("Max-Forwards") => HeaderName::MaxForwards,
        14 if eq("Content-Length") => HeaderName::ContentLength,
        _ => HeaderName::Other,
    }
}

/// Whether `wire` (as written, maybe compact) names the header `wanted`
/// (full name, any case).
pub(crate) fn name_matches(wire: &[u8], wanted: &str) -> bool {
    if wire.eq_ignore_ascii_case(wanted.as_bytes()) {
        return true;
    }
    if wire.len() == 1
        && let Some(full) = expand_compact(wire[0])
    {
        return full.eq_ignore_ascii_case(wanted);
    }
    if wanted.len() == 1
        && let Some(full) = expand_compact(wanted.as_bytes()[0])
    {
        return wire.eq_ignore_ascii_case(full.as_bytes());
    }
    false
}

pub(crate) fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if is_lws(*first) {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if is_lws(*last) {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// Replace folded line breaks (CRLF or LF followed by SP/HT, RFC 3261
/// §7.3.1) with a single space. Borrowed when there is nothing to unfold.
pub(crate) fn unfold(b: &[u8]) -> Cow<'_, [u8]> {
    if !b.contains(&b'\n') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\r' | b'\n' => {
                while i < b.len() && matches!(b[i], b'\r' | b'\n') {
                    i += 1;
                }
                out.push(b' ');
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// Parse a non-negative decimal that must fit in `u32` (RFC 3261 §25.1
/// 1*DIGIT fields such as CSeq, Expires, Max-Forwards, Content-Length).
pub(crate) fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        v = v * 10 + u64::from(c - b'0');
    }
    u32::try_from(v).ok()
}

/// Iterate `;name=value` parameters of a header value tail (the part after
/// the URI or sent-by). Yields trimmed (name, value) pairs; a missing value
/// is empty. Quoted values keep their quotes.
pub(crate) fn params(tail: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    split_outside_quotes(tail, b';').filter_map(|p| {
        let p = trim(p);
        if p.is_empty() {
            return None;
        }
        Some(match p.iter().position(|&c| c == b'=') {
            Some(eq) => (trim(&p[..eq]), trim(&p[eq + 1..])),
            None => (p, &p[p.len()..]),
        })
    })
}

/// Split on `sep` except inside double quotes and angle brackets.
pub(crate) fn split_outside_quotes(b: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut i = 0;
    let mut quoted = false;
    let mut angle = 0u32;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while i < b.len() {
            let c = b[i];
            i += 1;
            match c {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'<' if !quoted => angle += 1,
                b'>' if !quoted => angle = angle.saturating_sub(1),
                c if c == sep && !quoted && angle == 0 => {
                    let part = &b[start..i - 1];
                    start = i;
                    return Some(part);
                }
                _ => {}
            }
        }
        done = true;
        Some(&b[start.min(b.len())..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_classify_as_their_long_names() {
        assert_eq!(classify(b"i"), HeaderName::CallId);
        assert_eq!(classify(b"V"), HeaderName::Via);
        assert_eq!(classify(b"l"), HeaderName::ContentLength);
        assert_eq!(classify(b"m"), HeaderName::Contact);
        assert_eq!(classify(b"call-id"), HeaderName::CallId);
        assert_eq!(classify(b"k"), HeaderName::Other);
        assert!(name_matches(b"k", "Supported"));
        assert!(name_matches(b"Supported", "k"));
        assert!(!name_matches(b"q", "Supported"));
    }

    #[test]
    fn params_and_quotes() {
        let p: Vec<_> = params(b";tag=1 ; lr;x=\"a;b\"").collect();
        assert_eq!(
            p,
            vec![(&b"tag"[..], &b"1"[..]), (b"lr", b""), (b"x", b"\"a;b\"")]
        );
        let parts: Vec<_> = split_outside_quotes(b"\"a,b\" <sip:x,y>, <sip:z>", b',').collect();
        assert_eq!(parts.len(), 2);
    }

    #[test]
    fn numbers_must_fit_u32() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b""), None);
    }

    #[test]
    fn unfold_joins_continuation_lines() {
        assert_eq!(&*unfold(b"a\r\n  b"), b"a   b");
        assert!(matches!(unfold(b"ab"), Cow::Borrowed(_)));
    }
}
