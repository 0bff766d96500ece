//! Replication: log repair, Figure 8, flow control, snapshots, restarts.

use super::net::{config, Net};
use crate::raft::{
    ConfState, Entry, HardState, MessageBody, NodeId, ProgressState, RawNode, Role, Start,
    StartError,
};

#[test]
fn divergent_follower_log_is_repaired_in_few_round_trips() {
    let mut net = Net::new(3, |_| {});
    let old = net.elect_any();
    // The leader is cut off and keeps appending entries nobody else gets.
    net.isolate(old);
    for i in 0..40 {
        net.node_mut(old)
            .propose(format!("lost{i}").into_bytes())
            .unwrap();
    }
    net.settle();
    // The others elect a new leader and commit their own entries.
    let rest = net.others(&[old]);
    let new = loop {
        net.tick_all();
        if let Some(l) = rest
            .iter()
            .copied()
            .find(|i| net.node(*i).role() == Role::Leader)
        {
            break l;
        }
    };
    for i in 0..10 {
        net.propose(new, format!("kept{i}").as_bytes());
    }
    net.record = Some(Vec::new());
    net.heal();
    net.ticks(5);
    assert_eq!(net.leader_of(old), Some(new));
    for id in 1..=3 {
        assert!(net.logs_equal(id, new), "log of {id} repaired");
    }
    let kept: Vec<Vec<u8>> = (0..10).map(|i| format!("kept{i}").into_bytes()).collect();
    assert_eq!(
        net.applied_data(old),
        kept,
        "the lost entries were never applied"
    );
    // The 40 divergent entries all have one term: the hint skips them at
    // once instead of one probe per entry.
    let rejects = net
        .record
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| matches!(m.body, MessageBody::AppendResp { reject: true, .. }))
        .count();
    assert!(rejects <= 2, "{rejects} rejected appends");
    net.assert_safe();
}

/// Raft paper Figure 8, played out on five members. Returns the net and
/// whether entry X was ever applied.
fn figure_8(fault: bool) -> Net {
    let mut net = Net::new(5, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.msg_bytes_max = 1; // one entry per append
        c.faults.commit_previous_term_by_count = fault;
    });
    let until_leader = |net: &mut Net, id: NodeId| {
        assert!(net.tick_until_leader(id), "{id} did not become leader");
    };
    // (a) S1 leads term 2 and replicates X (index 7) to S2 only.
    until_leader(&mut net, 1);
    assert_eq!(net.node(1).term(), 2);
    net.cut(1, &[3, 4, 5]);
    net.propose(1, b"X");
    assert_eq!(net.node(2).status().last_index, 7);
    net.crash(1);
    net.heal();
    // (b) S5 wins term 3 with S3 and S4 and appends an entry at index 7
    // that nobody receives.
    net.set_filter(|m| {
        !(m.from == 5
            && matches!(&m.body, MessageBody::Append { entries, .. } if !entries.is_empty()))
    });
    until_leader(&mut net, 5);
    assert_eq!(net.node(5).log_term(7), Some(3));
    net.crash(5);
    net.clear_filter();
    // (c) S1 comes back, wins a later term with S2, S3, S4 and replicates X
    // to S3 and S4, but not its own-term entry at index 8.
    net.restart(1);
    net.set_filter(|m| {
        if m.from == 1 {
            if let MessageBody::Append { entries, .. } = &mut m.body {
                let t = m.term;
                entries.retain(|e| e.term != t);
            }
        }
        true
    });
    until_leader(&mut net, 1);
    net.ticks(3);
    let st = net.node(1).status();
    for f in [2, 3, 4] {
        assert_eq!(st.progress[&f].match_index, 7, "X on S{f}");
    }
    if fault {
        assert_eq!(st.commit, 7, "the planted bug commits X by counting");
    } else {
        assert_eq!(
            st.commit, 6,
            "X is on a majority but not committed (§5.4.2)"
        );
    }
    // (d) S1 fails again; S5 returns and is elected with S2, S3, S4 (its
    // last term 3 beats their 2), and overwrites index 7.
    net.crash(1);
    net.clear_filter();
    net.restart(5);
    until_leader(&mut net, 5);
    net.ticks(3);
    net
}

#[test]
fn figure_8_entries_of_earlier_terms_are_not_committed_by_counting() {
    let net = figure_8(false);
    net.assert_safe();
    for id in 1..=5 {
        assert!(
            !net.applied_data(id).contains(&b"X".to_vec()),
            "X never applied on {id}"
        );
    }
}

#[test]
fn figure_8_planted_bug_is_caught_by_the_checkers() {
    let net = figure_8(true);
    assert!(
        !net.violations.is_empty(),
        "committing by counting must lose a committed entry"
    );
}

