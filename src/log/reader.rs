//! Reading records: an iterator from any offset across segments.
//!
//! Sealed segments are read from their memory map (zero copy: a record's bytes share the
//! map). The active segment is read with positioned reads in chunks, and only up to the
//! published length, so a reader never sees a record that is not yet acknowledged.
//! Every frame's checksum is verified on every read. Container framing (v2 segment and
//! group headers) is stepped over: it sits only at frame boundaries.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::log::framing::{
    self, GROUP_HEADER_BYTES, GROUP_MAGIC, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
};
use crate::log::limits::ACTIVE_READ_CHUNK_BYTES;
use crate::log::record::{self, FrameError, FRAME_HEADER_BYTES};
use crate::log::shared::{map_sealed, ActiveSegment, Inner};
use crate::log::storage::read_full;
use crate::log::LogError;
use crate::log::{Offset, Record};

/// Records from an offset onwards, in order, ending at the end published when it gets there.
#[derive(Debug)]
pub struct RecordIter {
    inner: Arc<Inner>,
    next: Offset,
    buf: Bytes,
    pos: usize,
    /// File position of `buf[0]`.
    buf_file_pos: u64,
    /// `buf` holds a whole sealed segment (else a chunk of the active one).
    whole_segment: bool,
    path: PathBuf,
    done: bool,
    /// Keep maps of sealed segments in the log's cache (reads that come back), or map
    /// each segment only while this iterator is in it (one-pass scans).
    cache_maps: bool,
}

impl RecordIter {
    pub(crate) fn new(inner: Arc<Inner>, from: Offset, cache_maps: bool) -> Self {
        Self {
            cache_maps,
            inner,
            next: from,
            buf: Bytes::new(),
            pos: 0,
            buf_file_pos: 0,
            whole_segment: false,
            path: PathBuf::new(),
            done: false,
        }
    }

    /// The offset the next record will have.
    pub fn position(&self) -> Offset {
        self.next
    }

    fn corruption(&self, position: u64, reason: String) -> LogError {
        LogError::Corruption {
            file: self.path.clone(),
            position,
            reason,
        }
    }

    /// Steps over container framing at `pos` (a v2 segment or group header; records
    /// are never framing, as bytes 4-7 tell). `Ok(false)`: the chunk ends inside it.
    fn skip_framing(&mut self) -> Result<bool, LogError> {
        loop {
            let here = self.buf_file_pos + self.pos as u64;
            let rest = &self.buf[self.pos..];
            let len = match framing::magic_at(rest) {
                Some(SEGMENT_MAGIC) if here == 0 => SEGMENT_HEADER_BYTES,
                Some(GROUP_MAGIC) => GROUP_HEADER_BYTES,
                None if !self.whole_segment => return Ok(false),
                _ => return Ok(true),
            };
            if rest.len() < len {
                if self.whole_segment {
                    return Err(self.corruption(here, "header cut short".into()));
                }
                return Ok(false);
            }
            self.pos += len;
        }
    }

    /// Decodes the frame at `pos` in `buf`. `Ok(None)`: the chunk ends mid-frame.
    fn decode_here(&mut self) -> Result<Option<(Record, usize)>, LogError> {
        if !self.skip_framing()? || self.pos >= self.buf.len() {
            return Ok(None);
        }
        let here = self.buf_file_pos + self.pos as u64;
        match record::decode(&self.buf[self.pos..]) {
            Ok((frame, len)) => {
                if frame.offset != self.next {
                    return Err(self.corruption(
                        here,
                        format!("record has offset {}, expected {}", frame.offset, self.next),
                    ));
                }
                let slice = |part: &[u8]| self.buf.slice_ref(part);
                let rec = Record {
                    offset: frame.offset,
                    timestamp_ms: frame.timestamp_ms,
                    flags: Record::user_flags(frame.attributes),
                    key: (!frame.key.is_empty()).then(|| slice(frame.key)),
                    headers_encoded: slice(frame.headers),
                    payload: slice(frame.payload),
                };
                Ok(Some((rec, len)))
            }
            Err(FrameError::Incomplete { .. }) if !self.whole_segment => Ok(None),
            Err(e) => Err(self.corruption(here, e.to_string())),
        }
    }

