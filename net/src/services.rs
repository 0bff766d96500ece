//! etcd's gRPC services over the shard. Handlers are `Send` futures: they
//! validate and convert on the connection's core, then hand engine requests
//! to the shard through its channel and convert the answer back.

use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::datadir::Identity;
use crate::errors::{self, EtcdError};
use crate::pb::etcdserverpb as pb;
use crate::shard::{Revisioned, ShardError, ShardHandle};

/// The etcd API version kvik reports in Status. Kubernetes enables its
/// consistent reads from 3.5.13; kvik serves the 3.6 API.
pub const ETCD_API_VERSION: &str = "3.6.0";
/// The size etcd checks against `--max-request-bytes`: its
/// InternalRaftRequest, `{header (100): {ID (1): request id}, op (4..7):
/// request}`. Request IDs put the member ID's low 16 bits on top of a
/// millisecond clock, so their varint length follows from the member ID.
pub fn proposal_len(request_len: usize, member_id: u64) -> usize {
    let request_id = ((member_id & 0xffff) << 48) | (1 << 47);
    let id_len = varint_len(request_id);
    let header_len = 1 + id_len;
    (2 + varint_len(header_len as u64) + header_len)
        + (1 + varint_len(request_len as u64) + request_len)
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// State every core's services share.
pub struct Shared {
    pub shard: ShardHandle,
    pub identity: Identity,
    pub name: String,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    /// etcd's minimum lease TTL: ceil(1.5 × election timeout).
    pub lease_ttl_min_secs: i64,
    /// `--election-timeout`: how often a stream that requires a leader
    /// checks for one.
    pub election_timeout: std::time::Duration,
}

impl Shared {
    pub fn header(&self, revision: i64, raft_term: u64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision,
            raft_term,
        })
    }

    pub fn header_of<T>(&self, r: &Revisioned<T>) -> Option<pb::ResponseHeader> {
        self.header(r.revision, r.raft_term)
    }

    /// etcd refuses a proposal whose encoded request exceeds
    /// `--max-request-bytes`. What it measures is the request wrapped in its
    /// log envelope: a header holding the request ID (field 100) and the
    /// request as a one-byte-tag field.
    fn check_size(&self, encoded_len: usize) -> Result<(), Status> {
        if proposal_len(encoded_len, self.identity.member_id) > self.max_request_bytes {
            return Err(errors::REQUEST_TOO_LARGE.status());
        }
        Ok(())
    }

    /// With a NOSPACE alarm raised, etcd refuses writes that add data
    /// (puts, transactions with a put, lease grants) until it is disarmed.
    fn check_space(&self) -> Result<(), Status> {
        if self.shard.nospace() {
            return Err(errors::NO_SPACE.status());
        }
        Ok(())
    }

    fn limits(&self) -> engine::Limits {
        engine::Limits {
            txn_ops_max: self.max_txn_ops,
        }
    }
}

fn status_of(e: ShardError) -> Status {
    convert::shard_error(&e).status()
}

fn engine_status(e: engine::Error) -> Status {
    convert::engine_error(&e).status()
}

fn etcd_status(e: EtcdError) -> Status {
    e.status()
}

#[derive(Clone)]
pub struct KvService {
    shared: Arc<Shared>,
}

impl KvService {
    pub fn new(shared: Arc<Shared>) -> Self {
        KvService { shared }
    }

