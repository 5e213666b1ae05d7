//! Writes captured [`Packet`]s to a classic pcap file (nanosecond
//! timestamps), so a live capture can be opened in Wireshark or compared
//! with dumpcap's.

use std::{fs::File, io::BufWriter, path::Path, time::Duration};

use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapWriter as Inner},
};

use crate::packet::{LinkType, Packet};

/// Snap length written in the file header: large enough for any frame the
/// kernel copies.
pub(crate) const SNAPLEN: u32 = 262_144;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcapWriteError {
    #[error("cannot create pcap file {path}: check the directory exists and is writable")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing pcap file {path} (disk full?)")]
    Write {
        path: String,
        #[source]
        source: pcap_file::PcapError,
    },
    #[error("pcap file {path} holds {expected:?} packets; got a {link:?} packet")]
    LinkTypeMismatch {
        path: String,
        expected: LinkType,
        link: LinkType,
    },
    #[error("pcap files of {0:?} packets are not supported (Ethernet or raw IP only)")]
    UnsupportedLink(LinkType),
}

/// The classic pcap file header: nanosecond timestamps, native byte order.
pub(crate) fn classic_header(datalink: DataLink) -> PcapHeader {
    PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: SNAPLEN,
        datalink,
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::native(),
    }
}

/// A pcap file of Ethernet frames (captures) or raw IP packets (drops).
pub struct PcapFileWriter {
    path: String,
    link: LinkType,
    inner: Inner<BufWriter<File>>,
}

impl PcapFileWriter {
    /// A file of Ethernet frames.
    pub fn create(path: &Path) -> Result<Self, PcapWriteError> {
        Self::create_for(path, LinkType::Ethernet)
    }

    /// A file of `link` packets: [`LinkType::Ethernet`] or
    /// [`LinkType::RawIp`] (LINKTYPE_RAW, e.g. the kernel's dropped packets).
    pub fn create_for(path: &Path, link: LinkType) -> Result<Self, PcapWriteError> {
        let datalink = match link {
            LinkType::Ethernet => DataLink::ETHERNET,
            LinkType::RawIp => DataLink::RAW,
            other => return Err(PcapWriteError::UnsupportedLink(other)),
        };
        let shown = path.display().to_string();
        let file = File::create(path).map_err(|source| PcapWriteError::Create {
            path: shown.clone(),
            source,
        })?;
        let inner = Inner::with_header(BufWriter::new(file), classic_header(datalink)).map_err(
            |source| PcapWriteError::Write {
                path: shown.clone(),
                source,
            },
        )?;
        Ok(Self {
            path: shown,
            link,
            inner,
        })
    }

    /// Appends one frame with its capture time and original length.
    pub fn write(&mut self, packet: &Packet) -> Result<(), PcapWriteError> {
        if packet.link != self.link {
            return Err(PcapWriteError::LinkTypeMismatch {
                path: self.path.clone(),
                expected: self.link,
                link: packet.link,
            });
        }
        let record = PcapPacket::new(
            Duration::from_nanos(packet.ts.as_nanos()),
            packet.orig_len,
            &packet.data,
        );
        self.inner
            .write_packet(&record)
            .map_err(|source| PcapWriteError::Write {
                path: self.path.clone(),
                source,
            })?;
        Ok(())
    }

    /// Flushes buffered records and closes the file.
    pub fn finish(self) -> Result<(), PcapWriteError> {
        use std::io::Write as _;
        let path = self.path;
        self.inner
            .into_writer()
            .flush()
            .map_err(|e| PcapWriteError::Write {
                path,
                source: pcap_file::PcapError::IoError(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{packet::Direction, time::Timestamp};

    fn packet(ts: u64, data: &[u8], orig_len: u32, link: LinkType) -> Packet {
        Packet {
            ts: Timestamp::from_nanos(ts),
            ifindex: 1,
            direction: Direction::Ingress,
            link,
            data: data.to_vec(),
            orig_len,
        }
    }

    #[test]
    fn frames_round_trip_with_nanosecond_times_and_original_length() {
        let dir = std::env::temp_dir().join(format!("sipscope-pcapw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.pcap");
        let mut w = PcapFileWriter::create(&path).unwrap();
        w.write(&packet(
            1_700_000_000_123_456_789,
            &[1, 2, 3],
            3,
            LinkType::Ethernet,
        ))
        .unwrap();
        w.write(&packet(
            1_700_000_001_000_000_001,
            &[4; 10],
            9000,
            LinkType::Ethernet,
        ))
        .unwrap();
        w.finish().unwrap();

        let mut r = pcap_file::pcap::PcapReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(r.header().datalink, DataLink::ETHERNET);
        let a = r.next_packet().unwrap().unwrap();
        assert_eq!(a.timestamp.as_nanos(), 1_700_000_000_123_456_789);
        assert_eq!((a.orig_len, &a.data[..]), (3, &[1u8, 2, 3][..]));
        let b = r.next_packet().unwrap().unwrap();
        assert_eq!((b.orig_len, b.data.len()), (9000, 10), "truncation kept");
        assert!(r.next_packet().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_ethernet_packets_are_refused() {
        let dir = std::env::temp_dir().join(format!("sipscope-pcapw2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = PcapFileWriter::create(&dir.join("x.pcap")).unwrap();
        let err = w
            .write(&packet(1, &[0x45], 1, LinkType::RawIp))
            .unwrap_err();
        assert!(matches!(err, PcapWriteError::LinkTypeMismatch { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let err = PcapFileWriter::create(Path::new("/nonexistent-dir/x.pcap"))
            .err()
            .expect("cannot create");
        assert!(
            err.to_string().contains("check the directory exists"),
            "{err}"
        );
    }
}
