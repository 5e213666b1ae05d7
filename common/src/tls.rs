//! Types of the TLS plaintext tracer: uprobes on the TLS library of PBX
//! processes (OpenSSL's `SSL_read`/`SSL_write` and their `_ex` variants)
//! copy the plaintext at the library boundary, and a `sys_enter` raw
//! tracepoint tells which socket a TLS session reads from and writes to
//! (kamailio's tls module feeds OpenSSL through memory BIOs, so the `SSL`
//! object itself never learns its fd).

/// Most plaintext bytes copied per `SSL_read`/`SSL_write` call; longer
/// calls are copied truncated, flagged and counted.
pub const MAX_TLS_COPY: usize = 8192;

/// Default size of the TLS plaintext ring buffer.
pub const DEFAULT_TLS_RING_SIZE: u32 = 1 << 20;

/// Threads with an `SSL_*` call in flight (entry seen, return pending).
pub const MAX_TLS_CALLS: u32 = 4096;

/// Processes whose TLS calls are copied (userspace keeps it current).
pub const MAX_TLS_PROCESSES: u32 = 4096;

/// [`TlsHeader::kind`]: plaintext the process received (`SSL_read*`).
pub const TLS_KIND_READ: u8 = 0;
/// [`TlsHeader::kind`]: plaintext the process sent (`SSL_write*`).
pub const TLS_KIND_WRITE: u8 = 1;
/// [`TlsHeader::kind`]: the first socket write after an `SSL_write*` on
/// the thread: `fd` is the socket the session `ssl` writes to. No data.
pub const TLS_KIND_BIND: u8 = 2;
/// [`TlsHeader::kind`]: `SSL_free(ssl)`: forget the session. No data.
pub const TLS_KIND_FREE: u8 = 3;

/// [`TlsHeader::flags`]: the call moved more than [`MAX_TLS_COPY`] bytes.
pub const TLS_FLAG_TRUNCATED: u8 = 1;

/// `fd` when the thread has not read from any socket yet.
pub const TLS_NO_FD: i32 = -1;

/// One ring record; `len` plaintext bytes follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsHeader {
    /// `bpf_ktime_get_ns()` when the call returned.
    pub ktime_ns: u64,
    /// The `SSL *` (the TLS session's identity inside its process).
    pub ssl: u64,
    /// Process (thread group) id.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Read: the socket the thread last read from (the ciphertext's
    /// source). Bind: the socket written to. Else [`TLS_NO_FD`].
    pub fd: i32,
    /// Bytes following this header (`<= MAX_TLS_COPY`).
    pub len: u32,
    /// Plaintext bytes the call moved.
    pub orig_len: u32,
    /// `TLS_KIND_*`.
    pub kind: u8,
    /// `TLS_FLAG_*`.
    pub flags: u8,
    pub _pad: [u8; 2],
}

pub const TLS_HEADER_LEN: usize = core::mem::size_of::<TlsHeader>();
const _: () = assert!(TLS_HEADER_LEN == 40);

/// Per-CPU scratch a record is assembled in.
pub const TLS_SCRATCH_LEN: usize = TLS_HEADER_LEN + MAX_TLS_COPY;

/// What a uprobe saved at function entry for its return probe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsCall {
    pub ssl: u64,
    /// The plaintext buffer (user address).
    pub buf: u64,
    /// `_ex` variants: where the byte count is written (`size_t *`); 0
    /// for `SSL_read`/`SSL_write`, whose return value is the count.
    pub len_ptr: u64,
}
const _: () = assert!(core::mem::size_of::<TlsCall>() == 24);

crate::counter::counter_slots! {
    /// Indices into the per-CPU TLS counter array.
    pub enum TlsCounter {
        /// `SSL_read*`/`SSL_write*` returns of probed processes.
        Calls = 0 => "calls",
        /// Records with plaintext written to the ring.
        Copied = 1 => "copied",
        /// Calls that moved more than `MAX_TLS_COPY` bytes (copied truncated).
        Truncated = 2 => "truncated",
        /// Records lost to a full ring buffer.
        RingbufFull = 3 => "ringbuf_full",
        /// Plaintext the kernel could not read from the process.
        ReadFailed = 4 => "read_failed",
        /// Entry not remembered (the in-flight call table was full): the
        /// return could not be copied.
        CallsTableFull = 5 => "calls_table_full",
        /// Socket writes that named a session's socket.
        Binds = 6 => "binds",
    }
}

const _: () = assert!(TlsCounter::COUNT == 7);
