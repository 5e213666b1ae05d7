//! pcap and pcapng capture files as a packet source.
//!
//! Reads classic pcap (micro- and nanosecond) and pcapng (per-interface link
//! type and `if_tsresol`) through the `pcap-file` crate and yields the same
//! owned [`Packet`] the live source produces. A damaged file yields every
//! packet before the damage, then one [`FileError::Truncated`] (or
//! [`FileError::Corrupt`]) and ends: never a panic, never an endless loop.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, PcapError};

use crate::{
    packet::{Direction, LinkType, Packet},
    time::Timestamp,
};

/// Why a capture file could not be read (or stopped being readable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("cannot open {path}: {source} (check the path and that you may read it)")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a pcap or pcapng capture file (first bytes {magic}); \
         convert it with `editcap -F pcap` or capture with tcpdump/dumpcap"
    )]
    NotACapture { path: PathBuf, magic: String },
    #[error(
        "{path}: unsupported link type {linktype} ({name}) on interface {interface}; \
         supported: Ethernet, Linux SLL/SLL2, raw IP, IPv4, IPv6, NULL/LOOP"
    )]
    UnsupportedLinkType {
        path: PathBuf,
        interface: u32,
        linktype: u32,
        name: String,
    },
    #[error(
        "{path}: file ends in the middle of a record after {packets} packets (truncated capture)"
    )]
    Truncated { path: PathBuf, packets: u64 },
    #[error("{path}: corrupt record after {packets} packets: {source}")]
    Corrupt {
        path: PathBuf,
        packets: u64,
        #[source]
        source: PcapError,
    },
    #[error("{path}: read error after {packets} packets: {source}")]
    Io {
        path: PathBuf,
        packets: u64,
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    /// Whether reading stops after this error. An unsupported link type on
    /// one pcapng interface only skips that interface's packets.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, FileError::UnsupportedLinkType { interface, .. } if *interface != u32::MAX)
    }
}

/// Map a libpcap LINKTYPE number (tcpdump.org/linktypes.html) to ours.
pub fn link_type_from_dlt(dlt: u32) -> Option<LinkType> {
    Some(match dlt {
        1 => LinkType::Ethernet,
        // LINKTYPE_RAW, and the DLT_RAW values some BSDs write into files.
        101 | 12 | 14 => LinkType::RawIp,
        228 => LinkType::Ipv4,
        229 => LinkType::Ipv6,
        113 => LinkType::LinuxSll,
        276 => LinkType::LinuxSll2,
        0 => LinkType::Null,
        // DLT_LOOP: like NULL but the family is in network byte order; the
        // decoder accepts either order.
        108 => LinkType::Null,
        _ => return None,
    })
}

fn dlt_name(d: DataLink) -> String {
    format!("{d:?}")
}

enum Format<R: Read> {
    Pcap {
        reader: PcapReader<R>,
        link: LinkType,
    },
    PcapNg {
        reader: PcapNgReader<R>,
        /// Per interface: link type (None = unsupported) and tick length in ns.
        interfaces: Vec<(Option<LinkType>, TsUnit)>,
    },
}

/// Timestamp resolution of a pcapng interface (`if_tsresol`, RFC-draft
/// pcapng §4.2): either 10^-n or 2^-n seconds per tick.
#[derive(Clone, Copy, Debug)]
enum TsUnit {
    Pow10(u8),
    Pow2(u8),
}

impl TsUnit {
    fn from_option(v: u8) -> Self {
        if v & 0x80 == 0 {
            TsUnit::Pow10(v)
        } else {
            TsUnit::Pow2(v & 0x7f)
        }
    }

    /// pcap-file hands the raw tick count over as a Duration of nanoseconds.
    fn to_nanos(self, ticks: u128) -> u64 {
        let ns: u128 = match self {
            TsUnit::Pow10(n) if n <= 9 => ticks.saturating_mul(10u128.pow(9 - u32::from(n))),
            TsUnit::Pow10(n) => ticks / 10u128.saturating_pow(u32::from(n) - 9),
            TsUnit::Pow2(n) => ticks.saturating_mul(1_000_000_000) >> n.min(127),
        };
        ns.min(u128::from(u64::MAX)) as u64
    }
}

/// A capture file being read packet by packet.
pub struct CaptureFile<R: Read = BufReader<File>> {
    path: PathBuf,
    format: Format<Adapter<R>>,
    packets: u64,
    /// Packets skipped because their interface's link type is unsupported.
    pub skipped_unsupported_link: u64,
    done: bool,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl CaptureFile<BufReader<File>> {
    /// Open a pcap or pcapng file, recognised by its magic number.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| FileError::Open {
            path: path.clone(),
            source,
        })?;
        Self::from_reader(path, BufReader::with_capacity(1 << 16, file))
    }
}

