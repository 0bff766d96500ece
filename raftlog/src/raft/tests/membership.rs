//! Membership: learners, promotion, removal, the one-change rules.

use super::net::Net;
use crate::raft::{ConfChange, ConfChangeKind, MessageBody, NodeId, ProposeError, Role};

fn change(net: &mut Net, at: NodeId, kind: ConfChangeKind, node: NodeId) {
    net.node_mut(at)
        .propose_conf_change(ConfChange::new(kind, node))
        .expect("conf change accepted");
    net.settle();
    net.ticks(1);
}

#[test]
fn learner_gets_the_log_but_neither_votes_nor_counts() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    net.propose(l, b"before");
    net.join(4, |_| {});
    change(&mut net, l, ConfChangeKind::AddLearner, 4);
    assert_eq!(net.node(l).conf().learners, vec![4]);
    // The learner replays the whole log, including the founding voters.
    assert_eq!(net.node(4).conf().voters, vec![1, 2, 3]);
    assert_eq!(net.node(4).conf().learners, vec![4]);
    net.propose(l, b"after");
    assert_eq!(
        net.applied_data(4),
        vec![b"before".to_vec(), b"after".to_vec()]
    );
    let st = net.node(l).status();
    assert!(st.progress[&4].is_learner);
    assert_eq!(
        st.progress[&4].match_index, st.last_index,
        "learner in sync"
    );
    // Its acknowledgements do not make a quorum: with both other voters
    // down, nothing commits.
    let vs = net.others(&[l, 4]);
    for v in &vs {
        net.crash(*v);
    }
    let commit = net.node(l).status().commit;
    net.node_mut(l).propose(b"stuck".to_vec()).unwrap();
    net.settle();
    assert_eq!(net.node(l).status().commit, commit);
    assert_eq!(
        net.node(4).status().last_index,
        commit + 1,
        "learner got it"
    );
    // A learner never campaigns.
    let term = net.node(4).term();
    for _ in 0..100 {
        net.node_mut(4).tick();
    }
    net.settle();
    assert_eq!(net.node(4).role(), Role::Follower);
    assert_eq!(net.node(4).term(), term);
    net.assert_safe();
}

#[test]
fn promoted_learner_counts_toward_quorum() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    net.join(4, |_| {});
    change(&mut net, l, ConfChangeKind::AddLearner, 4);
    change(&mut net, l, ConfChangeKind::PromoteLearner, 4);
    for id in 1..=4 {
        assert_eq!(net.node(id).conf().voters, vec![1, 2, 3, 4], "member {id}");
        assert!(net.node(id).conf().learners.is_empty());
    }
    // Four voters: quorum 3. With one other voter down it still commits,
    // thanks to 4; with two down it does not.
    let vs = net.others(&[l, 4]);
    net.crash(vs[0]);
    net.propose(l, b"three of four");
    assert_eq!(net.applied_data(4).last().unwrap(), b"three of four");
    net.crash(vs[1]);
    let commit = net.node(l).status().commit;
    net.node_mut(l).propose(b"two of four".to_vec()).unwrap();
    net.settle();
    assert_eq!(net.node(l).status().commit, commit);
    net.assert_safe();
}

#[test]
fn removed_follower_is_dropped_from_the_quorum() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    let f = net.others(&[l])[0];
    change(&mut net, l, ConfChangeKind::Remove, f);
    assert!(!net.node(l).conf().contains(f));
    assert!(!net.node(l).status().progress.contains_key(&f));
    // Two voters left: both needed, and enough.
    net.crash(f);
    net.propose(l, b"x");
    let g = net.others(&[l, f])[0];
    assert_eq!(net.applied_data(g).last().unwrap(), b"x");
    net.assert_safe();
}

#[test]
fn removed_leader_steps_down_and_the_rest_elect_a_leader() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    net.node_mut(l)
        .propose_conf_change(ConfChange::new(ConfChangeKind::Remove, l))
        .unwrap();
    net.settle();
    assert_eq!(net.node(l).role(), Role::Follower, "stepped down on apply");
    assert!(!net.node(l).conf().contains(l));
    let rest = net.others(&[l]);
    let mut new = None;
    for _ in 0..100 {
        net.tick_all();
        if let Some(n) = rest
            .iter()
            .copied()
            .find(|i| net.node(*i).role() == Role::Leader)
        {
            new = Some(n);
            break;
        }
    }
    let new = new.expect("the remaining voters elect a leader");
    net.propose(new, b"without the old leader");
    for id in &rest {
        assert_eq!(net.node(*id).conf().voters, rest);
        assert_eq!(
            net.applied_data(*id).last().unwrap(),
            b"without the old leader"
        );
    }
    // The removed member never campaigns again.
    for _ in 0..100 {
        net.tick_all();
        assert_ne!(net.node(l).role(), Role::Candidate);
        assert_ne!(net.node(l).role(), Role::PreCandidate);
    }
    net.assert_safe();
}

