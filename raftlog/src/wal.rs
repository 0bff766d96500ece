//! The write-ahead log.
//!
//! The WAL is the Raft log: every record carries the Raft `(term, index)` of
//! the entry it holds, so the same files serve as the durable Raft log once
//! the Raft core lands.
//!
//! # On-disk format (version 2)
//!
//! All integers are little-endian. CRCs are CRC-32C (Castagnoli).
//!
//! The WAL is a directory (one [`Storage`]) of *segment* files. All numbers
//! in names are 16 lowercase hex digits. An ordinary segment is named
//! `<seq>-<first index>.wal`, e.g. `0000000000000002-00000000000004d3.wal`;
//! a *base segment* (see *Resetting* below) is named
//! `<seq>-<first index>-<base term>.wal`. `seq` increases by one per new
//! segment; `first index` is the index of the first entry the segment holds
//! (or would hold, if it is empty); `base term` is the term of entry
//! `first index - 1`, which the log no longer holds. Files with other names
//! are ignored.
//!
//! A segment is a 32-byte header followed by records:
//!
//! ```text
//! segment header (SEGMENT_HEADER_BYTES = 32)
//!   0..7    magic "KVIKWAL"
//!   7       header version: 1 for ordinary segments, 2 for base segments
//!   8..16   seq          u64   (must match the file name)
//!   16..24  first index  u64   (must match the file name)
//!   24..28  version 1: reserved, zero
//!           version 2: flags u32; bit 0 = base segment (must match the
//!           file name); the other bits must be zero
//!   28..32  crc32c of bytes 0..28
//!
//! record (RECORD_HEADER_BYTES = 25, then the payload)
//!   0..4    payload length u32 (at most RECORD_PAYLOAD_BYTES_MAX)
//!   4..8    crc32c of bytes 8..(25 + payload length): type, term, index, payload
//!   8       record type u8: 1 = Entry
//!           (2 = HardState, 3 = Snapshot marker, 4 = Metadata are reserved
//!           for later versions and rejected by this one)
//!   9..17   term  u64
//!   17..25  index u64
//!   25..    payload (for Entry: the opaque entry bytes the engine encodes)
//! ```
//!
//! Entry indexes are contiguous across records and segments, and terms never
//! decrease. Records end exactly at the end of the file; there is no
//! preallocation.
//!
//! Format history: version 1 had ordinary segments only. Version 2 added
//! base segments; ordinary segments are still written with a version-1
//! header, so a log that was never reset stays byte-identical to version 1,
//! and this code reads every version-1 directory. A version-1 build does not
//! recognise base segment names and must not open a log that was reset.
//!
//! # Writing
//!
//! [`Wal::append`] only encodes into an in-memory buffer. [`Wal::sync`]
//! writes the whole buffer with one write and makes it durable with one
//! `sync_data`: group commit. A segment is closed once it has grown past
//! [`WalOptions::segment_bytes_max`] (so a segment can exceed it by at most
//! one sync batch); the next `sync` then first creates the next segment and
//! makes its header and directory entry durable (two extra syncs, once per
//! segment) before writing the batch into it. Because a header is durable
//! before any record is written after it, a damaged header in a segment with
//! records is always corruption, never a torn write.
//!
//! Any I/O error, and a `sync` future dropped before it completes, poisons
//! the WAL: every later call fails with [`WalError::Poisoned`]. A failed
//! fsync is never retried (the kernel may have dropped the dirty data); the
//! caller is expected to exit and recover by reopening.
//!
//! # Resetting ([`Wal::reset_after`])
//!
//! A follower that installs a snapshot at entry `(index, term)` discards its
//! whole log and continues with entry `index + 1`. `reset_after`:
//!
//! 1. drops the buffered entries (they were never written);
//! 2. creates the base segment `<seq>-<index + 1>-<term>.wal` with the next
//!    `seq` and a version-2 header flagged as a base, and makes the header
//!    (`sync_data`) and the directory entry (`sync_dir`) durable: the commit
//!    point;
//! 3. removes every older segment, oldest first, then syncs the directory
//!    once.
//!
//! Recovery treats every segment older than the newest base segment as a
//! leftover of the log it replaced, whatever its content, so the leftovers
//! may disappear in any order and any subset may survive a crash; the one
//! directory sync at the end only keeps them from coming back.
//!
//! Why the base is marked in the file name and not only in the header: the
//! name becomes durable atomically with the directory entry, while the
//! header can be torn. A crash in step 2 can leave the base segment's entry
//! with a torn or missing header and an (expected) gap in front of it;
//! without the name, that state would look exactly like an ordinary segment
//! behind a lost segment, which must stay an error. With the name, recovery
//! rewrites the header (everything it holds is in the name) and completes
//! the reset.
//!
//! A power cut at any point of `reset_after` therefore leaves one of two
//! states, both of which [`Wal::open`] accepts:
//!
//! * **the old log**, exactly as durable when `reset_after` began, if the
//!   base segment's directory entry was lost (the cut came before the
//!   directory sync of step 2 completed);
//! * **the new empty log after `index`** (`last_index == index`,
//!   `last_term == term`, `first_index == index + 1`) if the entry survived,
//!   whether or not its header did; recovery removes the leftovers.
//!
//! No state mixes the two: nothing old is removed before the base segment
//! is durable. Calling `reset_after(index, term)` again after either
//! recovery completes normally. The caller must have made its snapshot at
//! `index` durable before calling `reset_after`.
//!
//! # Recovery ([`Wal::open`])
//!
//! Segments are sorted by `seq`. If there is a base segment, the newest one
//! starts the log: the segments before it are leftovers of a reset, are not
//! read, and are removed (oldest first, then one directory sync) only after
//! the log from the base on has been verified and made durable; their names
//! are reported in [`Recovered::leftovers_removed`]. The base term becomes
//! the term of entry `first_index - 1` ([`Recovered::base`],
//! [`Wal::last_term`] while the log is empty); the first entry's term must
//! not be below it. The remaining segments are read in order and every
//! record is verified.
//!
//! * A damaged record (short header, length over the limit, short payload,
//!   checksum mismatch) at the end of the **last** segment, with no valid
//!   record after it, is a torn write from a crash: the file is truncated at
//!   the damaged record (`set_len` + `sync_data`) and the cut is reported in
//!   [`Recovered::truncated_tail`].
//! * A damaged record followed anywhere in the file by a well-formed record
//!   with a correct checksum and a plausible index (not below the damaged
//!   record's expected index) is corruption: [`WalError::Corrupt`] names the
//!   file and the damaged record's offset. The forward scan runs only on this
//!   error path.
//! * Any damage in a segment that is not the last one is corruption.
//! * A checksum-valid record with an unexpected index (gap or going
//!   backwards), an unknown type or a decreasing term is corruption, as is a
//!   segment whose first index does not continue the previous one. A gap is
//!   accepted only in front of the newest base segment, where the leftovers
//!   end.
//! * A segment header that is damaged, has a bad magic, version or flags, or
//!   disagrees with the file name (seq, first index, base or not) is
//!   corruption, with one exception: the last segment may be no longer than
//!   a header and have a damaged header (a crash between creating the
//!   segment and syncing its header); it is then rewritten as an empty
//!   segment and reported as a truncated tail. For a base segment that
//!   rewrite completes an interrupted reset.
//! * After recovery the last segment and the directory are synced, so all
//!   entries returned are durable even if a previous process wrote them
//!   without syncing.
//!
//! Recovery never panics on any file content.
//!
//! One consequence of the "valid record follows means corruption" rule: a
//! disk that persists a later sector of an unsynced write but not an earlier
//! one can make recovery refuse to start rather than drop the unacknowledged
//! tail. That is the conservative choice; an operator decides. Another, of
//! the leftover rule: a stray file with a base segment name and a higher
//! `seq` than the log would make recovery discard the log; only
//! `reset_after` creates such names.

