//! kill -9 cycles: concurrent writers run while `kvik` is killed with
//! SIGKILL at random points (measured in acknowledged writes) and restarted
//! on the same data directory. After every restart a checker verifies that
//! no acknowledged write was lost or changed, that revisions never go
//! backwards, and that the store holds nothing nobody wrote.
//!
//! A second test plants bugs (a fabricated acknowledgement, a forgotten
//! write, acknowledged records cut off the end of the WAL) and asserts that
//! the same checker reports each of them.
//!
//! `KVIK_CRASH_SEED=<n>` replays the random choices of a run (op kinds, keys,
//! kill points); the seed is printed at the start and in every failure.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Kind, Raw, Server};
use net::pb::etcdserverpb as pb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::request_op::Request as Op;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Keys the writers share; small, so keys are overwritten often.
const KEYS: usize = 12;
/// Concurrent writer tasks, spread over `CONNECTIONS` HTTP/2 connections.
const WRITERS: usize = 8;
const CONNECTIONS: usize = 2;
/// Every cycle acknowledges at least this many writes before the kill.
const ACKS_MIN: u64 = 200;
/// Plus a random number of further acknowledgements below this.
const ACKS_EXTRA_MAX: u64 = 600;
const CYCLES: usize = 8;
/// A single request never legitimately takes this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The writers must reach the cycle's kill point within this.
const CYCLE_DEADLINE: Duration = Duration::from_secs(30);

fn key(i: usize) -> String {
    format!("crash/k{i:02}")
}

/// What is known about one attempted write.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// Acknowledged at this revision: must be durable.
    Acked(i64),
    /// No answer (in flight at the kill): it may or may not have landed.
    Unknown,
    /// Unacknowledged, but found in the store at this revision after a
    /// restart, so it is durable from then on.
    Landed(i64),
    /// Unacknowledged and not in the store after the restart that followed
    /// it: it must never appear.
    Lost,
}

#[derive(Clone, Debug)]
struct Write {
    /// Keys the write sets (all to the same value, at the same revision).
    keys: Vec<String>,
    outcome: Outcome,
}

/// The checker's model: every write ever attempted, by its unique value.
#[derive(Clone, Debug)]
struct Model {
    writes: HashMap<String, Write>,
    /// Revisions up to here have been verified revision by revision.
    checked_rev: i64,
    /// Highest revision a restarted server has served: it is durable, so no
    /// later restart may come back below it.
    floor: i64,
}

impl Model {
    /// A fresh store is at revision 1 and holds nothing.
    fn new() -> Model {
        Model {
            writes: HashMap::new(),
            checked_rev: 1,
            floor: 1,
        }
    }
}

/// What one successful check saw.
#[derive(Debug)]
#[allow(dead_code)] // read through `Debug`
struct CheckReport {
    revision: i64,
    new_revisions: usize,
    landed_unacked: usize,
    lost_unacked: usize,
    point_reads: usize,
}

async fn with_timeout<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(s)) => {
            let source = std::error::Error::source(&s)
                .map(|e| format!(" ({e:?})"))
                .unwrap_or_default();
            Err(format!("{what}: {:?} {}{source}", s.code(), s.message()))
        }
        Err(_) => Err(format!("{what}: no answer within {REQUEST_TIMEOUT:?}")),
    }
}

type Kv = pb::kv_client::KvClient<tonic::transport::Channel>;

/// The version of `key` visible at `revision` (0: latest) and the header
/// revision of the answer.
async fn read_at(
    kv: &mut Kv,
    key: &str,
    revision: i64,
) -> Result<(i64, Option<net::pb::mvccpb::KeyValue>), String> {
    let req = pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        revision,
        ..Default::default()
    };
    let resp = with_timeout(
        &format!("range {key} at revision {revision}"),
        kv.range(req),
    )
    .await?
    .into_inner();
    let header = resp
        .header
        .ok_or_else(|| format!("range {key}: no header"))?;
    if resp.kvs.len() > 1 {
        return Err(format!(
            "range {key} at revision {revision}: {} kvs for one key",
            resp.kvs.len()
        ));
    }
    Ok((header.revision, resp.kvs.into_iter().next()))
}

