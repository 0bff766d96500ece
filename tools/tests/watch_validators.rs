//! Watch validators in the spirit of etcd's robustness tests, run on
//! histories that kvik makes under concurrent writers, deletes, lease
//! expiries and compactions.
//!
//! The writer side records every acknowledged Put, DeleteRange, Txn and
//! LeaseRevoke with the revision it answered. A lease left to expire is
//! resolved by its owner: it polls until the lease's keys are gone, then
//! finds the expiry revision by bisecting `Range(count_only)` at revisions.
//! Replaying that record (revisions 2..=last, each exactly once) gives the
//! store's whole event history, with `prev_kv` for every event.
//!
//! The watch side records every response of several streams: prefix and
//! single-key watches, with and without `prev_kv`, from historical
//! revisions and from 0, with filters, with `progress_notify`, one with
//! `fragment`, one cancelled by the client and resumed at last seen + 1,
//! one created at a compacted revision, and two streams that read nothing
//! for a while: `S2` until compaction has passed where it stalled (its watch
//! must be cancelled with `compact_revision`), `S1` while megabytes of
//! events go by (its watches must catch up from the store's history and
//! miss nothing). Each stream also asks for progress at random times.
//!
//! Validators, each a function of the recorded history:
//! - **ordered**: a watch's event revisions never go back, and grow strictly
//!   from one response to the next (fragments of one response are merged);
//! - **unique**: no (revision, key) twice on a watch;
//! - **atomic**: a revision's events for a watch come in one response, and
//!   that response holds all of them;
//! - **reliable**: a watch gets exactly the events of the history in its
//!   range (after filters) from its start revision up to the last revision
//!   it saw (event or progress), with the history's key-values;
//! - **resumable**: a watch created at last seen + 1 after a client cancel
//!   continues without loss or duplication;
//! - **prev_kv**: `prev_kv` is the key's previous version in the history
//!   (absent for creations, and at a compaction revision, as etcd does),
//!   and absent for watches that did not ask;
//! - **progress**: a progress response (watch id -1, or the watch's own id
//!   for `progress_notify`) at revision R comes after every event <= R of
//!   every watch it covers;
//! - **compaction**: a watch cancelled with `compact_revision` C got no
//!   event at or after C, had not seen everything before C, and C is a
//!   compaction that was made.
//!
//! Each validator is then run on doctored copies of the recorded history
//! and must report the planted violation.
//!
//! Compaction cancels are also compared response by response with real
//! etcd 3.7.2 on a small scenario; other tests check that a create or a cancel
//! on a stream whose reader is behind is answered, and that watch ids are
//! not reused after a cancel, as etcd does.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Kind, Server};
use net::pb::etcdserverpb as pb;
use net::pb::mvccpb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::request_op::Request as Req;
use pb::response_op::Response as Resp;
use pb::watch_client::WatchClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

type Kv = pb::kv_client::KvClient<Channel>;

const PUT: i32 = mvccpb::event::EventType::Put as i32;
const DELETE: i32 = mvccpb::event::EventType::Delete as i32;

/// Keys `k/00`..`k/39` of the general writers.
const KEYS: u32 = 40;
/// Value size of the `big/` writers, which make the slow streams fall behind.
const BIG_VALUE_BYTES: usize = 8 * 1024;
/// `big/` bytes written while a stream reads nothing after which it has
/// surely fallen behind: kvik queues 256 responses per stream (2 MiB of
/// single-event `big/` responses), the slow connections have 64 KiB HTTP/2
/// windows, and the server's HTTP/2 send buffer is well under 1 MiB.
const BEHIND_BYTES: u64 = 8 << 20;
/// HTTP/2 stream and connection window of the slow readers' connections.
const SLOW_WINDOW: u32 = 65_535;
/// Limit for every condition polled.
const DEADLINE: Duration = Duration::from_secs(60);
/// `--max-request-bytes` of the server: small, so catch-up responses of the
/// fragmenting watch are split.
const MAX_REQUEST_BYTES: &str = "262144";

// ------------------------------------------------------------------ helpers

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

/// A connection with small HTTP/2 windows, so that a reader that stops
/// reading stops the server quickly.
async fn slow_channel(endpoint: String) -> Channel {
    tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .initial_stream_window_size(SLOW_WINDOW)
        .initial_connection_window_size(SLOW_WINDOW)
        .connect()
        .await
        .expect("connect")
}

fn kv_client(ch: &Channel) -> Kv {
    pb::kv_client::KvClient::new(ch.clone()).max_decoding_message_size(usize::MAX)
}

fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut e = p.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return e;
        }
    }
    vec![0]
}

/// etcd's range semantics: empty end is one key, `\0` is "from key on".
fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

fn small_key(i: u32) -> Vec<u8> {
    format!("k/{i:02}").into_bytes()
}

/// Large values are replaced by their length and hash, on the writer side
/// and the watch side alike, to keep the recorded histories small.
fn squash(value: &[u8]) -> Vec<u8> {
    if value.len() <= 64 {
        return value.to_vec();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("#{}:{h:016x}", value.len()).into_bytes()
}

fn squash_event(e: &mut mvccpb::Event) {
    if let Some(kv) = e.kv.as_mut() {
        kv.value = squash(&kv.value);
    }
    if let Some(kv) = e.prev_kv.as_mut() {
        kv.value = squash(&kv.value);
    }
}

fn ev_rev(e: &mvccpb::Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

fn ev_key(e: &mvccpb::Event) -> &[u8] {
    e.kv.as_ref().map_or(&[], |kv| kv.key.as_slice())
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn show_kv(kv: &Option<mvccpb::KeyValue>) -> String {
    match kv {
        None => "none".into(),
        Some(kv) => format!(
            "{{{} create={} mod={} version={} value={} lease={:x}}}",
            show(&kv.key),
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            show(&kv.value),
            kv.lease
        ),
    }
}

fn header_rev(h: &Option<pb::ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

fn is_progress(r: &pb::WatchResponse) -> bool {
    !r.created && !r.canceled && !r.fragment && r.events.is_empty()
}

async fn current_rev(kv: &mut Kv) -> i64 {
    let r = kv
        .range(pb::RangeRequest {
            key: b"\0probe".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    header_rev(&r.header)
}

/// Polls `cond` every few milliseconds until it holds; fails the test after
/// [`DEADLINE`].
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

fn progress_req() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    }
}

fn cancel_req(id: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest { watch_id: id },
        )),
    }
}

// -------------------------------------------------------------- the history

/// One change of a write, as the writer sent it.
#[derive(Clone, Debug)]
enum Change {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    /// `deleted` as the server answered it, checked against the replay.
    Delete {
        key: Vec<u8>,
        range_end: Vec<u8>,
        deleted: i64,
    },
}

#[derive(Clone, Debug)]
enum Write {
    /// A Put, DeleteRange, or the taken branch of a Txn.
    Changes(Vec<Change>),
    /// A lease revoked by its owner or expired: its keys are deleted.
    Revoke(i64),
}

#[derive(Clone, Debug)]
struct Recorded {
    revision: i64,
    write: Write,
    by: String,
}

/// The store's event history, replayed from the writers' record: every
/// event with its `prev_kv` (the key's version at the revision before).
#[derive(Debug, Default)]
struct Model {
    events: BTreeMap<i64, Vec<mvccpb::Event>>,
}

impl Model {
    fn event(&self, rev: i64, key: &[u8]) -> Option<&mvccpb::Event> {
        self.events.get(&rev)?.iter().find(|e| ev_key(e) == key)
    }

    /// Events of revisions `lo..=hi`, in order.
    fn between(&self, lo: i64, hi: i64) -> impl Iterator<Item = &mvccpb::Event> {
        let range = if lo <= hi {
            self.events.range(lo..=hi)
        } else {
            self.events.range(0..0)
        };
        range.flat_map(|(_, evs)| evs.iter())
    }

    fn last(&self) -> i64 {
        self.events.keys().next_back().copied().unwrap_or(1)
    }
}

fn build_model(mut recs: Vec<Recorded>) -> Result<Model, String> {
    recs.sort_by_key(|r| r.revision);
    let mut state: BTreeMap<Vec<u8>, mvccpb::KeyValue> = BTreeMap::new();
    let mut leases: HashMap<i64, BTreeSet<Vec<u8>>> = HashMap::new();
    let mut model = Model::default();
    for (expect, r) in (2..).zip(recs) {
        if r.revision != expect {
            return Err(format!(
                "writers' record: revision {} ({}) follows {}: {}",
                r.revision,
                r.by,
                expect - 1,
                if r.revision < expect {
                    "two writes got one revision"
                } else {
                    "a revision has no recorded write"
                }
            ));
        }
        let rev = r.revision;
        let mut evs = Vec::new();
        let delete = |key: &Vec<u8>,
                      state: &mut BTreeMap<Vec<u8>, mvccpb::KeyValue>,
                      leases: &mut HashMap<i64, BTreeSet<Vec<u8>>>,
                      evs: &mut Vec<mvccpb::Event>| {
            let prev = state.remove(key).expect("deleting a live key");
            if prev.lease != 0 {
                if let Some(s) = leases.get_mut(&prev.lease) {
                    s.remove(key);
                }
            }
            evs.push(mvccpb::Event {
                r#type: DELETE,
                kv: Some(mvccpb::KeyValue {
                    key: key.clone(),
                    mod_revision: rev,
                    ..Default::default()
                }),
                prev_kv: Some(prev),
            });
        };
        match r.write {
            Write::Changes(changes) => {
                for c in changes {
                    match c {
                        Change::Put { key, value, lease } => {
                            let prev = state.get(&key).cloned();
                            if let Some(p) = &prev {
                                if p.lease != 0 {
                                    if let Some(s) = leases.get_mut(&p.lease) {
                                        s.remove(&key);
                                    }
                                }
                            }
                            let kv = mvccpb::KeyValue {
                                key: key.clone(),
                                create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                                mod_revision: rev,
                                version: prev.as_ref().map_or(1, |p| p.version + 1),
                                value: squash(&value),
                                lease,
                            };
                            if lease != 0 {
                                leases.entry(lease).or_default().insert(key.clone());
                            }
                            state.insert(key, kv.clone());
                            evs.push(mvccpb::Event {
                                r#type: PUT,
                                kv: Some(kv),
                                prev_kv: prev,
                            });
                        }
                        Change::Delete {
                            key,
                            range_end,
                            deleted,
                        } => {
                            let keys: Vec<Vec<u8>> = state
                                .keys()
                                .filter(|k| in_range(k, &key, &range_end))
                                .cloned()
                                .collect();
                            if keys.len() as i64 != deleted {
                                return Err(format!(
                                    "revision {rev} ({}): DeleteRange [{}, {}) answered deleted={deleted}, the replay deletes {}",
                                    r.by,
                                    show(&key),
                                    show(&range_end),
                                    keys.len()
                                ));
                            }
                            for k in &keys {
                                delete(k, &mut state, &mut leases, &mut evs);
                            }
                        }
                    }
                }
            }
            Write::Revoke(id) => {
                let keys = leases.remove(&id).unwrap_or_default();
                for k in &keys {
                    delete(k, &mut state, &mut leases, &mut evs);
                }
            }
        }
        if evs.is_empty() {
            return Err(format!(
                "revision {rev} ({}) changes nothing in the replay",
                r.by
            ));
        }
        model.events.insert(rev, evs);
    }
    Ok(model)
}

/// A watch as the client created it.
#[derive(Clone, Debug, Default)]
struct Spec {
    name: String,
    key: Vec<u8>,
    range_end: Vec<u8>,
    start_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    /// Index, among its stream's creates, of the client-cancelled watch this
    /// one resumes.
    resumes: Option<usize>,
}

impl Spec {
    fn new(name: &str, key: &[u8], range_end: &[u8]) -> Spec {
        Spec {
            name: name.into(),
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            ..Default::default()
        }
    }
    fn prefix(name: &str, p: &[u8]) -> Spec {
        Spec::new(name, p, &prefix_end(p))
    }
    fn start(mut self, rev: i64) -> Spec {
        self.start_revision = rev;
        self
    }
    fn prev(mut self) -> Spec {
        self.prev_kv = true;
        self
    }
    fn notify(mut self) -> Spec {
        self.progress_notify = true;
        self
    }
    fn frag(mut self) -> Spec {
        self.fragment = true;
        self
    }
    fn no_put(mut self) -> Spec {
        self.no_put = true;
        self
    }
    fn no_delete(mut self) -> Spec {
        self.no_delete = true;
        self
    }

    fn wants(&self, e: &mvccpb::Event) -> bool {
        in_range(ev_key(e), &self.key, &self.range_end)
            && !(e.r#type == PUT && self.no_put)
            && !(e.r#type == DELETE && self.no_delete)
    }

    fn request(&self) -> pb::WatchRequest {
        use pb::watch_create_request::FilterType;
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: self.key.clone(),
                    range_end: self.range_end.clone(),
                    start_revision: self.start_revision,
                    progress_notify: self.progress_notify,
                    filters,
                    prev_kv: self.prev_kv,
                    watch_id: 0,
                    fragment: self.fragment,
                },
            )),
        }
    }
}

