//! etcd's Lock and Election services, built as etcd builds them: server-side
//! recipes over the keyspace's own transactions, leases and watches.
//!
//! - A contender's key is `<name>/<lease id in hex>`, attached to its lease.
//! - The holder (or leader) is the key with the lowest create revision under
//!   the prefix. A waiter waits for the deletion of every key created before
//!   its own, then checks that its own key still exists: a lease that
//!   expired while waiting is never granted the lock.
//! - The returned key's create revision is the holder's fencing token.
//!
//! Every failure goes out as etcd sends it from these services: code
//! `Unknown` carrying the inner error's text.

use std::sync::Arc;

use engine::{
    Compare, CompareResult, CompareTarget, RangeRequest, RequestOp, ResponseOp, SortOrder,
    SortTarget,
};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::errors::{self, EtcdError};
use crate::pb::{v3electionpb as epb, v3lockpb as lpb};
use crate::services::Shared;
use crate::shard::{Revisioned, ShardError, ShardHandle};
use crate::watch::{CreateSpec, WatchIn, WatchOut};

fn untyped(e: ShardError) -> Status {
    convert::shard_error(&e).untyped().status()
}

fn untyped_etcd(e: EtcdError) -> Status {
    e.untyped().status()
}

fn txn_response(r: &Revisioned<engine::Applied>) -> &engine::TxnResponse {
    match &r.value {
        engine::Applied::Txn(t) => t,
        other => unreachable!("a txn applies as a txn, got {other:?}"),
    }
}

fn range_of(op: &ResponseOp) -> &engine::RangeResponse {
    match op {
        ResponseOp::Range(r) => r,
        other => unreachable!("expected a range response, got {other:?}"),
    }
}

/// The oldest (or newest) key under `prefix`, optionally created before a
/// revision: etcd's WithFirstCreate / WithLastCreate + WithMaxCreateRev.
fn creator_query(prefix: &[u8], newest: bool, max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: convert::prefix_end(prefix),
        limit: 1,
        sort_order: if newest {
            SortOrder::Descend
        } else {
            SortOrder::Ascend
        },
        sort_target: SortTarget::Create,
        max_create_revision,
        ..Default::default()
    }
}

/// Waits for the first change a watch of `spec` sees, or for its
/// cancellation by compaction (the caller then re-reads). The watch stream
/// is closed however the wait ends, the future being dropped included.
async fn next_change(shard: &ShardHandle, spec: CreateSpec) -> Result<(), ShardError> {
    struct Close<'a>(&'a ShardHandle, crate::watch::StreamId);
    impl Drop for Close<'_> {
        fn drop(&mut self) {
            self.0.watch_close(self.1);
        }
    }
    let (stream, mut rx) = shard.watch_open().await?;
    let _close = Close(shard, stream);
    shard.watch(stream, WatchIn::Create(spec)).await?;
    while let Some(out) = rx.recv().await {
        if matches!(out, WatchOut::Events { .. } | WatchOut::Canceled { .. }) {
            return Ok(());
        }
    }
    Err(ShardError::Stopped)
}

/// Waits until `key` is deleted at a revision after `rev`: with puts
/// filtered out, any event is the delete.
async fn wait_delete(shard: &ShardHandle, key: Vec<u8>, rev: i64) -> Result<(), ShardError> {
    let spec = CreateSpec {
        key,
        start_revision: rev + 1,
        no_put: true,
        ..Default::default()
    };
    next_change(shard, spec).await
}

