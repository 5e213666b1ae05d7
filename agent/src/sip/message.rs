//! The tolerant zero-copy SIP message framer (RFC 3261 §7).
//!
//! One pass over the bytes splits the start line, the header fields (compact
//! forms recognised, folded lines joined, CRLF or bare LF) and the body, and
//! records where the hot fields are. Nothing is copied: the message keeps its
//! raw bytes (`Bytes`, shared) and [`ByteRange`]s into them. A defect in one
//! header (bad syntax, non-UTF-8 bytes) is recorded as a
//! [`MalformedReason`] and never loses the message; only an unreadable
//! start line does.

use std::borrow::Cow;

use bytes::Bytes;

use super::byte_range::ByteRange;
use super::headers::{self, HeaderName, parse_u32, trim};
use super::malformed::MalformedReason;
use super::method::{Method, is_token};
use super::name_addr::{self, NameAddrRanges};
use super::via::{self, Rport, Via, ViaRanges};

/// Request line or status line (RFC 3261 §7.1, §7.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: ByteRange },
    Response { code: u16, reason: ByteRange },
}

/// CSeq (RFC 3261 §20.16).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CSeq {
    pub number: u32,
    pub method: Method,
}

/// One header field as found on the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderField {
    pub kind: HeaderName,
    pub name: ByteRange,
    /// The value, leading/trailing LWS trimmed; folded lines included.
    pub value: ByteRange,
}

/// Set of defects, one bit per [`MalformedReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Defects(u32);

impl Defects {
    pub fn add(&mut self, r: MalformedReason) {
        self.0 |= 1 << r.index();
    }
    pub fn contains(self, r: MalformedReason) -> bool {
        self.0 & (1 << r.index()) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = MalformedReason> {
        MalformedReason::ALL
            .into_iter()
            .filter(move |r| self.contains(*r))
    }
}

/// A parsed SIP message: raw bytes plus positions of its parts.
#[derive(Clone, Debug)]
pub struct SipMessage {
    raw: Bytes,
    pub start: StartLine,
    headers: Vec<HeaderField>,
    body: ByteRange,
    call_id: Option<ByteRange>,
    cseq: Option<CSeq>,
    via: Option<ViaRanges>,
    from: Option<NameAddrRanges>,
    to: Option<NameAddrRanges>,
    contact: Option<NameAddrRanges>,
    expires: Option<u32>,
    content_type: Option<ByteRange>,
    content_length: Option<u32>,
    pub defects: Defects,
}

/// How the message arrived: datagrams may carry trailing octets beyond
/// Content-Length (ignored, RFC 3261 §18.3); stream framing already cut
/// the message to its Content-Length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Datagram,
    Stream,
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// Split the first line off `b`: (line without CR/LF, offset after the LF).
fn line_at(b: &[u8], from: usize) -> Option<(usize, usize, usize)> {
    let rest = b.get(from..)?;
    let nl = rest.iter().position(|&c| c == b'\n')?;
    let mut end = from + nl;
    if end > from && b[end - 1] == b'\r' {
        end -= 1;
    }
    Some((from, end, from + nl + 1))
}

impl SipMessage {
    /// Parse one message. `Err` only for a fatal defect (unreadable start
    /// line, unknown version, bad status code).
    pub fn parse(raw: Bytes, framing: Framing) -> Result<SipMessage, MalformedReason> {
        let b = &raw[..];
        // RFC 5626 §3.5.1 keep-alives and stray CRLFs before a message.
        let mut pos = b
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .unwrap_or(b.len());
        let (ls, le, next) = line_at(b, pos).unwrap_or((pos, b.len(), b.len()));
        let mut defects = Defects::default();
        let start = parse_start_line(&b[ls..le], ls, &mut defects)?;
        pos = next;

        let mut msg = SipMessage {
            start,
            headers: Vec::with_capacity(16),
            body: ByteRange::new(b.len(), b.len()),
            call_id: None,
            cseq: None,
            via: None,
            from: None,
            to: None,
            contact: None,
            expires: None,
            content_type: None,
            content_length: None,
            defects,
            raw: Bytes::new(),
        };

        // Header fields up to the empty line.
        let mut body_start = None;
        while let Some((s, e, n)) = line_at(b, pos) {
            pos = n;
            if s == e {
                body_start = Some(n);
                break;
            }
            if matches!(b[s], b' ' | b'\t') {
                // Folded continuation (RFC 3261 §7.3.1) of the previous field.
                if let Some(h) = msg.headers.last_mut() {
                    h.value.end = trim_end(b, e) as u32;
                } else {
                    msg.defects.add(MalformedReason::BadHeaderLine);
                }
                continue;
            }
            let line = &b[s..e];
            match line.iter().position(|&c| c == b':') {
                Some(colon) if !trim(&line[..colon]).is_empty() => {
                    let name = trim(&line[..colon]);
                    let value = trim(&line[colon + 1..]);
                    msg.headers.push(HeaderField {
                        kind: headers::classify(name),
                        name: ByteRange::of(b, 0, name),
                        value: ByteRange::of(b, 0, value),
                    });
                }
                _ => msg.defects.add(MalformedReason::BadHeaderLine),
            }
        }
        if body_start.is_none() {
            // The last line may lack its LF; keep it as a header if it is one.
            if pos < b.len() {
                let line = trim(&b[pos..]);
                if let Some(colon) = line.iter().position(|&c| c == b':') {
                    let name = trim(&line[..colon]);
                    if !name.is_empty() {
                        msg.headers.push(HeaderField {
                            kind: headers::classify(name),
                            name: ByteRange::of(b, 0, name),
                            value: ByteRange::of(b, 0, trim(&line[colon + 1..])),
                        });
                    }
                }
            }
            msg.defects.add(MalformedReason::NoHeaderEnd);
        }
        msg.extract_hot_fields(b);

        // Body by Content-Length (RFC 3261 §18.3, §20.14).
        let body_start = body_start.unwrap_or(b.len());
        let available = b.len() - body_start;
        let body_len = match msg.content_length {
            Some(cl) if cl as usize > available => {
                msg.defects.add(MalformedReason::ContentLengthExceedsBody);
                available
            }
            Some(cl) => cl as usize,
            None => available,
        };
        if framing == Framing::Stream && msg.content_length.is_none() {
            // RFC 3261 §18.3: mandatory over stream transports; the framer
            // assumed an empty body.
            msg.defects.add(MalformedReason::BadContentLength);
        }
        msg.body = ByteRange::new(body_start, body_start + body_len);
        msg.raw = raw;
        Ok(msg)
    }

