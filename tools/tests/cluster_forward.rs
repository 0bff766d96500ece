//! Requests only the leader serves, sent to followers of a cluster of real
//! `kvik` processes and driven with etcdctl 3.4: a lease kept alive only
//! through a follower outlives its TTL several times over and its
//! TimeToLive, asked of another follower, is the leader's; once the
//! keep-alives stop it expires. `member promote` through a follower is
//! refused while the learner lags and promotes it once it caught up. Every
//! wait polls a condition with a generous deadline.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{etcdctl, etcdctl_add_learner, Cluster, Deadline, Member, CONVERGE_DEADLINE};
use common::{etcdctl_bin, Kind};

/// The lease's TTL.
const LEASE_TTL: Duration = Duration::from_secs(5);
/// How long the lease is kept alive through a follower only: several
/// TTLs.
const KEEP_ALIVE_FOR: Duration = Duration::from_secs(18);

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
    let mut c = Cluster::start(3, &[]);
    let all = [0usize, 1, 2];
    let leader = c.wait_leader(&all);
    let followers: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let (fa, fb) = (followers[0], followers[1]);
    let leader_ep = c.members[leader].endpoint();
    let (fa_ep, fb_ep) = (c.members[fa].endpoint(), c.members[fb].endpoint());

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
    let out = c.members[fa].dir.join("keep-alive.out");
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
            c.logs()
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
                c.logs()
            ),
            // A refusal (a timeout, say) is no verdict; the deadline is.
            Err(_) => {}
        }
        // The pace of the probes while the keep-alives run.
        std::thread::sleep(Deadline::EVERY);
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
    let d = Deadline::after(LEASE_TTL + CONVERGE_DEADLINE);
    let mut lowest = i64::MAX;
    loop {
        match time_to_live(&fb_ep, &lease) {
            Ok(Some((remaining, _, _))) => lowest = lowest.min(remaining),
            Ok(None) => break,
            Err(_) => {}
        }
        d.tick(|| {
            format!(
                "the lease never expired once the keep-alives stopped\n{}",
                c.logs()
            )
        });
    }
    assert!(
        lowest < LEASE_TTL.as_secs() as i64,
        "TimeToLive through a follower never ran down: lowest {lowest}"
    );
    let d = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let (ok, text) = etcdctl(&fa_ep, &["get", "fwd/key", "--print-value-only"]);
        if ok && text.trim().is_empty() {
            break;
        }
        d.tick(|| format!("the leased key outlived its lease: {text}"));
    }

    // A learner is added through the leader; promoting it through a
    // follower is refused while it has not even started...
    let m4 = Member::new(Kind::Kvik, "m4");
    let m4_id = etcdctl_add_learner(&leader_ep, "m4", &m4.peer_url());
    let (ok, text) = etcdctl(&fa_ep, &["member", "promote", &m4_id]);
    assert!(
        !ok && text
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "promoting a learner that never started: {text}"
    );
    // ... as is promoting a voter, with the leader's own check.
    let fb_id = c
        .wait_status(fb, "follower B's member id", |s| s.header.is_some())
        .header
        .map_or(0, |h| h.member_id);
    let voter = format!("{fb_id:x}");
    let (ok, text) = etcdctl(&fa_ep, &["member", "promote", &voter]);
    assert!(
        !ok && text.contains("etcdserver: can only promote a learner member"),
        "promoting a voter: {text}"
    );

    // Once it runs and caught up, promoting it through a follower works.
    let i4 = c.join(m4, &[]);
    c.wait_status(i4, "the learner to start", |s| {
        s.is_learner && s.leader != 0
    });
    let d = Deadline::after(CONVERGE_DEADLINE);
    let text = loop {
        let (ok, text) = etcdctl(&fb_ep, &["member", "promote", &m4_id]);
        if ok {
            break text;
        }
        assert!(
            text.contains("can only promote a learner member which is in sync with leader"),
            "member promote through a follower: {text}"
        );
        d.tick(|| format!("never promoted: {text}"));
    };
    // etcdctl pads the hex id to 16 columns ("Member  6435de57f0e99d1").
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(
        words.starts_with(&["Member", m4_id.as_str(), "promoted"]),
        "{text}"
    );
    let d = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let (ok, text) = etcdctl(&fa_ep, &["member", "list"]);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if ok && lines.len() == 4 && lines.iter().all(|l| l.trim_end().ends_with("false")) {
            break;
        }
        d.tick(|| format!("member list never showed four voters: {text}"));
    }
    c.wait_leader(&[0, 1, 2, 3]);
}
