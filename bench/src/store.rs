//! The revision store's benchmarks (`--workload restart|compact-pause|big`).
//!
//! Each one drives a server through a longer life than the throughput
//! workloads: a large data set loaded through the API, a kill, a restart,
//! compactions and Defragment while writers run. Values follow a pattern
//! derived from (key number, generation), so every read-back is compared
//! byte for byte with what was written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use net::pb::etcdserverpb::kv_client::KvClient;
use net::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use net::pb::etcdserverpb::{
    CompactionRequest, DefragmentRequest, PutRequest, RangeRequest, StatusRequest,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::args::{Args, Side, Workload};
use crate::load::{self, key, KEY_PREFIX};
use crate::report::{self, opt};
use crate::server::Server;
use crate::sys;

/// Highest latency tracked (larger values are clamped), in µs.
const MAX_LATENCY_US: u64 = 600_000_000;
/// How long a server may take to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(120);
/// Deadline of one Defragment call (etcd's blocks for the whole rewrite).
const DEFRAG_DEADLINE: Duration = Duration::from_secs(600);
/// How often the compact-pause and big runs sample the server (sizes, memory).
const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);
/// kvik's metric for the WAL entries replayed at start.
const REPLAYED_METRIC: &str = "kvik_wal_entries_replayed";
/// kvik's metric for the checkpoints written since start.
const CHECKPOINTS_METRIC: &str = "kvik_checkpoints_total";
/// Both servers' database size metric.
const DB_SIZE_METRIC: &str = "etcd_mvcc_db_total_size_in_bytes";

const MIB: f64 = (1u64 << 20) as f64;

/// A server to start: its side and binary.
pub struct Spawn {
    pub side: Side,
    pub bin: PathBuf,
}

/// Runs the workload `a.workload` over `targets`, interleaved like the
/// other workloads, prints per-run lines and the medians, and returns the
/// runs for the JSON document.
pub async fn run(a: &Args, targets: &[Spawn], scratch: &Path) -> Result<Vec<Value>, String> {
    let targets: Vec<&Spawn> = match a.workload {
        Workload::Big => targets.iter().filter(|t| t.side == Side::Kvik).collect(),
        _ => targets.iter().collect(),
    };
    if targets.is_empty() {
        return Err("--workload big runs on kvik only".into());
    }
    println!(
        "server flags (both): {}; {} keys of {} B = {:.0} MiB live",
        a.server_flags.join(" "),
        a.keys,
        a.val_size,
        (a.keys * a.val_size as u64) as f64 / MIB
    );
    let mut runs = Vec::new();
    for run in 1..=a.runs {
        let mut order = targets.clone();
        if run % 2 == 0 {
            order.reverse();
        }
        for t in order {
            let dir = scratch.join(format!("{}-r{run}", t.side.name()));
            let load_before = sys::load_avg();
            let mut server = Server::start(&t.bin, dir, &a.server_flags)?;
            let ctx = |e: String| format!("{} run {run}: {e}", t.side.name());
            server.wait_ready().await.map_err(ctx)?;
            let mut fig = match a.workload {
                Workload::Restart => restart(a, t.side, &mut server).await,
                Workload::CompactPause => compact_pause(a, t.side, &mut server).await,
                Workload::Big => big(a, &mut server).await,
                w => unreachable!("{} is not a revision store workload", w.name()),
            }
            .map_err(|e| ctx(format!("{e}\n{}", server.log_tail())))?;
            drop(server);
            let load_after = sys::load_avg();
            let obj = fig.as_object_mut().expect("an object");
            obj.insert("target".into(), json!(t.side.name()));
            obj.insert("run".into(), json!(run));
            obj.insert("load_avg_1m_before".into(), json!(load_before));
            obj.insert("load_avg_1m_after".into(), json!(load_after));
            eprintln!(
                "  load average (1 min) before {} after {}",
                opt(load_before, 2),
                opt(load_after, 2)
            );
            runs.push(fig);
        }
    }
    println!();
    summary(a, &runs);
    Ok(runs)
}

