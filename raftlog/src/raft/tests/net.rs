//! A tiny in-memory network of `RawNode`s with safety checkers.
//!
//! Every member's `Ready` is carried out the way an application would: the
//! snapshot installed, entries and hard state "persisted" into a per-member
//! store, messages queued, committed entries applied. Messages are
//! delivered one at a time, optionally through a filter, and each member's
//! store survives `crash`/`restart`.
//!
//! Checkers run as things happen:
//! * election safety: at most one leader per term;
//! * state machine safety: every member applies the same entry at an index;
//! * a member's `step` returning `CommittedEntryConflict`.
//!
//! Violations are collected, not panicked on, so tests can assert that a
//! planted bug is caught.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::raft::{
    ConfChange, ConfState, Config, Entry, EntryKind, HardState, Message, MessageBody, NodeId,
    RaftError, RawNode, ReadState, Role, SnapshotMeta, Start,
};

pub const GROUP: u64 = 7;

/// The durable state of one member.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub hard: HardState,
    pub entries: Vec<Entry>,
    pub snapshot: Option<SnapshotMeta>,
}

pub struct Member {
    pub node: RawNode,
    pub cfg: Config,
    pub store: Store,
    pub up: bool,
    /// Index the state machine holds.
    pub applied: u64,
    /// Configuration as applied.
    pub conf: ConfState,
    /// Applied normal entries with data: (index, data).
    pub applied_data: Vec<(u64, Vec<u8>)>,
    pub read_states: Vec<ReadState>,
}

type Filter = Box<dyn FnMut(&mut Message) -> bool>;

pub struct Net {
    pub members: BTreeMap<NodeId, Member>,
    queue: VecDeque<Message>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Returns false to drop a message; may rewrite it.
    filter: Option<Filter>,
    /// index -> (term, data) of the first member to apply it.
    applied_by_index: BTreeMap<u64, (u64, Vec<u8>)>,
    leaders_by_term: BTreeMap<u64, NodeId>,
    pub violations: Vec<String>,
    /// Messages delivered, by kind.
    pub delivered: BTreeMap<&'static str, usize>,
    /// Every message delivered, if recording.
    pub record: Option<Vec<Message>>,
    /// Read states checked (random schedules).
    pub reads_seen: usize,
}

pub fn config(id: NodeId) -> Config {
    let mut c = Config::new(id, GROUP);
    c.seed = 42;
    c
}

impl Net {
    /// A bootstrapped group of voters `1..=n`, each configured by `tweak`.
    pub fn new(n: u64, tweak: impl Fn(&mut Config)) -> Net {
        let voters: Vec<NodeId> = (1..=n).collect();
        let mut net = Net::empty();
        for id in 1..=n {
            let mut cfg = config(id);
            tweak(&mut cfg);
            let node = RawNode::new(
                cfg.clone(),
                Start::Bootstrap {
                    voters: voters.clone(),
                    contexts: Vec::new(),
                },
            )
            .expect("bootstrap");
            net.add_member(id, cfg, node);
        }
        net.settle();
        net
    }

    pub fn empty() -> Net {
        Net {
            members: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            filter: None,
            applied_by_index: BTreeMap::new(),
            leaders_by_term: BTreeMap::new(),
            violations: Vec::new(),
            delivered: BTreeMap::new(),
            record: None,
            reads_seen: 0,
        }
    }

    pub fn add_member(&mut self, id: NodeId, cfg: Config, node: RawNode) {
        let conf = node.conf().clone();
        self.members.insert(
            id,
            Member {
                node,
                cfg,
                store: Store::default(),
                up: true,
                applied: 0,
                conf,
                applied_data: Vec::new(),
                read_states: Vec::new(),
            },
        );
    }

    /// Starts a member that joins the running group (empty state).
    pub fn join(&mut self, id: NodeId, tweak: impl Fn(&mut Config)) {
        let mut cfg = config(id);
        tweak(&mut cfg);
        let node = RawNode::new(cfg.clone(), Start::Join).expect("join");
        self.add_member(id, cfg, node);
    }

