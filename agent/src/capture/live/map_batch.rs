//! Reading a whole BPF hash map in a few system calls
//! (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6+) instead of two per entry
//! (`BPF_MAP_GET_NEXT_KEY` + `BPF_MAP_LOOKUP_ELEM`, which is all aya 0.14
//! offers). The RTP poller reads thousands of flows every second while
//! calls are up; this keeps that walk off the agent's CPU profile.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr`'s `batch` member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the hash map `fd` whose key and value are the plain-data
/// `K` and `V` (sizes as the map was created with). `Err` with
/// `ErrorKind::Unsupported` when the kernel has no batch operations, so the
/// caller can fall back to the entry-by-entry walk.
pub(super) fn lookup_all<K: Copy + Default, V: Copy + Default>(
    fd: BorrowedFd<'_>,
) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut chunk = 1024usize;
    // The hash map's batch token is its bucket index (a u32).
    let (mut token, mut next) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut keys = vec![K::default(); chunk];
        let mut values = vec![V::default(); chunk];
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_ref(&token) as u64
            },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at a valid batch attribute of the size
        // passed; keys/values hold `count` elements of the map's sizes.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::from_mut(&mut attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (r < 0).then(io::Error::last_os_error);
        let n = (attr.count as usize).min(chunk);
        out.extend(keys.into_iter().zip(values).take(n));
        match err.and_then(|e| e.raw_os_error()) {
            None => {}
            // The end of the map (entries of this last call were copied).
            Some(libc::ENOENT) => return Ok(out),
            // A bucket holds more entries than fit: retry it bigger.
            Some(libc::ENOSPC) if n == 0 && chunk < 1 << 20 => {
                chunk *= 4;
                continue;
            }
            Some(libc::EINVAL | libc::ENOTSUP | libc::EOPNOTSUPP) if first => {
                return Err(io::ErrorKind::Unsupported.into());
            }
            Some(e) => return Err(io::Error::from_raw_os_error(e)),
        }
        token = next;
        first = false;
    }
}
