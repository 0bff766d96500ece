//! etcd's MVCC semantics over the revision store: revisions, puts, deletes,
//! transactions, ranges, compaction, the key-value hashes, leases (the
//! deterministic part: grant, revoke, key attachment) and watch events.
//!
//! Each rule cites the etcd code it reproduces (`server/etcdserver/txn/*.go`,
//! `server/storage/mvcc/*.go`, `server/lease/lessor.go`).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::gosort;
use crate::hash::{self, KvHasher};
use crate::store::{Entry, KeyRange, Loc, Record, Revision, Store};
use crate::types::{
    AlarmMember, Applied, Command, CompactionRequest, Compare, CompareResult, CompareTarget,
    DeleteRangeRequest, DeleteRangeResponse, Event, EventKind, HashKv, KeyValue, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget,
    TxnRequest, TxnResponse, LEASE_TTL_MAX_SECS,
};
use crate::validate::{txn_depth, TXN_DEPTH_MAX};

/// How many compaction hashes etcd keeps for `HashKV` (`hashStorageMaxSize`),
/// in hashes.
const COMPACTION_HASHES_MAX: usize = 10;

/// etcd's `compactMainRev` before any compaction.
const NEVER_COMPACTED: i64 = -1;

/// One granted lease: etcd's `lessor.leaseMap` entry, minus the clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lease {
    /// The TTL granted, in seconds.
    pub(crate) ttl_secs: i64,
    /// etcd `Lease.itemSet`: the keys attached, which are exactly the live
    /// keys whose current version carries this lease id.
    pub(crate) keys: BTreeSet<Vec<u8>>,
}

/// The MVCC state machine of one keyspace.
///
/// Deterministic: the same commands applied in the same order give the same
/// state and the same answers. All writes go through [`Mvcc::apply`].
#[derive(Debug, Clone)]
pub struct Mvcc {
    pub(crate) store: Store,
    /// etcd `currentRev`: the revision of the last write command (1 when
    /// nothing was written).
    pub(crate) current_rev: i64,
    /// etcd `compactMainRev`: -1 until the first compaction.
    pub(crate) compact_rev: i64,
    /// Keys that exist at `current_rev`.
    pub(crate) live_keys: usize,
    /// Granted leases by id (etcd's lessor, minus expiry, which the server
    /// drives through `Command::LeaseRevoke`).
    pub(crate) leases: BTreeMap<i64, Lease>,
    /// Hashes computed by compactions, oldest first, as etcd caches them.
    pub(crate) compaction_hashes: Vec<HashKv>,
    /// The first revision whose events [`Mvcc::take_events`] has not handed
    /// out yet; events are built from the store when taken.
    pub(crate) events_from: i64,
    /// Events not yet taken that a compaction would have made unbuildable,
    /// built before it ran.
    events_built: Vec<Event>,
    /// Raised alarms, in the order raised (etcd's alarm store).
    pub(crate) alarms: Vec<AlarmMember>,
    /// Checkpoint bookkeeping (`checkpoint.rs`).
    pub(crate) persist: crate::checkpoint::Persist,
}

impl Mvcc {
    /// Raised alarms, in the order raised.
    pub fn alarms(&self) -> &[AlarmMember] {
        &self.alarms
    }

    /// etcd's alarm store: ACTIVATE and DEACTIVATE act on exactly the pair
    /// given, and NONE (0) is never raised.
    fn apply_alarm(&mut self, activate: bool, member_id: u64, alarm: i32) -> Vec<AlarmMember> {
        let m = AlarmMember { member_id, alarm };
        if activate {
            if alarm == 0 {
                return Vec::new();
            }
            if !self.alarms.contains(&m) {
                self.alarms.push(m);
            }
            vec![m]
        } else {
            match self.alarms.iter().position(|a| *a == m) {
                Some(i) => vec![self.alarms.remove(i)],
                None => Vec::new(),
            }
        }
    }
}

impl Default for Mvcc {
    fn default() -> Self {
        Mvcc::new()
    }
}

/// One write command in progress: everything it writes lands at main
/// revision `begin + 1`, sub revisions counting from 0.
struct Write {
    begin: i64,
    /// etcd `len(tw.changes)`: records written so far, also the next sub.
    changes: i64,
    touched: Vec<Vec<u8>>,
    /// Lease attachment moves made so far as (key, from, to), 0 for none;
    /// undone in reverse by a rollback.
    attachments: Vec<(Vec<u8>, i64, i64)>,
}

