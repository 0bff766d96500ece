//! The keyspace owner. One shard owns one keyspace: its MVCC state, its
//! Raft member (`raftlog::raft::RawNode`, group [`GROUP_ID`]) and its log.
//! It runs as a single local task on its core; every other core reaches it
//! through a bounded channel of requests, each with a one-shot reply, and
//! the peer transport delivers Raft messages into a second bounded inbox.
//!
//! The shard drives the Raft core as its module docs prescribe. A client
//! write becomes a proposal (a follower's core forwards it to the leader);
//! each `Ready`'s entries and hard state are written to the WAL and the
//! hard state slots and made durable (one fsync per batch: group commit),
//! only then are its messages sent, then its committed entries are applied
//! and answered by the member that proposed them (matched by the request id
//! carried in the entry). While a `Ready` is being persisted the shard keeps
//! serving reads and proposing, which gathers the next batch. Linearizable
//! reads wait for a ReadIndex confirmation and for the applied index to
//! reach it; serializable reads answer from the applied state at once. A
//! sole voter that leads answers every read at once: every acknowledged
//! write is applied, so that is linearizable.
//!
//! Generic over `raftlog::Storage`, so tests drive it over the simulated
//! disk with crashes and torn writes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use engine::segment::Manifest;
use engine::{Applied, Command, Limits, Mvcc};
use raftlog::raft::{
    self, ConfChange, ConfChangeKind, ConfState, Config as RaftConfig, EntryKind, HardState,
    MessageBody, NodeId, ProposeError, RawNode, Ready, Role, SnapshotMeta, Start,
};
use raftlog::{Storage, Wal};
use tokio::sync::{mpsc, oneshot};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::forward::{Forward, ForwardAnswer, ForwardRequest, FORWARD_GROUP_ID};
use crate::membership::{Member, MemberSet, MembershipError, PeerHealth, HEALTH_INTERVAL};
use crate::metrics::METRICS;
use crate::peer::{Incoming, PeerTransport};
use crate::raftstate::{self, Normal};
use crate::rt::yield_now;
use crate::watch::{StreamId, WatchHub, WatchIn, WatchOut};

/// Requests waiting in a shard's inbox before senders are pushed back.
pub const INBOX_REQUESTS_MAX: usize = 8192;
/// Proposals taken from the inbox before the next `Ready` is handed out.
pub const BATCH_ENTRIES_MAX: usize = 4096;
/// The Raft group of the (single) keyspace.
pub const GROUP_ID: u64 = 0;
/// The member id of a keyspace opened without a cluster ([`Shard::open`]).
pub const SOLO_MEMBER_ID: u64 = 1;
/// A proposal or linearizable read not answered within this many shard
/// ticks (of `server::TICK_INTERVAL`) is answered "request timed out"
/// (etcd's 5 s request timeout plus two election timeouts), in ticks.
pub const REQUEST_TIMEOUT_TICKS: u64 = 70;
/// Requests held while no leader is known, at most, in requests; more are
/// refused with "too many requests".
pub const AWAITING_LEADER_MAX: usize = 4096;
/// A ReadIndex request not confirmed within this many shard ticks is asked
/// again (the leader may have dropped it), in ticks.
pub const READ_RETRY_TICKS: u64 = 5;
/// A member re-proposes its name and client URLs this often until they are
/// applied, in ticks.
pub const PUBLISH_RETRY_TICKS: u64 = 20;
/// Raft messages taken from the peer inbox per turn of the loop.
pub const PEER_BUDGET_MESSAGES: usize = 1024;
/// Raft ticks run for one shard tick at most (after a stall the rest of the
/// elapsed time is dropped), in ticks.
pub const RAFT_TICKS_PER_CALL_MAX: u32 = 10;
/// Messages handled before the shard yields to the core's other tasks.
pub const INBOX_BUDGET_MESSAGES: usize = 256;
/// etcd's default `--watch-progress-notify-interval`.
pub const PROGRESS_NOTIFY_INTERVAL_DEFAULT: Duration = Duration::from_secs(600);
/// The term a new keyspace's log starts in; each start then takes office in
/// the next term.
pub const BOOTSTRAP_TERM: u64 = 1;
/// Requests a follower forwarded to the leader and still waits for, and
/// forwarded requests a leader is still serving, each at most, in requests.
/// More are refused with "too many requests".
pub const FORWARDED_REQUESTS_MAX: usize = 4096;
/// A forwarded request the leader has not answered within this many shard
/// ticks fails with "request timed out" ("no leader" when none is known),
/// like a proposal, in ticks.
pub const FORWARD_TIMEOUT_TICKS: u64 = REQUEST_TIMEOUT_TICKS;
/// A forwarded keep-alive or TimeToLive not answered within this many shard
/// ticks is sent again (the transport may lose it with a connection), in
/// ticks.
pub const FORWARD_RETRY_TICKS: u64 = 5;
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
    /// The leader this member knows of (0 for none).
    pub leader: u64,
    pub is_learner: bool,
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
    /// No leader is known.
    NoLeader,
    /// Only the leader does this (MemberPromote, lease keep-alives).
    NotLeader,
    /// Not answered in time (the proposal or read may have been lost to a
    /// leader change).
    Timeout,
    /// A proposal waited the whole request timeout for a leader (etcd's
    /// proposal then fails with its context's deadline).
    NoLeaderDeadline,
    /// The leader is overloaded with uncommitted entries.
    TooManyRequests,
    /// A learner serves serializable reads only.
    NotForLearner,
    /// MoveLeader to a member that is not a voter.
    BadTransferee,
    /// MoveLeader did not complete within the request timeout.
    TransferTimeout,
    /// A membership change was refused.
    Membership(MembershipError),
}

impl From<engine::Error> for ShardError {
    fn from(e: engine::Error) -> Self {
        ShardError::Engine(e)
    }
}

type Reply<T> = oneshot::Sender<Result<Revisioned<T>, ShardError>>;

enum Request {
    MoveLeader(NodeId, Reply<()>),
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
    /// The member list and the leader; `true` for a linearizable list
    /// (read through a ReadIndex round, as etcd does).
    Members(bool, Reply<ClusterView>),
    /// A membership change; answered with the members after it.
    MemberChange(MemberOp, Reply<MemberChanged>),
}

/// A membership change a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOp {
    /// MemberAdd, with the request's time for etcd's member id.
    Add {
        peer_urls: Vec<String>,
        is_learner: bool,
        now_unix_secs: i64,
    },
    Remove {
        id: u64,
    },
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
    Promote {
        id: u64,
    },
}

/// The members as this member knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub members: Vec<Member>,
    /// 0 while no leader is known.
    pub leader: u64,
}

/// A membership change's answer: the member it was about, and the members
/// after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChanged {
    pub member: Member,
    pub members: Vec<Member>,
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
    /// The leader's member id, 0 while none is known (read by every request
    /// that asks for one, so not a request).
    leader: Arc<AtomicU64>,
    /// A NOSPACE alarm is raised (read on every write, so not a request).
    nospace: Arc<AtomicBool>,
}

/// The leader a shard publishes: its member id, 0 while none is known.
#[derive(Clone)]
pub struct LeaderFlag(Arc<AtomicU64>);

impl LeaderFlag {
    pub fn has_leader(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }
}

/// The receiving end, moved into the shard's task.
pub struct Inbox {
    rx: mpsc::Receiver<Request>,
    term: Arc<AtomicU64>,
    leader: Arc<AtomicU64>,
    nospace: Arc<AtomicBool>,
}

