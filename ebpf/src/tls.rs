//! The TLS plaintext tracer: uprobes on the TLS library of PBX processes.
//!
//! `SSL_read`/`SSL_write` (and `_ex`) entry saves the arguments per
//! thread; the return probe copies the plaintext the call moved (the
//! return value, or `*readbytes`/`*written` for `_ex`) into `TLS_EVENTS`.
//! Userspace attaches the probes per process; `TLS_PROCESSES` (the same
//! processes) is checked again here because a child forked before its
//! own probes exist inherits the parent's breakpoints until it hits one,
//! and because the `sys_enter` tracepoint sees every thread on the host.
//!
//! Which connection a session belongs to comes from the thread's socket
//! syscalls (`sys_enter`): the fd it last read is where `SSL_read`'s
//! ciphertext came from, whether OpenSSL read it itself (direct-fd users)
//! or the PBX read it into a memory BIO first (kamailio); the first socket
//! write after `SSL_write` entry is where the ciphertext went (a `BIND`
//! record). Userspace turns (process, fd) into addresses.
//!
//! Observe only: the probes never change an argument or a return value,
//! and every loss is a counter.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::bpf_probe_read_user as probe_read_user_raw,
    },
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext},
};
use sipscope_common::{
    DEFAULT_TLS_RING_SIZE, MAX_TLS_CALLS, MAX_TLS_COPY, MAX_TLS_PROCESSES, TLS_FLAG_TRUNCATED,
    TLS_HEADER_LEN, TLS_KIND_BIND, TLS_KIND_FREE, TLS_NO_FD, TLS_SCRATCH_LEN, TlsCall, TlsCounter,
    TlsHeader,
};

use crate::{frame::copy_len, maps::increment};

/// `TlsHeader` + plaintext records.
#[map]
pub static TLS_EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_TLS_RING_SIZE, 0);

/// Counters indexed by `TlsCounter`.
#[map]
pub static TLS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TlsCounter::COUNT, 0);

/// Probed processes (tgid -> 1), kept current by userspace.
#[map]
pub static TLS_PROCESSES: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TLS_PROCESSES, 0);

/// Arguments of the `SSL_*` call in flight, per thread (pid_tgid).
#[map]
static TLS_CALLS: HashMap<u64, TlsCall> = HashMap::with_max_entries(MAX_TLS_CALLS, 0);

/// Per thread of a probed process: the socket it last read from. LRU:
/// threads that exit leave entries behind, evicted by themselves.
#[map]
static TLS_LAST_READ: LruHashMap<u64, i32> = LruHashMap::with_max_entries(4 * MAX_TLS_CALLS, 0);

/// Per thread: the session whose `SSL_write*` has not reached a socket yet.
#[map]
static TLS_PENDING_WRITE: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_TLS_CALLS, 0);

/// Per-CPU scratch a record is assembled in (the ring's reserve wants a
/// constant size; `output` copies only what was filled).
#[map]
static TLS_SCRATCH: PerCpuArray<[u8; TLS_SCRATCH_LEN]> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn count(counter: TlsCounter) {
    increment(&TLS_COUNTERS, counter);
}

#[inline(always)]
fn probed(pid_tgid: u64) -> bool {
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: read-only lookup of a plain value.
    unsafe { TLS_PROCESSES.get(tgid) }.is_some()
}

/// Entry of `SSL_read(ssl, buf, num)` / `SSL_write(ssl, buf, num)`
/// (`len_ptr` 0) or of their `_ex` variants (`len_ptr` = 4th argument).
#[inline(always)]
pub fn on_entry(ctx: &ProbeContext, ex: bool) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !probed(pid_tgid) {
        return;
    }
    let (Some(ssl), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return;
    };
    let len_ptr = if ex {
        ctx.arg::<u64>(3).unwrap_or(0)
    } else {
        0
    };
    let call = TlsCall { ssl, buf, len_ptr };
    if TLS_CALLS.insert(pid_tgid, call, 0).is_err() {
        count(TlsCounter::CallsTableFull);
    }
    // The ciphertext of a write goes out on the next socket write (inside
    // the call for direct-fd users, after it for memory-BIO users). Set
    // for reads too: harmless, the bind only names the session's socket.
    let _ = TLS_PENDING_WRITE.insert(pid_tgid, ssl, 0);
}

/// Return of `SSL_read*` (`kind` READ) or `SSL_write*` (`kind` WRITE).
#[inline(always)]
pub fn on_return(ctx: &RetProbeContext, kind: u8) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { TLS_CALLS.get(pid_tgid) }).copied() else {
        return;
    };
    let _ = TLS_CALLS.remove(pid_tgid);
    count(TlsCounter::Calls);
    let ret: i64 = ctx.ret::<i64>();
    let moved = if call.len_ptr == 0 {
        // int: > 0 is the byte count.
        let n = ret as i32;
        if n <= 0 {
            return;
        }
        n as u64
    } else {
        // `_ex`: 1 on success, the count in *len_ptr (size_t).
        if ret as i32 != 1 {
            return;
        }
        // SAFETY: a user address the library just wrote; a bad one fails.
        match unsafe { bpf_probe_read_user(call.len_ptr as *const u64) } {
            Ok(n) if n > 0 => n,
            _ => return,
        }
    };
    let fd = if kind == sipscope_common::TLS_KIND_READ {
        // SAFETY: read-only lookup of a plain value.
        unsafe { TLS_LAST_READ.get(pid_tgid) }
            .copied()
            .unwrap_or(TLS_NO_FD)
    } else {
        TLS_NO_FD
    };
    emit(pid_tgid, &call, kind, fd, moved);
}