/// One watch stream as the client saw it: its creates in the order sent,
/// its responses in the order received.
#[derive(Clone, Debug, Default)]
struct StreamLog {
    name: String,
    creates: Vec<Spec>,
    responses: Vec<pb::WatchResponse>,
    /// Why the response stream ended, if it did.
    end: Option<String>,
}

#[derive(Clone)]
struct History {
    model: Arc<Model>,
    compactions: Vec<i64>,
    streams: Vec<StreamLog>,
}

// ------------------------------------------------------------- derivation

struct Delivery {
    /// Index of the (last fragment's) response in the stream.
    at: usize,
    /// Number of the response, fragments merged, in the stream.
    logical: usize,
    header: i64,
    ev: mvccpb::Event,
}

/// A watch as its stream's responses show it.
struct View<'a> {
    stream: usize,
    create_no: usize,
    spec: &'a Spec,
    id: i64,
    created_rev: i64,
    /// The response that cancelled it, if any.
    end_at: Option<usize>,
    compact_revision: i64,
    deliveries: Vec<Delivery>,
    /// (response index, revision) of every progress response covering it.
    progress: Vec<(usize, i64)>,
}

impl View<'_> {
    fn start(&self) -> i64 {
        if self.spec.start_revision > 0 {
            self.spec.start_revision
        } else {
            self.created_rev + 1
        }
    }

    /// The last revision this watch is known to have seen everything up to.
    fn last_seen(&self) -> i64 {
        let ev = self.deliveries.last().map_or(0, |d| ev_rev(&d.ev));
        let pr = self.progress.iter().map(|p| p.1).max().unwrap_or(0);
        ev.max(pr).max(self.start() - 1)
    }

    fn label(&self, h: &History) -> String {
        format!(
            "{}/{} (id {})",
            h.streams[self.stream].name, self.spec.name, self.id
        )
    }

    /// The history's events this watch must get: in its range, after its
    /// filters, from its start to what it saw last.
    fn expected<'m>(&self, model: &'m Model) -> Vec<&'m mvccpb::Event> {
        model
            .between(self.start(), self.last_seen())
            .filter(|e| self.spec.wants(e))
            .collect()
    }
}

/// Pairs each stream's created responses with its creates (in order, as
/// etcd answers them) and assigns every response to its watches.
fn derive(h: &History) -> (Vec<View<'_>>, Vec<String>) {
    let mut views: Vec<View> = Vec::new();
    let mut bad = Vec::new();
    for (si, s) in h.streams.iter().enumerate() {
        if let Some(end) = &s.end {
            bad.push(format!("{}: the response stream ended: {end}", s.name));
        }
        let mut next_create = 0;
        let mut active: HashMap<i64, usize> = HashMap::new();
        let mut partial: HashMap<i64, Vec<mvccpb::Event>> = HashMap::new();
        let mut logical = 0;
        for (at, r) in s.responses.iter().enumerate() {
            let rev = header_rev(&r.header);
            if r.created {
                let Some(spec) = s.creates.get(next_create) else {
                    bad.push(format!(
                        "{}: response {at} answers a create that was never sent",
                        s.name
                    ));
                    continue;
                };
                next_create += 1;
                if r.canceled {
                    bad.push(format!(
                        "{}: create of {} refused: {:?}",
                        s.name, spec.name, r.cancel_reason
                    ));
                    continue;
                }
                if active.contains_key(&r.watch_id) {
                    bad.push(format!("{}: watch id {} created twice", s.name, r.watch_id));
                }
                active.insert(r.watch_id, views.len());
                views.push(View {
                    stream: si,
                    create_no: next_create - 1,
                    spec,
                    id: r.watch_id,
                    created_rev: rev,
                    end_at: None,
                    compact_revision: 0,
                    deliveries: Vec::new(),
                    progress: Vec::new(),
                });
            } else if r.canceled {
                match active.remove(&r.watch_id) {
                    Some(v) => {
                        views[v].end_at = Some(at);
                        views[v].compact_revision = r.compact_revision;
                    }
                    None => bad.push(format!(
                        "{}: response {at} cancels unknown watch {}",
                        s.name, r.watch_id
                    )),
                }
            } else if is_progress(r) {
                if r.watch_id == -1 {
                    for &v in active.values() {
                        views[v].progress.push((at, rev));
                    }
                } else if let Some(&v) = active.get(&r.watch_id) {
                    views[v].progress.push((at, rev));
                } else {
                    bad.push(format!(
                        "{}: response {at}: progress for unknown watch {}",
                        s.name, r.watch_id
                    ));
                }
            } else {
                let Some(&v) = active.get(&r.watch_id) else {
                    bad.push(format!(
                        "{}: response {at}: events for unknown watch {}",
                        s.name, r.watch_id
                    ));
                    continue;
                };
                let buf = partial.entry(r.watch_id).or_default();
                buf.extend(r.events.iter().cloned());
                if r.fragment {
                    continue;
                }
                logical += 1;
                for ev in std::mem::take(buf) {
                    views[v].deliveries.push(Delivery {
                        at,
                        logical,
                        header: rev,
                        ev,
                    });
                }
            }
        }
    }
    (views, bad)
}

// ------------------------------------------------------------- validators

