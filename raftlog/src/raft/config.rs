//! Configuration of one member of one group.

use super::error::ConfigError;
use super::types::{GroupId, NodeId, NO_NODE};

/// Default election timeout in ticks (etcd: 1000 ms / 100 ms heartbeat).
pub const ELECTION_TICKS_DEFAULT: u32 = 10;
/// Default heartbeat interval in ticks.
pub const HEARTBEAT_TICKS_DEFAULT: u32 = 1;
/// Default limit of unacknowledged append messages per peer (etcd's
/// `MaxInflightMsgs`).
pub const INFLIGHT_MSGS_MAX: usize = 256;
/// Default limit of entry bytes per append message (etcd's `MaxSizePerMsg`).
pub const MSG_BYTES_MAX: u64 = 1024 * 1024;
/// Default limit of uncommitted entry bytes a leader accepts before
/// dropping proposals.
pub const UNCOMMITTED_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Limit of committed entry bytes handed out in one `Ready` (at least one
/// entry is always handed out).
pub const READY_COMMITTED_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Limit of reads a leader queues while it has not yet committed an entry of
/// its term, or waits on a heartbeat quorum for.
pub const PENDING_READS_MAX: usize = 4096;

/// Limit of heartbeat rounds a leader remembers the send tick of (for the
/// lease); older rounds no longer date a lease anyway.
pub const ROUNDS_TRACKED_MAX: usize = 1024;

/// Planted bugs for showing that checkers catch them. Never set outside
/// tests; all are off by default.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Grant (pre-)votes without the log up-to-date check (§5.4.1): a
    /// candidate missing committed entries can win and overwrite them.
    pub skip_log_up_to_date_check: bool,
    /// Let a leader commit entries of earlier terms by counting replicas
    /// (the Figure 8 bug).
    pub commit_previous_term_by_count: bool,
}

/// Configuration of one member of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This member's id (not [`NO_NODE`]).
    pub id: NodeId,
    /// The group's id; carried in every message.
    pub group: GroupId,
    /// Base election timeout in ticks, `e`. A follower's actual timeout is
    /// drawn uniformly from `[e, 2e)` at each reset.
    pub election_ticks: u32,
    /// Heartbeat interval in ticks; must be below `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Run a pre-vote round before a real election (a partitioned member
    /// then cannot disrupt the group when it returns).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum within an
    /// election timeout; members that hear from a live leader ignore vote
    /// requests.
    pub check_quorum: bool,
    /// Unacknowledged append messages per peer while replicating.
    pub inflight_msgs_max: usize,
    /// Entry bytes per append message (one entry is always allowed).
    pub msg_bytes_max: u64,
    /// Uncommitted entry bytes a leader accepts before refusing proposals.
    pub uncommitted_bytes_max: u64,
    /// Seed of the internal deterministic generator (splitmix64) that
    /// randomizes election timeouts. It is mixed with `id`, so members given
    /// the same seed still draw different timeouts.
    pub seed: u64,
    /// Answer reads from the leader's lease instead of a heartbeat round
    /// while the lease holds (see the module docs). Safe only while every
    /// member's ticks advance at the same rate; needs `check_quorum`, and
    /// must be set on every member of the group. Off by default.
    pub lease_read: bool,
    /// Refuse proposals on followers (`NotLeader`) instead of forwarding
    /// them to the leader.
    pub disable_proposal_forwarding: bool,
    /// On restart, the index the application's state machine already holds
    /// (it will not be handed out again). 0 means the snapshot's index.
    pub applied: u64,
    /// Planted bugs for checker tests.
    #[doc(hidden)]
    pub faults: Faults,
}

impl Config {
    /// A configuration with etcd's defaults for member `id` of `group`.
    pub fn new(id: NodeId, group: GroupId) -> Config {
        Config {
            id,
            group,
            election_ticks: ELECTION_TICKS_DEFAULT,
            heartbeat_ticks: HEARTBEAT_TICKS_DEFAULT,
            pre_vote: true,
            check_quorum: true,
            inflight_msgs_max: INFLIGHT_MSGS_MAX,
            msg_bytes_max: MSG_BYTES_MAX,
            uncommitted_bytes_max: UNCOMMITTED_BYTES_MAX,
            seed: 0,
            lease_read: false,
            disable_proposal_forwarding: false,
            applied: 0,
            faults: Faults::default(),
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NO_NODE {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_ticks == 0 {
            return Err(ConfigError::ZeroHeartbeatTicks);
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::ElectionNotAboveHeartbeat);
        }
        if self.election_ticks > u32::MAX / 2 {
            return Err(ConfigError::ElectionTicksTooLarge);
        }
        if self.inflight_msgs_max == 0 {
            return Err(ConfigError::ZeroInflightMsgs);
        }
        if self.msg_bytes_max == 0 || self.uncommitted_bytes_max == 0 {
            return Err(ConfigError::ZeroByteLimit);
        }
        if self.lease_read && !self.check_quorum {
            return Err(ConfigError::LeaseReadWithoutCheckQuorum);
        }
        Ok(())
    }
}
