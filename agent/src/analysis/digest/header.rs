//! Tokenizer for authentication header values: `scheme` followed by a
//! comma-separated list of `name=value` auth-params (RFC 7616 §3.3/§3.4,
//! RFC 7235 §2.1, RFC 3261 §25.1 `challenge`/`credentials`).
//!
//! It is deliberately tolerant, because a capture tool must read what real
//! user agents send: names are case-insensitive, values may be quoted or
//! not, stray whitespace and empty list elements are skipped, a missing
//! comma between params is accepted (and reported), and one header value
//! may hold several challenges (`Digest ..., Digest ...`). It is also
//! bounded: input longer than [`MAX_HEADER_LEN`] or with more than
//! [`MAX_PARAMS`] params is refused with an error, never a panic.

use super::{DigestError, ParseWarning};

/// Longest header value accepted. Real digest headers are a few hundred
/// bytes; 8 KiB leaves room for long nonces and `domain` lists.
pub(crate) const MAX_HEADER_LEN: usize = 8 * 1024;
/// Most auth-params accepted in one header value.
pub(crate) const MAX_PARAMS: usize = 64;

/// One `name=value` auth-param as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthParam {
    /// Lower-cased (auth-param names are case-insensitive, RFC 7235 §2.1).
    pub name: String,
    /// The value with quotes and quoted-pair escapes removed.
    pub value: String,
    /// Whether the value was a quoted-string on the wire.
    pub quoted: bool,
}

/// One challenge or credentials: the scheme and its params, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthHeader {
    /// As received (compare case-insensitively).
    pub scheme: String,
    pub params: Vec<AuthParam>,
    /// Tolerated deviations from the grammar.
    pub warnings: Vec<ParseWarning>,
}

impl AuthHeader {
    /// The first value of `name` (lower-case).
    pub(crate) fn get(&self, name: &str) -> Option<&AuthParam> {
        self.params.iter().find(|p| p.name == name)
    }

    pub(crate) fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }
}

/// Parses a header value that may hold several challenges/credentials.
pub(crate) fn parse_auth_headers(input: &str) -> Result<Vec<AuthHeader>, DigestError> {
    if input.len() > MAX_HEADER_LEN {
        return Err(DigestError::TooLong {
            len: input.len(),
            max: MAX_HEADER_LEN,
        });
    }
    let mut cur = Cursor {
        s: input.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    let mut total_params = 0usize;
    loop {
        cur.skip_ws_and_commas();
        if cur.at_end() {
            break;
        }
        let at = cur.pos;
        let scheme = cur.token();
        if scheme.is_empty() {
            return Err(DigestError::ExpectedScheme {
                at,
                found: cur.peek_char(input),
            });
        }
        let mut header = AuthHeader {
            scheme: scheme.to_owned(),
            params: Vec::new(),
            warnings: Vec::new(),
        };
        let mut after_comma = true;
        loop {
            cur.skip_ws();
            if cur.peek() == Some(b',') {
                cur.skip_ws_and_commas();
                after_comma = true;
            }
            if cur.at_end() {
                break;
            }
            let start = cur.pos;
            let name = cur.token();
            if name.is_empty() {
                return Err(DigestError::ExpectedParamName {
                    at: start,
                    found: cur.peek_char(input),
                });
            }
            cur.skip_ws();
            if cur.peek() != Some(b'=') {
                // A token not followed by '=' starts the next challenge.
                cur.pos = start;
                break;
            }
            cur.pos += 1;
            cur.skip_ws();
            let name = name.to_ascii_lowercase();
            let (value, quoted) = if cur.peek() == Some(b'"') {
                (cur.quoted(&name)?, true)
            } else {
                (cur.unquoted(input).to_owned(), false)
            };
            if !after_comma && !header.params.is_empty() {
                header.warnings.push(ParseWarning::MissingComma {
                    before: name.clone(),
                });
            }
            if header.params.iter().any(|p| p.name == name) {
                header
                    .warnings
                    .push(ParseWarning::DuplicateParam(name.clone()));
            }
            total_params += 1;
            if total_params > MAX_PARAMS {
                return Err(DigestError::TooManyParams { max: MAX_PARAMS });
            }
            header.params.push(AuthParam {
                name,
                value,
                quoted,
            });
            after_comma = false;
        }
        out.push(header);
    }
    if out.is_empty() {
        return Err(DigestError::Empty);
    }
    Ok(out)
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek_char(&self, input: &str) -> char {
        input
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or('\u{fffd}')
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n' | b',')) {
            self.pos += 1;
        }
    }

    /// RFC 7230 tchar / RFC 3261 token characters.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        // Only ASCII was consumed, so this is a char boundary.
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default()
    }

    /// A quoted-string starting at the opening quote; `\x` yields `x`.
    fn quoted(&mut self, param: &str) -> Result<String, DigestError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => match self.peek() {
                    Some(n) => {
                        out.push(n);
                        self.pos += 1;
                    }
                    None => break,
                },
                _ => out.push(c),
            }
        }
        Err(DigestError::UnterminatedQuote {
            param: param.to_owned(),
            at: open,
        })
    }

    /// An unquoted value: everything up to a comma or whitespace. Wider
    /// than `token` on purpose: unquoted nonces (base64 with `/+=`) and
    /// URIs (`sip:bob@biloxi.com`) are common in the wild.
    fn unquoted(&mut self, input: &'a str) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if matches!(c, b',' | b' ' | b'\t' | b'\r' | b'\n') {
                break;
            }
            self.pos += 1;
        }
        // Stops only before ASCII bytes, so both ends are char boundaries.
        input.get(start..self.pos).unwrap_or_default()
    }
}
