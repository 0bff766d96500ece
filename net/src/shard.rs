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

use std::future::Future;
use std::pin::Pin;

use engine::{Applied, Command, Limits, Mvcc};
use futures_util::future::{select, Either};
use raftlog::{Storage, Wal};
use tokio::sync::{mpsc, oneshot};

use std::sync::atomic::Ordering;

use crate::metrics::METRICS;
use crate::rt::yield_now;

/// Requests waiting in a shard's inbox before senders are pushed back.
pub const INBOX_REQUESTS_MAX: usize = 8192;
/// Entries appended under one fsync at most.
pub const BATCH_ENTRIES_MAX: usize = 4096;
/// Messages handled before the shard yields to the core's other tasks.
pub const INBOX_BUDGET_MESSAGES: usize = 256;
/// The Raft term of a single-member keyspace until Raft elections exist.
pub const SINGLE_MEMBER_TERM: u64 = 1;

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
    pub keys: u64,
    pub fsyncs: u64,
    pub entries_synced: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardError {
    Engine(engine::Error),
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
}

/// The `Send + Sync` way to a shard, held by every core's services.
#[derive(Clone)]
pub struct ShardHandle {
    tx: mpsc::Sender<Request>,
}

/// The receiving end, moved into the shard's task.
pub struct Inbox {
    rx: mpsc::Receiver<Request>,
}

pub fn channel() -> (ShardHandle, Inbox) {
    let (tx, rx) = mpsc::channel(INBOX_REQUESTS_MAX);
    (ShardHandle { tx }, Inbox { rx })
}

impl ShardHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, ShardError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| ShardError::Stopped)?;
        rx.await.map_err(|_| ShardError::Stopped)
    }

    pub async fn range(&self, req: engine::RangeRequest) -> Result<Revisioned<engine::RangeResponse>, ShardError> {
        self.ask(|tx| Request::Range(req, tx)).await?
    }

    /// Logs, fsyncs, applies and answers one write.
    pub async fn write(&self, cmd: Command) -> Result<Revisioned<Applied>, ShardError> {
        self.ask(|tx| Request::Write(cmd, tx)).await?
    }

    pub async fn read_txn(&self, txn: engine::TxnRequest) -> Result<Revisioned<Applied>, ShardError> {
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
}

type SyncFuture<S> = Pin<Box<dyn Future<Output = (Wal<S>, Result<u64, raftlog::WalError>)>>>;

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
    fsyncs: u64,
    entries_synced: u64,
    sync_started: Option<std::time::Instant>,
}

impl Shard<crate::disk::DirStorage> {
    /// Opens the shard of a data directory, replaying its WAL.
    pub async fn open_dir(dir: crate::datadir::DataDir, txn_ops_max: usize) -> Result<Self, String> {
        let storage = crate::disk::DirStorage::open(&dir.wal_dir()).await.map_err(|e| format!("{}: {e}", dir.wal_dir().display()))?;
        let shard = Shard::open(storage, Limits { txn_ops_max }).await?;
        // The lock must outlive the process's use of the directory.
        std::mem::forget(dir);
        Ok(shard)
    }
}

