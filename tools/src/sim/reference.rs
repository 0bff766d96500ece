//! A small reference Raft core, to keep the simulator itself honest.
//!
//! It is deliberately plain Raft as the paper states it (elections with
//! the log up-to-date check, append with conflict truncation, commit of
//! current-term entries by quorum, ReadIndex confirmed by a heartbeat
//! round) and nothing more: no pre-vote, no check-quorum, no leadership
//! transfer, no flow control, no snapshots. Clean runs against it show that
//! the simulator and its checkers raise no false alarms; its planted
//! up-to-date-check bug shows the checkers catch a real Raft bug end to
//! end. The core under test is `raftlog::raft`; see `product.rs`.

use std::collections::{BTreeMap, BTreeSet};

use raftlog::raft::{Entry, HardState};

use super::core::{Consensus, CoreParams, CoreReady, CoreStatus};
use super::rng::Rng;

/// A message of the reference core.
#[derive(Clone, Debug)]
pub struct RefMsg {
    from: u64,
    to: u64,
    term: u64,
    body: Body,
}

#[derive(Clone, Debug)]
enum Body {
    Vote {
        last_index: u64,
        last_term: u64,
    },
    VoteResp {
        granted: bool,
    },
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    AppendResp {
        index: u64,
        reject: bool,
    },
    Heartbeat {
        commit: u64,
        ctx: u64,
    },
    HeartbeatResp {
        ctx: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Follower,
    Candidate,
    Leader,
}

struct Read {
    /// The heartbeat round that confirms it.
    round: u64,
    /// The caller's tag.
    ctx: u64,
    index: u64,
    acks: BTreeSet<u64>,
}

/// The reference core.
pub struct Reference {
    id: u64,
    peers: Vec<u64>,
    params: CoreParams,
    rng: Rng,
    role: Role,
    term: u64,
    vote: u64,
    leader: u64,
    log: Vec<Entry>,
    commit: u64,
    /// Last index handed out for applying.
    handed: u64,
    /// First index not yet handed out for persisting.
    unstable: u64,
    persisted: HardState,
    elapsed: u64,
    timeout: u64,
    heartbeat_elapsed: u64,
    votes: BTreeSet<u64>,
    next: BTreeMap<u64, u64>,
    matched: BTreeMap<u64, u64>,
    msgs: Vec<RefMsg>,
    reads: Vec<Read>,
    read_round: u64,
    read_states: Vec<(u64, u64)>,
    /// What the outstanding ready covers: (hard state, last entry, handed).
    in_ready: Option<(HardState, u64, u64)>,
}

impl Reference {
    fn new(id: u64, voters: &[u64], params: &CoreParams) -> Reference {
        let mut r = Reference {
            id,
            peers: voters.iter().copied().filter(|&v| v != id).collect(),
            params: *params,
            rng: Rng::new(params.seed ^ id),
            role: Role::Follower,
            term: 0,
            vote: 0,
            leader: 0,
            log: Vec::new(),
            commit: 0,
            handed: 0,
            unstable: 1,
            persisted: HardState::default(),
            elapsed: 0,
            timeout: 0,
            heartbeat_elapsed: 0,
            votes: BTreeSet::new(),
            next: BTreeMap::new(),
            matched: BTreeMap::new(),
            msgs: Vec::new(),
            reads: Vec::new(),
            read_round: 0,
            read_states: Vec::new(),
            in_ready: None,
        };
        r.reset_timer();
        r
    }

    fn last_index(&self) -> u64 {
        self.log.len() as u64
    }

    fn term_at(&self, index: u64) -> u64 {
        if index == 0 {
            0
        } else {
            self.log.get((index - 1) as usize).map_or(0, |e| e.term)
        }
    }

    fn quorum(&self) -> usize {
        let voters = self.peers.len() + 1;
        voters / 2 + 1
    }

    fn reset_timer(&mut self) {
        self.elapsed = 0;
        let e = self.params.election_ticks;
        self.timeout = self.rng.range(e, 2 * e - 1);
    }

