//! The load generator: `--clients` tasks over `--conns` HTTP/2 connections,
//! each keeping one request outstanding, with per-request latency recorded
//! in a per-task histogram and merged at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use net::pb::etcdserverpb::kv_client::KvClient;
use net::pb::etcdserverpb::lease_client::LeaseClient;
use net::pb::etcdserverpb::watch_client::WatchClient;
use net::pb::etcdserverpb::{
    watch_request, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest,
    WatchCreateRequest, WatchRequest,
};
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
    pub watchers: usize,
    /// Per-request deadline, enforced by the client itself.
    pub timeout: Duration,
}

/// The key prefix every workload writes under.
pub const KEY_PREFIX: &[u8] = b"b/";
/// TTL of the leases the lease workloads use: long enough not to expire.
pub const LEASE_TTL_SECS: i64 = 3600;

impl Plan {
    pub fn new(a: &Args) -> Plan {
        let keys = (0..a.keys).map(|i| key(a.key_size, i)).collect();
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
            watchers: a.watchers,
            timeout: a.timeout,
        }
    }

    pub fn needs_preload(&self) -> bool {
        matches!(self.workload, Workload::Range | Workload::Mixed)
    }
}

/// Key number `idx`, `key_size` bytes long: [`KEY_PREFIX`] and the
/// zero-padded number.
pub fn key(key_size: usize, idx: u64) -> Vec<u8> {
    let mut k = KEY_PREFIX.to_vec();
    let width = key_size.saturating_sub(KEY_PREFIX.len());
    k.extend(format!("{idx:0width$}").into_bytes());
    k
}

/// Opens `conns` HTTP/2 connections to `url` (eagerly, so that connection
/// setup is not measured). The per-request deadline is enforced by the
/// workers around each request: with a channel-wide `Endpoint::timeout`,
/// keep-alive calls to etcd 3.7.2 timed out (cause not diagnosed).
pub async fn connect(url: &str, conns: usize, timeout: Duration) -> Result<Vec<Channel>, String> {
    connect_spread(&[url.to_string()], conns, timeout).await
}

