//! Differential test: seeded random sequences of KV requests (Range, Put,
//! DeleteRange, Txn with nested transactions, Compact), Maintenance.HashKV,
//! lease requests (LeaseGrant, LeaseRevoke, LeaseTimeToLive, LeaseLeases,
//! one-message LeaseKeepAlive streams) and, in [`kvik_watches_like_etcd`],
//! Watch streams, replayed request by request against a real etcd 3.7.2 and
//! against kvik, both started fresh for every seed.
//!
//! Every answer must be identical once `cluster_id`, `member_id` and
//! `raft_term` are cleared in every header (top-level and nested); revisions
//! are compared as they are. Errors must match in gRPC code and message. The
//! first divergence ends a seed and is printed with the seed, the request's
//! index, the request and both answers; the other seeds still run.
//!
//! Two lease fields are compared in a normal form: the remaining `TTL` of a
//! LeaseTimeToLive answer only has to lie in `[0, grantedTTL]` on each
//! server, and its `keys` are compared as a sorted list (etcd lists them in
//! Go map order). LeaseLeases is compared in order: etcd sorts by expiry,
//! and the generator makes that order a function of the sequence alone.
//! Leases get client-chosen ids that grow with every grant, and a TTL class
//! per kind of id: 3600 s (positive ids), 7200 s (negative ids) and the
//! 9e9 s maximum. Classes are hours apart, so they sort by class; inside a
//! class expiry follows the order of grants and keep-alives, and a server
//! with a coarse clock that breaks ties by id sorts the same. Leases of the
//! minimum TTL (asked for with TTL <= 1) are revoked by the very next
//! request, so no lease ever expires during a seed.
//!
//! Watch streams (see [`WatchModel`]). Each seed opens [`WATCH_STREAMS`]
//! streams on each server and, between the other requests, creates watches
//! (single key, prefix, range or from-key; start revision 0, historical,
//! current, the compaction point, compacted, future or negative; `prev_kv`,
//! NOPUT/NODELETE and unknown filters, `progress_notify`, `fragment`,
//! automatic, chosen and duplicate ids) and cancels them. What arrives on
//! the streams is compared between *fences*: after every write, and after
//! every watch request, each stream whose watchers are all synced is sent a
//! WatchProgressRequest on both servers, and everything up to its answer
//! (`watch_id = -1`) is one segment. Segments must match:
//! - control responses (created, canceled, compaction cancels, progress)
//!   as a multiset: etcd sends them from a separate queue, so their order
//!   relative to event responses is not fixed;
//! - events per watch id as one flattened sequence, compared in full
//!   (type, key-value, `prev_kv`): etcd groups replayed (catch-up) events
//!   into responses differently from live ones, so responses of watches
//!   that started in the past are not compared one by one;
//! - for watches that started at 0 or in the future (live only), also the
//!   responses themselves: header revision, events and how many fragments.
//!
//! etcd 3.7 drops a progress request (never answers it) while a watcher of
//! the stream is unsynced, is waiting for a future start revision, or was
//! cancelled by compaction and not yet by the client; a stream without
//! watchers gets no answer either. So a fence is sent only where etcd
//! answers it, as followed by [`StreamModel::fenceable`]: a historical
//! watch is only created where etcd is known to replay at least one event
//! to it (a recorded put or delete in its range after its start and the
//! compaction, not filtered out), and the driver waits for that replay
//! before anything else; a watch cancelled by compaction is then cancelled
//! by the client, as clientv3 does; a stream with a future watcher is not
//! fenced until the store reaches its start revision, and the seed ends
//! with puts until every stream can be fenced. Control responses are waited
//! for before the fence (etcd may send the fence's answer first), and a
//! watch is only cancelled on a fenced stream (etcd drops events still
//! queued for a watch it cancels). Waits have deadlines and never sleep.
//!
//! The run records every request field, value class, answer shape and error
//! it exercised and fails if an item of [`REQUIRED`] (or, for the watch
//! test, [`REQUIRED_WATCH`]) never came up.
//! `comparator_reports_planted_divergence` and
//! `watch_comparator_reports_planted_divergence` check the comparison
//! itself on two etcds: they agree, and a planted rewrite of an answer, or
//! an event dropped from a watch stream, is reported.
//!
//! Environment:
//! - `KVIK_DIFF_SEED=s`: replay only seed `s` (coverage is then not enforced);
//! - `KVIK_DIFF_SEEDS=n` or `=a..b`: run seeds `1..=n` or `a..b` instead of
//!   the default `1..=30` (`1..=12` for the watch test);
//! - `KVIK_DIFF_OPS=n`: requests per seed (default [`DEFAULT_OPS`]);
//! - `KVIK_DIFF_TRACE=1`: print every request and etcd's answer.
//!
//! Nothing waits on time. etcd runs compactions in the background unless
//! `physical` is set, and whether it caches a compaction's hash for HashKV
//! depends on whether the previous compaction had finished; so before any
//! Compact or HashKV that follows a non-physical compaction, the generator
//! sends a physical Compact at the current compaction revision: it fails
//! with "compacted" on both servers, and etcd answers it only once every
//! earlier compaction finished. For the same reason a watch starts exactly
//! at the compaction revision only once that compaction has finished.
//!
//! Two etcd 3.7 crashes are steered around, since a crash cannot be
//! compared: a put with `ignore_value`/`ignore_lease` after a "from key"
//! delete of the same transaction, and a compaction at exactly the revision
//! of a transaction that deleted and re-created a key (see [`Gen`]).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::{Kind, Raw, Server};
use net::pb::etcdserverpb as pb;
use net::pb::mvccpb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request as Q;
use pb::response_op::Response as A;
use pb::watch_create_request::FilterType;
use pb::watch_request::RequestUnion as W;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream;
use tonic::transport::Channel;

/// Seeds run when no environment variable says otherwise.
const DEFAULT_SEEDS: u64 = 30;
/// Seeds of the watch test when no environment variable says otherwise.
const DEFAULT_WATCH_SEEDS: u64 = 12;
/// Requests per seed when `KVIK_DIFF_OPS` is unset.
const DEFAULT_OPS: usize = 300;
/// etcd's `--max-request-bytes` default, in bytes.
const MAX_REQUEST_BYTES: usize = 1_572_864;
/// etcd's gRPC receive limit: `--max-request-bytes` plus 512 KiB.
const GRPC_MAX_RECV_BYTES: usize = MAX_REQUEST_BYTES + 512 * 1024;
/// etcd's `--max-txn-ops` default.
const MAX_TXN_OPS: usize = 128;
/// etcd's `MaxLeaseTTL`, in seconds.
const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// TTL of leases with a positive id.
const LEASE_TTL: i64 = 3600;
/// TTL of leases with a negative id: a class of its own (see the module
/// comment).
const LEASE_TTL_NEGATIVE_ID: i64 = 7200;
/// Watch streams per server in the watch test.
const WATCH_STREAMS: usize = 2;
/// How long etcd may take to send what the model says it sends (its
/// catch-up loop runs every 100 ms); beyond it the test itself is wrong.
const ETCD_WATCH_DEADLINE: Duration = Duration::from_secs(20);
/// How long the compared server may take to send what etcd sent; beyond it
/// the segments are compared as they are.
const OTHER_WATCH_DEADLINE: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ requests

/// One request, sent unchanged to both servers.
#[derive(Clone, Debug)]
enum Op {
    Range(pb::RangeRequest),
    Put(pb::PutRequest),
    Delete(pb::DeleteRangeRequest),
    Txn(pb::TxnRequest),
    Compact(pb::CompactionRequest),
    HashKv(pb::HashKvRequest),
    LeaseGrant(pb::LeaseGrantRequest),
    LeaseRevoke(pb::LeaseRevokeRequest),
    LeaseTtl(pb::LeaseTimeToLiveRequest),
    LeaseLeases,
    /// One request on a fresh LeaseKeepAlive stream, and its one answer.
    KeepAlive(pb::LeaseKeepAliveRequest),
    /// A create on watch stream `stream` (the stream's first opens it).
    WatchCreate {
        stream: usize,
        req: pb::WatchCreateRequest,
    },
    WatchCancel {
        stream: usize,
        watch_id: i64,
    },
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq)]
enum Resp {
    Range(pb::RangeResponse),
    Put(pb::PutResponse),
    Delete(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compact(pb::CompactionResponse),
    HashKv(pb::HashKvResponse),
    LeaseGrant(pb::LeaseGrantResponse),
    LeaseRevoke(pb::LeaseRevokeResponse),
    LeaseTtl(pb::LeaseTimeToLiveResponse),
    LeaseLeases(pb::LeaseLeasesResponse),
    KeepAlive(pb::LeaseKeepAliveResponse),
}

/// A failed request: gRPC code and message.
#[derive(Clone, Debug, PartialEq)]
struct Failure {
    code: tonic::Code,
    message: String,
}

type Outcome = Result<Resp, Failure>;

fn fail(s: tonic::Status) -> Failure {
    Failure {
        code: s.code(),
        message: s.message().to_string(),
    }
}

/// The clients of one server.
struct Conn {
    raw: Raw,
    lease: pb::lease_client::LeaseClient<Channel>,
}

impl Conn {
    async fn connect(endpoint: String) -> Conn {
        let raw = Raw::connect(endpoint.clone()).await;
        let ch = channel(endpoint).await;
        Conn {
            raw,
            lease: pb::lease_client::LeaseClient::new(ch),
        }
    }
}

/// A channel of its own (one TCP connection), so that a watch stream's
/// unread data never holds back another call's answer.
async fn channel(endpoint: String) -> Channel {
    tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

async fn exec(conn: &mut Conn, op: &Op) -> Outcome {
    let c = &mut conn.raw;
    match op {
        Op::Range(r) => {
            c.kv.range(r.clone())
                .await
                .map(|r| Resp::Range(r.into_inner()))
        }
        Op::Put(r) => c.kv.put(r.clone()).await.map(|r| Resp::Put(r.into_inner())),
        Op::Delete(r) => {
            c.kv.delete_range(r.clone())
                .await
                .map(|r| Resp::Delete(r.into_inner()))
        }
        Op::Txn(r) => c.kv.txn(r.clone()).await.map(|r| Resp::Txn(r.into_inner())),
        Op::Compact(r) => {
            c.kv.compact(*r)
                .await
                .map(|r| Resp::Compact(r.into_inner()))
        }
        Op::HashKv(r) => c
            .maintenance
            .hash_kv(*r)
            .await
            .map(|r| Resp::HashKv(r.into_inner())),
        Op::LeaseGrant(r) => conn
            .lease
            .lease_grant(*r)
            .await
            .map(|r| Resp::LeaseGrant(r.into_inner())),
        Op::LeaseRevoke(r) => conn
            .lease
            .lease_revoke(*r)
            .await
            .map(|r| Resp::LeaseRevoke(r.into_inner())),
        Op::LeaseTtl(r) => conn
            .lease
            .lease_time_to_live(*r)
            .await
            .map(|r| Resp::LeaseTtl(r.into_inner())),
        Op::LeaseLeases => conn
            .lease
            .lease_leases(pb::LeaseLeasesRequest {})
            .await
            .map(|r| Resp::LeaseLeases(r.into_inner())),
        Op::KeepAlive(r) => {
            // The stream ends after its one request; the server answers it
            // before it sees the end.
            match conn
                .lease
                .lease_keep_alive(tokio_stream::iter(vec![*r]))
                .await
            {
                Err(s) => Err(s),
                Ok(answer) => match answer.into_inner().message().await {
                    Ok(Some(r)) => Ok(Resp::KeepAlive(r)),
                    Ok(None) => Err(tonic::Status::unknown(
                        "(test) the keep-alive stream ended without an answer",
                    )),
                    Err(s) => Err(s),
                },
            }
        }
        Op::WatchCreate { .. } | Op::WatchCancel { .. } => {
            unreachable!("watch requests go through the streams")
        }
    }
    .map_err(fail)
}

// ------------------------------------------------------------------ comparator

/// Clears the fields that legitimately differ between two clusters.
fn normalize_header(h: &mut Option<pb::ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn normalize_txn(t: &mut pb::TxnResponse) {
    normalize_header(&mut t.header);
    for r in &mut t.responses {
        match &mut r.response {
            Some(A::ResponseRange(x)) => normalize_header(&mut x.header),
            Some(A::ResponsePut(x)) => normalize_header(&mut x.header),
            Some(A::ResponseDeleteRange(x)) => normalize_header(&mut x.header),
            Some(A::ResponseTxn(x)) => normalize_txn(x),
            None => {}
        }
    }
}

/// Stands for a remaining lease TTL that lies in `[0, grantedTTL]`.
const TTL_IN_RANGE: i64 = i64::MIN;

fn normalized(o: &Outcome) -> Outcome {
    let mut o = o.clone();
    if let Ok(r) = &mut o {
        match r {
            Resp::Range(x) => normalize_header(&mut x.header),
            Resp::Put(x) => normalize_header(&mut x.header),
            Resp::Delete(x) => normalize_header(&mut x.header),
            Resp::Txn(x) => normalize_txn(x),
            Resp::Compact(x) => normalize_header(&mut x.header),
            Resp::HashKv(x) => normalize_header(&mut x.header),
            Resp::LeaseGrant(x) => normalize_header(&mut x.header),
            Resp::LeaseRevoke(x) => normalize_header(&mut x.header),
            Resp::LeaseTtl(x) => {
                normalize_header(&mut x.header);
                // The remaining TTL depends on the time between the grant
                // and this request; the keys come in Go map order.
                if x.granted_ttl > 0 && (0..=x.granted_ttl).contains(&x.ttl) {
                    x.ttl = TTL_IN_RANGE;
                }
                x.keys.sort();
            }
            Resp::LeaseLeases(x) => normalize_header(&mut x.header),
            Resp::KeepAlive(x) => normalize_header(&mut x.header),
        }
    }
    o
}

/// `None` when kvik answered like etcd; otherwise the first line of each
/// printed answer where they differ (etcd's, then kvik's).
fn compare_outcomes(etcd: &Outcome, kvik: &Outcome) -> Option<(String, String)> {
    let (e, k) = (normalized(etcd), normalized(kvik));
    if e == k {
        return None;
    }
    let (es, ks) = (show_outcome(&e), show_outcome(&k));
    Some(first_difference(&es, &ks))
}

/// The first differing line of two printed answers.
fn first_difference(a: &str, b: &str) -> (String, String) {
    let (mut al, mut bl) = (a.lines(), b.lines());
    loop {
        match (al.next(), bl.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => return (x.trim().to_string(), y.trim().to_string()),
            (Some(x), None) => return (x.trim().to_string(), "(nothing more)".to_string()),
            (None, Some(y)) => return ("(nothing more)".to_string(), y.trim().to_string()),
            (None, None) => return ("(the printed answers are equal)".to_string(), String::new()),
        }
    }
}

// ------------------------------------------------------------------ watch segments

fn normalized_watch(r: &pb::WatchResponse) -> pb::WatchResponse {
    let mut r = r.clone();
    normalize_header(&mut r.header);
    r
}

/// A response that carries no events: created, canceled (by the client or
/// by compaction) or progress.
fn is_control(r: &pb::WatchResponse) -> bool {
    r.events.is_empty()
}

/// The answer to a progress request.
fn is_progress(r: &pb::WatchResponse) -> bool {
    r.watch_id == -1
        && r.events.is_empty()
        && !r.created
        && !r.canceled
        && r.compact_revision == 0
        && r.cancel_reason.is_empty()
}

/// Event responses with fragments merged: (response with all its events,
/// number of responses it came in).
fn merge_fragments<'a>(
    rs: impl Iterator<Item = &'a pb::WatchResponse>,
) -> Vec<(pb::WatchResponse, usize)> {
    let mut out: Vec<(pb::WatchResponse, usize)> = Vec::new();
    let mut open = false;
    for r in rs {
        if open {
            let (m, n) = out.last_mut().expect("open fragment");
            m.events.extend(r.events.iter().cloned());
            m.fragment = r.fragment;
            *n += 1;
        } else {
            out.push((r.clone(), 1));
        }
        open = r.fragment;
    }
    for (m, _) in &mut out {
        m.fragment = false;
    }
    out
}

/// Compares what one stream delivered on each server between two fences
/// (see the module comment); `live_only` lists the watch ids whose
/// responses are compared one by one. Returns the first difference.
fn compare_segments(
    etcd: &[pb::WatchResponse],
    other: &[pb::WatchResponse],
    live_only: &BTreeSet<i64>,
) -> Option<(String, String)> {
    let (e, k) = (
        canonical_segment(etcd, live_only),
        canonical_segment(other, live_only),
    );
    if e == k {
        return None;
    }
    // Control responses are a multiset: name one that only one side sent.
    let control = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("control "))
            .map(str::to_string)
            .collect()
    };
    let (ce, ck) = (control(&e), control(&k));
    if ce != ck {
        let only = |a: &[String], b: &[String]| -> Option<String> {
            let mut b = b.to_vec();
            a.iter()
                .find(|x| match b.iter().position(|y| y == *x) {
                    Some(i) => {
                        b.remove(i);
                        false
                    }
                    None => true,
                })
                .cloned()
        };
        return Some((
            only(&ce, &ck).unwrap_or_else(|| "(no control response the other lacks)".into()),
            only(&ck, &ce).unwrap_or_else(|| "(no control response etcd lacks)".into()),
        ));
    }
    Some(first_difference(&e, &k))
}