#[derive(Debug, Default)]
struct Report {
    structure: Vec<String>,
    ordered: Vec<String>,
    unique: Vec<String>,
    atomic: Vec<String>,
    reliable: Vec<String>,
    resumable: Vec<String>,
    prev_kv: Vec<String>,
    progress: Vec<String>,
    compaction: Vec<String>,
}

impl Report {
    fn all(&self) -> [(&'static str, &Vec<String>); 9] {
        [
            ("structure", &self.structure),
            ("ordered", &self.ordered),
            ("unique", &self.unique),
            ("atomic", &self.atomic),
            ("reliable", &self.reliable),
            ("resumable", &self.resumable),
            ("prev_kv", &self.prev_kv),
            ("progress", &self.progress),
            ("compaction", &self.compaction),
        ]
    }

    fn total(&self) -> usize {
        self.all().iter().map(|(_, v)| v.len()).sum()
    }

    fn summary(&self) -> String {
        let mut s = String::new();
        for (name, v) in self.all() {
            if v.is_empty() {
                continue;
            }
            s += &format!("{name}: {} violation(s)\n", v.len());
            for m in v.iter().take(8) {
                s += &format!("    {m}\n");
            }
        }
        s
    }
}

fn validate(h: &History) -> Report {
    let (views, structure) = derive(h);
    let mut r = Report {
        structure,
        ..Default::default()
    };
    for v in &views {
        check_ordered(h, v, &mut r.ordered);
        check_unique(h, v, &mut r.unique);
        let expected = v.expected(&h.model);
        check_atomic(h, v, &expected, &mut r.atomic);
        check_reliable(h, v, &expected, &mut r.reliable);
        check_prev_kv(h, v, &mut r.prev_kv);
        check_progress(h, v, &expected, &mut r.progress);
        check_compaction(h, v, &mut r.compaction);
    }
    check_resumable(h, &views, &mut r.resumable);
    r
}

fn check_ordered(h: &History, v: &View, out: &mut Vec<String>) {
    let mut prev: Option<(i64, usize)> = None;
    for d in &v.deliveries {
        let rev = ev_rev(&d.ev);
        if d.header < rev {
            out.push(format!(
                "{}: response header revision {} below its event's {rev}",
                v.label(h),
                d.header
            ));
        }
        if let Some((pr, pl)) = prev {
            if rev < pr {
                out.push(format!(
                    "{}: revision {rev} delivered after {pr}",
                    v.label(h)
                ));
            } else if d.logical != pl && rev == pr {
                out.push(format!(
                    "{}: revision {rev} in two responses in a row",
                    v.label(h)
                ));
            }
        }
        prev = Some((rev, d.logical));
    }
}

fn check_unique(h: &History, v: &View, out: &mut Vec<String>) {
    let mut seen = HashSet::new();
    for d in &v.deliveries {
        if !seen.insert((ev_rev(&d.ev), ev_key(&d.ev).to_vec())) {
            out.push(format!(
                "{}: ({}, {}) delivered twice",
                v.label(h),
                ev_rev(&d.ev),
                show(ev_key(&d.ev))
            ));
        }
    }
}

fn check_atomic(h: &History, v: &View, expected: &[&mvccpb::Event], out: &mut Vec<String>) {
    let mut want: HashMap<i64, usize> = HashMap::new();
    for e in expected {
        *want.entry(ev_rev(e)).or_default() += 1;
    }
    let mut responses: BTreeMap<i64, BTreeMap<usize, usize>> = BTreeMap::new();
    for d in &v.deliveries {
        *responses
            .entry(ev_rev(&d.ev))
            .or_default()
            .entry(d.logical)
            .or_default() += 1;
    }
    for (rev, per) in responses {
        if per.len() > 1 {
            out.push(format!(
                "{}: revision {rev} split over {} responses",
                v.label(h),
                per.len()
            ));
            continue;
        }
        let got: usize = per.values().sum();
        if let Some(&w) = want.get(&rev) {
            if got < w {
                out.push(format!(
                    "{}: a response holds {got} of the {w} events of revision {rev}",
                    v.label(h)
                ));
            }
        }
    }
}

fn check_reliable(h: &History, v: &View, expected: &[&mvccpb::Event], out: &mut Vec<String>) {
    let mut got: HashMap<(i64, &[u8]), &mvccpb::Event> = HashMap::new();
    for d in &v.deliveries {
        got.entry((ev_rev(&d.ev), ev_key(&d.ev))).or_insert(&d.ev);
    }
    let mut missing = Vec::new();
    for e in expected {
        match got.remove(&(ev_rev(e), ev_key(e))) {
            None => missing.push(format!("({}, {})", ev_rev(e), show(ev_key(e)))),
            Some(g) => {
                if g.r#type != e.r#type || g.kv != e.kv {
                    out.push(format!(
                        "{}: event ({}, {}) differs from the history: got type {} {}, want type {} {}",
                        v.label(h),
                        ev_rev(e),
                        show(ev_key(e)),
                        g.r#type,
                        show_kv(&g.kv),
                        e.r#type,
                        show_kv(&e.kv)
                    ));
                }
            }
        }
    }
    if !missing.is_empty() {
        out.push(format!(
            "{}: {} event(s) of [{}, {}] never delivered, first {}",
            v.label(h),
            missing.len(),
            v.start(),
            v.last_seen(),
            missing[..missing.len().min(5)].join(" ")
        ));
    }
    let mut extra: Vec<_> = got.keys().map(|(r, k)| (*r, show(k))).collect();
    extra.sort();
    if !extra.is_empty() {
        out.push(format!(
            "{}: {} event(s) delivered that the history does not have in [{}, {}] for this watch, first {:?}",
            v.label(h),
            extra.len(),
            v.start(),
            v.last_seen(),
            &extra[..extra.len().min(5)]
        ));
    }
}

fn check_prev_kv(h: &History, v: &View, out: &mut Vec<String>) {
    for d in &v.deliveries {
        let rev = ev_rev(&d.ev);
        if !v.spec.prev_kv {
            if d.ev.prev_kv.is_some() {
                out.push(format!(
                    "{}: ({rev}, {}) has prev_kv unasked",
                    v.label(h),
                    show(ev_key(&d.ev))
                ));
            }
            continue;
        }
        let Some(want) = h.model.event(rev, ev_key(&d.ev)) else {
            continue;
        };
        if d.ev.prev_kv == want.prev_kv {
            continue;
        }
        // etcd reads prev_kv at rev - 1, which fails at a compaction revision.
        if d.ev.prev_kv.is_none() && h.compactions.contains(&rev) {
            continue;
        }
        out.push(format!(
            "{}: ({rev}, {}) prev_kv {}, the history says {}",
            v.label(h),
            show(ev_key(&d.ev)),
            show_kv(&d.ev.prev_kv),
            show_kv(&want.prev_kv)
        ));
    }
}

fn check_progress(h: &History, v: &View, expected: &[&mvccpb::Event], out: &mut Vec<String>) {
    let mut at: HashMap<(i64, &[u8]), usize> = HashMap::new();
    for d in &v.deliveries {
        at.entry((ev_rev(&d.ev), ev_key(&d.ev))).or_insert(d.at);
    }
    // latest[i]: the latest response carrying any of expected[..=i].
    let mut latest = Vec::with_capacity(expected.len());
    let mut m = 0usize;
    for e in expected {
        m = m.max(
            at.get(&(ev_rev(e), ev_key(e)))
                .copied()
                .unwrap_or(usize::MAX),
        );
        latest.push(m);
    }
    for &(p_at, p_rev) in &v.progress {
        let n = expected.partition_point(|e| ev_rev(e) <= p_rev);
        if n > 0 && latest[n - 1] >= p_at {
            let culprit = expected[..n]
                .iter()
                .find(|e| at.get(&(ev_rev(e), ev_key(e))).is_none_or(|&a| a >= p_at))
                .expect("some event is late");
            out.push(format!(
                "{}: progress at revision {p_rev} (response {p_at}) came before event ({}, {}) was delivered",
                v.label(h),
                ev_rev(culprit),
                show(ev_key(culprit))
            ));
        }
    }
}

fn check_compaction(h: &History, v: &View, out: &mut Vec<String>) {
    let c = v.compact_revision;
    if c == 0 {
        return;
    }
    if !h.compactions.contains(&c) {
        out.push(format!(
            "{}: cancelled with compact_revision {c}, which no compaction made",
            v.label(h)
        ));
    }
    if let Some(d) = v.deliveries.iter().find(|d| ev_rev(&d.ev) >= c) {
        out.push(format!(
            "{}: cancelled at compaction {c} after delivering revision {}",
            v.label(h),
            ev_rev(&d.ev)
        ));
    }
    if v.last_seen() + 1 >= c {
        out.push(format!(
            "{}: cancelled at compaction {c} though it had seen everything up to {}",
            v.label(h),
            v.last_seen()
        ));
    }
}