#[test]
fn pipelining_respects_the_inflight_limit_and_byte_batches() {
    let mut net = Net::new(3, |c| {
        c.inflight_msgs_max = 2;
        c.msg_bytes_max = 100; // three 8-byte entries (32 bytes each)
    });
    let l = net.elect_any();
    net.ticks(2);
    let f = net.others(&[l])[0];
    assert_eq!(
        net.node(l).status().progress[&f].state,
        ProgressState::Replicate
    );
    for i in 0..10u64 {
        net.node_mut(l).propose(i.to_le_bytes().to_vec()).unwrap();
    }
    net.process_readies();
    let appends: Vec<usize> = net
        .queued()
        .iter()
        .filter(|m| m.to == f)
        .filter_map(|m| match &m.body {
            MessageBody::Append { entries, .. } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(appends, vec![1, 1], "two in flight, then paused");
    assert_eq!(net.node(l).status().progress[&f].inflight_msgs, 2);
    net.record = Some(Vec::new());
    net.settle();
    // After the acknowledgements the rest goes out in byte-limited batches.
    let sizes: Vec<usize> = net
        .record
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.to == f)
        .filter_map(|m| match &m.body {
            MessageBody::Append { entries, .. } if !entries.is_empty() => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert!(sizes.iter().all(|n| *n <= 3), "{sizes:?}");
    assert!(sizes.contains(&3), "{sizes:?}");
    assert_eq!(
        net.node(f).status().last_index,
        net.node(l).status().last_index
    );
    net.assert_safe();
}

#[test]
fn lost_append_is_recovered_through_heartbeats() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let f = net.others(&[l])[0];
    net.cut(l, &[f]);
    net.propose(l, b"a");
    net.heal();
    // No new proposals: heartbeats alone must bring f up to date.
    net.ticks(3);
    assert_eq!(net.applied_data(f), vec![b"a".to_vec()]);
}

#[test]
fn follower_far_behind_catches_up_from_a_snapshot() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let lag = net.others(&[l])[0];
    let near = net.others(&[l, lag])[0];
    net.crash(lag);
    for i in 0..30 {
        net.propose(l, format!("e{i}").as_bytes());
    }
    net.ticks(1);
    let applied = net.members[&l].applied;
    net.snapshot(l, 5);
    assert_eq!(net.node(l).status().first_index, applied - 4);
    net.restart(lag);
    net.record = Some(Vec::new());
    net.ticks(3);
    let snaps = net.delivered.get("Snapshot").copied().unwrap_or(0);
    assert_eq!(snaps, 1, "one snapshot sent");
    let st = net.node(lag).status();
    assert_eq!(st.applied, net.node(l).status().applied);
    assert_eq!(
        net.members[&lag].store.snapshot.as_ref().map(|s| s.index),
        Some(applied)
    );
    // Replication continues after the snapshot.
    net.propose(l, b"after");
    assert_eq!(net.applied_data(lag).last().unwrap(), b"after");
    // A follower only a little behind catches up from the log.
    net.crash(near);
    net.propose(l, b"x1");
    net.restart(near);
    net.ticks(3);
    assert_eq!(net.delivered.get("Snapshot").copied().unwrap_or(0), 1);
    assert_eq!(net.applied_data(near).last().unwrap(), b"x1");
    net.assert_safe();
}

#[test]
fn failed_snapshot_is_retried() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let lag = net.others(&[l])[0];
    net.crash(lag);
    for i in 0..10 {
        net.propose(l, format!("e{i}").as_bytes());
    }
    net.snapshot(l, 0);
    net.restart(lag);
    // The first snapshot is lost (reported failed by the net).
    let mut dropped = false;
    net.set_filter(move |m| {
        if !dropped && matches!(m.body, MessageBody::Snapshot { .. }) {
            dropped = true;
            return false;
        }
        true
    });
    net.ticks(6);
    assert!(net.delivered.get("Snapshot").copied().unwrap_or(0) >= 1);
    assert_eq!(net.node(lag).status().applied, net.node(l).status().applied);
}

#[test]
fn whole_group_restarts_from_its_stores() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    for i in 0..10 {
        net.propose(l, format!("e{i}").as_bytes());
    }
    net.ticks(1);
    net.snapshot(2, 3);
    for id in 1..=3 {
        net.crash(id);
    }
    for id in 1..=3 {
        net.restart(id);
    }
    let l = net.elect_any();
    net.propose(l, b"again");
    for id in 1..=3 {
        let d = net.applied_data(id);
        assert_eq!(d.len(), 11, "member {id}");
        assert_eq!(d.last().unwrap(), b"again");
    }
    net.assert_safe();
}

