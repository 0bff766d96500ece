//! net: the I/O shell of kvik.
//!
//! It owns everything that touches the outside world: the per-core compio
//! runtimes, sockets, hyper's HTTP/2 server, etcd's gRPC services and the
//! protobuf types they speak, the data directory and the real-file
//! implementation of `raftlog::Storage`, and the shard task that drives a
//! keyspace's log and state machine.
//!
//! It must not hold protocol or storage logic of its own: revision rules
//! live in `engine`, the WAL format and recovery in `raftlog`. Only `net`
//! knows protobuf; conversions to and from the engine's types are in
//! `convert`, and typed errors become gRPC statuses only here.

pub mod concurrency;
pub mod convert;
pub mod datadir;
pub mod disk;
pub mod errors;
pub mod forward;
pub mod membership;
pub mod metrics;
pub mod pb;
pub mod peer;
pub mod raftstate;
pub mod revstore;
pub mod rt;
pub mod server;
pub mod services;
pub mod shard;
pub mod snapshot;
pub mod watch;
pub mod wire;