impl Write {
    fn new(begin: i64) -> Write {
        Write {
            begin,
            changes: 0,
            touched: Vec::new(),
            attachments: Vec::new(),
        }
    }

    fn rev(&self) -> i64 {
        self.begin + 1
    }

    /// etcd `storeTxnWrite.Range`'s current revision: the new revision once
    /// something was written, the previous one before.
    fn read_rev(&self) -> i64 {
        if self.changes > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }
}

/// Which fields of a record [`to_kv`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fields {
    All,
    /// Everything but the value: reading a value may touch the disk, so
    /// writes read it only when the request returns or reuses it.
    NoValue,
    /// etcd's keys-only fast path reads the index only: no value and no
    /// lease (txn/range.go FastKeysOnly, kvstore_txn.go rangeKeys).
    KeysOnly,
}

fn to_kv(store: &Store, key: &[u8], r: &Record, fields: Fields) -> KeyValue {
    match &r.entry {
        Entry::Put {
            create_revision,
            version,
            lease,
        } => KeyValue {
            key: key.to_vec(),
            create_revision: *create_revision,
            mod_revision: r.rev.main,
            version: *version,
            value: if fields == Fields::All {
                store.value(r).to_vec()
            } else {
                Vec::new()
            },
            lease: if fields == Fields::KeysOnly {
                0
            } else {
                *lease
            },
        },
        Entry::Tombstone => unreachable!("live records are puts"),
    }
}

/// etcd `IsDefaultOrdering`: results already come in ascending key order.
fn is_default_ordering(target: SortTarget, order: SortOrder) -> bool {
    order == SortOrder::None || (target == SortTarget::Key && order == SortOrder::Ascend)
}

/// etcd `HasRevisionFilters`.
fn has_revision_filters(r: &RangeRequest) -> bool {
    r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
}

/// etcd's `kvSortBy*` `Less`, subtraction included.
fn sort_less(target: SortTarget) -> fn(&KeyValue, &KeyValue) -> bool {
    match target {
        SortTarget::Key => |a, b| a.key < b.key,
        SortTarget::Version => |a, b| a.version.wrapping_sub(b.version) < 0,
        SortTarget::Create => |a, b| a.create_revision.wrapping_sub(b.create_revision) < 0,
        SortTarget::Mod => |a, b| a.mod_revision.wrapping_sub(b.mod_revision) < 0,
        SortTarget::Value => |a, b| a.value < b.value,
    }
}

/// etcd `compareKV`.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
    };
    match c.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

impl Mvcc {
    /// A fresh store: current revision 1, never compacted.
    pub fn new() -> Mvcc {
        Mvcc {
            store: Store::default(),
            current_rev: 1,
            compact_rev: NEVER_COMPACTED,
            live_keys: 0,
            leases: BTreeMap::new(),
            compaction_hashes: Vec::new(),
            events_from: 2,
            events_built: Vec::new(),
            alarms: Vec::new(),
            persist: Default::default(),
        }
    }

    /// The revision of the last write; 1 on a fresh store.
    pub fn current_revision(&self) -> i64 {
        self.current_rev
    }

