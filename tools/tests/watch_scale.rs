//! 100,000 watches on one kvik: 80,000 single-key watches (40,000 keys,
//! each watched on two streams) and 20,000 prefix watches (2,000 prefixes,
//! each watched on ten streams), spread over 16 streams on 4 connections.
//!
//! Creates are pipelined up to [`CREATE_WINDOW`] per stream, and every
//! `created` response must come back. Then puts go to watched keys, to keys
//! under watched prefixes and to keys nobody watches; once every stream has
//! answered a progress request at the final revision, every watch must have
//! exactly the events of its key or prefix, in revision order.
//!
//! The server's resident memory (`VmRSS` of /proc/<pid>/status) is read
//! before the watches, after creating them and after the writes; it must
//! stay under [`RSS_BOUND`], and the bytes per watch are printed.
//!
//! A second test sends thousands of creates on one stream without reading
//! and expects every `created` response, as etcd answers them.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Kind, Server};
use net::pb::etcdserverpb as pb;
use pb::watch_client::WatchClient;
use tokio::sync::{mpsc, Semaphore};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const CONNECTIONS: usize = 4;
const STREAMS: usize = 16;
const SINGLE_KEYS: usize = 40_000;
const SINGLE_COPIES: usize = 2;
const PREFIXES: usize = 2_000;
const PREFIX_COPIES: usize = 10;
const WATCHES: usize = SINGLE_KEYS * SINGLE_COPIES + PREFIXES * PREFIX_COPIES;
/// Creates in flight per stream, below kvik's 256 queued responses.
const CREATE_WINDOW: usize = 128;
/// Puts in flight.
const WRITERS: usize = 32;
/// Resident memory the server may use, at most.
const RSS_BOUND: u64 = 1 << 30;
/// Limit for every condition polled.
const DEADLINE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn channel(endpoint: String) -> Channel {
    tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

fn rss_bytes(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// CPU time (user + system) the process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name, which ends with the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Puts every key with [`WRITERS`] in flight; returns (key, revision).
async fn put_all(chans: &[Channel], keys: Vec<Vec<u8>>) -> Vec<(Vec<u8>, i64)> {
    let queue = Arc::new(Mutex::new(keys));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut kv = pb::kv_client::KvClient::new(chans[w % chans.len()].clone());
        let queue = queue.clone();
        writers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let Some(key) = queue.lock().unwrap().pop() else {
                    break;
                };
                let r = kv
                    .put(pb::PutRequest {
                        key: key.clone(),
                        value: b"v".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .expect("put");
                done.push((key, r.into_inner().header.unwrap().revision));
            }
            done
        }));
    }
    let mut writes = Vec::new();
    for w in writers {
        writes.extend(w.await.unwrap());
    }
    writes
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut e = p.to_vec();
    *e.last_mut().unwrap() += 1;
    e
}

fn single_key(k: usize) -> Vec<u8> {
    format!("s/{k:05}").into_bytes()
}

fn prefix(j: usize) -> Vec<u8> {
    format!("p/{j:04}/").into_bytes()
}

fn create_req(key: Vec<u8>, range_end: Vec<u8>) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key,
                range_end,
                ..Default::default()
            },
        )),
    }
}

fn progress_req() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    }
}

fn is_progress(r: &pb::WatchResponse) -> bool {
    !r.created && !r.canceled && !r.fragment && r.events.is_empty()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Key(Vec<u8>),
    Prefix(Vec<u8>),
}

/// What one stream's reader saw.
#[derive(Default)]
struct Seen {
    /// Watch ids in the order of the creates.
    ids: Vec<i64>,
    /// (key, revision) of every event, by watch id.
    events: HashMap<i64, Vec<(Vec<u8>, i64)>>,
    /// Highest revision of an answered progress request.
    progressed: i64,
    responses: usize,
    odd: Vec<String>,
    end: Option<String>,
}

struct ScaleStream {
    targets: Vec<Target>,
    tx: mpsc::Sender<pb::WatchRequest>,
    seen: Arc<Mutex<Seen>>,
}

