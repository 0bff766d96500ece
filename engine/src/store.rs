//! Revision storage: every stored version of every key, by key.
//!
//! This is the module a persistent revision store replaces later. It knows
//! revisions, records and key order, and nothing of etcd's request semantics
//! (that is `mvcc.rs`). What it holds corresponds one to one with etcd's bbolt
//! `key` bucket: one record per (revision, key) that etcd would have there.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, LazyLock};

use crate::segment::{Corrupt, IndexEntry, RecordMeta, Segment, RECORD_HEADER_BYTES};

/// A (main, sub) revision: `main` is the store revision of a write command,
/// `sub` numbers the writes inside it from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// What one record says about its key, besides its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    Put {
        create_revision: i64,
        version: i64,
        lease: i64,
    },
    Tombstone,
}

/// Where a record's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Loc {
    /// Not yet in a segment: the value itself (empty for a tombstone).
    Mem(Arc<[u8]>),
    /// In a sealed segment, `len` bytes at `off`.
    Disk {
        seg: Arc<Segment>,
        off: u64,
        len: u32,
    },
}

static EMPTY: LazyLock<Arc<[u8]>> = LazyLock::new(|| Arc::from(&[][..]));

impl Loc {
    /// An in-memory value; empty values share one allocation.
    pub fn mem(value: &[u8]) -> Loc {
        if value.is_empty() {
            Loc::Mem(EMPTY.clone())
        } else {
            Loc::Mem(Arc::from(value))
        }
    }

    pub fn is_mem(&self) -> bool {
        matches!(self, Loc::Mem(_))
    }

    /// Bytes the record of a `key_len`-byte key takes in a segment file.
    pub fn stored_bytes(&self, key_len: usize) -> u64 {
        match self {
            Loc::Mem(v) => (RECORD_HEADER_BYTES + key_len + v.len()) as u64,
            Loc::Disk { len, .. } => *len as u64,
        }
    }
}

/// One version of a key.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub rev: Revision,
    pub entry: Entry,
    /// crc32c of the record's etcd bucket value (`hash::bucket_value`), so
    /// that hashes never read values back.
    pub hash_crc: u32,
    pub loc: Loc,
}

impl Record {
    pub fn is_tombstone(&self) -> bool {
        matches!(self.entry, Entry::Tombstone)
    }

    /// Length of the value, from memory or the record's on-disk length.
    pub fn value_len(&self, key_len: usize) -> usize {
        match &self.loc {
            Loc::Mem(v) => v.len(),
            Loc::Disk { len, .. } => (*len as usize).saturating_sub(RECORD_HEADER_BYTES + key_len),
        }
    }

    pub fn meta(&self) -> RecordMeta {
        RecordMeta {
            main: self.rev.main,
            sub: self.rev.sub,
            put: match self.entry {
                Entry::Put {
                    create_revision,
                    version,
                    lease,
                } => Some((create_revision, version, lease)),
                Entry::Tombstone => None,
            },
        }
    }
}

/// A record to write into a new segment, from memory or copied from an
/// older segment.
#[derive(Debug, Clone)]
pub struct FlushItem {
    pub(crate) key: Arc<[u8]>,
    pub(crate) meta: RecordMeta,
    pub(crate) hash_crc: u32,
    pub(crate) loc: Loc,
}

impl FlushItem {
    /// Size of the record once written, in bytes.
    pub fn record_bytes(&self) -> u64 {
        self.loc.stored_bytes(self.key.len())
    }

    /// Appends the record to `enc`; returns its (offset, length) there. A
    /// copied record is checked first.
    pub fn encode(&self, enc: &mut crate::segment::SegmentEncoder) -> Result<(u64, u32), Corrupt> {
        match &self.loc {
            Loc::Mem(v) => Ok(enc.push(&self.key, &self.meta, self.hash_crc, v)),
            Loc::Disk { seg, off, len } => {
                let r = seg.record(*off, *len, self.meta.main, self.meta.sub)?;
                Ok(enc.push_copy(&self.key, &self.meta, self.hash_crc, r))
            }
        }
    }
}

/// A record written into a new segment, with its (offset, length) there.
pub type Placed = (FlushItem, u64, u32);

