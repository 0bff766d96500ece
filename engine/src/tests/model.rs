//! Model-based randomized test: a deliberately simple oracle (a flat log of
//! every write event, answering every read by replaying the log) against
//! [`Mvcc`] over seeded random commands and reads.
//!
//! The oracle shares only the request/response types and the Go sort port
//! (whose tie order is checked against etcd separately) with the engine.
//! Set `ENGINE_MODEL_SEED=<n>` to rerun one seed.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::gosort;

/// Seeds the regular run covers, in seeds.
const MODEL_SEEDS_COUNT: u64 = 100;
/// Random steps per seed, in steps.
const MODEL_STEPS_PER_SEED: usize = 400;
/// Every this many steps the full keyspace is compared at several revisions.
const FULL_CHECK_INTERVAL_STEPS: usize = 25;

/// What the comparison drives: the engine, or a deliberately broken wrapper.
pub(crate) trait Sut {
    fn apply(&mut self, c: &Command) -> Result<Applied, Error>;
    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error>;
    fn current_revision(&self) -> i64;
    fn compact_revision(&self) -> i64;
    fn key_count(&self) -> usize;
    fn lease_grant(&mut self, id: i64);
    fn check(&self) -> Result<(), String>;
}

impl Sut for Mvcc {
    fn apply(&mut self, c: &Command) -> Result<Applied, Error> {
        Mvcc::apply(self, c)
    }
    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error> {
        Mvcc::range(self, r)
    }
    fn current_revision(&self) -> i64 {
        Mvcc::current_revision(self)
    }
    fn compact_revision(&self) -> i64 {
        Mvcc::compact_revision(self)
    }
    fn key_count(&self) -> usize {
        Mvcc::key_count(self)
    }
    fn lease_grant(&mut self, id: i64) {
        Mvcc::lease_grant(self, id);
    }
    fn check(&self) -> Result<(), String> {
        self.check_invariants()
    }
}

// ---------------------------------------------------------------- oracle --

#[derive(Clone, Debug)]
struct Event {
    main: i64,
    key: Vec<u8>,
    /// `None`: a delete.
    put: Option<(Vec<u8>, i64)>,
}