/// A segment in the form it is compared in, printed: sorted control
/// responses, then per watch id its events, then (for live-only watches)
/// its merged responses.
fn canonical_segment(seg: &[pb::WatchResponse], live_only: &BTreeSet<i64>) -> String {
    let seg: Vec<pb::WatchResponse> = seg.iter().map(normalized_watch).collect();
    let mut out = String::new();
    let mut control: Vec<String> = seg
        .iter()
        .filter(|r| is_control(r))
        .map(show_watch_resp_line)
        .collect();
    control.sort();
    for c in control {
        writeln!(out, "control {c}").unwrap();
    }
    let ids: BTreeSet<i64> = seg
        .iter()
        .filter(|r| !is_control(r))
        .map(|r| r.watch_id)
        .collect();
    for id in ids {
        let rs: Vec<&pb::WatchResponse> = seg
            .iter()
            .filter(|r| !is_control(r) && r.watch_id == id)
            .collect();
        for (i, ev) in rs.iter().flat_map(|r| &r.events).enumerate() {
            writeln!(out, "watch {id} event #{i}: {}", show_event(ev)).unwrap();
        }
        if live_only.contains(&id) {
            for (m, parts) in merge_fragments(rs.into_iter()) {
                writeln!(
                    out,
                    "watch {id} response {} in {parts} part(s): {} event(s) up to mod {}",
                    show_header(&m.header),
                    m.events.len(),
                    m.events
                        .last()
                        .and_then(|e| e.kv.as_ref())
                        .map_or(0, |kv| kv.mod_revision)
                )
                .unwrap();
            }
        }
    }
    out
}

fn show_event(e: &mvccpb::Event) -> String {
    let t = mvccpb::event::EventType::try_from(e.r#type)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("{}?", e.r#type));
    let kv = e.kv.as_ref().map_or("kv None".to_string(), show_kv);
    let prev = e.prev_kv.as_ref().map_or("None".to_string(), show_kv);
    format!("{t} {kv} prev_kv {prev}")
}

/// One line per response (events counted, not shown).
fn show_watch_resp_line(r: &pb::WatchResponse) -> String {
    let mut s = format!(
        "WatchResponse {} watch_id {}",
        show_header(&r.header),
        r.watch_id
    );
    for (name, v) in [
        ("created", r.created),
        ("canceled", r.canceled),
        ("fragment", r.fragment),
    ] {
        if v {
            write!(s, " {name}").unwrap();
        }
    }
    if r.compact_revision != 0 {
        write!(s, " compact_revision {}", r.compact_revision).unwrap();
    }
    if !r.cancel_reason.is_empty() {
        write!(s, " cancel_reason {:?}", r.cancel_reason).unwrap();
    }
    if !r.events.is_empty() {
        write!(s, " {} event(s)", r.events.len()).unwrap();
    }
    s
}

fn show_segment(seg: &[pb::WatchResponse]) -> String {
    if seg.is_empty() {
        return "(nothing)".to_string();
    }
    let mut out = String::new();
    for r in seg.iter().map(normalized_watch) {
        writeln!(out, "{}", show_watch_resp_line(&r)).unwrap();
        for e in &r.events {
            writeln!(out, "  {}", show_event(e)).unwrap();
        }
    }
    out.trim_end().to_string()
}

/// What differed.
enum Seen {
    /// The answers to a request.
    Answer { etcd: Outcome, kvik: Outcome },
    /// What a watch stream delivered since its last fence, up to the fence
    /// after `op`.
    Watch {
        stream: usize,
        /// The first request after the stream's last fence.
        since: usize,
        etcd: Vec<pb::WatchResponse>,
        kvik: Vec<pb::WatchResponse>,
        /// Watch ids whose responses were compared one by one.
        live_only: BTreeSet<i64>,
    },
}

/// A request whose answers differ, or after which a watch stream differs.
struct Mismatch {
    seed: u64,
    index: usize,
    op: Op,
    seen: Seen,
    /// What answered `kvik`: kvik, or a second etcd in the comparator's tests.
    other_name: &'static str,
    /// The first differing line of each answer (etcd's, then the other's).
    first: (String, String),
    /// Lines of the servers' logs that say one of them crashed.
    crash: Vec<String>,
    /// A planted rewrite changed this answer.
    planted: bool,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.seen {
            Seen::Answer { .. } => String::new(),
            Seen::Watch { stream, since, .. } => {
                format!(" on watch stream {stream} (what it delivered since request #{since})")
            }
        };
        writeln!(
            f,
            "{} diverged from etcd{what}: seed {} request #{} (replay: KVIK_DIFF_SEED={})",
            self.other_name, self.seed, self.index, self.seed
        )?;
        writeln!(
            f,
            "first difference:\n  etcd: {}\n  {}: {}",
            self.first.0, self.other_name, self.first.1
        )?;
        writeln!(f, "request:\n{}", indent(&show_op(&self.op)))?;
        match &self.seen {
            Seen::Answer { etcd, kvik } => {
                writeln!(
                    f,
                    "etcd answered (normalized):\n{}",
                    indent(&show_outcome(&normalized(etcd)))
                )?;
                write!(
                    f,
                    "{} answered (normalized):\n{}",
                    self.other_name,
                    indent(&show_outcome(&normalized(kvik)))
                )?;
            }
            Seen::Watch {
                etcd,
                kvik,
                live_only,
                ..
            } => {
                writeln!(
                    f,
                    "etcd's stream since its last fence (normalized):\n{}",
                    indent(&show_segment(etcd))
                )?;
                writeln!(
                    f,
                    "{}'s stream since its last fence (normalized):\n{}",
                    self.other_name,
                    indent(&show_segment(kvik))
                )?;
                write!(
                    f,
                    "compared as (live-only watch ids {live_only:?}):\n  etcd:\n{}\n  {}:\n{}",
                    indent(&canonical_segment(etcd, live_only)),
                    self.other_name,
                    indent(&canonical_segment(kvik, live_only))
                )?;
            }
        }
        for line in &self.crash {
            write!(f, "\n{line}")?;
        }
        Ok(())
    }
}

impl Mismatch {
    fn summary(&self) -> String {
        let line = show_op(&self.op);
        let line = line.lines().next().unwrap_or_default();
        let what = match &self.seen {
            Seen::Answer { .. } => String::new(),
            Seen::Watch { stream, .. } => format!(" (watch stream {stream})"),
        };
        format!(
            "seed {} #{} {}{what}: etcd: {}  {}: {}",
            self.seed, self.index, line, self.first.0, self.other_name, self.first.1
        )
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

// ------------------------------------------------------------------ printing

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Bytes as an escaped string; long ones abbreviated with length and hash.
fn bytes(b: &[u8]) -> String {
    if b.len() <= 40 {
        format!("\"{}\"", b.escape_ascii())
    } else {
        format!(
            "\"{}\"...({} bytes, fnv {:016x})",
            b[..16].escape_ascii(),
            b.len(),
            fnv(b)
        )
    }
}

fn enum_name(v: i32, name: Option<&'static str>) -> String {
    name.map(str::to_string).unwrap_or_else(|| format!("{v}?"))
}

fn show_range_req(r: &pb::RangeRequest) -> String {
    let mut s = format!("Range {}", bytes(&r.key));
    if !r.range_end.is_empty() {
        write!(s, " end {}", bytes(&r.range_end)).unwrap();
    }
    for (name, v) in [
        ("limit", r.limit),
        ("revision", r.revision),
        ("min_mod", r.min_mod_revision),
        ("max_mod", r.max_mod_revision),
        ("min_create", r.min_create_revision),
        ("max_create", r.max_create_revision),
    ] {
        if v != 0 {
            write!(s, " {name} {v}").unwrap();
        }
    }
    if r.sort_order != 0 {
        let n = SortOrder::try_from(r.sort_order)
            .ok()
            .map(|x| x.as_str_name());
        write!(s, " order {}", enum_name(r.sort_order, n)).unwrap();
    }
    if r.sort_target != 0 {
        let n = SortTarget::try_from(r.sort_target)
            .ok()
            .map(|x| x.as_str_name());
        write!(s, " target {}", enum_name(r.sort_target, n)).unwrap();
    }
    for (name, v) in [
        ("serializable", r.serializable),
        ("keys_only", r.keys_only),
        ("count_only", r.count_only),
    ] {
        if v {
            write!(s, " {name}").unwrap();
        }
    }
    s
}

fn show_put_req(p: &pb::PutRequest) -> String {
    let mut s = format!("Put {} = {}", bytes(&p.key), bytes(&p.value));
    if p.lease != 0 {
        write!(s, " lease {}", p.lease).unwrap();
    }
    for (name, v) in [
        ("prev_kv", p.prev_kv),
        ("ignore_value", p.ignore_value),
        ("ignore_lease", p.ignore_lease),
    ] {
        if v {
            write!(s, " {name}").unwrap();
        }
    }
    s
}

fn show_delete_req(d: &pb::DeleteRangeRequest) -> String {
    let mut s = format!("Delete {}", bytes(&d.key));
    if !d.range_end.is_empty() {
        write!(s, " end {}", bytes(&d.range_end)).unwrap();
    }
    if d.prev_kv {
        s.push_str(" prev_kv");
    }
    s
}

fn show_compare(c: &pb::Compare) -> String {
    let t = CompareTarget::try_from(c.target)
        .ok()
        .map(|x| x.as_str_name());
    let r = CompareResult::try_from(c.result)
        .ok()
        .map(|x| x.as_str_name());
    let mut s = format!("{}({}", enum_name(c.target, t), bytes(&c.key));
    if !c.range_end.is_empty() {
        write!(s, " end {}", bytes(&c.range_end)).unwrap();
    }
    let u = match &c.target_union {
        None => "none".to_string(),
        Some(TargetUnion::Version(v)) => format!("version {v}"),
        Some(TargetUnion::CreateRevision(v)) => format!("create_revision {v}"),
        Some(TargetUnion::ModRevision(v)) => format!("mod_revision {v}"),
        Some(TargetUnion::Value(v)) => format!("value {}", bytes(v)),
        Some(TargetUnion::Lease(v)) => format!("lease {v}"),
    };
    write!(s, ") {} {u}", enum_name(c.result, r)).unwrap();
    s
}

fn show_txn_req(t: &pb::TxnRequest, out: &mut String, depth: usize) {
    let pad = "  ".repeat(depth);
    out.push_str("Txn\n");
    if t.compare.len() > 8 {
        writeln!(
            out,
            "{pad}  compare: {} compares, first {}",
            t.compare.len(),
            show_compare(&t.compare[0])
        )
        .unwrap();
    } else {
        for c in &t.compare {
            writeln!(out, "{pad}  if {}", show_compare(c)).unwrap();
        }
    }
    for (name, ops) in [("then", &t.success), ("else", &t.failure)] {
        if ops.len() > 8 {
            writeln!(out, "{pad}  {name}: {} ops", ops.len()).unwrap();
            continue;
        }
        for op in ops {
            write!(out, "{pad}  {name} ").unwrap();
            match &op.request {
                Some(Q::RequestRange(r)) => writeln!(out, "{}", show_range_req(r)).unwrap(),
                Some(Q::RequestPut(p)) => writeln!(out, "{}", show_put_req(p)).unwrap(),
                Some(Q::RequestDeleteRange(d)) => writeln!(out, "{}", show_delete_req(d)).unwrap(),
                Some(Q::RequestTxn(t)) => show_txn_req(t, out, depth + 1),
                None => writeln!(out, "(empty op)").unwrap(),
            }
        }
    }
}

fn show_op(op: &Op) -> String {
    match op {
        Op::Range(r) => show_range_req(r),
        Op::Put(p) => show_put_req(p),
        Op::Delete(d) => show_delete_req(d),
        Op::Txn(t) => {
            let mut s = String::new();
            show_txn_req(t, &mut s, 0);
            s.trim_end().to_string()
        }
        Op::Compact(c) => format!(
            "Compact revision {}{}",
            c.revision,
            if c.physical { " physical" } else { "" }
        ),
        Op::HashKv(h) => format!("HashKV revision {}", h.revision),
        Op::LeaseGrant(g) => format!("LeaseGrant id {} TTL {}", g.id, g.ttl),
        Op::LeaseRevoke(r) => format!("LeaseRevoke id {}", r.id),
        Op::LeaseTtl(t) => format!(
            "LeaseTimeToLive id {}{}",
            t.id,
            if t.keys { " keys" } else { "" }
        ),
        Op::LeaseLeases => "LeaseLeases".to_string(),
        Op::KeepAlive(k) => format!("LeaseKeepAlive id {}", k.id),
        Op::WatchCreate { stream, req } => {
            format!("Watch stream {stream}: {}", show_watch_create(req))
        }
        Op::WatchCancel { stream, watch_id } => {
            format!("Watch stream {stream}: cancel watch_id {watch_id}")
        }
    }
}

fn show_watch_create(c: &pb::WatchCreateRequest) -> String {
    let mut s = format!("create {}", bytes(&c.key));
    if !c.range_end.is_empty() {
        write!(s, " end {}", bytes(&c.range_end)).unwrap();
    }
    if c.start_revision != 0 {
        write!(s, " start_revision {}", c.start_revision).unwrap();
    }
    if c.watch_id != 0 {
        write!(s, " watch_id {}", c.watch_id).unwrap();
    }
    for f in &c.filters {
        let n = FilterType::try_from(*f).ok().map(|x| x.as_str_name());
        write!(s, " filter {}", enum_name(*f, n)).unwrap();
    }
    for (name, v) in [
        ("prev_kv", c.prev_kv),
        ("progress_notify", c.progress_notify),
        ("fragment", c.fragment),
    ] {
        if v {
            write!(s, " {name}").unwrap();
        }
    }
    s
}

fn show_header(h: &Option<pb::ResponseHeader>) -> String {
    match h {
        None => "header None".to_string(),
        Some(h) if h.cluster_id == 0 && h.member_id == 0 && h.raft_term == 0 => {
            format!("rev {}", h.revision)
        }
        Some(h) => format!(
            "rev {} (cluster {} member {} term {})",
            h.revision, h.cluster_id, h.member_id, h.raft_term
        ),
    }
}

fn show_kv(kv: &mvccpb::KeyValue) -> String {
    format!(
        "{} create {} mod {} version {} value {} lease {}",
        bytes(&kv.key),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        bytes(&kv.value),
        kv.lease
    )
}

fn show_txn_resp(t: &pb::TxnResponse, out: &mut String, depth: usize) {
    let pad = "  ".repeat(depth);
    writeln!(
        out,
        "TxnResponse {} succeeded {}",
        show_header(&t.header),
        t.succeeded
    )
    .unwrap();
    for r in &t.responses {
        write!(out, "{pad}  ").unwrap();
        match &r.response {
            Some(A::ResponseRange(x)) => show_range_resp(x, out, depth + 1),
            Some(A::ResponsePut(x)) => show_put_resp(x, out),
            Some(A::ResponseDeleteRange(x)) => show_delete_resp(x, out, depth + 1),
            Some(A::ResponseTxn(x)) => show_txn_resp(x, out, depth + 1),
            None => writeln!(out, "(empty response)").unwrap(),
        }
    }
}

fn show_range_resp(r: &pb::RangeResponse, out: &mut String, depth: usize) {
    let pad = "  ".repeat(depth);
    writeln!(
        out,
        "RangeResponse {} count {} more {}",
        show_header(&r.header),
        r.count,
        r.more
    )
    .unwrap();
    for kv in &r.kvs {
        writeln!(out, "{pad}  {}", show_kv(kv)).unwrap();
    }
}

fn show_put_resp(p: &pb::PutResponse, out: &mut String) {
    let prev = p
        .prev_kv
        .as_ref()
        .map(show_kv)
        .unwrap_or_else(|| "None".to_string());
    writeln!(out, "PutResponse {} prev_kv {prev}", show_header(&p.header)).unwrap();
}

fn show_delete_resp(d: &pb::DeleteRangeResponse, out: &mut String, depth: usize) {
    let pad = "  ".repeat(depth);
    writeln!(
        out,
        "DeleteRangeResponse {} deleted {}",
        show_header(&d.header),
        d.deleted
    )
    .unwrap();
    for kv in &d.prev_kvs {
        writeln!(out, "{pad}  prev {}", show_kv(kv)).unwrap();
    }
}

fn show_outcome(o: &Outcome) -> String {
    let mut s = String::new();
    match o {
        Err(f) => write!(s, "error {:?} {:?}", f.code, f.message).unwrap(),
        Ok(Resp::Range(r)) => show_range_resp(r, &mut s, 0),
        Ok(Resp::Put(p)) => show_put_resp(p, &mut s),
        Ok(Resp::Delete(d)) => show_delete_resp(d, &mut s, 0),
        Ok(Resp::Txn(t)) => show_txn_resp(t, &mut s, 0),
        Ok(Resp::Compact(c)) => write!(s, "CompactionResponse {}", show_header(&c.header)).unwrap(),
        Ok(Resp::HashKv(h)) => write!(
            s,
            "HashKVResponse {} hash {} compact_revision {} hash_revision {}",
            show_header(&h.header),
            h.hash,
            h.compact_revision,
            h.hash_revision
        )
        .unwrap(),
        Ok(Resp::LeaseGrant(g)) => write!(
            s,
            "LeaseGrantResponse {} id {} TTL {} error {:?}",
            show_header(&g.header),
            g.id,
            g.ttl,
            g.error
        )
        .unwrap(),
        Ok(Resp::LeaseRevoke(r)) => {
            write!(s, "LeaseRevokeResponse {}", show_header(&r.header)).unwrap()
        }
        Ok(Resp::LeaseTtl(t)) => {
            let ttl = if t.ttl == TTL_IN_RANGE {
                "in [0, grantedTTL]".to_string()
            } else {
                t.ttl.to_string()
            };
            writeln!(
                s,
                "LeaseTimeToLiveResponse {} id {} TTL {ttl} grantedTTL {} keys {}",
                show_header(&t.header),
                t.id,
                t.granted_ttl,
                t.keys.len()
            )
            .unwrap();
            for k in &t.keys {
                writeln!(s, "  key {}", bytes(k)).unwrap();
            }
        }
        Ok(Resp::LeaseLeases(l)) => write!(
            s,
            "LeaseLeasesResponse {} leases {:?}",
            show_header(&l.header),
            l.leases.iter().map(|l| l.id).collect::<Vec<_>>()
        )
        .unwrap(),
        Ok(Resp::KeepAlive(k)) => write!(
            s,
            "LeaseKeepAliveResponse {} id {} TTL {}",
            show_header(&k.header),
            k.id,
            k.ttl
        )
        .unwrap(),
    }
    s.trim_end().to_string()
}

// ------------------------------------------------------------------ sizes

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn len_bytes_field(tag_len: usize, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        tag_len + varint_len(b.len() as u64) + b.len()
    }
}

fn len_int_field(v: i64) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(v as u64)
    }
}

