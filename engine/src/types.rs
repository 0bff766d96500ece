//! Request, response and command types of the engine's public API.
//!
//! They mirror etcd's `etcdserverpb` / `mvccpb` messages field by field, minus
//! the response headers: the caller builds those, taking the revision from
//! [`crate::Mvcc::current_revision`] (top level) or from the `header_revision`
//! fields (responses nested in a transaction).

use crate::error::Error;

/// One version of one key, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// Revision of the put that created the key (after its last delete).
    pub create_revision: i64,
    /// Revision of the last put of the key.
    pub mod_revision: i64,
    /// Number of puts since the key was created; 1 on creation.
    pub version: i64,
    pub value: Vec<u8>,
    /// Lease id attached to the key, 0 for none.
    pub lease: i64,
}

/// etcd `RangeRequest.SortOrder`; the discriminants are etcd's wire values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[repr(i32)]
pub enum SortOrder {
    #[default]
    None = 0,
    Ascend = 1,
    Descend = 2,
}

/// etcd `RangeRequest.SortTarget`; the discriminants are etcd's wire values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[repr(i32)]
pub enum SortTarget {
    #[default]
    Key = 0,
    Version = 1,
    Create = 2,
    Mod = 3,
    Value = 4,
}

impl TryFrom<i32> for SortOrder {
    type Error = Error;
    /// etcd rejects unknown values with "etcdserver: invalid sort option".
    fn try_from(v: i32) -> Result<Self, Error> {
        match v {
            0 => Ok(SortOrder::None),
            1 => Ok(SortOrder::Ascend),
            2 => Ok(SortOrder::Descend),
            _ => Err(Error::InvalidSortOption),
        }
    }
}

impl TryFrom<i32> for SortTarget {
    type Error = Error;
    /// etcd rejects unknown values with "etcdserver: invalid sort option".
    fn try_from(v: i32) -> Result<Self, Error> {
        match v {
            0 => Ok(SortTarget::Key),
            1 => Ok(SortTarget::Version),
            2 => Ok(SortTarget::Create),
            3 => Ok(SortTarget::Mod),
            4 => Ok(SortTarget::Value),
            _ => Err(Error::InvalidSortOption),
        }
    }
}

/// etcd `RangeRequest`.
///
/// `range_end` empty: the single key `key`; `range_end == [0]`: every key
/// `>= key`; otherwise the half-open interval `[key, range_end)`.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// At most this many kvs; `<= 0` means no limit.
    pub limit: i64,
    /// Read at this revision; `<= 0` means the current one (see
    /// [`crate::Mvcc::range`] for the one place where a negative value differs).
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    /// Only meaningful to the caller (whether a linearizable read barrier is
    /// needed); the engine ignores it.
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

/// etcd `RangeResponse` without its header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// More kvs than `limit` matched the range and the filters.
    pub more: bool,
    /// Keys in the range at the read revision, ignoring `limit` and the
    /// min/max revision filters.
    pub count: i64,
    /// The revision etcd puts in this response's own header: the store's
    /// revision at the time of the read (inside a transaction: the
    /// transaction's revision once it has written, the previous one before).
    pub header_revision: i64,
}

/// etcd `PutRequest`.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

/// etcd `PutResponse` without its header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutResponse {
    pub prev_kv: Option<KeyValue>,
    /// Revision of etcd's header for this response: the put's revision.
    pub header_revision: i64,
}

/// etcd `DeleteRangeRequest`; `range_end` as in [`RangeRequest`].
#[derive(
    Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct DeleteRangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

/// etcd `DeleteRangeResponse` without its header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteRangeResponse {
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
    /// Revision of etcd's header for this response: the new revision when
    /// this delete (or an earlier write of the same transaction) changed
    /// something, else the unchanged current revision.
    pub header_revision: i64,
}

/// etcd `Compare.CompareResult`; the discriminants are etcd's wire values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[repr(i32)]
pub enum CompareResult {
    #[default]
    Equal = 0,
    Greater = 1,
    Less = 2,
    NotEqual = 3,
}

/// etcd `Compare.target` together with its `target_union` value.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

impl Default for CompareTarget {
    fn default() -> Self {
        CompareTarget::Version(0)
    }
}

