//! raftlog