impl<S: Storage + 'static> Shard<S> {
    /// Opens the WAL and rebuilds the state by replaying every entry.
    pub async fn open(storage: S, limits: Limits) -> Result<Self, String> {
        let (wal, recovered) = Wal::open(storage).await.map_err(|e| e.to_string())?;
        if let Some(t) = &recovered.truncated_tail {
            tracing::warn!(
                "WAL: truncated a torn last write in {} at offset {} ({} bytes dropped)",
                t.file,
                t.offset,
                t.bytes_dropped
            );
        }
        let mut mvcc = Mvcc::new();
        let mut term = SINGLE_MEMBER_TERM;
        let mut last_index = 0;
        for entry in &recovered.entries {
            let cmd = Command::decode(&entry.payload)
                .map_err(|e| format!("WAL entry {} (term {}) does not decode: {e:?}", entry.index, entry.term))?;
            // Failed commands fail again identically: apply is deterministic.
            let _ = mvcc.apply(&cmd);
            term = term.max(entry.term);
            last_index = entry.index;
        }
        assert_eq!(last_index, wal.last_index(), "replayed every recovered entry");
        tracing::info!(
            "keyspace recovered: {} WAL entries, revision {}",
            recovered.entries.len(),
            mvcc.current_revision()
        );
        Ok(Shard {
            mvcc,
            limits,
            wal: Some(wal),
            term,
            last_index,
            applied_index: last_index,
            pending: Vec::new(),
            syncing: Vec::new(),
            fsyncs: 0,
            entries_synced: 0,
            sync_started: None,
        })
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
        let mut inflight: Option<SyncFuture<S>> = None;
        let mut open = true;
        while open || inflight.is_some() || !self.pending.is_empty() {
            // Drain what is already queued, within a budget.
            let mut handled = 0;
            while open && handled < INBOX_BUDGET_MESSAGES && self.pending.len() < BATCH_ENTRIES_MAX {
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
            if handled == INBOX_BUDGET_MESSAGES {
                yield_now().await;
                // A sync may have finished meanwhile; poll it before waiting.
                if let Some(fut) = inflight.as_mut() {
                    if let std::task::Poll::Ready((wal, result)) = futures_util::poll!(fut.as_mut()) {
                        inflight = None;
                        self.finish_sync(wal, result)?;
                    }
                }
                continue;
            }
            match (inflight.as_mut(), open) {
                (Some(fut), true) => {
                    let recv = std::pin::pin!(inbox.rx.recv());
                    match select(recv, fut.as_mut()).await {
                        Either::Left((Some(req), _)) => self.handle(req),
                        Either::Left((None, _)) => open = false,
                        Either::Right(((wal, result), _)) => {
                            inflight = None;
                            self.finish_sync(wal, result)?;
                        }
                    }
                }
                (Some(fut), false) => {
                    let (wal, result) = fut.as_mut().await;
                    inflight = None;
                    self.finish_sync(wal, result)?;
                }
                (None, true) => match inbox.rx.recv().await {
                    Some(req) => self.handle(req),
                    None => open = false,
                },
                (None, false) => {}
            }
        }
        Ok(())
    }

    fn header<T>(&self, value: T) -> Revisioned<T> {
        Revisioned { value, revision: self.mvcc.current_revision(), raft_term: self.term }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Range(r, reply) => {
                let res = self.mvcc.range(&r).map(|v| self.header(v)).map_err(ShardError::from);
                let _ = reply.send(res);
            }
            Request::Write(cmd, reply) => self.pending.push((cmd, reply)),
            Request::ReadTxn(txn, reply) => {
                let rev_before = self.mvcc.current_revision();
                let res = self.mvcc.apply(&Command::Txn(txn)).map(|v| self.header(v)).map_err(ShardError::from);
                assert_eq!(self.mvcc.current_revision(), rev_before, "a read-only txn takes no revision");
                let _ = reply.send(res);
            }
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::HashKv(rev, reply) => {
                let res = self.mvcc.hash_kv(rev).map(|v| self.header(v)).map_err(ShardError::from);
                let _ = reply.send(res);
            }
            Request::Hash(reply) => {
                let _ = reply.send(Ok(self.header(self.mvcc.hash())));
            }
        }
    }

    pub fn status(&self) -> ShardStatus {
        let in_use = self.mvcc.approx_bytes();
        ShardStatus {
            revision: self.mvcc.current_revision(),
            compact_revision: self.mvcc.compact_revision(),
            raft_term: self.term,
            raft_index: self.last_index,
            applied_index: self.applied_index,
            db_size_bytes: in_use.max(1),
            db_size_in_use_bytes: in_use.max(1),
            keys: self.mvcc.key_count() as u64,
            fsyncs: self.fsyncs,
            entries_synced: self.entries_synced,
        }
    }

    fn start_sync(&mut self) -> SyncFuture<S> {
        assert!(self.syncing.is_empty(), "one sync in flight at a time");
        let mut wal = self.wal.take().expect("WAL is home when no sync is in flight");
        let n = self.pending.len().min(BATCH_ENTRIES_MAX);
        self.syncing.extend(self.pending.drain(..n));
        self.sync_started = Some(std::time::Instant::now());
        for (cmd, _) in &self.syncing {
            self.last_index += 1;
            wal.append(self.term, self.last_index, &cmd.encode());
        }
        Box::pin(async move {
            let result = wal.sync().await;
            (wal, result)
        })
    }

    fn finish_sync(&mut self, wal: Wal<S>, result: Result<u64, raftlog::WalError>) -> Result<(), String> {
        match result {
            Ok(durable) => assert_eq!(durable, self.last_index, "a sync makes every appended entry durable"),
            // Never retry an fsync: the page cache may have dropped the data
            // it failed to write. Stop before acknowledging anything; the
            // replies of the batch are dropped unanswered.
            Err(e) => return Err(format!("WAL sync failed: {e}")),
        }
        self.wal = Some(wal);
        self.fsyncs += 1;
        self.entries_synced += self.syncing.len() as u64;
        let took = self.sync_started.take().map(|t| t.elapsed()).unwrap_or_default();
        METRICS.record_sync(self.syncing.len() as u64, took);
        for (cmd, reply) in std::mem::take(&mut self.syncing) {
            let rev_before = self.mvcc.current_revision();
            let res = self.mvcc.apply(&cmd);
            debug_assert!(self.mvcc.current_revision() >= rev_before, "revisions never go backwards");
            self.applied_index += 1;
            let res = res.map(|v| self.header(v)).map_err(ShardError::from);
            let _ = reply.send(res);
        }
        debug_assert_eq!(self.applied_index, self.last_index);
        METRICS.applied_index.store(self.applied_index, Ordering::Relaxed);
        METRICS.revision.store(self.mvcc.current_revision() as u64, Ordering::Relaxed);
        METRICS.db_size_bytes.store(self.mvcc.approx_bytes(), Ordering::Relaxed);
        Ok(())
    }
}
