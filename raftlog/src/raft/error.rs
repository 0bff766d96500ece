//! Typed errors of the Raft core.

use std::fmt;

use super::types::{GroupId, NodeId};

/// A configuration the core refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `id` is 0 (reserved for "none").
    ZeroId,
    /// `heartbeat_ticks` is 0.
    ZeroHeartbeatTicks,
    /// `election_ticks` is not above `heartbeat_ticks`.
    ElectionNotAboveHeartbeat,
    /// `election_ticks` is so large that `2e` overflows.
    ElectionTicksTooLarge,
    /// `inflight_msgs_max` is 0.
    ZeroInflightMsgs,
    /// A byte limit is 0.
    ZeroByteLimit,
    /// `lease_read` without `check_quorum`.
    LeaseReadWithoutCheckQuorum,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ConfigError::ZeroId => "node id must not be 0",
            ConfigError::ZeroHeartbeatTicks => "heartbeat_ticks must not be 0",
            ConfigError::ElectionNotAboveHeartbeat => {
                "election_ticks must be greater than heartbeat_ticks"
            }
            ConfigError::ElectionTicksTooLarge => "election_ticks too large",
            ConfigError::ZeroInflightMsgs => "inflight_msgs_max must not be 0",
            ConfigError::ZeroByteLimit => "byte limits must not be 0",
            ConfigError::LeaseReadWithoutCheckQuorum => "lease_read requires check_quorum",
        };
        f.write_str(s)
    }
}

impl std::error::Error for ConfigError {}

/// Why [`RawNode::new`](super::RawNode::new) refused to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The configuration is inconsistent.
    Config(ConfigError),
    /// Bootstrap with no voters, a duplicate, or node 0.
    BadVoters,
    /// Restart state that contradicts itself (the reason says how).
    BadRestart(&'static str),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "bad raft config: {e}"),
            StartError::BadVoters => {
                f.write_str("bootstrap voters must be non-empty, distinct, non-zero, with one context each or none")
            }
            StartError::BadRestart(why) => write!(f, "inconsistent restart state: {why}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

/// Why [`RawNode::step`](super::RawNode::step) refused a message. A refused
/// message changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaftError {
    /// The message belongs to another group.
    WrongGroup {
        /// This member's group.
        expected: GroupId,
        /// The message's group.
        got: GroupId,
    },
    /// The message is addressed to another member.
    WrongRecipient {
        /// This member.
        expected: NodeId,
        /// The message's recipient.
        got: NodeId,
    },
    /// The message failed [`Message::validate`](super::Message::validate).
    InvalidMessage(&'static str),
    /// A leader tried to overwrite an entry this member knows is committed.
    /// Raft guarantees this never happens; seeing it means a safety bug or
    /// corrupted storage somewhere in the group, and the application should
    /// stop this member.
    CommittedEntryConflict {
        /// The committed index the leader's entry conflicts with.
        index: u64,
        /// This member's commit index.
        commit: u64,
    },
}

impl fmt::Display for RaftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaftError::WrongGroup { expected, got } => {
                write!(f, "message for group {got} stepped into group {expected}")
            }
            RaftError::WrongRecipient { expected, got } => {
                write!(f, "message for node {got} stepped into node {expected}")
            }
            RaftError::InvalidMessage(why) => write!(f, "invalid message: {why}"),
            RaftError::CommittedEntryConflict { index, commit } => write!(
                f,
                "leader conflicts with committed entry {index} (commit {commit}): safety violation"
            ),
        }
    }
}

impl std::error::Error for RaftError {}

/// Why a proposal was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This member is not the leader and does not forward (forwarding is
    /// disabled, or no leader is known). `leader` is a hint.
    NotLeader {
        /// The leader this member knows of.
        leader: Option<NodeId>,
    },
    /// The leader is handing over leadership and takes no proposals.
    TransferInProgress {
        /// The transfer target.
        to: NodeId,
    },
    /// A configuration change is already in flight (proposed, not yet
    /// applied), or the leader has not yet applied an entry of its own term.
    ConfChangePending,
    /// The configuration change is not valid against the current
    /// configuration (the reason says why).
    InvalidConfChange(&'static str),
    /// The entry exceeds the single-entry size limit.
    TooLarge {
        /// The entry's size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The leader's uncommitted tail is full; retry later.
    Overloaded,
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader { leader: Some(l) } => {
                write!(f, "not the leader (leader is {l})")
            }
            ProposeError::NotLeader { leader: None } => {
                f.write_str("not the leader (no leader known)")
            }
            ProposeError::TransferInProgress { to } => {
                write!(f, "leadership transfer to {to} in progress")
            }
            ProposeError::ConfChangePending => f.write_str("a configuration change is pending"),
            ProposeError::InvalidConfChange(why) => {
                write!(f, "invalid configuration change: {why}")
            }
            ProposeError::TooLarge { bytes, max } => {
                write!(f, "entry of {bytes} bytes exceeds the limit of {max}")
            }
            ProposeError::Overloaded => f.write_str("too many uncommitted entry bytes"),
        }
    }
}

impl std::error::Error for ProposeError {}