    fn extract_hot_fields(&mut self, b: &[u8]) {
        let mut seen_via = false;
        let mut seen_contact = false;
        let mut seen_max_forwards = false;
        let mut dup = false;
        for i in 0..self.headers.len() {
            let h = self.headers[i];
            let v = h.value.get(b);
            let vs = h.value.start as usize;
            match h.kind {
                HeaderName::CallId => {
                    dup |= self.call_id.is_some();
                    if self.call_id.is_none() && !v.is_empty() {
                        self.call_id = Some(h.value);
                    }
                }
                HeaderName::Cseq => {
                    if self.cseq.is_some() {
                        dup = true;
                        continue;
                    }
                    let mut it = v.split(|&c| headers::is_lws(c)).filter(|w| !w.is_empty());
                    match (it.next().and_then(parse_u32), it.next(), it.next()) {
                        (Some(number), Some(m), None) if is_token(m) => {
                            self.cseq = Some(CSeq {
                                number,
                                method: Method::from_bytes(m),
                            })
                        }
                        _ => self.defects.add(MalformedReason::BadCseq),
                    }
                }
                HeaderName::Via => {
                    if !seen_via {
                        seen_via = true;
                        match via::parse_top(v, vs) {
                            Ok(via) => {
                                if via.lenient {
                                    self.defects.add(MalformedReason::BadVia);
                                }
                                self.via = Some(via);
                            }
                            Err(()) => self.defects.add(MalformedReason::BadVia),
                        }
                    } else if via::parse_top(v, vs).is_err() {
                        self.defects.add(MalformedReason::BadVia);
                    }
                }
                HeaderName::From | HeaderName::To => {
                    let slot = if h.kind == HeaderName::From {
                        &mut self.from
                    } else {
                        &mut self.to
                    };
                    if slot.is_some() {
                        dup = true;
                        continue;
                    }
                    let (na, malformed) = name_addr::parse_or_recover(v, vs);
                    // Keep what can be read so the message stays usable.
                    *slot = Some(na.unwrap_or(NameAddrRanges {
                        uri: h.value,
                        ..Default::default()
                    }));
                    if malformed {
                        self.defects.add(MalformedReason::BadNameAddr);
                    }
                }
                HeaderName::Contact => {
                    if !seen_contact {
                        seen_contact = true;
                        // The first element only, as SipMessage::contacts
                        // reads it: recovery must not reach into the next.
                        let first = headers::split_outside_quotes(v, b',').next().unwrap_or(v);
                        let (contact, malformed) = name_addr::parse_or_recover(first, vs);
                        self.contact = contact;
                        if malformed {
                            self.defects.add(MalformedReason::BadNameAddr);
                        }
                    }
                }
                HeaderName::Expires => match parse_u32(v) {
                    Some(e) if self.expires.is_none() => self.expires = Some(e),
                    Some(_) => {}
                    None => self.defects.add(MalformedReason::BadScalar),
                },
                HeaderName::MaxForwards => {
                    dup |= seen_max_forwards;
                    seen_max_forwards = true;
                    if parse_u32(v).is_none_or(|n| n > 255) {
                        self.defects.add(MalformedReason::BadScalar);
                    }
                }
                HeaderName::ContentType => {
                    if self.content_type.is_none() {
                        self.content_type = Some(h.value);
                    }
                }
                HeaderName::ContentLength => {
                    if self.content_length.is_some() {
                        self.defects.add(MalformedReason::MultipleContentLength);
                        continue;
                    }
                    match parse_u32(v) {
                        Some(n) => self.content_length = Some(n),
                        None => self.defects.add(MalformedReason::BadContentLength),
                    }
                }
                HeaderName::Date => {
                    // RFC 3261 §20.17: rfc1123-date, always "GMT".
                    if !trim(v).ends_with(b"GMT") {
                        self.defects.add(MalformedReason::BadDate);
                    }
                }
                HeaderName::Other => {}
            }
        }
        if dup {
            self.defects.add(MalformedReason::DuplicateHeader);
        }
        let missing = [
            (self.call_id.is_none(), MalformedReason::MissingCallId),
            (
                self.cseq.is_none() && !self.defects.contains(MalformedReason::BadCseq),
                MalformedReason::MissingCseq,
            ),
            (
                self.via.is_none() && !self.defects.contains(MalformedReason::BadVia),
                MalformedReason::MissingVia,
            ),
            (self.from.is_none(), MalformedReason::MissingFrom),
            (self.to.is_none(), MalformedReason::MissingTo),
        ];
        for (is_missing, reason) in missing {
            if is_missing {
                self.defects.add(reason);
            }
        }
        if let (StartLine::Request { method, .. }, Some(cseq)) = (&self.start, &self.cseq)
            && *method != cseq.method
        {
            self.defects.add(MalformedReason::CseqMethodMismatch);
        }
    }

