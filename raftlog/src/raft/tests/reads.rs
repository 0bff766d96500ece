//! ReadIndex, lease reads, proposal forwarding and leadership transfer.

use super::net::Net;
use crate::raft::{MessageBody, NodeId, ProposeError, ReadState, Role};

fn take_reads(net: &mut Net, id: NodeId) -> Vec<ReadState> {
    std::mem::take(&mut net.members.get_mut(&id).unwrap().read_states)
}

#[test]
fn leader_read_waits_for_a_heartbeat_quorum() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    net.propose(l, b"w");
    let commit = net.node(l).status().commit;
    net.node_mut(l).read_index(11);
    net.process_readies();
    assert!(
        take_reads(&mut net, l).is_empty(),
        "not before the quorum answers"
    );
    let hb = net
        .queued()
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Heartbeat { ctx, .. } if ctx != 0))
        .count();
    assert_eq!(hb, 2, "a heartbeat round with the read's ctx");
    net.settle();
    assert_eq!(
        take_reads(&mut net, l),
        vec![ReadState {
            index: commit,
            ctx: 11
        }]
    );
}

#[test]
fn one_answer_is_enough_in_three_and_lost_rounds_are_redone() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let f = net.others(&[l]);
    net.cut(l, &[f[0]]);
    // The round to f[1] is lost too: the read waits for the next heartbeat.
    net.set_filter(|m| !matches!(m.body, MessageBody::Heartbeat { .. }));
    net.node_mut(l).read_index(5);
    net.settle();
    assert!(take_reads(&mut net, l).is_empty());
    net.clear_filter();
    net.ticks(1);
    assert_eq!(take_reads(&mut net, l).len(), 1, "leader + f[1] confirm");
}

#[test]
fn follower_read_is_forwarded() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    net.propose(l, b"w");
    let f = net.others(&[l])[0];
    net.node_mut(f).read_index(21);
    net.settle();
    let rs = take_reads(&mut net, f);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].ctx, 21);
    assert_eq!(rs[0].index, net.node(l).status().commit);
}

#[test]
fn deposed_leader_cannot_confirm_a_read() {
    let mut net = Net::new(3, |c| c.check_quorum = false);
    let old = net.elect_any();
    net.isolate(old);
    net.node_mut(old).read_index(1);
    net.settle();
    let rest = net.others(&[old]);
    let new = loop {
        net.tick_all();
        if let Some(n) = rest
            .iter()
            .copied()
            .find(|i| net.node(*i).role() == Role::Leader)
        {
            break n;
        }
    };
    net.propose(new, b"newer");
    net.ticks(5);
    assert_eq!(net.node(old).role(), Role::Leader, "still thinks it leads");
    assert!(
        take_reads(&mut net, old).is_empty(),
        "but cannot serve reads"
    );
}

#[test]
fn new_leader_serves_reads_only_after_committing_in_its_term() {
    let mut net = Net::new(3, |_| {});
    net.set_filter(|m| !matches!(m.body, MessageBody::AppendResp { .. }));
    net.campaign(1);
    assert_eq!(net.node(1).role(), Role::Leader);
    net.node_mut(1).read_index(3);
    net.settle();
    net.ticks(1);
    assert!(
        take_reads(&mut net, 1).is_empty(),
        "own-term entry not committed"
    );
    net.clear_filter();
    net.ticks(2);
    let rs = take_reads(&mut net, 1);
    assert_eq!(rs.len(), 1);
    assert!(rs[0].index >= 4, "includes the leader's own entry: {rs:?}");
}

#[test]
fn lease_read_answers_without_a_round_trip() {
    let mut net = Net::new(3, |c| c.lease_read = true);
    let l = net.elect_any();
    net.ticks(1);
    net.node_mut(l).read_index(9);
    net.process_readies();
    assert_eq!(take_reads(&mut net, l).len(), 1);
}

#[test]
fn single_voter_reads_at_once() {
    let mut net = Net::new(1, |_| {});
    net.elect_any();
    net.node_mut(1).read_index(1);
    net.process_readies();
    assert_eq!(take_reads(&mut net, 1).len(), 1);
}

#[test]
fn follower_forwards_proposals_to_the_leader() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let f = net.others(&[l])[0];
    net.propose(f, b"via follower");
    for id in 1..=3 {
        assert_eq!(net.applied_data(id), vec![b"via follower".to_vec()]);
    }
}

#[test]
fn without_forwarding_a_follower_names_the_leader() {
    let mut net = Net::new(3, |c| c.disable_proposal_forwarding = true);
    let l = net.elect_any();
    let f = net.others(&[l])[0];
    assert_eq!(
        net.node_mut(f).propose(b"x".to_vec()),
        Err(ProposeError::NotLeader { leader: Some(l) })
    );
    // With no leader known at all, even forwarding members refuse.
    let mut net = Net::new(3, |_| {});
    assert_eq!(
        net.node_mut(1).propose(b"x".to_vec()),
        Err(ProposeError::NotLeader { leader: None })
    );
}