impl<R: Read> CaptureFile<R> {
    /// Read a capture from any reader; `path` is only used in messages.
    pub fn from_reader(path: PathBuf, mut reader: R) -> Result<Self, FileError> {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match reader.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(FileError::Io {
                        path,
                        packets: 0,
                        source,
                    });
                }
            }
        }
        let not_capture = |path: PathBuf| FileError::NotACapture {
            path,
            magic: if got == 0 {
                "none: the file is empty".into()
            } else {
                hex::encode(&magic[..got])
            },
        };
        if got < 4 {
            return Err(not_capture(path));
        }
        let chained = std::io::Cursor::new(magic).chain(reader);
        // The magic bytes were consumed to pick the format; put them back.
        let format = if PCAP_MAGICS.contains(&magic) {
            let reader = PcapReader::new(Adapter(chained)).map_err(|e| header_error(&path, e))?;
            let dl = reader.header().datalink;
            let link = link_type_from_dlt(u32::from(dl)).ok_or_else(|| {
                FileError::UnsupportedLinkType {
                    path: path.clone(),
                    interface: u32::MAX,
                    linktype: u32::from(dl),
                    name: dlt_name(dl),
                }
            })?;
            Format::Pcap { reader, link }
        } else if magic == PCAPNG_MAGIC {
            let reader = PcapNgReader::new(Adapter(chained)).map_err(|e| header_error(&path, e))?;
            Format::PcapNg {
                reader,
                interfaces: Vec::new(),
            }
        } else {
            return Err(not_capture(path));
        };
        Ok(CaptureFile {
            path,
            format,
            packets: 0,
            skipped_unsupported_link: 0,
            done: false,
        })
    }

    /// Packets delivered so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stop(&mut self, err: PcapError) -> FileError {
        self.done = true;
        let path = self.path.clone();
        let packets = self.packets;
        match err {
            PcapError::IncompleteBuffer => FileError::Truncated { path, packets },
            PcapError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                FileError::Truncated { path, packets }
            }
            PcapError::IoError(source) => FileError::Io {
                path,
                packets,
                source,
            },
            source => FileError::Corrupt {
                path,
                packets,
                source,
            },
        }
    }
}

fn header_error(path: &Path, e: PcapError) -> FileError {
    match e {
        PcapError::IoError(source) if source.kind() != std::io::ErrorKind::UnexpectedEof => {
            FileError::Io {
                path: path.to_path_buf(),
                packets: 0,
                source,
            }
        }
        PcapError::IncompleteBuffer | PcapError::IoError(_) => FileError::Truncated {
            path: path.to_path_buf(),
            packets: 0,
        },
        source => FileError::Corrupt {
            path: path.to_path_buf(),
            packets: 0,
            source,
        },
    }
}

/// Bytes handed to pcap-file's reader at a time. Its buffer is 8 MB, and
/// a read into all of it would touch (make resident) every page of it;
/// reading in slices keeps its used part at a slice plus the largest
/// packet, however long the file.
const READ_SLICE: usize = 64 << 10;

/// The caller's reader with the four magic bytes put back in front, read
/// at most [`READ_SLICE`] bytes at a time.
pub struct Adapter<R: Read>(std::io::Chain<std::io::Cursor<[u8; 4]>, R>);
impl<R: Read> Read for Adapter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(READ_SLICE);
        self.0.read(&mut buf[..n])
    }
}