    // ---- accessors -------------------------------------------------------

    /// The message exactly as captured (for a datagram, including any
    /// trailing octets after the body).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn bytes_at(&self, s: ByteRange) -> &[u8] {
        s.get(&self.raw)
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Request method; for a response, the method of its CSeq.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => self.cseq.as_ref().map(|c| &c.method),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<Cow<'_, str>> {
        match self.start {
            StartLine::Request { uri, .. } => Some(lossy(self.bytes_at(uri))),
            StartLine::Response { .. } => None,
        }
    }

    pub fn reason_phrase(&self) -> Option<Cow<'_, str>> {
        match self.start {
            StartLine::Response { reason, .. } => Some(lossy(self.bytes_at(reason))),
            StartLine::Request { .. } => None,
        }
    }

    /// The start line as written, e.g. `REGISTER sip:example.com SIP/2.0`.
    pub fn start_line(&self) -> Cow<'_, str> {
        let b = &self.raw[..];
        let s = b
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .unwrap_or(0);
        let e = line_at(b, s).map_or(b.len(), |l| l.1);
        lossy(&b[s..e])
    }

    pub fn call_id(&self) -> Option<Cow<'_, str>> {
        self.call_id.map(|s| lossy(self.bytes_at(s)))
    }

    pub fn call_id_bytes(&self) -> Option<&[u8]> {
        self.call_id.map(|s| self.bytes_at(s))
    }

    pub fn cseq(&self) -> Option<&CSeq> {
        self.cseq.as_ref()
    }

    /// Where the top Via's parts are (RFC 3261 §20.42); `None` when the
    /// first Via header field is unreadable.
    pub(crate) fn top_via_ranges(&self) -> Option<&ViaRanges> {
        self.via.as_ref()
    }

    /// The top Via as transactions read it (RFC 3261 §17.1.3, §18.2.1): the
    /// Via a response echoes back to its client. `None` when the first Via
    /// header field is unreadable.
    pub(crate) fn top_via(&self) -> Option<Via> {
        self.via.map(|r| Via::from_ranges(&r, &self.raw))
    }

    /// Every readable Via (RFC 3261 §20.42), top first, across header
    /// fields and comma-separated values, read with the same grammar as
    /// [`SipMessage::top_via`]; unreadable via-parms are skipped.
    pub(crate) fn vias(&self) -> Vec<Via> {
        self.header_values("Via")
            .flat_map(|v| {
                via::parse_all(v, 0)
                    .filter_map(Result::ok)
                    .map(move |r| Via::from_ranges(&r, v))
            })
            .collect()
    }

    /// Top Via branch parameter.
    pub fn branch(&self) -> Option<&[u8]> {
        self.via.and_then(|v| v.branch).map(|s| self.bytes_at(s))
    }

    /// Top Via sent-by as `host[:port]`-parts.
    pub fn sent_by(&self) -> Option<(&[u8], Option<u16>)> {
        self.via.map(|v| (self.bytes_at(v.host), v.port))
    }

    pub fn via_received(&self) -> Option<&[u8]> {
        self.via.and_then(|v| v.received).map(|s| self.bytes_at(s))
    }

    /// Top Via `rport` (RFC 3581): `Some(None)` without value;
    /// `Some(Some(p))`: filled in.
    pub fn via_rport(&self) -> Option<Option<u16>> {
        match Rport::of(self.via?.rport.map(|r| self.bytes_at(r))) {
            Rport::Absent => None,
            Rport::Requested => Some(None),
            Rport::Value(p) => Some(Some(p)),
        }
    }

    pub fn via_transport(&self) -> Option<&[u8]> {
        self.via.map(|v| self.bytes_at(v.transport))
    }

    pub fn from_uri(&self) -> Option<&[u8]> {
        self.from.map(|n| self.bytes_at(n.uri))
    }
    pub fn from_tag(&self) -> Option<&[u8]> {
        self.from.and_then(|n| n.tag).map(|s| self.bytes_at(s))
    }
    pub fn to_uri(&self) -> Option<&[u8]> {
        self.to.map(|n| self.bytes_at(n.uri))
    }
    pub fn to_tag(&self) -> Option<&[u8]> {
        self.to.and_then(|n| n.tag).map(|s| self.bytes_at(s))
    }
    /// First Contact URI (`*` for a wildcard Contact).
    pub fn contact_uri(&self) -> Option<&[u8]> {
        self.contact.map(|n| self.bytes_at(n.uri))
    }
    /// The Expires header (not the Contact `expires` parameter).
    pub fn expires(&self) -> Option<u32> {
        self.expires
    }
    pub fn content_type(&self) -> Option<&[u8]> {
        self.content_type.map(|s| self.bytes_at(s))
    }
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }
    pub fn body(&self) -> &[u8] {
        self.bytes_at(self.body)
    }

    /// A short label naming the message in evidence: `REGISTER (CSeq 2)`
    /// or `401 Unauthorized (CSeq 1 REGISTER)` (RFC 3261 §7.1, §7.2,
    /// §20.16).
    pub(crate) fn label(&self) -> String {
        match (self.status(), self.cseq()) {
            (Some(code), Some(c)) => format!(
                "{code} {} (CSeq {} {})",
                self.reason_phrase().unwrap_or(Cow::Borrowed("")),
                c.number,
                c.method
            ),
            (Some(code), None) => format!("{code} {}", self.reason_phrase().unwrap_or_default()),
            (None, Some(c)) => format!("{} (CSeq {})", c.method, c.number),
            (None, None) => self.method().map_or_else(String::new, |x| x.to_string()),
        }
    }

    /// All header fields in order: (name as written, value with folding).
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|h| (self.bytes_at(h.name), self.bytes_at(h.value)))
    }

    /// Values of every header called `name` (full or compact form, any case).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| headers::name_matches(self.bytes_at(h.name), name))
            .map(|h| self.bytes_at(h.value))
    }

    /// First value of `name`, unfolded, as text (lossy for non-UTF-8).
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name)
            .next()
            .map(|v| lossy(&headers::unfold(v)).into_owned())
    }
}