pub fn channel() -> (ShardHandle, Inbox) {
    let (tx, rx) = mpsc::channel(INBOX_REQUESTS_MAX);
    let term = Arc::new(AtomicU64::new(0));
    let leader = Arc::new(AtomicU64::new(0));
    let nospace = Arc::new(AtomicBool::new(false));
    (
        ShardHandle {
            tx,
            term: term.clone(),
            leader: leader.clone(),
            nospace: nospace.clone(),
        },
        Inbox {
            rx,
            term,
            leader,
            nospace,
        },
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

    /// Whether the keyspace's member knows a leader (false before its shard
    /// runs).
    pub fn has_leader(&self) -> bool {
        self.leader_flag().has_leader()
    }

    /// The published leader alone, for a watcher that must not keep the
    /// shard's inbox open.
    pub fn leader_flag(&self) -> LeaderFlag {
        LeaderFlag(self.leader.clone())
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

    /// The member list and the leader.
    pub async fn members(&self, linearizable: bool) -> Result<Revisioned<ClusterView>, ShardError> {
        self.ask(|tx| Request::Members(linearizable, tx)).await?
    }

    /// Maintenance.MoveLeader: hands leadership to voter `target` and waits
    /// until it leads. Only the leader takes it.
    pub async fn move_leader(&self, target: u64) -> Result<Revisioned<()>, ShardError> {
        self.ask(|tx| Request::MoveLeader(target, tx)).await?
    }

    /// Proposes a membership change and waits until it is applied.
    pub async fn member_change(
        &self,
        op: MemberOp,
    ) -> Result<Revisioned<MemberChanged>, ShardError> {
        self.ask(|tx| Request::MemberChange(op, tx)).await?
    }
}

/// A persisted `Ready`'s outcome: the store reopened when the `Ready`
/// installed a leader's snapshot.
type Persisted = Result<Option<Box<(Mvcc, Manifest)>>, String>;
type PersistFuture<S> = Pin<Box<dyn Future<Output = (Wal<S>, Persisted)>>>;
type CheckpointFuture = Pin<
    Box<dyn Future<Output = Result<crate::revstore::Written, crate::revstore::CheckpointError>>>,
>;

/// What woke the shard's loop.
enum Wake<S: Storage> {
    Request(Request),
    InboxClosed,
    Peer(Incoming),
    Persisted(Wal<S>, Persisted),
    Checkpointed(Result<crate::revstore::Written, crate::revstore::CheckpointError>),
}

/// How the keyspace's Raft member is set up.
pub struct RaftOptions {
    pub member_id: NodeId,
    pub cluster_id: u64,
    /// The founding members when a new cluster is bootstrapped
    /// (`--initial-cluster-state new`); `None` joins a running cluster.
    /// Only used on a first start: afterwards the data is the truth.
    pub bootstrap: Option<MemberSet>,
    /// Election timeout in Raft ticks (`--election-timeout` /
    /// `--heartbeat-interval`).
    pub election_ticks: u32,
    /// One Raft tick (`--heartbeat-interval`).
    pub tick_interval: Duration,
    /// Entries the log keeps behind each checkpoint for slow followers
    /// (`--snapshot-catchup-entries`).
    pub catchup_entries: u64,
    /// This member's name and client URLs, published through the log.
    pub name: String,
    pub client_urls: Vec<String>,
    /// The peer transport and its inbox; `None` for a member without peers.
    pub transport: Option<(PeerTransport, crate::peer::Inbox)>,
    /// etcd's `--strict-reconfig-check`.
    pub strict_reconfig: bool,
    /// Seeds the Raft core's election timeouts.
    pub seed: u64,
}

impl RaftOptions {
    /// A single member that bootstraps its own one-voter cluster, with no
    /// peers: the keyspace of tests and of [`Shard::open`].
    pub fn solo() -> RaftOptions {
        let mut set = MemberSet::new(0);
        set.apply_add(Member {
            id: SOLO_MEMBER_ID,
            name: String::new(),
            peer_urls: Vec::new(),
            client_urls: Vec::new(),
            is_learner: false,
        })
        .expect("an empty set takes a member");
        RaftOptions {
            member_id: SOLO_MEMBER_ID,
            cluster_id: 0,
            bootstrap: Some(set),
            election_ticks: raft::ELECTION_TICKS_DEFAULT,
            tick_interval: Duration::from_millis(100),
            catchup_entries: 5000,
            name: String::new(),
            client_urls: Vec::new(),
            transport: None,
            strict_reconfig: true,
            seed: 0,
        }
    }
}

/// A read that waits for a linearizable read point.
enum ReadOp {
    Range(engine::RangeRequest, Reply<engine::RangeResponse>),
    Txn(engine::TxnRequest, Reply<Applied>),
    /// MemberList with `linearizable` set.
    Members(Reply<ClusterView>),
}

/// A proposal this member made and answers once applied.
enum Waiter {
    Write(Reply<Applied>),
    Member(Reply<MemberChanged>),
}

pub struct Shard<S: Storage + 'static> {
    mvcc: Mvcc,
    limits: Limits,
    /// `None` while a persist owns it.
    wal: Option<Wal<S>>,
    /// The WAL's directory (the hard state slots live there too).
    wal_dir: S,
    node: RawNode,
    id: NodeId,
    members: MemberSet,
    transport: Option<PeerTransport>,
    peer_inbox: Option<crate::peer::Inbox>,
    strict_reconfig: bool,
    name: String,
    client_urls: Vec<String>,
    catchup_entries: u64,
    tick_interval: Duration,
    last_raft_tick: Option<Instant>,
    /// Shard ticks since start (the request timeouts' clock).
    ticks: u64,
    /// The last hard state made durable, and its slot sequence number.
    durable_hs: HardState,
    hs_seq: u64,
    /// The `Ready` whose entries and hard state are being persisted.
    in_ready: Option<Ready>,
    persist_started: Option<std::time::Instant>,
    /// Entries the persist in flight writes.
    persist_entries: u64,
    proposed_since_ready: usize,
    next_request: u64,
    /// Proposals of this member waiting to be applied: request id to the
    /// waiter and the tick it was proposed at.
    waiting: HashMap<u64, (Waiter, u64)>,
    /// Linearizable reads not yet sent as a ReadIndex request.
    read_queue: Vec<(ReadOp, u64)>,
    /// ReadIndex requests in flight: ctx to the reads and the tick sent.
    reads_in_flight: HashMap<u64, (Vec<(ReadOp, u64)>, u64)>,
    next_read_ctx: u64,
    /// Reads with a confirmed read point, waiting for the applied index.
    reads_ready: Vec<(u64, ReadOp, u64)>,
    next_publish_tick: u64,
    /// This member applied its own removal.
    removed: bool,
    /// A leader's snapshot received and checked, until the node takes it
    /// (its `Ready` installs it) or passes it over.
    received_snapshot: Option<crate::snapshot::Received>,
    /// A received snapshot waits here while a checkpoint is being written
    /// into the store it would replace.
    deferred_snapshot: Option<crate::snapshot::Received>,
    /// MoveLeader requests waiting for their transferee to lead: target,
    /// reply, and the tick asked.
    leader_transfers: Vec<(NodeId, Reply<()>, u64)>,
    /// Snapshots this leader is streaming: to whom, at which entry.
    snapshots_sending: Vec<(NodeId, u64, crate::peer::SnapshotPending)>,
    applied_index: u64,
    /// The term of the entry at `applied_index`, named in checkpoints.
    applied_term: u64,
    watch: WatchHub,
    /// The latest time the shard was told.
    now: Option<Instant>,
    /// Leader-local lease deadlines (etcd keeps them in memory too: after a
    /// restart, or a new leader, every lease gets its full TTL again).
    lease_deadlines: HashMap<i64, Instant>,
    /// Leases whose expiry revoke is in the log but not yet applied.
    lease_revoking: HashSet<i64>,
    /// Requests forwarded to the leader, and forwarded requests served.
    forwarding: Forwarding,
    last_progress_notify: Option<Instant>,
    progress_notify_interval: Duration,
    /// Where the NOSPACE flag is published (set once running).
    nospace: Option<Arc<AtomicBool>>,
    /// Where the term is published (set once running).
    term_flag: Option<Arc<AtomicU64>>,
    /// Where the leader's id is published (set once running).
    leader_flag: Option<Arc<AtomicU64>>,
    /// Requests that need a leader, held while none is known, with the
    /// tick each arrived: as etcd holds a proposal or a linearizable read
    /// until a leader is elected or the request timeout passes.
    awaiting_leader: VecDeque<(Request, u64)>,
    /// The locked data directory, held for as long as the shard lives.
    data_dir: Option<crate::datadir::DataDir>,
    /// Whether the leases recovered from the log (or granted before the
    /// shard knew the time) have their deadlines yet.
    lease_deadlines_seeded: bool,
    /// The revision store's directory.
    store: S,
    checkpoint_policy: CheckpointPolicy,
    /// The persist of a `Ready` in flight, if any.
    persisting: Option<PersistFuture<S>>,
    /// The checkpoint being written, if any, and the configuration it
    /// records.
    checkpoint: Option<CheckpointFuture>,
    checkpoint_conf: ConfState,
    /// The newest durable manifest: what a lagging follower is sent.
    manifest: Option<Manifest>,
    /// WAL entries below this index are covered by a checkpoint; the next
    /// persist releases their segments.
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
        raft: RaftOptions,
    ) -> Result<Self, String> {
        let storage = crate::disk::DirStorage::open(&dir.wal_dir())
            .await
            .map_err(|e| format!("{}: {e}", dir.wal_dir().display()))?;
        let store = crate::disk::DirStorage::open(&dir.store_dir())
            .await
            .map_err(|e| format!("{}: {e}", dir.store_dir().display()))?;
        let mut shard = Shard::open_raft(storage, store, Limits { txn_ops_max }, raft).await?;
        shard.data_dir = Some(dir);
        Ok(shard)
    }
}

/// A member's peer URLs as the transport dials them: normalized (a
/// MemberUpdate keeps them as the client gave them, as etcd does).
fn dial_urls(urls: &[String]) -> Vec<String> {
    crate::membership::normalize_urls(urls).unwrap_or_else(|_| urls.to_vec())
}

/// The index up to which a restarted member knows its log committed, beyond
/// the stored commit index (see `raftstate`): the last bootstrap entry (term
/// 1) and the last-but-one conf change.
fn commit_floor(entries: &[raft::Entry]) -> u64 {
    let bootstrap = entries
        .iter()
        .take_while(|e| e.term <= 1)
        .last()
        .map_or(0, |e| e.index);
    let mut confs = entries
        .iter()
        .rev()
        .filter(|e| e.kind == EntryKind::ConfChange);
    confs.next();
    let before_last = confs.next().map_or(0, |e| e.index);
    bootstrap.max(before_last)
}

/// What applying one entry to the state machine did, for the live path.
enum Effect {
    None,
    Command {
        origin: NodeId,
        request: u64,
        command: Command,
        result: Result<Applied, engine::Error>,
    },
    Conf(ConfChange),
    UpdatePeers {
        origin: NodeId,
        request: u64,
        member: Member,
        result: Result<(), MembershipError>,
    },
}

/// Applies a normal entry to the state machine and the member set; a conf
/// change is returned for the caller to apply. Deterministic.
fn apply_entry_state(
    mvcc: &mut Mvcc,
    members: &mut MemberSet,
    e: &raft::Entry,
) -> Result<Effect, String> {
    if e.kind == EntryKind::ConfChange {
        // The core skips a conf change it cannot decode; so do we.
        return Ok(ConfChange::decode(&e.data).map_or(Effect::None, Effect::Conf));
    }
    let normal =
        raftstate::decode_normal(&e.data).map_err(|err| format!("entry {}: {err}", e.index))?;
    Ok(match normal {
        Normal::Noop => Effect::None,
        Normal::Command {
            origin,
            request,
            command,
        } => {
            let command = Command::decode(command).map_err(|err| {
                format!(
                    "entry {} (term {}) does not decode: {err:?}",
                    e.index, e.term
                )
            })?;
            // Failed commands fail again identically: apply is deterministic.
            let result = mvcc.apply(&command);
            if result == Err(engine::Error::Corrupt) {
                let c = mvcc.take_corruption();
                return Err(format!(
                    "applying entry {}: {}",
                    e.index,
                    c.map_or_else(|| "corrupt".to_string(), |c| c.to_string())
                ));
            }
            Effect::Command {
                origin,
                request,
                command,
                result,
            }
        }
        Normal::Attributes(m) => {
            let _ = members.apply_attributes(m.id, &m.name, &m.client_urls);
            Effect::None
        }
        Normal::UpdatePeers {
            origin,
            request,
            member,
        } => {
            let result = members.apply_update_peer_urls(member.id, &member.peer_urls);
            Effect::UpdatePeers {
                origin,
                request,
                member,
                result,
            }
        }
    })
}

/// Applies a committed conf change to the member set. `Ok(Some(member))`
/// when the set changed; an `Err` is a refusal every member makes alike
/// (the Raft change then becomes a no-op).
fn apply_conf_members(
    members: &mut MemberSet,
    cc: &ConfChange,
) -> Result<Option<Member>, MembershipError> {
    let ctx = raftstate::decode_conf_context(&cc.context).unwrap_or_else(|e| {
        tracing::warn!("conf change for {:x}: {e}", cc.node);
        None
    });
    match cc.kind {
        ConfChangeKind::AddVoter | ConfChangeKind::AddLearner => {
            let Some((_, _, mut m)) = ctx else {
                return Ok(None);
            };
            if m.id != cc.node {
                return Err(MembershipError::IdNotFound);
            }
            m.is_learner = cc.kind == ConfChangeKind::AddLearner;
            members.apply_add(m.clone())?;
            Ok(Some(m))
        }
        ConfChangeKind::Remove => members.apply_remove(cc.node).map(Some),
        ConfChangeKind::PromoteLearner => {
            members.apply_promote(cc.node)?;
            Ok(members.member(cc.node).cloned())
        }
    }
}

/// The origin and request id of a conf change, if it carries them.
fn conf_origin(cc: &ConfChange) -> Option<(NodeId, u64)> {
    raftstate::decode_conf_context(&cc.context)
        .ok()
        .flatten()
        .map(|(o, r, _)| (o, r))
}

fn propose_error(e: ProposeError) -> ShardError {
    match e {
        ProposeError::NotLeader { .. } => ShardError::NoLeader,
        ProposeError::TooLarge { .. } => ShardError::TooLarge,
        ProposeError::Overloaded => ShardError::TooManyRequests,
        ProposeError::TransferInProgress { .. } | ProposeError::ConfChangePending => {
            ShardError::Timeout
        }
        ProposeError::InvalidConfChange(why) => {
            tracing::warn!("membership change refused by Raft: {why}");
            ShardError::Membership(MembershipError::IdNotFound)
        }
    }
}

