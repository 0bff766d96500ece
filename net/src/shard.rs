//! The keyspace owner. One shard owns one keyspace: its MVCC state and its
//! log. It runs as a single local task on its core; every other core reaches
//! it through a bounded channel of requests, each with a one-shot reply.
//!
//! Writes are ordered here, appended to the WAL as log entries, made durable
//! with one fsync per batch (group commit), then applied and acknowledged.
//! While a batch's fsync is in flight the shard keeps serving reads from
//! the applied state and gathers the next batch.
//!
//! Generic over `raftlog::Storage`, so tests drive it over the simulated
//! disk with crashes and torn writes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use engine::{Applied, Command, Limits, Mvcc};
use raftlog::{Storage, Wal};
use tokio::sync::{mpsc, oneshot};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::metrics::METRICS;
use crate::rt::yield_now;
use crate::watch::{StreamId, WatchHub, WatchIn, WatchOut};

/// Requests waiting in a shard's inbox before senders are pushed back.
pub const INBOX_REQUESTS_MAX: usize = 8192;
/// Entries appended under one fsync at most.
pub const BATCH_ENTRIES_MAX: usize = 4096;
/// Messages handled before the shard yields to the core's other tasks.
pub const INBOX_BUDGET_MESSAGES: usize = 256;
/// etcd's default `--watch-progress-notify-interval`.
pub const PROGRESS_NOTIFY_INTERVAL_DEFAULT: Duration = Duration::from_secs(600);
/// The term a new keyspace's log starts in; each start then takes office in
/// the next term.
pub const BOOTSTRAP_TERM: u64 = 1;
/// A checkpoint starts once the records held only in memory (and the WAL)
/// reach this size, in bytes.
pub const CHECKPOINT_BYTES_DEFAULT: u64 = 64 << 20;
/// ... or once this many entries were applied since the last one (etcd's
/// `--snapshot-count` default), in entries.
pub const CHECKPOINT_ENTRIES_DEFAULT: u64 = 100_000;

/// A checkpoint also starts once this many records are held only in
/// memory, bounding the work its plan and install do on the shard's
/// thread, in records.
pub const CHECKPOINT_RECORDS_MAX: usize = 65_536;

/// When the shard checkpoints its state into the revision store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub bytes: u64,
    pub entries: u64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            bytes: CHECKPOINT_BYTES_DEFAULT,
            entries: CHECKPOINT_ENTRIES_DEFAULT,
        }
    }
}

/// What the shard answers besides the operation's own result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revisioned<T> {
    pub value: T,
    /// The store's revision once the operation was applied (header.revision).
    pub revision: i64,
    pub raft_term: u64,
}

/// Truthful numbers for Maintenance.Status and the benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStatus {
    pub revision: i64,
    pub compact_revision: i64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub applied_index: u64,
    pub db_size_bytes: u64,
    pub db_size_in_use_bytes: u64,
    /// Raised alarms, in the order raised.
    pub alarms: Vec<engine::AlarmMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardError {
    Engine(engine::Error),
    /// The encoded command is larger than one log record may be.
    TooLarge,
    /// The shard stopped (fatal storage error or shutdown).
    Stopped,
}

impl From<engine::Error> for ShardError {
    fn from(e: engine::Error) -> Self {
        ShardError::Engine(e)
    }
}

type Reply<T> = oneshot::Sender<Result<Revisioned<T>, ShardError>>;

enum Request {
    Range(engine::RangeRequest, Reply<engine::RangeResponse>),
    Write(Command, Reply<Applied>),
    /// A transaction of reads only: applied to the current state, no log.
    ReadTxn(engine::TxnRequest, Reply<Applied>),
    Status(oneshot::Sender<ShardStatus>),
    HashKv(i64, Reply<engine::HashKv>),
    Hash(Reply<u32>),
    /// Time passes: drives lease expiry, watch catch-up and progress
    /// notifications. The shard never reads the clock itself.
    Tick(Instant),
    WatchOpen(oneshot::Sender<(StreamId, mpsc::Receiver<WatchOut>)>),
    Watch(StreamId, WatchIn, oneshot::Sender<()>),
    WatchClose(StreamId),
    LeaseKeepAlive(i64, Instant, Reply<i64>),
    LeaseTimeToLive(i64, bool, Instant, Reply<LeaseInfo>),
    Leases(Reply<Vec<i64>>),
    Alarms(Reply<Vec<engine::AlarmMember>>),
    /// Maintenance.Defragment: reclaim every dead byte, online.
    Defragment(oneshot::Sender<()>),
}

