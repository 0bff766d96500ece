//! A leader cut off from its peers, in real processes: three members, each
//! in its own network namespace, started with etcd's flags. The test cuts
//! the leader off both ways (blackhole routes in its namespace) while it
//! keeps reading from it as a client, and checks:
//!
//! - the other two elect a new leader and acknowledge a new value;
//! - no linearizable read that the old leader answers after that
//!   acknowledgement returns the old value, and no write through it is
//!   acknowledged while it is cut off;
//! - serializable reads still work: on the old leader (its own, older
//!   state) and on the follower that stayed with the majority (the new
//!   value);
//! - once the partition heals, the old leader catches up and a
//!   linearizable read through it returns the new value.
//!
//! The same scenario runs on real etcd 3.7.2. The staleness checker is
//! shown to catch stale reads: over the serializable reads from the old
//! leader in the same window, it must report some.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Deadline, CONVERGE_DEADLINE};
use common::netns::Net;
use common::Kind;
use net::pb::etcdserverpb as pb;

/// One client request's limit while a member may be cut off.
const REQUEST_LIMIT: Duration = Duration::from_secs(1);
/// Reads of each kind that must start after the new value is acknowledged
/// before the partition heals.
const READS_AFTER_ACK_MIN: usize = 3;
const KEY: &[u8] = b"partition/k";

/// One read and what came of it: the value, or the error's text.
#[derive(Clone, Debug)]
struct Read {
    started: Instant,
    result: Result<Vec<u8>, String>,
}

async fn kv(ep: &str) -> Result<pb::kv_client::KvClient<tonic::transport::Channel>, String> {
    let ch = tonic::transport::Endpoint::from_shared(ep.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(REQUEST_LIMIT)
        .timeout(REQUEST_LIMIT)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(pb::kv_client::KvClient::new(ch))
}

async fn get(ep: &str, serializable: bool) -> Result<Vec<u8>, String> {
    let mut c = kv(ep).await?;
    let req = pb::RangeRequest {
        key: KEY.to_vec(),
        serializable,
        ..Default::default()
    };
    let r = tokio::time::timeout(REQUEST_LIMIT, c.range(req))
        .await
        .map_err(|_| "client deadline".to_string())?
        .map_err(|e| e.message().to_string())?;
    Ok(r.into_inner()
        .kvs
        .first()
        .map(|kv| kv.value.clone())
        .unwrap_or_default())
}

async fn put(ep: &str, value: &[u8]) -> Result<i64, String> {
    let mut c = kv(ep).await?;
    let req = pb::PutRequest {
        key: KEY.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    };
    let r = tokio::time::timeout(REQUEST_LIMIT, c.put(req))
        .await
        .map_err(|_| "client deadline".to_string())?
        .map_err(|e| e.message().to_string())?;
    Ok(r.into_inner().header.map_or(0, |h| h.revision))
}

/// The reads that started after `acked` (when `new` was acknowledged) and
/// returned something other than `new`: each one is stale.
fn stale_reads(reads: &[Read], acked: Instant, new: &[u8]) -> Vec<Read> {
    reads
        .iter()
        .filter(|r| r.started > acked)
        .filter(|r| matches!(&r.result, Ok(v) if v != new))
        .cloned()
        .collect()
}

/// Reads `ep` in a loop until `stop`, one read at a time, recording each.
fn spawn_reader(
    rt: &tokio::runtime::Runtime,
    ep: String,
    serializable: bool,
    stop: Arc<AtomicBool>,
) -> Arc<Mutex<Vec<Read>>> {
    let reads = Arc::new(Mutex::new(Vec::new()));
    let out = reads.clone();
    rt.spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let result = get(&ep, serializable).await;
            out.lock().unwrap().push(Read { started, result });
        }
    });
    reads
}

fn count_after(reads: &Mutex<Vec<Read>>, t: Instant) -> usize {
    reads
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.started > t)
        .count()
}

