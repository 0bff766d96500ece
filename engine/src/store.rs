//! Revision storage: every stored version of every key, by key.
//!
//! This is the module a persistent revision store replaces later. It knows
//! revisions, records and key order, and nothing of etcd's request semantics
//! (that is `mvcc.rs`). What it holds corresponds one to one with etcd's bbolt
//! `key` bucket: one record per (revision, key) that etcd would have there.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// A (main, sub) revision: `main` is the store revision of a write command,
/// `sub` numbers the writes inside it from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// What one record says about its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Put {
        create_revision: i64,
        version: i64,
        value: Vec<u8>,
        lease: i64,
    },
    Tombstone,
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub rev: Revision,
    pub entry: Entry,
}

impl Record {
    pub fn is_tombstone(&self) -> bool {
        matches!(self.entry, Entry::Tombstone)
    }
}

/// Which keys a request names, after etcd's `mkGteRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRange<'a> {
    /// Just this key (`range_end` empty).
    Single(&'a [u8]),
    /// Every key `>= from` (`range_end == [0]`).
    From(&'a [u8]),
    /// `[from, end)`; empty when `end <= from`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::From(key),
            end => KeyRange::Between(key, end),
        }
    }
}

/// Bookkeeping estimate of one key's footprint besides its bytes, in bytes
/// (map node share, vector header).
const KEY_OVERHEAD_BYTES: u64 = 64;

/// Versions by key. Each key's records are in strictly increasing revision
/// order; a key whose records are all compacted away is removed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Store {
    keys: BTreeMap<Vec<u8>, Vec<Record>>,
    records: usize,
    bytes: u64,
}

fn record_bytes(r: &Record) -> u64 {
    let value = match &r.entry {
        Entry::Put { value, .. } => value.len(),
        Entry::Tombstone => 0,
    };
    (std::mem::size_of::<Record>() + value) as u64
}

fn key_bytes(k: &[u8]) -> u64 {
    k.len() as u64 + KEY_OVERHEAD_BYTES
}

/// The record of one key that etcd's `keyIndex.doCompact(at)` keeps, by
/// etcd's generations (runs of records each closed by a tombstone, then the
/// open one): in the first closed generation whose tombstone is at or above
/// `at` (else the open generation), the newest record at or below `at`.
///
/// This is the newest record at or below `at` except after a transaction
/// that deleted a key and then put it again (possible only through a "from
/// key" delete, which etcd's duplicate-key check misses): etcd then picks the
/// tombstone, and hashes accordingly.
fn etcd_survivor(records: &[Record], at: i64) -> Option<&Record> {
    let mut start = 0;
    let mut generation = None;
    for (i, r) in records.iter().enumerate() {
        if r.is_tombstone() {
            if r.rev.main >= at {
                generation = Some(&records[start..=i]);
                break;
            }
            start = i + 1;
        }
    }
    generation
        .unwrap_or(&records[start..])
        .iter()
        .rev()
        .find(|r| r.rev.main <= at)
}

/// Index of the newest record with `rev.main <= at`, if any.
fn newest_at(records: &[Record], at: i64) -> Option<usize> {
    records.partition_point(|r| r.rev.main <= at).checked_sub(1)
}

impl Store {
    /// Number of stored records (all versions and tombstones).
    pub fn record_count(&self) -> usize {
        self.records
    }

    /// Estimate of the memory held by keys and records, in bytes.
    pub fn approx_bytes(&self) -> u64 {
        self.bytes
    }

    /// The key's newest record at revision `at` when it is a put.
    pub fn live_at(&self, key: &[u8], at: i64) -> Option<&Record> {
        let records = self.keys.get(key)?;
        let r = &records[newest_at(records, at)?];
        (!r.is_tombstone()).then_some(r)
    }

