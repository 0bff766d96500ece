//! kvik's revision store, through real processes.
//!
//! - kill -9 cycles while checkpoints, segment rewrites, compactions and
//!   Defragment run all the time, killed at an acknowledgement count, right
//!   after a checkpoint, a Defragment or a compaction: every acknowledged
//!   write survives (the newest acknowledged version of each key or a newer
//!   one somebody wrote, and exact values at every revision at or above the
//!   compaction), compactions are durable, every cycle checkpointed, restarts
//!   replay a short WAL tail, and the store's files stay bounded while far
//!   more was written. Planted losses (fabricated acknowledgements of a
//!   write, an old version and a compaction; a data directory rolled back
//!   one cycle) are reported by the same checker.
//! - Bit flips: a damaged record value is refused with DataLoss "etcdserver:
//!   corrupt cluster" while every other key is served; a damaged index
//!   block, trailer or header refuses start-up, naming the segment file and
//!   offset; both manifest slots damaged refuse start-up; a torn newest
//!   manifest slot falls back to the older one and the WAL.
//! - Restart cost is flat in the WAL's length: only the tail past the last
//!   checkpoint is replayed; with checkpoints off the same check fails.
//!   WAL segments behind a checkpoint are deleted.
//! - Space is reclaimed under load with no manual step, bounded in
//!   `etcd_mvcc_db_total_size_in_bytes` and on disk; without compaction the
//!   same bound fails. etcdctl 3.4's `defrag` and `endpoint status` work
//!   against kvik.
//! - Small values checkpoint only as the writes require: a wholly live
//!   segment of tiny records is not rewritten again and again (the endless
//!   rewrite loop fixed in `a4d80eb`).
//!
//! `KVIK_REVSTORE_SEED=<n>` replays the random choices of the kill -9 test;
//! the seed is printed at its start and in every failure.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::store::{
    copy_tree, find_once, manifests, metric, metrics_listener, newest_manifest, offsets_named,
    poll_metric, segment_files, store_dir, wal_segments,
};
use common::{Kind, Raw, Server};
use engine::segment::{segment_name, RECORD_HEADER_BYTES, SEGMENT_TRAILER_BYTES};
use net::pb::etcdserverpb as pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

const CHECKPOINTS: &str = "kvik_checkpoints_total";
const CHECKPOINT_BYTES: &str = "kvik_checkpoint_bytes_total";
const REPLAYED: &str = "kvik_wal_entries_replayed";
const DB_SIZE: &str = "etcd_mvcc_db_total_size_in_bytes";
const DB_SIZE_IN_USE: &str = "etcd_mvcc_db_total_size_in_use_in_bytes";

/// A single request never legitimately takes this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Conditions polled for (a checkpoint, reclaimed space) must hold within
/// this.
const POLL_DEADLINE: Duration = Duration::from_secs(30);
/// A start-up refusal must come well within this.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(20);

type Kv = pb::kv_client::KvClient<Channel>;
type Maintenance = pb::maintenance_client::MaintenanceClient<Channel>;

/// A kvik with a metrics listener, on its own temporary directory.
struct Kvik {
    server: Server,
    /// host:port of `/metrics`.
    metrics: String,
}

impl Kvik {
    fn start(tag: &str, args: &[&str]) -> Kvik {
        let (url, metrics) = metrics_listener();
        let mut all = vec!["--listen-metrics-urls", url.as_str()];
        all.extend_from_slice(args);
        let server = Server::start_in(Kind::Kvik, common::temp_dir(tag), true, &all);
        Kvik { server, metrics }
    }

    fn dir(&self) -> &Path {
        &self.server.data_dir
    }

    fn store(&self) -> std::path::PathBuf {
        store_dir(&self.server.data_dir)
    }

    fn metric(&self, name: &str) -> u64 {
        metric(&self.metrics, name)
    }

    /// Starts the killed process again on the same directory and flags;
    /// returns what it logged while starting.
    fn restart(&mut self) -> String {
        let before = self.server.log().len();
        self.server.spawn();
        self.server.wait_ready();
        self.server.log()[before..].to_string()
    }

    fn extra_args(&self) -> Vec<&str> {
        self.server.extra_args.iter().map(String::as_str).collect()
    }

    fn log_tail(&self) -> String {
        let log = self.server.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A request's result, or why no answer came within [`REQUEST_TIMEOUT`].
async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<Result<T, tonic::Status>, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => Ok(r.map(tonic::Response::into_inner)),
        Err(_) => Err(format!("{what}: no answer within {REQUEST_TIMEOUT:?}")),
    }
}

/// A request that must succeed.
async fn ok<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    timed(what, f)
        .await?
        .map_err(|s| format!("{what}: {:?} {}", s.code(), s.message()))
}

async fn put(kv: &mut Kv, key: &[u8], value: &[u8]) -> Result<i64, String> {
    let req = pb::PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    };
    let what = format!("put {}", String::from_utf8_lossy(key));
    let r = ok(&what, kv.put(req)).await?;
    r.header
        .map(|h| h.revision)
        .ok_or_else(|| format!("{what}: no header"))
}

/// Every key under `prefix` at `revision` (0: latest), and the header
/// revision.
async fn range_prefix(
    kv: &mut Kv,
    prefix: &str,
    revision: i64,
) -> Result<(i64, Vec<net::pb::mvccpb::KeyValue>), String> {
    let req = pb::RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: net::convert::prefix_end(prefix.as_bytes()),
        revision,
        ..Default::default()
    };
    let r = ok(
        &format!("range {prefix}* at revision {revision}"),
        kv.range(req),
    )
    .await?;
    let rev = r
        .header
        .map(|h| h.revision)
        .ok_or_else(|| format!("range {prefix}*: no header"))?;
    Ok((rev, r.kvs))
}

/// One key at `revision` (0: latest).
async fn get(
    kv: &mut Kv,
    key: &[u8],
    revision: i64,
) -> Result<Result<Option<net::pb::mvccpb::KeyValue>, tonic::Status>, String> {
    let req = pb::RangeRequest {
        key: key.to_vec(),
        revision,
        ..Default::default()
    };
    let what = format!(
        "range {} at revision {revision}",
        String::from_utf8_lossy(key)
    );
    Ok(timed(&what, kv.range(req))
        .await?
        .map(|r| r.kvs.into_iter().next()))
}

// ---------------------------------------------------------------------------
// 1. kill -9 with checkpoints, rewrites, compaction and Defragment in play.

/// Keys the writers overwrite.
const C_KEYS: usize = 40;
/// Concurrent writers, over `C_CONNECTIONS` HTTP/2 connections.
const C_WRITERS: usize = 6;
const C_CONNECTIONS: usize = 2;
const C_CYCLES: usize = 10;
/// `--snapshot-count` and `--kvik-checkpoint-bytes`: tiny, so checkpoints
/// and segment rewrites run all the time.
const C_SNAPSHOT_COUNT: u64 = 25;
const C_CHECKPOINT_BYTES: u64 = 32 << 10;
/// Bytes of every value.
const C_VALUE_BYTES: usize = 400;
/// Every cycle acknowledges at least this many writes before its kill...
const C_ACKS_MIN: u64 = 200;
/// ... plus, when killed at an acknowledgement count, up to this many more.
const C_ACKS_EXTRA_MAX: u64 = 400;
/// The compactor compacts after this many further acknowledgements...
const C_COMPACT_EVERY_ACKS: u64 = 30;
/// ... and asks for Defragment after every this many compactions.
const C_DEFRAG_EVERY_COMPACTIONS: u64 = 3;
/// A cycle must reach its kill point within this.
const C_CYCLE_DEADLINE: Duration = Duration::from_secs(60);
/// Bounds on the store directory after each kill. Far more than this is
/// written over the run (asserted), so staying within them means segments
/// were retired and their files deleted.
const C_SEGMENT_FILES_MAX: usize = 12;
const C_STORE_BYTES_MAX: u64 = 384 << 10;
/// WAL entries a restart may replay: the entries since the last durable
/// checkpoint, which trail by `C_SNAPSHOT_COUNT` plus what arrived while
/// one was being written. Far fewer than the run's entries (asserted).
const C_REPLAYED_MAX: u64 = 200;

