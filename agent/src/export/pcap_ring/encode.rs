//! Captured frames as file bytes: pcapng (the default) or classic pcap.
//!
//! Encoding is separate from writing so that a batch is written with one
//! `write` and a failed write loses exactly the frames of that batch,
//! which are then counted (a `BufWriter` would fail later, on a flush,
//! for frames already reported as written).

use std::{borrow::Cow, collections::HashMap, time::Duration};

use pcap_file::{
    DataLink, Endianness,
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};

use crate::export::pcap_writer::{SNAPLEN, classic_header};
use crate::packet::{Direction, LinkType, Packet};

/// The file format, chosen by the file name (`.pcap`: classic pcap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// pcapng: one Interface Description Block per captured interface
    /// with its name (`if_name`), nanosecond timestamps (`if_tsresol` 9),
    /// and the direction in each Enhanced Packet Block's `epb_flags`
    /// (pcapng draft, IETF opsawg-pcapng §4.3 and §4.3.1).
    PcapNg,
    /// Classic pcap with nanosecond timestamps: no interface names, no
    /// direction, for tools that read nothing else.
    Pcap,
}

impl FileFormat {
    /// `.pcap` files are classic pcap; everything else is pcapng.
    pub fn for_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("pcap") => Self::Pcap,
            _ => Self::PcapNg,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::PcapNg => "pcapng",
            Self::Pcap => "pcap",
        }
    }
}

/// The bytes of one file: its header when created, then each frame.
pub(crate) enum Encoder {
    PcapNg {
        /// Encodes into its own Vec, which [`Encoder::take`] empties.
        writer: PcapNgWriter<Vec<u8>>,
        /// ifindex → interface id in this file (order of the IDBs).
        ids: HashMap<u32, u32>,
        names: HashMap<u32, String>,
    },
    Pcap {
        bytes: Vec<u8>,
    },
}

impl Encoder {
    /// A new file's header; `names` maps ifindex → interface name, and
    /// each named interface gets its IDB up front (others when first
    /// seen, named `ifindex N`).
    pub(crate) fn new(format: FileFormat, names: &HashMap<u32, String>) -> Self {
        match format {
            FileFormat::Pcap => {
                let header = classic_header(DataLink::ETHERNET);
                let mut bytes = Vec::with_capacity(64 << 10);
                // Writing into a Vec cannot fail.
                let _ = header.write_to(&mut bytes);
                Self::Pcap { bytes }
            }
            FileFormat::PcapNg => {
                let writer = PcapNgWriter::with_endianness(
                    Vec::with_capacity(64 << 10),
                    Endianness::native(),
                )
                .expect("writing into a Vec cannot fail");
                let mut enc = Self::PcapNg {
                    writer,
                    ids: HashMap::new(),
                    names: names.clone(),
                };
                let mut known: Vec<u32> = names.keys().copied().collect();
                known.sort_unstable();
                for ifindex in known {
                    enc.interface_id(ifindex);
                }
                enc
            }
        }
    }

    /// The IDB index of `ifindex` in this file, writing its IDB first.
    fn interface_id(&mut self, ifindex: u32) -> u32 {
        let Self::PcapNg { writer, ids, names } = self else {
            return 0;
        };
        if let Some(id) = ids.get(&ifindex) {
            return *id;
        }
        let id = ids.len() as u32;
        let name = names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("ifindex {ifindex}"));
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAPLEN,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(name)),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        let _ = writer.write_pcapng_block(idb);
        ids.insert(ifindex, id);
        id
    }

    /// Appends one Ethernet frame; other link types are not captured live.
    pub(crate) fn push(&mut self, packet: &Packet) {
        debug_assert_eq!(packet.link, LinkType::Ethernet);
        let ns = packet.ts.as_nanos();
        match self {
            Self::Pcap { bytes } => {
                let ts_sec = (ns / 1_000_000_000) as u32;
                let ts_frac = (ns % 1_000_000_000) as u32;
                for v in [ts_sec, ts_frac, packet.data.len() as u32, packet.orig_len] {
                    bytes.extend_from_slice(&v.to_ne_bytes());
                }
                bytes.extend_from_slice(&packet.data);
            }
            Self::PcapNg { .. } => {
                let interface_id = self.interface_id(packet.ifindex);
                let Self::PcapNg { writer, .. } = self else {
                    return;
                };
                // epb_flags bits 0-1: 01 inbound, 10 outbound.
                let options = match packet.direction {
                    Direction::Ingress => vec![EnhancedPacketOption::Flags(0b01)],
                    Direction::Egress => vec![EnhancedPacketOption::Flags(0b10)],
                    Direction::Unknown => Vec::new(),
                };
                let epb = EnhancedPacketBlock {
                    interface_id,
                    // Written as a count of if_tsresol units: ns.
                    timestamp: Duration::from_nanos(ns),
                    original_len: packet.orig_len,
                    data: Cow::Borrowed(&packet.data),
                    options,
                };
                let _ = writer.write_pcapng_block(epb);
            }
        }
    }

    /// The bytes encoded since the last call.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        match self {
            Self::Pcap { bytes } => std::mem::take(bytes),
            Self::PcapNg { writer, .. } => std::mem::take(writer.get_mut()),
        }
    }

    /// Bytes encoded and not yet taken.
    pub(crate) fn pending(&mut self) -> usize {
        match self {
            Self::Pcap { bytes } => bytes.len(),
            Self::PcapNg { writer, .. } => writer.get_ref().len(),
        }
    }
}
