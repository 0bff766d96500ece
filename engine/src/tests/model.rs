//! Model-based randomized test: a deliberately simple oracle (a flat log of
//! every write, answering every read by replaying the log, and etcd's lessor
//! item map updated op by op as etcd does) against [`Mvcc`] over seeded
//! random commands, reads, lease commands and watch event reads.
//!
//! The oracle shares only the request/response types and the Go sort port
//! (whose tie order is checked against etcd separately) with the engine.
//! Set `ENGINE_MODEL_SEED=<n>` to rerun one seed.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::gosort;

/// Seeds the regular run covers, in seeds.
const MODEL_SEEDS_COUNT: u64 = 100;
/// Random steps per seed, in steps.
const MODEL_STEPS_PER_SEED: usize = 500;
/// Every this many steps the full keyspace is compared at several revisions.
const FULL_CHECK_INTERVAL_STEPS: usize = 25;

/// Events a watch read answers: the events and the revision to go on from.
type EventsAnswer = Result<(Vec<Event>, i64), Error>;

/// What the comparison drives: the engine, or a deliberately broken wrapper
/// around it (which overrides the methods it breaks).
pub(crate) trait Sut {
    fn mvcc(&self) -> &Mvcc;
    fn mvcc_mut(&mut self) -> &mut Mvcc;

    fn apply(&mut self, c: &Command) -> Result<Applied, Error> {
        self.mvcc_mut().apply(c)
    }
    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error> {
        self.mvcc().range(r)
    }
    fn current_revision(&self) -> i64 {
        self.mvcc().current_revision()
    }
    fn take_events(&mut self) -> Vec<Event> {
        self.mvcc_mut().take_events()
    }
    fn events(&self, key: &[u8], end: &[u8], start: i64, last: i64, max: usize) -> EventsAnswer {
        self.mvcc().events(key, end, start, last, max)
    }
}

impl Sut for Mvcc {
    fn mvcc(&self) -> &Mvcc {
        self
    }
    fn mvcc_mut(&mut self) -> &mut Mvcc {
        self
    }
}

// ---------------------------------------------------------------- oracle --

/// One write of one key.
#[derive(Clone, Debug)]
struct Change {
    main: i64,
    key: Vec<u8>,
    /// `None`: a delete.
    put: Option<(Vec<u8>, i64)>,
}

/// The writes of a command in progress, kept only if it succeeds.
struct Draft {
    log: Vec<Change>,
    /// etcd's lessor `itemMap` (key to attached lease) as the command leaves
    /// it.
    items: BTreeMap<Vec<u8>, i64>,
}

struct Oracle {
    /// Every write ever applied, in order; never compacted.
    events: Vec<Change>,
    rev: i64,
    /// etcd's compact revision, -1 before the first compaction.
    compact: i64,
    /// Granted leases: id to TTL.
    leases: BTreeMap<i64, i64>,
    /// etcd's lessor `itemMap`, updated write by write the way
    /// `storeTxnWrite.put` and `delete` call `Attach`/`Detach`.
    items: BTreeMap<Vec<u8>, i64>,
    /// Events of revisions up to this one were handed out by `take_events`.
    taken_through: i64,
}

/// Every change as the watch event etcd sends: a delete carries only key
/// and mod revision; prev_kv is the key as of the revision before (etcd's
/// watch server reads it there), none for a put that creates the key.
fn watch_events(changes: &[Change]) -> Vec<Event> {
    let mut state: BTreeMap<Vec<u8>, KeyValue> = BTreeMap::new();
    let mut before = state.clone();
    let mut main = 0;
    let mut out = Vec::new();
    for c in changes {
        if c.main != main {
            before = state.clone();
            main = c.main;
        }
        match &c.put {
            None => {
                state.remove(&c.key);
                out.push(Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: c.key.clone(),
                        mod_revision: c.main,
                        ..KeyValue::default()
                    },
                    prev_kv: before.get(&c.key).cloned(),
                });
            }
            Some((value, lease)) => {
                let (create_revision, version) = match state.get(&c.key) {
                    Some(kv) => (kv.create_revision, kv.version + 1),
                    None => (c.main, 1),
                };
                let kv = KeyValue {
                    key: c.key.clone(),
                    create_revision,
                    mod_revision: c.main,
                    version,
                    value: value.clone(),
                    lease: *lease,
                };
                state.insert(c.key.clone(), kv.clone());
                out.push(Event {
                    kind: EventKind::Put,
                    prev_kv: if create_revision == c.main {
                        None
                    } else {
                        before.get(&c.key).cloned()
                    },
                    kv,
                });
            }
        }
    }
    out
}

fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        k == key
    } else if end == [0] {
        k >= key
    } else {
        k >= key && k < end
    }
}