/// Lease.TimeToLive's answer; `ttl_secs = -1` for an unknown lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    pub ttl_secs: i64,
    pub granted_ttl_secs: i64,
    pub keys: Vec<Vec<u8>>,
}

/// The `Send + Sync` way to a shard, held by every core's services.
#[derive(Clone)]
pub struct ShardHandle {
    tx: mpsc::Sender<Request>,
    term: Arc<AtomicU64>,
    /// A NOSPACE alarm is raised (read on every write, so not a request).
    nospace: Arc<AtomicBool>,
}

/// The receiving end, moved into the shard's task.
pub struct Inbox {
    rx: mpsc::Receiver<Request>,
    term: Arc<AtomicU64>,
    nospace: Arc<AtomicBool>,
}

pub fn channel() -> (ShardHandle, Inbox) {
    let (tx, rx) = mpsc::channel(INBOX_REQUESTS_MAX);
    let term = Arc::new(AtomicU64::new(0));
    let nospace = Arc::new(AtomicBool::new(false));
    (
        ShardHandle {
            tx,
            term: term.clone(),
            nospace: nospace.clone(),
        },
        Inbox { rx, term, nospace },
    )
}

impl ShardHandle {
    /// Whether a NOSPACE alarm is raised.
    pub fn nospace(&self) -> bool {
        self.nospace.load(Ordering::Relaxed)
    }

    /// The raised alarms, in the order raised.
    pub async fn alarms(&self) -> Result<Revisioned<Vec<engine::AlarmMember>>, ShardError> {
        self.ask(Request::Alarms).await?
    }

    /// The keyspace's current Raft term (0 before its shard runs).
    pub fn raft_term(&self) -> u64 {
        self.term.load(Ordering::Relaxed)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, ShardError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ShardError::Stopped)?;
        rx.await.map_err(|_| ShardError::Stopped)
    }

    pub async fn range(
        &self,
        req: engine::RangeRequest,
    ) -> Result<Revisioned<engine::RangeResponse>, ShardError> {
        self.ask(|tx| Request::Range(req, tx)).await?
    }

    /// Logs, fsyncs, applies and answers one write.
    pub async fn write(&self, cmd: Command) -> Result<Revisioned<Applied>, ShardError> {
        self.ask(|tx| Request::Write(cmd, tx)).await?
    }

    pub async fn read_txn(
        &self,
        txn: engine::TxnRequest,
    ) -> Result<Revisioned<Applied>, ShardError> {
        self.ask(|tx| Request::ReadTxn(txn, tx)).await?
    }

    pub async fn status(&self) -> Result<ShardStatus, ShardError> {
        self.ask(Request::Status).await
    }

    pub async fn hash_kv(&self, revision: i64) -> Result<Revisioned<engine::HashKv>, ShardError> {
        self.ask(|tx| Request::HashKv(revision, tx)).await?
    }

    pub async fn hash(&self) -> Result<Revisioned<u32>, ShardError> {
        self.ask(Request::Hash).await?
    }

    /// Offers a clock tick without waiting; a full inbox skips it.
    pub fn tick(&self, now: Instant) {
        let _ = self.tx.try_send(Request::Tick(now));
    }

    pub async fn watch_open(&self) -> Result<(StreamId, mpsc::Receiver<WatchOut>), ShardError> {
        self.ask(Request::WatchOpen).await
    }

    /// Sends a stream's request; returns when the stream may send the next
    /// one (held while its replies back up, as etcd pushes back).
    pub async fn watch(&self, stream: StreamId, req: WatchIn) -> Result<(), ShardError> {
        self.ask(|tx| Request::Watch(stream, req, tx)).await
    }

    /// Closes a watch stream; never waits (it runs from drop paths).
    pub fn watch_close(&self, stream: StreamId) {
        let tx = self.tx.clone();
        if let Err(mpsc::error::TrySendError::Full(req)) = tx.try_send(Request::WatchClose(stream))
        {
            // The stream's outbox is dropped with its receiver, so the
            // shard also notices on its next send; retry off the hot path.
            std::thread::spawn(move || {
                let _ = tx.blocking_send(req);
            });
        }
    }

    /// The lease's TTL after the refresh, or 0 if it does not exist.
    pub async fn lease_keep_alive(
        &self,
        id: i64,
        now: Instant,
    ) -> Result<Revisioned<i64>, ShardError> {
        self.ask(|tx| Request::LeaseKeepAlive(id, now, tx)).await?
    }

    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
        now: Instant,
    ) -> Result<Revisioned<LeaseInfo>, ShardError> {
        self.ask(|tx| Request::LeaseTimeToLive(id, keys, now, tx))
            .await?
    }

    pub async fn leases(&self) -> Result<Revisioned<Vec<i64>>, ShardError> {
        self.ask(Request::Leases).await?
    }

    /// Asks for every segment holding dead bytes to be rewritten by the
    /// next checkpoint, which starts at once if none is running. Returns
    /// without waiting for it: reads and writes go on meanwhile.
    pub async fn defragment(&self) -> Result<(), ShardError> {
        self.ask(Request::Defragment).await
    }
}

