//! Scenario tests of the Raft core over a tiny in-memory network.

mod election;
mod faults;
mod membership;
mod net;
mod random;
mod reads;
mod replication;