fn check_resumable(h: &History, views: &[View], out: &mut Vec<String>) {
    for w2 in views {
        let Some(k) = w2.spec.resumes else { continue };
        let Some(w1) = views
            .iter()
            .find(|v| v.stream == w2.stream && v.create_no == k)
        else {
            out.push(format!(
                "{}: the watch it resumes was never created",
                w2.label(h)
            ));
            continue;
        };
        if w1.end_at.is_none() || w1.compact_revision != 0 {
            out.push(format!(
                "{}: the watch it resumes was not cancelled by the client",
                w2.label(h)
            ));
            continue;
        }
        if w2.start() != w1.last_seen() + 1 {
            out.push(format!(
                "{}: resumed at {}, not at last seen {} + 1",
                w2.label(h),
                w2.start(),
                w1.last_seen()
            ));
        }
        let mut seen: HashSet<(i64, Vec<u8>)> = HashSet::new();
        for d in w1.deliveries.iter().chain(&w2.deliveries) {
            if !seen.insert((ev_rev(&d.ev), ev_key(&d.ev).to_vec())) {
                out.push(format!(
                    "{} after {}: ({}, {}) delivered twice across the resume",
                    w2.label(h),
                    w1.label(h),
                    ev_rev(&d.ev),
                    show(ev_key(&d.ev))
                ));
            }
        }
        let lost: Vec<String> = h
            .model
            .between(w1.start(), w2.last_seen())
            .filter(|e| w2.spec.wants(e) && !seen.contains(&(ev_rev(e), ev_key(e).to_vec())))
            .map(|e| format!("({}, {})", ev_rev(e), show(ev_key(e))))
            .collect();
        if !lost.is_empty() {
            out.push(format!(
                "{} after {}: {} event(s) lost across the resume, first {}",
                w2.label(h),
                w1.label(h),
                lost.len(),
                lost[..lost.len().min(5)].join(" ")
            ));
        }
    }
}

// ---------------------------------------------------------------- recorder

/// Shared state of the recording run.
#[derive(Default)]
struct Ctl {
    stop_writes: AtomicBool,
    stop_pings: AtomicBool,
    writes: Mutex<Vec<Recorded>>,
    problems: Mutex<Vec<String>>,
    compactions: Mutex<Vec<i64>>,
    big_bytes: AtomicU64,
    lease_expiries: AtomicU64,
    lease_revokes: AtomicU64,
    /// Revisions that compaction must not pass, by holder: a stream's last
    /// answered progress request, a lease owner's pending bisection, a
    /// resume in progress. Held across each compaction.
    floors: tokio::sync::Mutex<BTreeMap<String, i64>>,
}

impl Ctl {
    fn record(&self, revision: i64, write: Write, by: &str) {
        self.writes.lock().unwrap().push(Recorded {
            revision,
            write,
            by: by.to_string(),
        });
    }
    fn problem(&self, p: String) {
        self.problems.lock().unwrap().push(p);
    }
    fn stopping(&self) -> bool {
        self.stop_writes.load(Ordering::Relaxed)
    }
}

/// A watch stream of the recording run.
#[derive(Clone)]
struct WStream {
    tx: mpsc::Sender<pb::WatchRequest>,
    log: Arc<Mutex<StreamLog>>,
}

impl WStream {
    /// Opens a stream with its first creates. A gated stream reads nothing
    /// until the gate opens. A stream with a floor moves it to each answered
    /// progress request's revision.
    async fn open(
        name: &str,
        ch: &Channel,
        first: Vec<Spec>,
        gate: Option<tokio::sync::watch::Receiver<bool>>,
        ctl: Option<Arc<Ctl>>,
    ) -> WStream {
        let (tx, rq) = mpsc::channel(4096);
        let log = Arc::new(Mutex::new(StreamLog {
            name: name.into(),
            ..Default::default()
        }));
        let s = WStream {
            tx,
            log: log.clone(),
        };
        for spec in first {
            s.create(spec).await;
        }
        let mut client = WatchClient::new(ch.clone()).max_decoding_message_size(usize::MAX);
        let mut rx = client
            .watch(ReceiverStream::new(rq))
            .await
            .expect("watch call")
            .into_inner();
        let name = name.to_string();
        let requests = s.tx.clone();
        tokio::spawn(async move {
            // Like clientv3, answer a compaction cancel by cancelling the
            // watch (etcd keeps it registered until then), and swallow the
            // confirmation.
            let mut closing: HashSet<i64> = HashSet::new();
            if let Some(mut g) = gate {
                while !*g.borrow_and_update() {
                    if g.changed().await.is_err() {
                        break;
                    }
                }
            }
            loop {
                match rx.message().await {
                    Ok(Some(mut r)) => {
                        if r.canceled && r.compact_revision == 0 && closing.remove(&r.watch_id) {
                            continue;
                        }
                        if r.canceled && r.compact_revision > 0 && closing.insert(r.watch_id) {
                            let _ = requests.send(cancel_req(r.watch_id)).await;
                        }
                        for e in &mut r.events {
                            squash_event(e);
                        }
                        if let (Some(ctl), true) = (&ctl, r.watch_id == -1 && is_progress(&r)) {
                            if let Some(f) = ctl.floors.lock().await.get_mut(&name) {
                                *f = (*f).max(header_rev(&r.header));
                            }
                        }
                        log.lock().unwrap().responses.push(r);
                    }
                    Ok(None) => {
                        log.lock().unwrap().end = Some("closed by the server".into());
                        break;
                    }
                    Err(e) => {
                        log.lock().unwrap().end = Some(format!("error: {e}"));
                        break;
                    }
                }
            }
        });
        s
    }

    async fn create(&self, spec: Spec) {
        let req = spec.request();
        self.log.lock().unwrap().creates.push(spec);
        self.tx.send(req).await.expect("watch request stream");
    }

    async fn send(&self, req: pb::WatchRequest) {
        let _ = self.tx.send(req).await;
    }

    fn snapshot(&self) -> StreamLog {
        self.log.lock().unwrap().clone()
    }

    fn created(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .responses
            .iter()
            .filter(|r| r.created)
            .count()
    }

    /// The highest revision of an answered progress request (-1).
    fn progressed(&self) -> i64 {
        let l = self.log.lock().unwrap();
        l.responses
            .iter()
            .filter(|r| r.watch_id == -1 && is_progress(r))
            .map(|r| header_rev(&r.header))
            .max()
            .unwrap_or(0)
    }

    /// The watch id answered to the stream's `n`th create.
    fn id_of(&self, n: usize) -> Option<i64> {
        let l = self.log.lock().unwrap();
        l.responses
            .iter()
            .filter(|r| r.created)
            .nth(n)
            .map(|r| r.watch_id)
    }

    /// What the `n`th create's watch has seen, as the Reliable validator
    /// counts it (last event or progress revision).
    fn last_seen(&self, n: usize) -> i64 {
        let h = History {
            model: Arc::new(Model::default()),
            compactions: Vec::new(),
            streams: vec![self.snapshot()],
        };
        let (views, _) = derive(&h);
        views
            .iter()
            .find(|v| v.create_no == n)
            .map(|v| v.last_seen())
            .expect("watch created")
    }

    fn canceled(&self, id: i64) -> Option<pb::WatchResponse> {
        let l = self.log.lock().unwrap();
        l.responses
            .iter()
            .find(|r| r.canceled && !r.created && r.watch_id == id)
            .cloned()
    }
}

async fn record_put(
    kv: &mut Kv,
    ctl: &Ctl,
    by: &str,
    key: Vec<u8>,
    value: Vec<u8>,
    lease: i64,
) -> Result<i64, tonic::Status> {
    let r = kv
        .put(pb::PutRequest {
            key: key.clone(),
            value: value.clone(),
            lease,
            ..Default::default()
        })
        .await?;
    let rev = header_rev(&r.into_inner().header);
    ctl.record(
        rev,
        Write::Changes(vec![Change::Put {
            key,
            value: squash(&value),
            lease,
        }]),
        by,
    );
    Ok(rev)
}

fn to_op(c: &Change) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(match c {
            Change::Put { key, value, lease } => Req::RequestPut(pb::PutRequest {
                key: key.clone(),
                value: value.clone(),
                lease: *lease,
                ..Default::default()
            }),
            Change::Delete { key, range_end, .. } => {
                Req::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    ..Default::default()
                })
            }
        }),
    }
}

/// Sends a Txn and records the branch taken, with the deleted counts.
async fn record_txn(
    kv: &mut Kv,
    ctl: &Ctl,
    by: &str,
    compare: Vec<pb::Compare>,
    success: Vec<Change>,
    failure: Vec<Change>,
) -> Result<i64, tonic::Status> {
    let r = kv
        .txn(pb::TxnRequest {
            compare,
            success: success.iter().map(to_op).collect(),
            failure: failure.iter().map(to_op).collect(),
        })
        .await?
        .into_inner();
    let mut taken = if r.succeeded { success } else { failure };
    for (c, resp) in taken.iter_mut().zip(&r.responses) {
        match c {
            Change::Delete { deleted, .. } => {
                if let Some(Resp::ResponseDeleteRange(d)) = &resp.response {
                    *deleted = d.deleted;
                }
            }
            Change::Put { value, .. } => *value = squash(value),
        }
    }
    let rev = header_rev(&r.header);
    ctl.record(rev, Write::Changes(taken), by);
    Ok(rev)
}

