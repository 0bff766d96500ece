//! Conversions between the protobuf messages and the engine's own types.
//! Only `net` knows protobuf: the engine never sees a generated type.

use crate::errors::{self, EtcdError};
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;

/// etcd has no error for a compare whose result or target is outside the
/// enum; kvik refuses it explicitly rather than guessing.
pub const INVALID_COMPARE: EtcdError = EtcdError::new(
    tonic::Code::InvalidArgument,
    "etcdserver: invalid compare result or target",
);

pub fn kv_to_pb(kv: engine::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// Converts a range already checked by [`check_range`].
pub fn range_from_pb(r: pb::RangeRequest) -> engine::RangeRequest {
    let sort_order = engine::SortOrder::try_from(r.sort_order).expect("sort order checked");
    let sort_target = engine::SortTarget::try_from(r.sort_target).expect("sort target checked");
    engine::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn put_from_pb(r: pb::PutRequest) -> engine::PutRequest {
    engine::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete_from_pb(r: pb::DeleteRangeRequest) -> engine::DeleteRangeRequest {
    engine::DeleteRangeRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

/// etcd's compare, including values outside the enums: an unknown result
/// holds whatever the comparison (except VALUE on no key at all), and an
/// unknown target compares as equal. Such compares become an equivalent
/// typed compare, or none when they always hold.
fn compare_from_pb(c: pb::Compare) -> Option<engine::Compare> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match R::try_from(c.result) {
        Ok(R::Equal) => Some(engine::CompareResult::Equal),
        Ok(R::Greater) => Some(engine::CompareResult::Greater),
        Ok(R::Less) => Some(engine::CompareResult::Less),
        Ok(R::NotEqual) => Some(engine::CompareResult::NotEqual),
        Err(_) => None,
    };
    let target = T::try_from(c.target).ok();
    let (key, range_end) = (c.key, c.range_end);
    let Some(result) = result else {
        // Always true, except that VALUE fails when no key exists: that is
        // "some key in the range exists".
        return (target == Some(T::Value)).then_some(engine::Compare {
            result: engine::CompareResult::NotEqual,
            target: engine::CompareTarget::Create(0),
            key,
            range_end,
        });
    };
    // Like Go's getters, a union holding another variant reads as zero.
    let target = match target {
        Some(T::Version) => engine::CompareTarget::Version(match c.target_union {
            Some(U::Version(v)) => v,
            _ => 0,
        }),
        Some(T::Create) => engine::CompareTarget::Create(match c.target_union {
            Some(U::CreateRevision(v)) => v,
            _ => 0,
        }),
        Some(T::Mod) => engine::CompareTarget::Mod(match c.target_union {
            Some(U::ModRevision(v)) => v,
            _ => 0,
        }),
        Some(T::Value) => engine::CompareTarget::Value(match c.target_union {
            Some(U::Value(v)) => v,
            _ => Vec::new(),
        }),
        Some(T::Lease) => engine::CompareTarget::Lease(match c.target_union {
            Some(U::Lease(v)) => v,
            _ => 0,
        }),
        None => {
            // Compared as equal (0), then the result decides once for all.
            if result == engine::CompareResult::Equal {
                return None;
            }
            // Always false: no key has version -1.
            return Some(engine::Compare {
                result: engine::CompareResult::Equal,
                target: engine::CompareTarget::Version(-1),
                key,
                range_end,
            });
        }
    };
    Some(engine::Compare {
        result,
        target,
        key,
        range_end,
    })
}

fn op_from_pb(op: pb::RequestOp) -> engine::RequestOp {
    use pb::request_op::Request as Q;
    match op.request {
        Some(Q::RequestRange(r)) => engine::RequestOp::Range(range_from_pb(r)),
        Some(Q::RequestPut(r)) => engine::RequestOp::Put(put_from_pb(r)),
        Some(Q::RequestDeleteRange(r)) => engine::RequestOp::DeleteRange(delete_from_pb(r)),
        Some(Q::RequestTxn(r)) => engine::RequestOp::Txn(txn_from_pb(r)),
        None => unreachable!("empty ops are refused by check_txn"),
    }
}

/// Converts a transaction already checked by [`check_txn`].
pub fn txn_from_pb(t: pb::TxnRequest) -> engine::TxnRequest {
    engine::TxnRequest {
        compare: t.compare.into_iter().filter_map(compare_from_pb).collect(),
        success: t.success.into_iter().map(op_from_pb).collect(),
        failure: t.failure.into_iter().map(op_from_pb).collect(),
    }
}

/// etcd's checkRangeRequest, in its order: key, sort order, sort target.
pub fn check_range(r: &pb::RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(errors::EMPTY_KEY);
    }
    if engine::SortOrder::try_from(r.sort_order).is_err()
        || engine::SortTarget::try_from(r.sort_target).is_err()
    {
        return Err(errors::INVALID_SORT_OPTION);
    }
    Ok(())
}

/// etcd's checkTxnRequest, in its order: the op count of this level, every
/// compare's key, then each op (success, then failure) as checkRequestOp
/// does; an empty op is "key not found". Duplicate keys are checked later,
/// as in etcd, by the engine.
pub fn check_txn(t: &pb::TxnRequest, txn_ops_max: usize) -> Result<(), EtcdError> {
    let ops = t.compare.len().max(t.success.len()).max(t.failure.len());
    if ops > txn_ops_max {
        return Err(errors::TOO_MANY_OPS);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(errors::EMPTY_KEY);
    }
    for op in t.success.iter().chain(t.failure.iter()) {
        use pb::request_op::Request as Q;
        match &op.request {
            Some(Q::RequestRange(r)) => check_range(r)?,
            Some(Q::RequestPut(p)) => {
                engine::validate_put(&put_from_pb(p.clone())).map_err(|e| engine_error(&e))?;
            }
            Some(Q::RequestDeleteRange(d)) => {
                if d.key.is_empty() {
                    return Err(errors::EMPTY_KEY);
                }
            }
            // A nested level gets what this level left of the budget.
            Some(Q::RequestTxn(inner)) => check_txn(inner, txn_ops_max - ops)?,
            None => return Err(errors::KEY_NOT_FOUND),
        }
    }
    Ok(())
}

/// A header holding only a revision, as etcd puts on nested txn responses.
fn nested_header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision,
        ..Default::default()
    })
}

