//! The top Via header field (RFC 3261 §20.42, §18.2.1): transport,
//! sent-by, and the branch/received/rport parameters transactions and NAT
//! analysis need. Parsed by hand on the hot path; LWS (including folded
//! line breaks) is tolerated wherever the grammar allows it.

use super::byte_range::ByteRange;
use super::headers::{is_lws, params, split_outside_quotes, trim};

/// Where the parts of the top Via value are in the raw message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViaRanges {
    pub transport: ByteRange,
    /// sent-by host (IPv6 references keep their brackets).
    pub host: ByteRange,
    pub port: Option<u16>,
    pub branch: Option<ByteRange>,
    pub received: Option<ByteRange>,
    /// `rport` present; its value (empty when the client only asked for it).
    pub rport: Option<ByteRange>,
    /// Read despite a syntax error (an IPv6 sent-by without brackets,
    /// RFC 5118 §4.2): usable, but the message is malformed.
    pub lenient: bool,
}

/// The RFC 3261 §8.1.1.7 magic cookie: a branch starting with it was made
/// by an RFC 3261 element and is unique per transaction.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Parse the first via-parm of a Via header value. `base` is the offset of
/// `value` in the raw message. `Err(())` means the value is unreadable.
#[allow(clippy::result_unit_err)]
pub fn parse_top(value: &[u8], base: usize) -> Result<ViaRanges, ()> {
    let mut parts = split_outside_quotes(value, b',');
    let first = parts.next().ok_or(())?;
    // Empty elements (`a,,b` or a trailing comma) are syntax errors.
    if parts.any(|p| trim(p).is_empty()) {
        return Err(());
    }
    let mut i = 0;
    let b = first;
    let skip = |i: &mut usize| {
        while *i < b.len() && is_lws(b[*i]) {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && !is_lws(b[*i]) && !b"/;:,".contains(&b[*i]) {
            *i += 1;
        }
        s..*i
    };
    // sent-protocol = protocol-name SLASH protocol-version SLASH transport,
    // where SLASH = SWS "/" SWS.
    skip(&mut i);
    let name = token(&mut i);
    for _ in 0..2 {
        skip(&mut i);
        if b.get(i) != Some(&b'/') {
            return Err(());
        }
        i += 1;
        skip(&mut i);
        let _ = token(&mut i);
    }
    let transport_end = i;
    let transport_start = {
        let mut s = transport_end;
        while s > 0 && !is_lws(b[s - 1]) && b[s - 1] != b'/' {
            s -= 1;
        }
        s
    };
    if !b[name].eq_ignore_ascii_case(b"SIP") || transport_start == transport_end {
        return Err(());
    }
    skip(&mut i);
    // sent-by = host [ COLON port ]
    let host_start = i;
    let mut lenient = false;
    let mut unbracketed_port = None;
    let run = b[i..]
        .iter()
        .take_while(|c| c.is_ascii_hexdigit() || **c == b':' || **c == b'.')
        .count();
    let colons = b[i..i + run].iter().filter(|&&c| c == b':').count();
    if b.get(i) != Some(&b'[') && colons >= 2 {
        // Unbracketed IPv6 as some old devices send it. With all eight
        // groups written, a ninth field is the port; otherwise no port.
        lenient = true;
        let mut host_end = i + run;
        if colons == 8 {
            let last = b[i..i + run]
                .iter()
                .rposition(|&c| c == b':')
                .unwrap_or(run)
                + i;
            unbracketed_port = std::str::from_utf8(&b[last + 1..i + run])
                .ok()
                .and_then(|p| p.parse().ok());
            if unbracketed_port.is_some() {
                host_end = last;
            }
        }
        i += run;
        return finish(
            value,
            base,
            b,
            transport_start..transport_end,
            host_start..host_end,
            unbracketed_port,
            i,
            lenient,
        );
    }
    if b.get(i) == Some(&b'[') {
        while i < b.len() && b[i] != b']' {
            i += 1;
        }
        if i == b.len() {
            return Err(());
        }
        i += 1;
    } else {
        while i < b.len() && !is_lws(b[i]) && !b";:,".contains(&b[i]) {
            i += 1;
        }
    }
    let host_end = i;
    if host_start == host_end {
        return Err(());
    }
    skip(&mut i);
    let mut port = None;
    if b.get(i) == Some(&b':') {
        i += 1;
        skip(&mut i);
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        port = Some(
            std::str::from_utf8(&b[s..i])
                .ok()
                .and_then(|p| p.parse().ok())
                .ok_or(())?,
        );
    }
    finish(
        value,
        base,
        b,
        transport_start..transport_end,
        host_start..host_end,
        port,
        i,
        lenient,
    )
}

/// Parameters after sent-by, and the result.
#[allow(clippy::too_many_arguments)]
fn finish(
    value: &[u8],
    base: usize,
    b: &[u8],
    transport: std::ops::Range<usize>,
    host: std::ops::Range<usize>,
    port: Option<u16>,
    i: usize,
    lenient: bool,
) -> Result<ViaRanges, ()> {
    let tail = trim(&b[i..]);
    let mut via = ViaRanges {
        transport: ByteRange::of(value, base, &b[transport]),
        host: ByteRange::of(value, base, &b[host]),
        port,
        lenient,
        ..ViaRanges::default()
    };
    if tail.is_empty() {
        return Ok(via);
    }
    if tail[0] != b';' {
        return Err(());
    }
    // Every `;` must introduce a named parameter (RFC 4475 §3.1.2.1).
    if split_outside_quotes(&tail[1..], b';').any(|p| trim(p).is_empty()) {
        return Err(());
    }
    for (n, v) in params(&tail[1..]) {
        if n.eq_ignore_ascii_case(b"branch") {
            via.branch = Some(ByteRange::of(value, base, v));
        } else if n.eq_ignore_ascii_case(b"received") {
            via.received = Some(ByteRange::of(value, base, v));
        } else if n.eq_ignore_ascii_case(b"rport") {
            via.rport = Some(ByteRange::of(value, base, v));
        }
    }
    Ok(via)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(v: &[u8], s: ByteRange) -> &[u8] {
        s.get(v)
    }

    #[test]
    fn reads_sent_by_and_params() {
        let v = b"SIP/2.0/UDP 192.168.1.2:5062;branch=z9hG4bK1;received=80.1.1.1;rport=5060, SIP/2.0/TCP x";
        let via = parse_top(v, 0).unwrap();
        assert_eq!(get(v, via.transport), b"UDP");
        assert_eq!(get(v, via.host), b"192.168.1.2");
        assert_eq!(via.port, Some(5062));
        assert_eq!(get(v, via.branch.unwrap()), b"z9hG4bK1");
        assert_eq!(get(v, via.received.unwrap()), b"80.1.1.1");
        assert_eq!(get(v, via.rport.unwrap()), b"5060");
    }

    #[test]
    fn tolerates_lws_around_slashes_and_folding() {
        let v = b"SIP  /   2.0  /  UDP\r\n    [2001:db8::9:1]:5070 ; branch = z9hG4bKa ; rport";
        let via = parse_top(v, 0).unwrap();
        assert_eq!(get(v, via.transport), b"UDP");
        assert_eq!(get(v, via.host), b"[2001:db8::9:1]");
        assert_eq!(via.port, Some(5070));
        assert_eq!(get(v, via.branch.unwrap()), b"z9hG4bKa");
        assert_eq!(via.rport.map(|s| s.is_empty()), Some(true));
    }

    #[test]
    fn unbracketed_ipv6_is_read_leniently() {
        let v = b"SIP/2.0/UDP fe80:0:0:0:21a:a0ff:fe07:32e0:5060;branch=z9hG4bKk";
        let via = parse_top(v, 0).unwrap();
        assert!(via.lenient);
        assert_eq!(get(v, via.host), b"fe80:0:0:0:21a:a0ff:fe07:32e0");
        assert_eq!(via.port, Some(5060));
        assert_eq!(get(v, via.branch.unwrap()), b"z9hG4bKk");
        assert!(!parse_top(b"SIP/2.0/UDP [fe80::1]:5060", 0).unwrap().lenient);
    }

    #[test]
    fn rejects_empty_params_and_garbage() {
        assert!(parse_top(b"SIP/2.0/UDP 192.0.2.15;;,;,,", 0).is_err());
        assert!(parse_top(b"192.0.2.15", 0).is_err());
        assert!(parse_top(b"SIP/2.0/UDP ", 0).is_err());
    }
}