impl Model {
    /// Verifies the server against everything acknowledged so far. On
    /// success the model advances: unacknowledged writes found in the store
    /// become obligations, the others are marked lost.
    async fn check(&mut self, raw: &mut Raw) -> Result<CheckReport, String> {
        let kv = &mut raw.kv;
        let (current, _) = read_at(kv, &key(0), 0).await?;

        // 1. The revision never goes backwards.
        let newest_acked = self
            .writes
            .iter()
            .filter_map(|(v, w)| match w.outcome {
                Outcome::Acked(r) => Some((r, v)),
                _ => None,
            })
            .max();
        if let Some((r, v)) = newest_acked {
            if current < r {
                return Err(format!(
                    "revision went backwards: the server is at revision {current}, but write {v:?} was acknowledged at revision {r}"
                ));
            }
        }
        if current < self.floor {
            return Err(format!(
                "revision went backwards: the server is at revision {current}, but revision {} was served after an earlier restart",
                self.floor
            ));
        }

        // 2. Walk every key's versions newer than the last check: each
        // revision in (checked_rev, current] holds exactly one write, with
        // all of its keys and nothing else.
        let mut by_rev: BTreeMap<i64, (String, BTreeSet<String>)> = BTreeMap::new();
        let mut latest: HashMap<String, (i64, String)> = HashMap::new();
        for i in 0..KEYS {
            let k = key(i);
            let mut at = 0;
            loop {
                let (_, kv_opt) = read_at(kv, &k, at).await?;
                let Some(found) = kv_opt else { break };
                let value = String::from_utf8_lossy(&found.value).into_owned();
                let rev = found.mod_revision;
                if at == 0 {
                    latest.insert(k.clone(), (rev, value.clone()));
                }
                if rev > current {
                    return Err(format!("key {k} has version at revision {rev}, above the current revision {current}"));
                }
                if rev <= self.checked_rev {
                    break;
                }
                let slot = by_rev
                    .entry(rev)
                    .or_insert_with(|| (value.clone(), BTreeSet::new()));
                if slot.0 != value {
                    return Err(format!(
                        "revision {rev} holds two different values: {:?} and {value:?} (key {k})",
                        slot.0
                    ));
                }
                slot.1.insert(k.clone());
                if rev <= 1 {
                    break;
                }
                at = rev - 1;
            }
        }
        for rev in self.checked_rev + 1..=current {
            if !by_rev.contains_key(&rev) {
                return Err(format!(
                    "revision {rev} holds no write that any key shows (revisions {}..={current})",
                    self.checked_rev + 1
                ));
            }
        }
        let mut landed = 0;
        for (rev, (value, keys)) in &by_rev {
            let Some(w) = self.writes.get_mut(value) else {
                return Err(format!(
                    "the store holds value {value:?} at revision {rev} (keys {keys:?}), which nobody wrote"
                ));
            };
            let want: BTreeSet<String> = w.keys.iter().cloned().collect();
            if &want != keys {
                return Err(format!(
                    "write {value:?} set keys {want:?}, but revision {rev} shows it on {keys:?} only (torn transaction)"
                ));
            }
            match w.outcome {
                Outcome::Acked(r) if r == *rev => {}
                Outcome::Acked(r) => {
                    return Err(format!("write {value:?} was acknowledged at revision {r} but is stored at revision {rev}"));
                }
                Outcome::Unknown => {
                    w.outcome = Outcome::Landed(*rev);
                    landed += 1;
                }
                Outcome::Landed(r) => {
                    return Err(format!("write {value:?} was seen at revision {r} after an earlier restart and now also at revision {rev}"));
                }
                Outcome::Lost => {
                    return Err(format!(
                        "write {value:?} was absent after the restart that followed it but now appears at revision {rev}"
                    ));
                }
            }
        }

        // 3. Every acknowledged write of the window is there.
        for (value, w) in &self.writes {
            if let Outcome::Acked(r) = w.outcome {
                if r > self.checked_rev {
                    match by_rev.get(&r) {
                        Some((v, _)) if v == value => {}
                        Some((v, _)) => {
                            return Err(format!(
                                "acknowledged write {value:?} (keys {:?}, revision {r}) is lost: revision {r} holds {v:?}",
                                w.keys
                            ));
                        }
                        None => {
                            return Err(format!(
                                "acknowledged write {value:?} (keys {:?}, revision {r}) is lost: no key shows revision {r}",
                                w.keys
                            ));
                        }
                    }
                }
            }
        }

        // 4. Each key's latest value is its newest durable write.
        let mut newest: HashMap<&str, (i64, &str)> = HashMap::new();
        for (value, w) in &self.writes {
            let r = match w.outcome {
                Outcome::Acked(r) | Outcome::Landed(r) => r,
                _ => continue,
            };
            for k in &w.keys {
                let e = newest.entry(k.as_str()).or_insert((r, value.as_str()));
                if r > e.0 {
                    *e = (r, value.as_str());
                }
            }
        }
        for (k, (r, v)) in &newest {
            match latest.get(*k) {
                Some((lr, lv)) if lr == r && lv == v => {}
                Some((lr, lv)) => {
                    return Err(format!(
                        "key {k}: latest value {lv:?} at revision {lr}, but the newest durable write is {v:?} at revision {r}"
                    ));
                }
                None => {
                    return Err(format!(
                        "key {k} is missing; its newest durable write is {v:?} at revision {r}"
                    ))
                }
            }
        }

        // 5. Older history is intact: every durable write of earlier windows
        // still reads back at its revision (point reads, in parallel).
        let mut older: Vec<(String, String, i64)> = Vec::new();
        for (value, w) in &self.writes {
            if let Outcome::Acked(r) | Outcome::Landed(r) = w.outcome {
                if r <= self.checked_rev {
                    for k in &w.keys {
                        older.push((k.clone(), value.clone(), r));
                    }
                }
            }
        }
        let point_reads = older.len();
        let mut set = tokio::task::JoinSet::new();
        let chunk = older.len().div_ceil(8).max(1);
        for part in older.chunks(chunk).map(|c| c.to_vec()) {
            let mut kv = kv.clone();
            set.spawn(async move {
                for (k, value, r) in part {
                    let (_, found) = read_at(&mut kv, &k, r).await?;
                    match found {
                        Some(f) if f.mod_revision == r && f.value == value.as_bytes() => {}
                        Some(f) => {
                            return Err(format!(
                                "durable write {value:?} of key {k} at revision {r} reads back as {:?} at revision {}",
                                String::from_utf8_lossy(&f.value),
                                f.mod_revision
                            ));
                        }
                        None => return Err(format!("durable write {value:?} of key {k} at revision {r} is gone")),
                    }
                }
                Ok::<(), String>(())
            });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| format!("point-read task: {e}"))??;
        }

