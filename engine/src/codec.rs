//! The command codec: how a [`Command`] is stored in the replicated log.
//!
//! Layout: one codec version byte ([`CODEC_VERSION`]), then an rkyv archive
//! (unaligned, little endian) of [`WireCommand`]. A transaction is archived
//! flat: its levels are the nodes of one vector, the outermost first, and a
//! nested transaction op names the node holding it by index. The archive type
//! is therefore not recursive, rkyv's validation walks it without recursion,
//! and decoding rebuilds the tree bottom up with the nesting depth checked,
//! so no input can exhaust the stack.

use rkyv::rancor;

use crate::error::DecodeError;
use crate::types::{
    Command, CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use crate::validate::TXN_DEPTH_MAX;

/// Version byte leading every encoded command.
pub const CODEC_VERSION: u8 = 1;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum WireCommand {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(Vec<WireTxnNode>),
    Compact(CompactionRequest),
    // New variants go last: an existing variant's tag must not change.
    LeaseGrant {
        id: i64,
        ttl_secs: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    Alarm {
        activate: bool,
        member_id: u64,
        alarm: i32,
    },
}

/// One level of a transaction.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct WireTxnNode {
    compare: Vec<Compare>,
    success: Vec<WireOp>,
    failure: Vec<WireOp>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum WireOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    /// Index of the node holding the nested transaction; always greater than
    /// the index of the node holding this op.
    Txn(u32),
}

/// Flattens `txn` into nodes in breadth-first order, without recursion: a
/// nested transaction always lands at a higher index than its parent.
fn flatten(txn: &TxnRequest) -> Vec<WireTxnNode> {
    fn wire_ops<'a>(list: &'a [RequestOp], queue: &mut Vec<&'a TxnRequest>) -> Vec<WireOp> {
        list.iter()
            .map(|op| match op {
                RequestOp::Range(r) => WireOp::Range(r.clone()),
                RequestOp::Put(p) => WireOp::Put(p.clone()),
                RequestOp::DeleteRange(d) => WireOp::DeleteRange(d.clone()),
                RequestOp::Txn(inner) => {
                    queue.push(inner);
                    WireOp::Txn(
                        u32::try_from(queue.len() - 1).expect("transaction node count fits in u32"),
                    )
                }
            })
            .collect()
    }
    let mut queue: Vec<&TxnRequest> = vec![txn];
    let mut nodes = Vec::new();
    let mut i = 0;
    while i < queue.len() {
        let t = queue[i];
        let success = wire_ops(&t.success, &mut queue);
        let failure = wire_ops(&t.failure, &mut queue);
        nodes.push(WireTxnNode {
            compare: t.compare.clone(),
            success,
            failure,
        });
        i += 1;
    }
    nodes
}

/// Rebuilds the transaction tree from its nodes, bottom up and without
/// recursion, refusing anything that is not a tree rooted at node 0 of depth
/// at most [`TXN_DEPTH_MAX`].
fn unflatten(nodes: Vec<WireTxnNode>) -> Result<TxnRequest, DecodeError> {
    let n = nodes.len();
    if n == 0 {
        return Err(DecodeError::BadTxnTree);
    }
    // Each node other than the root is referenced exactly once, by a node
    // with a smaller index; depth follows from the parent's.
    let mut depth = vec![0usize; n];
    depth[0] = 1;
    let mut referenced = vec![false; n];
    for (i, node) in nodes.iter().enumerate() {
        for op in node.success.iter().chain(node.failure.iter()) {
            if let WireOp::Txn(c) = op {
                let c = *c as usize;
                if c <= i || c >= n || referenced[c] {
                    return Err(DecodeError::BadTxnTree);
                }
                referenced[c] = true;
                depth[c] = depth[i] + 1;
                if depth[c] > TXN_DEPTH_MAX {
                    return Err(DecodeError::BadTxnTree);
                }
            }
        }
    }
    if referenced.iter().skip(1).any(|r| !r) {
        return Err(DecodeError::BadTxnTree);
    }
    let mut built: Vec<Option<TxnRequest>> = (0..n).map(|_| None).collect();
    for (i, node) in nodes.into_iter().enumerate().rev() {
        let mut convert = |ops: Vec<WireOp>| -> Vec<RequestOp> {
            ops.into_iter()
                .map(|op| match op {
                    WireOp::Range(r) => RequestOp::Range(r),
                    WireOp::Put(p) => RequestOp::Put(p),
                    WireOp::DeleteRange(d) => RequestOp::DeleteRange(d),
                    WireOp::Txn(c) => {
                        RequestOp::Txn(built[c as usize].take().expect("child built before parent"))
                    }
                })
                .collect()
        };
        let success = convert(node.success);
        let failure = convert(node.failure);
        built[i] = Some(TxnRequest {
            compare: node.compare,
            success,
            failure,
        });
    }
    Ok(built[0].take().expect("root built"))
}

impl Command {
    /// The command's log encoding: [`CODEC_VERSION`] then the rkyv archive.
    pub fn encode(&self) -> Vec<u8> {
        let wire = match self {
            Command::Put(p) => WireCommand::Put(p.clone()),
            Command::DeleteRange(d) => WireCommand::DeleteRange(d.clone()),
            Command::Txn(t) => WireCommand::Txn(flatten(t)),
            Command::Compact(c) => WireCommand::Compact(c.clone()),
            Command::LeaseGrant { id, ttl_secs } => WireCommand::LeaseGrant {
                id: *id,
                ttl_secs: *ttl_secs,
            },
            Command::LeaseRevoke { id } => WireCommand::LeaseRevoke { id: *id },
            Command::Alarm {
                activate,
                member_id,
                alarm,
            } => WireCommand::Alarm {
                activate: *activate,
                member_id: *member_id,
                alarm: *alarm,
            },
        };
        let archive =
            rkyv::to_bytes::<rancor::Error>(&wire).expect("serializing to memory cannot fail");
        let mut out = Vec::with_capacity(1 + archive.len());
        out.push(CODEC_VERSION);
        out.extend_from_slice(&archive);
        out
    }

    /// Decodes [`Command::encode`]'s output. Any byte string is safe to pass:
    /// the archive is validated before use and the result is a well-formed
    /// command or an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let (&version, archive) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != CODEC_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let wire = rkyv::from_bytes::<WireCommand, rancor::Error>(archive)
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        Ok(match wire {
            WireCommand::Put(p) => Command::Put(p),
            WireCommand::DeleteRange(d) => Command::DeleteRange(d),
            WireCommand::Txn(nodes) => Command::Txn(unflatten(nodes)?),
            WireCommand::Compact(c) => Command::Compact(c),
            WireCommand::LeaseGrant { id, ttl_secs } => Command::LeaseGrant { id, ttl_secs },
            WireCommand::LeaseRevoke { id } => Command::LeaseRevoke { id },
            WireCommand::Alarm {
                activate,
                member_id,
                alarm,
            } => Command::Alarm {
                activate,
                member_id,
                alarm,
            },
        })
    }
}
