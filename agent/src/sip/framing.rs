//! Message boundaries in a byte stream (RFC 3261 §18.3: over stream
//! transports Content-Length is mandatory and delimits the body).

use super::headers::{self, parse_u32, trim};
use super::message::looks_like_start_line;

/// What the front of a stream buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MessageBoundary {
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

/// A first line this long without its LF cannot be a start line worth
/// waiting for: the bytes are junk up to the next LF.
const MAX_START_LINE: usize = 1024;

/// Find the next message boundary at the front of `buf` in one shot
/// (a [`StreamFramer`] with nothing remembered). `max` bounds one message
/// (headers + body).
#[cfg(test)]
pub(crate) fn frame(buf: &[u8], max: usize) -> MessageBoundary {
    StreamFramer::default().next(buf, max)
}

/// The framer of one stream direction. It remembers how far it has looked
/// at the unframed bytes, so that, whatever arrives (bytes without a line
/// feed, a header block that never ends, a body trickling in a byte at a
/// time), each byte is scanned a bounded number of times: framing is
/// linear in the bytes received.
///
/// The caller keeps the unframed bytes and calls [`StreamFramer::next`]
/// with them, [`StreamFramer::consumed`] after removing bytes from their
/// front, and [`StreamFramer::reset`] when their front changes any other
/// way. Bytes appended at the end keep what was learned valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamFramer {
    scan: Scan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// Looking for a start line: `[0, junk)` are whole lines that are not
    /// start lines, the line at `junk` has no LF in `[junk, lf_from)`, and
    /// is junk whatever follows when `long` (it outgrew
    /// [`MAX_START_LINE`], or began before the front).
    Lines {
        junk: usize,
        lf_from: usize,
        long: bool,
    },
    /// A start line at the front; the header section's end is not among
    /// the line feeds before `scanned`.
    Headers { scanned: usize },
    /// A message of `total` bytes (headers + Content-Length) at the front.
    Body { total: usize },
}

impl Scan {
    /// How far into the buffer what is remembered reaches.
    fn reach(&self) -> usize {
        match *self {
            Scan::Lines { lf_from, .. } => lf_from,
            Scan::Headers { scanned } => scanned,
            Scan::Body { .. } => 0,
        }
    }
}

impl Default for Scan {
    fn default() -> Self {
        Scan::Lines {
            junk: 0,
            lf_from: 0,
            long: false,
        }
    }
}

impl StreamFramer {
    /// The next boundary at the front of `buf`, the stream's unframed
    /// bytes; `max` bounds one message (headers + body). Nothing is
    /// consumed until [`StreamFramer::consumed`] says so: a caller may
    /// keep junk and ask again when more bytes arrived.
    pub(crate) fn next(&mut self, buf: &[u8], max: usize) -> MessageBoundary {
        if self.scan.reach() > buf.len() {
            // The front changed without a reset: start over rather than
            // index past the end.
            debug_assert!(
                false,
                "framer state {:?} past {} bytes",
                self.scan,
                buf.len()
            );
            self.reset();
        }
        if buf.is_empty() {
            return MessageBoundary::NeedMore;
        }
        loop {
            match self.scan {
                Scan::Lines {
                    junk,
                    lf_from,
                    long,
                } => {
                    if junk == 0 && !long {
                        let lead = buf
                            .iter()
                            .take_while(|&&c| c == b'\r' || c == b'\n')
                            .count();
                        if lead > 0 {
                            return MessageBoundary::KeepAlive(lead);
                        }
                    }
                    let Some(nl) = buf[lf_from..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .map(|i| lf_from + i)
                    else {
                        let long = long || buf.len() - junk > MAX_START_LINE;
                        self.scan = Scan::Lines {
                            junk,
                            lf_from: buf.len(),
                            long,
                        };
                        return match (long, junk) {
                            (true, _) => MessageBoundary::Junk(buf.len()),
                            (false, 0) => MessageBoundary::NeedMore,
                            (false, junk) => MessageBoundary::Junk(junk),
                        };
                    };
                    if !long && looks_like_start_line(&buf[junk..nl]) {
                        if junk > 0 {
                            self.scan = Scan::Lines {
                                junk,
                                lf_from: nl,
                                long: false,
                            };
                            return MessageBoundary::Junk(junk);
                        }
                        self.scan = Scan::Headers { scanned: nl + 1 };
                    } else {
                        self.scan = Scan::Lines {
                            junk: nl + 1,
                            lf_from: nl + 1,
                            long: false,
                        };
                    }
                }
                Scan::Headers { scanned } => match header_end_from(buf, scanned) {
                    Some(end) => {
                        let body = content_length(&buf[..end]) as usize;
                        self.scan = Scan::Body {
                            total: end.saturating_add(body),
                        };
                    }
                    None => {
                        self.scan = Scan::Headers { scanned: buf.len() };
                        return if buf.len() > max {
                            MessageBoundary::Oversized(buf.len())
                        } else {
                            MessageBoundary::NeedMore
                        };
                    }
                },
                Scan::Body { total } if total > max => {
                    return MessageBoundary::Oversized(total.min(buf.len()));
                }
                Scan::Body { total } if buf.len() >= total => {
                    return MessageBoundary::Message(total);
                }
                Scan::Body { .. } => return MessageBoundary::NeedMore,
            }
        }
    }

    /// `n` bytes were removed from the front of the buffer (after a frame
    /// was acted on). What was learned about the bytes after them is kept.
    pub(crate) fn consumed(&mut self, n: usize) {
        self.scan = match self.scan {
            Scan::Lines {
                junk,
                lf_from,
                long,
            } if n <= junk => Scan::Lines {
                junk: junk - n,
                lf_from: lf_from - n,
                long,
            },
            // Part of a junk line: the rest of it is junk too.
            Scan::Lines {
                lf_from,
                long: true,
                ..
            } if n <= lf_from => Scan::Lines {
                junk: 0,
                lf_from: lf_from - n,
                long: true,
            },
            _ => Scan::default(),
        };
    }

    /// The front of the buffer changed (bytes put in front, or dropped):
    /// forget what was learned.
    pub(crate) fn reset(&mut self) {
        self.scan = Scan::default();
    }
}

/// Offset of the first byte after the header section in `b`: after the
/// empty line (RFC 3261 §7: CRLF; a bare LF is tolerated, as the parser
/// does), looking only at line feeds from `from` on (the earlier ones were
/// looked at before).
fn header_end_from(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(n) = b[i..].iter().position(|&c| c == b'\n') {
        let lf = i + n;
        let before = &b[..lf];
        if before.ends_with(b"\n") || before.ends_with(b"\n\r") {
            return Some(lf + 1);
        }
        i = lf + 1;
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbody";

    #[test]
    fn frames_by_content_length_including_compact_form() {
        assert_eq!(frame(M, 65536), MessageBoundary::Message(M.len()));
        assert_eq!(frame(&M[..M.len() - 1], 65536), MessageBoundary::NeedMore);
        let two = [M, M].concat();
        assert_eq!(frame(&two, 65536), MessageBoundary::Message(M.len()));
    }

    #[test]
    fn skips_keepalives_and_junk() {
        assert_eq!(
            frame(b"\r\n\r\nOPTIONS", 65536),
            MessageBoundary::KeepAlive(4)
        );
        let junk = [&b"tail of a body\r\nmore\r\n"[..], M].concat();
        assert_eq!(frame(&junk, 65536), MessageBoundary::Junk(22));
        assert_eq!(frame(b"no newline yet", 65536), MessageBoundary::NeedMore);
    }

    /// Feed `stream` to a framer in `chunk`-byte pieces, acting on every
    /// frame as the TCP reassembler does: the frames, in order.
    fn frames_of(stream: &[u8], chunk: usize, max: usize) -> Vec<MessageBoundary> {
        let mut framer = StreamFramer::default();
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                let f = framer.next(&buf, max);
                let n = match f {
                    MessageBoundary::Message(n)
                    | MessageBoundary::KeepAlive(n)
                    | MessageBoundary::Junk(n)
                    | MessageBoundary::Oversized(n) => n,
                    MessageBoundary::NeedMore => break,
                };
                out.push(f);
                buf.drain(..n);
                framer.consumed(n);
            }
        }
        out
    }

