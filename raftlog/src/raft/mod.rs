//! kvik's Raft core: a sans-IO, deterministic state machine.
//!
//! A [`RawNode`] is one member of one Raft group. It has no clock (time is
//! [`RawNode::tick`]s), no randomness of its own (election timeouts come
//! from a splitmix64 generator seeded by [`Config::seed`]), no I/O and no
//! threads. Given the same configuration and the same sequence of calls it
//! produces the same outputs, which is what lets a simulator replay a
//! cluster's history from a seed.
//!
//! # Driving a member
//!
//! The application (the shard task, or a simulator) owns the loop:
//!
//! ```text
//! loop {
//!     on a timer:      node.tick()
//!     on a message:    node.step(msg)?                (codec::decode first)
//!     on a request:    node.propose(data) / node.read_index(ctx) / ...
//!     if node.has_ready() {
//!         let rd = node.ready();
//!         1. install rd.snapshot (state data shipped alongside), if any
//!         2. append rd.entries to the log (dropping any stored suffix at or
//!            after rd.entries[0].index), store rd.hard_state; fsync if
//!            rd.must_sync
//!         3. send rd.messages                          (codec::encode)
//!         4. apply rd.committed in order; apply_conf_change for conf
//!            entries; answer rd.read_states once applied up to their index
//!         5. node.advance()
//!     }
//! }
//! ```
//!
//! Messages leave only after the entries and hard state of the same `Ready`
//! are durable, so every vote and acknowledgement promises only what is on
//! disk. A leader counts its own log as replicated when it appends; that is
//! sound for the same reason (its appends reach followers, and its committed
//! entries are applied, only after its own fsync). The hard state of a
//! `Ready` with entries must become durable with them: the membership rules
//! rely on the commit index that arrives with a configuration entry. (A
//! hard state whose only change is the commit index, in a `Ready` without
//! entries, may be written without an fsync.)
//!
//! The in-memory log holds every entry after the last compaction point. The
//! durable log is the application's (the WAL): on restart the application
//! passes back the hard state, the configuration, the latest snapshot and
//! the entries ([`Start::Restart`]).
//!
//! # Differences from the sketch it was built to
//!
//! * `advance()` takes no argument: the node remembers what the last
//!   `ready()` handed out. Stepping and ticking between `ready()` and
//!   `advance()` is allowed; a second `ready()` before `advance()` panics.
//! * `propose`, `propose_conf_change` return `Result<(), ProposeError>`; a
//!   follower forwards (returns `Ok`) unless
//!   [`Config::disable_proposal_forwarding`] is set, and returns
//!   `NotLeader` only when it cannot forward.
//! * `apply_conf_change` takes `&ConfChange` and checks that changes are
//!   applied exactly in the order handed out.
//! * [`Start::Join`] starts a member added to a running group;
//!   [`Config::applied`] says how far a restarted state machine already is;
//!   [`Config::disable_proposal_forwarding`], `uncommitted_bytes_max`.
//! * [`MessageBody::AppendResp`] carries `hint_term` beside `reject_hint`,
//!   [`MessageBody::Vote`] a `transfer` flag; [`Ready::must_sync`] tells
//!   whether an fsync is needed; [`RawNode::log_term`] gives the term for a
//!   snapshot's metadata.
//! * A removed leader steps down through a leadership transfer (see
//!   membership below), not at once.
//!
//! # Elections
//!
//! A follower that hears nothing for its randomized election timeout
//! (uniform in `[e, 2e)` ticks, redrawn at each reset) campaigns. With
//! [`Config::pre_vote`] it first asks for pre-votes for `term + 1` without
//! changing its term; only with a quorum of pre-votes does it start a real
//! election. A member cut off from the group therefore never raises its
//! term, and does not depose a healthy leader when it returns.
//!
//! With [`Config::check_quorum`], a leader that has not heard from a quorum
//! of voters within an election timeout steps down, and a member that has
//! heard from a leader within the minimum election timeout ignores vote
//! requests (without adopting their term): the leader lease. A leadership
//! transfer's vote request is marked and bypasses the lease.
//!
//! A vote is granted at most once per term (the vote is durable before the
//! answer leaves) and only to a candidate whose log is at least as up to
//! date (§5.4.1). A request from an older term is refused with the
//! member's term, so a candidate that fell behind learns the term to beat. A member does not campaign while a committed
//! configuration change is unapplied, nor while a received snapshot is
//! uninstalled.
//!
//! # Replication
//!
//! The leader keeps a [`PeerProgress`] per member: `Probe` (one append in
//! flight until answered), `Replicate` (appends pipelined up to
//! [`Config::inflight_msgs_max`] unacknowledged, each at most
//! [`Config::msg_bytes_max`] entry bytes) or `Snapshot`. A follower rejects
//! an append whose `prev_index`/`prev_term` it does not hold and answers
//! with a hint: the last index at or below `prev_index` whose term is at
//! most `prev_term`, with that term. The leader then skips to the last index
//! in its own log with a term at most the hinted one, so a divergent suffix
//! costs one round trip per term, not per entry.
//!
//! The leader commits an index once a quorum of voters holds it and the
//! entry there is of the leader's own term (§5.4.2, Figure 8); earlier
//! entries are committed with it. Each new leader appends an empty entry to
//! commit promptly.
//!
//! # Snapshots
//!
//! [`RawNode::snapshot_created`] tells the core that the application took a
//! state snapshot; the in-memory log is cut to keep some entries before it.
//! A follower that needs an entry below the leader's first index gets
//! [`MessageBody::Snapshot`] with the snapshot's metadata (the application
//! ships the state); the follower installs it if it is ahead of its commit
//! index (surfacing it in [`Ready::snapshot`]) and answers like an append.
//! The leader sends nothing else to that follower until the answer arrives
//! or [`RawNode::report_snapshot`] is called; the application must report
//! every snapshot it fails to deliver, or that follower stays paused.
//!
//! # Reads
//!
//! [`RawNode::read_index`] yields a [`ReadState`]: a commit index at which
//! this member was leader, so that answering from state applied up to it is
//! linearizable. Every heartbeat broadcast is a numbered round (its number
//! is the heartbeat's `ctx`); a read records the leader's commit index on
//! arrival and waits for the next round. Once a quorum of voters has
//! answered that round or a later one, no quorum had moved to a later term
//! when the read arrived, so this member was the only one able to commit
//! and its commit index covered every write completed before the read: the
//! read is released. A leader serves reads
//! only after it has committed an entry of its own term (before that its
//! commit index may lag the group's); earlier requests wait for it.
//! Followers forward requests to the leader.
//!
//! With [`Config::lease_read`] (off by default; needs `check_quorum` on every
//! member) the leader answers at once while its lease holds: a quorum
//! answered a round sent at leader tick `t`, each of those members ignores
//! vote requests for `e` of its own ticks after receiving it, so with ticks
//! at equal rates and a tick of phase slack on each side no other leader can
//! be elected while the leader's tick count is at most `t + e - 2`. A leader
//! that has sent `TimeoutNow` gives up lease reads for the term (transfer
//! votes bypass leases), and a restarted member keeps ignoring votes for one
//! election timeout (it may have made a promise it no longer remembers).
//! Otherwise the read falls back to a heartbeat round.
//!
//! # Membership changes: rules and safety
//!
//! Changes are single-step: each [`ConfChange`] adds or removes one member,
//! or promotes one learner. Learners receive the log but neither vote nor
//! count toward any quorum. A configuration takes effect on a member when
//! that member *applies* the entry ([`RawNode::apply_conf_change`]), as in
//! etcd, not when it appends it as in the Raft thesis. The rules:
//!
//! 1. **One change at a time.** A leader accepts a change only when its
//!    applied index has reached its last change entry. At most one change
//!    is uncommitted, and the leader that appends `C(k+1)` has applied
//!    `C(k)`.
//! 2. **A leader changes membership only after committing in its own
//!    term.** A new leader treats its own first (empty) entry as a pending
//!    change, so it accepts a change only once that entry is applied, hence
//!    committed. This is the fix for the single-server change bug (Ongaro,
//!    raft-dev, 2015).
//! 3. **Applied configuration, applied first.** A member counts votes, and
//!    a leader counts acknowledgements, in its applied configuration. A
//!    member that knows a change is committed but has not applied it does
//!    not campaign (its application must not lag far behind).
//!
//! Why this is safe. Raft's proofs of Election Safety and Leader
//! Completeness (§5.4.3) use one fact about quorums: the quorum that elects
//! a leader intersects the quorum of any other leader of the same term
//! (trivially, since each member votes once per term) and the quorum that
//! committed any entry before the election. With fixed membership any two
//! majorities intersect. With changes it still holds when the two
//! configurations are equal or *adjacent*: adjacent ones differ by one
//! voter, and majorities of two such sets always share a member. So it is
//! enough (arguing by induction over the history, as §5.4.3 does) that no
//! candidate wins counting in a configuration two or more steps away from
//! one that committed an entry before its election.
//!
//! * *One chain.* The committed changes form a single chain `C0, C1, ...`
//!   in which each `C(k+1)` was appended by a leader that had applied
//!   `C(k)` and committed an entry of its own term (rules 1 and 2). The
//!   second half rules out the bug: a change appended by an earlier leader
//!   and not committed when a later leader commits an entry of its term can
//!   never be committed afterwards (a majority now holds a newer-term entry
//!   it does not precede, so no log holding it can win an election), so two
//!   competing successors of `C(k)` never both take effect.
//! * *Holding `C(k+1)` means knowing `C(k)` committed.* `C(k+1)` reaches a
//!   member in an append whose commit field already covers `C(k)` (its
//!   creator had applied `C(k)`; commit indexes only grow), so by rule 3 the
//!   member applies `C(k)` before it campaigns. A candidate thus counts in
//!   the last configuration in its log or the one before it.
//! * *Two steps older cannot win.* Say a candidate counts in `C(j)` and
//!   `C(j+2)` is committed. The candidate's log lacks `C(j+2)` (previous
//!   point). `C(j+2)` was committed by a majority of `C(j+1)`, which
//!   intersects every majority of `C(j)`; a member of the intersection holds
//!   `C(j+2)` and refuses the candidate's less up-to-date log (§5.4.1).
//! * *Two steps newer holds the entry anyway.* Say a candidate counts in
//!   `C(c)` and an entry `E` was committed by a leader counting in `C(m)`,
//!   `m <= c - 2`. That leader never held `C(m+2)` (it would have applied
//!   `C(m+1)` before campaigning, and a leader appends only its own
//!   changes), so `E` precedes `C(m+2)` in the committed log (were it
//!   after, the leader's log would hold the committed `C(m+2)` before
//!   `E`), hence precedes `C(c)`; the candidate, holding `C(c)`, holds `E`
//!   (Log Matching).
//!
//! The rest follows from these:
//!
//! * Removing the leader: it keeps leading, counting itself, until it
//!   applies the entry that removes it (committed in the configuration that
//!   still contains it). Then it steps down by a leadership transfer to the
//!   most caught-up remaining voter: it replicates (counting only the
//!   remaining voters) and refuses proposals until that voter holds its
//!   whole log, then sends `TimeoutNow` and becomes a follower. It must
//!   not simply stop: the others learn that the removal is committed only
//!   from it, so they may still count it in their quorum, and its log may
//!   be ahead of theirs; nobody could be elected. The removed member is not
//!   promotable and never campaigns again. Removing a follower shrinks the
//!   quorum on the leader as soon as it applies the change (entries may
//!   commit then).
//! * Learners: their acknowledgements never count, so adding or removing
//!   one changes no quorum. Promotion is an ordinary single-step voter
//!   addition; the application should promote only a learner that has
//!   caught up ([`Status::progress`] shows its match index) so the larger
//!   quorum does not stall waiting on it. Demoting a voter in one step is
//!   refused.
//! * A committed change that is invalid against the configuration it is
//!   applied to (it cannot be, given rule 1 and the leader's check, but the
//!   log is data) is a no-op on every member alike.
//! * Snapshots carry the configuration as of their index, so a member that
//!   installs one adopts the configuration it would have reached by
//!   applying the log.
//!
//! # Leadership transfer
//!
//! [`RawNode::transfer_leader`] stops proposals, brings the target up to
//! date, then sends it [`MessageBody::TimeoutNow`]; the target campaigns at
//! once (no pre-vote, lease bypassed). A transfer not completed within an
//! election timeout is abandoned.
//!
//! # Invariants and limits
//!
//! `offset <= applied <= commit <= last_index` (only a received snapshot
//! not yet installed moves `offset` ahead of `applied`), commit never
//! decreases, a committed entry is never overwritten (a follower whose
//! leader tries returns [`RaftError::CommittedEntryConflict`] from `step`
//! and changes nothing: a safety violation the application must treat as
//! fatal), terms never go back, and entries are contiguous. They are asserted at function
//! boundaries (`debug_assert!`, or `assert!` where cheap). Limits are named
//! constants ([`INFLIGHT_MSGS_MAX`], [`MSG_BYTES_MAX`],
//! [`UNCOMMITTED_BYTES_MAX`], [`PENDING_READS_MAX`],
//! [`READY_COMMITTED_BYTES_MAX`], [`ROUNDS_TRACKED_MAX`],
//! [`ENTRY_DATA_BYTES_MAX`],
//! [`codec::MESSAGE_FRAME_BYTES_MAX`]).
//!
//! [`Faults`] plants known bugs (`skip_log_up_to_date_check`,
//! `commit_previous_term_by_count`) so tests and the simulator can show
//! that their checkers catch safety violations.

pub mod codec;
mod conf;
mod config;
mod error;
mod log;
mod node;
mod progress;
mod rng;
mod types;

#[cfg(test)]
mod tests;

pub use conf::{
    ConfChange, ConfChangeDecodeError, ConfChangeKind, CONF_CHANGE_HEADER_BYTES,
    CONF_CHANGE_VERSION,
};
pub use config::{
    Config, Faults, ELECTION_TICKS_DEFAULT, HEARTBEAT_TICKS_DEFAULT, INFLIGHT_MSGS_MAX,
    MSG_BYTES_MAX, PENDING_READS_MAX, READY_COMMITTED_BYTES_MAX, ROUNDS_TRACKED_MAX,
    UNCOMMITTED_BYTES_MAX,
};
pub use error::{ConfigError, ProposeError, RaftError, StartError};
pub use node::{RawNode, Start, ENTRY_DATA_BYTES_MAX};
pub use types::{
    ConfState, Entry, EntryKind, GroupId, HardState, Message, MessageBody, NodeId, PeerProgress,
    ProgressState, ReadState, Ready, Role, SnapshotMeta, SoftState, Status, ENTRY_OVERHEAD_BYTES,
    NO_NODE,
};