fn len_message_field(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn len_put(p: &pb::PutRequest) -> usize {
    len_bytes_field(1, &p.key)
        + len_bytes_field(1, &p.value)
        + len_int_field(p.lease)
        + 2 * (p.prev_kv as usize + p.ignore_value as usize + p.ignore_lease as usize)
}

fn len_range(r: &pb::RangeRequest) -> usize {
    len_bytes_field(1, &r.key)
        + len_bytes_field(1, &r.range_end)
        + [
            r.limit,
            r.revision,
            r.sort_order as i64,
            r.sort_target as i64,
            r.min_mod_revision,
            r.max_mod_revision,
            r.min_create_revision,
            r.max_create_revision,
        ]
        .iter()
        .map(|&v| len_int_field(v))
        .sum::<usize>()
        + 2 * (r.serializable as usize + r.keys_only as usize + r.count_only as usize)
}

fn len_delete(d: &pb::DeleteRangeRequest) -> usize {
    len_bytes_field(1, &d.key) + len_bytes_field(1, &d.range_end) + 2 * d.prev_kv as usize
}

fn len_compare(c: &pb::Compare) -> usize {
    let union = match &c.target_union {
        None => 0,
        Some(TargetUnion::Value(v)) => 1 + varint_len(v.len() as u64) + v.len(),
        Some(
            TargetUnion::Version(v)
            | TargetUnion::CreateRevision(v)
            | TargetUnion::ModRevision(v)
            | TargetUnion::Lease(v),
        ) => 1 + varint_len(*v as u64),
    };
    len_int_field(c.result as i64)
        + len_int_field(c.target as i64)
        + len_bytes_field(1, &c.key)
        + len_bytes_field(2, &c.range_end)
        + union
}

fn len_op(op: &pb::RequestOp) -> usize {
    match &op.request {
        None => 0,
        Some(Q::RequestRange(r)) => len_message_field(len_range(r)),
        Some(Q::RequestPut(p)) => len_message_field(len_put(p)),
        Some(Q::RequestDeleteRange(d)) => len_message_field(len_delete(d)),
        Some(Q::RequestTxn(t)) => len_message_field(len_txn(t)),
    }
}

/// The protobuf encoding length of a TxnRequest.
fn len_txn(t: &pb::TxnRequest) -> usize {
    t.compare
        .iter()
        .map(|c| len_message_field(len_compare(c)))
        .sum::<usize>()
        + t.success
            .iter()
            .chain(&t.failure)
            .map(|o| len_message_field(len_op(o)))
            .sum::<usize>()
}

/// Finds the filler length `n` with `len(n) == target` (or the closest one
/// below when varint sizes make `target` unreachable).
fn fit(target: usize, len: impl Fn(usize) -> usize) -> usize {
    let mut n = target.saturating_sub(len(0));
    for _ in 0..8 {
        let l = len(n);
        if l == target {
            return n;
        }
        n = (n as i64 + target as i64 - l as i64).max(0) as usize;
    }
    while n > 0 && len(n) > target {
        n -= 1;
    }
    n
}

// ------------------------------------------------------------------ keys

/// etcd's `GetPrefixRangeEnd`: the end of the range of every key with
/// prefix `k` (`[0]`, every key from `k`, when no such end exists).
fn prefix_end(k: &[u8]) -> Vec<u8> {
    let mut end = k.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().unwrap() += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn is_read_only(t: &pb::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(Q::RequestRange(_)) => true,
            Some(Q::RequestTxn(t)) => is_read_only(t),
            _ => false,
        })
}

fn has_from_key_delete(t: &pb::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Q::RequestDeleteRange(d)) => d.range_end == [0],
            Some(Q::RequestTxn(t)) => has_from_key_delete(t),
            _ => false,
        })
}

fn has_put(t: &pb::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Q::RequestPut(_)) => true,
            Some(Q::RequestTxn(t)) => has_put(t),
            _ => false,
        })
}

fn clear_ignore_flags(t: &mut pb::TxnRequest) {
    for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
        match &mut op.request {
            Some(Q::RequestPut(p)) => {
                p.ignore_value = false;
                p.ignore_lease = false;
            }
            Some(Q::RequestTxn(t)) => clear_ignore_flags(t),
            _ => {}
        }
    }
}

// ------------------------------------------------------------------ generator

/// A put or delete whose event is known: a top-level Put, or a top-level
/// DeleteRange of one key or with `prev_kv`.
#[derive(Clone, Debug)]
struct KnownEvent {
    rev: i64,
    key: Vec<u8>,
    put: bool,
    /// A value over 1 MiB: with one more event, a fragmenting response.
    big: bool,
}

/// etcd's side of one watch stream, followed through etcd's responses.
#[derive(Default)]
struct StreamModel {
    open: bool,
    /// Watchers registered in etcd's stream, by id: the start revision
    /// they asked for.
    live: BTreeMap<i64, i64>,
    /// Live watchers that started at 0 or in the future: their responses
    /// are compared one by one.
    live_only: BTreeSet<i64>,
    /// Live watchers that compaction cancelled, still registered until
    /// the client cancels them.
    compacted: BTreeSet<i64>,
    /// Ids cancelled on this stream.
    gone: Vec<i64>,
}

impl StreamModel {
    /// Whether etcd answers a progress request on this stream at revision
    /// `rev`: it has a watcher, and every watcher is synced (the driver
    /// waits for every replay) and has reached its start revision.
    fn fenceable(&self, rev: i64) -> bool {
        !self.live.is_empty()
            && self.compacted.is_empty()
            && self.live.values().all(|&start| start <= rev)
    }
}

/// The watch streams of a seed.
struct WatchModel {
    streams: Vec<StreamModel>,
    /// Client-chosen ids handed out so far.
    chosen: i64,
}

/// Whether a watch on `key`/`range_end` sees key `k`, as etcd reads the
/// request (an empty key is `\0`; a range end `\0` means every key from
/// `key`).
fn watch_contains(key: &[u8], range_end: &[u8], k: &[u8]) -> bool {
    let key: &[u8] = if key.is_empty() { &[0] } else { key };
    if range_end.is_empty() {
        k == key
    } else if range_end == [0] {
        k >= key
    } else {
        k >= key && k < range_end
    }
}