        // 6. Unacknowledged writes not seen now can never appear later.
        let mut lost = 0;
        for w in self.writes.values_mut() {
            if w.outcome == Outcome::Unknown {
                w.outcome = Outcome::Lost;
                lost += 1;
            }
        }
        let new_revisions = (current - self.checked_rev) as usize;
        self.checked_rev = current;
        self.floor = current;
        Ok(CheckReport {
            revision: current,
            new_revisions,
            landed_unacked: landed,
            lost_unacked: lost,
            point_reads,
        })
    }
}

/// Counters of one cycle's writers.
struct CycleState {
    model: Arc<Mutex<Model>>,
    acks: AtomicU64,
    target: u64,
    reached: tokio::sync::Notify,
    /// Set just before SIGKILL: failures from then on are expected.
    killing: AtomicBool,
    unexpected: Mutex<Vec<String>>,
}

/// One write: a Put of one key, or a Txn that sets two keys (both branches
/// write the same, so its effect does not depend on the compare).
async fn do_write(kv: &mut Kv, keys: &[String], value: &str) -> Result<i64, String> {
    if keys.len() == 1 {
        let req = pb::PutRequest {
            key: keys[0].as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        };
        let resp = with_timeout("put", kv.put(req)).await?.into_inner();
        return resp
            .header
            .map(|h| h.revision)
            .ok_or_else(|| "put: no header".to_string());
    }
    let puts = || {
        keys.iter()
            .map(|k| pb::RequestOp {
                request: Some(Op::RequestPut(pb::PutRequest {
                    key: k.as_bytes().to_vec(),
                    value: value.as_bytes().to_vec(),
                    ..Default::default()
                })),
            })
            .collect::<Vec<_>>()
    };
    let mut success = puts();
    success.push(pb::RequestOp {
        request: Some(Op::RequestRange(pb::RangeRequest {
            key: keys[0].as_bytes().to_vec(),
            ..Default::default()
        })),
    });
    let req = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: CompareResult::Less as i32,
            target: CompareTarget::Mod as i32,
            key: keys[0].as_bytes().to_vec(),
            range_end: Vec::new(),
            target_union: Some(TargetUnion::ModRevision(i64::MAX)),
        }],
        success,
        failure: puts(),
    };
    let resp = with_timeout("txn", kv.txn(req)).await?.into_inner();
    if !resp.succeeded {
        return Err("txn: a compare that always holds did not succeed".into());
    }
    let rev = resp
        .header
        .map(|h| h.revision)
        .ok_or_else(|| "txn: no header".to_string())?;
    // The nested read sees the txn's own write.
    match resp
        .responses
        .get(keys.len())
        .and_then(|r| r.response.as_ref())
    {
        Some(pb::response_op::Response::ResponseRange(r))
            if r.kvs.len() == 1
                && r.kvs[0].value == value.as_bytes()
                && r.kvs[0].mod_revision == rev => {}
        other => {
            return Err(format!(
                "txn: nested read does not show the txn's write at revision {rev}: {other:?}"
            ))
        }
    }
    Ok(rev)
}