use std::collections::VecDeque;
use std::fmt;
use std::io;

use crate::storage::{Storage, StorageFile};

/// Default size past which a segment is closed and a new one started.
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Largest payload of one record.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Size of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 32;

/// Size of a record header (the payload follows it).
pub const RECORD_HEADER_BYTES: usize = 25;

/// Magic at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 7] = *b"KVIKWAL";

/// Newest on-disk format version; this code reads versions 1 to 2.
pub const FORMAT_VERSION: u8 = 2;

/// Header version of ordinary segments (unchanged since format version 1).
const HEADER_VERSION_PLAIN: u8 = 1;

/// Header version of base segments (format version 2).
const HEADER_VERSION_BASE: u8 = 2;

/// Version-2 header flag: the segment is a base segment.
const HEADER_FLAG_BASE: u32 = 1;

/// Record type byte of a log entry.
const RECORD_TYPE_ENTRY: u8 = 1;

const SEGMENT_NAME_BYTES: usize = 16 + 1 + 16 + 4;

const BASE_SEGMENT_NAME_BYTES: usize = 16 + 1 + 16 + 1 + 16 + 4;

const CANCELLED: &str = "an earlier WAL operation was cancelled before it completed";

/// One Raft log entry as stored in the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Raft term.
    pub term: u64,
    /// Raft index.
    pub index: u64,
    /// Opaque entry bytes (encoded by the engine).
    pub payload: Vec<u8>,
}

/// Where recovery cut off a torn write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Segment file name.
    pub file: String,
    /// Offset the file was truncated to (0 for a segment whose header was
    /// torn and rewritten).
    pub offset: u64,
    /// Bytes discarded.
    pub bytes_dropped: u64,
}

/// What [`Wal::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// All entries in the log, in index order.
    pub entries: Vec<Entry>,
    /// Index of the first entry the log holds (or would hold, if empty).
    pub first_index: u64,
    /// Index of the last entry, `first_index - 1` if the log is empty.
    pub last_index: u64,
    /// `(index, term)` of the entry just before `first_index` when the log
    /// begins with a base segment written by [`Wal::reset_after`] (the
    /// snapshot the log continues from); `None` when it begins anywhere
    /// else (a new log, or one whose older segments were released).
    pub base: Option<(u64, u64)>,
    /// A torn write that was truncated, if any.
    pub truncated_tail: Option<TornTail>,
    /// Leftover segments of a log that a reset replaced, removed by this
    /// recovery (a crash interrupted the removal), oldest first.
    pub leftovers_removed: Vec<String>,
}

/// Tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment is closed once it has grown to this size.
    pub segment_bytes_max: u64,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes_max: SEGMENT_BYTES_MAX,
        }
    }
}

/// Counters, e.g. for the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// `sync` calls that wrote something.
    pub syncs: u64,
    /// File `sync_data` calls (batch syncs plus segment header syncs).
    pub fsyncs: u64,
    /// Directory syncs.
    pub dir_syncs: u64,
    /// Entries made durable by `sync`.
    pub entries_synced: u64,
    /// Bytes written (records and segment headers).
    pub bytes_written: u64,
    /// Segments created (including the first one of a new WAL).
    pub segments_created: u64,
    /// Segments removed by `release_before`, `truncate_after`,
    /// `reset_after` or recovery (leftovers of a reset).
    pub segments_removed: u64,
    /// Completed `reset_after` calls.
    pub resets: u64,
}

