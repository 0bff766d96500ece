//! A member that falls behind the leader's retained log catches up by
//! snapshot: three `kvik` processes with a small `--snapshot-count` and
//! `--snapshot-catchup-entries`, one killed while the others take writes
//! far past both, then restarted. The leader must ship its checkpoint (its
//! log line says so), the member must install it (its log and
//! `kvik_snapshots_installed_total` say so), hold every acknowledged write,
//! agree on `hashkv`, keep following the log afterwards, and restart from
//! the installed state.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, Deadline, Member, CONVERGE_DEADLINE};
use common::store::poll_metric;
use common::Kind;
use net::pb::etcdserverpb as pb;

/// Writes while the member is down: far past the snapshot count.
const WRITES_WHILE_DOWN: usize = 600;

async fn kv(ep: &str) -> Option<pb::kv_client::KvClient<tonic::transport::Channel>> {
    let ch = tonic::transport::Endpoint::from_shared(ep.to_string())
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .ok()?;
    Some(pb::kv_client::KvClient::new(ch))
}

fn put(c: &Cluster, i: usize, key: &str, value: &str) {
    let ep = c.members[i].endpoint();
    c.rt.block_on(async {
        let mut kv = kv(&ep).await.expect("connect");
        kv.put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    });
}

/// Member `i`'s serializable view of the `k/` keys: (count, revision).
fn local_view(c: &Cluster, i: usize) -> Option<(i64, i64)> {
    let ep = c.members[i].endpoint();
    c.rt.block_on(async {
        let mut kv = kv(&ep).await?;
        let r = kv
            .range(pb::RangeRequest {
                key: b"k/".to_vec(),
                range_end: b"k0".to_vec(),
                count_only: true,
                serializable: true,
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner();
        Some((r.count, r.header?.revision))
    })
}

fn hash_kv(c: &Cluster, i: usize, revision: i64) -> Option<u32> {
    let ep = c.members[i].endpoint();
    c.rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(ep)
            .ok()?
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .ok()?;
        let mut m = pb::maintenance_client::MaintenanceClient::new(ch);
        m.hash_kv(pb::HashKvRequest { revision })
            .await
            .ok()
            .map(|r| r.into_inner().hash)
    })
}

/// Polls until member `i` holds `count` keys at the leader's revision.
fn wait_caught_up(c: &mut Cluster, i: usize, leader: usize, count: i64) {
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    loop {
        assert!(c.members[i].alive(), "member exited:\n{}", c.logs());
        let want = local_view(c, leader).expect("the leader answers").1;
        let got = local_view(c, i);
        if got == Some((count, want)) {
            return;
        }
        deadline.tick(|| {
            format!(
                "member {i} at {got:?}, want ({count}, {want})\n{}",
                c.logs()
            )
        });
    }
}

