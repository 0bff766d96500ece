//! A deterministic cluster simulator, in the style of FoundationDB's
//! simulation and TigerBeetle's VOPR.
//!
//! One thread runs a whole cluster of 3 to 5 kvik nodes ([`node`]): each
//! is the Raft core under test, the real state machine ([`engine::Mvcc`])
//! and the real WAL ([`raftlog::Wal`]) over a crash-injecting
//! [`raftlog::sim::SimDisk`]. Everything random — the network's loss,
//! duplication, delay and partitions ([`network`]), node crashes and power
//! cuts in the middle of a write, clock rates, the clients' operations
//! ([`client`]) and the cores' own election timers — is drawn from one seed
//! ([`rng`]), so a seed replays its run exactly.
//!
//! # Time
//!
//! Time is a step counter, never the wall clock. A step is about 10 ms:
//! network delays are a few steps, and each node's clock ticks every
//! 8–12 steps (clocks run at different rates), so an election timeout of
//! 10 ticks is about a second.
//!
//! # A run
//!
//! A run alternates *chaos* phases, where faults are injected, with *calm*
//! phases, where the network is healed and made reliable and every node is
//! restarted. Each calm phase must produce a leader that a quorum follows
//! within [`LEADER_BOUND_TICKS`] ticks. The last calm phase then stops the
//! clients, lets their operations finish, and requires every node to apply
//! the same log within [`CONVERGE_BOUND_STEPS`] steps.
//!
//! # Checks
//!
//! After every step [`checker`] checks election safety, log matching,
//! leader completeness, state machine safety (the same entry, revision and
//! [`node::kv_digest`] at every index on every node, and the same
//! [`engine::Mvcc::hash`] every [`node::STATE_HASH_EVERY`] indexes and at
//! the end), that terms, votes and commit indexes never go back, that
//! revisions never go back on a node, and that every write a client hears
//! acknowledged is committed. Clients check that a completed operation's
//! revision is at least that of every operation completed before it was
//! called. At the end the clients' history must be linearizable
//! ([`linearizability`]).
//!
//! # Seeds
//!
//! A failure reports its seed and the command that replays it
//! ([`Failure`]); `kvik-sim --start SEED --seeds 1 --trace` prints the run
//! step by step.

pub mod checker;
pub mod client;
pub mod core;
pub mod hardstate;
pub mod linearizability;
pub mod network;
pub mod node;
mod product;
pub mod reference;
pub mod rng;

use std::fmt;

use checker::Checker;
use client::{Client, History, Outstanding, Reply, Request};
use core::{Consensus, CoreParams};
use linearizability::{check_kv, KvInput};
use network::{NetConfig, Network, CLIENT_BASE};
pub use node::Planted;
use node::{Node, Outbox, Stop, Wire};
pub use product::Product;
pub use reference::Reference;
use rng::{mix, Rng};

/// Ticks within which a calm phase must have a leader a quorum follows.
///
/// Elections are randomized, so this is a bound that holds with
/// overwhelming probability rather than always: the worst case seen is a
/// member with a stale log and no pre-vote that times out first round after
/// round (probability about 1/n per election timeout), which 30 election
/// timeouts make negligible.
pub const LEADER_BOUND_TICKS: u64 = 300;

/// Steps within which every node must apply the whole log once the final
/// calm phase has a leader and the clients are done.
pub const CONVERGE_BOUND_STEPS: u64 = 3000;

/// Nominal steps per tick (each node's period is drawn around it).
pub const STEPS_PER_TICK: u64 = 10;

/// Steps a client waits for a reply.
pub const CLIENT_TIMEOUT_STEPS: u64 = 400;

/// Search steps the linearizability checker may spend per key.
pub const LINEARIZABILITY_BUDGET: u64 = 5_000_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The seed.
    pub seed: u64,
    /// Cluster size (3 to 5).
    pub nodes: usize,
    /// A deliberately broken rule, to test the checkers.
    pub planted: Planted,
    /// Steps of chaos in the whole run (split over the chaos phases).
    pub chaos_steps: u64,
    /// Keep a readable trace of the run.
    pub trace: bool,
    /// Run the simulator's own reference core instead of `raftlog::raft`.
    pub reference_core: bool,
}