type SyncFuture<S> = Pin<Box<dyn Future<Output = (Wal<S>, Result<u64, raftlog::WalError>)>>>;
type CheckpointFuture = Pin<
    Box<dyn Future<Output = Result<crate::revstore::Written, crate::revstore::CheckpointError>>>,
>;

/// What woke the shard's loop.
enum Wake<S: Storage> {
    Request(Request),
    InboxClosed,
    Synced(Wal<S>, Result<u64, raftlog::WalError>),
    Checkpointed(Result<crate::revstore::Written, crate::revstore::CheckpointError>),
}

pub struct Shard<S: Storage + 'static> {
    mvcc: Mvcc,
    limits: Limits,
    /// `None` while a sync owns it.
    wal: Option<Wal<S>>,
    term: u64,
    /// Index of the last entry handed to the WAL.
    last_index: u64,
    applied_index: u64,
    /// Writes waiting for the next sync.
    pending: Vec<(Command, Reply<Applied>)>,
    /// Writes whose sync is in flight, in log order.
    syncing: Vec<(Command, Reply<Applied>)>,
    sync_started: Option<std::time::Instant>,
    watch: WatchHub,
    /// The latest time the shard was told.
    now: Option<Instant>,
    /// Leader-local lease deadlines (etcd keeps them in memory too: after a
    /// restart every lease gets its full TTL again).
    lease_deadlines: HashMap<i64, Instant>,
    /// Leases whose expiry revoke is in the log but not yet applied.
    lease_revoking: HashSet<i64>,
    last_progress_notify: Option<Instant>,
    progress_notify_interval: Duration,
    /// Where the NOSPACE flag is published (set once running).
    nospace: Option<Arc<AtomicBool>>,
    /// The locked data directory, held for as long as the shard lives.
    data_dir: Option<crate::datadir::DataDir>,
    /// Whether the leases recovered from the log (or granted before the
    /// shard knew the time) have their deadlines yet.
    lease_deadlines_seeded: bool,
    /// The revision store's directory.
    store: S,
    checkpoint_policy: CheckpointPolicy,
    /// The checkpoint being written, if any.
    checkpoint: Option<CheckpointFuture>,
    /// The applied index the last durable checkpoint covers.
    checkpointed_index: u64,
    /// WAL entries below this index are covered by a checkpoint; the next
    /// sync releases their segments.
    wal_release_before: Option<u64>,
    /// Maintenance.Defragment asked for a full reclaim.
    reclaim_all: bool,
    /// Something happened that may make segments worth reclaiming (a
    /// compaction, an installed checkpoint, the start): the policy is
    /// evaluated once, not on every turn of the loop.
    reclaim_check: bool,
    /// After a checkpoint failed for want of space, none is tried before
    /// this applied index.
    checkpoint_retry_at: u64,
}

impl Shard<crate::disk::DirStorage> {
    /// Opens the shard of a data directory, replaying its WAL.
    pub async fn open_dir(
        dir: crate::datadir::DataDir,
        txn_ops_max: usize,
    ) -> Result<Self, String> {
        let storage = crate::disk::DirStorage::open(&dir.wal_dir())
            .await
            .map_err(|e| format!("{}: {e}", dir.wal_dir().display()))?;
        let store = crate::disk::DirStorage::open(&dir.store_dir())
            .await
            .map_err(|e| format!("{}: {e}", dir.store_dir().display()))?;
        let mut shard = Shard::open(storage, store, Limits { txn_ops_max }).await?;
        shard.data_dir = Some(dir);
        Ok(shard)
    }
}

