//! The records the eBPF programs write into their ring buffers
//! ([`CaptureHeader`], [`DropHeader`], each followed by `cap_len` packet
//! bytes) and the kernel's direction byte, read back in one place.
//! Addresses and ports are read by [`sipscope_common::Endpoints`].

use sipscope_common::{CaptureHeader, DropHeader, TlsHeader};

use crate::packet::Direction;

/// A ring-buffer record: a plain `#[repr(C)]` header followed by
/// `cap_len()` bytes.
pub(crate) trait RingRecord: aya::Pod {
    fn cap_len(&self) -> u32;
}

impl RingRecord for CaptureHeader {
    fn cap_len(&self) -> u32 {
        self.cap_len
    }
}

impl RingRecord for TlsHeader {
    fn cap_len(&self) -> u32 {
        self.len
    }
}

impl RingRecord for DropHeader {
    fn cap_len(&self) -> u32 {
        self.cap_len
    }
}

/// Splits one ring entry into its header and the `cap_len` bytes after
/// it; `None` when the entry is too short for either.
pub(crate) fn split<H: RingRecord>(bytes: &[u8]) -> Option<(H, &[u8])> {
    let len = size_of::<H>();
    if bytes.len() < len {
        return None;
    }
    // SAFETY: H is Pod (plain #[repr(C)] data, any bit pattern is valid);
    // the length was checked above.
    let header: H = unsafe { bytes.as_ptr().cast::<H>().read_unaligned() };
    let data = bytes.get(len..len + header.cap_len() as usize)?;
    Some((header, data))
}

/// The kernel's direction byte ([`sipscope_common::Direction`] as u8).
pub(crate) fn direction(raw: u8) -> Direction {
    match sipscope_common::Direction::from_u8(raw) {
        Some(sipscope_common::Direction::Ingress) => Direction::Ingress,
        Some(sipscope_common::Direction::Egress) => Direction::Egress,
        None => Direction::Unknown,
    }
}

/// The kernel's name for `direction`; `None` for [`Direction::Unknown`].
pub(crate) fn kernel_direction(direction: Direction) -> Option<sipscope_common::Direction> {
    match direction {
        Direction::Ingress => Some(sipscope_common::Direction::Ingress),
        Direction::Egress => Some(sipscope_common::Direction::Egress),
        Direction::Unknown => None,
    }
}

/// UDP endpoints from `src` to `dst` (`"addr:port"`), for tests.
#[cfg(test)]
pub(crate) fn endpoints(
    src: &str,
    dst: &str,
    direction: sipscope_common::Direction,
) -> sipscope_common::Endpoints {
    let (src, dst) = (src.parse().unwrap(), dst.parse().unwrap());
    sipscope_common::Endpoints::new(src, dst, direction, sipscope_common::Transport::Udp).unwrap()
}

/// The bytes of a ring entry: `header` then `data` (tests build kernel
/// output with it).
#[cfg(test)]
pub(crate) fn encode<H: RingRecord>(header: &H, data: &[u8]) -> Vec<u8> {
    // SAFETY: H is Pod: plain #[repr(C)] data without padding holes.
    let raw = unsafe {
        std::slice::from_raw_parts(std::ptr::from_ref(header).cast::<u8>(), size_of::<H>())
    };
    [raw, data].concat()
}

#[cfg(test)]
mod tests {
    use sipscope_common::{Direction::Ingress, Endpoints, RtpFlowKey, Transport};

    use super::*;

    #[test]
    fn endpoints_and_flow_keys_read_back_what_was_written_in_both_families() {
        for (src, dst) in [
            ("192.0.2.1:5060", "198.51.100.2:5080"),
            ("[2001:db8::1]:5060", "[2001:db8::2]:10000"),
        ] {
            let e = endpoints(src, dst, Ingress);
            assert_eq!(
                (e.src().to_string(), e.dst().to_string()),
                (src.into(), dst.into())
            );
            let key = RtpFlowKey::of(&e, 3);
            assert_eq!((key.src(), key.dst(), key.ifindex), (e.src(), e.dst(), 3));
            assert_eq!(RtpFlowKey::new(e.src(), e.dst(), 3, Ingress), Some(key));
        }
        let mixed = (
            "192.0.2.1:1".parse().unwrap(),
            "[2001:db8::2]:2".parse().unwrap(),
        );
        assert_eq!(
            Endpoints::new(mixed.0, mixed.1, Ingress, Transport::Udp),
            None
        );
    }

    #[test]
    fn a_direction_byte_the_kernel_never_writes_reads_as_unknown() {
        assert_eq!(direction(0), Direction::Ingress);
        assert_eq!(direction(1), Direction::Egress);
        assert_eq!(direction(7), Direction::Unknown);
        assert_eq!(kernel_direction(Direction::Unknown), None);
        assert_eq!(
            kernel_direction(Direction::Egress),
            Some(sipscope_common::Direction::Egress)
        );
    }
}
