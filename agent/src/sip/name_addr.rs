//! From, To and Contact values (RFC 3261 §20.10, §20.20, §20.39, grammar
//! in §25.1 `name-addr / addr-spec`): where the URI and the tag are.

use super::byte_range::ByteRange;
use super::headers::{is_lws, params, split_outside_quotes, trim};
use super::method::is_token;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NameAddrRanges {
    /// The URI, without angle brackets.
    pub uri: ByteRange,
    pub tag: Option<ByteRange>,
    /// The header parameters after the URI (`;tag=..;expires=..`, leading
    /// `;` included, RFC 3261 §20.10): read with [`super::headers::params`].
    pub params: ByteRange,
    /// `Contact: *` (RFC 3261 §10.2.2, remove all bindings).
    pub star: bool,
}

/// Best effort for values that break the grammar (unquoted special
/// characters in the display name, unbalanced quotes): the URI between the
/// last `<` and the next `>`, else up to the first `;`, and the tag after
/// it. The caller still records the defect.
pub(crate) fn parse_lenient(value: &[u8], base: usize) -> Option<NameAddrRanges> {
    let s = trim(value);
    let (uri, tail) = match s.iter().rposition(|&c| c == b'<') {
        Some(lt) => {
            let gt = lt + s[lt..].iter().position(|&c| c == b'>')?;
            (trim(&s[lt + 1..gt]), &s[gt + 1..])
        }
        None => {
            let end = s.iter().position(|&c| c == b';').unwrap_or(s.len());
            (trim(&s[..end]), &s[end..])
        }
    };
    if uri.is_empty() {
        return None;
    }
    let tail = trim(tail);
    let tag = params(tail.strip_prefix(b";").unwrap_or(&[]))
        .find(|(n, _)| n.eq_ignore_ascii_case(b"tag"))
        .map(|(_, v)| ByteRange::of(value, base, v));
    Some(NameAddrRanges {
        uri: ByteRange::of(value, base, uri),
        tag,
        params: ByteRange::of(value, base, tail),
        star: false,
    })
}

/// Parse the first name-addr/addr-spec of a value (`base` = its offset in
/// the raw message). `Err(())`: not valid per RFC 3261 §25.1.
#[allow(clippy::result_unit_err)]
pub(crate) fn parse_first(value: &[u8], base: usize) -> Result<NameAddrRanges, ()> {
    let first = split_outside_quotes(value, b',').next().ok_or(())?;
    let s = trim(first);
    if s == b"*" {
        return Ok(NameAddrRanges {
            uri: ByteRange::of(value, base, s),
            star: true,
            ..NameAddrRanges::default()
        });
    }
    let (uri, tail) = if let Some(rest) = s.strip_prefix(b"\"") {
        // quoted-string display name, then LAQUOT
        let mut i = 0;
        let mut closed = None;
        while i < rest.len() {
            match rest[i] {
                b'\\' => i += 2,
                b'"' => {
                    closed = Some(i);
                    break;
                }
                _ => i += 1,
            }
        }
        let after = trim(&rest[closed.ok_or(())? + 1..]);
        angle_uri(after)?
    } else if let Some(lt) = s.iter().position(|&c| c == b'<') {
        // display name as tokens separated by LWS (RFC 4475 §3.1.2.15: a
        // comma or other non-token character must be quoted)
        let display = trim(&s[..lt]);
        if !display
            .split(|&c| is_lws(c))
            .filter(|w| !w.is_empty())
            .all(is_token)
        {
            return Err(());
        }
        angle_uri(&s[lt..])?
    } else {
        // addr-spec: parameters after the URI belong to the header field, so
        // the URI cannot carry headers, commas or spaces (RFC 3261 §20.10).
        let end = s.iter().position(|&c| c == b';').unwrap_or(s.len());
        let uri = trim(&s[..end]);
        if uri.is_empty()
            || uri
                .iter()
                .any(|&c| is_lws(c) || c == b'?' || c == b',' || c == b'>')
        {
            return Err(());
        }
        (uri, &s[end..])
    };
    if !uri.contains(&b':') {
        return Err(());
    }
    let tail = trim(tail);
    if !tail.is_empty() && tail[0] != b';' {
        return Err(());
    }
    let tag = params(tail.get(1..).unwrap_or(&[]))
        .find(|(n, _)| n.eq_ignore_ascii_case(b"tag"))
        .map(|(_, v)| ByteRange::of(value, base, v));
    Ok(NameAddrRanges {
        uri: ByteRange::of(value, base, uri),
        tag,
        params: ByteRange::of(value, base, tail),
        star: false,
    })
}

/// One name-addr/addr-spec as the message parser reads it: by the grammar
/// when it holds, else recovered by [`parse_lenient`]. The bool says the
/// grammar did not hold (the message records `BadNameAddr` for its first
/// Contact, From and To).
pub(crate) fn parse_or_recover(value: &[u8], base: usize) -> (Option<NameAddrRanges>, bool) {
    match parse_first(value, base) {
        Ok(na) => (Some(na), false),
        Err(()) => (parse_lenient(value, base), true),
    }
}

/// `<uri>` then the rest; no LWS allowed inside the brackets (§3.1.2.14).
fn angle_uri(s: &[u8]) -> Result<(&[u8], &[u8]), ()> {
    let s = s.strip_prefix(b"<").ok_or(())?;
    let gt = s.iter().position(|&c| c == b'>').ok_or(())?;
    let uri = &s[..gt];
    if uri.is_empty() || uri.iter().any(|&c| is_lws(c)) {
        return Err(());
    }
    Ok((uri, &s[gt + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(v: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
        let n = parse_first(v, 0).ok()?;
        Some((n.uri.get(v), n.tag.map(|t| t.get(v))))
    }

    #[test]
    fn all_forms() {
        assert_eq!(
            parts(b"<sip:a@b>;tag=x"),
            Some((&b"sip:a@b"[..], Some(&b"x"[..])))
        );
        assert_eq!(
            parts(b"\"Bell, A\" <sip:a@b>;tag=43"),
            Some((&b"sip:a@b"[..], Some(&b"43"[..])))
        );
        assert_eq!(parts(b"Joe User<sip:a@b>"), Some((&b"sip:a@b"[..], None)));
        assert_eq!(
            parts(b"sip:a@b;tag=9"),
            Some((&b"sip:a@b"[..], Some(&b"9"[..])))
        );
        assert_eq!(
            parts(b"<sip:a@b;lr>, <sip:c@d>").map(|p| p.0),
            Some(&b"sip:a@b;lr"[..])
        );
        assert!(parse_first(b"*", 0).unwrap().star);
    }

    #[test]
    fn rfc4475_bad_forms() {
        assert!(parse_first(b"\"Mr. J. User <sip:j.user@example.com>", 0).is_err()); // quotbal
        assert!(parse_first(b"Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43", 0).is_err()); // baddn
        assert!(parse_first(b"\"Watson, Thomas\" < sip:t.watson@example.org >", 0).is_err()); // badaspec
        assert!(parse_first(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E", 0).is_err()); // regbadct
    }

    #[test]
    fn lenient_recovers_uri_and_tag_from_a_bad_display_name() {
        let v = b"\\\"arik\\\" <sip:816666@voip.example.net>;tag=6433ef9";
        assert!(parse_first(v, 0).is_err());
        let n = parse_lenient(v, 0).unwrap();
        assert_eq!(n.uri.get(v), b"sip:816666@voip.example.net");
        assert_eq!(n.tag.unwrap().get(v), b"6433ef9");
    }
}
