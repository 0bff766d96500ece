//! The simulated network: delay, loss, duplication, reordering and
//! partitions, all drawn from the run's seed.
//!
//! Endpoints are numbered: Raft nodes are `1..=n`, clients are
//! [`CLIENT_BASE`]` + c`. Partitions cut links between nodes only; clients
//! reach every node (that is how a client ends up talking to a deposed
//! leader in a minority, the case linearizability checking cares about),
//! and their messages are delayed and lost like any other, but never
//! duplicated: a client's connection is a TCP stream, and a request
//! delivered twice would be applied twice (the state machine has no
//! request deduplication; a client retry is a new request).
//!
//! Messages in flight are ordered by delivery time, then by a random
//! tie-breaker drawn when sent, so equal-time messages arrive in a seeded
//! random order. A message is checked against the partition when it is
//! delivered as well as when it is sent, so a partition also swallows what
//! was already in flight.

use std::collections::{BTreeMap, BTreeSet};

use super::rng::Rng;

/// First client endpoint id.
pub const CLIENT_BASE: u64 = 1000;

/// Fault probabilities (per mille) and delays (in steps).
#[derive(Clone, Copy, Debug)]
pub struct NetConfig {
    /// Each message is lost with this probability.
    pub drop_per_mille: u32,
    /// Each message is delivered twice with this probability.
    pub dup_per_mille: u32,
    /// Usual one-way delay range.
    pub delay_min: u64,
    /// Usual one-way delay range.
    pub delay_max: u64,
    /// With this probability a message is slow: up to `slow_delay_max`.
    pub slow_per_mille: u32,
    /// Largest delay of a slow message.
    pub slow_delay_max: u64,
}

impl NetConfig {
    /// A network that neither loses nor duplicates, with short delays.
    pub fn reliable() -> NetConfig {
        NetConfig {
            drop_per_mille: 0,
            dup_per_mille: 0,
            delay_min: 1,
            delay_max: 3,
            slow_per_mille: 0,
            slow_delay_max: 3,
        }
    }
}

/// The network, generic over the message type.
pub struct Network<M> {
    /// (delivery step, tie-breaker) -> (from, to, message).
    in_flight: BTreeMap<(u64, u64), (u64, u64, M)>,
    /// Directed node links that are cut.
    blocked: BTreeSet<(u64, u64)>,
    /// Current fault settings.
    pub config: NetConfig,
    /// Messages handed to [`Network::send`].
    pub sent: u64,
    rng: Rng,
}

fn is_node(id: u64) -> bool {
    id < CLIENT_BASE
}

impl<M: Clone> Network<M> {
    /// An empty network with its own generator.
    pub fn new(config: NetConfig, rng: Rng) -> Network<M> {
        Network {
            in_flight: BTreeMap::new(),
            blocked: BTreeSet::new(),
            config,
            sent: 0,
            rng,
        }
    }

    /// Whether `from` can reach `to` now.
    pub fn connected(&self, from: u64, to: u64) -> bool {
        !(is_node(from) && is_node(to) && self.blocked.contains(&(from, to)))
    }

    fn delay(&mut self) -> u64 {
        let c = self.config;
        if c.slow_per_mille > 0 && self.rng.per_mille(c.slow_per_mille) {
            self.rng
                .range(c.delay_min, c.slow_delay_max.max(c.delay_min))
        } else {
            self.rng.range(c.delay_min, c.delay_max.max(c.delay_min))
        }
    }

    /// Sends `msg` at step `now`. Only a message that may be delivered
    /// twice (`may_duplicate`) is ever duplicated.
    pub fn send(&mut self, now: u64, from: u64, to: u64, msg: M, may_duplicate: bool) {
        self.sent += 1;
        if !self.connected(from, to) {
            return;
        }
        if self.config.drop_per_mille > 0 && self.rng.per_mille(self.config.drop_per_mille) {
            return;
        }
        if may_duplicate
            && is_node(from)
            && is_node(to)
            && self.config.dup_per_mille > 0
            && self.rng.per_mille(self.config.dup_per_mille)
        {
            let at = now + self.delay();
            let tie = self.rng.next_u64();
            self.in_flight.insert((at, tie), (from, to, msg.clone()));
        }
        let at = now + self.delay();
        let tie = self.rng.next_u64();
        self.in_flight.insert((at, tie), (from, to, msg));
    }

    /// Removes and returns every message due at or before `now`, in
    /// delivery order, minus those a partition now cuts.
    pub fn deliver(&mut self, now: u64) -> Vec<(u64, u64, M)> {
        let mut out = Vec::new();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (from, to, msg) = entry.remove();
            if self.connected(from, to) {
                out.push((from, to, msg));
            }
        }
        out
    }

    /// Cuts the node links between the groups of `groups` (both ways);
    /// links inside a group are restored. Nodes in no group keep their
    /// links as they are.
    pub fn partition(&mut self, groups: &[Vec<u64>]) {
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                for &x in a {
                    for &y in b {
                        if x == y {
                            continue;
                        }
                        if i == j {
                            self.blocked.remove(&(x, y));
                        } else {
                            self.blocked.insert((x, y));
                        }
                    }
                }
            }
        }
    }

    /// Cuts the link from `from` to `to` only (an asymmetric fault).
    pub fn cut_one_way(&mut self, from: u64, to: u64) {
        self.blocked.insert((from, to));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Whether any link is cut.
    pub fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// The cut links, for traces.
    pub fn blocked(&self) -> Vec<(u64, u64)> {
        self.blocked.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_time_order_and_respects_partitions() {
        let mut net: Network<u32> = Network::new(NetConfig::reliable(), Rng::new(1));
        net.send(0, 1, 2, 10, true);
        net.send(0, 2, 3, 11, true);
        assert!(net.deliver(0).is_empty());
        let got = net.deliver(3);
        assert_eq!(got.len(), 2);
        net.partition(&[vec![1], vec![2, 3]]);
        assert!(!net.connected(1, 2) && !net.connected(2, 1));
        assert!(net.connected(2, 3));
        assert!(net.connected(CLIENT_BASE, 1));
        net.send(5, 2, 3, 12, true);
        net.send(5, 1, 2, 13, true);
        // In flight when the partition changes: cut at delivery.
        net.send(5, 3, 1, 14, true);
        net.partition(&[vec![1, 3], vec![2]]);
        net.cut_one_way(3, 1);
        let got: Vec<u32> = net.deliver(10).into_iter().map(|(_, _, m)| m).collect();
        assert_eq!(got, Vec::<u32>::new());
        net.heal();
        assert!(!net.is_partitioned());
        net.send(10, 1, 2, 15, true);
        assert_eq!(net.deliver(20).len(), 1);
    }

    #[test]
    fn same_seed_same_schedule() {
        let cfg = NetConfig {
            drop_per_mille: 100,
            dup_per_mille: 100,
            delay_min: 1,
            delay_max: 10,
            slow_per_mille: 50,
            slow_delay_max: 100,
        };
        let run = |seed| {
            let mut net: Network<u64> = Network::new(cfg, Rng::new(seed));
            let mut out = Vec::new();
            for t in 0..200 {
                net.send(t, 1 + t % 3, 1 + (t + 1) % 3, t, true);
                out.extend(net.deliver(t).into_iter().map(|(_, _, m)| (t, m)));
            }
            out
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