fn crash_key(k: usize) -> Vec<u8> {
    format!("rs/crash/k{k:02}").into_bytes()
}

/// A value: its unique tag, '|', then padding to `C_VALUE_BYTES`.
fn crash_value(tag: &str) -> Vec<u8> {
    let mut v = format!("{tag}|").into_bytes();
    v.resize(C_VALUE_BYTES.max(v.len()), b'.');
    v
}

/// The tag of a stored value, if it has the shape [`crash_value`] gives.
fn tag_of(value: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(value).ok()?;
    let (tag, _) = s.split_once('|')?;
    (crash_value(tag) == value).then(|| tag.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Acknowledged at this revision: must be durable.
    Acked(i64),
    /// No answer (in flight at the kill): it may or may not have landed.
    Unknown,
}

/// What the checker knows: every write attempted, and the compactions.
#[derive(Clone, Debug, Default)]
struct Model {
    /// By unique tag: (key index, outcome).
    writes: HashMap<String, (usize, Outcome)>,
    /// Highest acknowledged compaction revision: durable.
    compact_acked: i64,
    /// Highest compaction revision asked for: it may have landed.
    compact_sent: i64,
    /// Highest revision served after an earlier restart.
    floor: i64,
}

#[derive(Debug)]
#[allow(dead_code)] // read through `Debug`
struct CheckReport {
    revision: i64,
    keys: usize,
    exact_reads: usize,
    compact_rev: i64,
}

impl Model {
    fn newest_acked(&self) -> Option<(i64, &str, usize)> {
        self.writes
            .iter()
            .filter_map(|(t, (k, o))| match o {
                Outcome::Acked(r) => Some((*r, t.as_str(), *k)),
                Outcome::Unknown => None,
            })
            .max()
    }

    /// Verifies the server against everything acknowledged so far.
    async fn check(&mut self, kv: &mut Kv) -> Result<CheckReport, String> {
        let (current, kvs) = range_prefix(kv, "rs/crash/", 0).await?;

        // The revision never goes backwards.
        if let Some((r, t, _)) = self.newest_acked() {
            if current < r {
                return Err(format!(
                    "revision went backwards: the server is at revision {current}, but write {t:?} was acknowledged at revision {r}"
                ));
            }
        }
        if current < self.floor {
            return Err(format!(
                "revision went backwards: the server is at revision {current}, but served revision {} after an earlier restart",
                self.floor
            ));
        }

        // Each key shows its newest acknowledged write or a newer one that
        // somebody wrote to that key.
        let mut newest: BTreeMap<usize, (i64, &str)> = BTreeMap::new();
        for (t, (k, o)) in &self.writes {
            if let Outcome::Acked(r) = o {
                let e = newest.entry(*k).or_insert((*r, t.as_str()));
                if *r > e.0 {
                    *e = (*r, t.as_str());
                }
            }
        }
        let mut latest: HashMap<Vec<u8>, &net::pb::mvccpb::KeyValue> = HashMap::new();
        for f in &kvs {
            latest.insert(f.key.clone(), f);
        }
        for k in 0..C_KEYS {
            let key = crash_key(k);
            let name = String::from_utf8_lossy(&key).into_owned();
            let found = latest.get(&key);
            let want = newest.get(&k);
            let Some(f) = found else {
                if let Some((r, t)) = want {
                    return Err(format!(
                        "acknowledged write {t:?} of key {name} (revision {r}) is lost: the key is missing"
                    ));
                }
                continue;
            };
            let Some(tag) = tag_of(&f.value) else {
                return Err(format!(
                    "key {name} holds a value nobody wrote: {:?}",
                    String::from_utf8_lossy(&f.value)
                ));
            };
            match self.writes.get(&tag) {
                Some((wk, _)) if *wk != k => {
                    return Err(format!(
                        "key {name} holds {tag:?}, which was written to another key"
                    ))
                }
                Some((_, Outcome::Acked(r))) if *r != f.mod_revision => {
                    return Err(format!(
                        "key {name}: {tag:?} was acknowledged at revision {r} but is stored at revision {}",
                        f.mod_revision
                    ))
                }
                Some(_) => {}
                None => {
                    return Err(format!(
                        "key {name} holds {tag:?} at revision {}, which nobody wrote",
                        f.mod_revision
                    ))
                }
            }
            if let Some((r, t)) = want {
                if f.mod_revision < *r {
                    return Err(format!(
                        "acknowledged write {t:?} of key {name} (revision {r}) is lost: the key shows {tag:?} at revision {}",
                        f.mod_revision
                    ));
                }
                if f.mod_revision == *r && tag != *t {
                    return Err(format!(
                        "acknowledged write {t:?} of key {name} (revision {r}) is lost: revision {r} shows {tag:?}"
                    ));
                }
            }
        }

        // Every acknowledged write at or above the durable compaction reads
        // back exactly at its revision.
        let floor = self.compact_acked;
        let exact: Vec<(usize, String, i64)> = self
            .writes
            .iter()
            .filter_map(|(t, (k, o))| match o {
                Outcome::Acked(r) if *r >= floor => Some((*k, t.clone(), *r)),
                _ => None,
            })
            .collect();
        let exact_reads = exact.len();
        let compact_sent = self.compact_sent;
        let mut set = tokio::task::JoinSet::new();
        let chunk = exact.len().div_ceil(6).max(1);
        for part in exact.chunks(chunk).map(|c| c.to_vec()) {
            let mut kv = kv.clone();
            set.spawn(async move {
                for (k, tag, r) in part {
                    let key = crash_key(k);
                    let name = String::from_utf8_lossy(&key).into_owned();
                    match get(&mut kv, &key, r).await? {
                        Ok(Some(f)) if f.mod_revision == r && f.value == crash_value(&tag) => {}
                        Ok(Some(f)) => {
                            return Err(format!(
                                "acknowledged write {tag:?} of key {name} at revision {r} is lost: revision {r} reads {:?} at revision {}",
                                tag_of(&f.value).unwrap_or_default(),
                                f.mod_revision
                            ))
                        }
                        Ok(None) => {
                            return Err(format!(
                                "acknowledged write {tag:?} of key {name} at revision {r} is lost: no version at revision {r}"
                            ))
                        }
                        // An unacknowledged compaction above it may have
                        // landed.
                        Err(s) if s.message().contains("compacted") && r < compact_sent => {}
                        Err(s) => {
                            return Err(format!(
                                "reading acknowledged write {tag:?} of key {name} at revision {r}: {:?} {}",
                                s.code(),
                                s.message()
                            ))
                        }
                    }
                }
                Ok::<(), String>(())
            });
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| format!("read task: {e}"))??;
        }

        // An acknowledged compaction is durable.
        if floor > 1 {
            match get(kv, &crash_key(0), floor - 1).await? {
                Err(s)
                    if s.code() == tonic::Code::OutOfRange && s.message().contains("compacted") => {
                }
                other => {
                    let read = match other {
                        Ok(Some(f)) => format!(
                            "{:?} at revision {}",
                            tag_of(&f.value).unwrap_or_default(),
                            f.mod_revision
                        ),
                        Ok(None) => "no version".to_string(),
                        Err(s) => format!("{:?} {}", s.code(), s.message()),
                    };
                    return Err(format!(
                        "compaction at revision {floor} was acknowledged, but revision {} still reads: {read}",
                        floor - 1
                    ));
                }
            }
        }
        self.floor = current;
        Ok(CheckReport {
            revision: current,
            keys: kvs.len(),
            exact_reads,
            compact_rev: floor,
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    acks: u64,
    max_rev: i64,
    compactions: u64,
    defrags: u64,
    killing: bool,
}

/// One cycle's shared state.
struct Cycle {
    model: Arc<Mutex<Model>>,
    progress: tokio::sync::watch::Sender<Progress>,
    /// Set just before SIGKILL: failures from then on are expected.
    killing: AtomicBool,
    unexpected: Mutex<Vec<String>>,
}

impl Cycle {
    fn failed(&self, e: String) {
        if !self.killing.load(Ordering::SeqCst) {
            self.unexpected.lock().unwrap().push(e);
        }
    }
}

async fn crash_writer(c: Arc<Cycle>, mut kv: Kv, cycle: usize, task: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ ((cycle as u64) << 32) ^ task as u64);
    let mut n = 0u64;
    while !c.killing.load(Ordering::SeqCst) {
        n += 1;
        let tag = format!("c{cycle}.w{task}.n{n}");
        let k = rng.random_range(0..C_KEYS);
        c.model
            .lock()
            .unwrap()
            .writes
            .insert(tag.clone(), (k, Outcome::Unknown));
        match put(&mut kv, &crash_key(k), &crash_value(&tag)).await {
            Ok(rev) => {
                c.model.lock().unwrap().writes.get_mut(&tag).unwrap().1 = Outcome::Acked(rev);
                c.progress.send_modify(|p| {
                    p.acks += 1;
                    p.max_rev = p.max_rev.max(rev);
                });
            }
            Err(e) => {
                // The outcome stays unknown; a dead connection ends the task.
                c.failed(format!("writer {task}: {e}"));
                return;
            }
        }
    }
}

/// Compacts at the newest acknowledged revision every
/// `C_COMPACT_EVERY_ACKS` acknowledgements, and asks for Defragment every
/// `C_DEFRAG_EVERY_COMPACTIONS` compactions.
async fn compactor(c: Arc<Cycle>, mut kv: Kv, mut maintenance: Maintenance, cycle: usize) {
    let mut rx = c.progress.subscribe();
    let mut next = C_COMPACT_EVERY_ACKS;
    let mut n = 0u64;
    loop {
        let p = match rx.wait_for(|p| p.killing || p.acks >= next).await {
            Ok(p) => *p,
            Err(_) => return,
        };
        if p.killing {
            return;
        }
        next = p.acks + C_COMPACT_EVERY_ACKS;
        let rev = p.max_rev;
        {
            let mut m = c.model.lock().unwrap();
            if rev <= m.compact_sent {
                continue;
            }
            m.compact_sent = rev;
        }
        n += 1;
        let req = pb::CompactionRequest {
            revision: rev,
            physical: (n + cycle as u64).is_multiple_of(2),
        };
        if let Err(e) = ok("compact", kv.compact(req)).await {
            c.failed(format!("compactor: {e}"));
            return;
        }
        {
            let mut m = c.model.lock().unwrap();
            m.compact_acked = m.compact_acked.max(rev);
        }
        c.progress.send_modify(|p| p.compactions += 1);
        if n.is_multiple_of(C_DEFRAG_EVERY_COMPACTIONS) {
            if let Err(e) = ok(
                "defragment",
                maintenance.defragment(pb::DefragmentRequest {}),
            )
            .await
            {
                c.failed(format!("defragment: {e}"));
                return;
            }
            c.progress.send_modify(|p| p.defrags += 1);
        }
    }
}

/// Where in a cycle the SIGKILL lands.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// Once this many writes were acknowledged.
    Acks(u64),
    /// Right after `kvik_checkpoints_total` moves (a new checkpoint may
    /// already be on its way).
    AfterCheckpoint,
    /// Right after a Defragment is answered: its full rewrite is running.
    AfterDefragment,
    /// Right after a compaction is answered: the rewrite of the segments it
    /// thinned is due.
    AfterCompaction,
}

/// What one cycle did before its kill.
#[derive(Debug)]
#[allow(dead_code)] // read through `Debug`
struct CycleStats {
    acks: u64,
    compactions: u64,
    defrags: u64,
    checkpoints: u64,
    checkpoint_bytes: u64,
}

fn run_cycle_and_kill(
    rt: &tokio::runtime::Runtime,
    kvik: &mut Kvik,
    model: &Arc<Mutex<Model>>,
    cycle: usize,
    kill_at: KillAt,
    seed: u64,
) -> Result<CycleStats, String> {
    let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
    let c = Arc::new(Cycle {
        model: model.clone(),
        progress: tx,
        killing: AtomicBool::new(false),
        unexpected: Mutex::new(Vec::new()),
    });
    let endpoint = kvik.server.endpoint();
    let tasks = rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..C_CONNECTIONS {
            conns.push(Raw::connect(endpoint.clone()).await);
        }
        let mut tasks: Vec<_> = (0..C_WRITERS)
            .map(|t| {
                tokio::spawn(crash_writer(
                    c.clone(),
                    conns[t % C_CONNECTIONS].kv.clone(),
                    cycle,
                    t,
                    seed,
                ))
            })
            .collect();
        tasks.push(tokio::spawn(compactor(
            c.clone(),
            conns[0].kv.clone(),
            conns[0].maintenance.clone(),
            cycle,
        )));
        tasks
    });
    let deadline = Instant::now() + C_CYCLE_DEADLINE;
    let wait = |rx: &mut tokio::sync::watch::Receiver<Progress>,
                f: &dyn Fn(&Progress) -> bool|
     -> Result<Progress, String> {
        rt.block_on(async {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = tokio::time::timeout(left, rx.wait_for(|p| f(p)))
                .await
                .ok()
                .and_then(|r| r.ok().map(|p| *p));
            match got {
                Some(p) => Ok(p),
                None => Err(format!(
                    "kill point {kill_at:?} not reached within {C_CYCLE_DEADLINE:?}: {:?}",
                    *rx.borrow()
                )),
            }
        })
    };
    let reached = (|| -> Result<u64, String> {
        match kill_at {
            KillAt::Acks(n) => {
                wait(&mut rx, &|p| p.acks >= n)?;
                Ok(kvik.metric(CHECKPOINTS))
            }
            KillAt::AfterCheckpoint => {
                wait(&mut rx, &|p| p.acks >= C_ACKS_MIN)?;
                let before = kvik.metric(CHECKPOINTS);
                loop {
                    let now = kvik.metric(CHECKPOINTS);
                    if now > before {
                        return Ok(now);
                    }
                    if Instant::now() > deadline {
                        return Err(format!("no checkpoint after {before} within the deadline"));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            KillAt::AfterDefragment => {
                let p = wait(&mut rx, &|p| p.acks >= C_ACKS_MIN)?;
                wait(&mut rx, &|q| q.defrags > p.defrags)?;
                Ok(kvik.metric(CHECKPOINTS))
            }
            KillAt::AfterCompaction => {
                let p = wait(&mut rx, &|p| p.acks >= C_ACKS_MIN)?;
                wait(&mut rx, &|q| q.compactions > p.compactions)?;
                Ok(kvik.metric(CHECKPOINTS))
            }
        }
    })();
    let checkpoint_bytes = kvik.metric(CHECKPOINT_BYTES);
    c.killing.store(true, Ordering::SeqCst);
    kvik.server.kill9();
    c.progress.send_modify(|p| p.killing = true);
    rt.block_on(async {
        for t in tasks {
            t.await.expect("cycle task");
        }
    });
    let checkpoints = reached?;
    let unexpected = c.unexpected.lock().unwrap().clone();
    if !unexpected.is_empty() {
        return Err(format!(
            "requests failed while the server was up: {unexpected:?}"
        ));
    }
    let p = *c.progress.borrow();
    Ok(CycleStats {
        acks: p.acks,
        compactions: p.compactions,
        defrags: p.defrags,
        checkpoints,
        checkpoint_bytes,
    })
}

fn check_now(
    rt: &tokio::runtime::Runtime,
    kvik: &Kvik,
    model: &mut Model,
) -> Result<CheckReport, String> {
    let endpoint = kvik.server.endpoint();
    rt.block_on(async {
        let mut raw = Raw::connect(endpoint).await;
        model.check(&mut raw.kv).await
    })
}

fn seed() -> u64 {
    match std::env::var("KVIK_REVSTORE_SEED") {
        Ok(s) => s.parse().expect("KVIK_REVSTORE_SEED must be a u64"),
        Err(_) => rand::random(),
    }
}

#[test]
fn kill9_with_checkpoints_compaction_and_defragment_loses_nothing() {
    let seed = seed();
    eprintln!("revstore kill -9 seed: {seed} (KVIK_REVSTORE_SEED={seed} replays it)");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = runtime();
    let snapshot = format!("--snapshot-count={C_SNAPSHOT_COUNT}");
    let bytes = format!("--kvik-checkpoint-bytes={C_CHECKPOINT_BYTES}");
    let mut kvik = Kvik::start("revstore-crash", &[&snapshot, &bytes]);
    let model = Arc::new(Mutex::new(Model::default()));
    let mut written_bytes = 0u64;
    let mut acks_total = 0u64;
    let mut max_segment_id = 0u64;
    let rollback = kvik.dir().join("rollback");
    let mut final_store_bytes = 0;
    for cycle in 0..C_CYCLES {
        let kill_at = match cycle % 4 {
            0 => KillAt::Acks(C_ACKS_MIN + rng.random_range(0..C_ACKS_EXTRA_MAX)),
            1 => KillAt::AfterCheckpoint,
            2 => KillAt::AfterDefragment,
            _ => KillAt::AfterCompaction,
        };
        let fail = |e: &str, kvik: &Kvik| -> ! {
            panic!(
                "seed {seed}, cycle {cycle} (kill at {kill_at:?}): {e}\nserver log tail:\n{}",
                kvik.log_tail()
            )
        };
        let stats = run_cycle_and_kill(&rt, &mut kvik, &model, cycle, kill_at, seed)
            .unwrap_or_else(|e| fail(&e, &kvik));
        acks_total += stats.acks;
        written_bytes += stats.checkpoint_bytes;
        if stats.checkpoints < 2 {
            fail(
                &format!(
                    "only {} checkpoints in the cycle: {stats:?}",
                    stats.checkpoints
                ),
                &kvik,
            );
        }
        let segs = segment_files(&kvik.store());
        max_segment_id = max_segment_id.max(segs.max_id());
        final_store_bytes = segs.total_bytes();
        if segs.files.len() > C_SEGMENT_FILES_MAX || segs.total_bytes() > C_STORE_BYTES_MAX {
            fail(
                &format!(
                    "the store holds {} segment files of {} bytes (at most {C_SEGMENT_FILES_MAX} files and {C_STORE_BYTES_MAX} bytes expected): {:?}",
                    segs.files.len(),
                    segs.total_bytes(),
                    segs.files
                ),
                &kvik,
            );
        }
        if cycle == C_CYCLES - 2 {
            copy_tree(&kvik.dir().join("data"), &rollback);
        }
        kvik.restart();
        let replayed = kvik.metric(REPLAYED);
        if replayed > C_REPLAYED_MAX {
            fail(
                &format!("the restart replayed {replayed} WAL entries (at most {C_REPLAYED_MAX} expected)"),
                &kvik,
            );
        }
        let mut m = model.lock().unwrap().clone();
        let report = check_now(&rt, &kvik, &mut m).unwrap_or_else(|e| fail(&e, &kvik));
        eprintln!(
            "cycle {cycle}: kill at {kill_at:?}: {stats:?}; store after the kill: {} segment files, {} bytes; restart replayed {replayed} entries; {report:?}",
            segs.files.len(),
            segs.total_bytes()
        );
        *model.lock().unwrap() = m;
    }
    // Far more was written than the store ever held: segments were retired
    // and their files deleted, and restarts replayed only a short tail.
    assert!(
        written_bytes >= 4 * final_store_bytes.max(C_STORE_BYTES_MAX / 4),
        "seed {seed}: checkpoints wrote {written_bytes} bytes in all, the store holds {final_store_bytes}"
    );
    assert!(
        max_segment_id as usize >= 3 * C_SEGMENT_FILES_MAX,
        "seed {seed}: only {max_segment_id} segments were ever made"
    );
    assert!(
        acks_total >= 3 * C_REPLAYED_MAX,
        "seed {seed}: only {acks_total} writes acknowledged in all"
    );
    eprintln!(
        "{C_CYCLES} cycles, {acks_total} acknowledged writes, {written_bytes} checkpoint bytes, segment ids up to {max_segment_id}, {:?}",
        started.elapsed()
    );

    // The checker can fail. A few more writes first, so that acknowledged
    // writes above the compaction exist for every key.
    let mut m = model.lock().unwrap().clone();
    rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        for pass in 0..2 {
            for k in 0..C_KEYS {
                let tag = format!("final.p{pass}.k{k}");
                let rev = put(&mut raw.kv, &crash_key(k), &crash_value(&tag))
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                m.writes.insert(tag, (k, Outcome::Acked(rev)));
            }
        }
    });
    let report = check_now(&rt, &kvik, &mut m.clone())
        .unwrap_or_else(|e| panic!("seed {seed}: after the final writes: {e}"));
    eprintln!("after the final writes: {report:?}");

    // (a) An acknowledgement of a write that never happened, at a revision
    // that holds another key's write.
    let (rev, _, key) = m.newest_acked().expect("acknowledged writes");
    let mut bad = m.clone();
    bad.writes.insert(
        "planted-never-written".into(),
        ((key + 1) % C_KEYS, Outcome::Acked(rev)),
    );
    let err = check_now(&rt, &kvik, &mut bad)
        .expect_err("an acknowledgement of a write that never happened must be reported");
    eprintln!("planted acknowledgement reported: {err}");
    assert!(err.contains("planted-never-written"), "{err}");

    // (a2) The same, at an older revision above the compaction, for a key
    // that has newer writes: only the exact reads at old revisions see it.
    let mut newest: HashMap<usize, i64> = HashMap::new();
    let mut at_rev: BTreeMap<i64, usize> = BTreeMap::new();
    for (k, o) in m.writes.values() {
        if let Outcome::Acked(r) = o {
            let e = newest.entry(*k).or_insert(*r);
            *e = (*e).max(*r);
            at_rev.insert(*r, *k);
        }
    }
    let (old_rev, old_key) = at_rev
        .range(m.compact_acked.max(m.compact_sent)..)
        .find_map(|(r, k)| {
            (0..C_KEYS)
                .find(|k2| k2 != k && newest.get(k2).is_some_and(|n| n > r))
                .map(|k2| (*r, k2))
        })
        .expect("an acknowledged revision above the compaction, and a key written after it");
    let mut bad = m.clone();
    bad.writes.insert(
        "planted-old-version".into(),
        (old_key, Outcome::Acked(old_rev)),
    );
    let err = check_now(&rt, &kvik, &mut bad)
        .expect_err("an acknowledged old version that is not there must be reported");
    eprintln!("planted old version reported: {err}");
    assert!(err.contains("planted-old-version"), "{err}");

    // (a3) A compaction acknowledged above the one that happened.
    let mut bad = m.clone();
    bad.compact_acked = rev;
    bad.compact_sent = bad.compact_sent.max(rev);
    let err = check_now(&rt, &kvik, &mut bad)
        .expect_err("an acknowledged compaction that did not happen must be reported");
    eprintln!("planted compaction reported: {err}");
    assert!(err.contains("compaction at revision"), "{err}");

    // (b) The data directory as it was one cycle ago: the last cycle's
    // acknowledged writes are gone.
    kvik.server.kill9();
    let data = kvik.dir().join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&rollback, &data).unwrap();
    kvik.restart();
    let mut bad = m.clone();
    let err = check_now(&rt, &kvik, &mut bad)
        .expect_err("a data directory rolled back one cycle must be reported");
    eprintln!("rolled-back data directory reported: {err}");
    assert!(err.contains("lost") || err.contains("backwards"), "{err}");
}