    #[test]
    fn a_line_without_lf_past_1024_bytes_is_junk_up_to_its_lf_in_one_step_per_segment() {
        let mut stream = vec![b'x'; 3000];
        stream.extend_from_slice(b"still junk\r\n");
        stream.extend_from_slice(M);
        let frames = frames_of(&stream, 1000, 65536);
        // Not one byte at a time: the long line goes in whole segments.
        assert_eq!(
            frames,
            vec![
                MessageBoundary::Junk(2000),
                MessageBoundary::Junk(1000),
                MessageBoundary::Junk(12),
                MessageBoundary::Message(M.len())
            ]
        );
    }

    #[test]
    fn a_header_block_that_never_ends_is_scanned_once_not_per_segment() {
        let mut framer = StreamFramer::default();
        let mut buf = b"INVITE sip:a@b SIP/2.0\r\n".to_vec();
        for _ in 0..100 {
            buf.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaa\r\n");
            assert_eq!(framer.next(&buf, 1 << 20), MessageBoundary::NeedMore);
            // What was searched is remembered: the next search starts here.
            assert_eq!(framer.scan, Scan::Headers { scanned: buf.len() });
        }
        buf.extend_from_slice(b"l: 2\r\n\r\nok");
        assert_eq!(
            framer.next(&buf, 1 << 20),
            MessageBoundary::Message(buf.len())
        );
    }

    #[test]
    fn junk_lines_are_remembered_while_the_caller_keeps_them() {
        let mut framer = StreamFramer::default();
        let mut buf = b"tail of a body\r\nmore\r\n".to_vec();
        // All junk, no start line: a caller may keep it and ask again.
        assert_eq!(framer.next(&buf, 65536), MessageBoundary::Junk(22));
        buf.extend_from_slice(b"and more\r\n");
        assert_eq!(framer.next(&buf, 65536), MessageBoundary::Junk(32));
        buf.extend_from_slice(M);
        assert_eq!(framer.next(&buf, 65536), MessageBoundary::Junk(32));
        buf.drain(..32);
        framer.consumed(32);
        assert_eq!(framer.next(&buf, 65536), MessageBoundary::Message(M.len()));
    }

    #[test]
    fn empty_line_ends_the_headers_as_the_parser_sees_it() {
        for end in [&b"\r\n\r\n"[..], b"\n\n", b"\n\r\n", b"\r\n\n"] {
            let m = [&b"OPTIONS sip:a@b SIP/2.0\r\nl: 2"[..], end, b"ok"].concat();
            assert_eq!(
                frame(&m, 65536),
                MessageBoundary::Message(m.len()),
                "{end:?}"
            );
        }
    }

    #[test]
    fn a_body_trickling_in_frames_once_complete() {
        let frames = frames_of(&[M, M].concat(), 1, 65536);
        assert_eq!(
            frames,
            vec![
                MessageBoundary::Message(M.len()),
                MessageBoundary::Message(M.len())
            ]
        );
    }

    #[test]
    fn oversized_is_reported_not_buffered_forever() {
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nContent-Length: 99999\r\n\r\n", 1000),
            MessageBoundary::Oversized(41)
        );
    }
}