#[cfg(test)]
impl SipMessage {
    /// A datagram written with `\n` line ends, as tests write messages.
    pub(crate) fn from_lines(text: &str) -> SipMessage {
        SipMessage::parse(Bytes::from(text.replace('\n', "\r\n")), Framing::Datagram)
            .expect("a readable start line")
    }
}

fn trim_end(b: &[u8], mut e: usize) -> usize {
    while e > 0 && headers::is_lws(b[e - 1]) {
        e -= 1;
    }
    e
}

fn is_version(tok: &[u8]) -> bool {
    tok.len() > 4 && tok[..4].eq_ignore_ascii_case(b"SIP/")
}

/// RFC 3261 §7.1 Request-Line and §7.2 Status-Line.
fn parse_start_line(
    line: &[u8],
    base: usize,
    defects: &mut Defects,
) -> Result<StartLine, MalformedReason> {
    if is_version(line.split(|&c| c == b' ').next().unwrap_or(&[])) {
        // SIP-Version SP Status-Code SP Reason-Phrase
        let sp = line
            .iter()
            .position(|&c| c == b' ')
            .ok_or(MalformedReason::BadStartLine)?;
        if !line[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(MalformedReason::BadVersion);
        }
        let rest = &line[sp + 1..];
        let code_end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        let code = &rest[..code_end];
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(MalformedReason::BadStatusCode);
        }
        let code =
            (code[0] - b'0') as u16 * 100 + (code[1] - b'0') as u16 * 10 + (code[2] - b'0') as u16;
        if !(100..=699).contains(&code) {
            return Err(MalformedReason::BadStatusCode);
        }
        let reason_start = (sp + 1 + code_end + 1).min(line.len());
        return Ok(StartLine::Response {
            code,
            reason: ByteRange::new(base + reason_start, base + line.len()),
        });
    }
    // Method SP Request-URI SP SIP-Version
    let words: Vec<&[u8]> = line
        .split(|&c| c == b' ' || c == b'\t')
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() < 3 {
        return Err(MalformedReason::BadStartLine);
    }
    let version = words[words.len() - 1];
    if !is_version(version) {
        return Err(MalformedReason::BadStartLine);
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(MalformedReason::BadVersion);
    }
    let method = words[0];
    if !is_token(method) {
        return Err(MalformedReason::BadStartLine);
    }
    let uri_first = words[1];
    let uri_last = words[words.len() - 2];
    let uri_start = ByteRange::of(line, base, uri_first).start as usize;
    let uri_end = ByteRange::of(line, base, uri_last).end as usize;
    let uri = &line[uri_start - base..uri_end - base];
    if words.len() > 3 {
        defects.add(MalformedReason::BadRequestUri); // LWS inside (RFC 4475 §3.1.2.8)
    }
    // Exactly single SPs and nothing after the version (§3.1.2.9-10).
    let canonical = method.len() + 1 + uri.len() + 1 + version.len();
    if words.len() == 3 && canonical != line.len() {
        defects.add(MalformedReason::StartLineWhitespace);
    }
    if !request_uri_ok(uri) {
        defects.add(MalformedReason::BadRequestUri);
    }
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        uri: ByteRange::new(uri_start, uri_end),
    })
}