    /// Points `buf` at the segment holding `next`. `Ok(false)`: nothing more is published.
    fn load(&mut self, resume_at: Option<u64>) -> Result<bool, LogError> {
        let (sealed, active) = self.inner.snapshot();
        let first = sealed.first().map_or(active.base, |s| s.summary.base);
        if self.next < first {
            return Err(self.out_of_range(first));
        }
        let i = sealed.partition_point(|s| s.summary.next <= self.next);
        if let Some(seg) = sealed.get(i) {
            let mapped = if self.cache_maps {
                self.inner.sealed_map(seg)
            } else {
                map_sealed(&*self.inner.storage, seg)
            };
            let bytes = match mapped {
                Ok(b) => b,
                // Retention deleted it between our snapshot and the map: a clean error.
                Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                    return Err(self.out_of_range(self.inner.first_offset()));
                }
                Err(e) => return Err(e),
            };
            let (pos, at) = self.inner.sealed_index(seg, &bytes)?.locate(self.next);
            self.buf = bytes;
            self.buf_file_pos = 0;
            self.whole_segment = true;
            self.path = seg.path.clone();
            self.pos = pos as usize;
            self.skip_to_next(at)?;
            return Ok(true);
        }
        self.load_active(&active, resume_at)
    }

    fn load_active(
        &mut self,
        active: &Arc<ActiveSegment>,
        resume_at: Option<u64>,
    ) -> Result<bool, LogError> {
        let (committed, end, (pos, at)) = {
            let s = active.summary.read();
            let start = match resume_at {
                Some(p) if self.path == active.path => (p, self.next),
                _ => s.locate(self.next),
            };
            (s.bytes, s.next, start)
        };
        if self.next >= end {
            return Ok(false);
        }
        let io = |e| LogError::io("read", &active.path, e);
        let mut header = [0u8; FRAME_HEADER_BYTES];
        let reader = active.reader(&*self.inner.storage).map_err(io)?;
        let got = read_full(&*reader, pos, &mut header).map_err(io)?;
        let frame_len = record::peek_frame_len(&header[..got]).unwrap_or(FRAME_HEADER_BYTES);
        let len = (committed - pos).min(ACTIVE_READ_CHUNK_BYTES.max(frame_len) as u64) as usize;
        let mut chunk = vec![0u8; len];
        let got = read_full(&*reader, pos, &mut chunk).map_err(io)?;
        if got < len {
            self.path = active.path.clone();
            return Err(self.corruption(
                pos + got as u64,
                "segment file is shorter than its published length".into(),
            ));
        }
        self.buf = Bytes::from(chunk);
        self.buf_file_pos = pos;
        self.whole_segment = false;
        self.path = active.path.clone();
        self.pos = 0;
        self.skip_to_next(at)?;
        Ok(true)
    }

    /// Walks frames from offset `at` (at `pos`) up to `next`.
    fn skip_to_next(&mut self, mut at: Offset) -> Result<(), LogError> {
        while at < self.next {
            if !self.skip_framing()? {
                let here = self.buf_file_pos + self.pos as u64;
                return Err(self.corruption(here, "header cut short".into()));
            }
            let here = self.buf_file_pos + self.pos as u64;
            let (frame, len) = record::decode(&self.buf[self.pos..])
                .map_err(|e| self.corruption(here, e.to_string()))?;
            if frame.offset != at {
                return Err(self.corruption(
                    here,
                    format!("record has offset {}, expected {at}", frame.offset),
                ));
            }
            self.pos += len;
            at = Offset(at.0 + 1);
        }
        Ok(())
    }

    fn out_of_range(&self, first: Offset) -> LogError {
        LogError::OffsetOutOfRange {
            requested: self.next,
            first,
            next: self.inner.next_offset(),
        }
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut resume_at = None;
        loop {
            if self.pos < self.buf.len() {
                match self.decode_here() {
                    Ok(Some((rec, len))) => {
                        self.pos += len;
                        self.next = Offset(self.next.0 + 1);
                        return Some(Ok(rec));
                    }
                    Ok(None) => resume_at = Some(self.buf_file_pos + self.pos as u64),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            } else if !self.whole_segment && !self.buf.is_empty() {
                resume_at = Some(self.buf_file_pos + self.pos as u64);
            }
            self.buf = Bytes::new();
            self.pos = 0;
            match self.load(resume_at.take()) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
