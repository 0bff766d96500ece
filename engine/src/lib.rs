//! The deterministic MVCC state machine of one kvik keyspace.
//!
//! This crate owns:
//! - etcd v3's MVCC semantics for one keyspace: puts, deletes, transactions,
//!   ranges, compaction, and the `HashKV` hash, reproducing etcd 3.7 down to
//!   its quirks (each rule names the etcd function it follows);
//! - the deterministic part of etcd's leases: grant, revoke (deleting the
//!   attached keys) and which keys are attached to which lease; expiry is
//!   the server's, which logs a revoke;
//! - the watch events every write produces ([`Mvcc::take_events`]) and the
//!   history read a lagging watcher catches up with ([`Mvcc::events`]);
//! - the revision rules: a fresh store is at revision 1; every write command
//!   that changes something takes exactly one new revision, shared by all its
//!   writes as sub-revisions; reads, failed commands, no-op deletes, lease
//!   grants and revokes of leases without keys take none;
//! - the stateless request validation etcd's API layer does before proposing
//!   (`validate_*`);
//! - the command codec: how a [`Command`] is stored in, and replayed from, the
//!   replicated log ([`Command::encode`], [`Command::decode`]).
//!
//! It must not touch: I/O of any kind, clocks, threads, randomness, or
//! protobuf/gRPC types. The caller (the server loop) feeds it commands in log
//! order and maps its typed results and errors onto the wire. Applying the
//! same commands in the same order yields identical state and responses.
//!
//! Module boundary: `store` holds versions by key and by revision (the part
//! a persistent revision store replaces later); `mvcc` holds the semantics,
//! the lease registry and the watch events.

mod checkpoint;
mod codec;
mod error;
mod gosort;
mod hash;
mod mvcc;
pub mod segment;
mod store;
mod types;
mod validate;

pub use checkpoint::{
    CheckpointPlan, StoreStats, RECLAIM_BYTES_MAX, RECLAIM_LIVE_PERCENT, SMALL_SEGMENTS_MAX,
    SMALL_SEGMENT_BYTES,
};
pub use codec::CODEC_VERSION;
pub use error::{DecodeError, Error};
pub use mvcc::Mvcc;
pub use store::{FlushItem, Placed};
pub use types::{
    AlarmMember, Applied, Command, CompactionRequest, Compare, CompareResult, CompareTarget,
    DeleteRangeRequest, DeleteRangeResponse, Event, EventKind, HashKv, KeyValue, Limits,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse, LEASE_TTL_MAX_SECS, TXN_OPS_MAX_DEFAULT,
};
pub use validate::{validate_delete, validate_put, validate_range, validate_txn, TXN_DEPTH_MAX};

#[cfg(test)]
mod tests;