/// Opens a stream and pipelines its creates, at most [`CREATE_WINDOW`]
/// unanswered at a time; a task reads every response.
async fn open_stream(ch: &Channel, targets: Vec<Target>) -> ScaleStream {
    let (tx, rq) = mpsc::channel(1024);
    let window = Arc::new(Semaphore::new(CREATE_WINDOW));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reqs: Vec<pb::WatchRequest> = targets
        .iter()
        .map(|t| match t {
            Target::Key(k) => create_req(k.clone(), Vec::new()),
            Target::Prefix(p) => create_req(p.clone(), prefix_end(p)),
        })
        .collect();
    let mut reqs = reqs.into_iter();
    // The first create goes before the call: a server may send response
    // headers only with its first message.
    window.acquire().await.unwrap().forget();
    tx.send(reqs.next().unwrap()).await.unwrap();
    let mut client = WatchClient::new(ch.clone()).max_decoding_message_size(usize::MAX);
    let mut rx = client
        .watch(ReceiverStream::new(rq))
        .await
        .expect("watch call")
        .into_inner();
    {
        let (seen, window) = (seen.clone(), window.clone());
        tokio::spawn(async move {
            loop {
                match rx.message().await {
                    Ok(Some(r)) => {
                        let mut s = seen.lock().unwrap();
                        s.responses += 1;
                        if r.created {
                            if r.canceled {
                                s.odd.push(format!("create refused: {:?}", r.cancel_reason));
                            }
                            s.ids.push(r.watch_id);
                            window.add_permits(1);
                        } else if r.canceled {
                            s.odd.push(format!(
                                "watch {} cancelled (compact_revision {})",
                                r.watch_id, r.compact_revision
                            ));
                        } else if is_progress(&r) {
                            if r.watch_id == -1 {
                                let rev = r.header.as_ref().map_or(0, |h| h.revision);
                                s.progressed = s.progressed.max(rev);
                            }
                        } else {
                            let list = s.events.entry(r.watch_id).or_default();
                            for e in r.events {
                                let kv = e.kv.unwrap_or_default();
                                list.push((kv.key, kv.mod_revision));
                            }
                        }
                    }
                    Ok(None) => {
                        seen.lock().unwrap().end = Some("closed by the server".into());
                        break;
                    }
                    Err(e) => {
                        seen.lock().unwrap().end = Some(format!("error: {e}"));
                        break;
                    }
                }
            }
        });
    }
    {
        let (tx, window) = (tx.clone(), window.clone());
        tokio::spawn(async move {
            for req in reqs {
                window.acquire().await.unwrap().forget();
                if tx.send(req).await.is_err() {
                    return;
                }
            }
        });
    }
    ScaleStream { targets, tx, seen }
}