impl Oracle {
    fn new() -> Oracle {
        Oracle {
            events: Vec::new(),
            rev: 1,
            compact: -1,
            leases: BTreeMap::new(),
            items: BTreeMap::new(),
            taken_through: 1,
        }
    }

    /// The keyspace after replaying `events` up to main revision `at`.
    fn state(events: &[Change], at: i64) -> BTreeMap<Vec<u8>, KeyValue> {
        let mut s: BTreeMap<Vec<u8>, KeyValue> = BTreeMap::new();
        for e in events.iter().filter(|e| e.main <= at) {
            match &e.put {
                None => {
                    s.remove(&e.key);
                }
                Some((value, lease)) => {
                    let (create, version) = match s.get(&e.key) {
                        Some(kv) => (kv.create_revision, kv.version + 1),
                        None => (e.main, 1),
                    };
                    s.insert(
                        e.key.clone(),
                        KeyValue {
                            key: e.key.clone(),
                            create_revision: create,
                            mod_revision: e.main,
                            version,
                            value: value.clone(),
                            lease: *lease,
                        },
                    );
                }
            }
        }
        s
    }

    fn range(&self, events: &[Change], r: &RangeRequest, cur: i64) -> Result<RangeResponse, Error> {
        if r.revision > cur {
            return Err(Error::FutureRev);
        }
        let at = if r.revision <= 0 { cur } else { r.revision };
        if at < self.compact {
            return Err(Error::Compacted);
        }
        let all: Vec<KeyValue> = Self::state(events, at)
            .into_values()
            .filter(|kv| in_range(&kv.key, &r.key, &r.range_end))
            .collect();
        let count = all.len() as i64;
        if r.count_only {
            return Ok(RangeResponse {
                kvs: vec![],
                more: false,
                count,
                header_revision: cur,
            });
        }
        // etcd reads only limit+1 keys (in key order) when the request has
        // no revision filters and sort order NONE or KEY/ASCEND, then sorts
        // what it read.
        let no_filters = r.max_mod_revision == 0
            && r.min_mod_revision == 0
            && r.max_create_revision == 0
            && r.min_create_revision == 0;
        let unsorted = r.sort_order == SortOrder::None
            || (r.sort_target == SortTarget::Key && r.sort_order == SortOrder::Ascend);
        let read = if r.limit > 0 && no_filters && unsorted {
            r.limit as usize + 1
        } else {
            usize::MAX
        };
        let mut kvs: Vec<KeyValue> = all
            .into_iter()
            .take(read)
            .filter(|kv| r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            .filter(|kv| r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            .filter(|kv| r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            .filter(|kv| r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
            .collect();
        let order = match (r.sort_target, r.sort_order) {
            (SortTarget::Key, SortOrder::None) => SortOrder::Ascend,
            (_, SortOrder::None) => SortOrder::Ascend,
            (_, o) => o,
        };
        fn less_by(t: SortTarget, a: &KeyValue, b: &KeyValue) -> bool {
            match t {
                SortTarget::Key => a.key < b.key,
                SortTarget::Version => a.version < b.version,
                SortTarget::Create => a.create_revision < b.create_revision,
                SortTarget::Mod => a.mod_revision < b.mod_revision,
                SortTarget::Value => a.value < b.value,
            }
        }
        let t = r.sort_target;
        if !(t == SortTarget::Key && order == SortOrder::Ascend) {
            if order == SortOrder::Ascend {
                gosort::sort(&mut kvs, |a, b| less_by(t, a, b));
            } else {
                gosort::sort(&mut kvs, |a, b| less_by(t, b, a));
            }
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() as i64 > r.limit {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
                if r.sort_target != SortTarget::Value {
                    kv.lease = 0;
                }
            }
        }
        Ok(RangeResponse {
            kvs,
            more,
            count,
            header_revision: cur,
        })
    }

    fn live(&self, key: &[u8]) -> Option<KeyValue> {
        Self::state(&self.events, self.rev).remove(key)
    }

    fn check_put(&self, p: &PutRequest) -> Result<(), Error> {
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(Error::LeaseNotFound);
        }
        if (p.ignore_value || p.ignore_lease) && self.live(&p.key).is_none() {
            return Err(Error::KeyNotFound);
        }
        Ok(())
    }

    /// Runs writes on a copy of the log; the caller keeps it on success.
    fn put(&self, d: &mut Draft, p: &PutRequest) -> Result<PutResponse, Error> {
        let main = self.rev + 1;
        let prev = Self::state(&d.log, main).remove(&p.key);
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let value = if p.ignore_value {
            prev.as_ref().unwrap().value.clone()
        } else {
            p.value.clone()
        };
        let lease = if p.ignore_lease {
            prev.as_ref().unwrap().lease
        } else {
            p.lease
        };
        // etcd storeTxnWrite.put: the old lease is the item map's, read only
        // when the key exists; nothing to do when it is the new one.
        let old = if prev.is_some() {
            d.items.get(&p.key).copied().unwrap_or(0)
        } else {
            0
        };
        if old != lease {
            if old != 0 {
                d.items.remove(&p.key);
            }
            if lease != 0 {
                d.items.insert(p.key.clone(), lease);
            }
        }
        d.log.push(Change {
            main,
            key: p.key.clone(),
            put: Some((value, lease)),
        });
        Ok(PutResponse {
            prev_kv: if p.prev_kv { prev } else { None },
            header_revision: main,
        })
    }

    fn delete(&self, draft: &mut Draft, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let main = self.rev + 1;
        let gone: Vec<KeyValue> = Self::state(&draft.log, main)
            .into_values()
            .filter(|kv| in_range(&kv.key, &d.key, &d.range_end))
            .collect();
        for kv in &gone {
            draft.log.push(Change {
                main,
                key: kv.key.clone(),
                put: None,
            });
            draft.items.remove(&kv.key);
        }
        let wrote = draft.log.len() > self.events.len();
        DeleteRangeResponse {
            deleted: gone.len() as i64,
            prev_kvs: if d.prev_kv { gone } else { vec![] },
            header_revision: if wrote { main } else { self.rev },
        }
    }

    fn compare(&self, c: &Compare) -> bool {
        let s = Self::state(&self.events, self.rev);
        let kvs: Vec<&KeyValue> = s
            .values()
            .filter(|kv| in_range(&kv.key, &c.key, &c.range_end))
            .collect();
        let test = |kv: &KeyValue| {
            let ord = match &c.target {
                CompareTarget::Version(v) => kv.version.cmp(v),
                CompareTarget::Create(v) => kv.create_revision.cmp(v),
                CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
                CompareTarget::Value(v) => kv.value.cmp(v),
                CompareTarget::Lease(v) => kv.lease.cmp(v),
            };
            match c.result {
                CompareResult::Equal => ord == std::cmp::Ordering::Equal,
                CompareResult::NotEqual => ord != std::cmp::Ordering::Equal,
                CompareResult::Greater => ord == std::cmp::Ordering::Greater,
                CompareResult::Less => ord == std::cmp::Ordering::Less,
            }
        };
        if kvs.is_empty() {
            !matches!(c.target, CompareTarget::Value(_)) && test(&KeyValue::default())
        } else {
            kvs.into_iter().all(test)
        }
    }

    /// Checks the chosen branches before anything runs.
    fn check_txn(&self, t: &TxnRequest) -> Result<(), Error> {
        let ops = if t.compare.iter().all(|c| self.compare(c)) {
            &t.success
        } else {
            &t.failure
        };
        for op in ops {
            match op {
                RequestOp::Range(r) => {
                    if r.revision != 0 && r.revision > self.rev {
                        return Err(Error::FutureRev);
                    }
                    if r.revision != 0 && r.revision < self.compact {
                        return Err(Error::Compacted);
                    }
                }
                RequestOp::Put(p) => self.check_put(p)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(inner) => self.check_txn(inner)?,
            }
        }
        Ok(())
    }

    fn run_txn(&self, log: &mut Draft, t: &TxnRequest) -> Result<TxnResponse, Error> {
        // Compares always see the state before the outermost transaction.
        let succeeded = t.compare.iter().all(|c| self.compare(c));
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = vec![];
        for op in ops {
            let wrote = log.log.len() > self.events.len();
            let cur = if wrote { self.rev + 1 } else { self.rev };
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(&log.log, r, cur)?),
                RequestOp::Put(p) => ResponseOp::Put(self.put(log, p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete(log, d)),
                RequestOp::Txn(inner) => ResponseOp::Txn(self.run_txn(log, inner)?),
            });
        }
        Ok(TxnResponse {
            succeeded,
            responses,
            header_revision: 0,
        })
    }

    fn apply(&mut self, c: &Command) -> Result<Applied, Error> {
        let mut log = Draft {
            log: self.events.clone(),
            items: self.items.clone(),
        };
        let out = match c {
            Command::Alarm { .. } => unreachable!("the generator makes no alarms; see alarms.rs"),
            Command::Put(p) => {
                self.check_put(p)?;
                Applied::Put(self.put(&mut log, p)?)
            }
            Command::DeleteRange(d) => Applied::DeleteRange(self.delete(&mut log, d)),
            Command::Txn(t) => {
                self.check_txn(t)?;
                let mut r = self.run_txn(&mut log, t)?;
                r.header_revision = if log.log.len() > self.events.len() {
                    self.rev + 1
                } else {
                    self.rev
                };
                Applied::Txn(r)
            }
            Command::Compact(cr) => {
                if cr.revision <= self.compact {
                    return Err(Error::Compacted);
                }
                if cr.revision > self.rev {
                    return Err(Error::FutureRev);
                }
                self.compact = cr.revision;
                return Ok(Applied::Compact);
            }
            &Command::LeaseGrant { id, ttl_secs } => {
                if ttl_secs > 9_000_000_000 {
                    return Err(Error::LeaseTtlTooLarge);
                }
                if self.leases.contains_key(&id) {
                    return Err(Error::LeaseExists);
                }
                self.leases.insert(id, ttl_secs);
                return Ok(Applied::LeaseGrant { id, ttl_secs });
            }
            &Command::LeaseRevoke { id } => {
                if !self.leases.contains_key(&id) {
                    return Err(Error::LeaseNotFound);
                }
                // etcd lessor.Revoke: the attached keys, sorted, each
                // deleted on its own, all in one write.
                let mut keys = self.lease_keys(id);
                keys.sort();
                for key in keys {
                    self.delete(
                        &mut log,
                        &DeleteRangeRequest {
                            key,
                            range_end: vec![],
                            prev_kv: false,
                        },
                    );
                }
                self.leases.remove(&id);
                Applied::LeaseRevoke
            }
        };
        self.items = log.items;
        if log.log.len() > self.events.len() {
            self.rev += 1;
            self.events = log.log;
        }
        Ok(out)
    }

    fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.items
            .iter()
            .filter(|(_, l)| **l == id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// What `take_events` hands out: every event after the last call.
    fn take_events(&mut self) -> Vec<Event> {
        let out = watch_events(&self.events)
            .into_iter()
            .filter(|e| e.kv.mod_revision > self.taken_through)
            .collect();
        self.taken_through = self.rev;
        out
    }

    /// A catch-up read: the matching events of `[start, last]`, whole
    /// revisions until at least `max` (and one) were collected.
    fn events(&self, key: &[u8], end: &[u8], start: i64, last: i64, max: usize) -> EventsAnswer {
        if start < 0 || start < self.compact {
            return Err(Error::Compacted);
        }
        let from = start.max(1);
        let to = last.min(self.rev);
        let all = watch_events(&self.events);
        let mut groups: Vec<Vec<Event>> = Vec::new();
        for (i, mut e) in all.iter().cloned().enumerate() {
            let main = e.kv.mod_revision;
            if main < from || main > to || !in_range(&e.kv.key, key, end) {
                continue;
            }
            if main <= self.compact {
                // The compaction kept only each key's last change of its
                // revision (etcd 3.7.2 serves a watch at the compaction
                // revision without the puts that a from-key delete of the
                // same transaction undid).
                if all[i + 1..]
                    .iter()
                    .any(|later| later.kv.mod_revision == main && later.kv.key == e.kv.key)
                {
                    continue;
                }
                // etcd reads prev_kv at the revision before, which is
                // compacted.
                e.prev_kv = None;
            }
            match groups.last_mut() {
                Some(g) if g[0].kv.mod_revision == main => g.push(e),
                _ => groups.push(vec![e]),
            }
        }
        let mut out = Vec::new();
        for g in groups {
            if out.len() >= max.max(1) {
                return Ok((out, g[0].kv.mod_revision));
            }
            out.extend(g);
        }
        Ok((out, from.max(to + 1)))
    }
}

// ------------------------------------------------------------- generator --

const KEYS: [&str; 7] = ["a", "b", "b0", "c", "d", "e", "f"];
const VALUES: [&str; 4] = ["", "x", "y", "zz"];
/// Lease ids puts name: 0 (none), the ids grants use, and 99, never granted.
const LEASES: [i64; 8] = [0, 0, 0, 1, 2, 3, -4, 99];
/// Lease ids grants and revokes name (revokes also 99).
const LEASE_IDS: [i64; 4] = [1, 2, 3, -4];

fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

fn gen_key_range(rng: &mut StdRng) -> (Vec<u8>, Vec<u8>) {
    let k = pick(rng, &KEYS).as_bytes().to_vec();
    let end = match rng.random_range(0..6) {
        0 | 1 => vec![],
        2 => vec![0],
        3 => b"\0".to_vec(),
        _ => pick(rng, &KEYS).as_bytes().to_vec(),
    };
    if rng.random_range(0..10) == 0 {
        return (vec![0], vec![0]);
    }
    (k, end)
}

fn gen_put(rng: &mut StdRng) -> PutRequest {
    let ignore_value = rng.random_range(0..8) == 0;
    let ignore_lease = rng.random_range(0..8) == 0;
    PutRequest {
        key: pick(rng, &KEYS).into(),
        value: if ignore_value {
            vec![]
        } else {
            pick(rng, &VALUES).into()
        },
        lease: if ignore_lease { 0 } else { pick(rng, &LEASES) },
        prev_kv: rng.random(),
        ignore_value,
        ignore_lease,
    }
}

fn gen_delete(rng: &mut StdRng) -> DeleteRangeRequest {
    let (key, range_end) = gen_key_range(rng);
    DeleteRangeRequest {
        key,
        range_end,
        prev_kv: rng.random(),
    }
}

fn gen_range(rng: &mut StdRng, cur: i64, compact: i64) -> RangeRequest {
    let (key, range_end) = gen_key_range(rng);
    let rev_or_zero = |rng: &mut StdRng| {
        if rng.random_range(0..3) == 0 {
            0
        } else {
            rng.random_range((compact - 1).min(0)..=cur + 1)
        }
    };
    RangeRequest {
        key,
        range_end,
        limit: pick(rng, &[0, 0, 1, 2, 3, -1]),
        revision: rev_or_zero(rng),
        sort_order: pick(
            rng,
            &[
                SortOrder::None,
                SortOrder::None,
                SortOrder::Ascend,
                SortOrder::Descend,
            ],
        ),
        sort_target: pick(
            rng,
            &[
                SortTarget::Key,
                SortTarget::Key,
                SortTarget::Version,
                SortTarget::Create,
                SortTarget::Mod,
                SortTarget::Value,
            ],
        ),
        serializable: rng.random(),
        keys_only: rng.random_range(0..4) == 0,
        count_only: rng.random_range(0..6) == 0,
        min_mod_revision: if rng.random_range(0..5) == 0 {
            rng.random_range(0..=cur)
        } else {
            0
        },
        max_mod_revision: if rng.random_range(0..5) == 0 {
            rng.random_range(0..=cur)
        } else {
            0
        },
        min_create_revision: if rng.random_range(0..5) == 0 {
            rng.random_range(0..=cur)
        } else {
            0
        },
        max_create_revision: if rng.random_range(0..5) == 0 {
            rng.random_range(0..=cur)
        } else {
            0
        },
    }
}

fn gen_compare(rng: &mut StdRng, cur: i64) -> Compare {
    let (key, range_end) = gen_key_range(rng);
    let n = rng.random_range(0..=cur);
    let target = match rng.random_range(0..5) {
        0 => CompareTarget::Version(rng.random_range(0..4)),
        1 => CompareTarget::Create(n),
        2 => CompareTarget::Mod(n),
        3 => CompareTarget::Value(pick(rng, &VALUES).into()),
        _ => CompareTarget::Lease(pick(rng, &LEASES)),
    };
    let result = pick(
        rng,
        &[
            CompareResult::Equal,
            CompareResult::Greater,
            CompareResult::Less,
            CompareResult::NotEqual,
        ],
    );
    Compare {
        result,
        target,
        key,
        range_end,
    }
}

fn gen_txn(rng: &mut StdRng, cur: i64, compact: i64, depth: usize) -> TxnRequest {
    let ops = |rng: &mut StdRng| {
        (0..rng.random_range(0..4))
            .map(|_| match rng.random_range(0..10) {
                0..=2 => RequestOp::Range(gen_range(rng, cur, compact)),
                3..=5 => RequestOp::Put(gen_put(rng)),
                6..=7 => RequestOp::DeleteRange(gen_delete(rng)),
                _ if depth < 3 => RequestOp::Txn(gen_txn(rng, cur, compact, depth + 1)),
                _ => RequestOp::Put(gen_put(rng)),
            })
            .collect::<Vec<_>>()
    };
    TxnRequest {
        compare: (0..rng.random_range(0..3))
            .map(|_| gen_compare(rng, cur))
            .collect(),
        success: ops(rng),
        failure: ops(rng),
    }
}

fn gen_command(rng: &mut StdRng, cur: i64, compact: i64) -> Command {
    match rng.random_range(0..25) {
        0..=7 => Command::Put(gen_put(rng)),
        8..=10 => Command::DeleteRange(gen_delete(rng)),
        11..=17 => Command::Txn(gen_txn(rng, cur, compact, 1)),
        18..=20 => Command::LeaseGrant {
            id: pick(rng, &LEASE_IDS),
            ttl_secs: pick(
                rng,
                &[
                    2,
                    100,
                    -1,
                    LEASE_TTL_MAX_SECS,
                    LEASE_TTL_MAX_SECS + 1,
                    i64::MAX,
                ],
            ),
        },
        21..=22 => Command::LeaseRevoke {
            id: if rng.random_range(0..8) == 0 {
                99
            } else {
                pick(rng, &LEASE_IDS)
            },
        },
        _ => Command::Compact(CompactionRequest {
            revision: rng.random_range((compact - 1).min(0)..=cur + 1),
            physical: rng.random(),
        }),
    }
}

/// What etcd's API layer would refuse before proposing.
fn rejected_by_api(c: &Command) -> bool {
    match c {
        Command::Put(p) => validate_put(p).is_err(),
        Command::DeleteRange(d) => validate_delete(d).is_err(),
        Command::Txn(t) => validate_txn(t, &Limits::default()).is_err(),
        Command::Compact(_)
        | Command::LeaseGrant { .. }
        | Command::LeaseRevoke { .. }
        | Command::Alarm { .. } => false,
    }
}

/// A catch-up read: key range, first and last revision, `events_max`.
struct Window {
    key: Vec<u8>,
    end: Vec<u8>,
    start: i64,
    last: i64,
    max: usize,
}

fn gen_window(rng: &mut StdRng, cur: i64, compact: i64) -> Window {
    let (key, end) = gen_key_range(rng);
    let start = match rng.random_range(0..6) {
        0 => compact.max(1),
        1 | 2 => rng.random_range(-1..=cur + 2),
        _ => rng.random_range((compact - 1).max(-1)..=cur + 2),
    };
    let last = match rng.random_range(0..3) {
        0 => i64::MAX,
        _ => rng.random_range(start - 1..=cur + 2),
    };
    Window {
        key,
        end,
        start,
        last,
        max: pick(rng, &[0, 1, 2, 3, 5, usize::MAX]),
    }
}

// ------------------------------------------------------------ comparison --

/// Drives `sut` and the oracle with the same seeded commands and reads;
/// the first disagreement is the error, naming seed and step. Returns the
/// commands applied: the log a restart replays.
pub(crate) fn run_model(
    seed: u64,
    steps: usize,
    sut: &mut dyn Sut,
) -> Result<Vec<Command>, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut oracle = Oracle::new();
    let mut log = Vec::new();
    let ctx =
        |step: usize, what: String| format!("model mismatch (seed {seed}, step {step}): {what}");
    for step in 0..steps {
        let cur = oracle.rev;
        match rng.random_range(0..8) {
            0 | 1 => {
                let r = gen_range(&mut rng, cur, oracle.compact);
                let want = oracle.range(&oracle.events, &r, cur);
                let got = sut.range(&r);
                if got != want {
                    return Err(ctx(
                        step,
                        format!("range {r:?}\n got  {got:?}\n want {want:?}"),
                    ));
                }
            }
            2 => {
                let w = gen_window(&mut rng, cur, oracle.compact);
                let want = oracle.events(&w.key, &w.end, w.start, w.last, w.max);
                let got = sut.events(&w.key, &w.end, w.start, w.last, w.max);
                if got != want {
                    return Err(ctx(
                        step,
                        format!(
                            "events({:?}, {:?}, {}, {}, {}) at revision {cur}, compacted at {}\n got  {got:?}\n want {want:?}",
                            w.key, w.end, w.start, w.last, w.max, oracle.compact
                        ),
                    ));
                }
            }
            _ => {
                let c = gen_command(&mut rng, cur, oracle.compact);
                if rejected_by_api(&c) {
                    continue;
                }
                let want = oracle.apply(&c);
                let got = sut.apply(&c);
                if got != want {
                    return Err(ctx(
                        step,
                        format!("apply {c:?}\n got  {got:?}\n want {want:?}"),
                    ));
                }
                log.push(c);
                // The server takes the events after every apply; now and
                // then let them pile up over several commands (compactions
                // included) to check that nothing is lost meanwhile.
                if rng.random_range(0..4) != 0 {
                    let want = oracle.take_events();
                    let got = sut.take_events();
                    if got != want {
                        return Err(ctx(
                            step,
                            format!(
                                "take_events after {:?}\n got  {got:?}\n want {want:?}",
                                log.last()
                            ),
                        ));
                    }
                }
            }
        }
        let m = sut.mvcc();
        let (got, want) = (
            (sut.current_revision(), m.compact_revision(), m.key_count()),
            (
                oracle.rev,
                oracle.compact.max(0),
                Oracle::state(&oracle.events, oracle.rev).len(),
            ),
        );
        if got != want {
            return Err(ctx(
                step,
                format!("(revision, compact revision, keys) got {got:?} want {want:?}"),
            ));
        }
        let want: Vec<(i64, i64)> = oracle.leases.iter().map(|(i, t)| (*i, *t)).collect();
        if m.leases() != want {
            return Err(ctx(
                step,
                format!("leases got {:?} want {want:?}", m.leases()),
            ));
        }
        for id in LEASE_IDS.into_iter().chain([0, 99]) {
            let got = (m.lease_exists(id), m.lease_ttl(id), m.lease_keys(id));
            let want = (
                oracle.leases.contains_key(&id),
                oracle.leases.get(&id).copied(),
                oracle.lease_keys(id),
            );
            if got != want {
                return Err(ctx(
                    step,
                    format!("lease {id} (exists, ttl, keys) got {got:?} want {want:?}"),
                ));
            }
        }
        if step % FULL_CHECK_INTERVAL_STEPS == 0 {
            m.check_invariants()
                .map_err(|e| ctx(step, format!("invariant: {e}")))?;
            let lowest = oracle.compact.max(1);
            for at in [0, lowest, (lowest + oracle.rev) / 2, oracle.rev] {
                let r = RangeRequest {
                    revision: at,
                    ..get_req("\0", "\0")
                };
                let want = oracle.range(&oracle.events, &r, oracle.rev);
                let got = sut.range(&r);
                if got != want {
                    return Err(ctx(
                        step,
                        format!("full scan at {at}\n got  {got:?}\n want {want:?}"),
                    ));
                }
                let want = oracle.events(b"\0", b"\0", at, i64::MAX, usize::MAX);
                let got = sut.events(b"\0", b"\0", at, i64::MAX, usize::MAX);
                if got != want {
                    return Err(ctx(
                        step,
                        format!("all events from {at}\n got  {got:?}\n want {want:?}"),
                    ));
                }
            }
        }
    }
    Ok(log)
}

#[test]
fn engine_matches_model() {
    let seeds: Vec<u64> = match std::env::var("ENGINE_MODEL_SEED") {
        Ok(s) => vec![s.parse().expect("ENGINE_MODEL_SEED is a number")],
        Err(_) => (0..MODEL_SEEDS_COUNT).collect(),
    };
    let mut applied_ops = 0;
    let mut revokes_deleting = 0;
    for seed in &seeds {
        let mut m = Mvcc::new();
        let log = match run_model(*seed, MODEL_STEPS_PER_SEED, &mut m) {
            Ok(log) => log,
            Err(e) => panic!("{e}"),
        };
        applied_ops += log.len();
        // The generator must reach the interesting states.
        assert!(m.current_revision() > 50, "seed {seed}: too few writes");

        // A restart replays the log (through the codec): the same keyspace,
        // leases, attachments and history.
        let mut r = Mvcc::new();
        for c in &log {
            let c = Command::decode(&c.encode()).expect("round trip");
            let before = r.current_revision();
            if r.apply(&c).is_ok()
                && matches!(c, Command::LeaseRevoke { .. })
                && r.current_revision() > before
            {
                revokes_deleting += 1;
            }
        }
        r.skip_events();
        assert_eq!(r.take_events(), vec![], "seed {seed}: skipped");
        r.check_invariants().unwrap();
        assert_eq!(
            (r.current_revision(), r.compact_revision(), r.hash()),
            (m.current_revision(), m.compact_revision(), m.hash()),
            "seed {seed}: replayed state"
        );
        assert_eq!(r.hash_kv(0), m.hash_kv(0), "seed {seed}");
        assert_eq!(r.leases(), m.leases(), "seed {seed}");
        for (id, _) in m.leases() {
            assert_eq!(r.lease_keys(id), m.lease_keys(id), "seed {seed}");
        }
        let from = m.compact_revision().max(1);
        assert_eq!(
            r.events(b"\0", b"\0", from, i64::MAX, usize::MAX),
            m.events(b"\0", b"\0", from, i64::MAX, usize::MAX),
            "seed {seed}: replayed history"
        );
    }
    assert!(applied_ops >= MODEL_STEPS_PER_SEED);
    if seeds.len() > 1 {
        assert!(
            revokes_deleting >= seeds.len(),
            "too few revokes deleted keys: {revokes_deleting}"
        );
    }
}

// ---------------------------------------------------------- planted bugs --

/// Takes a revision for a delete that deleted nothing (a classic bug).
struct NoopDeleteTakesRevision {
    inner: Mvcc,
    extra: i64,
}

impl Sut for NoopDeleteTakesRevision {
    fn mvcc(&self) -> &Mvcc {
        &self.inner
    }
    fn mvcc_mut(&mut self) -> &mut Mvcc {
        &mut self.inner
    }
    fn apply(&mut self, c: &Command) -> Result<Applied, Error> {
        let out = self.inner.apply(c);
        if let Ok(Applied::DeleteRange(d)) = &out {
            if d.deleted == 0 {
                self.extra += 1;
            }
        }
        out
    }
    fn current_revision(&self) -> i64 {
        self.inner.current_revision() + self.extra
    }
}

/// Lets `limit` cap `count` (etcd counts every key in the range).
struct CountHonorsLimit(Mvcc);

impl Sut for CountHonorsLimit {
    fn mvcc(&self) -> &Mvcc {
        &self.0
    }
    fn mvcc_mut(&mut self) -> &mut Mvcc {
        &mut self.0
    }
    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error> {
        self.0.range(r).map(|mut resp| {
            if r.limit > 0 {
                resp.count = resp.count.min(r.limit);
            }
            resp
        })
    }
}

/// Loses the first DELETE event of each batch handed to the watchers.
struct DropsDeleteEvent(Mvcc);

impl Sut for DropsDeleteEvent {
    fn mvcc(&self) -> &Mvcc {
        &self.0
    }
    fn mvcc_mut(&mut self) -> &mut Mvcc {
        &mut self.0
    }
    fn take_events(&mut self) -> Vec<Event> {
        let mut evs = self.0.take_events();
        if let Some(i) = evs.iter().position(|e| e.kind == EventKind::Delete) {
            evs.remove(i);
        }
        evs
    }
}

/// Catch-up reads forget the prev_kv of DELETE events.
struct CatchUpWithoutPrevKv(Mvcc);

impl Sut for CatchUpWithoutPrevKv {
    fn mvcc(&self) -> &Mvcc {
        &self.0
    }
    fn mvcc_mut(&mut self) -> &mut Mvcc {
        &mut self.0
    }
    fn events(&self, key: &[u8], end: &[u8], start: i64, last: i64, max: usize) -> EventsAnswer {
        self.0
            .events(key, end, start, last, max)
            .map(|(mut evs, next)| {
                for e in &mut evs {
                    if e.kind == EventKind::Delete {
                        e.prev_kv = None;
                    }
                }
                (evs, next)
            })
    }
}

/// Catch-up reads cut at exactly `events_max`, splitting a revision.
struct SplitsRevisions(Mvcc);

impl Sut for SplitsRevisions {
    fn mvcc(&self) -> &Mvcc {
        &self.0
    }
    fn mvcc_mut(&mut self) -> &mut Mvcc {
        &mut self.0
    }
    fn events(&self, key: &[u8], end: &[u8], start: i64, last: i64, max: usize) -> EventsAnswer {
        self.0
            .events(key, end, start, last, max)
            .map(|(mut evs, next)| {
                if max > 0 && evs.len() > max {
                    evs.truncate(max);
                    let last = evs.last().expect("max > 0").kv.mod_revision;
                    return (evs, last + 1);
                }
                (evs, next)
            })
    }
}

/// Revokes a lease by deleting its keys one command (one revision) each.
struct RevokeKeyByKey(Mvcc);

impl Sut for RevokeKeyByKey {
    fn mvcc(&self) -> &Mvcc {
        &self.0
    }
    fn mvcc_mut(&mut self) -> &mut Mvcc {
        &mut self.0
    }
    fn apply(&mut self, c: &Command) -> Result<Applied, Error> {
        if let Command::LeaseRevoke { id } = c {
            for key in self.0.lease_keys(*id) {
                self.0
                    .apply(&Command::DeleteRange(DeleteRangeRequest {
                        key,
                        range_end: vec![],
                        prev_kv: false,
                    }))
                    .expect("a delete cannot fail");
            }
        }
        self.0.apply(c)
    }
}

#[test]
fn checker_catches_planted_bugs() {
    let mut bug = NoopDeleteTakesRevision {
        inner: Mvcc::new(),
        extra: 0,
    };
    let err = run_model(3, MODEL_STEPS_PER_SEED, &mut bug)
        .expect_err("a no-op delete taking a revision must be caught");
    assert!(err.contains("seed 3"), "the report names the seed: {err}");
    assert!(err.contains("revision"), "{err}");

    let mut bug = CountHonorsLimit(Mvcc::new());
    let err = run_model(3, MODEL_STEPS_PER_SEED, &mut bug)
        .expect_err("count capped by limit must be caught");
    assert!(err.contains("count"), "{err}");

    let mut bug = DropsDeleteEvent(Mvcc::new());
    let err = run_model(3, MODEL_STEPS_PER_SEED, &mut bug)
        .expect_err("a dropped DELETE event must be caught");
    assert!(err.contains("take_events"), "{err}");

    let mut bug = CatchUpWithoutPrevKv(Mvcc::new());
    let err =
        run_model(3, MODEL_STEPS_PER_SEED, &mut bug).expect_err("a missing prev_kv must be caught");
    assert!(err.contains("events") && err.contains("prev_kv"), "{err}");

    let mut bug = SplitsRevisions(Mvcc::new());
    let err = run_model(3, MODEL_STEPS_PER_SEED, &mut bug)
        .expect_err("a revision split across reads must be caught");
    assert!(err.contains("events"), "{err}");

    // Revokes of two or more keys are rarer: the first few seeds suffice.
    let err = (0..10)
        .find_map(|seed| {
            run_model(seed, MODEL_STEPS_PER_SEED, &mut RevokeKeyByKey(Mvcc::new())).err()
        })
        .expect("a revoke taking several revisions must be caught");
    assert!(err.contains("revision"), "{err}");
}
