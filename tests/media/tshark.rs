//! The reference: `tshark -z rtp,streams` and a parser for its table.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// One row of tshark's RTP Streams table.
#[derive(Debug, Clone)]
pub struct TsharkStream {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ssrc: u32,
    pub payload: String,
    pub packets: u64,
    pub lost: i64,
    pub mean_jitter_ms: f64,
    pub max_jitter_ms: f64,
}

/// Runs tshark on `pcap`; `None` when tshark is not installed.
pub fn rtp_streams(pcap: &Path) -> Option<Vec<TsharkStream>> {
    let output = match Command::new("tshark")
        .args([
            "-q",
            "-o",
            "rtp.heuristic_rtp:TRUE",
            "-z",
            "rtp,streams",
            "-r",
        ])
        .arg(pcap)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running tshark: {e}"),
    };
    assert!(
        output.status.success(),
        "tshark failed on {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(parse_streams(&String::from_utf8_lossy(&output.stdout)))
}

/// Parses the table (columns: start, end, src ip, src port, dst ip, dst
/// port, SSRC, payload…, pkts, lost, (lost %), min/mean/max delta,
/// min/mean/max jitter, problems flag). Read from the right because the
/// payload column can hold several names.
pub fn parse_streams(text: &str) -> Vec<TsharkStream> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 17 || !t[6].starts_with("0x") {
            continue;
        }
        if t.last() == Some(&"X") {
            t.pop();
        }
        let n = t.len();
        let num = |i: usize| -> f64 {
            t[i].parse()
                .unwrap_or_else(|_| panic!("column {i} of {line:?}"))
        };
        let addr = |ip: &str, port: &str| -> SocketAddr {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            SocketAddr::new(ip, port.parse().unwrap())
        };
        rows.push(TsharkStream {
            src: addr(t[2], t[3]),
            dst: addr(t[4], t[5]),
            ssrc: u32::from_str_radix(&t[6][2..], 16).unwrap(),
            payload: t[7..n - 9].join(" "),
            packets: t[n - 9].parse().unwrap(),
            lost: t[n - 8].parse().unwrap(),
            mean_jitter_ms: num(n - 2),
            max_jitter_ms: num(n - 1),
        });
    }
    rows
}

#[test]
fn parses_the_tshark_4_table_including_negative_loss_and_problem_flag() {
    let text = "========================= RTP Streams ========================
   Start time      End time     Src IP addr  Port    Dest IP addr  Port       SSRC          Payload  Pkts         Lost   Min Delta(ms)  Mean Delta(ms)   Max Delta(ms)  Min Jitter(ms) Mean Jitter(ms)  Max Jitter(ms) Problems?
     0.000000      7.049628      10.1.3.143  5000       10.1.6.18  2006 0xDEE0EE8F            g711A   236     0 (0.0%)          25.112          29.998          34.829           0.002           0.350           0.829 
     0.000000      0.139929     192.168.0.3 49176     192.168.0.1 10000 0x0E05384E         rtpevent    10    -2 (-25.0%)           0.041          15.548          20.072          -1.000           0.000           0.000 X
==============================================================
";
    let rows = parse_streams(text);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].ssrc, 0xDEE0EE8F);
    assert_eq!((rows[0].packets, rows[0].lost), (236, 0));
    assert_eq!(rows[0].max_jitter_ms, 0.829);
    assert_eq!(rows[0].src, "10.1.3.143:5000".parse().unwrap());
    assert_eq!((rows[1].payload.as_str(), rows[1].lost), ("rtpevent", -2));
}
