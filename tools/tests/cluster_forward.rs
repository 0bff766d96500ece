//! Requests only the leader serves, sent to followers of a cluster of real
//! `kvik` processes and driven with etcdctl 3.4: a lease kept alive only
//! through a follower outlives its TTL several times over and its
//! TimeToLive, asked of another follower, is the leader's; once the
//! keep-alives stop it expires. `member promote` through a follower is
//! refused while the learner lags and promotes it once it caught up. Every
//! wait polls a condition with a generous deadline.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{etcdctl_bin, free_port, kvik_bin, temp_dir};

/// How long a cluster may take to elect a leader.
const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
/// How long members may take to converge (a learner to catch up, a lease
/// revoke to apply everywhere).
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// The lease's TTL.
const LEASE_TTL: Duration = Duration::from_secs(5);
/// How long the lease is kept alive through a follower only: several
/// TTLs.
const KEEP_ALIVE_FOR: Duration = Duration::from_secs(18);
/// How often the checks poll.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn new(name: &str) -> Member {
        Member {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            dir: temp_dir(&format!("fwd-{name}")),
            child: None,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn spawn(&mut self, initial_cluster: &str, state: &str) {
        let c = self.endpoint();
        let p = self.peer_url();
        let data = self.dir.join("data").display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(kvik_bin())
            .args([
                "--name",
                &self.name,
                "--data-dir",
                &data,
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
                "kvik-forward-test",
                "--kvik-cores",
                "2",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kvik");
        self.child = Some(child);
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A long-running etcdctl (`lease keep-alive`), killed on drop.
struct Background {
    child: Child,
    out: PathBuf,
}

impl Background {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

fn logs(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| format!("===== {} =====\n{}", m.name, m.log()))
        .collect::<Vec<_>>()
        .join("\n")
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

/// Each member's (id, leader) as it reports them; `None` if it does not
/// answer.
fn status(m: &Member) -> Option<(u64, u64, bool)> {
    let (ok, text) = etcdctl(&m.endpoint(), &["endpoint", "status", "-w", "json"]);
    if !ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    let s = &v.as_array()?.first()?["Status"];
    Some((
        s["header"]["member_id"].as_u64()?,
        s["leader"].as_u64()?,
        s["isLearner"].as_bool().unwrap_or(false),
    ))
}

/// Polls until every member of `which` names the same leader, one of
/// them; returns the leader's index and every member's id.
fn wait_leader(members: &mut [Member], which: &[usize]) -> (usize, BTreeMap<usize, u64>) {
    let deadline = Instant::now() + ELECTION_DEADLINE;
    loop {
        for &i in which {
            assert!(
                members[i].alive(),
                "{} exited:\n{}",
                members[i].name,
                logs(members)
            );
        }
        let st: Vec<Option<(u64, u64, bool)>> =
            which.iter().map(|&i| status(&members[i])).collect();
        if st.iter().all(Option::is_some) {
            let st: Vec<(u64, u64, bool)> = st.into_iter().flatten().collect();
            let leader = st[0].1;
            if leader != 0 && st.iter().all(|s| s.1 == leader) {
                if let Some(pos) = st.iter().position(|s| s.0 == leader) {
                    let ids = which.iter().copied().zip(st.iter().map(|s| s.0)).collect();
                    return (which[pos], ids);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader within {ELECTION_DEADLINE:?}\n{}",
            logs(members)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `lease timetolive --keys` through `ep`: (remaining secs, granted secs,
/// attached keys), or `None` once the lease is gone.
fn time_to_live(ep: &str, lease: &str) -> Result<Option<(i64, i64, String)>, String> {
    let (ok, text) = etcdctl(ep, &["lease", "timetolive", lease, "--keys"]);
    if !ok {
        return Err(text);
    }
    if text.contains("already expired") {
        return Ok(None);
    }
    // lease 694d7a4c2b8e8f0a granted with TTL(5s), remaining(4s), attached keys([k])
    let num = |after: &str| -> Option<i64> {
        let rest = &text[text.find(after)? + after.len()..];
        rest[..rest.find('s')?].parse().ok()
    };
    let keys = text
        .find("attached keys(")
        .map(|i| {
            let rest = &text[i + "attached keys(".len()..];
            rest[..rest.find(')').unwrap_or(rest.len())].to_string()
        })
        .unwrap_or_default();
    match (num("remaining("), num("TTL(")) {
        (Some(r), Some(g)) => Ok(Some((r, g, keys))),
        _ => Err(format!("unparsed timetolive output: {text}")),
    }
}

#[test]
fn followers_forward_lease_keep_alive_time_to_live_and_promote_to_the_leader() {
    let _ = etcdctl_bin();
    let mut members: Vec<Member> = (1..=3).map(|i| Member::new(&format!("m{i}"))).collect();
    let initial = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    for m in &mut members {
        m.spawn(&initial, "new");
    }
    let all = [0usize, 1, 2];
    let (leader, ids) = wait_leader(&mut members, &all);
    let followers: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let (fa, fb) = (followers[0], followers[1]);
    let leader_ep = members[leader].endpoint();
    let (fa_ep, fb_ep) = (members[fa].endpoint(), members[fb].endpoint());

    // A lease granted through the leader, with a key attached.
    let ttl = LEASE_TTL.as_secs().to_string();
    let (ok, text) = etcdctl(&leader_ep, &["lease", "grant", &ttl]);
    assert!(ok, "lease grant: {text}");
    let lease = text
        .split_whitespace()
        .nth(1)
        .filter(|_| text.starts_with("lease "))
        .unwrap_or_else(|| panic!("lease grant output: {text}"))
        .to_string();
    let (ok, text) = etcdctl(
        &leader_ep,
        &["put", "fwd/key", "v", &format!("--lease={lease}")],
    );
    assert!(ok, "put with lease: {text}");

    // Kept alive through follower A only, for several TTLs: TimeToLive
    // through follower B keeps showing it alive, with its key.
    let out = members[fa].dir.join("keep-alive.out");
    let mut keep_alive = Background {
        child: Command::new(etcdctl_bin())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={fa_ep}"))
            .args(["lease", "keep-alive", &lease])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcdctl lease keep-alive"),
        out,
    };
    let started = Instant::now();
    let mut checks = 0;
    while started.elapsed() < KEEP_ALIVE_FOR {
        assert!(
            keep_alive.running(),
            "etcdctl lease keep-alive through a follower stopped after {:?}:\n{}\n{}",
            started.elapsed(),
            keep_alive.output(),
            logs(&members)
        );
        match time_to_live(&fb_ep, &lease) {
            Ok(Some((remaining, granted, keys))) => {
                assert_eq!(granted, LEASE_TTL.as_secs() as i64);
                // The leader's count, refreshed every TTL/3 by the
                // keep-alives (a follower's own count ran out long ago).
                assert!(
                    (1..=granted).contains(&remaining),
                    "remaining {remaining} of {granted} after {:?} of keep-alives",
                    started.elapsed()
                );
                assert_eq!(keys, "[fwd/key]");
                checks += 1;
            }
            Ok(None) => panic!(
                "the lease expired after {:?} although kept alive through a follower:\n{}\n{}",
                started.elapsed(),
                keep_alive.output(),
                logs(&members)
            ),
            // A refusal (a timeout, say) is no verdict; the deadline is.
            Err(_) => {}
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    assert!(checks > 0, "TimeToLive through a follower never answered");
    let said = keep_alive.output();
    assert!(
        said.matches(&format!("lease {lease} keepalived with TTL({ttl})"))
            .count()
            >= 3,
        "{said}"
    );
    assert!(!said.contains("expired"), "{said}");

    // Once the keep-alives stop the lease runs down and expires; its key
    // goes with it.
    drop(keep_alive);
    let stopped = Instant::now();
    let mut lowest = i64::MAX;
    loop {
        match time_to_live(&fb_ep, &lease) {
            Ok(Some((remaining, _, _))) => lowest = lowest.min(remaining),
            Ok(None) => break,
            Err(_) => {}
        }
        assert!(
            stopped.elapsed() < LEASE_TTL + CONVERGE_DEADLINE,
            "the lease never expired once the keep-alives stopped\n{}",
            logs(&members)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    assert!(
        lowest < LEASE_TTL.as_secs() as i64,
        "TimeToLive through a follower never ran down: lowest {lowest}"
    );
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let (ok, text) = etcdctl(&fa_ep, &["get", "fwd/key", "--print-value-only"]);
        if ok && text.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leased key outlived its lease: {text}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }

    // A learner is added through the leader; promoting it through a
    // follower is refused while it has not even started...
    let mut m4 = Member::new("m4");
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
    let m4_id = text
        .split_whitespace()
        .nth(1)
        .filter(|_| text.starts_with("Member "))
        .unwrap_or_else(|| panic!("member add output: {text}"))
        .to_string();
    let (ok, text) = etcdctl(&fa_ep, &["member", "promote", &m4_id]);
    assert!(
        !ok && text
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "promoting a learner that never started: {text}"
    );
    // ... as is promoting a voter, with the leader's own check.
    let voter = format!("{:x}", ids[&fb]);
    let (ok, text) = etcdctl(&fa_ep, &["member", "promote", &voter]);
    assert!(
        !ok && text.contains("etcdserver: can only promote a learner member"),
        "promoting a voter: {text}"
    );

    // Once it runs and caught up, promoting it through a follower works.
    let initial4 = format!("{initial},m4={}", m4.peer_url());
    m4.spawn(&initial4, "existing");
    members.push(m4);
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    loop {
        assert!(members[3].alive(), "m4 exited:\n{}", members[3].log());
        if status(&members[3]).is_some_and(|(_, leader, learner)| learner && leader != 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the learner never started:\n{}",
            logs(&members)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    let text = loop {
        let (ok, text) = etcdctl(&fb_ep, &["member", "promote", &m4_id]);
        if ok {
            break text;
        }
        assert!(
            text.contains("can only promote a learner member which is in sync with leader"),
            "member promote through a follower: {text}"
        );
        assert!(Instant::now() < deadline, "never promoted: {text}");
        std::thread::sleep(POLL_INTERVAL);
    };
    assert!(text.contains(&format!("Member {m4_id} promoted")), "{text}");
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let (ok, text) = etcdctl(&fa_ep, &["member", "list"]);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if ok && lines.len() == 4 && lines.iter().all(|l| l.trim_end().ends_with("false")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member list never showed four voters: {text}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    wait_leader(&mut members, &[0, 1, 2, 3]);
}