impl<S: Storage + Clone + 'static> Shard<S> {
    /// Opens a one-member keyspace ([`RaftOptions::solo`]): the revision
    /// store at its newest checkpoint, then the WAL entries after it.
    /// `store` may be the same directory as the WAL's (their file names
    /// differ) or another.
    pub async fn open(storage: S, store: S, limits: Limits) -> Result<Self, String> {
        Shard::open_raft(storage, store, limits, RaftOptions::solo()).await
    }

    /// Opens the revision store at its newest checkpoint, replays the WAL
    /// entries after it that are known committed, and starts the Raft
    /// member: bootstrapping or joining on a first start, restarting
    /// otherwise.
    pub async fn open_raft(
        storage: S,
        store: S,
        limits: Limits,
        opts: RaftOptions,
    ) -> Result<Self, String> {
        let me = opts.member_id;
        let (mut mvcc, manifest) = crate::revstore::open(&store).await?;
        let (checkpointed_index, checkpointed_term) = manifest
            .as_ref()
            .map_or((0, 0), |m| (m.applied_index, m.applied_term));
        let (mut conf, mut members) = match &manifest {
            Some(m) if !m.membership.is_empty() => raftstate::decode_membership(&m.membership)?,
            Some(m) if m.applied_index > 0 => {
                return Err(
                    "the checkpoint holds no Raft membership: it was written by an earlier \
                     kvik whose data this build does not read"
                        .into(),
                )
            }
            _ => (ConfState::default(), MemberSet::new(opts.cluster_id)),
        };
        let (mut wal, mut recovered) = Wal::open(storage.clone())
            .await
            .map_err(|e| e.to_string())?;
        if let Some(index) = raftstate::read_install_marker(&storage).await? {
            // A leader's snapshot was being installed when the process
            // stopped. If its manifest is durable, the store is the
            // snapshot's and the log restarts after it; otherwise the store
            // and the log are as they were. Nothing after the snapshot was
            // acknowledged before the marker went.
            if checkpointed_index == index {
                wal.reset_after(index, checkpointed_term)
                    .await
                    .map_err(|e| format!("restarting the WAL after the snapshot: {e}"))?;
                recovered.entries.clear();
                tracing::info!("finished installing the snapshot at entry {index}");
            } else {
                tracing::info!(
                    "a snapshot install at entry {index} had not completed; the store stays \
                     at entry {checkpointed_index}"
                );
            }
            raftstate::remove_install_marker(&storage).await?;
        }
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
        if wal.first_index() > checkpointed_index + 1 {
            return Err(format!(
                "the WAL starts at entry {} but the checkpoint covers only up to {checkpointed_index}",
                wal.first_index()
            ));
        }
        let mut entries = Vec::with_capacity(recovered.entries.len());
        for e in recovered.entries {
            let (kind, data) = raftstate::from_wal_payload(&e.payload)
                .map_err(|err| format!("WAL entry {} (term {}): {err}", e.index, e.term))?;
            entries.push(raft::Entry {
                term: e.term,
                index: e.index,
                kind,
                data,
            });
        }
        let stored_hs = raftstate::read_hard_state(&storage).await?;
        let fresh = manifest.is_none() && entries.is_empty() && stored_hs.is_none();
        let mut cfg = RaftConfig::new(me, GROUP_ID);
        cfg.election_ticks = opts.election_ticks.max(2);
        cfg.heartbeat_ticks = 1;
        cfg.seed = opts.seed;
        let (start, hs_seq, durable_hs, applied_index, applied_term, replayed) = if fresh {
            match &opts.bootstrap {
                Some(set) => {
                    members = MemberSet::new(set.cluster_id());
                    let founders: Vec<&Member> = set.members().collect();
                    let start = Start::Bootstrap {
                        voters: founders.iter().map(|m| m.id).collect(),
                        contexts: founders
                            .iter()
                            .map(|m| raftstate::conf_context(0, 0, m))
                            .collect(),
                    };
                    (start, 0, HardState::default(), 0, 0, 0)
                }
                None => (Start::Join, 0, HardState::default(), 0, 0, 0),
            }
        } else {
            let last = entries
                .last()
                .map_or((checkpointed_index, checkpointed_term), |e| {
                    (e.index, e.term)
                });
            // Without a stored hard state no message ever left (they leave
            // only after it is durable): no vote to remember.
            let (hs_seq, mut hs) = stored_hs.unwrap_or((
                0,
                HardState {
                    term: last.1,
                    vote: raft::NO_NODE,
                    commit: 0,
                },
            ));
            let durable_hs = hs;
            let mut commit = hs
                .commit
                .max(checkpointed_index)
                .max(commit_floor(&entries))
                .min(last.0);
            let mut applied_term = checkpointed_term;
            let mut replayed = 0u64;
            let mut index = checkpointed_index;
            let replay = |e: &raft::Entry,
                          mvcc: &mut Mvcc,
                          members: &mut MemberSet,
                          conf: &mut ConfState|
             -> Result<(), String> {
                if let Effect::Conf(cc) = apply_entry_state(mvcc, members, e)? {
                    if apply_conf_members(members, &cc).is_ok() {
                        *conf = cc.apply_to(conf);
                    }
                }
                mvcc.skip_events();
                Ok(())
            };
            for e in entries.iter().filter(|e| e.index > checkpointed_index) {
                if e.index > commit {
                    break;
                }
                replay(e, &mut mvcc, &mut members, &mut conf)?;
                index = e.index;
                applied_term = e.term;
                replayed += 1;
            }
            // A sole voter commits its whole log as soon as it leads (its
            // first entry commits everything before it), which it will
            // alone: unless the tail changes the configuration, replay it
            // all now, as a single-member keyspace always did.
            let tail = entries.iter().filter(|e| e.index > commit);
            if conf.voters == [me] && tail.clone().all(|e| e.kind == EntryKind::Normal) {
                for e in tail {
                    replay(e, &mut mvcc, &mut members, &mut conf)?;
                    index = e.index;
                    applied_term = e.term;
                    replayed += 1;
                }
                commit = last.0;
            }
            hs.commit = commit;
            hs.term = hs.term.max(last.1);
            let snapshot = manifest.as_ref().map(|m| SnapshotMeta {
                index: m.applied_index,
                term: m.applied_term,
                conf: raftstate::decode_membership(&m.membership)
                    .map(|(c, _)| c)
                    .unwrap_or_default(),
            });
            cfg.applied = index;
            // Up to `--snapshot-catchup-entries` of the WAL's entries
            // before the checkpoint (the first of them anchors the log) go
            // back into the log too, as the tail a running member keeps, so
            // a member a little behind catches up from the log after a
            // restart, not by snapshot. The WAL may hold more (it is
            // released by whole segments).
            let tail_from = checkpointed_index.saturating_sub(opts.catchup_entries);
            let start = Start::Restart {
                hard_state: hs,
                conf: conf.clone(),
                snapshot,
                entries: entries
                    .into_iter()
                    .filter(|e| e.index >= tail_from)
                    .collect(),
            };
            (start, hs_seq, durable_hs, index, applied_term, replayed)
        };
        let mut node = RawNode::new(cfg, start).map_err(|e| e.to_string())?;
        // etcd's initial election tick advance: a restarted member need not
        // wait a whole election timeout (a sole voter elects itself below).
        if node.conf().voters != [me] {
            for _ in 0..opts.election_ticks.saturating_sub(1) {
                node.tick();
            }
        }
        let st = mvcc.store_stats();
        tracing::info!(
            "keyspace recovered: member {me:x}, checkpoint at entry {checkpointed_index} \
             ({} segments, {} bytes), {replayed} WAL entries replayed, revision {}, term {}, \
             voters {:x?}, learners {:x?}",
            st.segments,
            st.file_bytes,
            mvcc.current_revision(),
            node.term(),
            node.conf().voters,
            node.conf().learners,
        );
        METRICS
            .wal_entries_replayed
            .store(replayed, Ordering::Relaxed);
        let (transport, peer_inbox) = match opts.transport {
            Some((t, i)) => (Some(t), Some(i)),
            None => (None, None),
        };
        let mut shard = Shard {
            mvcc,
            limits,
            wal: Some(wal),
            wal_dir: storage,
            node,
            id: me,
            members,
            transport,
            peer_inbox,
            strict_reconfig: opts.strict_reconfig,
            name: opts.name,
            client_urls: opts.client_urls,
            catchup_entries: opts.catchup_entries,
            tick_interval: opts.tick_interval,
            last_raft_tick: None,
            ticks: 0,
            durable_hs,
            hs_seq,
            in_ready: None,
            persist_started: None,
            persist_entries: 0,
            proposed_since_ready: 0,
            next_request: 1,
            waiting: HashMap::new(),
            read_queue: Vec::new(),
            reads_in_flight: HashMap::new(),
            next_read_ctx: 1,
            reads_ready: Vec::new(),
            next_publish_tick: 0,
            removed: false,
            received_snapshot: None,
            deferred_snapshot: None,
            snapshots_sending: Vec::new(),
            leader_transfers: Vec::new(),
            applied_index,
            watch: WatchHub::default(),
            now: None,
            lease_deadlines: HashMap::new(),
            lease_revoking: HashSet::new(),
            forwarding: Forwarding::default(),
            last_progress_notify: None,
            progress_notify_interval: PROGRESS_NOTIFY_INTERVAL_DEFAULT,
            nospace: None,
            term_flag: None,
            leader_flag: None,
            awaiting_leader: VecDeque::new(),
            data_dir: None,
            lease_deadlines_seeded: false,
            store,
            checkpoint_policy: CheckpointPolicy::default(),
            persisting: None,
            checkpoint: None,
            checkpoint_conf: ConfState::default(),
            manifest,
            applied_term,
            wal_release_before: None,
            reclaim_all: false,
            reclaim_check: true,
            checkpoint_retry_at: 0,
        };
        // Peers known from the membership (the rest arrive with conf
        // changes as they apply).
        let peers: Vec<Member> = shard.members.members().cloned().collect();
        for m in peers {
            shard.add_peer(&m);
        }
        if shard.node.conf().voters == [me] {
            // A sole voter elects itself and persists that (and a
            // bootstrap) before serving, so it answers from its first
            // request on as a single-member keyspace always did. It
            // campaigns only once its configuration entries are applied.
            let election_ticks = shard.node.config().election_ticks;
            for _ in 0..2 {
                shard.drain_readies().await?;
                if shard.node.role() == Role::Leader {
                    break;
                }
                for _ in 0..2 * election_ticks {
                    shard.node.tick();
                }
            }
            shard.drain_readies().await?;
        }
        Ok(shard)
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

    /// The Raft member's view (tests and logs).
    pub fn raft_status(&self) -> raft::Status {
        self.node.status()
    }

    /// Carries out `Ready`s until there are none (start-up only: it waits
    /// on each persist).
    async fn drain_readies(&mut self) -> Result<(), String> {
        while self.node.has_ready() {
            let rd = self.node.ready();
            self.handle_ready(rd)?;
            if let Some(fut) = self.persisting.take() {
                let (wal, result) = fut.await;
                self.finish_persist(wal, result)?;
            }
        }
        Ok(())
    }

    /// Serves the inbox until every handle is gone. A storage error ends the
    /// shard at once with the error, before anything more is acknowledged;
    /// the caller must stop the process: an fsync is never retried.
    pub async fn run(mut self, mut inbox: Inbox) -> Result<(), String> {
        inbox.term.store(self.node.term(), Ordering::Relaxed);
        self.term_flag = Some(inbox.term.clone());
        self.leader_flag = Some(inbox.leader.clone());
        self.publish_leader();
        self.nospace = Some(inbox.nospace.clone());
        self.publish_alarms();
        let mut peer_rx = self.peer_inbox.take();
        let mut open = true;
        while open
            || self.persisting.is_some()
            || self.checkpoint.is_some()
            || self.node.has_ready()
        {
            if self.removed && self.node.role() != Role::Leader {
                return Err("the member has been permanently removed from the cluster".into());
            }
            self.release_awaiting_leader();
            // Drain what is already queued, within a budget.
            let mut handled = 0;
            while open
                && handled < INBOX_BUDGET_MESSAGES
                && self.proposed_since_ready < BATCH_ENTRIES_MAX
            {
                match inbox.rx.try_recv() {
                    Ok(req) => self.handle(req),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
                handled += 1;
            }
            let mut peer_handled = 0;
            if let Some(rx) = peer_rx.as_mut() {
                while peer_handled < PEER_BUDGET_MESSAGES {
                    match rx.try_recv() {
                        Ok(m) => self.on_peer(m)?,
                        Err(_) => break,
                    }
                    peer_handled += 1;
                }
            }
            self.flush_reads();
            if self.persisting.is_none() && self.node.has_ready() {
                let rd = self.node.ready();
                self.handle_ready(rd)?;
            }
            if self.checkpoint.is_none() {
                self.maybe_checkpoint();
            }
            self.answer_served();
            let busy = handled == INBOX_BUDGET_MESSAGES || peer_handled == PEER_BUDGET_MESSAGES;
            if busy {
                yield_now().await;
            }
            // Wait for whichever comes first: a request, a peer message, the
            // persist, the checkpoint. When busy, or with a `Ready` waiting,
            // only poll (never wait).
            let poll_only = busy || (self.persisting.is_none() && self.node.has_ready());
            let persisting = &mut self.persisting;
            let checkpoint = &mut self.checkpoint;
            let wake = std::future::poll_fn(|cx| {
                use std::task::Poll;
                if let Some(fut) = persisting.as_mut() {
                    if let Poll::Ready((wal, result)) = fut.as_mut().poll(cx) {
                        *persisting = None;
                        return Poll::Ready(Some(Wake::Persisted(wal, result)));
                    }
                }
                if let Some(fut) = checkpoint.as_mut() {
                    if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                        *checkpoint = None;
                        return Poll::Ready(Some(Wake::Checkpointed(result)));
                    }
                }
                if let Some(rx) = peer_rx.as_mut() {
                    if let Poll::Ready(Some(m)) = rx.poll_recv(cx) {
                        return Poll::Ready(Some(Wake::Peer(m)));
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
                if persisting.is_none() && checkpoint.is_none() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            match wake {
                None => {}
                Some(Wake::Request(req)) => self.handle(req),
                Some(Wake::InboxClosed) => open = false,
                Some(Wake::Peer(m)) => self.on_peer(m)?,
                Some(Wake::Persisted(wal, result)) => self.finish_persist(wal, result)?,
                Some(Wake::Checkpointed(result)) => {
                    self.finish_checkpoint(result)?;
                    if let Some(received) = self.deferred_snapshot.take() {
                        self.step_snapshot(received)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A frame from the peer transport.
    fn on_peer(&mut self, incoming: Incoming) -> Result<(), String> {
        match incoming {
            Incoming::Message {
                from,
                group,
                payload,
            } => {
                if group == FORWARD_GROUP_ID {
                    self.on_forward(from, &payload);
                    return Ok(());
                }
                if group != GROUP_ID {
                    tracing::debug!("peer {from:x}: message for unknown group {group} dropped");
                    return Ok(());
                }
                let m = match raft::codec::decode(&payload) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("peer {from:x}: undecodable Raft message dropped: {e}");
                        return Ok(());
                    }
                };
                if m.from != from {
                    tracing::warn!(
                        "peer {from:x}: message claiming to be from {:x} dropped",
                        m.from
                    );
                    return Ok(());
                }
                match self.node.step(m) {
                    Ok(()) => {}
                    Err(e @ raft::RaftError::CommittedEntryConflict { .. }) => {
                        return Err(e.to_string());
                    }
                    Err(e) => tracing::debug!("peer {from:x}: message refused: {e}"),
                }
                Ok(())
            }
            Incoming::Snapshot { from, group, data } => {
                if group != GROUP_ID {
                    tracing::debug!("peer {from:x}: snapshot for unknown group {group} dropped");
                    return Ok(());
                }
                let bytes = data.len();
                let received = match crate::snapshot::parse(data) {
                    Ok(r) if r.message.from == from && r.message.to == self.id => r,
                    Ok(_) => {
                        tracing::warn!("peer {from:x}: snapshot addressed elsewhere dropped");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!("peer {from:x}: snapshot refused: {e}");
                        return Ok(());
                    }
                };
                tracing::info!(
                    "received a snapshot at entry {} (term {}) from {from:x}: {} segments, \
                     {bytes} bytes",
                    received.meta.index,
                    received.meta.term,
                    received.segments.len()
                );
                if self.checkpoint.is_some() {
                    // The store is being written: take it once that is done.
                    self.deferred_snapshot = Some(received);
                    return Ok(());
                }
                self.step_snapshot(received)
            }
        }
    }

    /// Hands a received snapshot to the node, which takes it (and its
    /// next `Ready` installs it) only if it is ahead of the commit index.
    fn step_snapshot(&mut self, received: crate::snapshot::Received) -> Result<(), String> {
        let m = received.message.clone();
        self.received_snapshot = Some(received);
        match self.node.step(m) {
            Ok(()) => Ok(()),
            Err(e @ raft::RaftError::CommittedEntryConflict { .. }) => Err(e.to_string()),
            Err(e) => {
                tracing::debug!("snapshot message refused: {e}");
                self.received_snapshot = None;
                Ok(())
            }
        }
    }

    /// Carries out a `Ready` up to its persistence: a leader's snapshot,
    /// entries and a changed term or vote go to disk in a future the loop
    /// polls, and everything after waits for it.
    fn handle_ready(&mut self, mut rd: Ready) -> Result<(), String> {
        self.proposed_since_ready = 0;
        if let Some(soft) = rd.soft {
            self.on_soft_state(soft.role, soft.leader);
        }
        let install = match &rd.snapshot {
            Some(meta) => {
                let received = self.received_snapshot.take().filter(|r| r.meta == *meta);
                let Some(received) = received else {
                    return Err(format!(
                        "the node took a snapshot at entry {} that was not received",
                        meta.index
                    ));
                };
                assert!(
                    self.checkpoint.is_none(),
                    "no checkpoint runs while a snapshot installs"
                );
                Some(received)
            }
            None => {
                // The node passed the received snapshot over.
                self.received_snapshot = None;
                None
            }
        };
        let hs = rd
            .hard_state
            .filter(|hs| hs.term != self.durable_hs.term || hs.vote != self.durable_hs.vote);
        if install.is_none() && rd.entries.is_empty() && hs.is_none() {
            return self.after_persist(rd);
        }
        if install.is_none() {
            self.apply_durable_prefix(&mut rd)?;
        }
        // Proposals and read requests a follower forwards to the leader
        // promise nothing about this member's disk: they leave now instead
        // of waiting for the sync. Everything else still waits.
        let (forwarded, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut rd.messages)
            .into_iter()
            .partition(|m| m.body.is_forwarded());
        rd.messages = rest;
        for m in forwarded {
            self.send(m);
        }
        let mut wal = self
            .wal
            .take()
            .expect("WAL is home when no persist is in flight");
        let entries = std::mem::take(&mut rd.entries);
        let hs = hs.map(|hs| {
            self.hs_seq += 1;
            (self.hs_seq, hs)
        });
        let release = self.wal_release_before.take();
        let dir = self.wal_dir.clone();
        let store = self.store.clone();
        let current = self.manifest.clone();
        self.persist_started = Some(std::time::Instant::now());
        self.persist_entries = entries.len() as u64;
        self.in_ready = Some(rd);
        self.persisting = Some(Box::pin(async move {
            let result = async {
                let mut installed = None;
                if let Some(received) = install {
                    installed = Some(Box::new(
                        crate::snapshot::install(
                            &mut wal,
                            &dir,
                            &store,
                            current.as_ref(),
                            &received,
                        )
                        .await?,
                    ));
                }
                if let Some(first) = entries.first() {
                    if first.index <= wal.last_index() {
                        // A new leader overwrote this member's uncommitted
                        // suffix.
                        wal.truncate_after(first.index - 1)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                for e in &entries {
                    wal.append(e.term, e.index, &raftstate::wal_payload(e.kind, &e.data));
                }
                if let Some(index) = release {
                    // Entries a durable checkpoint covers are no longer needed.
                    let index = index.min(wal.last_index() + 1);
                    wal.release_before(index).await.map_err(|e| e.to_string())?;
                }
                wal.sync().await.map_err(|e| e.to_string())?;
                if let Some((seq, hs)) = hs {
                    raftstate::write_hard_state(&dir, seq, &hs)
                        .await
                        .map_err(|e| format!("writing the Raft hard state: {e}"))?;
                }
                Ok::<_, String>(installed)
            }
            .await;
            (wal, result)
        }));
        Ok(())
    }

    /// Applies, before the `Ready`'s persist starts, its committed entries
    /// that are already durable here: those the WAL holds from earlier
    /// `Ready`s, below the first entry this one writes (which may replace
    /// a suffix). Under load this acknowledges a write one fsync sooner:
    /// the entry committed while the previous batch was being synced no
    /// longer waits for the next batch's sync. What the `Ready` itself
    /// writes is applied after its persist, as before, and so is
    /// everything from the first conf change on (applying one changes the
    /// peers this `Ready`'s messages go to, and may stop this member). The
    /// node learns of the early part at once, so that a checkpoint of it
    /// may complete before the persist does.
    fn apply_durable_prefix(&mut self, rd: &mut Ready) -> Result<(), String> {
        let wal_last = self
            .wal
            .as_ref()
            .expect("WAL is home when no persist is in flight")
            .last_index();
        let durable_last = match rd.entries.first() {
            Some(first) => wal_last.min(first.index - 1),
            None => wal_last,
        };
        let n = rd
            .committed
            .iter()
            .take_while(|e| e.index <= durable_last && e.kind == EntryKind::Normal)
            .count();
        let Some(last) = n.checked_sub(1).map(|i| rd.committed[i].index) else {
            return Ok(());
        };
        for e in rd.committed.drain(..n) {
            self.apply(e)?;
        }
        self.node.applied_early(last);
        self.serve_ready_reads();
        Ok(())
    }

    fn finish_persist(&mut self, wal: Wal<S>, result: Persisted) -> Result<(), String> {
        // Never retry an fsync: the page cache may have dropped the data
        // it failed to write. Stop before acknowledging anything.
        let installed = result.map_err(|e| format!("persisting the Raft log failed: {e}"))?;
        self.wal = Some(wal);
        let rd = self.in_ready.take().expect("a Ready was being persisted");
        if let Some(installed) = installed {
            let (mvcc, manifest) = *installed;
            self.install_state(mvcc, manifest)?;
        }
        if let Some(hs) = rd.hard_state {
            if hs.term != self.durable_hs.term || hs.vote != self.durable_hs.vote {
                self.durable_hs = hs;
            }
        }
        let took = self
            .persist_started
            .take()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        METRICS.record_sync(self.persist_entries, took);
        self.after_persist(rd)
    }

    /// The rest of a `Ready` once its entries and hard state are durable:
    /// send its messages, apply its committed entries, release its reads.
    fn after_persist(&mut self, rd: Ready) -> Result<(), String> {
        for m in rd.messages {
            self.send(m);
        }
        for e in rd.committed {
            self.apply(e)?;
        }
        for rs in rd.read_states {
            if let Some((ops, _)) = self.reads_in_flight.remove(&rs.ctx) {
                for (op, arrived) in ops {
                    self.reads_ready.push((rs.index, op, arrived));
                }
            }
        }
        self.node.advance();
        self.serve_ready_reads();
        if let Some(t) = &self.term_flag {
            t.store(self.node.term(), Ordering::Relaxed);
        }
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

    /// Takes the store a leader's snapshot left on disk as the state: the
    /// keyspace, the member set and the applied index are the snapshot's;
    /// watchers catch up from its history; peers follow its member set.
    fn install_state(&mut self, mvcc: Mvcc, manifest: Manifest) -> Result<(), String> {
        let (conf, members) = raftstate::decode_membership(&manifest.membership)?;
        let delivered = self.mvcc.current_revision();
        assert!(
            manifest.applied_index > self.applied_index,
            "a snapshot moves the applied index forward"
        );
        self.mvcc = mvcc;
        self.members = members;
        self.applied_index = manifest.applied_index;
        self.applied_term = manifest.applied_term;
        self.wal_release_before = None;
        self.reclaim_check = true;
        tracing::info!(
            "installed the snapshot at entry {} (term {}): revision {}, {} segments, \
             voters {:x?}, learners {:x?}",
            manifest.applied_index,
            manifest.applied_term,
            self.mvcc.current_revision(),
            manifest.segments.len(),
            conf.voters,
            conf.learners
        );
        self.manifest = Some(manifest);
        self.watch.unsync_all(delivered);
        if let Some(t) = &self.transport {
            let known: HashSet<NodeId> = self.members.members().map(|m| m.id).collect();
            for id in t.peers() {
                if !known.contains(&id) {
                    let _ = t.remove_peer(id);
                }
            }
        }
        let members: Vec<Member> = self.members.members().cloned().collect();
        for m in &members {
            self.add_peer(m);
        }
        self.publish_alarms();
        METRICS.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn on_soft_state(&mut self, role: Role, leader: Option<NodeId>) {
        tracing::info!(
            "raft: member {:x} is {role:?} in term {}, leader {}",
            self.id,
            self.node.term(),
            leader.map_or_else(|| "unknown".to_string(), |l| format!("{l:x}"))
        );
        if role == Role::Leader {
            // A new leader gives every lease its full TTL again (the old
            // leader's deadlines were its own), as etcd's lessor promotes.
            self.lease_deadlines.clear();
            self.lease_revoking.clear();
            if let Some(now) = self.now {
                for (id, ttl) in self.mvcc.leases() {
                    self.lease_deadlines
                        .insert(id, now + Duration::from_secs(ttl as u64));
                }
                self.lease_deadlines_seeded = true;
            } else {
                self.lease_deadlines_seeded = false;
            }
        }
        if let Some(t) = &self.term_flag {
            t.store(self.node.term(), Ordering::Relaxed);
        }
        self.publish_leader();
    }

    fn publish_leader(&self) {
        let leader = self.node.leader().unwrap_or(0);
        if let Some(l) = &self.leader_flag {
            let before = l.swap(leader, Ordering::Relaxed);
            if leader != 0 && leader != before {
                METRICS.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
        }
        METRICS
            .has_leader
            .store(u64::from(leader != 0), Ordering::Relaxed);
        METRICS.is_leader.store(
            u64::from(leader == self.id && leader != 0),
            Ordering::Relaxed,
        );
    }

    /// Whether `req` waits for a leader while none is known: proposals,
    /// linearizable reads, and the lease requests only the leader serves.
    /// A learner refuses what it does not serve at once instead.
    fn needs_leader(&self, req: &Request) -> bool {
        if self.is_learner() {
            return false;
        }
        match req {
            Request::Write(..) => true,
            Request::Range(r, _) => !r.serializable,
            Request::ReadTxn(t, _) => !txn_serializable(t),
            Request::Members(linearizable, _) => *linearizable,
            Request::LeaseKeepAlive(..) | Request::LeaseTimeToLive(..) => {
                self.node.role() != Role::Leader
            }
            _ => false,
        }
    }

    /// Handles the requests held for a leader, in arrival order, once one
    /// is known. A request whose client has gone (cancelled, or past its
    /// deadline) is dropped, never carried out: etcd gives up a proposal
    /// that waits for a leader when its context ends. A lease request
    /// counts from now, not from when it arrived: the renewal happens now.
    fn release_awaiting_leader(&mut self) {
        if self.awaiting_leader.is_empty() || self.node.leader().is_none() {
            return;
        }
        let now = self.now;
        let later = |at: Instant| now.map_or(at, |n| n.max(at));
        for (req, arrived) in std::mem::take(&mut self.awaiting_leader) {
            if abandoned(&req) {
                continue;
            }
            let req = match req {
                Request::LeaseKeepAlive(id, at, reply) => {
                    Request::LeaseKeepAlive(id, later(at), reply)
                }
                Request::LeaseTimeToLive(id, keys, at, reply) => {
                    Request::LeaseTimeToLive(id, keys, later(at), reply)
                }
                other => other,
            };
            self.handle_arrived(req, arrived);
        }
    }

    /// Fails the requests held for a leader longer than the request
    /// timeout, each as etcd answers it: a proposal with its context's
    /// deadline, a read with "request timed out", a lease request with "no
    /// leader".
    fn expire_awaiting_leader(&mut self) {
        let ticks = self.ticks;
        while let Some((_, arrived)) = self.awaiting_leader.front() {
            if arrived + REQUEST_TIMEOUT_TICKS > ticks {
                break;
            }
            let (req, _) = self.awaiting_leader.pop_front().expect("front");
            if abandoned(&req) {
                continue;
            }
            let e = match &req {
                Request::Write(..) => ShardError::NoLeaderDeadline,
                Request::Range(..) | Request::ReadTxn(..) | Request::Members(..) => {
                    ShardError::Timeout
                }
                _ => ShardError::NoLeader,
            };
            self.refuse(req, e);
        }
    }

    /// Answers a request that needs a leader with `e`.
    fn refuse(&self, req: Request, e: ShardError) {
        match req {
            Request::Write(_, reply) => {
                let _ = reply.send(Err(e));
            }
            Request::Range(_, reply) => {
                let _ = reply.send(Err(e));
            }
            Request::ReadTxn(_, reply) => {
                let _ = reply.send(Err(e));
            }
            Request::Members(_, reply) => {
                let _ = reply.send(Err(e));
            }
            Request::LeaseKeepAlive(.., reply) => {
                let _ = reply.send(Err(e));
            }
            Request::LeaseTimeToLive(.., reply) => {
                let _ = reply.send(Err(e));
            }
            _ => unreachable!("only requests that need a leader wait for one"),
        }
    }

    fn add_peer(&mut self, m: &Member) {
        if m.id == self.id || m.peer_urls.is_empty() {
            return;
        }
        if let Some(t) = &self.transport {
            match t.add_peer(m.id, dial_urls(&m.peer_urls)) {
                Ok(()) | Err(crate::peer::PeerError::AlreadyKnown(_)) => {}
                Err(e) => tracing::warn!("peer {:x}: cannot add: {e}", m.id),
            }
        }
    }

    fn send(&mut self, m: raft::Message) {
        let to = m.to;
        if let MessageBody::Snapshot { meta } = &m.body {
            let index = meta.index;
            if let Err(e) = self.send_snapshot(&m) {
                tracing::warn!("snapshot at entry {index} for {to:x} not sent: {e}");
                self.node.report_snapshot(to, false);
            }
            return;
        }
        let Some(t) = &self.transport else {
            return;
        };
        if let Err(e) = t.send(to, GROUP_ID, raft::codec::encode(&m)) {
            tracing::debug!("raft message to {to:x} not sent: {e}");
            self.node.report_unreachable(to);
        }
    }

    /// Streams the newest checkpoint to a member behind the log. The
    /// transport reports the outcome, which `poll_snapshots` hands to the
    /// node.
    fn send_snapshot(&mut self, m: &raft::Message) -> Result<(), String> {
        let MessageBody::Snapshot { meta } = &m.body else {
            unreachable!("only snapshot messages");
        };
        let t = self.transport.as_ref().ok_or("no peer transport")?;
        let manifest = self
            .manifest
            .as_ref()
            .filter(|mf| mf.applied_index == meta.index && mf.applied_term == meta.term)
            .ok_or("the newest checkpoint is not the snapshot's")?;
        let segments = self.mvcc.live_segments();
        if segments
            .iter()
            .map(|s| s.id())
            .ne(manifest.segments.iter().copied())
        {
            return Err("the store's segments are not the checkpoint's".into());
        }
        let message = raft::codec::encode(m);
        let bytes = crate::snapshot::stream_bytes(&message, manifest, &segments);
        let pieces = crate::snapshot::pieces(&message, manifest, segments);
        let pending = t
            .send_snapshot(m.to, GROUP_ID, pieces)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            "sending the snapshot at entry {} (term {}) to {:x}: {bytes} bytes",
            meta.index,
            meta.term,
            m.to
        );
        self.snapshots_sending.push((m.to, meta.index, pending));
        Ok(())
    }

    /// etcd's MoveLeader: only the leader takes it; a transfer to itself is
    /// done already; the target must be a voter.
    fn move_leader(&mut self, target: NodeId, reply: Reply<()>) {
        let res = if self.node.role() != Role::Leader {
            Err(ShardError::NotLeader)
        } else if target == self.id {
            Ok(self.header(()))
        } else if !self.node.conf().is_voter(target) {
            Err(ShardError::BadTransferee)
        } else {
            tracing::info!("moving leadership to {target:x}");
            self.node.transfer_leader(target);
            self.leader_transfers.push((target, reply, self.ticks));
            return;
        };
        let _ = reply.send(res);
    }

    /// Answers MoveLeader requests whose target leads, or that waited too
    /// long.
    fn check_leader_transfers(&mut self) {
        if self.leader_transfers.is_empty() {
            return;
        }
        let leader = self.node.leader();
        let ticks = self.ticks;
        for (target, reply, at) in std::mem::take(&mut self.leader_transfers) {
            if leader == Some(target) {
                let _ = reply.send(Ok(self.header(())));
            } else if at + REQUEST_TIMEOUT_TICKS <= ticks {
                let _ = reply.send(Err(ShardError::TransferTimeout));
            } else {
                self.leader_transfers.push((target, reply, at));
            }
        }
    }

    /// The applied index the last durable checkpoint covers.
    fn checkpointed_index(&self) -> u64 {
        self.manifest.as_ref().map_or(0, |m| m.applied_index)
    }

    /// Reports finished snapshot streams to the node.
    fn poll_snapshots(&mut self) {
        let mut i = 0;
        while i < self.snapshots_sending.len() {
            let Some(result) = self.snapshots_sending[i].2.try_result() else {
                i += 1;
                continue;
            };
            let (to, index, _) = self.snapshots_sending.swap_remove(i);
            match result {
                Ok(_) => {
                    tracing::info!("sent the snapshot at entry {index} to {to:x}");
                    METRICS.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                    self.node.report_snapshot(to, true);
                }
                Err(e) => {
                    tracing::warn!("the snapshot at entry {index} for {to:x} failed: {e}");
                    self.node.report_snapshot(to, false);
                }
            }
        }
    }

    /// Applies one committed entry and answers its proposer if that is
    /// this member.
    fn apply(&mut self, e: raft::Entry) -> Result<(), String> {
        debug_assert_eq!(e.index, self.applied_index + 1, "entries apply in order");
        let rev_before = self.mvcc.current_revision();
        let effect = apply_entry_state(&mut self.mvcc, &mut self.members, &e)?;
        debug_assert!(
            self.mvcc.current_revision() >= rev_before,
            "revisions never go backwards"
        );
        self.applied_index = e.index;
        self.applied_term = e.term;
        match effect {
            Effect::None => {}
            Effect::Command {
                origin,
                request,
                command,
                result,
            } => {
                if self.watch.watcher_count() == 0 {
                    // Building events reads previous values back (prev_kv);
                    // with no watcher nobody would read them. Later watchers
                    // catch up from history.
                    self.mvcc.skip_events();
                } else {
                    let events = self.mvcc.take_events();
                    self.watch.publish(self.mvcc.current_revision(), &events);
                }
                match (&command, &result) {
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
                if origin == self.id {
                    if let Some((Waiter::Write(reply), _)) = self.waiting.remove(&request) {
                        let res = result.map(|v| self.header(v)).map_err(ShardError::from);
                        let _ = reply.send(res);
                    }
                }
            }
            Effect::Conf(cc) => {
                let result = apply_conf_members(&mut self.members, &cc);
                match &result {
                    Ok(changed) => {
                        let conf = self.node.apply_conf_change(&cc);
                        tracing::info!(
                            "applied {:?} of member {:x} at entry {}: voters {:x?}, learners {:x?}",
                            cc.kind,
                            cc.node,
                            e.index,
                            conf.voters,
                            conf.learners
                        );
                        match cc.kind {
                            ConfChangeKind::Remove => {
                                if cc.node == self.id {
                                    tracing::warn!(
                                        "this member was removed from the cluster; it stops \
                                         once it no longer leads"
                                    );
                                    self.removed = true;
                                } else if let Some(t) = &self.transport {
                                    let _ = t.remove_peer(cc.node);
                                }
                            }
                            _ => {
                                if let Some(m) = changed.clone() {
                                    self.add_peer(&m);
                                }
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!(
                            "conf change {:?} of {:x} at entry {} refused: {err}",
                            cc.kind,
                            cc.node,
                            e.index
                        );
                        self.node.reject_conf_change(&cc);
                    }
                }
                if let Some((origin, request)) = conf_origin(&cc) {
                    if origin == self.id {
                        let node = cc.node;
                        self.answer_member(
                            request,
                            result.map(|m| {
                                m.unwrap_or(Member {
                                    id: node,
                                    name: String::new(),
                                    peer_urls: Vec::new(),
                                    client_urls: Vec::new(),
                                    is_learner: false,
                                })
                            }),
                        );
                    }
                }
            }
            Effect::UpdatePeers {
                origin,
                request,
                member,
                result,
            } => {
                if result.is_ok() && member.id != self.id {
                    if let Some(t) = &self.transport {
                        let _ = t.update_peer_urls(member.id, dial_urls(&member.peer_urls));
                    }
                }
                if origin == self.id {
                    self.answer_member(request, result.map(|()| member));
                }
            }
        }
        Ok(())
    }

    fn answer_member(&mut self, request: u64, result: Result<Member, MembershipError>) {
        if let Some((Waiter::Member(reply), _)) = self.waiting.remove(&request) {
            let members = self.members.members().cloned().collect();
            let res = result
                .map(|member| self.header(MemberChanged { member, members }))
                .map_err(ShardError::Membership);
            let _ = reply.send(res);
        }
    }

    fn next_request_id(&mut self) -> u64 {
        let r = self.next_request;
        self.next_request += 1;
        r
    }

    fn is_learner(&self) -> bool {
        self.node.conf().is_learner(self.id)
    }

    /// A sole voter that leads answers linearizable reads from its applied
    /// state: every write it acknowledged is applied.
    fn reads_locally(&self) -> bool {
        self.node.role() == Role::Leader && self.node.conf().voters == [self.id]
    }

    /// Proposes a client command; `false` if it was refused at once (the
    /// reply was answered).
    fn propose_command(&mut self, cmd: Command, reply: Reply<Applied>) -> bool {
        self.propose_command_at(cmd, reply, self.ticks)
    }

    /// [`Shard::propose_command`] for a request that arrived at tick
    /// `arrived`: its timeout counts from then.
    fn propose_command_at(&mut self, cmd: Command, reply: Reply<Applied>, arrived: u64) -> bool {
        if self.is_learner() {
            let _ = reply.send(Err(ShardError::NotForLearner));
            return false;
        }
        let bytes = cmd.encode();
        let request = self.next_request_id();
        let data = raftstate::command_entry(self.id, request, &bytes);
        match self.node.propose(data) {
            Ok(()) => {
                self.proposed_since_ready += 1;
                self.waiting
                    .insert(request, (Waiter::Write(reply), arrived));
                true
            }
            Err(e) => {
                let _ = reply.send(Err(propose_error(e)));
                false
            }
        }
    }

    fn read(&mut self, op: ReadOp, serializable: bool, arrived: u64) {
        if serializable || self.reads_locally() {
            self.serve_read(op);
            return;
        }
        let fail = if self.is_learner() {
            Some(ShardError::NotForLearner)
        } else if self.node.leader().is_none() {
            Some(ShardError::NoLeader)
        } else {
            None
        };
        match fail {
            Some(e) => fail_read(op, e),
            None => self.read_queue.push((op, arrived)),
        }
    }

    fn serve_read(&mut self, op: ReadOp) {
        match op {
            ReadOp::Range(r, reply) => {
                let res = self
                    .mvcc
                    .range(&r)
                    .map(|v| self.header(v))
                    .map_err(ShardError::from);
                self.log_corruption();
                let _ = reply.send(res);
            }
            ReadOp::Txn(txn, reply) => {
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
            ReadOp::Members(reply) => {
                let _ = reply.send(Ok(self.header(self.cluster_view())));
            }
        }
    }

    /// Sends the queued linearizable reads as one ReadIndex request.
    fn flush_reads(&mut self) {
        if self.read_queue.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.read_queue);
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.node.read_index(ctx);
        self.reads_in_flight.insert(ctx, (ops, self.ticks));
    }

    fn serve_ready_reads(&mut self) {
        if self.reads_ready.is_empty() {
            return;
        }
        let applied = self.applied_index;
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(index, _, _)| *index <= applied);
        self.reads_ready = later;
        for (_, op, _) in now {
            self.serve_read(op);
        }
    }

    /// Re-sends ReadIndex requests that went unanswered, and times out
    /// reads and proposals that waited too long.
    fn sweep(&mut self) {
        self.release_awaiting_leader();
        self.expire_awaiting_leader();
        let ticks = self.ticks;
        let stale: Vec<u64> = self
            .reads_in_flight
            .iter()
            .filter(|(_, (_, sent))| sent + READ_RETRY_TICKS <= ticks)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in stale {
            let (ops, _) = self.reads_in_flight.remove(&ctx).expect("listed");
            for (op, arrived) in ops {
                if arrived + REQUEST_TIMEOUT_TICKS <= ticks {
                    fail_read(op, ShardError::Timeout);
                } else {
                    self.read_queue.push((op, arrived));
                }
            }
        }
        let expired: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, (_, at))| at + REQUEST_TIMEOUT_TICKS <= ticks)
            .map(|(r, _)| *r)
            .collect();
        for r in expired {
            match self.waiting.remove(&r).expect("listed").0 {
                Waiter::Write(reply) => {
                    let _ = reply.send(Err(ShardError::Timeout));
                }
                Waiter::Member(reply) => {
                    let _ = reply.send(Err(ShardError::Timeout));
                }
            }
        }
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(_, _, arrived)| arrived + REQUEST_TIMEOUT_TICKS <= ticks);
        self.reads_ready = keep;
        for (_, op, _) in late {
            fail_read(op, ShardError::Timeout);
        }
    }

    /// Publishes this member's name and client URLs through the log until
    /// the member set holds them (etcd's `publishV3`).
    fn maybe_publish(&mut self) {
        if self.name.is_empty() || self.ticks < self.next_publish_tick {
            return;
        }
        let Some(m) = self.members.member(self.id) else {
            return;
        };
        if m.name == self.name && m.client_urls == self.client_urls {
            return;
        }
        if self.node.leader().is_none() {
            return;
        }
        let mut m = m.clone();
        m.name = self.name.clone();
        m.client_urls = self.client_urls.clone();
        if self.node.propose(raftstate::attributes_entry(&m)).is_ok() {
            self.proposed_since_ready += 1;
        }
        self.next_publish_tick = self.ticks + PUBLISH_RETRY_TICKS;
    }

    fn member_change(&mut self, op: MemberOp, reply: Reply<MemberChanged>) {
        if let MemberOp::Promote { id } = op {
            if self.node.role() != Role::Leader {
                // Only the leader knows how far a learner got.
                self.forward(Forwarded::Promote(id, reply), self.ticks);
                return;
            }
        }
        match self.propose_member_change(op) {
            Ok(request) => {
                self.waiting
                    .insert(request, (Waiter::Member(reply), self.ticks));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Checks a membership change as etcd does (learner, then the strict
    /// reconfiguration checks and validation), then proposes it. With no
    /// leader known a change that passes the checks fails with "no
    /// leader" (etcd instead holds it until the client gives up).
    fn propose_member_change(&mut self, op: MemberOp) -> Result<u64, ShardError> {
        if self.is_learner() {
            return Err(ShardError::NotForLearner);
        }
        let strict = self.strict_reconfig;
        let request = self.next_request_id();
        let me = self.id;
        // The peers' connection times, for the strict checks, against the
        // latest time the shard was told.
        let since: HashMap<NodeId, Option<Instant>> = self
            .members
            .members()
            .filter(|m| m.id != me)
            .map(|m| {
                let at = self
                    .transport
                    .as_ref()
                    .and_then(|t| t.peer_stats(m.id))
                    .and_then(|s| s.connected_since);
                (m.id, at)
            })
            .collect();
        let now = self.now;
        let connected = |id: u64| since.get(&id).is_some_and(|at| at.is_some());
        let healthy = |id: u64| {
            let at = since.get(&id).copied().flatten();
            match (at, now) {
                (Some(at), Some(now)) => now.saturating_duration_since(at) >= HEALTH_INTERVAL,
                _ => false,
            }
        };
        let peers = PeerHealth {
            me,
            connected: &connected,
            healthy: &healthy,
        };
        let cc = match op {
            MemberOp::Add {
                peer_urls,
                is_learner,
                now_unix_secs,
            } => {
                let m = Member::for_member_add(&peer_urls, is_learner, now_unix_secs)
                    .map_err(ShardError::Membership)?;
                self.members
                    .check_add(&m, strict, &peers)
                    .map_err(ShardError::Membership)?;
                let kind = if is_learner {
                    ConfChangeKind::AddLearner
                } else {
                    ConfChangeKind::AddVoter
                };
                ConfChange {
                    kind,
                    node: m.id,
                    context: raftstate::conf_context(me, request, &m),
                }
            }
            MemberOp::Remove { id } => {
                self.members
                    .check_remove(id, strict, &peers)
                    .map_err(ShardError::Membership)?;
                let m = self.members.member(id).cloned().expect("checked");
                ConfChange {
                    kind: ConfChangeKind::Remove,
                    node: id,
                    context: raftstate::conf_context(me, request, &m),
                }
            }
            MemberOp::Promote { id } => {
                // Only the leader knows how far a learner got (a follower
                // forwards the request to it, see `member_change`).
                if self.node.role() != Role::Leader {
                    return Err(ShardError::NotLeader);
                }
                let st = self.node.status();
                let progress = st
                    .progress
                    .get(&id)
                    .zip(st.progress.get(&me))
                    .map(|(p, l)| (p.match_index, l.match_index));
                let progress = if self.members.member(id).is_some() {
                    progress
                } else {
                    None
                };
                self.members
                    .check_promote(id, progress, strict)
                    .map_err(ShardError::Membership)?;
                let m = self.members.member(id).cloned().expect("checked");
                ConfChange {
                    kind: ConfChangeKind::PromoteLearner,
                    node: id,
                    context: raftstate::conf_context(me, request, &m),
                }
            }
            MemberOp::Update { id, peer_urls } => {
                self.members
                    .check_update(id, &peer_urls)
                    .map_err(ShardError::Membership)?;
                let mut m = self.members.member(id).cloned().expect("checked");
                crate::membership::normalize_urls(&peer_urls).map_err(ShardError::Membership)?;
                // etcd validates the URLs but keeps them as given.
                m.peer_urls = peer_urls;
                if self.node.leader().is_none() {
                    return Err(ShardError::NoLeader);
                }
                self.node
                    .propose(raftstate::update_peers_entry(me, request, &m))
                    .map_err(propose_error)?;
                self.proposed_since_ready += 1;
                return Ok(request);
            }
        };
        if self.node.leader().is_none() {
            return Err(ShardError::NoLeader);
        }
        self.node.propose_conf_change(cc).map_err(propose_error)?;
        self.proposed_since_ready += 1;
        Ok(request)
    }

    fn cluster_view(&self) -> ClusterView {
        ClusterView {
            members: self.members.members().cloned().collect(),
            leader: self.node.leader().unwrap_or(0),
        }
    }

    /// Starts a checkpoint when the policy says one is due.
    fn maybe_checkpoint(&mut self) {
        debug_assert!(self.checkpoint.is_none());
        if self.applied_index < self.checkpoint_retry_at {
            return;
        }
        let installing = self
            .in_ready
            .as_ref()
            .is_some_and(|rd| rd.snapshot.is_some());
        if installing || self.received_snapshot.is_some() || self.deferred_snapshot.is_some() {
            // A leader's snapshot is about to replace the store.
            return;
        }
        let (mem_bytes, mem_records) = self.mvcc.mem_usage();
        let reclaim =
            self.reclaim_all || std::mem::take(&mut self.reclaim_check) && self.mvcc.reclaim_due();
        let due = mem_bytes >= self.checkpoint_policy.bytes
            || mem_records >= CHECKPOINT_RECORDS_MAX
            || self.applied_index - self.checkpointed_index() >= self.checkpoint_policy.entries
            || reclaim;
        if !due {
            return;
        }
        let reclaim_all = std::mem::take(&mut self.reclaim_all);
        let plan =
            match self
                .mvcc
                .checkpoint_plan(self.applied_index, self.applied_term, reclaim_all)
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
        let mut plan = plan;
        plan.manifest.membership = raftstate::encode_membership(self.node.conf(), &self.members);
        self.checkpoint_conf = self.node.conf().clone();
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
            covered >= self.checkpointed_index(),
            "checkpoints never go backwards"
        );
        // The in-memory Raft log keeps `catchup_entries` before the
        // checkpoint for slow followers; the WAL keeps no more than that.
        self.node.snapshot_created(
            SnapshotMeta {
                index: covered,
                term: written.manifest.applied_term,
                conf: std::mem::take(&mut self.checkpoint_conf),
            },
            self.catchup_entries,
        );
        let first = self.node.status().first_index;
        self.wal_release_before = Some(first.min(covered + 1));
        self.reclaim_check = true;
        self.manifest = Some(written.manifest);
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
            raft_term: self.node.term(),
        }
    }

    fn handle(&mut self, req: Request) {
        self.handle_arrived(req, self.ticks);
    }

    /// Handles a request that arrived at tick `arrived` (earlier than now
    /// if it waited for a leader).
    fn handle_arrived(&mut self, req: Request, arrived: u64) {
        // Requests held for a leader go first, in arrival order.
        self.release_awaiting_leader();
        if self.node.leader().is_none() && self.needs_leader(&req) {
            if self.awaiting_leader.len() >= AWAITING_LEADER_MAX {
                self.awaiting_leader.retain(|(r, _)| !abandoned(r));
            }
            if self.awaiting_leader.len() < AWAITING_LEADER_MAX {
                self.awaiting_leader.push_back((req, arrived));
            } else {
                self.refuse(req, ShardError::TooManyRequests);
            }
            return;
        }
        match req {
            Request::Range(r, reply) => {
                let serializable = r.serializable;
                self.read(ReadOp::Range(r, reply), serializable, arrived);
            }
            Request::Write(cmd, reply) => {
                self.propose_command_at(cmd, reply, arrived);
            }
            Request::ReadTxn(txn, reply) => {
                let serializable = txn_serializable(&txn);
                self.read(ReadOp::Txn(txn, reply), serializable, arrived);
            }
            Request::MoveLeader(target, reply) => self.move_leader(target, reply),
            Request::Members(linearizable, reply) => {
                // etcd refuses MemberList on a learner, serializable or not.
                if self.is_learner() {
                    let _ = reply.send(Err(ShardError::NotForLearner));
                } else {
                    self.read(ReadOp::Members(reply), !linearizable, arrived);
                }
            }
            Request::MemberChange(op, reply) => self.member_change(op, reply),
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
                if self.node.role() != Role::Leader {
                    // Lease deadlines live on the leader.
                    self.forward(Forwarded::KeepAlive(id, now, reply), arrived);
                    return;
                }
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
                if self.node.role() != Role::Leader {
                    self.forward(Forwarded::TimeToLive(id, with_keys, now, reply), arrived);
                    return;
                }
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
        self.ticks += 1;
        match self.last_raft_tick {
            None => self.last_raft_tick = Some(now),
            Some(mut last) => {
                let mut n = 0;
                while now.duration_since(last) >= self.tick_interval {
                    if n == RAFT_TICKS_PER_CALL_MAX {
                        last = now;
                        break;
                    }
                    self.node.tick();
                    last += self.tick_interval;
                    n += 1;
                }
                self.last_raft_tick = Some(last);
            }
        }
        self.sweep();
        self.poll_snapshots();
        self.check_leader_transfers();
        self.sweep_forwarded();
        self.maybe_publish();
        if self.node.role() != Role::Leader {
            // Only the leader expires leases.
            if self.watch.has_unsynced() {
                self.watch.catch_up(&self.mvcc);
            }
            self.progress_notify(now);
            return;
        }
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
            let (tx, _rx) = oneshot::channel();
            if self.propose_command(Command::LeaseRevoke { id }, tx) {
                self.lease_revoking.insert(id);
            }
        }
        if self.watch.has_unsynced() {
            self.watch.catch_up(&self.mvcc);
        }
        self.progress_notify(now);
    }

    fn progress_notify(&mut self, now: Instant) {
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
            leader: self.node.leader().unwrap_or(0),
            is_learner: self.is_learner(),
            revision: self.mvcc.current_revision(),
            compact_revision: self.mvcc.compact_revision(),
            raft_term: self.node.term(),
            raft_index: self.node.status().commit,
            applied_index: self.applied_index,
            db_size_bytes: (st.file_bytes + st.mem_bytes).max(1),
            db_size_in_use_bytes: (st.live_file_bytes + st.mem_bytes).max(1),
            alarms: self.mvcc.alarms().to_vec(),
        }
    }
}

/// A client request this member forwards to the leader, with its reply
/// (and, for lease requests, the time it arrived).
enum Forwarded {
    KeepAlive(i64, Instant, Reply<i64>),
    TimeToLive(i64, bool, Instant, Reply<LeaseInfo>),
    Promote(u64, Reply<MemberChanged>),
}

impl Forwarded {
    fn request(&self) -> ForwardRequest {
        match self {
            Forwarded::KeepAlive(lease, ..) => ForwardRequest::KeepAlive { lease: *lease },
            Forwarded::TimeToLive(lease, keys, ..) => ForwardRequest::TimeToLive {
                lease: *lease,
                keys: *keys,
            },
            Forwarded::Promote(member, _) => ForwardRequest::Promote { member: *member },
        }
    }

    fn fail(self, e: ShardError) {
        match self {
            Forwarded::KeepAlive(.., reply) => {
                let _ = reply.send(Err(e));
            }
            Forwarded::TimeToLive(.., reply) => {
                let _ = reply.send(Err(e));
            }
            Forwarded::Promote(_, reply) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The request as a local one, for when this member leads by now.
    fn into_request(self, now: Option<Instant>) -> Request {
        let later = |at: Instant| now.map_or(at, |n| n.max(at));
        match self {
            Forwarded::KeepAlive(lease, at, reply) => {
                Request::LeaseKeepAlive(lease, later(at), reply)
            }
            Forwarded::TimeToLive(lease, keys, at, reply) => {
                Request::LeaseTimeToLive(lease, keys, later(at), reply)
            }
            Forwarded::Promote(id, reply) => Request::MemberChange(MemberOp::Promote { id }, reply),
        }
    }
}

/// A forwarded request waiting for the leader's answer.
struct Pending {
    forwarded: Forwarded,
    /// The shard tick it arrived at (its deadline counts from there).
    arrived: u64,
    /// The member it was delivered to, which may be serving it; `NO_NODE`
    /// while nobody is (not sent yet, the send failed, or refused).
    sent_to: NodeId,
    sent_at: u64,
    /// The last member that answered "not leader".
    refused_by: NodeId,
}

/// A forwarded request the leader serves: the answer its local request
/// path will give.
enum Serving {
    KeepAlive(oneshot::Receiver<Result<Revisioned<i64>, ShardError>>),
    TimeToLive(oneshot::Receiver<Result<Revisioned<LeaseInfo>, ShardError>>),
    Promote(oneshot::Receiver<Result<Revisioned<MemberChanged>, ShardError>>),
}

impl Serving {
    /// The answer once given.
    fn try_answer(&mut self) -> Option<ForwardAnswer> {
        fn take<T>(
            rx: &mut oneshot::Receiver<Result<Revisioned<T>, ShardError>>,
            ok: impl FnOnce(T) -> ForwardAnswer,
        ) -> Option<ForwardAnswer> {
            match rx.try_recv() {
                Ok(Ok(v)) => Some(ok(v.value)),
                Ok(Err(e)) => Some(ForwardAnswer::Failed(e)),
                Err(oneshot::error::TryRecvError::Empty) => None,
                // Dropped unanswered: the outcome is unknown.
                Err(oneshot::error::TryRecvError::Closed) => {
                    Some(ForwardAnswer::Failed(ShardError::Timeout))
                }
            }
        }
        match self {
            Serving::KeepAlive(rx) => take(rx, |ttl_secs| ForwardAnswer::KeepAlive { ttl_secs }),
            Serving::TimeToLive(rx) => take(rx, ForwardAnswer::TimeToLive),
            Serving::Promote(rx) => take(rx, ForwardAnswer::Promote),
        }
    }
}

/// Forwarding's state (see [`crate::forward`]).
#[derive(Default)]
struct Forwarding {
    /// This member's requests at the leader, by forward id.
    pending: HashMap<u64, Pending>,
    next_id: u64,
    /// Requests this member serves as leader: asker, its id, the answer.
    serving: Vec<(NodeId, u64, Serving)>,
}

/// Forwarding to the leader what only the leader serves: lease keep-alives
/// and TimeToLive (it alone keeps lease deadlines) and MemberPromote (it
/// alone knows how far a learner got), as etcd's followers do.
///
/// A follower sends the request on [`FORWARD_GROUP_ID`] and keeps it in a
/// bounded table ([`FORWARDED_REQUESTS_MAX`]) until the answer comes back.
/// A lease request reaches this only once a leader is known (it waits in
/// the shard's queue for one, see `Shard::needs_leader`); a promotion with
/// no leader known fails at once with "no leader". Unanswered
/// [`FORWARD_TIMEOUT_TICKS`] after it arrived, it fails with "request
/// timed out". A
/// keep-alive or TimeToLive is idempotent: it is sent again every
/// [`FORWARD_RETRY_TICKS`] (the transport may lose it) and to each new
/// leader. A promotion is sent again only where it was surely not served
/// (the send failed, or the member answered "not leader"); when the leader
/// changes while one may be in progress it fails with "request timed out",
/// its outcome unknown. A member that is not the leader answers "not
/// leader"; the follower then sends to the leader it knows next. A
/// follower that becomes leader serves its own pending requests itself.
///
/// The leader turns a forwarded request into the local [`Request`] and
/// handles it on the same path as its own clients', then sends the answer
/// back; the asker fills the response header from its own state.
impl<S: Storage + Clone + 'static> Shard<S> {
    fn forward(&mut self, forwarded: Forwarded, arrived: u64) {
        let fail = if self.is_learner() {
            Some(ShardError::NotForLearner)
        } else if self.transport.is_none() {
            Some(ShardError::NotLeader)
        } else if self.node.leader().is_none() {
            Some(ShardError::NoLeader)
        } else if self.forwarding.pending.len() >= FORWARDED_REQUESTS_MAX {
            Some(ShardError::TooManyRequests)
        } else {
            None
        };
        if let Some(e) = fail {
            forwarded.fail(e);
            return;
        }
        let id = self.forwarding.next_id;
        self.forwarding.next_id += 1;
        self.forwarding.pending.insert(
            id,
            Pending {
                forwarded,
                arrived,
                sent_to: raft::NO_NODE,
                sent_at: self.ticks,
                refused_by: raft::NO_NODE,
            },
        );
        self.send_forwarded(id);
    }

    /// Sends a pending request to the leader this member knows, or serves
    /// it here if that is this member.
    fn send_forwarded(&mut self, id: u64) {
        let Some(leader) = self.node.leader() else {
            return;
        };
        if leader == self.id {
            if let Some(p) = self.forwarding.pending.remove(&id) {
                let req = p.forwarded.into_request(self.now);
                self.handle(req);
            }
            return;
        }
        let Some(p) = self.forwarding.pending.get_mut(&id) else {
            return;
        };
        p.sent_to = leader;
        p.sent_at = self.ticks;
        let bytes = Forward::Request {
            id,
            request: p.forwarded.request(),
        }
        .encode();
        if let Some(t) = &self.transport {
            if let Err(e) = t.send(leader, FORWARD_GROUP_ID, bytes) {
                tracing::debug!("forwarded request to {leader:x} not sent: {e}");
                p.sent_to = raft::NO_NODE;
            }
        }
    }

    /// A frame on [`FORWARD_GROUP_ID`].
    fn on_forward(&mut self, from: NodeId, payload: &[u8]) {
        match Forward::decode(payload) {
            Ok(Forward::Request { id, request }) => self.serve_forwarded(from, id, request),
            Ok(Forward::Answer { id, answer }) => self.on_forward_answer(from, id, answer),
            Err(e) => tracing::warn!("peer {from:x}: undecodable forwarded request dropped: {e}"),
        }
    }

    fn on_forward_answer(&mut self, from: NodeId, id: u64, answer: ForwardAnswer) {
        let Some(p) = self.forwarding.pending.get_mut(&id) else {
            // Answered already (a request sent twice), or given up on.
            return;
        };
        if !answer.answers(&p.forwarded.request()) {
            tracing::warn!("peer {from:x}: forwarded answer of the wrong kind dropped");
            return;
        }
        if answer == ForwardAnswer::Failed(ShardError::NotLeader) {
            if p.sent_to == from {
                p.sent_to = raft::NO_NODE;
                p.refused_by = from;
                if self.node.leader().is_some_and(|l| l != from) {
                    self.send_forwarded(id);
                }
            }
            return;
        }
        let p = self.forwarding.pending.remove(&id).expect("present");
        match (p.forwarded, answer) {
            (f, ForwardAnswer::Failed(e)) => f.fail(e),
            (Forwarded::KeepAlive(.., reply), ForwardAnswer::KeepAlive { ttl_secs }) => {
                let _ = reply.send(Ok(self.header(ttl_secs)));
            }
            (Forwarded::TimeToLive(.., reply), ForwardAnswer::TimeToLive(info)) => {
                let _ = reply.send(Ok(self.header(info)));
            }
            (Forwarded::Promote(_, reply), ForwardAnswer::Promote(changed)) => {
                let _ = reply.send(Ok(self.header(changed)));
            }
            // Kinds were matched above.
            (f, _) => f.fail(ShardError::Timeout),
        }
    }

    /// A request forwarded to this member: served on the local path if it
    /// leads, else refused with "not leader".
    fn serve_forwarded(&mut self, from: NodeId, id: u64, request: ForwardRequest) {
        let now = match self.now {
            Some(now) if self.node.role() == Role::Leader => now,
            _ => {
                self.send_answer(from, id, ForwardAnswer::Failed(ShardError::NotLeader));
                return;
            }
        };
        if self.forwarding.serving.len() >= FORWARDED_REQUESTS_MAX {
            self.send_answer(from, id, ForwardAnswer::Failed(ShardError::TooManyRequests));
            return;
        }
        let (req, serving) = match request {
            ForwardRequest::KeepAlive { lease } => {
                let (tx, rx) = oneshot::channel();
                (
                    Request::LeaseKeepAlive(lease, now, tx),
                    Serving::KeepAlive(rx),
                )
            }
            ForwardRequest::TimeToLive { lease, keys } => {
                let (tx, rx) = oneshot::channel();
                (
                    Request::LeaseTimeToLive(lease, keys, now, tx),
                    Serving::TimeToLive(rx),
                )
            }
            ForwardRequest::Promote { member } => {
                let (tx, rx) = oneshot::channel();
                (
                    Request::MemberChange(MemberOp::Promote { id: member }, tx),
                    Serving::Promote(rx),
                )
            }
        };
        self.handle(req);
        self.forwarding.serving.push((from, id, serving));
        self.answer_served();
    }

    /// Sends the answers of served forwarded requests that have one.
    fn answer_served(&mut self) {
        if self.forwarding.serving.is_empty() {
            return;
        }
        let mut done = Vec::new();
        self.forwarding
            .serving
            .retain_mut(|(from, id, s)| match s.try_answer() {
                Some(a) => {
                    done.push((*from, *id, a));
                    false
                }
                None => true,
            });
        for (from, id, answer) in done {
            self.send_answer(from, id, answer);
        }
    }

    fn send_answer(&self, to: NodeId, id: u64, answer: ForwardAnswer) {
        let Some(t) = &self.transport else {
            return;
        };
        let mut bytes = Forward::Answer { id, answer }.encode();
        if bytes.len() > crate::peer::FRAME_BYTES_MAX {
            bytes = Forward::Answer {
                id,
                answer: ForwardAnswer::Failed(ShardError::TooLarge),
            }
            .encode();
        }
        if let Err(e) = t.send(to, FORWARD_GROUP_ID, bytes) {
            tracing::debug!("forwarded answer to {to:x} not sent: {e}");
        }
    }

    /// Once a tick: fails forwarded requests past their deadline, and sends
    /// again those that must go to a new leader or may have been lost.
    fn sweep_forwarded(&mut self) {
        if self.forwarding.pending.is_empty() {
            return;
        }
        let ticks = self.ticks;
        let leader = self.node.leader();
        let mut expired = Vec::new();
        let mut resend = Vec::new();
        let mut lost = Vec::new();
        for (&id, p) in &self.forwarding.pending {
            if p.arrived + FORWARD_TIMEOUT_TICKS <= ticks {
                expired.push(id);
                continue;
            }
            let Some(leader) = leader else {
                continue;
            };
            let retry_due = p.sent_at + FORWARD_RETRY_TICKS <= ticks;
            let idempotent = p.forwarded.request().idempotent();
            if leader == self.id {
                resend.push(id);
            } else if p.sent_to == raft::NO_NODE {
                if leader != p.refused_by || retry_due {
                    resend.push(id);
                }
            } else if p.sent_to != leader {
                if idempotent {
                    resend.push(id);
                } else {
                    lost.push(id);
                }
            } else if idempotent && retry_due {
                resend.push(id);
            }
        }
        for id in expired {
            let p = self.forwarding.pending.remove(&id).expect("listed");
            let e = if leader.is_none() {
                ShardError::NoLeader
            } else {
                ShardError::Timeout
            };
            p.forwarded.fail(e);
        }
        for id in lost {
            let p = self.forwarding.pending.remove(&id).expect("listed");
            p.forwarded.fail(ShardError::Timeout);
        }
        for id in resend {
            self.send_forwarded(id);
        }
    }
}

/// Whether the client of a request held for a leader has gone (its reply
/// has no receiver any more).
fn abandoned(req: &Request) -> bool {
    match req {
        Request::Write(_, reply) => reply.is_closed(),
        Request::Range(_, reply) => reply.is_closed(),
        Request::ReadTxn(_, reply) => reply.is_closed(),
        Request::Members(_, reply) => reply.is_closed(),
        Request::LeaseKeepAlive(.., reply) => reply.is_closed(),
        Request::LeaseTimeToLive(.., reply) => reply.is_closed(),
        _ => false,
    }
}

fn fail_read(op: ReadOp, e: ShardError) {
    match op {
        ReadOp::Range(_, reply) => {
            let _ = reply.send(Err(e));
        }
        ReadOp::Txn(_, reply) => {
            let _ = reply.send(Err(e));
        }
        ReadOp::Members(reply) => {
            let _ = reply.send(Err(e));
        }
    }
}

/// etcd serves a read-only transaction without a ReadIndex round only when
/// every range in it is serializable.
fn txn_serializable(t: &engine::TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).all(|op| match op {
        engine::RequestOp::Range(r) => r.serializable,
        engine::RequestOp::Txn(t) => txn_serializable(t),
        _ => true,
    }) && (!t.success.is_empty() || !t.failure.is_empty())
}