impl<S: Storage + Clone + 'static> Shard<S> {
    /// Opens the revision store at its newest checkpoint, then replays the
    /// WAL entries after it. `store` may be the same directory as the WAL's
    /// (their file names differ) or another.
    pub async fn open(storage: S, store: S, limits: Limits) -> Result<Self, String> {
        let (mut mvcc, manifest) = crate::revstore::open(&store).await?;
        let (checkpointed_index, checkpointed_term) = manifest
            .as_ref()
            .map_or((0, 0), |m| (m.applied_index, m.applied_term));
        let (wal, recovered) = Wal::open(storage).await.map_err(|e| e.to_string())?;
        if let Some(t) = &recovered.truncated_tail {
            tracing::warn!(
                "WAL: truncated a torn last write in {} at offset {} ({} bytes dropped)",
                t.file,
                t.offset,
                t.bytes_dropped
            );
        }
        if wal.last_index() < checkpointed_index {
            return Err(format!(
                "the checkpoint covers entry {checkpointed_index} but the WAL ends at {}: \
                 the WAL lost acknowledged entries",
                wal.last_index()
            ));
        }
        if recovered
            .entries
            .first()
            .is_some_and(|e| e.index > checkpointed_index + 1)
        {
            return Err(format!(
                "the WAL starts at entry {} but the checkpoint covers only up to {checkpointed_index}",
                recovered.entries[0].index
            ));
        }
        let mut last_term = checkpointed_term;
        let mut last_index = checkpointed_index;
        let mut replayed = 0u64;
        for entry in &recovered.entries {
            last_term = last_term.max(entry.term);
            if entry.index <= checkpointed_index {
                continue;
            }
            last_index = entry.index;
            replayed += 1;
            if entry.payload.is_empty() {
                // A new term's empty entry, as a Raft leader appends.
                continue;
            }
            let cmd = Command::decode(&entry.payload).map_err(|e| {
                format!(
                    "WAL entry {} (term {}) does not decode: {e:?}",
                    entry.index, entry.term
                )
            })?;
            // Failed commands fail again identically: apply is deterministic.
            if mvcc.apply(&cmd) == Err(engine::Error::Corrupt) {
                let c = mvcc.take_corruption();
                return Err(format!(
                    "replaying WAL entry {}: {}",
                    entry.index,
                    c.map_or_else(|| "corrupt".to_string(), |c| c.to_string())
                ));
            }
            mvcc.skip_events();
        }
        assert_eq!(
            last_index,
            wal.last_index(),
            "replayed every recovered entry"
        );
        // Each start takes office in a new term with an empty entry, as a
        // Raft leader does; a fresh member is at term 2, like etcd's.
        let mut wal = wal;
        let term = last_term.max(BOOTSTRAP_TERM) + 1;
        last_index += 1;
        wal.append(term, last_index, &[]);
        wal.sync().await.map_err(|e| e.to_string())?;
        let st = mvcc.store_stats();
        tracing::info!(
            "keyspace recovered: checkpoint at entry {checkpointed_index} ({} segments, {} bytes), \
             {replayed} WAL entries replayed, revision {}, term {term}",
            st.segments,
            st.file_bytes,
            mvcc.current_revision()
        );
        METRICS
            .wal_entries_replayed
            .store(replayed, Ordering::Relaxed);
        Ok(Shard {
            mvcc,
            limits,
            wal: Some(wal),
            term,
            last_index,
            applied_index: last_index,
            pending: Vec::new(),
            syncing: Vec::new(),
            sync_started: None,
            data_dir: None,
            lease_deadlines_seeded: false,
            watch: WatchHub::default(),
            now: None,
            lease_deadlines: HashMap::new(),
            lease_revoking: HashSet::new(),
            last_progress_notify: None,
            progress_notify_interval: PROGRESS_NOTIFY_INTERVAL_DEFAULT,
            nospace: None,
            store,
            checkpoint_policy: CheckpointPolicy::default(),
            checkpoint: None,
            checkpointed_index,
            wal_release_before: None,
            reclaim_all: false,
            reclaim_check: true,
            checkpoint_retry_at: 0,
        })
    }

    /// When to checkpoint (see [`CheckpointPolicy`]).
    pub fn set_checkpoint_policy(&mut self, policy: CheckpointPolicy) {
        assert!(
            policy.bytes > 0 && policy.entries > 0,
            "a checkpoint policy of zero"
        );
        self.checkpoint_policy = policy;
    }

    /// etcd's `--watch-progress-notify-interval`.
    pub fn set_progress_notify_interval(&mut self, interval: Duration) {
        self.progress_notify_interval = interval;
    }

    pub fn mvcc(&self) -> &Mvcc {
        &self.mvcc
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Serves the inbox until every handle is gone. A storage error ends the
    /// shard at once with the error, before anything more is acknowledged;
    /// the caller must stop the process: an fsync is never retried.
    pub async fn run(mut self, mut inbox: Inbox) -> Result<(), String> {
        inbox.term.store(self.term, Ordering::Relaxed);
        self.nospace = Some(inbox.nospace.clone());
        self.publish_alarms();
        let mut inflight: Option<SyncFuture<S>> = None;
        let mut open = true;
        while open || inflight.is_some() || !self.pending.is_empty() || self.checkpoint.is_some() {
            // Drain what is already queued, within a budget.
            let mut handled = 0;
            while open && handled < INBOX_BUDGET_MESSAGES && self.pending.len() < BATCH_ENTRIES_MAX
            {
                match inbox.rx.try_recv() {
                    Ok(req) => self.handle(req),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
                handled += 1;
            }
            if inflight.is_none() && !self.pending.is_empty() {
                inflight = Some(self.start_sync());
            }
            if self.checkpoint.is_none() {
                self.maybe_checkpoint();
            }
            if handled == INBOX_BUDGET_MESSAGES {
                yield_now().await;
            }
            // Wait for whichever comes first: a request, the sync, the
            // checkpoint. After a full budget, only poll (never wait).
            let poll_only = handled == INBOX_BUDGET_MESSAGES;
            let wake = std::future::poll_fn(|cx| {
                use std::task::Poll;
                if let Some(fut) = inflight.as_mut() {
                    if let Poll::Ready((wal, result)) = fut.as_mut().poll(cx) {
                        inflight = None;
                        return Poll::Ready(Some(Wake::Synced(wal, result)));
                    }
                }
                if let Some(fut) = self.checkpoint.as_mut() {
                    if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                        self.checkpoint = None;
                        return Poll::Ready(Some(Wake::Checkpointed(result)));
                    }
                }
                if poll_only {
                    return Poll::Ready(None);
                }
                if open {
                    return match inbox.rx.poll_recv(cx) {
                        Poll::Ready(Some(req)) => Poll::Ready(Some(Wake::Request(req))),
                        Poll::Ready(None) => Poll::Ready(Some(Wake::InboxClosed)),
                        Poll::Pending => Poll::Pending,
                    };
                }
                if inflight.is_none() && self.checkpoint.is_none() {
                    // Nothing to wait for: pending writes start a sync on
                    // the next turn of the loop.
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            match wake {
                None => {}
                Some(Wake::Request(req)) => self.handle(req),
                Some(Wake::InboxClosed) => open = false,
                Some(Wake::Synced(wal, result)) => self.finish_sync(wal, result)?,
                Some(Wake::Checkpointed(result)) => self.finish_checkpoint(result)?,
            }
        }
        Ok(())
    }

    /// Starts a checkpoint when the policy says one is due.
    fn maybe_checkpoint(&mut self) {
        debug_assert!(self.checkpoint.is_none());
        if self.applied_index < self.checkpoint_retry_at {
            return;
        }
        let (mem_bytes, mem_records) = self.mvcc.mem_usage();
        let reclaim =
            self.reclaim_all || std::mem::take(&mut self.reclaim_check) && self.mvcc.reclaim_due();
        let due = mem_bytes >= self.checkpoint_policy.bytes
            || mem_records >= CHECKPOINT_RECORDS_MAX
            || self.applied_index - self.checkpointed_index >= self.checkpoint_policy.entries
            || reclaim;
        if !due {
            return;
        }
        let reclaim_all = std::mem::take(&mut self.reclaim_all);
        let plan = match self
            .mvcc
            .checkpoint_plan(self.applied_index, self.term, reclaim_all)
        {
            Ok(plan) => plan,
            Err(c) => {
                // Reading a segment's index failed: leave the state as it
                // is (reads of the damaged records answer DataLoss).
                tracing::error!("checkpoint not started: {c}");
                self.mvcc.checkpoint_abandon();
                self.checkpoint_retry_at = self.applied_index + self.checkpoint_policy.entries;
                return;
            }
        };
        tracing::debug!(
            "checkpoint at entry {}: {} records ({} bytes), retiring {} segments",
            self.applied_index,
            plan.items.len(),
            plan.record_bytes(),
            plan.retired.len()
        );
        let store = self.store.clone();
        self.checkpoint = Some(Box::pin(crate::revstore::write(store, plan)));
    }

    fn finish_checkpoint(
        &mut self,
        result: Result<crate::revstore::Written, crate::revstore::CheckpointError>,
    ) -> Result<(), String> {
        use crate::revstore::CheckpointError;
        let written = match result {
            Ok(w) => w,
            Err(CheckpointError::Write(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                // Nothing was synced: the state and the WAL are intact. Try
                // again after as many entries again as the policy allows.
                tracing::error!("checkpoint abandoned: disk full: {e}");
                self.mvcc.checkpoint_abandon();
                self.checkpoint_retry_at = self.applied_index + self.checkpoint_policy.entries;
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        self.mvcc
            .checkpoint_install(written.segment, &written.placed);
        let covered = written.manifest.applied_index;
        assert!(
            covered >= self.checkpointed_index,
            "checkpoints never go backwards"
        );
        self.checkpointed_index = covered;
        self.wal_release_before = Some(covered + 1);
        self.reclaim_check = true;
        METRICS.checkpoints.fetch_add(1, Ordering::Relaxed);
        METRICS
            .checkpoint_bytes
            .fetch_add(written.bytes, Ordering::Relaxed);
        self.publish_sizes();
        Ok(())
    }

    /// Logs damage a read met; the read itself answered DataLoss.
    fn log_corruption(&self) {
        if let Some(c) = self.mvcc.take_corruption() {
            tracing::error!("{c}: the read was refused with \"etcdserver: corrupt cluster\"");
        }
    }

    fn publish_sizes(&self) {
        let st = self.mvcc.store_stats();
        METRICS
            .db_size_bytes
            .store(st.file_bytes + st.mem_bytes, Ordering::Relaxed);
        METRICS
            .db_size_in_use_bytes
            .store(st.live_file_bytes + st.mem_bytes, Ordering::Relaxed);
    }

    fn header<T>(&self, value: T) -> Revisioned<T> {
        Revisioned {
            value,
            revision: self.mvcc.current_revision(),
            raft_term: self.term,
        }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Range(r, reply) => {
                let res = self
                    .mvcc
                    .range(&r)
                    .map(|v| self.header(v))
                    .map_err(ShardError::from);
                self.log_corruption();
                let _ = reply.send(res);
            }
            Request::Write(cmd, reply) => self.pending.push((cmd, reply)),
            Request::ReadTxn(txn, reply) => {
                let rev_before = self.mvcc.current_revision();
                let res = self
                    .mvcc
                    .apply(&Command::Txn(txn))
                    .map(|v| self.header(v))
                    .map_err(ShardError::from);
                assert_eq!(
                    self.mvcc.current_revision(),
                    rev_before,
                    "a read-only txn takes no revision"
                );
                self.log_corruption();
                let _ = reply.send(res);
            }
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::HashKv(rev, reply) => {
                let res = self
                    .mvcc
                    .hash_kv(rev)
                    .map(|v| self.header(v))
                    .map_err(ShardError::from);
                let _ = reply.send(res);
            }
            Request::Hash(reply) => {
                let _ = reply.send(Ok(self.header(self.mvcc.hash())));
            }
            Request::Tick(now) => self.tick(now),
            Request::WatchOpen(reply) => {
                let _ = reply.send(self.watch.open());
            }
            Request::Watch(stream, req, ack) => {
                self.watch
                    .request(stream, req, self.mvcc.current_revision(), ack);
                if self.watch.has_unsynced() {
                    self.watch.catch_up(&self.mvcc);
                }
            }
            Request::WatchClose(stream) => self.watch.close(stream),
            Request::LeaseKeepAlive(id, now, reply) => {
                self.observe(now);
                let ttl = match self.mvcc.lease_ttl(id) {
                    Some(ttl) if !self.lease_revoking.contains(&id) => {
                        self.lease_deadlines
                            .insert(id, now + Duration::from_secs(ttl as u64));
                        ttl
                    }
                    _ => 0,
                };
                let _ = reply.send(Ok(self.header(ttl)));
            }
            Request::LeaseTimeToLive(id, with_keys, now, reply) => {
                self.observe(now);
                let info = match self.mvcc.lease_ttl(id) {
                    Some(granted) => {
                        let remaining = match self.lease_deadlines.get(&id) {
                            Some(d) => d.saturating_duration_since(now).as_secs() as i64,
                            None => granted,
                        };
                        LeaseInfo {
                            id,
                            ttl_secs: remaining,
                            granted_ttl_secs: granted,
                            keys: if with_keys {
                                self.mvcc.lease_keys(id)
                            } else {
                                Vec::new()
                            },
                        }
                    }
                    None => LeaseInfo {
                        id,
                        ttl_secs: -1,
                        granted_ttl_secs: 0,
                        keys: Vec::new(),
                    },
                };
                let _ = reply.send(Ok(self.header(info)));
            }
            Request::Defragment(reply) => {
                self.reclaim_all = true;
                let _ = reply.send(());
            }
            Request::Alarms(reply) => {
                let alarms = self.mvcc.alarms().to_vec();
                let _ = reply.send(Ok(self.header(alarms)));
            }
            Request::Leases(reply) => {
                // etcd lists leases soonest expiry first. A lease granted
                // before the first tick counts from the latest known time.
                let mut by_expiry: Vec<(Option<Instant>, i64, i64)> =
                    self.mvcc
                        .leases()
                        .into_iter()
                        .map(|(id, ttl)| {
                            let deadline =
                                self.lease_deadlines.get(&id).copied().or_else(|| {
                                    self.now.map(|n| n + Duration::from_secs(ttl as u64))
                                });
                            (deadline, ttl, id)
                        })
                        .collect();
                by_expiry.sort();
                let ids = by_expiry.into_iter().map(|(_, _, id)| id).collect();
                let _ = reply.send(Ok(self.header(ids)));
            }
        }
    }

    fn publish_alarms(&self) {
        const NOSPACE: i32 = 1;
        if let Some(flag) = &self.nospace {
            flag.store(
                self.mvcc.alarms().iter().any(|a| a.alarm == NOSPACE),
                Ordering::Relaxed,
            );
        }
    }

    fn observe(&mut self, now: Instant) {
        if self.now.is_none_or(|t| now > t) {
            self.now = Some(now);
        }
    }

    fn tick(&mut self, now: Instant) {
        self.observe(now);
        let now = self.now.expect("just observed");
        // Leases recovered from the log, or granted before the first tick,
        // start their full TTL now; later grants get theirs when applied.
        if !self.lease_deadlines_seeded {
            self.lease_deadlines_seeded = true;
            for (id, ttl) in self.mvcc.leases() {
                self.lease_deadlines
                    .entry(id)
                    .or_insert(now + Duration::from_secs(ttl as u64));
            }
        }
        let expired: Vec<i64> = self
            .lease_deadlines
            .iter()
            .filter(|(id, d)| **d <= now && !self.lease_revoking.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            // Expiry is a logged revoke, like a client's: replay is exact.
            self.lease_revoking.insert(id);
            let (tx, _rx) = oneshot::channel();
            self.pending.push((Command::LeaseRevoke { id }, tx));
        }
        if self.watch.has_unsynced() {
            self.watch.catch_up(&self.mvcc);
        }
        let due = self
            .last_progress_notify
            .is_none_or(|t| now.duration_since(t) >= self.progress_notify_interval);
        if due {
            if self.last_progress_notify.is_some() {
                self.watch.notify_progress(self.mvcc.current_revision());
            }
            self.last_progress_notify = Some(now);
        }
    }

    pub fn status(&self) -> ShardStatus {
        let st = self.mvcc.store_stats();
        ShardStatus {
            revision: self.mvcc.current_revision(),
            compact_revision: self.mvcc.compact_revision(),
            raft_term: self.term,
            raft_index: self.last_index,
            applied_index: self.applied_index,
            db_size_bytes: (st.file_bytes + st.mem_bytes).max(1),
            db_size_in_use_bytes: (st.live_file_bytes + st.mem_bytes).max(1),
            alarms: self.mvcc.alarms().to_vec(),
        }
    }

    fn start_sync(&mut self) -> SyncFuture<S> {
        assert!(self.syncing.is_empty(), "one sync in flight at a time");
        let mut wal = self
            .wal
            .take()
            .expect("WAL is home when no sync is in flight");
        let n = self.pending.len().min(BATCH_ENTRIES_MAX);
        self.syncing.extend(self.pending.drain(..n));
        self.sync_started = Some(std::time::Instant::now());
        let mut batch = std::mem::take(&mut self.syncing);
        batch.retain_mut(|(cmd, reply)| {
            let bytes = cmd.encode();
            if bytes.len() > raftlog::RECORD_PAYLOAD_BYTES_MAX {
                // Only reachable with --max-request-bytes raised past what a
                // log record holds: refuse it like etcd's size limit.
                let (tx, _) = oneshot::channel();
                let _ = std::mem::replace(reply, tx).send(Err(ShardError::TooLarge));
                return false;
            }
            self.last_index += 1;
            wal.append(self.term, self.last_index, &bytes);
            true
        });
        self.syncing = batch;
        let release = self.wal_release_before.take();
        Box::pin(async move {
            if let Some(index) = release {
                // Entries a durable checkpoint covers are no longer needed.
                if let Err(e) = wal.release_before(index).await {
                    return (wal, Err(e));
                }
            }
            let result = wal.sync().await;
            (wal, result)
        })
    }

    fn finish_sync(
        &mut self,
        wal: Wal<S>,
        result: Result<u64, raftlog::WalError>,
    ) -> Result<(), String> {
        match result {
            Ok(durable) => assert_eq!(
                durable, self.last_index,
                "a sync makes every appended entry durable"
            ),
            // Never retry an fsync: the page cache may have dropped the data
            // it failed to write. Stop before acknowledging anything; the
            // replies of the batch are dropped unanswered.
            Err(e) => return Err(format!("WAL sync failed: {e}")),
        }
        self.wal = Some(wal);
        let took = self
            .sync_started
            .take()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        METRICS.record_sync(self.syncing.len() as u64, took);
        for (cmd, reply) in std::mem::take(&mut self.syncing) {
            let rev_before = self.mvcc.current_revision();
            let res = self.mvcc.apply(&cmd);
            if res == Err(engine::Error::Corrupt) {
                // The outcome read damaged bytes: stop before answering.
                let c = self.mvcc.take_corruption();
                return Err(format!(
                    "applying WAL entry {}: {}",
                    self.applied_index + 1,
                    c.map_or_else(|| "corrupt".to_string(), |c| c.to_string())
                ));
            }
            debug_assert!(
                self.mvcc.current_revision() >= rev_before,
                "revisions never go backwards"
            );
            self.applied_index += 1;
            if self.watch.watcher_count() == 0 {
                // Building events reads previous values back (prev_kv);
                // with no watcher nobody would read them. Later watchers
                // catch up from history.
                self.mvcc.skip_events();
            } else {
                let events = self.mvcc.take_events();
                self.watch.publish(self.mvcc.current_revision(), &events);
            }
            match (&cmd, &res) {
                (Command::LeaseGrant { id, ttl_secs }, Ok(_)) => {
                    if let Some(now) = self.now {
                        self.lease_deadlines
                            .insert(*id, now + Duration::from_secs(*ttl_secs as u64));
                    }
                }
                (Command::LeaseRevoke { id }, _) => {
                    self.lease_deadlines.remove(id);
                    self.lease_revoking.remove(id);
                }
                (Command::Alarm { .. }, _) => self.publish_alarms(),
                (Command::Compact(_), Ok(_)) => self.reclaim_check = true,
                _ => {}
            }
            let res = res.map(|v| self.header(v)).map_err(ShardError::from);
            let _ = reply.send(res);
        }
        debug_assert_eq!(self.applied_index, self.last_index);
        if self.watch.has_unsynced() {
            self.watch.catch_up(&self.mvcc);
        }
        METRICS
            .applied_index
            .store(self.applied_index, Ordering::Relaxed);
        METRICS
            .revision
            .store(self.mvcc.current_revision() as u64, Ordering::Relaxed);
        self.publish_sizes();
        Ok(())
    }
}