#[test]
fn one_change_at_a_time() {
    let mut net = Net::new(3, |_| {});
    let l = net.elect_any();
    net.join(4, |_| {});
    net.join(5, |_| {});
    net.node_mut(l)
        .propose_conf_change(ConfChange::new(ConfChangeKind::AddLearner, 4))
        .unwrap();
    assert_eq!(
        net.node_mut(l)
            .propose_conf_change(ConfChange::new(ConfChangeKind::AddLearner, 5)),
        Err(ProposeError::ConfChangePending)
    );
    net.settle();
    // Applied: the next one is accepted.
    net.node_mut(l)
        .propose_conf_change(ConfChange::new(ConfChangeKind::AddLearner, 5))
        .unwrap();
    net.settle();
    assert_eq!(net.node(l).conf().learners, vec![4, 5]);
}

#[test]
fn new_leader_changes_membership_only_after_committing_in_its_term() {
    let mut net = Net::new(3, |_| {});
    // Hold back acknowledgements so the new leader's first entry stays
    // uncommitted.
    net.set_filter(|m| !matches!(m.body, MessageBody::AppendResp { .. }));
    net.campaign(1);
    assert_eq!(net.node(1).role(), Role::Leader);
    assert_eq!(
        net.node_mut(1)
            .propose_conf_change(ConfChange::new(ConfChangeKind::AddLearner, 4)),
        Err(ProposeError::ConfChangePending)
    );
    // Normal proposals are fine meanwhile.
    net.node_mut(1).propose(b"data".to_vec()).unwrap();
    net.clear_filter();
    net.ticks(2);
    net.join(4, |_| {});
    net.node_mut(1)
        .propose_conf_change(ConfChange::new(ConfChangeKind::AddLearner, 4))
        .unwrap();
    net.settle();
    assert_eq!(net.node(4).conf().learners, vec![4]);
}

#[test]
fn invalid_changes_are_refused() {
    let mut net = Net::new(1, |_| {});
    net.elect_any();
    let bad = |kind, node| ConfChange::new(kind, node);
    for (cc, why) in [
        (bad(ConfChangeKind::AddVoter, 1), "already a voter"),
        (
            bad(ConfChangeKind::Remove, 1),
            "cannot remove the last voter",
        ),
        (bad(ConfChangeKind::Remove, 9), "not a member"),
        (bad(ConfChangeKind::PromoteLearner, 9), "not a learner"),
        (bad(ConfChangeKind::AddLearner, 1), "cannot demote a voter"),
        (bad(ConfChangeKind::AddVoter, 0), "node 0"),
    ] {
        assert_eq!(
            net.node_mut(1).propose_conf_change(cc),
            Err(ProposeError::InvalidConfChange(why))
        );
    }
}

#[test]
fn conf_change_codec_round_trips_and_rejects_garbage() {
    let cc = ConfChange {
        kind: ConfChangeKind::PromoteLearner,
        node: 77,
        context: b"http://m77:2380".to_vec(),
    };
    assert_eq!(ConfChange::decode(&cc.encode()).unwrap(), cc);
    assert!(ConfChange::decode(&[]).is_err());
    assert!(ConfChange::decode(&[1, 9, 1, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(ConfChange::decode(&[2, 1, 1, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(ConfChange::decode(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
}

#[test]
fn no_campaign_while_a_committed_change_is_unapplied() {
    use crate::raft::{RawNode, Start};
    let mut cfg = super::net::config(1);
    cfg.pre_vote = false;
    // A bootstrapped member's founding changes are committed but not yet
    // applied until its first Ready is processed.
    let mut n = RawNode::new(
        cfg,
        Start::Bootstrap {
            voters: vec![1, 2, 3],
            contexts: Vec::new(),
        },
    )
    .unwrap();
    for _ in 0..100 {
        n.tick();
    }
    assert_eq!(n.role(), Role::Follower);
    let rd = n.ready();
    for e in &rd.committed {
        n.apply_conf_change(&ConfChange::decode(&e.data).unwrap());
    }
    n.advance();
    for _ in 0..20 {
        n.tick();
    }
    assert_eq!(n.role(), Role::Candidate);
}

#[test]
#[should_panic(expected = "advance() before applying every conf change")]
fn advance_without_applying_a_conf_change_panics() {
    use crate::raft::{RawNode, Start};
    let mut n = RawNode::new(
        super::net::config(1),
        Start::Bootstrap {
            voters: vec![1],
            contexts: Vec::new(),
        },
    )
    .unwrap();
    let _rd = n.ready();
    n.advance();
}
