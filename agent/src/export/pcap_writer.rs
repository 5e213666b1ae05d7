//! Writes captured [`Packet`]s to a classic pcap file (nanosecond
//! timestamps), so a live capture can be opened in Wireshark or compared
//! with dumpcap's.

use std::{fs::File, io::BufWriter, path::Path, time::Duration};

use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapWriter as Inner},
};

use crate::capture::{LinkType, Packet};

/// Snap length written in the file header: large enough for any frame the
/// kernel copies.
const SNAPLEN: u32 = 262_144;

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
    #[error("pcap file {path} holds Ethernet frames; got a {link:?} packet")]
    LinkTypeMismatch { path: String, link: LinkType },
}

/// A pcap file of Ethernet frames.
pub struct PcapFileWriter {
    path: String,
    inner: Inner<BufWriter<File>>,
}

impl PcapFileWriter {
    pub fn create(path: &Path) -> Result<Self, PcapWriteError> {
        let shown = path.display().to_string();
        let file = File::create(path).map_err(|source| PcapWriteError::Create {
            path: shown.clone(),
            source,
        })?;
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
        };
        let inner = Inner::with_header(BufWriter::new(file), header).map_err(|source| {
            PcapWriteError::Write {
                path: shown.clone(),
                source,
            }
        })?;
        Ok(Self { path: shown, inner })
    }

    /// Appends one frame with its capture time and original length.
    pub fn write(&mut self, packet: &Packet) -> Result<(), PcapWriteError> {
        if packet.link != LinkType::Ethernet {
            return Err(PcapWriteError::LinkTypeMismatch {
                path: self.path.clone(),
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
