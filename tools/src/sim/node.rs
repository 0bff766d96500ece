//! One simulated kvik node: a Raft core, the real state machine
//! ([`engine::Mvcc`]) and the real WAL ([`raftlog::Wal`]) over a
//! [`SimDisk`], plus the hard state file.
//!
//! # Entry payloads
//!
//! A command entry's data is the id of the client request that proposed it
//! (8 bytes, little endian) followed by the engine's encoding of the
//! [`Command`] ([`Command::encode`]). The id lets the node that received a
//! request answer it when the entry is applied, and lets the checker tie an
//! acknowledgement to the committed entry. Empty entries (a new leader's
//! no-op) and configuration changes are not applied to the store.
//!
//! # Persistence order
//!
//! For each ready: entries are appended to the WAL (truncating a
//! conflicting suffix first) and synced, then the hard state is saved and
//! synced, and only then are messages sent and committed entries applied.
//! An I/O error (a power cut armed by the simulator) stops the node on the
//! spot: nothing of that ready is sent, and the node is down until the
//! simulator restarts it from its disk.
//!
//! # Restart
//!
//! A restart recovers the WAL and the hard state from the disk and starts a
//! fresh [`Mvcc`]; the core hands back the committed entries from index 1
//! and the node applies them again (the simulator never compacts the log).

use std::collections::BTreeMap;

use engine::{
    Applied, Command, CompactionRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    Mvcc, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use raftlog::raft::{Entry, EntryKind, HardState};
use raftlog::sim::{block_on, SimDisk};
use raftlog::Wal;

use super::checker::{payload_hash, Checker, LogMeta};
use super::client::{key_name, parse_value, value_bytes, Reply, Request};
use super::core::{Consensus, CoreParams, CoreReady};
use super::hardstate::HardStateFile;
use super::linearizability::{KvInput, KvOutput};

/// The full state hash ([`Mvcc::hash`], linear in the size of the whole
/// history) is compared at every index that is a multiple of this; the
/// revision and a digest of the current key-value pairs
/// ([`kv_digest`]) are compared at every index.
pub const STATE_HASH_EVERY: u64 = 64;

/// A digest of every current key with its value, revisions, version and
/// lease: cheap, since the simulated keyspace is a handful of keys.
pub fn kv_digest(mvcc: &Mvcc) -> u64 {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..RangeRequest::default()
    };
    let Ok(r) = mvcc.range(&all) else {
        return 0;
    };
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for kv in &r.kvs {
        h = payload_hash(&[h.to_le_bytes().as_slice(), &kv.key, &kv.value].concat());
        for v in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
            h = payload_hash(&[h.to_le_bytes(), v.to_le_bytes()].concat());
        }
    }
    h
}

/// Deliberately broken behaviour, to show that the checkers catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planted {
    /// No planted bug.
    None,
    /// The Raft core grants votes without the log up-to-date check.
    SkipLogUpToDateCheck,
    /// The Raft core commits entries of earlier terms by counting replicas
    /// (Raft's Figure 8; the reference core does not plant it). The
    /// simulator's random schedules are not known to catch it: thousands of
    /// seeds pass with it planted. `raftlog`'s `replication.rs` tests play
    /// Figure 8's schedule for it.
    CommitPreviousTermByCount,
    /// Node 1 skips applying every entry whose index is a multiple of 5.
    BrokenApply,
    /// Every disk's fsync reports success without making anything durable.
    LyingFsync,
    /// The vote is not persisted: a node that restarts forgets whom it
    /// voted for in its current term.
    VolatileVote,
    /// Every node answers reads from its local state at once, leader or
    /// not, without a read index.
    StaleReads,
    /// The leader acknowledges a write as soon as it proposes it.
    AckOnPropose,
}