/// Request-URI checks (RFC 3261 §19.1.1 table 1: no headers in a
/// Request-URI; RFC 5118 §4.2: IPv6 references need brackets).
fn request_uri_ok(uri: &[u8]) -> bool {
    if uri.contains(&b'<') || uri.contains(&b'>') || !uri.contains(&b':') {
        return false;
    }
    let lower = uri
        .get(..5)
        .map(|p| p.to_ascii_lowercase())
        .unwrap_or_default();
    if lower.starts_with(b"sip:") || lower.starts_with(b"sips:") {
        let after_scheme = &uri[uri.iter().position(|&c| c == b':').unwrap_or(0) + 1..];
        // userinfo may contain '?' (RFC 4475 §3.1.1.2); after the host it
        // starts URI headers.
        let hostport = match after_scheme.iter().rposition(|&c| c == b'@') {
            Some(at) => &after_scheme[at + 1..],
            None => after_scheme,
        };
        if hostport.contains(&b'?') {
            return false;
        }
        let hostport = &hostport[..hostport
            .iter()
            .position(|&c| c == b';')
            .unwrap_or(hostport.len())];
        if !hostport.starts_with(b"[") && hostport.iter().filter(|&&c| c == b':').count() > 1 {
            return false;
        }
    }
    true
}

