//! Every bound of the engine, as a named constant with its unit.
//!
//! Checked at the boundary (the append API), asserted again at encode time.
//! `docs/format.md` and `docs/ARCHITECTURE.md` refer to these names.

/// Largest payload of one record, in bytes.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Longest record key (the idempotency key), in bytes.
pub const RECORD_KEY_BYTES_MAX: usize = 512;
/// Most headers on one record.
pub const RECORD_HEADER_COUNT_MAX: usize = 16;
/// Longest header name, in bytes.
pub const RECORD_HEADER_NAME_BYTES_MAX: usize = 64;
/// Longest header value, in bytes (the frame's `value_len` is a u16; 1,024 until the
/// request kept with each event needed more; decoding never checked it).
pub const RECORD_HEADER_VALUE_BYTES_MAX: usize = 16 * 1024;
/// Largest whole frame (header + key + headers + payload), in bytes.
/// Recovery refuses to trust a length field above this before allocating.
pub const RECORD_FRAME_BYTES_MAX: usize = RECORD_PAYLOAD_BYTES_MAX + 64 * 1024;
/// Most records in one append call (one batch, stored all or nothing).
pub const APPEND_BATCH_RECORDS_MAX: usize = 1000;
/// Most bytes of encoded frames in one append call.
pub const APPEND_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most append calls waiting in one partition's writer queue; a full queue
/// makes `append` wait (backpressure), `try_append` answer `Overloaded`.
pub const WRITER_QUEUE_DEPTH_MAX: usize = 8192;
/// Most bytes the writer gathers into one group before it writes and syncs.
pub const GROUP_COMMIT_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most zeroed space the writer reserves ahead of the active segment's data, in bytes
/// (capped at the segment size). Appends then overwrite zeros, so an fdatasync need not
/// also write the file's new length; one sync per this many bytes pays for the zeros.
/// A small segment reserves as much as it holds (at least `SEGMENT_RESERVE_MIN_BYTES`),
/// so a quiet partition's reserved space never exceeds its data by much.
pub const SEGMENT_RESERVE_BYTES: u64 = 1024 * 1024;
/// Least zeroed space the writer reserves at a time, in bytes (one page).
pub const SEGMENT_RESERVE_MIN_BYTES: u64 = 4096;
/// Most records returned by one bounded read.
pub const READ_RECORDS_MAX: usize = 100_000;
/// Default segment size at which the active segment is sealed, in bytes.
pub const SEGMENT_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;
/// Smallest segment size a config may ask for, in bytes (tests use tiny ones).
pub const SEGMENT_BYTES_MIN: u64 = 256;
/// Largest segment size a config may ask for, in bytes (positions are u32 in the index).
pub const SEGMENT_BYTES_LIMIT: u64 = 1024 * 1024 * 1024;
/// One sparse index entry per this many bytes of log, at most.
pub const INDEX_INTERVAL_BYTES: u64 = 4096;
/// Most memory maps of sealed segments kept open by one partition's cache.
pub const OPEN_MAPS_MAX: usize = 64;
/// Most sealed segments' sparse indexes held in memory by one partition (a 128 MiB
/// segment's index is at most 512 KiB). Others are read from their `.index` file when a
/// read needs them, so memory does not grow with the log.
pub const OPEN_INDEXES_MAX: usize = 16;
/// Chunk read from the active segment per read call, in bytes.
pub const ACTIVE_READ_CHUNK_BYTES: usize = 1024 * 1024;