    fn send(&mut self, to: u64, body: Body) {
        self.msgs.push(RefMsg {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    fn become_follower(&mut self, term: u64, leader: u64) {
        if term > self.term {
            self.term = term;
            self.vote = 0;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reads.clear();
    }

    fn campaign(&mut self) {
        self.term += 1;
        self.role = Role::Candidate;
        self.vote = self.id;
        self.leader = 0;
        self.votes = BTreeSet::from([self.id]);
        self.reset_timer();
        if self.votes.len() >= self.quorum() {
            self.become_leader();
            return;
        }
        let (last_index, last_term) = (self.last_index(), self.term_at(self.last_index()));
        for p in self.peers.clone() {
            self.send(
                p,
                Body::Vote {
                    last_index,
                    last_term,
                },
            );
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = self.id;
        self.heartbeat_elapsed = 0;
        let next = self.last_index() + 1;
        for &p in &self.peers {
            self.next.insert(p, next);
            self.matched.insert(p, 0);
        }
        self.append_local(Vec::new());
    }

    fn append_local(&mut self, data: Vec<u8>) {
        let e = Entry {
            term: self.term,
            index: self.last_index() + 1,
            data,
            ..Entry::default()
        };
        self.log.push(e);
        self.maybe_commit();
        for p in self.peers.clone() {
            self.send_append(p);
        }
    }

    fn send_append(&mut self, to: u64) {
        let next = self.next[&to].max(1);
        let prev_index = next - 1;
        let prev_term = self.term_at(prev_index);
        let end = self.last_index().min(prev_index + 64);
        let entries = self.log[prev_index as usize..end as usize].to_vec();
        self.send(
            to,
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit: self.commit,
            },
        );
    }

    fn maybe_commit(&mut self) {
        let mut m: Vec<u64> = self.matched.values().copied().collect();
        m.push(self.last_index());
        m.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = m[self.quorum() - 1];
        if candidate > self.commit && self.term_at(candidate) == self.term {
            self.commit = candidate;
        }
    }

    fn broadcast_heartbeat(&mut self, ctx: u64) {
        for p in self.peers.clone() {
            let commit = self.commit.min(self.matched[&p]);
            self.send(p, Body::Heartbeat { commit, ctx });
        }
    }

    fn release_reads(&mut self) {
        let quorum = self.quorum();
        let mut done = Vec::new();
        self.reads.retain(|r| {
            if r.acks.len() >= quorum {
                done.push((r.index, r.ctx));
                false
            } else {
                true
            }
        });
        self.read_states.extend(done);
    }

    fn step_inner(&mut self, m: RefMsg) {
        if m.term > self.term {
            let leader = match m.body {
                Body::Append { .. } | Body::Heartbeat { .. } => m.from,
                _ => 0,
            };
            self.become_follower(m.term, leader);
        } else if m.term < self.term {
            if matches!(m.body, Body::Append { .. } | Body::Heartbeat { .. }) {
                // Tell the stale leader about the new term.
                self.send(
                    m.from,
                    Body::AppendResp {
                        index: 0,
                        reject: true,
                    },
                );
            }
            return;
        }
        match m.body {
            Body::Vote {
                last_index,
                last_term,
            } => {
                let up_to_date = self.params.skip_log_up_to_date_check
                    || last_term > self.term_at(self.last_index())
                    || (last_term == self.term_at(self.last_index())
                        && last_index >= self.last_index());
                let granted =
                    (self.vote == 0 || self.vote == m.from) && self.leader == 0 && up_to_date;
                if granted {
                    self.vote = m.from;
                    self.reset_timer();
                }
                self.send(m.from, Body::VoteResp { granted });
            }
            Body::VoteResp { granted } => {
                if self.role == Role::Candidate && granted {
                    self.votes.insert(m.from);
                    if self.votes.len() >= self.quorum() {
                        self.become_leader();
                    }
                }
            }
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.become_follower(m.term, m.from);
                self.reset_timer();
                if prev_index > self.last_index() || self.term_at(prev_index) != prev_term {
                    self.send(
                        m.from,
                        Body::AppendResp {
                            index: prev_index.min(self.last_index() + 1),
                            reject: true,
                        },
                    );
                    return;
                }
                let last_new = prev_index + entries.len() as u64;
                for e in entries {
                    if e.index <= self.last_index() {
                        if self.term_at(e.index) == e.term {
                            continue;
                        }
                        assert!(
                            e.index > self.commit,
                            "reference core truncates committed entries"
                        );
                        self.log.truncate((e.index - 1) as usize);
                        self.unstable = self.unstable.min(e.index);
                    }
                    self.log.push(e);
                }
                self.commit = self.commit.max(commit.min(last_new));
                self.send(
                    m.from,
                    Body::AppendResp {
                        index: last_new,
                        reject: false,
                    },
                );
            }
            Body::AppendResp { index, reject } => {
                if self.role != Role::Leader {
                    return;
                }
                if reject {
                    let next = (self.next[&m.from] - 1).min(index).max(1);
                    self.next.insert(m.from, next);
                    self.send_append(m.from);
                    return;
                }
                let matched = self.matched[&m.from].max(index);
                self.matched.insert(m.from, matched);
                self.next.insert(m.from, matched + 1);
                self.maybe_commit();
                if matched < self.last_index() {
                    self.send_append(m.from);
                }
            }
            Body::Heartbeat { commit, ctx } => {
                self.become_follower(m.term, m.from);
                self.reset_timer();
                self.commit = self.commit.max(commit.min(self.last_index()));
                self.send(m.from, Body::HeartbeatResp { ctx });
            }
            Body::HeartbeatResp { ctx } => {
                if self.role != Role::Leader {
                    return;
                }
                if self.matched[&m.from] < self.last_index() {
                    self.send_append(m.from);
                }
                if ctx != 0 {
                    for r in &mut self.reads {
                        if r.round <= ctx {
                            r.acks.insert(m.from);
                        }
                    }
                    self.release_reads();
                }
            }
        }
    }
}

impl Consensus for Reference {
    type Msg = RefMsg;

    const FORWARDS: bool = false;

    fn bootstrap(id: u64, voters: &[u64], params: &CoreParams) -> Reference {
        Reference::new(id, voters, params)
    }

    fn restart(
        id: u64,
        voters: &[u64],
        hs: HardState,
        entries: Vec<Entry>,
        params: &CoreParams,
    ) -> Reference {
        let mut r = Reference::new(id, voters, params);
        r.term = hs.term;
        r.vote = hs.vote;
        r.commit = hs.commit;
        r.log = entries;
        r.unstable = r.last_index() + 1;
        r.persisted = hs;
        r
    }

    fn tick(&mut self) {
        if self.role == Role::Leader {
            self.heartbeat_elapsed += 1;
            if self.heartbeat_elapsed >= self.params.heartbeat_ticks {
                self.heartbeat_elapsed = 0;
                self.broadcast_heartbeat(0);
                for p in self.peers.clone() {
                    if self.matched[&p] < self.last_index() {
                        self.send_append(p);
                    }
                }
            }
            return;
        }
        self.elapsed += 1;
        if self.elapsed >= self.timeout {
            self.campaign();
        }
    }

    fn step(&mut self, m: RefMsg) -> Result<(), String> {
        self.step_inner(m);
        Ok(())
    }

    fn apply_conf_change(&mut self, _data: &[u8]) -> Result<(), String> {
        Err("the reference core has no configuration changes".into())
    }

    fn commit(&self) -> u64 {
        self.commit
    }

    fn msg_to(msg: &RefMsg) -> u64 {
        msg.to
    }

    fn msg_idempotent(_msg: &RefMsg) -> bool {
        true
    }

    fn propose(&mut self, data: Vec<u8>) -> Result<(), String> {
        if self.role != Role::Leader {
            return Err("not leader".into());
        }
        self.append_local(data);
        Ok(())
    }

    fn read_index(&mut self, ctx: u64) {
        if self.role != Role::Leader || self.term_at(self.commit) != self.term {
            return; // dropped: the client times out
        }
        self.read_round += 1;
        let round = self.read_round;
        self.reads.push(Read {
            round,
            ctx,
            index: self.commit,
            acks: BTreeSet::from([self.id]),
        });
        self.release_reads();
        self.broadcast_heartbeat(round);
    }

    fn transfer_leader(&mut self, _to: u64) {}

    fn report_unreachable(&mut self, _to: u64) {}

    fn ready(&mut self) -> Option<CoreReady<RefMsg>> {
        let hs = HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
        };
        let entries: Vec<Entry> = self.log[(self.unstable - 1) as usize..].to_vec();
        let committed: Vec<Entry> = self.log[self.handed as usize..self.commit as usize].to_vec();
        if hs == self.persisted
            && entries.is_empty()
            && committed.is_empty()
            && self.msgs.is_empty()
            && self.read_states.is_empty()
        {
            return None;
        }
        self.in_ready = Some((hs, self.last_index(), self.commit));
        let read_states = std::mem::take(&mut self.read_states);
        Some(CoreReady {
            hard_state: (hs != self.persisted).then_some(hs),
            entries,
            snapshots: 0,
            committed,
            messages: std::mem::take(&mut self.msgs),
            read_states,
        })
    }

    fn advance(&mut self) {
        if let Some((hs, last, handed)) = self.in_ready.take() {
            self.persisted = hs;
            self.unstable = self.unstable.max(last + 1);
            self.handed = handed;
        }
    }

    fn status(&self) -> CoreStatus {
        CoreStatus {
            term: self.term,
            is_leader: self.role == Role::Leader,
            leader: self.leader,
        }
    }
}