/// Seeded request generator. It follows the store through etcd's answers
/// (current and compacted revisions, leases, watchers) to aim revisions at
/// interesting places: historical, compacted, the compaction point, the
/// future.
struct Gen {
    rng: StdRng,
    seed: u64,
    /// The current revision, as the last answer reported it.
    rev: i64,
    /// etcd's compaction revision; -1 before the first compaction.
    compact: i64,
    /// Revisions of every successful compaction, oldest first.
    compactions: Vec<i64>,
    /// A non-physical compaction may still run in etcd's background.
    pending: bool,
    /// Revisions at which a transaction may have deleted a key and created
    /// it again (only a "from key" delete escapes etcd's duplicate check).
    /// etcd 3.7 loses such a key's new value when it compacts at exactly
    /// that revision, and then exits on the next read of the key
    /// ("range failed to find revision pair", etcd-io/etcd#22376), so the
    /// generator never compacts there.
    recreated: BTreeSet<i64>,
    /// Lease grants asked for so far; lease ids grow with it.
    grants: i64,
    /// Leases granted and not revoked, oldest first (none of minimum TTL).
    leases: Vec<i64>,
    /// Leases revoked.
    revoked: Vec<i64>,
    /// A lease of the minimum TTL: the next request revokes it.
    revoke_next: Option<i64>,
    /// Events known to be in the history.
    known: Vec<KnownEvent>,
    /// The watch streams; `None` when the seed has none.
    watch: Option<WatchModel>,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            seed,
            rev: 1,
            compact: -1,
            compactions: Vec::new(),
            pending: false,
            recreated: BTreeSet::new(),
            grants: 0,
            leases: Vec::new(),
            revoked: Vec::new(),
            revoke_next: None,
            known: Vec::new(),
            watch: None,
        }
    }

    fn with_watch(seed: u64) -> Gen {
        let mut g = Gen::new(seed);
        g.watch = Some(WatchModel {
            streams: (0..WATCH_STREAMS).map(|_| StreamModel::default()).collect(),
            chosen: 0,
        });
        g
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.rng.random_range(0..v.len())]
    }

    fn one_in(&mut self, n: u32) -> bool {
        self.rng.random_ratio(1, n)
    }

    fn below(&mut self, n: u32) -> u32 {
        self.rng.random_range(0..n)
    }

    /// Keys from a small alphabet, so that requests collide, plus edge keys.
    fn key(&mut self) -> Vec<u8> {
        match self.below(40) {
            0 => vec![0],
            1 => vec![0xff],
            2 => b"a\0".to_vec(),
            3 => vec![0xff, 0xff],
            _ => {
                let len = match self.below(10) {
                    0..=3 => 1,
                    4..=7 => 2,
                    _ => 3,
                };
                (0..len).map(|_| b"abc"[self.below(3) as usize]).collect()
            }
        }
    }

    /// A key, rarely empty (an error everywhere).
    fn key_or_empty(&mut self) -> Vec<u8> {
        if self.one_in(60) {
            Vec::new()
        } else {
            self.key()
        }
    }

    /// A non-empty range end for `key`.
    fn range_end(&mut self, key: &[u8]) -> Vec<u8> {
        match self.below(10) {
            0..=3 => prefix_end(key),
            4..=5 => vec![0],
            6..=8 => self.key(),
            _ => {
                let mut k = key.to_vec();
                k.push(0);
                k
            }
        }
    }

    fn value(&mut self) -> Vec<u8> {
        match self.below(12) {
            0 => Vec::new(),
            1..=8 => format!("v{}", self.below(4)).into_bytes(),
            9 => b"v".to_vec(),
            _ => {
                let n = self.rng.random_range(1..24);
                (0..n).map(|_| self.rng.random()).collect()
            }
        }
    }

    /// Mostly no lease; sometimes a granted one, sometimes one that does
    /// not exist.
    fn lease(&mut self) -> i64 {
        if !self.leases.is_empty() && self.one_in(8) {
            let l = self.leases.clone();
            self.pick(&l)
        } else if self.one_in(25) {
            [1, 7, -3, i64::MAX][self.below(4) as usize]
        } else {
            0
        }
    }

    /// A fresh lease id: growing with every grant, negative in a range of
    /// its own.
    fn lease_id(&mut self, negative: bool) -> i64 {
        self.grants += 1;
        let base = 1_000_000 * (self.seed % 1_000_000 + 1) as i64 + self.grants;
        if negative {
            base - (1 << 50)
        } else {
            base
        }
    }

    /// A lease to revoke, ask about or keep alive: mostly a granted one;
    /// sometimes a revoked one, 0, or one never granted.
    fn lease_target(&mut self) -> i64 {
        match self.below(10) {
            0 if !self.revoked.is_empty() => {
                let r = self.revoked.clone();
                self.pick(&r)
            }
            1 => self.pick(&[0, 1, -3, 424_242]),
            _ if !self.leases.is_empty() => {
                let l = self.leases.clone();
                self.pick(&l)
            }
            _ => 424_242,
        }
    }

    fn lease_grant(&mut self) -> pb::LeaseGrantRequest {
        let (id, ttl) = match self.below(20) {
            0 if !self.leases.is_empty() => {
                let l = self.leases.clone();
                (self.pick(&l), LEASE_TTL)
            }
            1 => {
                // Too large: refused before the id is looked at.
                let id = if !self.leases.is_empty() && self.one_in(2) {
                    let l = self.leases.clone();
                    self.pick(&l)
                } else {
                    self.lease_id(false)
                };
                (id, self.pick(&[MAX_LEASE_TTL + 1, i64::MAX]))
            }
            2 => {
                // Raised to the minimum TTL (2 s): revoked at once.
                let id = self.lease_id(false);
                self.revoke_next = Some(id);
                (id, self.pick(&[0, 1, -5]))
            }
            3 => (self.lease_id(false), MAX_LEASE_TTL),
            4 => (self.lease_id(true), LEASE_TTL_NEGATIVE_ID),
            _ => (self.lease_id(false), LEASE_TTL),
        };
        pb::LeaseGrantRequest { ttl, id }
    }

    fn lease_op(&mut self) -> Op {
        match self.below(20) {
            0..=6 => Op::LeaseGrant(self.lease_grant()),
            7..=9 => Op::LeaseRevoke(pb::LeaseRevokeRequest {
                id: self.lease_target(),
            }),
            10..=13 => Op::LeaseTtl(pb::LeaseTimeToLiveRequest {
                id: self.lease_target(),
                keys: !self.one_in(3),
            }),
            14..=15 => Op::LeaseLeases,
            _ => Op::KeepAlive(pb::LeaseKeepAliveRequest {
                id: self.lease_target(),
            }),
        }
    }

    // -------------------------------------------------------------- watch

    fn watch_model(&self) -> &WatchModel {
        self.watch.as_ref().expect("a seed with watch streams")
    }

    fn stream_model(&mut self, stream: usize) -> &mut StreamModel {
        &mut self
            .watch
            .as_mut()
            .expect("a seed with watch streams")
            .streams[stream]
    }

    /// The create that opens stream `stream`: from now, on a valid range.
    fn watch_open(&mut self, stream: usize) -> Op {
        let req = self.watch_create_req(stream, true);
        Op::WatchCreate { stream, req }
    }

    fn watch_op(&mut self) -> Op {
        if self.one_in(3) {
            if let Some(op) = self.watch_cancel() {
                return op;
            }
        }
        let stream = self.below(WATCH_STREAMS as u32) as usize;
        let req = self.watch_create_req(stream, false);
        Op::WatchCreate { stream, req }
    }

    /// A cancel, on a stream with nothing in flight: fenced, or without
    /// watchers.
    fn watch_cancel(&mut self) -> Option<Op> {
        let rev = self.rev;
        let streams: Vec<usize> = (0..WATCH_STREAMS)
            .filter(|&i| {
                let s = &self.watch_model().streams[i];
                s.open && (s.fenceable(rev) || s.live.is_empty())
            })
            .collect();
        if streams.is_empty() {
            return None;
        }
        let stream = self.pick(&streams);
        let live: Vec<i64> = self.watch_model().streams[stream]
            .live
            .keys()
            .copied()
            .collect();
        let gone = self.watch_model().streams[stream].gone.clone();
        let watch_id = match self.below(8) {
            0 if !gone.is_empty() => self.pick(&gone),
            1 => self.pick(&[999, -1]),
            _ if !live.is_empty() => self.pick(&live),
            _ => 999,
        };
        Some(Op::WatchCancel { stream, watch_id })
    }

    fn watch_create_req(&mut self, stream: usize, first: bool) -> pb::WatchCreateRequest {
        let floor = self.compact.max(0);
        let big: Vec<Vec<u8>> = self
            .known
            .iter()
            .filter(|e| e.big && e.rev > floor)
            .map(|e| e.key.clone())
            .collect();
        if !first && !big.is_empty() && self.one_in(4) {
            // Every key from a big value's, from before it: a replay of
            // more than `--max-request-bytes`, in fragments.
            let key = big[self.rng.random_range(0..big.len())].clone();
            let start_revision = self
                .replayed_start(&key, &[0], &[], true, false)
                .unwrap_or(0);
            return pb::WatchCreateRequest {
                key,
                range_end: vec![0],
                start_revision,
                prev_kv: self.one_in(2),
                fragment: true,
                ..Default::default()
            };
        }
        let key = if first {
            self.key()
        } else {
            self.key_or_empty()
        };
        let range_end = match self.below(10) {
            0..=3 => Vec::new(),
            4..=5 => prefix_end(&key),
            6 => vec![0],
            // Any key: at or before `key` the range is empty, and refused.
            7..=8 if !first => self.key(),
            _ => {
                let mut k = key.clone();
                k.push(0);
                k
            }
        };
        let filters = match self.below(16) {
            0 | 1 => vec![FilterType::Noput as i32],
            2 | 3 => vec![FilterType::Nodelete as i32],
            4 => vec![FilterType::Noput as i32, FilterType::Nodelete as i32],
            // Outside the enum: etcd ignores it.
            5 => vec![7],
            _ => Vec::new(),
        };
        let prev_kv = self.one_in(3);
        let progress_notify = self.one_in(5);
        let fragment = self.one_in(4);
        let watch_id = if first {
            0
        } else {
            let live: Vec<i64> = self.watch_model().streams[stream]
                .live
                .keys()
                .copied()
                .collect();
            match self.below(12) {
                0 if !live.is_empty() => self.pick(&live),
                // Where automatic ids go: etcd skips ids in use.
                1 => self.rng.random_range(1..=4),
                2 => {
                    let m = self.watch.as_mut().expect("watch");
                    m.chosen += 1;
                    1000 + m.chosen
                }
                3 => {
                    let m = self.watch.as_mut().expect("watch");
                    m.chosen += 1;
                    -10 - m.chosen
                }
                _ => 0,
            }
        };
        let start_revision = if first {
            0
        } else {
            self.watch_start(&key, &range_end, &filters, fragment)
        };
        pb::WatchCreateRequest {
            key,
            range_end,
            start_revision,
            progress_notify,
            filters,
            prev_kv,
            watch_id,
            fragment,
        }
    }

    /// A start revision: from now, in the future, negative, compacted, or in
    /// the past where etcd is sure to replay an event (see the module
    /// comment); from now where no such event is known.
    fn watch_start(&mut self, key: &[u8], end: &[u8], filters: &[i32], fragment: bool) -> i64 {
        let (rev, c) = (self.rev, self.compact);
        match self.below(16) {
            0..=4 => 0,
            5..=6 => rev + self.rng.random_range(1..=3),
            7..=10 => self
                .replayed_start(key, end, filters, fragment, false)
                .unwrap_or(0),
            11 => self
                .replayed_start(key, end, filters, fragment, true)
                .unwrap_or(0),
            12 if c >= 2 => self.rng.random_range(1..c),
            13 if c >= 1 && !self.pending => {
                // Exactly the compaction point, if something comes after it.
                match self.replayed_start(key, end, filters, fragment, false) {
                    Some(_) => c,
                    None => 0,
                }
            }
            14 => -self.rng.random_range(1..=3),
            _ => 0,
        }
    }

    /// A start revision at or before a known event that the watch sees and
    /// etcd still has (after the compaction point); `current` asks for the
    /// current revision. Prefers big values for fragmenting watches.
    fn replayed_start(
        &mut self,
        key: &[u8],
        end: &[u8],
        filters: &[i32],
        fragment: bool,
        current: bool,
    ) -> Option<i64> {
        let no_put = filters.contains(&(FilterType::Noput as i32));
        let no_delete = filters.contains(&(FilterType::Nodelete as i32));
        let floor = self.compact.max(0);
        let rev = self.rev;
        let mut seen: Vec<&KnownEvent> = self
            .known
            .iter()
            .filter(|e| {
                e.rev > floor
                    && (!current || e.rev == rev)
                    && watch_contains(key, end, &e.key)
                    && !(e.put && no_put)
                    && (e.put || !no_delete)
            })
            .collect();
        if fragment && seen.iter().any(|e| e.big) {
            seen.retain(|e| e.big);
        }
        if seen.is_empty() {
            return None;
        }
        let last = seen[self.rng.random_range(0..seen.len())].rev;
        if current {
            return Some(last);
        }
        // Not at the compaction point while etcd may still be removing
        // what it compacted.
        let lo = if self.pending {
            floor + 1
        } else {
            floor.max(1)
        };
        Some(self.rng.random_range(lo..=last))
    }

    /// Follows a create through etcd's answer.
    fn watch_created(
        &mut self,
        stream: usize,
        req: &pb::WatchCreateRequest,
        r: &pb::WatchResponse,
    ) {
        let rev = self.rev;
        let s = self.stream_model(stream);
        s.open = true;
        if r.created && !r.canceled {
            s.live.insert(r.watch_id, req.start_revision);
            s.compacted.remove(&r.watch_id);
            if req.start_revision == 0 || req.start_revision > rev {
                s.live_only.insert(r.watch_id);
            } else {
                s.live_only.remove(&r.watch_id);
            }
        }
    }

    /// Follows a cancel through etcd's answer.
    fn watch_canceled(&mut self, stream: usize, watch_id: i64) {
        let s = self.stream_model(stream);
        s.live.remove(&watch_id);
        s.live_only.remove(&watch_id);
        s.compacted.remove(&watch_id);
        s.gone.push(watch_id);
    }

    /// A revision aimed at an interesting place of the history.
    fn revision(&mut self) -> i64 {
        let (rev, c) = (self.rev, self.compact);
        match self.below(12) {
            0 => 0,
            1 | 2 => rev,
            3..=5 => self.rng.random_range(1..=rev),
            6 if c > 0 => c,
            7 if c > 1 => self.rng.random_range(1..c),
            8 => rev + self.rng.random_range(1..=3),
            9 => -self.rng.random_range(1..=3),
            _ => self.rng.random_range(c.max(1)..=rev),
        }
    }

    /// A revision-filter bound.
    fn filter(&mut self) -> i64 {
        if self.one_in(3) {
            0
        } else {
            self.rng.random_range(0..=self.rev + 1)
        }
    }

    fn range_req(&mut self, in_txn: bool) -> pb::RangeRequest {
        let key = self.key_or_empty();
        let range_end = if self.below(10) < 7 {
            self.range_end(&key)
        } else {
            Vec::new()
        };
        let limit = match self.below(20) {
            0..=9 => 0,
            10..=16 => self.rng.random_range(1..=3),
            17 => 1000,
            18 => -1,
            _ => self.rng.random_range(4..=8),
        };
        let revision = if self.below(if in_txn { 6 } else { 3 }) == 0 {
            self.revision()
        } else {
            0
        };
        let sort_order = match self.below(100) {
            0..=49 => 0,
            50..=74 => 1,
            75..=98 => 2,
            _ => [3, -1][self.below(2) as usize],
        };
        let sort_target = match self.below(100) {
            0..=39 => 0,
            40..=98 => self.rng.random_range(1..=4),
            _ => [5, 99][self.below(2) as usize],
        };
        let mut filters = [0i64; 4];
        for f in &mut filters {
            if self.one_in(8) {
                *f = self.filter();
            }
        }
        pb::RangeRequest {
            key,
            range_end,
            limit,
            revision,
            sort_order,
            sort_target,
            serializable: self.one_in(4),
            keys_only: self.one_in(6),
            count_only: self.one_in(8),
            min_mod_revision: filters[0],
            max_mod_revision: filters[1],
            min_create_revision: filters[2],
            max_create_revision: filters[3],
        }
    }

    fn put_req(&mut self) -> pb::PutRequest {
        let key = self.key_or_empty();
        let ignore_value = self.one_in(8);
        let ignore_lease = self.one_in(8);
        let value = if ignore_value && !self.one_in(6) {
            Vec::new()
        } else {
            self.value()
        };
        let lease = if ignore_lease && !self.one_in(6) {
            0
        } else {
            self.lease()
        };
        pb::PutRequest {
            key,
            value,
            lease,
            prev_kv: self.one_in(3),
            ignore_value,
            ignore_lease,
        }
    }

    fn delete_req(&mut self) -> pb::DeleteRangeRequest {
        let key = self.key_or_empty();
        let range_end = if self.below(10) < 6 {
            self.range_end(&key)
        } else {
            Vec::new()
        };
        pb::DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.one_in(2),
        }
    }

    fn compare(&mut self) -> pb::Compare {
        // Rarely a result or target outside the enum: etcd takes an unknown
        // result as true and compares an unknown target as equal.
        let target = if self.one_in(150) {
            [5, 9][self.below(2) as usize]
        } else {
            self.below(5) as i32
        };
        let result = if self.one_in(150) {
            [4, 7][self.below(2) as usize]
        } else {
            self.below(4) as i32
        };
        let key = if self.one_in(80) {
            Vec::new()
        } else {
            self.key()
        };
        let range_end = if self.one_in(3) {
            self.range_end(&key)
        } else {
            Vec::new()
        };
        let matching = |g: &mut Gen, t: i32| match t {
            0 => TargetUnion::Version(g.rng.random_range(0..=3)),
            1 => TargetUnion::CreateRevision(g.rng.random_range(0..=g.rev + 1)),
            2 => TargetUnion::ModRevision(g.rng.random_range(0..=g.rev + 1)),
            3 => TargetUnion::Value(g.value()),
            _ => TargetUnion::Lease(if g.one_in(5) {
                g.rng.random_range(1..=3)
            } else {
                0
            }),
        };
        let target_union = match self.below(100) {
            0..=84 => Some(matching(self, target)),
            85..=92 => None,
            _ => {
                let other = (target + 1 + self.below(4) as i32) % 5;
                Some(matching(self, other))
            }
        };
        pb::Compare {
            result,
            target,
            key,
            range_end,
            target_union,
        }
    }

    fn op_count(&mut self) -> usize {
        match self.below(10) {
            0..=1 => 0,
            2..=4 => 1,
            5..=7 => 2,
            8 => 3,
            _ => self.rng.random_range(4..=6),
        }
    }

    fn txn_op(&mut self, depth: usize, read_only: bool) -> pb::RequestOp {
        if self.one_in(150) {
            return pb::RequestOp { request: None };
        }
        let request = match self.below(10) {
            4..=6 if !read_only => Q::RequestPut(self.put_req()),
            7..=8 if !read_only => Q::RequestDeleteRange(self.delete_req()),
            9 if depth < 4 && self.one_in(2) => Q::RequestTxn(self.txn_req(depth + 1, read_only)),
            _ => Q::RequestRange(self.range_req(true)),
        };
        pb::RequestOp {
            request: Some(request),
        }
    }

    fn txn_req(&mut self, depth: usize, read_only: bool) -> pb::TxnRequest {
        let ncmp = match self.below(10) {
            0..=2 => 0,
            3..=6 => 1,
            7..=8 => 2,
            _ => 3,
        };
        let compare = (0..ncmp).map(|_| self.compare()).collect();
        let n = self.op_count();
        let success = (0..n).map(|_| self.txn_op(depth, read_only)).collect();
        let n = self.op_count();
        let failure = (0..n).map(|_| self.txn_op(depth, read_only)).collect();
        pb::TxnRequest {
            compare,
            success,
            failure,
        }
    }

    fn txn(&mut self) -> pb::TxnRequest {
        if self.one_in(40) {
            return self.txn_at_op_limit();
        }
        let read_only = self.one_in(4);
        let mut t = self.txn_req(1, read_only);
        if !read_only && self.one_in(25) {
            // The same key written twice in one branch.
            let p = self.put_req();
            let mut q = p.clone();
            q.value = self.value();
            let branch = if self.one_in(2) {
                &mut t.success
            } else {
                &mut t.failure
            };
            branch.push(pb::RequestOp {
                request: Some(Q::RequestPut(p)),
            });
            branch.push(pb::RequestOp {
                request: Some(Q::RequestPut(q)),
            });
        }
        // etcd's duplicate-key check misses "from key" deletes, and its apply
        // panics when a later put then ignores the value or lease of a key
        // the delete removed; keep such transactions out.
        if has_from_key_delete(&t) {
            clear_ignore_flags(&mut t);
        }
        t
    }

    /// Transactions at and just over `--max-txn-ops`, on each level.
    fn txn_at_op_limit(&mut self) -> pb::TxnRequest {
        let over = self.one_in(2) as usize;
        let range = |g: &mut Gen| pb::RequestOp {
            request: Some(Q::RequestRange(pb::RangeRequest {
                key: g.key(),
                ..Default::default()
            })),
        };
        match self.below(3) {
            0 => pb::TxnRequest {
                compare: (0..MAX_TXN_OPS + over)
                    .map(|_| {
                        // Valid compares, so that only the op count is wrong.
                        let mut c = self.compare();
                        if c.key.is_empty() {
                            c.key = b"a".to_vec();
                        }
                        c.result %= 4;
                        c.target %= 5;
                        c
                    })
                    .collect(),
                success: vec![range(self)],
                failure: vec![],
            },
            1 => pb::TxnRequest {
                compare: vec![],
                success: (0..MAX_TXN_OPS + over).map(|_| range(self)).collect(),
                failure: vec![range(self)],
            },
            _ => {
                // A nested level may hold what its parents left of the budget.
                let outer = self.rng.random_range(1..=4);
                let mut success: Vec<_> = (0..outer - 1).map(|_| range(self)).collect();
                let inner = pb::TxnRequest {
                    compare: vec![],
                    success: vec![],
                    failure: (0..MAX_TXN_OPS - outer + over)
                        .map(|_| range(self))
                        .collect(),
                };
                success.push(pb::RequestOp {
                    request: Some(Q::RequestTxn(inner)),
                });
                pb::TxnRequest {
                    compare: vec![],
                    success,
                    failure: vec![],
                }
            }
        }
    }

    /// An encoded request length at an interesting distance from the limits.
    ///
    /// etcd wraps a proposal in an InternalRaftRequest whose request ID takes
    /// 9 or 10 bytes depending on the member ID, so its envelope is 17 or 18
    /// bytes for requests of this size: at most `max - 18` is accepted and
    /// from `max - 15` refused whatever the ID.
    fn large_len(&mut self) -> usize {
        match self.below(6) {
            0 => MAX_REQUEST_BYTES - 1000,
            1 | 2 => MAX_REQUEST_BYTES - 18,
            3 => MAX_REQUEST_BYTES - 15,
            4 => MAX_REQUEST_BYTES + 1000,
            _ => GRPC_MAX_RECV_BYTES + 100,
        }
    }

    fn large_put(&mut self) -> pb::PutRequest {
        let target = self.large_len();
        let mut p = pb::PutRequest {
            key: self.key(),
            prev_kv: self.one_in(3),
            ..Default::default()
        };
        match self.below(8) {
            0 => p.ignore_value = true,
            1 => p.key = Vec::new(),
            _ => {}
        }
        let n = fit(target, |n| {
            len_put(&pb::PutRequest {
                value: vec![0; n],
                ..p.clone()
            })
        });
        p.value = vec![b'x'; n];
        p
    }

    /// A transaction carrying a large value: a write, or a read-only one
    /// whose compare value is large.
    fn large_txn(&mut self) -> pb::TxnRequest {
        let target = self.large_len();
        if self.one_in(2) {
            let mut t = pb::TxnRequest {
                compare: vec![self.compare()],
                success: vec![pb::RequestOp {
                    request: Some(Q::RequestPut(pb::PutRequest {
                        key: self.key(),
                        ..Default::default()
                    })),
                }],
                failure: vec![pb::RequestOp {
                    request: Some(Q::RequestRange(self.range_req(true))),
                }],
            };
            let with = |t: &pb::TxnRequest, n: usize| {
                let mut t = t.clone();
                if let Some(Q::RequestPut(p)) = &mut t.success[0].request {
                    p.value = vec![b'y'; n];
                }
                t
            };
            let n = fit(target, |n| len_txn(&with(&t, n)));
            t = with(&t, n);
            t
        } else {
            let key = self.key();
            let cmp = |n: usize| pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Value as i32,
                key: key.clone(),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::Value(vec![b'z'; n])),
            };
            let success = vec![pb::RequestOp {
                request: Some(Q::RequestRange(self.range_req(true))),
            }];
            let n = fit(target, |n| {
                len_txn(&pb::TxnRequest {
                    compare: vec![cmp(n)],
                    success: success.clone(),
                    failure: vec![],
                })
            });
            pb::TxnRequest {
                compare: vec![cmp(n)],
                success,
                failure: vec![],
            }
        }
    }

    fn compact_req(&mut self) -> pb::CompactionRequest {
        let (rev, c) = (self.rev, self.compact);
        let revision = match self.below(20) {
            0..=5 => rev,
            6..=11 if c + 1 < rev => self.rng.random_range(c + 1..=rev),
            12..=13 => c,
            14 if c >= 1 => self.rng.random_range(1..=c),
            15 => 0,
            16 => -self.rng.random_range(1..=3),
            17..=19 => rev + self.rng.random_range(1..=3),
            _ => rev,
        };
        let mut revision = revision;
        while revision > self.compact && self.recreated.contains(&revision) {
            revision -= 1;
        }
        pb::CompactionRequest {
            revision,
            physical: self.one_in(2),
        }
    }

    fn hash_kv_req(&mut self) -> pb::HashKvRequest {
        let (rev, c) = (self.rev, self.compact);
        let revision = match self.below(12) {
            0..=2 => 0,
            3 => rev,
            4..=5 => self.rng.random_range(c.max(1)..=rev),
            6 if c >= 0 => c,
            7 if !self.compactions.is_empty() => {
                let i = self.rng.random_range(0..self.compactions.len());
                self.compactions[i]
            }
            8 if c > 1 => self.rng.random_range(1..c),
            9 => rev + self.rng.random_range(1..=3),
            10 => -1,
            _ => self.rng.random_range(1..=rev),
        };
        pb::HashKvRequest { revision }
    }

    fn next_op(&mut self) -> Op {
        if let Some(id) = self.revoke_next.take() {
            return Op::LeaseRevoke(pb::LeaseRevokeRequest { id });
        }
        if self.watch.is_some() {
            if self.one_in(10) {
                return self.watch_op();
            }
            // Big values, so that watches get responses to fragment.
            if self.one_in(60) {
                return Op::Put(self.large_put());
            }
        }
        if self.one_in(9) {
            return self.lease_op();
        }
        let pick = self.below(200);
        // Compactions and HashKV wait until etcd finished every background
        // compaction (see the module comment).
        if self.pending && pick >= 180 {
            return Op::Compact(pb::CompactionRequest {
                revision: self.compact,
                physical: true,
            });
        }
        match pick {
            0..=47 => Op::Range(self.range_req(false)),
            48..=99 => Op::Put(self.put_req()),
            100..=119 => Op::Delete(self.delete_req()),
            120..=177 => Op::Txn(self.txn()),
            178 => Op::Put(self.large_put()),
            179 => Op::Txn(self.large_txn()),
            180..=185 => Op::Compact(self.compact_req()),
            _ => Op::HashKv(self.hash_kv_req()),
        }
    }

    /// Follows the store through etcd's answer to `op`.
    fn observe(&mut self, op: &Op, etcd: &Outcome) {
        let header = match etcd {
            Ok(Resp::Range(r)) => r.header,
            Ok(Resp::Put(r)) => r.header,
            Ok(Resp::Delete(r)) => r.header,
            Ok(Resp::Txn(r)) => r.header,
            Ok(Resp::Compact(r)) => r.header,
            Ok(Resp::HashKv(r)) => r.header,
            Ok(Resp::LeaseGrant(r)) => r.header,
            Ok(Resp::LeaseRevoke(r)) => r.header,
            Ok(Resp::LeaseTtl(r)) => r.header,
            Ok(Resp::LeaseLeases(r)) => r.header,
            Ok(Resp::KeepAlive(r)) => r.header,
            Err(_) => None,
        };
        match (op, etcd) {
            (Op::Put(p), Ok(Resp::Put(r))) => self.known.push(KnownEvent {
                rev: r.header.map_or(0, |h| h.revision),
                key: p.key.clone(),
                put: true,
                big: !p.ignore_value && p.value.len() > 1 << 20,
            }),
            (Op::Delete(d), Ok(Resp::Delete(r))) if r.deleted > 0 => {
                let rev = r.header.map_or(0, |h| h.revision);
                let keys: Vec<Vec<u8>> = if !r.prev_kvs.is_empty() {
                    r.prev_kvs.iter().map(|kv| kv.key.clone()).collect()
                } else if d.range_end.is_empty() {
                    vec![d.key.clone()]
                } else {
                    Vec::new()
                };
                for key in keys {
                    self.known.push(KnownEvent {
                        rev,
                        key,
                        put: false,
                        big: false,
                    });
                }
            }
            (Op::LeaseGrant(_), Ok(Resp::LeaseGrant(r))) if self.revoke_next != Some(r.id) => {
                self.leases.push(r.id);
            }
            (Op::LeaseRevoke(q), Ok(Resp::LeaseRevoke(_))) => {
                self.leases.retain(|&l| l != q.id);
                self.revoked.push(q.id);
            }
            _ => {}
        }
        if let Some(h) = header {
            if let Op::Txn(t) = op {
                if h.revision > self.rev && has_from_key_delete(t) && has_put(t) {
                    self.recreated.insert(h.revision);
                }
            }
            self.rev = h.revision;
        }
        if let Op::Compact(c) = op {
            match etcd {
                Ok(_) => {
                    self.compact = c.revision;
                    self.compactions.push(c.revision);
                    self.pending = !c.physical;
                }
                // A physical compaction that fails as compacted still waits
                // for every compaction scheduled before it.
                Err(f)
                    if c.physical
                        && f.message.ends_with("required revision has been compacted") =>
                {
                    self.pending = false;
                }
                Err(_) => {}
            }
        }
    }
}