/// Random puts, deletes, range deletes and transactions on `k/`.
async fn writer(name: String, mut kv: Kv, seed: u64, ctl: Arc<Ctl>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !ctl.stopping() {
        n += 1;
        let value = format!("{name}-{n}").into_bytes();
        let p = rng.random_range(0..100);
        let res = if p < 50 {
            record_put(
                &mut kv,
                &ctl,
                &name,
                small_key(rng.random_range(0..KEYS)),
                value,
                0,
            )
            .await
            .map(|_| ())
        } else if p < 72 {
            let a = rng.random_range(0..KEYS);
            let (key, range_end) = if p < 65 {
                (small_key(a), Vec::new())
            } else {
                (small_key(a), small_key(a + 4))
            };
            match kv
                .delete_range(pb::DeleteRangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    ..Default::default()
                })
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    // A delete of nothing takes no revision.
                    if r.deleted > 0 {
                        ctl.record(
                            header_rev(&r.header),
                            Write::Changes(vec![Change::Delete {
                                key,
                                range_end,
                                deleted: r.deleted,
                            }]),
                            &name,
                        );
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            let mut ks = BTreeSet::new();
            while ks.len() < 5 {
                ks.insert(rng.random_range(0..KEYS));
            }
            let mut ks: Vec<u32> = ks.into_iter().collect();
            ks.rotate_left(rng.random_range(0..5));
            let put = |i: u32, tag: &str| Change::Put {
                key: small_key(i),
                value: format!("{name}-{n}-{tag}").into_bytes(),
                lease: 0,
            };
            let del = |i: u32| Change::Delete {
                key: small_key(i),
                range_end: Vec::new(),
                deleted: 0,
            };
            let compare = vec![pb::Compare {
                result: CompareResult::Greater as i32,
                target: CompareTarget::Version as i32,
                key: small_key(rng.random_range(0..KEYS)),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::Version(0)),
            }];
            let success = vec![put(ks[0], "a"), put(ks[1], "b"), del(ks[2])];
            let failure = vec![del(ks[3]), put(ks[4], "c")];
            record_txn(&mut kv, &ctl, &name, compare, success, failure)
                .await
                .map(|_| ())
        };
        if let Err(e) = res {
            ctl.problem(format!("{name}: request failed: {e}"));
            return;
        }
    }
}

/// Puts of 8 KiB values on `big/`, counted in `Ctl::big_bytes`.
async fn big_writer(name: String, mut kv: Kv, seed: u64, ctl: Arc<Ctl>) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !ctl.stopping() {
        let mut value = vec![0u8; BIG_VALUE_BYTES];
        rng.fill(&mut value[..]);
        let key = format!("big/{name}/{:02}", rng.random_range(0..8)).into_bytes();
        if let Err(e) = record_put(&mut kv, &ctl, &name, key, value, 0).await {
            ctl.problem(format!("{name}: put failed: {e}"));
            return;
        }
        ctl.big_bytes
            .fetch_add(BIG_VALUE_BYTES as u64, Ordering::Relaxed);
    }
}

