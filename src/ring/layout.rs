//! The byte layout of a ring memfd, shared with runtimes written in any
//! language (runtimes/README.md documents the same numbers; the asserts at
//! the bottom keep the two from drifting).
//!
//! ```text
//! 0            header page (HEADER_SIZE bytes): Header below
//! 4096         request ring data  (daemon -> runtime), request_capacity bytes
//! 4096+reqcap  response ring data (runtime -> daemon), response_capacity bytes
//! ```
//!
//! All integers are little-endian (the only byte order sprout builds for).

use std::mem::{offset_of, size_of};

/// `b"SPRTRING"` read as a little-endian u64.
pub const MAGIC: [u8; 8] = *b"SPRTRING";
/// Bumped on any incompatible change of this file.
pub const LAYOUT_VERSION: u32 = 1;
/// Bytes before the first ring's data; one page.
pub const HEADER_SIZE: usize = 4096;
/// `[u32 len][u16 type][u16 flags][u64 id]` before every record's body.
pub const RECORD_HEADER: usize = 16;
/// Smallest capacity of one ring (keeps the data regions page-aligned).
pub const MIN_CAPACITY: usize = 4096;
/// Room beyond `max_message` in each ring: an INVOKE's meta JSON, and the
/// READY/INIT_OK records a runtime may push before the daemon drained them.
pub const SLACK: usize = 4096;

/// Message types, the `type` field of a record.
pub mod kind {
    /// Runtime → daemon: the runtime is up and its ring mapped (body empty).
    pub const READY: u16 = 1;
    /// Runtime → daemon: the function loaded (body empty).
    pub const INIT_OK: u16 = 2;
    /// Runtime → daemon: loading the function failed; body is error JSON.
    pub const INIT_ERROR: u16 = 3;
    /// Runtime → daemon: the invocation `id` succeeded; body is the result.
    pub const RESULT: u16 = 4;
    /// Runtime → daemon: the invocation `id` failed; body is error JSON.
    pub const ERROR: u16 = 5;
    /// Runtime → daemon: call number `id` (the runtime
    /// picks it) invokes another function; body is
    /// `[u32 meta_len][meta JSON {"function", "async"}][payload]`.
    pub const CALL: u16 = 6;
    /// Daemon → runtime: run invocation `id`; body is
    /// `[u32 meta_len][meta JSON][payload]`.
    pub const INVOKE: u16 = 16;
    /// Daemon → runtime: the outcome of CALL `id`; body is
    /// `[u32 meta_len][meta JSON {"ok", "invocation_id", "error"}][result]`.
    pub const CALL_RESULT: u16 = 17;
}

/// One 64-bit index alone on a 128-byte line (two cache lines, so the
/// adjacent-line prefetcher does not couple it with its neighbour either).
#[repr(C, align(128))]
pub struct CachePadded {
    pub value: u64,
}

/// Where one ring's data lives in the memfd.
#[repr(C)]
pub struct RegionDesc {
    /// Byte offset of the data from the start of the memfd.
    pub offset: u64,
    /// Size of the data in bytes; a power of two.
    pub capacity: u64,
}

/// The header page. Written once by the daemon before the runtime exists;
/// indices are then the only words that change. Never read in place by the
/// daemon: it keeps its own copy of every field it needs.
#[repr(C)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    pub header_size: u32,
    pub request: RegionDesc,
    pub response: RegionDesc,
    /// Consumer position of the request ring, written by the runtime.
    pub request_head: CachePadded,
    /// Producer position of the request ring, written by the daemon.
    pub request_tail: CachePadded,
    /// Consumer position of the response ring, written by the daemon.
    pub response_head: CachePadded,
    /// Producer position of the response ring, written by the runtime.
    pub response_tail: CachePadded,
}

pub const OFF_MAGIC: usize = offset_of!(Header, magic);
pub const OFF_VERSION: usize = offset_of!(Header, version);
pub const OFF_HEADER_SIZE: usize = offset_of!(Header, header_size);
pub const OFF_REQUEST: usize = offset_of!(Header, request);
pub const OFF_RESPONSE: usize = offset_of!(Header, response);
pub const OFF_REQUEST_HEAD: usize = offset_of!(Header, request_head);
pub const OFF_REQUEST_TAIL: usize = offset_of!(Header, request_tail);
pub const OFF_RESPONSE_HEAD: usize = offset_of!(Header, response_head);
pub const OFF_RESPONSE_TAIL: usize = offset_of!(Header, response_tail);
/// The fixed fields before the indices (magic .. response.capacity).
pub const FIXED_FIELDS: usize = 48;

// The documented layout (runtimes/README.md); a change here is a new
// LAYOUT_VERSION and a README update.
const _: () = {
    assert!(OFF_MAGIC == 0);
    assert!(OFF_VERSION == 8);
    assert!(OFF_HEADER_SIZE == 12);
    assert!(OFF_REQUEST == 16);
    assert!(OFF_RESPONSE == 32);
    assert!(OFF_REQUEST_HEAD == 128);
    assert!(OFF_REQUEST_TAIL == 256);
    assert!(OFF_RESPONSE_HEAD == 384);
    assert!(OFF_RESPONSE_TAIL == 512);
    assert!(size_of::<Header>() == 640);
    assert!(size_of::<Header>() <= HEADER_SIZE);
    assert!(cfg!(target_endian = "little"));
};