/// Per live segment: its file and the bytes of it still referenced.
#[derive(Debug, Clone)]
pub(crate) struct SegStat {
    pub seg: Arc<Segment>,
    pub live_bytes: u64,
    /// Bytes of compacted-away tombstones kept to shadow older versions
    /// (see [`Store::live_items_of`]); they count as used space.
    pub retained_bytes: u64,
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

/// Versions by key, plus the same records indexed by revision (etcd's bbolt
/// `key` bucket order, which watch catch-up and the hashes walk). Each key's
/// records are in strictly increasing revision order; a key whose records
/// are all compacted away is removed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Store {
    keys: BTreeMap<Arc<[u8]>, Vec<Record>>,
    /// Live segments by id.
    segments: BTreeMap<u64, SegStat>,
    /// Bytes of records not yet in a segment, as they will be written.
    mem_bytes: u64,
    /// Records not yet in a segment.
    mem_records: usize,
    /// The first damage a read ran into, for the caller to take.
    corrupt: RefCell<Option<Corrupt>>,
    /// Every stored record's revision with its key (shared with `keys`), in
    /// increasing revision order: writes append at the end, compaction
    /// removes from the part at or below its revision.
    by_revision: Vec<(Revision, Arc<[u8]>)>,
    records: usize,
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

    /// Bookkeeping for a record entering the store.
    fn counted(&mut self, key: &[u8], r: &Record) {
        self.records += 1;
        match &r.loc {
            Loc::Mem(_) => {
                self.mem_bytes += r.loc.stored_bytes(key.len());
                self.mem_records += 1;
            }
            Loc::Disk { seg, len, .. } => {
                if let Some(s) = self.segments.get_mut(&seg.id()) {
                    s.live_bytes += *len as u64;
                }
            }
        }
    }

    /// Bookkeeping for a record leaving the store.
    fn uncounted(
        records: &mut usize,
        mem: (&mut u64, &mut usize),
        segments: &mut BTreeMap<u64, SegStat>,
        key: &[u8],
        r: &Record,
    ) {
        *records -= 1;
        match &r.loc {
            Loc::Mem(_) => {
                *mem.0 -= r.loc.stored_bytes(key.len());
                *mem.1 -= 1;
            }
            Loc::Disk { seg, len, .. } => {
                if let Some(s) = segments.get_mut(&seg.id()) {
                    s.live_bytes -= *len as u64;
                }
            }
        }
    }

