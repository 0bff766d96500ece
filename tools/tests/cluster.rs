//! Replicated clusters of real `kvik` processes on loopback, driven with
//! etcd's own flags and etcdctl 3.4: bootstrap, leader election, writes
//! through any member, kill -9 of the leader under concurrent writers, and
//! the old leader's catch-up after it restarts. Every wait polls a condition
//! with a generous deadline.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{
    etcdctl, etcdctl_add_learner, etcdctl_settled, Cluster, Deadline, Member, CONVERGE_DEADLINE,
    ELECTION_DEADLINE,
};
use common::{etcdctl_bin, Kind};
use net::pb::etcdserverpb as pb;

/// One client request's deadline in the writers.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// The rows of an etcdctl table: cells of each line between the borders.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// A table's rows as maps from its header's column names.
fn table(text: &str) -> Vec<BTreeMap<String, String>> {
    let rows = table_rows(text);
    let Some((head, body)) = rows.split_first() else {
        return Vec::new();
    };
    body.iter()
        .map(|r| head.iter().cloned().zip(r.iter().cloned()).collect())
        .collect()
}

async fn put(ep: &str, key: &str, value: &str) -> Result<i64, String> {
    let ch = tonic::transport::Endpoint::from_shared(ep.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(REQUEST_DEADLINE)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut kv = pb::kv_client::KvClient::new(ch);
    let r = kv
        .put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.message().to_string())?;
    Ok(r.into_inner().header.map_or(0, |h| h.revision))
}

/// Every key under `prefix` as one member has applied it (serializable, so
/// each member answers from its own state).
async fn local_keys(ep: &str, prefix: &str) -> Result<BTreeMap<String, String>, String> {
    let ch = tonic::transport::Endpoint::from_shared(ep.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(REQUEST_DEADLINE)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut kv = pb::kv_client::KvClient::new(ch).max_decoding_message_size(usize::MAX);
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let r = kv
        .range(pb::RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: end,
            serializable: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.message().to_string())?;
    Ok(r.into_inner()
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect())
}

/// Polls `endpoint hashkv` (of every member with `--cluster`, else of
/// `endpoints`) until all report the same hash; returns the rows.
fn wait_same_hashkv(
    c: &Cluster,
    endpoints: &str,
    whole_cluster: bool,
) -> Vec<BTreeMap<String, String>> {
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let mut args = vec!["endpoint", "hashkv", "-w", "table"];
        if whole_cluster {
            args.push("--cluster");
        }
        let (ok, text) = etcdctl(endpoints, &args);
        let rows = table(&text);
        let n = if whole_cluster {
            c.members.iter().filter(|m| m.child.is_some()).count()
        } else {
            endpoints.split(',').count()
        };
        if ok && rows.len() == n {
            let hashes: Vec<&String> = rows.iter().map(|r| &r["HASH"]).collect();
            if hashes.iter().all(|h| *h == hashes[0]) {
                // Same hash means the same revision too: the hash covers
                // every revision up to the member's current one.
                return rows;
            }
        }
        deadline.tick(|| {
            format!(
                "members did not converge within {CONVERGE_DEADLINE:?}:\n{text}\n{}",
                c.logs()
            )
        });
    }
}

