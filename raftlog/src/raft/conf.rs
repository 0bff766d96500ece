//! Single-step membership changes and their log encoding.

use std::fmt;

use super::types::{ConfState, NodeId, NO_NODE};

/// Version byte leading an encoded [`ConfChange`].
pub const CONF_CHANGE_VERSION: u8 = 1;
/// Header of an encoded [`ConfChange`]: version, kind, node id.
pub const CONF_CHANGE_HEADER_BYTES: usize = 10;

/// What a configuration change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChangeKind {
    /// Add a voting member (or turn a learner into one, like
    /// `PromoteLearner`).
    AddVoter,
    /// Add a non-voting member.
    AddLearner,
    /// Remove a voter or learner.
    Remove,
    /// Turn a learner into a voter.
    PromoteLearner,
}

impl ConfChangeKind {
    fn to_byte(self) -> u8 {
        match self {
            ConfChangeKind::AddVoter => 1,
            ConfChangeKind::AddLearner => 2,
            ConfChangeKind::Remove => 3,
            ConfChangeKind::PromoteLearner => 4,
        }
    }

    fn from_byte(b: u8) -> Option<ConfChangeKind> {
        Some(match b {
            1 => ConfChangeKind::AddVoter,
            2 => ConfChangeKind::AddLearner,
            3 => ConfChangeKind::Remove,
            4 => ConfChangeKind::PromoteLearner,
            _ => return None,
        })
    }
}

/// One membership change: at most one voter is added or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfChange {
    /// What to do.
    pub kind: ConfChangeKind,
    /// To whom.
    pub node: NodeId,
    /// Opaque application data (etcd keeps the member's URLs here).
    pub context: Vec<u8>,
}

/// A byte string that is not an encoded [`ConfChange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChangeDecodeError {
    /// Shorter than the header.
    Short,
    /// Unknown version byte.
    UnsupportedVersion(u8),
    /// Unknown kind byte.
    UnknownKind(u8),
    /// Node id 0.
    ZeroNode,
}

impl fmt::Display for ConfChangeDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfChangeDecodeError::Short => f.write_str("conf change shorter than its header"),
            ConfChangeDecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported conf change version {v}")
            }
            ConfChangeDecodeError::UnknownKind(k) => write!(f, "unknown conf change kind {k}"),
            ConfChangeDecodeError::ZeroNode => f.write_str("conf change for node 0"),
        }
    }
}

impl std::error::Error for ConfChangeDecodeError {}

impl ConfChange {
    /// A change without context.
    pub fn new(kind: ConfChangeKind, node: NodeId) -> ConfChange {
        ConfChange {
            kind,
            node,
            context: Vec::new(),
        }
    }

    /// Encoding for an [`EntryKind::ConfChange`](super::EntryKind) entry:
    /// version byte, kind byte, node id (u64 little endian), context.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONF_CHANGE_HEADER_BYTES + self.context.len());
        out.push(CONF_CHANGE_VERSION);
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.node.to_le_bytes());
        out.extend_from_slice(&self.context);
        out
    }

    /// Decodes [`ConfChange::encode`]'s output; any input is safe.
    pub fn decode(bytes: &[u8]) -> Result<ConfChange, ConfChangeDecodeError> {
        if bytes.len() < CONF_CHANGE_HEADER_BYTES {
            return Err(ConfChangeDecodeError::Short);
        }
        if bytes[0] != CONF_CHANGE_VERSION {
            return Err(ConfChangeDecodeError::UnsupportedVersion(bytes[0]));
        }
        let kind = ConfChangeKind::from_byte(bytes[1])
            .ok_or(ConfChangeDecodeError::UnknownKind(bytes[1]))?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[2..CONF_CHANGE_HEADER_BYTES]);
        let node = u64::from_le_bytes(id);
        if node == NO_NODE {
            return Err(ConfChangeDecodeError::ZeroNode);
        }
        Ok(ConfChange {
            kind,
            node,
            context: bytes[CONF_CHANGE_HEADER_BYTES..].to_vec(),
        })
    }

    /// Why this change is refused against `conf`, if it is: it must change
    /// something and must leave at least one voter.
    pub fn check(&self, conf: &ConfState) -> Result<(), &'static str> {
        let n = self.node;
        if n == NO_NODE {
            return Err("node 0");
        }
        match self.kind {
            ConfChangeKind::AddVoter if conf.is_voter(n) => Err("already a voter"),
            ConfChangeKind::AddVoter => Ok(()),
            ConfChangeKind::AddLearner if conf.is_learner(n) => Err("already a learner"),
            // Demoting a voter in one step could shrink a quorum under a
            // leader; remove it and add it back as a learner instead.
            ConfChangeKind::AddLearner if conf.is_voter(n) => Err("cannot demote a voter"),
            ConfChangeKind::AddLearner => Ok(()),
            ConfChangeKind::PromoteLearner if !conf.is_learner(n) => Err("not a learner"),
            ConfChangeKind::PromoteLearner => Ok(()),
            ConfChangeKind::Remove if !conf.contains(n) => Err("not a member"),
            ConfChangeKind::Remove if conf.voters == [n] => Err("cannot remove the last voter"),
            ConfChangeKind::Remove => Ok(()),
        }
    }

    /// `conf` after this change. A change that [`ConfChange::check`] refuses
    /// leaves `conf` as it is: a committed entry must apply the same way on
    /// every member, so it cannot fail.
    pub fn apply_to(&self, conf: &ConfState) -> ConfState {
        let mut out = conf.clone();
        if self.check(conf).is_err() {
            return out;
        }
        let n = self.node;
        let insert = |v: &mut Vec<NodeId>| {
            if let Err(pos) = v.binary_search(&n) {
                v.insert(pos, n);
            }
        };
        let remove = |v: &mut Vec<NodeId>| {
            if let Ok(pos) = v.binary_search(&n) {
                v.remove(pos);
            }
        };
        match self.kind {
            ConfChangeKind::AddVoter | ConfChangeKind::PromoteLearner => {
                remove(&mut out.learners);
                insert(&mut out.voters);
            }
            ConfChangeKind::AddLearner => insert(&mut out.learners),
            ConfChangeKind::Remove => {
                remove(&mut out.voters);
                remove(&mut out.learners);
            }
        }
        debug_assert!(out.is_well_formed());
        debug_assert!(!out.voters.is_empty());
        out
    }
}
