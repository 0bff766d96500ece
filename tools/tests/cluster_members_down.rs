//! A cluster losing members answers as etcd 3.7.2 does, step by step, on a
//! 3-member kvik and a 3-member etcd.
//!
//! With one follower killed, the leader refuses membership changes that
//! etcd's strict reconfiguration check refuses ("etcdserver: unhealthy
//! cluster"): adding a learner while a voter is unreachable, and removing
//! the other live voter.
//!
//! Then the second follower is killed, and the survivor, once it knows no
//! leader, is asked (its `/health` and `etcd_server_has_leader` turn from
//! healthy to "RAFT NO LEADER" and 0):
//!
//! - with etcd's `hasleader` metadata (clientv3's `WithRequireLeader`,
//!   which Kubernetes puts on its watches): every call, serializable reads
//!   and Status included, fails at once with "etcdserver: no leader";
//! - a watch stream opened with that metadata while a leader was known
//!   ends with "etcdserver: no leader" after a few election timeouts; one
//!   opened without it stays open;
//! - without the metadata, a proposal waits for a leader for the whole
//!   request timeout and then fails with "context deadline exceeded"; a
//!   linearizable read fails with "etcdserver: request timed out"; a lease
//!   TimeToLive with "etcdserver: no leader";
//! - a write sent while there is no leader succeeds once a restarted member
//!   lets one be elected: it waited for the leader instead of failing; one
//!   whose client gave up first is never carried out.
//!
//! Every wait polls with a generous deadline; the two transcripts must be
//! equal.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, Deadline, Member, CONVERGE_DEADLINE, ELECTION_DEADLINE};
use common::store::{http_get, metric};
use common::Kind;
use net::pb::etcdserverpb as pb;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Longer than any server-side wait the scenario provokes (etcd's request
/// timeout is 7 s with the default election timeout).
const CALL_LIMIT: Duration = Duration::from_secs(60);

fn with_leader_required<T>(msg: T, required: bool) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if required {
        r.metadata_mut()
            .insert("hasleader", "true".parse().expect("ascii"));
    }
    r
}

/// An outcome as the transcript records it: "ok", or the status's code and
/// message.
fn outcome<T>(r: Result<T, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

async fn call<T, F>(f: F) -> String
where
    F: std::future::Future<Output = Result<T, tonic::Status>>,
{
    match tokio::time::timeout(CALL_LIMIT, f).await {
        Ok(r) => outcome(r),
        Err(_) => format!("no answer within {CALL_LIMIT:?}"),
    }
}

/// A request with etcd's `hasleader` metadata.
fn req<T>(msg: T) -> tonic::Request<T> {
    with_leader_required(msg, true)
}

fn put(key: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

fn range(key: &str, serializable: bool) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        serializable,
        ..Default::default()
    }
}

/// Opens a watch on `key` and waits for its `created` answer.
async fn open_watch(
    ch: Channel,
    required: bool,
) -> (
    tokio::sync::mpsc::Sender<pb::WatchRequest>,
    tonic::Streaming<pb::WatchResponse>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: b"w".to_vec(),
                ..Default::default()
            },
        )),
    })
    .await
    .expect("queue the create");
    let mut out = pb::watch_client::WatchClient::new(ch)
        .watch(with_leader_required(ReceiverStream::new(rx), required))
        .await
        .expect("open a watch while there is a leader")
        .into_inner();
    let first = out.message().await.expect("watch answer").expect("created");
    assert!(first.created, "{first:?}");
    (tx, out)
}

/// `/health` and the leader gauge at a member's metrics listener.
fn health(addr: &str, when: &str) -> String {
    // etcd lists /readyz's checks in no fixed order: compare them sorted.
    let get = |path: &str| {
        let (status, body) = http_get(addr, path).unwrap_or_else(|e| panic!("{e}"));
        let mut lines: Vec<&str> = body.split('\n').collect();
        lines.sort_unstable();
        format!("{path} {status}: {lines:?}")
    };
    let has_leader = metric(addr, "etcd_server_has_leader");
    format!(
        "{when}: {}; {}; {}; etcd_server_has_leader {has_leader}",
        get("/health"),
        get("/readyz"),
        get("/livez")
    )
}