// ------------------------------------------------------------------ coverage

/// Everything the run must have exercised at least once: request fields and
/// value classes (`<request>.<field>[=<class>]`), answer shapes
/// (`result:...`) and error messages (`err:...`).
const REQUIRED: &[&str] = &[
    // Range
    "range.key=empty",
    "range.key=\\0",
    "range.range_end",
    "range.range_end=prefix",
    "range.range_end=from_key",
    "range.range_end<=key",
    "range.limit",
    "range.limit<0",
    "range.limit+sort",
    "range.revision=current",
    "range.revision=historical",
    "range.revision=compact",
    "range.revision=compacted",
    "range.revision=future",
    "range.revision=negative",
    "range.sort_order=NONE",
    "range.sort_order=ASCEND",
    "range.sort_order=DESCEND",
    "range.sort_order=invalid",
    "range.sort_target=KEY",
    "range.sort_target=VERSION",
    "range.sort_target=CREATE",
    "range.sort_target=MOD",
    "range.sort_target=VALUE",
    "range.sort_target=invalid",
    "range.serializable",
    "range.keys_only",
    "range.count_only",
    "range.min_mod_revision",
    "range.max_mod_revision",
    "range.min_create_revision",
    "range.max_create_revision",
    // Put
    "put.key=empty",
    "put.key=\\0",
    "put.value=empty",
    "put.value=large",
    "put.lease",
    "put.prev_kv",
    "put.ignore_value",
    "put.ignore_lease",
    // DeleteRange
    "delete.key=empty",
    "delete.range_end",
    "delete.range_end=prefix",
    "delete.range_end=from_key",
    "delete.prev_kv",
    // Txn
    "txn.compare",
    "txn.compare.key=empty",
    "txn.compare.result=EQUAL",
    "txn.compare.result=GREATER",
    "txn.compare.result=LESS",
    "txn.compare.result=NOT_EQUAL",
    "txn.compare.target=VERSION",
    "txn.compare.target=CREATE",
    "txn.compare.target=MOD",
    "txn.compare.target=VALUE",
    "txn.compare.target=LEASE",
    "txn.compare.result=invalid",
    "txn.compare.target=invalid",
    "txn.compare.range_end",
    "txn.compare.range_end=prefix",
    "txn.compare.range_end=from_key",
    "txn.compare.target_union=none",
    "txn.compare.target_union=other",
    "txn.compare.value=large",
    "txn.success",
    "txn.failure",
    "txn.op=range",
    "txn.op=put",
    "txn.op=delete",
    "txn.op=txn",
    "txn.op=empty",
    "txn.depth>=3",
    "txn.read_only",
    "txn.ops=128",
    "txn.ops>128",
    "txn.nested_ops>budget",
    "txn.range.revision=compacted",
    "txn.range.revision=future",
    "txn.range.sort_target=VALUE",
    "txn.range.limit+sort",
    "txn.put.value=large",
    "txn.put.lease",
    "txn.put.prev_kv",
    "txn.put.ignore_value",
    "txn.put.ignore_lease",
    "txn.delete.range_end=from_key",
    "txn.delete.prev_kv",
    // Compact
    "compact.physical",
    "compact.barrier",
    "compact.revision=current",
    "compact.revision=historical",
    "compact.revision=compact",
    "compact.revision=compacted",
    "compact.revision=future",
    "compact.revision=0",
    "compact.revision=negative",
    // HashKV
    "hashkv.revision=0",
    "hashkv.revision=current",
    "hashkv.revision=historical",
    "hashkv.revision=compact",
    "hashkv.revision=earlier_compaction",
    "hashkv.revision=compacted",
    "hashkv.revision=future",
    "hashkv.revision=negative",
    // Answers
    "result:range.more",
    "result:range.kvs>=2",
    "result:delete.deleted=0",
    "result:delete.deleted>=2",
    "result:put.prev_kv",
    "result:txn.succeeded=true",
    "result:txn.succeeded=false",
    "result:txn.write",
    "result:hashkv.cached",
    "result:compact.ok",
    // Errors
    "err:etcdserver: key is not provided",
    "err:etcdserver: value is provided",
    "err:etcdserver: lease is provided",
    "err:etcdserver: key not found",
    "err:etcdserver: too many operations in txn request",
    "err:etcdserver: duplicate key given in txn request",
    "err:etcdserver: invalid sort option",
    "err:etcdserver: request is too large",
    "err:etcdserver: mvcc: required revision has been compacted",
    "err:etcdserver: mvcc: required revision is a future revision",
    "err:etcdserver: requested lease not found",
    // Leases
    "put.lease=granted",
    "txn.put.lease=granted",
    "result:put.prev_kv.lease",
    "put.ignore_lease=attached",
    "lease.grant",
    "lease.grant.ttl=min",
    "lease.grant.ttl=max",
    "lease.grant.ttl>max",
    "lease.grant.id=negative",
    "lease.grant.id=granted",
    "lease.revoke=granted",
    "lease.revoke=unknown",
    "lease.revoke=revoked",
    "lease.ttl=granted",
    "lease.ttl=unknown",
    "lease.ttl.keys",
    "lease.leases",
    "lease.keepalive=granted",
    "lease.keepalive=unknown",
    "result:lease.grant.ttl=raised",
    "result:lease.revoke.deleted",
    "result:lease.revoke.nothing",
    "result:lease.ttl=-1",
    "result:lease.ttl.keys>=2",
    "result:lease.leases>=3",
    "result:lease.keepalive.ttl=0",
    "err:etcdserver: lease already exists",
    "err:etcdserver: too large lease TTL",
];

