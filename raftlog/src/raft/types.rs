//! The plain data types the Raft core takes and gives: entries, states,
//! messages, `Ready` and `Status`.

use std::collections::BTreeMap;

/// A member's id. [`NO_NODE`] (0) is never a member; it means "none".
pub type NodeId = u64;

/// A Raft group's id. Every message names its group, so one process can run
/// several groups and route their messages.
pub type GroupId = u64;

/// "No node": the vote of a member that has not voted in its term, and the
/// leader of a member that knows none.
pub const NO_NODE: NodeId = 0;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum EntryKind {
    /// Application data (opaque to the core). An empty normal entry is the
    /// no-op a new leader appends.
    #[default]
    Normal,
    /// An encoded [`ConfChange`](super::ConfChange).
    ConfChange,
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: u64,
    /// Position in the log, from 1.
    pub index: u64,
    /// What `data` holds.
    pub kind: EntryKind,
    /// Opaque payload (for [`EntryKind::ConfChange`], an encoded
    /// `ConfChange`).
    pub data: Vec<u8>,
}

/// Fixed per-entry overhead counted by the byte limits (term, index, kind).
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

impl Entry {
    /// The entry's size for the byte limits: payload plus
    /// [`ENTRY_OVERHEAD_BYTES`].
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// The state that must be durable before the messages of the same `Ready`
/// are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Whom this member voted for in `term` ([`NO_NODE`] for nobody).
    pub vote: NodeId,
    /// Highest index known committed. Persisting it is optional for safety
    /// (it can be relearned) but saves re-applying on restart.
    pub commit: u64,
}

/// A configuration: who votes and who only learns.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConfState {
    /// Voting members, sorted, no duplicates.
    pub voters: Vec<NodeId>,
    /// Non-voting members, sorted, no duplicates, disjoint from `voters`.
    pub learners: Vec<NodeId>,
}

impl ConfState {
    /// Whether `id` is a voter.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Voters then learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Whether the lists are sorted, free of duplicates and of [`NO_NODE`],
    /// and disjoint.
    pub fn is_well_formed(&self) -> bool {
        let sorted = |v: &[NodeId]| v.windows(2).all(|w| w[0] < w[1]);
        sorted(&self.voters)
            && sorted(&self.learners)
            && !self.contains(NO_NODE)
            && self.learners.iter().all(|l| !self.is_voter(*l))
    }
}

/// Metadata of a state-machine snapshot. The state itself is the
/// application's business; the core only names the point it covers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Configuration as of `index`.
    pub conf: ConfState,
}

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// Follows a leader (or waits for one). Learners are always followers.
    #[default]
    Follower,
    /// Asking for pre-votes (no term change yet).
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Leads the group in its term.
    Leader,
}

/// The volatile state worth telling the application about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SoftState {
    /// The leader this member knows of, if any.
    pub leader: Option<NodeId>,
    /// This member's role.
    pub role: Role,
}

/// A confirmed linearizable read point: once the application has applied up
/// to `index`, it may answer the read tagged `ctx` from its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// Commit index at the time the read was confirmed.
    pub index: u64,
    /// The caller's tag from [`RawNode::read_index`](super::RawNode::read_index).
    pub ctx: u64,
}