// ---------------------------------------------------------------------------
// 2. Bit flips in segments and manifests.

const F_KEYS: usize = 120;
const F_SNAPSHOT_COUNT: u64 = 40;
/// The key whose record is damaged: written early, so it is in the first
/// segment.
const F_TARGET: usize = 7;

fn flip_key(i: usize) -> Vec<u8> {
    format!("rs/flip/k{i:03}").into_bytes()
}

/// A value holding the unique pattern [`flip_pattern`], then filler.
fn flip_value(i: usize) -> Vec<u8> {
    let mut v = flip_pattern(i);
    v.extend(std::iter::repeat_n(b'~', 64 + i));
    v
}

fn flip_pattern(i: usize) -> Vec<u8> {
    format!("flip-value-{i:03}:").into_bytes()
}

/// Where the target's record lies: (segment path, its file name, offset of
/// the value pattern in the file), in the segments the newest manifest
/// lists.
fn find_target(store: &Path) -> Option<(std::path::PathBuf, String, usize)> {
    let (_, m) = newest_manifest(store)?;
    let segs = segment_files(store);
    let mut found = None;
    for id in &m.segments {
        let Some(p) = segs.path_of(*id) else { continue };
        let Ok(bytes) = std::fs::read(p) else {
            continue;
        };
        if let Some(at) = find_once(&bytes, &flip_pattern(F_TARGET)) {
            assert!(
                found.is_none(),
                "the target's value is in two live segments"
            );
            found = Some((p.to_path_buf(), segment_name(*id), at));
        }
    }
    found
}

