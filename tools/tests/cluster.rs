//! Replicated clusters of real `kvik` processes on loopback, driven with
//! etcd's own flags and etcdctl 3.4: bootstrap, leader election, writes
//! through any member, kill -9 of the leader under concurrent writers, and
//! the old leader's catch-up after it restarts. Every wait polls a condition
//! with a generous deadline.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{etcdctl_bin, free_port, kvik_bin, temp_dir};
use net::pb::etcdserverpb as pb;

/// How long a cluster may take to elect a leader, or a new one.
const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
/// How long members may take to converge on the same state.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// One client request's deadline in the writers.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(kvik_bin())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kvik");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct Cluster {
    members: Vec<Member>,
    rt: tokio::runtime::Runtime,
}

fn member_args(m: &Member, initial_cluster: &str, state: &str, extra: &[&str]) -> Vec<String> {
    let c = m.endpoint();
    let p = m.peer_url();
    let mut args: Vec<String> = [
        "--name",
        &m.name,
        "--data-dir",
        &m.dir.join("data").display().to_string(),
        "--listen-client-urls",
        &c,
        "--advertise-client-urls",
        &c,
        "--listen-peer-urls",
        &p,
        "--initial-advertise-peer-urls",
        &p,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        state,
        "--initial-cluster-token",
        "kvik-cluster-test",
        "--kvik-cores",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

impl Cluster {
    fn start(n: usize, extra: &[&str]) -> Cluster {
        let mut members: Vec<Member> = (1..=n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                dir: temp_dir(&format!("cluster-m{i}")),
                child: None,
                args: Vec::new(),
            })
            .collect();
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        let initial = initial.join(",");
        for m in &mut members {
            m.args = member_args(m, &initial, "new", extra);
            m.spawn();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Cluster { members, rt }
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("===== {} =====\n{}", m.name, m.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn status(&self, i: usize) -> Option<pb::StatusResponse> {
        let ep = self.members[i].endpoint();
        self.rt.block_on(async {
            let ch = tonic::transport::Endpoint::from_shared(ep)
                .ok()?
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2))
                .connect()
                .await
                .ok()?;
            let mut c = pb::maintenance_client::MaintenanceClient::new(ch);
            c.status(pb::StatusRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        })
    }

    /// Polls until every running member names the same leader, one of the
    /// running members; returns its index.
    fn wait_leader(&mut self, alive: &[usize]) -> usize {
        let deadline = Instant::now() + ELECTION_DEADLINE;
        loop {
            for &i in alive {
                assert!(
                    self.members[i].alive(),
                    "{} exited:\n{}",
                    self.members[i].name,
                    self.logs()
                );
            }
            let statuses: Vec<Option<pb::StatusResponse>> =
                alive.iter().map(|&i| self.status(i)).collect();
            let leaders: Vec<u64> = statuses
                .iter()
                .map(|s| s.as_ref().map_or(0, |s| s.leader))
                .collect();
            if leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]) {
                let found = alive.iter().copied().find(|&i| {
                    statuses[alive.iter().position(|&a| a == i).unwrap()]
                        .as_ref()
                        .and_then(|s| s.header.as_ref())
                        .is_some_and(|h| h.member_id == leaders[0])
                });
                if let Some(i) = found {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {ELECTION_DEADLINE:?}: {leaders:x?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn etcdctl(endpoints: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--dial-timeout=5s")
        .arg("--command-timeout=10s")
        .args(args)
        .output()
        .expect("run etcdctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

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
    let deadline = Instant::now() + CONVERGE_DEADLINE;
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
        assert!(
            Instant::now() < deadline,
            "members did not converge within {CONVERGE_DEADLINE:?}:\n{text}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
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
    let deadline = Instant::now() + CONVERGE_DEADLINE;
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
        assert!(
            Instant::now() < deadline,
            "member list never showed three started members:\n{text}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
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
    let before = Instant::now();
    while acked.lock().unwrap().len() < 200 {
        assert!(
            before.elapsed() < CONVERGE_DEADLINE,
            "writers made no progress:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let old_leader = leader;
    c.members[old_leader].kill9();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != old_leader).collect();
    let new_leader = c.wait_leader(&rest);
    assert_ne!(new_leader, old_leader);
    // The new leader serves writes.
    let served_at = acked.lock().unwrap().len();
    let deadline = Instant::now() + ELECTION_DEADLINE;
    while acked.lock().unwrap().len() < served_at + 200 {
        assert!(
            Instant::now() < deadline,
            "no writes acknowledged after the fail-over:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Every acknowledged write is on every surviving member.
    let check_all = |c: &Cluster, which: &[usize]| {
        let deadline = Instant::now() + CONVERGE_DEADLINE;
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
                assert!(
                    Instant::now() < deadline,
                    "{} lacks {} acknowledged writes, e.g. {:?} ({:?})\n{}",
                    c.members[i].name,
                    missing.len(),
                    missing[0],
                    keys.err(),
                    c.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
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
    let mut m4 = Member {
        name: "m4".into(),
        client_port: free_port(),
        peer_port: free_port(),
        dir: temp_dir("cluster-m4"),
        child: None,
        args: Vec::new(),
    };
    let (ok, text) = etcdctl(
        &leader_ep,
        &[
            "member",
            "add",
            "m4",
            &format!("--peer-urls={}", m4.peer_url()),
            "--learner",
        ],
    );
    assert!(ok, "member add --learner: {text}");
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
    m4.args = member_args(&m4, &initial.join(","), "existing", &[]);
    m4.spawn();
    c.members.push(m4);
    let all4 = [0usize, 1, 2, 3];
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    let m4_id = loop {
        assert!(c.members[3].alive(), "m4 exited:\n{}", c.members[3].log());
        if let Some(s) = c.status(3) {
            if s.is_learner && s.leader != 0 {
                break s.header.map(|h| h.member_id).unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the learner never started:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let m4_ep = c.members[3].endpoint();
    let (ok, text) = etcdctl(&m4_ep, &["get", "via0"]);
    assert!(
        !ok && text.contains("etcdserver: rpc not supported for learner"),
        "a learner served a linearizable read: {text}"
    );
    check_all(&c, &[3]);
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let (ok, text) = etcdctl(&leader_ep, &["member", "promote", &format!("{m4_id:x}")]);
        if ok {
            break;
        }
        assert!(
            text.contains("can only promote a learner member which is in sync with leader"),
            "member promote: {text}"
        );
        assert!(Instant::now() < deadline, "never promoted: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, text) = etcdctl(&m4_ep, &["put", "via-m4", "x"]);
    assert!(ok, "the promoted member refused a write: {text}");
    let deadline = Instant::now() + CONVERGE_DEADLINE;
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
        assert!(
            Instant::now() < deadline,
            "member list never showed four started voters: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
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
    let (ok, text) = etcdctl(&leader_ep, &["member", "remove", &format!("{id:x}")]);
    assert!(ok, "member remove: {text}");
    let (ok, text) = etcdctl(&leader_ep, &["member", "list", "-w", "table"]);
    assert!(ok, "{text}");
    assert_eq!(table(&text).len(), 3, "{text}");
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    while c.members[follower].alive() {
        assert!(
            Instant::now() < deadline,
            "the removed member kept running:\n{}",
            c.members[follower].log()
        );
        std::thread::sleep(Duration::from_millis(100));
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
