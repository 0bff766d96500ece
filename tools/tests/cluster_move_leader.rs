//! Maintenance.MoveLeader on three members, run against etcd 3.7.2 and
//! against kvik with the same steps: the leader hands leadership to a
//! follower, a follower refuses with "not leader", and an unknown target is
//! refused as a bad transferee.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::Kind;
use net::pb::etcdserverpb as pb;

/// MoveLeader sent to member `i`: `Ok` or the status code and message.
fn move_leader(c: &Cluster, i: usize, target: u64) -> Result<(), (tonic::Code, String)> {
    let ep = c.members[i].endpoint();
    c.rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(ep)
            .unwrap()
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .expect("connect");
        let mut m = pb::maintenance_client::MaintenanceClient::new(ch);
        m.move_leader(pb::MoveLeaderRequest { target_id: target })
            .await
            .map(drop)
            .map_err(|s| (s.code(), s.message().to_string()))
    })
}

fn member_id(c: &Cluster, i: usize) -> u64 {
    c.status(i)
        .and_then(|s| s.header)
        .expect("status")
        .member_id
}

/// Runs the steps on `kind`; returns what each answered.
fn scenario(kind: Kind) -> Vec<String> {
    let mut c = Cluster::start_with(kind, 3, &[], false);
    let leader = c.wait_leader(&[0, 1, 2]);
    let target = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut out = Vec::new();
    out.push(format!(
        "via a follower: {:?}",
        move_leader(&c, other, member_id(&c, target))
    ));
    out.push(format!(
        "to an unknown member: {:?}",
        move_leader(&c, leader, 0x0bad_cafe)
    ));
    out.push(format!(
        "to itself: {:?}",
        move_leader(&c, leader, member_id(&c, leader))
    ));
    out.push(format!(
        "to a follower: {:?}",
        move_leader(&c, leader, member_id(&c, target))
    ));
    let now = c.wait_leader(&[0, 1, 2]);
    out.push(format!("the follower leads: {}", now == target));
    out
}

#[test]
fn move_leader_answers_as_etcd_does() {
    let etcd = scenario(Kind::Etcd);
    let kvik = scenario(Kind::Kvik);
    assert_eq!(kvik, etcd, "kvik (left) and etcd 3.7.2 (right) differ");
    assert!(etcd.last().unwrap().ends_with("true"), "{etcd:?}");
}