    async fn range_inner(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        convert::check_range(&req).map_err(etcd_status)?;
        let req = convert::range_from_pb(req);
        engine::validate_range(&req).map_err(engine_status)?;
        let r = self.shared.shard.range(req).await.map_err(status_of)?;
        let header = self.shared.header_of(&r);
        Ok(convert::range_to_pb(r.value, header))
    }
}

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        self.range_inner(request.into_inner())
            .await
            .map(Response::new)
    }

    type RangeStreamStream = BoxStream<pb::RangeStreamResponse>;

    async fn range_stream(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        // The whole answer as a single chunk: a valid stream of one.
        let resp = self.range_inner(request.into_inner()).await?;
        let chunk = pb::RangeStreamResponse {
            range_response: Some(resp),
        };
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(chunk)))))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let req = request.into_inner();
        let encoded_len = req.encoded_len();
        let req = convert::put_from_pb(req);
        engine::validate_put(&req).map_err(engine_status)?;
        self.shared.check_size(encoded_len)?;
        self.shared.check_space()?;
        let r = self
            .shared
            .shard
            .write(engine::Command::Put(req))
            .await
            .map_err(status_of)?;
        let header = self.shared.header_of(&r);
        match r.value {
            engine::Applied::Put(p) => Ok(Response::new(convert::put_to_pb(p, header))),
            other => unreachable!("a put applies as a put, got {other:?}"),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let req = request.into_inner();
        let encoded_len = req.encoded_len();
        let req = convert::delete_from_pb(req);
        engine::validate_delete(&req).map_err(engine_status)?;
        self.shared.check_size(encoded_len)?;
        let r = self
            .shared
            .shard
            .write(engine::Command::DeleteRange(req))
            .await
            .map_err(status_of)?;
        let header = self.shared.header_of(&r);
        match r.value {
            engine::Applied::DeleteRange(d) => Ok(Response::new(convert::delete_to_pb(d, header))),
            other => unreachable!("a delete applies as a delete, got {other:?}"),
        }
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let req = request.into_inner();
        let encoded_len = req.encoded_len();
        convert::check_txn(&req, self.shared.max_txn_ops).map_err(etcd_status)?;
        let req = convert::txn_from_pb(req);
        engine::validate_txn(&req, &self.shared.limits()).map_err(engine_status)?;
        let r = if convert::is_read_only(&req) {
            // Read-only transactions take no revision and no log entry, so
            // etcd never applies its proposal size limit to them.
            self.shared.shard.read_txn(req).await.map_err(status_of)?
        } else {
            self.shared.check_size(encoded_len)?;
            if has_put(&req) {
                self.shared.check_space()?;
            }
            self.shared
                .shard
                .write(engine::Command::Txn(req))
                .await
                .map_err(status_of)?
        };
        let header = self.shared.header_of(&r);
        match r.value {
            engine::Applied::Txn(t) => Ok(Response::new(convert::txn_to_pb(t, header))),
            other => unreachable!("a txn applies as a txn, got {other:?}"),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let req = request.into_inner();
        let cmd = engine::Command::Compact(engine::CompactionRequest {
            revision: req.revision,
            physical: req.physical,
        });
        let r = self.shared.shard.write(cmd).await.map_err(status_of)?;
        Ok(Response::new(pb::CompactionResponse {
            header: self.shared.header_of(&r),
        }))
    }
}

#[derive(Clone)]
pub struct MaintenanceService {
    shared: Arc<Shared>,
}

