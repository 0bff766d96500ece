//! The watch registry of one keyspace, driven by its shard.
//!
//! Every watcher belongs to a stream (one gRPC Watch call, or an internal
//! consumer such as a lock waiting for its predecessor). Each stream has one
//! bounded outbox. The shard delivers events with `try_send` only, so a
//! stalled stream never blocks writers or other streams. If the outbox is
//! full, the watcher drops to *unsynced* at the first revision it has not
//! been sent, and later catches up from the store's history
//! (`Mvcc::events`), with the same guarantees: ordered, unique, and never
//! splitting a revision. A watcher that falls behind compaction is
//! cancelled with `compact_revision` set, as etcd does.
//!
//! A watcher is *synced* when it has been sent every matching event up to
//! the shard's current revision. A progress request is answered, with
//! `watch_id = -1`, only once every watcher of its stream is synced. Until
//! then it stays pending.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::errors::cancel_reason;

pub type StreamId = u64;

/// Responses queued per stream before its watchers fall back to catch-up.
pub const WATCH_OUTBOX_RESPONSES_MAX: usize = 256;
/// Events read from the store for one catch-up response (whole revisions
/// are never split, so a response may exceed this by one revision).
pub const WATCH_CATCHUP_EVENTS_MAX: usize = 1000;
/// Control replies (created, canceled, progress) queued for a stream whose
/// outbox is full, before its requests are held back: the client is then
/// pushed back through its own stream, as etcd's bounded control channel
/// does.
pub const WATCH_CONTROL_PENDING_MAX: usize = 64;
/// Catch-up responses sent per shard turn, across all streams.
pub const WATCH_CATCHUP_RESPONSES_PER_TURN_MAX: usize = 256;

/// What a stream asks of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchIn {
    Create(CreateSpec),
    Cancel(i64),
    Progress,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateSpec {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub start_revision: i64,
    pub progress_notify: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    /// 0 lets the server choose.
    pub watch_id: i64,
    pub fragment: bool,
}

/// What the registry sends to a stream; the service turns it into a
/// `WatchResponse` with a full header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOut {
    /// `created = true`; with a reason, also `canceled = true`.
    Created {
        watch_id: i64,
        revision: i64,
        cancel_reason: Option<&'static str>,
    },
    /// Events are shared between every watcher that gets the same ones;
    /// `prev_kv` says whether this watcher's responses carry them.
    Events {
        watch_id: i64,
        revision: i64,
        events: Arc<[engine::Event]>,
        prev_kv: bool,
        fragment: bool,
    },
    /// Cancelled by the client, or (with `compact_revision`) by compaction.
    Canceled {
        watch_id: i64,
        revision: i64,
        compact_revision: i64,
    },
    /// `watch_id = -1` for a progress request, the watcher's id for a
    /// periodic progress notification.
    Progress { watch_id: i64, revision: i64 },
}

#[derive(Debug)]
struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    /// The first revision not yet delivered.
    next_rev: i64,
    synced: bool,
    /// Cancelled by compaction: like etcd, it stays registered (its ID
    /// taken, its stream's progress requests unanswered) until the client
    /// cancels it.
    compacted: bool,
}

impl Watcher {
    fn matches(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            return key == self.key.as_slice();
        }
        if self.range_end == [0] {
            return key >= self.key.as_slice();
        }
        key >= self.key.as_slice() && key < self.range_end.as_slice()
    }

    fn has_filters(&self) -> bool {
        self.no_put || self.no_delete
    }

    fn wants(&self, e: &engine::Event) -> bool {
        match e.kind {
            engine::EventKind::Put => !self.no_put,
            engine::EventKind::Delete => !self.no_delete,
        }
    }

    /// The events this watcher gets of `events` (prev_kv is stripped when
    /// the response is encoded).
    fn shape<'a>(&self, events: impl Iterator<Item = &'a engine::Event>) -> Arc<[engine::Event]> {
        events.filter(|e| self.wants(e)).cloned().collect()
    }
}