#[test]
fn hundred_thousand_watches_get_exactly_their_events_in_bounded_memory() {
    let t0 = Instant::now();
    let server = Server::start(Kind::Kvik);
    let pid = server.child.as_ref().unwrap().id();
    let rt = runtime();
    rt.block_on(async {
        let mut chans = Vec::new();
        for _ in 0..CONNECTIONS {
            chans.push(channel(server.endpoint()).await);
        }
        // Before any watch: the same number of puts as later, on keys no
        // watch will match, for the write rate without watches.
        let baseline_keys: Vec<Vec<u8>> = (0..6_000).map(|i| format!("warm/{i}").into_bytes()).collect();
        let (cpu0, t_base) = (cpu_time(pid), Instant::now());
        let baseline = put_all(&chans, baseline_keys).await.len();
        let (baseline_in, baseline_cpu) = (t_base.elapsed(), cpu_time(pid) - cpu0);
        let rss_start = rss_bytes(pid);

        // The watches, dealt round-robin to the streams: the copies of a
        // key or prefix land on different streams.
        let mut targets = Vec::with_capacity(WATCHES);
        for k in 0..SINGLE_KEYS {
            for _ in 0..SINGLE_COPIES {
                targets.push(Target::Key(single_key(k)));
            }
        }
        for j in 0..PREFIXES {
            for _ in 0..PREFIX_COPIES {
                targets.push(Target::Prefix(prefix(j)));
            }
        }
        let mut per: Vec<Vec<Target>> = vec![Vec::new(); STREAMS];
        for (i, t) in targets.into_iter().enumerate() {
            per[i % STREAMS].push(t);
        }
        let t_create = Instant::now();
        let mut streams = Vec::new();
        for (i, ts) in per.into_iter().enumerate() {
            streams.push(open_stream(&chans[i % CONNECTIONS], ts).await);
        }
        wait_for("every created response", || {
            streams.iter().all(|s| {
                let seen = s.seen.lock().unwrap();
                seen.ids.len() == s.targets.len() || seen.end.is_some()
            })
        })
        .await;
        let created_in = t_create.elapsed();
        for (i, s) in streams.iter().enumerate() {
            let seen = s.seen.lock().unwrap();
            assert!(seen.end.is_none(), "stream {i} ended during the creates: {:?}", seen.end);
            assert!(seen.odd.is_empty(), "stream {i}: {:?}", seen.odd);
            let mut ids = seen.ids.clone();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), s.targets.len(), "stream {i}: watch ids are distinct");
        }
        let rss_watches = rss_bytes(pid);

        // The writes: watched keys (some twice), keys under watched
        // prefixes, and keys no watch matches.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for k in (0..SINGLE_KEYS).step_by(10) {
            keys.push(single_key(k));
        }
        for k in (0..SINGLE_KEYS).step_by(80) {
            keys.push(single_key(k));
        }
        for j in (0..PREFIXES).step_by(2) {
            keys.push([prefix(j), b"a".to_vec()].concat());
        }
        for j in (0..PREFIXES).step_by(10) {
            keys.push([prefix(j), b"b".to_vec()].concat());
        }
        for i in 0..100 {
            keys.push(format!("u/{i}").into_bytes());
            keys.push(format!("s/{:05}x", i * 7).into_bytes());
            keys.push(format!("p/{:04}", i * 3).into_bytes());
        }
        let nkeys = keys.len();
        let (cpu1, t_write) = (cpu_time(pid), Instant::now());
        let writes = put_all(&chans, keys).await;
        let (written_in, written_cpu) = (t_write.elapsed(), cpu_time(pid) - cpu1);
        let final_rev = writes.iter().map(|w| w.1).max().unwrap();

        // Every stream answers a progress request at the final revision
        // once all its watches have been sent everything up to it.
        let t_deliver = Instant::now();
        let ask = streams.iter().map(|s| s.tx.clone()).collect::<Vec<_>>();
        let pinger = tokio::spawn(async move {
            loop {
                for tx in &ask {
                    if tx.send(progress_req()).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        wait_for("every stream answering progress at the final revision", || {
            streams.iter().all(|s| {
                let seen = s.seen.lock().unwrap();
                seen.progressed >= final_rev || seen.end.is_some()
            })
        })
        .await;
        pinger.abort();
        let delivered_in = t_deliver.elapsed();
        let rss_writes = rss_bytes(pid);

        // Each watch gets exactly the events of its key or prefix.
        let mut by_key: HashMap<&[u8], Vec<i64>> = HashMap::new();
        let mut by_prefix: HashMap<&[u8], Vec<(Vec<u8>, i64)>> = HashMap::new();
        let mut sorted = writes.clone();
        sorted.sort_by_key(|w| w.1);
        for (k, rev) in &sorted {
            by_key.entry(k.as_slice()).or_default().push(*rev);
            if k.starts_with(b"p/") && k.len() > 7 && k[6] == b'/' {
                by_prefix.entry(&k[..7]).or_default().push((k.clone(), *rev));
            }
        }
        let mut bad = Vec::new();
        let (mut events, mut watched_events) = (0usize, 0usize);
        for (i, s) in streams.iter().enumerate() {
            let seen = s.seen.lock().unwrap();
            if let Some(e) = &seen.end {
                bad.push(format!("stream {i} ended: {e}"));
            }
            if !seen.odd.is_empty() {
                bad.push(format!("stream {i}: {:?}", seen.odd));
            }
            events += seen.events.values().map(Vec::len).sum::<usize>();
            for (n, t) in s.targets.iter().enumerate() {
                let id = seen.ids[n];
                let want: Vec<(Vec<u8>, i64)> = match t {
                    Target::Key(k) => by_key.get(k.as_slice()).into_iter().flatten().map(|r| (k.clone(), *r)).collect(),
                    Target::Prefix(p) => by_prefix.get(p.as_slice()).cloned().unwrap_or_default(),
                };
                watched_events += want.len();
                let got = seen.events.get(&id).cloned().unwrap_or_default();
                if got != want && bad.len() < 20 {
                    bad.push(format!(
                        "stream {i} watch {id} on {t:?}: got {:?}, want {:?}",
                        got.iter().map(|(k, r)| (String::from_utf8_lossy(k).into_owned(), *r)).collect::<Vec<_>>(),
                        want.iter().map(|(k, r)| (String::from_utf8_lossy(k).into_owned(), *r)).collect::<Vec<_>>()
                    ));
                }
            }
        }

        let per_watch = rss_watches.saturating_sub(rss_start) as f64 / WATCHES as f64;
        println!("{WATCHES} watches on {STREAMS} streams over {CONNECTIONS} connections created in {created_in:?}");
        println!("without watches: {baseline} puts in {baseline_in:?}, server CPU {baseline_cpu:?}");
        println!(
            "with the watches: {nkeys} puts in {written_in:?}, server CPU {written_cpu:?}; all delivered {delivered_in:?} later ({events} events received, {watched_events} expected)"
        );
        println!(
            "server VmRSS: {:.1} MiB before the watches, {:.1} MiB with them ({per_watch:.0} bytes per watch), {:.1} MiB after the writes",
            mib(rss_start),
            mib(rss_watches),
            mib(rss_writes)
        );
        println!("total {:?}", t0.elapsed());
        assert!(bad.is_empty(), "watches did not get exactly their events:\n{}", bad.join("\n"));
        assert_eq!(events, watched_events, "events received in all");
        for (when, rss) in [("with the watches", rss_watches), ("after the writes", rss_writes)] {
            assert!(rss < RSS_BOUND, "server VmRSS {when} is {:.1} MiB, over {:.0} MiB", mib(rss), mib(RSS_BOUND));
        }
    });
}

/// Creates sent back to back on one stream, without reading, as a client
/// may pipeline them: every one must be answered, as etcd answers them.
#[test]
fn pipelined_creates_are_all_answered() {
    const CREATES: usize = 5_000;
    for kind in [Kind::Etcd, Kind::Kvik] {
        let server = Server::start(kind);
        let rt = runtime();
        let (created, end) = rt.block_on(async {
            let ch = channel(server.endpoint()).await;
            let (tx, rq) = mpsc::channel(CREATES);
            for i in 0..CREATES {
                tx.send(create_req(single_key(i), Vec::new()))
                    .await
                    .unwrap();
            }
            let mut client = WatchClient::new(ch);
            let mut rx = client
                .watch(ReceiverStream::new(rq))
                .await
                .expect("watch call")
                .into_inner();
            let mut created = 0;
            let end = loop {
                if created == CREATES {
                    break None;
                }
                match tokio::time::timeout(Duration::from_secs(10), rx.message()).await {
                    Ok(Ok(Some(r))) => created += usize::from(r.created && !r.canceled),
                    Ok(Ok(None)) => break Some("the server ended the stream".to_string()),
                    Ok(Err(e)) => break Some(format!("stream error: {e}")),
                    Err(_) => break Some("no response for 10 s".to_string()),
                }
            };
            drop(tx);
            (created, end)
        });
        println!("{kind:?}: {created} of {CREATES} creates answered; {end:?}");
        assert!(
            created == CREATES,
            "{kind:?}: {created} of {CREATES} pipelined creates answered, then {}",
            end.unwrap_or_default()
        );
    }
}
