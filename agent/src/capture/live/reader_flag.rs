//! The flag through which the ring's reader tells the kernel programs
//! whether it waits for a wake-up (see `sipscope_common::READER_WAITING`).
//!
//! The programs commit every record without a wake-up: the kernel's
//! default wakes the reader for the first record after it caught up, and
//! that irq_work cost about 10 µs each in a KVM guest (once per reader
//! cycle, so tens to hundreds of nanoseconds per message under load). The
//! reader therefore drains on its own schedule while it is busy, and only
//! before blocking announces that it waits: then the next program to
//! commit a record clears the flag and wakes it. So a lone message at idle
//! still wakes the reader at once, and an idle reader wakes no more often
//! than before.

use aya::maps::{Array, MapData};
use sipscope_common::{READER_WAITING, names};

use super::{
    error::LiveError,
    load::{LoadedObject, missing},
};

pub(super) struct ReaderFlag {
    map: Array<MapData, u32>,
    /// What userspace last wrote (the kernel may have cleared it since,
    /// which only makes a withdrawal redundant).
    announced: bool,
}

impl ReaderFlag {
    pub(super) fn take(object: &mut LoadedObject) -> Result<Self, LiveError> {
        let map = object
            .ebpf
            .take_map(names::EVENTS_READER)
            .ok_or_else(|| missing(names::EVENTS_READER))?;
        let map = Array::try_from(map)
            .map_err(|e| LiveError::kernel("opening the ring reader flag", e))?;
        Ok(Self {
            map,
            announced: false,
        })
    }

    /// Tells the programs the reader is about to block: the caller must
    /// drain the ring once more afterwards (a record committed before the
    /// programs could see the flag woke nobody).
    pub(super) fn announce(&mut self) -> Result<(), LiveError> {
        if !self.announced {
            self.set(READER_WAITING)?;
            self.announced = true;
        }
        // The flag's store before the drain's loads (a store may otherwise
        // wait in this CPU's store buffer while the drain reads an old
        // producer position, and a program reads the old flag: both miss).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The reader reads on its own schedule again: no wake-ups needed.
    pub(super) fn withdraw(&mut self) -> Result<(), LiveError> {
        if self.announced {
            self.set(0)?;
            self.announced = false;
        }
        Ok(())
    }

    /// A wake-up cleared the flag in the kernel: announce again before
    /// the next wait.
    pub(super) fn woken(&mut self) {
        self.announced = false;
    }

    fn set(&mut self, value: u32) -> Result<(), LiveError> {
        self.map
            .set(0, value, 0)
            .map_err(|e| LiveError::kernel("setting the ring reader flag", e))
    }
}