#[test]
fn three_members_elect_replicate_fail_over_and_catch_up() {
    let _ = etcdctl_bin();
    let mut c = Cluster::start(3, &[]);
    let all = [0usize, 1, 2];
    let leader = c.wait_leader(&all);
    let endpoints: String = c
        .members
        .iter()
        .map(|m| m.endpoint())
        .collect::<Vec<_>>()
        .join(",");

    // Every member publishes its name and client URLs through the log.
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    let rows = loop {
        let (ok, text) = etcdctl(&endpoints, &["member", "list", "-w", "table"]);
        let rows = table(&text);
        if ok
            && rows.len() == 3
            && rows
                .iter()
                .all(|r| r["STATUS"] == "started" && !r["CLIENT ADDRS"].is_empty())
        {
            break rows;
        }
        deadline.tick(|| {
            format!(
                "member list never showed three started members:\n{text}\n{}",
                c.logs()
            )
        });
    };
    for m in &c.members {
        assert!(
            rows.iter().any(|r| r["NAME"] == m.name
                && r["PEER ADDRS"] == m.peer_url()
                && r["CLIENT ADDRS"] == m.endpoint()
                && r["IS LEARNER"] == "false"),
            "member {} missing from {rows:?}",
            m.name
        );
    }

    // Exactly one leader, and every member agrees on the term.
    let (ok, text) = etcdctl(
        &endpoints,
        &["endpoint", "status", "--cluster", "-w", "table"],
    );
    assert!(ok, "{text}");
    let rows = table(&text);
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(
        rows.iter().filter(|r| r["IS LEADER"] == "true").count(),
        1,
        "{text}"
    );
    assert!(rows.iter().all(|r| r["IS LEARNER"] == "false"), "{text}");
    let terms: Vec<&String> = rows.iter().map(|r| &r["RAFT TERM"]).collect();
    assert!(terms.iter().all(|t| *t == terms[0]), "{text}");

    // Writes through any member, followers forwarding to the leader; a
    // linearizable read through any member sees them.
    for (i, m) in c.members.iter().enumerate() {
        let (ok, text) = etcdctl(&m.endpoint(), &["put", &format!("via{i}"), &m.name]);
        assert!(ok && text.contains("OK"), "put via {}: {text}", m.name);
    }
    for m in &c.members {
        for (i, w) in c.members.iter().enumerate() {
            let (ok, text) = etcdctl(
                &m.endpoint(),
                &["get", &format!("via{i}"), "--print-value-only"],
            );
            assert!(
                ok && text.trim() == w.name,
                "get via{i} from {}: {text}",
                m.name
            );
        }
    }

    // Kill -9 the leader under concurrent writers.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let eps: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let acked = acked.clone();
            let stop = stop.clone();
            let eps = eps.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ep = &eps[(n as usize + w) % eps.len()];
                    let key = format!("w/{w}/{n}");
                    let value = format!("v{n}");
                    if rt.block_on(put(ep, &key, &value)).is_ok() {
                        acked.lock().unwrap().push((key, value));
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    while acked.lock().unwrap().len() < 200 {
        deadline.tick(|| format!("writers made no progress:\n{}", c.logs()));
    }
    let old_leader = leader;
    c.members[old_leader].kill9();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != old_leader).collect();
    let new_leader = c.wait_leader(&rest);
    assert_ne!(new_leader, old_leader);
    // The new leader serves writes.
    let served_at = acked.lock().unwrap().len();
    let deadline = Deadline::after(ELECTION_DEADLINE);
    while acked.lock().unwrap().len() < served_at + 200 {
        deadline.tick(|| format!("no writes acknowledged after the fail-over:\n{}", c.logs()));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Every acknowledged write is on every surviving member.
    let check_all = |c: &Cluster, which: &[usize]| {
        let deadline = Deadline::after(CONVERGE_DEADLINE);
        for &i in which {
            loop {
                let keys = c.rt.block_on(local_keys(&c.members[i].endpoint(), "w/"));
                let missing: Vec<&(String, String)> = match &keys {
                    Ok(k) => acked
                        .iter()
                        .filter(|(key, v)| k.get(key) != Some(v))
                        .collect(),
                    Err(_) => acked.iter().collect(),
                };
                if missing.is_empty() {
                    break;
                }
                deadline.tick(|| {
                    format!(
                        "{} lacks {} acknowledged writes, e.g. {:?} ({:?})\n{}",
                        c.members[i].name,
                        missing.len(),
                        missing[0],
                        keys.err(),
                        c.logs()
                    )
                });
            }
        }
    };
    check_all(&c, &rest);
    let live: String = rest
        .iter()
        .map(|&i| c.members[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    wait_same_hashkv(&c, &live, false);

    // The old leader restarts and catches up.
    c.members[old_leader].spawn();
    c.wait_leader(&all);
    check_all(&c, &all);
    let rows = wait_same_hashkv(&c, &endpoints, true);
    assert_eq!(rows.len(), 3);

    // A learner joins: MemberAdd --learner, then a fourth kvik started with
    // --initial-cluster-state existing; it refuses linearizable requests
    // until it is promoted, which the leader allows once it caught up.
    let leader = c.wait_leader(&all);
    let leader_ep = c.members[leader].endpoint();
    let mut m4 = Member::new(Kind::Kvik, "m4");
    etcdctl_add_learner(&leader_ep, "m4", &m4.peer_url());
    let (ok, text) = etcdctl(&leader_ep, &["member", "list", "-w", "table"]);
    assert!(ok, "{text}");
    assert!(
        table(&text)
            .iter()
            .any(|r| r["STATUS"] == "unstarted" && r["IS LEARNER"] == "true"),
        "{text}"
    );
    let mut initial: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    initial.push(format!("m4={}", m4.peer_url()));
    m4.configure(&initial.join(","), "existing", &[]);
    m4.spawn();
    c.members.push(m4);
    let all4 = [0usize, 1, 2, 3];
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    let m4_id = loop {
        assert!(c.members[3].alive(), "m4 exited:\n{}", c.members[3].log());
        if let Some(s) = c.status(3) {
            if s.is_learner && s.leader != 0 {
                break s.header.map(|h| h.member_id).unwrap();
            }
        }
        deadline.tick(|| format!("the learner never started:\n{}", c.logs()));
    };
    let m4_ep = c.members[3].endpoint();
    let (ok, text) = etcdctl(&m4_ep, &["get", "via0"]);
    assert!(
        !ok && text.contains("etcdserver: rpc not supported for learner"),
        "a learner served a linearizable read: {text}"
    );
    check_all(&c, &[3]);
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let (ok, text) = etcdctl(&leader_ep, &["member", "promote", &format!("{m4_id:x}")]);
        if ok {
            break;
        }
        assert!(
            text.contains("can only promote a learner member which is in sync with leader"),
            "member promote: {text}"
        );
        deadline.tick(|| format!("never promoted: {text}"));
    }
    let (ok, text) = etcdctl(&m4_ep, &["put", "via-m4", "x"]);
    assert!(ok, "the promoted member refused a write: {text}");
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let (ok, text) = etcdctl(&endpoints, &["member", "list", "-w", "table"]);
        let rows = table(&text);
        if ok
            && rows.len() == 4
            && rows
                .iter()
                .all(|r| r["IS LEARNER"] == "false" && r["STATUS"] == "started")
        {
            break;
        }
        deadline.tick(|| format!("member list never showed four started voters: {text}"));
    }
    c.wait_leader(&all4);

    // Removing a member: the member list shrinks, and the removed member
    // stops, as etcd's does.
    let leader = c.wait_leader(&all4);
    let follower = *all.iter().find(|&&i| i != leader).expect("a follower");
    let id = c
        .status(follower)
        .and_then(|s| s.header)
        .map(|h| h.member_id)
        .expect("the follower answers");
    let leader_ep = c.members[leader].endpoint();
    let (ok, text) = etcdctl_settled(&leader_ep, &["member", "remove", &format!("{id:x}")]);
    assert!(ok, "member remove: {text}");
    let (ok, text) = etcdctl(&leader_ep, &["member", "list", "-w", "table"]);
    assert!(ok, "{text}");
    assert_eq!(table(&text).len(), 3, "{text}");
    let deadline = Deadline::after(CONVERGE_DEADLINE);
    while c.members[follower].alive() {
        deadline.tick(|| {
            format!(
                "the removed member kept running:\n{}",
                c.members[follower].log()
            )
        });
    }
    assert!(
        c.members[follower]
            .log()
            .contains("the member has been permanently removed from the cluster"),
        "{}",
        c.members[follower].log()
    );
    c.members[follower].child = None;
    // The two left still serve writes.
    let (ok, text) = etcdctl(&leader_ep, &["put", "after-remove", "x"]);
    assert!(ok, "{text}");
}