async fn writer(state: Arc<CycleState>, mut kv: Kv, cycle: usize, task: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ ((cycle as u64) << 32) ^ task as u64);
    let mut n = 0u64;
    while !state.killing.load(Ordering::SeqCst) {
        n += 1;
        let value = format!("c{cycle}.w{task}.n{n}");
        let a = rng.random_range(0..KEYS);
        let keys = if rng.random_bool(0.5) {
            vec![key(a)]
        } else {
            let b = (a + rng.random_range(1..KEYS)) % KEYS;
            vec![key(a), key(b)]
        };
        state.model.lock().unwrap().writes.insert(
            value.clone(),
            Write {
                keys: keys.clone(),
                outcome: Outcome::Unknown,
            },
        );
        match do_write(&mut kv, &keys, &value).await {
            Ok(rev) => {
                state
                    .model
                    .lock()
                    .unwrap()
                    .writes
                    .get_mut(&value)
                    .unwrap()
                    .outcome = Outcome::Acked(rev);
                if state.acks.fetch_add(1, Ordering::SeqCst) + 1 >= state.target {
                    state.reached.notify_one();
                }
            }
            Err(e) => {
                if !state.killing.load(Ordering::SeqCst) {
                    state
                        .unexpected
                        .lock()
                        .unwrap()
                        .push(format!("writer {task}: {e}"));
                }
                // The outcome stays unknown; a dead connection ends the task.
                return;
            }
        }
    }
}