/// What the watch test must have exercised as well: every field of a watch
/// create, cancels, and the shapes of etcd's watch responses.
const REQUIRED_WATCH: &[&str] = &[
    "watch.key=empty",
    "watch.key=\\0",
    "watch.range_end=single",
    "watch.range_end=prefix",
    "watch.range_end=from_key",
    "watch.range_end=other",
    "watch.range_end<=key",
    "watch.start_revision=0",
    "watch.start_revision=historical",
    "watch.start_revision=current",
    "watch.start_revision=compact",
    "watch.start_revision=compacted",
    "watch.start_revision=future",
    "watch.start_revision=negative",
    "watch.filters=NOPUT",
    "watch.filters=NODELETE",
    "watch.filters=NOPUT+NODELETE",
    "watch.filters=invalid",
    "watch.prev_kv",
    "watch.progress_notify",
    "watch.fragment",
    "watch.watch_id=chosen",
    "watch.watch_id=negative",
    "watch.watch_id=live",
    "watch.cancel=live",
    "watch.cancel=compacted",
    "watch.cancel=gone",
    "watch.cancel=unknown",
    "watch.progress",
    "result:watch.created",
    "result:watch.canceled",
    "result:watch.compact_revision",
    "result:watch.events",
    "result:watch.events.put",
    "result:watch.events.delete",
    "result:watch.events.prev_kv",
    "result:watch.events.lease",
    "result:watch.events>=2",
    "result:watch.events.revoke",
    "result:watch.replayed",
    "result:watch.fragment",
    "result:watch.progress",
    "watch.reason:mvcc: watcher range is empty",
    "watch.reason:mvcc: duplicate watch ID provided on the WatchStream",
    "watch.reason:etcdserver: mvcc: required revision has been compacted",
];

#[derive(Default)]
struct Coverage {
    seen: BTreeSet<String>,
}

impl Coverage {
    fn note(&mut self, item: impl Into<String>) {
        self.seen.insert(item.into());
    }

    fn missing(&self, required: &[&'static str]) -> Vec<&'static str> {
        required
            .iter()
            .copied()
            .filter(|r| !self.seen.contains(*r))
            .collect()
    }

    /// Classifies a lease id against the generator's leases.
    fn lease_id(&mut self, name: &str, id: i64, g: &Gen) {
        let class = if g.leases.contains(&id) {
            "granted"
        } else if g.revoked.contains(&id) {
            "revoked"
        } else {
            "unknown"
        };
        self.note(format!("{name}={class}"));
    }

    fn watch_create(&mut self, stream: usize, c: &pb::WatchCreateRequest, g: &Gen) {
        self.key("watch", &c.key);
        if c.range_end.is_empty() {
            self.note("watch.range_end=single");
        } else if c.range_end == [0] {
            self.note("watch.range_end=from_key");
        } else if c.range_end <= c.key {
            self.note("watch.range_end<=key");
        } else if c.range_end == prefix_end(&c.key) {
            self.note("watch.range_end=prefix");
        } else {
            self.note("watch.range_end=other");
        }
        self.revision("watch.start_revision", c.start_revision, g.rev, g.compact);
        let no_put = c.filters.contains(&(FilterType::Noput as i32));
        let no_delete = c.filters.contains(&(FilterType::Nodelete as i32));
        match (no_put, no_delete) {
            (true, true) => self.note("watch.filters=NOPUT+NODELETE"),
            (true, false) => self.note("watch.filters=NOPUT"),
            (false, true) => self.note("watch.filters=NODELETE"),
            (false, false) => {}
        }
        if c.filters.iter().any(|f| FilterType::try_from(*f).is_err()) {
            self.note("watch.filters=invalid");
        }
        for (name, v) in [
            ("prev_kv", c.prev_kv),
            ("progress_notify", c.progress_notify),
            ("fragment", c.fragment),
        ] {
            if v {
                self.note(format!("watch.{name}"));
            }
        }
        if c.watch_id != 0 {
            let s = &g.watch_model().streams[stream];
            if s.live.contains_key(&c.watch_id) {
                self.note("watch.watch_id=live");
            } else if c.watch_id < 0 {
                self.note("watch.watch_id=negative");
            } else {
                self.note("watch.watch_id=chosen");
            }
        }
    }

    fn watch_cancel(&mut self, stream: usize, watch_id: i64, g: &Gen) {
        let s = &g.watch_model().streams[stream];
        if s.live.contains_key(&watch_id) {
            self.note("watch.cancel=live");
        } else if s.gone.contains(&watch_id) {
            self.note("watch.cancel=gone");
        } else {
            self.note("watch.cancel=unknown");
        }
    }

    /// Records the shapes of what etcd sent on a stream.
    fn watch_segment(&mut self, seg: &[pb::WatchResponse], live_only: &BTreeSet<i64>) {
        for r in seg {
            if r.created {
                self.note("result:watch.created");
                if !r.cancel_reason.is_empty() {
                    self.note(format!("watch.reason:{}", r.cancel_reason));
                }
            } else if r.canceled {
                self.note("result:watch.canceled");
            }
            if r.compact_revision != 0 {
                self.note("result:watch.compact_revision");
            }
            if r.fragment {
                self.note("result:watch.fragment");
            }
            if is_progress(r) {
                self.note("result:watch.progress");
            }
            if r.events.is_empty() {
                continue;
            }
            self.note("result:watch.events");
            if r.events.len() >= 2 {
                self.note("result:watch.events>=2");
            }
            if !live_only.contains(&r.watch_id) {
                self.note("result:watch.replayed");
            }
            for e in &r.events {
                if e.r#type == mvccpb::event::EventType::Put as i32 {
                    self.note("result:watch.events.put");
                } else {
                    self.note("result:watch.events.delete");
                }
                if e.prev_kv.is_some() {
                    self.note("result:watch.events.prev_kv");
                }
                if e.kv.as_ref().is_some_and(|kv| kv.lease != 0) {
                    self.note("result:watch.events.lease");
                }
            }
        }
    }

    /// Classifies a revision against the store's state.
    fn revision(&mut self, name: &str, v: i64, rev: i64, compact: i64) {
        let class = if v == 0 {
            "0"
        } else if v < 0 {
            "negative"
        } else if v > rev {
            "future"
        } else if v == compact {
            "compact"
        } else if v < compact {
            "compacted"
        } else if v == rev {
            "current"
        } else {
            "historical"
        };
        self.note(format!("{name}={class}"));
    }

    fn key(&mut self, p: &str, key: &[u8]) {
        if key.is_empty() {
            self.note(format!("{p}.key=empty"));
        } else if key == [0] {
            self.note(format!("{p}.key=\\0"));
        }
    }

    fn range_end(&mut self, p: &str, key: &[u8], end: &[u8]) {
        if end.is_empty() {
            return;
        }
        self.note(format!("{p}.range_end"));
        if end == [0] {
            self.note(format!("{p}.range_end=from_key"));
        } else {
            if end == prefix_end(key).as_slice() {
                self.note(format!("{p}.range_end=prefix"));
            }
            if end <= key {
                self.note(format!("{p}.range_end<=key"));
            }
        }
    }

    fn range(&mut self, p: &str, r: &pb::RangeRequest, rev: i64, compact: i64) {
        self.key(p, &r.key);
        self.range_end(p, &r.key, &r.range_end);
        let sorted = r.sort_order != 0 || r.sort_target != 0;
        if r.limit > 0 {
            self.note(format!("{p}.limit"));
            if sorted {
                self.note(format!("{p}.limit+sort"));
            }
        } else if r.limit < 0 {
            self.note(format!("{p}.limit<0"));
        }
        if r.revision != 0 {
            self.revision(&format!("{p}.revision"), r.revision, rev, compact);
        }
        let order = SortOrder::try_from(r.sort_order)
            .map(|x| x.as_str_name())
            .unwrap_or("invalid");
        self.note(format!("{p}.sort_order={order}"));
        let target = SortTarget::try_from(r.sort_target)
            .map(|x| x.as_str_name())
            .unwrap_or("invalid");
        self.note(format!("{p}.sort_target={target}"));
        for (name, v) in [
            ("serializable", r.serializable),
            ("keys_only", r.keys_only),
            ("count_only", r.count_only),
        ] {
            if v {
                self.note(format!("{p}.{name}"));
            }
        }
        for (name, v) in [
            ("min_mod_revision", r.min_mod_revision),
            ("max_mod_revision", r.max_mod_revision),
            ("min_create_revision", r.min_create_revision),
            ("max_create_revision", r.max_create_revision),
        ] {
            if v != 0 {
                self.note(format!("{p}.{name}"));
            }
        }
    }

    fn put(&mut self, p: &str, r: &pb::PutRequest, leases: &[i64]) {
        if r.lease != 0 && leases.contains(&r.lease) {
            self.note(format!("{p}.lease=granted"));
        }
        self.key(p, &r.key);
        if r.value.is_empty() {
            self.note(format!("{p}.value=empty"));
        } else if r.value.len() > 1 << 20 {
            self.note(format!("{p}.value=large"));
        }
        if r.lease != 0 {
            self.note(format!("{p}.lease"));
        }
        for (name, v) in [
            ("prev_kv", r.prev_kv),
            ("ignore_value", r.ignore_value),
            ("ignore_lease", r.ignore_lease),
        ] {
            if v {
                self.note(format!("{p}.{name}"));
            }
        }
    }

    fn delete(&mut self, p: &str, d: &pb::DeleteRangeRequest) {
        self.key(p, &d.key);
        self.range_end(p, &d.key, &d.range_end);
        if d.prev_kv {
            self.note(format!("{p}.prev_kv"));
        }
    }

    fn txn(&mut self, t: &pb::TxnRequest, depth: usize, rev: i64, compact: i64, leases: &[i64]) {
        if depth >= 3 {
            self.note("txn.depth>=3");
        }
        let opc = t.compare.len().max(t.success.len()).max(t.failure.len());
        if opc == MAX_TXN_OPS {
            self.note("txn.ops=128");
        } else if opc > MAX_TXN_OPS {
            self.note("txn.ops>128");
        }
        if !t.compare.is_empty() {
            self.note("txn.compare");
        }
        for c in &t.compare {
            self.key("txn.compare", &c.key);
            self.range_end("txn.compare", &c.key, &c.range_end);
            let r = CompareResult::try_from(c.result)
                .map(|x| x.as_str_name())
                .unwrap_or("invalid");
            self.note(format!("txn.compare.result={r}"));
            let t = CompareTarget::try_from(c.target)
                .map(|x| x.as_str_name())
                .unwrap_or("invalid");
            self.note(format!("txn.compare.target={t}"));
            let union_target = match &c.target_union {
                None => None,
                Some(TargetUnion::Version(_)) => Some(CompareTarget::Version),
                Some(TargetUnion::CreateRevision(_)) => Some(CompareTarget::Create),
                Some(TargetUnion::ModRevision(_)) => Some(CompareTarget::Mod),
                Some(TargetUnion::Value(v)) => {
                    if v.len() > 1 << 20 {
                        self.note("txn.compare.value=large");
                    }
                    Some(CompareTarget::Value)
                }
                Some(TargetUnion::Lease(_)) => Some(CompareTarget::Lease),
            };
            match union_target {
                None => self.note("txn.compare.target_union=none"),
                Some(u) if u as i32 != c.target => self.note("txn.compare.target_union=other"),
                Some(_) => {}
            }
        }
        if !t.success.is_empty() {
            self.note("txn.success");
        }
        if !t.failure.is_empty() {
            self.note("txn.failure");
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                None => self.note("txn.op=empty"),
                Some(Q::RequestRange(r)) => {
                    self.note("txn.op=range");
                    self.range("txn.range", r, rev, compact);
                }
                Some(Q::RequestPut(p)) => {
                    self.note("txn.op=put");
                    self.put("txn.put", p, leases);
                }
                Some(Q::RequestDeleteRange(d)) => {
                    self.note("txn.op=delete");
                    self.delete("txn.delete", d);
                }
                Some(Q::RequestTxn(t)) => {
                    self.note("txn.op=txn");
                    self.txn(t, depth + 1, rev, compact, leases);
                }
            }
        }
    }

    /// Records what `op` exercises, classified against the store's state
    /// before it.
    fn request(&mut self, op: &Op, g: &Gen) {
        let (rev, compact) = (g.rev, g.compact);
        match op {
            Op::Range(r) => self.range("range", r, rev, compact),
            Op::Put(p) => self.put("put", p, &g.leases),
            Op::Delete(d) => self.delete("delete", d),
            Op::Txn(t) => {
                if is_read_only(t) {
                    self.note("txn.read_only");
                }
                if nested_budget_exceeded(t, MAX_TXN_OPS, 1) {
                    self.note("txn.nested_ops>budget");
                }
                self.txn(t, 1, rev, compact, &g.leases)
            }
            Op::Compact(c) => {
                if c.physical {
                    self.note("compact.physical");
                    if compact >= 0 && c.revision == compact && g.pending {
                        self.note("compact.barrier");
                    }
                }
                if c.revision == 0 {
                    self.note("compact.revision=0");
                } else {
                    self.revision("compact.revision", c.revision, rev, compact);
                }
            }
            Op::HashKv(h) => {
                if h.revision > 0 && h.revision != compact && g.compactions.contains(&h.revision) {
                    self.note("hashkv.revision=earlier_compaction");
                } else {
                    self.revision("hashkv.revision", h.revision, rev, compact);
                }
            }
            Op::LeaseGrant(q) => {
                self.note("lease.grant");
                if q.ttl > MAX_LEASE_TTL {
                    self.note("lease.grant.ttl>max");
                } else if q.ttl == MAX_LEASE_TTL {
                    self.note("lease.grant.ttl=max");
                } else if q.ttl <= 1 {
                    self.note("lease.grant.ttl=min");
                }
                if q.id < 0 {
                    self.note("lease.grant.id=negative");
                }
                if g.leases.contains(&q.id) {
                    self.note("lease.grant.id=granted");
                }
            }
            Op::LeaseRevoke(q) => self.lease_id("lease.revoke", q.id, g),
            Op::LeaseTtl(q) => {
                self.lease_id("lease.ttl", q.id, g);
                if q.keys {
                    self.note("lease.ttl.keys");
                }
            }
            Op::LeaseLeases => self.note("lease.leases"),
            Op::KeepAlive(q) => self.lease_id("lease.keepalive", q.id, g),
            Op::WatchCreate { stream, req } => self.watch_create(*stream, req, g),
            Op::WatchCancel { stream, watch_id } => self.watch_cancel(*stream, *watch_id, g),
        }
    }

    /// Records the shape of etcd's answer.
    fn outcome(&mut self, op: &Op, o: &Outcome, g: &Gen) {
        match o {
            Err(f) => self.note(format!("err:{}", f.message)),
            Ok(Resp::Range(r)) => {
                if r.more {
                    self.note("result:range.more");
                }
                if r.kvs.len() >= 2 {
                    self.note("result:range.kvs>=2");
                }
            }
            Ok(Resp::Put(p)) => {
                if let Some(prev) = &p.prev_kv {
                    self.note("result:put.prev_kv");
                    if prev.lease != 0 {
                        self.note("result:put.prev_kv.lease");
                        if matches!(op, Op::Put(q) if q.ignore_lease) {
                            self.note("put.ignore_lease=attached");
                        }
                    }
                }
            }
            Ok(Resp::Delete(d)) => {
                if d.deleted == 0 {
                    self.note("result:delete.deleted=0");
                } else if d.deleted >= 2 {
                    self.note("result:delete.deleted>=2");
                }
            }
            Ok(Resp::Txn(t)) => {
                self.note(format!("result:txn.succeeded={}", t.succeeded));
                if t.header.is_some_and(|h| h.revision > g.rev) {
                    self.note("result:txn.write");
                }
            }
            Ok(Resp::Compact(_)) => self.note("result:compact.ok"),
            Ok(Resp::HashKv(h)) => {
                if matches!(op, Op::HashKv(_)) && h.compact_revision != g.compact {
                    self.note("result:hashkv.cached");
                }
            }
            Ok(Resp::LeaseGrant(r)) => {
                if matches!(op, Op::LeaseGrant(q) if q.ttl < r.ttl) {
                    self.note("result:lease.grant.ttl=raised");
                }
            }
            Ok(Resp::LeaseRevoke(r)) => {
                if r.header.is_some_and(|h| h.revision > g.rev) {
                    self.note("result:lease.revoke.deleted");
                } else {
                    self.note("result:lease.revoke.nothing");
                }
            }
            Ok(Resp::LeaseTtl(r)) => {
                if r.ttl == -1 {
                    self.note("result:lease.ttl=-1");
                }
                if r.keys.len() >= 2 {
                    self.note("result:lease.ttl.keys>=2");
                }
            }
            Ok(Resp::LeaseLeases(r)) => {
                if r.leases.len() >= 3 {
                    self.note("result:lease.leases>=3");
                }
            }
            Ok(Resp::KeepAlive(r)) => {
                if r.ttl == 0 {
                    self.note("result:lease.keepalive.ttl=0");
                }
            }
        }
    }
}