/// The value key `idx` holds at generation `gen`: splitmix64 words of
/// (key, generation, word number), so any misplaced byte shows.
pub fn value(idx: u64, gen: u64, len: usize) -> Vec<u8> {
    let seed = idx.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ gen.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut v = vec![0u8; len];
    for (w, chunk) in v.chunks_mut(8).enumerate() {
        let mut z = seed.wrapping_add((w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
    v
}

fn new_hist() -> Histogram<u64> {
    load::latency_hist(MAX_LATENCY_US)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// What a bulk put produced.
struct Loaded {
    puts: u64,
    bytes: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

impl Loaded {
    fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / MIB / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Puts every (key number, generation) of `jobs` with `a.clients`
/// outstanding requests over `channels`.
async fn put_all(a: &Args, channels: &[Channel], jobs: Vec<(u64, u64)>) -> Result<Loaded, String> {
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        let mut kv = KvClient::new(channels[i % channels.len()].clone());
        let (jobs, next) = (Arc::clone(&jobs), Arc::clone(&next));
        let (key_size, len, timeout) = (a.key_size, a.val_size, a.timeout);
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let mut bytes = 0u64;
            loop {
                let Some(&(idx, gen)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return Ok::<_, String>((hist, bytes));
                };
                let req = PutRequest {
                    key: key(key_size, idx),
                    value: value(idx, gen, len),
                    ..Default::default()
                };
                let t0 = Instant::now();
                match tokio::time::timeout(timeout, kv.put(req)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("put key {idx}: {e}")),
                    Err(_) => return Err(format!("put key {idx}: no answer within {timeout:?}")),
                }
                hist.saturating_record((t0.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US));
                bytes += len as u64;
            }
        }));
    }
    let mut out = Loaded {
        puts: jobs.len() as u64,
        bytes: 0,
        elapsed: Duration::ZERO,
        hist: new_hist(),
    };
    for t in tasks {
        let (h, b) = t.await.map_err(|e| e.to_string())??;
        out.hist.add(&h).expect("same bounds");
        out.bytes += b;
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

/// Maintenance.Status: (revision, dbSize, dbSizeInUse).
async fn status(ch: &Channel) -> Result<(i64, i64, i64), String> {
    let r = MaintenanceClient::new(ch.clone())
        .status(StatusRequest {})
        .await
        .map_err(|e| format!("Status: {e}"))?
        .into_inner();
    let rev = r.header.map_or(0, |h| h.revision);
    Ok((rev, r.db_size, r.db_size_in_use))
}

/// Keys under the workload prefix at `rev` (0: the current revision).
async fn count(ch: &Channel, rev: i64) -> Result<i64, String> {
    let r = KvClient::new(ch.clone())
        .range(RangeRequest {
            key: KEY_PREFIX.to_vec(),
            range_end: net::convert::prefix_end(KEY_PREFIX),
            revision: rev,
            count_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("count at revision {rev}: {e}"))?;
    Ok(r.into_inner().count)
}

/// Reads each (key number, generation) of `samples` at `rev` with a
/// linearizable get and compares the value byte for byte.
async fn spot_check(
    a: &Args,
    ch: &Channel,
    rev: i64,
    samples: &[(u64, u64)],
) -> Result<(), String> {
    let mut kv = KvClient::new(ch.clone());
    for &(idx, gen) in samples {
        let r = kv
            .range(RangeRequest {
                key: key(a.key_size, idx),
                revision: rev,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("get key {idx} at revision {rev}: {e}"))?
            .into_inner();
        let [kvp] = &r.kvs[..] else {
            return Err(format!(
                "key {idx} at revision {rev}: {} values, expected 1",
                r.kvs.len()
            ));
        };
        if kvp.value != value(idx, gen, a.val_size) {
            return Err(format!(
                "key {idx} at revision {rev}: the value is not generation {gen}'s ({} bytes)",
                kvp.value.len()
            ));
        }
    }
    Ok(())
}

/// The data directory's files grouped by where they live: etcd's
/// `member/snap/db` and `member/wal`, kvik's `store` and `wal`.
fn disk(side: Side, data: &Path) -> Value {
    let part = |p: &Path| {
        let (apparent, allocated) = if p.is_file() {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).map_or((0, 0), |m| (m.len(), m.blocks() * 512))
        } else {
            sys::dir_bytes(p)
        };
        json!({"apparent_bytes": apparent, "allocated_bytes": allocated})
    };
    let (db, wal) = match side {
        Side::Etcd => (data.join("member/snap/db"), data.join("member/wal")),
        Side::Kvik => (data.join("store"), data.join("wal")),
    };
    let (all_a, all_b) = sys::dir_bytes(data);
    json!({
        "db": part(&db),
        "wal": part(&wal),
        "all": {"apparent_bytes": all_a, "allocated_bytes": all_b},
    })
}

fn disk_line(d: &Value) -> String {
    let g = |part: &str, f: &str| d[part][f].as_u64().unwrap_or(0) as f64 / MIB;
    format!(
        "db/store {:.0} MiB ({:.0} allocated), wal {:.0} MiB, data dir {:.0} MiB",
        g("db", "apparent_bytes"),
        g("db", "allocated_bytes"),
        g("wal", "apparent_bytes"),
        g("all", "apparent_bytes")
    )
}

fn scrape(s: &Server, metric: &str) -> Option<f64> {
    sys::scrape_counter(&s.metrics_addr, metric).ok()
}

/// Drops the channels, then stops the server (SIGKILL, or SIGTERM when
/// `clean`): the clients close their connections first, so the restart can
/// bind the same ports.
async fn stop(s: &mut Server, channels: Vec<Channel>, clean: bool) -> Result<Option<f64>, String> {
    drop(channels);
    tokio::time::sleep(Duration::from_millis(200)).await;
    if clean {
        Ok(Some(s.terminate(STOP_DEADLINE).await?.as_secs_f64()))
    } else {
        s.kill9()?;
        Ok(None)
    }
}

/// Restarts a stopped server and times it until it serves; with `--cold`,
/// the data files leave the page cache first.
async fn restart_timed(a: &Args, side: Side, s: &mut Server) -> Result<Value, String> {
    if a.cold {
        let failed = sys::evict_page_cache(&s.data_dir());
        if !failed.is_empty() {
            return Err(format!("could not evict from the page cache: {failed:?}"));
        }
    }
    let ticks = sys::clock_ticks();
    let mark = sys::CpuMark::now();
    let spawned = Instant::now();
    s.respawn()?;
    let ready = s.wait_ready_from(spawned).await?;
    let elapsed = spawned.elapsed().as_secs_f64();
    // The server started at the spawn: all its CPU time is in the span.
    let server_ticks = sys::cpu_ticks(s.pid());
    let other = mark.other_cores(
        &sys::CpuMark::now(),
        server_ticks.unwrap_or(0),
        ticks,
        elapsed,
    );
    let replayed = match side {
        Side::Kvik => scrape(s, REPLAYED_METRIC),
        Side::Etcd => None,
    };
    let mem = sys::memory(s.pid()).unwrap_or_default();
    Ok(json!({
        "status_s": ready.status.as_secs_f64(),
        "ready_s": ready.range.as_secs_f64(),
        "server_cpu_s": server_ticks.map(|t| t as f64 / ticks),
        "other_cpu_cores": other,
        "wal_entries_replayed": replayed,
        "rss_bytes": mem.rss,
        "rss_anon_bytes": mem.anon,
        "cold": a.cold,
    }))
}

/// Checks the key count and a sample of values at the current revision.
async fn verify_current(a: &Args, ch: &Channel, gen: u64, seed: u64) -> Result<(), String> {
    let n = count(ch, 0).await?;
    if n != a.keys as i64 {
        return Err(format!("{n} keys after the restart, expected {}", a.keys));
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let samples: Vec<(u64, u64)> = (0..a.spot_checks)
        .map(|_| (rng.random_range(0..a.keys), gen))
        .collect();
    spot_check(a, ch, 0, &samples).await
}

/// `--workload restart`.
async fn restart(a: &Args, side: Side, s: &mut Server) -> Result<Value, String> {
    let name = side.name();
    let channels = load::connect(&s.client_url, a.conns, a.timeout).await?;
    let mut loads = Vec::new();
    for pass in 0..a.passes {
        let l = put_all(a, &channels, (0..a.keys).map(|i| (i, pass)).collect()).await?;
        eprintln!(
            "{name}: pass {}/{}: {} puts in {:.1}s = {:.0} MiB/s, put p99 {:.1} ms, max {:.1} ms",
            pass + 1,
            a.passes,
            l.puts,
            l.elapsed.as_secs_f64(),
            l.mib_per_s(),
            ms(l.hist.value_at_quantile(0.99)),
            ms(l.hist.max())
        );
        loads.push(json!({
            "seconds": l.elapsed.as_secs_f64(), "mib_per_s": l.mib_per_s(),
            "put_p99_ms": ms(l.hist.value_at_quantile(0.99)), "put_max_ms": ms(l.hist.max()),
        }));
    }
    let (rev, db_size, db_in_use) = status(&channels[0]).await?;
    let checkpoints = scrape(s, CHECKPOINTS_METRIC);
    let mem_loaded = sys::memory(s.pid()).unwrap_or_default();
    stop(s, channels, false).await?;
    let disk_killed = disk(side, &s.data_dir());
    eprintln!(
        "{name}: killed (SIGKILL) at revision {rev}: {}",
        disk_line(&disk_killed)
    );
    let kill9 = restart_timed(a, side, s).await?;
    eprintln!(
        "{name}: restart after SIGKILL: Status in {:.3}s, serving in {:.3}s, WAL entries replayed {}",
        kill9["status_s"].as_f64().unwrap_or(0.0),
        kill9["ready_s"].as_f64().unwrap_or(0.0),
        kill9["wal_entries_replayed"]
    );
    let channels = load::connect(&s.client_url, a.conns, a.timeout).await?;
    verify_current(a, &channels[0], a.passes - 1, 1).await?;
    let stop_s = stop(s, channels, true).await?;
    let disk_stopped = disk(side, &s.data_dir());
    let term = restart_timed(a, side, s).await?;
    eprintln!(
        "{name}: SIGTERM stop took {:.3}s; restart: Status in {:.3}s, serving in {:.3}s, WAL entries replayed {}",
        stop_s.unwrap_or(0.0),
        term["status_s"].as_f64().unwrap_or(0.0),
        term["ready_s"].as_f64().unwrap_or(0.0),
        term["wal_entries_replayed"]
    );
    let channels = load::connect(&s.client_url, a.conns, a.timeout).await?;
    verify_current(a, &channels[0], a.passes - 1, 2).await?;
    drop(channels);
    Ok(json!({
        "workload": "restart",
        "passes": a.passes,
        "load": loads,
        "revision": rev,
        "status_db_size": db_size,
        "status_db_size_in_use": db_in_use,
        "checkpoints_before_kill": checkpoints,
        "rss_loaded_bytes": mem_loaded.rss,
        "rss_anon_loaded_bytes": mem_loaded.anon,
        "disk_at_kill": disk_killed,
        "restart_after_sigkill": kill9,
        "sigterm_stop_s": stop_s,
        "disk_at_sigterm": disk_stopped,
        "restart_after_sigterm": term,
    }))
}

/// One sample of the server's size during a compact-pause run.
struct Sample {
    t: f64,
    db: Option<f64>,
    checkpoints: Option<f64>,
}

/// `--workload compact-pause`.
async fn compact_pause(a: &Args, side: Side, s: &mut Server) -> Result<Value, String> {
    let name = side.name();
    let channels = load::connect(&s.client_url, a.conns, a.timeout).await?;
    let l = put_all(a, &channels, (0..a.keys).map(|i| (i, 0)).collect()).await?;
    eprintln!(
        "{name}: loaded {} keys in {:.1}s = {:.0} MiB/s",
        l.puts,
        l.elapsed.as_secs_f64(),
        l.mib_per_s()
    );
    // Let a checkpoint that the load started finish before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let disk_before = disk(side, &s.data_dir());
    let metric_before = scrape(s, DB_SIZE_METRIC);
    let duration = a.duration.expect("parse sets a duration");
    let epoch = Instant::now();
    let end = epoch + duration;
    let max_rev = Arc::new(AtomicI64::new(0));
    let stop_bg = Arc::new(AtomicBool::new(false));

    // Writes, paced: put n is due at epoch + n × period; at most `clients`
    // are outstanding, so a paused server delays the next sends, and the
    // latency (from the due time) counts the whole delay.
    let sem = Arc::new(tokio::sync::Semaphore::new(a.clients));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Result<u64, String>)>();
    let writer = {
        let (channels, max_rev, sem) = (channels.clone(), Arc::clone(&max_rev), Arc::clone(&sem));
        let a = a.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let due = epoch + Duration::from_nanos(n * 1_000_000_000 / a.rate);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let permit = sem.clone().acquire_owned().await.expect("open");
                let mut kv = KvClient::new(channels[n as usize % channels.len()].clone());
                let idx = n % a.keys;
                let req = PutRequest {
                    key: key(a.key_size, idx),
                    value: value(idx, 1 + n / a.keys, a.val_size),
                    ..Default::default()
                };
                let (tx, max_rev, timeout) = (tx.clone(), Arc::clone(&max_rev), a.timeout);
                tokio::spawn(async move {
                    let res = match tokio::time::timeout(timeout, kv.put(req)).await {
                        Ok(Ok(r)) => {
                            let rev = r.into_inner().header.map_or(0, |h| h.revision);
                            max_rev.fetch_max(rev, Ordering::Relaxed);
                            Ok(due.elapsed().as_micros() as u64)
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("no answer within {timeout:?}")),
                    };
                    let _ = tx.send(((due - epoch).as_micros() as u64, res));
                    drop(permit);
                });
                n += 1;
            }
        })
    };

    // Compactions at the newest acknowledged revision.
    let compactor = {
        let (ch, max_rev, stop_bg) = (
            channels[0].clone(),
            Arc::clone(&max_rev),
            Arc::clone(&stop_bg),
        );
        let every = a.compact_every;
        tokio::spawn(async move {
            // (due, revision, took, error): a failed compaction is
            // recorded and the next period tries a newer revision.
            let mut done: Vec<(f64, i64, f64, Option<String>)> = Vec::new();
            let mut last = 0;
            let mut tick = tokio::time::interval_at((epoch + every).into(), every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if stop_bg.load(Ordering::Relaxed) {
                    return done;
                }
                let rev = max_rev.load(Ordering::Relaxed);
                if rev <= last {
                    continue;
                }
                let t0 = Instant::now();
                let res = KvClient::new(ch.clone())
                    .compact(CompactionRequest {
                        revision: rev,
                        physical: false,
                    })
                    .await;
                let err = res.err().map(|e| e.to_string());
                if err.is_none() {
                    last = rev;
                }
                done.push((
                    (t0 - epoch).as_secs_f64(),
                    rev,
                    t0.elapsed().as_secs_f64(),
                    err,
                ));
            }
        })
    };

    // One Defragment.
    let defrag = {
        let ch = channels[0].clone();
        let at = a.defrag_at;
        let addr = s.metrics_addr.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until((epoch + at).into()).await;
            let t0 = Instant::now();
            tokio::time::timeout(
                DEFRAG_DEADLINE,
                MaintenanceClient::new(ch).defragment(DefragmentRequest {}),
            )
            .await
            .map_err(|_| format!("Defragment: no answer within {DEFRAG_DEADLINE:?}"))?
            .map_err(|e| format!("Defragment: {e}"))?;
            let took = t0.elapsed().as_secs_f64();
            let db = sys::scrape_counter(&addr, DB_SIZE_METRIC).ok();
            Ok::<_, String>(((t0 - epoch).as_secs_f64(), took, db))
        })
    };

    // Sizes over time.
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = {
        let (samples, stop_bg) = (Arc::clone(&samples), Arc::clone(&stop_bg));
        let addr = s.metrics_addr.clone();
        tokio::spawn(async move {
            while !stop_bg.load(Ordering::Relaxed) {
                let db = sys::scrape_counter(&addr, DB_SIZE_METRIC).ok();
                let checkpoints = sys::scrape_counter(&addr, CHECKPOINTS_METRIC).ok();
                samples.lock().expect("not poisoned").push(Sample {
                    t: epoch.elapsed().as_secs_f64(),
                    db,
                    checkpoints,
                });
                tokio::time::sleep(SAMPLE_INTERVAL).await;
            }
        })
    };

    writer.await.map_err(|e| e.to_string())?;
    let mut hist = new_hist();
    let mut per_second: Vec<u64> = vec![0; duration.as_secs() as usize + 1];
    let (mut errors, mut first_error) = (0u64, None);
    let mut max = (0u64, 0u64);
    let mut lat: Vec<(u64, u64)> = Vec::new();
    while let Some((due_us, res)) = rx.recv().await {
        match res {
            Ok(us) => {
                hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
                let sec = (due_us / 1_000_000) as usize;
                if let Some(m) = per_second.get_mut(sec) {
                    *m = (*m).max(us);
                }
                if us > max.1 {
                    max = (due_us, us);
                }
                lat.push((due_us, us));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let writes_done = epoch.elapsed().as_secs_f64();
    let (defrag_start, defrag_took, metric_after_defrag) =
        defrag.await.map_err(|e| e.to_string())??;
    let disk_end = disk(side, &s.data_dir());
    let metric_end = scrape(s, DB_SIZE_METRIC);
    tokio::time::sleep(a.settle).await;
    stop_bg.store(true, Ordering::Relaxed);
    let compactions = compactor.await.map_err(|e| e.to_string())?;
    let failed_compactions = compactions.iter().filter(|c| c.3.is_some()).count();
    sampler.await.map_err(|e| e.to_string())?;
    let disk_settled = disk(side, &s.data_dir());
    let metric_settled = scrape(s, DB_SIZE_METRIC);
    let (_, status_db, status_in_use) = status(&channels[0]).await?;
    drop(channels);

    // The defrag window: writes due from the call until `--defrag-window`
    // after its answer.
    let win = (
        (defrag_start * 1e6) as u64,
        ((defrag_start + defrag_took + a.defrag_window.as_secs_f64()) * 1e6) as u64,
    );
    // A put belongs to the window if it was outstanding during any of it.
    let overlaps = |&(due, us): &(u64, u64)| due <= win.1 && due + us >= win.0;
    let mut in_window = new_hist();
    for &(_, us) in lat.iter().filter(|p| overlaps(p)) {
        in_window.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }
    let outside_max = lat
        .iter()
        .filter(|p| !overlaps(p))
        .map(|&(_, us)| us)
        .max()
        .unwrap_or(0);
    let samples = std::mem::take(&mut *samples.lock().expect("not poisoned"));
    let db_peak = samples.iter().filter_map(|s| s.db).fold(0.0, f64::max);
    let checkpoints = samples.last().and_then(|s| s.checkpoints);
    let mb = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |b| format!("{:.0} MiB", b / MIB));
    eprintln!(
        "{name}: {} puts at {}/s over {:.0}s ({} errors): p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.1} ms (due at {:.2}s); \
         {} compactions ({} failed); Defragment at {:.1}s took {:.3}s, max in its window {:.1} ms ({} puts), max outside it {:.1} ms",
        hist.len(),
        a.rate,
        duration.as_secs_f64(),
        errors,
        ms(hist.value_at_quantile(0.5)),
        ms(hist.value_at_quantile(0.99)),
        ms(hist.value_at_quantile(0.999)),
        ms(max.1),
        max.0 as f64 / 1e6,
        compactions.len(),
        failed_compactions,
        defrag_start,
        defrag_took,
        ms(in_window.max()),
        in_window.len(),
        ms(outside_max),
    );
    eprintln!(
        "{name}: db size metric: before {} peak {} after Defragment answered {} at writes' end {} settled {}; on disk: before {}; end {}; settled {}",
        mb(metric_before),
        mb(Some(db_peak)),
        mb(metric_after_defrag),
        mb(metric_end),
        mb(metric_settled),
        disk_line(&disk_before),
        disk_line(&disk_end),
        disk_line(&disk_settled),
    );
    eprintln!(
        "{name}: per-second max latency, ms: {}",
        per_second
            .iter()
            .map(|us| format!("{:.0}", ms(*us)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(json!({
        "workload": "compact-pause",
        "load_s": l.elapsed.as_secs_f64(),
        "rate": a.rate,
        "duration_s": duration.as_secs_f64(),
        "writes_done_s": writes_done,
        "puts_ok": hist.len(),
        "errors": errors,
        "first_error": first_error,
        "latency_ms": {
            "p50": ms(hist.value_at_quantile(0.5)),
            "p99": ms(hist.value_at_quantile(0.99)),
            "p99.9": ms(hist.value_at_quantile(0.999)),
            "max": ms(max.1),
            "max_due_at_s": max.0 as f64 / 1e6,
        },
        "per_second_max_ms": per_second.iter().map(|us| ms(*us)).collect::<Vec<_>>(),
        "compactions": compactions.iter().map(|(t, rev, took, err)| json!({"at_s": t, "revision": rev, "took_s": took, "error": err})).collect::<Vec<_>>(),
        "failed_compactions": failed_compactions,
        "defrag": {
            "at_s": defrag_start,
            "took_s": defrag_took,
            "window_s": [win.0 as f64 / 1e6, win.1 as f64 / 1e6],
            "window_puts": in_window.len(),
            "window_max_ms": ms(in_window.max()),
            "window_p99_ms": ms(in_window.value_at_quantile(0.99)),
            "outside_window_max_ms": ms(outside_max),
        },
        "db_size_metric": {
            "before": metric_before, "peak": db_peak, "after_defrag_answer": metric_after_defrag, "end": metric_end, "settled": metric_settled,
        },
        "status_db_size_settled": status_db,
        "status_db_size_in_use_settled": status_in_use,
        "checkpoints_total": checkpoints,
        "disk_before": disk_before,
        "disk_end": disk_end,
        "disk_settled": disk_settled,
        "size_samples": samples.iter().map(|s| json!([s.t, s.db, s.checkpoints])).collect::<Vec<_>>(),
    }))
}

/// `--workload big`: round 0 writes every key; round r ≥ 1 overwrites the
/// r-th eighth of the keys (wrapping around) with generation r.
async fn big(a: &Args, s: &mut Server) -> Result<Value, String> {
    let keys = a.keys;
    let slice = |r: u64| -> std::ops::Range<u64> {
        let eighth = (keys / 8).max(1);
        let start = ((r - 1) * eighth) % keys;
        start..(start + eighth).min(keys)
    };
    // The generation key `idx` holds after round `r`.
    let gen_at = |idx: u64, r: u64| {
        (1..=r)
            .rev()
            .find(|g| slice(*g).contains(&idx))
            .unwrap_or(0)
    };

    let peak = Arc::new(Mutex::new(sys::Memory::default()));
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = |pid: u32| {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop_sampler));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(m) = sys::memory(pid) {
                    let mut p = peak.lock().expect("not poisoned");
                    *p = p.max(m);
                }
                tokio::time::sleep(SAMPLE_INTERVAL).await;
            }
        })
    };
    let mem_line = |m: sys::Memory| {
        format!(
            "VmRSS {:.0} MiB (anon {:.0}, file {:.0}), VmHWM {:.0} MiB",
            m.rss as f64 / MIB,
            m.anon as f64 / MIB,
            m.file as f64 / MIB,
            m.hwm as f64 / MIB
        )
    };
    let mem_json = |m: sys::Memory| json!({"vm_rss": m.rss, "vm_hwm": m.hwm, "rss_anon": m.anon, "rss_file": m.file});

    let sampling = sampler(s.pid());
    let channels = load::connect(&s.client_url, a.conns, a.timeout).await?;
    let mut revs = Vec::new();
    let mut rounds = Vec::new();
    let started = Instant::now();
    let mut bytes = 0u64;
    for r in 0..a.rounds {
        let jobs: Vec<(u64, u64)> = if r == 0 {
            (0..keys).map(|i| (i, 0)).collect()
        } else {
            slice(r).map(|i| (i, r)).collect()
        };
        let l = put_all(a, &channels, jobs).await?;
        bytes += l.bytes;
        let (rev, db, _) = status(&channels[0]).await?;
        let m = sys::memory(s.pid()).unwrap_or_default();
        eprintln!(
            "kvik: round {r}: {} puts, {:.0} MiB in {:.1}s = {:.0} MiB/s, revision {rev}, dbSize {:.0} MiB, {}",
            l.puts,
            l.bytes as f64 / MIB,
            l.elapsed.as_secs_f64(),
            l.mib_per_s(),
            db as f64 / MIB,
            mem_line(m)
        );
        rounds.push(json!({
            "round": r, "puts": l.puts, "bytes": l.bytes, "seconds": l.elapsed.as_secs_f64(),
            "mib_per_s": l.mib_per_s(), "revision": rev, "db_size": db, "memory": mem_json(m),
            "put_p99_ms": ms(l.hist.value_at_quantile(0.99)), "put_max_ms": ms(l.hist.max()),
        }));
        revs.push(rev);
    }
    let load_s = started.elapsed().as_secs_f64();
    let load_rate = bytes as f64 / MIB / load_s;
    let mem_loaded = sys::memory(s.pid()).unwrap_or_default();
    eprintln!(
        "kvik: loaded {:.0} MiB in {load_s:.1}s = {load_rate:.0} MiB/s; {}",
        bytes as f64 / MIB,
        mem_line(mem_loaded)
    );

    let check = |channels: Vec<Channel>, seed: u64| {
        let revs = revs.clone();
        let a = a.clone();
        async move {
            let t0 = Instant::now();
            let mut rng = SmallRng::seed_from_u64(seed);
            for (r, &rev) in revs.iter().enumerate() {
                let r = r as u64;
                let n = count(&channels[0], rev).await?;
                if n != keys as i64 {
                    return Err(format!("{n} keys at revision {rev}, expected {keys}"));
                }
                // Random keys, plus the edges of every overwritten slice.
                let mut idxs: Vec<u64> = (0..a.spot_checks)
                    .map(|_| rng.random_range(0..keys))
                    .collect();
                for g in 1..a.rounds {
                    idxs.push(slice(g).start);
                    idxs.push(slice(g).end - 1);
                }
                let samples: Vec<(u64, u64)> = idxs.iter().map(|&i| (i, gen_at(i, r))).collect();
                spot_check(&a, &channels[0], rev, &samples).await?;
            }
            let n = count(&channels[0], 0).await?;
            if n != keys as i64 {
                return Err(format!("{n} keys now, expected {keys}"));
            }
            Ok::<_, String>((channels, t0.elapsed().as_secs_f64()))
        }
    };
    let (channels, check_s) = check(channels, 7).await?;
    let mem_checked = sys::memory(s.pid()).unwrap_or_default();
    eprintln!(
        "kvik: counts and {} values per revision checked at {} revisions in {check_s:.1}s; {}",
        a.spot_checks + 2 * (a.rounds as usize - 1),
        revs.len(),
        mem_line(mem_checked)
    );
    stop_sampler.store(true, Ordering::Relaxed);
    sampling.await.map_err(|e| e.to_string())?;
    let peak_before = *peak.lock().expect("not poisoned");
    stop(s, channels, false).await?;
    let disk_killed = disk(Side::Kvik, &s.data_dir());
    eprintln!("kvik: killed (SIGKILL): {}", disk_line(&disk_killed));
    let restart = restart_timed(a, Side::Kvik, s).await?;
    let mem_restarted = sys::memory(s.pid()).unwrap_or_default();
    eprintln!(
        "kvik: restart: Status in {:.3}s, serving in {:.3}s, WAL entries replayed {}; {}",
        restart["status_s"].as_f64().unwrap_or(0.0),
        restart["ready_s"].as_f64().unwrap_or(0.0),
        restart["wal_entries_replayed"],
        mem_line(mem_restarted)
    );
    *peak.lock().expect("not poisoned") = sys::Memory::default();
    stop_sampler.store(false, Ordering::Relaxed);
    let sampling = sampler(s.pid());
    let channels = load::connect(&s.client_url, a.conns, a.timeout).await?;
    let (channels, recheck_s) = check(channels, 8).await?;
    let mem_rechecked = sys::memory(s.pid()).unwrap_or_default();
    stop_sampler.store(true, Ordering::Relaxed);
    sampling.await.map_err(|e| e.to_string())?;
    let peak_after = *peak.lock().expect("not poisoned");
    eprintln!(
        "kvik: after the restart, counts and values checked again in {recheck_s:.1}s; {}",
        mem_line(mem_rechecked)
    );
    drop(channels);
    Ok(json!({
        "workload": "big",
        "keys": keys,
        "val_size": a.val_size,
        "rounds": rounds,
        "revisions": revs,
        "bytes_written": bytes,
        "load_s": load_s,
        "load_mib_per_s": load_rate,
        "check_s": check_s,
        "memory_loaded": mem_json(mem_loaded),
        "memory_checked": mem_json(mem_checked),
        "memory_peak_sampled_before_restart": mem_json(peak_before),
        "disk_at_kill": disk_killed,
        "restart_after_sigkill": restart,
        "memory_restarted": mem_json(mem_restarted),
        "recheck_s": recheck_s,
        "memory_rechecked": mem_json(mem_rechecked),
        "memory_peak_sampled_after_restart": mem_json(peak_after),
    }))
}

