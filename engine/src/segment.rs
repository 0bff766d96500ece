//! The on-disk format of the revision store: immutable segment files and the
//! manifest that names the live ones.
//!
//! A *segment* holds records (one per stored version of a key, as etcd's
//! bbolt `key` bucket holds them), then an index block that repeats every
//! record's key and metadata without its value, then a fixed trailer:
//!
//! ```text
//! header   magic "KVIKSEG1" | u32 format | u64 segment id | u32 crc32c
//! record*  u32 crc32c | u32 body length | body
//!          body = u8 kind | i64 main | i64 sub | i64 create | i64 version
//!                 | i64 lease | u32 key length | key | value
//! index    per record: u64 offset | u32 length | u32 hash crc | u8 kind | i64 main
//!          | i64 sub | i64 create | i64 version | i64 lease
//!          | u32 key length | key
//! trailer  u64 index offset | u64 index length | u64 record count
//!          | u32 index crc32c | u32 trailer crc32c | magic "KVIKEND1"
//! ```
//!
//! All integers are little-endian. A record's crc covers its length field
//! and body, and is checked on every read of the record: a flipped bit is
//! reported, never served. Opening a segment reads only the trailer and the
//! index block, so start-up cost follows the number of live versions, not
//! the bytes of their values.
//!
//! The *manifest* is the checkpoint: the applied log index, the state that
//! lives outside the key records (revisions, leases, alarms, the compaction
//! hash cache) and the list of live segments, under one crc. Two manifest
//! slots are written alternately; the valid one with the higher sequence
//! number wins, so a torn manifest write leaves the previous checkpoint in
//! force.
//!
//! This module is pure: it encodes into and decodes from byte slices. The
//! caller writes the bytes (never through a mapping) and hands back
//! read-only views of the files.

use std::fmt;
use std::sync::Arc;

use crate::types::{AlarmMember, HashKv};

/// Read-only bytes of a sealed file (a memory map, or a buffer in tests).
pub type SegmentBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

const SEGMENT_MAGIC: &[u8; 8] = b"KVIKSEG1";
const TRAILER_MAGIC: &[u8; 8] = b"KVIKEND1";
const MANIFEST_MAGIC: &[u8; 8] = b"KVIKMAN1";
const FORMAT_VERSION: u32 = 1;

/// Bytes of a segment header.
pub const SEGMENT_HEADER_BYTES: usize = 24;
/// Bytes of a segment trailer.
pub const SEGMENT_TRAILER_BYTES: usize = 40;
/// Bytes of a record before its key: crc, length, kind, five integers and
/// the key length.
pub const RECORD_HEADER_BYTES: usize = 4 + 4 + 1 + 5 * 8 + 4;
/// Bytes of an index entry before its key.
const INDEX_ENTRY_HEADER_BYTES: usize = 8 + 4 + 4 + 1 + 5 * 8 + 4;
/// A record's body length must fit the u32 length field.
pub const RECORD_BYTES_MAX: usize = u32::MAX as usize;

const KIND_PUT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;

/// Names of the two manifest slots.
pub const MANIFEST_SLOTS: [&str; 2] = ["manifest-a", "manifest-b"];

/// The file name of segment `id`.
pub fn segment_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// The id in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Why stored bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// The file ("segment 0000000000000003" or a manifest slot).
    pub file: String,
    /// Byte offset of the damaged structure in the file.
    pub offset: u64,
    pub what: &'static str,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "revision store corrupt: {} at offset {} of {}",
            self.what, self.offset, self.file
        )
    }
}

impl std::error::Error for Corrupt {}

/// One sealed, mapped segment file.
pub struct Segment {
    id: u64,
    bytes: SegmentBytes,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Segment({:016x}, {} bytes)", self.id, self.len())
    }
}

/// What one record says, minus its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub main: i64,
    pub sub: i64,
    /// `None` for a tombstone; else (create revision, version, lease).
    pub put: Option<(i64, i64, i64)>,
}

/// One entry of a segment's index block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: u64,
    pub len: u32,
    /// crc32c of the record's etcd bucket value (see `hash.rs`), so
    /// hashes never read values back.
    pub hash_crc: u32,
    pub meta: RecordMeta,
    pub key: Vec<u8>,
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn get_i64(b: &[u8], at: usize) -> i64 {
    get_u64(b, at) as i64
}