    pub fn node(&self, id: NodeId) -> &RawNode {
        &self.members[&id].node
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut RawNode {
        &mut self.members.get_mut(&id).expect("member").node
    }

    pub fn set_filter(&mut self, f: impl FnMut(&mut Message) -> bool + 'static) {
        self.filter = Some(Box::new(f));
    }

    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    /// Cuts both directions between `a` and every member of `others`.
    pub fn cut(&mut self, a: NodeId, others: &[NodeId]) {
        for b in others {
            self.cut.insert((a, *b));
            self.cut.insert((*b, a));
        }
    }

    /// Cuts `id` off from everyone.
    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.members.keys().copied().filter(|m| *m != id).collect();
        self.cut(id, &others);
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn crash(&mut self, id: NodeId) {
        let m = self.members.get_mut(&id).expect("member");
        m.up = false;
        let (gone, kept): (Vec<Message>, Vec<Message>) = self
            .queue
            .drain(..)
            .partition(|msg| msg.to == id || msg.from == id);
        self.queue = kept.into();
        for msg in gone {
            self.lost(&msg);
        }
    }

    /// Restarts a crashed member from its store.
    pub fn restart(&mut self, id: NodeId) {
        let m = self.members.get_mut(&id).expect("member");
        assert!(!m.up);
        let conf = m
            .store
            .snapshot
            .as_ref()
            .map(|s| s.conf.clone())
            .unwrap_or_default();
        let node = RawNode::new(
            m.cfg.clone(),
            Start::Restart {
                hard_state: m.store.hard,
                conf: conf.clone(),
                snapshot: m.store.snapshot.clone(),
                entries: m.store.entries.clone(),
            },
        )
        .expect("restart");
        m.node = node;
        m.up = true;
        m.applied = m.store.snapshot.as_ref().map_or(0, |s| s.index);
        m.conf = conf;
        m.applied_data.retain(|(i, _)| *i <= m.applied);
    }

    /// The application takes a snapshot of `id` at its applied index.
    pub fn snapshot(&mut self, id: NodeId, keep_entries: u64) {
        let m = self.members.get_mut(&id).expect("member");
        let index = m.applied;
        let term = m.node.log_term(index).expect("applied entry's term known");
        let meta = SnapshotMeta {
            index,
            term,
            conf: m.conf.clone(),
        };
        m.node.snapshot_created(meta.clone(), keep_entries);
        m.store.snapshot = Some(meta);
    }

    fn handle_ready(&mut self, id: NodeId) {
        let m = self.members.get_mut(&id).expect("member");
        let prev_hard = m.store.hard;
        let rd = m.node.ready();
        let vote_changed = rd
            .hard_state
            .is_some_and(|h| h.term != prev_hard.term || h.vote != prev_hard.vote);
        if vote_changed || !rd.entries.is_empty() {
            assert!(rd.must_sync, "must_sync covers entries and votes");
        }
        if let Some(s) = &rd.snapshot {
            m.store.snapshot = Some(s.clone());
            m.store.entries.clear();
            m.applied = s.index;
            m.conf = s.conf.clone();
        }
        if let Some(first) = rd.entries.first() {
            m.store.entries.retain(|e| e.index < first.index);
            if let Some(last) = m.store.entries.last() {
                assert_eq!(last.index + 1, first.index, "store contiguous");
            }
            m.store.entries.extend(rd.entries.iter().cloned());
        }
        if let Some(hs) = rd.hard_state {
            m.store.hard = hs;
        }
        for msg in &rd.messages {
            assert_eq!(msg.from, id);
            assert_eq!(msg.group, GROUP);
        }
        self.queue.extend(rd.messages);
        let m = self.members.get_mut(&id).expect("member");
        for e in rd.committed {
            assert_eq!(e.index, m.applied + 1, "member {id} applies in order");
            m.applied = e.index;
            match e.kind {
                EntryKind::ConfChange => {
                    let cc = ConfChange::decode(&e.data).expect("conf change decodes");
                    m.conf = m.node.apply_conf_change(&cc);
                }
                EntryKind::Normal => {
                    if !e.data.is_empty() {
                        m.applied_data.push((e.index, e.data.clone()));
                    }
                }
            }
            match self.applied_by_index.get(&e.index) {
                Some((t, d)) if *t != e.term || *d != e.data => self.violations.push(format!(
                    "state machine safety: member {id} applied ({}, term {}) but another member applied term {t} there",
                    e.index, e.term
                )),
                Some(_) => {}
                None => {
                    self.applied_by_index.insert(e.index, (e.term, e.data.clone()));
                }
            }
        }
        m.read_states.extend(rd.read_states);
        m.node.advance();
        let st = m.node.status();
        if st.role == Role::Leader {
            match self.leaders_by_term.get(&st.term) {
                Some(l) if *l != id => self.violations.push(format!(
                    "election safety: {l} and {id} both lead term {}",
                    st.term
                )),
                _ => {
                    self.leaders_by_term.insert(st.term, id);
                }
            }
        }
    }

    /// Processes every member's `Ready`.
    pub fn process_readies(&mut self) {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for id in ids {
            while self.members[&id].up && self.members[&id].node.has_ready() {
                self.handle_ready(id);
            }
        }
    }

    fn deliverable(&mut self, m: &mut Message) -> bool {
        if self.cut.contains(&(m.from, m.to)) {
            return false;
        }
        match self.members.get(&m.to) {
            Some(t) if t.up => {}
            _ => return false,
        }
        match &mut self.filter {
            Some(f) => f(m),
            None => true,
        }
    }

    /// Delivers one queued message. Returns false if none was queued.
    pub fn deliver_one(&mut self) -> bool {
        self.deliver_at(0)
    }

    /// Duplicates the queued message at `i` (to the back of the queue).
    pub fn duplicate_at(&mut self, i: usize) {
        if let Some(m) = self.queue.get(i).cloned() {
            self.queue.push_back(m);
        }
    }

    /// Drops the queued message at `i`.
    pub fn drop_at(&mut self, i: usize) {
        if let Some(m) = self.queue.remove(i) {
            self.lost(&m);
        }
    }

    /// A message did not arrive. A lost snapshot is reported failed, as a
    /// transport streaming the state would.
    fn lost(&mut self, m: &Message) {
        if matches!(m.body, MessageBody::Snapshot { .. })
            && self.members.get(&m.from).is_some_and(|s| s.up)
        {
            self.node_mut(m.from).report_snapshot(m.to, false);
        }
    }

    /// Delivers the queued message at `i` (reordering when `i > 0`).
    /// Returns false if there is none.
    pub fn deliver_at(&mut self, i: usize) -> bool {
        let Some(mut msg) = self.queue.remove(i) else {
            return false;
        };
        if !self.deliverable(&mut msg) {
            self.lost(&msg);
            return true;
        }
        *self.delivered.entry(msg.body.name()).or_default() += 1;
        if let Some(r) = &mut self.record {
            r.push(msg.clone());
        }
        let (from, to) = (msg.from, msg.to);
        let is_snapshot = matches!(msg.body, MessageBody::Snapshot { .. });
        let res = self.node_mut(to).step(msg);
        match res {
            Ok(()) => {}
            Err(e @ RaftError::CommittedEntryConflict { .. }) => {
                self.violations.push(format!("member {to}: {e}"))
            }
            Err(e) => panic!("step refused a message: {e}"),
        }
        if is_snapshot && self.members[&from].up {
            // The transport streamed the state: report success.
            self.node_mut(from).report_snapshot(to, true);
        }
        true
    }

    /// Delivers messages and processes readies until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..1_000_000 {
            self.process_readies();
            if !self.deliver_one() {
                return;
            }
        }
        let tail: Vec<&Message> = self.queue.iter().take(12).collect();
        panic!(
            "network did not settle; queue head: {tail:#?}\n{}",
            self.dump()
        );
    }

    pub fn queued(&self) -> &VecDeque<Message> {
        &self.queue
    }

    /// Ticks every live member once, then settles.
    pub fn tick_all(&mut self) {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for id in ids {
            if self.members[&id].up {
                self.node_mut(id).tick();
            }
        }
        self.settle();
    }

    pub fn ticks(&mut self, n: usize) {
        for _ in 0..n {
            self.tick_all();
        }
    }

    /// Ticks only `id` until it leaves the follower role (campaigns), then
    /// settles.
    pub fn campaign(&mut self, id: NodeId) {
        let e = self.members[&id].cfg.election_ticks as usize;
        for _ in 0..2 * e {
            self.node_mut(id).tick();
            if self.node(id).role() != Role::Follower {
                break;
            }
        }
        self.settle();
    }

    /// Ticks everyone until some live member leads and all live members in
    /// its configuration know it. Returns the leader.
    pub fn elect_any(&mut self) -> NodeId {
        for _ in 0..1000 {
            self.tick_all();
            if let Some(l) = self.stable_leader() {
                return l;
            }
        }
        panic!("no leader elected");
    }

    /// A live leader known by every live voter of its configuration.
    pub fn stable_leader(&self) -> Option<NodeId> {
        let leaders: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| m.up && m.node.role() == Role::Leader)
            .map(|(id, _)| *id)
            .collect();
        if leaders.len() != 1 {
            return None;
        }
        let l = leaders[0];
        let conf = self.node(l).conf().clone();
        let all_know = conf.voters.iter().all(|v| {
            self.members
                .get(v)
                .is_none_or(|m| !m.up || m.node.leader() == Some(l))
        });
        all_know.then_some(l)
    }

    /// Every member's status, for failure messages.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (id, m) in &self.members {
            out += &format!(
                "member {id} up={} applied={} {:?}\n",
                m.up,
                m.applied,
                m.node.status()
            );
        }
        out
    }

    /// Members other than those in `ex`, in id order.
    pub fn others(&self, ex: &[NodeId]) -> Vec<NodeId> {
        self.members
            .keys()
            .copied()
            .filter(|i| !ex.contains(i))
            .collect()
    }

    /// Ticks only `id`, settling after each tick, until it leads (at most
    /// 200 ticks). Returns whether it leads.
    pub fn tick_until_leader(&mut self, id: NodeId) -> bool {
        for _ in 0..200 {
            self.node_mut(id).tick();
            self.settle();
            if self.node(id).role() == Role::Leader {
                return true;
            }
        }
        false
    }

    pub fn leader_of(&self, id: NodeId) -> Option<NodeId> {
        self.node(id).leader()
    }

    /// Proposes `data` at `id` and settles.
    pub fn propose(&mut self, id: NodeId, data: &[u8]) {
        self.node_mut(id).propose(data.to_vec()).expect("propose");
        self.settle();
    }

    pub fn applied_data(&self, id: NodeId) -> Vec<Vec<u8>> {
        self.members[&id]
            .applied_data
            .iter()
            .map(|(_, d)| d.clone())
            .collect()
    }

    pub fn assert_safe(&self) {
        assert!(
            self.violations.is_empty(),
            "violations: {:#?}",
            self.violations
        );
    }

    /// `a` and `b` end at the same index and agree on every entry both
    /// still hold.
    pub fn logs_equal(&self, a: NodeId, b: NodeId) -> bool {
        let (na, nb) = (self.node(a), self.node(b));
        let (sa, sb) = (na.status(), nb.status());
        if sa.last_index != sb.last_index {
            return false;
        }
        let lo = sa.first_index.max(sb.first_index);
        (lo..=sa.last_index).all(|i| na.entry(i) == nb.entry(i))
    }
}