#[test]
fn restart_refuses_inconsistent_state() {
    let ent = |index, term| Entry {
        term,
        index,
        ..Entry::default()
    };
    let conf = ConfState {
        voters: vec![1],
        learners: vec![],
    };
    let restart = |hs: HardState, entries: Vec<Entry>| {
        RawNode::new(
            config(1),
            Start::Restart {
                hard_state: hs,
                conf: conf.clone(),
                snapshot: None,
                entries,
            },
        )
        .map(|_| ())
    };
    let hs = |term, commit| HardState {
        term,
        vote: 0,
        commit,
    };
    assert!(restart(hs(2, 2), vec![ent(1, 1), ent(2, 2)]).is_ok());
    // Each case breaks exactly one rule and is refused for it.
    for (hs, entries, why) in [
        (
            hs(2, 1),
            vec![ent(1, 1), ent(3, 2)],
            "entries not contiguous",
        ),
        (
            hs(2, 3),
            vec![ent(1, 1), ent(2, 2)],
            "commit beyond the last entry",
        ),
        (
            hs(1, 1),
            vec![ent(1, 1), ent(2, 2)],
            "term below the last entry's term",
        ),
        (hs(2, 1), vec![ent(1, 2), ent(2, 1)], "entry terms decrease"),
    ] {
        assert_eq!(restart(hs, entries), Err(StartError::BadRestart(why)));
    }
    assert!(matches!(
        RawNode::new(
            config(1),
            Start::Bootstrap {
                voters: vec![1, 1],
                contexts: Vec::new()
            }
        ),
        Err(StartError::BadVoters)
    ));
    let mut bad = config(1);
    bad.heartbeat_ticks = bad.election_ticks;
    assert!(matches!(
        RawNode::new(bad, Start::Join),
        Err(StartError::Config(_))
    ));
}

#[test]
fn a_restarted_leader_keeps_its_log_tail_before_the_snapshot() {
    // A member a few entries behind the leader's snapshot, but within the
    // tail the leader kept before it, catches up from the log after the
    // leader restarts, as it would have before the restart.
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    for i in 0..5 {
        net.propose(l, format!("a{i}").as_bytes());
    }
    let lag = net.others(&[l])[0];
    net.crash(lag);
    for i in 0..3 {
        net.propose(l, format!("b{i}").as_bytes());
    }
    net.snapshot(l, 5);
    let first = net.node(l).status().first_index;
    assert!(
        first <= net.node(l).status().applied - 3,
        "the tail is kept"
    );
    net.crash(l);
    net.restart(l);
    // The store keeps every entry; the restarted log holds all but the
    // first (its anchor), so at least the tail it had.
    assert!(
        net.node(l).status().first_index <= first + 1,
        "the restarted log dropped the tail: starts at {}",
        net.node(l).status().first_index
    );
    net.restart(lag);
    assert!(net.tick_until_leader(l));
    net.propose(l, b"after");
    net.ticks(3);
    assert_eq!(net.delivered.get("Snapshot").copied().unwrap_or(0), 0);
    let d = net.applied_data(lag);
    assert_eq!(d.len(), 9, "{d:?}");
    assert_eq!(d.last().unwrap(), b"after");
    net.assert_safe();
}

#[test]
fn entries_applied_early_may_be_snapshotted_before_advance() {
    // A leader applies a Ready's committed entries it already holds durably
    // before persisting the Ready's new ones; a checkpoint of them may
    // finish first, and the node must accept it.
    let mut net = Net::new(2, |_| {});
    let l = net.elect_any();
    let f = net.others(&[l])[0];
    net.propose(l, b"a");
    net.node_mut(l).propose(b"b".to_vec()).unwrap();
    let rd = net.node_mut(l).ready();
    net.node_mut(l).advance();
    for m in rd.messages {
        net.node_mut(f).step(m).unwrap();
    }
    let rd = net.node_mut(f).ready();
    net.node_mut(f).advance();
    for m in rd.messages {
        net.node_mut(l).step(m).unwrap();
    }
    net.node_mut(l).propose(b"c".to_vec()).unwrap();
    let rd = net.node_mut(l).ready();
    let b = rd.committed.last().expect("b committed").clone();
    assert_eq!(b.data, b"b");
    assert!(rd.entries.iter().all(|e| e.index > b.index));
    net.node_mut(l).applied_early(b.index);
    let conf = net.node(l).conf().clone();
    net.node_mut(l).snapshot_created(
        crate::raft::SnapshotMeta {
            index: b.index,
            term: b.term,
            conf,
        },
        0,
    );
    net.node_mut(l).advance();
    assert_eq!(net.node(l).status().applied, b.index);
}
