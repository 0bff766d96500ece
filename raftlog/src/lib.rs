//! raftlog: kvik's durable Raft log.
//!
//! This crate owns:
//!
//! * the write-ahead log ([`wal`]): its on-disk format, group-commit writing,
//!   crash recovery, log truncation and the reset that restarts the log
//!   after an installed snapshot;
//! * the [`Storage`] / [`StorageFile`] traits, the only way raftlog touches a
//!   disk;
//! * [`sim::SimDisk`], an in-memory, fault-injecting `Storage` for tests here
//!   and in other crates;
//! * the sans-IO Raft core ([`raft`]): elections, replication, snapshot
//!   metadata, membership, reads and its message codec, as a deterministic
//!   state machine driven by ticks and messages. Its durable log is this WAL
//!   (every record already carries its Raft term and index).
//!
//! It must not touch:
//!
//! * the clock: time is passed in by the caller (the Raft core counts
//!   ticks);
//! * randomness: the Raft core draws election timeouts from a generator
//!   seeded by its caller;
//! * files, sockets or any other I/O except through [`Storage`] (the
//!   real-file implementation lives in the `net` crate, the I/O shell);
//! * an async runtime: futures are plain and driven by the caller's executor;
//! * protobuf or engine types: log entry payloads are opaque bytes.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod raft;
pub mod sim;
pub mod storage;
pub mod wal;

pub use storage::{Mapped, Storage, StorageFile};
pub use wal::{
    Entry, Recovered, TornTail, Wal, WalError, WalOptions, WalStats, RECORD_HEADER_BYTES,
    RECORD_PAYLOAD_BYTES_MAX, SEGMENT_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