/// A message between members of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The group this message belongs to.
    pub group: GroupId,
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// Sender's term, or for vote requests and granted vote responses the
    /// term campaigned for. 0 only for forwarded requests
    /// ([`MessageBody::Propose`], [`MessageBody::ReadIndex`]), which take no
    /// part in term rules.
    pub term: u64,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message. The wire format is [`super::codec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// "Would you vote for me in `term`?" Changes no one's term.
    PreVote {
        /// Candidate's last log index.
        last_index: u64,
        /// Term of the candidate's last entry.
        last_term: u64,
    },
    /// Answer to [`MessageBody::PreVote`].
    PreVoteResp {
        /// True when not granted.
        reject: bool,
    },
    /// Vote request for `term`.
    Vote {
        /// Candidate's last log index.
        last_index: u64,
        /// Term of the candidate's last entry.
        last_term: u64,
        /// Set by a leadership transfer target: voters grant even while they
        /// hear from a leader (the leader asked for it).
        transfer: bool,
    },
    /// Answer to [`MessageBody::Vote`].
    VoteResp {
        /// True when not granted.
        reject: bool,
    },
    /// Log entries (possibly none) following `prev_index`.
    Append {
        /// Index of the entry just before `entries`.
        prev_index: u64,
        /// Term of that entry.
        prev_term: u64,
        /// Contiguous entries from `prev_index + 1`.
        entries: Vec<Entry>,
        /// Leader's commit index.
        commit: u64,
    },
    /// Answer to [`MessageBody::Append`] and [`MessageBody::Snapshot`].
    AppendResp {
        /// Accepted: the follower's log matches the leader's up to here.
        /// Rejected: the `prev_index` that did not match.
        index: u64,
        /// True when `prev_index`/`prev_term` did not match.
        reject: bool,
        /// On reject: an index at or below which the logs may match.
        reject_hint: u64,
        /// On reject: the follower's term at `reject_hint` (0 if unknown).
        hint_term: u64,
    },
    /// Leader liveness and commit propagation.
    Heartbeat {
        /// `min(commit, follower's match)`: never beyond what the follower
        /// is known to hold.
        commit: u64,
        /// Read-confirmation round (0 for none), echoed in the response.
        ctx: u64,
    },
    /// Answer to [`MessageBody::Heartbeat`].
    HeartbeatResp {
        /// The heartbeat's `ctx`.
        ctx: u64,
    },
    /// "Install the state snapshot described by `meta`" (the application
    /// ships the state data alongside).
    Snapshot {
        /// What the snapshot covers.
        meta: SnapshotMeta,
    },
    /// "Campaign now": the last step of a leadership transfer.
    TimeoutNow,
    /// A read request forwarded by a follower to its leader.
    ReadIndex {
        /// The follower's read tag.
        ctx: u64,
    },
    /// The leader's confirmed read point for a forwarded read.
    ReadIndexResp {
        /// Commit index to wait for.
        index: u64,
        /// The read tag.
        ctx: u64,
    },
    /// Proposals forwarded by a follower to its leader (`term` and `index`
    /// of the entries are ignored; the leader assigns them).
    Propose {
        /// The proposed entries.
        entries: Vec<Entry>,
    },
}

impl MessageBody {
    /// Whether this is a vote or pre-vote request.
    pub fn is_vote_request(&self) -> bool {
        matches!(self, MessageBody::PreVote { .. } | MessageBody::Vote { .. })
    }

    /// Whether this is a forwarded request that carries no term
    /// ([`MessageBody::Propose`], [`MessageBody::ReadIndex`]).
    pub fn is_forwarded(&self) -> bool {
        matches!(
            self,
            MessageBody::Propose { .. } | MessageBody::ReadIndex { .. }
        )
    }

    /// Short name of the kind, for logs and tests.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResp { .. } => "PreVoteResp",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResp { .. } => "VoteResp",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResp { .. } => "AppendResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResp { .. } => "HeartbeatResp",
            MessageBody::Snapshot { .. } => "Snapshot",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResp { .. } => "ReadIndexResp",
            MessageBody::Propose { .. } => "Propose",
        }
    }
}