impl Planted {
    /// Every planted bug.
    pub const ALL: [Planted; 7] = [
        Planted::SkipLogUpToDateCheck,
        Planted::CommitPreviousTermByCount,
        Planted::BrokenApply,
        Planted::LyingFsync,
        Planted::VolatileVote,
        Planted::StaleReads,
        Planted::AckOnPropose,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Planted::None => "none",
            Planted::SkipLogUpToDateCheck => "skip-log-up-to-date-check",
            Planted::CommitPreviousTermByCount => "commit-previous-term-by-count",
            Planted::BrokenApply => "broken-apply",
            Planted::LyingFsync => "lying-fsync",
            Planted::VolatileVote => "volatile-vote",
            Planted::StaleReads => "stale-reads",
            Planted::AckOnPropose => "ack-on-propose",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Planted> {
        std::iter::once(Planted::None)
            .chain(Planted::ALL)
            .find(|p| p.name() == s)
    }
}

/// A message on the simulated network.
#[derive(Clone, Debug)]
pub enum Wire<M> {
    /// Between nodes.
    Raft(M),
    /// Client to node.
    Request {
        /// Request id.
        id: u64,
        /// What is asked.
        request: Request,
    },
    /// Node to client.
    Reply {
        /// Request id.
        id: u64,
        /// The answer.
        reply: Reply,
    },
}

/// Why handling something stopped.
#[derive(Debug)]
pub enum Stop {
    /// The node hit an I/O error (a power cut) and is down now.
    Crashed(String),
    /// A checker found a violation.
    Violation(String),
}

impl From<String> for Stop {
    fn from(s: String) -> Stop {
        Stop::Violation(s)
    }
}

/// Outgoing messages: (from, to, message).
pub type Outbox<M> = Vec<(u64, u64, Wire<M>)>;

/// A request waiting for its entry to be applied.
#[derive(Debug)]
struct PendingWrite {
    client: u64,
    request: Request,
}

/// A read waiting for its read index, then for the apply to reach it.
#[derive(Debug)]
struct PendingRead {
    client: u64,
    key: u32,
    /// Read index, once confirmed.
    index: Option<u64>,
}

/// The running state of a node (absent while it is down).
pub struct Live<C: Consensus> {
    /// The Raft core.
    pub core: C,
    wal: Wal<SimDisk>,
    hs_file: HardStateFile,
    hard_state: HardState,
    /// The state machine.
    pub mvcc: Mvcc,
    /// Last applied index.
    pub applied: u64,
    /// The log as the checker sees it: entry `i` at `i - 1`.
    pub log: Vec<LogMeta>,
    /// The term this node last reported leading.
    led_term: Option<u64>,
    writes: BTreeMap<u64, PendingWrite>,
    reads: BTreeMap<u64, PendingRead>,
}

/// A node of the simulated cluster.
pub struct Node<C: Consensus> {
    /// Raft id (1-based).
    pub id: u64,
    /// Its disk; survives crashes.
    pub disk: SimDisk,
    /// Running state, `None` while down.
    pub live: Option<Live<C>>,
    /// A power cut is armed and will stop the node at its next I/O.
    pub doomed: bool,
    /// Times started.
    pub starts: u64,
    /// Steps between ticks of this node's clock.
    pub tick_period: u64,
    /// Step offset of its ticks.
    pub tick_phase: u64,
    params: CoreParams,
    voters: Vec<u64>,
    planted: Planted,
    /// Followers take client requests and forward them to the leader.
    pub forwarding: bool,
}

fn io<T>(r: Result<T, impl std::fmt::Display>, what: &str) -> Result<T, Stop> {
    r.map_err(|e| Stop::Crashed(format!("{what}: {e}")))
}

/// Splits an entry payload into request id and command.
pub fn decode_payload(data: &[u8]) -> Result<(u64, Command), String> {
    if data.len() < 8 {
        return Err(format!("entry payload of {} bytes", data.len()));
    }
    let id = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let cmd = Command::decode(&data[8..]).map_err(|e| format!("undecodable command: {e:?}"))?;
    Ok((id, cmd))
}

/// The request id an entry carries (0 for none).
pub fn payload_request(data: &[u8]) -> u64 {
    if data.len() < 8 {
        0
    } else {
        u64::from_le_bytes(data[..8].try_into().expect("8 bytes"))
    }
}

fn range_one(key: u32) -> RangeRequest {
    RangeRequest {
        key: key_name(key),
        ..RangeRequest::default()
    }
}

/// The engine command of a client request.
pub fn command_of(request: &Request) -> Command {
    match request {
        Request::Compact(rev) => Command::Compact(CompactionRequest {
            revision: *rev,
            physical: false,
        }),
        Request::Kv { key, input, .. } => match *input {
            KvInput::Put(v) => Command::Put(PutRequest {
                key: key_name(*key),
                value: value_bytes(v),
                ..PutRequest::default()
            }),
            KvInput::Delete => Command::DeleteRange(DeleteRangeRequest {
                key: key_name(*key),
                ..DeleteRangeRequest::default()
            }),
            KvInput::Get => Command::Txn(TxnRequest {
                compare: Vec::new(),
                success: vec![RequestOp::Range(range_one(*key))],
                failure: Vec::new(),
            }),
            KvInput::Cas { expect, new } => Command::Txn(TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal,
                    target: CompareTarget::Value(value_bytes(expect)),
                    key: key_name(*key),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp::Put(PutRequest {
                    key: key_name(*key),
                    value: value_bytes(new),
                    ..PutRequest::default()
                })],
                failure: Vec::new(),
            }),
        },
    }
}