    /// The last compaction's revision; 0 when never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev.max(0)
    }

    /// Whether lease `id` is granted (and not revoked): a put may attach it.
    pub fn lease_exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// The TTL lease `id` was granted with, in seconds; `None` when it does
    /// not exist.
    pub fn lease_ttl(&self, id: i64) -> Option<i64> {
        self.leases.get(&id).map(|l| l.ttl_secs)
    }

    /// The keys attached to lease `id`, in key order (the order a revoke
    /// deletes them in); empty when the lease does not exist.
    pub fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every granted lease as (id, granted TTL in seconds), by id.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.leases
            .iter()
            .map(|(id, l)| (*id, l.ttl_secs))
            .collect()
    }

    /// The events of every write applied since the last call (or since
    /// [`Mvcc::skip_events`]), in (revision, sub-revision) order, each with
    /// its `prev_kv` (see [`Event`]). The server calls it after each
    /// [`Mvcc::apply`] to feed synced watchers.
    pub fn take_events(&mut self) -> Vec<Event> {
        let mut out = std::mem::take(&mut self.events_built);
        if self.events_from <= self.current_rev {
            out.extend(
                self.store
                    .records_between(self.events_from, self.current_rev)
                    .map(|(k, r)| self.event_of(k, r)),
            );
        }
        self.events_from = self.current_rev + 1;
        out
    }

    /// Drops the events [`Mvcc::take_events`] would return, without building
    /// them: for replaying the log at startup, when no watcher exists yet.
    pub fn skip_events(&mut self) {
        self.events_built.clear();
        self.events_from = self.current_rev + 1;
    }

    /// Historical events for watch catch-up (etcd `syncWatchers` reading the
    /// `key` bucket): every change of a key in the range with revision in
    /// `[start_revision, end_revision]`, in (revision, sub-revision) order,
    /// `prev_kv` filled as [`Event`] says. `range_end` as in
    /// [`RangeRequest`]; `end_revision` above the current revision reads up
    /// to the current one; `start_revision` 0 reads from 1 (etcd's "from
    /// now" is the server's to resolve).
    ///
    /// Returns whole revisions only: it stops at the first revision boundary
    /// where at least `events_max` events (and at least one) were collected,
    /// so one revision's events are never split and `events_max` may be
    /// exceeded. The second value is the revision to continue from: the
    /// first one not returned (`end + 1` when everything up to `end` was).
    ///
    /// `Err(Compacted)` when `start_revision` is below the compaction
    /// revision, or negative (etcd cancels such a watch as compacted even on
    /// a store never compacted). etcd serves a watch that starts exactly at
    /// the compaction revision (`watchableStore.syncWatchers`: `minRev <
    /// compactRev` cancels), and so does this.
    ///
    /// Cost: logarithmic in the store plus linear in the changes (of any
    /// key) inside the window read; for a single key, in that key's changes.
    pub fn events(
        &self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
        end_revision: i64,
        events_max: usize,
    ) -> Result<(Vec<Event>, i64), Error> {
        if start_revision < 0 || start_revision < self.compact_rev {
            return Err(Error::Compacted);
        }
        let start = start_revision.max(1);
        let end = end_revision.min(self.current_rev);
        let done = start.max(end.saturating_add(1));
        if start > end {
            return Ok((Vec::new(), done));
        }
        let range = KeyRange::new(key, range_end);
        let changes: Box<dyn Iterator<Item = (&[u8], &Record)>> = match range {
            KeyRange::Single(k) => Box::new(
                self.store
                    .key_records_between(k, start, end)
                    .iter()
                    .map(move |r| (k, r)),
            ),
            _ => Box::new(
                self.store
                    .records_between(start, end)
                    .filter(|(k, _)| range.contains(k)),
            ),
        };
        let mut out: Vec<Event> = Vec::new();
        for (k, r) in changes {
            if out.len() >= events_max.max(1)
                && out.last().is_some_and(|e| e.kv.mod_revision != r.rev.main)
            {
                return Ok((out, r.rev.main));
            }
            out.push(self.event_of(k, r));
        }
        if self.store.has_corruption() {
            return Err(Error::Corrupt);
        }
        Ok((out, done))
    }

    /// Keys that exist at the current revision.
    pub fn key_count(&self) -> usize {
        self.live_keys
    }

    /// A read outside the log (etcd `txn.Range`): at `req.revision`, or at
    /// the current revision when that is `<= 0`.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, Error> {
        let out = self.range_at(req, self.current_rev);
        if self.store.has_corruption() {
            return Err(Error::Corrupt);
        }
        out
    }

    /// Applies one log entry. Deterministic; a command that fails changes
    /// nothing and takes no revision. Expects commands that passed the
    /// `validate_*` functions (as etcd's API layer guarantees), but stays
    /// panic-free and deterministic on any command.
    pub fn apply(&mut self, cmd: &Command) -> Result<Applied, Error> {
        let rev_before = self.current_rev;
        let records_before = self.store.record_count();
        let out = match cmd {
            Command::Put(p) => self.apply_put(p).map(Applied::Put),
            Command::DeleteRange(d) => Ok(Applied::DeleteRange(self.apply_delete(d))),
            Command::Txn(t) => self.apply_txn(t).map(Applied::Txn),
            Command::Compact(c) => self.apply_compact(c).map(|()| Applied::Compact),
            Command::LeaseGrant { id, ttl_secs } => {
                self.apply_lease_grant(*id, *ttl_secs)
                    .map(|()| Applied::LeaseGrant {
                        id: *id,
                        ttl_secs: *ttl_secs,
                    })
            }
            Command::LeaseRevoke { id } => {
                self.apply_lease_revoke(*id).map(|()| Applied::LeaseRevoke)
            }
            Command::Alarm {
                activate,
                member_id,
                alarm,
            } => Ok(Applied::Alarm(
                self.apply_alarm(*activate, *member_id, *alarm),
            )),
        };
        debug_assert!(
            self.current_rev == rev_before || self.current_rev == rev_before + 1,
            "a command takes at most one revision"
        );
        debug_assert!(
            out.is_ok() || self.current_rev == rev_before,
            "a failed command takes no revision"
        );
        debug_assert!(
            matches!(cmd, Command::Compact(_)) || self.store.record_count() >= records_before,
            "only compaction removes records"
        );
        debug_assert!(
            (self.store.record_count() > records_before) == (self.current_rev > rev_before)
                || matches!(cmd, Command::Compact(_)),
            "a command takes a revision exactly when it writes"
        );
        debug_assert!(
            self.compact_rev <= self.current_rev,
            "compaction never passes the current revision"
        );
        if self.store.has_corruption() {
            // A value read back from disk failed its checks: the command's
            // outcome is unknown, and the caller must stop applying.
            return Err(Error::Corrupt);
        }
        out
    }

    /// etcd `HashByRev` (Maintenance.HashKV): the hash of every revision up
    /// to `revision` (0: the current one), as etcd's `kvHasher` filters them.
    /// Like etcd, a revision a recent compaction hashed answers that cached
    /// hash, whose `compact_revision` is the compaction before it.
    pub fn hash_kv(&self, revision: i64) -> Result<HashKv, Error> {
        if let Some(h) = self
            .compaction_hashes
            .iter()
            .find(|h| h.hash_revision == revision)
        {
            return Ok(*h);
        }
        if revision > 0 && revision < self.compact_rev {
            return Err(Error::Compacted);
        }
        if revision > 0 && revision > self.current_rev {
            return Err(Error::FutureRev);
        }
        let rev = if revision == 0 {
            self.current_rev
        } else {
            revision
        };
        let keep = self.store.keep_for_hash(rev);
        let mut h = KvHasher::new(self.compact_rev, rev, &keep);
        for (k, r) in self.store.records_by_revision() {
            if r.rev.main > rev {
                break;
            }
            h.write(k, r);
        }
        Ok(HashKv {
            hash: h.sum(),
            compact_revision: self.compact_rev,
            hash_revision: rev,
        })
    }

    /// CRC-32C over everything stored (the bucket name, then every record's
    /// etcd bbolt key and value in revision order). etcd's `Maintenance.Hash`
    /// also covers its other bbolt buckets (meta, members, leases, auth), so
    /// this value is kvik's own and is not comparable with etcd's.
    pub fn hash(&self) -> u32 {
        hash::hash_all(self.store.records_by_revision())
    }

    /// Full structural check (O(stored records)); for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        self.store.check_invariants()?;
        let live = self
            .store
            .range_at(KeyRange::From(&[]), self.current_rev)
            .count();
        if live != self.live_keys {
            return Err(format!(
                "live key count {} but {} keys live",
                self.live_keys, live
            ));
        }
        if self.current_rev < 1 || self.compact_rev > self.current_rev {
            return Err(format!(
                "revisions out of order: current {} compact {}",
                self.current_rev, self.compact_rev
            ));
        }
        for (_, r) in self.store.records_by_revision() {
            if r.rev.main > self.current_rev || r.rev.main < 2 {
                return Err(format!(
                    "record at revision {:?} outside (1, {}]",
                    r.rev, self.current_rev
                ));
            }
        }
        // Lease attachments are exactly the live keys carrying a lease.
        let mut attached: BTreeMap<i64, BTreeSet<Vec<u8>>> = BTreeMap::new();
        for (k, r) in self.store.range_at(KeyRange::From(&[]), self.current_rev) {
            if let Entry::Put { lease, .. } = &r.entry {
                if *lease != 0 {
                    attached.entry(*lease).or_default().insert(k.to_vec());
                }
            }
        }
        for (id, l) in &self.leases {
            let want = attached.remove(id).unwrap_or_default();
            if l.keys != want {
                return Err(format!(
                    "lease {id} has keys {:?}, live keys carrying it {want:?}",
                    l.keys
                ));
            }
        }
        if let Some((id, keys)) = attached.into_iter().next() {
            return Err(format!(
                "keys {keys:?} carry lease {id}, which does not exist"
            ));
        }
        if self.events_from > self.current_rev + 1 {
            return Err(format!(
                "events taken through {} beyond revision {}",
                self.events_from - 1,
                self.current_rev
            ));
        }
        Ok(())
    }

    /// The watch event etcd sends for record `r` of `key` (see [`Event`]).
    fn event_of(&self, key: &[u8], r: &Record) -> Event {
        let (kind, kv) = match &r.entry {
            Entry::Put { .. } => (EventKind::Put, to_kv(&self.store, key, r, Fields::All)),
            // etcd stores a tombstone as KeyValue{key} and sets only the
            // mod revision when it makes the event (watchable_store_txn.go
            // End, watchable_store.go kvsToEvents).
            Entry::Tombstone => (
                EventKind::Delete,
                KeyValue {
                    key: key.to_vec(),
                    mod_revision: r.rev.main,
                    ..KeyValue::default()
                },
            ),
        };
        // etcd's watch server (v3rpc/watch.go sendLoop): no prev_kv for a
        // create event; otherwise a Range at mod_revision - 1, which fails
        // as compacted for an event at the compaction revision.
        let create = kind == EventKind::Put && kv.create_revision == kv.mod_revision;
        let prev_kv = if create || r.rev.main - 1 < self.compact_rev {
            None
        } else {
            self.store
                .live_at(key, r.rev.main - 1)
                .map(|p| to_kv(&self.store, key, p, Fields::All))
        };
        Event { kind, kv, prev_kv }
    }

    // ---- reads ----

    /// etcd `executeRange` on a view whose current revision is `cur`.
    fn range_at(&self, req: &RangeRequest, cur: i64) -> Result<RangeResponse, Error> {
        // kvstore_txn.go rangeKeys: future first, then compacted.
        if req.revision > cur {
            return Err(Error::FutureRev);
        }
        let at = if req.revision <= 0 { cur } else { req.revision };
        if at < self.compact_rev {
            return Err(Error::Compacted);
        }
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut resp = RangeResponse {
            header_revision: cur,
            ..RangeResponse::default()
        };
        if req.count_only {
            resp.count = self.store.range_at(range, at).count() as i64;
            return Ok(resp);
        }

        let fast_keys_only = req.keys_only && req.sort_target != SortTarget::Value;
        // etcd `rangeLimit`: with neither sorting nor filtering only limit+1
        // kvs are read; otherwise all of them.
        let fetch = if req.limit > 0
            && is_default_ordering(req.sort_target, req.sort_order)
            && !has_revision_filters(req)
        {
            usize::try_from(req.limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        } else {
            usize::MAX
        };
        let mut count = 0usize;
        let mut kvs = Vec::new();
        for (k, r) in self.store.range_at(range, at) {
            count += 1;
            if kvs.len() < fetch {
                kvs.push(to_kv(
                    &self.store,
                    k,
                    r,
                    if fast_keys_only {
                        Fields::KeysOnly
                    } else {
                        Fields::All
                    },
                ));
            }
        }
        resp.count = count as i64;

        // etcd `filterRangeResults`.
        if req.max_mod_revision != 0 {
            kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
        }
        if req.min_mod_revision != 0 {
            kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
        }
        if req.max_create_revision != 0 {
            kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
        }
        if req.min_create_revision != 0 {
            kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
        }

        // etcd `sortRangeResults`: a non-key target without an order sorts
        // ascending; Go's unstable sort decides the order of ties.
        let mut order = req.sort_order;
        if req.sort_target != SortTarget::Key && order == SortOrder::None {
            order = SortOrder::Ascend;
        }
        if !is_default_ordering(req.sort_target, order) {
            let less = sort_less(req.sort_target);
            match order {
                SortOrder::Ascend => gosort::sort(&mut kvs, less),
                SortOrder::Descend => gosort::sort(&mut kvs, |a, b| less(b, a)),
                SortOrder::None => {}
            }
        }

        // etcd `asembleRangeResponse`.
        if req.limit > 0 && kvs.len() as u64 > req.limit as u64 {
            kvs.truncate(req.limit as usize);
            resp.more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Vec::new();
            }
        }
        resp.kvs = kvs;
        Ok(resp)
    }

    /// etcd `applyCompare`, at the current revision.
    fn compare_holds(&self, c: &Compare) -> bool {
        let mut any = false;
        for (k, r) in self
            .store
            .range_at(KeyRange::new(&c.key, &c.range_end), self.current_rev)
        {
            any = true;
            let fields = if matches!(c.target, CompareTarget::Value(_)) {
                Fields::All
            } else {
                Fields::NoValue
            };
            if !compare_kv(c, &to_kv(&self.store, k, r, fields)) {
                return false;
            }
        }
        if any {
            return true;
        }
        // No key: a value compare fails; the others compare a zero KeyValue.
        !matches!(c.target, CompareTarget::Value(_)) && compare_kv(c, &KeyValue::default())
    }

    /// etcd `checkRange`, against the state before a transaction.
    fn check_range(&self, r: &RangeRequest) -> Result<(), Error> {
        if r.revision == 0 {
            Ok(())
        } else if r.revision > self.current_rev {
            Err(Error::FutureRev)
        } else if r.revision < self.compact_rev {
            Err(Error::Compacted)
        } else {
            Ok(())
        }
    }

    /// etcd `checkPut` (`checkLease` then `checkAndGetPrevKV`), against the
    /// state before the command.
    fn check_put(&self, p: &PutRequest) -> Result<(), Error> {
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(Error::LeaseNotFound);
        }
        if (p.ignore_value || p.ignore_lease)
            && self.store.live_at(&p.key, self.current_rev).is_none()
        {
            return Err(Error::KeyNotFound);
        }
        Ok(())
    }

    // ---- writes ----

    fn commit(&mut self, w: &Write) {
        if w.changes > 0 {
            self.current_rev = w.rev();
        }
        debug_assert!(
            w.touched.iter().all(|k| self
                .store
                .live_at(k, i64::MAX)
                .is_none_or(|r| r.rev.main == self.current_rev)),
            "every key written carries the new revision"
        );
    }

    /// etcd's lessor `Detach(from)` then `Attach(to)` for `key` (0: none),
    /// as `storeTxnWrite.put` and `delete` call them, recorded in `w` for a
    /// rollback. A put with lease L moves the key from its old lease to L; a
    /// put with lease 0 detaches it; `ignore_lease` keeps the old lease (the
    /// put's version carries it, so nothing moves); a delete detaches.
    fn move_attachment(&mut self, w: &mut Write, key: &[u8], from: i64, to: i64) {
        if from == to {
            return;
        }
        self.reattach(key, from, to);
        w.attachments.push((key.to_vec(), from, to));
    }

    fn reattach(&mut self, key: &[u8], from: i64, to: i64) {
        if let Some(l) = self.leases.get_mut(&from) {
            l.keys.remove(key);
        }
        match self.leases.get_mut(&to) {
            Some(l) => {
                l.keys.insert(key.to_vec());
            }
            None => debug_assert_eq!(to, 0, "keys attach to granted leases only"),
        }
    }

    /// etcd `lessor.Grant` (the id and TTL checks, then the existence check).
    fn apply_lease_grant(&mut self, id: i64, ttl_secs: i64) -> Result<(), Error> {
        debug_assert_ne!(id, 0, "the server picks a lease id before logging a grant");
        if id == 0 {
            // etcd's lessor answers this for the id it reserves for "none".
            return Err(Error::LeaseNotFound);
        }
        if ttl_secs > LEASE_TTL_MAX_SECS {
            return Err(Error::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        self.leases.insert(
            id,
            Lease {
                ttl_secs,
                keys: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// etcd `lessor.Revoke`: one write deleting every attached key in key
    /// order (Go's `sort.Strings`, byte order), then the lease is gone. With
    /// no key attached the write changes nothing and takes no revision.
    fn apply_lease_revoke(&mut self, id: i64) -> Result<(), Error> {
        let keys = self.lease_keys(id);
        if !self.leases.contains_key(&id) {
            return Err(Error::LeaseNotFound);
        }
        let mut w = Write::new(self.current_rev);
        for key in keys {
            let d = DeleteRangeRequest {
                key,
                range_end: Vec::new(),
                prev_kv: false,
            };
            let resp = self.delete_op(&mut w, &d);
            debug_assert_eq!(resp.deleted, 1, "attached keys are live");
        }
        self.commit(&w);
        let lease = self.leases.remove(&id).expect("checked above");
        debug_assert!(lease.keys.is_empty(), "the deletes detached every key");
        Ok(())
    }

    /// Undoes a write command that failed half way.
    fn rollback(&mut self, w: Write) {
        for (key, from, to) in w.attachments.iter().rev() {
            self.reattach(key, *to, *from);
        }
        let keys: BTreeSet<Vec<u8>> = w.touched.into_iter().collect();
        for k in keys {
            let live_after = self.store.live_at(&k, w.begin + 1).is_some();
            self.store.remove_main(&k, w.begin + 1);
            let live_before = self.store.live_at(&k, w.begin).is_some();
            match (live_before, live_after) {
                (true, false) => self.live_keys += 1,
                (false, true) => self.live_keys -= 1,
                _ => {}
            }
        }
    }

    /// etcd `put` inside a write: reads see the command's earlier writes.
    fn put_op(&mut self, w: &mut Write, p: &PutRequest) -> Result<PutResponse, Error> {
        let rev = w.rev();
        let fields = if p.prev_kv || p.ignore_value {
            Fields::All
        } else {
            Fields::NoValue
        };
        let prev = self
            .store
            .live_at(&p.key, rev)
            .map(|r| to_kv(&self.store, &p.key, r, fields));
        let (value, lease, create_revision, version) = match &prev {
            Some(kv) => (
                if p.ignore_value {
                    kv.value.clone()
                } else {
                    p.value.clone()
                },
                if p.ignore_lease { kv.lease } else { p.lease },
                kv.create_revision,
                kv.version + 1,
            ),
            // Only reachable when an earlier op of the same transaction
            // deleted the key (a "from key" delete escapes etcd's duplicate
            // check); etcd itself crashes on this.
            None if p.ignore_value || p.ignore_lease => return Err(Error::KeyNotFound),
            None => (p.value.clone(), p.lease, rev, 1),
        };
        if prev.is_none() {
            self.live_keys += 1;
        }
        // etcd reads the old lease only when the key exists at this point.
        let old_lease = prev.as_ref().map_or(0, |kv| kv.lease);
        self.move_attachment(w, &p.key, old_lease, lease);
        let entry = Entry::Put {
            create_revision,
            version,
            lease,
        };
        let hash_crc = hash::bucket_value_crc(&p.key, rev, &entry, &value);
        self.store.append(
            &p.key,
            Record {
                rev: Revision {
                    main: rev,
                    sub: w.changes,
                },
                entry,
                hash_crc,
                loc: Loc::mem(&value),
            },
        );
        w.changes += 1;
        w.touched.push(p.key.clone());
        Ok(PutResponse {
            prev_kv: if p.prev_kv { prev } else { None },
            header_revision: rev,
        })
    }

    /// etcd `deleteRange` inside a write.
    fn delete_op(&mut self, w: &mut Write, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let rev = w.rev();
        let found: Vec<KeyValue> = self
            .store
            .range_at(KeyRange::new(&d.key, &d.range_end), rev)
            .map(|(k, r)| {
                let fields = if d.prev_kv {
                    Fields::All
                } else {
                    Fields::NoValue
                };
                to_kv(&self.store, k, r, fields)
            })
            .collect();
        for kv in &found {
            let rec = Record {
                rev: Revision {
                    main: rev,
                    sub: w.changes,
                },
                entry: Entry::Tombstone,
                hash_crc: hash::bucket_value_crc(&kv.key, rev, &Entry::Tombstone, &[]),
                loc: Loc::mem(&[]),
            };
            self.store.append(&kv.key, rec);
            self.move_attachment(w, &kv.key, kv.lease, 0);
            w.changes += 1;
            w.touched.push(kv.key.clone());
            self.live_keys -= 1;
        }
        DeleteRangeResponse {
            deleted: found.len() as i64,
            prev_kvs: if d.prev_kv { found } else { Vec::new() },
            header_revision: w.read_rev(),
        }
    }

    fn apply_put(&mut self, p: &PutRequest) -> Result<PutResponse, Error> {
        self.check_put(p)?;
        let mut w = Write::new(self.current_rev);
        let resp = self.put_op(&mut w, p);
        debug_assert!(resp.is_ok(), "checked put cannot fail");
        match resp {
            Ok(r) => {
                self.commit(&w);
                Ok(r)
            }
            Err(e) => {
                self.rollback(w);
                Err(e)
            }
        }
    }

    fn apply_delete(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let mut w = Write::new(self.current_rev);
        let resp = self.delete_op(&mut w, d);
        self.commit(&w);
        resp
    }

    /// etcd `Txn`: compares and checks on the state before the transaction
    /// (compareToPath, checkTxn), then the chosen branches in order.
    fn apply_txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, Error> {
        if txn_depth(t) > TXN_DEPTH_MAX {
            return Err(Error::TooManyOps);
        }
        let mut path = Vec::new();
        self.prepare_txn(t, &mut path)?;
        let mut w = Write::new(self.current_rev);
        let mut pos = 0;
        match self.exec_txn(&mut w, t, &path, &mut pos) {
            Ok(mut resp) => {
                debug_assert_eq!(pos, path.len(), "every nested transaction executed once");
                self.commit(&w);
                resp.header_revision = self.current_rev;
                Ok(resp)
            }
            Err(e) => {
                self.rollback(w);
                Err(e)
            }
        }
    }

    /// etcd `compareToPath` + `checkTxn`: evaluates the compares of this
    /// level and of the nested transactions on the chosen branches (all on
    /// the state before the transaction), appending the outcomes pre-order,
    /// and checks the chosen ops.
    fn prepare_txn(&self, t: &TxnRequest, path: &mut Vec<bool>) -> Result<(), Error> {
        let succeeded = t.compare.iter().all(|c| self.compare_holds(c));
        path.push(succeeded);
        let ops = if succeeded { &t.success } else { &t.failure };
        for op in ops {
            match op {
                RequestOp::Range(r) => self.check_range(r)?,
                RequestOp::Put(p) => self.check_put(p)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(inner) => self.prepare_txn(inner, path)?,
            }
        }
        Ok(())
    }

    /// etcd `executeTxn`: runs the branch `path` chose, consuming the path
    /// pre-order.
    fn exec_txn(
        &mut self,
        w: &mut Write,
        t: &TxnRequest,
        path: &[bool],
        pos: &mut usize,
    ) -> Result<TxnResponse, Error> {
        let succeeded = path[*pos];
        *pos += 1;
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range_at(r, w.read_rev())?),
                RequestOp::Put(p) => ResponseOp::Put(self.put_op(w, p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_op(w, d)),
                // etcd leaves a nested transaction's header revision at 0.
                RequestOp::Txn(inner) => ResponseOp::Txn(self.exec_txn(w, inner, path, pos)?),
            });
        }
        Ok(TxnResponse {
            succeeded,
            responses,
            header_revision: 0,
        })
    }

    /// etcd `store.Compact` and its scheduled compaction, done at once.
    fn apply_compact(&mut self, c: &CompactionRequest) -> Result<(), Error> {
        let rev = c.revision;
        if rev <= self.compact_rev {
            return Err(Error::Compacted);
        }
        if rev > self.current_rev {
            return Err(Error::FutureRev);
        }
        let prev = self.compact_rev;
        // Events not taken yet at or below `rev` would lose records (or
        // their prev_kv) to the compaction: build them now.
        if self.events_from <= rev {
            let pending = self.take_events();
            self.events_built = pending;
        }
        // etcd hashes the records at or below `rev` as its compaction pass
        // reads them and keeps the hash for HashKV (kvstore_compaction.go).
        let keep = self.store.keep_for_compaction(rev);
        let mut h = KvHasher::new(prev, rev, &keep);
        for (k, r) in self.store.records_by_revision() {
            if r.rev.main > rev {
                break;
            }
            h.write(k, r);
        }
        self.compaction_hashes.push(HashKv {
            hash: h.sum(),
            compact_revision: prev,
            hash_revision: rev,
        });
        if self.compaction_hashes.len() > COMPACTION_HASHES_MAX {
            self.compaction_hashes.remove(0);
        }
        self.store.compact(rev);
        self.compact_rev = rev;
        Ok(())
    }
}