/// etcd's waitDeletes: returns once no key under `prefix` was created at or
/// below `max_create_revision`.
async fn wait_deletes(
    shard: &ShardHandle,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<(), ShardError> {
    loop {
        let r = shard
            .range(creator_query(prefix, true, max_create_revision))
            .await?;
        let Some(kv) = r.value.kvs.first() else {
            return Ok(());
        };
        wait_delete(shard, kv.key.clone(), r.revision).await?;
    }
}

/// Waits until every contender under `prefix` created before `my_rev` is
/// gone, then checks that `key` itself still exists at `my_rev`: a lease
/// that expired while waiting never gets its turn. Returns the revision
/// and term the turn was confirmed at.
async fn wait_turn(
    shard: &ShardHandle,
    prefix: &[u8],
    key: &[u8],
    my_rev: i64,
) -> Result<Revisioned<()>, Status> {
    wait_deletes(shard, prefix, my_rev - 1)
        .await
        .map_err(untyped)?;
    let r = shard
        .range(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .await
        .map_err(untyped)?;
    match r.value.kvs.first() {
        Some(kv) if kv.create_revision == my_rev => Ok(Revisioned {
            value: (),
            revision: r.revision,
            raft_term: r.raft_term,
        }),
        _ => Err(untyped_etcd(errors::LOCK_SESSION_EXPIRED)),
    }
}

/// The contender key of a lease under `name`, as etcd's recipes name it.
fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut k = name.to_vec();
    k.push(b'/');
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    k
}

/// Creates (or finds) the contender key; returns its create revision and
/// whether it was found with another value.
async fn enter(
    shard: &ShardHandle,
    key: &[u8],
    value: &[u8],
    lease: i64,
) -> Result<(i64, Option<Vec<u8>>), ShardError> {
    let txn = engine::TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Create(0),
            key: key.to_vec(),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp::Put(engine::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })],
        failure: vec![RequestOp::Range(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })],
    };
    let r = shard.write(engine::Command::Txn(txn)).await?;
    let t = txn_response(&r);
    if t.succeeded {
        return Ok((r.revision, None));
    }
    let kv = range_of(&t.responses[0])
        .kvs
        .first()
        .cloned()
        .expect("the compare saw the key");
    Ok((kv.create_revision, Some(kv.value)))
}

#[derive(Clone)]
pub struct LockService {
    shared: Arc<Shared>,
}

impl LockService {
    pub fn new(shared: Arc<Shared>) -> Self {
        LockService { shared }
    }
}