fn scenario(kind: Kind) -> Vec<String> {
    let members = (1..=3)
        .map(|i| Member::new(kind, &format!("m{i}")).with_metrics_port())
        .collect();
    let mut c = Cluster::start_members(kind, members, &[]);
    let leader = c.wait_leader(&[0, 1, 2]);
    let ep = c.members[leader].endpoint();
    let ch = c.rt.block_on(async {
        tonic::transport::Endpoint::from_shared(ep)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to the leader")
    });
    let mut t = Vec::new();
    let metrics = c.members[leader].metrics_addr().expect("metrics listener");
    t.push(health(&metrics, "with a leader"));
    let kv = pb::kv_client::KvClient::new(ch.clone());
    let lease = pb::lease_client::LeaseClient::new(ch.clone());
    let lease_id = c.rt.block_on(async {
        lease
            .clone()
            .lease_grant(pb::LeaseGrantRequest { ttl: 600, id: 0 })
            .await
            .expect("grant a lease while there is a leader")
            .into_inner()
            .id
    });
    let (_required_tx, mut required_watch) = c.rt.block_on(open_watch(ch.clone(), true));
    let (_plain_tx, mut plain_watch) = c.rt.block_on(open_watch(ch.clone(), false));

    // One follower down: the strict reconfiguration checks refuse.
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.members[followers[0]].kill9();
    let live_follower = c
        .status(followers[1])
        .and_then(|s| s.header)
        .expect("the live follower answers")
        .member_id;
    c.rt.block_on(async {
        let mut cl = pb::cluster_client::ClusterClient::new(ch.clone());
        t.push(format!(
            "one down, member add learner: {}",
            call(cl.member_add(pb::MemberAddRequest {
                peer_ur_ls: vec!["http://127.0.0.1:1".into()],
                is_learner: true,
            }))
            .await
        ));
        t.push(format!(
            "one down, member remove of the live follower: {}",
            call(cl.member_remove(pb::MemberRemoveRequest { id: live_follower })).await
        ));
    });

    // Both followers down; wait until the survivor knows no leader.
    c.members[followers[1]].kill9();
    let d = Deadline::after(ELECTION_DEADLINE);
    loop {
        let s = c.status(leader);
        if s.as_ref().is_some_and(|s| s.leader == 0) {
            break;
        }
        d.tick(|| format!("the survivor still names a leader: {s:?}"));
    }

    t.push(health(&metrics, "no leader"));

    // Every call that requires a leader is refused at once.
    c.rt.block_on(async {
        let (mut kv, mut lease) = (kv.clone(), lease.clone());
        let mut mt = pb::maintenance_client::MaintenanceClient::new(ch.clone());
        let mut cl = pb::cluster_client::ClusterClient::new(ch.clone());
        t.push(format!(
            "required put: {}",
            call(kv.put(req(put("a")))).await
        ));
        t.push(format!(
            "required range: {}",
            call(kv.range(req(range("a", false)))).await
        ));
        t.push(format!(
            "required serializable range: {}",
            call(kv.range(req(range("a", true)))).await
        ));
        t.push(format!(
            "required status: {}",
            call(mt.status(req(pb::StatusRequest {}))).await
        ));
        t.push(format!(
            "required member list: {}",
            call(cl.member_list(req(pb::MemberListRequest::default()))).await
        ));
        t.push(format!(
            "required leases: {}",
            call(lease.lease_leases(req(pb::LeaseLeasesRequest {}))).await
        ));
        let (_tx, rx) = tokio::sync::mpsc::channel::<pb::WatchRequest>(1);
        let w = pb::watch_client::WatchClient::new(ch.clone())
            .watch(req(ReceiverStream::new(rx)))
            .await;
        t.push(format!("required new watch: {}", outcome(w)));
        t.push(format!(
            "no leader, member add learner: {}",
            call(cl.member_add(pb::MemberAddRequest {
                peer_ur_ls: vec!["http://127.0.0.1:1".into()],
                is_learner: true,
            }))
            .await
        ));
    });

    // The watch that requires a leader ends; the other stays open.
    let ended = c.rt.block_on(async {
        tokio::time::timeout(CONVERGE_DEADLINE, required_watch.message()).await
    });
    t.push(match ended {
        Ok(Ok(m)) => format!("required watch: message {m:?}"),
        Ok(Err(s)) => format!("required watch: {}", outcome::<()>(Err(s))),
        Err(_) => format!("required watch: still open after {CONVERGE_DEADLINE:?}"),
    });
    let plain = c.rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(200), plain_watch.message()).await
    });
    t.push(match plain {
        Err(_) => "plain watch: open".to_string(),
        Ok(r) => format!("plain watch: {r:?}"),
    });

    // Without the metadata, requests wait for a leader, then time out.
    c.rt.block_on(async {
        let (mut kv1, mut kv2, mut kv3) = (kv.clone(), kv.clone(), kv.clone());
        let mut lease = lease.clone();
        let mut cl = pb::cluster_client::ClusterClient::new(ch.clone());
        let mut cl2 = cl.clone();
        let (p, rd, txn, ttl, members) = tokio::join!(
            call(kv1.put(put("a"))),
            call(kv2.range(range("a", false))),
            call(kv3.txn(pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestPut(put("b"))),
                }],
                ..Default::default()
            })),
            call(lease.lease_time_to_live(pb::LeaseTimeToLiveRequest {
                id: lease_id,
                keys: false,
            })),
            call(cl.member_list(pb::MemberListRequest { linearizable: true })),
        );
        t.push(format!("waiting put: {p}"));
        t.push(format!("waiting range: {rd}"));
        t.push(format!("waiting txn: {txn}"));
        t.push(format!("waiting lease ttl: {ttl}"));
        t.push(format!("waiting linearizable member list: {members}"));
        t.push(format!(
            "member list: {}",
            call(cl2.member_list(pb::MemberListRequest {
                linearizable: false
            }))
            .await
        ));
        let mut kv = kv.clone();
        t.push(format!(
            "serializable range: {}",
            call(kv.range(range("a", true))).await
        ));
    });

    // A write whose client gives up while it waits for a leader is never
    // carried out, even once a leader appears (well within the request
    // timeout it would otherwise have waited).
    c.rt.block_on(async {
        let mut kv = kv.clone();
        let mut r = tonic::Request::new(put("abandoned"));
        r.set_timeout(Duration::from_millis(500));
        let given_up = call(kv.put(r)).await != "ok";
        t.push(format!("put with a 500 ms deadline failed: {given_up}"));
    });

    // A write sent with no leader succeeds once one is elected.
    let pending = {
        let mut kv = kv.clone();
        c.rt.spawn(async move { call(kv.put(put("c"))).await })
    };
    let back = followers[0];
    c.members[back].spawn();
    let written = c.rt.block_on(pending).expect("put task");
    t.push(format!(
        "put sent with no leader, then a member back: {written}"
    ));
    let d = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let mut kv = kv.clone();
        let r = c.rt.block_on(call(kv.range(range("c", false))));
        if r == "ok" {
            break;
        }
        d.tick(|| format!("linearizable read after the election: {r}"));
    }
    let abandoned = c.rt.block_on(async {
        let mut kv = kv.clone();
        kv.range(range("abandoned", false))
            .await
            .map(|r| r.into_inner().count)
    });
    t.push(format!(
        "the abandoned put, read after the election: {abandoned:?} keys"
    ));
    t
}

#[test]
fn a_cluster_losing_members_answers_as_etcd_does() {
    let etcd = scenario(Kind::Etcd);
    let kvik = scenario(Kind::Kvik);
    for (e, k) in etcd.iter().zip(&kvik) {
        println!("etcd: {e}\nkvik: {k}");
    }
    assert_eq!(kvik, etcd, "kvik's transcript differs from etcd 3.7.2's");
}