/// Whether a nested level of `t` holds more ops than its parents left of
/// the `--max-txn-ops` budget (etcd `checkTxnRequest`).
fn nested_budget_exceeded(t: &pb::TxnRequest, budget: usize, depth: usize) -> bool {
    let opc = t.compare.len().max(t.success.len()).max(t.failure.len());
    if opc > budget {
        return depth > 1;
    }
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Q::RequestTxn(inner)) => nested_budget_exceeded(inner, budget - opc, depth + 1),
            _ => false,
        })
}

// ------------------------------------------------------------------ driver

/// Rewrites the second server's answer before the comparison and says
/// whether it changed it; for the planted-divergence test.
type Plant = fn(&Op, &mut Outcome) -> bool;

/// Rewrites what the second server's watch stream delivered since its last
/// fence, before the comparison, and says whether it changed it.
type WatchPlant = fn(&mut Vec<pb::WatchResponse>) -> bool;

struct Settings {
    ops: usize,
    trace: bool,
    /// Open watch streams and send watch requests.
    watch: bool,
}

impl Settings {
    fn from_env(watch: bool) -> Settings {
        let ops = std::env::var("KVIK_DIFF_OPS")
            .ok()
            .map(|v| v.parse().expect("KVIK_DIFF_OPS is a number"));
        Settings {
            ops: ops.unwrap_or(DEFAULT_OPS),
            trace: std::env::var("KVIK_DIFF_TRACE").is_ok_and(|v| !v.is_empty() && v != "0"),
            watch,
        }
    }
}

fn start(kind: Kind) -> Server {
    match kind {
        // fsync changes nothing etcd answers; skipping it keeps seeds quick.
        Kind::Etcd => Server::start_with(Kind::Etcd, &["--unsafe-no-fsync"]),
        Kind::Kvik => Server::start(Kind::Kvik),
    }
}

/// Starts a fresh etcd and a fresh `other` side by side.
fn start_pair(other: Kind) -> (Server, Server) {
    std::thread::scope(|s| {
        let etcd = s.spawn(|| start(Kind::Etcd));
        let other = s.spawn(move || start(other));
        (
            etcd.join().expect("etcd start"),
            other.join().expect("server start"),
        )
    })
}

/// One watch stream of one server. A task moves what arrives into `rx`, so
/// that the stream is always read and never holds back the connection.
struct WStream {
    tx: mpsc::UnboundedSender<pb::WatchRequest>,
    rx: mpsc::UnboundedReceiver<Result<pb::WatchResponse, String>>,
    /// What arrived since the stream's last fence.
    seg: Vec<pb::WatchResponse>,
    /// Why the stream ended, if it did.
    ended: Option<String>,
}

impl WStream {
    /// Opens a stream with its first request, sent before the call is
    /// awaited: etcd sends response headers only with its first message.
    async fn open(ch: &Channel, first: pb::WatchRequest) -> Result<WStream, String> {
        let (tx, rq) = mpsc::unbounded_channel();
        tx.send(first).expect("request channel");
        let mut client =
            pb::watch_client::WatchClient::new(ch.clone()).max_decoding_message_size(usize::MAX);
        let mut inbound = client
            .watch(tokio_stream::wrappers::UnboundedReceiverStream::new(rq))
            .await
            .map_err(|s| format!("the Watch call failed: {s:?}"))?
            .into_inner();
        let (out, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let r = match inbound.message().await {
                    Ok(Some(r)) => Ok(r),
                    Ok(None) => Err("the server ended the stream".to_string()),
                    Err(e) => Err(format!("stream error: {e:?}")),
                };
                let end = r.is_err();
                if out.send(r).is_err() || end {
                    break;
                }
            }
        });
        Ok(WStream {
            tx,
            rx,
            seg: Vec::new(),
            ended: None,
        })
    }

    fn send(&mut self, req: W) {
        if self
            .tx
            .send(pb::WatchRequest {
                request_union: Some(req),
            })
            .is_err()
            && self.ended.is_none()
        {
            self.ended = Some("the request side is closed".to_string());
        }
    }

    /// Reads until `done` holds for the segment, the stream ends or the
    /// deadline passes; says whether `done` holds.
    async fn wait(
        &mut self,
        within: Duration,
        done: impl Fn(&[pb::WatchResponse]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if done(&self.seg) {
                return true;
            }
            if self.ended.is_some() {
                return false;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Ok(r))) => self.seg.push(r),
                Ok(Some(Err(e))) => self.ended = Some(e),
                Ok(None) => self.ended = Some("the reader stopped".to_string()),
                Err(_) => return false,
            }
        }
    }
}

/// A response after index `from` of a segment that `pred` accepts.
fn find_after(
    seg: &[pb::WatchResponse],
    from: usize,
    pred: impl Fn(&pb::WatchResponse) -> bool,
) -> Option<&pb::WatchResponse> {
    seg.get(from..).and_then(|s| s.iter().find(|r| pred(r)))
}

/// Events a segment holds for `watch_id` after index `from`, and whether
/// the last response holding some was a whole one (not a fragment).
fn events_after(seg: &[pb::WatchResponse], from: usize, watch_id: i64) -> (usize, bool) {
    let mut n = 0;
    let mut whole = true;
    for r in seg.get(from..).unwrap_or_default() {
        if r.watch_id == watch_id && !r.events.is_empty() {
            n += r.events.len();
            whole = !r.fragment;
        }
    }
    (n, whole)
}

/// One seed: both servers' clients and streams, and the generator.
struct Session<'a> {
    seed: u64,
    settings: &'a Settings,
    other_name: &'static str,
    plant: Option<Plant>,
    watch_plant: Option<WatchPlant>,
    cov: &'a mut Coverage,
    g: Gen,
    etcd: Conn,
    other: Conn,
    etcd_watch: Channel,
    other_watch: Channel,
    /// Watch streams of etcd and of the other server; `None` until opened.
    etcd_streams: Vec<Option<WStream>>,
    other_streams: Vec<Option<WStream>>,
    /// Per stream, the first request after its last fence.
    since: Vec<usize>,
    index: usize,
    op: Op,
}

type Step = Result<(), Box<Mismatch>>;

impl Session<'_> {
    /// Fails the test: etcd did not do what the model of it says, so the
    /// test itself is wrong.
    fn model_broken(&self, what: &str, stream: usize) -> ! {
        let seg = self.etcd_streams[stream]
            .as_ref()
            .map(|s| (show_segment(&s.seg), s.ended.clone()));
        panic!(
            "the test's model of etcd is wrong: {what} (seed {} request #{}: {})\netcd's stream {stream} since its last fence:\n{}",
            self.seed,
            self.index,
            show_op(&self.op),
            seg.map(|(s, e)| format!("{}\n{}", indent(&s), e.map(|e| format!("    ended: {e}")).unwrap_or_default())).unwrap_or_default()
        );
    }

    fn etcd_stream(&mut self, stream: usize) -> &mut WStream {
        self.etcd_streams[stream].as_mut().expect("open stream")
    }

    fn other_stream(&mut self, stream: usize) -> &mut WStream {
        self.other_streams[stream].as_mut().expect("open stream")
    }

    /// A mismatch of watch stream `stream`: both segments as they are.
    fn watch_mismatch(
        &self,
        stream: usize,
        first: (String, String),
        planted: bool,
    ) -> Box<Mismatch> {
        let seg = |s: &Option<WStream>| s.as_ref().map(|s| s.seg.clone()).unwrap_or_default();
        let mut first = first;
        if let Some(e) = self.other_streams[stream]
            .as_ref()
            .and_then(|s| s.ended.clone())
        {
            first.1 = format!("{} (stream ended: {e})", first.1);
        }
        Box::new(Mismatch {
            seed: self.seed,
            index: self.index,
            op: self.op.clone(),
            seen: Seen::Watch {
                stream,
                since: self.since[stream],
                etcd: seg(&self.etcd_streams[stream]),
                kvik: seg(&self.other_streams[stream]),
                live_only: self.g.watch_model().streams[stream].live_only.clone(),
            },
            other_name: self.other_name,
            first,
            crash: Vec::new(),
            planted,
        })
    }

    async fn step(&mut self, op: Op) -> Step {
        self.op = op.clone();
        match op {
            Op::WatchCreate { stream, req } => self.watch_create(stream, req).await,
            Op::WatchCancel { stream, watch_id } => {
                self.watch_cancel(stream, watch_id, false).await
            }
            op => self.request(op).await,
        }
    }

    async fn request(&mut self, op: Op) -> Step {
        let (e, mut k) = tokio::join!(exec(&mut self.etcd, &op), exec(&mut self.other, &op));
        let planted = self.plant.is_some_and(|plant| plant(&op, &mut k));
        if self.settings.trace {
            eprintln!(
                "seed {} #{}: {}\n  -> {}",
                self.seed,
                self.index,
                show_op(&op),
                show_outcome(&normalized(&e))
            );
        }
        self.cov.outcome(&op, &e, &self.g);
        if let Some(first) = compare_outcomes(&e, &k) {
            return Err(Box::new(Mismatch {
                seed: self.seed,
                index: self.index,
                op,
                seen: Seen::Answer { etcd: e, kvik: k },
                other_name: self.other_name,
                first,
                crash: Vec::new(),
                planted,
            }));
        }
        let rev = self.g.rev;
        self.g.observe(&op, &e);
        if self.g.watch.is_some() && self.g.rev != rev {
            for stream in 0..WATCH_STREAMS {
                self.fence(stream).await?;
            }
        }
        Ok(())
    }

    async fn watch_create(&mut self, stream: usize, req: pb::WatchCreateRequest) -> Step {
        let create = W::CreateRequest(req.clone());
        let (from_e, from_k) = if self.etcd_streams[stream].is_none() {
            let first = pb::WatchRequest {
                request_union: Some(create),
            };
            let e = WStream::open(&self.etcd_watch, first.clone()).await;
            let e = e.unwrap_or_else(|e| {
                self.model_broken(&format!("etcd refused a stream: {e}"), stream)
            });
            self.etcd_streams[stream] = Some(e);
            let k = match tokio::time::timeout(
                OTHER_WATCH_DEADLINE,
                WStream::open(&self.other_watch, first),
            )
            .await
            {
                Ok(Ok(k)) => k,
                Ok(Err(e)) => {
                    return Err(self.watch_mismatch(stream, ("(stream opened)".into(), e), false))
                }
                Err(_) => {
                    return Err(self.watch_mismatch(
                        stream,
                        (
                            "(stream opened)".into(),
                            "(no answer to the Watch call)".into(),
                        ),
                        false,
                    ))
                }
            };
            self.other_streams[stream] = Some(k);
            (0, 0)
        } else {
            let from_e = self.etcd_stream(stream).seg.len();
            let from_k = self.other_stream(stream).seg.len();
            self.etcd_stream(stream).send(create.clone());
            self.other_stream(stream).send(create);
            (from_e, from_k)
        };
        if self.settings.trace {
            eprintln!("seed {} #{}: {}", self.seed, self.index, show_op(&self.op));
        }
        // The created response first: etcd may send a progress answer
        // ahead of it.
        let created =
            |seg: &[pb::WatchResponse], from| find_after(seg, from, |r| r.created).is_some();
        if !self
            .etcd_stream(stream)
            .wait(ETCD_WATCH_DEADLINE, |s| created(s, from_e))
            .await
        {
            self.model_broken("etcd did not answer a watch create", stream);
        }
        self.other_stream(stream)
            .wait(OTHER_WATCH_DEADLINE, |s| created(s, from_k))
            .await;
        let answer = find_after(&self.etcd_stream(stream).seg, from_e, |r| r.created)
            .expect("waited for")
            .clone();
        self.g.watch_created(stream, &req, &answer);
        let id = answer.watch_id;
        if !answer.canceled && (1..=self.g.rev).contains(&req.start_revision) {
            // etcd replays the history to the new watcher from its catch-up
            // loop; the generator made sure there is something to replay.
            let replayed = |seg: &[pb::WatchResponse], from| {
                find_after(seg, from, |r| {
                    r.watch_id == id && ((!r.events.is_empty() && !r.fragment) || r.canceled)
                })
                .is_some()
            };
            if !self
                .etcd_stream(stream)
                .wait(ETCD_WATCH_DEADLINE, |s| replayed(s, from_e))
                .await
            {
                self.model_broken(
                    "etcd replayed nothing to a watch that starts in the past",
                    stream,
                );
            }
            let (events, _) = events_after(&self.etcd_stream(stream).seg, from_e, id);
            let compacted = find_after(&self.etcd_stream(stream).seg, from_e, |r| {
                r.watch_id == id && r.canceled && r.compact_revision != 0
            })
            .is_some();
            self.other_stream(stream)
                .wait(OTHER_WATCH_DEADLINE, |s| {
                    let (n, whole) = events_after(s, from_k, id);
                    (n >= events && whole && n > 0)
                        || find_after(s, from_k, |r| r.watch_id == id && r.canceled).is_some()
                })
                .await;
            if compacted {
                // Still registered in etcd's stream: cancel it, as clientv3
                // does.
                self.g.stream_model(stream).compacted.insert(id);
                self.cov.note("watch.cancel=compacted");
                return self.watch_cancel(stream, id, true).await;
            }
        }
        self.fence(stream).await
    }

    async fn watch_cancel(&mut self, stream: usize, watch_id: i64, after_compaction: bool) -> Step {
        if self.settings.trace && !after_compaction {
            eprintln!("seed {} #{}: {}", self.seed, self.index, show_op(&self.op));
        }
        let from_e = self.etcd_stream(stream).seg.len();
        let from_k = self.other_stream(stream).seg.len();
        let cancel = W::CancelRequest(pb::WatchCancelRequest { watch_id });
        self.etcd_stream(stream).send(cancel.clone());
        self.other_stream(stream).send(cancel);
        if self.g.watch_model().streams[stream]
            .live
            .contains_key(&watch_id)
        {
            let canceled = |seg: &[pb::WatchResponse], from| {
                find_after(seg, from, |r| {
                    r.watch_id == watch_id && r.canceled && !r.created && r.compact_revision == 0
                })
                .is_some()
            };
            if !self
                .etcd_stream(stream)
                .wait(ETCD_WATCH_DEADLINE, |s| canceled(s, from_e))
                .await
            {
                self.model_broken(
                    "etcd did not answer the cancel of a registered watch",
                    stream,
                );
            }
            self.other_stream(stream)
                .wait(OTHER_WATCH_DEADLINE, |s| canceled(s, from_k))
                .await;
            self.g.watch_canceled(stream, watch_id);
        }
        self.fence(stream).await
    }

    /// Sends a progress request on `stream` where etcd answers it, waits
    /// for both answers and compares what the stream delivered since its
    /// last fence.
    async fn fence(&mut self, stream: usize) -> Step {
        if self.etcd_streams[stream].is_none()
            || !self.g.watch_model().streams[stream].fenceable(self.g.rev)
        {
            return Ok(());
        }
        let from_e = self.etcd_stream(stream).seg.len();
        let from_k = self.other_stream(stream).seg.len();
        let progress = W::ProgressRequest(pb::WatchProgressRequest {});
        self.etcd_stream(stream).send(progress.clone());
        self.other_stream(stream).send(progress);
        let answered =
            |seg: &[pb::WatchResponse], from| find_after(seg, from, is_progress).is_some();
        if !self
            .etcd_stream(stream)
            .wait(ETCD_WATCH_DEADLINE, |s| answered(s, from_e))
            .await
        {
            self.model_broken("etcd did not answer a progress request", stream);
        }
        self.other_stream(stream)
            .wait(OTHER_WATCH_DEADLINE, |s| answered(s, from_k))
            .await;
        self.cov.note("watch.progress");
        self.compare_stream(stream)
    }

    /// Compares what `stream` delivered since its last fence, and starts
    /// the next segment.
    fn compare_stream(&mut self, stream: usize) -> Step {
        if self.etcd_streams[stream].is_none() {
            return Ok(());
        }
        let live_only = self.g.watch_model().streams[stream].live_only.clone();
        let etcd_seg = std::mem::take(&mut self.etcd_stream(stream).seg);
        let mut other_seg = std::mem::take(&mut self.other_stream(stream).seg);
        let planted = self.watch_plant.is_some_and(|plant| plant(&mut other_seg));
        if self.settings.trace {
            eprintln!("  stream {stream}:\n{}", indent(&show_segment(&etcd_seg)));
        }
        self.cov.watch_segment(&etcd_seg, &live_only);
        if matches!(self.op, Op::LeaseRevoke(_))
            && etcd_seg
                .iter()
                .flat_map(|r| &r.events)
                .any(|e| e.r#type == mvccpb::event::EventType::Delete as i32)
        {
            self.cov.note("result:watch.events.revoke");
        }
        let diff = compare_segments(&etcd_seg, &other_seg, &live_only);
        self.etcd_stream(stream).seg = etcd_seg;
        self.other_stream(stream).seg = other_seg;
        if let Some(first) = diff {
            return Err(self.watch_mismatch(stream, first, planted));
        }
        self.etcd_stream(stream).seg.clear();
        self.other_stream(stream).seg.clear();
        self.since[stream] = self.index + 1;
        Ok(())
    }

    async fn run(&mut self) -> Step {
        if self.g.watch.is_some() {
            for stream in 0..WATCH_STREAMS {
                let op = self.g.watch_open(stream);
                self.cov.request(&op, &self.g);
                self.step(op).await?;
            }
        }
        for index in 0..self.settings.ops {
            self.index = index;
            let op = self.g.next_op();
            self.cov.request(&op, &self.g);
            self.step(op).await?;
        }
        if self.g.watch.is_none() {
            return Ok(());
        }
        // Puts until no watcher waits for a future revision, so that every
        // stream with watchers can be fenced a last time.
        loop {
            let waiting = self
                .g
                .watch_model()
                .streams
                .iter()
                .any(|s| s.live.values().any(|&start| start > self.g.rev));
            if !waiting {
                break;
            }
            self.index += 1;
            let op = Op::Put(pb::PutRequest {
                key: b"a".to_vec(),
                value: b"end".to_vec(),
                ..Default::default()
            });
            self.cov.request(&op, &self.g);
            self.step(op).await?;
        }
        for stream in 0..WATCH_STREAMS {
            self.fence(stream).await?;
            // A stream without watchers holds what came after its last
            // fence (a cancel's answer): compared as it is.
            self.compare_stream(stream)?;
        }
        Ok(())
    }
}