/// Reads every key; the target must answer DataLoss "etcdserver: corrupt
/// cluster" when `damaged`, and every other key its value at its revision.
fn assert_flip_keys(rt: &tokio::runtime::Runtime, kvik: &Kvik, revs: &[i64], damaged: bool) {
    rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        for (i, rev) in revs.iter().enumerate() {
            let r = get(&mut raw.kv, &flip_key(i), 0).await.unwrap();
            if i == F_TARGET && damaged {
                match r {
                    Err(s) => {
                        assert_eq!(s.code(), tonic::Code::DataLoss, "damaged key: {s:?}");
                        assert_eq!(s.message(), "etcdserver: corrupt cluster", "damaged key");
                    }
                    Ok(kv) => panic!(
                        "the damaged record was served: {:?}",
                        kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                    ),
                }
                continue;
            }
            let kv = r
                .unwrap_or_else(|s| panic!("key {i}: {:?} {}", s.code(), s.message()))
                .unwrap_or_else(|| panic!("key {i} is missing"));
            assert_eq!(kv.value, flip_value(i), "key {i}");
            assert_eq!(kv.mod_revision, *rev, "key {i}");
        }
    });
}

#[test]
fn bit_flips_in_segments_and_manifests() {
    let rt = runtime();
    let snapshot = format!("--snapshot-count={F_SNAPSHOT_COUNT}");
    let mut kvik = Kvik::start("revstore-flip", &[&snapshot]);
    let revs: Vec<i64> = rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        let mut revs = Vec::new();
        for i in 0..F_KEYS {
            revs.push(
                put(&mut raw.kv, &flip_key(i), &flip_value(i))
                    .await
                    .unwrap(),
            );
        }
        revs
    });
    poll_metric(
        &kvik.metrics,
        CHECKPOINTS,
        POLL_DEADLINE,
        "checkpoints",
        |n| n >= 2,
    );
    let store = kvik.store();
    let until = Instant::now() + POLL_DEADLINE;
    while find_target(&store).is_none() {
        assert!(
            Instant::now() < until,
            "the target's value is in no segment the newest manifest lists"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kvik.server.kill9();
    let (seg, seg_name, at) = find_target(&store).expect("the target is checkpointed");
    let original = std::fs::read(&seg).unwrap();
    let slots = manifests(&store);
    assert_eq!(slots.len(), 2, "two intact manifest slots: {slots:?}");
    let slot_bytes: Vec<(std::path::PathBuf, Vec<u8>)> = slots
        .iter()
        .map(|(s, _)| {
            let p = store.join(s);
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let restore = || {
        std::fs::write(&seg, &original).unwrap();
        for (p, b) in &slot_bytes {
            std::fs::write(p, b).unwrap();
        }
    };

    // A flipped bit in the target's value: that key is refused, every other
    // key is served, and the log names the file and the record's offset.
    let mut damaged = original.clone();
    let bit_at = at + flip_pattern(F_TARGET).len() + 10;
    damaged[bit_at] ^= 0x04;
    std::fs::write(&seg, &damaged).unwrap();
    kvik.restart();
    assert_flip_keys(&rt, &kvik, &revs, true);
    let record_at = (at - flip_key(F_TARGET).len() - RECORD_HEADER_BYTES) as u64;
    let log = kvik.server.log();
    let line = log
        .lines()
        .find(|l| l.contains("corrupt") && l.contains(&seg_name))
        .unwrap_or_else(|| panic!("the log names {seg_name}:\n{}", kvik.log_tail()));
    assert!(
        offsets_named(line).contains(&record_at),
        "the log names the record's offset {record_at}: {line}"
    );
    // A range over it is refused too, not answered without it.
    rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        let r = timed(
            "range rs/flip/*",
            raw.kv.range(pb::RangeRequest {
                key: b"rs/flip/".to_vec(),
                range_end: net::convert::prefix_end(b"rs/flip/"),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        match r {
            Err(s) => assert_eq!(s.code(), tonic::Code::DataLoss, "{s:?}"),
            Ok(r) => panic!(
                "a range over the damaged record answered {} keys",
                r.kvs.len()
            ),
        }
    });
    eprintln!("value bit flip at byte {bit_at} of {seg_name}: {line}");
    kvik.server.kill9();
    restore();

    // A flipped bit in the index block (between the records and the
    // trailer), the trailer or the header: start-up refuses, naming the
    // file and the damaged structure's offset.
    let t = original.len() - SEGMENT_TRAILER_BYTES;
    let index_at = u64::from_le_bytes(original[t..t + 8].try_into().unwrap());
    assert!(index_at < t as u64, "an index block before the trailer");
    let cases: [(&str, usize, u64); 3] = [
        ("index block", t - 5, index_at),
        ("trailer", t + 4, t as u64),
        ("header", 10, 0),
    ];
    for (what, byte, named) in cases {
        let mut damaged = original.clone();
        damaged[byte] ^= 0x10;
        std::fs::write(&seg, &damaged).unwrap();
        let (code, out) =
            Server::run_expecting_exit(kvik.dir(), &kvik.extra_args(), REFUSAL_DEADLINE);
        assert_ne!(code, 0, "{what}: kvik started on a damaged segment:\n{out}");
        assert!(
            out.contains(&seg_name),
            "{what}: the refusal names {seg_name}:\n{out}"
        );
        assert!(
            offsets_named(&out).contains(&named),
            "{what}: the refusal names the offset {named}:\n{out}"
        );
        eprintln!(
            "{what} bit flip at byte {byte}: refused with exit code {code}: {}",
            out.trim().lines().last().unwrap_or("")
        );
        restore();
    }

    // Both manifest slots damaged: start-up refuses.
    for (p, b) in &slot_bytes {
        let mut d = b.clone();
        let mid = d.len() / 2;
        d[mid] ^= 0x01;
        std::fs::write(p, d).unwrap();
    }
    let (code, out) = Server::run_expecting_exit(kvik.dir(), &kvik.extra_args(), REFUSAL_DEADLINE);
    assert_ne!(
        code, 0,
        "kvik started with both manifest slots damaged:\n{out}"
    );
    assert!(
        out.contains("manifest"),
        "the refusal names the manifests:\n{out}"
    );
    eprintln!(
        "both manifest slots damaged: refused with exit code {code}: {}",
        out.trim().lines().last().unwrap_or("")
    );
    restore();

    // The newest slot torn (as a crash while writing it leaves it): kvik
    // starts from the older checkpoint, whose segments are all still there,
    // and replays the WAL from there.
    let (newest_slot, newest) = newest_manifest(&store).unwrap();
    let (_, older) = slots
        .iter()
        .find(|(s, _)| *s != newest_slot)
        .cloned()
        .unwrap();
    let present = segment_files(&store);
    for id in &older.segments {
        assert!(
            present.path_of(*id).is_some(),
            "the older manifest's segment {id} is present"
        );
    }
    let newest_path = store.join(newest_slot);
    let len = std::fs::metadata(&newest_path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest_path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let log = kvik.restart();
    assert!(
        log.contains(newest_slot) && log.contains("torn"),
        "the log says {newest_slot} is torn:\n{log}"
    );
    let replayed = kvik.metric(REPLAYED);
    let gap = newest.applied_index - older.applied_index;
    assert!(
        replayed >= gap,
        "started from the older checkpoint (entry {}), not the torn one (entry {}): replayed {replayed}",
        older.applied_index,
        newest.applied_index
    );
    assert_flip_keys(&rt, &kvik, &revs, false);
    eprintln!(
        "torn {newest_slot}: started from checkpoint at entry {} and replayed {replayed} entries; all {F_KEYS} keys served",
        older.applied_index
    );
}

// ---------------------------------------------------------------------------
// 3. Restart cost is flat in the WAL's length.

const R_ENTRIES: usize = 3000;
const R_KEYS: usize = 300;
const R_WRITERS: usize = 16;
const R_SNAPSHOT_COUNT: u64 = 100;

/// Writes `R_ENTRIES` puts (each key `R_ENTRIES / R_KEYS` times, all by
/// one writer, the last value `r{last round}`), kills kvik, restarts it,
/// verifies the data and returns (entries replayed, WAL segment files,
/// checkpoints before the kill).
fn fill_kill_restart(kvik: &mut Kvik, rt: &tokio::runtime::Runtime) -> (u64, usize, u64) {
    let rounds = R_ENTRIES / R_KEYS;
    rt.block_on(async {
        let raw = Raw::connect(kvik.server.endpoint()).await;
        let mut set = tokio::task::JoinSet::new();
        for t in 0..R_WRITERS {
            let mut kv = raw.kv.clone();
            set.spawn(async move {
                for round in 0..rounds {
                    for k in (t..R_KEYS).step_by(R_WRITERS) {
                        let key = format!("rs/replay/k{k:03}");
                        put(&mut kv, key.as_bytes(), format!("r{round}").as_bytes())
                            .await
                            .unwrap();
                    }
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    let checkpoints = kvik.metric(CHECKPOINTS);
    kvik.server.kill9();
    kvik.restart();
    let replayed = kvik.metric(REPLAYED);
    rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        let (rev, kvs) = range_prefix(&mut raw.kv, "rs/replay/", 0).await.unwrap();
        assert_eq!(rev, R_ENTRIES as i64 + 1, "every put is there");
        assert_eq!(kvs.len(), R_KEYS);
        let last = format!("r{}", rounds - 1);
        for kv in kvs {
            assert_eq!(kv.value, last.as_bytes(), "{kv:?}");
        }
    });
    (replayed, wal_segments(kvik.dir()).len(), checkpoints)
}

/// The restart replayed only the tail past the last checkpoint, which
/// trails by `snapshot_count` entries plus those that arrived while one was
/// being written.
fn replay_is_flat(replayed: u64, snapshot_count: u64) -> Result<(), String> {
    let max = 2 * snapshot_count + R_WRITERS as u64;
    if replayed <= max {
        Ok(())
    } else {
        Err(format!(
            "the restart replayed {replayed} WAL entries; at most {max} expected with --snapshot-count={snapshot_count}"
        ))
    }
}

#[test]
fn restart_replays_only_the_wal_tail() {
    let rt = runtime();
    let snapshot = format!("--snapshot-count={R_SNAPSHOT_COUNT}");
    let mut kvik = Kvik::start("revstore-replay", &[&snapshot]);
    let (replayed, wal_files, checkpoints) = fill_kill_restart(&mut kvik, &rt);
    eprintln!(
        "{R_ENTRIES} entries, --snapshot-count={R_SNAPSHOT_COUNT}: {checkpoints} checkpoints, restart replayed {replayed} entries, {wal_files} WAL segment files"
    );
    assert!(
        checkpoints >= (R_ENTRIES as u64 / R_SNAPSHOT_COUNT) / 2,
        "only {checkpoints} checkpoints for {R_ENTRIES} entries"
    );
    replay_is_flat(replayed, R_SNAPSHOT_COUNT).unwrap();
    assert!(wal_files <= 2, "{wal_files} WAL segment files");
    // And again: the restart's own entry is all that is new.
    kvik.server.kill9();
    kvik.restart();
    let again = kvik.metric(REPLAYED);
    replay_is_flat(again, R_SNAPSHOT_COUNT).unwrap();
    assert!(again <= replayed + 1, "second restart replayed {again}");
}

#[test]
fn replay_check_fails_without_checkpoints() {
    let rt = runtime();
    // Checkpoints effectively off: neither trigger is reached.
    let mut kvik = Kvik::start(
        "revstore-replay-off",
        &[
            "--snapshot-count=1000000000",
            "--kvik-checkpoint-bytes=1000000000000",
        ],
    );
    let (replayed, wal_files, checkpoints) = fill_kill_restart(&mut kvik, &rt);
    eprintln!(
        "{R_ENTRIES} entries, checkpoints off: {checkpoints} checkpoints, restart replayed {replayed} entries, {wal_files} WAL segment files"
    );
    assert_eq!(checkpoints, 0, "checkpoints are off");
    assert!(
        replayed > R_ENTRIES as u64,
        "the whole WAL is replayed: {replayed}"
    );
    let err = replay_is_flat(replayed, R_SNAPSHOT_COUNT)
        .expect_err("the replay check must fail when every entry is replayed");
    eprintln!("replay check without checkpoints: {err}");
}

/// Values large enough that the WAL outgrows one segment file.
const W_VALUE_BYTES: usize = 1 << 20;
const W_PUTS: usize = 72;
const W_SNAPSHOT_COUNT: u64 = 8;

fn wal_value(i: usize) -> Vec<u8> {
    let mut v = format!("w{i}|").into_bytes();
    v.resize(W_VALUE_BYTES, b'w');
    v
}

/// More than a WAL segment's worth of entries goes through the log, yet the
/// WAL directory ends up holding less than one segment: the segments behind
/// a checkpoint are deleted.
#[test]
fn wal_segments_behind_a_checkpoint_are_released() {
    let written = (W_PUTS * W_VALUE_BYTES) as u64;
    assert!(
        written > raftlog::wal::SEGMENT_BYTES_MAX,
        "the run outgrows a WAL segment"
    );
    let rt = runtime();
    let snapshot = format!("--snapshot-count={W_SNAPSHOT_COUNT}");
    let mut kvik = Kvik::start("revstore-wal", &[&snapshot]);
    let wal_bytes = |kvik: &Kvik| -> (usize, u64) {
        let segs = wal_segments(kvik.dir());
        let bytes = segs
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        (segs.len(), bytes)
    };
    let mut most_files = 0;
    let ticks = rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        for i in 0..W_PUTS {
            let rev = put(&mut raw.kv, b"rs/wal/big", &wal_value(i)).await.unwrap();
            if i % 8 == 7 {
                ok(
                    "compact",
                    raw.kv.compact(pb::CompactionRequest {
                        revision: rev,
                        physical: false,
                    }),
                )
                .await
                .unwrap();
            }
            most_files = most_files.max(wal_bytes(&kvik).0);
        }
        // A covered segment is released by the WAL sync after the
        // checkpoint: write small entries until it has been.
        let until = Instant::now() + POLL_DEADLINE;
        let mut ticks = 0u64;
        loop {
            let (files, bytes) = wal_bytes(&kvik);
            if files == 1 && bytes < raftlog::wal::SEGMENT_BYTES_MAX {
                return ticks;
            }
            assert!(
                Instant::now() < until,
                "the WAL still holds {bytes} bytes in {files} files after {written} bytes of values and {ticks} more writes"
            );
            put(&mut raw.kv, b"rs/wal/tick", format!("{ticks}").as_bytes())
                .await
                .unwrap();
            ticks += 1;
        }
    });
    let (files, bytes) = wal_bytes(&kvik);
    eprintln!(
        "{W_PUTS} puts of {W_VALUE_BYTES} bytes: the WAL reached {most_files} segment files and holds {bytes} bytes in {files} after {ticks} small writes"
    );
    kvik.server.kill9();
    kvik.restart();
    let replayed = kvik.metric(REPLAYED);
    assert!(
        replayed <= 2 * W_SNAPSHOT_COUNT + ticks + 2,
        "the restart replayed {replayed} entries"
    );
    rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        let kv = get(&mut raw.kv, b"rs/wal/big", 0)
            .await
            .unwrap()
            .unwrap()
            .expect("the big key");
        assert!(kv.value == wal_value(W_PUTS - 1), "the newest value");
    });
}

// ---------------------------------------------------------------------------
// 4. Space reclaimed under load, with no manual step.

const S_KEYS: usize = 200;
const S_VALUE_BYTES: usize = 4096;
const S_ROUNDS: usize = 16;
const S_WRITERS: usize = 8;
const S_CHECKPOINT_BYTES: u64 = 256 << 10;
/// The live data: one value per key.
const S_WORKING_SET_BYTES: u64 = (S_KEYS * S_VALUE_BYTES) as u64;
/// The bound on the store's size once reclamation caught up.
const S_BOUND_BYTES: u64 = 3 * S_WORKING_SET_BYTES + 2 * S_CHECKPOINT_BYTES;

fn space_value(round: usize, k: usize) -> Vec<u8> {
    let mut v = format!("s{round}.k{k}|").into_bytes();
    v.resize(S_VALUE_BYTES, b'=');
    v
}

async fn status(m: &mut Maintenance) -> pb::StatusResponse {
    ok("status", m.status(pb::StatusRequest {})).await.unwrap()
}

/// Writers overwrite every key `S_ROUNDS` times (each key always by the
/// same writer, in round order) while a compactor, when `compact`, compacts
/// at the newest acknowledged revision each time another round's worth of
/// writes is acknowledged. Returns (round, dbSize, segment file bytes) at
/// each round's end.
fn space_run(kvik: &Kvik, rt: &tokio::runtime::Runtime, compact: bool) -> Vec<(usize, u64, u64)> {
    let store = kvik.store();
    rt.block_on(async {
        let raw = Raw::connect(kvik.server.endpoint()).await;
        let (tx, mut rx) = tokio::sync::watch::channel((0usize, 0i64));
        let tx = Arc::new(tx);
        let mut set = tokio::task::JoinSet::new();
        for t in 0..S_WRITERS {
            let mut kv = raw.kv.clone();
            let tx = tx.clone();
            set.spawn(async move {
                for round in 0..S_ROUNDS {
                    for k in (t..S_KEYS).step_by(S_WRITERS) {
                        let key = format!("rs/space/k{k:03}");
                        let rev = put(&mut kv, key.as_bytes(), &space_value(round, k))
                            .await
                            .unwrap();
                        tx.send_modify(|(acks, max)| {
                            *acks += 1;
                            *max = (*max).max(rev);
                        });
                    }
                }
            });
        }
        let mut kv = raw.kv.clone();
        let mut sizes = Vec::new();
        for round in 0..S_ROUNDS {
            let (_, rev) = *tokio::time::timeout(
                POLL_DEADLINE,
                rx.wait_for(|(acks, _)| *acks >= (round + 1) * S_KEYS),
            )
            .await
            .unwrap_or_else(|_| panic!("round {round} not acknowledged within {POLL_DEADLINE:?}"))
            .unwrap();
            if compact {
                ok(
                    "compact",
                    kv.compact(pb::CompactionRequest {
                        revision: rev,
                        physical: round.is_multiple_of(2),
                    }),
                )
                .await
                .unwrap();
            }
            sizes.push((
                round,
                kvik.metric(DB_SIZE),
                segment_files(&store).total_bytes(),
            ));
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        sizes
    })
}

#[test]
fn space_is_reclaimed_under_load_without_defragment() {
    let etcdctl = common::etcdctl_bin();
    let rt = runtime();
    let bytes = format!("--kvik-checkpoint-bytes={S_CHECKPOINT_BYTES}");
    let kvik = Kvik::start("revstore-space", &[&bytes]);
    let store = kvik.store();
    let sizes = space_run(&kvik, &rt, true);
    let written = (S_ROUNDS as u64) * S_WORKING_SET_BYTES;
    eprintln!(
        "{S_ROUNDS} rounds of {S_KEYS} x {S_VALUE_BYTES} bytes ({written} bytes written); (round, dbSize, segment bytes) at each round's end: {sizes:?}"
    );

    // Reclamation catches up by itself: the metric and the files on disk
    // come within the bound. Never a Defragment.
    let until = Instant::now() + POLL_DEADLINE;
    loop {
        let db = kvik.metric(DB_SIZE);
        let (disk, files) = common::store::dir_bytes(&store);
        if db <= S_BOUND_BYTES && disk <= S_BOUND_BYTES {
            eprintln!(
                "reclaimed: dbSize {db}, store directory {disk} bytes in {files} files (bound {S_BOUND_BYTES})"
            );
            break;
        }
        assert!(
            Instant::now() < until,
            "space not reclaimed within {POLL_DEADLINE:?}: dbSize {db}, store directory {disk} bytes in {files} files, bound {S_BOUND_BYTES}; segments {:?}",
            segment_files(&store).files
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        written > 3 * S_BOUND_BYTES,
        "the run wrote far more than the bound"
    );
    rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        let st = status(&mut raw.maintenance).await;
        assert!(
            st.db_size as u64 <= S_BOUND_BYTES && st.db_size >= st.db_size_in_use,
            "Status: dbSize {} dbSizeInUse {}",
            st.db_size,
            st.db_size_in_use
        );
        assert!(
            st.db_size_in_use as u64 >= S_WORKING_SET_BYTES,
            "Status counts the live data: dbSizeInUse {}",
            st.db_size_in_use
        );
        let (_, kvs) = range_prefix(&mut raw.kv, "rs/space/", 0).await.unwrap();
        assert_eq!(kvs.len(), S_KEYS);
        for kv in kvs {
            let k: usize = String::from_utf8_lossy(&kv.key["rs/space/k".len()..])
                .parse()
                .unwrap();
            assert!(kv.value == space_value(S_ROUNDS - 1, k), "key {k}");
        }
    });
    assert!(
        kvik.metric(DB_SIZE_IN_USE) > 0,
        "{DB_SIZE_IN_USE} is reported"
    );

    // etcdctl 3.4: defrag, then endpoint status.
    let ep = kvik.server.endpoint();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={ep}"))
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "etcdctl {args:?} failed:\n{text}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run(&["defrag"]);
    assert!(
        out.contains("Finished defragmenting"),
        "etcdctl defrag: {out}"
    );
    let out = run(&["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let st = &v[0]["Status"];
    let db = st["dbSize"].as_i64().unwrap_or(0);
    let in_use = st["dbSizeInUse"].as_i64().unwrap_or(0);
    assert!(
        db >= in_use && in_use > 0,
        "etcdctl endpoint status: dbSize {db}, dbSizeInUse {in_use}: {out}"
    );
    eprintln!("etcdctl defrag, then endpoint status: dbSize {db}, dbSizeInUse {in_use}");
}

/// The bound above is not vacuous: the same load without compaction keeps
/// every version, and the store grows far past it (nothing is dead, so
/// nothing can be reclaimed).
#[test]
fn space_bound_fails_without_compaction() {
    let rt = runtime();
    let bytes = format!("--kvik-checkpoint-bytes={S_CHECKPOINT_BYTES}");
    let kvik = Kvik::start("revstore-space-off", &[&bytes]);
    let sizes = space_run(&kvik, &rt, false);
    let db = kvik.metric(DB_SIZE);
    let (disk, _) = common::store::dir_bytes(&kvik.store());
    eprintln!("without compaction: dbSize {db}, store directory {disk} bytes; rounds {sizes:?}");
    assert!(
        db > 2 * S_BOUND_BYTES,
        "without compaction dbSize {db} stays within twice the bound {S_BOUND_BYTES}"
    );
    assert!(
        disk + S_CHECKPOINT_BYTES > 2 * S_BOUND_BYTES,
        "without compaction the store directory ({disk} bytes) stays within twice the bound {S_BOUND_BYTES}"
    );
}

// ---------------------------------------------------------------------------
// 5. Small values do not make checkpoints loop.

/// Checkpoints follow the writes: about one per `--snapshot-count` entries,
/// plus a merge every `SMALL_SEGMENTS_MAX` segments, and none once the
/// writes stop.
///
/// The bug this guards against: a segment counted as sparse when its live
/// record bytes were under half of its file size, which includes the index
/// block (61 bytes plus the key per record), header and trailer. With
/// values of a few bytes (lock and election keys have none) a freshly
/// written, wholly live segment was "sparse", so `reclaim_due` never turned
/// false and the shard rewrote its whole store one checkpoint after
/// another, idle or not. The policy now compares live bytes with the
/// segment's record bytes.
#[test]
fn small_values_checkpoint_only_as_writes_require() {
    const KEYS: usize = 200;
    const SNAPSHOT_COUNT: u64 = 10;
    let rt = runtime();
    let snapshot = format!("--snapshot-count={SNAPSHOT_COUNT}");
    let kvik = Kvik::start("revstore-small", &[&snapshot]);
    rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        for i in 0..KEYS {
            put(&mut raw.kv, format!("rs/small/k{i:03}").as_bytes(), b"")
                .await
                .unwrap();
        }
    });
    let after_writes = kvik.metric(CHECKPOINTS);
    let max = 2 * KEYS as u64 / SNAPSHOT_COUNT + engine::SMALL_SEGMENTS_MAX as u64;
    // Work that writes nothing: a checkpoint may be finishing, no more.
    rt.block_on(async {
        let mut raw = Raw::connect(kvik.server.endpoint()).await;
        for _ in 0..2000 {
            range_prefix(&mut raw.kv, "rs/small/", 0).await.unwrap();
        }
    });
    let after_reads = kvik.metric(CHECKPOINTS);
    let bytes = kvik.metric(CHECKPOINT_BYTES);
    let store = segment_files(&kvik.store()).total_bytes();
    eprintln!(
        "{KEYS} puts of empty values: {after_writes} checkpoints; after 2000 reads {after_reads} checkpoints, {bytes} bytes written for a store of {store} bytes"
    );
    // The writes did checkpoint, so segments exist that a wrong policy
    // would call sparse.
    assert!(
        after_writes >= KEYS as u64 / SNAPSHOT_COUNT / 2,
        "only {after_writes} checkpoints for {KEYS} entries with --snapshot-count={SNAPSHOT_COUNT}"
    );
    assert!(
        after_writes <= max,
        "{after_writes} checkpoints for {KEYS} entries with --snapshot-count={SNAPSHOT_COUNT} (at most {max} expected)"
    );
    assert!(
        after_reads <= after_writes + 1,
        "checkpoints went on while nothing was written: {after_writes}, then {after_reads}"
    );
}