fn value_of(kvs: &[engine::KeyValue]) -> Option<u64> {
    kvs.first()
        .map(|kv| parse_value(&kv.value).unwrap_or(u64::MAX))
}

/// The client-visible result of an applied command.
fn output_of(request: &Request, applied: &Applied) -> Option<KvOutput> {
    let Request::Kv { input, .. } = request else {
        return None;
    };
    Some(match (input, applied) {
        (KvInput::Put(_), _) => KvOutput::Put,
        (KvInput::Delete, Applied::DeleteRange(d)) => KvOutput::Delete(d.deleted > 0),
        (KvInput::Cas { .. }, Applied::Txn(t)) => KvOutput::Cas(t.succeeded),
        (KvInput::Get, Applied::Txn(t)) => match t.responses.first() {
            Some(engine::ResponseOp::Range(r)) => KvOutput::Get(value_of(&r.kvs)),
            _ => return None,
        },
        _ => return None,
    })
}

impl<C: Consensus> Node<C> {
    /// A node with an empty disk, not started.
    pub fn new(
        id: u64,
        voters: Vec<u64>,
        params: CoreParams,
        planted: Planted,
        tick_period: u64,
        tick_phase: u64,
    ) -> Node<C> {
        let disk = SimDisk::new();
        if planted == Planted::LyingFsync {
            disk.set_lying_sync(true);
        }
        Node {
            id,
            disk,
            live: None,
            doomed: false,
            starts: 0,
            tick_period,
            tick_phase,
            params,
            voters,
            planted,
            forwarding: false,
        }
    }

    /// Starts the node from its disk (a new member if the disk is empty).
    /// The caller has already simulated the power loss on the disk. An
    /// `Err(Stop::Crashed)` means recovery itself hit an I/O error.
    pub fn start(&mut self, chk: &mut Checker) -> Result<(), Stop> {
        self.doomed = false;
        self.starts += 1;
        let (wal, rec) = match block_on(Wal::open(self.disk.clone())) {
            Ok(v) => v,
            Err(raftlog::WalError::Corrupt {
                file,
                offset,
                reason,
            }) => {
                return Err(Stop::Violation(format!(
                    "node {}: WAL refuses to open after a crash: {file} at {offset}: {reason}",
                    self.id
                )))
            }
            Err(e) => return Err(Stop::Crashed(format!("WAL open: {e}"))),
        };
        let (hs_file, mut hs) = io(block_on(HardStateFile::open(&self.disk)), "hard state open")?;
        // The WAL is synced before the hard state file, so a crash between
        // the two can leave entries of a term the hard state has not
        // reached yet, and the hard state may hold a commit index whose
        // entries' sync was cut. Nothing of that ready was sent, so raising
        // the term (with no vote) and lowering the commit index is sound.
        let last_term = rec.entries.last().map_or(0, |e| e.term);
        if hs.term < last_term {
            hs.term = last_term;
            hs.vote = 0;
        }
        hs.commit = hs.commit.min(rec.last_index);
        let mut log = Vec::with_capacity(rec.entries.len());
        let mut entries = Vec::with_capacity(rec.entries.len());
        let mut prev_term = 0;
        for e in &rec.entries {
            let meta = LogMeta {
                term: e.term,
                hash: payload_hash(&e.payload),
            };
            // Whatever survived must be what was appended.
            chk.append(self.id, e.index, e.term, meta.hash, prev_term)?;
            prev_term = e.term;
            log.push(meta);
            entries.push(decode_stored(e.term, e.index, &e.payload));
        }
        let fresh = rec.entries.is_empty() && hs == HardState::default();
        let mut params = self.params;
        params.seed = params
            .seed
            .wrapping_add(self.starts.wrapping_mul(0x9e37_79b9));
        let core = if fresh {
            C::bootstrap(self.id, &self.voters, &params)
        } else {
            C::restart(self.id, &self.voters, hs, entries, &params)
        };
        self.live = Some(Live {
            core,
            wal,
            hs_file,
            hard_state: hs,
            mvcc: Mvcc::new(),
            applied: 0,
            log,
            led_term: None,
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
        });
        Ok(())
    }

