//! Message boundaries in a byte stream (RFC 3261 §18.3: over stream
//! transports Content-Length is mandatory and delimits the body).

use super::headers::{self, parse_u32, trim};
use super::message::{header_end, looks_like_start_line};

/// What the front of a stream buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of this many bytes.
    Message(usize),
    /// CRLF keep-alives (RFC 5626 §3.5.1) to discard.
    KeepAlive(usize),
    /// Bytes that are not the start of a SIP message (mid-stream pickup,
    /// another protocol, lost segment): skip them up to the next start
    /// line.
    Junk(usize),
    /// The message is longer than allowed; skip this many bytes (up to what
    /// is buffered) and count it.
    Oversized(usize),
    /// Wait for more bytes.
    NeedMore,
}

/// Find the next message boundary at the front of `buf`. `max` bounds
/// one message (headers + body).
pub fn frame(buf: &[u8], max: usize) -> Frame {
    let lead = buf
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    if lead > 0 {
        return Frame::KeepAlive(lead);
    }
    let Some(nl) = buf.iter().position(|&c| c == b'\n') else {
        return if buf.len() > 1024 {
            Frame::Junk(next_start(buf, 1))
        } else {
            Frame::NeedMore
        };
    };
    if !looks_like_start_line(&buf[..nl]) {
        return Frame::Junk(next_start(buf, nl + 1));
    }
    let Some(hend) = header_end(buf) else {
        return if buf.len() > max {
            Frame::Oversized(buf.len())
        } else {
            Frame::NeedMore
        };
    };
    let total = hend.saturating_add(content_length(&buf[..hend]) as usize);
    if total > max {
        return Frame::Oversized(total.min(buf.len()));
    }
    if buf.len() >= total {
        Frame::Message(total)
    } else {
        Frame::NeedMore
    }
}

/// Content-Length (or `l`) from a header block; absent or unreadable
/// counts as 0 (the parser reports the defect).
fn content_length(head: &[u8]) -> u32 {
    for line in head.split(|&c| c == b'\n') {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if headers::classify(name) == headers::HeaderName::ContentLength {
            return parse_u32(trim(&line[colon + 1..])).unwrap_or(0);
        }
    }
    0
}

/// Offset of the next line (at or after `from`) that looks like a start
/// line, or the whole buffer minus a partial last line.
fn next_start(buf: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < buf.len() {
        let end = match buf[i..].iter().position(|&c| c == b'\n') {
            Some(n) => i + n,
            // Keep a partial last line: it may become a start line.
            None => return i,
        };
        if looks_like_start_line(&buf[i..end]) {
            return i;
        }
        i = end + 1;
    }
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbody";

    #[test]
    fn frames_by_content_length_including_compact_form() {
        assert_eq!(frame(M, 65536), Frame::Message(M.len()));
        assert_eq!(frame(&M[..M.len() - 1], 65536), Frame::NeedMore);
        let two = [M, M].concat();
        assert_eq!(frame(&two, 65536), Frame::Message(M.len()));
    }

    #[test]
    fn skips_keepalives_and_junk() {
        assert_eq!(frame(b"\r\n\r\nOPTIONS", 65536), Frame::KeepAlive(4));
        let junk = [&b"tail of a body\r\nmore\r\n"[..], M].concat();
        assert_eq!(frame(&junk, 65536), Frame::Junk(22));
        assert_eq!(frame(b"no newline yet", 65536), Frame::NeedMore);
    }

    #[test]
    fn oversized_is_reported_not_buffered_forever() {
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nContent-Length: 99999\r\n\r\n", 1000),
            Frame::Oversized(41)
        );
    }
}