    /// Keys of `range` that exist at revision `at`, in key order, with their
    /// live record.
    pub fn range_at<'s>(
        &'s self,
        range: KeyRange<'_>,
        at: i64,
    ) -> Box<dyn Iterator<Item = (&'s [u8], &'s Record)> + 's> {
        let live = move |(k, records): (&'s Vec<u8>, &'s Vec<Record>)| {
            let r = &records[newest_at(records, at)?];
            (!r.is_tombstone()).then_some((k.as_slice(), r))
        };
        match range {
            KeyRange::Single(k) => Box::new(self.keys.get_key_value(k).and_then(live).into_iter()),
            KeyRange::From(from) => Box::new(
                self.keys
                    .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
                    .filter_map(live),
            ),
            KeyRange::Between(from, end) => {
                if end <= from {
                    Box::new(std::iter::empty())
                } else {
                    Box::new(
                        self.keys
                            .range::<[u8], _>((Bound::Included(from), Bound::Excluded(end)))
                            .filter_map(live),
                    )
                }
            }
        }
    }

    /// Appends a record; its revision must be above every record of the key.
    pub fn append(&mut self, key: &[u8], record: Record) {
        self.bytes += record_bytes(&record);
        self.records += 1;
        match self.keys.get_mut(key) {
            Some(records) => {
                debug_assert!(
                    records.last().is_none_or(|last| last.rev < record.rev),
                    "records of a key only grow"
                );
                records.push(record);
            }
            None => {
                self.bytes += key_bytes(key);
                self.keys.insert(key.to_vec(), vec![record]);
            }
        }
    }

    /// Removes the records of `key` at main revision `main` (undo of an
    /// unfinished write command); they must be the key's newest.
    pub fn remove_main(&mut self, key: &[u8], main: i64) {
        let Some(records) = self.keys.get_mut(key) else {
            return;
        };
        while records.last().is_some_and(|r| r.rev.main == main) {
            let r = records.pop().expect("checked non-empty");
            self.bytes -= record_bytes(&r);
            self.records -= 1;
        }
        debug_assert!(
            records.last().is_none_or(|r| r.rev.main < main),
            "undo removes only the newest revision"
        );
        if records.is_empty() {
            self.keys.remove(key);
            self.bytes -= key_bytes(key);
        }
    }

    /// etcd's compaction at `at`: for each key, of the records at or below
    /// `at` only the newest survives, and that one only if it is a put or a
    /// tombstone written exactly at `at` (etcd `keyIndex.compact`). Keys left
    /// without records are dropped.
    pub fn compact(&mut self, at: i64) {
        let mut emptied = Vec::new();
        for (k, records) in self.keys.iter_mut() {
            let Some(i) = newest_at(records, at) else {
                continue;
            };
            let keep_newest = !records[i].is_tombstone() || records[i].rev.main == at;
            let cut = if keep_newest { i } else { i + 1 };
            for r in records.drain(..cut) {
                self.bytes -= record_bytes(&r);
                self.records -= 1;
            }
            if records.is_empty() {
                emptied.push(k.clone());
            }
        }
        for k in emptied {
            self.bytes -= key_bytes(&k);
            self.keys.remove(&k);
        }
    }

    /// Every record with its key, in (main, sub) revision order: the order of
    /// etcd's bbolt `key` bucket.
    pub fn records_by_revision(&self) -> Vec<(&[u8], &Record)> {
        let mut all: Vec<(&[u8], &Record)> = self
            .keys
            .iter()
            .flat_map(|(k, rs)| rs.iter().map(move |r| (k.as_slice(), r)))
            .collect();
        all.sort_unstable_by_key(|(_, r)| r.rev);
        all
    }

    /// etcd `treeIndex.Keep(at)`, as `HashByRev` uses it: for each key, the
    /// record [`etcd_survivor`] picks, when it is a put.
    pub fn keep_for_hash(&self, at: i64) -> BTreeSet<Revision> {
        self.keys
            .values()
            .filter_map(|rs| etcd_survivor(rs, at))
            .filter(|r| !r.is_tombstone())
            .map(|r| r.rev)
            .collect()
    }

    /// etcd `treeIndex.Compact(at)`'s result, as the compaction's hash uses
    /// it: for each key, the record [`etcd_survivor`] picks.
    pub fn keep_for_compaction(&self, at: i64) -> BTreeSet<Revision> {
        self.keys
            .values()
            .filter_map(|rs| etcd_survivor(rs, at))
            .map(|r| r.rev)
            .collect()
    }

    /// Checks the structural invariants; for tests.
    #[cfg(test)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut records = 0;
        let mut bytes = 0;
        for (k, rs) in &self.keys {
            if rs.is_empty() {
                return Err(format!("key {k:?} has no records"));
            }
            if rs.windows(2).any(|w| w[0].rev >= w[1].rev) {
                return Err(format!(
                    "records of {k:?} are not in increasing revision order"
                ));
            }
            records += rs.len();
            bytes += key_bytes(k) + rs.iter().map(record_bytes).sum::<u64>();
        }
        if records != self.records {
            return Err(format!(
                "record count {} but {} stored",
                self.records, records
            ));
        }
        if bytes != self.bytes {
            return Err(format!("byte estimate {} but {} stored", self.bytes, bytes));
        }
        Ok(())
    }
}