/// etcd `Compare`: holds when every key of `[key, range_end)` (or the single
/// `key`) satisfies `target result value`.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

/// The response to one [`RequestOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

/// etcd `TxnRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

/// etcd `TxnResponse` without its header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnResponse {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
    /// Revision of etcd's header for this response. For the outermost
    /// transaction it is [`crate::Mvcc::current_revision`] after the apply;
    /// etcd leaves the header of a *nested* transaction response with
    /// revision 0, and so does this field.
    pub header_revision: i64,
}

/// etcd `CompactionRequest`.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct CompactionRequest {
    pub revision: i64,
    /// Only meaningful to the caller (etcd waits for the physical deletion
    /// before answering); compaction in the engine is always complete when
    /// `apply` returns.
    pub physical: bool,
}

/// The largest lease TTL etcd grants (`lease.MaxLeaseTTL`), in seconds.
pub const LEASE_TTL_MAX_SECS: i64 = 9_000_000_000;

/// One entry of the replicated log: what the WAL stores and replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// etcd `LeaseGrant` as applied: `id` is non-zero (the server picks one
    /// before logging when the client gave 0) and `ttl_secs` is already
    /// raised to the server's minimum TTL. Takes no revision.
    LeaseGrant {
        id: i64,
        ttl_secs: i64,
    },
    /// etcd `LeaseRevoke`, by a client or on expiry: deletes every key
    /// attached to the lease in one revision (in key order), then forgets the
    /// lease. Takes a revision only when some key was attached.
    LeaseRevoke {
        id: i64,
    },
    /// etcd `Alarm` ACTIVATE (`activate`) or DEACTIVATE of one (member,
    /// alarm type) pair, with etcd's alarm type numbers (NOSPACE 1,
    /// CORRUPT 2). Alarms live in the log like everything else, so they
    /// survive restarts as etcd's do. Takes no revision.
    Alarm {
        activate: bool,
        member_id: u64,
        alarm: i32,
    },
}

/// One raised alarm: etcd's `AlarmMember`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlarmMember {
    pub member_id: u64,
    pub alarm: i32,
}

/// What applying a [`Command`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact,
    /// The lease granted: the command's id and TTL. etcd's response header
    /// carries the (unchanged) current revision.
    LeaseGrant {
        id: i64,
        ttl_secs: i64,
    },
    /// etcd's response header carries the current revision after the
    /// revoke's deletes.
    LeaseRevoke,
    /// The alarms the response lists: the one raised or cleared, or none
    /// when nothing changed.
    Alarm(Vec<AlarmMember>),
}

/// etcd `mvccpb.Event.EventType`; the discriminants are etcd's wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum EventKind {
    Put = 0,
    Delete = 1,
}

/// One change of one key, as etcd's `mvccpb.Event` sends it to a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// A put: the key's new version. A delete: only `key` and
    /// `mod_revision` (the delete's revision) are set, every other field is
    /// zero, as etcd sends it.
    pub kv: KeyValue,
    /// The key's version as of the revision before the event's, as etcd's
    /// watch server reads it for `prev_kv` watchers (`Range` at
    /// `mod_revision - 1`): `None` for a put that creates the key (etcd
    /// skips those, even when the same transaction deleted the key first)
    /// and for an event at exactly the compaction revision (etcd's read at
    /// the revision before fails as compacted). Always filled otherwise; the
    /// server drops it for watchers that did not ask for it.
    pub prev_kv: Option<KeyValue>,
}

/// Server limits that the stateless validation depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// etcd `--max-txn-ops`: the most operations one level of a transaction
    /// may hold (compares, success ops and failure ops are counted separately
    /// and the largest counts; nested levels share what is left).
    pub txn_ops_max: usize,
}

/// etcd's `--max-txn-ops` default, in operations.
pub const TXN_OPS_MAX_DEFAULT: usize = 128;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            txn_ops_max: TXN_OPS_MAX_DEFAULT,
        }
    }
}

/// etcd `HashKVResponse` without its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashKv {
    /// CRC-32C over the `key` bucket as etcd's `HashByRev` computes it.
    pub hash: u32,
    /// The compact revision the hash was computed under; -1 before the first
    /// compaction (etcd's sentinel).
    pub compact_revision: i64,
    /// The revision the hash covers.
    pub hash_revision: i64,
}
