//! The Raft core driven through its public API only, with every message
//! passing through the codec, as an application would: several groups on
//! the same members, elections, writes, reads, a membership change.

use std::collections::{BTreeMap, VecDeque};

use raftlog::raft::codec;
use raftlog::raft::{
    ConfChange, ConfChangeKind, Config, EntryKind, GroupId, NodeId, RawNode, ReadState, Role, Start,
};

struct App {
    node: RawNode,
    applied: Vec<Vec<u8>>,
    reads: Vec<ReadState>,
}

/// Members keyed by (group, id); frames in flight.
struct Cluster {
    apps: BTreeMap<(GroupId, NodeId), App>,
    wire: VecDeque<(GroupId, NodeId, Vec<u8>)>,
}

impl Cluster {
    fn new(groups: &[GroupId], voters: &[NodeId]) -> Cluster {
        let mut apps = BTreeMap::new();
        for g in groups {
            for id in voters {
                let mut cfg = Config::new(*id, *g);
                cfg.seed = g * 1000 + id;
                let node = RawNode::new(
                    cfg,
                    Start::Bootstrap {
                        voters: voters.to_vec(),
                        contexts: Vec::new(),
                    },
                )
                .unwrap();
                apps.insert(
                    (*g, *id),
                    App {
                        node,
                        applied: Vec::new(),
                        reads: Vec::new(),
                    },
                );
            }
        }
        Cluster {
            apps,
            wire: VecDeque::new(),
        }
    }

    fn pump(&mut self) {
        loop {
            for ((g, _), app) in self.apps.iter_mut() {
                while app.node.has_ready() {
                    let rd = app.node.ready();
                    for m in &rd.messages {
                        self.wire.push_back((*g, m.to, codec::encode(m)));
                    }
                    for e in &rd.committed {
                        match e.kind {
                            EntryKind::ConfChange => {
                                let cc = ConfChange::decode(&e.data).unwrap();
                                app.node.apply_conf_change(&cc);
                            }
                            EntryKind::Normal if !e.data.is_empty() => {
                                app.applied.push(e.data.clone())
                            }
                            EntryKind::Normal => {}
                        }
                    }
                    app.reads.extend(rd.read_states.iter().copied());
                    app.node.advance();
                }
            }
            let Some((g, to, frame)) = self.wire.pop_front() else {
                return;
            };
            let m = codec::decode(&frame).expect("own frames decode");
            assert_eq!(m.group, g, "group travels in the message");
            if let Some(app) = self.apps.get_mut(&(m.group, to)) {
                app.node.step(m).unwrap();
            }
        }
    }

    fn tick(&mut self) {
        for app in self.apps.values_mut() {
            app.node.tick();
        }
        self.pump();
    }

    fn leader(&self, g: GroupId) -> Option<NodeId> {
        self.apps
            .iter()
            .find(|((gg, _), a)| *gg == g && a.node.role() == Role::Leader)
            .map(|((_, id), _)| *id)
    }
}

#[test]
fn two_groups_on_three_members_through_the_codec() {
    let mut c = Cluster::new(&[1, 2], &[1, 2, 3]);
    for _ in 0..100 {
        c.tick();
        if c.leader(1).is_some() && c.leader(2).is_some() {
            break;
        }
    }
    let (l1, l2) = (c.leader(1).unwrap(), c.leader(2).unwrap());
    c.tick();
    // Write to each group through some member (forwarded if a follower).
    c.apps
        .get_mut(&(1, 3))
        .unwrap()
        .node
        .propose(b"one".to_vec())
        .unwrap();
    c.apps
        .get_mut(&(2, 1))
        .unwrap()
        .node
        .propose(b"two".to_vec())
        .unwrap();
    c.pump();
    for id in 1..=3 {
        assert_eq!(c.apps[&(1, id)].applied, vec![b"one".to_vec()]);
        assert_eq!(c.apps[&(2, id)].applied, vec![b"two".to_vec()]);
    }
    // A linearizable read at a follower of group 1.
    let f = if l1 == 1 { 2 } else { 1 };
    c.apps.get_mut(&(1, f)).unwrap().node.read_index(42);
    c.pump();
    let rs = &c.apps[&(1, f)].reads;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].ctx, 42);
    // Remove a follower from group 2.
    let gone = if l2 == 3 { 2 } else { 3 };
    c.apps
        .get_mut(&(2, l2))
        .unwrap()
        .node
        .propose_conf_change(ConfChange::new(ConfChangeKind::Remove, gone))
        .unwrap();
    c.pump();
    let st = c.apps[&(2, l2)].node.status();
    assert!(!st.conf.contains(gone));
    assert!(st.progress.values().all(|p| p.match_index == st.last_index));
}