/// Capacity of each ring for a largest message body of `max_message` bytes.
pub fn capacity_for(max_message: usize) -> Option<usize> {
    max_message
        .checked_add(RECORD_HEADER + SLACK)?
        .max(MIN_CAPACITY)
        .checked_next_power_of_two()
}

/// The header's fixed fields as bytes (the indices start at zero, which a
/// fresh memfd already is).
pub fn encode_fixed(request_capacity: u64, response_capacity: u64) -> [u8; FIXED_FIELDS] {
    let mut out = [0u8; FIXED_FIELDS];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    out[16..24].copy_from_slice(&(HEADER_SIZE as u64).to_le_bytes());
    out[24..32].copy_from_slice(&request_capacity.to_le_bytes());
    out[32..40].copy_from_slice(&(HEADER_SIZE as u64 + request_capacity).to_le_bytes());
    out[40..48].copy_from_slice(&response_capacity.to_le_bytes());
    out
}

/// Where the two rings are, as read back (by a runtime) from a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regions {
    pub request_offset: usize,
    pub request_capacity: usize,
    pub response_offset: usize,
    pub response_capacity: usize,
}

/// Validate a header's fixed fields against the size of the memfd.
pub fn decode_fixed(bytes: &[u8; FIXED_FIELDS], file_size: usize) -> Result<Regions, String> {
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    if bytes[0..8] != MAGIC {
        return Err(format!("bad magic {:02x?}", &bytes[0..8]));
    }
    let version = u32_at(8);
    if version != LAYOUT_VERSION {
        return Err(format!(
            "layout version {version}, this side speaks {LAYOUT_VERSION}"
        ));
    }
    let header_size = u32_at(12);
    if header_size as usize != HEADER_SIZE {
        return Err(format!("header size {header_size}, expected {HEADER_SIZE}"));
    }
    let as_usize = |v: u64| usize::try_from(v).map_err(|_| format!("field {v} overflows"));
    let regions = Regions {
        request_offset: as_usize(u64_at(16))?,
        request_capacity: as_usize(u64_at(24))?,
        response_offset: as_usize(u64_at(32))?,
        response_capacity: as_usize(u64_at(40))?,
    };
    for (name, offset, capacity) in [
        ("request", regions.request_offset, regions.request_capacity),
        (
            "response",
            regions.response_offset,
            regions.response_capacity,
        ),
    ] {
        if !capacity.is_power_of_two() || capacity <= RECORD_HEADER {
            return Err(format!(
                "{name} capacity {capacity} is not a power of two above {RECORD_HEADER}"
            ));
        }
        if offset < HEADER_SIZE
            || offset
                .checked_add(capacity)
                .is_none_or(|end| end > file_size)
        {
            return Err(format!(
                "{name} region {offset}+{capacity} is outside the header page..{file_size}"
            ));
        }
    }
    let (a, b) = (regions.request_offset, regions.response_offset);
    if a < b + regions.response_capacity && b < a + regions.request_capacity {
        return Err("request and response regions overlap".into());
    }
    Ok(regions)
}

/// A record header as it sits in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub len: u32,
    pub kind: u16,
    pub flags: u16,
    pub id: u64,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER] {
        let mut out = [0u8; RECORD_HEADER];
        out[0..4].copy_from_slice(&self.len.to_le_bytes());
        out[4..6].copy_from_slice(&self.kind.to_le_bytes());
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.id.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; RECORD_HEADER]) -> RecordHeader {
        RecordHeader {
            len: u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")),
            kind: u16::from_le_bytes(bytes[4..6].try_into().expect("2 bytes")),
            flags: u16::from_le_bytes(bytes[6..8].try_into().expect("2 bytes")),
            id: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_a_power_of_two_with_room_for_header_and_slack() {
        assert_eq!(capacity_for(0), Some(MIN_CAPACITY * 2));
        assert_eq!(capacity_for(1000), Some(8192));
        assert_eq!(capacity_for(6 * 1024 * 1024), Some(8 * 1024 * 1024));
        assert_eq!(capacity_for(usize::MAX - 8), None);
    }

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let fixed = encode_fixed(8192, 16384);
        let size = HEADER_SIZE + 8192 + 16384;
        let regions = decode_fixed(&fixed, size).unwrap();
        assert_eq!(
            regions,
            Regions {
                request_offset: 4096,
                request_capacity: 8192,
                response_offset: 4096 + 8192,
                response_capacity: 16384,
            }
        );
        assert!(decode_fixed(&fixed, size - 1)
            .unwrap_err()
            .contains("outside"));
        let mut bad = fixed;
        bad[0] = b'X';
        assert!(decode_fixed(&bad, size).unwrap_err().contains("magic"));
        let mut bad = fixed;
        bad[8] = 2;
        assert!(decode_fixed(&bad, size).unwrap_err().contains("version"));
        let mut bad = fixed;
        bad[24..32].copy_from_slice(&1000u64.to_le_bytes());
        assert!(decode_fixed(&bad, size)
            .unwrap_err()
            .contains("power of two"));
        let mut bad = fixed;
        bad[32..40].copy_from_slice(&4096u64.to_le_bytes());
        assert!(decode_fixed(&bad, size).unwrap_err().contains("overlap"));
    }

    #[test]
    fn record_header_round_trips() {
        let h = RecordHeader {
            len: 0xdead_beef,
            kind: kind::INVOKE,
            flags: 7,
            id: u64::MAX - 1,
        };
        assert_eq!(RecordHeader::decode(&h.encode()), h);
        assert_eq!(&h.encode()[0..4], &[0xef, 0xbe, 0xad, 0xde]);
    }
}
