//! The load generator: `--clients` tasks over `--conns` HTTP/2 connections,
//! each keeping one request outstanding, with per-request latency recorded
//! in a per-task histogram and merged at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use net::pb::etcdserverpb::kv_client::KvClient;
use net::pb::etcdserverpb::{PutRequest, RangeRequest};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::{Channel, Endpoint};

use crate::args::{Args, Workload};

/// Highest latency the histograms track (larger values are clamped), in µs.
const MAX_LATENCY_US: u64 = 120_000_000;

/// Everything the workers need, built once before a run so that the hot
/// loop only clones prebuilt byte strings.
pub struct Plan {
    pub workload: Workload,
    pub keys: Vec<Vec<u8>>,
    pub value: Vec<u8>,
    pub serializable: bool,
    pub read_ratio: f64,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    pub clients: usize,
}

impl Plan {
    pub fn new(a: &Args) -> Plan {
        let keys = (0..a.keys)
            .map(|i| format!("{i:0width$}", width = a.key_size).into_bytes())
            .collect();
        let mut rng = SmallRng::seed_from_u64(0x6b76_696b);
        let value = (0..a.val_size)
            .map(|_| rng.random_range(b'a'..=b'z'))
            .collect();
        Plan {
            workload: a.workload,
            keys,
            value,
            serializable: a.serializable,
            read_ratio: a.read_ratio,
            total: a.total,
            duration: a.duration,
            clients: a.clients,
        }
    }

    pub fn needs_preload(&self) -> bool {
        self.workload != Workload::Put
    }
}

/// Opens `conns` HTTP/2 connections (eagerly, so that connection setup is
/// not measured); every request on them has the deadline `timeout`.
pub async fn connect(url: &str, conns: usize, timeout: Duration) -> Result<Vec<Channel>, String> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("{url}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(conns);
    for _ in 0..conns {
        let ch = endpoint
            .connect()
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        channels.push(ch);
    }
    Ok(channels)
}

/// What one run of the workload produced.
pub struct LoadResult {
    pub hist: Histogram<u64>,
    pub elapsed: Duration,
    pub ok: u64,
    pub puts_ok: u64,
    pub ranges_ok: u64,
    pub errors: u64,
    /// Ranges that found no key although every key was preloaded.
    pub misses: u64,
    pub first_error: Option<String>,
}

impl LoadResult {
    fn empty() -> LoadResult {
        LoadResult {
            hist: new_hist(),
            elapsed: Duration::ZERO,
            ok: 0,
            puts_ok: 0,
            ranges_ok: 0,
            errors: 0,
            misses: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, o: LoadResult) {
        self.hist.add(&o.hist).expect("histograms share bounds");
        self.ok += o.ok;
        self.puts_ok += o.puts_ok;
        self.ranges_ok += o.ranges_ok;
        self.errors += o.errors;
        self.misses += o.misses;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Writes every key once (for range and mixed), unmeasured.
pub async fn preload(channels: &[Channel], plan: &Arc<Plan>) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks: Vec<tokio::task::JoinHandle<Result<(), String>>> =
        Vec::with_capacity(plan.clients);
    for i in 0..plan.clients {
        let mut kv = KvClient::new(channels[i % channels.len()].clone());
        let plan = Arc::clone(plan);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(key) = plan.keys.get(k) else {
                    return Ok(());
                };
                kv.put(PutRequest {
                    key: key.clone(),
                    value: plan.value.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("preload put: {e}"))?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("preload task: {e}"))??;
    }
    Ok(())
}

/// Runs the measured workload.
pub async fn run(channels: &[Channel], plan: &Arc<Plan>, seed: u64) -> Result<LoadResult, String> {
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let mut tasks = Vec::with_capacity(plan.clients);
    for i in 0..plan.clients {
        let kv = KvClient::new(channels[i % channels.len()].clone());
        let plan = Arc::clone(plan);
        let issued = Arc::clone(&issued);
        let seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        tasks.push(tokio::spawn(worker(kv, plan, issued, deadline, seed)));
    }
    let mut total = LoadResult::empty();
    for t in tasks {
        total.merge(t.await.map_err(|e| format!("client task: {e}"))?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn worker(
    mut kv: KvClient<Channel>,
    plan: Arc<Plan>,
    issued: Arc<AtomicU64>,
    deadline: Option<Instant>,
    seed: u64,
) -> LoadResult {
    let mut out = LoadResult::empty();
    let mut rng = SmallRng::seed_from_u64(seed);
    loop {
        if let Some(total) = plan.total {
            if issued.fetch_add(1, Ordering::Relaxed) >= total {
                break;
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let key = plan.keys[rng.random_range(0..plan.keys.len())].clone();
        let read = match plan.workload {
            Workload::Put => false,
            Workload::Range => true,
            Workload::Mixed => rng.random_bool(plan.read_ratio),
        };
        let t0 = Instant::now();
        let res = if read {
            kv.range(RangeRequest {
                key,
                serializable: plan.serializable,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().kvs.len() == 1)
        } else {
            kv.put(PutRequest {
                key,
                value: plan.value.clone(),
                ..Default::default()
            })
            .await
            .map(|_| true)
        };
        let us = t0.elapsed().as_micros() as u64;
        match res {
            Ok(found) => {
                out.hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
                out.ok += 1;
                if read {
                    out.ranges_ok += 1;
                    out.misses += u64::from(!found);
                } else {
                    out.puts_ok += 1;
                }
            }
            Err(e) => {
                out.errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(e.to_string());
                }
            }
        }
    }
    out
}