struct Oracle {
    /// Every write ever applied, in order; never compacted.
    events: Vec<Event>,
    rev: i64,
    /// etcd's compact revision, -1 before the first compaction.
    compact: i64,
    leases: BTreeSet<i64>,
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
            leases: BTreeSet::new(),
        }
    }

    /// The keyspace after replaying `events` up to main revision `at`.
    fn state(events: &[Event], at: i64) -> BTreeMap<Vec<u8>, KeyValue> {
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

    fn range(&self, events: &[Event], r: &RangeRequest, cur: i64) -> Result<RangeResponse, Error> {
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
        if p.lease != 0 && !self.leases.contains(&p.lease) {
            return Err(Error::LeaseNotFound);
        }
        if (p.ignore_value || p.ignore_lease) && self.live(&p.key).is_none() {
            return Err(Error::KeyNotFound);
        }
        Ok(())
    }

    /// Runs writes on a copy of the log; the caller keeps it on success.
    fn put(&self, log: &mut Vec<Event>, p: &PutRequest) -> Result<PutResponse, Error> {
        let main = self.rev + 1;
        let prev = Self::state(log, main).remove(&p.key);
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
        log.push(Event {
            main,
            key: p.key.clone(),
            put: Some((value, lease)),
        });
        Ok(PutResponse {
            prev_kv: if p.prev_kv { prev } else { None },
            header_revision: main,
        })
    }

    fn delete(&self, log: &mut Vec<Event>, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let main = self.rev + 1;
        let gone: Vec<KeyValue> = Self::state(log, main)
            .into_values()
            .filter(|kv| in_range(&kv.key, &d.key, &d.range_end))
            .collect();
        for kv in &gone {
            log.push(Event {
                main,
                key: kv.key.clone(),
                put: None,
            });
        }
        let wrote = log.len() > self.events.len();
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

    fn run_txn(&self, log: &mut Vec<Event>, t: &TxnRequest) -> Result<TxnResponse, Error> {
        // Compares always see the state before the outermost transaction.
        let succeeded = t.compare.iter().all(|c| self.compare(c));
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = vec![];
        for op in ops {
            let wrote = log.len() > self.events.len();
            let cur = if wrote { self.rev + 1 } else { self.rev };
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(log, r, cur)?),
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
        let mut log = self.events.clone();
        let out = match c {
            Command::Put(p) => {
                self.check_put(p)?;
                Applied::Put(self.put(&mut log, p)?)
            }
            Command::DeleteRange(d) => Applied::DeleteRange(self.delete(&mut log, d)),
            Command::Txn(t) => {
                self.check_txn(t)?;
                let mut r = self.run_txn(&mut log, t)?;
                r.header_revision = if log.len() > self.events.len() {
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
        };
        if log.len() > self.events.len() {
            self.rev += 1;
            self.events = log;
        }
        Ok(out)
    }
}

// ------------------------------------------------------------- generator --

const KEYS: [&str; 7] = ["a", "b", "b0", "c", "d", "e", "f"];
const VALUES: [&str; 4] = ["", "x", "y", "zz"];
const LEASES: [i64; 4] = [0, 1, 2, 99];

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
    match rng.random_range(0..20) {
        0..=7 => Command::Put(gen_put(rng)),
        8..=10 => Command::DeleteRange(gen_delete(rng)),
        11..=17 => Command::Txn(gen_txn(rng, cur, compact, 1)),
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
        Command::Compact(_) => false,
    }
}

// ------------------------------------------------------------ comparison --

/// Drives `sut` and the oracle with the same seeded commands and reads;
/// the first disagreement is the error, naming seed and step.
pub(crate) fn run_model(seed: u64, steps: usize, sut: &mut dyn Sut) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut oracle = Oracle::new();
    for id in [1, 2] {
        oracle.leases.insert(id);
        sut.lease_grant(id);
    }
    let ctx =
        |step: usize, what: String| format!("model mismatch (seed {seed}, step {step}): {what}");
    for step in 0..steps {
        let cur = oracle.rev;
        if rng.random_range(0..4) == 0 {
            let r = gen_range(&mut rng, cur, oracle.compact);
            let want = oracle.range(&oracle.events, &r, cur);
            let got = sut.range(&r);
            if got != want {
                return Err(ctx(
                    step,
                    format!("range {r:?}\n got  {got:?}\n want {want:?}"),
                ));
            }
        } else {
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
        }
        let (got, want) = (
            (
                sut.current_revision(),
                sut.compact_revision(),
                sut.key_count(),
            ),
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
        if step % FULL_CHECK_INTERVAL_STEPS == 0 {
            sut.check()
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
            }
        }
    }
    Ok(())
}

#[test]
fn engine_matches_model() {
    let seeds: Vec<u64> = match std::env::var("ENGINE_MODEL_SEED") {
        Ok(s) => vec![s.parse().expect("ENGINE_MODEL_SEED is a number")],
        Err(_) => (0..MODEL_SEEDS_COUNT).collect(),
    };
    let mut applied_ops = 0;
    for seed in seeds {
        let mut m = Mvcc::new();
        if let Err(e) = run_model(seed, MODEL_STEPS_PER_SEED, &mut m) {
            panic!("{e}");
        }
        applied_ops += MODEL_STEPS_PER_SEED;
        // The generator must reach the interesting states.
        assert!(m.current_revision() > 50, "seed {seed}: too few writes");
    }
    assert!(applied_ops >= MODEL_STEPS_PER_SEED);
}

// ---------------------------------------------------------- planted bugs --

/// Takes a revision for a delete that deleted nothing (a classic bug).
struct NoopDeleteTakesRevision {
    inner: Mvcc,
    extra: i64,
}

impl Sut for NoopDeleteTakesRevision {
    fn apply(&mut self, c: &Command) -> Result<Applied, Error> {
        let out = self.inner.apply(c);
        if let Ok(Applied::DeleteRange(d)) = &out {
            if d.deleted == 0 {
                self.extra += 1;
            }
        }
        out
    }
    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error> {
        self.inner.range(r)
    }
    fn current_revision(&self) -> i64 {
        self.inner.current_revision() + self.extra
    }
    fn compact_revision(&self) -> i64 {
        self.inner.compact_revision()
    }
    fn key_count(&self) -> usize {
        self.inner.key_count()
    }
    fn lease_grant(&mut self, id: i64) {
        self.inner.lease_grant(id);
    }
    fn check(&self) -> Result<(), String> {
        self.inner.check_invariants()
    }
}

/// Lets `limit` cap `count` (etcd counts every key in the range).
struct CountHonorsLimit(Mvcc);

impl Sut for CountHonorsLimit {
    fn apply(&mut self, c: &Command) -> Result<Applied, Error> {
        self.0.apply(c)
    }
    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error> {
        self.0.range(r).map(|mut resp| {
            if r.limit > 0 {
                resp.count = resp.count.min(r.limit);
            }
            resp
        })
    }
    fn current_revision(&self) -> i64 {
        self.0.current_revision()
    }
    fn compact_revision(&self) -> i64 {
        self.0.compact_revision()
    }
    fn key_count(&self) -> usize {
        self.0.key_count()
    }
    fn lease_grant(&mut self, id: i64) {
        self.0.lease_grant(id);
    }
    fn check(&self) -> Result<(), String> {
        self.0.check_invariants()
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
}