/// Runs `WRITERS` writers until `target` writes are acknowledged, kills the
/// server with SIGKILL while they run, and waits for the writers to stop.
/// Returns the number of acknowledgements.
fn run_cycle_and_kill(
    rt: &tokio::runtime::Runtime,
    server: &mut Server,
    model: &Arc<Mutex<Model>>,
    cycle: usize,
    target: u64,
    seed: u64,
) -> Result<u64, String> {
    let state = Arc::new(CycleState {
        model: model.clone(),
        acks: AtomicU64::new(0),
        target,
        reached: tokio::sync::Notify::new(),
        killing: AtomicBool::new(false),
        unexpected: Mutex::new(Vec::new()),
    });
    let endpoint = server.endpoint();
    let tasks = rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            conns.push(Raw::connect(endpoint.clone()).await.kv);
        }
        (0..WRITERS)
            .map(|t| {
                tokio::spawn(writer(
                    state.clone(),
                    conns[t % CONNECTIONS].clone(),
                    cycle,
                    t,
                    seed,
                ))
            })
            .collect::<Vec<_>>()
    });
    let reached = rt.block_on(async {
        tokio::time::timeout(CYCLE_DEADLINE, state.reached.notified())
            .await
            .is_ok()
    });
    state.killing.store(true, Ordering::SeqCst);
    server.kill9();
    rt.block_on(async {
        for t in tasks {
            t.await.expect("writer task");
        }
    });
    let acks = state.acks.load(Ordering::SeqCst);
    let unexpected = state.unexpected.lock().unwrap().clone();
    if !unexpected.is_empty() {
        return Err(format!(
            "writes failed while the server was up: {unexpected:?}"
        ));
    }
    if !reached {
        return Err(format!(
            "only {acks} of {target} writes acknowledged within {CYCLE_DEADLINE:?}"
        ));
    }
    Ok(acks)
}

fn restart(server: &mut Server) {
    server.spawn();
    server.wait_ready();
}

fn check_now(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    model: &mut Model,
) -> Result<CheckReport, String> {
    let endpoint = server.endpoint();
    rt.block_on(async {
        let mut raw = Raw::connect(endpoint).await;
        model.check(&mut raw).await
    })
}