impl<R: Read> Iterator for CaptureFile<R> {
    type Item = Result<Packet, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match &mut self.format {
                Format::Pcap { reader, link } => {
                    let link = *link;
                    return match reader.next_packet()? {
                        Ok(p) => {
                            self.packets += 1;
                            Some(Ok(Packet {
                                ts: Timestamp(duration_ns(p.timestamp)),
                                ifindex: 0,
                                direction: Direction::Unknown,
                                link,
                                data: p.data.into_owned(),
                                orig_len: p.orig_len,
                            }))
                        }
                        Err(e) => Some(Err(self.stop(e))),
                    };
                }
                Format::PcapNg { reader, interfaces } => {
                    let block = match reader.next_block()? {
                        Ok(b) => b,
                        Err(e) => return Some(Err(self.stop(e))),
                    };
                    match block {
                        Block::SectionHeader(_) => interfaces.clear(),
                        Block::InterfaceDescription(idb) => {
                            let unit = idb
                                .options
                                .iter()
                                .find_map(|o| match o {
                                    pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfTsResol(v) => {
                                        Some(TsUnit::from_option(*v))
                                    }
                                    _ => None,
                                })
                                .unwrap_or(TsUnit::Pow10(6));
                            let dl = idb.linktype;
                            let link = link_type_from_dlt(u32::from(dl));
                            interfaces.push((link, unit));
                            if link.is_none() {
                                return Some(Err(FileError::UnsupportedLinkType {
                                    path: self.path.clone(),
                                    interface: (interfaces.len() - 1) as u32,
                                    linktype: u32::from(dl),
                                    name: dlt_name(dl),
                                }));
                            }
                        }
                        Block::EnhancedPacket(epb) => {
                            let Some(&(link, unit)) = interfaces.get(epb.interface_id as usize)
                            else {
                                let e = PcapError::InvalidInterfaceId(epb.interface_id);
                                return Some(Err(self.stop(e)));
                            };
                            let Some(link) = link else {
                                self.skipped_unsupported_link += 1;
                                continue;
                            };
                            self.packets += 1;
                            return Some(Ok(Packet {
                                ts: Timestamp(unit.to_nanos(epb.timestamp.as_nanos())),
                                ifindex: 0,
                                direction: Direction::Unknown,
                                link,
                                data: epb.data.into_owned(),
                                orig_len: epb.original_len,
                            }));
                        }
                        Block::SimplePacket(spb) => {
                            // A simple packet belongs to interface 0 and has no timestamp.
                            let Some(&(link, _)) = interfaces.first() else {
                                return Some(Err(self.stop(PcapError::InvalidInterfaceId(0))));
                            };
                            let Some(link) = link else {
                                self.skipped_unsupported_link += 1;
                                continue;
                            };
                            self.packets += 1;
                            return Some(Ok(Packet {
                                ts: Timestamp(0),
                                ifindex: 0,
                                direction: Direction::Unknown,
                                link,
                                data: spb.data.into_owned(),
                                orig_len: spb.original_len,
                            }));
                        }
                        // Obsolete packet blocks, statistics, name resolution: not needed.
                        _ => {}
                    }
                }
            }
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_header(linktype: u32) -> Vec<u8> {
        let mut h = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&65535u32.to_le_bytes());
        h.extend_from_slice(&linktype.to_le_bytes());
        h
    }

    fn record(ts_sec: u32, data: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&ts_sec.to_le_bytes());
        r.extend_from_slice(&5u32.to_le_bytes());
        r.extend_from_slice(&(data.len() as u32).to_le_bytes());
        r.extend_from_slice(&(data.len() as u32).to_le_bytes());
        r.extend_from_slice(data);
        r
    }

    fn read(bytes: Vec<u8>) -> Result<CaptureFile<std::io::Cursor<Vec<u8>>>, FileError> {
        CaptureFile::from_reader(PathBuf::from("mem.pcap"), std::io::Cursor::new(bytes))
    }

    #[test]
    fn truncated_file_yields_packets_before_the_damage_then_one_error() {
        let mut bytes = pcap_header(1);
        bytes.extend(record(1, &[1; 20]));
        bytes.extend(record(2, &[2; 20]));
        let full = bytes.len();
        bytes.extend(record(3, &[3; 20]));
        bytes.truncate(full + 10);
        let items: Vec<_> = read(bytes).unwrap().collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert_eq!(items[1].as_ref().unwrap().ts, Timestamp(2_000_005_000));
        assert!(
            matches!(items[2], Err(FileError::Truncated { packets: 2, .. })),
            "{:?}",
            items[2]
        );
    }

    #[test]
    fn non_capture_and_empty_files_are_named_as_such() {
        let e = read(b"INVITE sip:x SIP/2.0\r\n".to_vec()).err().unwrap();
        assert!(matches!(e, FileError::NotACapture { .. }));
        assert!(e.to_string().contains("not a pcap or pcapng"));
        let e = read(Vec::new()).err().unwrap();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn unsupported_link_type_says_which() {
        let e = read(pcap_header(105)).err().unwrap(); // 802.11
        let msg = e.to_string();
        assert!(msg.contains("105") && msg.contains("IEEE802_11"), "{msg}");
    }

    #[test]
    fn raw_ip_aliases_map_to_raw() {
        for dlt in [12, 14, 101] {
            assert_eq!(link_type_from_dlt(dlt), Some(LinkType::RawIp));
        }
        assert_eq!(link_type_from_dlt(276), Some(LinkType::LinuxSll2));
    }

    #[test]
    fn pcapng_resolutions() {
        assert_eq!(TsUnit::Pow10(6).to_nanos(1_500_000), 1_500_000_000);
        assert_eq!(TsUnit::Pow10(9).to_nanos(7), 7);
        assert_eq!(TsUnit::Pow2(10).to_nanos(1024), 1_000_000_000);
    }
}