impl MaintenanceService {
    pub fn new(shared: Arc<Shared>) -> Self {
        MaintenanceService { shared }
    }
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let req = request.into_inner();
        let to_pb = |list: Vec<engine::AlarmMember>| -> Vec<pb::AlarmMember> {
            list.into_iter()
                .map(|a| pb::AlarmMember {
                    member_id: a.member_id,
                    alarm: a.alarm,
                })
                .collect()
        };
        // etcd's alarm store: GET lists every member's alarms of a type (all
        // types for NONE); ACTIVATE and DEACTIVATE go through the log and act
        // on exactly the (member, type) given.
        let (r, alarms) = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => {
                let r = self.shared.shard.alarms().await.map_err(status_of)?;
                let list = r
                    .value
                    .iter()
                    .copied()
                    .filter(|a| req.alarm == 0 || a.alarm == req.alarm)
                    .collect();
                (
                    Revisioned {
                        value: (),
                        revision: r.revision,
                        raft_term: r.raft_term,
                    },
                    to_pb(list),
                )
            }
            Ok(action) => {
                let cmd = engine::Command::Alarm {
                    activate: action == AlarmAction::Activate,
                    member_id: req.member_id,
                    alarm: req.alarm,
                };
                let r = self.shared.shard.write(cmd).await.map_err(status_of)?;
                let engine::Applied::Alarm(list) = r.value else {
                    unreachable!("an alarm applies as an alarm");
                };
                (
                    Revisioned {
                        value: (),
                        revision: r.revision,
                        raft_term: r.raft_term,
                    },
                    to_pb(list),
                )
            }
            Err(_) => return Err(Status::invalid_argument("etcdserver: unknown alarm action")),
        };
        Ok(Response::new(pb::AlarmResponse {
            header: self.shared.header_of(&r),
            alarms,
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.shared.shard.status().await.map_err(status_of)?;
        let errors = s
            .alarms
            .iter()
            .map(|a| format!("memberID:{} alarm:{}", a.member_id, alarm_name(a.alarm)))
            .collect();
        Ok(Response::new(pb::StatusResponse {
            header: self.shared.header(s.revision, s.raft_term),
            version: ETCD_API_VERSION.to_string(),
            db_size: s.db_size_bytes as i64,
            leader: s.leader,
            raft_index: s.raft_index,
            raft_term: s.raft_term,
            raft_applied_index: s.applied_index,
            errors,
            db_size_in_use: s.db_size_in_use_bytes as i64,
            is_learner: s.is_learner,
            storage_version: ETCD_API_VERSION.to_string(),
            db_size_quota: 0,
            downgrade_info: Some(pb::DowngradeInfo {
                enabled: false,
                target_version: String::new(),
            }),
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        // Online: the next checkpoint rewrites every segment holding dead
        // bytes while reads and writes go on. etcd's answer carries no
        // header.
        self.shared.shard.defragment().await.map_err(status_of)?;
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let r = self.shared.shard.hash().await.map_err(status_of)?;
        Ok(Response::new(pb::HashResponse {
            header: self.shared.header_of(&r),
            hash: r.value,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let r = self
            .shared
            .shard
            .hash_kv(request.into_inner().revision)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.shared.header_of(&r),
            hash: r.value.hash,
            compact_revision: r.value.compact_revision,
            hash_revision: r.value.hash_revision,
        }))
    }

    type SnapshotStream = BoxStream<pb::SnapshotResponse>;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented("kvik: snapshot is not supported yet"))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        self.shared
            .shard
            .move_leader(target)
            .await
            .map_err(status_of)?;
        // etcd answers MoveLeader with an empty response, no header.
        Ok(Response::new(pb::MoveLeaderResponse { header: None }))
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(errors::INVALID_DOWNGRADE_TARGET_VERSION.status())
    }
}

/// Whether a transaction may write a put, in either branch, at any depth:
/// etcd's quota cost of a transaction.
fn has_put(t: &engine::TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).any(|op| match op {
        engine::RequestOp::Put(_) => true,
        engine::RequestOp::Txn(t) => has_put(t),
        _ => false,
    })
}

fn alarm_name(a: i32) -> &'static str {
    match pb::AlarmType::try_from(a) {
        Ok(pb::AlarmType::Nospace) => "NOSPACE",
        Ok(pb::AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}

#[derive(Clone)]
pub struct ClusterService {
    shared: Arc<Shared>,
}

impl ClusterService {
    pub fn new(shared: Arc<Shared>) -> Self {
        ClusterService { shared }
    }

    async fn change(
        &self,
        op: crate::shard::MemberOp,
    ) -> Result<Revisioned<crate::shard::MemberChanged>, Status> {
        self.shared.shard.member_change(op).await.map_err(status_of)
    }
}

fn member_to_pb(m: &crate::membership::Member) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

fn members_to_pb(ms: &[crate::membership::Member]) -> Vec<pb::Member> {
    ms.iter().map(member_to_pb).collect()
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let r = r.into_inner();
        let now_unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let c = self
            .change(crate::shard::MemberOp::Add {
                peer_urls: r.peer_ur_ls,
                is_learner: r.is_learner,
                now_unix_secs,
            })
            .await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: self.shared.header(0, c.raft_term),
            member: Some(member_to_pb(&c.value.member)),
            members: members_to_pb(&c.value.members),
        }))
    }

    async fn member_remove(
        &self,
        r: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let c = self
            .change(crate::shard::MemberOp::Remove {
                id: r.into_inner().id,
            })
            .await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.shared.header(0, c.raft_term),
            members: members_to_pb(&c.value.members),
        }))
    }

    async fn member_update(
        &self,
        r: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let r = r.into_inner();
        let c = self
            .change(crate::shard::MemberOp::Update {
                id: r.id,
                peer_urls: r.peer_ur_ls,
            })
            .await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: self.shared.header(0, c.raft_term),
            members: members_to_pb(&c.value.members),
        }))
    }

    async fn member_list(
        &self,
        r: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let linearizable = r.into_inner().linearizable;
        let v = self
            .shared
            .shard
            .members(linearizable)
            .await
            .map_err(status_of)?;
        // etcd's Cluster service headers carry no revision.
        Ok(Response::new(pb::MemberListResponse {
            header: self.shared.header(0, v.raft_term),
            members: members_to_pb(&v.value.members),
        }))
    }

    async fn member_promote(
        &self,
        r: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let c = self
            .change(crate::shard::MemberOp::Promote {
                id: r.into_inner().id,
            })
            .await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: self.shared.header(0, c.raft_term),
            members: members_to_pb(&c.value.members),
        }))
    }
}