/// Whether a line looks like a SIP start line (used to find message
/// boundaries in TCP streams and to tell SIP from other UDP payloads).
pub(crate) fn looks_like_start_line(line: &[u8]) -> bool {
    let line = trim(line);
    if line.len() >= 12 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return line[4].is_ascii_digit();
    }
    // "... SIP/x.y" at the end of a request line.
    match line.iter().rposition(|&c| c == b' ') {
        Some(sp) if sp > 0 => {
            let v = &line[sp + 1..];
            let m_end = line.iter().position(|&c| c == b' ').unwrap_or(0);
            is_version(v) && v.len() <= 8 && is_token(&line[..m_end])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> SipMessage {
        SipMessage::parse(Bytes::copy_from_slice(b), Framing::Datagram).unwrap()
    }

    const REG: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
From: <sip:a@example.com>;tag=f\r\n\
To: <sip:a@example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 1 REGISTER\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn bare_lf_line_endings() {
        let lf: Vec<u8> = REG.iter().copied().filter(|&c| c != b'\r').collect();
        let m = parse(&lf);
        assert!(
            m.defects.is_empty(),
            "{:?}",
            m.defects.iter().collect::<Vec<_>>()
        );
        assert_eq!(m.call_id().as_deref(), Some("c1"));
        assert_eq!(m.expires(), Some(3600));
    }

    #[test]
    fn non_utf8_header_does_not_lose_the_message() {
        let mut raw = REG[..REG.len() - 2].to_vec();
        raw.extend_from_slice(b"User-Agent: caf\xe9 \xff\xfe phone\r\n\r\n");
        let m = parse(&raw);
        assert!(m.defects.is_empty());
        assert_eq!(m.cseq().map(|c| c.number), Some(1));
        assert_eq!(
            m.header("User-Agent").as_deref(),
            Some("caf\u{fffd} \u{fffd}\u{fffd} phone")
        );
        assert_eq!(
            m.header_values("user-agent").next(),
            Some(&b"caf\xe9 \xff\xfe phone"[..])
        );
    }

    #[test]
    fn header_line_without_colon_is_a_defect_not_a_loss() {
        let raw = [&REG[..REG.len() - 2], b"garbage line\r\n\r\n"].concat();
        let m = parse(&raw);
        assert!(m.defects.contains(MalformedReason::BadHeaderLine));
        assert_eq!(m.call_id().as_deref(), Some("c1"));
    }

    #[test]
    fn stream_message_without_content_length_is_flagged() {
        let raw: Vec<u8> = String::from_utf8_lossy(REG)
            .replace("Content-Length: 0\r\n", "")
            .into_bytes();
        let m = SipMessage::parse(Bytes::from(raw.clone()), Framing::Stream).unwrap();
        assert!(m.defects.contains(MalformedReason::BadContentLength));
        assert!(parse(&raw).defects.is_empty());
    }

    #[test]
    fn start_lines() {
        assert!(looks_like_start_line(b"SIP/2.0 200 OK"));
        assert!(looks_like_start_line(b"INVITE sip:a@b SIP/2.0\r"));
        assert!(!looks_like_start_line(b"GET / HTTP/1.1"));
        assert!(!looks_like_start_line(b"hello"));
        let e = SipMessage::parse(
            Bytes::from_static(b"SIP/2.0 20 OK\r\n\r\n"),
            Framing::Datagram,
        );
        assert_eq!(e.err(), Some(MalformedReason::BadStatusCode));
    }
}