#[test]
fn a_member_behind_the_retained_log_catches_up_by_snapshot() {
    let mut c = Cluster::start(
        3,
        &["--snapshot-count", "50", "--snapshot-catchup-entries", "10"],
    );
    let leader = c.wait_leader(&[0, 1, 2]);
    let lagging = (leader + 1) % 3;
    for i in 0..20 {
        put(&c, leader, &format!("k/{i:04}"), "before");
    }
    wait_caught_up(&mut c, lagging, leader, 20);
    c.members[lagging].kill9();
    for i in 0..WRITES_WHILE_DOWN {
        put(&c, leader, &format!("k/{i:04}"), &format!("v{i}"));
    }
    assert!(
        !c.members[leader].log().contains("sending the snapshot"),
        "a snapshot was sent before anyone needed one"
    );
    c.members[lagging].spawn();
    wait_caught_up(&mut c, lagging, leader, WRITES_WHILE_DOWN as i64);

    // The snapshot path ran, on both ends (the leader logs the transfer's
    // end when it next looks, which may be after the member caught up).
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    while !c.members[leader]
        .log()
        .contains("sent the snapshot at entry")
    {
        deadline.tick(|| format!("the leader never sent a snapshot:\n{}", c.logs()));
    }
    let installed = c.members[lagging].log();
    assert!(
        installed.contains("installed the snapshot at entry"),
        "the member caught up without installing a snapshot:\n{}",
        c.logs()
    );
    // The snapshot was received into the data directory's spool, not into
    // memory, and its spool file went once it was installed.
    let spool = c.members[lagging].dir.join("data").join("snapshot-spool");
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let left = std::fs::read_dir(&spool)
            .unwrap_or_else(|e| panic!("{}: {e}: the snapshot was not spooled", spool.display()))
            .count();
        if left == 0 {
            break;
        }
        deadline.tick(|| format!("{left} spool files left in {}", spool.display()));
    }

    // Every member holds the same data at the same revision.
    let revision = local_view(&c, leader).unwrap().1;
    let hashes: Vec<Option<u32>> = (0..3).map(|i| hash_kv(&c, i, revision)).collect();
    assert!(
        hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]),
        "hashkv at {revision} differs: {hashes:?}"
    );

    // It follows the log after the snapshot, through itself as well.
    put(&c, lagging, "k/after", "through the caught-up member");
    wait_caught_up(&mut c, lagging, leader, WRITES_WHILE_DOWN as i64 + 1);

    // And restarts from the installed state.
    c.members[lagging].kill9();
    c.members[lagging].spawn();
    wait_caught_up(&mut c, lagging, leader, WRITES_WHILE_DOWN as i64 + 1);
}

/// A member a little behind, within `--snapshot-catchup-entries` of the
/// checkpoints, catches up from the log even after every other member
/// restarted from its checkpoint: a restart keeps the WAL's tail before the
/// checkpoint in the log. No snapshot is sent or installed.
#[test]
fn after_a_restart_a_member_within_the_tail_catches_up_from_the_log() {
    const WRITES: usize = 120;
    let members = (1..=3)
        .map(|i| Member::new(Kind::Kvik, &format!("m{i}")).with_metrics_port())
        .collect();
    let mut c = Cluster::start_members(
        Kind::Kvik,
        members,
        &[
            "--snapshot-count",
            "50",
            "--snapshot-catchup-entries",
            "1000",
        ],
    );
    let leader = c.wait_leader(&[0, 1, 2]);
    let lagging = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|&i| i != lagging).collect();
    put(&c, leader, "k/0", "before");
    wait_caught_up(&mut c, lagging, leader, 1);
    c.members[lagging].kill9();
    for i in 1..=WRITES {
        put(&c, leader, &format!("k/{i}"), "while down");
    }
    // Both live members checkpointed past the lagging one's log...
    for &i in &others {
        let addr = c.members[i].metrics_addr().expect("metrics listener");
        poll_metric(
            &addr,
            "kvik_checkpoints_total",
            CONVERGE_DEADLINE,
            &format!("member {i} to checkpoint"),
            |n| n >= 1,
        );
    }
    // ... and restart from those checkpoints.
    for &i in &others {
        c.members[i].kill9();
    }
    for &i in &others {
        c.members[i].spawn();
    }
    let leader = c.wait_leader(&others);
    // Each restarted from a checkpoint the lagging member is behind.
    for &i in &others {
        let log = c.members[i].log();
        let at: u64 = log
            .rsplit("keyspace recovered: ")
            .next()
            .and_then(|l| l.split("checkpoint at entry ").nth(1))
            .and_then(|r| r.split(|ch: char| !ch.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("member {i}: no recovery line:\n{log}"));
        assert!(
            at >= 50,
            "member {i} restarted from entry {at}, not past the lagging member"
        );
    }
    c.members[lagging].spawn();
    wait_caught_up(&mut c, lagging, leader, WRITES as i64 + 1);
    let logs = c.logs();
    assert!(
        !logs.contains("sent the snapshot at entry")
            && !logs.contains("installed the snapshot at entry"),
        "the member caught up by snapshot, not from the log:\n{logs}"
    );
}