#[derive(Clone)]
pub struct WatchService {
    shared: Arc<Shared>,
}

impl WatchService {
    pub fn new(shared: Arc<Shared>) -> Self {
        WatchService { shared }
    }
}

fn create_spec(c: pb::WatchCreateRequest) -> crate::watch::CreateSpec {
    use pb::watch_create_request::FilterType;
    crate::watch::CreateSpec {
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        // etcd reads an empty key as "\0", the smallest key.
        key: if c.key.is_empty() { vec![0] } else { c.key },
        range_end: c.range_end,
        start_revision: c.start_revision,
        progress_notify: c.progress_notify,
        prev_kv: c.prev_kv,
        watch_id: c.watch_id,
        fragment: c.fragment,
    }
}

fn event_to_pb(e: &engine::Event, with_prev_kv: bool) -> crate::pb::mvccpb::Event {
    crate::pb::mvccpb::Event {
        r#type: match e.kind {
            engine::EventKind::Put => crate::pb::mvccpb::event::EventType::Put as i32,
            engine::EventKind::Delete => crate::pb::mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(convert::kv_to_pb(e.kv.clone())),
        prev_kv: if with_prev_kv {
            e.prev_kv.clone().map(convert::kv_to_pb)
        } else {
            None
        },
    }
}

/// One registry message as etcd's responses: several when a fragmenting
/// watcher's batch is larger than `--max-request-bytes`.
fn watch_out_to_pb(shared: &Shared, out: crate::watch::WatchOut) -> Vec<pb::WatchResponse> {
    use crate::watch::WatchOut;
    let header = |revision| shared.header(revision, shared.shard.raft_term());
    match out {
        WatchOut::Created {
            watch_id,
            revision,
            cancel_reason,
        } => vec![pb::WatchResponse {
            header: header(revision),
            watch_id,
            created: true,
            canceled: cancel_reason.is_some(),
            cancel_reason: cancel_reason.unwrap_or_default().to_string(),
            ..Default::default()
        }],
        WatchOut::Canceled {
            watch_id,
            revision,
            compact_revision,
        } => vec![pb::WatchResponse {
            header: header(revision),
            watch_id,
            canceled: true,
            compact_revision,
            ..Default::default()
        }],
        WatchOut::Progress { watch_id, revision } => {
            vec![pb::WatchResponse {
                header: header(revision),
                watch_id,
                ..Default::default()
            }]
        }
        WatchOut::Events {
            watch_id,
            revision,
            events,
            prev_kv,
            fragment,
        } => {
            let events: Vec<_> = events.iter().map(|e| event_to_pb(e, prev_kv)).collect();
            let whole = pb::WatchResponse {
                header: header(revision),
                watch_id,
                events,
                ..Default::default()
            };
            // etcd's watch server allows --max-request-bytes plus gRPC's
            // overhead per response.
            let limit = shared.max_request_bytes + crate::server::GRPC_OVERHEAD_BYTES;
            if !fragment || whole.encoded_len() <= limit {
                return vec![whole];
            }
            // etcd's fragmentation: fill each response up to the limit (at
            // least one event each); every one but the last is marked.
            let mut out = Vec::new();
            let mut cur = pb::WatchResponse {
                header: whole.header,
                watch_id,
                ..Default::default()
            };
            for e in whole.events {
                if !cur.events.is_empty()
                    && cur.encoded_len() + e.encoded_len() > shared.max_request_bytes
                {
                    let next = pb::WatchResponse {
                        header: cur.header,
                        watch_id,
                        ..Default::default()
                    };
                    out.push(std::mem::replace(&mut cur, next));
                }
                cur.events.push(e);
            }
            out.push(cur);
            let n = out.len();
            for (i, r) in out.iter_mut().enumerate() {
                r.fragment = i + 1 < n;
            }
            out
        }
    }
}

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = BoxStream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<tonic::Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use futures_util::StreamExt;
        let mut inbound = request.into_inner();
        let (stream_id, rx) = self.shared.shard.watch_open().await.map_err(status_of)?;
        let shard = self.shared.shard.clone();
        // Requests flow to the shard from a task of this core; it closes the
        // stream's watchers when the client stops sending or goes away.
        compio::runtime::spawn(async move {
            use pb::watch_request::RequestUnion as U;
            while let Ok(Some(msg)) = inbound.message().await {
                let req = match msg.request_union {
                    Some(U::CreateRequest(c)) => crate::watch::WatchIn::Create(create_spec(c)),
                    Some(U::CancelRequest(c)) => crate::watch::WatchIn::Cancel(c.watch_id),
                    Some(U::ProgressRequest(_)) => crate::watch::WatchIn::Progress,
                    None => continue,
                };
                if shard.watch(stream_id, req).await.is_err() {
                    break;
                }
            }
            shard.watch_close(stream_id);
        })
        .detach();
        let shared = self.shared.clone();
        let out = tokio_stream::wrappers::ReceiverStream::new(rx).flat_map(move |o| {
            futures_util::stream::iter(watch_out_to_pb(&shared, o).into_iter().map(Ok))
        });
        Ok(Response::new(Box::pin(out)))
    }
}