#[test]
fn leadership_transfer_to_an_up_to_date_follower() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let term = net.node(l).term();
    let t = net.others(&[l])[0];
    net.node_mut(l).transfer_leader(t);
    net.settle();
    assert_eq!(net.node(t).role(), Role::Leader);
    assert_eq!(net.node(t).term(), term + 1);
    assert_eq!(net.node(l).role(), Role::Follower);
    net.ticks(1);
    assert_eq!(net.stable_leader(), Some(t));
    net.assert_safe();
}

#[test]
fn leadership_transfer_catches_the_target_up_first() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let t = net.others(&[l])[0];
    net.cut(l, &[t]);
    for i in 0..5 {
        net.propose(l, format!("e{i}").as_bytes());
    }
    net.heal();
    net.node_mut(l).transfer_leader(t);
    assert_eq!(
        net.node_mut(l).propose(b"during".to_vec()),
        Err(ProposeError::TransferInProgress { to: t })
    );
    net.settle();
    assert_eq!(net.node(t).role(), Role::Leader);
    assert_eq!(net.applied_data(t).len(), 5);
    net.assert_safe();
}

#[test]
fn leadership_transfer_to_an_unreachable_member_is_abandoned() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let t = net.others(&[l])[0];
    net.isolate(t);
    net.node_mut(l).transfer_leader(t);
    assert!(net.node(l).status().lead_transferee == Some(t));
    net.ticks(10);
    assert_eq!(net.node(l).status().lead_transferee, None);
    assert_eq!(net.node(l).role(), Role::Leader);
    net.propose(l, b"resumed");
}

#[test]
fn lease_ends_before_the_others_can_elect_a_new_leader() {
    for seed in 0..20 {
        let mut net = Net::new(5, |c| {
            c.lease_read = true;
            c.seed = seed;
        });
        let old = net.elect_any();
        net.ticks(3);
        net.isolate(old);
        let mut served_at = Vec::new();
        let mut new_leader_at = None;
        for t in 0..60 {
            if net.node(old).role() == Role::Leader {
                net.node_mut(old).read_index(t);
            }
            net.tick_all();
            if !take_reads(&mut net, old).is_empty() {
                served_at.push(t);
            }
            if new_leader_at.is_none()
                && net
                    .others(&[old])
                    .iter()
                    .any(|i| net.node(*i).role() == Role::Leader)
            {
                new_leader_at = Some(t);
            }
        }
        let new_at = new_leader_at.expect("the majority elects a leader");
        assert!(!served_at.is_empty(), "lease reads served at first");
        assert!(
            served_at.iter().all(|t| *t < new_at),
            "seed {seed}: lease read at {served_at:?}, new leader at {new_at}"
        );
        assert_ne!(net.node(old).role(), Role::Leader, "check-quorum step-down");
    }
}

#[test]
fn leadership_transfer_ends_lease_reads() {
    let mut net = Net::new(3, |c| c.lease_read = true);
    let l = net.elect_any();
    net.ticks(1);
    let t = net.others(&[l])[0];
    // Keep the transfer from completing so the old leader stays leader.
    net.set_filter(|m| !matches!(m.body, MessageBody::TimeoutNow));
    net.node_mut(l).transfer_leader(t);
    net.settle();
    net.node_mut(l).read_index(1);
    net.process_readies();
    assert!(
        take_reads(&mut net, l).is_empty(),
        "no lease after TimeoutNow"
    );
    net.settle();
    assert_eq!(
        take_reads(&mut net, l).len(),
        1,
        "served by a heartbeat round"
    );
}

#[test]
fn restarted_member_keeps_the_lease_promise() {
    let mut net = Net::new(3, |c| {
        c.lease_read = true;
        c.pre_vote = false;
    });
    let l = net.elect_any();
    let f = net.others(&[l])[0];
    let g = net.others(&[l, f])[0];
    let term = net.node(l).term();
    net.crash(f);
    net.restart(f);
    net.isolate(l);
    // g times out and asks f for a vote right away: f just restarted and
    // must not grant it (the old leader may still be serving lease reads).
    let e = net.members[&g].cfg.election_ticks as usize;
    for _ in 0..2 * e {
        net.node_mut(g).tick();
        if net.node(g).role() == Role::Candidate {
            break;
        }
    }
    net.settle();
    assert_ne!(net.node(g).role(), Role::Leader);
    assert_eq!(net.node(f).term(), term, "vote ignored, term not adopted");
}