/// WAL errors.
#[derive(Debug)]
pub enum WalError {
    /// An I/O call failed. The WAL is poisoned.
    Io {
        /// The operation, e.g. `"sync_data"`.
        op: &'static str,
        /// The file involved (empty for directory-wide operations).
        file: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The files on disk are corrupt; the WAL refuses to open (or, from
    /// `truncate_after`, is poisoned).
    Corrupt {
        /// Segment file name.
        file: String,
        /// Byte offset of the damaged header or record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier failure made the WAL unusable; reopen it.
    Poisoned {
        /// The earlier failure.
        cause: String,
    },
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { op, file, source } if file.is_empty() => {
                write!(f, "WAL I/O error in {op}: {source}")
            }
            WalError::Io { op, file, source } => {
                write!(f, "WAL I/O error in {op} on {file}: {source}")
            }
            WalError::Corrupt {
                file,
                offset,
                reason,
            } => write!(f, "WAL corrupt: file {file} at offset {offset}: {reason}"),
            WalError::Poisoned { cause } => {
                write!(f, "WAL unusable after an earlier failure: {cause}")
            }
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err<'a>(op: &'static str, file: &'a str) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        op,
        file: file.to_string(),
        source,
    }
}

fn corrupt(file: &str, offset: u64, reason: impl Into<String>) -> WalError {
    WalError::Corrupt {
        file: file.to_string(),
        offset,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------
// Encoding and parsing (pure).

/// Name of the ordinary segment with sequence number `seq` starting at
/// `first_index`.
pub fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

/// Name of the base segment with sequence number `seq` starting at
/// `first_index` after an entry of term `base_term`.
pub fn base_segment_name(seq: u64, first_index: u64, base_term: u64) -> String {
    format!("{seq:016x}-{first_index:016x}-{base_term:016x}.wal")
}

fn parse_hex16(s: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// `(seq, first_index, base_term)` of a segment file name (`base_term` only
/// for a base segment), `None` if it is not one.
fn parse_name(name: &str) -> Option<(u64, u64, Option<u64>)> {
    let b = name.as_bytes();
    if b.len() < SEGMENT_NAME_BYTES || b[16] != b'-' || &b[b.len() - 4..] != b".wal" {
        return None;
    }
    let (seq, first_index) = (parse_hex16(&b[..16])?, parse_hex16(&b[17..33])?);
    match b.len() {
        SEGMENT_NAME_BYTES => Some((seq, first_index, None)),
        BASE_SEGMENT_NAME_BYTES if b[33] == b'-' => {
            Some((seq, first_index, Some(parse_hex16(&b[34..50])?)))
        }
        _ => None,
    }
}

/// `(seq, first_index)` of a segment file name, ordinary or base, `None` if
/// it is not one.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    parse_name(name).map(|(seq, first_index, _)| (seq, first_index))
}

/// `(seq, first_index, base_term)` of a base segment file name, `None` if it
/// is not one.
pub fn parse_base_segment_name(name: &str) -> Option<(u64, u64, u64)> {
    match parse_name(name)? {
        (seq, first_index, Some(base_term)) => Some((seq, first_index, base_term)),
        (_, _, None) => None,
    }
}

fn encode_segment_header(seg: &Segment) -> Vec<u8> {
    let (version, flags) = match seg.base_term {
        None => (HEADER_VERSION_PLAIN, 0),
        Some(_) => (HEADER_VERSION_BASE, HEADER_FLAG_BASE),
    };
    let mut h = Vec::with_capacity(SEGMENT_HEADER_BYTES);
    h.extend_from_slice(&SEGMENT_MAGIC);
    h.push(version);
    h.extend_from_slice(&seg.seq.to_le_bytes());
    h.extend_from_slice(&seg.first_index.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(h.len(), SEGMENT_HEADER_BYTES);
    h
}

fn encode_record(buf: &mut Vec<u8>, rtype: u8, term: u64, index: u64, payload: &[u8]) {
    let start = buf.len();
    let len = u32::try_from(payload.len()).expect("payload length fits u32");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.push(rtype);
    buf.extend_from_slice(&term.to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Header problems, split by whether they can be a torn write.
enum HeaderError {
    /// Short or checksum mismatch: possibly a torn header.
    Damaged(String),
    /// Checksum-valid but wrong: never torn.
    Invalid(String),
}

fn check_segment_header(bytes: &[u8], seg: &Segment) -> Result<(), HeaderError> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(HeaderError::Damaged(format!(
            "segment header is short ({} of {SEGMENT_HEADER_BYTES} bytes)",
            bytes.len()
        )));
    }
    let h = &bytes[..SEGMENT_HEADER_BYTES];
    if h[..7] != SEGMENT_MAGIC {
        return Err(HeaderError::Damaged("bad segment magic".into()));
    }
    if crc32c::crc32c(&h[..28]) != u32_at(h, 28) {
        return Err(HeaderError::Damaged(
            "segment header checksum mismatch".into(),
        ));
    }
    let is_base = match h[7] {
        HEADER_VERSION_PLAIN => false, // bytes 24..28 are reserved
        HEADER_VERSION_BASE => {
            let flags = u32_at(h, 24);
            if flags & !HEADER_FLAG_BASE != 0 {
                return Err(HeaderError::Invalid(format!(
                    "unknown segment header flags {flags:#x}"
                )));
            }
            flags & HEADER_FLAG_BASE != 0
        }
        v => {
            return Err(HeaderError::Invalid(format!(
            "unsupported WAL format version {v} (this build reads versions 1 to {FORMAT_VERSION})"
        )))
        }
    };
    let (hseq, hfirst) = (u64_at(h, 8), u64_at(h, 16));
    if (hseq, hfirst) != (seg.seq, seg.first_index) {
        return Err(HeaderError::Invalid(format!(
            "segment header says seq {hseq} first index {hfirst}, file name says seq {} first index {}",
            seg.seq, seg.first_index
        )));
    }
    if is_base != seg.base_term.is_some() {
        let (header, name) = if is_base {
            ("a base", "an ordinary")
        } else {
            ("an ordinary", "a base")
        };
        return Err(HeaderError::Invalid(format!(
            "segment header says {header} segment, file name says {name} segment"
        )));
    }
    Ok(())
}

/// A checksum-valid record.
struct RawRecord {
    rtype: u8,
    term: u64,
    index: u64,
    payload: std::ops::Range<usize>,
    end: usize,
}

/// Parses the record at `off`; `Err` describes why it is damaged.
fn parse_record(b: &[u8], off: usize) -> Result<RawRecord, String> {
    let rest = b.len() - off;
    if rest < RECORD_HEADER_BYTES {
        return Err(format!("short record header ({rest} bytes)"));
    }
    let len = u32_at(b, off) as usize;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(format!("record length {len} over the limit"));
    }
    let end = off + RECORD_HEADER_BYTES + len;
    if end > b.len() {
        return Err(format!(
            "short record payload ({} of {len} bytes)",
            rest - RECORD_HEADER_BYTES
        ));
    }
    if crc32c::crc32c(&b[off + 8..end]) != u32_at(b, off + 4) {
        return Err("record checksum mismatch".into());
    }
    Ok(RawRecord {
        rtype: b[off + 8],
        term: u64_at(b, off + 9),
        index: u64_at(b, off + 17),
        payload: off + RECORD_HEADER_BYTES..end,
        end,
    })
}

/// Error path only: the first offset after `from` where a checksum-valid
/// entry record with an index in `[min_index, min_index + bound]` starts.
fn find_valid_record(b: &[u8], from: usize, min_index: u64) -> Option<(usize, u64)> {
    let span = (b.len().saturating_sub(from) / RECORD_HEADER_BYTES) as u64 + 1;
    let max_index = min_index.saturating_add(span);
    let last_start = b.len().checked_sub(RECORD_HEADER_BYTES)?;
    (from..=last_start).find_map(|p| {
        // Cheap checks first; the checksum only for candidates.
        if b[p + 8] != RECORD_TYPE_ENTRY {
            return None;
        }
        let index = u64_at(b, p + 17);
        if index < min_index || index > max_index {
            return None;
        }
        let len = u32_at(b, p) as usize;
        if len > RECORD_PAYLOAD_BYTES_MAX || p + RECORD_HEADER_BYTES + len > b.len() {
            return None;
        }
        parse_record(b, p).ok().map(|_| (p, index))
    })
}

/// What was wrong at the end of the last segment.
#[derive(Debug)]
enum Tail {
    Clean,
    /// Torn header: rewrite the segment as empty.
    TornHeader,
    /// Torn record at this offset: truncate there.
    TornRecord(usize),
}

struct SegmentScan {
    next_index: u64,
    tail: Tail,
}

/// Verifies one segment's bytes and appends its entries. Never panics.
fn scan_segment(
    b: &[u8],
    seg: &Segment,
    is_last: bool,
    entries: &mut Vec<Entry>,
    last_term: &mut u64,
) -> Result<SegmentScan, WalError> {
    let (name, first_index) = (seg.name.as_str(), seg.first_index);
    match check_segment_header(b, seg) {
        Ok(()) => {}
        Err(HeaderError::Damaged(_)) if is_last && b.len() <= SEGMENT_HEADER_BYTES => {
            // A crash between creating the segment and syncing its header.
            return Ok(SegmentScan {
                next_index: first_index,
                tail: Tail::TornHeader,
            });
        }
        Err(HeaderError::Damaged(reason) | HeaderError::Invalid(reason)) => {
            return Err(corrupt(name, 0, reason));
        }
    }
    let mut off = SEGMENT_HEADER_BYTES;
    let mut expected = first_index;
    while off < b.len() {
        match parse_record(b, off) {
            Ok(rec) => {
                if rec.rtype != RECORD_TYPE_ENTRY {
                    return Err(corrupt(
                        name,
                        off as u64,
                        format!("unknown record type {}", rec.rtype),
                    ));
                }
                if rec.index != expected {
                    return Err(corrupt(
                        name,
                        off as u64,
                        format!("record has index {}, expected {expected}", rec.index),
                    ));
                }
                if rec.term < *last_term {
                    return Err(corrupt(
                        name,
                        off as u64,
                        format!(
                            "record term {} is below the previous term {}",
                            rec.term, *last_term
                        ),
                    ));
                }
                entries.push(Entry {
                    term: rec.term,
                    index: rec.index,
                    payload: b[rec.payload].to_vec(),
                });
                *last_term = rec.term;
                expected = expected
                    .checked_add(1)
                    .ok_or_else(|| corrupt(name, off as u64, "index overflow"))?;
                off = rec.end;
            }
            Err(reason) => {
                if !is_last {
                    return Err(corrupt(
                        name,
                        off as u64,
                        format!("{reason} in a segment that is not the last one"),
                    ));
                }
                if let Some((p, index)) = find_valid_record(b, off + 1, expected) {
                    return Err(corrupt(
                        name,
                        off as u64,
                        format!(
                            "{reason}, but a valid record (index {index}) follows at offset {p}"
                        ),
                    ));
                }
                return Ok(SegmentScan {
                    next_index: expected,
                    tail: Tail::TornRecord(off),
                });
            }
        }
    }
    Ok(SegmentScan {
        next_index: expected,
        tail: Tail::Clean,
    })
}

async fn read_whole<F: StorageFile>(file: &F, name: &str) -> Result<Vec<u8>, WalError> {
    crate::storage::read_whole(file)
        .await
        .map_err(io_err("read", name))
}

// ---------------------------------------------------------------------------
// The WAL.

#[derive(Clone, Debug)]
struct Segment {
    seq: u64,
    first_index: u64,
    /// Term of entry `first_index - 1`, for a base segment.
    base_term: Option<u64>,
    name: String,
}

impl Segment {
    fn plain(seq: u64, first_index: u64) -> Segment {
        Segment {
            seq,
            first_index,
            base_term: None,
            name: segment_name(seq, first_index),
        }
    }

    fn base(seq: u64, first_index: u64, base_term: u64) -> Segment {
        Segment {
            seq,
            first_index,
            base_term: Some(base_term),
            name: base_segment_name(seq, first_index, base_term),
        }
    }
}

/// The write-ahead log over one [`Storage`] directory.
pub struct Wal<S: Storage> {
    storage: S,
    opts: WalOptions,
    /// Oldest first; the back one is the active segment.
    segments: VecDeque<Segment>,
    active: S::File,
    /// Bytes written to the active segment (header included).
    active_len: u64,
    /// Encoded records of entries `durable_index + 1 ..= last_index`.
    buf: Vec<u8>,
    last_index: u64,
    last_term: u64,
    durable_index: u64,
    /// Term of entry `durable_index` (0 if unknown or none).
    durable_term: u64,
    poison: Option<String>,
    stats: WalStats,
}

impl<S: Storage> Wal<S> {
    /// Opens (recovering) or creates the WAL with default options.
    pub async fn open(storage: S) -> Result<(Wal<S>, Recovered), WalError> {
        Wal::open_with(storage, WalOptions::default()).await
    }

    /// Opens (recovering) or creates the WAL. See the module doc for the
    /// recovery rules.
    pub async fn open_with(storage: S, opts: WalOptions) -> Result<(Wal<S>, Recovered), WalError> {
        assert!(
            opts.segment_bytes_max > SEGMENT_HEADER_BYTES as u64,
            "segment_bytes_max must exceed the segment header"
        );
        let names = storage.list().await.map_err(io_err("list", ""))?;
        let mut segments: Vec<Segment> = names
            .into_iter()
            .filter_map(|name| {
                let (seq, first_index, base_term) = parse_name(&name)?;
                Some(Segment {
                    seq,
                    first_index,
                    base_term,
                    name,
                })
            })
            .collect();
        segments.sort_by_key(|s| s.seq);
        for w in segments.windows(2) {
            if w[0].seq == w[1].seq {
                return Err(corrupt(
                    &w[1].name,
                    0,
                    format!("sequence number shared with {}", w[0].name),
                ));
            }
        }

        // Everything before the newest base segment is left over from the
        // log a reset replaced: not read, removed once the new log is durable.
        let leftovers: Vec<Segment> = match segments.iter().rposition(|s| s.base_term.is_some()) {
            Some(base) => segments.drain(..base).collect(),
            None => Vec::new(),
        };

        if segments.is_empty() {
            debug_assert!(leftovers.is_empty());
            let seg = Segment::plain(0, 1);
            let mut stats = WalStats::default();
            let active = create_segment(&storage, &seg, &mut stats).await?;
            let wal = Wal {
                storage,
                opts,
                segments: VecDeque::from([seg]),
                active,
                active_len: SEGMENT_HEADER_BYTES as u64,
                buf: Vec::new(),
                last_index: 0,
                last_term: 0,
                durable_index: 0,
                durable_term: 0,
                poison: None,
                stats,
            };
            let rec = Recovered {
                entries: Vec::new(),
                first_index: 1,
                last_index: 0,
                base: None,
                truncated_tail: None,
                leftovers_removed: Vec::new(),
            };
            return Ok((wal, rec));
        }

        let mut entries = Vec::new();
        let base_term = segments[0].base_term;
        let mut last_term = base_term.unwrap_or(0);
        let mut next_index = segments[0].first_index;
        let count = segments.len();
        let mut last = None;
        for (i, seg) in segments.iter().enumerate() {
            if seg.first_index == 0 {
                return Err(corrupt(&seg.name, 0, "segment first index is 0"));
            }
            if i > 0 && seg.first_index != next_index {
                return Err(corrupt(
                    &seg.name,
                    0,
                    format!(
                        "segment starts at index {} but the previous segment ends at index {}",
                        seg.first_index,
                        next_index - 1
                    ),
                ));
            }
            let is_last = i + 1 == count;
            let file = storage
                .open(&seg.name)
                .await
                .map_err(io_err("open", &seg.name))?;
            let bytes = read_whole(&file, &seg.name).await?;
            let scan = scan_segment(&bytes, seg, is_last, &mut entries, &mut last_term)?;
            next_index = scan.next_index;
            if is_last {
                last = Some((file, bytes.len(), scan.tail));
            }
        }
        let (mut active, file_len, tail) = last.expect("at least one segment");
        let seg = segments.last().expect("at least one segment").clone();
        let name = seg.name.as_str();
        let mut stats = WalStats::default();

        let (active_len, truncated_tail) = match tail {
            Tail::Clean => (file_len as u64, None),
            Tail::TornRecord(off) => {
                active
                    .set_len(off as u64)
                    .await
                    .map_err(io_err("set_len", name))?;
                let torn = TornTail {
                    file: seg.name.clone(),
                    offset: off as u64,
                    bytes_dropped: (file_len - off) as u64,
                };
                (off as u64, Some(torn))
            }
            Tail::TornHeader => {
                active.set_len(0).await.map_err(io_err("set_len", name))?;
                let header = encode_segment_header(&seg);
                let n = header.len() as u64;
                let (r, _) = active.write_all_at(header, 0).await;
                r.map_err(io_err("write", name))?;
                stats.bytes_written += n;
                let torn = TornTail {
                    file: seg.name.clone(),
                    offset: 0,
                    bytes_dropped: file_len as u64,
                };
                (n, Some(torn))
            }
        };
        // Make everything we return durable, including data a previous
        // process wrote but never synced, and a segment whose creation was
        // not yet durable.
        active
            .sync_data()
            .await
            .map_err(io_err("sync_data", name))?;
        stats.fsyncs += 1;
        storage.sync_dir().await.map_err(io_err("sync_dir", ""))?;
        stats.dir_syncs += 1;

        // The base segment is durable (it was synced when it was created,
        // or just now as the last segment), so the leftovers can go, in any
        // order; oldest first keeps the directory tidy.
        let mut leftovers_removed = Vec::with_capacity(leftovers.len());
        for old in leftovers {
            storage
                .remove(&old.name)
                .await
                .map_err(io_err("remove", &old.name))?;
            stats.segments_removed += 1;
            leftovers_removed.push(old.name);
        }
        if !leftovers_removed.is_empty() {
            storage.sync_dir().await.map_err(io_err("sync_dir", ""))?;
            stats.dir_syncs += 1;
        }

        let first_index = segments[0].first_index;
        let last_index = next_index - 1;
        debug_assert_eq!(entries.len() as u64, last_index + 1 - first_index);
        let wal = Wal {
            storage,
            opts,
            segments: segments.into(),
            active,
            active_len,
            buf: Vec::new(),
            last_index,
            last_term,
            durable_index: last_index,
            durable_term: last_term,
            poison: None,
            stats,
        };
        let rec = Recovered {
            entries,
            first_index,
            last_index,
            base: base_term.map(|term| (first_index - 1, term)),
            truncated_tail,
            leftovers_removed,
        };
        Ok((wal, rec))
    }

    /// Buffers entry `(term, index)`; durable only after [`Wal::sync`].
    ///
    /// Panics unless `index == last_index() + 1`, `term >= last_term()` and
    /// the payload is at most [`RECORD_PAYLOAD_BYTES_MAX`].
    pub fn append(&mut self, term: u64, index: u64, payload: &[u8]) {
        assert_eq!(
            Some(index),
            self.last_index.checked_add(1),
            "WAL append out of order"
        );
        assert!(
            term >= self.last_term,
            "WAL append: term {term} below the last term {}",
            self.last_term
        );
        assert!(
            payload.len() <= RECORD_PAYLOAD_BYTES_MAX,
            "WAL append: payload of {} bytes over the limit",
            payload.len()
        );
        encode_record(&mut self.buf, RECORD_TYPE_ENTRY, term, index, payload);
        self.last_index = index;
        self.last_term = term;
    }

    /// Writes all buffered entries with one write and makes them durable
    /// with one `sync_data` (plus a segment creation when the active segment
    /// is full). Returns the durable last index. Does nothing if nothing is
    /// buffered. Any failure poisons the WAL.
    pub async fn sync(&mut self) -> Result<u64, WalError> {
        self.check_usable()?;
        if self.buf.is_empty() {
            debug_assert_eq!(self.durable_index, self.last_index);
            return Ok(self.durable_index);
        }
        self.poison = Some(CANCELLED.into());
        let r = self.sync_inner().await;
        self.finish(r)?;
        debug_assert_eq!(self.durable_index, self.last_index);
        Ok(self.durable_index)
    }

    async fn sync_inner(&mut self) -> Result<(), WalError> {
        if self.active_len >= self.opts.segment_bytes_max
            && self.active_len > SEGMENT_HEADER_BYTES as u64
        {
            let prev = self.segments.back().expect("active segment");
            let seg = Segment::plain(prev.seq + 1, self.durable_index + 1);
            let file = create_segment(&self.storage, &seg, &mut self.stats).await?;
            self.active = file;
            self.active_len = SEGMENT_HEADER_BYTES as u64;
            self.segments.push_back(seg);
        }
        let name = &self.segments.back().expect("active segment").name;
        let buf = std::mem::take(&mut self.buf);
        let n = buf.len() as u64;
        let (r, buf) = self.active.write_all_at(buf, self.active_len).await;
        self.buf = buf;
        r.map_err(io_err("write", name))?;
        self.active_len += n;
        self.stats.bytes_written += n;
        self.active
            .sync_data()
            .await
            .map_err(io_err("sync_data", name))?;
        self.stats.fsyncs += 1;
        self.stats.syncs += 1;
        self.stats.entries_synced += self.last_index - self.durable_index;
        self.buf.clear();
        self.durable_index = self.last_index;
        self.durable_term = self.last_term;
        Ok(())
    }

    /// Removes whole segments all of whose entries are below `index` (the
    /// active segment is never removed), oldest first, syncing the directory
    /// after each so a crash leaves a contiguous log. Returns the first index
    /// still held. Any failure poisons the WAL.
    pub async fn release_before(&mut self, index: u64) -> Result<u64, WalError> {
        self.check_usable()?;
        assert!(
            index <= self.last_index.saturating_add(1),
            "release_before({index}) beyond the end of the log ({})",
            self.last_index
        );
        self.poison = Some(CANCELLED.into());
        let r = self.release_inner(index).await;
        self.finish(r)?;
        Ok(self.first_index())
    }

    async fn release_inner(&mut self, index: u64) -> Result<(), WalError> {
        while self.segments.len() > 1 && self.segments[1].first_index <= index {
            let name = self.segments[0].name.clone();
            self.storage
                .remove(&name)
                .await
                .map_err(io_err("remove", &name))?;
            self.storage
                .sync_dir()
                .await
                .map_err(io_err("sync_dir", ""))?;
            self.stats.dir_syncs += 1;
            self.stats.segments_removed += 1;
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Discards every entry after `index` (Raft's overwrite of a conflicting
    /// suffix), buffered or durable. Durable entries are removed newest
    /// segment first with a directory sync after each, then the segment
    /// holding `index + 1` is truncated and synced, so a crash at any point
    /// leaves a contiguous prefix of the old log. Afterwards
    /// `last_index() == durable_index() == min(index, old last_index())`, or
    /// only buffered entries were dropped.
    ///
    /// Panics if `index + 1 < first_index()` (released entries cannot be
    /// rewritten). Any failure poisons the WAL.
    pub async fn truncate_after(&mut self, index: u64) -> Result<(), WalError> {
        self.check_usable()?;
        assert!(
            index.saturating_add(1) >= self.first_index(),
            "truncate_after({index}) below the first index {}",
            self.first_index()
        );
        if index >= self.last_index {
            return Ok(());
        }
        if index >= self.durable_index {
            // Only buffered entries are affected.
            let keep = index - self.durable_index;
            let (off, term) = buffered_prefix(&self.buf, keep, self.durable_term);
            self.buf.truncate(off);
            self.last_index = index;
            self.last_term = term;
            return Ok(());
        }
        self.poison = Some(CANCELLED.into());
        let r = self.truncate_durable(index).await;
        self.finish(r)
    }

    async fn truncate_durable(&mut self, index: u64) -> Result<(), WalError> {
        self.buf.clear();
        self.last_index = self.durable_index;
        let target = self
            .segments
            .iter()
            .rposition(|s| s.first_index <= index + 1)
            .expect("index is not below the first segment");
        while self.segments.len() > target + 1 {
            let name = self.segments.back().expect("segment").name.clone();
            self.storage
                .remove(&name)
                .await
                .map_err(io_err("remove", &name))?;
            self.storage
                .sync_dir()
                .await
                .map_err(io_err("sync_dir", ""))?;
            self.stats.dir_syncs += 1;
            self.stats.segments_removed += 1;
            self.segments.pop_back();
        }
        let seg = self.segments.back().expect("target segment").clone();
        let mut file = self
            .storage
            .open(&seg.name)
            .await
            .map_err(io_err("open", &seg.name))?;
        let bytes = read_whole(&file, &seg.name).await?;
        let (cut, term) = if index + 1 == seg.first_index {
            let term = match self.segments.len() {
                // The log becomes empty: the term before it is known only
                // after a reset.
                1 => self.segments[0].base_term.unwrap_or(0),
                n => {
                    let prev = self.segments[n - 2].clone();
                    let prev_file = self
                        .storage
                        .open(&prev.name)
                        .await
                        .map_err(io_err("open", &prev.name))?;
                    let prev_bytes = read_whole(&prev_file, &prev.name).await?;
                    locate(&prev_bytes, &prev, index)?.1
                }
            };
            (SEGMENT_HEADER_BYTES, term)
        } else {
            locate(&bytes, &seg, index)?
        };
        file.set_len(cut as u64)
            .await
            .map_err(io_err("set_len", &seg.name))?;
        file.sync_data()
            .await
            .map_err(io_err("sync_data", &seg.name))?;
        self.stats.fsyncs += 1;
        self.active = file;
        self.active_len = cut as u64;
        self.last_index = index;
        self.last_term = term;
        self.durable_index = index;
        self.durable_term = term;
        Ok(())
    }

    /// Discards the whole log, buffered and durable, and restarts it after
    /// entry `index` of term `term` (a follower installing a snapshot at
    /// that entry). Afterwards the log holds no entries,
    /// `last_index() == durable_index() == index`, `last_term() == term`,
    /// `first_index() == index + 1`, and the next `append` must be entry
    /// `index + 1` with a term of at least `term`. Works whatever the log
    /// holds now: entries below, around or beyond `index`.
    ///
    /// Writes a base segment and makes it durable, then removes every older
    /// segment; see the module doc for the protocol and the two states a
    /// crash can leave. The caller's snapshot at `index` must already be
    /// durable.
    ///
    /// Panics if `index` is `u64::MAX`. Any failure poisons the WAL.
    pub async fn reset_after(&mut self, index: u64, term: u64) -> Result<(), WalError> {
        self.check_usable()?;
        assert!(
            index < u64::MAX,
            "reset_after({index}): no entry can follow"
        );
        self.poison = Some(CANCELLED.into());
        let r = self.reset_inner(index, term).await;
        self.finish(r)?;
        debug_assert_eq!(self.segments.len(), 1);
        debug_assert!(self.buf.is_empty());
        debug_assert_eq!((self.last_index, self.last_term), (index, term));
        debug_assert_eq!((self.durable_index, self.durable_term), (index, term));
        debug_assert_eq!(self.first_index(), index + 1);
        Ok(())
    }

    async fn reset_inner(&mut self, index: u64, term: u64) -> Result<(), WalError> {
        self.buf.clear();
        self.last_index = self.durable_index;
        self.last_term = self.durable_term;
        let seq = self.segments.back().expect("active segment").seq + 1;
        let seg = Segment::base(seq, index + 1, term);
        // The commit point: once this returns, recovery finds the new log.
        let file = create_segment(&self.storage, &seg, &mut self.stats).await?;
        self.active = file;
        self.active_len = SEGMENT_HEADER_BYTES as u64;
        self.segments.push_back(seg);
        self.last_index = index;
        self.last_term = term;
        self.durable_index = index;
        self.durable_term = term;
        // Leftovers: recovery ignores them whatever survives, so one
        // directory sync at the end is enough.
        let leftovers = self.segments.len() - 1;
        while self.segments.len() > 1 {
            let name = self.segments[0].name.clone();
            self.storage
                .remove(&name)
                .await
                .map_err(io_err("remove", &name))?;
            self.stats.segments_removed += 1;
            self.segments.pop_front();
        }
        if leftovers > 0 {
            self.storage
                .sync_dir()
                .await
                .map_err(io_err("sync_dir", ""))?;
            self.stats.dir_syncs += 1;
        }
        self.stats.resets += 1;
        Ok(())
    }

    fn check_usable(&self) -> Result<(), WalError> {
        match &self.poison {
            Some(cause) => Err(WalError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Clears the in-flight marker on success, records the cause on failure.
    fn finish<T>(&mut self, r: Result<T, WalError>) -> Result<T, WalError> {
        match &r {
            Ok(_) => self.poison = None,
            Err(e) => self.poison = Some(e.to_string()),
        }
        r
    }

    /// Index of the last appended entry (buffered or durable).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Term of the last appended entry. If the log is empty: the term given
    /// to the [`Wal::reset_after`] that started it, or 0 if unknown.
    pub fn last_term(&self) -> u64 {
        self.last_term
    }

    /// Index of the last entry known durable.
    pub fn durable_index(&self) -> u64 {
        self.durable_index
    }

    /// Index of the first entry held (or that would be held, if the log is
    /// empty): moved up by `release_before`, set by `reset_after`.
    pub fn first_index(&self) -> u64 {
        self.segments
            .front()
            .expect("at least one segment")
            .first_index
    }

    /// Whether an earlier failure made the WAL unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_some()
    }

    /// Segment file names, oldest first.
    pub fn segment_names(&self) -> Vec<String> {
        self.segments.iter().map(|s| s.name.clone()).collect()
    }

    /// Counters.
    pub fn stats(&self) -> WalStats {
        self.stats
    }
}

/// Creates a segment file with a durable header and directory entry.
async fn create_segment<S: Storage>(
    storage: &S,
    seg: &Segment,
    stats: &mut WalStats,
) -> Result<S::File, WalError> {
    let name = seg.name.as_str();
    let mut file = storage.create(name).await.map_err(io_err("create", name))?;
    let header = encode_segment_header(seg);
    let n = header.len() as u64;
    let (r, _) = file.write_all_at(header, 0).await;
    r.map_err(io_err("write", name))?;
    stats.bytes_written += n;
    file.sync_data().await.map_err(io_err("sync_data", name))?;
    stats.fsyncs += 1;
    storage.sync_dir().await.map_err(io_err("sync_dir", ""))?;
    stats.dir_syncs += 1;
    stats.segments_created += 1;
    Ok(file)
}

/// Byte length of the first `keep` records in `buf` and the term of the last
/// of them (`base_term` if `keep == 0`).
fn buffered_prefix(buf: &[u8], keep: u64, base_term: u64) -> (usize, u64) {
    let mut off = 0;
    let mut term = base_term;
    for _ in 0..keep {
        let len = u32_at(buf, off) as usize;
        term = u64_at(buf, off + 9);
        off += RECORD_HEADER_BYTES + len;
    }
    assert!(off <= buf.len(), "buffered records are well formed");
    (off, term)
}

/// Offset just past entry `index` in a segment's bytes, and its term.
fn locate(b: &[u8], seg: &Segment, index: u64) -> Result<(usize, u64), WalError> {
    if let Err(HeaderError::Damaged(r) | HeaderError::Invalid(r)) = check_segment_header(b, seg) {
        return Err(corrupt(&seg.name, 0, r));
    }
    let mut off = SEGMENT_HEADER_BYTES;
    while off < b.len() {
        let rec = parse_record(b, off).map_err(|r| corrupt(&seg.name, off as u64, r))?;
        if rec.index == index {
            return Ok((rec.end, rec.term));
        }
        off = rec.end;
    }
    Err(corrupt(
        &seg.name,
        off as u64,
        format!("entry {index} not found in its segment"),
    ))
}