async fn count_at(kv: &mut Kv, prefix: &[u8], revision: i64) -> Result<(i64, i64), tonic::Status> {
    let r = kv
        .range(pb::RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            revision,
            count_only: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok((r.count, header_rev(&r.header)))
}

/// Grants TTL-2 leases, attaches three keys under `l/<lease>/` (one Put,
/// then a Txn of two), and either revokes the lease or lets it expire and
/// finds the expiry's revision. Finishes its cycle when told to stop.
async fn lease_owner(name: String, ch: Channel, ctl: Arc<Ctl>) {
    let mut kv = kv_client(&ch);
    let mut leases = pb::lease_client::LeaseClient::new(ch.clone());
    let mut cycle = 0u64;
    while !ctl.stopping() {
        cycle += 1;
        let res: Result<(), String> = async {
            let id = leases.lease_grant(pb::LeaseGrantRequest { ttl: 2, id: 0 }).await.map_err(|e| e.to_string())?.into_inner().id;
            {
                let mut f = ctl.floors.lock().await;
                let cur = current_rev(&mut kv).await;
                f.insert(name.clone(), cur);
            }
            let prefix = format!("l/{id:016x}/").into_bytes();
            let key = |i: u8| [prefix.clone(), vec![b'0' + i]].concat();
            let mut attached = 0;
            let mut last = 0;
            if let Ok(rev) = record_put(&mut kv, &ctl, &name, key(0), format!("{name}-{cycle}").into_bytes(), id).await {
                attached += 1;
                last = rev;
                let put = |i: u8| Change::Put { key: key(i), value: format!("{name}-{cycle}-{i}").into_bytes(), lease: id };
                if let Ok(rev) = record_txn(&mut kv, &ctl, &name, Vec::new(), vec![put(1), put(2)], Vec::new()).await {
                    attached += 2;
                    last = rev;
                }
            }
            if attached > 0 && cycle.is_multiple_of(3) {
                if let Ok(r) = leases.lease_revoke(pb::LeaseRevokeRequest { id }).await {
                    ctl.record(header_rev(&r.into_inner().header), Write::Revoke(id), &name);
                    ctl.lease_revokes.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
            if attached == 0 {
                return Ok(());
            }
            // Let it expire: wait for its keys to go, then bisect for the
            // first revision without them.
            let deadline = Instant::now() + DEADLINE;
            let gone_at = loop {
                let (count, rev) = count_at(&mut kv, &prefix, 0).await.map_err(|e| e.to_string())?;
                if count == 0 {
                    break rev;
                }
                if Instant::now() > deadline {
                    return Err(format!("lease {id:x} did not expire within {DEADLINE:?}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let (mut lo, mut hi) = (last + 1, gone_at);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if count_at(&mut kv, &prefix, mid).await.map_err(|e| e.to_string())?.0 == 0 {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let before = count_at(&mut kv, &prefix, lo - 1).await.map_err(|e| e.to_string())?.0;
            if before != attached {
                return Err(format!(
                    "lease {id:x}: {before} of its {attached} keys left at revision {}, none at {lo}: expiry not one revision",
                    lo - 1
                ));
            }
            ctl.record(lo, Write::Revoke(id), &format!("{name} (expiry)"));
            ctl.lease_expiries.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        .await;
        ctl.floors.lock().await.remove(&name);
        if let Err(e) = res {
            ctl.problem(format!("{name}: {e}"));
            return;
        }
    }
}

/// Compacts, a few times a second, to the lowest floor.
async fn compactor(mut kv: Kv, seed: u64, ctl: Arc<Ctl>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    while !ctl.stopping() {
        tick.tick().await;
        let floors = ctl.floors.lock().await;
        let Some(min) = floors.values().copied().min() else {
            continue;
        };
        let target = min.min(current_rev(&mut kv).await - 1);
        let last = ctl.compactions.lock().unwrap().last().copied().unwrap_or(0);
        if target <= last {
            continue;
        }
        match kv
            .compact(pb::CompactionRequest {
                revision: target,
                physical: rng.random_bool(0.3),
            })
            .await
        {
            Ok(_) => ctl.compactions.lock().unwrap().push(target),
            Err(e) => ctl.problem(format!("compact {target}: {e}")),
        }
        drop(floors);
    }
}

/// Asks for progress at random times.
async fn pinger(s: WStream, seed: u64, ctl: Arc<Ctl>) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !ctl.stop_pings.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..250))).await;
        s.send(progress_req()).await;
    }
}

/// Facts of the run the test checks beyond the validators.
struct Run {
    history: History,
    /// The compaction in force when the compacted-start watch was created.
    compacted_before_wc: i64,
    final_revision: i64,
}

async fn record_history(server: &Server) -> Run {
    let ep = server.endpoint();
    let ch_a = channel(ep.clone()).await;
    let ch_b = channel(ep.clone()).await;
    let ch_s1 = slow_channel(ep.clone()).await;
    let ch_s2 = slow_channel(ep.clone()).await;
    let ctl = Arc::new(Ctl::default());
    let mut kv = kv_client(&ch_a);

    // Some history before the watches, for the historical ones.
    for i in 0..60u32 {
        record_put(
            &mut kv,
            &ctl,
            "seed",
            small_key(i % KEYS),
            format!("seed-{i}").into_bytes(),
            0,
        )
        .await
        .unwrap();
    }

    let (release, gate) = tokio::sync::watch::channel(false);
    let n1 = WStream::open(
        "N1",
        &ch_a,
        vec![
            Spec::new("all prev_kv", b"", b"\0").prev(),
            Spec::prefix("k/ from 2", b"k/").start(2),
            Spec::new("k/07 prev_kv", b"k/07", b"").prev(),
            Spec::new("k/13 from 10 prev_kv notify", b"k/13", b"")
                .start(10)
                .prev()
                .notify(),
        ],
        None,
        Some(ctl.clone()),
    )
    .await;
    let n2 = WStream::open(
        "N2",
        &ch_a,
        vec![
            Spec::prefix("l/ prev_kv", b"l/").prev(),
            Spec::prefix("k/ no_delete", b"k/").no_delete(),
            Spec::prefix("l/ no_put prev_kv", b"l/").no_put().prev(),
            Spec::new("[k/10, k/20) prev_kv, to resume", b"k/10", b"k/20").prev(),
        ],
        None,
        Some(ctl.clone()),
    )
    .await;
    let n3 = WStream::open(
        "N3",
        &ch_b,
        vec![
            Spec::new("[k/20, k/30) from 30", b"k/20", b"k/30").start(30),
            Spec::prefix("big/", b"big/"),
            Spec::new("k/05 notify", b"k/05", b"").notify(),
            Spec::new("all from 1", b"", b"\0").start(1),
        ],
        None,
        Some(ctl.clone()),
    )
    .await;
    let s2 = WStream::open(
        "S2",
        &ch_s2,
        vec![Spec::prefix("big/ stalls, compacted", b"big/")],
        Some(gate.clone()),
        None,
    )
    .await;
    wait_for("the first watches", || {
        n1.created() == 4 && n2.created() == 4 && n3.created() == 4
    })
    .await;
    {
        let mut f = ctl.floors.lock().await;
        for n in ["N1", "N2", "N3"] {
            f.insert(n.into(), 1);
        }
    }

    let mut tasks = Vec::new();
    for (i, ch) in [&ch_a, &ch_a, &ch_b].into_iter().enumerate() {
        tasks.push(tokio::spawn(writer(
            format!("w{i}"),
            kv_client(ch),
            100 + i as u64,
            ctl.clone(),
        )));
    }
    for i in 0..2 {
        tasks.push(tokio::spawn(big_writer(
            format!("b{i}"),
            kv_client(&ch_b),
            200 + i,
            ctl.clone(),
        )));
    }
    for i in 0..3 {
        tasks.push(tokio::spawn(lease_owner(
            format!("lease{i}"),
            ch_b.clone(),
            ctl.clone(),
        )));
    }
    tasks.push(tokio::spawn(compactor(kv_client(&ch_a), 300, ctl.clone())));
    let mut pings = Vec::new();
    for (i, s) in [&n1, &n2, &n3, &s2].into_iter().enumerate() {
        pings.push(tokio::spawn(pinger(s.clone(), 400 + i as u64, ctl.clone())));
    }

    // Phase 1: S2 reads nothing while BEHIND_BYTES of big/ go by.
    wait_for("big/ writes behind S2", || {
        ctl.big_bytes.load(Ordering::Relaxed) >= BEHIND_BYTES
    })
    .await;
    // S1 starts at T, where S2 has surely stalled before; compaction may
    // reach T but not pass it until S1 has answered a progress request.
    let t = {
        let mut f = ctl.floors.lock().await;
        let t = current_rev(&mut kv).await;
        f.insert("S1".into(), t);
        t
    };
    let s1 = WStream::open(
        "S1",
        &ch_s1,
        vec![
            Spec::new("all from T prev_kv", b"", b"\0").start(t).prev(),
            Spec::prefix("big/ from T fragment", b"big/")
                .start(t)
                .frag(),
            Spec::prefix("k/ from T prev_kv", b"k/").start(t).prev(),
            Spec::prefix("k/ from T no_put prev_kv", b"k/")
                .start(t)
                .no_put()
                .prev(),
            Spec::prefix("l/", b"l/"),
        ],
        Some(gate.clone()),
        Some(ctl.clone()),
    )
    .await;
    pings.push(tokio::spawn(pinger(s1.clone(), 500, ctl.clone())));
    let big_at_t = ctl.big_bytes.load(Ordering::Relaxed);

    // Resume: cancel N2's 4th watch and watch again from last seen + 1.
    // Compaction is held at last seen until N2 answers a progress request
    // that covers the new watch.
    let r1 = n2.id_of(3).expect("resumable watch created");
    {
        let mut f = ctl.floors.lock().await;
        f.insert("resume".into(), n2.last_seen(3));
    }
    n2.send(cancel_req(r1)).await;
    wait_for("the resumable watch's cancel", || n2.canceled(r1).is_some()).await;
    let resume_at = n2.last_seen(3) + 1;
    let mut spec = Spec::new("[k/10, k/20) prev_kv, resumed", b"k/10", b"k/20")
        .prev()
        .start(resume_at);
    spec.resumes = Some(3);
    n2.create(spec).await;
    wait_for("the resumed watch", || n2.created() == 5).await;
    let created_at = n2
        .snapshot()
        .responses
        .iter()
        .rposition(|r| r.created)
        .unwrap();
    wait_for("a progress answer covering the resumed watch", || {
        n2.snapshot().responses[created_at..]
            .iter()
            .any(|r| r.watch_id == -1 && is_progress(r))
    })
    .await;
    ctl.floors.lock().await.remove("resume");

    // Phase 2: S1 reads nothing while BEHIND_BYTES more go by, and
    // compaction passes where S2 stalled.
    wait_for("big/ writes behind S1, compaction at T", || {
        ctl.big_bytes.load(Ordering::Relaxed) >= big_at_t + BEHIND_BYTES
            && ctl
                .compactions
                .lock()
                .unwrap()
                .last()
                .is_some_and(|&c| c >= t)
    })
    .await;
    // A watch from a compacted revision, on a stream that keeps up.
    let compacted_before_wc = *ctl.compactions.lock().unwrap().last().unwrap();
    n2.create(Spec::prefix("k/ from 2, compacted", b"k/").start(2))
        .await;
    wait_for("the compacted watch's create", || n2.created() == 6).await;

    // Phase 3: the slow streams read again.
    release.send(true).unwrap();
    wait_for("S2's created response", || s2.created() == 1).await;
    let s2_id = s2.id_of(0).expect("S2 watch created");
    wait_for("S2's watch cancelled by compaction", || {
        s2.canceled(s2_id).is_some()
    })
    .await;
    wait_for("S1 caught up once", || s1.progressed() > 0).await;
    let big_at_release = ctl.big_bytes.load(Ordering::Relaxed);
    wait_for(
        "writes after the slow streams caught up, and leases expired and revoked",
        || {
            ctl.big_bytes.load(Ordering::Relaxed) >= big_at_release + (1 << 20)
                && ctl.lease_expiries.load(Ordering::Relaxed) >= 6
                && ctl.lease_revokes.load(Ordering::Relaxed) >= 2
        },
    )
    .await;

    ctl.stop_writes.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let final_revision = current_rev(&mut kv).await;
    for s in [&n1, &n2, &n3, &s1] {
        wait_for(
            "every stream answering a progress request at the final revision",
            || s.progressed() >= final_revision,
        )
        .await;
    }
    ctl.stop_pings.store(true, Ordering::Relaxed);
    for p in pings {
        p.await.unwrap();
    }
    let problems = ctl.problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "the writers hit problems:\n{}",
        problems.join("\n")
    );

    let streams: Vec<StreamLog> = [&n1, &n2, &n3, &s1, &s2]
        .iter()
        .map(|s| s.snapshot())
        .collect();
    let writes = std::mem::take(&mut *ctl.writes.lock().unwrap());
    let nwrites = writes.len();
    let model = build_model(writes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        model.last(),
        final_revision,
        "the writers' record ends at the final revision"
    );
    let compactions = ctl.compactions.lock().unwrap().clone();
    println!(
        "recorded: {} revisions from {nwrites} writes, {} lease expiries, {} lease revokes, {} compactions (last {:?}), {} MiB of big/ values",
        final_revision - 1,
        ctl.lease_expiries.load(Ordering::Relaxed),
        ctl.lease_revokes.load(Ordering::Relaxed),
        compactions.len(),
        compactions.last(),
        ctl.big_bytes.load(Ordering::Relaxed) >> 20
    );
    Run {
        history: History {
            model: Arc::new(model),
            compactions,
            streams,
        },
        compacted_before_wc,
        final_revision,
    }
}

// ---------------------------------------------------------------- doctoring

fn stream_idx(h: &History, name: &str) -> usize {
    h.streams.iter().position(|s| s.name == name).unwrap()
}

/// Index of N1's "all" watch (its first) and its events responses.
fn n1_all(h: &History) -> (usize, i64, Vec<usize>) {
    let si = stream_idx(h, "N1");
    let s = &h.streams[si];
    let id = s.responses.iter().find(|r| r.created).unwrap().watch_id;
    let at: Vec<usize> = s
        .responses
        .iter()
        .enumerate()
        .filter(|(_, r)| r.watch_id == id && !r.events.is_empty())
        .map(|(i, _)| i)
        .collect();
    (si, id, at)
}

/// Drops a one-event response from the middle of a watch.
fn plant_drop(h: &History) -> History {
    let mut d = h.clone();
    let (si, _, at) = n1_all(h);
    let one: Vec<usize> = at
        .iter()
        .copied()
        .filter(|&i| h.streams[si].responses[i].events.len() == 1)
        .collect();
    let i = one[one.len() / 2];
    d.streams[si].responses.remove(i);
    d
}

/// Delivers a response twice.
fn plant_duplicate(h: &History) -> History {
    let mut d = h.clone();
    let (si, _, at) = n1_all(h);
    let i = at[at.len() / 2];
    let copy = d.streams[si].responses[i].clone();
    d.streams[si].responses.insert(i + 1, copy);
    d
}

/// Swaps two consecutive responses of a watch.
fn plant_reorder(h: &History) -> History {
    let mut d = h.clone();
    let (si, _, at) = n1_all(h);
    let k = at.len() / 2;
    d.streams[si].responses.swap(at[k], at[k + 1]);
    d
}

/// Splits a response's multi-event revision over two responses.
fn plant_split(h: &History) -> History {
    let mut d = h.clone();
    let (si, _, at) = n1_all(h);
    let s = &h.streams[si];
    let i = *at
        .iter()
        .find(|&&i| {
            let evs = &s.responses[i].events;
            !s.responses[i].fragment && evs.len() >= 2 && ev_rev(&evs[0]) == ev_rev(&evs[1])
        })
        .expect("a response with a multi-event revision (a Txn or a lease expiry)");
    let mut second = d.streams[si].responses[i].clone();
    let first = &mut d.streams[si].responses[i];
    second.events = first.events.split_off(1);
    d.streams[si].responses.insert(i + 1, second);
    d
}

/// Changes a delivered prev_kv.
fn plant_prev_kv(h: &History) -> History {
    let mut d = h.clone();
    let (si, _, at) = n1_all(h);
    let i = *at
        .iter()
        .rev()
        .find(|&&i| h.streams[si].responses[i].events[0].prev_kv.is_some())
        .unwrap();
    let pkv = d.streams[si].responses[i].events[0]
        .prev_kv
        .as_mut()
        .unwrap();
    pkv.value = b"not the previous value".to_vec();
    d
}

/// Moves a progress response before an events response it covers.
fn plant_progress(h: &History) -> History {
    let mut d = h.clone();
    let (si, _, at) = n1_all(h);
    let s = &h.streams[si];
    // A -1 progress response in the middle, and the events response just
    // before it.
    let p = s
        .responses
        .iter()
        .enumerate()
        .filter(|(i, r)| *i > at[at.len() / 2] && r.watch_id == -1 && is_progress(r))
        .map(|(i, _)| i)
        .next()
        .expect("a progress response after the middle of the run");
    let q = *at.iter().rev().find(|&&i| i < p).unwrap();
    let moved = d.streams[si].responses.remove(p);
    d.streams[si].responses.insert(q, moved);
    d
}

/// Delivers the last event before a resume again after it.
fn plant_resume_duplicate(h: &History) -> History {
    let mut d = h.clone();
    let si = stream_idx(h, "N2");
    let s = &h.streams[si];
    let ids: Vec<i64> = s
        .responses
        .iter()
        .filter(|r| r.created)
        .map(|r| r.watch_id)
        .collect();
    let (r1, r2) = (ids[3], ids[4]);
    let last = s
        .responses
        .iter()
        .rposition(|r| r.watch_id == r1 && !r.events.is_empty())
        .expect("events before the resume");
    let created2 = s
        .responses
        .iter()
        .position(|r| r.created && r.watch_id == r2)
        .unwrap();
    let mut copy = s.responses[last].clone();
    copy.watch_id = r2;
    d.streams[si].responses.insert(created2 + 1, copy);
    d
}

// ------------------------------------------------------------------- tests

#[test]
fn watch_histories_pass_validators_and_validators_catch_planted_violations() {
    let t0 = Instant::now();
    let server = Server::start_with(
        Kind::Kvik,
        &[
            "--watch-progress-notify-interval=1s",
            "--max-request-bytes",
            MAX_REQUEST_BYTES,
        ],
    );
    let rt = runtime();
    let run = rt.block_on(record_history(&server));
    let recorded_in = t0.elapsed();
    let h = &run.history;
    let report = validate(h);

    // What the run exercised.
    let (views, _) = derive(h);
    for s in &h.streams {
        let events: usize = s.responses.iter().map(|r| r.events.len()).sum();
        let progress = s
            .responses
            .iter()
            .filter(|r| r.watch_id == -1 && is_progress(r))
            .count();
        let notify = s
            .responses
            .iter()
            .filter(|r| r.watch_id >= 0 && is_progress(r))
            .count();
        let fragments = s.responses.iter().filter(|r| r.fragment).count();
        println!(
            "{}: {} responses, {events} events, {progress} progress answers, {notify} progress notifications, {fragments} fragments",
            s.name,
            s.responses.len()
        );
    }
    // Catch-up responses: kvik's live path sends one revision per response
    // with that revision in the header; reading history sends several, or
    // the current revision in the header.
    let mut catch_up: BTreeMap<String, usize> = BTreeMap::new();
    for v in &views {
        let mut per: BTreeMap<usize, (i64, i64, i64)> = BTreeMap::new();
        for d in &v.deliveries {
            let e = per.entry(d.logical).or_insert((i64::MAX, 0, d.header));
            e.0 = e.0.min(ev_rev(&d.ev));
            e.1 = e.1.max(ev_rev(&d.ev));
        }
        let n = per
            .values()
            .filter(|(lo, hi, hdr)| lo != hi || hdr > hi)
            .count();
        *catch_up
            .entry(h.streams[v.stream].name.clone())
            .or_default() += n;
    }
    println!("catch-up responses per stream: {catch_up:?}");
    println!("recorded in {recorded_in:?}");

    // Every validator reports its planted violation.
    type Plant<'a> = (&'a str, fn(&History) -> History, fn(&Report) -> usize);
    let plants: [Plant; 7] = [
        ("reliable (dropped event)", plant_drop, |r| r.reliable.len()),
        ("unique (duplicated response)", plant_duplicate, |r| {
            r.unique.len()
        }),
        ("ordered (swapped responses)", plant_reorder, |r| {
            r.ordered.len()
        }),
        ("atomic (revision split)", plant_split, |r| r.atomic.len()),
        ("prev_kv (wrong prev_kv)", plant_prev_kv, |r| {
            r.prev_kv.len()
        }),
        (
            "progress (answer moved before an event)",
            plant_progress,
            |r| r.progress.len(),
        ),
        (
            "resumable (event repeated after resume)",
            plant_resume_duplicate,
            |r| r.resumable.len(),
        ),
    ];
    for (what, plant, count) in plants {
        let doctored = validate(&plant(h));
        assert!(
            count(&doctored) > count(&report),
            "{what}: the validator missed the planted violation; it reports:\n{}",
            doctored.summary()
        );
        let first = match what.split(' ').next().unwrap() {
            "reliable" => &doctored.reliable,
            "unique" => &doctored.unique,
            "ordered" => &doctored.ordered,
            "atomic" => &doctored.atomic,
            "prev_kv" => &doctored.prev_kv,
            "progress" => &doctored.progress,
            _ => &doctored.resumable,
        };
        println!("planted {what}: caught: {}", first[0]);
    }

    // The run made what the validators are meant to see.
    let by_name = |stream: &str, watch: &str| {
        views
            .iter()
            .find(|v| h.streams[v.stream].name == stream && v.spec.name == watch)
            .unwrap_or_else(|| panic!("{stream}/{watch} created"))
    };
    let s2 = by_name("S2", "big/ stalls, compacted");
    assert!(
        s2.compact_revision > 0,
        "S2 stalled past a compaction yet was not cancelled with compact_revision"
    );
    let wc = by_name("N2", "k/ from 2, compacted");
    assert!(
        wc.compact_revision >= run.compacted_before_wc && wc.deliveries.is_empty(),
        "a watch from compacted revision 2 must be cancelled with the compaction (>= {}), got compact_revision {} after {} events",
        run.compacted_before_wc,
        wc.compact_revision,
        wc.deliveries.len()
    );
    assert!(
        catch_up.get("S1").copied().unwrap_or(0) > 0,
        "S1 never went through the catch-up path"
    );
    for v in &views {
        let s = &h.streams[v.stream].name;
        if v.end_at.is_none() && s != "S2" {
            assert!(
                v.last_seen() >= run.final_revision,
                "{} saw only up to {}",
                v.label(h),
                v.last_seen()
            );
        }
    }
    assert!(
        h.model.events.values().any(|e| e.len() >= 3),
        "a multi-event revision was made"
    );
    println!("validated in {:?} in all", t0.elapsed());
    assert!(
        report.total() == 0,
        "kvik's watch history violates:\n{}",
        report.summary()
    );
}

/// One watch stream of the etcd comparisons, read with bounded waits.
struct Conn {
    tx: mpsc::Sender<pb::WatchRequest>,
    rx: tonic::Streaming<pb::WatchResponse>,
}

impl Conn {
    /// Sends `first` before awaiting the call: etcd sends response headers
    /// only with its first message.
    async fn open(ch: &Channel, first: pb::WatchRequest) -> Conn {
        let (tx, rq) = mpsc::channel(64);
        tx.send(first).await.unwrap();
        let mut c = WatchClient::new(ch.clone()).max_decoding_message_size(usize::MAX);
        let rx = c
            .watch(ReceiverStream::new(rq))
            .await
            .expect("watch call")
            .into_inner();
        Conn { tx, rx }
    }

    /// The next response within `within`; `Err` when the stream ended.
    async fn next(&mut self, within: Duration) -> Result<Option<pb::WatchResponse>, String> {
        match tokio::time::timeout(within, self.rx.message()).await {
            Ok(Ok(Some(r))) => Ok(Some(r)),
            Ok(Ok(None)) => Err("the server ended the stream".into()),
            Ok(Err(e)) => Err(format!("stream error: {e}")),
            Err(_) => Ok(None),
        }
    }
}

fn norm(mut r: pb::WatchResponse) -> pb::WatchResponse {
    if let Some(h) = r.header.as_mut() {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
    r
}

/// Watches from compacted, exactly compacted and later revisions after a
/// compaction: the responses must be etcd's, one for one.
#[test]
fn compacted_watch_responses_match_etcd() {
    let mut out: Vec<Vec<(String, Vec<pb::WatchResponse>)>> = Vec::new();
    for kind in [Kind::Etcd, Kind::Kvik] {
        let server = Server::start(kind);
        let rt = runtime();
        out.push(rt.block_on(async {
            let ch = channel(server.endpoint()).await;
            let mut kv = kv_client(&ch);
            // a=1@2 b=1@3 a=2@4 b=2@5 c=1@6 del b@7 a=3@8, compacted at 5.
            for (k, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("b", "2"), ("c", "1")] {
                kv.put(pb::PutRequest {
                    key: k.into(),
                    value: v.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            }
            kv.delete_range(pb::DeleteRangeRequest {
                key: b"b".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
            kv.put(pb::PutRequest {
                key: b"a".to_vec(),
                value: b"3".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
            kv.compact(pb::CompactionRequest {
                revision: 5,
                physical: true,
            })
            .await
            .unwrap();
            // (name, key, range_end, start, prev_kv, last revision it sees)
            type Case<'a> = (&'a str, &'a [u8], &'a [u8], i64, bool, i64);
            let cases: [Case; 9] = [
                ("a from 1", b"a", b"", 1, false, 0),
                ("a from 3", b"a", b"", 3, true, 0),
                ("a from 4", b"a", b"", 4, false, 0),
                ("a from -1", b"a", b"", -1, false, 0),
                ("b from 5 (the compaction)", b"b", b"", 5, true, 7),
                ("a from 5", b"a", b"", 5, true, 8),
                ("all from 5", b"", b"\0", 5, true, 8),
                ("all from 6", b"", b"\0", 6, true, 8),
                ("all from 4", b"", b"\0", 4, true, 0),
            ];
            let mut got = Vec::new();
            for (name, key, end, start, prev_kv, until) in cases {
                let spec = Spec {
                    key: key.to_vec(),
                    range_end: end.to_vec(),
                    start_revision: start,
                    prev_kv,
                    ..Default::default()
                };
                let mut c = Conn::open(&ch, spec.request()).await;
                let mut rs = Vec::new();
                let mut seen = 0;
                let mut asked = false;
                // Read until cancelled, or until the events up to `until`
                // and then an answered progress request.
                loop {
                    let r = match c.next(Duration::from_secs(10)).await {
                        Ok(Some(r)) => r,
                        Ok(None) if asked => {
                            // etcd drops a progress request while the
                            // watcher is unsynced: ask again.
                            c.tx.send(progress_req()).await.unwrap();
                            continue;
                        }
                        Ok(None) => panic!("{kind:?} {name}: no response within 10 s after {rs:?}"),
                        Err(e) => panic!("{kind:?} {name}: {e} after {rs:?}"),
                    };
                    rs.push(norm(r.clone()));
                    if r.canceled || (asked && r.watch_id == -1 && is_progress(&r)) {
                        break;
                    }
                    seen = r.events.iter().map(ev_rev).max().unwrap_or(0).max(seen);
                    // Cases that end in a cancel ask nothing: kvik answers a
                    // progress request on a stream left without watchers,
                    // etcd does not.
                    if !asked && until > 0 && seen >= until {
                        asked = true;
                        c.tx.send(progress_req()).await.unwrap();
                    }
                }
                // Nothing else follows.
                match c.next(Duration::from_millis(300)).await {
                    Ok(None) => {}
                    other => panic!("{kind:?} {name}: unexpected {other:?} after {rs:?}"),
                }
                got.push((name.to_string(), rs));
            }
            got
        }));
    }
    let (etcd, kvik) = (&out[0], &out[1]);
    let mut diffs = Vec::new();
    for ((name, e), (_, k)) in etcd.iter().zip(kvik) {
        println!("{name}: etcd {e:?}");
        if e != k {
            diffs.push(format!("{name}:\n  etcd {e:?}\n  kvik {k:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "kvik's compaction responses differ from etcd's:\n{}",
        diffs.join("\n")
    );
}

/// What the client asks on a stream whose reader has fallen behind.
#[derive(Clone, Copy, Debug)]
enum LaggingAsk {
    /// Create another watch, then put its key.
    Create,
    /// Cancel the stream's [`LAGGING_CANCELS`] other watches.
    Cancel,
}

const LAGGING_CANCELS: usize = 10;

/// Opens a stream on a small-window connection with a `big/` watch (and,
/// for the cancels, [`LAGGING_CANCELS`] more), reads nothing while 1000 puts
/// of 8 KiB go by (far more than a server queues for a stream), asks `ask`,
/// then reads: every `big/` event and every answer to `ask` must come.
async fn lagging_stream(endpoint: String, ask: LaggingAsk) -> Result<(), String> {
    let ch = channel(endpoint.clone()).await;
    let slow = slow_channel(endpoint).await;
    let mut kv = kv_client(&ch);
    let mut c = Conn::open(&slow, Spec::prefix("big", b"big/").request()).await;
    c.next(Duration::from_secs(10))
        .await?
        .ok_or("no created response")?;
    let mut others = Vec::new();
    if let LaggingAsk::Cancel = ask {
        for i in 0..LAGGING_CANCELS {
            c.tx.send(Spec::new("other", format!("other/{i}").as_bytes(), b"").request())
                .await
                .unwrap();
            others.push(
                c.next(Duration::from_secs(10))
                    .await?
                    .ok_or("no created response")?
                    .watch_id,
            );
        }
    }
    let puts = 1000;
    for i in 0..puts {
        kv.put(pb::PutRequest {
            key: format!("big/{}", i % 16).into(),
            value: vec![b'x'; BIG_VALUE_BYTES],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let wanted = match ask {
        LaggingAsk::Create => {
            c.tx.send(Spec::new("other", b"other", b"").request())
                .await
                .unwrap();
            kv.put(pb::PutRequest {
                key: b"other".to_vec(),
                value: b"1".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
            // The created response and the event.
            2
        }
        LaggingAsk::Cancel => {
            for id in &others {
                c.tx.send(cancel_req(*id)).await.unwrap();
            }
            // A write on another connection before reading, as after the
            // create: the cancels reach the server while the reader is behind.
            kv.put(pb::PutRequest {
                key: b"unwatched".to_vec(),
                value: b"1".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
            LAGGING_CANCELS
        }
    };
    let (mut big, mut answers) = (0, 0);
    while big < puts || answers < wanted {
        let r = match c.next(Duration::from_secs(10)).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(format!("nothing for 10 s after {big} of {puts} big/ events and {answers} of {wanted} answers")),
            Err(e) => return Err(format!("{e} after {big} of {puts} big/ events and {answers} of {wanted} answers")),
        };
        match ask {
            LaggingAsk::Create => answers += usize::from(r.created),
            LaggingAsk::Cancel => {
                answers += usize::from(r.canceled && others.contains(&r.watch_id))
            }
        }
        for e in &r.events {
            if ev_key(e).starts_with(b"big/") {
                big += 1;
            } else {
                answers += 1;
            }
        }
    }
    Ok(())
}

/// Requests on a stream whose reader has fallen behind (its responses
/// queue up on the server) must be answered, and the stream's watches must
/// go on, as etcd does: etcd queues `created` and `canceled` responses apart
/// from events and brings a slow watcher up from history.
#[test]
fn requests_on_a_lagging_stream_are_answered() {
    let mut failures = Vec::new();
    for kind in [Kind::Etcd, Kind::Kvik] {
        let server = Server::start(kind);
        let rt = runtime();
        for ask in [LaggingAsk::Cancel, LaggingAsk::Create] {
            if let Err(e) = rt.block_on(lagging_stream(server.endpoint(), ask)) {
                failures.push(format!("{kind:?}, {ask:?} on a lagging stream: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Watch ids a stream assigns after a cancel, compared with etcd: etcd's
/// ids only grow within a stream (`watchStream.nextID`), so a cancelled id
/// is never handed out again.
#[test]
fn watch_ids_after_cancel_match_etcd() {
    let mut out = Vec::new();
    for kind in [Kind::Etcd, Kind::Kvik] {
        let server = Server::start(kind);
        let rt = runtime();
        out.push(rt.block_on(async {
            let ch = channel(server.endpoint()).await;
            let mut c = Conn::open(&ch, Spec::new("a", b"a", b"").request()).await;
            let mut ids = Vec::new();
            let next = async |c: &mut Conn| {
                c.next(Duration::from_secs(10))
                    .await
                    .unwrap()
                    .expect("a response")
            };
            ids.push(next(&mut c).await.watch_id);
            c.tx.send(Spec::new("b", b"b", b"").request())
                .await
                .unwrap();
            ids.push(next(&mut c).await.watch_id);
            // Cancel the newest watch, then the oldest, creating one after each.
            for cancel in [ids[1], ids[0]] {
                c.tx.send(cancel_req(cancel)).await.unwrap();
                assert!(next(&mut c).await.canceled);
                c.tx.send(Spec::new("c", b"c", b"").request())
                    .await
                    .unwrap();
                ids.push(next(&mut c).await.watch_id);
            }
            ids
        }));
    }
    println!("etcd ids {:?}, kvik ids {:?}", out[0], out[1]);
    assert_eq!(out[1], out[0], "kvik's watch ids (create a, create b, cancel b, create, cancel a, create) differ from etcd's");
}
