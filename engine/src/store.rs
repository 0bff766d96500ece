//! Revision storage: every stored version of every key, by key.
//!
//! This is the module a persistent revision store replaces later. It knows
//! revisions, records and key order, and nothing of etcd's request semantics
//! (that is `mvcc.rs`). What it holds corresponds one to one with etcd's bbolt
//! `key` bucket: one record per (revision, key) that etcd would have there.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

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

    /// Whether `k` is one of the range's keys.
    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => k == key,
            KeyRange::From(from) => k >= from,
            KeyRange::Between(from, end) => k >= from && k < end,
        }
    }
}

/// Bookkeeping estimate of one key's footprint besides its bytes, in bytes
/// (map node share, vector header, shared-key header).
const KEY_OVERHEAD_BYTES: u64 = 64;

/// Bookkeeping estimate of one record's entry in the revision index, in
/// bytes (revision and key handle).
const BY_REVISION_ENTRY_BYTES: u64 = std::mem::size_of::<(Revision, Arc<[u8]>)>() as u64;

/// Versions by key, plus the same records indexed by revision (etcd's bbolt
/// `key` bucket order, which watch catch-up and the hashes walk). Each key's
/// records are in strictly increasing revision order; a key whose records
/// are all compacted away is removed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Store {
    keys: BTreeMap<Arc<[u8]>, Vec<Record>>,
    /// Every stored record's revision with its key (shared with `keys`), in
    /// increasing revision order: writes append at the end, compaction
    /// removes from the part at or below its revision.
    by_revision: Vec<(Revision, Arc<[u8]>)>,
    records: usize,
    bytes: u64,
}

fn record_bytes(r: &Record) -> u64 {
    let value = match &r.entry {
        Entry::Put { value, .. } => value.len(),
        Entry::Tombstone => 0,
    };
    (std::mem::size_of::<Record>() + value) as u64 + BY_REVISION_ENTRY_BYTES
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
        let live = move |(k, records): (&'s Arc<[u8]>, &'s Vec<Record>)| {
            let r = &records[newest_at(records, at)?];
            (!r.is_tombstone()).then_some((&k[..], r))
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

    /// Appends a record; its revision must be above every record of the key
    /// and unused by any other key.
    pub fn append(&mut self, key: &[u8], record: Record) {
        self.bytes += record_bytes(&record);
        self.records += 1;
        let rev = record.rev;
        debug_assert!(
            self.by_revision.last().is_none_or(|(last, _)| *last < rev),
            "records are appended in revision order"
        );
        let shared = match self.keys.get_mut(key) {
            Some(records) => {
                // The key's handle, from the index entry of its newest
                // record: a search over revisions, cheaper than a second
                // search over keys.
                let newest = records.last().expect("stored keys have records").rev;
                records.push(record);
                let i = self.by_revision.partition_point(|(r, _)| *r < newest);
                Arc::clone(&self.by_revision[i].1)
            }
            None => {
                self.bytes += key_bytes(key);
                let k: Arc<[u8]> = Arc::from(key);
                self.keys.insert(Arc::clone(&k), vec![record]);
                k
            }
        };
        self.by_revision.push((rev, shared));
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
        // The revision's records are the index's last entries.
        let start = self.by_revision.partition_point(|(r, _)| r.main < main);
        let mut tail = self.by_revision.split_off(start);
        tail.retain(|(_, k)| &k[..] != key);
        self.by_revision.extend(tail);
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
        // At or below `at` a key keeps at most its oldest remaining record.
        let keys = &self.keys;
        let upto = self.by_revision.partition_point(|(r, _)| r.main <= at);
        let mut above = self.by_revision.split_off(upto);
        self.by_revision
            .retain(|(rev, k)| keys.get(k).is_some_and(|rs| rs[0].rev == *rev));
        self.by_revision.append(&mut above);
    }

    /// The record of `key` at exactly `rev`; it must be stored.
    fn record_at(&self, key: &[u8], rev: Revision) -> &Record {
        let records = self.keys.get(key).expect("indexed key is stored");
        let i = records
            .binary_search_by_key(&rev, |r| r.rev)
            .expect("indexed revision is stored");
        &records[i]
    }

    /// Every record with its key, in (main, sub) revision order: the order of
    /// etcd's bbolt `key` bucket.
    pub fn records_by_revision(&self) -> impl Iterator<Item = (&[u8], &Record)> + '_ {
        self.by_revision
            .iter()
            .map(|(rev, k)| (&k[..], self.record_at(k, *rev)))
    }

    /// The records with main revision in `[from, to]`, in revision order.
    /// Cost: logarithmic in the store plus linear in the records returned.
    pub fn records_between(
        &self,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = (&[u8], &Record)> + '_ {
        let lo = self.by_revision.partition_point(|(r, _)| r.main < from);
        let hi = self.by_revision.partition_point(|(r, _)| r.main <= to);
        self.by_revision[lo..hi.max(lo)]
            .iter()
            .map(|(rev, k)| (&k[..], self.record_at(k, *rev)))
    }

    /// The records of `key` with main revision in `[from, to]`, in revision
    /// order.
    pub fn key_records_between(&self, key: &[u8], from: i64, to: i64) -> &[Record] {
        let Some(records) = self.keys.get(key) else {
            return &[];
        };
        let lo = records.partition_point(|r| r.rev.main < from);
        let hi = records.partition_point(|r| r.rev.main <= to);
        &records[lo..hi.max(lo)]
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
            for r in rs {
                let i = self.by_revision.partition_point(|(rev, _)| *rev < r.rev);
                match self.by_revision.get(i).filter(|(rev, _)| *rev == r.rev) {
                    Some((_, ik)) if ik == k => {}
                    other => {
                        return Err(format!("record {:?} of {k:?} indexed as {other:?}", r.rev))
                    }
                }
            }
            records += rs.len();
            bytes += key_bytes(k) + rs.iter().map(record_bytes).sum::<u64>();
        }
        if self.by_revision.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("revision index out of order".to_string());
        }
        if self.by_revision.len() != records {
            return Err(format!(
                "revision index holds {} records, keys {}",
                self.by_revision.len(),
                records
            ));
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