/// [`connect`], with connection `i` to `urls[i % urls.len()]`. Client `i`
/// uses connection `i % conns`, so the clients spread over the URLs as
/// evenly as the connections do.
pub async fn connect_spread(
    urls: &[String],
    conns: usize,
    _timeout: Duration,
) -> Result<Vec<Channel>, String> {
    let endpoints = urls
        .iter()
        .map(|url| {
            Endpoint::from_shared(url.clone())
                .map(|e| e.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true))
                .map_err(|e| format!("{url}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut channels = Vec::with_capacity(conns);
    for i in 0..conns {
        let endpoint = &endpoints[i % endpoints.len()];
        let ch = endpoint
            .connect()
            .await
            .map_err(|e| format!("connect {}: {e}", endpoint.uri()))?;
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
    latency_hist(MAX_LATENCY_US)
}

/// A latency histogram in µs from 1 to `max_us`, 3 significant digits.
pub fn latency_hist(max_us: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max_us, 3).expect("valid histogram bounds")
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
    if plan.workload == Workload::Watch {
        return run_watch(channels, plan, seed).await;
    }
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let mut tasks = Vec::with_capacity(plan.clients);
    for i in 0..plan.clients {
        let channel = channels[i % channels.len()].clone();
        let plan = Arc::clone(plan);
        let issued = Arc::clone(&issued);
        let seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        tasks.push(tokio::spawn(worker(channel, plan, issued, deadline, seed)));
    }
    let mut total = LoadResult::empty();
    for t in tasks {
        total.merge(t.await.map_err(|e| format!("client task: {e}"))?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn worker(
    channel: Channel,
    plan: Arc<Plan>,
    issued: Arc<AtomicU64>,
    deadline: Option<Instant>,
    seed: u64,
) -> LoadResult {
    let mut out = LoadResult::empty();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut kv = KvClient::new(channel.clone());
    let mut lease = LeaseClient::new(channel);
    // Lease workloads: one lease per client, granted before the clock runs.
    let mut lease_id = 0;
    let mut keepalive: Option<(
        tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>,
        tonic::Streaming<net::pb::etcdserverpb::LeaseKeepAliveResponse>,
    )> = None;
    if matches!(plan.workload, Workload::LeaseKeepAlive | Workload::PutLease) {
        match lease
            .lease_grant(LeaseGrantRequest {
                ttl: LEASE_TTL_SECS,
                id: 0,
            })
            .await
        {
            Ok(r) => lease_id = r.into_inner().id,
            Err(e) => {
                out.errors += 1;
                out.first_error = Some(format!("lease grant before the run: {e}"));
                return out;
            }
        }
    }
    if plan.workload == Workload::LeaseKeepAlive {
        // etcd sends its response headers with the first message, so the
        // first keep-alive goes out before the call is awaited.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.send(LeaseKeepAliveRequest { id: lease_id }).await;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        match lease.lease_keep_alive(stream).await {
            Ok(r) => {
                let mut inbound = r.into_inner();
                if let Err(e) = inbound.message().await {
                    out.errors += 1;
                    out.first_error = Some(format!("first keep-alive: {e}"));
                    return out;
                }
                keepalive = Some((tx, inbound));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error = Some(format!("keep-alive stream: {e}"));
                return out;
            }
        }
    }
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
            Workload::Range => true,
            Workload::Mixed => rng.random_bool(plan.read_ratio),
            _ => false,
        };
        let t0 = Instant::now();
        let op = async {
            if plan.workload == Workload::LeaseGrant {
                lease
                    .lease_grant(LeaseGrantRequest {
                        ttl: LEASE_TTL_SECS,
                        id: 0,
                    })
                    .await
                    .map(|_| true)
            } else if let Some((tx, rx)) = keepalive.as_mut() {
                let sent = tx.send(LeaseKeepAliveRequest { id: lease_id }).await;
                match (sent, rx.message().await) {
                    (Ok(()), Ok(Some(r))) if r.ttl > 0 => Ok(true),
                    (_, Err(e)) => Err(e),
                    _ => Err(tonic::Status::internal("keep-alive answered no TTL")),
                }
            } else if read {
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
                    lease: lease_id,
                    ..Default::default()
                })
                .await
                .map(|_| true)
            }
        };
        let res = match tokio::time::timeout(plan.timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(tonic::Status::deadline_exceeded("request passed --timeout")),
        };
        let us = t0.elapsed().as_micros() as u64;
        match res {
            Ok(found) => {
                out.hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
                out.ok += 1;
                if read {
                    out.ranges_ok += 1;
                    out.misses += u64::from(!found);
                } else if matches!(
                    plan.workload,
                    Workload::Put | Workload::Mixed | Workload::PutLease
                ) {
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

/// Watch fan-out: `watchers` streams watch the key prefix while the clients
/// put. Each value carries its send time, so every delivered event records
/// its put-to-event latency; `ok` counts delivered events. Every watcher must
/// see every put exactly once, in revision order, or the run fails.
async fn run_watch(
    channels: &[Channel],
    plan: &Arc<Plan>,
    seed: u64,
) -> Result<LoadResult, String> {
    use tokio_stream::StreamExt;
    let epoch = Instant::now();
    let end = net::convert::prefix_end(KEY_PREFIX);
    // Open every watch first and wait for its `created`.
    let mut streams = Vec::with_capacity(plan.watchers);
    for i in 0..plan.watchers {
        let mut w = WatchClient::new(channels[i % channels.len()].clone());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: KEY_PREFIX.to_vec(),
                    range_end: end.clone(),
                    ..Default::default()
                },
            )),
        };
        tx.send(create).await.map_err(|e| e.to_string())?;
        let mut inbound = w
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|e| format!("watch: {e}"))?
            .into_inner();
        match inbound.next().await {
            Some(Ok(r)) if r.created => {}
            other => return Err(format!("watch {i} not created: {other:?}")),
        }
        streams.push((tx, inbound));
    }
    // Watchers count and time events until every put has arrived.
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let mut readers = Vec::with_capacity(streams.len());
    let mut senders = Vec::with_capacity(streams.len());
    for (tx, mut inbound) in streams {
        senders.push(tx);
        let expected = Arc::clone(&expected);
        readers.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let (mut seen, mut last_rev) = (0u64, 0i64);
            while seen < expected.load(Ordering::Acquire) {
                let Some(msg) = inbound.next().await else {
                    break;
                };
                let r = msg.map_err(|e| format!("watch stream: {e}"))?;
                for e in r.events {
                    let kv = e.kv.unwrap_or_default();
                    if kv.mod_revision <= last_rev {
                        return Err(format!(
                            "event at revision {} after {last_rev}",
                            kv.mod_revision
                        ));
                    }
                    last_rev = kv.mod_revision;
                    seen += 1;
                    let sent_ns = u64::from_le_bytes(kv.value[..8].try_into().unwrap_or_default());
                    let now_ns = epoch.elapsed().as_nanos() as u64;
                    hist.saturating_record(
                        (now_ns.saturating_sub(sent_ns) / 1000).clamp(1, MAX_LATENCY_US),
                    );
                }
            }
            Ok::<_, String>((hist, seen))
        }));
    }
    // Writers: the usual put loop, with the send time in each value.
    let started = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let deadline = plan.duration.map(|d| started + d);
    let mut writers = Vec::with_capacity(plan.clients);
    for i in 0..plan.clients {
        let mut kv = KvClient::new(channels[i % channels.len()].clone());
        let plan = Arc::clone(plan);
        let issued = Arc::clone(&issued);
        let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        writers.push(tokio::spawn(async move {
            let mut ok = 0u64;
            loop {
                if plan
                    .total
                    .is_some_and(|t| issued.fetch_add(1, Ordering::Relaxed) >= t)
                {
                    break;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let mut value = (epoch.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
                value.extend_from_slice(&plan.value);
                let key = plan.keys[rng.random_range(0..plan.keys.len())].clone();
                kv.put(PutRequest {
                    key,
                    value,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("put: {e}"))?;
                ok += 1;
            }
            Ok::<_, String>(ok)
        }));
    }
    let mut puts = 0;
    for w in writers {
        puts += w.await.map_err(|e| e.to_string())??;
    }
    expected.store(puts, Ordering::Release);
    // A progress request wakes every watcher; its answer comes after every
    // event, so a watcher that has them all stops on it.
    for tx in &senders {
        let progress = WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                Default::default(),
            )),
        };
        tx.send(progress).await.map_err(|e| e.to_string())?;
    }
    let mut out = LoadResult::empty();
    out.puts_ok = puts;
    for r in readers {
        let (hist, seen) = tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .map_err(|_| "a watcher did not receive every event within 120 s".to_string())?
            .map_err(|e| e.to_string())??;
        if seen != puts {
            return Err(format!("a watcher saw {seen} events for {puts} puts"));
        }
        out.hist.add(&hist).expect("histograms share bounds");
        out.ok += seen;
    }
    out.elapsed = started.elapsed();
    Ok(out)
}
