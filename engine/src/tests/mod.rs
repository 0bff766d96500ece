//! In-crate tests: unit tests of the etcd rules, fixtures recorded from a live
//! etcd 3.7.2, the codec, and the model-based randomized comparison.

mod alarms;
mod codec;
mod etcd_diff;
mod etcd_fixtures;
mod leases_events;
mod model;
mod persist;
mod rules;
mod validation;

use crate::*;

pub(crate) fn put(k: &str, v: &str) -> Command {
    Command::Put(PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
}

pub(crate) fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

pub(crate) fn del_req(k: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: k.into(),
        range_end: end.into(),
        prev_kv: false,
    }
}

pub(crate) fn del(k: &str, end: &str) -> Command {
    Command::DeleteRange(del_req(k, end))
}

pub(crate) fn get_req(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

pub(crate) fn cmp(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare {
        result,
        target,
        key: key.into(),
        range_end: Vec::new(),
    }
}

pub(crate) fn txn(
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

pub(crate) fn compact(rev: i64) -> Command {
    Command::Compact(CompactionRequest {
        revision: rev,
        physical: false,
    })
}

/// Grants lease `id` (TTL 100 s) through the log command.
pub(crate) fn grant(m: &mut Mvcc, id: i64) {
    ok(m, Command::LeaseGrant { id, ttl_secs: 100 });
}

/// Applies and unwraps.
pub(crate) fn ok(m: &mut Mvcc, c: Command) -> Applied {
    let r = m.apply(&c).unwrap_or_else(|e| panic!("{c:?} failed: {e}"));
    m.check_invariants().unwrap();
    r
}

pub(crate) fn get(m: &Mvcc, k: &str) -> Option<KeyValue> {
    m.range(&get_req(k, "")).unwrap().kvs.into_iter().next()
}

pub(crate) fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

pub(crate) fn txn_resp(a: Applied) -> TxnResponse {
    match a {
        Applied::Txn(t) => t,
        other => panic!("not a txn response: {other:?}"),
    }
}
