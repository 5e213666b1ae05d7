//! One stdout shared by several writers (the call flow or JSON records of
//! the core, the JSON-lines span exporter on the async side) without lines
//! of one cutting into lines of the other.

use std::io::{self, BufWriter, Stdout, Write};
use std::sync::{Arc, Mutex};

/// A handle on the shared, buffered stdout. Each handle collects bytes
/// until a newline and hands over whole lines only, so serde's many small
/// writes per record never interleave with another handle's record.
pub struct SharedStdout {
    shared: Arc<Mutex<BufWriter<Stdout>>>,
    pending: Vec<u8>,
}

impl SharedStdout {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Mutex::new(BufWriter::with_capacity(
                64 * 1024,
                io::stdout(),
            ))),
            pending: Vec::new(),
        }
    }

    /// Another handle on the same stdout (its own line buffer).
    pub fn handle(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            pending: Vec::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BufWriter<Stdout>> {
        // A writer that panicked mid-line leaves the buffer usable.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for SharedStdout {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for SharedStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Only the new bytes are searched: serde writes a record in many
        // small pieces, and rescanning the pending line for each was
        // quadratic in the record's length.
        let before = self.pending.len();
        self.pending.extend_from_slice(buf);
        if let Some(at) = buf.iter().rposition(|&b| b == b'\n') {
            let end = before + at + 1;
            self.lock().write_all(&self.pending[..end])?;
            self.pending.drain(..end);
        }
        Ok(buf.len())
    }

    /// Hands over a partial line too, then flushes stdout.
    fn flush(&mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        let mut out = self.lock();
        out.write_all(&rest)?;
        out.flush()
    }
}