struct Stream {
    out: mpsc::Sender<WatchOut>,
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    progress_pending: bool,
    /// Control replies not yet in the outbox. While any wait, the stream's
    /// events go through catch-up, so nothing overtakes them.
    control: VecDeque<WatchOut>,
    /// The stream's reader, held back until `control` drains.
    held: Option<oneshot::Sender<()>>,
}

impl Stream {
    fn all_synced(&self) -> bool {
        self.watchers.values().all(|w| w.synced)
    }
}

/// Reference to a watcher: (stream, watch id).
type WatcherRef = (StreamId, i64);

#[derive(Default)]
pub struct WatchHub {
    streams: HashMap<StreamId, Stream>,
    next_stream: StreamId,
    /// Single-key watchers by key.
    exact: HashMap<Vec<u8>, Vec<WatcherRef>>,
    /// Prefix watchers (range_end is the prefix's end) by prefix: an event
    /// looks up each prefix of its key, not every watcher.
    prefixes: HashMap<Vec<u8>, Vec<WatcherRef>>,
    /// Other range watchers, checked one by one.
    ranges: Vec<WatcherRef>,
    /// Watchers that must catch up from the store.
    unsynced: BTreeSet<WatcherRef>,
    /// Streams with a progress request waiting for their watchers.
    progress_waiting: BTreeSet<StreamId>,
    /// Streams with control replies waiting for outbox space.
    control_waiting: BTreeSet<StreamId>,
    watchers: usize,
}

/// Whether `[key, range_end)` is exactly the keys starting with `key`.
fn is_prefix_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && range_end != [0] && crate::convert::prefix_end(key) == range_end
}

/// Sends without waiting. `Err(true)` means the stream is gone.
fn offer(out: &mpsc::Sender<WatchOut>, msg: WatchOut) -> Result<(), bool> {
    match out.try_send(msg) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(false),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(true),
    }
}

impl WatchHub {
    pub fn watcher_count(&self) -> usize {
        self.watchers
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Registers a stream; its responses arrive on the returned receiver.
    pub fn open(&mut self) -> (StreamId, mpsc::Receiver<WatchOut>) {
        let (tx, rx) = mpsc::channel(WATCH_OUTBOX_RESPONSES_MAX);
        let id = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(
            id,
            Stream {
                out: tx,
                watchers: BTreeMap::new(),
                next_auto_id: 0,
                progress_pending: false,
                control: VecDeque::new(),
                held: None,
            },
        );
        (id, rx)
    }

    pub fn close(&mut self, stream: StreamId) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        self.progress_waiting.remove(&stream);
        for (id, w) in s.watchers {
            self.unindex(stream, id, &w);
        }
    }

    fn index(&mut self, r: WatcherRef, w: &Watcher) {
        self.watchers += 1;
        if !w.synced {
            self.unsynced.insert(r);
        }
        if w.range_end.is_empty() {
            self.exact.entry(w.key.clone()).or_default().push(r);
        } else if is_prefix_range(&w.key, &w.range_end) {
            self.prefixes.entry(w.key.clone()).or_default().push(r);
        } else {
            self.ranges.push(r);
        }
    }

    fn unindex(&mut self, stream: StreamId, id: i64, w: &Watcher) {
        self.watchers -= 1;
        let r = (stream, id);
        self.unsynced.remove(&r);
        if w.range_end.is_empty() {
            if let Some(v) = self.exact.get_mut(&w.key) {
                v.retain(|x| *x != r);
                if v.is_empty() {
                    self.exact.remove(&w.key);
                }
            }
        } else if is_prefix_range(&w.key, &w.range_end) {
            if let Some(v) = self.prefixes.get_mut(&w.key) {
                v.retain(|x| *x != r);
                if v.is_empty() {
                    self.prefixes.remove(&w.key);
                }
            }
        } else {
            self.ranges.retain(|x| *x != r);
        }
    }