/// Replays seed `seed` on a fresh etcd and a fresh `other` (kvik, or a
/// second etcd for the comparator's own tests); the first divergence ends
/// it.
fn run_seed(
    rt: &tokio::runtime::Runtime,
    seed: u64,
    settings: &Settings,
    other: Kind,
    plant: Option<Plant>,
    watch_plant: Option<WatchPlant>,
    cov: &mut Coverage,
) -> Result<(), Box<Mismatch>> {
    let (etcd, kvik) = start_pair(other);
    let other_name = match other {
        Kind::Kvik => "kvik",
        Kind::Etcd => "second etcd",
    };
    let result = rt.block_on(async {
        let mut session = Session {
            seed,
            settings,
            other_name,
            plant,
            watch_plant,
            cov,
            g: if settings.watch {
                Gen::with_watch(seed)
            } else {
                Gen::new(seed)
            },
            etcd: Conn::connect(etcd.endpoint()).await,
            other: Conn::connect(kvik.endpoint()).await,
            etcd_watch: channel(etcd.endpoint()).await,
            other_watch: channel(kvik.endpoint()).await,
            etcd_streams: (0..WATCH_STREAMS).map(|_| None).collect(),
            other_streams: (0..WATCH_STREAMS).map(|_| None).collect(),
            since: vec![0; WATCH_STREAMS],
            index: 0,
            op: Op::LeaseLeases,
        };
        session.run().await
    });
    let result = result.map_err(|mut m| {
        m.crash = crash_lines("etcd", &etcd.log())
            .into_iter()
            .chain(crash_lines(other_name, &kvik.log()))
            .collect();
        m
    });
    drop((etcd, kvik));
    result
}

/// The log lines of a server that report a crash, shortened.
fn crash_lines(name: &str, log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            l.contains("\"level\":\"fatal\"")
                || l.contains("\"level\":\"panic\"")
                || l.starts_with("panic")
                || l.contains("panicked at")
        })
        .take(3)
        .map(|l| format!("{name} log: {}", l.chars().take(400).collect::<String>()))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The seeds to run: `KVIK_DIFF_SEED`, `KVIK_DIFF_SEEDS`, or `1..=default`;
/// and whether it is a single replay.
fn seeds_from_env(default: u64) -> (Vec<u64>, bool) {
    let single = std::env::var("KVIK_DIFF_SEED")
        .ok()
        .map(|v| v.parse::<u64>().expect("KVIK_DIFF_SEED is a number"));
    let seeds = match single {
        Some(s) => vec![s],
        None => {
            let bad = "KVIK_DIFF_SEEDS is a count `n` or a range `a..b`";
            match std::env::var("KVIK_DIFF_SEEDS").ok() {
                None => (1..=default).collect(),
                Some(v) => match v.split_once("..") {
                    Some((a, b)) => {
                        (a.parse::<u64>().expect(bad)..b.parse::<u64>().expect(bad)).collect()
                    }
                    None => (1..=v.parse::<u64>().expect(bad)).collect(),
                },
            }
        }
    };
    (seeds, single.is_some())
}

/// Runs the seeds against kvik; fails on a divergence, or on a required
/// item never exercised.
fn run_against_kvik(
    name: &str,
    settings: Settings,
    default_seeds: u64,
    required: &[&[&'static str]],
) {
    let (seeds, single) = seeds_from_env(default_seeds);
    let rt = runtime();
    let mut cov = Coverage::default();
    let mut mismatches = Vec::new();
    let start = Instant::now();
    for &seed in &seeds {
        if let Err(m) = run_seed(&rt, seed, &settings, Kind::Kvik, None, None, &mut cov) {
            if mismatches.len() < 5 {
                eprintln!("{m}\n");
            }
            mismatches.push(m);
        }
    }
    let missing: Vec<&str> = required.iter().flat_map(|r| cov.missing(r)).collect();
    eprintln!(
        "{name}: {} seed(s) x {} requests in {:.1?}; {} coverage items, never exercised: {missing:?}",
        seeds.len(),
        settings.ops,
        start.elapsed(),
        cov.seen.len()
    );
    assert!(
        mismatches.is_empty(),
        "kvik diverged from etcd on {} of {} seeds:\n{}",
        mismatches.len(),
        seeds.len(),
        mismatches
            .iter()
            .map(|m| m.summary())
            .collect::<Vec<_>>()
            .join("\n")
    );
    if !single {
        assert!(missing.is_empty(), "never exercised: {missing:?}");
    }
}

#[test]
fn kvik_answers_like_etcd() {
    run_against_kvik(
        "differential",
        Settings::from_env(false),
        DEFAULT_SEEDS,
        &[REQUIRED],
    );
}

/// The same sequences with watch streams open on both servers.
#[test]
fn kvik_watches_like_etcd() {
    run_against_kvik(
        "differential with watches",
        Settings::from_env(true),
        DEFAULT_WATCH_SEEDS,
        &[REQUIRED_WATCH],
    );
}

/// A no-op delete answered as if it took a revision.
fn plant_noop_delete_bump(op: &Op, out: &mut Outcome) -> bool {
    match (op, out) {
        (Op::Delete(_), Ok(Resp::Delete(d))) if d.deleted == 0 => {
            d.header.as_mut().expect("delete header").revision += 1;
            true
        }
        _ => false,
    }
}

/// A read inside a transaction answered with the next revision.
fn plant_nested_header_shift(op: &Op, out: &mut Outcome) -> bool {
    if let (Op::Txn(_), Ok(Resp::Txn(t))) = (op, out) {
        for r in &mut t.responses {
            if let Some(A::ResponseRange(x)) = &mut r.response {
                x.header.as_mut().expect("nested header").revision += 1;
                return true;
            }
        }
    }
    false
}

/// The comparator on two real etcds, so that no divergence of kvik's can
/// come first: untouched, they agree on every request (normalisation hides
/// exactly what differs between two clusters, and nothing in the sequence
/// depends on timing); with a planted rewrite of the second one's answers,
/// the first rewritten answer is reported.
#[test]
fn comparator_reports_planted_divergence() {
    let rt = runtime();
    let settings = Settings {
        ops: DEFAULT_OPS,
        trace: false,
        watch: false,
    };

    for seed in [3, 4] {
        if let Err(m) = run_seed(
            &rt,
            seed,
            &settings,
            Kind::Etcd,
            None,
            None,
            &mut Coverage::default(),
        ) {
            panic!("two etcds disagree, so the comparison is unsound:\n{m}");
        }
    }

    let m = run_seed(
        &rt,
        1,
        &settings,
        Kind::Etcd,
        Some(plant_noop_delete_bump),
        None,
        &mut Coverage::default(),
    )
    .expect_err("a no-op delete that bumps the revision went unnoticed");
    assert!(
        m.planted,
        "reported an answer the plant did not touch:\n{m}"
    );
    let Seen::Answer {
        etcd: Ok(Resp::Delete(e)),
        kvik: Ok(Resp::Delete(k)),
    } = &m.seen
    else {
        panic!("not a delete:\n{m}")
    };
    assert_eq!(e.deleted, 0, "{m}");
    assert_eq!(
        k.header.unwrap().revision,
        e.header.unwrap().revision + 1,
        "{m}"
    );
    assert!(m.first.0.starts_with("DeleteRangeResponse"), "{m}");

    let m = run_seed(
        &rt,
        2,
        &settings,
        Kind::Etcd,
        Some(plant_nested_header_shift),
        None,
        &mut Coverage::default(),
    )
    .expect_err("a shifted nested header went unnoticed");
    assert!(
        m.planted,
        "reported an answer the plant did not touch:\n{m}"
    );
    assert!(matches!(m.op, Op::Txn(_)), "{m}");
    assert!(m.first.0.starts_with("RangeResponse"), "{m}");
}

/// The first event-bearing response loses its last event (the whole
/// response if that was its only one).
fn plant_dropped_event(seg: &mut Vec<pb::WatchResponse>) -> bool {
    let Some(i) = seg.iter().position(|r| !r.events.is_empty()) else {
        return false;
    };
    seg[i].events.pop();
    if seg[i].events.is_empty() {
        seg.remove(i);
    }
    true
}

/// The watch comparison on two real etcds: untouched, their streams agree
/// at every fence (so fences, waits and the normal form leave no timing in
/// what is compared); with one event dropped from the second one's stream,
/// the drop is reported at the next fence.
#[test]
fn watch_comparator_reports_planted_divergence() {
    let rt = runtime();
    let settings = Settings {
        ops: DEFAULT_OPS,
        trace: false,
        watch: true,
    };
    for seed in [5, 6] {
        if let Err(m) = run_seed(
            &rt,
            seed,
            &settings,
            Kind::Etcd,
            None,
            None,
            &mut Coverage::default(),
        ) {
            panic!("two etcds disagree on watch streams, so the comparison is unsound:\n{m}");
        }
    }
    let m = run_seed(
        &rt,
        7,
        &settings,
        Kind::Etcd,
        None,
        Some(plant_dropped_event),
        &mut Coverage::default(),
    )
    .expect_err("an event dropped from a watch stream went unnoticed");
    assert!(
        m.planted,
        "reported a segment the plant did not touch:\n{m}"
    );
    assert!(matches!(m.seen, Seen::Watch { .. }), "{m}");
    assert!(m.first.0.contains(" event #"), "{m}");
}

#[test]
fn comparator_ignores_only_cluster_identity() {
    let header = |cluster_id, member_id, revision, raft_term| {
        Some(pb::ResponseHeader {
            cluster_id,
            member_id,
            revision,
            raft_term,
        })
    };
    let txn = |h, nested| {
        Ok(Resp::Txn(pb::TxnResponse {
            header: h,
            succeeded: true,
            responses: vec![pb::ResponseOp {
                response: Some(A::ResponseRange(pb::RangeResponse {
                    header: nested,
                    ..Default::default()
                })),
            }],
        }))
    };
    let etcd = txn(header(1, 2, 5, 3), header(0, 0, 4, 0));
    assert_eq!(
        compare_outcomes(&etcd, &txn(header(9, 8, 5, 7), header(6, 6, 4, 6))),
        None
    );
    assert!(compare_outcomes(&etcd, &txn(header(1, 2, 6, 3), header(0, 0, 4, 0))).is_some());
    assert!(compare_outcomes(&etcd, &txn(header(1, 2, 5, 3), header(0, 0, 5, 0))).is_some());
    assert!(compare_outcomes(&etcd, &txn(header(1, 2, 5, 3), None)).is_some());
    let err = |code, m: &str| {
        Err(Failure {
            code,
            message: m.to_string(),
        })
    };
    let e: Outcome = err(
        tonic::Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_eq!(compare_outcomes(&e, &e.clone()), None);
    assert!(compare_outcomes(
        &e,
        &err(
            tonic::Code::InvalidArgument,
            "etcdserver: mvcc: required revision has been compacted"
        )
    )
    .is_some());
    assert!(compare_outcomes(
        &e,
        &err(
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision"
        )
    )
    .is_some());
}

#[test]
fn encoded_lengths_match_the_wire() {
    // Known encodings: tag + length + payload per field.
    let p = pb::PutRequest {
        key: b"a".to_vec(),
        value: vec![b'x'; 300],
        lease: 0,
        prev_kv: true,
        ..Default::default()
    };
    assert_eq!(len_put(&p), 3 + (1 + 2 + 300) + 2);
    let c = pb::Compare {
        key: b"k".to_vec(),
        range_end: vec![0],
        target_union: Some(TargetUnion::Version(0)),
        ..Default::default()
    };
    assert_eq!(len_compare(&c), 3 + 4 + 2);
    let r = pb::RangeRequest {
        key: b"k".to_vec(),
        sort_order: -1,
        ..Default::default()
    };
    assert_eq!(len_range(&r), 3 + 11);
    let n = fit(MAX_REQUEST_BYTES - 18, |n| {
        len_put(&pb::PutRequest {
            value: vec![0; n],
            ..p.clone()
        })
    });
    assert_eq!(
        len_put(&pb::PutRequest {
            value: vec![0; n],
            ..p
        }),
        MAX_REQUEST_BYTES - 18
    );
}
