//! The boundary between the simulator and a Raft core.
//!
//! The simulator drives a sans-IO Raft core through [`Consensus`], a thin
//! interface over the `RawNode` shape (tick, step, propose, ready, advance).
//! [`raftlog::raft`] is the core under test; `product.rs` adapts it. Entries
//! and hard states are `raftlog::raft`'s own plain types, which any core can
//! produce; only the adapter names the rest of that core's API.

use std::fmt;

use raftlog::raft::{Entry, HardState};

/// Parameters of one node's core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreParams {
    /// Ticks without hearing from a leader before campaigning.
    pub election_ticks: u64,
    /// Ticks between heartbeats.
    pub heartbeat_ticks: u64,
    /// Pre-vote before campaigning.
    pub pre_vote: bool,
    /// A leader steps down without a quorum's contact.
    pub check_quorum: bool,
    /// Seed of the core's own randomness (election timeouts).
    pub seed: u64,
    /// Unacknowledged append messages per peer.
    pub inflight_msgs_max: usize,
    /// Entry bytes per append message (one entry always fits).
    pub msg_bytes_max: u64,
    /// Planted bug: grant votes without checking the candidate's log is up
    /// to date.
    pub skip_log_up_to_date_check: bool,
    /// Planted bug: a leader commits entries of earlier terms by counting
    /// replicas (Raft's Figure 8).
    pub commit_previous_term_by_count: bool,
}

/// What a core asks its node to do, in order: persist `entries` and
/// `hard_state`, then send `messages`, apply `committed`, and answer
/// `read_states` once applied that far.
#[derive(Debug)]
pub struct CoreReady<M> {
    /// New hard state to persist, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append (may overwrite a suffix of the log).
    pub entries: Vec<Entry>,
    /// Snapshots to install: the simulator never compacts, so any is
    /// unexpected and reported as a violation.
    pub snapshots: usize,
    /// Committed entries to apply, in order.
    pub committed: Vec<Entry>,
    /// Messages to send after persisting.
    pub messages: Vec<M>,
    /// Confirmed read requests: (read index, request context).
    pub read_states: Vec<(u64, u64)>,
}

/// A core's view of its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreStatus {
    /// Current term.
    pub term: u64,
    /// Whether this node leads `term`.
    pub is_leader: bool,
    /// The leader this node knows of (0: none).
    pub leader: u64,
}

/// A Raft core the simulator can drive.
pub trait Consensus: Sized {
    /// A Raft message.
    type Msg: Clone + fmt::Debug;

    /// A brand-new member of a cluster of `voters`.
    fn bootstrap(id: u64, voters: &[u64], params: &CoreParams) -> Self;

    /// A member restarting from its durable state: the hard state and
    /// every entry of its log (which starts at index 1: the simulator never
    /// compacts).
    fn restart(
        id: u64,
        voters: &[u64],
        hard_state: HardState,
        entries: Vec<Entry>,
        params: &CoreParams,
    ) -> Self;

    /// One clock tick.
    fn tick(&mut self);

    /// Whether a follower forwards proposals and read requests to its
    /// leader (the simulator then lets followers take client requests).
    const FORWARDS: bool;

    /// Delivers a message. An error is a safety violation: the simulator
    /// only delivers messages a core produced.
    fn step(&mut self, msg: Self::Msg) -> Result<(), String>;

    /// Destination node of a message.
    fn msg_to(msg: &Self::Msg) -> u64;

    /// Whether delivering the message twice is harmless. Raft's own
    /// messages are; a proposal forwarded to the leader is not (the leader
    /// would append the command twice), so the network never duplicates
    /// those, as a TCP transport does not.
    fn msg_idempotent(msg: &Self::Msg) -> bool;

    /// Proposes a command; an error means it was not appended.
    fn propose(&mut self, data: Vec<u8>) -> Result<(), String>;

    /// Applies the configuration change carried by a committed entry's
    /// data (before [`Consensus::advance`]).
    fn apply_conf_change(&mut self, data: &[u8]) -> Result<(), String>;

    /// Asks for a linearizable read point; answered in a ready's
    /// `read_states` with `ctx`.
    fn read_index(&mut self, ctx: u64);

    /// Asks the leader to hand leadership to `to`.
    fn transfer_leader(&mut self, to: u64);

    /// Tells the core that messages to `to` are not getting through.
    fn report_unreachable(&mut self, to: u64);

    /// The pending work, if any.
    fn ready(&mut self) -> Option<CoreReady<Self::Msg>>;

    /// Acknowledges that the last ready was handled.
    fn advance(&mut self);

    /// Role and term.
    fn status(&self) -> CoreStatus;

    /// Commit index.
    fn commit(&self) -> u64;
}