impl Options {
    /// Default options for `seed`.
    pub fn new(seed: u64, nodes: usize) -> Options {
        Options {
            seed,
            nodes,
            planted: Planted::None,
            chaos_steps: 3000,
            trace: false,
            reference_core: false,
        }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run --release -p tools --bin kvik-sim -- --start {} --seeds 1 --nodes {} --chaos-steps {}",
            self.seed, self.nodes, self.chaos_steps
        );
        if self.planted != Planted::None {
            cmd.push_str(&format!(" --planted {}", self.planted.name()));
        }
        if self.reference_core {
            cmd.push_str(" --core reference");
        }
        cmd.push_str(" --trace");
        cmd
    }
}

/// A summary of a passing run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Steps run.
    pub steps: u64,
    /// A hash of every event of the run: equal for equal runs.
    pub trace_hash: u64,
    /// The final commit index.
    pub commit_index: u64,
    /// The final store's [`engine::Mvcc::hash`].
    pub state_hash: u32,
    /// Terms that had a leader.
    pub elections: u64,
    /// Node crashes (immediate or by power cut).
    pub crashes: u64,
    /// Client operations completed.
    pub ops_ok: u64,
    /// Client operations whose outcome stayed unknown.
    pub ops_unknown: u64,
    /// Client operations refused definitely.
    pub ops_failed: u64,
    /// Acknowledged writes.
    pub acked_writes: u64,
    /// Keys whose linearizability search gave up (not a failure).
    pub lin_gave_up: u64,
    /// Messages sent.
    pub messages: u64,
    /// The readable trace, when asked for.
    pub trace: Vec<String>,
}

/// A failed run.
#[derive(Clone, Debug)]
pub struct Failure {
    /// What was run.
    pub options: Options,
    /// The step the failure was found at.
    pub step: u64,
    /// What is wrong.
    pub message: String,
    /// The readable trace up to the failure, when asked for.
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation failed: seed {} ({} nodes, planted {}) at step {}: {}\nreplay: {}",
            self.options.seed,
            self.options.nodes,
            self.options.planted.name(),
            self.step,
            self.message,
            self.options.replay_command()
        )
    }
}

/// Runs one seed against the core the options name.
pub fn run(options: &Options) -> Result<Report, Failure> {
    if options.reference_core {
        run_with::<Reference>(options)
    } else {
        run_with::<Product>(options)
    }
}