/// Prints the medians of the runs per target.
fn summary(a: &Args, runs: &[Value]) {
    let mut targets: Vec<&str> = runs.iter().filter_map(|r| r["target"].as_str()).collect();
    targets.sort();
    targets.dedup();
    let med = |t: &str, f: &dyn Fn(&Value) -> Option<f64>| {
        report::median(
            runs.iter()
                .filter(|r| r["target"] == t)
                .filter_map(f)
                .collect(),
        )
    };
    let n = runs.len() / targets.len().max(1);
    match a.workload {
        Workload::Restart => {
            println!(
                "restart, median of {n} runs: {} keys × {} B, {} pass(es){}",
                a.keys,
                a.val_size,
                a.passes,
                if a.cold { ", cold page cache" } else { "" }
            );
            println!("target  load MiB/s  SIGKILL: Status s  serving s  replayed  SIGTERM: stop s  serving s  db/store MiB  wal MiB");
            for t in &targets {
                let f = |p: &'static str| move |r: &Value| r.pointer(p).and_then(Value::as_f64);
                let load = med(t, &|r| {
                    let l = r["load"].as_array()?;
                    let secs: f64 = l.iter().filter_map(|p| p["seconds"].as_f64()).sum();
                    Some((a.keys * a.val_size as u64 * a.passes) as f64 / MIB / secs)
                });
                println!(
                    "{:<6}  {:>10}  {:>17}  {:>9}  {:>8}  {:>15}  {:>9}  {:>12}  {:>7}",
                    t,
                    opt(load, 0),
                    opt(med(t, &f("/restart_after_sigkill/status_s")), 3),
                    opt(med(t, &f("/restart_after_sigkill/ready_s")), 3),
                    opt(med(t, &f("/restart_after_sigkill/wal_entries_replayed")), 0),
                    opt(med(t, &f("/sigterm_stop_s")), 3),
                    opt(med(t, &f("/restart_after_sigterm/ready_s")), 3),
                    opt(
                        med(t, &f("/disk_at_kill/db/apparent_bytes")).map(|b| b / MIB),
                        0
                    ),
                    opt(
                        med(t, &f("/disk_at_kill/wal/apparent_bytes")).map(|b| b / MIB),
                        0
                    ),
                );
            }
        }
        Workload::CompactPause => {
            println!(
                "compact-pause, median of {n} runs: {} keys × {} B, {} puts/s for {:?}, compaction every {:?}, Defragment at {:?}",
                a.keys,
                a.val_size,
                a.rate,
                a.duration.unwrap_or_default(),
                a.compact_every,
                a.defrag_at
            );
            println!("target  p50 ms  p99 ms  p99.9 ms  max ms  defrag s  defrag-window max ms  outside max ms  db MiB before  peak  settled");
            for t in &targets {
                let f = |p: &'static str| move |r: &Value| r.pointer(p).and_then(Value::as_f64);
                let mib = |v: Option<f64>| v.map(|b| b / MIB);
                println!(
                    "{:<6}  {:>6}  {:>6}  {:>8}  {:>6}  {:>8}  {:>20}  {:>14}  {:>13}  {:>4}  {:>7}",
                    t,
                    opt(med(t, &f("/latency_ms/p50")), 2),
                    opt(med(t, &f("/latency_ms/p99")), 2),
                    opt(med(t, &f("/latency_ms/p99.9")), 2),
                    opt(med(t, &f("/latency_ms/max")), 1),
                    opt(med(t, &f("/defrag/took_s")), 3),
                    opt(med(t, &f("/defrag/window_max_ms")), 1),
                    opt(med(t, &f("/defrag/outside_window_max_ms")), 1),
                    opt(mib(med(t, &f("/db_size_metric/before"))), 0),
                    opt(mib(med(t, &f("/db_size_metric/peak"))), 0),
                    opt(mib(med(t, &f("/db_size_metric/settled"))), 0),
                );
            }
        }
        Workload::Big => {
            for r in runs {
                println!(
                    "big run {}: loaded {:.0} MiB at {:.0} MiB/s; VmHWM {:.0} MiB before the restart; restart serving in {:.3}s",
                    r["run"],
                    r["bytes_written"].as_f64().unwrap_or(0.0) / MIB,
                    r["load_mib_per_s"].as_f64().unwrap_or(0.0),
                    r["memory_checked"]["vm_hwm"].as_f64().unwrap_or(0.0) / MIB,
                    r["restart_after_sigkill"]["ready_s"].as_f64().unwrap_or(0.0),
                );
            }
        }
        _ => {}
    }
}
