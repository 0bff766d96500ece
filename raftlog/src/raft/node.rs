//! `RawNode`: one member of one Raft group, as a deterministic state machine.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};

use super::conf::{ConfChange, ConfChangeKind};
use super::config::{Config, PENDING_READS_MAX, READY_COMMITTED_BYTES_MAX, ROUNDS_TRACKED_MAX};
use super::error::{ProposeError, RaftError, StartError};
use super::log::RaftLog;
use super::progress::Progress;
use super::rng::SplitMix64;
use super::types::{
    ConfState, Entry, EntryKind, GroupId, HardState, Message, MessageBody, NodeId, ProgressState,
    ReadState, Ready, Role, SnapshotMeta, SoftState, Status, NO_NODE,
};

/// Largest entry payload a proposal may carry: the WAL's record limit less
/// room for the application's own framing.
pub const ENTRY_DATA_BYTES_MAX: u64 = crate::wal::RECORD_PAYLOAD_BYTES_MAX as u64 - 64 * 1024;

/// Refuses an entry whose payload exceeds [`ENTRY_DATA_BYTES_MAX`].
fn check_entry_size(e: &Entry) -> Result<(), ProposeError> {
    let bytes = e.data.len() as u64;
    if bytes > ENTRY_DATA_BYTES_MAX {
        return Err(ProposeError::TooLarge {
            bytes,
            max: ENTRY_DATA_BYTES_MAX,
        });
    }
    Ok(())
}

/// How a member starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// A brand-new group. Every founding member must pass the same `voters`.
    /// The log starts with one `AddVoter` entry per voter (term 1, already
    /// committed), so a member that joins later learns the founding
    /// configuration from the log like any other change.
    Bootstrap {
        /// The founding voters.
        voters: Vec<NodeId>,
        /// Each founding voter's conf-change context, in the order of
        /// `voters`, or empty for none. The application keeps what a member
        /// that joins later must learn from the log here (etcd keeps the
        /// member's URLs), so every founding member must pass the same.
        contexts: Vec<Vec<u8>>,
    },
    /// A member restarting from its durable state.
    Restart {
        /// The last persisted hard state.
        hard_state: HardState,
        /// The configuration as of the applied index (`Config::applied`, or
        /// the snapshot's index when that is 0).
        conf: ConfState,
        /// The latest state snapshot, if any.
        snapshot: Option<SnapshotMeta>,
        /// The persisted log entries. Entries at or below the snapshot
        /// index are kept as a tail for lagging followers when they run
        /// contiguously up to it (the first of them only anchors the log:
        /// its index and term); otherwise they are skipped.
        entries: Vec<Entry>,
    },
    /// A member added to a running group: empty log, no configuration. It
    /// learns both from the leader (log or snapshot) once a configuration
    /// change names it.
    Join,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VoteResult {
    Pending,
    Won,
    Lost,
}

/// An accepting answer to an append or a snapshot: the logs match up to
/// `index`.
fn append_ack(index: u64) -> MessageBody {
    MessageBody::AppendResp {
        index,
        reject: false,
        reject_hint: 0,
        hint_term: 0,
    }
}

/// The answer to a vote (`pre` false) or pre-vote request.
fn vote_resp(pre: bool, reject: bool) -> MessageBody {
    if pre {
        MessageBody::PreVoteResp { reject }
    } else {
        MessageBody::VoteResp { reject }
    }
}

/// What the last `Ready` handed out, applied by `advance`.
#[derive(Clone, Debug)]
struct Handed {
    stable: Option<(u64, u64)>,
    applied_to: Option<u64>,
    snapshot: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    seq: u64,
    index: u64,
    from: NodeId,
    ctx: u64,
}

/// A leader's heartbeat rounds and the reads waiting on them.
///
/// Every heartbeat broadcast is a numbered round; its number goes out as the
/// heartbeat's `ctx` and comes back in the answers. A read waits for the
/// round sent right after it arrived: once a quorum of voters has answered
/// that round (or a later one), this member was still leader after the read
/// arrived, so its commit index at arrival is a linearizable read point.
/// The rounds' send ticks also date the lease.
#[derive(Clone, Debug, Default)]
struct Reads {
    /// Number of the next round.
    next_round: u64,
    /// `(round, tick sent)` of recent rounds, oldest first.
    round_ticks: VecDeque<(u64, u64)>,
    /// Highest round each peer answered.
    acks: BTreeMap<NodeId, u64>,
    /// Reads waiting for round `seq` to be confirmed.
    pending: VecDeque<PendingRead>,
    /// Reads received before the leader committed an entry of its term.
    waiting_commit: VecDeque<(NodeId, u64)>,
}

impl Reads {
    fn new() -> Reads {
        Reads {
            next_round: 1,
            ..Reads::default()
        }
    }
}

/// One member of one Raft group.
///
/// It never reads a clock, draws no randomness except from its seeded
/// generator, does no I/O and starts no threads: the application feeds it
/// ticks and messages and carries out each [`Ready`].
pub struct RawNode {
    cfg: Config,
    term: u64,
    vote: NodeId,
    log: RaftLog,
    role: Role,
    leader: NodeId,
    /// Configuration as of the applied index.
    conf: ConfState,
    /// Per-member progress, while leader (includes this member).
    prs: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_election_ticks: u32,
    rng: SplitMix64,
    lead_transferee: NodeId,
    /// Ticks since start (the lease's clock).
    ticks_now: u64,
    /// No lease reads for the rest of this term: a `TimeoutNow` went out,
    /// and its target may win an election that bypasses leases.
    lease_disabled: bool,
    /// With lease reads on, a restarted member has forgotten whether it
    /// promised a leader not to vote; it keeps the promise for one election
    /// timeout after start.
    restart_guard: bool,
    /// While leader: index of the last conf change appended (or of the
    /// leader's first entry). No new change until it is applied.
    pending_conf_index: u64,
    uncommitted_bytes: u64,
    reads: Reads,
    msgs: Vec<Message>,
    read_states: Vec<ReadState>,
    prev_soft: SoftState,
    prev_hard: HardState,
    handed: Option<Handed>,
    /// Conf changes handed out in `Ready::committed`, to be applied by the
    /// application before `advance`.
    conf_changes_to_apply: VecDeque<ConfChange>,
}