    /// Marks the node down, forgetting everything not on its disk.
    pub fn stop(&mut self) {
        self.live = None;
    }

    /// Whether the node runs.
    pub fn is_up(&self) -> bool {
        self.live.is_some()
    }

    /// Delivers a Raft message.
    pub fn step(&mut self, msg: C::Msg) -> Result<(), Stop> {
        let id = self.id;
        match self.live.as_mut() {
            Some(live) => live
                .core
                .step(msg)
                .map_err(|e| Stop::Violation(format!("node {id}: step: {e}"))),
            None => Ok(()),
        }
    }

    /// Handles a client request.
    pub fn request(&mut self, client: u64, id: u64, request: Request, out: &mut Outbox<C::Msg>) {
        let me = self.id;
        let planted = self.planted;
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let status = live.core.status();
        let reply = |out: &mut Outbox<C::Msg>, reply: Reply| {
            out.push((me, client, Wire::Reply { id, reply }));
        };
        if let (
            Planted::StaleReads,
            Request::Kv {
                key,
                input: KvInput::Get,
                ..
            },
        ) = (planted, &request)
        {
            let r = live.mvcc.range(&range_one(*key)).expect("range");
            reply(
                out,
                Reply::Done {
                    output: Some(KvOutput::Get(value_of(&r.kvs))),
                    revision: live.mvcc.current_revision(),
                },
            );
            return;
        }
        // A follower takes the request only if it can forward it to a
        // leader it knows; the outcome of a forwarded proposal is then
        // unknown until the entry is applied here.
        let forward = C::FORWARDS && self.forwarding && status.leader != 0;
        if !status.is_leader && !forward {
            reply(
                out,
                Reply::NotLeader {
                    hint: status.leader,
                },
            );
            return;
        }
        match &request {
            Request::Kv {
                key,
                input: KvInput::Get,
                via_log: false,
            } => {
                live.reads.insert(
                    id,
                    PendingRead {
                        client,
                        key: *key,
                        index: None,
                    },
                );
                live.core.read_index(id);
            }
            _ => {
                let mut data = id.to_le_bytes().to_vec();
                data.extend_from_slice(&command_of(&request).encode());
                if let Err(e) = live.core.propose(data) {
                    reply(out, Reply::Refused(e));
                    return;
                }
                let early = match (planted, &request) {
                    (Planted::AckOnPropose, Request::Kv { input, .. }) => match input {
                        KvInput::Put(_) => Some(KvOutput::Put),
                        KvInput::Delete => Some(KvOutput::Delete(true)),
                        KvInput::Cas { .. } => Some(KvOutput::Cas(true)),
                        KvInput::Get => None,
                    },
                    _ => None,
                };
                match early {
                    Some(output) => reply(
                        out,
                        Reply::Done {
                            output: Some(output),
                            revision: live.mvcc.current_revision(),
                        },
                    ),
                    None => {
                        live.writes.insert(id, PendingWrite { client, request });
                    }
                }
            }
        }
    }