    /// Appends a record; its revision must be above every record of the key
    /// and unused by any other key.
    pub fn append(&mut self, key: &[u8], record: Record) {
        self.counted(key, &record);
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
            Self::uncounted(
                &mut self.records,
                (&mut self.mem_bytes, &mut self.mem_records),
                &mut self.segments,
                key,
                &r,
            );
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
        }
    }

    /// etcd's compaction at `at`: for each key, of the records at or below
    /// `at` only the newest survives, and that one only if it is a put or a
    /// tombstone written exactly at `at` (etcd `keyIndex.compact`). Keys left
    /// without records are dropped. Idempotent, and compacting at `a` then
    /// at `b > a` equals compacting at `b`: a store rebuilt from segments
    /// that still hold dead records is compacted again on load.
    pub fn compact(&mut self, at: i64) {
        let mut emptied = Vec::new();
        for (k, records) in self.keys.iter_mut() {
            let Some(i) = newest_at(records, at) else {
                continue;
            };
            let keep_newest = !records[i].is_tombstone() || records[i].rev.main == at;
            let cut = if keep_newest { i } else { i + 1 };
            for r in records.drain(..cut) {
                Self::uncounted(
                    &mut self.records,
                    (&mut self.mem_bytes, &mut self.mem_records),
                    &mut self.segments,
                    k,
                    &r,
                );
            }
            if records.is_empty() {
                emptied.push(k.clone());
            }
        }
        for k in emptied {
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

    // ---- the persistent side ----

    /// The value of a put record (empty for a tombstone). A value whose
    /// on-disk checks fail reads as empty and the damage is kept for
    /// [`Store::take_corruption`]: the caller must not serve the result.
    pub fn value<'r>(&self, r: &'r Record) -> &'r [u8] {
        match &r.loc {
            Loc::Mem(v) => v,
            Loc::Disk { seg, off, len } => match seg.value(*off, *len, r.rev.main, r.rev.sub) {
                Ok(v) => v,
                Err(e) => {
                    self.corrupt.borrow_mut().get_or_insert(e);
                    &[]
                }
            },
        }
    }

    /// Whether a read met damage not yet taken.
    pub fn has_corruption(&self) -> bool {
        self.corrupt.borrow().is_some()
    }

    /// The first damage a read met since the last call.
    pub fn take_corruption(&self) -> Option<Corrupt> {
        self.corrupt.borrow_mut().take()
    }

    /// Bytes and count of the records not yet in a segment.
    pub fn mem_usage(&self) -> (u64, usize) {
        (self.mem_bytes, self.mem_records)
    }

    /// The live segments with the bytes of each still referenced.
    pub fn segment_stats(&self) -> impl Iterator<Item = &SegStat> + '_ {
        self.segments.values()
    }

    /// The records not yet in a segment (all above revision `after`), in
    /// revision order.
    pub fn mem_items(&self, after: i64) -> Vec<FlushItem> {
        let from = self.by_revision.partition_point(|(r, _)| r.main <= after);
        let items: Vec<FlushItem> = self.by_revision[from..]
            .iter()
            .map(|(rev, k)| {
                let r = self.record_at(k, *rev);
                FlushItem {
                    key: Arc::clone(k),
                    meta: r.meta(),
                    hash_crc: r.hash_crc,
                    loc: r.loc.clone(),
                }
            })
            .collect();
        debug_assert!(items.iter().all(|i| i.loc.is_mem()));
        debug_assert_eq!(
            items.len(),
            self.mem_records,
            "every memory record above `after`"
        );
        items
    }

    /// The records of segment `id` to copy elsewhere: the live ones, and
    /// every tombstone, live or not. A compacted-away tombstone still
    /// shadows older versions of its key that may sit, dead too, in other
    /// segments; a store rebuilt from the segments re-runs the compaction,
    /// which would bring those back if the tombstone were gone.
    pub fn live_items_of(&self, id: u64) -> Result<Vec<FlushItem>, Corrupt> {
        let Some(stat) = self.segments.get(&id) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in stat.seg.index()? {
            let rev = Revision {
                main: e.meta.main,
                sub: e.meta.sub,
            };
            let live = self.keys.get_key_value(&e.key[..]).and_then(|(k, records)| {
                let i = records.binary_search_by_key(&rev, |r| r.rev).ok()?;
                let r = &records[i];
                matches!(&r.loc, Loc::Disk { seg, off, .. } if seg.id() == id && *off == e.offset)
                    .then(|| FlushItem {
                        key: Arc::clone(k),
                        meta: r.meta(),
                        hash_crc: r.hash_crc,
                        loc: r.loc.clone(),
                    })
            });
            match live {
                Some(item) => out.push(item),
                None if e.meta.put.is_none() => out.push(FlushItem {
                    key: Arc::from(&e.key[..]),
                    meta: e.meta,
                    hash_crc: e.hash_crc,
                    loc: Loc::Disk {
                        seg: Arc::clone(&stat.seg),
                        off: e.offset,
                        len: e.len,
                    },
                }),
                None => {}
            }
        }
        Ok(out)
    }

    /// Makes `seg` live and points each record that `placed` names at its
    /// copy there, if the record still exists and is still where the copy
    /// came from.
    pub fn install(&mut self, seg: Arc<Segment>, placed: &[Placed]) {
        assert!(
            !self.segments.contains_key(&seg.id()),
            "segment {} installed twice",
            seg.id()
        );
        self.segments.insert(
            seg.id(),
            SegStat {
                seg: Arc::clone(&seg),
                live_bytes: 0,
                retained_bytes: 0,
            },
        );
        for (item, off, len) in placed {
            let rev = Revision {
                main: item.meta.main,
                sub: item.meta.sub,
            };
            let found = self.keys.get_mut(&item.key[..]).and_then(|records| {
                let i = records.binary_search_by_key(&rev, |r| r.rev).ok()?;
                Some(&mut records[i])
            });
            let Some(r) = found else {
                if item.meta.put.is_none() && !item.loc.is_mem() {
                    // A dead tombstone carried forward.
                    self.segments
                        .get_mut(&seg.id())
                        .expect("just inserted")
                        .retained_bytes += *len as u64;
                }
                continue;
            };
            let same = match (&r.loc, &item.loc) {
                (Loc::Mem(a), Loc::Mem(b)) => Arc::ptr_eq(a, b) || a.is_empty() && b.is_empty(),
                (
                    Loc::Disk {
                        seg: a, off: ao, ..
                    },
                    Loc::Disk {
                        seg: b, off: bo, ..
                    },
                ) => a.id() == b.id() && ao == bo,
                _ => false,
            };
            if !same {
                continue;
            }
            let old = std::mem::replace(
                &mut r.loc,
                Loc::Disk {
                    seg: Arc::clone(&seg),
                    off: *off,
                    len: *len,
                },
            );
            match old {
                Loc::Mem(_) => {
                    self.mem_bytes -= old.stored_bytes(item.key.len());
                    self.mem_records -= 1;
                }
                Loc::Disk { seg: from, len, .. } => {
                    if let Some(s) = self.segments.get_mut(&from.id()) {
                        s.live_bytes -= len as u64;
                    }
                }
            }
            self.segments
                .get_mut(&seg.id())
                .expect("just inserted")
                .live_bytes += *len as u64;
        }
    }

    /// Forgets retired segments, whose live records were all copied (or
    /// have since been compacted away). A segment without live records
    /// stays listed until a checkpoint retires it, so that its file is
    /// deleted then.
    pub fn retire(&mut self, ids: &[u64]) {
        for id in ids {
            let s = self.segments.remove(id);
            debug_assert!(
                s.as_ref().is_none_or(|s| s.live_bytes == 0),
                "a retired segment still holds live records: {s:?}"
            );
        }
    }

    /// Rebuilds a store from sealed segments, then applies the compaction
    /// at `compact_rev` again (segments may hold records it removed).
    /// Reads each segment's index only; values stay on disk.
    pub fn load(segments: Vec<Arc<Segment>>, compact_rev: i64) -> Result<Store, Corrupt> {
        let mut store = Store::default();
        let mut all: Vec<(IndexEntry, Arc<Segment>)> = Vec::new();
        for seg in segments {
            for e in seg.index()? {
                all.push((e, Arc::clone(&seg)));
            }
            store.segments.insert(
                seg.id(),
                SegStat {
                    seg,
                    live_bytes: 0,
                    retained_bytes: 0,
                },
            );
        }
        all.sort_by(|(a, _), (b, _)| {
            (&a.key, a.meta.main, a.meta.sub).cmp(&(&b.key, b.meta.main, b.meta.sub))
        });
        let mut key: Option<Arc<[u8]>> = None;
        for (e, seg) in all {
            let rev = Revision {
                main: e.meta.main,
                sub: e.meta.sub,
            };
            let r = Record {
                rev,
                entry: match e.meta.put {
                    Some((create_revision, version, lease)) => Entry::Put {
                        create_revision,
                        version,
                        lease,
                    },
                    None => Entry::Tombstone,
                },
                hash_crc: e.hash_crc,
                loc: Loc::Disk {
                    off: e.offset,
                    len: e.len,
                    seg: Arc::clone(&seg),
                },
            };
            let k = match &key {
                Some(k) if k[..] == e.key[..] => Arc::clone(k),
                _ => {
                    let k: Arc<[u8]> = Arc::from(&e.key[..]);
                    store.keys.insert(Arc::clone(&k), Vec::new());
                    key = Some(Arc::clone(&k));
                    k
                }
            };
            store.counted(&k, &r);
            let records = store.keys.get_mut(&k).expect("inserted above");
            if records.last().is_some_and(|l| l.rev >= rev) {
                return Err(Corrupt {
                    file: crate::segment::segment_name(seg.id()),
                    offset: e.offset,
                    what: "a revision of a key is stored twice",
                });
            }
            records.push(r);
            store.by_revision.push((rev, k));
        }
        store.by_revision.sort_unstable_by_key(|(rev, _)| *rev);
        if store.by_revision.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Corrupt {
                file: "revision store".to_string(),
                offset: 0,
                what: "one revision is stored for two keys",
            });
        }
        if compact_rev > 0 {
            store.compact(compact_rev);
        }
        Ok(store)
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
        let mut mem = (0u64, 0usize);
        let mut live: BTreeMap<u64, u64> = BTreeMap::new();
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
            for r in rs {
                match &r.loc {
                    Loc::Mem(_) => {
                        mem.0 += r.loc.stored_bytes(k.len());
                        mem.1 += 1;
                    }
                    Loc::Disk { seg, len, .. } => {
                        if !self.segments.contains_key(&seg.id()) {
                            return Err(format!("record {:?} in unlisted {seg:?}", r.rev));
                        }
                        *live.entry(seg.id()).or_default() += *len as u64;
                    }
                }
            }
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
        if mem != (self.mem_bytes, self.mem_records) {
            return Err(format!(
                "memory tail counted as {:?} but holds {mem:?}",
                (self.mem_bytes, self.mem_records)
            ));
        }
        for (id, s) in &self.segments {
            let want = live.get(id).copied().unwrap_or(0);
            if s.live_bytes != want {
                return Err(format!(
                    "segment {id} counts {} live bytes, records reference {want}",
                    s.live_bytes
                ));
            }
        }
        Ok(())
    }
}