impl std::fmt::Debug for RawNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawNode")
            .field("id", &self.cfg.id)
            .field("group", &self.cfg.group)
            .field("role", &self.role)
            .field("term", &self.term)
            .field("leader", &self.leader)
            .field("commit", &self.log.committed)
            .field("last_index", &self.log.last_index())
            .finish_non_exhaustive()
    }
}

impl RawNode {
    /// Starts a member.
    pub fn new(cfg: Config, start: Start) -> Result<RawNode, StartError> {
        cfg.validate()?;
        let rng = SplitMix64::new(cfg.seed ^ cfg.id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut node = RawNode {
            term: 0,
            vote: NO_NODE,
            log: RaftLog::new(0, 0),
            role: Role::Follower,
            leader: NO_NODE,
            conf: ConfState::default(),
            prs: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_ticks: cfg.election_ticks,
            rng,
            lead_transferee: NO_NODE,
            ticks_now: 0,
            lease_disabled: false,
            restart_guard: false,
            pending_conf_index: 0,
            uncommitted_bytes: 0,
            reads: Reads::new(),
            msgs: Vec::new(),
            read_states: Vec::new(),
            prev_soft: SoftState::default(),
            prev_hard: HardState::default(),
            handed: None,
            conf_changes_to_apply: VecDeque::new(),
            cfg,
        };
        match start {
            Start::Bootstrap { voters, contexts } => {
                let mut sorted = voters.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.is_empty() || sorted.len() != voters.len() || sorted[0] == NO_NODE {
                    return Err(StartError::BadVoters);
                }
                if !contexts.is_empty() && contexts.len() != voters.len() {
                    return Err(StartError::BadVoters);
                }
                let ents: Vec<Entry> = voters
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Entry {
                        term: 1,
                        index: i as u64 + 1,
                        kind: EntryKind::ConfChange,
                        data: ConfChange {
                            kind: ConfChangeKind::AddVoter,
                            node: *v,
                            context: contexts.get(i).cloned().unwrap_or_default(),
                        }
                        .encode(),
                    })
                    .collect();
                let last = node.log.append(ents);
                node.log.commit_to(last);
                node.term = 1;
                node.conf = ConfState {
                    voters: sorted,
                    learners: Vec::new(),
                };
                // prev_hard stays default: the first Ready persists the
                // bootstrap hard state.
            }
            Start::Restart {
                hard_state,
                conf,
                snapshot,
                entries,
            } => {
                node.restart(hard_state, conf, snapshot, entries)?;
            }
            Start::Join => {}
        }
        let term = node.term;
        node.become_follower(term, NO_NODE);
        node.restart_guard = node.cfg.lease_read && node.term > 0;
        node.prev_soft = node.soft_state();
        node.check_invariants();
        Ok(node)
    }

    fn restart(
        &mut self,
        hs: HardState,
        conf: ConfState,
        snapshot: Option<SnapshotMeta>,
        entries: Vec<Entry>,
    ) -> Result<(), StartError> {
        if !conf.is_well_formed() {
            return Err(StartError::BadRestart("configuration not well formed"));
        }
        let (snap, snap_term) = snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
        if entries
            .iter()
            .any(|e| e.index == snap && e.term != snap_term)
        {
            return Err(StartError::BadRestart(
                "entry at the snapshot index has another term",
            ));
        }
        // Entries before the snapshot that run contiguously up to it stay
        // in the log, as the tail `snapshot_created` keeps at run time.
        let tail = entries.first().is_some_and(|first| {
            first.index < snap
                && entries
                    .iter()
                    .take_while(|e| e.index <= snap)
                    .enumerate()
                    .all(|(i, e)| e.index == first.index + i as u64)
                && entries.iter().any(|e| e.index == snap)
        });
        let (off, off_term) = match entries.first() {
            Some(first) if tail => (first.index, first.term),
            _ => (snap, snap_term),
        };
        let mut log = RaftLog::new(off, off_term);
        log.snapshot = snapshot;
        let mut ents = Vec::with_capacity(entries.len());
        let mut last = (off, off_term);
        for e in entries {
            if e.index <= off {
                continue;
            }
            if e.index != last.0 + 1 {
                return Err(StartError::BadRestart("entries not contiguous"));
            }
            if e.term < last.1 {
                return Err(StartError::BadRestart("entry terms decrease"));
            }
            last = (e.index, e.term);
            ents.push(e);
        }
        log.append(ents);
        log.stabled = log.last_index();
        if hs.commit > log.last_index() {
            return Err(StartError::BadRestart("commit beyond the last entry"));
        }
        if hs.term < log.last_term() {
            return Err(StartError::BadRestart("term below the last entry's term"));
        }
        // Everything the snapshot covers is committed.
        log.commit_to(hs.commit.max(snap));
        let applied = if self.cfg.applied == 0 {
            snap
        } else {
            self.cfg.applied
        };
        if applied < snap || applied > log.committed {
            return Err(StartError::BadRestart(
                "applied index outside snapshot..=commit",
            ));
        }
        log.applied = applied;
        self.log = log;
        self.term = hs.term;
        self.vote = hs.vote;
        self.conf = conf;
        self.prev_hard = hs;
        Ok(())
    }

    // ---------------------------------------------------------------
    // Accessors

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// This member's group.
    pub fn group(&self) -> GroupId {
        self.cfg.group
    }

    /// The configuration as of the applied index.
    pub fn conf(&self) -> &ConfState {
        &self.conf
    }