#[inline(always)]
fn emit(pid_tgid: u64, call: &TlsCall, kind: u8, fd: i32, moved: u64) {
    let Some(scratch) = TLS_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let mut flags = 0;
    let mut want = moved;
    if want > MAX_TLS_COPY as u64 {
        want = MAX_TLS_COPY as u64;
        flags |= TLS_FLAG_TRUNCATED;
        count(TlsCounter::Truncated);
    }
    let Some(len) = copy_len::<MAX_TLS_COPY>(want as u32) else {
        return;
    };
    // SAFETY: scratch is TLS_SCRATCH_LEN bytes: the header, then at most
    // MAX_TLS_COPY bytes (len is bounded by copy_len).
    unsafe {
        let base = scratch.cast::<u8>();
        let rc = probe_read_user_raw(
            base.add(TLS_HEADER_LEN).cast(),
            len,
            call.buf as *const core::ffi::c_void,
        );
        if rc != 0 {
            count(TlsCounter::ReadFailed);
            return;
        }
        base.cast::<TlsHeader>().write_unaligned(TlsHeader {
            ktime_ns: bpf_ktime_get_ns(),
            ssl: call.ssl,
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            fd,
            len,
            orig_len: moved.min(u64::from(u32::MAX)) as u32,
            kind,
            flags,
            _pad: [0; 2],
        });
        let bytes = core::slice::from_raw_parts(base, TLS_HEADER_LEN + len as usize);
        if TLS_EVENTS.output::<[u8]>(bytes, 0).is_err() {
            count(TlsCounter::RingbufFull);
            return;
        }
    }
    count(TlsCounter::Copied);
}

/// A header-only record (`BIND`, `FREE`).
#[inline(always)]
fn notice(pid_tgid: u64, ssl: u64, kind: u8, fd: i32) {
    let header = TlsHeader {
        // SAFETY: no preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        ssl,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        fd,
        len: 0,
        orig_len: 0,
        kind,
        flags: 0,
        _pad: [0; 2],
    };
    if TLS_EVENTS.output::<TlsHeader>(&header, 0).is_err() {
        count(TlsCounter::RingbufFull);
    }
}

/// `SSL_free(ssl)`: userspace forgets the session.
#[inline(always)]
pub fn on_free(ctx: &ProbeContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !probed(pid_tgid) {
        return;
    }
    if let Some(ssl) = ctx.arg::<u64>(0) {
        notice(pid_tgid, ssl, TLS_KIND_FREE, TLS_NO_FD);
    }
}

// x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
const SYS_READ: u64 = 0;
const SYS_WRITE: u64 = 1;
const SYS_READV: u64 = 19;
const SYS_WRITEV: u64 = 20;
const SYS_SENDTO: u64 = 44;
const SYS_RECVFROM: u64 = 45;
const SYS_SENDMSG: u64 = 46;
const SYS_RECVMSG: u64 = 47;
/// `offsetof(struct pt_regs, di)` on x86_64: the first syscall argument.
const PT_REGS_DI: usize = 14 * 8;

/// `sys_enter(regs, id)`: remembers which fd a probed thread reads, and
/// names the socket of a pending `SSL_write`.
#[inline(always)]
pub fn on_sys_enter(ctx: &RawTracePointContext) {
    let id: u64 = ctx.arg(1);
    let write = match id {
        SYS_READ | SYS_READV | SYS_RECVFROM | SYS_RECVMSG => false,
        SYS_WRITE | SYS_WRITEV | SYS_SENDTO | SYS_SENDMSG => true,
        _ => return,
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if !probed(pid_tgid) {
        return;
    }
    let regs: *const u8 = ctx.arg(0);
    // SAFETY: regs is the syscall's pt_regs; a failed read is an error value.
    let Ok(fd) = (unsafe { bpf_probe_read_kernel(regs.wrapping_add(PT_REGS_DI).cast::<u64>()) })
    else {
        return;
    };
    let fd = fd as i32;
    if !write {
        let _ = TLS_LAST_READ.insert(pid_tgid, fd, 0);
        return;
    }
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(ssl) = unsafe { TLS_PENDING_WRITE.get(pid_tgid) }.copied() {
        let _ = TLS_PENDING_WRITE.remove(pid_tgid);
        count(TlsCounter::Binds);
        notice(pid_tgid, ssl, TLS_KIND_BIND, fd);
    }
}
