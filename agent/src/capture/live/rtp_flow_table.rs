//! The kernel's RTP flow maps as one table: IPv4 flows live in a map with
//! a 16-byte key ([`RtpFlowKeyV4`], cheaper for the kernel to hash and
//! compare on every packet), IPv6 flows in one with the 44-byte
//! [`RtpFlowKey`]. Callers see only [`RtpFlowKey`]s.

use std::os::fd::{AsFd, OwnedFd};

use aya::{
    Ebpf, Pod,
    maps::{HashMap, Map, MapData, PerCpuHashMap},
};
use sipscope_common::{RtpFlowKey, RtpFlowKeyV4, RtpFlowState, names};

use super::super::{FlowStoreKind, LiveError, load::missing};

/// Both families' maps of the store the programs use.
pub(super) struct FlowTable {
    v4: FamilyMap<RtpFlowKeyV4>,
    v6: FamilyMap<RtpFlowKey>,
}

impl FlowTable {
    /// Takes the maps of `store` out of the object.
    pub(super) fn take(ebpf: &mut Ebpf, store: FlowStoreKind) -> Result<Self, LiveError> {
        let (v4, v6) = match store {
            FlowStoreKind::Shared => (names::RTP_FLOWS_V4, names::RTP_FLOWS),
            FlowStoreKind::PerCpu => (names::RTP_FLOWS_V4_PERCPU, names::RTP_FLOWS_PERCPU),
        };
        Ok(Self {
            v4: FamilyMap::take(ebpf, v4, store)?,
            v6: FamilyMap::take(ebpf, v6, store)?,
        })
    }

    pub(super) fn get(&self, key: &RtpFlowKey) -> Option<RtpFlowState> {
        match RtpFlowKeyV4::of(key) {
            Some(k) => self.v4.get(&k),
            None => self.v6.get(key),
        }
    }

    pub(super) fn remove(&mut self, key: &RtpFlowKey) -> bool {
        match RtpFlowKeyV4::of(key) {
            Some(k) => self.v4.remove(&k),
            None => self.v6.remove(key),
        }
    }

    /// Every flow of both families.
    pub(super) fn read_all(&mut self) -> Result<Vec<(RtpFlowKey, RtpFlowState)>, LiveError> {
        let mut all: Vec<_> = self
            .v4
            .read_all()?
            .into_iter()
            .map(|(k, v)| (k.widen(), v))
            .collect();
        all.extend(self.v6.read_all()?);
        Ok(all)
    }
}

/// One family's flow map, in the store the programs use.
enum FamilyMap<K: Pod> {
    Shared {
        map: HashMap<MapData, K, RtpFlowState>,
        /// The map's fd for batch reads (`None`: walk entry by entry).
        fd: Option<OwnedFd>,
    },
    /// One value per CPU, merged here ([`RtpFlowState::merge_cpus`]).
    PerCpu(PerCpuHashMap<MapData, K, RtpFlowState>),
}

impl<K: Pod + Default> FamilyMap<K> {
    fn take(ebpf: &mut Ebpf, name: &str, store: FlowStoreKind) -> Result<Self, LiveError> {
        let map = ebpf.take_map(name).ok_or_else(|| missing(name))?;
        Ok(match store {
            FlowStoreKind::Shared => {
                let fd = match &map {
                    Map::LruHashMap(data) | Map::HashMap(data) => {
                        data.fd().as_fd().try_clone_to_owned().ok()
                    }
                    _ => None,
                };
                let map = HashMap::try_from(map)
                    .map_err(|e| LiveError::kernel(format!("opening the flow map {name}"), e))?;
                Self::Shared { map, fd }
            }
            FlowStoreKind::PerCpu => Self::PerCpu(
                PerCpuHashMap::try_from(map)
                    .map_err(|e| LiveError::kernel(format!("opening the flow map {name}"), e))?,
            ),
        })
    }

    fn get(&self, key: &K) -> Option<RtpFlowState> {
        match self {
            Self::Shared { map, .. } => map.get(key, 0).ok(),
            Self::PerCpu(map) => {
                let values = map.get(key, 0).ok()?;
                Some(RtpFlowState::merge_cpus(values.iter()))
            }
        }
    }

    fn remove(&mut self, key: &K) -> bool {
        match self {
            Self::Shared { map, .. } => map.remove(key).is_ok(),
            Self::PerCpu(map) => map.remove(key).is_ok(),
        }
    }

    /// Every entry: in a few batch reads where the kernel has them (5.6+),
    /// else entry by entry.
    fn read_all(&mut self) -> Result<Vec<(K, RtpFlowState)>, LiveError> {
        let err = |e| LiveError::kernel("reading the RTP flow map", e);
        match self {
            Self::Shared { map, fd } => {
                if let Some(f) = fd {
                    match super::super::map_batch::lookup_all(f.as_fd()) {
                        Ok(all) => return Ok(all),
                        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => *fd = None,
                        Err(e) => return Err(LiveError::kernel("reading the RTP flow map", e)),
                    }
                }
                map.iter().map(|entry| entry.map_err(err)).collect()
            }
            Self::PerCpu(map) => map
                .iter()
                .map(|entry| {
                    entry
                        .map(|(k, v)| (k, RtpFlowState::merge_cpus(v.iter())))
                        .map_err(err)
                })
                .collect(),
        }
    }
}
