//! Helpers shared by the raftlog integration tests.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use raftlog::sim::block_on;
use raftlog::sim::SimDisk;
use raftlog::{Entry, Recovered, Wal, WalOptions, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};

pub fn opts(segment_bytes_max: u64) -> WalOptions {
    WalOptions { segment_bytes_max }
}

pub fn open(disk: &SimDisk, o: WalOptions) -> (Wal<SimDisk>, Recovered) {
    block_on(Wal::open_with(disk.clone(), o)).expect("open")
}

/// Deterministic payload for entry `index` of length `len`.
pub fn payload(index: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (index as usize).wrapping_mul(31).wrapping_add(i * 7) as u8)
        .collect()
}

/// Appends entries `from..=to` (term 1, payload length `index % 50`) and
/// syncs after every `batch` entries.
pub fn fill(wal: &mut Wal<SimDisk>, from: u64, to: u64, batch: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    for index in from..=to {
        let p = payload(index, (index % 50) as usize);
        wal.append(1, index, &p);
        out.push(Entry {
            term: 1,
            index,
            payload: p,
        });
        if (index - from + 1).is_multiple_of(batch) || index == to {
            block_on(wal.sync()).expect("sync");
        }
    }
    out
}

/// Segment header encoded from the format documentation (independently of
/// the implementation).
pub fn segment_header(seq: u64, first_index: u64) -> Vec<u8> {
    let mut h = b"KVIKWAL".to_vec();
    h.push(1);
    h.extend_from_slice(&seq.to_le_bytes());
    h.extend_from_slice(&first_index.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(h.len(), SEGMENT_HEADER_BYTES);
    h
}

/// Record encoded from the format documentation.
pub fn record(rtype: u8, term: u64, index: u64, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![rtype];
    body.extend_from_slice(&term.to_le_bytes());
    body.extend_from_slice(&index.to_le_bytes());
    body.extend_from_slice(payload);
    let mut r = (payload.len() as u32).to_le_bytes().to_vec();
    r.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    r.extend_from_slice(&body);
    assert_eq!(r.len(), RECORD_HEADER_BYTES + payload.len());
    r
}

/// A whole segment holding `entries`, plus the offset of each record.
pub fn segment(seq: u64, first_index: u64, entries: &[Entry]) -> (Vec<u8>, Vec<u64>) {
    let mut b = segment_header(seq, first_index);
    let mut offsets = Vec::new();
    for e in entries {
        offsets.push(b.len() as u64);
        b.extend_from_slice(&record(1, e.term, e.index, &e.payload));
    }
    (b, offsets)
}

pub fn entries(from: u64, to: u64) -> Vec<Entry> {
    (from..=to)
        .map(|index| Entry {
            term: 1 + index / 4,
            index,
            payload: payload(index, (index as usize * 13) % 40),
        })
        .collect()
}

/// Runs `f` for each seed; a failure or panic names the seed. Set
/// `RAFTLOG_SEED` to run one seed only.
pub fn for_seeds<T>(
    seeds: std::ops::Range<u64>,
    mut f: impl FnMut(u64) -> Result<T, String>,
) -> Vec<T> {
    let seeds: Vec<u64> = match std::env::var("RAFTLOG_SEED") {
        Ok(s) => vec![s.parse().expect("RAFTLOG_SEED is a number")],
        Err(_) => seeds.collect(),
    };
    let mut out = Vec::new();
    for seed in seeds {
        match catch_unwind(AssertUnwindSafe(|| f(seed))) {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(msg)) => panic!("seed {seed} failed: {msg} (rerun with RAFTLOG_SEED={seed})"),
            Err(_) => panic!("seed {seed} panicked (rerun with RAFTLOG_SEED={seed})"),
        }
    }
    out
}