fn partitioned_old_leader(kind: Kind) {
    // Declared before the cluster, so the members die before their
    // namespaces go.
    let net = Net::new(3);
    let mut c = Cluster::start_in_net(kind, &net, 3, &[]);
    let all = [0, 1, 2];
    let old = c.wait_leader(&all);
    let majority: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    let eps: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();

    // v1 acknowledged through the leader and applied everywhere.
    let d = Deadline::after(CONVERGE_DEADLINE);
    while let Err(e) = c.rt.block_on(put(&eps[old], b"v1")) {
        d.tick(|| format!("put v1 through the leader: {e}\n{}", c.logs()));
    }
    for (i, ep) in eps.iter().enumerate() {
        let d = Deadline::after(CONVERGE_DEADLINE);
        loop {
            let r = c.rt.block_on(get(ep, true));
            if r.as_deref() == Ok(b"v1".as_slice()) {
                break;
            }
            d.tick(|| format!("m{} applies v1: {r:?}\n{}", i + 1, c.logs()));
        }
    }

    // Cut the leader off, reading from it all along.
    let stop = Arc::new(AtomicBool::new(false));
    let linearizable = spawn_reader(&c.rt, eps[old].clone(), false, stop.clone());
    let serializable = spawn_reader(&c.rt, eps[old].clone(), true, stop.clone());
    net.isolate(old);
    let cut = Instant::now();

    // The majority elects a leader of its own and acknowledges v2.
    let new = c.wait_leader(&majority);
    assert_ne!(
        new, old,
        "the cut-off leader cannot stay the majority's leader"
    );
    let d = Deadline::after(CONVERGE_DEADLINE);
    let acked = loop {
        match c.rt.block_on(put(&eps[new], b"v2")) {
            Ok(_) => break Instant::now(),
            Err(e) => d.tick(|| format!("put v2 through the new leader: {e}\n{}", c.logs())),
        }
    };
    println!(
        "{kind:?}: m{} cut off; m{} leads, v2 acknowledged {:?} after the cut",
        old + 1,
        new + 1,
        acked - cut
    );

    // A write through the cut-off member is never acknowledged.
    let write = c.rt.block_on(put(&eps[old], b"v3"));
    assert!(
        write.is_err(),
        "{kind:?}: a write through the cut-off old leader was acknowledged: {write:?}"
    );

    // The follower that stayed with the majority serves v2 serializably.
    let stayed = majority.iter().copied().find(|&i| i != new).unwrap();
    let d = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let r = c.rt.block_on(get(&eps[stayed], true));
        if r.as_deref() == Ok(b"v2".as_slice()) {
            break;
        }
        d.tick(|| format!("serializable read of v2 on m{}: {r:?}", stayed + 1));
    }

    // Enough reads of both kinds start after the acknowledgement.
    let d = Deadline::after(CONVERGE_DEADLINE);
    while count_after(&linearizable, acked) < READS_AFTER_ACK_MIN
        || count_after(&serializable, acked) < READS_AFTER_ACK_MIN
    {
        d.tick(|| "reads from the cut-off member after the acknowledgement".to_string());
    }
    stop.store(true, Ordering::SeqCst);
    let linearizable = linearizable.lock().unwrap().clone();
    let serializable = serializable.lock().unwrap().clone();

    let stale = stale_reads(&linearizable, acked, b"v2");
    assert!(
        stale.is_empty(),
        "{kind:?}: the cut-off old leader served {} stale linearizable reads after v2 was acknowledged: {stale:?}\n{}",
        stale.len(),
        c.logs()
    );
    let errors: Vec<&String> = linearizable
        .iter()
        .filter(|r| r.started > acked)
        .filter_map(|r| r.result.as_ref().err())
        .collect();
    let mut kinds: Vec<&String> = errors.clone();
    kinds.sort();
    kinds.dedup();
    println!(
        "{kind:?}: {} linearizable reads on the cut-off member after the acknowledgement, all refused: {kinds:?}",
        errors.len(),
    );
    // The checker is not vacuous: the cut-off member's own serializable
    // reads are stale after the acknowledgement, and it says so.
    let local = stale_reads(&serializable, acked, b"v2");
    assert!(
        !local.is_empty(),
        "{kind:?}: the staleness check found no stale serializable read on the cut-off member: {serializable:?}"
    );
    assert!(
        local
            .iter()
            .all(|r| r.result.as_deref() == Ok(b"v1".as_slice())),
        "{kind:?}: the cut-off member served something but its own v1: {local:?}"
    );

    // Heal: the old leader catches up and serves v2 linearizably (or v3:
    // the write the client gave up on had an unknown outcome).
    net.heal(old);
    let d = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let r = c.rt.block_on(get(&eps[old], false));
        if matches!(r.as_deref(), Ok(b"v2" | b"v3")) {
            break;
        }
        d.tick(|| {
            format!(
                "linearizable read of v2 on the healed m{}: {r:?}\n{}",
                old + 1,
                c.logs()
            )
        });
    }
    c.wait_leader(&all);
}

#[test]
fn kvik_partitioned_old_leader_serves_no_stale_linearizable_read() {
    partitioned_old_leader(Kind::Kvik);
}

#[test]
fn etcd_partitioned_old_leader_serves_no_stale_linearizable_read() {
    partitioned_old_leader(Kind::Etcd);
}

#[test]
fn staleness_check_reports_a_read_after_the_acknowledgement() {
    let t0 = Instant::now();
    let acked = t0 + Duration::from_millis(10);
    let later = t0 + Duration::from_millis(20);
    let reads = [
        Read {
            started: t0,
            result: Ok(b"v1".to_vec()),
        },
        Read {
            started: later,
            result: Err("timed out".into()),
        },
        Read {
            started: later,
            result: Ok(b"v2".to_vec()),
        },
        Read {
            started: later,
            result: Ok(b"v1".to_vec()),
        },
    ];
    let stale = stale_reads(&reads, acked, b"v2");
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].result.as_deref(), Ok(b"v1".as_slice()));
}