fn put_meta(out: &mut Vec<u8>, meta: &RecordMeta) {
    let (kind, (create, version, lease)) = match meta.put {
        Some(p) => (KIND_PUT, p),
        None => (KIND_TOMBSTONE, (0, 0, 0)),
    };
    out.push(kind);
    for v in [meta.main, meta.sub, create, version, lease] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads kind and the five integers at `at` (41 bytes, checked by caller).
fn get_meta(b: &[u8], at: usize) -> Option<RecordMeta> {
    let put = match b[at] {
        KIND_PUT => Some((
            get_i64(b, at + 17),
            get_i64(b, at + 25),
            get_i64(b, at + 33),
        )),
        KIND_TOMBSTONE => None,
        _ => return None,
    };
    Some(RecordMeta {
        main: get_i64(b, at + 1),
        sub: get_i64(b, at + 9),
        put,
    })
}

/// Gives the segment file in `bytes` a new id: a member installing a
/// leader's checkpoint stores its segments under ids of its own, since the
/// leader's may name files it still holds. Only the header changes; its crc
/// is checked first and rewritten.
pub fn relabel_segment(bytes: &mut [u8], id: u64) -> Result<(), Corrupt> {
    let bad = |what| Corrupt {
        file: "received segment".to_string(),
        offset: 0,
        what,
    };
    if bytes.len() < SEGMENT_HEADER_BYTES + SEGMENT_TRAILER_BYTES {
        return Err(bad("file shorter than header and trailer"));
    }
    if &bytes[..8] != SEGMENT_MAGIC
        || get_u32(bytes, 8) != FORMAT_VERSION
        || get_u32(bytes, 20) != crc32c::crc32c(&bytes[..20])
    {
        return Err(bad("bad segment header"));
    }
    bytes[12..20].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..20]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

impl Segment {
    /// Wraps the bytes of segment `id`; [`Segment::index`] validates them.
    pub fn new(id: u64, bytes: SegmentBytes) -> Arc<Segment> {
        Arc::new(Segment { id, bytes })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> u64 {
        (*self.bytes).as_ref().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        (*self.bytes).as_ref()
    }

    /// Bytes of the records alone (no header, index or trailer): what
    /// live bytes are measured against.
    pub fn record_bytes(&self) -> u64 {
        let b = self.bytes();
        if b.len() < SEGMENT_HEADER_BYTES + SEGMENT_TRAILER_BYTES {
            return 0;
        }
        get_u64(b, b.len() - SEGMENT_TRAILER_BYTES).saturating_sub(SEGMENT_HEADER_BYTES as u64)
    }

    fn corrupt(&self, offset: u64, what: &'static str) -> Corrupt {
        Corrupt {
            file: segment_name(self.id),
            offset,
            what,
        }
    }

    /// Validates header, trailer and index block, and returns the index.
    /// Record bodies are checked later, when read.
    pub fn index(&self) -> Result<Vec<IndexEntry>, Corrupt> {
        let b = self.bytes();
        if b.len() < SEGMENT_HEADER_BYTES + SEGMENT_TRAILER_BYTES {
            return Err(self.corrupt(0, "file shorter than header and trailer"));
        }
        if &b[..8] != SEGMENT_MAGIC
            || get_u32(b, 8) != FORMAT_VERSION
            || get_u64(b, 12) != self.id
            || get_u32(b, 20) != crc32c::crc32c(&b[..20])
        {
            return Err(self.corrupt(0, "bad segment header"));
        }
        let t = b.len() - SEGMENT_TRAILER_BYTES;
        if &b[t + 32..] != TRAILER_MAGIC || get_u32(b, t + 28) != crc32c::crc32c(&b[t..t + 28]) {
            return Err(self.corrupt(t as u64, "bad segment trailer"));
        }
        let index_off = get_u64(b, t);
        let index_len = get_u64(b, t + 8);
        let count = get_u64(b, t + 16);
        let index_end = index_off.checked_add(index_len);
        if index_off < SEGMENT_HEADER_BYTES as u64 || index_end != Some(t as u64) {
            return Err(self.corrupt(t as u64, "index block out of bounds"));
        }
        let block = &b[index_off as usize..t];
        if crc32c::crc32c(block) != get_u32(b, t + 24) {
            return Err(self.corrupt(index_off, "index block checksum mismatch"));
        }
        let mut out = Vec::with_capacity(count.min(block.len() as u64 / 57) as usize);
        let mut at = 0usize;
        while at < block.len() {
            let here = index_off + at as u64;
            if block.len() - at < INDEX_ENTRY_HEADER_BYTES {
                return Err(self.corrupt(here, "truncated index entry"));
            }
            let offset = get_u64(block, at);
            let len = get_u32(block, at + 8);
            let hash_crc = get_u32(block, at + 12);
            let meta = get_meta(block, at + 16).ok_or_else(|| self.corrupt(here, "bad kind"))?;
            let key_len = get_u32(block, at + 57) as usize;
            let key_at = at + INDEX_ENTRY_HEADER_BYTES;
            if block.len() - key_at < key_len {
                return Err(self.corrupt(here, "truncated index key"));
            }
            let end = offset.checked_add(len as u64);
            if offset < SEGMENT_HEADER_BYTES as u64
                || end.is_none_or(|e| e > index_off)
                || (len as usize) < RECORD_HEADER_BYTES + key_len
            {
                return Err(self.corrupt(here, "index entry points outside the records"));
            }
            out.push(IndexEntry {
                offset,
                len,
                hash_crc,
                meta,
                key: block[key_at..key_at + key_len].to_vec(),
            });
            at = key_at + key_len;
        }
        if out.len() as u64 != count {
            return Err(self.corrupt(t as u64, "record count mismatch"));
        }
        Ok(out)
    }

    /// The checked bytes of the record at `offset` (`len` bytes): crc,
    /// bounds and its agreement with the expected revision.
    pub fn record(&self, offset: u64, len: u32, main: i64, sub: i64) -> Result<&[u8], Corrupt> {
        let b = self.bytes();
        let start = offset as usize;
        let end = start.checked_add(len as usize).filter(|e| *e <= b.len());
        let Some(end) = end else {
            return Err(self.corrupt(offset, "record out of bounds"));
        };
        let r = &b[start..end];
        if r.len() < RECORD_HEADER_BYTES
            || get_u32(r, 4) as usize != r.len() - 8
            || crc32c::crc32c(&r[4..]) != get_u32(r, 0)
        {
            return Err(self.corrupt(offset, "record checksum mismatch"));
        }
        if get_i64(r, 9) != main || get_i64(r, 17) != sub {
            return Err(self.corrupt(offset, "record is not the indexed revision"));
        }
        Ok(r)
    }

    /// The value of the record at `offset`, after the checks of
    /// [`Segment::record`].
    pub fn value(&self, offset: u64, len: u32, main: i64, sub: i64) -> Result<&[u8], Corrupt> {
        let r = self.record(offset, len, main, sub)?;
        let key_len = get_u32(r, RECORD_HEADER_BYTES - 4) as usize;
        match RECORD_HEADER_BYTES.checked_add(key_len) {
            Some(v) if v <= r.len() => Ok(&r[v..]),
            _ => Err(self.corrupt(offset, "record key overruns the record")),
        }
    }
}

/// Builds a segment file in order: header, records, index, trailer. The
/// bytes come out in chunks so the caller can write and yield between them.
pub struct SegmentEncoder {
    id: u64,
    /// Bytes not yet taken by [`SegmentEncoder::take`].
    out: Vec<u8>,
    /// Bytes already taken.
    written: u64,
    index: Vec<u8>,
    count: u64,
}

impl SegmentEncoder {
    pub fn new(id: u64) -> SegmentEncoder {
        let mut out = Vec::with_capacity(SEGMENT_HEADER_BYTES);
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        SegmentEncoder {
            id,
            out,
            written: 0,
            index: Vec::new(),
            count: 0,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Appends one record; returns its (offset, length) in the file.
    pub fn push(
        &mut self,
        key: &[u8],
        meta: &RecordMeta,
        hash_crc: u32,
        value: &[u8],
    ) -> (u64, u32) {
        let body = 1 + 5 * 8 + 4 + key.len() + value.len();
        assert!(body <= RECORD_BYTES_MAX, "record of {body} bytes too large");
        let offset = self.written + self.out.len() as u64;
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        self.out.extend_from_slice(&(body as u32).to_le_bytes());
        put_meta(&mut self.out, meta);
        self.out
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(value);
        let crc = crc32c::crc32c(&self.out[start + 4..]);
        self.out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
        let len = (self.out.len() - start) as u32;
        self.index.extend_from_slice(&offset.to_le_bytes());
        self.index.extend_from_slice(&len.to_le_bytes());
        self.index.extend_from_slice(&hash_crc.to_le_bytes());
        put_meta(&mut self.index, meta);
        self.index
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.index.extend_from_slice(key);
        self.count += 1;
        (offset, len)
    }

    /// Appends a record copied verbatim from another segment (already
    /// checked by [`Segment::record`]); returns its new (offset, length).
    pub fn push_copy(
        &mut self,
        key: &[u8],
        meta: &RecordMeta,
        hash_crc: u32,
        record: &[u8],
    ) -> (u64, u32) {
        let key_len = get_u32(record, RECORD_HEADER_BYTES - 4) as usize;
        let value = &record[RECORD_HEADER_BYTES + key_len..];
        self.push(key, meta, hash_crc, value)
    }

    /// Bytes buffered and not yet taken.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes encoded so far; they belong at `self.written()`
    /// before the call.
    pub fn take(&mut self) -> Vec<u8> {
        let out = std::mem::take(&mut self.out);
        self.written += out.len() as u64;
        out
    }

    /// Offset in the file where the next taken chunk belongs.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends index and trailer and returns the last chunk, with the
    /// file's total length.
    pub fn finish(mut self) -> (Vec<u8>, u64) {
        let index_off = self.written + self.out.len() as u64;
        let index_crc = crc32c::crc32c(&self.index);
        let index_len = self.index.len() as u64;
        self.out.append(&mut self.index);
        let t = self.out.len();
        self.out.extend_from_slice(&index_off.to_le_bytes());
        self.out.extend_from_slice(&index_len.to_le_bytes());
        self.out.extend_from_slice(&self.count.to_le_bytes());
        self.out.extend_from_slice(&index_crc.to_le_bytes());
        let crc = crc32c::crc32c(&self.out[t..]);
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out.extend_from_slice(TRAILER_MAGIC);
        let total = self.written + self.out.len() as u64;
        (self.out, total)
    }
}

/// One checkpoint: everything needed, with the listed segments, to rebuild
/// the state as of `applied_index`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// Increases with every manifest written.
    pub seq: u64,
    /// The last log index whose command the checkpoint covers.
    pub applied_index: u64,
    /// That entry's term.
    pub applied_term: u64,
    pub current_rev: i64,
    pub compact_rev: i64,
    /// The id the next new segment takes.
    pub next_segment_id: u64,
    /// Live segment ids, ascending.
    pub segments: Vec<u64>,
    /// Granted leases as (id, ttl seconds), ascending by id.
    pub leases: Vec<(i64, i64)>,
    pub alarms: Vec<AlarmMember>,
    pub compaction_hashes: Vec<HashKv>,
    /// Opaque bytes the log's owner keeps with the checkpoint (kvik's shard
    /// stores the Raft configuration and the member set as of
    /// `applied_index`). Manifests written before the field decode with it
    /// empty.
    pub membership: Vec<u8>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MANIFEST_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for v in [self.seq, self.applied_index, self.applied_term] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.current_rev, self.compact_rev] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.next_segment_id.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u64).to_le_bytes());
        for id in &self.segments {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out.extend_from_slice(&(self.leases.len() as u64).to_le_bytes());
        for (id, ttl) in &self.leases {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&ttl.to_le_bytes());
        }
        out.extend_from_slice(&(self.alarms.len() as u64).to_le_bytes());
        for a in &self.alarms {
            out.extend_from_slice(&a.member_id.to_le_bytes());
            out.extend_from_slice(&(a.alarm as i64).to_le_bytes());
        }
        out.extend_from_slice(&(self.compaction_hashes.len() as u64).to_le_bytes());
        for h in &self.compaction_hashes {
            out.extend_from_slice(&(h.hash as u64).to_le_bytes());
            out.extend_from_slice(&h.compact_revision.to_le_bytes());
            out.extend_from_slice(&h.hash_revision.to_le_bytes());
        }
        out.extend_from_slice(&(self.membership.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.membership);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a manifest slot; `None` for anything but a whole, intact
    /// manifest (an empty, torn or damaged slot).
    pub fn decode(b: &[u8]) -> Option<Manifest> {
        if b.len() < 12 + 4 || &b[..8] != MANIFEST_MAGIC {
            return None;
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        if get_u32(body, 8) != FORMAT_VERSION {
            return None;
        }
        let mut r = Reader { b: body, at: 12 };
        let mut m = Manifest {
            seq: r.u64()?,
            applied_index: r.u64()?,
            applied_term: r.u64()?,
            current_rev: r.u64()? as i64,
            compact_rev: r.u64()? as i64,
            next_segment_id: r.u64()?,
            ..Manifest::default()
        };
        let n = r.count(8)?;
        m.segments = (0..n).map(|_| r.u64()).collect::<Option<_>>()?;
        let n = r.count(16)?;
        m.leases = (0..n)
            .map(|_| Some((r.u64()? as i64, r.u64()? as i64)))
            .collect::<Option<_>>()?;
        let n = r.count(16)?;
        m.alarms = (0..n)
            .map(|_| {
                Some(AlarmMember {
                    member_id: r.u64()?,
                    alarm: i32::try_from(r.u64()? as i64).ok()?,
                })
            })
            .collect::<Option<_>>()?;
        let n = r.count(24)?;
        m.compaction_hashes = (0..n)
            .map(|_| {
                Some(HashKv {
                    hash: u32::try_from(r.u64()?).ok()?,
                    compact_revision: r.u64()? as i64,
                    hash_revision: r.u64()? as i64,
                })
            })
            .collect::<Option<_>>()?;
        if r.at < body.len() {
            let n = r.count(1)?;
            m.membership = body[r.at..r.at + n].to_vec();
            r.at += n;
        }
        (r.at == body.len()).then_some(m)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> Option<u64> {
        let v = self.b.get(self.at..self.at + 8)?;
        self.at += 8;
        Some(u64::from_le_bytes(v.try_into().ok()?))
    }

    /// A count of items of `item_bytes` each that must fit what is left.
    fn count(&mut self, item_bytes: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n.checked_mul(item_bytes)? <= self.b.len() - self.at).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(records: &[(&[u8], RecordMeta, &[u8])]) -> (Arc<Segment>, Vec<(u64, u32)>) {
        let mut enc = SegmentEncoder::new(7);
        let mut file = Vec::new();
        let mut locs = Vec::new();
        for (k, m, v) in records {
            locs.push(enc.push(k, m, 9, v));
            if enc.buffered() > 10 {
                file.extend(enc.take());
            }
        }
        let (tail, total) = enc.finish();
        file.extend(tail);
        assert_eq!(file.len() as u64, total);
        (Segment::new(7, Arc::new(file)), locs)
    }

    fn put(main: i64) -> RecordMeta {
        RecordMeta {
            main,
            sub: 0,
            put: Some((main, 1, 0)),
        }
    }

    #[test]
    fn round_trip_and_every_flipped_bit_is_caught() {
        let tomb = RecordMeta {
            main: 3,
            sub: 1,
            put: None,
        };
        let (seg, locs) = build(&[(b"a", put(2), b"one"), (b"bb", tomb, b"")]);
        let index = seg.index().unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index[1].meta, tomb);
        assert_eq!(index[0].key, b"a");
        assert_eq!(seg.value(locs[0].0, locs[0].1, 2, 0).unwrap(), b"one");
        let good = (*seg.bytes).as_ref().to_vec();
        for bit in 0..good.len() * 8 {
            let mut b = good.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let s = Segment::new(7, Arc::new(b));
            let served = s.index().is_ok()
                && s.value(locs[0].0, locs[0].1, 2, 0).ok() == Some(&b"one"[..])
                && s.value(locs[1].0, locs[1].1, 3, 1).is_ok();
            // A flip either is caught somewhere or does not change what is
            // served (no bit is unprotected: every byte is under a crc).
            assert!(!served, "bit {bit} flipped unnoticed");
        }
    }

    #[test]
    fn manifest_round_trip_and_damage() {
        let m = Manifest {
            seq: 3,
            applied_index: 10,
            applied_term: 2,
            current_rev: 9,
            compact_rev: -1,
            next_segment_id: 4,
            segments: vec![1, 3],
            leases: vec![(5, 60)],
            alarms: vec![AlarmMember {
                member_id: 1,
                alarm: 1,
            }],
            compaction_hashes: vec![HashKv {
                hash: 7,
                compact_revision: -1,
                hash_revision: 5,
            }],
            membership: b"members".to_vec(),
        };
        let b = m.encode();
        assert_eq!(Manifest::decode(&b), Some(m));
        for i in 0..b.len() {
            assert_eq!(Manifest::decode(&b[..i]), None);
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert_eq!(Manifest::decode(&d), None);
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..400 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = Manifest::decode(&b);
            let s = Segment::new(1, Arc::new(b));
            let _ = s.index();
            let _ = s.value(0, len as u32, 1, 0);
        }
    }
}
