//! Reading an agent's HTTP endpoints (`--metrics-listen`) from inside its
//! namespace.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::netns::{Netns, in_netns};

/// A GET over HTTP/1.0 from inside `ns`: (status code, headers, body).
pub fn http_get(ns: &Netns, addr: &'static str, path: String) -> Option<(u16, String, String)> {
    in_netns(ns, move || {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, head.to_owned(), body.to_owned()))
    })
}

/// The value of `series` (name and labels exactly as exposed) in an
/// OpenMetrics text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