impl Message {
    /// Structural checks every message must pass before the core acts on it
    /// (the codec runs them on decode, [`RawNode::step`](super::RawNode::step)
    /// on every message): ids are set, forwarded requests carry term 0 and
    /// the others do not, `Append` entries are contiguous from
    /// `prev_index + 1` with terms from `prev_term` up to the message term,
    /// and a snapshot's configuration is well formed.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.from == NO_NODE || self.to == NO_NODE {
            return Err("message from or to node 0");
        }
        if self.body.is_forwarded() != (self.term == 0) {
            return Err("term 0 is for forwarded requests only");
        }
        match &self.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit: _,
            } => {
                let mut expect_index = *prev_index;
                let mut min_term = *prev_term;
                for e in entries {
                    expect_index = expect_index
                        .checked_add(1)
                        .ok_or("append entry index overflows")?;
                    if e.index != expect_index {
                        return Err("append entries not contiguous");
                    }
                    if e.term < min_term || e.term > self.term {
                        return Err("append entry term out of order");
                    }
                    min_term = e.term;
                }
                if *prev_term > self.term {
                    return Err("append prev_term above message term");
                }
            }
            MessageBody::Snapshot { meta } => {
                if meta.index == 0 || !meta.conf.is_well_formed() || meta.conf.voters.is_empty() {
                    return Err("snapshot meta malformed");
                }
                if meta.term > self.term {
                    return Err("snapshot term above message term");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Everything the application must act on, in this order:
///
/// 1. if `snapshot` is set, install the snapshot state it names (received
///    from the leader alongside the message) and make it durable; the log
///    now starts after `snapshot.index`;
/// 2. write `entries` to the log, first removing any stored entries at or
///    after `entries[0].index` (a leader overwrote them), and write
///    `hard_state` if set; make both durable together (fsync) if
///    [`Ready::must_sync`];
/// 3. send `messages` (only now: votes and acknowledgements promise what
///    step 2 made durable);
/// 4. apply `committed` in order, calling
///    [`RawNode::apply_conf_change`](super::RawNode::apply_conf_change) for
///    each [`EntryKind::ConfChange`] entry; answer `read_states` once
///    applied up to their index;
/// 5. call [`RawNode::advance`](super::RawNode::advance).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// New leader or role, if changed since the last `Ready`.
    pub soft: Option<SoftState>,
    /// New hard state, if changed since the last `Ready`.
    pub hard_state: Option<HardState>,
    /// Entries to persist (contiguous; may overwrite a stored suffix).
    pub entries: Vec<Entry>,
    /// A snapshot to install before anything else.
    pub snapshot: Option<SnapshotMeta>,
    /// Committed entries to apply, in order.
    pub committed: Vec<Entry>,
    /// Messages to send after persisting.
    pub messages: Vec<Message>,
    /// Confirmed read points.
    pub read_states: Vec<ReadState>,
    /// Whether step 2 needs an fsync: new entries, a snapshot, or a term or
    /// vote change. A change of the commit index alone may be written
    /// lazily.
    pub must_sync: bool,
}

/// A leader's replication state for one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgressState {
    /// Finding the match point, one message at a time.
    Probe,
    /// Streaming entries optimistically, up to the inflight limit.
    Replicate,
    /// Waiting for a snapshot to be installed.
    Snapshot,
}

/// What a leader knows about one peer's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// Highest index known to match the leader's log.
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    /// Replication state.
    pub state: ProgressState,
    /// Whether the peer is a learner.
    pub is_learner: bool,
    /// Whether the peer was heard from in the current check-quorum window.
    pub recent_active: bool,
    /// Append messages sent and not yet acknowledged.
    pub inflight_msgs: usize,
    /// In `Snapshot` state, the index of the snapshot sent.
    pub pending_snapshot: u64,
}

/// A view of a member's state for the application and for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This member.
    pub id: NodeId,
    /// Its group.
    pub group: GroupId,
    /// Role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// Vote in the current term ([`NO_NODE`] for none).
    pub vote: NodeId,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: u64,
    /// Applied index (as reported through `advance`).
    pub applied: u64,
    /// First index held in memory.
    pub first_index: u64,
    /// Last log index.
    pub last_index: u64,
    /// Configuration as of `applied`.
    pub conf: ConfState,
    /// Per-member progress (leader only; includes the leader itself).
    pub progress: BTreeMap<NodeId, PeerProgress>,
    /// Target of a leadership transfer in progress.
    pub lead_transferee: Option<NodeId>,
}
