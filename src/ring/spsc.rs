//! One single-producer/single-consumer byte ring inside a [`SharedMapping`].
//!
//! Indices are free-running u64 byte counts: `tail` (producer position) and
//! `head` (consumer position), each written by one side only. The bytes in
//! `[head, tail)` are records, at offset `index & (capacity - 1)` of the
//! data region; a record may wrap around the end (copied in two pieces).
//!
//! Each side keeps its own index in private memory and only *publishes* it;
//! the peer's index is the one word it loads, once per operation, and
//! checks (`tail - head <= capacity`) before use.

use std::sync::atomic::Ordering;

use super::layout::{RecordHeader, RECORD_HEADER};
use super::RingError;
use crate::sys::shm::SharedMapping;

/// Offsets of one ring's data and indices within the mapping.
#[derive(Debug, Clone, Copy)]
pub struct RingRegion {
    pub data: usize,
    pub capacity: usize,
    pub head: usize,
    pub tail: usize,
}

impl RingRegion {
    /// Copy `bytes` into the ring at free-running position `pos`.
    fn write_at(&self, map: &SharedMapping, pos: u64, bytes: &[u8]) -> Result<(), RingError> {
        let off = (pos as usize) & (self.capacity - 1);
        let first = bytes.len().min(self.capacity - off);
        map.copy_in(self.data + off, &bytes[..first])
            .map_err(layout_bug)?;
        map.copy_in(self.data, &bytes[first..]).map_err(layout_bug)
    }

    /// Copy `out.len()` bytes out of the ring from free-running position `pos`.
    fn read_at(&self, map: &SharedMapping, pos: u64, out: &mut [u8]) -> Result<(), RingError> {
        let off = (pos as usize) & (self.capacity - 1);
        let first = out.len().min(self.capacity - off);
        let (a, b) = out.split_at_mut(first);
        map.copy_out(self.data + off, a).map_err(layout_bug)?;
        map.copy_out(self.data, b).map_err(layout_bug)
    }

    /// The largest body a record in this ring can carry.
    pub fn max_body(&self) -> usize {
        self.capacity - RECORD_HEADER
    }
}

/// Offsets are validated when a ring is opened, so this is unreachable with
/// a consistent layout; it still becomes an error, not a panic.
fn layout_bug(err: crate::sys::shm::OutOfBounds) -> RingError {
    RingError::Violation {
        reason: format!("ring access outside the mapping: {err}"),
    }
}

/// The writing side of a ring.
#[derive(Debug)]
pub struct Producer {
    region: RingRegion,
    /// Our tail; the published copy in the mapping is only ever written.
    tail: u64,
}

impl Producer {
    pub fn new(region: RingRegion, tail: u64) -> Producer {
        Producer { region, tail }
    }

    pub fn region(&self) -> &RingRegion {
        &self.region
    }

    /// Append one record whose body is the concatenation of `parts`.
    /// `Full` when the consumer has not yet freed enough room (retry after
    /// it drains); `TooLarge` when the record can never fit.
    pub fn push(
        &mut self,
        map: &SharedMapping,
        kind: u16,
        id: u64,
        parts: &[&[u8]],
    ) -> Result<(), RingError> {
        let body: usize = parts.iter().map(|p| p.len()).sum();
        let limit = self.region.max_body();
        if body > limit {
            return Err(RingError::TooLarge { len: body, limit });
        }
        let needed = (RECORD_HEADER + body) as u64;
        // Acquire pairs with the consumer's Release store of head in
        // `Consumer::pop`: once we see its new head, its copy-out of the
        // bytes before head is complete and we may overwrite them.
        let head = map.atomic_u64(self.region.head).load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        let capacity = self.region.capacity as u64;
        if used > capacity {
            return Err(RingError::Violation {
                reason: format!(
                    "consumer head {head} is {used} bytes behind tail {} (capacity {capacity})",
                    self.tail
                ),
            });
        }
        let free = capacity - used;
        if needed > free {
            return Err(RingError::Full {
                needed: needed as usize,
                free: free as usize,
            });
        }
        let header = RecordHeader {
            len: body as u32,
            kind,
            flags: 0,
            id,
        };
        let mut pos = self.tail;
        self.region.write_at(map, pos, &header.encode())?;
        pos += RECORD_HEADER as u64;
        for part in parts {
            self.region.write_at(map, pos, part)?;
            pos += part.len() as u64;
        }
        self.tail = pos;
        // Release pairs with the consumer's Acquire load of tail in
        // `Consumer::pop`: the record bytes written above are visible to it
        // before the tail that covers them.
        map.atomic_u64(self.region.tail)
            .store(self.tail, Ordering::Release);
        Ok(())
    }
}

/// One record copied out of a ring. `kind` is not validated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: u16,
    pub flags: u16,
    pub id: u64,
    pub body: Vec<u8>,
}

/// The reading side of a ring.
#[derive(Debug)]
pub struct Consumer {
    region: RingRegion,
    /// Our head; the published copy in the mapping is only ever written.
    head: u64,
}

impl Consumer {
    pub fn new(region: RingRegion, head: u64) -> Consumer {
        Consumer { region, head }
    }

    pub fn region(&self) -> &RingRegion {
        &self.region
    }

    /// Take the next record, if any, treating the producer as hostile:
    /// its tail is loaded once and bounded by the capacity, the record's
    /// length is checked against `limit` and against what the tail covers,
    /// and the bytes are copied out before anyone looks at them.
    pub fn pop(&mut self, map: &SharedMapping, limit: usize) -> Result<Option<Record>, RingError> {
        // Acquire pairs with the producer's Release store of tail in
        // `Producer::push`: the record bytes up to this tail are visible.
        let tail = map.atomic_u64(self.region.tail).load(Ordering::Acquire);
        let available = tail.wrapping_sub(self.head);
        let capacity = self.region.capacity as u64;
        if available > capacity {
            return Err(RingError::Violation {
                reason: format!(
                    "producer tail {tail} is {available} bytes past head {} (capacity {capacity})",
                    self.head
                ),
            });
        }
        if available == 0 {
            return Ok(None);
        }
        if available < RECORD_HEADER as u64 {
            return Err(RingError::Violation {
                reason: format!(
                    "truncated record: {available} bytes published, header is {RECORD_HEADER}"
                ),
            });
        }
        let mut raw = [0u8; RECORD_HEADER];
        self.region.read_at(map, self.head, &mut raw)?;
        let header = RecordHeader::decode(&raw);
        let len = header.len as usize;
        if len > limit {
            return Err(RingError::Violation {
                reason: format!("record length {len} is over the limit {limit}"),
            });
        }
        if (RECORD_HEADER + len) as u64 > available {
            return Err(RingError::Violation {
                reason: format!("record length {len} runs past the {available} published bytes"),
            });
        }
        let mut body = vec![0u8; len];
        self.region
            .read_at(map, self.head + RECORD_HEADER as u64, &mut body)?;
        self.head += (RECORD_HEADER + len) as u64;
        // Release pairs with the producer's Acquire load of head in
        // `Producer::push`: our copy-out above is complete before the
        // producer may reuse these bytes.
        map.atomic_u64(self.region.head)
            .store(self.head, Ordering::Release);
        Ok(Some(Record {
            kind: header.kind,
            flags: header.flags,
            id: header.id,
            body,
        }))
    }
}