fn seed() -> u64 {
    match std::env::var("KVIK_CRASH_SEED") {
        Ok(s) => s.parse().expect("KVIK_CRASH_SEED must be a u64"),
        Err(_) => rand::random(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn log_tail(server: &Server) -> String {
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn kill9_cycles_lose_no_acknowledged_write() {
    let seed = seed();
    eprintln!("crash test seed: {seed} (KVIK_CRASH_SEED={seed} replays it)");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = runtime();
    let mut server = Server::start(Kind::Kvik);
    let model = Arc::new(Mutex::new(Model::new()));
    let mut total_acks = 0;
    for cycle in 0..CYCLES {
        let target = ACKS_MIN + rng.random_range(0..ACKS_EXTRA_MAX);
        let acks = run_cycle_and_kill(&rt, &mut server, &model, cycle, target, seed)
            .unwrap_or_else(|e| {
                panic!(
                    "seed {seed}, cycle {cycle}: {e}\nserver log tail:\n{}",
                    log_tail(&server)
                )
            });
        assert!(
            acks >= ACKS_MIN,
            "seed {seed}, cycle {cycle}: only {acks} acknowledged writes before the kill"
        );
        total_acks += acks;
        restart(&mut server);
        let mut m = model.lock().unwrap().clone();
        let report = check_now(&rt, &server, &mut m).unwrap_or_else(|e| {
            panic!("seed {seed}, cycle {cycle} (killed after {acks} acks, target {target}): {e}\nserver log tail:\n{}", log_tail(&server))
        });
        eprintln!(
            "cycle {cycle}: killed after {acks} acks (target {target}); after restart: {report:?}"
        );
        *model.lock().unwrap() = m;
    }
    // Writes still work after the last restart, at the next revision.
    let last = model.lock().unwrap().checked_rev;
    let rev = rt
        .block_on(async {
            let mut raw = Raw::connect(server.endpoint()).await;
            do_write(&mut raw.kv, &[key(0)], "after the last restart").await
        })
        .unwrap_or_else(|e| panic!("seed {seed}: write after the last restart: {e}"));
    assert_eq!(
        rev,
        last + 1,
        "seed {seed}: the first write after the last restart"
    );
    eprintln!(
        "{CYCLES} cycles, {total_acks} acknowledged writes, {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// The checker can fail.

/// Offsets of the records of a WAL segment (format: 32-byte segment header,
/// then records of a 25-byte header {len u32, crc32c u32, type u8, term u64,
/// index u64} and `len` payload bytes).
fn record_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 32;
    while off + 25 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if off + 25 + len > bytes.len() {
            break;
        }
        out.push((off, 25 + len));
        off += 25 + len;
    }
    assert_eq!(off, bytes.len(), "the segment ends with a whole record");
    out
}

fn last_segment(data_dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data_dir.join("data").join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs.pop().expect("a WAL segment")
}

#[test]
fn checker_catches_planted_bugs() {
    let seed = seed();
    eprintln!("planted-bug test seed: {seed} (KVIK_CRASH_SEED={seed} replays it)");
    let rt = runtime();
    let mut server = Server::start(Kind::Kvik);
    let model = Arc::new(Mutex::new(Model::new()));

    // A clean cycle passes.
    let acks = run_cycle_and_kill(&rt, &mut server, &model, 0, 300, seed)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    restart(&mut server);
    let before = model.lock().unwrap().clone();
    let mut m = before.clone();
    let report =
        check_now(&rt, &server, &mut m).unwrap_or_else(|e| panic!("seed {seed}: clean cycle: {e}"));
    eprintln!("clean cycle: {acks} acks, {report:?}");

    // (a) A fabricated acknowledgement of a write that never happened, at a
    // revision the store holds something else at.
    {
        let mut bad = m.clone();
        bad.writes.insert(
            "fabricated".into(),
            Write {
                keys: vec![key(3)],
                outcome: Outcome::Acked(report.revision / 2),
            },
        );
        let err = check_now(&rt, &server, &mut bad)
            .expect_err("a fabricated ack in the past must be reported");
        eprintln!("fabricated ack (past) reported: {err}");
        assert!(err.contains("fabricated"), "{err}");
    }
    // (b) A fabricated acknowledgement above the server's revision: the
    // revision went backwards.
    {
        let mut bad = m.clone();
        bad.writes.insert(
            "fabricated".into(),
            Write {
                keys: vec![key(3)],
                outcome: Outcome::Acked(report.revision + 5),
            },
        );
        let err = check_now(&rt, &server, &mut bad)
            .expect_err("an ack above the current revision must be reported");
        eprintln!("fabricated ack (future) reported: {err}");
        assert!(err.contains("backwards"), "{err}");
    }
    // (c) A value nobody wrote: forget an acknowledged write, then check the
    // window that holds it.
    {
        let mut bad = before.clone();
        let (value, _) = bad
            .writes
            .iter()
            .find(|(_, w)| matches!(w.outcome, Outcome::Acked(_)))
            .map(|(v, w)| (v.clone(), w.clone()))
            .unwrap();
        bad.writes.remove(&value);
        let err =
            check_now(&rt, &server, &mut bad).expect_err("a value nobody wrote must be reported");
        eprintln!("unwritten value reported: {err}");
        assert!(err.contains("nobody wrote"), "{err}");
    }
    *model.lock().unwrap() = m;

    // (d) Acknowledged records cut off the end of the WAL (mid-record, so
    // that recovery takes it for a torn write and starts).
    let acks = run_cycle_and_kill(&rt, &mut server, &model, 1, 300, seed)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let seg = last_segment(&server.data_dir);
    let bytes = std::fs::read(&seg).unwrap();
    let records = record_offsets(&bytes);
    // At most one write per writer was unanswered; cut well past those.
    let drop_records = WRITERS + 100;
    assert!(
        acks as usize > drop_records,
        "cycle acknowledged {acks} writes"
    );
    let (cut_at, _) = records[records.len() - drop_records];
    let cut = cut_at + 7;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    eprintln!(
        "cut {} of {} bytes ({drop_records} records) off {}",
        bytes.len() - cut,
        bytes.len(),
        seg.display()
    );
    restart(&mut server);
    assert!(
        server.log().to_lowercase().contains("truncat"),
        "recovery reports the cut:\n{}",
        log_tail(&server)
    );
    let mut bad = model.lock().unwrap().clone();
    let err = check_now(&rt, &server, &mut bad)
        .expect_err("acknowledged writes cut off the WAL must be reported");
    eprintln!("WAL tail cut reported: {err}");
    assert!(err.contains("backwards") || err.contains("lost"), "{err}");
}