#[derive(Clone)]
pub struct LeaseService {
    shared: Arc<Shared>,
}

impl LeaseService {
    pub fn new(shared: Arc<Shared>) -> Self {
        LeaseService { shared }
    }
}

/// A server-chosen lease ID: positive, and random like etcd's.
fn new_lease_id() -> i64 {
    loop {
        let id = (rand::random::<u64>() >> 1) as i64;
        if id != 0 {
            return id;
        }
    }
}

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = request.into_inner();
        if req.ttl > engine::LEASE_TTL_MAX_SECS {
            return Err(errors::LEASE_TTL_TOO_LARGE.status());
        }
        self.shared.check_space()?;
        let ttl_secs = req.ttl.max(self.shared.lease_ttl_min_secs);
        let id = if req.id == 0 { new_lease_id() } else { req.id };
        let r = self
            .shared
            .shard
            .write(engine::Command::LeaseGrant { id, ttl_secs })
            .await
            .map_err(status_of)?;
        let header = self.shared.header_of(&r);
        match r.value {
            engine::Applied::LeaseGrant { id, ttl_secs } => {
                Ok(Response::new(pb::LeaseGrantResponse {
                    header,
                    id,
                    ttl: ttl_secs,
                    error: String::new(),
                }))
            }
            other => unreachable!("a grant applies as a grant, got {other:?}"),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        let r = self
            .shared
            .shard
            .write(engine::Command::LeaseRevoke { id })
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: self.shared.header_of(&r),
        }))
    }

    type LeaseKeepAliveStream = BoxStream<pb::LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<tonic::Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let shared = self.shared.clone();
        let inbound = request.into_inner();
        let out =
            futures_util::stream::unfold((inbound, shared), |(mut inbound, shared)| async move {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => return None,
                    Err(e) => return Some((Err(e), (inbound, shared))),
                };
                let reply = match shared
                    .shard
                    .lease_keep_alive(msg.id, std::time::Instant::now())
                    .await
                {
                    Ok(r) => Ok(pb::LeaseKeepAliveResponse {
                        header: shared.header_of(&r),
                        id: msg.id,
                        ttl: r.value,
                    }),
                    Err(e) => Err(status_of(e)),
                };
                Some((reply, (inbound, shared)))
            });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let r = self
            .shared
            .shard
            .lease_time_to_live(req.id, req.keys, std::time::Instant::now())
            .await
            .map_err(status_of)?;
        let header = self.shared.header_of(&r);
        let i = r.value;
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header,
            id: i.id,
            ttl: i.ttl_secs,
            granted_ttl: i.granted_ttl_secs,
            keys: i.keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let r = self.shared.shard.leases().await.map_err(status_of)?;
        let header = self.shared.header_of(&r);
        Ok(Response::new(pb::LeaseLeasesResponse {
            header,
            leases: r
                .value
                .into_iter()
                .map(|id| pb::LeaseStatus { id })
                .collect(),
        }))
    }
}