    /// Handles every ready the core has, up to a bound. `max_term` is the
    /// highest term in the cluster (for the checker).
    pub fn process(
        &mut self,
        out: &mut Outbox<C::Msg>,
        chk: &mut Checker,
        max_term: u64,
    ) -> Result<(), Stop> {
        for _ in 0..16 {
            let Some(live) = self.live.as_mut() else {
                return Ok(());
            };
            let Some(rd) = live.core.ready() else {
                break;
            };
            self.handle_ready(rd, out, chk, max_term)?;
        }
        self.after_ready(out, chk)
    }

    fn handle_ready(
        &mut self,
        rd: CoreReady<C::Msg>,
        out: &mut Outbox<C::Msg>,
        chk: &mut Checker,
        max_term: u64,
    ) -> Result<(), Stop> {
        let id = self.id;
        let planted = self.planted;
        let live = self.live.as_mut().expect("live");
        if rd.snapshots > 0 {
            return Err(Stop::Violation(format!(
                "node {id}: the core sent a snapshot, but nothing was compacted"
            )));
        }
        // 1. Entries: truncate a conflicting suffix, append, sync.
        if let Some(first) = rd.entries.first() {
            if let Some(t) = live.led_term {
                if first.index <= live.log.len() as u64 && live.core.status().term == t {
                    return Err(Stop::Violation(format!(
                        "node {id} overwrites its log from entry {} while leading term {t}",
                        first.index
                    )));
                }
            }
            if first.index == 0 || first.index > live.log.len() as u64 + 1 {
                return Err(Stop::Violation(format!(
                    "node {id}: the core appends entry {} to a log ending at {}",
                    first.index,
                    live.log.len()
                )));
            }
            let keep = first.index - 1;
            if keep < live.applied || keep < live.hard_state.commit {
                return Err(Stop::Violation(format!(
                    "node {id}: the core overwrites entry {} (applied {}, committed {})",
                    first.index, live.applied, live.hard_state.commit
                )));
            }
            if keep < live.wal.last_index() {
                io(block_on(live.wal.truncate_after(keep)), "WAL truncate")?;
                live.log.truncate(keep as usize);
            }
            for e in &rd.entries {
                let prev_term = live.log.last().map_or(0, |m| m.term);
                let stored = encode_stored(e);
                let hash = payload_hash(&stored);
                chk.append(id, e.index, e.term, hash, prev_term)?;
                live.wal.append(e.term, e.index, &stored);
                live.log.push(LogMeta { term: e.term, hash });
            }
            io(block_on(live.wal.sync()), "WAL sync")?;
        }
        // 2. Hard state.
        if let Some(hs) = rd.hard_state {
            if hs.term < live.hard_state.term {
                return Err(Stop::Violation(format!(
                    "node {id}: term goes back from {} to {}",
                    live.hard_state.term, hs.term
                )));
            }
            if hs.commit < live.hard_state.commit {
                return Err(Stop::Violation(format!(
                    "node {id}: commit index goes back from {} to {}",
                    live.hard_state.commit, hs.commit
                )));
            }
            if hs.term == live.hard_state.term
                && live.hard_state.vote != 0
                && hs.vote != live.hard_state.vote
            {
                return Err(Stop::Violation(format!(
                    "node {id}: changes its vote in term {} from {} to {}",
                    hs.term, live.hard_state.vote, hs.vote
                )));
            }
            let mut stored = hs;
            if planted == Planted::VolatileVote {
                stored.vote = 0;
            }
            io(block_on(live.hs_file.save(stored)), "hard state save")?;
            live.hard_state = hs;
        }
        // 3. Messages, now that their premises are durable.
        for m in rd.messages {
            let to = C::msg_to(&m);
            out.push((id, to, Wire::Raft(m)));
        }
        // 4. Apply.
        for e in rd.committed {
            if e.index <= live.applied {
                continue;
            }
            if e.index != live.applied + 1 {
                return Err(Stop::Violation(format!(
                    "node {id}: applies entry {} after {}",
                    e.index, live.applied
                )));
            }
            let stored = encode_stored(&e);
            let hash = payload_hash(&stored);
            match live.log.get((e.index - 1) as usize) {
                Some(m) if m.term == e.term && m.hash == hash => {}
                _ => {
                    return Err(Stop::Violation(format!(
                        "node {id}: commits entry {} of term {}, which its log does not hold",
                        e.index, e.term
                    )))
                }
            }
            let conf_change = e.kind == EntryKind::ConfChange;
            let request = if conf_change {
                0
            } else {
                payload_request(&e.data)
            };
            chk.commit(id, e.index, e.term, hash, request, max_term)?;
            live.applied = e.index;
            let before = live.mvcc.current_revision();
            if conf_change {
                live.core.apply_conf_change(&e.data).map_err(|err| {
                    Stop::Violation(format!("node {id}: entry {}: {err}", e.index))
                })?;
            }
            if conf_change || e.data.is_empty() {
                chk.applied(id, e.index, before, kv_digest(&live.mvcc))?;
                continue;
            }
            let (req, cmd) = decode_payload(&e.data)
                .map_err(|err| Stop::Violation(format!("node {id}: entry {}: {err}", e.index)))?;
            if planted == Planted::BrokenApply && id == 1 && e.index % 5 == 0 {
                chk.applied(id, e.index, before, kv_digest(&live.mvcc))?;
                continue;
            }
            let res = live.mvcc.apply(&cmd);
            live.mvcc.skip_events();
            let rev = live.mvcc.current_revision();
            if rev < before {
                return Err(Stop::Violation(format!(
                    "node {id}: revision goes back from {before} to {rev} at entry {}",
                    e.index
                )));
            }
            chk.applied(id, e.index, rev, kv_digest(&live.mvcc))?;
            if e.index % STATE_HASH_EVERY == 0 {
                chk.state_hash(id, e.index, live.mvcc.hash())?;
            }
            if let Some(w) = live.writes.remove(&req) {
                let reply = match &res {
                    Ok(applied) => Reply::Done {
                        output: output_of(&w.request, applied),
                        revision: rev,
                    },
                    Err(err) => Reply::Refused(format!("{err:?}")),
                };
                out.push((id, w.client, Wire::Reply { id: req, reply }));
            }
        }
        // 5. Read states.
        for (index, ctx) in rd.read_states {
            if let Some(r) = live.reads.get_mut(&ctx) {
                r.index = Some(index);
            }
        }
        live.core.advance();
        Ok(())
    }