#[tonic::async_trait]
impl lpb::lock_server::Lock for LockService {
    async fn lock(
        &self,
        request: Request<lpb::LockRequest>,
    ) -> Result<Response<lpb::LockResponse>, Status> {
        let req = request.into_inner();
        let shard = &self.shared.shard;
        let mut prefix = req.name.clone();
        prefix.push(b'/');
        let key = contender_key(&req.name, req.lease);
        let (my_rev, _) = enter(shard, &key, b"", req.lease).await.map_err(untyped)?;
        let r = match wait_turn(shard, &prefix, &key, my_rev).await {
            Ok(r) => r,
            Err(e) => {
                let _ = shard
                    .write(engine::Command::DeleteRange(delete(&key)))
                    .await;
                return Err(e);
            }
        };
        Ok(Response::new(lpb::LockResponse {
            header: self.shared.header(r.revision, r.raft_term),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<lpb::UnlockRequest>,
    ) -> Result<Response<lpb::UnlockResponse>, Status> {
        let key = request.into_inner().key;
        let r = self
            .shared
            .shard
            .write(engine::Command::DeleteRange(delete(&key)))
            .await
            .map_err(untyped)?;
        Ok(Response::new(lpb::UnlockResponse {
            header: self.shared.header(r.revision, r.raft_term),
        }))
    }
}

fn delete(key: &[u8]) -> engine::DeleteRangeRequest {
    engine::DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

#[derive(Clone)]
pub struct ElectionService {
    shared: Arc<Shared>,
}

impl ElectionService {
    pub fn new(shared: Arc<Shared>) -> Self {
        ElectionService { shared }
    }

    /// Replaces the leader's value if it still holds its key at `rev`.
    async fn proclaim_inner(
        &self,
        leader: &epb::LeaderKey,
        value: &[u8],
    ) -> Result<Revisioned<engine::Applied>, Status> {
        let txn = engine::TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Create(leader.rev),
                key: leader.key.clone(),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp::Put(engine::PutRequest {
                key: leader.key.clone(),
                value: value.to_vec(),
                lease: leader.lease,
                ..Default::default()
            })],
            failure: Vec::new(),
        };
        let r = self
            .shared
            .shard
            .write(engine::Command::Txn(txn))
            .await
            .map_err(untyped)?;
        if !txn_response(&r).succeeded {
            return Err(untyped_etcd(errors::ELECTION_NOT_LEADER));
        }
        Ok(r)
    }
}

fn election_prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

type LeaderStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<epb::LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl epb::election_server::Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<epb::CampaignRequest>,
    ) -> Result<Response<epb::CampaignResponse>, Status> {
        let req = request.into_inner();
        let shard = &self.shared.shard;
        let key = contender_key(&req.name, req.lease);
        let (rev, existing) = enter(shard, &key, &req.value, req.lease)
            .await
            .map_err(untyped)?;
        let leader = epb::LeaderKey {
            name: req.name.clone(),
            key: key.clone(),
            rev,
            lease: req.lease,
        };
        if existing.is_some_and(|v| v != req.value) {
            self.proclaim_inner(&leader, &req.value).await?;
        }
        let r = wait_turn(shard, &election_prefix(&req.name), &key, rev).await?;
        Ok(Response::new(epb::CampaignResponse {
            header: self.shared.header(r.revision, r.raft_term),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<epb::ProclaimRequest>,
    ) -> Result<Response<epb::ProclaimResponse>, Status> {
        let req = request.into_inner();
        let Some(leader) = req.leader else {
            return Err(untyped_etcd(errors::ELECTION_MISSING_LEADER_KEY));
        };
        let r = self.proclaim_inner(&leader, &req.value).await?;
        Ok(Response::new(epb::ProclaimResponse {
            header: self.shared.header(r.revision, r.raft_term),
        }))
    }

    async fn leader(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<epb::LeaderResponse>, Status> {
        let name = request.into_inner().name;
        let q = creator_query(&election_prefix(&name), false, 0);
        let r = self.shared.shard.range(q).await.map_err(untyped)?;
        let Some(kv) = r.value.kvs.first().cloned() else {
            return Err(untyped_etcd(errors::ELECTION_NO_LEADER));
        };
        Ok(Response::new(epb::LeaderResponse {
            header: self.shared.header(r.revision, r.raft_term),
            kv: Some(convert::kv_to_pb(kv)),
        }))
    }

    type ObserveStream = LeaderStream;

    async fn observe(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let prefix = election_prefix(&request.into_inner().name);
        let shared = self.shared.clone();
        // State: the last leader (key, mod revision) sent.
        let out = futures_util::stream::unfold(
            (shared, prefix, None::<(Vec<u8>, i64)>),
            |(shared, prefix, last)| async move {
                loop {
                    let q = creator_query(&prefix, false, 0);
                    let r = match shared.shard.range(q).await {
                        Ok(r) => r,
                        Err(e) => return Some((Err(untyped(e)), (shared, prefix, last))),
                    };
                    if let Some(kv) = r.value.kvs.first() {
                        let now = (kv.key.clone(), kv.mod_revision);
                        if last.as_ref() != Some(&now) {
                            let resp = epb::LeaderResponse {
                                header: shared.header(r.revision, r.raft_term),
                                kv: Some(convert::kv_to_pb(kv.clone())),
                            };
                            return Some((Ok(resp), (shared, prefix, Some(now))));
                        }
                    }
                    // Wait for the next change under the prefix.
                    if let Err(e) = wait_change(&shared.shard, &prefix, r.revision).await {
                        return Some((Err(untyped(e)), (shared, prefix, last)));
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(out)))
    }

    async fn resign(
        &self,
        request: Request<epb::ResignRequest>,
    ) -> Result<Response<epb::ResignResponse>, Status> {
        let Some(leader) = request.into_inner().leader else {
            return Err(untyped_etcd(errors::ELECTION_MISSING_LEADER_KEY));
        };
        let txn = engine::TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Create(leader.rev),
                key: leader.key.clone(),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp::DeleteRange(delete(&leader.key))],
            failure: Vec::new(),
        };
        let r = self
            .shared
            .shard
            .write(engine::Command::Txn(txn))
            .await
            .map_err(untyped)?;
        Ok(Response::new(epb::ResignResponse {
            header: self.shared.header(r.revision, r.raft_term),
        }))
    }
}

/// Waits for any change under `prefix` after revision `rev`.
async fn wait_change(shard: &ShardHandle, prefix: &[u8], rev: i64) -> Result<(), ShardError> {
    let spec = CreateSpec {
        key: prefix.to_vec(),
        range_end: convert::prefix_end(prefix),
        start_revision: rev + 1,
        ..Default::default()
    };
    next_change(shard, spec).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_etcds() {
        use crate::convert::prefix_end;
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn contender_keys_are_name_slash_hex_lease() {
        assert_eq!(
            contender_key(b"lk", 0x694d77f1d2a5c70a),
            b"lk/694d77f1d2a5c70a".to_vec()
        );
    }
}