    /// The configuration this member was started with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<NodeId> {
        (self.leader != NO_NODE).then_some(self.leader)
    }

    /// A snapshot of the member's state.
    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            group: self.cfg.group,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader(),
            commit: self.log.committed,
            applied: self.log.applied,
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            conf: self.conf.clone(),
            progress: self
                .prs
                .iter()
                .map(|(id, p)| (*id, p.view(self.conf.is_learner(*id))))
                .collect(),
            lead_transferee: (self.lead_transferee != NO_NODE).then_some(self.lead_transferee),
        }
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The term of the entry at `index`, if known (held in memory, or the
    /// compaction point just before the first held entry).
    pub fn log_term(&self, index: u64) -> Option<u64> {
        self.log.term(index)
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader(),
            role: self.role,
        }
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    fn quorum(&self) -> usize {
        self.conf.voters.len() / 2 + 1
    }

    /// Whether this member may campaign: a voter with no snapshot waiting
    /// to be installed.
    fn promotable(&self) -> bool {
        self.conf.is_voter(self.cfg.id) && self.log.pending_snapshot.is_none()
    }

    fn check_invariants(&self) {
        self.log.check_invariants();
        debug_assert!(self.conf.is_well_formed());
        debug_assert!(
            self.log.last_term() <= self.term,
            "entry from a future term"
        );
        debug_assert!(self.role != Role::Leader || self.leader == self.cfg.id);
        debug_assert!(self.role == Role::Leader || self.prs.is_empty());
        debug_assert!(self.role != Role::Candidate || self.vote == self.cfg.id);
    }

    // ---------------------------------------------------------------
    // Sending

    fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    fn send_with_term(&mut self, to: NodeId, term: u64, body: MessageBody) {
        debug_assert_ne!(to, self.cfg.id, "message to self");
        self.msgs.push(Message {
            group: self.cfg.group,
            from: self.cfg.id,
            to,
            term,
            body,
        });
    }

    // ---------------------------------------------------------------
    // Role changes

    fn reset(&mut self, term: u64) {
        if term != self.term {
            self.term = term;
            self.vote = NO_NODE;
        }
        self.leader = NO_NODE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomize_election_timeout();
        self.lead_transferee = NO_NODE;
        self.lease_disabled = false;
        self.restart_guard = false;
        self.votes.clear();
        self.prs.clear();
        self.reads = Reads::new();
        self.pending_conf_index = 0;
        self.uncommitted_bytes = 0;
    }

    fn randomize_election_timeout(&mut self) {
        let e = self.cfg.election_ticks;
        self.randomized_election_ticks = self.rng.range_u32(e, 2 * e);
    }

    fn become_follower(&mut self, term: u64, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        assert_ne!(
            self.role,
            Role::Leader,
            "leader cannot become pre-candidate"
        );
        // No term or vote change: that is the point of a pre-vote.
        self.role = Role::PreCandidate;
        self.votes.clear();
        self.leader = NO_NODE;
    }

    fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "leader cannot become candidate");
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.cfg.id;
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = self.cfg.id;
        let next = self.log.last_index() + 1;
        let max = self.cfg.inflight_msgs_max;
        for id in self.conf.members() {
            self.prs.insert(id, Progress::new(next, max));
        }
        let me = self.cfg.id;
        let last = self.log.last_index();
        let pr = self.prs.get_mut(&me).expect("leader is a voter");
        pr.maybe_update(last);
        pr.become_replicate();
        pr.recent_active = true;
        // The leader's own no-op entry. Until it is applied, no
        // configuration change is accepted: a leader must commit an entry
        // of its own term before changing membership (the fix for the
        // single-server change bug), and any change left uncommitted by an
        // earlier leader is then committed or gone.
        self.append_entry(Entry::default());
        self.pending_conf_index = self.log.last_index();
        self.bcast_append();
    }

    // ---------------------------------------------------------------
    // Ticks

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks_now += 1;
        match self.role {
            Role::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
        self.check_invariants();
    }

    fn tick_election(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.cfg.election_ticks {
            self.restart_guard = false;
        }
        if self.promotable() && self.election_elapsed >= self.randomized_election_ticks {
            self.election_elapsed = 0;
            self.randomize_election_timeout();
            self.hup(false);
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            // A removed leader always checks: if the remaining voters are
            // out of reach, or already follow someone else, it gives up.
            let removed = !self.conf.is_voter(self.cfg.id);
            if (self.cfg.check_quorum || removed) && !self.quorum_active() {
                let term = self.term;
                self.become_follower(term, NO_NODE);
                return;
            }
            // A transfer not done within an election timeout is abandoned
            // (a removed leader tries again).
            self.lead_transferee = NO_NODE;
            self.hand_over();
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    /// Whether a quorum of voters was heard from since the last check;
    /// starts a new window.
    fn quorum_active(&mut self) -> bool {
        let me = self.cfg.id;
        let mut active = 0;
        for v in &self.conf.voters {
            if *v == me || self.prs.get(v).is_some_and(|p| p.recent_active) {
                active += 1;
            }
        }
        for (id, p) in self.prs.iter_mut() {
            if *id != me {
                p.recent_active = false;
            }
        }
        active >= self.quorum()
    }

    // ---------------------------------------------------------------
    // Elections

    fn hup(&mut self, transfer: bool) {
        if self.role == Role::Leader || !self.promotable() {
            return;
        }
        // A committed configuration change must take effect before this
        // member counts votes with its configuration.
        if self
            .log
            .has_conf_change_in(self.log.applied, self.log.committed)
        {
            return;
        }
        self.campaign(self.cfg.pre_vote && !transfer, transfer);
    }

    /// Starts a pre-vote round (`pre`) or an election, voting for itself.
    fn campaign(&mut self, pre: bool, transfer: bool) {
        if pre {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        let me = self.cfg.id;
        if self.poll(me, true) == VoteResult::Won {
            self.election_won();
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        // A pre-vote asks about a term nobody has entered yet.
        let (term, body) = if pre {
            let body = MessageBody::PreVote {
                last_index,
                last_term,
            };
            (self.term + 1, body)
        } else {
            let body = MessageBody::Vote {
                last_index,
                last_term,
                transfer,
            };
            (self.term, body)
        };
        for i in 0..self.conf.voters.len() {
            let v = self.conf.voters[i];
            if v != me {
                self.send_with_term(v, term, body.clone());
            }
        }
    }

    /// A quorum granted this member's pre-vote or vote request.
    fn election_won(&mut self) {
        if self.role == Role::PreCandidate {
            self.campaign(false, false);
        } else {
            self.become_leader();
        }
    }

    fn poll(&mut self, from: NodeId, granted: bool) -> VoteResult {
        self.votes.entry(from).or_insert(granted);
        let (mut yes, mut no) = (0, 0);
        for v in &self.conf.voters {
            match self.votes.get(v) {
                Some(true) => yes += 1,
                Some(false) => no += 1,
                None => {}
            }
        }
        let q = self.quorum();
        if yes >= q {
            VoteResult::Won
        } else if no > self.conf.voters.len() - q {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    fn handle_vote_request(&mut self, m: &Message) {
        let (last_index, last_term, pre) = match m.body {
            MessageBody::PreVote {
                last_index,
                last_term,
            } => (last_index, last_term, true),
            MessageBody::Vote {
                last_index,
                last_term,
                ..
            } => (last_index, last_term, false),
            _ => unreachable!("not a vote request"),
        };
        // We can vote again for the one we voted for, vote for anyone if we
        // have neither voted nor heard of a leader in this term, and
        // pre-vote for any future term.
        let can_vote = self.vote == m.from
            || (self.vote == NO_NODE && self.leader == NO_NODE)
            || (pre && m.term > self.term);
        let up_to_date = self.cfg.faults.skip_log_up_to_date_check
            || self.log.is_up_to_date(last_index, last_term);
        if can_vote && up_to_date {
            // A granted response carries the term asked for; for a pre-vote
            // that is a term we have not entered.
            self.send_with_term(m.from, m.term, vote_resp(pre, false));
            if !pre {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            self.send(m.from, vote_resp(pre, true));
        }
    }

    // ---------------------------------------------------------------
    // Stepping messages

    /// Feeds a message from another member. A refused message changes
    /// nothing.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if m.group != self.cfg.group {
            return Err(RaftError::WrongGroup {
                expected: self.cfg.group,
                got: m.group,
            });
        }
        if m.to != self.cfg.id {
            return Err(RaftError::WrongRecipient {
                expected: self.cfg.id,
                got: m.to,
            });
        }
        m.validate().map_err(RaftError::InvalidMessage)?;
        if m.from == self.cfg.id {
            return Err(RaftError::InvalidMessage("message from self"));
        }
        let r = self.step_inner(m);
        self.check_invariants();
        r
    }

    fn step_inner(&mut self, m: Message) -> Result<(), RaftError> {
        if m.term == 0 {
            self.step_forwarded(m);
            return Ok(());
        }
        if m.term > self.term {
            if m.body.is_vote_request() {
                let force = matches!(m.body, MessageBody::Vote { transfer: true, .. });
                // Leader lease: while we hear from a live leader, a vote
                // request is from a member that lost contact; ignore it
                // without taking its term.
                let in_lease = self.cfg.check_quorum
                    && (self.leader != NO_NODE || self.restart_guard)
                    && self.election_elapsed < self.cfg.election_ticks;
                if in_lease && !force {
                    return Ok(());
                }
            }
            match m.body {
                // A pre-vote request, or a granted pre-vote answer, names a
                // term nobody has entered yet.
                MessageBody::PreVote { .. } | MessageBody::PreVoteResp { reject: false } => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::Snapshot { .. } => self.become_follower(m.term, m.from),
                _ => self.become_follower(m.term, NO_NODE),
            }
        } else if m.term < self.term {
            match m.body {
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. }
                    if self.cfg.check_quorum || self.cfg.pre_vote =>
                {
                    // A stale leader (cut off, now back): tell it our term so
                    // it steps down. Without this it would keep sending, and
                    // with pre-vote or check-quorum nobody else would ever
                    // raise its term.
                    self.send(m.from, append_ack(0));
                }
                // Refuse a stale (pre-)vote request with our term, so the
                // candidate catches up. Otherwise a candidate whose vote
                // requests all arrive stale never learns the term it must
                // exceed, and the one voter it needs never answers.
                MessageBody::PreVote { .. } | MessageBody::Vote { .. } => {
                    let pre = matches!(m.body, MessageBody::PreVote { .. });
                    self.send(m.from, vote_resp(pre, true));
                }
                _ => {}
            }
            return Ok(());
        }
        if m.body.is_vote_request() {
            self.handle_vote_request(&m);
            return Ok(());
        }
        match self.role {
            Role::Leader => self.step_leader(m),
            Role::Candidate | Role::PreCandidate => self.step_candidate(m),
            Role::Follower => self.step_follower(m),
        }
    }

    fn step_forwarded(&mut self, m: Message) {
        match m.body {
            MessageBody::Propose { entries } => {
                if self.role != Role::Leader || self.lead_transferee != NO_NODE {
                    return; // dropped; the client retries
                }
                let mut any = false;
                for e in entries {
                    any |= self.leader_append_proposal(e).is_ok();
                }
                if any {
                    self.bcast_append();
                }
            }
            MessageBody::ReadIndex { ctx } => {
                if self.role == Role::Leader {
                    self.leader_read(m.from, ctx);
                }
            }
            _ => unreachable!("validated: only forwarded requests carry term 0"),
        }
    }

    fn step_leader(&mut self, m: Message) -> Result<(), RaftError> {
        match m.body {
            MessageBody::AppendResp {
                index,
                reject,
                reject_hint,
                hint_term,
            } => self.handle_append_resp(m.from, index, reject, reject_hint, hint_term),
            MessageBody::HeartbeatResp { ctx } => self.handle_heartbeat_resp(m.from, ctx),
            // Two leaders in one term cannot happen; anything else is stale.
            _ => {}
        }
        Ok(())
    }

    fn step_candidate(&mut self, m: Message) -> Result<(), RaftError> {
        match m.body {
            MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::Snapshot { .. } => {
                // A leader won this term.
                self.become_follower(m.term, m.from);
                self.step_follower(m)
            }
            MessageBody::VoteResp { reject } | MessageBody::PreVoteResp { reject } => {
                // An answer to the other kind of request is stale.
                let pre = matches!(m.body, MessageBody::PreVoteResp { .. });
                if pre == (self.role == Role::PreCandidate) {
                    match self.poll(m.from, !reject) {
                        VoteResult::Won => self.election_won(),
                        VoteResult::Lost => self.become_follower(self.term, NO_NODE),
                        VoteResult::Pending => {}
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn step_follower(&mut self, m: Message) -> Result<(), RaftError> {
        match m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.election_elapsed = 0;
                self.leader = m.from;
                self.handle_append(m.from, prev_index, prev_term, entries, commit)?;
            }
            MessageBody::Heartbeat { commit, ctx } => {
                self.election_elapsed = 0;
                self.leader = m.from;
                let to = commit.min(self.log.last_index());
                self.log.commit_to(to);
                self.send(m.from, MessageBody::HeartbeatResp { ctx });
            }
            MessageBody::Snapshot { meta } => {
                self.election_elapsed = 0;
                self.leader = m.from;
                self.handle_snapshot(m.from, meta);
            }
            MessageBody::TimeoutNow => {
                // Leadership transfer: campaign at once, without pre-vote (the
                // leader asked, so there is no partition to guard against).
                self.hup(true);
            }
            MessageBody::ReadIndexResp { index, ctx } => {
                self.read_states.push(ReadState { index, ctx });
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    ) -> Result<(), RaftError> {
        if prev_index < self.log.committed {
            let c = self.log.committed;
            self.send(from, append_ack(c));
            return Ok(());
        }
        match self
            .log
            .maybe_append(prev_index, prev_term, commit, entries)?
        {
            Some(last_new) => self.send(from, append_ack(last_new)),
            None => {
                // Tell the leader where our logs may match: the last index at
                // or below `prev_index` whose term is at most `prev_term`.
                let hint = prev_index.min(self.log.last_index());
                let (reject_hint, hint_term) = self.log.find_conflict_by_term(hint, prev_term);
                self.send(
                    from,
                    MessageBody::AppendResp {
                        index: prev_index,
                        reject: true,
                        reject_hint,
                        hint_term,
                    },
                );
            }
        }
        Ok(())
    }

    fn handle_snapshot(&mut self, from: NodeId, meta: SnapshotMeta) {
        if meta.index > self.log.committed {
            if self.log.match_term(meta.index, meta.term) {
                // We hold the snapshot's last entry: no need to install it.
                self.log.commit_to(meta.index);
            } else {
                self.conf = meta.conf.clone();
                self.log.restore(meta);
            }
        }
        // Either way the logs now match up to the commit index.
        let c = self.log.committed;
        self.send(from, append_ack(c));
    }

    fn handle_append_resp(
        &mut self,
        from: NodeId,
        index: u64,
        reject: bool,
        reject_hint: u64,
        hint_term: u64,
    ) {
        let last = self.log.last_index();
        let first = self.log.first_index();
        let next_probe = if reject && hint_term > 0 {
            self.log.find_conflict_by_term(reject_hint, hint_term).0
        } else {
            reject_hint
        };
        let Some(pr) = self.prs.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if reject {
            if pr.maybe_decr_to(index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from, true);
            }
            return;
        }
        if !pr.maybe_update(index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.match_index + 1 >= first => pr.become_replicate(),
            ProgressState::Snapshot => {}
            ProgressState::Replicate => pr.free_inflights_to(index),
        }
        let matched = pr.match_index;
        if self.maybe_commit() {
            self.bcast_append();
        }
        while self.send_append(from, false) {}
        if from == self.lead_transferee && matched == last {
            self.send_timeout_now(from);
        }
    }

    fn handle_heartbeat_resp(&mut self, from: NodeId, ctx: u64) {
        let last = self.log.last_index();
        let Some(pr) = self.prs.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.state == ProgressState::Replicate && pr.is_paused() {
            pr.free_first_inflight();
        }
        if pr.match_index < last {
            self.send_append(from, true);
        }
        if ctx != 0 {
            let e = self.reads.acks.entry(from).or_insert(0);
            *e = (*e).max(ctx);
            self.release_confirmed_reads();
        }
    }

    // ---------------------------------------------------------------
    // Replication (leader)

    /// Assigns term and index to `e` and appends it.
    fn append_entry(&mut self, mut e: Entry) {
        e.term = self.term;
        e.index = self.log.last_index() + 1;
        self.uncommitted_bytes += e.size_bytes();
        let last = self.log.append(vec![e]);
        let me = self.cfg.id;
        self.prs
            .get_mut(&me)
            .expect("leader has its own progress")
            .maybe_update(last);
        // A single voter commits by itself.
        self.maybe_commit();
    }

    /// Advances the commit index to the highest index a quorum of voters
    /// holds, if that entry is of the current term (§5.4.2: entries of
    /// earlier terms are committed only indirectly).
    fn maybe_commit(&mut self) -> bool {
        let mci = self.quorum_value(|v| self.prs.get(&v).map_or(0, |p| p.match_index));
        if mci <= self.log.committed {
            return false;
        }
        let current = self.log.term(mci) == Some(self.term);
        if !current && !self.cfg.faults.commit_previous_term_by_count {
            return false;
        }
        let old = self.log.committed;
        self.log.commit_to(mci);
        for i in old + 1..=mci {
            let size = self.log.entry(i).map_or(0, |e| e.size_bytes());
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(size);
        }
        if self.log.term(self.log.committed) == Some(self.term) {
            for (from, ctx) in std::mem::take(&mut self.reads.waiting_commit) {
                self.leader_read(from, ctx);
            }
        }
        true
    }

    /// The largest `x` that a quorum of voters has reached, where voter `v`
    /// has reached `value(v)` (0 without voters).
    fn quorum_value(&self, value: impl Fn(NodeId) -> u64) -> u64 {
        let mut vals: Vec<u64> = self.conf.voters.iter().map(|v| value(*v)).collect();
        if vals.is_empty() {
            return 0;
        }
        // The quorum-th largest.
        *vals
            .select_nth_unstable_by(self.quorum() - 1, |a, b| b.cmp(a))
            .1
    }

    /// Sends `to` the entries it needs next, or a snapshot if they are
    /// compacted away. An empty append goes out only if `send_if_empty`.
    /// Returns whether anything was sent.
    fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let last = self.log.last_index();
        let committed = self.log.committed;
        let bytes_max = self.cfg.msg_bytes_max;
        let Some(pr) = self.prs.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let prev_index = pr.next_index - 1;
        let prev_term = self.log.term(prev_index);
        let ents = self.log.slice(pr.next_index, last, bytes_max);
        let (Some(prev_term), Some(entries)) = (prev_term, ents) else {
            return self.send_snapshot(to);
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let end = entries.last().map_or(prev_index, |e| e.index);
        let pr = self.prs.get_mut(&to).expect("checked");
        pr.sent_append(entries.len(), end);
        self.send(
            to,
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit: committed,
            },
        );
        true
    }

    fn send_snapshot(&mut self, to: NodeId) -> bool {
        let Some(meta) = self.log.snapshot.clone() else {
            debug_assert!(false, "entries compacted without a snapshot");
            return false;
        };
        let pr = self.prs.get_mut(&to).expect("caller checked");
        if !pr.recent_active {
            // Do not ship a snapshot to a member we have not heard from.
            return false;
        }
        pr.become_snapshot(meta.index);
        self.send(to, MessageBody::Snapshot { meta });
        true
    }

    /// The first peer (a member with progress, other than this one) after
    /// `after` in id order; `NO_NODE` starts. Walking the peers this way
    /// leaves `self` free to send.
    fn next_peer(&self, after: NodeId) -> Option<NodeId> {
        let me = self.cfg.id;
        self.prs
            .range((Excluded(after), Unbounded))
            .map(|(id, _)| *id)
            .find(|id| *id != me)
    }

    fn bcast_append(&mut self) {
        let mut p = NO_NODE;
        while let Some(next) = self.next_peer(p) {
            p = next;
            self.send_append(p, true);
        }
    }

    /// Sends a new heartbeat round to every peer.
    fn bcast_heartbeat(&mut self) {
        let ctx = self.reads.next_round;
        self.reads.next_round += 1;
        self.reads.round_ticks.push_back((ctx, self.ticks_now));
        // Rounds older than an election timeout date no lease; keep a few
        // more for reads, within a bound.
        let e = u64::from(self.cfg.election_ticks);
        while self.reads.round_ticks.len() > ROUNDS_TRACKED_MAX
            || self
                .reads
                .round_ticks
                .front()
                .is_some_and(|(_, t)| t + e < self.ticks_now)
        {
            self.reads.round_ticks.pop_front();
        }
        let committed = self.log.committed;
        let mut p = NO_NODE;
        while let Some(next) = self.next_peer(p) {
            p = next;
            let m = self.prs[&p].match_index;
            self.send(
                p,
                MessageBody::Heartbeat {
                    commit: m.min(committed),
                    ctx,
                },
            );
        }
    }

    // ---------------------------------------------------------------
    // Proposals

    /// Proposes application data. On a follower the proposal is forwarded
    /// to the leader (unless forwarding is disabled) and may be lost; the
    /// application learns the outcome from the committed entries.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), ProposeError> {
        self.propose_entry(EntryKind::Normal, data)
    }

    /// Proposes a membership change (see the module docs for the rules).
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<(), ProposeError> {
        if cc.node == NO_NODE {
            return Err(ProposeError::InvalidConfChange("node 0"));
        }
        self.propose_entry(EntryKind::ConfChange, cc.encode())
    }

    fn propose_entry(&mut self, kind: EntryKind, data: Vec<u8>) -> Result<(), ProposeError> {
        // The leader assigns term and index.
        let entry = Entry {
            term: 0,
            index: 0,
            kind,
            data,
        };
        if self.role == Role::Leader {
            self.leader_append_proposal(entry)?;
            self.bcast_append();
            self.check_invariants();
            return Ok(());
        }
        check_entry_size(&entry)?;
        if self.leader == NO_NODE || self.cfg.disable_proposal_forwarding {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        let to = self.leader;
        self.send_with_term(
            to,
            0,
            MessageBody::Propose {
                entries: vec![entry],
            },
        );
        Ok(())
    }

    /// Checks and appends one proposal, local or forwarded, on the leader
    /// (the caller broadcasts).
    fn leader_append_proposal(&mut self, entry: Entry) -> Result<(), ProposeError> {
        debug_assert_eq!(self.role, Role::Leader);
        check_entry_size(&entry)?;
        if self.lead_transferee != NO_NODE {
            return Err(ProposeError::TransferInProgress {
                to: self.lead_transferee,
            });
        }
        // One entry is always let through an empty tail, however large.
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + entry.size_bytes() > self.cfg.uncommitted_bytes_max
        {
            return Err(ProposeError::Overloaded);
        }
        let conf_change = entry.kind == EntryKind::ConfChange;
        if conf_change {
            let cc = ConfChange::decode(&entry.data)
                .map_err(|_| ProposeError::InvalidConfChange("undecodable"))?;
            if self.pending_conf_index > self.log.applied {
                return Err(ProposeError::ConfChangePending);
            }
            cc.check(&self.conf)
                .map_err(ProposeError::InvalidConfChange)?;
        }
        self.append_entry(entry);
        if conf_change {
            self.pending_conf_index = self.log.last_index();
        }
        Ok(())
    }

    // ---------------------------------------------------------------
    // Membership

    /// Applies a committed configuration change. Call it for each
    /// [`EntryKind::ConfChange`] entry of [`Ready::committed`], in order,
    /// before [`RawNode::advance`]. Returns the configuration after it.
    /// A change that is not valid against the current configuration is a
    /// no-op (every member skips it the same way).
    ///
    /// # Panics
    ///
    /// If `cc` is not the next conf change handed out: applying changes out
    /// of order or twice would split the members' views.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        let expected = self
            .conf_changes_to_apply
            .pop_front()
            .expect("apply_conf_change without a conf change entry handed out");
        assert_eq!(&expected, cc, "conf changes applied out of order");
        let new = cc.apply_to(&self.conf);
        if new == self.conf {
            return new;
        }
        self.conf = new;
        // A (pre-)candidate's votes were asked under the old configuration;
        // it lets the election time out and starts over.
        if self.role == Role::Leader {
            self.leader_conf_changed();
        }
        self.check_invariants();
        self.conf.clone()
    }

    /// Skips a committed configuration change that the application's own
    /// validation refused (etcd does the same: it applies such a change to
    /// Raft as a no-op). The refusal must be deterministic, so that every
    /// member skips it alike. Call it instead of
    /// [`RawNode::apply_conf_change`], in the same order. Returns the
    /// (unchanged) configuration.
    ///
    /// # Panics
    ///
    /// If `cc` is not the next conf change handed out.
    pub fn reject_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        let expected = self
            .conf_changes_to_apply
            .pop_front()
            .expect("reject_conf_change without a conf change entry handed out");
        assert_eq!(&expected, cc, "conf changes applied out of order");
        self.conf.clone()
    }

    fn leader_conf_changed(&mut self) {
        let me = self.cfg.id;
        let next = self.log.last_index() + 1;
        let max = self.cfg.inflight_msgs_max;
        // A removed leader keeps its own progress while it hands over.
        self.prs
            .retain(|id, _| *id == me || self.conf.contains(*id));
        let mut added = Vec::new();
        for id in self.conf.members() {
            self.prs.entry(id).or_insert_with(|| {
                added.push(id);
                let mut p = Progress::new(next, max);
                // New members count as active, or check-quorum could
                // depose us before they answer once.
                p.recent_active = true;
                p
            });
        }
        if self.lead_transferee != NO_NODE && !self.conf.is_voter(self.lead_transferee) {
            self.lead_transferee = NO_NODE;
        }
        // The quorum changed: entries or reads may now be confirmed.
        if self.maybe_commit() {
            self.bcast_append();
        }
        for id in added {
            self.send_append(id, true);
        }
        self.release_confirmed_reads();
        if !self.conf.is_voter(me) {
            self.hand_over();
        }
    }

    /// A leader that applied its own removal steps down by handing
    /// leadership to the most caught-up remaining voter (a transfer). It
    /// cannot just stop: the others may not know the removal is committed
    /// (they learn it from the leader), so they may still count this member
    /// in their quorum, and its log may be ahead of theirs; without a
    /// successor brought up to date nobody could win an election.
    /// Until the successor is caught up it keeps replicating, counting only
    /// the remaining voters, and takes no proposals; it steps down as it
    /// sends `TimeoutNow`.
    fn hand_over(&mut self) {
        let me = self.cfg.id;
        if self.role != Role::Leader || self.conf.is_voter(me) || self.lead_transferee != NO_NODE {
            return;
        }
        let best = self
            .conf
            .voters
            .iter()
            .copied()
            .filter(|v| *v != me)
            .max_by_key(|v| {
                let m = self.prs.get(v).map_or(0, |p| p.match_index);
                (m, std::cmp::Reverse(*v))
            });
        if let Some(to) = best {
            self.transfer_leader(to);
        }
    }

    // ---------------------------------------------------------------
    // Reads

    /// Asks for a linearizable read point tagged `ctx`; it arrives as a
    /// [`ReadState`] in a later [`Ready`]. A follower forwards the request
    /// to its leader. Dropped (the caller retries after a timeout) when no
    /// leader is known, or the leader loses leadership first.
    pub fn read_index(&mut self, ctx: u64) {
        match self.role {
            Role::Leader => {
                let me = self.cfg.id;
                self.leader_read(me, ctx);
            }
            _ if self.leader != NO_NODE => {
                let to = self.leader;
                self.send_with_term(to, 0, MessageBody::ReadIndex { ctx });
            }
            _ => {}
        }
        self.check_invariants();
    }

    fn leader_read(&mut self, from: NodeId, ctx: u64) {
        let me = self.cfg.id;
        let index = self.log.committed;
        if self.conf.voters == [me] {
            self.answer_read(from, index, ctx);
            return;
        }
        // A new leader's commit index may lag the group's: wait until an
        // entry of our own term is committed, which brings it up to date.
        if self.log.term(index) != Some(self.term) {
            if self.reads.waiting_commit.len() < PENDING_READS_MAX {
                self.reads.waiting_commit.push_back((from, ctx));
            }
            return;
        }
        if self.cfg.lease_read && self.lease_valid() {
            self.answer_read(from, index, ctx);
            return;
        }
        if self.reads.pending.len() >= PENDING_READS_MAX {
            return;
        }
        let seq = self.reads.next_round;
        self.reads.pending.push_back(PendingRead {
            seq,
            index,
            from,
            ctx,
        });
        self.bcast_heartbeat();
    }

    /// The highest heartbeat round a quorum of voters has answered.
    fn confirmed_round(&self) -> u64 {
        let me = self.cfg.id;
        self.quorum_value(|v| {
            if v == me {
                u64::MAX
            } else {
                self.reads.acks.get(&v).copied().unwrap_or(0)
            }
        })
    }

    /// Whether the leader lease holds: a quorum answered a round sent
    /// recently enough that none of them will vote for another member yet.
    ///
    /// A member that got round `r` (sent at leader tick `t`) ignores vote
    /// requests until it has ticked `e` times after receiving it. With
    /// ticks at equal rates, and one tick of phase uncertainty on each
    /// side, that holds while the leader's tick count is at most
    /// `t + e - 2`. Leadership transfer bypasses leases, so a leader that
    /// sent `TimeoutNow` gives up lease reads for the term.
    fn lease_valid(&self) -> bool {
        if self.lease_disabled || !self.cfg.check_quorum {
            return false;
        }
        let round = self.confirmed_round();
        let Some(&(_, sent)) = self
            .reads
            .round_ticks
            .iter()
            .rev()
            .find(|(r, _)| *r <= round)
        else {
            return false;
        };
        self.ticks_now + 2 <= sent + u64::from(self.cfg.election_ticks)
    }

    fn answer_read(&mut self, from: NodeId, index: u64, ctx: u64) {
        if from == self.cfg.id {
            self.read_states.push(ReadState { index, ctx });
        } else {
            self.send(from, MessageBody::ReadIndexResp { index, ctx });
        }
    }

    /// Answers the reads a quorum of voters has confirmed leadership for.
    fn release_confirmed_reads(&mut self) {
        if self.reads.pending.is_empty() {
            return;
        }
        let confirmed = self.confirmed_round();
        while self
            .reads
            .pending
            .front()
            .is_some_and(|r| r.seq <= confirmed)
        {
            let r = self.reads.pending.pop_front().expect("checked");
            self.answer_read(r.from, r.index, r.ctx);
        }
    }

    // ---------------------------------------------------------------
    // Leadership transfer and reports

    /// Hands leadership to voter `to`: proposals stop, `to` is brought up to
    /// date, then told to campaign at once. Abandoned after an election
    /// timeout. Ignored unless this member leads and `to` is another voter.
    pub fn transfer_leader(&mut self, to: NodeId) {
        if self.role != Role::Leader || to == self.cfg.id || !self.conf.is_voter(to) {
            return;
        }
        if self.lead_transferee == to {
            return;
        }
        self.lead_transferee = to;
        // The transfer must finish within one election timeout.
        self.election_elapsed = 0;
        let last = self.log.last_index();
        if self.prs.get(&to).is_some_and(|p| p.match_index == last) {
            self.send_timeout_now(to);
        } else {
            self.send_append(to, true);
        }
        self.check_invariants();
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        self.lease_disabled = true;
        self.send(to, MessageBody::TimeoutNow);
        if !self.conf.is_voter(self.cfg.id) {
            // A removed leader's successor holds the whole log, so it can
            // win an election even if this `TimeoutNow` is lost.
            let term = self.term;
            self.become_follower(term, NO_NODE);
        }
    }

    /// The transport could not reach `id`: stop streaming to it and probe.
    pub fn report_unreachable(&mut self, id: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(pr) = self.prs.get_mut(&id) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
        }
    }

    /// The snapshot sent to `id` was delivered (`ok`) or could not be.
    /// Replication resumes (after it, on success) once `id` answers. The
    /// application must report every [`MessageBody::Snapshot`] it fails to
    /// deliver: until then the leader sends `id` nothing else.
    pub fn report_snapshot(&mut self, id: NodeId, ok: bool) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(pr) = self.prs.get_mut(&id) {
            if pr.state == ProgressState::Snapshot {
                if !ok {
                    pr.pending_snapshot = 0;
                }
                pr.become_probe();
                // Wait for the member's answer (or a heartbeat's) before
                // sending more.
                pr.probe_sent = true;
            }
        }
    }

    /// The application took a state snapshot at `meta.index` (which it has
    /// applied). The in-memory log is cut to keep `keep_entries` entries
    /// before that index, so slightly lagging followers still catch up from
    /// the log; those further behind get this snapshot.
    pub fn snapshot_created(&mut self, meta: SnapshotMeta, keep_entries: u64) {
        assert!(
            meta.index <= self.log.applied,
            "snapshot at {} beyond applied {}",
            meta.index,
            self.log.applied
        );
        if let Some(t) = self.log.term(meta.index) {
            assert_eq!(t, meta.term, "snapshot term disagrees with the log");
        }
        if self
            .log
            .snapshot
            .as_ref()
            .is_some_and(|s| s.index >= meta.index)
        {
            return;
        }
        let to = meta
            .index
            .saturating_sub(keep_entries)
            .min(self.log.stabled);
        self.log.snapshot = Some(meta);
        self.log.compact(to);
        self.check_invariants();
    }

    // ---------------------------------------------------------------
    // Ready / advance

    fn apply_from(&self) -> u64 {
        match &self.log.pending_snapshot {
            Some(s) => s.index.max(self.log.applied) + 1,
            None => self.log.applied + 1,
        }
    }

    /// Whether [`RawNode::ready`] has anything. False while a `Ready` is
    /// handed out and not yet advanced.
    pub fn has_ready(&self) -> bool {
        if self.handed.is_some() {
            return false;
        }
        self.soft_state() != self.prev_soft
            || self.hard_state() != self.prev_hard
            || self.log.has_unstable()
            || self.log.pending_snapshot.is_some()
            || self.apply_from() <= self.log.committed
            || !self.msgs.is_empty()
            || !self.read_states.is_empty()
    }

    /// Takes what the application must act on (see [`Ready`] for the
    /// order). Each `Ready` must be followed by [`RawNode::advance`] before
    /// the next; stepping and ticking in between is allowed.
    ///
    /// # Panics
    ///
    /// If the previous `Ready` was not advanced.
    pub fn ready(&mut self) -> Ready {
        assert!(self.handed.is_none(), "ready() again before advance()");
        let soft = self.soft_state();
        let hard = self.hard_state();
        let snapshot = self.log.pending_snapshot.clone();
        let entries: Vec<Entry> = self.log.unstable().cloned().collect();
        let committed = self
            .log
            .committed_from(self.apply_from(), READY_COMMITTED_BYTES_MAX);
        debug_assert!(self.conf_changes_to_apply.is_empty());
        for e in &committed {
            if e.kind == EntryKind::ConfChange {
                if let Ok(cc) = ConfChange::decode(&e.data) {
                    self.conf_changes_to_apply.push_back(cc);
                }
            }
        }
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hard.term != self.prev_hard.term
            || hard.vote != self.prev_hard.vote;
        let rd = Ready {
            soft: (soft != self.prev_soft).then_some(soft),
            hard_state: (hard != self.prev_hard).then_some(hard),
            entries,
            snapshot,
            committed,
            messages: std::mem::take(&mut self.msgs),
            read_states: std::mem::take(&mut self.read_states),
            must_sync,
        };
        self.prev_soft = soft;
        self.prev_hard = hard;
        self.handed = Some(Handed {
            stable: rd.entries.last().map(|e| (e.index, e.term)),
            applied_to: rd.committed.last().map(|e| e.index),
            snapshot: rd.snapshot.as_ref().map(|s| s.index),
        });
        rd
    }

    /// Tells the node that the application applied the committed entries
    /// handed out in the current `Ready` up to `index` already, before
    /// [`RawNode::advance`] (an application may apply those it holds
    /// durably while it persists the rest). Conf changes among them must
    /// still go through [`RawNode::apply_conf_change`] first.
    ///
    /// # Panics
    ///
    /// Outside a `Ready`, or beyond the committed entries it handed out.
    pub fn applied_early(&mut self, index: u64) {
        let h = self
            .handed
            .as_ref()
            .expect("applied_early() between ready() and advance()");
        assert!(
            h.applied_to.is_some_and(|a| index <= a),
            "applied_early({index}) beyond the entries handed out"
        );
        self.log.applied_to(index);
        self.check_invariants();
    }

    /// The application carried out the last [`Ready`]: its snapshot is
    /// installed, its entries are durable and its committed entries applied.
    ///
    /// # Panics
    ///
    /// Without a `Ready` handed out, or if a conf change handed out was not
    /// applied through [`RawNode::apply_conf_change`].
    pub fn advance(&mut self) {
        let h = self.handed.take().expect("advance() without ready()");
        assert!(
            self.conf_changes_to_apply.is_empty(),
            "advance() before applying every conf change handed out"
        );
        if let Some(s) = h.snapshot {
            self.log.snapshot_installed(s);
        }
        if let Some((i, t)) = h.stable {
            self.log.stable_to(i, t);
        }
        if let Some(a) = h.applied_to {
            self.log.applied_to(a);
        }
        self.check_invariants();
    }
}
