//! Elections, pre-vote and check-quorum.

use super::net::{config, Net};
use crate::raft::{Message, MessageBody, RawNode, Role, Start};

#[test]
fn three_members_elect_one_leader_in_term_two() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    for id in 1..=3 {
        assert_eq!(net.leader_of(id), Some(l));
        assert_eq!(
            net.node(id).term(),
            2,
            "a fresh group's first term is 2, as in etcd"
        );
    }
    // The bootstrap entries and the leader's empty entry are committed (the
    // followers learn it with the next heartbeat).
    net.ticks(1);
    for id in 1..=3 {
        let st = net.node(id).status();
        assert_eq!(st.commit, 4);
        assert_eq!(st.applied, 4);
    }
    net.assert_safe();
}

#[test]
fn single_member_leads_at_once_and_commits_alone() {
    let mut net = Net::new(1, |_| {});
    net.elect_any();
    net.propose(1, b"x");
    assert_eq!(net.applied_data(1), vec![b"x".to_vec()]);
}

#[test]
fn timeouts_are_randomized_per_member_and_deterministic_per_seed() {
    let run = |seed: u64| {
        let mut net = Net::new(5, |c| c.seed = seed);
        let mut first = Vec::new();
        for t in 0..40 {
            for id in 1..=5 {
                net.node_mut(id).tick();
                if net.node(id).role() != Role::Follower && !first.iter().any(|(i, _)| *i == id) {
                    first.push((id, t));
                }
            }
        }
        first
    };
    assert_eq!(run(1), run(1));
    // Within [e, 2e): the first member to campaign does so between 10 and
    // 19 ticks (index t is 0-based).
    let r = run(1);
    assert!((9..19).contains(&r[0].1), "{r:?}");
    // Different members draw different timeouts for the same seed.
    let mut net = Net::new(5, |c| c.seed = 1);
    let mut fired = Vec::new();
    for t in 0..20 {
        for id in 1..=5 {
            net.node_mut(id).tick();
        }
        let now: Vec<_> = (1..=5)
            .filter(|id| net.node(*id).role() != Role::Follower)
            .collect();
        if !now.is_empty() {
            fired.push((t, now));
            break;
        }
    }
    assert_eq!(fired[0].1.len(), 1, "one member times out first: {fired:?}");
}

#[test]
fn candidate_with_stale_log_loses() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let lagging = if l == 3 { 2 } else { 3 };
    net.isolate(lagging);
    net.propose(l, b"a");
    net.heal();
    // The lagging member campaigns; nobody grants it (log not up to date,
    // and the others hear from a live leader).
    net.crash(l);
    let other = (1..=3).find(|i| *i != l && *i != lagging).unwrap();
    net.campaign(lagging);
    assert_ne!(net.node(lagging).role(), Role::Leader);
    net.campaign(other);
    assert_eq!(net.node(other).role(), Role::Leader);
    net.assert_safe();
}

#[test]
fn vote_is_granted_once_per_term() {
    let mut cfg = config(1);
    cfg.pre_vote = false;
    let mut n = RawNode::new(
        cfg,
        Start::Bootstrap {
            voters: vec![1, 2, 3],
            contexts: Vec::new(),
        },
    )
    .unwrap();
    let rd = n.ready();
    for e in &rd.committed {
        n.apply_conf_change(&crate::raft::ConfChange::decode(&e.data).unwrap());
    }
    n.advance();
    let vote = |from| Message {
        group: super::net::GROUP,
        from,
        to: 1,
        term: 5,
        body: MessageBody::Vote {
            last_index: 10,
            last_term: 3,
            transfer: false,
        },
    };
    n.step(vote(2)).unwrap();
    n.step(vote(3)).unwrap();
    n.step(vote(2)).unwrap();
    let rd = n.ready();
    let answers: Vec<(u64, bool)> = rd
        .messages
        .iter()
        .map(|m| match m.body {
            MessageBody::VoteResp { reject } => (m.to, reject),
            _ => panic!("unexpected {m:?}"),
        })
        .collect();
    assert_eq!(answers, vec![(2, false), (3, true), (2, false)]);
    // The vote is in the hard state of the same Ready as the answers.
    assert_eq!(rd.hard_state.unwrap().vote, 2);
    assert_eq!(rd.hard_state.unwrap().term, 5);
    n.advance();
}

#[test]
fn pre_vote_keeps_a_partitioned_member_from_disrupting() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let term = net.node(l).term();
    let p = if l == 3 { 2 } else { 3 };
    net.isolate(p);
    net.ticks(100);
    // Pre-votes fail, so the isolated member never raised its term.
    assert_eq!(net.node(p).term(), term);
    net.heal();
    net.ticks(30);
    assert_eq!(net.stable_leader(), Some(l));
    assert_eq!(net.node(l).term(), term, "leader undisturbed");
    net.assert_safe();
}

#[test]
fn without_pre_vote_or_check_quorum_a_returning_member_disrupts() {
    // The same scenario with both defenses off shows the test can fail.
    let mut net = Net::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    let l = net.elect_any();
    let term = net.node(l).term();
    let p = if l == 3 { 2 } else { 3 };
    net.isolate(p);
    net.ticks(100);
    assert!(
        net.node(p).term() > term + 3,
        "isolated member kept raising its term"
    );
    net.heal();
    net.ticks(30);
    let l2 = net.elect_any();
    assert!(
        net.node(l2).term() > term,
        "the group was forced into a new term"
    );
    net.assert_safe();
}

#[test]
fn check_quorum_leader_steps_down_when_cut_off() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    net.isolate(l);
    // Within one to two election timeouts the old leader gives up.
    net.ticks(20);
    assert_eq!(net.node(l).role(), Role::Follower);
    assert_eq!(net.leader_of(l), None);
    // The others elect a new leader.
    let others: Vec<u64> = (1..=3).filter(|i| *i != l).collect();
    let new = others
        .iter()
        .copied()
        .find(|i| net.node(*i).role() == Role::Leader)
        .expect("new leader among the majority");
    net.heal();
    net.ticks(5);
    assert_eq!(net.stable_leader(), Some(new));
    net.assert_safe();
}

#[test]
fn without_check_quorum_a_cut_off_leader_stays_leader() {
    let mut net = Net::new(3, |c| c.check_quorum = false);
    let l = net.elect_any();
    net.isolate(l);
    net.ticks(50);
    assert_eq!(net.node(l).role(), Role::Leader);
}

#[test]
fn followers_with_a_live_leader_ignore_vote_requests() {
    let mut net = Net::new(3, |c| c.pre_vote = false);
    let l = net.elect_any();
    let term = net.node(l).term();
    let f = if l == 1 { 2 } else { 1 };
    let t = (1..=3).find(|i| *i != l && *i != f).unwrap();
    let last = net.node(f).status().last_index;
    // A vote request for a higher term while the leader is live.
    net.node_mut(f)
        .step(Message {
            group: super::net::GROUP,
            from: t,
            to: f,
            term: term + 1,
            body: MessageBody::Vote {
                last_index: last + 5,
                last_term: term,
                transfer: false,
            },
        })
        .unwrap();
    assert_eq!(
        net.node(f).term(),
        term,
        "term not adopted inside the lease"
    );
    assert!(!net.node(f).has_ready() || net.node_mut(f).ready().messages.is_empty());
}
