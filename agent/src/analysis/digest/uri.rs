//! Comparing the digest `uri` with the Request-URI, following the SIP URI
//! equality rules of RFC 3261 §19.1.4 (so `sip:Bob@BILOXI.com;transport=UDP`
//! equals `sip:Bob@biloxi.com;transport=udp`, but `sip:biloxi.com` does not
//! equal `sip:biloxi.com:5060`: §19.1.4 explicitly says an omitted port
//! "can resolve to different ports"). Other schemes compare exactly.

/// How two URIs relate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UriComparison {
    /// Byte-identical.
    Identical,
    /// Different text, equal under RFC 3261 §19.1.4.
    Equivalent,
    /// Not equal; the reason names the first component that differs.
    Different(String),
}

impl UriComparison {
    #[cfg(test)]
    pub(crate) fn matches(&self) -> bool {
        !matches!(self, UriComparison::Different(_))
    }
}

struct SipUri<'a> {
    scheme: &'a str,
    /// user[:password], %-decoded; compared case-sensitively.
    userinfo: Option<Vec<u8>>,
    host: &'a str,
    port: Option<&'a str>,
    params: Vec<(String, Option<String>)>,
    headers: Vec<(String, String)>,
}

/// Compares the digest `uri` with the Request-URI.
pub(crate) fn compare(digest_uri: &str, request_uri: &str) -> UriComparison {
    let (a, b) = (trim(digest_uri), trim(request_uri));
    if a == b {
        return UriComparison::Identical;
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => match differ(&x, &y) {
            None => UriComparison::Equivalent,
            Some(reason) => UriComparison::Different(reason),
        },
        _ => UriComparison::Different("the URIs differ".to_owned()),
    }
}

fn trim(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(s)
}

fn parse(s: &str) -> Option<SipUri<'_>> {
    let (scheme, rest) = s.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let (rest, headers) = match rest.split_once('?') {
        Some((r, h)) => (r, h),
        None => (rest, ""),
    };
    // userinfo cannot hold an unescaped '@', so the last one ends it.
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(percent_decode(&rest[..i])), &rest[i + 1..]),
        None => (None, rest),
    };
    let mut parts = hostpart.split(';');
    let hostport = parts.next()?;
    let (host, port) = split_hostport(hostport)?;
    let params = parts
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (lower(k), Some(lower(v))),
            None => (lower(p), None),
        })
        .collect();
    let mut headers: Vec<(String, String)> = headers
        .split('&')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let (k, v) = h.split_once('=').unwrap_or((h, ""));
            (
                lower(k),
                String::from_utf8_lossy(&percent_decode(v)).into_owned(),
            )
        })
        .collect();
    headers.sort();
    Some(SipUri {
        scheme,
        userinfo,
        host,
        port,
        params,
        headers,
    })
}

fn split_hostport(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = s.strip_prefix('[') {
        let end = v6.find(']')?;
        let port = v6[end + 1..].strip_prefix(':');
        return Some((&s[..end + 2], port));
    }
    Some(match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    })
}

fn lower(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode(s)).to_ascii_lowercase()
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The first difference under RFC 3261 §19.1.4, or `None` if equal.
fn differ(a: &SipUri<'_>, b: &SipUri<'_>) -> Option<String> {
    if !a.scheme.eq_ignore_ascii_case(b.scheme) {
        return Some(format!("scheme {} vs {}", a.scheme, b.scheme));
    }
    if a.userinfo != b.userinfo {
        return Some("the user part differs (compared case-sensitively)".to_owned());
    }
    if !a.host.eq_ignore_ascii_case(b.host) {
        return Some(format!("host {} vs {}", a.host, b.host));
    }
    if a.port != b.port {
        let show = |p: Option<&str>| p.map_or_else(|| "absent".to_owned(), str::to_owned);
        return Some(format!(
            "port {} vs {} (an explicit port never equals an omitted one, RFC 3261 19.1.4)",
            show(a.port),
            show(b.port)
        ));
    }
    // Params present in both must match; user, ttl, method and maddr must
    // be in both or neither; any other param in only one is ignored.
    for (k, v) in &a.params {
        match b.params.iter().find(|(bk, _)| bk == k) {
            Some((_, bv)) if bv != v => return Some(format!("parameter `{k}` differs")),
            None if ["user", "ttl", "method", "maddr"].contains(&k.as_str()) => {
                return Some(format!("parameter `{k}` is only in one URI"));
            }
            _ => {}
        }
    }
    for (k, _) in &b.params {
        if ["user", "ttl", "method", "maddr"].contains(&k.as_str())
            && !a.params.iter().any(|(ak, _)| ak == k)
        {
            return Some(format!("parameter `{k}` is only in one URI"));
        }
    }
    if a.headers != b.headers {
        return Some("the URI headers (?...) differ".to_owned());
    }
    None
}