    /// Handles a stream's request at the shard's current revision. `ack`
    /// is answered once the stream may send its next request: at once,
    /// unless its control replies are backed up.
    pub fn request(
        &mut self,
        stream: StreamId,
        req: WatchIn,
        current_rev: i64,
        ack: oneshot::Sender<()>,
    ) {
        if !self.streams.contains_key(&stream) {
            return;
        }
        match req {
            WatchIn::Create(spec) => {
                let reply = match self.admit(stream, spec, current_rev) {
                    Ok(id) => WatchOut::Created {
                        watch_id: id,
                        revision: current_rev,
                        cancel_reason: None,
                    },
                    Err(reason) => WatchOut::Created {
                        watch_id: -1,
                        revision: current_rev,
                        cancel_reason: Some(reason),
                    },
                };
                self.control(stream, reply);
            }
            WatchIn::Cancel(id) => {
                let s = self.streams.get_mut(&stream).expect("checked");
                if let Some(w) = s.watchers.remove(&id) {
                    self.unindex(stream, id, &w);
                    self.control(
                        stream,
                        WatchOut::Canceled {
                            watch_id: id,
                            revision: current_rev,
                            compact_revision: 0,
                        },
                    );
                }
            }
            WatchIn::Progress => {
                self.streams
                    .get_mut(&stream)
                    .expect("checked")
                    .progress_pending = true;
                self.flush_progress(stream, current_rev);
            }
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.control.len() < WATCH_CONTROL_PENDING_MAX {
            let _ = ack.send(());
        } else {
            s.held = Some(ack);
        }
    }

    /// Queues a control reply behind any already waiting, and sends what
    /// the outbox takes.
    fn control(&mut self, stream: StreamId, msg: WatchOut) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.control.push_back(msg);
        self.flush_control(stream);
    }