pub fn range_to_pb(
    r: engine::RangeResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::RangeResponse {
    pb::RangeResponse {
        header,
        kvs: r.kvs.into_iter().map(kv_to_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_to_pb(r: engine::PutResponse, header: Option<pb::ResponseHeader>) -> pb::PutResponse {
    pb::PutResponse {
        header,
        prev_kv: r.prev_kv.map(kv_to_pb),
    }
}

pub fn delete_to_pb(
    r: engine::DeleteRangeResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header,
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv_to_pb).collect(),
    }
}

/// Nested responses carry a header holding only the revision etcd gives
/// each of them (a read before the first write sees the old revision).
pub fn txn_to_pb(r: engine::TxnResponse, header: Option<pb::ResponseHeader>) -> pb::TxnResponse {
    use pb::response_op::Response as A;
    let responses = r
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                engine::ResponseOp::Range(r) => {
                    let h = nested_header(r.header_revision);
                    A::ResponseRange(range_to_pb(r, h))
                }
                engine::ResponseOp::Put(r) => {
                    let h = nested_header(r.header_revision);
                    A::ResponsePut(put_to_pb(r, h))
                }
                engine::ResponseOp::DeleteRange(r) => {
                    let h = nested_header(r.header_revision);
                    A::ResponseDeleteRange(delete_to_pb(r, h))
                }
                engine::ResponseOp::Txn(r) => {
                    let h = nested_header(r.header_revision);
                    A::ResponseTxn(txn_to_pb(r, h))
                }
            }),
        })
        .collect();
    pb::TxnResponse {
        header,
        succeeded: r.succeeded,
        responses,
    }
}

/// The typed engine error as etcd's gRPC status.
pub fn engine_error(e: &engine::Error) -> EtcdError {
    use engine::Error as E;
    match e {
        E::EmptyKey => errors::EMPTY_KEY,
        E::ValueProvided => errors::VALUE_PROVIDED,
        E::LeaseProvided => errors::LEASE_PROVIDED,
        E::KeyNotFound => errors::KEY_NOT_FOUND,
        E::TooManyOps => errors::TOO_MANY_OPS,
        E::DuplicateKey => errors::DUPLICATE_KEY,
        E::InvalidSortOption => errors::INVALID_SORT_OPTION,
        E::Compacted => errors::COMPACTED,
        E::FutureRev => errors::FUTURE_REV,
        E::LeaseNotFound => errors::LEASE_NOT_FOUND,
        E::LeaseExists => errors::LEASE_EXIST,
        E::LeaseTtlTooLarge => errors::LEASE_TTL_TOO_LARGE,
        E::Corrupt => errors::CORRUPT,
    }
}

/// etcd serves a transaction made only of reads without a log entry.
pub fn is_read_only(t: &engine::TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).all(|op| match op {
        engine::RequestOp::Range(_) => true,
        engine::RequestOp::Txn(t) => is_read_only(t),
        _ => false,
    })
}

/// A shard's failure as etcd's error.
pub fn shard_error(e: &crate::shard::ShardError) -> EtcdError {
    use crate::shard::ShardError;
    match e {
        ShardError::Engine(e) => engine_error(e),
        ShardError::Stopped => errors::STOPPED,
        ShardError::TooLarge => errors::REQUEST_TOO_LARGE,
        ShardError::NoLeader => errors::NO_LEADER,
        ShardError::NotLeader => errors::NOT_LEADER,
        ShardError::Timeout => errors::TIMEOUT,
        ShardError::NoLeaderDeadline => errors::CONTEXT_DEADLINE_EXCEEDED,
        ShardError::TooManyRequests => errors::TOO_MANY_REQUESTS,
        ShardError::NotForLearner => errors::NOT_SUPPORTED_FOR_LEARNER,
        ShardError::BadTransferee => errors::BAD_LEADER_TRANSFEREE,
        ShardError::TransferTimeout => errors::TIMEOUT_LEADER_TRANSFER,
        ShardError::Membership(e) => membership_error(e),
    }
}

/// A refused membership change as etcd's gRPC status.
pub fn membership_error(e: &crate::membership::MembershipError) -> EtcdError {
    use crate::membership::MembershipError as M;
    match e {
        M::IdRemoved | M::IdNotFound => errors::MEMBER_NOT_FOUND,
        M::IdExists => errors::MEMBER_EXIST,
        M::PeerUrlExists => errors::PEER_URL_EXIST,
        M::MemberNotLearner => errors::MEMBER_NOT_LEARNER,
        M::LearnerNotReady => errors::LEARNER_NOT_READY,
        M::TooManyLearners => errors::TOO_MANY_LEARNERS,
        M::NotEnoughStarted => errors::MEMBER_NOT_ENOUGH_STARTED,
        M::Unhealthy => errors::UNHEALTHY,
        M::BadUrls(_) | M::DuplicateId(_) | M::ZeroId | M::AttributesTooLarge => {
            errors::MEMBER_BAD_URLS
        }
    }
}

/// The first key after every key starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`); `"\0"` (every key) when no such key exists.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