/// Runs one seed against any core.
pub fn run_with<C: Consensus>(options: &Options) -> Result<Report, Failure> {
    assert!((3..=5).contains(&options.nodes), "between 3 and 5 nodes");
    let mut world = World::<C>::new(options.clone());
    match world.run().and_then(|()| world.finish()) {
        Ok(report) => Ok(report),
        Err(message) => Err(Failure {
            options: options.clone(),
            step: world.now,
            message,
            trace: std::mem::take(&mut world.trace),
        }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Chaos,
    Calm { since: u64, last: bool },
}

/// Fault rates of one run, in per mille per step.
#[derive(Clone, Copy, Debug)]
struct Rates {
    crash: u32,
    restart: u32,
    partition: u32,
    heal: u32,
    net_change: u32,
    transfer: u32,
    power_cut: u32,
}

struct World<C: Consensus> {
    opts: Options,
    now: u64,
    rng: Rng,
    client_rng: Rng,
    net: Network<Wire<C::Msg>>,
    nodes: Vec<Node<C>>,
    clients: Vec<Client>,
    keys: u32,
    checker: Checker,
    history: History,
    rates: Rates,
    phase: Phase,
    /// Number of chaos phases; a calm phase follows each.
    chaos_phases: u64,
    /// Steps of each chaos phase.
    chaos_len: u64,
    /// The cluster's settings, for the trace.
    settings: String,
    draining: bool,
    event_seq: u64,
    next_request: u64,
    next_value: u64,
    max_completed_revision: i64,
    crashes: u64,
    trace_hash: u64,
    trace: Vec<String>,
    out: Outbox<C::Msg>,
    /// Each node's last traced status.
    roles: Vec<Option<core::CoreStatus>>,
}

impl<C: Consensus> World<C> {
    fn new(opts: Options) -> World<C> {
        let mut rng = Rng::new(opts.seed);
        let n = opts.nodes as u64;
        let voters: Vec<u64> = (1..=n).collect();
        let net_rng = rng.fork();
        let client_rng = rng.fork();
        let mut nodes = Vec::new();
        // Every member of a cluster runs with the same settings, as a real
        // deployment does (etcd's liveness rules assume it: a member
        // without pre-vote and check-quorum never tells a stale leader its
        // term, while lease-holding members ignore its vote requests).
        let pre_vote = rng.chance(3, 4);
        let check_quorum = rng.chance(3, 4);
        // Small flow-control limits, so that the simulator's small
        // workloads exercise pipelining and its limits (one entry per
        // append message at the smallest).
        let inflight_msgs_max = [1, 2, 4, 256][rng.index(4)];
        let msg_bytes_max = [1, 300, 1024 * 1024][rng.index(3)];
        for id in 1..=n {
            let params = CoreParams {
                election_ticks: 10,
                heartbeat_ticks: 1,
                pre_vote,
                check_quorum,
                seed: rng.next_u64(),
                inflight_msgs_max,
                msg_bytes_max,
                skip_log_up_to_date_check: opts.planted == Planted::SkipLogUpToDateCheck,
                commit_previous_term_by_count: opts.planted == Planted::CommitPreviousTermByCount,
            };
            let period = rng.range(STEPS_PER_TICK - 2, STEPS_PER_TICK + 2);
            let phase = rng.below(period);
            nodes.push(Node::new(
                id,
                voters.clone(),
                params,
                opts.planted,
                period,
                phase,
            ));
        }
        let forwarding = rng.chance(1, 2);
        for node in &mut nodes {
            node.forwarding = forwarding;
        }
        let settings = format!(
            "pre-vote {pre_vote}, check-quorum {check_quorum}, inflight {inflight_msgs_max}, \
             message bytes {msg_bytes_max}, followers forward {forwarding}, tick periods {:?}",
            nodes.iter().map(|n| n.tick_period).collect::<Vec<_>>()
        );
        let keys = rng.range(1, 4) as u32;
        let client_count = rng.range(2, 5) as u32;
        let clients = (0..client_count)
            .map(|c| Client::new(c, 1 + rng.below(n), keys))
            .collect();
        let rates = Rates {
            crash: rng.range(0, 4) as u32,
            restart: rng.range(5, 20) as u32,
            partition: rng.range(0, 5) as u32,
            heal: rng.range(2, 10) as u32,
            net_change: rng.range(1, 4) as u32,
            transfer: rng.range(0, 2) as u32,
            power_cut: rng.range(0, 2) as u32,
        };
        // Split the chaos steps into one to three phases.
        let chaos_phases = rng.range(1, 3);
        let chaos_len = (opts.chaos_steps / chaos_phases).max(1);
        let net_config = random_net(&mut rng);
        World {
            now: 0,
            net: Network::new(net_config, net_rng),
            rng,
            client_rng,
            nodes,
            clients,
            keys,
            checker: Checker::new(),
            history: History::default(),
            rates,
            phase: Phase::Chaos,
            chaos_phases,
            chaos_len,
            settings,
            draining: false,
            event_seq: 0,
            next_request: 0,
            next_value: 0,
            max_completed_revision: 0,
            crashes: 0,
            trace_hash: opts.seed,
            trace: Vec::new(),
            out: Vec::new(),
            roles: vec![None; opts.nodes],
            opts,
        }
    }

    fn note(&mut self, code: u64, a: u64, b: u64, text: impl FnOnce() -> String) {
        self.trace_hash = mix(mix(mix(self.trace_hash, code), a), b);
        if self.opts.trace {
            let line = format!("{:>7} {}", self.now, text());
            self.trace.push(line);
        }
    }

    fn run(&mut self) -> Result<(), String> {
        let summary = format!(
            "seed {}: {} nodes ({}), {} clients, {} keys, rates {:?}, net {:?}, \
             {} chaos phases of {} steps",
            self.opts.seed,
            self.nodes.len(),
            self.settings,
            self.clients.len(),
            self.keys,
            self.rates,
            self.net.config,
            self.chaos_phases,
            self.chaos_len
        );
        self.note(0, 0, 0, || summary);
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        // Chaos phases still to come after the current one.
        let mut chaos_left = self.chaos_phases - 1;
        let mut phase_end = self.chaos_len;
        loop {
            match self.phase {
                Phase::Chaos => {
                    if self.now >= phase_end {
                        self.enter_calm(chaos_left == 0)?;
                    } else {
                        self.inject_faults()?;
                    }
                }
                Phase::Calm { since, last } => {
                    let ticks = (self.now - since) / STEPS_PER_TICK;
                    match self.stable_leader() {
                        Some((leader, term)) => {
                            if last {
                                return self.converge(leader, term, ticks);
                            }
                            chaos_left -= 1;
                            self.note(1, leader, term, || {
                                format!("calm: node {leader} leads term {term} after {ticks} ticks; chaos again")
                            });
                            phase_end = self.now + self.chaos_len;
                            self.phase = Phase::Chaos;
                            self.net.config = random_net(&mut self.rng);
                        }
                        None if ticks > LEADER_BOUND_TICKS => {
                            return Err(format!(
                                "liveness: no leader followed by a quorum {LEADER_BOUND_TICKS} ticks \
                                 after the network healed and every node restarted ({})",
                                self.describe_roles()
                            ));
                        }
                        None => {}
                    }
                }
            }
            self.step()?;
        }
    }

    /// One step: deliver, tick, clients, readies, checks.
    fn step(&mut self) -> Result<(), String> {
        self.now += 1;
        let now = self.now;
        for (from, to, msg) in self.net.deliver(now) {
            self.deliver(from, to, msg)?;
        }
        // Clocks run at different rates during chaos only: in a calm phase
        // every clock ticks at the nominal rate, as real clocks (whose
        // drift is tiny) do, so that the election bound is not a bet on
        // skew (without pre-vote, a fast-clocked member with a stale log
        // can win the race to campaign, and lose, round after round).
        let calm = matches!(self.phase, Phase::Calm { .. });
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            let period = if calm {
                STEPS_PER_TICK
            } else {
                node.tick_period
            };
            if (now + node.tick_phase).is_multiple_of(period) {
                if let Some(live) = node.live.as_mut() {
                    live.core.tick();
                }
            }
        }
        self.clients_step();
        let max_term = self.max_term();
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        self.rng.shuffle(&mut order);
        for i in order {
            let r = self.nodes[i].process(&mut self.out, &mut self.checker, max_term);
            self.handle_stop(i, r)?;
        }
        self.note_roles();
        self.flush();
        Ok(())
    }

    /// Traces every change of a node's term, role or known leader.
    fn note_roles(&mut self) {
        for i in 0..self.nodes.len() {
            let s = self.nodes[i].live.as_ref().map(|l| l.core.status());
            if s == self.roles[i] {
                continue;
            }
            self.roles[i] = s;
            let id = self.nodes[i].id;
            if let Some(s) = s {
                let what = if s.is_leader { "leads" } else { "follows" };
                let leader = s.leader;
                self.note(16, id, s.term, || {
                    format!("node {id}: term {} {what} (leader {leader})", s.term)
                });
            }
        }
    }

    fn flush(&mut self) {
        let now = self.now;
        for (from, to, msg) in std::mem::take(&mut self.out) {
            let dup = match &msg {
                Wire::Raft(m) => C::msg_idempotent(m),
                _ => false,
            };
            let kind = match &msg {
                Wire::Raft(_) => 1,
                Wire::Request { id, .. } => 2 + (id << 8),
                Wire::Reply { id, .. } => 3 + (id << 8),
            };
            self.trace_hash = mix(mix(self.trace_hash, kind), (from << 32) | to);
            if kind == 1 && !self.net.connected(from, to) {
                // The transport notices a cut link, as a failed connect.
                if let Some(live) = self.nodes[(from - 1) as usize].live.as_mut() {
                    live.core.report_unreachable(to);
                }
            }
            self.net.send(now, from, to, msg, dup);
        }
    }

    fn handle_stop(&mut self, i: usize, r: Result<(), Stop>) -> Result<(), String> {
        match r {
            Ok(()) => Ok(()),
            Err(Stop::Violation(v)) => Err(v),
            Err(Stop::Crashed(why)) => {
                let id = self.nodes[i].id;
                self.nodes[i].stop();
                self.crashes += 1;
                self.note(2, id, 0, || format!("node {id} down: {why}"));
                Ok(())
            }
        }
    }

    fn deliver(&mut self, from: u64, to: u64, msg: Wire<C::Msg>) -> Result<(), String> {
        if to >= CLIENT_BASE {
            if let Wire::Reply { id, reply } = msg {
                self.client_reply((to - CLIENT_BASE) as usize, id, reply)?;
            }
            return Ok(());
        }
        let i = (to - 1) as usize;
        match msg {
            Wire::Raft(m) => {
                let r = self.nodes[i].step(m);
                self.handle_stop(i, r)?;
            }
            Wire::Request { id, request } => {
                self.nodes[i].request(from, id, request, &mut self.out);
            }
            Wire::Reply { .. } => {}
        }
        Ok(())
    }

    fn max_term(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.live.as_ref().map(|l| l.core.status().term))
            .max()
            .unwrap_or(0)
    }

    fn start_node(&mut self, i: usize) -> Result<(), String> {
        let seed = self.rng.next_u64();
        let node = &mut self.nodes[i];
        let id = node.id;
        if node.starts > 0 {
            node.disk.crash(seed);
        }
        let r = node.start(&mut self.checker);
        let starts = node.starts;
        self.note(3, id, starts, || {
            format!("node {id} starts (start {starts})")
        });
        self.handle_stop(i, r)
    }

    fn crash_node(&mut self, i: usize) {
        let id = self.nodes[i].id;
        self.nodes[i].stop();
        self.crashes += 1;
        self.note(4, id, 0, || format!("node {id} crashes"));
    }

    fn inject_faults(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        let r = self.rates;
        if r.crash > 0 && self.rng.per_mille(r.crash) {
            let i = self.rng.index(n);
            if self.nodes[i].is_up() && !self.nodes[i].doomed {
                if self.rng.chance(1, 3) {
                    // Cut the power at one of the next few disk operations:
                    // possibly in the middle of a WAL or hard state write.
                    let ops = self.rng.below(6);
                    self.nodes[i].disk.cut_power_after(ops);
                    self.nodes[i].doomed = true;
                    let id = self.nodes[i].id;
                    self.note(5, id, ops, || {
                        format!("node {id}: power cut after {ops} disk ops")
                    });
                } else {
                    self.crash_node(i);
                }
            }
        }
        if r.power_cut > 0 && self.rng.per_mille(r.power_cut) {
            // A power cut of the whole cluster.
            for i in 0..n {
                if self.nodes[i].is_up() {
                    self.crash_node(i);
                }
            }
        }
        for i in 0..n {
            if !self.nodes[i].is_up() && self.rng.per_mille(r.restart) {
                self.start_node(i)?;
            }
        }
        if r.partition > 0 && self.rng.per_mille(r.partition) {
            self.random_partition();
        }
        if self.net.is_partitioned() && self.rng.per_mille(r.heal) {
            self.net.heal();
            self.note(6, 0, 0, || "network heals".into());
        }
        if self.rng.per_mille(r.net_change) {
            self.net.config = random_net(&mut self.rng);
            let c = self.net.config;
            self.note(7, c.drop_per_mille.into(), c.delay_max, || {
                format!("network now {c:?}")
            });
        }
        if r.transfer > 0 && self.rng.per_mille(r.transfer) {
            let to = 1 + self.rng.below(n as u64);
            for node in &mut self.nodes {
                if let Some(live) = node.live.as_mut() {
                    if live.core.status().is_leader && node.id != to {
                        live.core.transfer_leader(to);
                        let from = node.id;
                        self.trace_hash = mix(self.trace_hash, 8 + (to << 8));
                        if self.opts.trace {
                            self.trace.push(format!(
                                "{:>7} node {from}: transfer leadership to {to}",
                                self.now
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn random_partition(&mut self) {
        let n = self.nodes.len() as u64;
        let mut ids: Vec<u64> = (1..=n).collect();
        self.rng.shuffle(&mut ids);
        match self.rng.below(4) {
            0 => {
                // Isolate one node.
                let (a, b) = ids.split_at(1);
                self.net.partition(&[a.to_vec(), b.to_vec()]);
            }
            1 => {
                // A random split.
                let cut = self.rng.range(1, n - 1) as usize;
                let (a, b) = ids.split_at(cut);
                self.net.partition(&[a.to_vec(), b.to_vec()]);
            }
            2 => {
                // A one-way cut.
                self.net.cut_one_way(ids[0], ids[1]);
            }
            _ => {
                // A bridge: two sides that cannot talk, one node that hears
                // both.
                if n >= 3 {
                    let side = (n as usize - 1) / 2;
                    let a = ids[1..1 + side].to_vec();
                    let b = ids[1 + side..].to_vec();
                    self.net.partition(&[a, b]);
                }
            }
        }
        let blocked = self.net.blocked();
        self.note(9, blocked.len() as u64, 0, || {
            format!("partition: cut links {blocked:?}")
        });
    }

    fn enter_calm(&mut self, last: bool) -> Result<(), String> {
        self.phase = Phase::Calm {
            since: self.now,
            last,
        };
        self.net.heal();
        self.net.config = NetConfig::reliable();
        for i in 0..self.nodes.len() {
            if self.nodes[i].doomed && self.nodes[i].is_up() {
                self.crash_node(i);
            }
            if !self.nodes[i].is_up() {
                self.start_node(i)?;
            }
        }
        self.note(10, u64::from(last), 0, || {
            format!(
                "calm{}: network healed and reliable, every node up",
                if last { " (final)" } else { "" }
            )
        });
        // A node whose restart hit an I/O error would still be down.
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_up() {
                return Err(format!("node {} cannot restart", self.nodes[i].id));
            }
        }
        Ok(())
    }

    /// A leader whose term and leadership a quorum of nodes acknowledge.
    fn stable_leader(&self) -> Option<(u64, u64)> {
        let quorum = self.nodes.len() / 2 + 1;
        for node in &self.nodes {
            let Some(live) = node.live.as_ref() else {
                continue;
            };
            let s = live.core.status();
            if !s.is_leader {
                continue;
            }
            let followers = self
                .nodes
                .iter()
                .filter_map(|n| n.live.as_ref())
                .filter(|l| {
                    let t = l.core.status();
                    t.term == s.term && (t.leader == node.id || t.is_leader)
                })
                .count();
            if followers >= quorum {
                return Some((node.id, s.term));
            }
        }
        None
    }

    fn describe_roles(&self) -> String {
        self.nodes
            .iter()
            .map(|n| match n.live.as_ref() {
                None => format!("node {}: down", n.id),
                Some(l) => {
                    let s = l.core.status();
                    format!(
                        "node {}: term {} leader {} is_leader {} commit {} applied {} log {}",
                        n.id,
                        s.term,
                        s.leader,
                        s.is_leader,
                        l.core.commit(),
                        l.applied,
                        l.log.len()
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The final calm phase: drain the clients, then wait for every node to
    /// apply the whole log.
    fn converge(&mut self, leader: u64, term: u64, ticks: u64) -> Result<(), String> {
        self.note(11, leader, term, || {
            format!("final: node {leader} leads term {term} after {ticks} ticks; draining clients")
        });
        // Let the clients run a little longer against the healed cluster,
        // then stop issuing and wait for the outstanding operations.
        let drain_at = self.now + 200;
        let deadline = drain_at + CLIENT_TIMEOUT_STEPS + CONVERGE_BOUND_STEPS;
        loop {
            if self.now >= drain_at {
                self.draining = true;
            }
            if self.draining && self.clients.iter().all(|c| c.outstanding.is_none()) {
                if let Some(done) = self.converged() {
                    for node in &self.nodes {
                        let live = node.live.as_ref().expect("converged nodes are up");
                        self.checker.state_hash(node.id, done, live.mvcc.hash())?;
                    }
                    self.note(12, done, 0, || format!("converged at index {done}"));
                    return Ok(());
                }
            }
            if self.now > deadline {
                return Err(format!(
                    "liveness: nodes did not converge within {CONVERGE_BOUND_STEPS} steps of the \
                     final calm phase ({})",
                    self.describe_roles()
                ));
            }
            self.step()?;
        }
    }

    /// Some(index) when every node applied the same, complete log.
    fn converged(&self) -> Option<u64> {
        let mut index = None;
        for node in &self.nodes {
            let live = node.live.as_ref()?;
            if live.applied != live.log.len() as u64 {
                return None;
            }
            match index {
                None => index = Some(live.applied),
                Some(i) if i == live.applied => {}
                Some(_) => return None,
            }
        }
        index
    }

    fn clients_step(&mut self) {
        let now = self.now;
        let n = self.nodes.len() as u64;
        for c in 0..self.clients.len() {
            let client = &mut self.clients[c];
            if let Some(o) = &client.outstanding {
                if now >= o.deadline {
                    let o = client.outstanding.take().expect("outstanding");
                    self.history.unknown(client.index, &o);
                    client.target = 1 + self.client_rng.below(n);
                    client.next_at = now + self.client_rng.range(0, 20);
                    let (idx, id) = (client.index, o.id);
                    self.note(13, idx.into(), id, || {
                        format!("client {idx}: request {id} timed out")
                    });
                }
                continue;
            }
            if self.draining || now < client.next_at {
                continue;
            }
            let request =
                client.pick_request(&mut self.client_rng, self.keys, &mut self.next_value);
            self.next_request += 1;
            self.event_seq += 1;
            let o = Outstanding {
                id: self.next_request,
                node: client.target,
                request: request.clone(),
                call: self.event_seq,
                deadline: now + CLIENT_TIMEOUT_STEPS,
                revision_floor: self.max_completed_revision,
            };
            let (idx, id, to) = (client.index, o.id, client.target);
            let from = client.endpoint();
            client.outstanding = Some(o);
            self.out.push((
                from,
                to,
                Wire::Request {
                    id,
                    request: request.clone(),
                },
            ));
            self.note(14, idx.into(), id, || {
                format!("client {idx}: request {id} to node {to}: {request:?}")
            });
        }
    }

    fn client_reply(&mut self, c: usize, id: u64, reply: Reply) -> Result<(), String> {
        let now = self.now;
        let n = self.nodes.len() as u64;
        let client = &mut self.clients[c];
        let Some(o) = client.outstanding.as_ref().filter(|o| o.id == id) else {
            return Ok(()); // late or duplicated reply
        };
        let o = o.clone();
        let idx = client.index;
        match &reply {
            Reply::Done { output, revision } => {
                if !matches!(
                    o.request,
                    Request::Kv {
                        input: KvInput::Get,
                        ..
                    }
                ) {
                    self.checker.acked(id)?;
                }
                if *revision < o.revision_floor {
                    return Err(format!(
                        "client {idx}: request {id} completed at revision {revision}, below revision {} \
                         of an operation that completed before it was called",
                        o.revision_floor
                    ));
                }
                self.max_completed_revision = self.max_completed_revision.max(*revision);
                self.event_seq += 1;
                if let Some(out) = output {
                    self.history.complete(idx, &o, self.event_seq, *out);
                    if let Request::Kv { key, input, .. } = &o.request {
                        client.learn(*key, input, out);
                    }
                }
                client.next_at = now + self.client_rng.range(0, 20);
            }
            Reply::NotLeader { hint } => {
                self.history.failed += 1;
                client.target = if *hint != 0 && *hint != o.node {
                    *hint
                } else {
                    1 + self.client_rng.below(n)
                };
                client.next_at = now + self.client_rng.range(1, 20);
            }
            Reply::Refused(_) => {
                self.history.failed += 1;
                client.target = 1 + self.client_rng.below(n);
                client.next_at = now + self.client_rng.range(1, 20);
            }
        }
        client.outstanding = None;
        self.note(15, idx.into(), id, || {
            format!("client {idx}: request {id}: {reply:?}")
        });
        Ok(())
    }

    /// The end-of-run checks on a converged cluster, whose clients have no
    /// operation outstanding.
    fn finish(&mut self) -> Result<Report, String> {
        let report = check_kv(&self.history.records, LINEARIZABILITY_BUDGET);
        if !report.ok() {
            let mut msg = format!(
                "linearizability: the history of key(s) {:?} is not linearizable",
                report.violations
            );
            for &k in &report.violations {
                msg.push_str(&format!(
                    "\nkey k{k}:\n{}",
                    linearizability::describe_key(&self.history.records, k)
                ));
            }
            return Err(msg);
        }
        let live = self.nodes[0].live.as_ref().expect("converged nodes are up");
        Ok(Report {
            seed: self.opts.seed,
            steps: self.now,
            trace_hash: self.trace_hash,
            commit_index: self.checker.commit_index(),
            state_hash: live.mvcc.hash(),
            elections: self.checker.elections,
            crashes: self.crashes,
            ops_ok: self.history.ok,
            ops_unknown: self.history.unknown,
            ops_failed: self.history.failed,
            acked_writes: self.checker.acked_count(),
            lin_gave_up: report.gave_up.len() as u64,
            messages: self.net.sent,
            trace: std::mem::take(&mut self.trace),
        })
    }
}

fn random_net(rng: &mut Rng) -> NetConfig {
    let delay_min = rng.range(1, 3);
    NetConfig {
        drop_per_mille: [0, 0, 10, 50, 200][rng.index(5)],
        dup_per_mille: [0, 10, 50][rng.index(3)],
        delay_min,
        delay_max: delay_min + rng.range(0, 10),
        slow_per_mille: [0, 10, 50][rng.index(3)],
        slow_delay_max: rng.range(20, 300),
    }
}