    /// Moves waiting control replies into the outbox; false if the stream
    /// still has some waiting (or is gone).
    fn flush_control(&mut self, stream: StreamId) -> bool {
        let Some(s) = self.streams.get_mut(&stream) else {
            return false;
        };
        while let Some(msg) = s.control.pop_front() {
            match s.out.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    s.control.push_front(msg);
                    self.control_waiting.insert(stream);
                    return false;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.close(stream);
                    return false;
                }
            }
        }
        self.control_waiting.remove(&stream);
        if let Some(ack) = s.held.take() {
            let _ = ack.send(());
        }
        true
    }

    /// Registers a watcher, or says why etcd would refuse it.
    fn admit(
        &mut self,
        stream: StreamId,
        spec: CreateSpec,
        current_rev: i64,
    ) -> Result<i64, &'static str> {
        if spec.start_revision < 0 {
            return Err(cancel_reason::COMPACTED);
        }
        if !spec.range_end.is_empty() && spec.range_end != [0] && spec.range_end <= spec.key {
            return Err(cancel_reason::EMPTY_WATCHER_RANGE);
        }
        let s = self.streams.get_mut(&stream).expect("stream exists");
        let id = if spec.watch_id != 0 {
            if s.watchers.contains_key(&spec.watch_id) {
                return Err(cancel_reason::DUPLICATE_WATCH_ID);
            }
            spec.watch_id
        } else {
            // Like etcd, an automatic ID is never handed out twice on a
            // stream, even after its watch was cancelled.
            while s.watchers.contains_key(&s.next_auto_id) {
                s.next_auto_id += 1;
            }
            s.next_auto_id += 1;
            s.next_auto_id - 1
        };
        let next_rev = if spec.start_revision == 0 {
            current_rev + 1
        } else {
            spec.start_revision
        };
        let w = Watcher {
            key: spec.key,
            range_end: spec.range_end,
            prev_kv: spec.prev_kv,
            no_put: spec.no_put,
            no_delete: spec.no_delete,
            progress_notify: spec.progress_notify,
            fragment: spec.fragment,
            next_rev,
            // Historical watchers (and compacted ones, which the catch-up
            // path cancels) start unsynced.
            synced: next_rev > current_rev,
            compacted: false,
        };
        self.index((stream, id), &w);
        self.streams
            .get_mut(&stream)
            .expect("stream exists")
            .watchers
            .insert(id, w);
        Ok(id)
    }

    /// Delivers the events of one applied revision to synced watchers.
    pub fn publish(&mut self, revision: i64, events: &[engine::Event]) {
        if events.is_empty() || self.watchers == 0 {
            return;
        }
        // Group this revision's events per watcher, keeping event order.
        let mut per: BTreeMap<WatcherRef, Vec<usize>> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            if let Some(v) = self.exact.get(&e.kv.key) {
                for r in v {
                    per.entry(*r).or_default().push(i);
                }
            }
            if !self.prefixes.is_empty() {
                for len in 1..=e.kv.key.len() {
                    if let Some(v) = self.prefixes.get(&e.kv.key[..len]) {
                        for r in v {
                            per.entry(*r).or_default().push(i);
                        }
                    }
                }
            }
            for r in &self.ranges {
                let w = &self.streams[&r.0].watchers[&r.1];
                if w.matches(&e.kv.key) {
                    per.entry(*r).or_default().push(i);
                }
            }
        }
        let mut dead = Vec::new();
        let mut all: Option<Arc<[engine::Event]>> = None;
        for ((stream, id), idx) in per {
            let s = self.streams.get_mut(&stream).expect("indexed stream");
            let backed_up = !s.control.is_empty();
            let w = s.watchers.get_mut(&id).expect("indexed watcher");
            if !w.synced || revision < w.next_rev {
                continue;
            }
            if backed_up {
                // Nothing may overtake a waiting control reply.
                w.synced = false;
                w.next_rev = revision;
                self.unsynced.insert((stream, id));
                continue;
            }
            // Watchers that get every event of the revision, unfiltered,
            // share one copy of them.
            let shaped = if idx.len() == events.len() && !w.has_filters() {
                all.get_or_insert_with(|| Arc::from(events)).clone()
            } else {
                w.shape(idx.into_iter().map(|i| &events[i]))
            };
            if shaped.is_empty() {
                w.next_rev = revision + 1;
                continue;
            }
            let msg = WatchOut::Events {
                watch_id: id,
                revision,
                events: shaped,
                prev_kv: w.prev_kv,
                fragment: w.fragment,
            };
            match offer(&s.out, msg) {
                Ok(()) => w.next_rev = revision + 1,
                Err(false) => {
                    // Outbox full: catch up from the store later, starting
                    // at this revision.
                    w.synced = false;
                    w.next_rev = revision;
                    self.unsynced.insert((stream, id));
                }
                Err(true) => dead.push(stream),
            }
        }
        for stream in dead {
            self.close(stream);
        }
    }

    /// The store was replaced wholesale (a Raft snapshot installed):
    /// every synced watcher, which has seen each revision up to
    /// `delivered`, catches up from the new store's history instead.
    pub fn unsync_all(&mut self, delivered: i64) {
        for (stream, s) in self.streams.iter_mut() {
            for (id, w) in s.watchers.iter_mut() {
                if w.synced && !w.compacted {
                    w.synced = false;
                    w.next_rev = w.next_rev.max(delivered + 1);
                    self.unsynced.insert((*stream, *id));
                }
            }
        }
    }

    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
            || !self.progress_waiting.is_empty()
            || !self.control_waiting.is_empty()
    }

    /// Moves unsynced watchers forward from the store's history, within a
    /// budget; answers pending progress requests that became answerable.
    pub fn catch_up(&mut self, mvcc: &engine::Mvcc) {
        let current = mvcc.current_revision();
        let compacted = mvcc.compact_revision();
        let mut budget = WATCH_CATCHUP_RESPONSES_PER_TURN_MAX;
        let waiting: Vec<StreamId> = self.control_waiting.iter().copied().collect();
        for stream in waiting {
            self.flush_control(stream);
        }
        let todo: Vec<WatcherRef> = self.unsynced.iter().copied().collect();
        let mut touched: BTreeSet<StreamId> = self.progress_waiting.clone();
        let mut dead: BTreeSet<StreamId> = BTreeSet::new();
        for (stream, id) in todo {
            if budget == 0 {
                break;
            }
            if dead.contains(&stream) {
                continue;
            }
            touched.insert(stream);
            let s = self
                .streams
                .get_mut(&stream)
                .expect("unsynced stream exists");
            let w = s.watchers.get_mut(&id).expect("unsynced watcher exists");
            let mut cancel = false;
            while budget > 0 && w.next_rev <= current {
                let read = mvcc.events(
                    &w.key,
                    &w.range_end,
                    w.next_rev,
                    current,
                    WATCH_CATCHUP_EVENTS_MAX,
                );
                let Ok((events, next)) = read else {
                    // Fell behind compaction: cancelled with the compact
                    // revision, as etcd does.
                    budget -= 1;
                    let msg = WatchOut::Canceled {
                        watch_id: id,
                        revision: 0,
                        compact_revision: compacted,
                    };
                    match offer(&s.out, msg) {
                        Ok(()) => cancel = true,
                        Err(true) => {
                            dead.insert(stream);
                        }
                        Err(false) => {}
                    }
                    break;
                };
                let shaped = w.shape(events.iter());
                if !shaped.is_empty() {
                    budget -= 1;
                    let msg = WatchOut::Events {
                        watch_id: id,
                        revision: current,
                        events: shaped,
                        prev_kv: w.prev_kv,
                        fragment: w.fragment,
                    };
                    match offer(&s.out, msg) {
                        Ok(()) => {}
                        Err(gone) => {
                            if gone {
                                dead.insert(stream);
                            }
                            break;
                        }
                    }
                }
                w.next_rev = next;
            }
            if cancel {
                w.compacted = true;
                self.unsynced.remove(&(stream, id));
            } else if w.next_rev > current {
                w.synced = true;
                self.unsynced.remove(&(stream, id));
            }
        }
        for stream in dead {
            self.close(stream);
            touched.remove(&stream);
        }
        for stream in touched {
            self.flush_progress(stream, current);
        }
    }

    fn flush_progress(&mut self, stream: StreamId, current_rev: i64) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if !s.progress_pending {
            return;
        }
        if !s.all_synced() {
            self.progress_waiting.insert(stream);
            return;
        }
        match offer(
            &s.out,
            WatchOut::Progress {
                watch_id: -1,
                revision: current_rev,
            },
        ) {
            Ok(()) => {
                s.progress_pending = false;
                self.progress_waiting.remove(&stream);
            }
            // Retried on the next turn.
            Err(false) => {
                self.progress_waiting.insert(stream);
            }
            Err(true) => self.close(stream),
        }
    }

    /// Periodic progress notifications to synced watchers that asked.
    pub fn notify_progress(&mut self, current_rev: i64) {
        let mut dead = Vec::new();
        for (&stream, s) in &mut self.streams {
            if !s.control.is_empty() {
                continue;
            }
            for (&id, w) in &s.watchers {
                if w.synced
                    && w.progress_notify
                    && offer(
                        &s.out,
                        WatchOut::Progress {
                            watch_id: id,
                            revision: current_rev,
                        },
                    ) == Err(true)
                {
                    dead.push(stream);
                    break;
                }
            }
        }
        for stream in dead {
            self.close(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Command, Mvcc, PutRequest};

    fn put(m: &mut Mvcc, hub: &mut WatchHub, key: &str, value: &str) {
        let cmd = Command::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        });
        m.apply(&cmd).unwrap();
        let events = m.take_events();
        hub.publish(m.current_revision(), &events);
    }

    fn drain(rx: &mut mpsc::Receiver<WatchOut>) -> Vec<WatchOut> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m);
        }
        out
    }

    /// (revision of each event) delivered to `watch_id`, in order.
    fn revisions(msgs: &[WatchOut], watch_id: i64) -> Vec<i64> {
        msgs.iter()
            .filter_map(|m| match m {
                WatchOut::Events {
                    watch_id: w,
                    events,
                    ..
                } if *w == watch_id => {
                    Some(events.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn create(hub: &mut WatchHub, s: StreamId, key: &str, end: &str, start: i64, rev: i64) {
        let spec = CreateSpec {
            key: key.into(),
            range_end: end.into(),
            start_revision: start,
            ..Default::default()
        };
        hub.request(s, WatchIn::Create(spec), rev, oneshot::channel().0);
    }

    #[test]
    fn slow_stream_catches_up_in_order_without_blocking_others() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::default();
        let (slow, mut slow_rx) = hub.open();
        let (fast, mut fast_rx) = hub.open();
        create(&mut hub, slow, "k", "l", 0, m.current_revision());
        create(&mut hub, fast, "k", "l", 0, m.current_revision());
        let writes = WATCH_OUTBOX_RESPONSES_MAX * 3;
        let mut fast_seen = Vec::new();
        for i in 0..writes {
            put(&mut m, &mut hub, &format!("k{}", i % 7), "v");
            fast_seen.extend(revisions(&drain(&mut fast_rx), 0));
        }
        // The fast stream never fell behind; the slow one did.
        assert_eq!(fast_seen, (2..2 + writes as i64).collect::<Vec<_>>());
        assert!(hub.has_unsynced());
        let mut slow_seen = Vec::new();
        while hub.has_unsynced() {
            slow_seen.extend(revisions(&drain(&mut slow_rx), 0));
            hub.catch_up(&m);
        }
        slow_seen.extend(revisions(&drain(&mut slow_rx), 0));
        assert_eq!(
            slow_seen,
            (2..2 + writes as i64).collect::<Vec<_>>(),
            "ordered, unique, no gaps"
        );
        // Synced again: new events flow directly.
        put(&mut m, &mut hub, "k1", "w");
        assert_eq!(
            revisions(&drain(&mut slow_rx), 0),
            vec![m.current_revision()]
        );
    }

    #[test]
    fn progress_waits_for_every_watcher_of_the_stream() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::default();
        let (s, mut rx) = hub.open();
        create(&mut hub, s, "a", "", 0, m.current_revision());
        for _ in 0..WATCH_OUTBOX_RESPONSES_MAX + 10 {
            put(&mut m, &mut hub, "a", "v");
        }
        hub.request(
            s,
            WatchIn::Progress,
            m.current_revision(),
            oneshot::channel().0,
        );
        // The outbox is full and the watcher unsynced: no progress yet.
        let mut msgs = drain(&mut rx);
        assert!(!msgs.iter().any(|x| matches!(x, WatchOut::Progress { .. })));
        while hub.has_unsynced() {
            hub.catch_up(&m);
            msgs.extend(drain(&mut rx));
        }
        let progress_at = msgs
            .iter()
            .position(|x| matches!(x, WatchOut::Progress { watch_id: -1, .. }))
            .unwrap();
        let last_event = msgs
            .iter()
            .rposition(|x| matches!(x, WatchOut::Events { .. }))
            .unwrap();
        assert!(
            progress_at > last_event,
            "progress came before events it covers"
        );
        assert_eq!(revisions(&msgs, 0).last(), Some(&m.current_revision()));
    }

    #[test]
    fn compacted_start_is_cancelled_with_the_compact_revision() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::default();
        for i in 0..5 {
            put(&mut m, &mut hub, "a", &i.to_string());
        }
        m.apply(&Command::Compact(engine::CompactionRequest {
            revision: 4,
            physical: false,
        }))
        .unwrap();
        let (s, mut rx) = hub.open();
        create(&mut hub, s, "a", "", 2, m.current_revision());
        create(&mut hub, s, "a", "", 4, m.current_revision());
        hub.catch_up(&m);
        let msgs = drain(&mut rx);
        assert!(
            msgs.contains(&WatchOut::Canceled {
                watch_id: 0,
                revision: 0,
                compact_revision: 4
            }),
            "{msgs:?}"
        );
        // Starting exactly at the compact revision is still served.
        assert_eq!(revisions(&msgs, 1), vec![4, 5, 6]);
    }

    #[test]
    fn duplicate_and_empty_range_are_refused() {
        let m = Mvcc::new();
        let mut hub = WatchHub::default();
        let (s, mut rx) = hub.open();
        let spec = CreateSpec {
            key: "a".into(),
            watch_id: 7,
            ..Default::default()
        };
        hub.request(
            s,
            WatchIn::Create(spec.clone()),
            m.current_revision(),
            oneshot::channel().0,
        );
        hub.request(
            s,
            WatchIn::Create(spec),
            m.current_revision(),
            oneshot::channel().0,
        );
        create(&mut hub, s, "b", "a", 0, m.current_revision());
        let msgs = drain(&mut rx);
        assert_eq!(
            msgs[0],
            WatchOut::Created {
                watch_id: 7,
                revision: 1,
                cancel_reason: None
            }
        );
        assert_eq!(
            msgs[1],
            WatchOut::Created {
                watch_id: -1,
                revision: 1,
                cancel_reason: Some(cancel_reason::DUPLICATE_WATCH_ID)
            }
        );
        assert_eq!(
            msgs[2],
            WatchOut::Created {
                watch_id: -1,
                revision: 1,
                cancel_reason: Some(cancel_reason::EMPTY_WATCHER_RANGE)
            }
        );
    }

    #[test]
    fn filters_and_prev_kv() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::default();
        let (s, mut rx) = hub.open();
        let spec = CreateSpec {
            key: "a".into(),
            no_put: true,
            prev_kv: true,
            ..Default::default()
        };
        hub.request(
            s,
            WatchIn::Create(spec),
            m.current_revision(),
            oneshot::channel().0,
        );
        let spec = CreateSpec {
            key: "a".into(),
            ..Default::default()
        };
        hub.request(
            s,
            WatchIn::Create(spec),
            m.current_revision(),
            oneshot::channel().0,
        );
        put(&mut m, &mut hub, "a", "1");
        m.apply(&Command::DeleteRange(engine::DeleteRangeRequest {
            key: "a".into(),
            ..Default::default()
        }))
        .unwrap();
        let ev = m.take_events();
        hub.publish(m.current_revision(), &ev);
        let msgs = drain(&mut rx);
        let deletes: Vec<_> = msgs
            .iter()
            .filter_map(|x| match x {
                WatchOut::Events {
                    watch_id: 0,
                    events,
                    ..
                } => Some(events.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            deletes.len(),
            1,
            "NOPUT watcher saw only the delete: {msgs:?}"
        );
        assert_eq!(
            deletes[0][0].prev_kv.as_ref().map(|kv| kv.value.clone()),
            Some(b"1".to_vec())
        );
        let plain: Vec<_> = msgs
            .iter()
            .filter_map(|x| match x {
                WatchOut::Events {
                    watch_id: 1,
                    prev_kv,
                    ..
                } => Some(*prev_kv),
                _ => None,
            })
            .collect();
        assert_eq!(plain, vec![false, false], "no prev_kv unless asked");
        let asked: Vec<_> = msgs
            .iter()
            .filter_map(|x| match x {
                WatchOut::Events {
                    watch_id: 0,
                    prev_kv,
                    ..
                } => Some(*prev_kv),
                _ => None,
            })
            .collect();
        assert_eq!(asked, vec![true]);
    }

    #[test]
    fn closed_streams_are_dropped() {
        let mut m = Mvcc::new();
        let mut hub = WatchHub::default();
        let (s, rx) = hub.open();
        create(&mut hub, s, "a", "", 0, m.current_revision());
        drop(rx);
        put(&mut m, &mut hub, "a", "1");
        assert_eq!(hub.watcher_count(), 0);
        assert_eq!(hub.stream_count(), 0);
    }

    #[test]
    fn pipelined_creates_back_pressure_instead_of_dropping_the_stream() {
        let m = Mvcc::new();
        let mut hub = WatchHub::default();
        let (s, mut rx) = hub.open();
        let total = WATCH_OUTBOX_RESPONSES_MAX + WATCH_CONTROL_PENDING_MAX + 10;
        let mut held = 0;
        let mut answered = Vec::new();
        for i in 0..total {
            let (ack, mut acked) = oneshot::channel();
            let spec = CreateSpec {
                key: format!("k{i}").into(),
                ..Default::default()
            };
            hub.request(s, WatchIn::Create(spec), m.current_revision(), ack);
            if acked.try_recv().is_err() {
                // The reader must wait: drain like a client would, then
                // the shard's next turn releases it.
                held += 1;
                answered.extend(drain(&mut rx));
                hub.catch_up(&m);
                assert!(acked.try_recv().is_ok(), "released once the outbox drained");
            }
        }
        answered.extend(drain(&mut rx));
        hub.catch_up(&m);
        answered.extend(drain(&mut rx));
        assert!(held > 0, "the test must have filled the outbox");
        let ids: Vec<i64> = answered
            .iter()
            .map(|m| match m {
                WatchOut::Created {
                    watch_id,
                    cancel_reason: None,
                    ..
                } => *watch_id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ids, (0..total as i64).collect::<Vec<_>>());
        assert_eq!(hub.stream_count(), 1);
    }

    #[test]
    fn automatic_watch_ids_are_never_reused() {
        let m = Mvcc::new();
        let mut hub = WatchHub::default();
        let (s, mut rx) = hub.open();
        let rev = m.current_revision();
        create(&mut hub, s, "a", "", 0, rev);
        create(&mut hub, s, "b", "", 0, rev);
        hub.request(s, WatchIn::Cancel(1), rev, oneshot::channel().0);
        create(&mut hub, s, "c", "", 0, rev);
        let ids: Vec<i64> = drain(&mut rx)
            .iter()
            .filter_map(|m| match m {
                WatchOut::Created { watch_id, .. } => Some(*watch_id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, vec![0, 1, 2], "etcd's ids after a cancel");
    }

    #[test]
    fn prefix_watchers_are_indexed_and_match_exactly() {
        assert!(is_prefix_range(b"a/", b"a0"));
        assert!(is_prefix_range(b"a\xff", b"b"));
        assert!(!is_prefix_range(b"a", b"c"));
        assert!(!is_prefix_range(b"", &[0]));
        let mut m = Mvcc::new();
        let mut hub = WatchHub::default();
        let (s, mut rx) = hub.open();
        create(&mut hub, s, "a/", "a0", 0, m.current_revision()); // prefix: indexed
        create(&mut hub, s, "a/b", "a/c", 0, m.current_revision()); // prefix too
        create(&mut hub, s, "a/", "a/m", 0, m.current_revision()); // plain range
        assert_eq!(hub.prefixes.len(), 2);
        assert_eq!(hub.ranges.len(), 1);
        put(&mut m, &mut hub, "a/b1", "v"); // all three
        put(&mut m, &mut hub, "a/z", "v"); // only the first
        put(&mut m, &mut hub, "a0", "v"); // none
        let msgs = drain(&mut rx);
        assert_eq!(revisions(&msgs, 0), vec![2, 3]);
        assert_eq!(revisions(&msgs, 1), vec![2]);
        assert_eq!(revisions(&msgs, 2), vec![2]);
        hub.request(
            s,
            WatchIn::Cancel(0),
            m.current_revision(),
            oneshot::channel().0,
        );
        hub.request(
            s,
            WatchIn::Cancel(1),
            m.current_revision(),
            oneshot::channel().0,
        );
        assert!(hub.prefixes.is_empty());
    }
}