    /// After the readies: answer reads whose index is applied and report
    /// the role to the checker.
    fn after_ready(&mut self, out: &mut Outbox<C::Msg>, chk: &mut Checker) -> Result<(), Stop> {
        let id = self.id;
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        let applied = live.applied;
        let ready: Vec<u64> = live
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(k, _)| *k)
            .collect();
        for req in ready {
            let r = live.reads.remove(&req).expect("read");
            let res = live.mvcc.range(&range_one(r.key)).expect("range");
            out.push((
                id,
                r.client,
                Wire::Reply {
                    id: req,
                    reply: Reply::Done {
                        output: Some(KvOutput::Get(value_of(&res.kvs))),
                        revision: live.mvcc.current_revision(),
                    },
                },
            ));
        }
        let status = live.core.status();
        if status.is_leader {
            chk.leader(id, status.term, &live.log)?;
            live.led_term = Some(status.term);
        } else {
            live.led_term = None;
        }
        Ok(())
    }
}

/// The WAL payload of an entry: a kind byte (0 normal, 1 configuration
/// change) before the data, so a restart restores the kind.
fn encode_stored(e: &Entry) -> Vec<u8> {
    let mut b = Vec::with_capacity(e.data.len() + 1);
    b.push(u8::from(e.kind == EntryKind::ConfChange));
    b.extend_from_slice(&e.data);
    b
}

/// The entry `(term, index)` whose WAL payload is `b` ([`encode_stored`]).
fn decode_stored(term: u64, index: u64, b: &[u8]) -> Entry {
    let (kind, data) = match b.split_first() {
        Some((1, data)) => (EntryKind::ConfChange, data),
        Some((_, data)) => (EntryKind::Normal, data),
        None => (EntryKind::Normal, b),
    };
    Entry {
        term,
        index,
        kind,
        data: data.to_vec(),
    }
}
